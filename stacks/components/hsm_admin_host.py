"""The activation path: an SSM-managed admin host inside the isolated VPC.

Why a host: initializing needs only the API (boto3), but activating the cluster (admin
password) and creating `kmsuser` need the CloudHSM CLI on a machine that reaches the HSMs
on 2223-2225, which only something inside the VPC does. The host has no key pair, no
inbound rules and no public address; operators reach it with SSM Session Manager through
the VPC endpoints, and every session is logged by CloudTrail.

The VPC has no internet path (by design), so the CloudHSM CLI cannot be downloaded on the
host: AWS serves it from a bucket in us-east-1, which an S3 gateway endpoint does not reach.
The operator downloads the package from AWS's download page on their own machine, computes
its SHA-256 (`sha256sum cloudhsm-cli-latest.amzn2023.x86_64.rpm`), pins it in the config
(`tier_b_cloudhsm_cli_sha256`), deploys, and stages the package (and the cluster's trust
anchor) in the staging bucket made here. On the host, `sudo /usr/local/sbin/kommunmoln-install-cloudhsm-cli`
(written by the user data, source `admin_host_install.sh`) copies the package, refuses it
unless its SHA-256 is the pinned one, and installs it with `dnf --repo amazonlinux
--setopt=gpgcheck=1`: the CLI's dependencies come from the Amazon Linux 2023 repository,
signed with the Amazon Linux key in the AMI, which the S3 gateway endpoint policy admits
read-only (`network.AL2023_REPOSITORY_BUCKET`). Nothing here opens a route to the internet.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.compliance import acknowledge
from stacks.components.cloudhsm import CloudHsmCluster
from stacks.components.hsm_key_store import KmsUserSecret
from stacks.components.network import IsolatedNetwork
from stacks.components.tier_b_buckets import hardened_bucket

INSTALL_NOTE = (
    "No internet path: pin the SHA-256 of the CloudHSM CLI package (tier_b_cloudhsm_cli_sha256), stage it as "
    "cloudhsm-cli.rpm in the staging bucket, then run sudo /usr/local/sbin/kommunmoln-install-cloudhsm-cli (it refuses any "
    "other package); see docs/use-case-2.md#admin-host."
)
INSTALL_SCRIPT = Path(__file__).resolve().parent / "admin_host_install.sh"
INSTALL_COMMAND = "/usr/local/sbin/kommunmoln-install-cloudhsm-cli"


def _machine_image(ami_id: str) -> ec2.IMachineImage:
    """The pinned AMI, or (empty: workshops) the latest Amazon Linux 2023 from AWS's public SSM parameter.

    The SSM parameter is resolved on every deployment, so a new Amazon Linux release would replace the
    host. Pin it outside workshops (`aws ssm get-parameter --name
    /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64` gives the current id).
    """
    if ami_id:
        return _FixedImage(ami_id)
    return ec2.MachineImage.latest_amazon_linux2023()


@jsii.implements(ec2.IMachineImage)
class _FixedImage:
    """One AMI id, whatever the Region token (the config names the AMI of the configured Region)."""

    def __init__(self, ami_id: str) -> None:
        self._ami_id = ami_id

    def get_image(self, scope: Construct) -> ec2.MachineImageConfig:
        return ec2.MachineImageConfig(
            image_id=self._ami_id, os_type=ec2.OperatingSystemType.LINUX, user_data=ec2.UserData.for_linux()
        )


class HsmAdminHost(Construct):
    """A t3.micro Amazon Linux 2023 instance for cluster activation and `kmsuser`.

    IMDSv2 only, encrypted EBS, detailed monitoring, EBS-optimized, no key pair, no
    inbound rules (the cluster's client security group). The AMI is pinned by the config
    (`tier_b_admin_host_ami`); empty means AWS's public SSM parameter for the latest Amazon
    Linux 2023, resolved by CloudFormation at every deployment (no synthesis look-up), which
    replaces the host on each new release. No termination protection: the host holds no data.

    Attributes:
        instance, role, staging_bucket (CLI package and trust anchor for the host).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: IsolatedNetwork,
        cluster: CloudHsmCluster,
        secret: KmsUserSecret,
        access_logs: s3.IBucket,
        noncurrent_version_days: int | None,
        workshop_mode: bool,
        ami_id: str = "",
        cli_sha256: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.staging_bucket = hardened_bucket(
            self,
            "StagingBucket",
            workshop_mode=workshop_mode,
            noncurrent_version_days=noncurrent_version_days,
            access_log_bucket=access_logs,
            log_prefix="admin-staging/",
        )
        acknowledge(
            self.staging_bucket.node.default_child,
            "NIST.800.53.R5::NIST.800.53.R5-S3DefaultEncryptionKMS",
            "Holds only the vendor's CloudHSM CLI package and public certificates (no protected information); "
            "SSE-S3 lets the admin host read them without a further key grant.",
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Tier B CloudHSM admin host (SSM Session Manager, no SSH)",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        acknowledge(
            self.role.node.default_child,
            "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
            "AWS's SSM agent policy is what makes the host reachable by Session Manager instead of SSH; AWS "
            "maintains its action list as the agent changes. The host's own permissions are a separate policy.",
        )
        stack = cdk.Stack.of(self)
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description="Tier B admin host: read the staging bucket and the initial kmsuser password",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="ReadStaging",
                    actions=["s3:GetObject", "s3:ListBucket"],
                    resources=[self.staging_bucket.bucket_arn, self.staging_bucket.arn_for_objects("*")],
                ),
                iam.PolicyStatement(
                    sid="ReadKmsUserPassword",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[secret.secret.secret_arn],
                ),
                iam.PolicyStatement(
                    sid="DecryptKmsUserPassword",
                    actions=["kms:Decrypt"],
                    resources=[secret.key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"}},
                ),
                iam.PolicyStatement(sid="DescribeClusters", actions=["cloudhsm:DescribeClusters"], resources=["*"]),
            ],
        )
        policy = self.policy.node.default_child
        staging_id = stack.get_logical_id(self.staging_bucket.node.default_child)
        acknowledge(
            policy,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::<{staging_id}.Arn>/*]",
            "The host reads any staged file (CLI package versions, certificates) of its own staging bucket only.",
        )
        acknowledge(
            policy,
            "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            "cloudhsm:DescribeClusters has no resource-level permissions (Service Authorization Reference); the "
            "host reads the HSM addresses and cluster certificates from it.",
        )
        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, one_per_az=True),
            instance_type=ec2.InstanceType.of(ec2.InstanceClass.T3, ec2.InstanceSize.MICRO),
            machine_image=_machine_image(ami_id),
            role=self.role,
            security_group=cluster.client_security_group,
            require_imdsv2=True,
            detailed_monitoring=True,
            ebs_optimized=True,
            # No termination protection: the host holds no data and is rebuilt from the template; protection
            # would block both a replacement and `make destroy`. The pinned AMI keeps it from being replaced.
            disable_api_termination=False,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(16, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3),
                )
            ],
        )
        acknowledge(
            self.instance.instance,
            "AwsSolutions::AwsSolutions-EC29",
            "The admin host holds no data (CloudHSM CLI sessions only) and is rebuilt from the template; "
            "termination protection would block its replacement and `make destroy`. Its AMI is pinned "
            "(tier_b_admin_host_ami), so no release replaces it unasked.",
        )
        if ami_id:
            acknowledge(
                self.instance.instance,
                "CloudFormation-Validate::W9010",
                "The AMI id is pinned on purpose (config tier_b_admin_host_ami, for this stack's one Region): an SSM "
                "parameter would be re-resolved on every deployment and replace the host on each new release.",
            )
        # The subnet determines the zone; a literal zone in the template is redundant (cfn W3010).
        self.instance.instance.add_property_deletion_override("AvailabilityZone")
        self.instance.user_data.add_commands(
            f"echo 'CLUSTER_ID={cluster.cluster_id}' > /etc/kommunmoln-cloudhsm.env",
            f"echo 'STAGING_BUCKET={self.staging_bucket.bucket_name}' >> /etc/kommunmoln-cloudhsm.env",
            f"echo 'CLI_SHA256={cli_sha256}' >> /etc/kommunmoln-cloudhsm.env",
            f"cat > {INSTALL_COMMAND} <<'KOMMUNMOLN_SCRIPT'\n{INSTALL_SCRIPT.read_text(encoding='utf-8')}KOMMUNMOLN_SCRIPT",
            f"chmod 0755 {INSTALL_COMMAND}",
            f"echo '{INSTALL_NOTE}' > /etc/motd.d/kommunmoln",
        )
