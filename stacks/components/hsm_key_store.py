"""The kmsuser secret, the KMS custom key store and the HSM-backed KMS key (tier B phase 2).

`AWS::KMS::Key` has no CustomKeyStoreId, so the key store and the key are custom resources
(`Custom::KmsCustomKeyStore`, `Custom::KmsHsmKey`) served by the HsmProvisioner.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import region_info
from constructs import Construct

from kommunmoln import names
from stacks.compliance import acknowledge
from stacks.components.cloudhsm import CloudHsmCluster, CloudHsmHsms, HsmProvisioner, finding_arn
from stacks.components.lifecycle import removal_policy, supporting_key
from stacks.components.network import IsolatedNetwork, endpoint_perimeter

# Key administration without any cryptographic use and without kms:CreateGrant (a grant
# could hand an administrator the use of the key). Written out: no `kms:*`, no wildcards.
KEY_ADMIN_ACTIONS = (
    "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ListKeyPolicies", "kms:ListResourceTags",
    "kms:ListGrants", "kms:RevokeGrant", "kms:ListAliases", "kms:CreateAlias", "kms:UpdateAlias",
    "kms:DeleteAlias", "kms:UpdateKeyDescription", "kms:EnableKey", "kms:DisableKey", "kms:TagResource",
    "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
)  # fmt: skip
# What the account (the monitor, auditors) may read without any administrative right.
KEY_READ_ACTIONS = (
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:ListGrants",
    "kms:GetKeyRotationStatus",
)
# CloudTrail event names of key changes that alarm (management events of kms.amazonaws.com).
KEY_CHANGE_EVENT_NAMES = (
    "PutKeyPolicy",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CreateGrant",
    "DisconnectCustomKeyStore",
    "UpdateCustomKeyStore",
    "DeleteCustomKeyStore",
)
# What S3 needs from the caller's key permissions for SSE-KMS (with S3 Bucket Keys).
KEY_USAGE_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey")


class KmsUserSecret(Construct):
    """The initial `kmsuser` password, generated and encrypted with a customer-managed key.

    The operator creates the `kmsuser` crypto user with this password (from the admin host)
    and CreateCustomKeyStore hands it to KMS. KMS then rotates kmsuser's password itself
    on every connect, so this value is only the initial credential; after an
    INVALID_CREDENTIALS failure the runbook sets a new password on the HSM, stores it here
    and calls UpdateCustomKeyStore (docs/use-case-2.md#kmsuser-password).

    Also adds a Secrets Manager interface endpoint so the provisioner and the admin host
    reach the secret from the isolated VPC.

    Attributes:
        secret: the Secrets Manager secret.
        key: the KMS key encrypting it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, network: IsolatedNetwork, workshop_mode: bool) -> None:
        super().__init__(scope, construct_id)
        self.key = supporting_key(
            self,
            "Key",
            description="Encrypts the initial kmsuser password of the tier B custom key store",
            workshop_mode=workshop_mode,
        )
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description="Initial password of the CloudHSM crypto user kmsuser (KMS rotates it on connect)",
            encryption_key=self.key,
            # CloudHSM passwords: 7-32 characters; punctuation is excluded because the CLI and
            # KMS reject or mangle some of it.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=32, exclude_punctuation=True, include_space=False, require_each_included_type=True
            ),
            removal_policy=removal_policy(workshop_mode=workshop_mode),
        )
        rotation_reason = (
            "KMS rotates the kmsuser password itself each time it connects the custom key store; a Secrets "
            "Manager rotation would desynchronise it. Manual rotation runbook: docs/use-case-2.md#kmsuser-password."
        )
        resource = self.secret.node.default_child
        acknowledge(resource, "AwsSolutions::AwsSolutions-SMG4", rotation_reason)
        acknowledge(resource, "NIST.800.53.R5::NIST.800.53.R5-SecretsManagerRotationEnabled", rotation_reason)

        account = cdk.Stack.of(self).account
        self.endpoint = ec2.InterfaceVpcEndpoint(
            self,
            "SecretsManagerEndpoint",
            vpc=network.vpc,
            service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            subnets=network.subnets,
            private_dns_enabled=True,
            security_groups=[network.endpoint_security_group],
            open=False,
        )
        self.endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="OnlyThisAccountsPrincipalsAndResources",
                principals=[iam.AnyPrincipal()],
                actions=["*"],
                resources=["*"],
                conditions=endpoint_perimeter(account),
            )
        )


class HsmKeyStore(Construct):
    """The KMS custom key store on the cluster (`Custom::KmsCustomKeyStore`).

    Creates and connects the key store (or reconnects `existing_key_store_id`). Retained
    unless workshop mode; in workshop mode the handler deletes it only when it holds no keys.

    Attributes:
        resource: the CustomResource.
        key_store_id: the custom key store id (cks-...).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        provisioner: HsmProvisioner,
        cluster: CloudHsmCluster,
        hsms: CloudHsmHsms,
        secret: KmsUserSecret,
        key_store_name: str,
        trust_anchor_file: Path | None,
        existing_key_store_id: str,
        workshop_mode: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        trust_anchor = trust_anchor_file.read_text(encoding="ascii").strip() if trust_anchor_file else ""
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provisioner.provider.service_token,
            resource_type="Custom::KmsCustomKeyStore",
            properties={
                "ClusterId": cluster.cluster_id,
                "KeyStoreName": key_store_name,
                "TrustAnchorCertificate": trust_anchor,
                "KeyStorePasswordSecretArn": secret.secret.secret_arn,
                "ExistingKeyStoreId": existing_key_store_id,
                "WorkshopMode": str(workshop_mode).lower(),
            },
            removal_policy=removal_policy(workshop_mode=workshop_mode),
        )
        # CreateCustomKeyStore needs two active HSMs in different zones.
        self.resource.node.add_dependency(hsms.resource)
        self.key_store_id = self.resource.get_att_string("CustomKeyStoreId")
        _grant_key_store(provisioner, secret)


def _grant_key_store(provisioner: HsmProvisioner, secret: KmsUserSecret) -> None:
    stack = cdk.Stack.of(provisioner)
    provisioner.allow(
        ["kms:CreateCustomKeyStore", "kms:ConnectCustomKeyStore", "kms:DescribeCustomKeyStores",
         "kms:DisconnectCustomKeyStore", "kms:DeleteCustomKeyStore", "kms:UpdateCustomKeyStore", "kms:ListKeys"],
        ["*"],
        sid="CustomKeyStores",
    )  # fmt: skip
    provisioner.allow(["secretsmanager:GetSecretValue"], [secret.secret.secret_arn], sid="ReadKmsUserPassword")
    provisioner.allow(
        ["kms:Decrypt"],
        [secret.key.key_arn],
        sid="DecryptKmsUserPassword",
        conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"}},
    )
    # KMS creates its service-linked role for custom key stores on the first CreateCustomKeyStore.
    provisioner.allow(
        ["iam:CreateServiceLinkedRole"],
        [
            f"arn:{stack.partition}:iam::{stack.account}:role/aws-service-role/cks.kms.amazonaws.com/"
            "AWSServiceRoleForKeyManagementServiceCustomKeyStores"
        ],
        sid="KmsCustomKeyStoreServiceLinkedRole",
        conditions={"StringEquals": {"iam:AWSServiceName": "cks.kms.amazonaws.com"}},
    )


class HsmKey(Construct):
    """The symmetric KMS key in the custom key store (`Custom::KmsHsmKey`) with its alias.

    Key policy (a JSON document, no `kms:*` anywhere):
      * the account root may *administer* the key (KEY_ADMIN_ACTIONS only). This is the
        lockout guard AWS documents ("allows the account to use IAM policies ... prevents the
        key from becoming unmanageable"), narrowed from the default `kms:*` to administration:
        IAM can never grant anyone cryptographic use of this key, only the key policy can;
      * `admin_role` may administer but not use the key;
      * `usage_role` may Encrypt/Decrypt/GenerateDataKey* only through S3 in this Region
        (`kms:ViaService`), i.e. only as SSE-KMS for the bucket.
    A key administrator can still rewrite the policy (PutKeyPolicy); that is inherent to
    KMS and logged by CloudTrail as a management event. A key already behind the alias (a
    retried create, an adopted key store) gets this policy too and must carry no grants; the
    key store monitor compares the live policy with this one and alarms on any difference.

    Attributes:
        admin_role / usage_role: the named roles of the key policy.
        policy_json: the key policy as the JSON text the custom resource applies (a token).
        key_id / key_arn: from the custom resource.
        alias_name: alias/kommunmoln-<municipality>-tier-b.
        key: `kms.IKey` for the key ARN (for L2 constructs such as the bucket).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        provisioner: HsmProvisioner,
        key_store: HsmKeyStore,
        alias_name: str,
        description: str,
        bucket_arn: str,
        workshop_mode: bool,
        xks_key_id: str = "",
        tier_label: str = "tier B",
    ) -> None:
        """With `xks_key_id` (tier C) the key is `Custom::KmsXksKey` in an external key store (any construct with
        a `key_store_id`), Origin EXTERNAL_KEY_STORE; the key policy is the same."""
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        account = iam.AccountRootPrincipal()
        mfa = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
        # Key administration is break-glass: people assume this role with MFA.
        self.admin_role = iam.Role(
            self,
            "AdminRole",
            assumed_by=account.with_conditions(mfa),
            description=f"Break-glass administration of the {tier_label} {'external' if xks_key_id else 'HSM'} key",
        )
        # Use needs MFA too: nobody in the account inherits the key by an IAM policy alone.
        self.usage_role = iam.Role(
            self,
            "UsageRole",
            assumed_by=account.with_conditions(mfa),
            description=f"Reads and writes the {tier_label} bucket (SSE-KMS via S3)",
        )
        self.alias_name = alias_name
        provisioner_roles = [provisioner.on_event.role.role_arn, provisioner.is_complete.role.role_arn]
        policy = iam.PolicyDocument(
            statements=[
                # The account keeps reading the key's metadata (the monitor compares the policy).
                iam.PolicyStatement(
                    sid="AccountReadsKeyMetadata",
                    principals=[account],
                    actions=list(KEY_READ_ACTIONS),
                    resources=["*"],
                ),
                # AWS's lockout guard (KMS Developer Guide, "Default key policy"): the account root
                # as principal, so that re-created roles of the same name keep access, narrowed by
                # aws:PrincipalArn to the break-glass role with MFA ...
                iam.PolicyStatement(
                    sid="BreakGlassAdministersWithMfa",
                    principals=[account],
                    actions=list(KEY_ADMIN_ACTIONS),
                    resources=["*"],
                    conditions={"ArnEquals": {"aws:PrincipalArn": [self.admin_role.role_arn]}, **mfa},
                ),
                # ... and to the provisioner, which applies this template policy (CreateKey and
                # PutKeyPolicy pass KMS's policy lockout safety check only if the caller may
                # call PutKeyPolicy afterwards).
                iam.PolicyStatement(
                    sid="ProvisionerAppliesTemplatePolicy",
                    principals=[account],
                    actions=list(KEY_ADMIN_ACTIONS),
                    resources=["*"],
                    conditions={"ArnEquals": {"aws:PrincipalArn": provisioner_roles}},
                ),
                iam.PolicyStatement(
                    sid="UseOnlyThroughS3",
                    principals=[iam.ArnPrincipal(self.usage_role.role_arn)],
                    actions=list(KEY_USAGE_ACTIONS),
                    resources=["*"],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"s3.{stack.region}.{domain_suffix(stack)}",
                            "kms:CallerAccount": stack.account,
                        },
                        # Only for the tier B bucket: with S3 Bucket Keys the encryption context is
                        # the bucket ARN, without them the object ARN (S3 User Guide, SSE-KMS,
                        # "Encryption context").
                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn, f"{bucket_arn}/*"]},
                    },
                ),
            ]
        )
        # One JSON text for both: the provisioner applies it (also to an adopted key), the monitor
        # compares the live policy with it.
        self.policy_json = stack.to_json_string(policy.to_json())
        # The provisioner applies only this policy, from its own environment: an invoker of the function
        # with a forged event carrying another KeyPolicy is refused (key.deployed_policy), and a forged
        # Delete cannot claim workshop mode.
        provisioner.on_event.function.add_environment(names.ENV_EXPECTED_KEY_POLICY, self.policy_json)
        provisioner.on_event.function.add_environment(names.ENV_WORKSHOP_MODE, str(workshop_mode).lower())
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provisioner.provider.service_token,
            resource_type=names.RESOURCE_KMS_XKS_KEY if xks_key_id else "Custom::KmsHsmKey",
            properties={
                **({"XksKeyId": xks_key_id} if xks_key_id else {}),
                "CustomKeyStoreId": key_store.key_store_id,
                "Description": description,
                "KeyPolicy": self.policy_json,
                "AliasName": alias_name,
                "WorkshopMode": str(workshop_mode).lower(),
            },
            # Retained; in workshop mode the handler schedules deletion (30 days).
            removal_policy=removal_policy(workshop_mode=workshop_mode),
        )
        self.key_id = self.resource.get_att_string("KeyId")
        self.key_arn = self.resource.get_att_string("KeyArn")
        self.key = kms.Key.from_key_arn(self, "Imported", self.key_arn)
        _grant_key(provisioner, alias_name, origin="EXTERNAL_KEY_STORE" if xks_key_id else "AWS_CLOUDHSM")


def domain_suffix(stack: cdk.Stack) -> str:
    """The DNS suffix of the stack's partition (amazonaws.com; amazonaws.eu in aws-eusc), from CDK's region facts.

    Service endpoints such as the `kms:ViaService` value s3.<region>.<suffix> carry it. A literal for a concrete
    region (templates of the `aws` partition keep `amazonaws.com`), the AWS::URLSuffix pseudo parameter otherwise.
    """
    if cdk.Token.is_unresolved(stack.region):
        return stack.url_suffix
    return region_info.RegionInfo.get(stack.region).domain_suffix or stack.url_suffix


def _grant_key(provisioner: HsmProvisioner, alias_name: str, *, origin: str) -> None:
    stack = cdk.Stack.of(provisioner)
    kms_arn = f"arn:{stack.partition}:kms:{stack.region}:{stack.account}"
    provisioner.allow(
        ["kms:CreateKey"],
        ["*"],
        sid="CreateHsmBackedKeysOnly",
        conditions={"StringEquals": {"kms:KeyOrigin": origin, "kms:KeySpec": "SYMMETRIC_DEFAULT"}},
    )
    # kms:ListGrants: an adopted key must carry no grant (grants allow use outside the key policy).
    provisioner.allow(
        [
            "kms:PutKeyPolicy",
            "kms:UpdateKeyDescription",
            "kms:ScheduleKeyDeletion",
            "kms:TagResource",
            "kms:ListGrants",
        ],
        [f"{kms_arn}:key/*"],
        sid="ManageHsmBackedKeysOnly",
        conditions={"StringEquals": {"kms:KeyOrigin": origin}},
    )
    provisioner.allow(["kms:DescribeKey"], [f"{kms_arn}:key/*"], sid="DescribeKeys")
    # The handler lists the key's aliases before it removes one (an alias switched to a newer key stays);
    # kms:ListAliases has no resource-level permission (Service Authorization Reference, AWS KMS).
    provisioner.allow(["kms:ListAliases"], ["*"], sid="ListAliases")
    provisioner.allow(
        ["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"],
        [f"{kms_arn}:{alias_name}", f"{kms_arn}:key/*"],
        sid="TheTierBAlias",
    )
    provisioner.acknowledge_wildcard(
        f"Resource::{finding_arn(stack, 'kms')}:key/*",
        "The HSM-backed key's id exists only after CreateKey; management actions are further limited to keys "
        f"whose origin is {origin} (kms:KeyOrigin), alias actions to the one alias of this tier.",
    )
