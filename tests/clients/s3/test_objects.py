"""Objects over S3: bodies, metadata, ranges, preconditions, checksums, copies, deletes and
the bucket rules, with S3's error codes."""

from __future__ import annotations

import base64
import hashlib
import zlib
from datetime import datetime, timedelta, timezone

from conftest import error_of, rest, static


def test_put_get_head_keep_metadata(bucket):
    s3 = static()
    put = s3.put_object(
        Bucket=bucket,
        Key="docs/report.txt",
        Body=b"quarterly numbers",
        ContentType="text/x-report",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="report.txt"',
        ContentEncoding="identity",
        Metadata={"Color": "blue", "owner-team": "finance"},
    )
    etag = put["ETag"]
    assert etag == '"%s"' % hashlib.md5(b"quarterly numbers").hexdigest()
    got = s3.get_object(Bucket=bucket, Key="docs/report.txt")
    assert got["Body"].read() == b"quarterly numbers"
    assert got["ContentType"] == "text/x-report"
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == 'attachment; filename="report.txt"'
    assert got["ContentEncoding"] == "identity"
    assert got["Metadata"] == {"color": "blue", "owner-team": "finance"}
    assert got["ETag"] == etag
    head = s3.head_object(Bucket=bucket, Key="docs/report.txt")
    assert head["ContentLength"] == len(b"quarterly numbers")
    assert head["ETag"] == etag
    assert head["Metadata"]["color"] == "blue"


def test_overwrite_replaces(bucket):
    s3 = static()
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"one")
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"two!")
    assert s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"two!"


def test_if_none_match_star_only_creates(bucket):
    s3 = static()
    s3.put_object(Bucket=bucket, Key="once.txt", Body=b"first", IfNoneMatch="*")
    assert error_of(s3.put_object, Bucket=bucket, Key="once.txt", Body=b"second", IfNoneMatch="*")[:2] == (
        "PreconditionFailed",
        412,
    )
    assert s3.get_object(Bucket=bucket, Key="once.txt")["Body"].read() == b"first"


def test_empty_object(bucket):
    s3 = static()
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b"" and got["ContentLength"] == 0


def test_ranges(bucket):
    s3 = static()
    s3.put_object(Bucket=bucket, Key="r.bin", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="r.bin", Range="bytes=2-5")
    assert got["Body"].read() == b"2345"
    assert got["ContentRange"] == "bytes 2-5/10"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket=bucket, Key="r.bin", Range="bytes=-3")["Body"].read() == b"789"
    assert s3.get_object(Bucket=bucket, Key="r.bin", Range="bytes=7-")["Body"].read() == b"789"
    assert error_of(s3.get_object, Bucket=bucket, Key="r.bin", Range="bytes=20-30")[:2] == ("InvalidRange", 416)
    assert s3.get_object(Bucket=bucket, Key="r.bin", PartNumber=1)["Body"].read() == b"0123456789"


def test_preconditions(bucket):
    s3 = static()
    etag = s3.put_object(Bucket=bucket, Key="p.txt", Body=b"v1")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="p.txt", IfMatch=etag)["Body"].read() == b"v1"
    assert error_of(s3.get_object, Bucket=bucket, Key="p.txt", IfMatch='"nope"')[:2] == ("PreconditionFailed", 412)
    assert error_of(s3.get_object, Bucket=bucket, Key="p.txt", IfNoneMatch=etag)[1] == 304
    assert s3.get_object(Bucket=bucket, Key="p.txt", IfNoneMatch='"other"')["Body"].read() == b"v1"
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    assert error_of(s3.get_object, Bucket=bucket, Key="p.txt", IfModifiedSince=future)[1] == 304
    assert s3.get_object(Bucket=bucket, Key="p.txt", IfModifiedSince=past)["Body"].read() == b"v1"
    assert error_of(s3.get_object, Bucket=bucket, Key="p.txt", IfUnmodifiedSince=past)[:2] == (
        "PreconditionFailed",
        412,
    )
    assert s3.head_object(Bucket=bucket, Key="p.txt", IfUnmodifiedSince=future)["ContentLength"] == 2


def test_response_overrides(bucket):
    s3 = static()
    s3.put_object(Bucket=bucket, Key="o.txt", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="o.txt",
        ResponseContentType="application/x-custom",
        ResponseContentDisposition='attachment; filename="y.txt"',
        ResponseCacheControl="no-store",
    )
    assert got["ContentType"] == "application/x-custom"
    assert got["ContentDisposition"] == 'attachment; filename="y.txt"'
    assert got["CacheControl"] == "no-store"


def test_content_md5_is_verified(bucket):
    s3 = static()
    good = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5.txt", Body=b"payload", ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    assert error_of(s3.put_object, Bucket=bucket, Key="md5-bad.txt", Body=b"payload", ContentMD5=bad)[:2] == (
        "BadDigest",
        400,
    )
    # Nothing was stored under the refused key.
    assert error_of(s3.head_object, Bucket=bucket, Key="md5-bad.txt")[1] == 404


def test_checksum_headers_are_verified(bucket):
    s3 = static()
    crc = base64.b64encode(zlib.crc32(b"payload").to_bytes(4, "big")).decode()
    s3.put_object(Bucket=bucket, Key="crc.txt", Body=b"payload", ChecksumCRC32=crc)
    sha = base64.b64encode(hashlib.sha256(b"payload").digest()).decode()
    s3.put_object(Bucket=bucket, Key="sha.txt", Body=b"payload", ChecksumSHA256=sha)
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    assert error_of(s3.put_object, Bucket=bucket, Key="crc-bad.txt", Body=b"payload", ChecksumCRC32=wrong)[0] == "BadDigest"
    assert error_of(s3.head_object, Bucket=bucket, Key="crc-bad.txt")[1] == 404


def test_copy_object(bucket):
    s3 = static()
    s3.put_object(Bucket=bucket, Key="src.txt", Body=b"copied", Metadata={"k": "v"}, ContentType="text/x-src")
    result = s3.copy_object(Bucket=bucket, Key="dst.txt", CopySource={"Bucket": bucket, "Key": "src.txt"})
    assert result["CopyObjectResult"]["ETag"] == '"%s"' % hashlib.md5(b"copied").hexdigest()
    got = s3.get_object(Bucket=bucket, Key="dst.txt")
    assert got["Body"].read() == b"copied"
    assert got["Metadata"] == {"k": "v"}
    assert got["ContentType"] == "text/x-src"
    # REPLACE changes the user metadata, also on the same key.
    s3.copy_object(
        Bucket=bucket,
        Key="src.txt",
        CopySource={"Bucket": bucket, "Key": "src.txt"},
        MetadataDirective="REPLACE",
        Metadata={"k": "new"},
    )
    assert s3.head_object(Bucket=bucket, Key="src.txt")["Metadata"] == {"k": "new"}
    # ... and the representation headers, given anew (the AWS CLI's --content-type, ...).
    s3.copy_object(
        Bucket=bucket,
        Key="src.txt",
        CopySource={"Bucket": bucket, "Key": "src.txt"},
        MetadataDirective="REPLACE",
        ContentType="application/json",
        CacheControl="max-age=9",
    )
    head = s3.head_object(Bucket=bucket, Key="src.txt")
    assert (head["ContentType"], head["CacheControl"], head["Metadata"]) == ("application/json", "max-age=9", {})
    assert s3.get_object(Bucket=bucket, Key="src.txt")["Body"].read() == b"copied"
    # COPY keeps the source's.
    s3.copy_object(Bucket=bucket, Key="dst2.txt", CopySource={"Bucket": bucket, "Key": "src.txt"})
    assert s3.head_object(Bucket=bucket, Key="dst2.txt")["ContentType"] == "application/json"
    # A same-key copy that changes nothing is refused, as by S3.
    assert error_of(s3.copy_object, Bucket=bucket, Key="src.txt", CopySource={"Bucket": bucket, "Key": "src.txt"})[
        0
    ] == "InvalidRequest"


def test_copy_source_preconditions(bucket):
    s3 = static()
    etag = s3.put_object(Bucket=bucket, Key="c.txt", Body=b"c")["ETag"]
    source = {"Bucket": bucket, "Key": "c.txt"}
    s3.copy_object(Bucket=bucket, Key="c2.txt", CopySource=source, CopySourceIfMatch=etag)
    assert error_of(s3.copy_object, Bucket=bucket, Key="c3.txt", CopySource=source, CopySourceIfMatch='"x"')[:2] == (
        "PreconditionFailed",
        412,
    )
    assert error_of(s3.copy_object, Bucket=bucket, Key="c3.txt", CopySource=source, CopySourceIfNoneMatch=etag)[1] == 412
    assert error_of(s3.head_object, Bucket=bucket, Key="c3.txt")[1] == 404


def test_delete_and_delete_objects(bucket):
    s3 = static()
    for key in ("d/1", "d/2", "d/3"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="d/1")["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.delete_object(Bucket=bucket, Key="d/never")  # S3: deleting nothing succeeds
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/2"}, {"Key": "d/3"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["d/2", "d/3"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/x"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_get_object_attributes(bucket):
    s3 = static()
    s3.put_object(Bucket=bucket, Key="attr.bin", Body=b"12345")
    attrs = s3.get_object_attributes(Bucket=bucket, Key="attr.bin", ObjectAttributes=["ETag", "ObjectSize"])
    assert attrs["ObjectSize"] == 5
    assert attrs["ETag"].strip('"') == hashlib.md5(b"12345").hexdigest()


def test_errors(bucket):
    s3 = static()
    assert error_of(s3.get_object, Bucket=bucket, Key="missing")[:2] == ("NoSuchKey", 404)
    assert error_of(s3.get_object, Bucket="no-such-bucket-here", Key="k")[:2] == ("NoSuchBucket", 404)
    assert error_of(s3.head_bucket, Bucket="no-such-bucket-here")[1] == 404
    code = error_of(s3.create_bucket, Bucket=bucket)[0]
    assert code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    assert error_of(s3.delete_bucket, Bucket=bucket)[:2] == ("BucketNotEmpty", 409)
    assert error_of(s3.get_object_tagging, Bucket=bucket, Key="keep")[:2] == ("NotImplemented", 501)


def test_bucket_rules(bucket):
    status, body, _ = rest("PUT", f"/bucket/{bucket}", {"file_size_limit": 10, "allowed_mime_types": ["text/*"]})
    assert status == 200, body
    s3 = static()
    s3.put_object(Bucket=bucket, Key="small.txt", Body=b"0123456789", ContentType="text/plain")
    assert error_of(s3.put_object, Bucket=bucket, Key="big.txt", Body=b"0123456789A", ContentType="text/plain")[0] == (
        "EntityTooLarge"
    )
    assert error_of(s3.put_object, Bucket=bucket, Key="img.png", Body=b"png", ContentType="image/png")[0] == (
        "InvalidArgument"
    )


def test_bucket_calls(bucket):
    s3 = static()
    assert s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") in (None, "")
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.head_bucket(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)
    assert error_of(s3.head_bucket, Bucket=bucket)[1] == 404


def test_active_content_is_served_inert(bucket):
    s3 = static()
    s3.put_object(Bucket=bucket, Key="p.html", Body=b"<script>alert(1)</script>", ContentType="text/html")
    for answer in [s3.get_object(Bucket=bucket, Key="p.html"), s3.head_object(Bucket=bucket, Key="p.html")]:
        headers = answer["ResponseMetadata"]["HTTPHeaders"]
        assert headers["content-type"] == "text/html"
        assert headers["content-security-policy"] == "sandbox"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-disposition"].startswith('attachment; filename="p.html"')
    # A response-content-* override renames the type but cannot make it active.
    s3.put_object(Bucket=bucket, Key="t.txt", Body=b"<b>hi</b>", ContentType="text/plain")
    plain = s3.get_object(Bucket=bucket, Key="t.txt")["ResponseMetadata"]["HTTPHeaders"]
    assert "content-disposition" not in plain and plain["x-content-type-options"] == "nosniff"
    overridden = s3.get_object(
        Bucket=bucket, Key="t.txt", ResponseContentType="text/html", ResponseContentDisposition="inline"
    )["ResponseMetadata"]["HTTPHeaders"]
    assert overridden["content-type"] == "text/html"
    assert overridden["content-security-policy"] == "sandbox"
    assert overridden["content-disposition"].startswith("attachment")
    # A type that is not one valid media type is refused, on a put and on a REPLACE copy.
    code, status, _ = error_of(s3.put_object, Bucket=bucket, Key="bad", Body=b"x", ContentType="image/png, text/html")
    assert (code, status) == ("InvalidArgument", 400)
    code, status, _ = error_of(
        s3.copy_object, Bucket=bucket, Key="t2.txt", CopySource={"Bucket": bucket, "Key": "t.txt"},
        MetadataDirective="REPLACE", ContentType="text/plain; charset",
    )
    assert (code, status) == ("InvalidArgument", 400)
    code, status, _ = error_of(s3.create_multipart_upload, Bucket=bucket, Key="m", ContentType="a/b/c")
    assert (code, status) == ("InvalidArgument", 400)
