"""aws-chunked uploads, as the AWS SDKs send them over HTTPS: signed chunks
(STREAMING-AWS4-HMAC-SHA256-PAYLOAD) and unsigned chunks with a trailing checksum
(STREAMING-UNSIGNED-PAYLOAD-TRAILER), signed over the prefixed path. botocore only streams
over HTTPS, so the requests are built here with SigV4 as AWS documents it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
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


def sign_query_headers(method, path, query, headers, payload_hash):
    """Like `sign_headers`, for a request with a query string (already in canonical order)."""
    now = datetime.now(timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers["x-amz-date"] = amz_date
    headers["x-amz-content-sha256"] = payload_hash
    names = sorted(h.lower() for h in headers)
    canonical_headers = "".join(f"{n}:{str(headers[[h for h in headers if h.lower() == n][0]]).strip()}\n" for n in names)
    signed = ";".join(names)
    canonical = "\n".join([method, urllib.parse.quote(path), query, canonical_headers, signed, payload_hash])
    scope = f"{date}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(STATIC_SECRET, date), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={STATIC_ID}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )


def send(method, path, headers, body, quote=True):
    parsed = urllib.parse.urlparse(URL)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    connection.request(method, urllib.parse.quote(path) if quote else path, body=body, headers=headers)
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


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.mark.parametrize(
    "announced, checksum, content_md5, expected",
    [
        # The payload hash (hex, signed) is checked by the core: right, wrong.
        (b"body", None, None, None),
        (b"another body", None, None, "XAmzContentSHA256Mismatch"),
        # With a matching x-amz-checksum-sha256, echoed back.
        (b"body", b"body", None, None),
        # A checksum that differs from the payload hash can never hold.
        (b"body", b"other", None, "BadDigest"),
        (b"other", b"body", None, "XAmzContentSHA256Mismatch"),
        # Content-MD5 beside a signed payload.
        (b"body", None, b"body", None),
        (b"body", None, b"other", "BadDigest"),
    ],
)
def test_signed_payload_checks(bucket, announced, checksum, content_md5, expected):
    data = b"body"
    key = f"signed-payload/{hashlib.md5(repr((announced, checksum, content_md5)).encode()).hexdigest()}.txt"
    path = f"/s3/{bucket}/{key}"
    parsed = urllib.parse.urlparse(URL)
    headers = {"Host": parsed.netloc, "Content-Length": str(len(data))}
    if checksum is not None:
        headers["x-amz-checksum-sha256"] = sha256_b64(checksum)
    if content_md5 is not None:
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(content_md5).digest()).decode()
    sign_headers("PUT", path, headers, hashlib.sha256(announced).hexdigest(), STATIC_SECRET, datetime.now(timezone.utc))
    status, text = send("PUT", path, headers, data)
    if expected is None:
        assert status == 200, text
        assert static().get_object(Bucket=bucket, Key=key)["Body"].read() == data
    else:
        assert status == 400 and expected.encode() in text, text
        assert error_of(static().head_object, Bucket=bucket, Key=key)[1] == 404


def test_signed_payload_of_a_part(bucket):
    s3 = static()
    uid = s3.create_multipart_upload(Bucket=bucket, Key="signed-part.bin")["UploadId"]
    data = os.urandom(3 * 1024 * 1024)  # past the size where hashing leaves the reading task
    parsed = urllib.parse.urlparse(URL)
    for number, announced in [(1, data + b"!"), (2, data)]:
        path = f"/s3/{bucket}/signed-part.bin"
        headers = {"Host": parsed.netloc, "Content-Length": str(len(data))}
        query = f"partNumber={number}&uploadId={urllib.parse.quote(uid, safe='')}"
        sign_query_headers("PUT", path, query, headers, hashlib.sha256(announced).hexdigest())
        status, text = send("PUT", f"{path}?{query}", headers, data, quote=False)
        if number == 1:
            assert status == 400 and b"XAmzContentSHA256Mismatch" in text, text
        else:
            assert status == 200, text
    parts = s3.list_parts(Bucket=bucket, Key="signed-part.bin", UploadId=uid).get("Parts", [])
    assert [(p["PartNumber"], p["ETag"].strip('"')) for p in parts] == [(2, hashlib.md5(data).hexdigest())]
    s3.abort_multipart_upload(Bucket=bucket, Key="signed-part.bin", UploadId=uid)


def test_presigned_put_with_payload_hash(bucket):
    s3 = static(signature_version="s3v4")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "presigned-hash.txt"}, ExpiresIn=300)
    parsed = urllib.parse.urlparse(url)
    data = b"presigned body"
    for announced, status_wanted in [(b"something else", 400), (data, 200)]:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        connection.request(
            "PUT",
            f"{parsed.path}?{parsed.query}",
            body=data,
            headers={"x-amz-content-sha256": hashlib.sha256(announced).hexdigest(), "Content-Length": str(len(data))},
        )
        response = connection.getresponse()
        text = response.read()
        assert response.status == status_wanted, text
        if status_wanted == 400:
            assert b"XAmzContentSHA256Mismatch" in text, text
            assert error_of(s3.head_object, Bucket=bucket, Key="presigned-hash.txt")[1] == 404
    assert s3.get_object(Bucket=bucket, Key="presigned-hash.txt")["Body"].read() == data


@pytest.mark.parametrize("good", [True, False])
def test_unsigned_chunks_with_trailing_sha256(bucket, good):
    data = b"sha256 trailer " * 10_000
    checksum = sha256_b64(data if good else data + b"!")
    path = f"/s3/{bucket}/streamed/trailer-sha256.bin"
    parsed = urllib.parse.urlparse(URL)
    headers = {
        "Host": parsed.netloc,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-sha256",
    }
    sign_headers("PUT", path, headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", STATIC_SECRET, datetime.now(timezone.utc))
    body = b""
    for chunk in chunks_of(data, 32 * 1024):
        if chunk:
            body += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    body += b"0\r\n" + f"x-amz-checksum-sha256:{checksum}\r\n\r\n".encode()
    headers["Content-Length"] = str(len(body))
    status, text = send("PUT", path, headers, body)
    if good:
        assert status == 200, text
        assert static().get_object(Bucket=bucket, Key="streamed/trailer-sha256.bin")["Body"].read() == data
    else:
        assert status == 400 and b"BadDigest" in text, text
        assert error_of(static().head_object, Bucket=bucket, Key="streamed/trailer-sha256.bin")[1] == 404
