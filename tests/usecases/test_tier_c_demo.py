"""The tier C demo (`make demo`): the proxy flow on SoftHSM2 and the stack's KMS control plane on Stubber.

The control plane is the custom resources' own handler (lambdas/xks_provisioner); its rules, one scripted
KMS answer per documented behaviour, are tested in tests/controlplane/test_xks_provisioner.py.
"""

from __future__ import annotations

import pytest

from kommunmoln.tier_c import local
from usecases import tier_c_demo


@pytest.mark.softhsm
@pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)")
def test_demo_runs_the_proxy_flow_and_the_control_plane(capsys):
    assert tier_c_demo.main() == 0
    out = capsys.readouterr().out
    assert "data key recovered: True" in out
    assert "Next Decrypt -> 400 InvalidStateException" in out
    assert "chain intact" in out
    assert "fails the deployment at once: XKS_PROXY_INVALID_TLS_CONFIGURATION" in out


def test_demo_control_plane_is_the_stacks_provisioner_on_recorded_responses(capsys):
    # GIVEN recorded KMS and Secrets Manager answers WHEN the demo drives the custom resources' handler
    # THEN the store is created and connected, the key is created in it, and a FAILED store fails at once
    tier_c_demo.control_plane()  # Stubber raises on any request the recording does not expect
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Custom::KmsExternalKeyStore: CreateCustomKeyStore EXTERNAL_KEY_STORE -> cks-")
    assert out[0].endswith("CONNECTED after 2 polls")
    assert out[1].startswith("Custom::KmsXksKey: CreateKey Origin=EXTERNAL_KEY_STORE XksKeyId=sekretess-s3-data")
    assert "XKS_PROXY_INVALID_TLS_CONFIGURATION" in out[2] and "certificate" in out[3]
