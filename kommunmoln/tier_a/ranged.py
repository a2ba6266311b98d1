"""Ranged GETs of one stored object version, and downloads that decrypt frames in parallel.

`ObjectRange` streams the bytes [start, end) of one object version. Every request after the
first is pinned to the first answer's ETag (If-Match) and version ID, so a stream never
mixes two objects. A dropped connection resumes where it stopped (up to `RESUMES` times in
a row without a frame's worth of progress in between); a body that ends before `end` (the
first GET asks for a prefix only) goes on with the next range.

`parallel_body` is the body step of `codec.decrypt_to_file` for messages the frame engine
reads (this project's suite: framed, no signature). The first GET asks for the first
segment (`segment_frames` frames' worth of bytes); the ESDK parses and authenticates the
header from it, unwraps the data key and derives the frame key. The object's length (from
the first answer's Content-Range) then fixes where every frame must be
(`frames.body_layout`), so the frames after the first segment are fetched as ranges of
whole frames on up to `concurrency - 1` threads beside the first segment (with `concurrency`
1, in turn after it on the same thread: one GET in flight), each frame
decrypted into the temporary file at its plaintext offset. Nothing is renamed into place
until every frame, the final one included, has authenticated (`outputs.AtomicFile` in
`decrypt_to_file`); the first failure stops the other ranges and the temporary file is
deleted. Memory: one frame of ciphertext and one of plaintext per range in flight.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import botocore.exceptions

from kommunmoln.tier_a.codec import FRAME_LENGTH, frame_key
from kommunmoln.tier_a.frames import REGULAR_FRAME_OVERHEAD, BodyLayout, FrameDecryptor, FrameError, body_layout

SEGMENT_FRAMES = 8  # frames per ranged GET: 8 MiB + 256 bytes, like the upload's parts
RESUMES = 5
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)$")
RESUMABLE = (
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ConnectionClosedError,
    ConnectionError,
)


class ObjectRange(io.RawIOBase):
    """Bytes [start, end) of one object version; resumes and continues with pinned ranged GETs."""

    def __init__(
        self, s3, bucket: str, key: str, *, start: int, end: int, version_id: str | None, etag: str | None,
        response: dict[str, Any] | None = None, resumes: int = RESUMES,
    ) -> None:  # fmt: skip
        self._s3, self.bucket, self.key = s3, bucket, key
        self.position, self.end = start, end
        self.version_id, self.etag = version_id, etag
        self._resumes = resumes  # resumes in a row without a frame's worth of progress between them
        self._failures, self._last_failure = 0, start
        self._body = response["Body"] if response is not None else None
        self._answer_end = start + int(response.get("ContentLength") or 0) if response is not None else start

    @classmethod
    def opening(cls, s3, bucket: str, key: str, version_id: str | None, first_bytes: int) -> ObjectRange:
        """The whole object, starting with one GET of its first `first_bytes` bytes.

        The object's length comes from that answer's Content-Range (or its Content-Length,
        from a server that ignores Range). A zero-length object has no satisfiable range
        (416 InvalidRange), so it is read with a plain GET.
        """
        pinned = {"VersionId": version_id} if version_id else {}
        try:
            response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{first_bytes - 1}", **pinned)
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") != "InvalidRange":
                raise
            response = s3.get_object(Bucket=bucket, Key=key, **pinned)
        length = int(response.get("ContentLength") or 0)
        match = _CONTENT_RANGE.match(response.get("ContentRange") or "")
        total = int(match.group(3)) if match else length
        stream = cls(s3, bucket, key, start=0, end=total, version_id=response.get("VersionId") or version_id,
                     etag=response.get("ETag"), response=response)  # fmt: skip
        stream.first_end = length
        return stream

    first_end = 0  # how many bytes the first answer carries (opening streams)

    @property
    def length(self) -> int:
        return self.end

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        remaining = self.end - self.position
        if remaining <= 0:
            return b""
        wanted = remaining if size is None or size < 0 else min(size, remaining)
        while True:
            try:
                if self._body is None:
                    self._body = self._get()
                    if not (data := self._body.read(wanted)):
                        raise FrameError("object ended before its length (truncated while read)")
                elif not (data := self._body.read(wanted)):  # this answer ended: the next range continues it
                    self._close_body()
                    continue
                self.position += len(data)
                if self.position - self._last_failure >= FRAME_LENGTH:
                    self._failures = 0  # progress since the last drop: the budget starts again
                return data
            except RESUMABLE:
                self._failures += 1
                self._last_failure = self.position
                if self._failures > self._resumes:
                    raise
                self._close_body()

    def _get(self):
        extra: dict[str, str] = {"Range": f"bytes={self.position}-{self.end - 1}"}
        if self.version_id and self.version_id != "null":
            extra["VersionId"] = self.version_id
        if self.etag:
            extra["IfMatch"] = self.etag
        self._answer_end = self.end
        return self._s3.get_object(Bucket=self.bucket, Key=self.key, **extra)["Body"]

    def stop_at(self, position: int) -> None:
        """Read no further than `position`. The rest of the current answer is drained when it is
        less than a frame (keeps the connection reusable), else the connection is closed."""
        self.end = position
        if self._body is not None and self._answer_end - self.position <= FRAME_LENGTH + REGULAR_FRAME_OVERHEAD:
            with contextlib.suppress(RESUMABLE):
                self._body.read()
        self._close_body()

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def close(self) -> None:
        try:
            self._close_body()
        finally:
            super().close()


class _Cancelled(Exception):
    """Another range failed first; this one stopped between frames."""


def _decrypt_run(
    source, fd: int, layout: BodyLayout, frames: range, decryptor: FrameDecryptor,
    cancelled: threading.Event, on_bytes: Callable[[int], None] | None,
) -> int:  # fmt: skip
    """Frames `frames` of the message from `source` (positioned at the first), written at their offsets."""
    written = 0
    for number in frames:
        if cancelled.is_set():
            raise _Cancelled
        final = number == layout.frames
        _, plain = decryptor.frame(source, number, final=final)
        if final and len(plain) != layout.final_length:
            raise FrameError("final frame length does not match the object's length (truncated or extended)")
        offset, view = layout.plaintext_start(number), plain
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
        written += len(plain)
        if on_bytes:
            on_bytes(layout.end(number) - layout.start(number))
    return written


def parallel_body(
    opening: ObjectRange, *, concurrency: int, segment_frames: int = SEGMENT_FRAMES,
    on_bytes: Callable[[int], None] | None = None,
) -> Callable[[object, BinaryIO, BinaryIO], int]:  # fmt: skip
    """The body step for `codec.decrypt_to_file(opening, ..., body=...)` (see the module docstring)."""

    def body(decryptor, source: BinaryIO, sink: BinaryIO) -> int:
        header = decryptor.header  # type: ignore[attr-defined]
        layout = body_layout(header_length=opening.position, message_length=opening.length,
                             frame_length=header.frame_length)  # fmt: skip
        key, message_id = frame_key(decryptor), bytes(header.message_id)

        per_thread = threading.local()

        def new_decryptor() -> FrameDecryptor:  # one frame buffer per thread, reused for its ranges
            if getattr(per_thread, "decryptor", None) is None:
                per_thread.decryptor = FrameDecryptor(key=key, message_id=message_id, frame_length=layout.frame_length)
            return per_thread.decryptor

        first = 0  # frames wholly inside the first answer are read from it, here
        while first < layout.frames and layout.end(first + 1) <= opening.first_end:
            first += 1
        opening.end = layout.end(first) if first else layout.start(1)  # a resume asks for no more
        starts = range(first + 1, layout.frames + 1, segment_frames)
        ranges = [range(n, min(n + segment_frames, layout.frames + 1)) for n in starts]
        fd = sink.fileno()
        cancelled = threading.Event()
        failures: list[BaseException] = []

        def fetch(frames: range) -> int:
            try:
                if cancelled.is_set():
                    raise _Cancelled
                with ObjectRange(opening._s3, opening.bucket, opening.key, start=layout.start(frames.start),
                                 end=layout.end(frames.stop - 1), version_id=opening.version_id,
                                 etag=opening.etag) as stream:  # fmt: skip
                    return _decrypt_run(stream, fd, layout, frames, new_decryptor(), cancelled, on_bytes)
            except _Cancelled:
                raise
            except BaseException as error:
                failures.append(error)
                cancelled.set()
                raise

        # one stream: the ranges follow the opening one in turn on this thread, one GET in flight
        pool = ThreadPoolExecutor(max_workers=concurrency - 1, thread_name_prefix="kommunmoln-range") \
            if concurrency > 1 else None  # fmt: skip
        futures: list[Future[int]] = []
        try:
            futures = [pool.submit(fetch, frames) for frames in ranges] if pool else []
            written = _decrypt_run(source, fd, layout, range(1, first + 1), new_decryptor(), cancelled, None)
            opening.stop_at(opening.end)
            if pool is None:
                written += sum(fetch(frames) for frames in ranges)
            for future in futures:
                written += future.result()
            return written
        except _Cancelled:
            raise failures[0] from None
        except BaseException:
            cancelled.set()
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    return body


def streams_for_cores() -> int:
    """How many GETs a download keeps in flight at most: two per usable core, plus the opening one.

    Reading TLS in Python costs CPU per 16 KiB record, and each record read releases and
    retakes the GIL, so streams beyond what the cores can decrypt only add hand-offs. Measured
    on 2 cores against the loopback endpoint (bench/, 256 MiB, medians of 5, interleaved):
    5 streams took 0.75 s and 1.86 CPU-s/GiB over HTTPS, 8 streams 0.83 s and 2.29 CPU-s/GiB;
    in two later rounds (256 MiB and 1 GiB, HTTP and HTTPS) 1 or 2 streams were never the fastest
    (one stream never overlaps a frame's network read with its decryption), 5 the fastest or tied
    over HTTPS, 3 the fastest over HTTP in 3 of 4 (the bench's sweep section).
    Over a real network each stream is bound by latency rather than CPU: AWS advises one
    concurrent ranged GET of 8-16 MB per 85-90 MB/s wanted (Amazon S3 User Guide, "Performance
    design patterns for Amazon S3", Horizontal scaling and request parallelization,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance-design-patterns.html).
    `TransferSettings.download_streams` overrides this.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return 2 * cores + 1


def segment_bytes(segment_frames: int = SEGMENT_FRAMES) -> int:
    """Bytes of `segment_frames` frames of this project's frame length (the first GET's size)."""
    return segment_frames * (FRAME_LENGTH + REGULAR_FRAME_OVERHEAD)
