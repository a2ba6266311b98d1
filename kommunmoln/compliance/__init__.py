"""Compliance as code for OSL-protected storage: the cdk-nag rule pack and the evidence report.

    cdk.Validations.of(app).add_plugins(SwedishPublicSectorChecks(allowed_regions=("eu-north-1",)))

See `docs/compliance.md` for the requirements, the rules and what stays the municipality's
own responsibility.
"""

from __future__ import annotations

from typing import Any

from kommunmoln.compliance.catalog import PACK_NAME, REQUIREMENTS, RULES

__all__ = ["PACK_NAME", "REQUIREMENTS", "RULES", "SwedishPublicSectorChecks"]


def __getattr__(name: str) -> Any:
    """The cdk-nag pack is imported on first use: the pytest results plugin (`results.py`) is loaded
    by every test run and must not start the CDK's jsii runtime."""
    if name == "SwedishPublicSectorChecks":
        from kommunmoln.compliance.pack import SwedishPublicSectorChecks

        return SwedishPublicSectorChecks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
