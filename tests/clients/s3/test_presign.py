"""Presigned URLs (query authentication): Signature V4 with expiry, and boto3's default
Signature V2, for GET and PUT, through both prefixes."""

from __future__ import annotations

import re
import http.client
import time
import urllib.parse

import pytest

from conftest import PREFIXES, dbkey, static


def fetch(url: str, method: str = "GET", data: bytes | None = None):
    """Sends exactly the URL, with no Content-Type (Signature V2 signs it)."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    target = parsed.path + ("?" + parsed.query if parsed.query else "")
    connection.request(method, target, body=data, headers={"Content-Length": str(len(data or b""))})
    response = connection.getresponse()
    return response.status, response.read()


def tampered(url: str) -> str:
    """The URL with the last character of its signature changed."""
    match = re.search(r"(X-Amz-Signature|Signature)=([^&]+)", url)
    value = match.group(2)
    last = "0" if value[-1] != "0" else "1"
    return url[: match.end(2) - 1] + last + url[match.end(2) :]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_presigned_get_and_put(bucket, prefix, version):
    s3 = static(prefix, signature_version=version)
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre/signed file.txt"}, ExpiresIn=60)
    assert fetch(put, "PUT", b"uploaded by URL")[0] == 200
    get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/signed file.txt"}, ExpiresIn=60)
    assert fetch(get) == (200, b"uploaded by URL")
    # A tampered signature is refused.
    status, body = fetch(tampered(get))
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_presigned_urls_follow_the_signers_policies(bucket):
    static().put_object(Bucket=bucket, Key="u2/private.txt", Body=b"secret")
    s3 = dbkey(signature_version="s3v4")  # user u1
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "u2/private.txt"}, ExpiresIn=60)
    assert fetch(url)[0] == 404
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "u2/planted.txt"}, ExpiresIn=60)
    status, body = fetch(put, "PUT", b"x")
    assert status == 403 and b"AccessDenied" in body
    own = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "u1/mine.txt"}, ExpiresIn=60)
    assert fetch(own, "PUT", b"mine")[0] == 200


def test_expired_presigned_url(bucket):
    s3 = static(signature_version="s3v4")
    s3.put_object(Bucket=bucket, Key="soon.txt", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "soon.txt"}, ExpiresIn=1)
    time.sleep(2.1)
    status, body = fetch(url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body and b"Request has expired" in body


def test_presigned_url_with_a_session_token(bucket):
    from conftest import session

    static().put_object(Bucket=bucket, Key="u2/via-session.txt", Body=b"session link")
    s3 = session(signature_version="s3v4")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "u2/via-session.txt"}, ExpiresIn=60)
    assert "X-Amz-Security-Token=" in url
    assert fetch(url) == (200, b"session link")
    other = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "u1/x.txt"}, ExpiresIn=60)
    static().put_object(Bucket=bucket, Key="u1/x.txt", Body=b"x")
    assert fetch(other)[0] == 404
