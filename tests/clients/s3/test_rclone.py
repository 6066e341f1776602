"""rclone (`copy`, `sync`, `check`, `lsf`), with the static key and with a database key under
the owner-folder policy. rclone is a system package (`apt-get install rclone`)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import DB_ID, DB_SECRET, STATIC_ID, STATIC_SECRET, URL, static

RCLONE = shutil.which("rclone")


def rclone(key_id, secret, *args, prefix="/s3", check=True):
    if RCLONE is None:
        pytest.fail("rclone is not installed (apt-get install rclone)")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "RCLONE_CONFIG_PGS_TYPE": "s3",
        "RCLONE_CONFIG_PGS_PROVIDER": "Other",
        "RCLONE_CONFIG_PGS_ACCESS_KEY_ID": key_id,
        "RCLONE_CONFIG_PGS_SECRET_ACCESS_KEY": secret,
        "RCLONE_CONFIG_PGS_ENDPOINT": URL + prefix,
        "RCLONE_CONFIG_PGS_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_PGS_REGION": "us-east-1",
        # Users may not create buckets: do not try.
        "RCLONE_CONFIG_PGS_NO_CHECK_BUCKET": "true",
    }
    result = subprocess.run(
        [RCLONE, "--config", "/dev/null", "--retries", "1", "--low-level-retries", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, f"rclone {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def tree(root):
    (root / "sub").mkdir(parents=True)
    (root / "one.txt").write_text("one")
    (root / "sub" / "two.txt").write_text("two" * 1000)
    return root


@pytest.mark.parametrize("prefix", ["/s3", "/storage/v1/s3"])
def test_copy_sync_check_with_the_static_key(bucket, tmp_path, prefix):
    source = tree(tmp_path / "src")
    rclone(STATIC_ID, STATIC_SECRET, "copy", str(source), f"pgs:{bucket}/copied", prefix=prefix)
    rclone(STATIC_ID, STATIC_SECRET, "check", str(source), f"pgs:{bucket}/copied", prefix=prefix)
    listed = rclone(STATIC_ID, STATIC_SECRET, "lsf", "-R", f"pgs:{bucket}", prefix=prefix).stdout.split()
    assert "copied/one.txt" in listed and "copied/sub/two.txt" in listed
    (source / "one.txt").unlink()
    (source / "three.txt").write_text("three")
    rclone(STATIC_ID, STATIC_SECRET, "sync", str(source), f"pgs:{bucket}/copied", prefix=prefix)
    listed = rclone(STATIC_ID, STATIC_SECRET, "lsf", "-R", f"pgs:{bucket}/copied", prefix=prefix).stdout.split()
    assert sorted(listed) == ["sub/", "sub/two.txt", "three.txt"]
    back = tmp_path / "back"
    rclone(STATIC_ID, STATIC_SECRET, "copy", f"pgs:{bucket}/copied", str(back), prefix=prefix)
    assert (back / "sub" / "two.txt").read_text() == "two" * 1000
    # A changed remote file makes check fail.
    (back / "three.txt").write_text("changed")
    assert rclone(STATIC_ID, STATIC_SECRET, "check", str(back), f"pgs:{bucket}/copied", check=False).returncode != 0


def test_database_key_owner_folder(bucket, tmp_path):
    source = tree(tmp_path / "src")
    rclone(DB_ID, DB_SECRET, "copy", str(source), f"pgs:{bucket}/u1/files")
    rclone(DB_ID, DB_SECRET, "check", str(source), f"pgs:{bucket}/u1/files")
    denied = rclone(DB_ID, DB_SECRET, "copy", str(source), f"pgs:{bucket}/u2/files", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
    assert rclone(STATIC_ID, STATIC_SECRET, "lsf", f"pgs:{bucket}/u2", check=False).stdout.strip() == ""


def test_multipart_copy_and_check(bucket, tmp_path):
    source = tmp_path / "big"
    source.mkdir()
    (source / "big.bin").write_bytes(os.urandom(12 * 1024 * 1024 + 5))
    multipart = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
    rclone(DB_ID, DB_SECRET, *multipart, "copy", str(source), f"pgs:{bucket}/u1/big")
    rclone(DB_ID, DB_SECRET, "check", "--download", str(source), f"pgs:{bucket}/u1/big")
    etag = static().head_object(Bucket=bucket, Key="u1/big/big.bin")["ETag"]
    assert etag.strip('"').endswith("-3"), etag
    denied = rclone(DB_ID, DB_SECRET, *multipart, "copy", str(source), f"pgs:{bucket}/u2/big", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
