"""The tier A read guard in `make demo`: what the synthesized bucket policy decides, offline.

The local emulation (moto) stores bucket policies but does not enforce the condition keys they
use (s3:ExistingObjectTag, s3:RequestObjectTagKeys, aws:SourceVpce, aws:PrincipalArn), so the
demo cannot show an S3 refusal. This step takes the tier A bucket policy from the synthesized
template (cdk.out/, or a fresh synthesis), the object's status tag from the emulation, and asks
the offline evaluator (kommunmoln/policy_eval.py, checked against AWS's documented evaluation
examples) for the decision AWS's policy evaluation reaches. It ends by saying what only AWS shows.

Called with one line from usecases/tier_a_demo.py; `python -m usecases.guard_demo` runs it alone.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kommunmoln import names
from kommunmoln.config import REPO_ROOT
from kommunmoln.policy_eval import ACCOUNT, ALLOW, EXPLICIT_DENY, Request, Resolver, evaluate, logical_ids
from kommunmoln.tier_a.errors import TierAError

Echo = Callable[[str], None]
TIER_A_SUFFIX = "-tier-a"
NETWORK_SUFFIX = "-network"
STATUS_TAG = f"s3:ExistingObjectTag/{names.OBJECT_TAG_STATUS}"
# What only AWS shows (`make verify-live` checks the quarantined read and the forged tag on a deployed stack).
ONLY_AWS = (
    "S3 itself refusing the request (here: the policy's decision, evaluated offline; moto enforces none of it)",
    "aws:SourceVpce and aws:PrincipalArn as AWS sets them for a real session through the VPC's S3 endpoint",
    "the status tag S3 reports for each version (s3:ExistingObjectTag) once the real validator Lambda wrote it",
    "SCPs, permission boundaries and session policies, which this evaluator does not model",
)


@dataclass(frozen=True)
class GuardPolicy:
    """The synthesized tier A bucket policy, resolved, and the principals it names."""

    policy: dict[str, Any]
    bucket_arn: str
    endpoint_id: str
    validator_arn: str

    @staticmethod
    def from_templates(templates: Mapping[str, Mapping[str, Any]]) -> GuardPolicy:
        resolver = Resolver(templates)
        bucket_id, bucket_name = resolver.protected_bucket(TIER_A_SUFFIX)
        (validator,) = logical_ids(resolver.template_of(TIER_A_SUFFIX), "AWS::IAM::Role", "ValidatorFunctionRole")
        return GuardPolicy(
            policy=resolver.bucket_policy(TIER_A_SUFFIX, bucket_id),
            bucket_arn=f"arn:aws:s3:::{bucket_name}",
            endpoint_id=resolver.s3_endpoint_id(NETWORK_SUFFIX),
            validator_arn=resolver.role_arn(validator),
        )

    def decide(self, principal: str, action: str, context: Mapping[str, Any], *, grant: bool = True) -> tuple[str, str]:
        """The decision for a request on an object, and the Sid of the deny statement that matched (if any)."""
        resource = f"{self.bucket_arn}/arende/exempel.kmn"
        full = {"aws:SecureTransport": True, "s3:TlsVersion": "1.2", "aws:SourceVpce": self.endpoint_id, **context}
        identity = [{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resource}]}] if grant else []
        request = Request(principal, action, resource, full)
        decision = evaluate(request, identity_policies=identity, resource_policy=self.policy)
        denied_by = [
            s.get("Sid", "?") for s in self.policy["Statement"]
            if s["Effect"] == "Deny" and evaluate(request, resource_policy={"Statement": [s]}) == EXPLICIT_DENY
        ]  # fmt: skip
        return decision, ", ".join(denied_by)


def load_templates(outdir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The synthesized templates from cdk.out/ (written by `make demo`'s first step), else a fresh synthesis."""
    outdir = outdir or REPO_ROOT / "cdk.out"
    found = {p.name.removesuffix(".template.json"): p for p in outdir.glob("*.template.json")}
    if any(n.endswith(TIER_A_SUFFIX) for n in found) and any(n.endswith(NETWORK_SUFFIX) for n in found):
        return {name: json.loads(path.read_text(encoding="utf-8")) for name, path in found.items()}
    with tempfile.TemporaryDirectory(prefix="kommunmoln-guard-demo-") as tmp:
        _synthesize(Path(tmp))
        return {
            p.name.removesuffix(".template.json"): json.loads(p.read_text(encoding="utf-8"))
            for p in Path(tmp).glob("*.template.json")
        }


def _synthesize(outdir: Path) -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")  # Node 20's end-of-life banner
    import aws_cdk as cdk

    from kommunmoln.config import load_config
    from stacks.app_builder import build_app

    context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    app = cdk.App(outdir=str(outdir), context=context)
    build_app(app, load_config(context))
    app.synth()


def show(echo: Echo, *, tags: Mapping[str, str], key: str, templates: Mapping[str, Any] | None = None) -> bool:
    """Print the read guard's decisions for `key` (its tags as the emulation holds them); True if all as expected."""
    guard = GuardPolicy.from_templates(templates if templates is not None else load_templates())
    client = f"arn:aws:iam::{ACCOUNT}:role/MunicipalityClient"
    status = tags.get(names.OBJECT_TAG_STATUS)
    rows = [
        (
            f"client GetObject {key} as the emulation holds it now (status tag: {status or 'none'})",
            guard.decide(client, "s3:GetObject", {STATUS_TAG: status} if status else {}),
            ALLOW if status == names.STATUS_VALIDATED else EXPLICIT_DENY,
        ),
        (
            "the validator reads the unchecked version through the VPC endpoint (its exemption)",
            guard.decide(guard.validator_arn, "s3:GetObjectVersion", {}),
            ALLOW,
        ),
        (
            "the same read once the validator has tagged the version validated",
            guard.decide(client, "s3:GetObject", {STATUS_TAG: names.STATUS_VALIDATED}),
            ALLOW,
        ),
        (
            f"client uploads with a forged {names.OBJECT_TAG_STATUS}={names.STATUS_VALIDATED}",
            guard.decide(
                client,
                "s3:PutObject",
                {
                    "s3:RequestObjectTagKeys": [names.OBJECT_TAG_ENCRYPTION, names.OBJECT_TAG_STATUS],
                    f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}": names.OBJECT_TAG_ENCRYPTION_VALUE,
                    f"s3:RequestObjectTag/{names.OBJECT_TAG_STATUS}": names.STATUS_VALIDATED,
                },
            ),
            EXPLICIT_DENY,
        ),
        (
            "client tags the version validated afterwards (PutObjectTagging)",
            guard.decide(client, "s3:PutObjectTagging", {"s3:RequestObjectTagKeys": [names.OBJECT_TAG_STATUS]}),
            EXPLICIT_DENY,
        ),
    ]
    echo("  The synthesized tier A bucket policy, evaluated offline (moto does not enforce it):")
    all_as_expected = True
    for what, (decision, sids), expected in rows:
        ok = decision == expected
        all_as_expected &= ok
        echo(f"  {'ok' if ok else 'UNEXPECTED'}: {what}: {decision}" + (f" by {sids}" if sids else ""))
    echo("  Only AWS shows (make verify-live checks a quarantined read and a forged tag on a deployed stack):")
    for line in ONLY_AWS:
        echo(f"    - {line}")
    return all_as_expected


class _Out(Protocol):
    def section(self, title: str) -> None: ...
    def line(self, text: str = "") -> None: ...


def check_read_guard(out: _Out, s3: Any, bucket: str, key: str) -> None:
    """The demo step: `key`'s tags as S3 (the emulation) holds them, the policy's decisions; raises if unexpected."""
    out.section("4b. Read guard: nothing readable before validation (the synthesized bucket policy)")
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
    if not show(out.line, tags=tags, key=key):
        raise TierAError("the synthesized tier A bucket policy did not decide as the fail-closed guard requires")


def main() -> int:
    """`python -m usecases.guard_demo`: the decisions for an object that nobody has validated yet."""
    return 0 if show(print, tags={}, key="arende/nytt-dokument.kmn") else 1


if __name__ == "__main__":
    raise SystemExit(main())
