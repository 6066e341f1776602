"""The live server and keys, handed over by tests/clients.rs, and one storage3 client per
identity, built as the storage3 documentation shows."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import httpx
import pytest
from storage3 import SyncStorageClient
from storage3.exceptions import StorageApiError


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run this suite through `cargo nextest run clients`", 2)
    return value


URL = _env("PGSTORAGE_URL").rstrip("/")
STORAGE_URL = f"{URL}/storage/v1/"
SERVICE_KEY = _env("PGSTORAGE_SERVICE_KEY")
ANON_KEY = _env("PGSTORAGE_ANON_KEY")
USER1_KEY = _env("PGSTORAGE_USER1_KEY")  # an authenticated user whose sub is 'u1'
USER2_KEY = _env("PGSTORAGE_USER2_KEY")  # an authenticated user whose sub is 'u2'


def bucket_name(prefix: str) -> str:
    """A bucket id no other file uses, also when the suite runs twice on one server."""
    return f"{prefix}-{secrets.token_hex(4)}"


def client(key: str) -> SyncStorageClient:
    return SyncStorageClient(STORAGE_URL, {"apiKey": key, "Authorization": f"Bearer {key}"})


def api_error(call, *args, **kwargs) -> StorageApiError:
    """The StorageApiError a call must raise."""
    with pytest.raises(StorageApiError) as caught:
        call(*args, **kwargs)
    return caught.value


def fetch(url: str) -> httpx.Response:
    """Fetches a URL with no credentials at all, as a browser given the link would."""
    return httpx.get(url)


@pytest.fixture(scope="session")
def service() -> Iterator[SyncStorageClient]:
    with client(SERVICE_KEY) as c:
        yield c


@pytest.fixture(scope="session")
def anon() -> Iterator[SyncStorageClient]:
    with client(ANON_KEY) as c:
        yield c


@pytest.fixture(scope="session")
def user1() -> Iterator[SyncStorageClient]:
    with client(USER1_KEY) as c:
        yield c


@pytest.fixture(scope="session")
def user2() -> Iterator[SyncStorageClient]:
    with client(USER2_KEY) as c:
        yield c
