"""Compliance as code for OSL-protected storage: the cdk-nag rule pack and the evidence report.

    cdk.Validations.of(app).add_plugins(SwedishPublicSectorChecks(allowed_regions=("eu-north-1",)))

See `docs/compliance.md` for the requirements, the rules and what stays the municipality's
own responsibility.
"""

from __future__ import annotations

from kommunmoln.compliance.catalog import PACK_NAME, REQUIREMENTS, RULES
from kommunmoln.compliance.pack import SwedishPublicSectorChecks

__all__ = ["PACK_NAME", "REQUIREMENTS", "RULES", "SwedishPublicSectorChecks"]
