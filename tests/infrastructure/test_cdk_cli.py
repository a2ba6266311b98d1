"""The CDK CLI (pinned in package.json) synthesizes the app as people run it by hand."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT

CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.skipif(not CDK.exists(), reason="CDK CLI not installed (make install)")
def test_cdk_cli_rejects_a_non_eu_region_with_one_line(tmp_path) -> None:
    # GIVEN `cdk synth -c region=us-east-1`
    env = {**os.environ, "CDK_DISABLE_VERSION_CHECK": "1"}
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "-o", str(tmp_path), "-c", "region=us-east-1"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    # THEN it fails, and the app's one-line reason is what the user sees
    assert result.returncode != 0
    assert "kommunmoln: configuration error: context key 'region'" in result.stderr
    assert "Traceback" not in result.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)
