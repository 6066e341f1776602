"""tuspy against a live pgstorage, run by tests/resumable_clients.rs (not part of the storage3
suite): a 50 MiB upload in 6 MiB chunks with a SHA-1 Upload-Checksum on every chunk, a signed
resumable upload, RLS refusing creation, and bucket limits."""

from __future__ import annotations

import hashlib
import io
import os
import secrets

import httpx
import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from conftest import SERVICE_KEY, URL, USER1_KEY, bucket_name

ENDPOINT = f"{URL}/storage/v1/upload/resumable"
MIB = 1024 * 1024


def rest(method: str, path: str, key: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{URL}{path}", headers={"Authorization": f"Bearer {key}"}, **kwargs)


def new_bucket(**options) -> str:
    name = bucket_name("tuspy")
    response = rest("POST", "/bucket", SERVICE_KEY, json={"name": name, **options})
    assert response.status_code == 200, response.text
    return name


def uploader(data: bytes, bucket: str, name: str, headers: dict, endpoint: str = ENDPOINT, **kwargs):
    client = tus_client.TusClient(endpoint, headers=headers)
    return client.uploader(
        file_stream=io.BytesIO(data),
        chunk_size=kwargs.pop("chunk_size", 6 * MIB),
        metadata={"bucketName": bucket, "objectName": name, "contentType": "application/octet-stream"},
        **kwargs,
    )


def download(bucket: str, name: str) -> bytes:
    response = rest("GET", f"/object/authenticated/{bucket}/{name}", SERVICE_KEY)
    assert response.status_code == 200, response.text
    return response.content


def test_fifty_mib_in_six_mib_chunks_with_checksums():
    bucket = new_bucket()
    data = os.urandom(50 * MIB)
    up = uploader(data, bucket, "dir/big.bin", {"Authorization": f"Bearer {SERVICE_KEY}"}, upload_checksum=True)
    up.upload()
    assert up.offset == len(data)
    assert hashlib.sha256(download(bucket, "dir/big.bin")).hexdigest() == hashlib.sha256(data).hexdigest()


def test_signed_resumable_upload():
    bucket = new_bucket()
    signed = rest("POST", f"/object/upload/sign/{bucket}/u1/signed.bin", USER1_KEY)
    assert signed.status_code == 200, signed.text
    data = os.urandom(2 * MIB + 17)
    up = uploader(data, bucket, "u1/signed.bin", {"x-signature": signed.json()["token"]},
                  endpoint=f"{ENDPOINT}/sign", chunk_size=MIB)
    up.upload()
    assert download(bucket, "u1/signed.bin") == data


def test_rls_refuses_creation_in_another_users_folder():
    bucket = new_bucket()
    up = uploader(b"x" * 10, bucket, "u2/x.bin", {"Authorization": f"Bearer {USER1_KEY}"})
    with pytest.raises(TusCommunicationError) as caught:
        up.upload()
    assert caught.value.status_code == 403


def test_bucket_limits():
    bucket = new_bucket(file_size_limit=1000)
    up = uploader(b"x" * 1001, bucket, "big.bin", {"Authorization": f"Bearer {SERVICE_KEY}"})
    with pytest.raises(TusCommunicationError) as caught:
        up.upload()
    assert caught.value.status_code == 413
    name = f"ok-{secrets.token_hex(2)}.bin"
    uploader(b"y" * 1000, bucket, name, {"Authorization": f"Bearer {SERVICE_KEY}"}).upload()
    assert download(bucket, name) == b"y" * 1000
