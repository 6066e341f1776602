"""Virtual-host style under the server's configured domain (`localhost` in this suite):
`Host: BUCKET.localhost:PORT` names the bucket, `Host: localhost:PORT` is path-style at the
root. Raw requests are signed by botocore's SigV4Auth over the host and path as sent and
delivered to 127.0.0.1; boto3 itself resolves `*.localhost` through a patched resolver."""

from __future__ import annotations

import http.client
import os
import socket
import urllib.parse

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import DB_ID, DB_SECRET, STATIC_ID, STATIC_SECRET, URL, error_of, static
from test_post_object import code_of, post

DOMAIN = os.environ.get("PGSTORAGE_S3_DOMAIN", "localhost")
PORT = urllib.parse.urlsplit(URL).port


def signed(method: str, host: str, path: str, body: bytes = b"", key=(STATIC_ID, STATIC_SECRET)):
    """Sends a request signed by botocore for `http://host:PORT/path`, over 127.0.0.1."""
    url = f"http://{host}:{PORT}{path}"
    request = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(*key), "s3", "us-east-1").add_auth(request)
    return send(method, f"{host}:{PORT}", path, body, dict(request.headers))


def send(method, host, path, body=b"", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    headers = dict(headers or {})
    headers["Host"] = host
    headers["Content-Length"] = str(len(body))
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def test_bucket_in_the_host(bucket):
    host = f"{bucket}.{DOMAIN}"
    assert signed("PUT", host, "/dir/a%20b.txt", b"virtual")[0] == 200
    assert signed("GET", host, "/dir/a%20b.txt") == (200, b"virtual")
    assert static().get_object(Bucket=bucket, Key="dir/a b.txt")["Body"].read() == b"virtual"
    status, body = signed("GET", host, "/?list-type=2&prefix=dir%2F")
    assert status == 200 and b"<Key>dir/a b.txt</Key>" in body
    status, body = signed("GET", host, "/")
    assert status == 200 and b"<ListBucketResult" in body
    # The signature covers the host: the same request sent to another bucket's host fails.
    request = AWSRequest(method="GET", url=f"http://{host}:{PORT}/dir/a%20b.txt")
    S3SigV4Auth(Credentials(STATIC_ID, STATIC_SECRET), "s3", "us-east-1").add_auth(request)
    status, body = send("GET", f"other.{DOMAIN}:{PORT}", "/dir/a%20b.txt", headers=dict(request.headers))
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_the_domain_itself_is_path_style_at_the_root(bucket):
    assert signed("PUT", DOMAIN, f"/{bucket}/root.txt", b"root")[0] == 200
    assert signed("GET", DOMAIN, f"/{bucket}/root.txt") == (200, b"root")
    status, body = signed("GET", DOMAIN, "/")
    assert status == 200 and f"<Name>{bucket}</Name>".encode() in body
    # Every path on the domain is S3's, the REST API's included.
    status, body = signed("GET", DOMAIN, "/status")
    assert status == 404 and b"NoSuchBucket" in body
    # Unsigned requests run as anon, as on the prefixes.
    status, body = send("GET", f"{bucket}.{DOMAIN}:{PORT}", "/root.txt")
    assert status in (403, 404) and b"<Error>" in body


def test_database_key_owner_folder(bucket):
    host = f"{bucket}.{DOMAIN}"
    assert signed("PUT", host, "/u1/mine.txt", b"mine", key=(DB_ID, DB_SECRET))[0] == 200
    status, body = signed("PUT", host, "/u2/planted.txt", b"x", key=(DB_ID, DB_SECRET))
    assert status == 403 and b"AccessDenied" in body


@pytest.fixture
def resolve_localhost(monkeypatch):
    """Resolves `*.localhost` to loopback, as systemd-resolved does, for this process only."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith("." + DOMAIN):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_boto3_virtual_addressing(bucket, resolve_localhost, version):
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{DOMAIN}:{PORT}",
        aws_access_key_id=STATIC_ID,
        aws_secret_access_key=STATIC_SECRET,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "virtual"}, signature_version=version, retries={"max_attempts": 1}),
    )
    s3.put_object(Bucket=bucket, Key="v/one.txt", Body=b"one", ContentType="text/plain")
    assert s3.get_object(Bucket=bucket, Key="v/one.txt")["Body"].read() == b"one"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="v/")["Contents"]] == ["v/one.txt"]
    s3.delete_object(Bucket=bucket, Key="v/one.txt")
    code, status, _ = error_of(s3.head_object, Bucket=bucket, Key="v/one.txt")
    assert status == 404
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "missing"}, ExpiresIn=60)
    assert urllib.parse.urlsplit(url).hostname == f"{bucket}.{DOMAIN}"
    # A browser form posted to the bucket's host.
    form = s3.generate_presigned_post(bucket, "v/form.txt", ExpiresIn=60)
    parsed = urllib.parse.urlsplit(form["url"])
    assert parsed.hostname == f"{bucket}.{DOMAIN}"
    status, body, _ = post(f"http://127.0.0.1:{PORT}{parsed.path}", form["fields"], b"form", host=parsed.netloc)
    assert status == 204, code_of(body)
    assert static().get_object(Bucket=bucket, Key="v/form.txt")["Body"].read() == b"form"
