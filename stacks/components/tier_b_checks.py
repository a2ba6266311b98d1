"""Tier B detective controls: the alarm topic, the key store monitor and the object validator.

Metrics are Powertools EMF metrics in `names.METRIC_NAMESPACE`; Powertools adds the
dimension `service` = POWERTOOLS_SERVICE_NAME to every metric, so each alarm selects
that dimension. Every alarm description names the remedy.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from kommunmoln import names
from stacks.compliance import acknowledge
from stacks.components.alarm_topic import AlarmTopic
from stacks.components.function import HardenedFunction
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork
from stacks.components.tier_a_validator import SID_VALIDATOR_ONLY_FROM_ITS_CODE, VALIDATOR_BOUND_ACTIONS
from stacks.components.tier_b_buckets import finding_text

MONITOR_SERVICE = "tier-b-keystore-monitor"
VALIDATOR_SERVICE = "tier-b-object-validator"
STATUS_COMMAND = "run `python -m usecases.cloudhsm_kms status`"
GE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD


def _metric(name: str, service: str, period: cdk.Duration, statistic: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=names.METRIC_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        period=period,
        statistic=statistic,
    )


def _read_only_policy(function: HardenedFunction, statements: Sequence[iam.PolicyStatement], reason: str) -> None:
    """Describe-only permissions without resource-level support, in a policy of their own."""
    policy = iam.ManagedPolicy(
        function, "DescribePolicy", description="Describe-only calls without resource-level permissions",
        roles=[function.role.role], statements=list(statements),
    )  # fmt: skip
    function.function.node.add_dependency(policy)
    acknowledge(policy.node.default_child, "AwsSolutions::AwsSolutions-IAM5[Resource::*]", reason)


class KeyStoreMonitor(Construct):
    """Scheduled check of cluster, HSMs per zone, and (phase 2) key store and key.

    Attributes:
        function (HardenedFunction), rule, alarms.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: IsolatedNetwork,
        log_encryption: LogEncryption,
        alarms: AlarmTopic,
        cluster_id: str,
        min_hsms: int,
        key_store_id: str,
        key_arn: str,
        interval_minutes: int,
        workshop_mode: bool,
        expected_key_policy: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = HardenedFunction(
            self,
            "Function",
            handler="lambdas.keystore_monitor.handler.lambda_handler",
            description="Tier B monitor: cluster state, active HSMs per zone, key store connection, key state",
            service_name=MONITOR_SERVICE,
            environment={
                names.ENV_CUSTOM_KEY_STORE_ID: key_store_id,
                names.ENV_CLUSTER_ID: cluster_id,
                names.ENV_MIN_HSMS: str(min_hsms),
                names.ENV_EXPECTED_KMS_KEY_ARN: key_arn,
                # The template's key policy, the same JSON text the provisioner applies (about 2.5 KB
                # deployed; Lambda allows 4 KB of environment variables in total).
                names.ENV_EXPECTED_KEY_POLICY: expected_key_policy,
                names.ENV_ALARM_TOPIC_ARN: alarms.topic.topic_arn,
            },
            network=network,
            log_encryption=log_encryption,
            reserved_concurrency=1,
            workshop_mode=workshop_mode,
        )
        alarms.grant_publish(self.function.role)
        if key_arn:
            self.function.role.allow(["kms:DescribeKey", "kms:GetKeyPolicy"], [key_arn], sid="DescribeHsmBackedKey")
        _read_only_policy(
            self.function,
            [
                iam.PolicyStatement(
                    actions=["cloudhsm:DescribeClusters", "kms:DescribeCustomKeyStores"], resources=["*"]
                )
            ],
            "cloudhsm:DescribeClusters and kms:DescribeCustomKeyStores have no resource-level permissions; the "
            "monitor only reads cluster, HSM and key store state.",
        )
        interval = cdk.Duration.minutes(interval_minutes)
        self.rule = events.Rule(
            self, "Schedule", schedule=events.Schedule.rate(interval), description="Runs the tier B key store monitor"
        )
        self.rule.add_target(targets.LambdaFunction(self.function.function, retry_attempts=2))

        breaching = cloudwatch.TreatMissingData.BREACHING  # a silent monitor is itself a problem
        period = cdk.Duration.minutes(max(interval_minutes, 5))

        def below(construct_id: str, metric_name: str, threshold: float, description: str) -> cloudwatch.Alarm:
            # Every monitor alarm: the metric's minimum below a floor for two periods, and
            # silence (no data) counts as breaching, since a dead monitor proves nothing.
            return alarms.alarm(
                self, construct_id, metric=_metric(metric_name, MONITOR_SERVICE, period, "Minimum"),
                threshold=threshold, comparison=LT, missing=breaching, evaluation_periods=2,
                description=description,
            )  # fmt: skip

        self.alarms = [
            below(
                "ActiveHsmsAlarm", names.METRIC_ACTIVE_HSMS, min_hsms,
                f"Fewer than {min_hsms} active CloudHSM HSMs (or the monitor is silent): {STATUS_COMMAND}, "
                "then replace failed HSMs (redeploy the stack) - docs/use-case-2.md#hsm-replacement",
            ),
        ]  # fmt: skip
        if key_store_id:
            # Phase 2 only: phase 1 runs one HSM in one zone on purpose (CloudHSM accepts one HSM until the
            # cluster is activated), so an empty zone then is expected, not a loss of high availability.
            self.alarms += [
                below(
                    "HsmsPerZoneAlarm", names.METRIC_MIN_HSMS_PER_AZ, 1,
                    f"A zone of the CloudHSM cluster has no active HSM (no high availability): {STATUS_COMMAND} "
                    "and see docs/use-case-2.md#hsm-replacement",
                ),
                below(
                    "KeyStoreDisconnectedAlarm", names.METRIC_KEYSTORE_CONNECTED, 1,
                    f"Custom key store disconnected: {STATUS_COMMAND} (it names the ConnectionErrorCode "
                    "and its remedy) and see docs/use-case-2.md#reconnect",
                ),
                below(
                    "KeyUnusableAlarm", names.METRIC_KEY_USABLE, 1,
                    f"HSM-backed KMS key disabled, pending deletion, of the wrong origin or in another key store: "
                    f"{STATUS_COMMAND} and see docs/use-case-2.md#key-state",
                ),
                below(
                    "KeyPolicyDriftAlarm", names.METRIC_KEY_POLICY_AS_TEMPLATE, 1,
                    f"The HSM key's live policy differs from the template's: {STATUS_COMMAND}, find the "
                    "PutKeyPolicy call in CloudTrail and see docs/use-case-2.md#key-state",
                ),
            ]  # fmt: skip
        self.alarms.append(_errors_alarm(self, alarms, self.function, "Key store monitor"))


class TierBValidator(Construct):
    """Checks each new object of the tier B bucket: aws:kms with the expected key and a Bucket Key.

    Attributes:
        function (HardenedFunction), alarms.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: IsolatedNetwork,
        log_encryption: LogEncryption,
        alarms: AlarmTopic,
        bucket_arn: str,
        key_arn: str,
        workshop_mode: bool,
        service_name: str = VALIDATOR_SERVICE,
        label: str = "Tier B",
    ) -> None:
        """`service_name` and `label` let tier C reuse the validator (its own metrics dimension and alarm texts)."""
        super().__init__(scope, construct_id)
        self.function = HardenedFunction(
            self,
            "Function",
            handler="lambdas.tier_b_validator.handler.lambda_handler",
            description=f"{label} validator: every new object must be SSE-KMS with the stack's key and a Bucket Key",
            service_name=service_name,
            environment={names.ENV_EXPECTED_KMS_KEY_ARN: key_arn, names.ENV_ALARM_TOPIC_ARN: alarms.topic.topic_arn},
            network=network,
            log_encryption=log_encryption,
            reserved_concurrency=5,
            workshop_mode=workshop_mode,
            function_name=f"{cdk.Stack.of(self).stack_name}-validator",
        )
        # The bucket's validator exemptions hold only for this function's own code (lambda:SourceFunctionArn).
        self.function.deny_outside_function(
            list(VALIDATOR_BOUND_ACTIONS), [bucket_arn, f"{bucket_arn}/*"], sid=SID_VALIDATOR_ONLY_FROM_ITS_CODE
        )
        self.function.role.allow(
            ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging",
             "s3:PutObjectTagging", "s3:PutObjectVersionTagging"],
            [f"{bucket_arn}/*"],
            sid="InspectAndTagObjects",
        )  # fmt: skip
        acknowledge(
            self.function.role.policy.node.default_child,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{finding_text(self, bucket_arn)}/*]",
            "The validator inspects and tags whichever object was just created; the wildcard is confined to the "
            "objects of the one tier B bucket.",
        )
        self.function.role.allow(["kms:DescribeKey"], [key_arn], sid="DescribeHsmBackedKey")
        alarms.grant_publish(self.function.role)
        period = cdk.Duration.minutes(5)
        self.alarms = [
            alarms.alarm(
                self, "QuarantineAlarm",
                metric=_metric(names.METRIC_OBJECTS_QUARANTINED, service_name, period, "Sum"),
                threshold=1, comparison=GE, missing=cloudwatch.TreatMissingData.NOT_BREACHING,
                description=f"A {label} object was quarantined (not SSE-KMS with the stack's key and a Bucket Key): "
                f"find it by tag {names.OBJECT_TAG_STATUS}={names.STATUS_QUARANTINED}, re-upload it with the key ARN, "
                "see docs/use-case-2.md#quarantine",
            ),
            _errors_alarm(self, alarms, self.function, f"{label} validator"),
        ]  # fmt: skip


def _errors_alarm(scope: Construct, alarms: AlarmTopic, function: HardenedFunction, what: str) -> cloudwatch.Alarm:
    return alarms.alarm(
        scope,
        "ErrorsAlarm",
        metric=function.function.metric_errors(period=cdk.Duration.minutes(5), statistic="Sum"),
        threshold=1,
        comparison=GE,
        missing=cloudwatch.TreatMissingData.NOT_BREACHING,
        description=f"{what} failed: read its log group {function.log_group.log_group_name} and its dead-letter "
        "queue, fix the cause, then redrive - docs/use-case-2.md#validator-errors",
    )
