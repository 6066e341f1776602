"""POST object: browser-form uploads built by boto3's generate_presigned_post (Signature V4
and V2), sent as a browser sends them (multipart/form-data, the file last), with each kind of
credential under the owner-folder policy, and unsigned forms running as anon."""

from __future__ import annotations

import hashlib
import http.client
import secrets
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from conftest import PREFIXES, URL, dbkey, error_of, rest, session, static


def form(fields: dict, data: bytes, filename: str = "photo.png", file_type: str = "image/png"):
    """A multipart/form-data body with `fields` first and the file last, as browsers send it."""
    boundary = "----pgstorage" + secrets.token_hex(8)
    out = []
    for name, value in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    out.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {file_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def post(url: str, fields: dict, data: bytes = b"file body", host: str | None = None, **file):
    """POSTs the form to `url`: (status, body, headers)."""
    parsed = urllib.parse.urlsplit(url)
    body, content_type = form(fields, data, **file)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    if host:
        headers["Host"] = host
    connection.request("POST", parsed.path or "/", body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read(), response.headers


def code_of(body: bytes) -> tuple[str, str]:
    root = ET.fromstring(body)
    return root.findtext("Code"), root.findtext("Message")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_signed_form_stores_the_file_with_its_fields(bucket, prefix):
    s3 = static(prefix, signature_version="s3v4")
    presigned = s3.generate_presigned_post(
        bucket,
        "forms/${filename}",
        Fields={
            "Content-Type": "image/png",
            "Cache-Control": "max-age=60",
            "Content-Disposition": 'inline; filename="p.png"',
            "x-amz-meta-color": "blue",
            "success_action_status": "201",
        },
        Conditions=[
            ["starts-with", "$Content-Type", "image/"],
            {"Cache-Control": "max-age=60"},
            ["starts-with", "$Content-Disposition", ""],
            {"x-amz-meta-color": "blue"},
            {"success_action_status": "201"},
            ["content-length-range", 1, 1024],
        ],
        ExpiresIn=300,
    )
    assert presigned["url"].endswith(f"{prefix}/{bucket}")
    data = b"\x89PNG form upload"
    status, body, headers = post(presigned["url"], presigned["fields"], data, filename="cat.png")
    assert status == 201, body
    root = ET.fromstring(body)
    assert root.tag == "PostResponse"
    assert root.findtext("Bucket") == bucket and root.findtext("Key") == "forms/cat.png"
    etag = f'"{hashlib.md5(data).hexdigest()}"'
    assert root.findtext("ETag") == etag and headers["ETag"] == etag
    assert root.findtext("Location").endswith(f"{prefix}/{bucket}/forms/cat.png")
    head = s3.head_object(Bucket=bucket, Key="forms/cat.png")
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'inline; filename="p.png"'
    assert head["Metadata"] == {"color": "blue"}
    assert head["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key="forms/cat.png")["Body"].read() == data
    status, info, _ = rest("GET", f"/object/info/{bucket}/forms/cat.png")
    assert status == 200 and info["content_type"] == "image/png" and info["metadata"] == {"color": "blue"}


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_success_statuses_and_redirect(bucket, version):
    s3 = static(signature_version=version)

    def send(key, fields, conditions):
        p = s3.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=300)
        return post(p["url"], p["fields"])

    status, body, headers = send("plain.txt", None, None)
    assert (status, body) == (204, b"")
    assert headers["ETag"] == f'"{hashlib.md5(b"file body").hexdigest()}"'
    status, body, _ = send("ok.txt", {"success_action_status": "200"}, [{"success_action_status": "200"}])
    assert (status, body) == (200, b"")
    target = "https://app.example.test/done?from=form"
    status, _, headers = send(
        "redirected.txt", {"success_action_redirect": target}, [{"success_action_redirect": target}]
    )
    assert status == 303
    location = urllib.parse.urlsplit(headers["Location"])
    query = urllib.parse.parse_qs(location.query)
    assert location.netloc == "app.example.test" and query["from"] == ["form"]
    assert query["bucket"] == [bucket] and query["key"] == ["redirected.txt"]
    assert query["etag"] == [f'"{hashlib.md5(b"file body").hexdigest()}"']
    for key in ["plain.txt", "ok.txt", "redirected.txt"]:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"file body"


def test_policy_refusals(bucket):
    s3 = static(signature_version="s3v4")
    expired = s3.generate_presigned_post(bucket, "late.txt", ExpiresIn=-10)
    # Refused before the file is read; the client, still sending 8 MiB, gets the answer.
    status, body, _ = post(expired["url"], expired["fields"], b"x" * (8 * 1024 * 1024))
    assert (status, code_of(body)) == (403, ("AccessDenied", "Invalid according to Policy: Policy expired."))

    p = s3.generate_presigned_post(bucket, "in/${filename}", ExpiresIn=300)
    fields = dict(p["fields"], key="elsewhere/x.txt")
    status, body, _ = post(p["url"], fields)
    assert status == 403
    assert code_of(body) == (
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "in/"]',
    )

    fields = dict(p["fields"], **{"x-amz-meta-sneaky": "1"})
    status, body, _ = post(p["url"], fields)
    assert (status, code_of(body)) == (
        403,
        ("AccessDenied", "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky"),
    )

    signature = p["fields"]["x-amz-signature"]
    fields = dict(p["fields"], **{"x-amz-signature": ("0" if signature[0] != "0" else "1") + signature[1:]})
    status, body, _ = post(p["url"], fields)
    assert status == 403 and code_of(body)[0] == "SignatureDoesNotMatch"

    # A policy edited after signing no longer matches its signature.
    status, body, _ = post(p["url"], dict(p["fields"], policy=p["fields"]["policy"][:-4] + "AAAA"))
    assert status in (400, 403) and code_of(body)[0] in ("SignatureDoesNotMatch", "InvalidPolicyDocument")

    small = s3.generate_presigned_post(bucket, "small.bin", Conditions=[["content-length-range", 10, 100]], ExpiresIn=300)
    status, body, _ = post(small["url"], small["fields"], b"x" * 101)
    assert (status, code_of(body)[0]) == (400, "EntityTooLarge")
    status, body, _ = post(small["url"], small["fields"], b"x" * 9)
    assert (status, code_of(body)[0]) == (400, "EntityTooSmall")
    status, _, _ = post(small["url"], small["fields"], b"x" * 100)
    assert status == 204
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["small.bin"]


def test_streams_a_large_file(bucket):
    s3 = static(signature_version="s3v4")
    data = secrets.token_bytes(3 * 1024 * 1024 + 17)
    p = s3.generate_presigned_post(bucket, "big.bin", ExpiresIn=300)
    status, body, headers = post(p["url"], p["fields"], data)
    assert status == 204, body
    assert headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data


def test_database_key_and_session_token_forms_follow_the_policies(bucket):
    u1 = dbkey(signature_version="s3v4")
    p = u1.generate_presigned_post(bucket, "u1/mine.txt", ExpiresIn=300)
    assert post(p["url"], p["fields"])[0] == 204
    p = u1.generate_presigned_post(bucket, "u2/planted.txt", ExpiresIn=300)
    status, body, _ = post(p["url"], p["fields"])
    assert (status, code_of(body)[0]) == (403, "AccessDenied")

    u2 = session(signature_version="s3v4")
    p = u2.generate_presigned_post(bucket, "u2/mine.txt", ExpiresIn=300)
    assert "x-amz-security-token" in p["fields"]
    assert post(p["url"], p["fields"])[0] == 204
    p = u2.generate_presigned_post(bucket, "u1/planted.txt", ExpiresIn=300)
    status, body, _ = post(p["url"], p["fields"])
    assert (status, code_of(body)[0]) == (403, "AccessDenied")

    # Each object belongs to the credential's user, and nothing was planted.
    listed = static().list_objects_v2(Bucket=bucket, FetchOwner=True).get("Contents", [])
    assert {o["Key"]: o["Owner"]["ID"] for o in listed} == {"u1/mine.txt": "u1", "u2/mine.txt": "u2"}


def test_unsigned_forms_run_as_anon():
    name = f"s3-{secrets.token_hex(4)}-dropbox"
    static().create_bucket(Bucket=name)
    url = f"{URL}/s3/{name}"
    # The suite's extra policy lets anon add files under inbox/ of '-dropbox' buckets.
    assert post(url, {"key": "inbox/${filename}"}, b"hello", filename="note.txt", file_type="text/plain")[0] == 204
    assert static().get_object(Bucket=name, Key="inbox/note.txt")["Body"].read() == b"hello"
    status, body, _ = post(url, {"key": "other/note.txt"}, b"hello")
    assert (status, code_of(body)[0]) == (403, "AccessDenied")
    status, body, _ = post(url, {"Content-Type": "text/plain"}, b"hello")
    assert status == 400 and code_of(body)[0] == "InvalidArgument"


def test_bucket_rules_apply():
    name = f"s3-{secrets.token_hex(4)}"
    status, _, _ = rest(
        "POST",
        "/bucket",
        {"name": name, "file_size_limit": 10, "allowed_mime_types": ["text/plain"]},
    )
    assert status == 200
    s3 = static(signature_version="s3v4")
    p = s3.generate_presigned_post(
        name, "a.txt", Fields={"Content-Type": "text/plain"}, Conditions=[{"Content-Type": "text/plain"}]
    )
    status, body, _ = post(p["url"], p["fields"], b"x" * 11)
    assert (status, code_of(body)[0]) == (400, "EntityTooLarge")
    assert post(p["url"], p["fields"], b"x" * 10)[0] == 204
    p = s3.generate_presigned_post(
        name, "b.png", Fields={"Content-Type": "image/png"}, Conditions=[{"Content-Type": "image/png"}]
    )
    status, body, _ = post(p["url"], p["fields"], b"x")
    assert (status, code_of(body)[0]) == (400, "InvalidArgument")
    code, _, _ = error_of(s3.head_object, Bucket=name, Key="b.png")
    assert code == "404"


def test_forms_go_to_a_bucket_not_a_key(bucket):
    p = static(signature_version="s3v4").generate_presigned_post(bucket, "k.txt", ExpiresIn=300)
    status, body, _ = post(p["url"] + "/k.txt", p["fields"])
    assert (status, code_of(body)[0]) == (405, "MethodNotAllowed")


def test_missing_file_or_bucket():
    s3 = static(signature_version="s3v4")
    p = s3.generate_presigned_post("no-such-bucket-here", "a.txt", ExpiresIn=300)
    status, body, _ = post(p["url"], p["fields"])
    assert (status, code_of(body)[0]) == (404, "NoSuchBucket")
    parsed = urllib.parse.urlsplit(p["url"])
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    body = b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--b--\r\n"
    connection.request("POST", parsed.path, body=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    response = connection.getresponse()
    assert (response.status, code_of(response.read())[0]) == (400, "InvalidArgument")
