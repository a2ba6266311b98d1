"""The tier B operator tool meets the CLI standards (issue 13 item 12) and runs every documented command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from usecases import cloudhsm_kms

DOC = REPO_ROOT / "docs" / "use-case-2.md"
PROG = "python -m usecases.cloudhsm_kms"


def documented_commands() -> list[str]:
    """Every `python -m usecases.cloudhsm_kms ...` the tier B guide shows (inline code and code blocks)."""
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"python -m usecases\.cloudhsm_kms([^`\n]*)", text)
    return [c.strip() for c in found]


def _parse(argv: list[str]) -> argparse.Namespace:
    return cloudhsm_kms.build_parser().parse_args(argv)


def _placeholders(command: str) -> list[str]:
    # Doc placeholders (<tier B stack>, <bucket>) stand for one value each; ~ is the operator's home.
    command = re.sub(r"<[^>]+>", "PLACEHOLDER", command)
    return command.replace("~", "/home/operator").split()


@pytest.mark.parametrize("command", documented_commands())
def test_every_documented_command_parses(command: str) -> None:
    # GIVEN a command exactly as docs/use-case-2.md shows it WHEN parsed THEN argparse accepts it
    assert _parse(_placeholders(command)).command


def test_the_guide_shows_commands() -> None:
    assert len(documented_commands()) >= 5


def test_options_are_accepted_before_and_after_the_command() -> None:
    before = _parse(["--stack-name", "s1", "--region", "eu-west-1", "status"])
    after = _parse(["status", "--stack-name", "s1", "--region", "eu-west-1"])
    assert (before.stack_name, before.region) == (after.stack_name, after.region) == ("s1", "eu-west-1")
    # AND a value given after the command wins over the one before it; absent ones keep the default
    both = _parse(["--stack-name", "s1", "status", "--stack-name", "s2"])
    assert (both.stack_name, both.region) == ("s2", cloudhsm_kms.DEFAULT_REGION)


def test_no_abbreviations_so_key_is_not_key_id(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN upload --key (the object key) and the global --key-id: an abbreviation could mean either
    parsed = _parse(["upload", "f.txt", "--key", "a/b.txt"])
    assert (parsed.key, parsed.key_id) == ("a/b.txt", None)
    # THEN a prefix is never expanded
    with pytest.raises(SystemExit) as exit_:
        _parse(["--stack", "x", "status"])
    assert exit_.value.code == cloudhsm_kms.EXIT_USAGE


def test_every_option_has_help() -> None:
    parser = cloudhsm_kms.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in [("", parser), *subparsers.choices.items()]:
        for action in sub._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert action.help, f"{name} {action.option_strings} has no help"
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{name} positional {action.dest} has no help"


@pytest.mark.parametrize("days", ["0", "-5", "ten"])
def test_ca_days_must_be_a_positive_whole_number(days: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parse(["ca", "--out", "/tmp/x", "--days", days])
    assert exit_.value.code == cloudhsm_kms.EXIT_USAGE
    assert "--days" in capsys.readouterr().err


def test_local_file_problems_are_one_line_on_stderr_with_their_own_exit_code(tmp_path: Path) -> None:
    # GIVEN init pointed at a CA certificate that does not exist, and one that is a directory
    errors: list[str] = []
    for path in (tmp_path / "missing.crt", tmp_path):
        code = cloudhsm_kms.main(["--cluster-id", "cluster-abcdefghijk", "init", "--ca-cert", str(path)],
                                 echo=lambda _line: None, err=errors.append)  # fmt: skip
        # THEN no traceback: one error line and the local-file exit code
        assert code == cloudhsm_kms.EXIT_FILE
    assert len(errors) == 2 and all(e.startswith("error: ") and "\n" not in e for e in errors)


def test_ctrl_c_is_reported_not_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cloudhsm_kms, "cmd_status", interrupted)
    errors: list[str] = []
    assert cloudhsm_kms.main(["status"], err=errors.append) == cloudhsm_kms.EXIT_INTERRUPTED
    assert errors == ["interrupted"]
