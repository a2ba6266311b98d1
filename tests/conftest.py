"""Shared fixtures: an AWS-free environment, a local moto server, the synthesized app."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kommunmoln.local_aws import moto_server

REPO_ROOT = Path(__file__).resolve().parent.parent

# Dated outcomes for the compliance report, written only with --results-file (`make test` passes it).
pytest_plugins = ("kommunmoln.compliance.results",)

# No test may reach AWS: fake credentials, a fixed EU region, no metadata service.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-north-1",
        "AWS_REGION": "eu-north-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "POWERTOOLS_METRICS_NAMESPACE": "Kommunmoln",
        "POWERTOOLS_SERVICE_NAME": "tests",
        "POWERTOOLS_DEV": "false",
    }
)
for _name in ("AWS_PROFILE", "AWS_CA_BUNDLE"):
    os.environ.pop(_name, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--live-aws", action="store_true", help="run tests marked live_aws against a real account")
    parser.addoption("--slow-fuzz", action="store_true", help="run the long fuzzing campaigns")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "live_aws": (config.getoption("--live-aws"), "needs --live-aws and real AWS credentials"),
        "slow_fuzz": (config.getoption("--slow-fuzz"), "long fuzzing run: pass --slow-fuzz"),
    }
    for item in items:
        for marker, (enabled, reason) in skips.items():
            if marker in item.keywords and not enabled:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on loopback for end-to-end tests.

    `make test` starts one (tests/run_with_moto_server.py) and passes its address in
    KOMMUNMOLN_MOTO_ENDPOINT; a bare `pytest` run starts its own in-process server.
    Tests share the server, so each uses its own bucket names.
    """
    with moto_server(os.environ.get("KOMMUNMOLN_MOTO_ENDPOINT")) as endpoint:
        yield endpoint


@dataclass(frozen=True)
class Synthesized:
    """The synthesized cloud assembly of one app configuration."""

    outdir: Path
    templates: dict[str, dict[str, Any]]  # stack name -> CloudFormation template

    def template(self, suffix: str) -> dict[str, Any]:
        """The template of the stack whose name ends with `suffix` (e.g. "-network")."""
        matches = [t for name, t in self.templates.items() if name.endswith(suffix)]
        assert len(matches) == 1, f"expected one stack ending in {suffix!r}, have {sorted(self.templates)}"
        return matches[0]

    def resources(self, suffix: str, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template(suffix)["Resources"].items() if v["Type"] == resource_type}


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    """Synthesize the whole app (with the compliance gates) into `outdir`."""
    import aws_cdk as cdk

    from kommunmoln.config import load_config
    from stacks.app_builder import build_app

    ctx = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    ctx.update(context or {})
    app = cdk.App(outdir=str(outdir), context=ctx)
    build_app(app, load_config(ctx))
    app.synth()
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }
    return Synthesized(outdir=outdir, templates=templates)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The default app from cdk.json, synthesized once per test session."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(params=["frames", "esdk"])
def codec_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with both tier A codec engines: this project's frame code and the ESDK's
    own stream (the reference). Test modules that read or write messages use it for every
    test (`pytestmark = pytest.mark.usefixtures("codec_engine")`)."""
    from kommunmoln import names

    monkeypatch.setenv(names.ENV_TIER_A_CODEC, request.param)
    return request.param
