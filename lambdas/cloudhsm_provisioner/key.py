"""Custom::KmsHsmKey: a symmetric KMS key in the key store (Origin AWS_CLOUDHSM) and its alias.

Also tier C's Custom::KmsXksKey: with an XksKeyId property the key is created in an external key store
(Origin EXTERNAL_KEY_STORE, CreateKey's XksKeyId: "the ID of the external key ... in the external key manager").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from kommunmoln import names
from lambdas.cloudhsm_provisioner.common import (
    KEY_STORE_ID,
    LOG,
    Clients,
    ProvisioningError,
    Sleep,
    call,
    error_code,
    explain,
    flag,
    prop,
)

PENDING_WINDOW_DAYS = 30


@dataclass(frozen=True)
class KeyProps:
    key_store_id: str
    description: str
    policy: str
    alias: str
    workshop_mode: bool
    xks_key_id: str = ""  # tier C: the external key's id in the proxy; "" = a CloudHSM key store key

    @property
    def origin(self) -> str:
        return "EXTERNAL_KEY_STORE" if self.xks_key_id else "AWS_CLOUDHSM"

    @staticmethod
    def parse(props: Mapping[str, Any]) -> KeyProps:
        policy = prop(props, "KeyPolicy")
        try:
            parsed = json.loads(policy)
        except ValueError as err:
            raise ProvisioningError(f"property KeyPolicy is not JSON: {err}") from None
        if not isinstance(parsed, dict) or not parsed.get("Statement"):
            raise ProvisioningError("property KeyPolicy must be a policy document with statements")
        alias = prop(props, "AliasName", pattern=r"alias/[a-zA-Z0-9/_-]{1,250}")
        if alias.startswith("alias/aws/"):
            raise ProvisioningError("property AliasName must not start with alias/aws/ (reserved by AWS)")
        return KeyProps(
            key_store_id=prop(props, "CustomKeyStoreId", pattern=KEY_STORE_ID),
            description=str(props.get("Description", "")),
            policy=policy,
            alias=alias,
            workshop_mode=flag(props, "WorkshopMode"),
            # KMS API Reference, CreateKey XksKeyId: 1 to 128 characters of ^[a-zA-Z0-9-_.]+$.
            xks_key_id=prop(props, "XksKeyId", pattern=r"[a-zA-Z0-9_.-]{1,128}", allow_empty=True),
        )


def deployed_policy(environ: Mapping[str, str] = os.environ) -> str:
    """The key policy this provisioner was deployed with (its own environment, set at synthesis).

    The event's KeyPolicy is only compared with it: anyone allowed lambda:InvokeFunction on the
    provisioner could otherwise send a forged Update carrying a policy of their own. Fails closed
    when the environment lacks it.
    """
    policy = environ.get(names.ENV_EXPECTED_KEY_POLICY, "")
    if not policy:
        raise ProvisioningError(
            f"the provisioner has no {names.ENV_EXPECTED_KEY_POLICY} in its environment; it applies no key policy"
        )
    return policy


def deployed_workshop_mode(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the provisioner was deployed in workshop mode (its own environment; never the event's word alone)."""
    return environ.get(names.ENV_WORKSHOP_MODE, "false") == "true"


def _require_deployed_policy(props: KeyProps) -> None:
    if props.policy != deployed_policy():
        raise ProvisioningError(
            "the request's KeyPolicy differs from the key policy this provisioner was deployed with; it is "
            "refused. Only a deployment changes the key policy (docs/use-case-2.md#who-administers-the-key)"
        )


def _describe_key(kms: Any, key_id: str, *, sleep: Sleep) -> dict[str, Any] | None:
    try:
        return call(kms.describe_key, sleep=sleep, KeyId=key_id)["KeyMetadata"]
    except ClientError as err:
        if error_code(err) == "NotFoundException":
            return None
        raise


def _aliases_of(kms: Any, key_id: str, *, sleep: Sleep) -> list[str]:
    response = call(kms.list_aliases, sleep=sleep, KeyId=key_id)
    return [a["AliasName"] for a in response.get("Aliases", [])]


def _key_data(meta: Mapping[str, Any]) -> dict[str, str]:
    return {"KeyId": meta["KeyId"], "KeyArn": meta["Arn"]}


def _put_template_policy(props: KeyProps, kms: Any, key_id: str, *, sleep: Sleep) -> None:
    """PutKeyPolicy with AWS's lockout guard on; KMS's refusals become errors that say what to do.

    With BypassPolicyLockoutSafetyCheck false, KMS accepts a policy only if it lets the caller
    call PutKeyPolicy again (KMS API Reference, PutKeyPolicy, "Policy"); it refuses with
    MalformedPolicyDocumentException otherwise. The caller itself must be allowed PutKeyPolicy by
    the key's *current* policy, or KMS refuses with AccessDeniedException.
    """
    try:
        call(
            kms.put_key_policy,
            sleep=sleep,
            KeyId=key_id,
            PolicyName="default",
            Policy=props.policy,
            BypassPolicyLockoutSafetyCheck=False,
        )
    except ClientError as err:
        code = error_code(err)
        if code == "MalformedPolicyDocumentException":
            raise ProvisioningError(
                f"KMS refused the template key policy for key {key_id}: {explain(err)}. With the lockout safety "
                "check on, the policy must let this provisioner call PutKeyPolicy again (statement "
                "ProvisionerAppliesTemplatePolicy) and every principal in it must exist"
            ) from None
        if code == "AccessDeniedException":
            raise ProvisioningError(
                f"key {key_id} behind alias {props.alias} keeps a key policy that does not let this provisioner "
                "apply the template's policy; it is not adopted. A key administrator of that key must apply the "
                "template policy (aws kms put-key-policy) or move the alias, then deploy again"
            ) from None
        raise


def _adopt(props: KeyProps, kms: Any, key_id: str, *, sleep: Sleep) -> None:
    """An existing key behind the alias gets the template's policy, and no grant may bypass it.

    A pre-existing key (a retried create, an adopted key store, a key made by hand) would
    otherwise keep whatever policy it had. Grants allow use of a key alongside the key policy
    (KMS Developer Guide, "Grants in AWS KMS"), so a key that carries any grant is refused:
    the template creates none, and S3 with SSE-KMS needs none.
    """
    _put_template_policy(props, kms, key_id, sleep=sleep)
    try:
        grants = call(kms.list_grants, sleep=sleep, KeyId=key_id).get("Grants", [])
    except ClientError as err:
        if error_code(err) != "AccessDeniedException":
            raise
        # The template policy allows ListGrants, but KMS is eventually consistent: a policy change
        # usually takes seconds, sometimes minutes (KMS Developer Guide, "AWS KMS eventual consistency").
        raise ProvisioningError(
            f"key {key_id} got the template policy but its grants could not be listed yet ({explain(err)}); "
            "it is not adopted. KMS applies policy changes with a delay of seconds to minutes: deploy again"
        ) from None
    if grants:
        ids = ", ".join(g.get("GrantId", "?")[:12] for g in grants)
        raise ProvisioningError(
            f"key {key_id} behind alias {props.alias} carries {len(grants)} grant(s) ({ids}...) that allow its use "
            "outside the key policy; it got the template policy but is not adopted. Review and revoke them "
            f"(aws kms list-grants --key-id {key_id}; aws kms revoke-grant), then deploy again"
        )
    LOG.info("adopted key %s: template key policy applied, no grants", key_id)


def _create_key(props: KeyProps, kms: Any, *, sleep: Sleep, replacing: bool) -> dict[str, Any]:
    current = _describe_key(kms, props.alias, sleep=sleep)
    if (
        current is not None
        and not replacing
        and current.get("CustomKeyStoreId") == props.key_store_id
        and current.get("KeyState") != "PendingDeletion"
        and current.get("XksKeyConfiguration", {}).get("Id", "") == props.xks_key_id
    ):
        LOG.info("alias %s already names key %s in the key store; adopting it", props.alias, current["KeyId"])
        _adopt(props, kms, current["KeyId"], sleep=sleep)
        return current
    if current is not None and not replacing:
        raise ProvisioningError(
            f"alias {props.alias} already names key {current['KeyId']} outside custom key store {props.key_store_id}"
        )
    meta = call(
        kms.create_key,
        sleep=sleep,
        Policy=props.policy,
        Description=props.description,
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
        Origin=props.origin,
        CustomKeyStoreId=props.key_store_id,
        BypassPolicyLockoutSafetyCheck=False,
        **({"XksKeyId": props.xks_key_id} if props.xks_key_id else {}),
    )["KeyMetadata"]
    LOG.info("created KMS key %s in custom key store %s", meta["KeyId"], props.key_store_id)
    if current is None:
        call(kms.create_alias, sleep=sleep, AliasName=props.alias, TargetKeyId=meta["KeyId"])
    else:  # a new key for the same alias: the manual rotation step (alias switch)
        call(kms.update_alias, sleep=sleep, AliasName=props.alias, TargetKeyId=meta["KeyId"])
    return meta


def key_on_event(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    request = event["RequestType"]
    props = KeyProps.parse(event["ResourceProperties"])
    kms = clients.kms
    if request != "Delete":
        _require_deployed_policy(props)
    if request == "Create":
        meta = _create_key(props, kms, sleep=sleep, replacing=False)
        return {"PhysicalResourceId": meta["KeyId"], "Data": _key_data(meta)}
    key_id = event["PhysicalResourceId"]
    if request == "Delete":
        return _key_delete(key_id, props, kms, sleep=sleep)
    old = KeyProps.parse(event.get("OldResourceProperties", {}))
    if old.key_store_id != props.key_store_id or old.xks_key_id != props.xks_key_id:
        meta = _create_key(props, kms, sleep=sleep, replacing=True)  # CloudFormation then deletes the old one
        return {"PhysicalResourceId": meta["KeyId"], "Data": _key_data(meta)}
    meta = _describe_key(kms, key_id, sleep=sleep)
    if meta is None:
        raise ProvisioningError(f"KMS key {key_id} not found; it was deleted outside CloudFormation")
    if props.policy != old.policy:
        _put_template_policy(props, kms, key_id, sleep=sleep)
    if props.description != old.description:
        call(kms.update_key_description, sleep=sleep, KeyId=key_id, Description=props.description)
    if props.alias != old.alias:
        call(kms.create_alias, sleep=sleep, AliasName=props.alias, TargetKeyId=key_id)
        if old.alias in _aliases_of(kms, key_id, sleep=sleep):
            call(kms.delete_alias, sleep=sleep, AliasName=old.alias)
    return {"PhysicalResourceId": key_id, "Data": _key_data(meta)}


def _key_delete(key_id: str, props: KeyProps, kms: Any, *, sleep: Sleep) -> dict[str, Any]:
    if not (props.workshop_mode and deployed_workshop_mode()):  # a forged Delete cannot claim workshop mode
        LOG.info("KMS key %s is retained (not workshop mode)", key_id)
        return {"PhysicalResourceId": key_id}
    meta = _describe_key(kms, key_id, sleep=sleep)
    if meta is None:
        return {"PhysicalResourceId": key_id}
    if props.alias in _aliases_of(kms, key_id, sleep=sleep):  # never remove an alias switched to a newer key
        call(kms.delete_alias, sleep=sleep, AliasName=props.alias)
    if meta.get("KeyState") != "PendingDeletion":
        call(kms.schedule_key_deletion, sleep=sleep, KeyId=key_id, PendingWindowInDays=PENDING_WINDOW_DAYS)
        LOG.info("scheduled deletion of KMS key %s in %d days", key_id, PENDING_WINDOW_DAYS)
    return {"PhysicalResourceId": key_id}


def key_is_complete(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    key_id = event["PhysicalResourceId"]
    meta = _describe_key(clients.kms, key_id, sleep=sleep)
    if meta is None:
        raise ProvisioningError(f"KMS key {key_id} not found")
    state = meta.get("KeyState")
    if state == "Enabled":
        return {"IsComplete": True, "Data": _key_data(meta)}
    if state in ("Creating", "Updating"):
        return {"IsComplete": False}
    raise ProvisioningError(
        f"KMS key {key_id} is {state}: "
        + (
            "its custom key store is not connected; connect it (aws kms connect-custom-key-store)"
            if state == "Unavailable"
            else "enable it or cancel its deletion"
        )
    )
