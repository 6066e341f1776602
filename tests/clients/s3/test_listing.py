"""Listings: ListObjectsV2 (prefix, delimiter, pages, start-after, url encoding, fetch-owner),
ListObjects (markers) and ListObjectVersions (an unversioned bucket)."""

from __future__ import annotations

from conftest import error_of, static

KEYS = ["a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "d e/ü+%.txt", "z.txt"]


def fill(bucket):
    s3 = static()
    for key in KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return s3


def test_v2_flat_and_delimited(bucket):
    s3 = fill(bucket)
    flat = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in flat["Contents"]] == KEYS
    assert flat["KeyCount"] == len(KEYS) and not flat["IsTruncated"]
    assert flat["Contents"][0]["Size"] == len(b"a.txt")
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a.txt", "z.txt"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["b/", "d e/"]
    inside = s3.list_objects_v2(Bucket=bucket, Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in inside["Contents"]] == ["b/1.txt", "b/2.txt"]
    assert [p["Prefix"] for p in inside["CommonPrefixes"]] == ["b/c/"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="b/c")["Contents"]] == ["b/c/3.txt"]


def test_v2_pages(bucket):
    s3 = fill(bucket)
    seen, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, **kwargs)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == KEYS
    # The paginator (what tools use) agrees, with a delimiter too.
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 1})
    entries = []
    for page in pages:
        entries += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert entries == ["a.txt", "b/", "d e/", "z.txt"]


def test_v2_start_after_and_encoding(bucket):
    s3 = fill(bucket)
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="b/2.txt")
    assert [o["Key"] for o in after["Contents"]] == ["b/c/3.txt", "d e/ü+%.txt", "z.txt"]
    # boto3 asks for encoding-type=url and decodes: odd characters survive the round trip.
    odd = s3.list_objects_v2(Bucket=bucket, Prefix="d e/")
    assert [o["Key"] for o in odd["Contents"]] == ["d e/ü+%.txt"]
    # Asked for explicitly, the encoding is left to the caller.
    raw = s3.list_objects_v2(Bucket=bucket, Prefix="d e/", EncodingType="url")
    assert raw["Contents"][0]["Key"] == "d%20e/%C3%BC%2B%25.txt"
    owned = s3.list_objects_v2(Bucket=bucket, FetchOwner=True, MaxKeys=1)
    assert "Owner" in owned["Contents"][0]
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket, MaxKeys=1)["Contents"][0]
    assert s3.list_objects_v2(Bucket=bucket, MaxKeys=0)["KeyCount"] == 0


def test_v1_markers(bucket):
    s3 = fill(bucket)
    first = s3.list_objects(Bucket=bucket, MaxKeys=3)
    assert [o["Key"] for o in first["Contents"]] == KEYS[:3]
    assert first["IsTruncated"]
    rest = s3.list_objects(Bucket=bucket, Marker=first["NextMarker"])
    assert [o["Key"] for o in rest["Contents"]] == KEYS[3:]
    folders = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert [o["Key"] for o in folders["Contents"]] == ["a.txt"]
    assert [p["Prefix"] for p in folders["CommonPrefixes"]] == ["b/"]
    more = s3.list_objects(Bucket=bucket, Delimiter="/", Marker=folders["NextMarker"])
    assert [p["Prefix"] for p in more["CommonPrefixes"]] == ["d e/"]
    assert [o["Key"] for o in more["Contents"]] == ["z.txt"]


def test_versions_of_an_unversioned_bucket(bucket):
    s3 = fill(bucket)
    versions = s3.list_object_versions(Bucket=bucket)
    assert [v["Key"] for v in versions["Versions"]] == KEYS
    assert {v["VersionId"] for v in versions["Versions"]} == {"null"}
    assert all(v["IsLatest"] for v in versions["Versions"])


def test_listing_errors(bucket):
    s3 = static()
    assert error_of(s3.list_objects_v2, Bucket="no-such-bucket-x")[:2] == ("NoSuchBucket", 404)
    assert error_of(s3.list_objects_v2, Bucket=bucket, ContinuationToken="%%%")[0] == "InvalidArgument"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
