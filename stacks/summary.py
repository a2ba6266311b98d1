"""Synthesize every stack with the compliance gates and print a short summary.

`python -m stacks.summary [--outdir cdk.out] [-c key=value ...]` is what `make demo`
runs first: it needs no AWS account and no CDK CLI, only the Python CDK library.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from kommunmoln.config import ConfigError, load_config
from stacks.app_builder import build_app

REPO_ROOT = Path(__file__).resolve().parent.parent
# Acknowledgments that CDK itself adds for its own CloudFormation validation quirks.
_CDK_INTERNAL_PREFIX = "CloudFormation-Validate::"


@dataclass
class SynthSummary:
    """What one synthesis produced: stacks, resource counts, acknowledged and open findings."""

    seconds: float
    resources: dict[str, Counter[str]] = field(default_factory=dict)  # stack -> type -> count
    acknowledged: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # rule id -> [(path, reason)]
    unacknowledged: list[str] = field(default_factory=list)  # "rule at path"

    @property
    def acknowledged_count(self) -> int:
        return sum(len(v) for v in self.acknowledged.values())


def parse_context(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs as given with `-c`, exactly as the CDK CLI passes them (strings)."""
    context: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(pair, "expected -c key=value")
        context[key] = value
    return context


def summarize_outdir(outdir: Path, seconds: float) -> SynthSummary:
    """Read a synthesized cloud assembly: templates and the policy-validation report."""
    summary = SynthSummary(seconds=seconds)
    for path in sorted(outdir.glob("*.template.json")):
        template = json.loads(path.read_text())
        summary.resources[path.name.removesuffix(".template.json")] = Counter(
            r["Type"] for r in template.get("Resources", {}).values()
        )
    report_file = outdir / "validation-report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else {"pluginReports": []}
    for plugin in report["pluginReports"]:
        for violation in plugin.get("violations", []):
            for construct in violation["violatingConstructs"]:
                summary.unacknowledged.append(f"{violation['ruleName']} at {construct['constructPath']}")
        for violation in plugin.get("suppressedViolations", []):
            rule_id = violation.get("acknowledgedId", violation["ruleName"])
            if not rule_id.startswith(_CDK_INTERNAL_PREFIX):
                summary.acknowledged.setdefault(rule_id, []).append(
                    (violation.get("acknowledgedAt", ""), violation.get("reason", ""))
                )
    return summary


def synthesize(outdir: Path, overrides: dict[str, Any] | None = None) -> SynthSummary:
    """Synthesize the app from cdk.json plus `overrides`; raise on any unacknowledged finding."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    context.update(overrides or {})
    config = load_config(context)
    started = time.perf_counter()
    app = cdk.App(outdir=str(outdir), context=context)
    build_app(app, config)
    app.synth()
    return summarize_outdir(outdir, time.perf_counter() - started)


def render(summary: SynthSummary) -> str:
    lines = [
        f"Synthesized {len(summary.resources)} stacks in {summary.seconds:.1f} s with AwsSolutions, NIST 800-53 R5 and KommunmolnOSL gates:"
    ]
    for stack, counts in summary.resources.items():
        top = ", ".join(f"{n} {t.split('::')[-1]}" for t, n in counts.most_common(4))
        lines.append(f"  {stack:<40} {sum(counts.values()):>4} resources ({top}, ...)")
    lines.append(
        f"Findings: {len(summary.unacknowledged)} unacknowledged, "
        f"{summary.acknowledged_count} acknowledged on single resources:"
    )
    lines.extend(f"  OPEN {finding}" for finding in summary.unacknowledged)
    for rule_id, places in sorted(summary.acknowledged.items()):
        lines.append(f"  {rule_id} x{len(places)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=REPO_ROOT / "cdk.out")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        summary = synthesize(args.outdir, parse_context(args.context))
    except ConfigError as error:
        print(f"kommunmoln: configuration error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        if "ValidationFailed" not in str(error):
            raise
        print(f"kommunmoln: compliance gates failed (findings above): {error}", file=sys.stderr)
        return 1
    print(render(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
