"""Lambda entry points of the tier B custom resource Provider (onEvent and isComplete).

Thin: the Provider framework passes the CloudFormation event; `logic` does the work with
boto3 clients created on first use (never at import). Errors are logged with their text
(no secrets ever reach it) and re-raised so the Provider reports them to CloudFormation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from kommunmoln import names
from lambdas.cloudhsm_provisioner import logic

logger = Logger(service=os.environ.get(names.ENV_SERVICE_NAME, "cloudhsm-provisioner"))


@dataclass(frozen=True)
class Settings:
    """Validated once per cold start."""

    region: str

    @staticmethod
    def from_env(env: Mapping[str, str]) -> Settings:
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
        if not region:
            raise RuntimeError("AWS_REGION is not set")
        return Settings(region=region)


@functools.cache
def _settings() -> Settings:
    return Settings.from_env(os.environ)


@functools.cache
def _clients() -> logic.Clients:
    # botocore's own retries stay short: logic.call() owns the bounded backoff for throttling.
    config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=10, read_timeout=60)
    region = _settings().region
    return logic.Clients(
        cloudhsm=boto3.client("cloudhsmv2", region_name=region, config=config),
        kms=boto3.client("kms", region_name=region, config=config),
        secrets=boto3.client("secretsmanager", region_name=region, config=config),
    )


def _summary(event: dict[str, Any]) -> dict[str, Any]:
    # Resource properties hold no secret (only the secret's ARN), but log just what matters.
    return {k: event.get(k) for k in ("RequestType", "ResourceType", "LogicalResourceId", "PhysicalResourceId")}


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    logger.info("onEvent", extra=_summary(event))
    try:
        result = logic.on_event(event, _clients())
    except logic.ProvisioningError as err:
        logger.error(str(err), extra=_summary(event))
        raise
    logger.info("onEvent done", extra={"PhysicalResourceId": result.get("PhysicalResourceId")})
    return result


def is_complete(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        result = logic.is_complete(event, _clients())
    except logic.ProvisioningError as err:
        logger.error(str(err), extra=_summary(event))
        raise
    logger.info("isComplete", extra={**_summary(event), "IsComplete": result.get("IsComplete")})
    return result
