"""Issue 11, item 9: a key already behind the tier B alias gets the template's key policy.

Custom::KmsHsmKey adopts a key that the alias already names in the expected key store (a
retried create, an adopted key store, a key made by hand). Before, it kept whatever policy it
had. Now the provisioner applies the template's policy with PutKeyPolicy, lockout guard on,
and refuses a key that carries grants. Against botocore's Stubber (the real KMS model).

AWS rules the scripted responses encode (KMS API Reference, PutKeyPolicy, "Policy"; looked up
with the search tool):
- with BypassPolicyLockoutSafetyCheck false, "the key policy must allow the principal that is
  making the PutKeyPolicy request to make a subsequent PutKeyPolicy request on the KMS key",
  else MalformedPolicyDocumentException ("the specified policy is not syntactically or
  semantically correct");
- the caller needs kms:PutKeyPolicy from the key's current policy, else AccessDeniedException.
KMS Developer Guide, "Grants in AWS KMS": a grant allows its grantee to use the key in
cryptographic operations alongside the key policy; ListGrants lists a key's grants.
"""

from __future__ import annotations

import pytest

from kommunmoln.tier_b import recorded
from lambdas.cloudhsm_provisioner import logic
from tests.controlplane import test_cloudhsm_provisioner as provisioner_tests
from tests.controlplane.test_cloudhsm_provisioner import POLICY, Stubs, key_event

stubs = provisioner_tests.stubs  # the provisioner tests' Stubber fixture (KMS, CloudHSM, Secrets Manager)

ALIAS = "alias/kommunmoln-exempel-tier-b"
PUT = {"KeyId": recorded.KEY_ID, "PolicyName": "default", "Policy": POLICY, "BypassPolicyLockoutSafetyCheck": False}
GRANT = {
    "KeyId": recorded.KEY_ARN,
    "GrantId": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "GranteePrincipal": f"arn:aws:iam::{recorded.ACCOUNT}:role/someone-else",
    "Operations": ["Decrypt"],
}


def _alias_names_a_key_in_the_store(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_key", recorded.key_metadata("Enabled"), {"KeyId": ALIAS})


def test_an_adopted_key_gets_the_template_policy_with_the_lockout_guard_on(stubs: Stubs) -> None:
    # GIVEN the alias already naming an Enabled key in the expected key store, with no grants
    _alias_names_a_key_in_the_store(stubs)
    stubs.kms.add_response("put_key_policy", {}, PUT)
    stubs.kms.add_response("list_grants", {"Grants": [], "Truncated": False}, {"KeyId": recorded.KEY_ID})
    # WHEN the custom resource is created
    result = logic.on_event(key_event(), stubs.clients, sleep=stubs.sleep)
    # THEN the key is adopted only after PutKeyPolicy applied the template's policy (Stubber checked the
    # parameters: policy name default, BypassPolicyLockoutSafetyCheck false) and no CreateKey was made
    assert result["PhysicalResourceId"] == recorded.KEY_ID
    stubs.kms.assert_no_pending_responses()


def test_an_adopted_key_the_lockout_check_refuses_fails_the_deployment(stubs: Stubs) -> None:
    # GIVEN KMS refusing the template policy under the lockout safety check
    _alias_names_a_key_in_the_store(stubs)
    stubs.kms.add_client_error(
        "put_key_policy", "MalformedPolicyDocumentException",
        "The new key policy will not allow you to update the key policy in the future.", expected_params=PUT,
    )  # fmt: skip
    # WHEN the resource is created THEN it fails and says why, instead of adopting the key as it is
    with pytest.raises(logic.ProvisioningError, match="ProvisionerAppliesTemplatePolicy"):
        logic.on_event(key_event(), stubs.clients, sleep=stubs.sleep)


def test_an_adopted_key_whose_policy_shuts_the_provisioner_out_is_not_adopted(stubs: Stubs) -> None:
    # GIVEN a pre-existing key whose own policy does not let the provisioner call PutKeyPolicy
    _alias_names_a_key_in_the_store(stubs)
    stubs.kms.add_client_error("put_key_policy", "AccessDeniedException", "not authorized", expected_params=PUT)
    # WHEN the resource is created THEN it fails with what the key administrator must do
    with pytest.raises(logic.ProvisioningError, match=r"is not adopted.*put-key-policy"):
        logic.on_event(key_event(), stubs.clients, sleep=stubs.sleep)


def test_an_adopted_key_with_grants_is_refused_after_its_policy_is_fixed(stubs: Stubs) -> None:
    # GIVEN a pre-existing key with a grant to another principal
    _alias_names_a_key_in_the_store(stubs)
    stubs.kms.add_response("put_key_policy", {}, PUT)
    stubs.kms.add_response("list_grants", {"Grants": [GRANT], "Truncated": False}, {"KeyId": recorded.KEY_ID})
    # WHEN the resource is created THEN adoption is refused, naming the grant and the revoke command
    with pytest.raises(logic.ProvisioningError, match=r"1 grant.*revoke-grant"):
        logic.on_event(key_event(), stubs.clients, sleep=stubs.sleep)


def test_grants_not_listable_yet_after_the_new_policy_fail_closed(stubs: Stubs) -> None:
    # GIVEN the template policy applied, but ListGrants still refused: KMS is eventually consistent, a
    # policy change usually propagates in seconds, sometimes minutes (KMS Developer Guide,
    # "AWS KMS eventual consistency")
    _alias_names_a_key_in_the_store(stubs)
    stubs.kms.add_response("put_key_policy", {}, PUT)
    stubs.kms.add_client_error("list_grants", "AccessDeniedException", "not authorized", expected_params=None)
    # WHEN the resource is created THEN the key is not adopted unchecked, and the error says to deploy again
    with pytest.raises(logic.ProvisioningError, match=r"not adopted.*deploy again"):
        logic.on_event(key_event(), stubs.clients, sleep=stubs.sleep)
