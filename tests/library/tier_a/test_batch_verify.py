"""`kommunmoln batch-verify`: job creation and report summaries against botocore Stubbers.

Every request is validated by the Stubber against the service model (S3 Control, STS, S3);
every scripted response follows the AWS page cited beside it:
- STS GetCallerIdentity returns Account, Arn, UserId
  (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html);
- S3 Control CreateJob returns the JobId S3 assigns
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_control_CreateJob.html);
- DescribeJob returns a JobDescriptor with Status (New, Preparing, Ready, Active, Complete,
  Failed, Cancelled, ...), ProgressSummary and Report, and FailureReasons for a failed job
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_control_DescribeJob.html,
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_control_JobDescriptor.html);
- the completion report is `<prefix>/job-<id>/manifest.json` listing CSV files of rows
  Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage, without a
  header row ("Examples: S3 Batch Operations completion reports",
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-examples-reports.html);
- S3 Inventory writes `prefix/source-bucket/config-ID/YYYY-MM-DDTHH-MMZ/manifest.json`
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-location.html).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from kommunmoln import names
from kommunmoln.tier_a import batch_verify, cli

ACCOUNT = "123456789012"
REGION = "eu-north-1"
JOB = "f3cc4f60-61f6-4a2b-8a21-d07600c373ce"
STACK = batch_verify.StackJobSettings(
    data_bucket="kommunmoln-exempel-tier-a-data-123456789012-eu-north-1",
    job_bucket="kommunmoln-exempel-tier-a-jobs-123456789012-eu-north-1",
    role_arn=f"arn:aws:iam::{ACCOUNT}:role/kommunmoln-exempel-tier-a-BatchVerifyRole",
    function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:kommunmoln-exempel-tier-a-Validator",
)
REPORT = {
    "Bucket": f"arn:aws:s3:::{STACK.job_bucket}",
    "Format": "Report_CSV_20180820",
    "Enabled": True,
    "Prefix": names.BATCH_REPORT_PREFIX,
    "ReportScope": "AllTasks",
}


class Stubs:
    def __init__(self) -> None:
        self.sts = boto3.client("sts", region_name=REGION)
        self.s3control = boto3.client("s3control", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.stubbers = [Stubber(c) for c in (self.sts, self.s3control, self.s3)]
        self.sts_stub, self.control, self.s3_stub = self.stubbers

    def caller(self) -> None:
        # GetCallerIdentity: Account is the 12-digit account id (STS API Reference).
        self.sts_stub.add_response(
            "get_caller_identity",
            {"UserId": "AROAEXAMPLE:operator", "Account": ACCOUNT, "Arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/x/y"},
        )

    def body(self, operation: str, data: bytes, params: dict) -> None:
        self.s3_stub.add_response(operation, {"Body": StreamingBody(io.BytesIO(data), len(data))}, params)

    def job(self, status: str, *, total: int, succeeded: int = 0, failed: int = 0, **extra) -> None:
        # DescribeJob: a JobDescriptor (S3 Control API Reference, DescribeJob / JobDescriptor).
        descriptor = {
            "JobId": JOB, "Status": status, "Priority": 10, "Report": REPORT,
            "ProgressSummary": {"TotalNumberOfTasks": total, "NumberOfTasksSucceeded": succeeded,
                                "NumberOfTasksFailed": failed},
            **extra,
        }  # fmt: skip
        self.control.add_response("describe_job", {"Job": descriptor}, {"AccountId": ACCOUNT, "JobId": JOB})

    @staticmethod
    def _result(status: str) -> dict[str, str]:
        key = f"reports/job-{JOB}/results/{status}.csv"
        return {"TaskExecutionStatus": status, "Bucket": STACK.job_bucket, "MD5Checksum": "0" * 32, "Key": key}

    def report(self, files: dict[str, list[list[str]]]) -> None:
        manifest = {
            "Format": "Report_CSV_20180820",
            "ReportCreationDate": "2026-12-02T17:48:39.725Z",
            "Results": [self._result(status) for status in files],
            "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
        }
        self.body("get_object", json.dumps(manifest).encode(),
                  {"Bucket": STACK.job_bucket, "Key": f"reports/job-{JOB}/manifest.json"})  # fmt: skip
        for status, rows in files.items():
            text = io.StringIO()
            csv.writer(text).writerows(rows)
            self.body("get_object", text.getvalue().encode(),
                      {"Bucket": STACK.job_bucket, "Key": f"reports/job-{JOB}/results/{status}.csv"})  # fmt: skip


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    found = Stubs()
    monkeypatch.setattr(batch_verify, "_stack", lambda aws: STACK)
    monkeypatch.setattr(batch_verify, "_clients", lambda aws: (found.sts, found.s3control, found.s3))
    for stubber in found.stubbers:
        stubber.activate()
    yield found
    for stubber in found.stubbers:
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def _run(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = cli.main(["--json", "--stack-name", "kommunmoln-exempel-tier-a", "batch-verify", *argv])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def _row(key: str, status: str, message: str, code: str = "200") -> list[str]:
    return [STACK.data_bucket, key, "v1", status, "" if status == "succeeded" else "PermanentFailure", code, message]


def test_one_command_creates_a_job_with_a_generated_manifest_of_the_bucket(stubs: Stubs, capsys) -> None:
    # GIVEN the stack's outputs and an operator's credentials
    stubs.caller()
    # WHEN batch-verify runs on the whole data bucket THEN CreateJob gets exactly this request
    # (LambdaInvoke schema 2.0 on the validator, a generated manifest of the data bucket, a report of all tasks)
    expected = batch_verify.job_request(STACK, account=ACCOUNT, token="t")
    expected["ClientRequestToken"] = ANY
    stubs.control.add_response("create_job", {"JobId": JOB}, expected)
    code, events, _ = _run(capsys, f"s3://{STACK.data_bucket}/")
    # THEN the job id is reported and the command exits 0
    assert code == 0 and events[-1]["job_id"] == JOB and events[-1]["manifest"] == "generated"
    operation = expected["Operation"]["LambdaInvoke"]
    assert (operation["InvocationSchemaVersion"], operation["FunctionArn"]) == ("2.0", STACK.function_arn)
    generator = expected["ManifestGenerator"]["S3JobManifestGenerator"]
    assert generator["SourceBucket"] == f"arn:aws:s3:::{STACK.data_bucket}" and "Filter" not in generator
    assert expected["Report"]["ReportScope"] == "AllTasks" and expected["RoleArn"] == STACK.role_arn


def test_a_prefix_becomes_a_key_name_constraint_valid_for_the_service_model() -> None:
    # GIVEN a stored prefix WHEN the request is built THEN the Stubber's model validation accepts it
    request = batch_verify.job_request(STACK, account=ACCOUNT, prefix="ABCDEF/", token="token-1")
    assert request["ManifestGenerator"]["S3JobManifestGenerator"]["Filter"] == {
        "KeyNameConstraint": {"MatchAnyPrefix": ["ABCDEF/"]}
    }
    control = boto3.client("s3control", region_name=REGION)
    with Stubber(control) as stubber:
        stubber.add_response("create_job", {"JobId": JOB}, request)
        assert batch_verify.create_job(control, request) == JOB


def test_inventory_uses_the_newest_inventory_manifest(stubs: Stubs, capsys) -> None:
    stubs.caller()
    prefix = f"inventory/{STACK.data_bucket}/{names.BATCH_INVENTORY_ID}/"
    # ListObjectsV2 of the inventory prefix: two dated deliveries and a data file
    listing = [f"{prefix}2026-11-30T01-00Z/manifest.json", f"{prefix}2026-12-01T01-00Z/manifest.json",
               f"{prefix}data/abc.csv.gz"]  # fmt: skip
    stubs.s3_stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": k, "Size": 10, "LastModified": dt.datetime(2026, 12, 1, tzinfo=dt.UTC)} for k in listing],
         "IsTruncated": False},
        {"Bucket": STACK.job_bucket, "Prefix": prefix},
    )  # fmt: skip
    stubs.s3_stub.add_response("head_object", {"ETag": '"0123456789abcdef"'},
                               {"Bucket": STACK.job_bucket, "Key": listing[1]})  # fmt: skip
    expected = batch_verify.job_request(
        STACK,
        account=ACCOUNT,
        token="t",
        inventory=(f"arn:aws:s3:::{STACK.job_bucket}/{listing[1]}", "0123456789abcdef"),
    )
    expected["ClientRequestToken"] = ANY
    stubs.control.add_response("create_job", {"JobId": JOB}, expected)
    code, events, _ = _run(capsys, f"s3://{STACK.data_bucket}/", "--inventory")
    assert code == 0 and events[-1]["manifest"].endswith("2026-12-01T01-00Z/manifest.json")
    assert expected["Manifest"]["Spec"] == {"Format": "S3InventoryReport_CSV_20161130"}


def test_a_complete_job_whose_every_task_validated_exits_0(stubs: Stubs, capsys) -> None:
    stubs.caller()
    stubs.job("Complete", total=2, succeeded=2)
    stubs.report(
        {"succeeded": [_row("a", "succeeded", "validated"), _row("b", "succeeded", "validated (already checked)")]}
    )
    code, events, _ = _run(capsys, "--job-id", JOB)
    assert code == 0
    assert events[-1]["validated"] == 2 and events[-1]["unaccounted"] == 0 and events[-1]["job_status"] == "Complete"


def test_quarantined_and_failed_tasks_fail_the_check_and_are_listed(stubs: Stubs, capsys) -> None:
    # GIVEN a complete job: one validated, one quarantined (Succeeded + result string), one missing version
    stubs.caller()
    stubs.job("Complete", total=3, succeeded=2, failed=1)
    stubs.report({
        "succeeded": [_row("a", "succeeded", "validated"), _row("p", "succeeded", "quarantined: not-esdk")],
        "failed": [_row("g", "failed", "missing: the object version no longer exists", "400")],
    })  # fmt: skip
    # WHEN the report is summarised THEN exit 1, counts per kind, and both problems listed with their result string
    code, events, err = _run(capsys, "--job-id", JOB)
    assert code == 1 and "1 of 3 validated, 1 quarantined, 1 failed" in err
    summary = events[-1]
    assert (summary["validated"], summary["quarantined"], summary["failed"]) == (1, 1, 1)
    assert [p["Key"] for p in summary["problems"]] == ["p", "g"]


def test_tasks_missing_from_the_report_fail_the_check(stubs: Stubs, capsys) -> None:
    # GIVEN a job of three tasks whose report holds two rows WHEN summarised THEN the gap fails it
    stubs.caller()
    stubs.job("Complete", total=3, succeeded=3)
    stubs.report({"succeeded": [_row("a", "succeeded", "validated"), _row("b", "succeeded", "validated")]})
    code, events, _ = _run(capsys, "--job-id", JOB)
    assert code == 1 and events[-1]["unaccounted"] == 1


def test_wait_follows_the_job_until_it_completes(stubs: Stubs, capsys, monkeypatch) -> None:
    stubs.caller()
    stubs.job("Active", total=1)
    stubs.job("Complete", total=1, succeeded=1)
    stubs.report({"succeeded": [_row("a", "succeeded", "validated")]})
    slept = []
    monkeypatch.setattr(batch_verify.time, "sleep", slept.append)
    code, events, _ = _run(capsys, "--job-id", JOB, "--wait", "--poll-seconds", "5")
    assert code == 0 and slept == [5.0]
    assert [e.get("job_status") for e in events[:2]] == ["Active", "Complete"]


def test_a_running_job_is_reported_without_a_verdict(stubs: Stubs, capsys) -> None:
    stubs.caller()
    stubs.job("Active", total=10, succeeded=4)
    code, events, _ = _run(capsys, "--job-id", JOB)
    assert code == 0 and events[-1]["job_status"] == "Active" and events[-1]["tasks_done"] == 4


def test_a_failed_job_without_report_fails_with_its_reasons(stubs: Stubs, capsys) -> None:
    # DescribeJob of a failed job: FailureReasons [{FailureCode, FailureReason}] (JobDescriptor)
    stubs.caller()
    stubs.job("Failed", total=0, FailureReasons=[{"FailureCode": "AccessDenied", "FailureReason": "cannot list"}])
    stubs.s3_stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    code, _, err = _run(capsys, "--job-id", JOB)
    assert code == 1 and "ended Failed: AccessDenied cannot list" in err


def test_create_job_refused_is_one_line_exit_1(stubs: Stubs, capsys) -> None:
    # CreateJob without iam:PassRole: 403 AccessDenied (S3 Control error responses)
    stubs.caller()
    stubs.control.add_client_error("create_job", service_error_code="AccessDenied", service_message="not allowed",
                                   http_status_code=403)  # fmt: skip
    code, _, err = _run(capsys, f"s3://{STACK.data_bucket}/")
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: CreateJob refused: AccessDenied")


def test_an_unknown_job_is_bad_input(stubs: Stubs, capsys) -> None:
    # DescribeJob of an unknown id: 404 NotFoundException (S3 Control API Reference, DescribeJob errors)
    stubs.caller()
    stubs.control.add_client_error("describe_job", service_error_code="NotFoundException", http_status_code=404)
    code, _, err = _run(capsys, "--job-id", JOB)
    assert code == 2 and "no Batch Operations job" in err


def test_usage_errors(stubs: Stubs, capsys) -> None:
    # GIVEN neither or both of S3URL and --job-id, another bucket, or a prefix without a key THEN exit 2
    assert _run(capsys)[0] == 2
    assert _run(capsys, f"s3://{STACK.data_bucket}/", "--job-id", JOB)[0] == 2
    stubs.caller()
    assert _run(capsys, "s3://some-other-bucket/")[0] == 2
    stubs.caller()
    code, _, err = _run(capsys, f"s3://{STACK.data_bucket}/arende/")
    assert code == 2 and "needs --key" in err


def test_classify_counts_only_validated_results_as_passes() -> None:
    assert batch_verify.classify({"TaskStatus": "succeeded", "ResultMessage": "validated"}) == "validated"
    assert batch_verify.classify({"TaskStatus": "succeeded", "ResultMessage": "quarantined: x"}) == "quarantined"
    assert batch_verify.classify({"TaskStatus": "succeeded", "ResultMessage": "released: set by"}) == "other"
    assert batch_verify.classify({"TaskStatus": "failed", "ResultMessage": "validated"}) == "failed"


def test_with_a_key_the_problems_get_their_plaintext_names(
    stubs: Stubs, capsys, monkeypatch, moto_endpoint: str, tmp_path
) -> None:
    # GIVEN an encrypted-names data bucket (on the local moto server) and a report naming one of its stored keys
    from kommunmoln.tier_a.bucket_names import open_bucket_names
    from kommunmoln.tier_a.custody import CustodyOptions, open_custody
    from kommunmoln.tier_a.keys import RawAesKey, write_key_file
    from kommunmoln.tier_a.transfer import AwsSettings, make_session, s3_client

    aws = AwsSettings(endpoint_url=moto_endpoint)
    s3 = s3_client(make_session(aws), aws)
    bucket = f"batch-names-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    key_file = str(write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "batch-names")))
    with open_custody(CustodyOptions(key_file=key_file), need_primary=True) as custody:
        stored = open_bucket_names(s3, custody, bucket, plain_names=False, create=True).stored("arende/a.pdf").key
    monkeypatch.setattr(batch_verify, "_stack", lambda aws: dataclasses.replace(STACK, data_bucket=bucket))
    stubs.caller()
    stubs.job("Complete", total=1, succeeded=1)
    stubs.report({"succeeded": [[bucket, stored, "v1", "succeeded", "", "200", "quarantined: not-esdk"]]})
    # WHEN the report is summarised with the key THEN the problem shows the plaintext name, and the check fails
    code = cli.main(["--json", "--endpoint-url", moto_endpoint, "--key", key_file, "--stack-name", "s",
                     "batch-verify", "--job-id", JOB])  # fmt: skip
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert events[-1]["problems"][0]["Name"] == "arende/a.pdf" and events[-1]["problems"][0]["Key"] == stored
    assert "arende" not in stored
