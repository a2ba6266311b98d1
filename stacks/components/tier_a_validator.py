"""The tier A validator: a hardened Lambda on the data bucket's object-created events, with alarms."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from kommunmoln import names
from kommunmoln.config import TierAConfig
from stacks.compliance import acknowledge
from stacks.components.alarm_topic import AlarmTopic
from stacks.components.function import HardenedFunction
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork
from stacks.components.secure_bucket import DATA_ACTIONS, SecureBucket

HANDLER = "lambdas.tier_a_validator.handler.lambda_handler"


SID_VALIDATOR_ONLY_FROM_ITS_CODE = "DenyDataBucketOutsideTheValidatorFunction"
# What the validator role may do to the data bucket only from the validator function's code: every data
# action (reads, writes, tags, deletes, listings) and the other object reads. Written out rather than
# `s3:*`, which the compliance gates reject as a full-access statement even in a Deny.
VALIDATOR_BOUND_ACTIONS = (
    *DATA_ACTIONS, "s3:GetObjectVersionForReplication", "s3:GetObjectTorrent", "s3:GetObjectVersionTorrent",
    "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
)  # fmt: skip


class TierAValidator(Construct):
    """Checks every new object version's ESDK header; tags it validated or quarantined.

    Reads only the first `header_read_bytes` of an object, never deletes, alarms on
    quarantine (SNS + metric), on function errors and on events in the dead-letter queue.

    Attributes:
        function: the HardenedFunction (function, role, dead_letter_queue, ...).
        quarantine_alarm, error_alarm, dead_letter_alarm: CloudWatch alarms publishing to the topic.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: TierAConfig,
        bucket: SecureBucket,
        alarms: AlarmTopic,
        network: IsolatedNetwork,
        log_encryption: LogEncryption,
        workshop_mode: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.function = HardenedFunction(
            self,
            "Function",
            handler=HANDLER,
            description="kommunmoln tier A validator: ESDK header check of new objects",
            service_name=names.SERVICE_TIER_A_VALIDATOR,
            environment={
                names.ENV_ALLOWED_NAMESPACES: ",".join(settings.key_namespaces),
                names.ENV_REQUIRED_CONTEXT_KEYS: ",".join(names.REQUIRED_CONTEXT_KEYS),
                names.ENV_HEADER_READ_BYTES: str(settings.header_read_bytes),
                names.ENV_ALARM_TOPIC_ARN: alarms.topic.topic_arn,
            },
            network=network,
            log_encryption=log_encryption,
            reserved_concurrency=settings.validator_concurrency,
            workshop_mode=workshop_mode,
            timeout=cdk.Duration.seconds(30),
            function_name=f"{stack.stack_name}-validator",
        )
        role = self.function.role
        # The bucket policy's validator exemptions name the role; this binds the role's use of the bucket to
        # the validator function's own code (lambda:SourceFunctionArn, identity policies only).
        self.function.deny_outside_function(
            list(VALIDATOR_BOUND_ACTIONS), [bucket.bucket_arn, bucket.objects_arn], sid=SID_VALIDATOR_ONLY_FROM_ITS_CODE
        )
        role.allow(["s3:GetObject", "s3:GetObjectVersion"], [bucket.objects_arn], sid="ReadObjectHeads")
        role.allow(
            ["s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"],
            [bucket.objects_arn],
            sid="TagObjectVersions",
        )
        alarms.grant_publish(role)
        acknowledge(
            role.policy.node.default_child,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{nag_rendering(stack, bucket.objects_arn)}]",
            "The validator must read and tag any new object of this one bucket, whose keys are chosen by the "
            "clients at upload time; the wildcard covers only the objects of the tier A data bucket.",
        )

        self.function.allow_invoke_from("s3.amazonaws.com", source_arn=bucket.bucket_arn, source_account=stack.account)
        permission = self.function.function.node.find_child("InvokeByS3")
        bucket.notify_function(self.function.function, permission, event="s3:ObjectCreated:*")

        quarantined = cloudwatch.Metric(
            namespace=names.METRIC_NAMESPACE,
            metric_name=names.METRIC_OBJECTS_QUARANTINED,
            dimensions_map={names.METRIC_DIMENSION_SERVICE: names.SERVICE_TIER_A_VALIDATOR},
            statistic="Sum",
            period=cdk.Duration.minutes(1),
        )
        self.quarantine_alarm = alarms.alarm_when_above_zero(
            self,
            "QuarantineAlarm",
            metric=quarantined,
            description="Tier A: an object that is not a valid client-side-encrypted ESDK message was quarantined",
        )
        self.error_alarm = alarms.alarm_when_above_zero(
            self,
            "ErrorAlarm",
            metric=self.function.function.metric_errors(period=cdk.Duration.minutes(1), statistic="Sum"),
            description="Tier A validator failed (objects may be unchecked until the retry succeeds)",
        )
        self.dead_letter_alarm = alarms.alarm_when_above_zero(
            self,
            "DeadLetterAlarm",
            metric=self.function.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(1), statistic="Maximum"
            ),
            description="Tier A validator gave up on an event: the object is unchecked (see the dead-letter queue)",
        )


def nag_rendering(stack: cdk.Stack, value: str) -> str:
    """A string as cdk-nag prints it in finding ids: `{"Ref": "X"}` -> `<X>`, `Fn::GetAtt` -> `<Id.Attr>`."""

    def render(part: object) -> str:
        if isinstance(part, str):
            return part
        if isinstance(part, dict) and "Ref" in part:
            return f"<{part['Ref']}>"
        if isinstance(part, dict) and "Fn::GetAtt" in part:
            return f"<{'.'.join(part['Fn::GetAtt'])}>"
        if isinstance(part, dict) and "Fn::Join" in part:
            separator, parts = part["Fn::Join"]
            return separator.join(render(p) for p in parts)
        raise ValueError(f"cannot render {part!r} as cdk-nag does")

    return render(stack.resolve(value))
