"""Lambda entry point of the tier B object validator (S3 object-created events).

Thin: settings are validated once per cold start, boto3 clients are created on first use,
and the expected key is resolved once (one kms:DescribeKey, only when it is an alias).
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
from lambdas.tier_b_validator import logic

logger = Logger(service=os.environ.get(names.ENV_SERVICE_NAME, "tier-b-validator"))
metrics = Metrics(namespace=os.environ.get(names.ENV_METRIC_NAMESPACE, names.METRIC_NAMESPACE))


@dataclass(frozen=True)
class Settings:
    expected_key: str
    topic_arn: str

    @staticmethod
    def from_env(env: Mapping[str, str]) -> Settings:
        expected = env.get(names.ENV_EXPECTED_KMS_KEY_ARN, "").strip()
        topic = env.get(names.ENV_ALARM_TOPIC_ARN, "").strip()
        if not expected:
            raise RuntimeError(f"{names.ENV_EXPECTED_KMS_KEY_ARN} must name the tier B KMS key")
        if not topic.startswith("arn:"):
            raise RuntimeError(f"{names.ENV_ALARM_TOPIC_ARN} must be an SNS topic ARN")
        return Settings(expected_key=expected, topic_arn=topic)


@functools.cache
def _settings() -> Settings:
    return Settings.from_env(os.environ)


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service)


@functools.cache
def _matcher() -> logic.KeyMatcher:
    expected = _settings().expected_key
    return logic.KeyMatcher.build(expected, describe_key=lambda **kw: _client("kms").describe_key(**kw))


def reset_cold_start_state() -> None:
    """Forget settings, clients and the resolved key (tests; a real cold start does this)."""
    for cached in (_settings, _client, _matcher):
        cached.cache_clear()


@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = _settings()
    results = []
    for ref in logic.object_refs(event):
        outcome = logic.validate_object(
            ref, s3=_client("s3"), sns=_client("sns"), matcher=_matcher(), topic_arn=settings.topic_arn
        )
        where = {"bucket": ref.bucket, "key": ref.key, "versionId": outcome.ref.version_id}
        if outcome.status == logic.OUTCOME_QUARANTINED:
            if outcome.changed:
                metrics.add_metric(name=names.METRIC_OBJECTS_QUARANTINED, unit=MetricUnit.Count, value=1)
            logger.warning("quarantined", extra={**where, "reason": outcome.reason, "detail": outcome.detail})
        elif outcome.status == logic.OUTCOME_VALIDATED:
            if outcome.changed:
                metrics.add_metric(name=names.METRIC_OBJECTS_VALIDATED, unit=MetricUnit.Count, value=1)
            logger.info("validated", extra=where)
        else:
            logger.info("object missing", extra={**where, "detail": outcome.detail})
        results.append(
            {
                **where,
                "status": outcome.status,
                "reason": outcome.reason,
                "duplicate": outcome.status != logic.OUTCOME_MISSING and not outcome.changed,
            }
        )
    return {"results": results}
