"""aws-chunked uploads, as the AWS SDKs send them over HTTPS: signed chunks
(STREAMING-AWS4-HMAC-SHA256-PAYLOAD) and unsigned chunks with a trailing checksum
(STREAMING-UNSIGNED-PAYLOAD-TRAILER), signed over the prefixed path. botocore only streams
over HTTPS, so the requests are built here with SigV4 as AWS documents it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import urllib.parse
import zlib
from datetime import datetime, timezone

import pytest

from conftest import PREFIXES, STATIC_ID, STATIC_SECRET, URL, error_of, static

EMPTY_SHA = hashlib.sha256(b"").hexdigest()
REGION = "us-east-1"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, REGION)
    key = _hmac(key, "s3")
    return _hmac(key, "aws4_request")


def sign_headers(method, path, headers, payload_hash, secret, now):
    """Adds x-amz-date and Authorization to `headers` (SigV4, header auth)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers["x-amz-date"] = amz_date
    headers["x-amz-content-sha256"] = payload_hash
    names = sorted(h.lower() for h in headers)
    canonical_headers = "".join(f"{n}:{str(headers[[h for h in headers if h.lower() == n][0]]).strip()}\n" for n in names)
    signed = ";".join(names)
    canonical = "\n".join([method, urllib.parse.quote(path), "", canonical_headers, signed, payload_hash])
    scope = f"{date}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret, date)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={STATIC_ID}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return key, scope, amz_date, signature


def send(method, path, headers, body):
    parsed = urllib.parse.urlparse(URL)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    connection.request(method, urllib.parse.quote(path), body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def chunks_of(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)] + [b""]


def signed_chunked_body(data, key, scope, amz_date, seed, size=64 * 1024, tamper=False):
    body, previous = b"", seed
    for chunk in chunks_of(data, size):
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA, hashlib.sha256(chunk).hexdigest()]
        )
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if tamper and chunk:
            chunk = chunk[:-1] + bytes([chunk[-1] ^ 1])
        body += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n"
        previous = signature
    return body


@pytest.mark.parametrize("prefix", PREFIXES)
def test_signed_chunks(bucket, prefix):
    data = bytes(range(256)) * 1000  # 256 kB: several chunks
    path = f"{prefix}/{bucket}/streamed/signed.bin"
    parsed = urllib.parse.urlparse(URL)
    headers = {
        "Host": parsed.netloc,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Type": "application/x-test",
    }
    now = datetime.now(timezone.utc)
    key, scope, amz_date, seed = sign_headers(
        "PUT", path, headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", STATIC_SECRET, now
    )
    body = signed_chunked_body(data, key, scope, amz_date, seed)
    headers["Content-Length"] = str(len(body))
    status, text = send("PUT", path, headers, body)
    assert status == 200, text
    got = static().get_object(Bucket=bucket, Key="streamed/signed.bin")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-test"
    assert got.get("ContentEncoding") in (None, "")  # aws-chunked was the transfer, not the object's


def test_tampered_chunk_is_refused(bucket):
    data = b"x" * 100_000
    path = f"/s3/{bucket}/streamed/tampered.bin"
    parsed = urllib.parse.urlparse(URL)
    headers = {"Host": parsed.netloc, "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
    key, scope, amz_date, seed = sign_headers(
        "PUT", path, headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", STATIC_SECRET, datetime.now(timezone.utc)
    )
    body = signed_chunked_body(data, key, scope, amz_date, seed, tamper=True)
    headers["Content-Length"] = str(len(body))
    status, text = send("PUT", path, headers, body)
    assert status == 403 and b"SignatureDoesNotMatch" in text, text
    assert error_of(static().head_object, Bucket=bucket, Key="streamed/tampered.bin")[1] == 404


def test_payload_hash_mismatch_is_refused(bucket):
    data = b"the real body"
    path = f"/s3/{bucket}/hashed.txt"
    parsed = urllib.parse.urlparse(URL)
    headers = {"Host": parsed.netloc, "Content-Length": str(len(data))}
    sign_headers("PUT", path, headers, hashlib.sha256(b"another body").hexdigest(), STATIC_SECRET, datetime.now(timezone.utc))
    status, text = send("PUT", path, headers, data)
    assert status == 400 and b"XAmzContentSHA256Mismatch" in text, text
    assert error_of(static().head_object, Bucket=bucket, Key="hashed.txt")[1] == 404


def unsigned_trailer_body(data, checksum, size=32 * 1024):
    body = b""
    for chunk in chunks_of(data, size):
        if chunk:
            body += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    body += b"0\r\n" + f"x-amz-checksum-crc32:{checksum}\r\n\r\n".encode()
    return body


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("good", [True, False])
def test_unsigned_chunks_with_trailing_checksum(bucket, prefix, good):
    data = b"trailer test " * 10_000
    crc = zlib.crc32(data if good else data + b"!")
    checksum = base64.b64encode(crc.to_bytes(4, "big")).decode()
    path = f"{prefix}/{bucket}/streamed/trailer.bin"
    parsed = urllib.parse.urlparse(URL)
    headers = {
        "Host": parsed.netloc,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    sign_headers("PUT", path, headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", STATIC_SECRET, datetime.now(timezone.utc))
    body = unsigned_trailer_body(data, checksum)
    headers["Content-Length"] = str(len(body))
    status, text = send("PUT", path, headers, body)
    if good:
        assert status == 200, text
        assert static().get_object(Bucket=bucket, Key="streamed/trailer.bin")["Body"].read() == data
    else:
        assert status == 400 and b"BadDigest" in text, text
        assert error_of(static().head_object, Bucket=bucket, Key="streamed/trailer.bin")[1] == 404


def test_unsigned_payload(bucket):
    data = b"unsigned payload"
    path = f"/storage/v1/s3/{bucket}/unsigned.txt"
    parsed = urllib.parse.urlparse(URL)
    headers = {"Host": parsed.netloc, "Content-Length": str(len(data))}
    sign_headers("PUT", path, headers, "UNSIGNED-PAYLOAD", STATIC_SECRET, datetime.now(timezone.utc))
    status, text = send("PUT", path, headers, data)
    assert status == 200, text
    assert static().get_object(Bucket=bucket, Key="unsigned.txt")["Body"].read() == data
