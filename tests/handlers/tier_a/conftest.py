"""Fixtures for the tier A validator: real ESDK messages and a moto account with bucket and topic.

The AWS Encryption SDK is used here only to produce real messages; the validator itself
never imports it (it is not in the Lambda runtime).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_encryption_sdk
import boto3
import pytest
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import Algorithm, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.base import MasterKeyProvider, MasterKeyProviderConfig
from aws_encryption_sdk.key_providers.raw import RawMasterKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import mock_aws

from kommunmoln import names
from lambdas.tier_a_validator.logic import Settings

EVENTS = Path(__file__).resolve().parent.parent / "events"
BUCKET = "kommunmoln-exempel-tier-a-data"
REGION = "eu-north-1"
NAMESPACE = "kommunmoln"
ESCROW_NAMESPACE = "kommunmoln-escrow"
ENCRYPTION_TAG = {"Key": names.OBJECT_TAG_ENCRYPTION, "Value": names.OBJECT_TAG_ENCRYPTION_VALUE}
# A PDF's first bytes: what a plaintext upload around the client looks like.
PDF = (
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    + b"Personnummer 19121212-1212\n" * 40
)


def aes_key(
    namespace: str = NAMESPACE, name: bytes = b"workshop-key-1", material: bytes = bytes(range(32))
) -> RawMasterKey:
    return RawMasterKey(
        provider_id=namespace,
        key_id=name,
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=material,
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        ),
    )


@pytest.fixture(scope="session")
def rsa_escrow_key() -> RawMasterKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return RawMasterKey(
        provider_id=ESCROW_NAMESPACE,
        key_id=b"escrow-2026",
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.RSA_OAEP_SHA256_MGF1,
            wrapping_key=pem,
            wrapping_key_type=EncryptionKeyType.PRIVATE,
        ),
    )


class KeyRing(MasterKeyProvider):
    """Several master keys at once: the data key is wrapped by each (primary + escrow)."""

    provider_id = "kommunmoln-tests"
    _config_class = MasterKeyProviderConfig

    def __init__(self, **_: Any) -> None:
        pass

    def _new_master_key(self, key_id: bytes) -> Any:
        raise NotImplementedError("decryption in these tests uses the raw keys directly")


def key_ring(*keys: RawMasterKey) -> KeyRing:
    ring = KeyRing()
    for key in keys:
        ring.add_master_key_provider(key)
    return ring


def context_for(key: str, bucket: str = BUCKET) -> dict[str, str]:
    return {names.CONTEXT_BUCKET: bucket, names.CONTEXT_KEY: key, names.CONTEXT_MUNICIPALITY: "exempel"}


def encrypt(
    plaintext: bytes,
    *,
    key_provider: Any = None,
    context: dict[str, str] | None = None,
    committing: bool = True,
    algorithm: Algorithm | None = None,
    frame_length: int | None = None,
) -> bytes:
    """A real ESDK message. committing=False writes a version 1 message with a non-committing suite."""
    policy = (
        CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
        if committing
        else CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    )
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=policy)
    kwargs: dict[str, Any] = {
        "source": plaintext,
        "key_provider": key_provider or aes_key(),
        "encryption_context": context or {},
    }
    if algorithm is not None:
        kwargs["algorithm"] = algorithm
    if frame_length is not None:
        kwargs["frame_length"] = frame_length
    ciphertext, _ = client.encrypt(**kwargs)
    return ciphertext


def event_for(key: str, version_id: str | None, *, fixture: str = "tier_a_object_created.json") -> dict[str, Any]:
    """The S3 event fixture, pointed at one object version (key URL-encoded as S3 does)."""
    from urllib.parse import quote_plus

    event = json.loads((EVENTS / fixture).read_text())
    record = event["Records"][0]["s3"]
    record["bucket"]["name"] = BUCKET
    record["object"]["key"] = quote_plus(key, safe="/")
    if version_id is None:
        record["object"].pop("versionId", None)
    else:
        record["object"]["versionId"] = version_id
    return event


@dataclass
class FakeAws:
    """A moto account: the versioned data bucket, the alarm topic and a queue that receives the alarms."""

    s3: Any
    sns: Any
    sqs: Any
    topic_arn: str
    inbox_url: str
    settings: Settings
    session: Any = None

    def put(self, key: str, body: bytes, *, tags: list[dict[str, str]] | None = None, bucket: str = BUCKET) -> str:
        tagging = "&".join(f"{t['Key']}={t['Value']}" for t in ([ENCRYPTION_TAG] if tags is None else tags))
        return self.s3.put_object(Bucket=bucket, Key=key, Body=body, Tagging=tagging)["VersionId"]

    def tags(self, key: str, version_id: str | None) -> dict[str, str]:
        args = {"Bucket": BUCKET, "Key": key, **({"VersionId": version_id} if version_id else {})}
        return {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(**args)["TagSet"]}

    def alarms(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.inbox_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.inbox_url, ReceiptHandle=message["ReceiptHandle"])


def settings_env(topic_arn: str, **overrides: str) -> dict[str, str]:
    env = {
        names.ENV_ALLOWED_NAMESPACES: NAMESPACE,
        names.ENV_REQUIRED_CONTEXT_KEYS: ",".join(names.REQUIRED_CONTEXT_KEYS),
        names.ENV_HEADER_READ_BYTES: "65536",
        names.ENV_ALARM_TOPIC_ARN: topic_arn,
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def _moto_account() -> Iterator[FakeAws]:
    """One moto account per test module (clients are slow to create); tests use their own versions."""
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sns = session.client("sns")
        topic_arn = sns.create_topic(Name="tier-a-alarms")["TopicArn"]
        sqs = session.client("sqs")
        inbox_url = sqs.create_queue(QueueName="alarm-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
        settings = Settings.from_env(settings_env(topic_arn))
        yield FakeAws(
            s3=s3, sns=sns, sqs=sqs, topic_arn=topic_arn, inbox_url=inbox_url, settings=settings, session=session
        )


@pytest.fixture
def fake_aws(_moto_account: FakeAws) -> FakeAws:
    """The module's moto account with an empty alarm inbox and a fresh S3 client (no leftover hooks)."""
    _moto_account.alarms()
    _moto_account.s3 = _moto_account.session.client("s3")
    return _moto_account
