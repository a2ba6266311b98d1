"""Lambda entry points of the tier C custom resource Provider (onEvent and isComplete).

Thin, like tier B's (whose settings and event summary it reuses): `logic` does the work with boto3 clients
created on first use. Errors are logged with their text (never the proxy credential: no code path puts it in
a message) and re-raised so the Provider reports them to CloudFormation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from kommunmoln import names
from lambdas.cloudhsm_provisioner.handler import _settings, _summary
from lambdas.xks_provisioner import logic

logger = Logger(service=os.environ.get(names.ENV_SERVICE_NAME, "xks-provisioner"))


@functools.cache
def _clients() -> logic.XksClients:
    # botocore's own retries stay short: common.call() owns the bounded backoff for throttling.
    config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=10, read_timeout=60)
    region = _settings().region
    return logic.XksClients(
        kms=boto3.client("kms", region_name=region, config=config),
        secrets=boto3.client("secretsmanager", region_name=region, config=config),
        ec2=boto3.client("ec2", region_name=region, config=config),
    )


def _run(step: Callable[..., dict[str, Any]], name: str, event: dict[str, Any]) -> dict[str, Any]:
    logger.info(name, extra=_summary(event))
    try:
        result = step(event, _clients())
    except logic.ProvisioningError as err:
        logger.error(str(err), extra=_summary(event))
        raise
    logger.info(f"{name} done", extra={"PhysicalResourceId": result.get("PhysicalResourceId"),
                                       "IsComplete": result.get("IsComplete")})  # fmt: skip
    return result


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run(logic.on_event, "onEvent", event)


def is_complete(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run(logic.is_complete, "isComplete", event)
