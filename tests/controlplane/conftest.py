"""The key provisioner's deployment environment for the control-plane tests.

The key handler applies only the key policy its own environment holds (set at synthesis); these
tests send events with their module's POLICY, so the environment holds that one.
"""

from __future__ import annotations

import pytest

from kommunmoln import names


@pytest.fixture(autouse=True)
def deployed_key_policy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = getattr(request.module, "POLICY", None)
    if policy is not None:
        monkeypatch.setenv(names.ENV_EXPECTED_KEY_POLICY, policy)
    monkeypatch.setenv(names.ENV_WORKSHOP_MODE, "true")
