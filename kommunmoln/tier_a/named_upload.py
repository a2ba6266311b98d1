"""Uploads by plaintext name: map each name to its stored key, upload, record in the manifest, report.

Shared by `upload` and `sync` (cli.py). Each result line names the local path and the
plaintext name; the stored key goes only into the JSON field `stored_key` (local output).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kommunmoln.tier_a import size_padding
from kommunmoln.tier_a.bulk import Job, Outcome, upload_many
from kommunmoln.tier_a.errors import Interrupted, TierAError
from kommunmoln.tier_a.named_bucket import NamedBucket
from kommunmoln.tier_a.transfer import TransferSettings, UploadResult, stored_size_estimate


@dataclass
class Totals:
    uploaded: int = 0
    failed: int = 0
    plaintext_bytes: int = 0
    stored_bytes: int = 0


def report_upload(reporter, label: str, result: UploadResult, name: str) -> None:
    """One result line for a finished upload, under its plaintext name."""
    how = f"{result.parts} parts" if result.parts else "single put"
    reporter.result(f"{label} {result.path} -> s3://{result.bucket}/{name} "
                    f"({result.plaintext_bytes} -> {result.stored_bytes} bytes, {how})",
                    path=str(result.path), bucket=result.bucket, key=name, stored_key=result.key,
                    version_id=result.version_id, plaintext_bytes=result.plaintext_bytes,
                    stored_bytes=result.stored_bytes, parts=result.parts)  # fmt: skip


def pad_source(pad: bool):
    """The source wrapper of `--pad` (None: no padding)."""
    return size_padding.PaddedSource if pad else None


def upload_files(s3, reporter, nb: NamedBucket, keyring, files: list[tuple[Path, str]], *, extra: dict[str, str],
                 transfer: TransferSettings, files_in_flight: int, pad: bool, label: str) -> Totals:  # fmt: skip
    """Upload (path, plaintext name) pairs, small files many at a time, and record them in the manifest.

    Failures are reported and counted, not raised; the manifest is written even when interrupted.
    """
    totals = Totals()
    jobs, shown = [], {}
    for path, name in files:
        try:
            stored = nb.stored(name, for_upload=True)
        except TierAError as error:
            totals.failed += 1
            reporter.error(f"{path}: {error}", path=str(path), key=name)
            continue
        shown[stored] = name
        jobs.append(Job(path, stored, path.stat().st_size))

    def reported(outcome: Outcome) -> None:
        bar.file_done()
        name = shown[outcome.job.key]
        if outcome.error is not None:
            totals.failed += 1
            reporter.error(nb.localize(str(outcome.error), outcome.job.key, name), path=str(outcome.job.path), key=name)
            return
        result = outcome.result
        assert result is not None
        nb.record_upload(result)
        totals.uploaded += 1
        totals.plaintext_bytes += result.plaintext_bytes
        totals.stored_bytes += result.stored_bytes
        report_upload(reporter, label, result, name)

    with reporter.progress(label, sum(stored_size_estimate(j.size) for j in jobs), files=len(jobs)) as bar:
        try:
            upload_many(s3, jobs, bucket=nb.bucket, key_provider=keyring, extra_context=extra, settings=transfer,
                        files_in_flight=files_in_flight, on_bytes=bar.update, on_outcome=reported,
                        pad_source=pad_source(pad))  # fmt: skip
        except Interrupted as interrupted:
            raise Interrupted(f"{interrupted.reason}; {totals.uploaded} of {len(jobs)} files were uploaded",
                              stored=interrupted.stored) from None  # fmt: skip
        finally:
            nb.save()
        bar.finish()
    return totals
