"""Lambda entry point of the tier B key store monitor (EventBridge schedule).

Emits CloudWatch metrics (EMF) for each check that ran, logs each problem with its remedy
and publishes one SNS message with every remedy when something is unhealthy.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from kommunmoln import names
from lambdas.keystore_monitor import logic

logger = Logger(service=os.environ.get(names.ENV_SERVICE_NAME, "keystore-monitor"))
metrics = Metrics(namespace=os.environ.get(names.ENV_METRIC_NAMESPACE, names.METRIC_NAMESPACE))


@dataclass(frozen=True)
class Settings:
    checks: logic.MonitorSettings
    topic_arn: str

    @staticmethod
    def from_env(env: Mapping[str, str]) -> Settings:
        topic = env.get(names.ENV_ALARM_TOPIC_ARN, "").strip()
        if not topic.startswith("arn:"):
            raise RuntimeError(f"{names.ENV_ALARM_TOPIC_ARN} must be an SNS topic ARN")
        return Settings(checks=logic.MonitorSettings.from_env(env), topic_arn=topic)


@functools.cache
def _settings() -> Settings:
    return Settings.from_env(os.environ)


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service)


def reset_cold_start_state() -> None:
    """Forget settings and clients (tests; a real cold start does this)."""
    _settings.cache_clear()
    _client.cache_clear()


_COUNTS = {names.METRIC_ACTIVE_HSMS, names.METRIC_MIN_HSMS_PER_AZ}


def run(settings: Settings, *, kms: Any, cloudhsm: Any, sns: Any) -> tuple[logic.HealthReport, dict[str, Any]]:
    """The checks, the log lines and the alarm; the caller emits `report.metrics()`."""
    report = logic.check_health(kms=kms, cloudhsm=cloudhsm, settings=settings.checks)
    for check in report.checks:
        if check.status == logic.PROBLEM:
            logger.error(check.detail, extra={"check": check.name, "remedy": check.remedy})
        else:
            logger.info(check.detail, extra={"check": check.name, "status": check.status})
    if not report.healthy:
        sns.publish(
            TopicArn=settings.topic_arn,
            Subject="kommunmoln tier B: HSM key store unhealthy",
            Message=report.alarm_message(),
        )
    result = {
        "healthy": report.healthy,
        "alarmed": not report.healthy,
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "remedy": c.remedy} for c in report.checks],
    }
    return report, result


@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report, result = run(_settings(), kms=_client("kms"), cloudhsm=_client("cloudhsmv2"), sns=_client("sns"))
    for name, value in report.metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count if name in _COUNTS else MetricUnit.NoUnit, value=value)
    return result
