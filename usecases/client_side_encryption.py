"""Use case 1 (tier A) from a clone: the `kommunmoln` client plus the end-to-end `demo`.

    python -m usecases.client_side_encryption COMMAND ...

Every command of the installed `kommunmoln` client (kommunmoln/tier_a/cli.py, where the
commands, options and exit codes are documented), plus:

  demo     [--stack-name NAME] [--workdir DIR]   end to end on a local moto server
                                                 (or a deployed stack with --stack-name)

The demo needs the repository (the validator Lambda's code, moto), so it lives here and not
in the installable package.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kommunmoln import names
from kommunmoln.tier_a import cli
from kommunmoln.tier_a.transfer import AwsSettings

PROG = "python -m usecases.client_side_encryption"


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", help="keep the demo's files here (default: a temporary directory)")
    parser.add_argument("--large-mib", type=int, default=None, help=argparse.SUPPRESS)


def cmd_demo(args: argparse.Namespace) -> int:
    """Tier A end to end (usecases/tier_a_demo.py)."""
    from usecases.tier_a_demo import run_demo

    large = args.large_mib
    if large is None:
        large = int(os.environ.get(names.ENV_DEMO_LARGE_MIB, "65") or 65)
    custody = cli.custody_options(args) if (args.key or args.pkcs11_lib) else None
    return run_demo(
        aws=AwsSettings(args.profile, args.region, args.endpoint_url, args.stack_name),
        custody=custody,
        large_mib=large,
        workdir=Path(args.workdir) if args.workdir else None,
        quiet=args.quiet,
    )


DEMO = cli.ExtraCommand(
    name="demo",
    help="end to end on a local moto server (or a deployed stack with --stack-name)",
    add_arguments=_demo_arguments,
    run=cmd_demo,
)


def build_parser() -> argparse.ArgumentParser:
    """The client's parser with the demo command."""
    return cli.build_parser(prog=PROG, extra=[DEMO])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (the client's or `demo`); returns the exit code."""
    return cli.main(argv, prog=PROG, extra=[DEMO])


if __name__ == "__main__":
    sys.exit(main())
