"""Tier C detective control: the key store monitor, run against the external key store.

The same Lambda code as tier B's monitor (`lambdas.keystore_monitor`), told by KOMMUNMOLN_KEY_STORE_TYPE to
check an external key store (`lambdas.keystore_monitor.xks`): ConnectionState with the XKS ConnectionErrorCode
remedies, the proxy settings KMS holds, and the key (Enabled, Origin EXTERNAL_KEY_STORE, the external key id)
and its live policy against the template's (tier B's check). KMS reports an unhealthy proxy or HSM itself: the key store goes FAILED with XKS_PROXY_NOT_REACHABLE ("if the
proxy reports that all external key manager instances are unavailable") or XKS_PROXY_TIMED_OUT.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from kommunmoln import names
from stacks.components.alarm_topic import AlarmTopic
from stacks.components.function import HardenedFunction
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork
from stacks.components.tier_b_checks import LT, _errors_alarm, _metric, _read_only_policy

XKS_MONITOR_SERVICE = "tier-c-keystore-monitor"
XKS_VALIDATOR_SERVICE = "tier-c-object-validator"
STATUS_HINT = "see its remedy in the alarm message and docs/use-case-3.md#monitor"


class XksKeyStoreMonitor(Construct):
    """Scheduled check of the external key store and its key; alarms when either is unusable or the monitor is silent.

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
        key_store_id: str,
        key_arn: str,
        xks_key_id: str,
        proxy_uri: str,
        expected_key_policy: str,
        interval_minutes: int,
        workshop_mode: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = HardenedFunction(
            self,
            "Function",
            handler="lambdas.keystore_monitor.handler.lambda_handler",
            description="Tier C monitor: external key store connection (XKS error codes), proxy settings, key state",
            service_name=XKS_MONITOR_SERVICE,
            environment={
                names.ENV_KEY_STORE_TYPE: "EXTERNAL_KEY_STORE",
                names.ENV_CUSTOM_KEY_STORE_ID: key_store_id,
                names.ENV_EXPECTED_KMS_KEY_ARN: key_arn,
                names.ENV_XKS_KEY_ID: xks_key_id,
                names.ENV_XKS_PROXY_URI: proxy_uri,
                names.ENV_EXPECTED_KEY_POLICY: expected_key_policy,
                names.ENV_ALARM_TOPIC_ARN: alarms.topic.topic_arn,
            },
            network=network,
            log_encryption=log_encryption,
            reserved_concurrency=1,
            workshop_mode=workshop_mode,
        )
        alarms.grant_publish(self.function.role)
        self.function.role.allow(["kms:DescribeKey", "kms:GetKeyPolicy"], [key_arn], sid="DescribeExternalKey")
        _read_only_policy(
            self.function,
            [iam.PolicyStatement(actions=["kms:DescribeCustomKeyStores"], resources=["*"])],
            "kms:DescribeCustomKeyStores has no resource-level permissions; the monitor only reads the state of "
            "the external key store.",
        )
        self.rule = events.Rule(
            self, "Schedule", schedule=events.Schedule.rate(cdk.Duration.minutes(interval_minutes)),
            description="Runs the tier C key store monitor",
        )  # fmt: skip
        self.rule.add_target(targets.LambdaFunction(self.function.function, retry_attempts=2))
        period = cdk.Duration.minutes(max(interval_minutes, 5))

        def below(alarm_id: str, metric_name: str, description: str) -> cloudwatch.Alarm:
            # The metric's minimum below 1 for two periods; silence counts as breaching (a dead monitor proves nothing).
            return alarms.alarm(
                self, alarm_id, metric=_metric(metric_name, XKS_MONITOR_SERVICE, period, "Minimum"), threshold=1,
                comparison=LT, missing=cloudwatch.TreatMissingData.BREACHING, evaluation_periods=2,
                description=description,
            )  # fmt: skip

        self.alarms = [
            below(
                "KeyStoreDisconnectedAlarm", names.METRIC_KEYSTORE_CONNECTED,
                "External key store not CONNECTED (FAILED with an XKS code, DISCONNECTED by the kill switch or a "
                f"person, or the monitor is silent): {STATUS_HINT}",
            ),
            below(
                "KeyUnusableAlarm", names.METRIC_KEY_USABLE,
                f"Tier C KMS key disabled, pending deletion, of the wrong origin or external key: {STATUS_HINT}",
            ),
            _errors_alarm(self, alarms, self.function, "Tier C key store monitor"),
        ]  # fmt: skip
