"""The DPIA annex (GDPR Art. 35): what AWS sees per tier, a data-flow diagram, the key policies.

The key policies are exported as they stand in the synthesized templates (intrinsic functions kept
as `${Ref}` placeholders by `model.flatten`), so the annex shows exactly what CloudFormation will
deploy. The diagram is given as Mermaid text (for Markdown viewers) and as an SVG drawn here (for
the PDF). The annex is input to the municipality's DPIA, not the DPIA itself.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kommunmoln import names
from kommunmoln.compliance.model import AppModel, policy_document, properties

KEY_TYPES = ("AWS::KMS::Key", names.RESOURCE_KMS_HSM_KEY, names.RESOURCE_KMS_XKS_KEY)
_DEFAULT_ORIGIN = {
    "AWS::KMS::Key": "AWS_KMS",
    names.RESOURCE_KMS_HSM_KEY: "AWS_CLOUDHSM",
    names.RESOURCE_KMS_XKS_KEY: "EXTERNAL_KEY_STORE",
}


@dataclass(frozen=True)
class KeyPolicy:
    stack: str
    logical_id: str
    resource_type: str
    description: str
    origin: str
    document: dict[str, Any] | None  # None: the template's policy could not be read as JSON

    @property
    def file_name(self) -> str:
        return f"{self.stack}.{self.logical_id}.json"

    def text(self) -> str:
        if self.document is None:
            return "(the policy could not be read from the template: not checked)"
        return json.dumps(self.document, indent=2, sort_keys=True)


def key_policies(model: AppModel) -> list[KeyPolicy]:
    """Every KMS key of the app (AWS::KMS::Key, the HSM-backed and the external-key-store custom resources)."""
    found = []
    for resource_type in KEY_TYPES:
        for ref, key in model.all_of_type(resource_type):
            props = properties(key)
            description = props.get("Description")
            found.append(
                KeyPolicy(
                    stack=model.stacks[ref.stack].display_name,
                    logical_id=ref.logical_id,
                    resource_type=resource_type,
                    description=description if isinstance(description, str) else "",
                    origin=str(props.get("Origin") or _DEFAULT_ORIGIN[resource_type]),
                    document=policy_document(props.get("KeyPolicy")),
                )
            )
    return sorted(found, key=lambda k: (k.stack, k.logical_id))


def export_key_policies(policies: list[KeyPolicy], directory: Path) -> list[Path]:
    """Write one JSON file per key policy (the annex's exported key policies)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for policy in policies:
        path = directory / policy.file_name
        path.write_text(policy.text() + "\n", encoding="utf-8")
        written.append(path)
    return written


# --- the data-flow diagram ---------------------------------------------------------------------
ON_PREMISES, AT_AWS = 0, 1  # the diagram's two zones (columns): the municipality's premises, the provider
ZONE_NAMES = {
    ON_PREMISES: ("Municipality (on premises)", "Kommunen (egna lokaler)"),
    AT_AWS: ("AWS (provider)", "AWS (leverantören)"),
}
# (id, label en, label sv, zone, y row). The XKS proxy and its HSM run on the municipality's premises
# (tier C: AWS KMS calls them over the XKS API); CloudHSM (tier B) is operated by AWS for the municipality.
_NODES = (
    ("user", "Municipality staff", "Kommunens personal", ON_PREMISES, 0),
    ("client", "kommunmoln client (tier A encrypts here)", "kommunmoln-klient (nivå A krypterar här)", ON_PREMISES, 1),
    ("keys", "Municipality keys / HSM, escrow offline", "Kommunens nycklar / HSM, deposition offline", ON_PREMISES, 2),
    ("xks", "XKS proxy + municipality HSM (tier C)", "XKS-proxy + kommunens HSM (nivå C)", ON_PREMISES, 3),
    ("trail", "CloudTrail, access logs, alarms (at AWS)", "CloudTrail, åtkomstloggar, larm (hos AWS)", AT_AWS, 0),
    ("s3", "Amazon S3 bucket (eu-north-1)", "Amazon S3-bucket (eu-north-1)", AT_AWS, 1),
    ("kms", "AWS KMS + CloudHSM (tier B)", "AWS KMS + CloudHSM (nivå B)", AT_AWS, 3),
)
# (from, to, label en, label sv)
_EDGES = (
    ("user", "client", "files", "filer"),
    ("client", "keys", "wrap/unwrap data keys (A)", "slå in/packa upp datanycklar (A)"),
    ("client", "s3", "TLS: ciphertext (A) / plaintext (B, C)", "TLS: chiffertext (A) / klartext (B, C)"),
    ("s3", "kms", "GenerateDataKey / Decrypt (B, C)", "GenerateDataKey / Decrypt (B, C)"),
    ("kms", "xks", "XKS API: encrypt / decrypt (C)", "XKS-API: kryptera / dekryptera (C)"),
    ("s3", "trail", "data events, access logs", "datahändelser, åtkomstloggar"),
)


def zone_of(node_id: str) -> int:
    """The zone (ON_PREMISES or AT_AWS) a node of the diagram is drawn in."""
    zones = {node[0]: node[3] for node in _NODES}
    if node_id not in zones:
        raise KeyError(f"the diagram has no node {node_id!r}")
    return zones[node_id]


def mermaid(language: str = "en") -> str:
    """The data-flow diagram as Mermaid flowchart text, one subgraph per zone."""
    index = 1 if language == "en" else 2
    lines = ["flowchart LR"]
    for zone, subgraph in ((ON_PREMISES, "premises"), (AT_AWS, "aws")):
        lines.append(f'  subgraph {subgraph}["{ZONE_NAMES[zone][index - 1]}"]')
        lines += [f'    {node[0]}["{node[index]}"]' for node in _NODES if node[3] == zone]
        lines.append("  end")
    lines += [f'  {edge[0]} -- "{edge[index + 1]}" --> {edge[1]}' for edge in _EDGES]
    return "\n".join(lines)


def svg(language: str = "en") -> str:
    """The same diagram drawn as SVG (boxes in two columns: the municipality, AWS)."""
    esc = html.escape
    width, box_w, box_h, row_h = 780, 285, 46, 95
    rows = 1 + max(node[4] for node in _NODES)
    col_x = (5, 490)
    top = 40
    index = 1 if language == "en" else 2
    centre = {}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {top + rows * row_h}" '
        'font-family="DejaVu Sans, sans-serif" font-size="10">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
        *(
            f'<text x="{col_x[zone]}" y="20" font-weight="bold">{esc(ZONE_NAMES[zone][index - 1])}</text>'
            for zone in (ON_PREMISES, AT_AWS)
        ),
    ]
    for node in _NODES:
        x, y = col_x[node[3]], top + node[4] * row_h
        centre[node[0]] = (x + box_w / 2, y + box_h / 2, x, y)
        parts.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="#eef" stroke="#336"/>')
        parts.append(f'<text x="{x + 8}" y="{y + 27}">{esc(node[index])}</text>')
    for source, target, *labels in _EDGES:
        sx, sy, _, _ = centre[source]
        tx, ty, _, _ = centre[target]
        if abs(sx - tx) < 1:  # same column: vertical arrow between boxes
            y1, y2 = (sy + box_h / 2, ty - box_h / 2) if ty > sy else (sy - box_h / 2, ty + box_h / 2)
            x1 = x2 = sx
        else:
            x1, x2 = (sx + box_w / 2, tx - box_w / 2) if tx > sx else (sx - box_w / 2, tx + box_w / 2)
            y1, y2 = sy, ty
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#333" marker-end="url(#arrow)"/>')
        label = esc(labels[index - 1])
        if x1 == x2:  # beside a vertical arrow, on the side away from the page edge
            side = f'x="{x1 - 5}" text-anchor="end"' if x1 > width / 2 else f'x="{x1 + 5}"'
            parts.append(f'<text {side} y="{(y1 + y2) / 2 + 3}" fill="#533">{label}</text>')
        else:  # centred above a horizontal arrow
            parts.append(
                f'<text x="{(x1 + x2) / 2}" y="{(y1 + y2) / 2 - 5}" text-anchor="middle" fill="#533">{label}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)
