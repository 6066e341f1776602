"""The live server and credentials, handed over by tests/s3_clients.rs, and one boto3 client
per kind of S3 credential, built as an S3 user would build them.

Policies (tests/clients/fixtures.sql): a signed-in user owns the top-level folder named after
their id in every bucket; service_role bypasses RLS.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request

import boto3
import botocore
import pytest
from botocore.config import Config


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run this suite through `cargo nextest run --test s3_clients`", 2)
    return value


URL = _env("PGSTORAGE_URL").rstrip("/")
SERVICE_KEY = _env("PGSTORAGE_SERVICE_KEY")  # a service_role JWT, for the REST API
STATIC_ID = _env("PGSTORAGE_S3_STATIC_ID")  # the configured key pair (service_role)
STATIC_SECRET = _env("PGSTORAGE_S3_STATIC_SECRET")
DB_ID = _env("PGSTORAGE_S3_DB_ID")  # a database key bound to authenticated + sub 'u1'
DB_SECRET = _env("PGSTORAGE_S3_DB_SECRET")
REVOKED_ID = _env("PGSTORAGE_S3_REVOKED_ID")  # a database key that was revoked
REVOKED_SECRET = _env("PGSTORAGE_S3_REVOKED_SECRET")
ANON_KEY = _env("PGSTORAGE_ANON_KEY")  # the session-token secret
USER2_JWT = _env("PGSTORAGE_USER2_KEY")  # an authenticated user whose sub is 'u2'
EXPIRED_JWT = _env("PGSTORAGE_EXPIRED_KEY")  # u2's token, expired

PREFIXES = ["/s3", "/storage/v1/s3"]


def client(key_id: str, secret: str, token: str | None = None, prefix: str = "/s3", **config):
    return boto3.client(
        "s3",
        endpoint_url=URL + prefix,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name=config.pop("region", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


def static(prefix: str = "/s3", **config):
    return client(STATIC_ID, STATIC_SECRET, prefix=prefix, **config)


def dbkey(prefix: str = "/s3", **config):
    return client(DB_ID, DB_SECRET, prefix=prefix, **config)


def session(jwt: str = USER2_JWT, prefix: str = "/s3", **config):
    # Supabase's scheme: any access key id, the anon key as the secret, the JWT as the token.
    return client("any-project-ref", ANON_KEY, token=jwt, prefix=prefix, **config)


def error_of(call, *args, **kwargs) -> tuple[str, int, str]:
    """(code, HTTP status, message) of the S3 error a call must raise."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(*args, **kwargs)
    error = caught.value.response["Error"]
    status = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return error.get("Code"), status, error.get("Message", "")


def rest(method: str, path: str, body=None, headers=None, key: str = SERVICE_KEY):
    """A call to the REST API as service_role: (status, parsed JSON or raw bytes)."""
    data = None
    all_headers = {"Authorization": f"Bearer {key}"}
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    elif body is not None:
        data = body
    all_headers.update(headers or {})
    request = urllib.request.Request(URL + path, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request) as response:
            raw = response.read()
            status = response.status
            headers = response.headers
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, e.headers
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, raw, headers


@pytest.fixture
def bucket() -> str:
    """A fresh bucket created over S3 with the static key."""
    name = f"s3-{secrets.token_hex(4)}"
    static().create_bucket(Bucket=name)
    return name
