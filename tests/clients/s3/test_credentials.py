"""Each kind of S3 credential runs as its role and claims, under the same policy as the REST
API: a signed-in user may write only their own folder."""

from __future__ import annotations

import pytest

from conftest import (
    PREFIXES,
    REVOKED_ID,
    REVOKED_SECRET,
    EXPIRED_JWT,
    USER2_JWT,
    client,
    dbkey,
    error_of,
    rest,
    session,
    static,
)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_static_key_runs_as_service_role(bucket, prefix):
    s3 = static(prefix)
    s3.put_object(Bucket=bucket, Key="anyone/file.txt", Body=b"service")
    assert s3.get_object(Bucket=bucket, Key="anyone/file.txt")["Body"].read() == b"service"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_database_key_is_user_u1_under_rls(bucket, prefix):
    s3 = dbkey(prefix)
    s3.put_object(Bucket=bucket, Key="u1/mine.txt", Body=b"u1 wrote this")
    assert s3.get_object(Bucket=bucket, Key="u1/mine.txt")["Body"].read() == b"u1 wrote this"
    code, status, message = error_of(s3.put_object, Bucket=bucket, Key="u2/theirs.txt", Body=b"x")
    assert (code, status) == ("AccessDenied", 403)
    # The refusal names what was refused, for whom; never the policy.
    assert "refused storage.upload or storage.overwrite as role authenticated, sub u1" in message, message
    static().put_object(Bucket=bucket, Key="u2/theirs.txt", Body=b"u2's")
    assert error_of(s3.get_object, Bucket=bucket, Key="u2/theirs.txt")[0] == "NoSuchKey"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["u1/mine.txt"]
    # u1 cannot see u2's file: S3 answers a delete of an invisible key as done; it stays.
    s3.delete_object(Bucket=bucket, Key="u2/theirs.txt")
    assert static().get_object(Bucket=bucket, Key="u2/theirs.txt")["Body"].read() == b"u2's"
    status, info, _ = rest("GET", f"/object/info/authenticated/{bucket}/u1/mine.txt")
    assert status == 200 and info["size"] == len(b"u1 wrote this"), info
    # The row is owned by the key's sub, as with a JWT.
    listed = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]
    assert [o["Owner"]["ID"] for o in listed] == ["u1"]
    s3.delete_object(Bucket=bucket, Key="u1/mine.txt")
    assert error_of(s3.head_object, Bucket=bucket, Key="u1/mine.txt")[1] == 404


@pytest.mark.parametrize("prefix", PREFIXES)
def test_session_token_is_the_jwt_user(bucket, prefix):
    s3 = session(prefix=prefix)
    s3.put_object(Bucket=bucket, Key="u2/session.txt", Body=b"from a session")
    assert s3.get_object(Bucket=bucket, Key="u2/session.txt")["Body"].read() == b"from a session"
    assert error_of(s3.put_object, Bucket=bucket, Key="u1/nope.txt", Body=b"x")[:2] == ("AccessDenied", 403)


def test_session_deletes_own_files_only(bucket):
    static().put_object(Bucket=bucket, Key="u2/keep.txt", Body=b"keep")
    dbkey().delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "u2/keep.txt"}]})
    # u1 cannot see u2's file, so S3 semantics answer "deleted"; it is still there.
    assert static().get_object(Bucket=bucket, Key="u2/keep.txt")["Body"].read() == b"keep"
    result = session().delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "u2/keep.txt"}, {"Key": "u2/never-was"}]}
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == ["u2/keep.txt", "u2/never-was"]
    assert error_of(static().head_object, Bucket=bucket, Key="u2/keep.txt")[1] == 404


def test_visible_but_not_deletable_is_reported_per_key(bucket):
    # The objects of public '*-readable' buckets are readable by everyone
    # (fixtures: objects_public_read), but only their owner may delete them.
    readable = bucket + "-readable"
    static().create_bucket(Bucket=readable)
    static().put_object(Bucket=readable, Key="u1/shared.txt", Body=b"x")
    status, _, _ = rest("PUT", f"/bucket/{readable}", {"public": True})
    assert status == 200
    s3 = session()
    assert s3.get_object(Bucket=readable, Key="u1/shared.txt")["Body"].read() == b"x"
    assert error_of(s3.delete_object, Bucket=readable, Key="u1/shared.txt")[:2] == ("AccessDenied", 403)
    result = s3.delete_objects(Bucket=readable, Delete={"Objects": [{"Key": "u1/shared.txt"}]})
    assert [e["Code"] for e in result["Errors"]] == ["AccessDenied"]
    assert "Deleted" not in result or result["Deleted"] == []


def test_unknown_access_key(bucket):
    code, status, _ = error_of(client("NOSUCHKEY0000000000", "whatever").list_buckets)
    assert (code, status) == ("InvalidAccessKeyId", 403)


def test_revoked_database_key(bucket):
    code, status, _ = error_of(client(REVOKED_ID, REVOKED_SECRET).list_buckets)
    assert (code, status) == ("InvalidAccessKeyId", 403)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_wrong_secret(bucket, prefix):
    from conftest import STATIC_ID, DB_ID

    for key_id in (STATIC_ID, DB_ID):
        code, status, _ = error_of(client(key_id, "not-the-secret", prefix=prefix).list_objects_v2, Bucket=bucket)
        assert (code, status) == ("SignatureDoesNotMatch", 403)


def test_session_with_wrong_secret():
    code, status, _ = error_of(client("ref", "not-the-anon-key", token=USER2_JWT).list_buckets)
    assert (code, status) == ("SignatureDoesNotMatch", 403)


def test_bad_session_tokens():
    for token in ("not-a-jwt", EXPIRED_JWT):
        code, status, _ = error_of(session(token).list_buckets)
        assert (code, status) == ("InvalidToken", 403)


def test_any_region_signs(bucket):
    for region in ("us-east-1", "auto", "eu-central-1"):
        static(region=region).head_bucket(Bucket=bucket)


def test_unsigned_requests_run_as_anon(bucket):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    from conftest import URL

    readable = bucket + "-readable"
    static().create_bucket(Bucket=readable)
    static().put_object(Bucket=readable, Key="open.txt", Body=b"for everyone")
    static().put_object(Bucket=bucket, Key="closed.txt", Body=b"private")
    assert rest("PUT", f"/bucket/{readable}", {"public": True})[0] == 200
    anon = boto3.client(
        "s3",
        endpoint_url=URL + "/s3",
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}),
    )
    assert anon.get_object(Bucket=readable, Key="open.txt")["Body"].read() == b"for everyone"
    assert error_of(anon.get_object, Bucket=bucket, Key="closed.txt")[1] == 404
    assert error_of(anon.put_object, Bucket=readable, Key="planted.txt", Body=b"x")[:2] == ("AccessDenied", 403)


def test_database_key_sees_only_what_policies_show(bucket):
    # Buckets are visible to users only when public (fixtures: buckets_public_read).
    names = [b["Name"] for b in dbkey().list_buckets()["Buckets"]]
    assert bucket not in names
    assert error_of(dbkey().create_bucket, Bucket=bucket + "-mine")[:2] == ("AccessDenied", 403)
