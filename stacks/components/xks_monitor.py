"""Tier C detective control: the key store monitor, run against the external key store.

The same Lambda code as tier B's monitor (`lambdas.keystore_monitor`), told by KOMMUNMOLN_KEY_STORE_TYPE to
check an external key store (`lambdas.keystore_monitor.xks`): ConnectionState with the XKS ConnectionErrorCode
remedies, the proxy settings KMS holds, and the key (Enabled, Origin EXTERNAL_KEY_STORE, the external key id)
and its live policy against the template's (tier B's check). KMS reports an unhealthy proxy or HSM itself: the key store goes FAILED with XKS_PROXY_NOT_REACHABLE ("if the
proxy reports that all external key manager instances are unavailable") or XKS_PROXY_TIMED_OUT.

Besides, `XksKmsMetricAlarms` alarms on the metrics KMS itself publishes for the external key store
(namespace AWS/KMS): proxy errors, the external key manager's health, the TLS certificate's and the
credential's age, and latency near the 250 ms timeout.
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
from stacks.components.tier_b_checks import GE, LT, _errors_alarm, _metric, _read_only_policy

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
        certificate_alarm_days: int,
        credential_rotation_days: int,
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
        self.kms_metrics = XksKmsMetricAlarms(
            self, "KmsMetrics", alarms=alarms, key_store_id=key_store_id,
            certificate_alarm_days=certificate_alarm_days, credential_rotation_days=credential_rotation_days,
        )  # fmt: skip
        self.alarms += self.kms_metrics.alarms


# The metrics KMS publishes for an external key store: names, dimensions and dimension values as the KMS
# Developer Guide states them, "Monitor KMS keys with Amazon CloudWatch"
# (https://docs.aws.amazon.com/kms/latest/developerguide/monitoring-cloudwatch.html, sections XksProxyErrors,
# XksExternalKeyManagerStates, XksProxyCertificateDaysToExpire, XksProxyCredentialAge, XksProxyLatency), and the
# thresholds it recommends in "Create CloudWatch alarms for external key stores"
# (https://docs.aws.amazon.com/kms/latest/developerguide/xks-alarms.html). There is no
# "XksProxyHsmLatency": the latency metric is XksProxyLatency. The guide gives no CloudWatch unit names
# (latency is "the number of milliseconds", the ages "the number of days", the rest counts), so no alarm
# names a unit: an alarm with a unit the data is not published in sees no data at all.
KMS_NAMESPACE = "AWS/KMS"
GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
KMS_TIMEOUT_MS = (
    250  # "AWS KMS expects the external key store proxy to respond to each request within 250 milliseconds"
)
LATENCY_ALARM_MS = (
    200  # the guide's recommended alarm: "takes longer than 200 milliseconds to respond" (Average, 5 min)
)
ERRORS_PER_MINUTE = 5  # the guide's recommended alarms: "more than five ... errors ... in a one minute period"
RUNBOOK = "docs/use-case-3.md#alarms-on-the-kms-metrics"


class XksKmsMetricAlarms(Construct):
    """Alarms on the AWS/KMS metrics of one external key store, each notifying the alarm topic.

    XksProxyErrors, XksProxyLatency and XksProxyCertificateDaysToExpire carry dimensions whose values
    are not known at synthesis (KmsOperation, XksOperation, ExceptionName, the certificate's CN), and an
    alarm on a plain metric must name every dimension: those alarms are CloudWatch Metrics Insights
    queries filtered on CustomKeyStoreId (as the guide's own error alarms are: SUM(XksProxyErrors),
    filter ErrorType). XksExternalKeyManagerStates and XksProxyCredentialAge have only the dimensions
    named here, so they are plain metric alarms.

    Attributes:
        alarms: the alarms, in the order of the runbook in docs/use-case-3.md.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alarms: AlarmTopic,
        key_store_id: str,
        certificate_alarm_days: int,
        credential_rotation_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        minute, five_minutes, hour = (cdk.Duration.minutes(n) for n in (1, 5, 60))

        def query(
            label: str, function: str, metric_name: str, period: cdk.Duration, where: str = ""
        ) -> cloudwatch.MathExpression:
            # The id is the one KMS returned to the provisioner (cks-...), never operator input: no quoting needed.
            condition = f"CustomKeyStoreId = '{key_store_id}'" + (f" AND {where}" if where else "")
            return cloudwatch.MathExpression(
                expression=f'SELECT {function}({metric_name}) FROM "{KMS_NAMESPACE}" WHERE {condition}',  # noqa: S608 - a CloudWatch Metrics Insights query of constants and KMS's key store id
                using_metrics={}, label=label, period=period,
            )  # fmt: skip

        def metric(metric_name: str, statistic: str, period: cdk.Duration, **dimensions: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=KMS_NAMESPACE, metric_name=metric_name, statistic=statistic, period=period,
                dimensions_map={"CustomKeyStoreId": key_store_id, **dimensions},
            )  # fmt: skip

        def ekm(state: str) -> cloudwatch.Metric:
            return metric("XksExternalKeyManagerStates", "Minimum" if state == "Active" else "Maximum", five_minutes,
                          XksExternalKeyManagerState=state)  # fmt: skip

        not_breaching, breaching = cloudwatch.TreatMissingData.NOT_BREACHING, cloudwatch.TreatMissingData.BREACHING
        self.alarms = [
            # Errors: XksProxyErrors counts every response with its ErrorType; filtered on one ErrorType,
            # no data means no error of that type (the healthy state), so missing data does not breach. A
            # proxy KMS cannot reach still produces data (XksProxyUnreachableException is Retryable), and
            # loss of every signal is the "no active external key manager" alarm's job.
            *(
                alarms.alarm(
                    self, alarm_id,
                    metric=query(f"{error_type} errors", "SUM", "XksProxyErrors", minute, f"ErrorType = '{error_type}'"),
                    threshold=ERRORS_PER_MINUTE, comparison=GT, missing=not_breaching,
                    description=f"XKS proxy: more than {ERRORS_PER_MINUTE} {error_type.lower()} errors a minute "
                    f"({examples}) - {RUNBOOK}",
                )
                for alarm_id, error_type, examples in (
                    ("RetryableErrorsAlarm", "Retryable", "timeouts, InternalException, ThrottlingException, unreachable: network, proxy or HSM"),
                    ("NonRetryableErrorsAlarm", "Non-retryable", "AuthenticationFailed, AccessDenied, KeyNotFound, InvalidState - also the kill "
                     "switch: configuration or refusal"),
                )
            ),
            # External key manager: KMS learns the instances' states from the proxy's GetHealthStatus answers,
            # which it asks for periodically. No Active count at all means KMS has no health information
            # (disconnected, or the proxy silent): no signal, so missing data breaches (fail closed).
            alarms.alarm(
                self, "NoActiveKeyManagerAlarm", metric=ekm("Active"), threshold=1, comparison=LT,
                missing=breaching, evaluation_periods=2,
                description="XKS: no external key manager (HSM) instance reported Active for 10 minutes, or no "
                f"health data at all (key store disconnected?) - {RUNBOOK}",
            ),
            # Any instance Degraded or Unavailable. No data for these states means no instance is in them;
            # losing the signal is the alarm above's.
            alarms.alarm(
                self, "KeyManagerNotActiveAlarm",
                metric=cloudwatch.MathExpression(
                    expression="FILL(degraded, 0) + FILL(unavailable, 0)", label="Degraded or Unavailable",
                    using_metrics={"degraded": ekm("Degraded"), "unavailable": ekm("Unavailable")},
                    period=five_minutes,
                ),
                threshold=1, comparison=GE, missing=not_breaching,
                description=f"XKS: an external key manager (HSM) instance is Degraded or Unavailable - {RUNBOOK}",
            ),
            # Certificate: the guide's alarm (Minimum, 5 minutes, lower than the threshold). No data means
            # KMS states nothing about the certificate (disconnected, or a wildcard CN, for which the guide
            # says no value is shown): no proof it is valid, so missing data breaches.
            alarms.alarm(
                self, "CertificateExpiresAlarm",
                metric=query("Certificate days to expire", "MIN", "XksProxyCertificateDaysToExpire", five_minutes),
                threshold=certificate_alarm_days, comparison=LT, missing=breaching,
                description=f"XKS proxy TLS certificate expires in under {certificate_alarm_days} days (or KMS "
                f"reports no certificate): renew it from a CA KMS trusts before KMS loses the proxy - {RUNBOOK}",
            ),
            # Credential age: a rotation reminder counted from when the credential was given to KMS. Its
            # publishing interval is not documented, so an hour's Maximum; missing data does not breach,
            # because losing KMS's view of the key store is already the "no active" alarm (fail closed there).
            alarms.alarm(
                self, "CredentialAgeAlarm",
                metric=metric("XksProxyCredentialAge", "Maximum", hour),
                threshold=credential_rotation_days, comparison=GT, missing=not_breaching,
                description=f"XKS proxy credential older than {credential_rotation_days} days in KMS: rotate "
                f"it (docs/use-case-3.md#runbook-rotating-the-sigv4-credential) - {RUNBOOK}",
            ),
            # Latency: the guide's alarm (Average over 5 minutes above 200 ms, 50 ms short of the timeout KMS
            # records as 250). Latency exists only when KMS sends requests, so no data means no traffic.
            alarms.alarm(
                self, "LatencyAlarm",
                metric=query("Proxy latency (ms)", "AVG", "XksProxyLatency", five_minutes),
                threshold=LATENCY_ALARM_MS, comparison=GT, missing=not_breaching,
                description=f"XKS proxy answers KMS in over {LATENCY_ALARM_MS} ms on average (KMS gives up at "
                f"{KMS_TIMEOUT_MS} ms): HSM sessions, proxy CPU or the network - {RUNBOOK}",
            ),
        ]  # fmt: skip
