"""Many files in flight at once: the bulk migration of a file share of small files.

One file's upload is mostly waiting (a PutObject round trip), so small files go up
`files_in_flight` at a time on a thread pool; files of a part size or more go one at a time,
each with its own parts in flight (`TransferSettings.concurrency`). Memory stays bounded:
at most `files_in_flight` small files (each under one part size) plus one large file's
`concurrency + 1` parts. Submission is bounded too, so a share of a million files never
queues a million futures. Each object is written whole or not at all, so a crashed run is
resumed by running `sync` again: what was stored is unchanged and skipped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kommunmoln.tier_a.errors import Interrupted, TierAError, TransferError, UsageError
from kommunmoln.tier_a.transfer import TransferSettings, UploadResult, upload_encrypted

DEFAULT_FILES_IN_FLIGHT = 16


@dataclass(frozen=True)
class Job:
    path: Path
    key: str
    size: int


@dataclass(frozen=True)
class Outcome:
    job: Job
    result: UploadResult | None
    error: TierAError | None


def upload_many(
    s3,
    jobs: Iterable[Job],
    *,
    bucket: str,
    key_provider,
    extra_context: Mapping[str, str] | None,
    settings: TransferSettings,
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT,
    on_bytes: Callable[[int], None] | None = None,
    on_outcome: Callable[[Outcome], None],
    pad_source: Callable[[BinaryIO], BinaryIO] | None = None,
) -> None:
    """Upload every job; `on_outcome` is called in the calling thread once per job (any order).

    A failing file is an Outcome with its error; the others go on. Ctrl-C stops starting
    new files, lets the ones in flight finish (each is then stored whole), reports them and
    raises `Interrupted` saying how many were stored.
    """
    if not 1 <= files_in_flight <= 256:
        raise UsageError("--files-in-flight must be between 1 and 256")
    small, large = [], []
    for job in jobs:
        (small if job.size < settings.part_size else large).append(job)
    done = 0

    def one(job: Job) -> Outcome:
        try:
            return Outcome(job, upload_encrypted(s3, source_path=job.path, bucket=bucket, key=job.key,
                                                 key_provider=key_provider, extra_context=extra_context,
                                                 settings=settings, on_bytes=on_bytes, pad_source=pad_source), None)  # fmt: skip
        except TierAError as error:
            return Outcome(job, None, error)
        except Exception as error:  # a bug or an unexpected library error: still this file's outcome
            return Outcome(
                job, None, TransferError(f"upload of {job.path}: unexpected {type(error).__name__}: {error}")
            )

    results: queue.Queue[Outcome] = queue.Queue()
    slots = threading.BoundedSemaphore(files_in_flight)

    def finished(outcome: Outcome) -> None:
        results.put(outcome)
        slots.release()

    pool = ThreadPoolExecutor(max_workers=files_in_flight, thread_name_prefix="kommunmoln-file")
    submitted = 0
    try:
        for job in small:
            while not slots.acquire(timeout=0.05):  # report finished files while waiting for a slot
                while not results.empty():
                    on_outcome(results.get())
                    done += 1
            pool.submit(lambda j=job: finished(one(j)))
            submitted += 1
            while not results.empty():
                on_outcome(results.get())
                done += 1
        while done < submitted:
            on_outcome(results.get())
            done += 1
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        while not results.empty():
            on_outcome(results.get())
            done += 1
        raise Interrupted(
            f"interrupted: {done} files were finished (the ones in flight were completed, none is half-stored); "
            "run sync again to continue",
            stored=True,
        ) from None
    finally:
        pool.shutdown(wait=True)
    for job in large:
        on_outcome(one(job))
