"""The AWS CLI, as its users run it: `aws s3 cp/ls/sync/rm` and `aws s3api`, with the static
key and with a database key under the owner-folder policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import DB_ID, DB_SECRET, STATIC_ID, STATIC_SECRET, URL

AWS = Path(sys.executable).with_name("aws")


def aws(key_id, secret, *args, prefix="/s3", check=True):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    result = subprocess.run(
        [str(AWS), "--endpoint-url", URL + prefix, *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, f"aws {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def test_cp_ls_sync_rm_with_the_static_key(bucket, tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "one.txt").write_text("one")
    (source / "sub" / "two.txt").write_text("two")
    aws(STATIC_ID, STATIC_SECRET, "s3", "cp", str(source / "one.txt"), f"s3://{bucket}/one.txt")
    listed = aws(STATIC_ID, STATIC_SECRET, "s3", "ls", f"s3://{bucket}/").stdout
    assert "one.txt" in listed
    aws(STATIC_ID, STATIC_SECRET, "s3", "sync", str(source), f"s3://{bucket}/synced", prefix="/storage/v1/s3")
    recursive = aws(STATIC_ID, STATIC_SECRET, "s3", "ls", "--recursive", f"s3://{bucket}/synced/").stdout
    assert "synced/one.txt" in recursive and "synced/sub/two.txt" in recursive
    target = tmp_path / "back"
    aws(STATIC_ID, STATIC_SECRET, "s3", "sync", f"s3://{bucket}/synced", str(target))
    assert (target / "sub" / "two.txt").read_text() == "two"
    # A second sync finds nothing to do.
    again = aws(STATIC_ID, STATIC_SECRET, "s3", "sync", str(source), f"s3://{bucket}/synced").stdout
    assert again.strip() == ""
    aws(STATIC_ID, STATIC_SECRET, "s3", "rm", "--recursive", f"s3://{bucket}/synced")
    assert "synced" not in aws(STATIC_ID, STATIC_SECRET, "s3", "ls", f"s3://{bucket}/").stdout
    head = aws(STATIC_ID, STATIC_SECRET, "s3api", "head-object", "--bucket", bucket, "--key", "one.txt").stdout
    assert '"ContentLength": 3' in head


def test_database_key_owner_folder(bucket, tmp_path):
    file = tmp_path / "f.txt"
    file.write_text("u1's file")
    aws(DB_ID, DB_SECRET, "s3", "cp", str(file), f"s3://{bucket}/u1/f.txt")
    denied = aws(DB_ID, DB_SECRET, "s3", "cp", str(file), f"s3://{bucket}/u2/f.txt", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
    assert "f.txt" in aws(DB_ID, DB_SECRET, "s3", "ls", f"s3://{bucket}/u1/").stdout
    out = tmp_path / "out.txt"
    aws(DB_ID, DB_SECRET, "s3", "cp", f"s3://{bucket}/u1/f.txt", str(out))
    assert out.read_text() == "u1's file"
