"""The demo's read-guard step (issue 11, done-when): the synthesized tier A bucket policy, evaluated offline.

moto does not enforce bucket-policy condition keys (REFERENCE.md, "moto 5.x"), so the demo shows the
policy's decision with kommunmoln/policy_eval.py. AWS's rules behind the expected decisions (IAM User
Guide, "Policy evaluation logic" and "Condition operators"): an explicit Deny wins; StringNotEquals on a
missing key (an untagged version's s3:ExistingObjectTag/...) is true, so the read is denied.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kommunmoln import names
from kommunmoln.policy_eval import EXPLICIT_DENY
from kommunmoln.tier_a.errors import TierAError
from tests.conftest import Synthesized
from usecases import guard_demo


def _without(templates: dict[str, Any], sid: str) -> dict[str, Any]:
    """The templates with one statement removed from the tier A bucket policy (a weakened guard)."""
    weakened = copy.deepcopy(templates)
    (template,) = [t for n, t in weakened.items() if n.endswith("-tier-a")]
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::S3::BucketPolicy":
            document = resource["Properties"]["PolicyDocument"]
            document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != sid]
    return weakened


def test_an_untagged_version_is_unreadable_a_validated_one_readable_a_forged_tag_refused(
    synthesized: Synthesized,
) -> None:
    # GIVEN the synthesized templates and an object that carries only the client's encryption tag
    lines: list[str] = []
    tags = {names.OBJECT_TAG_ENCRYPTION: names.OBJECT_TAG_ENCRYPTION_VALUE}
    # WHEN the demo step evaluates the tier A bucket policy
    ok = guard_demo.show(lines.append, tags=tags, key="arende/a.kmn", templates=synthesized.templates)
    # THEN every decision is as the fail-closed design requires, each deny named by its statement
    text = "\n".join(lines)
    assert ok is True, text
    assert f"{EXPLICIT_DENY} by DenyReadingVersionsNotValidated" in text
    assert "DenyStatusTagsFromOthersThanValidator" in text
    assert "UNEXPECTED" not in text
    # AND the output says what only AWS shows
    assert "Only AWS shows" in text and "moto enforces none of it" in text


@pytest.mark.parametrize("sid", ["DenyReadingVersionsNotValidated", "DenyStatusTagsFromOthersThanValidator"])
def test_a_weakened_policy_makes_the_demo_step_fail(synthesized: Synthesized, sid: str) -> None:
    # GIVEN the tier A bucket policy without one of its guard statements
    templates = _without(synthesized.templates, sid)
    lines: list[str] = []
    # WHEN the demo step evaluates it THEN it reports the unexpected decision and fails
    assert guard_demo.show(lines.append, tags={}, key="arende/a.kmn", templates=templates) is False
    assert any(line.lstrip().startswith("UNEXPECTED") for line in lines)


def test_the_demo_step_raises_so_the_demo_fails(synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a weakened policy behind the templates the step loads, and S3 reporting the object untagged
    weakened = _without(synthesized.templates, "DenyReadingVersionsNotValidated")
    monkeypatch.setattr(guard_demo, "load_templates", lambda outdir=None: weakened)

    class Out:
        def section(self, title: str) -> None: ...
        def line(self, text: str = "") -> None: ...

    class S3:
        def get_object_tagging(self, **_: Any) -> dict[str, Any]:
            return {"TagSet": []}

    # WHEN the tier A demo calls the step THEN it raises the demo's own error (exit code 1)
    with pytest.raises(TierAError, match="did not decide"):
        guard_demo.check_read_guard(Out(), S3(), "bucket", "arende/a.kmn")
