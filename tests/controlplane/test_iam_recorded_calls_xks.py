"""Every AWS call the tier C (XKS) provisioner makes in its flows is allowed by its synthesized role.

The same check as test_iam_recorded_calls.py (issue 10 defect 4) for the third Lambda that provisions:
the tier C provisioner's Stubber flows (test_xks_provisioner.py, each scripted answer citing the KMS API
reference) run again with a botocore hook recording every call, and each (action, resource) must be allowed
by the policies attached to the provisioner's role in the synthesized tier C template.
"""

from __future__ import annotations

import logging

import pytest

from tests.conftest import Synthesized
from tests.controlplane import iam_check
from tests.controlplane import test_xks_provisioner as flows
from tests.infrastructure.test_tier_c_stack import public  # noqa: F401 - the synthesized tier C app (a fixture)

REGION, ACCOUNT = flows.REGION, flows.ACCOUNT
# The key handler applies only the policy its environment holds (tests/controlplane/conftest.py reads POLICY).
POLICY = flows.POLICY


def test_every_call_of_the_xks_provisioner_is_allowed_by_its_role(
    public: Synthesized,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN the provisioner's create, connect, update (connected and disconnected) and key flows, recorded
    recorder = iam_check.Recorder()
    for client in (flows._clients().kms, flows._clients().secrets, flows._clients().ec2):
        recorder.attach(client)
    try:
        for run in (
            lambda s: flows.test_create_makes_an_external_key_store_and_starts_connecting(s, "PUBLIC_ENDPOINT", caplog),
            flows.test_connecting_is_not_complete_and_connected_is,
            flows.test_a_rotated_credential_is_given_to_kms_while_connected,
            flows.test_a_new_endpoint_is_refused_while_connected_and_applied_when_disconnected,
            flows.test_the_key_is_created_in_the_external_key_store_with_its_external_key_id,
        ):
            with flows.Stubs() as stubs:
                run(stubs)
    finally:
        recorder.detach()
    caplog.set_level(logging.WARNING)
    actions = {c.action for c in recorder.calls}
    assert {"kms:CreateCustomKeyStore", "kms:ConnectCustomKeyStore", "kms:UpdateCustomKeyStore", "kms:CreateKey",
            "kms:CreateAlias", "secretsmanager:GetSecretValue"} <= actions  # fmt: skip
    # AND the role policy of each tier C provisioner function in the template
    template = public.template("-tier-c")
    functions = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                 and "lambdas.xks_provisioner.handler" in str(r["Properties"].get("Handler", ""))]  # fmt: skip
    assert len(functions) == 2
    arns = iam_check.Arns("aws", REGION, ACCOUNT, resolve_key=lambda k: k.rsplit("/", 1)[-1])
    for function in functions:
        # THEN no recorded call would be denied
        missing = iam_check.denied(recorder.calls, iam_check.role_statements(template, function), arns)
        assert missing == [], f"{function}: {missing}"
