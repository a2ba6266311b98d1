"""Fixtures shared by the policy matrices: the app synthesized with tier B's key store enabled."""

from __future__ import annotations

import pytest

from tests.conftest import Synthesized, synthesize
from tests.infrastructure.test_tier_b_stack import _write_trust_anchor


@pytest.fixture(scope="session")
def phase2(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Phase 2 (key store, HSM key, SSE-KMS data bucket), synthesized once for every tier B matrix."""
    trust_anchor = _write_trust_anchor(tmp_path_factory.mktemp("pki") / "trust-anchor.pem")
    context = {"tier_b_keystore_enabled": True, "tier_b_trust_anchor_path": str(trust_anchor.resolve())}
    return synthesize(tmp_path_factory.mktemp("cdk.out.policy-phase2"), context)
