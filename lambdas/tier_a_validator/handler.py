"""Lambda entry point of the tier A validator: parse the S3 event, call the logic, report.

Thin on purpose: settings are validated once per cold start, boto3 clients are created on
first use (not at import), logs are structured JSON without object content, and metrics
go out as CloudWatch embedded metric format. Anything that prevents a decision (access
denied, throttling after retries, a malformed event) raises: Lambda retries the event and
then sends it to the dead-letter queue, where an alarm fires. An S3 Batch Operations
invocation (`batch.py`) gets one result per task instead, in the documented result format.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config

from kommunmoln import names
from lambdas.tier_a_validator.batch import handle_batch, is_batch_event
from lambdas.tier_a_validator.logic import (
    STATUS_QUARANTINED,
    STATUS_VALIDATED,
    ObjectRef,
    Outcome,
    Settings,
    object_refs,
    validate_object,
)

logger = Logger()
metrics = Metrics()

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
_settings: Settings | None = None
_clients: dict[str, Any] = {}


def settings() -> Settings:
    """The validated settings, read from the environment once per cold start."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env(os.environ)
    return _settings


def client(service: str) -> Any:
    """A boto3 client, created on first use and then reused."""
    if service not in _clients:
        _clients[service] = boto3.client(service, config=_CLIENT_CONFIG)
    return _clients[service]


def reset() -> None:
    """Forget cached settings and clients (a new cold start; used by tests)."""
    global _settings
    _settings = None
    _clients.clear()


def _validate(ref: ObjectRef) -> Outcome:
    return validate_object(
        client("s3"), client("sns"), bucket=ref.bucket, key=ref.key, version_id=ref.version_id, settings=settings()
    )


def _checked(outcome: Outcome) -> None:
    """Log one decision and count it (a repeated one was counted when it was made)."""
    logger.info("object checked", extra=outcome.as_log())
    if not outcome.repeated and outcome.status == STATUS_VALIDATED:
        metrics.add_metric(name=names.METRIC_OBJECTS_VALIDATED, unit=MetricUnit.Count, value=1)
    elif not outcome.repeated and outcome.status == STATUS_QUARANTINED:
        metrics.add_metric(name=names.METRIC_OBJECTS_QUARANTINED, unit=MetricUnit.Count, value=1)


def _not_checked(ref: ObjectRef | None, error: Exception) -> None:
    where = {"bucket": ref.bucket, "key": ref.key, "versionId": ref.version_id} if ref else {}
    logger.exception("object not checked", extra={**where, "error": type(error).__name__})


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings()  # a bad configuration fails the invocation before anything is read
    if is_batch_event(event):  # S3 Batch Operations (kommunmoln batch-verify): one result per task
        return handle_batch(event, _validate, on_outcome=_checked, on_error=_not_checked)
    refs = object_refs(event)
    outcomes = []
    for ref in refs:
        try:
            outcome = _validate(ref)
        except Exception as error:
            # No decision: Lambda retries, then the event goes to the dead-letter queue.
            _not_checked(ref, error)
            raise
        _checked(outcome)
        outcomes.append(outcome.as_log())
    return {"outcomes": outcomes}
