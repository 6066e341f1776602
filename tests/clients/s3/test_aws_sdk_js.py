"""The AWS SDK for JavaScript v3 (js/sdk.test.mjs under `node --test`), with the same server
and credentials as the Python suite."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).with_name("js")


def test_aws_sdk_for_javascript():
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js 20+ is needed for the AWS SDK for JavaScript suite")
    if not (JS / "node_modules" / "@aws-sdk" / "client-s3").is_dir():
        pytest.fail("@aws-sdk/client-s3 is not installed: run scripts/install-client-deps")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", "sdk.test.mjs"],
        cwd=JS,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
