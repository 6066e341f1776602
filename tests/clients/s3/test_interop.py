"""One object, two protocols: what S3 writes the REST API reads, and the reverse, with the
same metadata."""

from __future__ import annotations

import base64
import json

from conftest import dbkey, rest, static


def test_s3_write_rest_read(bucket):
    static().put_object(
        Bucket=bucket, Key="x/from-s3.txt", Body=b"s3 bytes", ContentType="text/x-s3", Metadata={"a": "1"}
    )
    status, body, headers = rest("GET", f"/object/authenticated/{bucket}/x/from-s3.txt")
    assert status == 200 and body == b"s3 bytes"
    assert headers["Content-Type"].startswith("text/x-s3")
    status, info, _ = rest("GET", f"/object/info/authenticated/{bucket}/x/from-s3.txt")
    assert status == 200, info
    assert info["metadata"] == {"a": "1"}
    assert info["size"] == len(b"s3 bytes")
    assert info["content_type"] == "text/x-s3"


def test_rest_write_s3_read(bucket):
    status, body, _ = rest(
        "POST",
        f"/object/{bucket}/y/from-rest.txt",
        b"rest bytes",
        {"Content-Type": "text/x-rest", "x-metadata": base64.b64encode(json.dumps({"b": "2"}).encode()).decode(), "cache-control": "max-age=5"},
    )
    assert status == 200, body
    got = static().get_object(Bucket=bucket, Key="y/from-rest.txt")
    assert got["Body"].read() == b"rest bytes"
    assert got["ContentType"] == "text/x-rest"
    assert got["Metadata"] == {"b": "2"}
    assert got["CacheControl"] == "max-age=5"
    listed = static().list_objects_v2(Bucket=bucket, Prefix="y/")
    assert [o["Key"] for o in listed["Contents"]] == ["y/from-rest.txt"]
    assert listed["Contents"][0]["ETag"] == got["ETag"]


def test_same_policy_on_both_fronts(bucket):
    # u1 through a database key and u1 through a JWT on REST meet the same owner-folder rule.
    dbkey().put_object(Bucket=bucket, Key="u1/both.txt", Body=b"x")
    from conftest import _env

    u1 = _env("PGSTORAGE_USER1_KEY")
    status, body, _ = rest("GET", f"/object/authenticated/{bucket}/u1/both.txt", key=u1)
    assert status == 200 and body == b"x"
    status, _, _ = rest("POST", f"/object/{bucket}/u2/nope.txt", b"x", {"Content-Type": "text/plain"}, key=u1)
    assert status in (400, 403)
