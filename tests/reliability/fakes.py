"""Fakes for the validators: an S3 client that counts the bytes it serves and refuses deletes.

`NoDeleteS3` wraps any S3 client (a moto-backed boto3 client or `FakeS3`) and fails the
test on any Delete* call, whatever the code path: validators never delete.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError


class DeleteAttempted(AssertionError):
    """A validator tried to delete something (never allowed)."""


class NoDeleteS3:
    """Proxy to an S3 client; any method whose name starts with `delete` fails loudly."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.lower().startswith("delete") or name in ("abort_multipart_upload",):
            raise DeleteAttempted(f"validator called s3.{name}: validators never delete")
        attribute = getattr(self._inner, name)
        if callable(attribute):

            def recorded(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attribute(*args, **kwargs)

            return recorded
        return attribute


def client_error(code: str, operation: str, status: int = 400, message: str = "") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message or code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


class CountingBody:
    """A streaming body over a (possibly huge, lazily generated) object; counts bytes served."""

    def __init__(self, data_at: Callable[[int, int], bytes], size: int, counter: dict[str, int]) -> None:
        self._data_at = data_at
        self._size = size
        self._pos = 0
        self._counter = counter
        self.closed = False

    def read(self, amt: int | None = None) -> bytes:
        if amt is None or amt < 0:
            # An unbounded read of an object that may be 10 GB: count it as everything.
            self._counter["unbounded_reads"] += 1
            amt = self._size - self._pos
        amt = min(amt, self._size - self._pos)
        chunk = self._data_at(self._pos, amt)
        self._pos += len(chunk)
        self._counter["bytes_served"] += len(chunk)
        return chunk

    def close(self) -> None:
        self.closed = True


class FakeS3:
    """Enough of S3 for the tier A validator: versions, ranged GET, tagging. Thread-safe."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str | None], tuple[Callable[[int, int], bytes], int]] = {}
        self.tags: dict[tuple[str, str, str | None], list[dict[str, str]]] = {}
        self.counter = {"bytes_served": 0, "unbounded_reads": 0, "gets": 0}
        self.ranges: list[str | None] = []
        self.honour_range = True
        self.errors: dict[str, list[ClientError]] = {}  # operation -> errors to raise first
        self._lock = threading.Lock()

    def put(
        self,
        bucket: str,
        key: str,
        version: str | None,
        data: bytes | None = None,
        *,
        size: int | None = None,
        fill: bytes = b"\0",
    ) -> None:
        if data is not None:
            self.objects[(bucket, key, version)] = (lambda pos, n, d=data: d[pos : pos + n], len(data))
        else:
            assert size is not None

            def lazy(pos: int, n: int, f: bytes = fill) -> bytes:
                return (f * (n // len(f) + 2))[:n]

            self.objects[(bucket, key, version)] = (lazy, size)

    def remove(self, bucket: str, key: str, version: str | None) -> None:
        self.objects.pop((bucket, key, version), None)
        self.tags.pop((bucket, key, version), None)

    def _fail(self, operation: str) -> None:
        queue = self.errors.get(operation)
        if queue:
            raise queue.pop(0)

    def _ref(self, kwargs: dict[str, Any], operation: str) -> tuple[str, str, str | None]:
        ref = (kwargs["Bucket"], kwargs["Key"], kwargs.get("VersionId"))
        if ref not in self.objects:
            code = "NoSuchVersion" if kwargs.get("VersionId") else "NoSuchKey"
            raise client_error(code, operation, 404)
        return ref

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self._fail("GetObject")
        ref = self._ref(kwargs, "GetObject")
        data_at, size = self.objects[ref]
        with self._lock:
            self.counter["gets"] += 1
            self.ranges.append(kwargs.get("Range"))
        rng = kwargs.get("Range")
        if rng and self.honour_range:
            start, _, end = rng.removeprefix("bytes=").partition("-")
            start, end = int(start), int(end)
            if size == 0:
                raise client_error("InvalidRange", "GetObject", 416)
            end = min(end, size - 1)
            length = end - start + 1
            return {
                "Body": CountingBody(lambda pos, n: data_at(start + pos, n), length, self.counter),
                "ContentLength": length,
                "ContentRange": f"bytes {start}-{end}/{size}",
            }
        return {"Body": CountingBody(data_at, size, self.counter), "ContentLength": size}

    def get_object_tagging(self, **kwargs: Any) -> dict[str, Any]:
        self._fail("GetObjectTagging")
        ref = self._ref(kwargs, "GetObjectTagging")
        return {"TagSet": [dict(t) for t in self.tags.get(ref, [])]}

    def put_object_tagging(self, **kwargs: Any) -> dict[str, Any]:
        self._fail("PutObjectTagging")
        ref = self._ref(kwargs, "PutObjectTagging")
        with self._lock:
            self.tags[ref] = [dict(t) for t in kwargs["Tagging"]["TagSet"]]
        return {}


class FakeSns:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.errors: list[ClientError] = []

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        if self.errors:
            raise self.errors.pop(0)
        self.messages.append(kwargs)
        return {"MessageId": str(len(self.messages))}
