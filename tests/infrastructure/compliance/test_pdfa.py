"""The filed PDFs pass the structural PDF/A-3b checks (kommunmoln/compliance/pdfa.py), and each check can fail.

veraPDF is not run here (a Java application outside PyPI and Debian): these are the ISO 19005-3
level B requirements readable with pikepdf. Each mutation below breaks one of them in a copy of a
real report and must be named by the check.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pikepdf
import pytest

from kommunmoln.compliance.checks import Evaluator, Options
from kommunmoln.compliance.model import AppModel
from kommunmoln.compliance.pdf import DOCUMENTS, LANGUAGES, write_pdfs
from kommunmoln.compliance.pdfa import main, pdfa_problems
from kommunmoln.compliance.report import Evidence, _pack_rows
from tests.infrastructure.compliance.fixtures import REGION, GoodStack


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("pdfa-app")
    app = cdk.App(outdir=str(outdir))
    GoodStack(app, "Good")
    app.synth()
    model = AppModel.from_outdir(outdir)
    options = Options((REGION,))
    evidence = Evidence(
        config={"municipality": "Exempelkommun"},
        rows=_pack_rows(Evaluator(model, options), {}, {}, {}),
        provenance={"generated (UTC)": "2026-12-02T10:00:00Z", "git commit": "0" * 40},
        model=model,
        options=options,
    )
    written = write_pdfs(evidence, tmp_path_factory.mktemp("pdfa"))
    return {p.name: p for p in written if p.suffix == ".pdf"}


def test_every_filed_pdf_passes_the_structural_pdfa_3b_checks(pdfs: dict[str, Path], capsys) -> None:
    # GIVEN every document in both languages  WHEN checked  THEN nothing is found, and the CLI says veraPDF was not run
    expected = {f"{name}.{language}.pdf" for name in DOCUMENTS for language in LANGUAGES}
    assert expected <= set(pdfs)
    for name in sorted(expected):
        assert pdfa_problems(pdfs[name]) == [], name
    assert main([str(pdfs[n]) for n in sorted(expected)]) == 0
    assert "veraPDF was not run" in capsys.readouterr().out


def _mutated(source: Path, target: Path, mutate, **save) -> Path:
    with pikepdf.open(source) as pdf:
        mutate(pdf)
        pdf.save(target, **save)
    return target


def _unembed_first_font(pdf: pikepdf.Pdf) -> None:
    for page in pdf.pages:
        for font in page.obj.Resources.get("/Font", {}).values():
            for descendant in font.get("/DescendantFonts", [font]):
                descriptor = descendant.get("/FontDescriptor")
                for key in ("/FontFile", "/FontFile2", "/FontFile3"):
                    if descriptor is not None and key in descriptor:
                        del descriptor[key]
                        return
    raise AssertionError("no embedded font found to remove")


def _claim_part_2(pdf: pikepdf.Pdf) -> None:
    with pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=False) as meta:
        meta["pdfaid:part"] = "2"


def _retitle_info(pdf: pikepdf.Pdf) -> None:
    pdf.docinfo["/Title"] = "Another title"


def _javascript(pdf: pikepdf.Pdf) -> None:
    pdf.Root.OpenAction = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))


def _attach_without_relationship(pdf: pikepdf.Pdf) -> None:
    pdf.attachments["data.json"] = pikepdf.AttachedFileSpec(pdf, b"{}", mime_type="application/json")
    spec = pdf.attachments["data.json"].obj
    if "/AFRelationship" in spec:
        del spec["/AFRelationship"]


@pytest.mark.parametrize(
    ("mutate", "save", "named"),
    [
        (lambda pdf: pdf.Root.__delattr__("OutputIntents"), {}, "no /GTS_PDFA1 output intent"),
        (_unembed_first_font, {}, "is not embedded"),
        (_claim_part_2, {}, "not 3B"),
        (_retitle_info, {}, "differs from XMP dc:title"),
        (_javascript, {}, "JavaScript"),
        (_attach_without_relationship, {}, "no /AFRelationship"),
        (lambda pdf: None, {"encryption": pikepdf.Encryption(owner="o", user="", R=6)}, "encrypted"),
        (lambda pdf: None, {"min_version": "2.0"}, "PDF version 2.0"),
    ],
    ids=["output-intent", "font", "pdfaid", "title", "javascript", "attachment", "encrypted", "version"],
)
def test_each_broken_requirement_is_named(pdfs: dict[str, Path], tmp_path: Path, mutate, save, named: str) -> None:
    # GIVEN a copy of the English report with one PDF/A requirement broken  WHEN checked  THEN that break is named
    broken = _mutated(pdfs["compliance-report.en.pdf"], tmp_path / "broken.pdf", mutate, **save)
    problems = pdfa_problems(broken)
    assert any(named in p for p in problems), problems
    assert main([str(broken)]) == 1
