"""The DPIA annex's data-flow diagram puts each component in the zone where it runs (review item 4)."""

from __future__ import annotations

import re

import pytest

from kommunmoln.compliance import dpia


@pytest.mark.parametrize("language", ["en", "sv"])
def test_xks_proxy_is_drawn_on_the_municipalitys_premises(language: str) -> None:
    # GIVEN the data-flow diagram WHEN drawn THEN the XKS proxy (tier C) is in the on-premises zone, not at AWS:
    # it runs at the municipality and AWS KMS calls it over the XKS API
    assert dpia.zone_of("xks") == dpia.ON_PREMISES
    assert dpia.zone_of("kms") == dpia.AT_AWS and dpia.zone_of("s3") == dpia.AT_AWS
    # AND in the Mermaid text it is inside the municipality's subgraph and no AWS node names it
    text = dpia.mermaid(language)
    premises = text.split("subgraph premises")[1].split("  end")[0]
    aws = text.split("subgraph aws")[1].split("  end")[0]
    assert "XKS" in premises and "XKS" not in aws
    assert "kms -- " in text and "--> xks" in text
    # AND in the SVG its box is in the left (municipality) column
    svg = dpia.svg(language)
    boxes = re.findall(r'<text x="(\d+(?:\.\d+)?)" y="\d+(?:\.\d+)?">([^<]*)</text>', svg)
    xks = [float(x) for x, label in boxes if "XKS" in label]
    aws_x = min(float(x) for x, label in boxes if "Amazon S3" in label)
    assert xks and all(x < aws_x for x in xks)


def test_a_node_outside_the_diagram_has_no_zone() -> None:
    with pytest.raises(KeyError, match="no-such-node"):
        dpia.zone_of("no-such-node")
