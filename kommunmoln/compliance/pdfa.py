"""Structural PDF/A-3b checks of the filed PDFs with pikepdf (qpdf), where veraPDF cannot run.

    python -m kommunmoln.compliance.pdfa build/report/*.pdf

veraPDF, the reference validator of the PDF Association, is a Java application distributed
outside PyPI, npm and Debian, so it cannot be installed on this project's machines; the report's
PDF/A-3b conformance is therefore NOT validated by veraPDF here. This module checks the
ISO 19005-3 level B requirements that can be read from the file's structure:

- the file is not encrypted and its trailer has an /ID (ISO 19005-3, 6.1.3);
- the header version is at most 1.7 (PDF/A-3 is based on ISO 32000-1);
- the XMP metadata identifies PDF/A part 3, conformance B (6.6.4), and where the document
  information dictionary has a /Title, the XMP dc:title says the same (6.6.3);
- an output intent with /S /GTS_PDFA1 whose /DestOutputProfile is an ICC profile (6.2.3);
- every font used on a page, in a Form XObject or as a descendant of a Type0 font is embedded
  (/FontFile, /FontFile2 or /FontFile3; 6.2.11.4), Type3 fonts being defined in the file;
- no JavaScript and no Launch actions (6.5.1, 6.6.1);
- every embedded file has an /AFRelationship and a MIME /Subtype (6.8).

It does not check what only a full validator can (glyph widths against the embedded font
programs, colour-space use against the output intent, every XMP schema): run veraPDF on the
output for that (docs/compliance.md, "PDF/A validation").
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pikepdf

_FONT_FILES = ("/FontFile", "/FontFile2", "/FontFile3")


def _fonts(resources: pikepdf.Dictionary | None, seen: set[tuple[int, int]]) -> Iterator[tuple[str, pikepdf.Object]]:
    """(name, font dictionary) of every font in `resources`, its Form XObjects and Type0 descendants."""
    if not isinstance(resources, pikepdf.Dictionary):
        return
    fonts = resources.get("/Font")
    if isinstance(fonts, pikepdf.Dictionary):
        for name, font in fonts.items():
            yield name, font
            for descendant in font.get("/DescendantFonts", pikepdf.Array()):
                yield f"{name} (descendant)", descendant
    xobjects = resources.get("/XObject")
    if isinstance(xobjects, pikepdf.Dictionary):
        for xobject in xobjects.values():
            key = xobject.objgen
            if xobject.get("/Subtype") == "/Form" and key not in seen:
                seen.add(key)
                yield from _fonts(xobject.get("/Resources"), seen)


def _font_problem(name: str, font: pikepdf.Object) -> str | None:
    subtype = font.get("/Subtype")
    if subtype == "/Type0":
        return None  # its descendant carries the descriptor (checked separately)
    if subtype == "/Type3":
        return None if "/CharProcs" in font else f"Type3 font {name} has no glyph procedures"
    descriptor = font.get("/FontDescriptor")
    if not isinstance(descriptor, pikepdf.Dictionary):
        return f"font {name} ({font.get('/BaseFont')}) has no font descriptor"
    if not any(key in descriptor for key in _FONT_FILES):
        return f"font {name} ({font.get('/BaseFont')}) is not embedded"
    return None


def _dictionaries(pdf: pikepdf.Pdf) -> Iterator[pikepdf.Object]:
    """Every dictionary (and stream dictionary) reachable from the trailer, direct objects included."""
    stack: list[pikepdf.Object] = [pdf.trailer]
    seen: set[tuple[int, int]] = set()
    while stack:
        obj = stack.pop()
        if not isinstance(obj, pikepdf.Dictionary | pikepdf.Stream | pikepdf.Array):
            continue  # names, numbers, strings: nothing inside
        if obj.is_indirect:
            if obj.objgen in seen:
                continue
            seen.add(obj.objgen)
        if isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            yield obj
            stack.extend(value for key, value in obj.items() if key != "/Parent")
        elif isinstance(obj, pikepdf.Array):
            stack.extend(obj)


def _actions(pdf: pikepdf.Pdf) -> Iterator[str]:
    for obj in _dictionaries(pdf):
        kind = obj.get("/S")
        if kind in ("/JavaScript", "/Launch"):
            yield f"a {str(kind)[1:]} action"
        elif "/JS" in obj:
            yield "JavaScript (a /JS entry)"


def _xmp_title(meta: pikepdf.models.PdfMetadata) -> str | None:
    title = meta.get("dc:title")
    return str(title) if title is not None else None


def pdfa_problems(path: Path) -> list[str]:
    """What keeps `path` from PDF/A-3b, as far as its structure shows (empty: nothing found)."""
    try:
        pdf = pikepdf.open(path)
    except pikepdf.PasswordError:
        return ["encrypted (needs a password)"]
    except pikepdf.PdfError as error:
        return [f"not a readable PDF ({error})"]
    with pdf:
        problems = []
        if pdf.is_encrypted or "/Encrypt" in pdf.trailer:
            problems.append("encrypted")
        if "/ID" not in pdf.trailer:
            problems.append("no /ID in the trailer")
        if pdf.pdf_version > "1.7":
            problems.append(f"PDF version {pdf.pdf_version} (PDF/A-3 is based on PDF 1.7)")
        if "/Metadata" not in pdf.Root:
            problems.append("no XMP metadata stream in the catalog")
        else:
            meta = pdf.open_metadata()
            if meta.pdfa_status != "3B":
                problems.append(f"XMP identifies PDF/A {meta.pdfa_status or 'nothing'}, not 3B")
            info_title = pdf.docinfo.get("/Title") if pdf.trailer.get("/Info") is not None else None
            if info_title is not None and _xmp_title(meta) != str(info_title):
                problems.append(f"Info /Title {str(info_title)!r} differs from XMP dc:title {_xmp_title(meta)!r}")
        intents = [i for i in pdf.Root.get("/OutputIntents", pikepdf.Array()) if i.get("/S") == "/GTS_PDFA1"]
        if not intents:
            problems.append("no /GTS_PDFA1 output intent")
        for intent in intents:
            profile = intent.get("/DestOutputProfile")
            data = profile.read_bytes() if isinstance(profile, pikepdf.Stream) else b""
            if data[36:40] != b"acsp":
                problems.append("the output intent's /DestOutputProfile is not an ICC profile")
        seen: set[tuple[int, int]] = set()
        for number, page in enumerate(pdf.pages, start=1):
            for name, font in _fonts(page.obj.get("/Resources"), seen):
                problem = _font_problem(str(name), font)
                if problem:
                    problems.append(f"page {number}: {problem}")
        problems.extend(_actions(pdf))
        names = pdf.Root.get("/Names")
        if isinstance(names, pikepdf.Dictionary) and "/JavaScript" in names:
            problems.append("document-level JavaScript")
        for name, attachment in pdf.attachments.items():
            spec = attachment.obj
            if "/AFRelationship" not in spec:
                problems.append(f"embedded file {name} has no /AFRelationship")
            stream = (spec.get("/EF") or {}).get("/F")
            if stream is None or "/Subtype" not in stream:
                problems.append(f"embedded file {name} has no MIME /Subtype")
        return list(dict.fromkeys(problems))


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m kommunmoln.compliance.pdfa FILE.pdf ...", file=sys.stderr)
        return 2
    bad = 0
    for path in paths:
        problems = pdfa_problems(path)
        bad += bool(problems)
        print(f"{'ok  ' if not problems else 'FAIL'} {path}" + "".join(f"\n     {p}" for p in problems))
    print("Structural PDF/A-3b checks only (pikepdf); veraPDF was not run (docs/compliance.md, 'PDF/A validation').")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
