"""s3cmd (`mb`, `put`, `get`, `ls`, `del`, `sync`, multipart `put`) with the static key and a
database key under the owner-folder policy.

s3cmd cannot use an endpoint with a path (it signs a `Host` that includes it), so it reaches
the server through the virtual-host domain (`localhost` in this suite): `host_base` and
`host_bucket` both `localhost:PORT`, which makes it path-style at the root."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import urllib.parse
from pathlib import Path

from conftest import DB_ID, DB_SECRET, STATIC_ID, STATIC_SECRET, URL, static

DOMAIN = os.environ.get("PGSTORAGE_S3_DOMAIN", "localhost")
PORT = urllib.parse.urlsplit(URL).port
S3CMD = Path(sys.executable).with_name("s3cmd")


def s3cmd(tmp_path: Path, key_id: str, secret: str, *args, check=True):
    config = tmp_path / f"s3cfg-{key_id}"
    config.write_text(
        "[default]\n"
        f"access_key = {key_id}\n"
        f"secret_key = {secret}\n"
        f"host_base = {DOMAIN}:{PORT}\n"
        f"host_bucket = {DOMAIN}:{PORT}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "bucket_location = us-east-1\n"
        "progress_meter = False\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(S3CMD), "-c", str(config), "--no-ssl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, f"s3cmd {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def test_static_key_everyday_commands(tmp_path):
    bucket = f"s3cmd-{secrets.token_hex(4)}"
    run = lambda *args, **kw: s3cmd(tmp_path, STATIC_ID, STATIC_SECRET, *args, **kw)  # noqa: E731
    run("mb", f"s3://{bucket}")
    assert bucket in run("ls").stdout
    local = tmp_path / "hello.txt"
    local.write_text("hello from s3cmd")
    run("put", str(local), f"s3://{bucket}/docs/hello.txt")
    assert f"s3://{bucket}/docs/hello.txt" in run("ls", "-r", f"s3://{bucket}").stdout
    back = tmp_path / "back.txt"
    run("get", f"s3://{bucket}/docs/hello.txt", str(back))
    assert back.read_text() == "hello from s3cmd"
    assert static().get_object(Bucket=bucket, Key="docs/hello.txt")["Body"].read() == b"hello from s3cmd"

    # Multipart: 12 MiB in 5 MiB parts.
    big = tmp_path / "big.bin"
    data = secrets.token_bytes(12 * 1024 * 1024)
    big.write_bytes(data)
    run("put", "--multipart-chunk-size-mb=5", str(big), f"s3://{bucket}/big.bin")
    head = static().head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-3"')
    big_back = tmp_path / "big-back.bin"
    run("get", f"s3://{bucket}/big.bin", str(big_back))
    assert hashlib.sha256(big_back.read_bytes()).digest() == hashlib.sha256(data).digest()

    # sync uploads what changed and, with --delete-removed, removes what went away.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "one.txt").write_text("one")
    (tree / "sub" / "two.txt").write_text("two")
    run("sync", str(tree) + "/", f"s3://{bucket}/tree/")
    (tree / "one.txt").unlink()
    (tree / "three.txt").write_text("three")
    run("sync", "--delete-removed", str(tree) + "/", f"s3://{bucket}/tree/")
    listed = static().list_objects_v2(Bucket=bucket, Prefix="tree/")["Contents"]
    assert sorted(o["Key"] for o in listed) == ["tree/sub/two.txt", "tree/three.txt"]

    run("del", f"s3://{bucket}/docs/hello.txt")
    assert "docs/hello.txt" not in run("ls", "-r", f"s3://{bucket}").stdout
    run("del", "-r", "--force", f"s3://{bucket}")
    run("rb", f"s3://{bucket}")
    assert bucket not in run("ls").stdout


def test_database_key_owner_folder(bucket, tmp_path):
    run = lambda *args, **kw: s3cmd(tmp_path, DB_ID, DB_SECRET, *args, **kw)  # noqa: E731
    local = tmp_path / "mine.txt"
    local.write_text("mine")
    run("put", str(local), f"s3://{bucket}/u1/mine.txt")
    back = tmp_path / "back.txt"
    run("get", f"s3://{bucket}/u1/mine.txt", str(back))
    assert back.read_text() == "mine"
    big = tmp_path / "big.bin"
    big.write_bytes(secrets.token_bytes(6 * 1024 * 1024))
    run("put", "--multipart-chunk-size-mb=5", str(big), f"s3://{bucket}/u1/big.bin")
    assert static().head_object(Bucket=bucket, Key="u1/big.bin")["ETag"].endswith('-2"')

    denied = run("put", str(local), f"s3://{bucket}/u2/planted.txt", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
    denied = run("put", "--multipart-chunk-size-mb=5", str(big), f"s3://{bucket}/u2/big.bin", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
    static().put_object(Bucket=bucket, Key="u2/theirs.txt", Body=b"theirs")
    denied = run("del", f"s3://{bucket}/u2/theirs.txt", check=False)
    # RLS hides u2's object from u1: nothing is deleted.
    assert static().get_object(Bucket=bucket, Key="u2/theirs.txt")["Body"].read() == b"theirs"
    listed = run("ls", "-r", f"s3://{bucket}").stdout
    assert "u1/mine.txt" in listed and "u2/" not in listed
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    run("sync", str(tree) + "/", f"s3://{bucket}/u1/tree/")
    assert static().get_object(Bucket=bucket, Key="u1/tree/a.txt")["Body"].read() == b"a"
    denied = run("sync", str(tree) + "/", f"s3://{bucket}/u2/tree/", check=False)
    assert denied.returncode != 0
    denied = run("mb", f"s3://u1-{secrets.token_hex(4)}", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
