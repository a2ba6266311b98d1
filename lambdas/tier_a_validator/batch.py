"""S3 Batch Operations (LambdaInvoke, invocation schema 2.0) for the tier A validator.

`kommunmoln batch-verify` creates a job that invokes the validator for every object of a
manifest (S3 Inventory or the job's manifest generator). The event and the answer follow
"Invoke AWS Lambda function" in the Amazon S3 User Guide
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-invoke-lambda.html):

- event: `invocationSchemaVersion` "2.0", `invocationId`, `job` {`id`, `userArguments`},
  `tasks` [{`taskId`, `s3Bucket`, `s3Key`, `s3VersionId`}] (schema 2.0 names the bucket, 1.0
  its ARN); the key arrives URL-encoded, as in the guide's example function (`unquote_plus`);
- answer: the same `invocationSchemaVersion` and `invocationId`, `treatMissingKeysAs`, and
  `results` [{`taskId`, `resultCode`, `resultString`}] with resultCode `Succeeded`,
  `TemporaryFailure` (Batch Operations retries the task) or `PermanentFailure`.

Each task goes through `validate_object`, exactly as an S3 event would: the same header
check, the same tags, the same alarm. The decision maps to a result code, failing closed:

- validated -> Succeeded, resultString "validated";
- quarantined -> Succeeded, resultString "quarantined: <reason codes>". The task did what it
  was asked (a decision, recorded as the object's tag and alarmed); marking it failed would
  let a bucket full of plaintext abort its own audit, since Batch Operations fails a whole job
  whose task failure rate crosses its failure threshold ("Tracking job failures",
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-job-status.html). The
  client counts every result other than "validated" as a failed check;
- the version no longer exists -> PermanentFailure "missing: ..." (nothing was checked);
- throttling or a 5xx (the validator's transient errors) -> TemporaryFailure: Batch retries;
- anything else that prevented a decision -> PermanentFailure "not checked: <error code>";
- a task this function does not answer -> `treatMissingKeysAs` PermanentFailure;
- an event of another schema version -> every task PermanentFailure (never a guess).

Result strings carry status and reason codes only: never object content, never a message
that could quote it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from kommunmoln.object_check import STATUS_MISSING, STATUS_QUARANTINED, STATUS_VALIDATED, Outcome, error_code
from lambdas.tier_a_validator.logic import ObjectRef, is_transient

SCHEMA_VERSION = "2.0"
SUCCEEDED = "Succeeded"
TEMPORARY_FAILURE = "TemporaryFailure"
PERMANENT_FAILURE = "PermanentFailure"
MAX_RESULT_STRING = 512


def is_batch_event(event: Any) -> bool:
    """An S3 Batch Operations invocation (any schema version), as opposed to an S3 notification."""
    return isinstance(event, Mapping) and "invocationSchemaVersion" in event and "tasks" in event


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    code: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"taskId": self.task_id, "resultCode": self.code, "resultString": self.text[:MAX_RESULT_STRING]}


def task_ref(task: Mapping[str, Any]) -> ObjectRef:
    """The object version of one schema 2.0 task. Raises ValueError for a malformed task."""
    bucket, key = task.get("s3Bucket"), task.get("s3Key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise ValueError("task lacks s3Bucket or s3Key")
    version = task.get("s3VersionId")
    return ObjectRef(bucket=bucket, key=unquote_plus(key), version_id=version if isinstance(version, str) else None)


def result_for(task_id: str, outcome: Outcome) -> TaskResult:
    """The result code of one decision (see the module docstring)."""
    codes = " ".join(outcome.reason_codes)
    again = " (already checked)" if outcome.repeated else ""
    if outcome.status == STATUS_VALIDATED:
        return TaskResult(task_id, SUCCEEDED, f"{STATUS_VALIDATED}{again}")
    if outcome.status == STATUS_QUARANTINED:
        return TaskResult(task_id, SUCCEEDED, f"{STATUS_QUARANTINED}: {codes or 'unspecified'}{again}")
    if outcome.status == STATUS_MISSING:
        return TaskResult(task_id, PERMANENT_FAILURE, "missing: the object version no longer exists")
    # A status tag set by someone else (only the security role may): reported, never a pass.
    return TaskResult(task_id, SUCCEEDED, f"{outcome.status[:64]}: set by the security role{again}")


def failure_for(task_id: str, error: Exception) -> TaskResult:
    """No decision: a retry for transient errors, a permanent failure for the rest."""
    if isinstance(error, ClientError):
        code = (error_code(error) or "unknown")[:64]
        if is_transient(error):
            return TaskResult(task_id, TEMPORARY_FAILURE, f"not checked yet: {code} (retried)")
        return TaskResult(task_id, PERMANENT_FAILURE, f"not checked: {code}")
    return TaskResult(task_id, PERMANENT_FAILURE, f"not checked: {type(error).__name__}")


def handle_batch(
    event: Mapping[str, Any],
    validate: Callable[[ObjectRef], Outcome],
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_error: Callable[[ObjectRef | None, Exception], None] | None = None,
) -> dict[str, Any]:
    """Answer one invocation: every task gets a result (results list in task order)."""
    version = str(event.get("invocationSchemaVersion"))
    tasks = event.get("tasks") if isinstance(event.get("tasks"), list) else []
    results: list[TaskResult] = []
    for task in tasks:
        task_id = str(task.get("taskId", "")) if isinstance(task, Mapping) else ""
        if not task_id:
            continue  # nothing to answer to; treatMissingKeysAs makes it a permanent failure
        if version != SCHEMA_VERSION:
            results.append(TaskResult(task_id, PERMANENT_FAILURE, f"invocation schema {version[:8]} not supported"))
            continue
        ref: ObjectRef | None = None
        try:
            ref = task_ref(task)
            outcome = validate(ref)
        except Exception as error:  # a decision could not be made: the result says which kind
            if on_error:
                on_error(ref, error)
            results.append(failure_for(task_id, error))
            continue
        if on_outcome:
            on_outcome(outcome)
        results.append(result_for(task_id, outcome))
    return {
        "invocationSchemaVersion": version,
        "treatMissingKeysAs": PERMANENT_FAILURE,
        "invocationId": event.get("invocationId"),
        "results": [result.as_dict() for result in results],
    }
