"""storage3 listing (list, list_v2) and signed URLs (create_signed_url(s), create_signed_upload_url,
upload_to_signed_url) against pgstorage, as storage3 and Supabase Storage describe them."""

from __future__ import annotations

import time
from datetime import datetime
from urllib.parse import parse_qs, urlparse

import pytest
from storage3.types import CreateSignedUploadUrlOptions, SearchV2Result

from conftest import STORAGE_URL, api_error, bucket_name, fetch

PREFIX = "py-ls"

OBJECTS = [
    "a.txt",
    "b.txt",
    "docs/one.txt",
    "docs/two.md",
    "docs/deep/three.txt",
    "images/cat.png",
    "images/dog.png",
    "u1/mine.txt",
    "u2/theirs.txt",
]


@pytest.fixture(scope="module")
def listed(service) -> str:
    bucket = bucket_name(f"{PREFIX}-list")
    service.create_bucket(bucket)
    files = service.from_(bucket)
    for name in OBJECTS:
        # Sizes differ so entries can be told apart: the name's length.
        files.upload(name, name.encode(), {"content-type": "text/plain"})
    return bucket


@pytest.fixture(scope="module")
def signed(service) -> str:
    bucket = bucket_name(f"{PREFIX}-signed")
    service.create_bucket(bucket)
    files = service.from_(bucket)
    files.upload("docs/a b.txt", b"signed bytes", {"content-type": "text/plain"})
    files.upload("docs/other.txt", b"other bytes")
    files.upload("u2/private.txt", b"u2 only")
    return bucket


def names(entries) -> list[str]:
    return [e["name"] for e in entries]


def assert_file(entry: dict, size: int) -> None:
    assert entry["id"], entry
    datetime.fromisoformat(entry["created_at"])
    datetime.fromisoformat(entry["updated_at"])
    assert entry["metadata"]["size"] == size, entry
    assert entry["metadata"]["mimetype"], entry


def assert_folder(entry: dict) -> None:
    assert entry["id"] is None, entry
    assert entry["metadata"] is None, entry


# ---------------------------------------------------------------------------------------------
# list (v1): one level, names relative to the folder, folders first
# ---------------------------------------------------------------------------------------------


def test_list_root_folders_and_files_by_name(service, listed):
    entries = service.from_(listed).list()
    assert names(entries) == ["a.txt", "b.txt", "docs", "images", "u1", "u2"]
    for folder in entries[2:]:
        assert_folder(folder)
    assert_file(entries[0], len("a.txt"))


def test_list_interleaves_folders_and_files_in_case_insensitive_order(service):
    """Current Supabase: sorted by name, folders and files come in one lower(name) order."""
    bucket = bucket_name(f"{PREFIX}-mixed")
    service.create_bucket(bucket)
    files = service.from_(bucket)
    for name in ["zz.txt", "Zeta/x.txt", "sub/x.txt", "Sub2/y.txt", "sub.txt", "C.md",
                 "c/d.txt", "B.txt", "a.txt"]:
        files.upload(name, name.encode(), {"content-type": "text/plain"})
    order = ["a.txt", "B.txt", "C.md", "c", "sub.txt", "sub", "Sub2", "Zeta", "zz.txt"]
    entries = files.list()
    assert names(entries) == order
    assert_file(entries[2], len("C.md"))
    assert_folder(entries[3])
    desc = files.list("", {"sortBy": {"column": "name", "order": "desc"}})
    assert names(desc) == list(reversed(order))
    paged = []
    for offset in range(0, len(order), 4):
        paged += names(files.list("", {"limit": 4, "offset": offset}))
    assert paged == order
    assert names(files.list("", {"search": "SU"})) == ["sub.txt", "sub", "Sub2"]


def test_list_a_folder_relative_names(service, listed):
    files = service.from_(listed)
    for path in ["docs", "docs/"]:
        entries = files.list(path)
        assert names(entries) == ["deep", "one.txt", "two.md"], path
        assert_folder(entries[0])
        assert_file(entries[1], len("docs/one.txt"))
    assert names(files.list("docs/deep")) == ["three.txt"]


def test_list_limit_offset_sort_and_search(service, listed):
    files = service.from_(listed)
    assert names(files.list("images", {"limit": 1, "offset": 0})) == ["cat.png"]
    assert names(files.list("images", {"limit": 1, "offset": 1})) == ["dog.png"]
    assert files.list("images", {"limit": 1, "offset": 2}) == []
    assert names(files.list("images", {"sortBy": {"column": "name", "order": "desc"}})) == [
        "dog.png",
        "cat.png",
    ]
    assert names(files.list("docs", {"search": "TW"})) == ["two.md"]
    assert files.list("nothing/here") == []


def test_list_follows_row_level_security(user1, listed):
    mine = user1.from_(listed)
    assert names(mine.list()) == ["u1"]
    assert names(mine.list("u1")) == ["mine.txt"]
    assert mine.list("u2") == []


# ---------------------------------------------------------------------------------------------
# list_v2: full keys, folders with a trailing /, cursor pagination
# ---------------------------------------------------------------------------------------------


def test_list_v2_flat(service, listed):
    result = service.from_(listed).list_v2()
    assert isinstance(result, SearchV2Result)
    assert result.hasNext is False
    assert result.nextCursor is None
    assert result.folders == []
    assert [o.name for o in result.objects] == sorted(OBJECTS)
    for o in result.objects:
        assert o.id
        assert o.metadata["size"] == len(o.name)


def test_list_v2_with_delimiter(service, listed):
    files = service.from_(listed)
    root = files.list_v2({"with_delimiter": True})
    assert [f.name for f in root.folders] == ["docs/", "images/", "u1/", "u2/"]
    assert [o.name for o in root.objects] == ["a.txt", "b.txt"]

    docs = files.list_v2({"prefix": "docs/", "with_delimiter": True})
    assert [f.name for f in docs.folders] == ["docs/deep/"]
    assert docs.folders[0].key in (None, "deep")
    assert [o.name for o in docs.objects] == ["docs/one.txt", "docs/two.md"]


def test_list_v2_pages_with_the_cursor(service, listed):
    files = service.from_(listed)
    first = files.list_v2({"prefix": "images/", "limit": 1})
    assert [o.name for o in first.objects] == ["images/cat.png"]
    assert first.hasNext is True
    assert first.nextCursor
    second = files.list_v2({"prefix": "images/", "limit": 1, "cursor": first.nextCursor})
    assert [o.name for o in second.objects] == ["images/dog.png"]
    assert second.hasNext is False

    seen, cursor = [], None
    for _ in range(20):
        options = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = files.list_v2(options)
        seen += [o.name for o in page.objects]
        if not page.hasNext:
            break
        cursor = page.nextCursor
    assert seen == sorted(OBJECTS)


def test_list_v2_follows_row_level_security(user1, listed):
    assert [o.name for o in user1.from_(listed).list_v2().objects] == ["u1/mine.txt"]


# ---------------------------------------------------------------------------------------------
# Signed download URLs
# ---------------------------------------------------------------------------------------------


def test_create_signed_url_serves_the_bytes_without_credentials(service, signed):
    result = service.from_(signed).create_signed_url("docs/a b.txt", 60)
    url = result["signedURL"]
    assert result["signedUrl"] == url
    assert url.startswith(f"{STORAGE_URL}object/sign/{signed}/docs/a%20b.txt?token="), url
    response = fetch(url)
    assert response.status_code == 200
    assert response.content == b"signed bytes"


def test_create_signed_url_with_download(service, signed):
    files = service.from_(signed)
    url = files.create_signed_url("docs/a b.txt", 60, {"download": True})["signedURL"]
    response = fetch(url)
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    named = files.create_signed_url("docs/a b.txt", 60, {"download": "renamed.txt"})
    assert "renamed.txt" in fetch(named["signedURL"]).headers["content-disposition"]


def test_create_signed_url_of_a_missing_object_is_404(service, signed):
    error = api_error(service.from_(signed).create_signed_url, "docs/none.txt", 60)
    assert str(error.status) == "404"
    assert error.code == "not_found"


def test_a_signed_url_is_bound_to_its_path_and_expires(service, signed):
    files = service.from_(signed)
    url = files.create_signed_url("docs/a b.txt", 60)["signedURL"]
    token = parse_qs(urlparse(url).query)["token"][0]
    elsewhere = fetch(f"{STORAGE_URL}object/sign/{signed}/docs/other.txt?token={token}")
    assert 400 <= elsewhere.status_code < 500
    forged = fetch(url[:-2] + ("xx" if not url.endswith("xx") else "yy"))
    assert 400 <= forged.status_code < 500
    assert "statusCode" in forged.json()

    short = files.create_signed_url("docs/other.txt", 1)["signedURL"]
    time.sleep(2.1)
    assert 400 <= fetch(short).status_code < 500


def test_create_signed_urls(service, signed):
    files = service.from_(signed)
    items = files.create_signed_urls(["docs/a b.txt", "docs/none.txt", "docs/other.txt"], 60)
    assert [i["path"] for i in items] == ["docs/a b.txt", "docs/none.txt", "docs/other.txt"]
    assert items[0]["error"] is None and items[2]["error"] is None
    assert isinstance(items[1]["error"], str)
    assert items[1]["signedURL"] is None
    assert fetch(items[0]["signedURL"]).content == b"signed bytes"
    assert fetch(items[2]["signedURL"]).content == b"other bytes"

    downloads = files.create_signed_urls(["docs/other.txt"], 60, {"download": True})
    assert fetch(downloads[0]["signedURL"]).headers["content-disposition"].startswith("attachment;")


def test_signing_follows_row_level_security(user1, signed):
    files = user1.from_(signed)
    error = api_error(files.create_signed_url, "u2/private.txt", 60)
    assert str(error.status) == "404"
    assert error.code == "not_found"
    items = files.create_signed_urls(["u2/private.txt"], 60)
    assert items[0]["signedURL"] is None
    assert isinstance(items[0]["error"], str)


# ---------------------------------------------------------------------------------------------
# Signed upload URLs
# ---------------------------------------------------------------------------------------------


def test_signed_upload_url_then_upload_to_it(service, anon, signed):
    files = service.from_(signed)
    result = files.create_signed_upload_url("up/new.txt")
    assert result["path"] == "up/new.txt"
    assert result["token"]
    assert result["signed_url"] == result["signedUrl"]
    assert result["signedUrl"].startswith(f"{STORAGE_URL}object/upload/sign/{signed}/up/new.txt?token=")

    # Anyone holding the token may upload, even with the anon key.
    uploaded = anon.from_(signed).upload_to_signed_url(
        "up/new.txt", result["token"], b"via token", {"content-type": "text/csv"}
    )
    assert uploaded.full_path == f"{signed}/up/new.txt"
    assert files.download("up/new.txt") == b"via token"
    assert files.info("up/new.txt")["content_type"] == "text/csv"

    # The token did not ask for upsert: a second upload is a duplicate.
    again = api_error(anon.from_(signed).upload_to_signed_url, "up/new.txt", result["token"], b"x")
    assert str(again.status) == "409"
    assert again.code == "Duplicate"


def test_signed_upload_url_with_upsert_replaces(service, anon, signed):
    files = service.from_(signed)
    files.upload("up/replace.txt", b"old")
    result = files.create_signed_upload_url(
        "up/replace.txt", CreateSignedUploadUrlOptions(upsert="true")
    )
    anon.from_(signed).upload_to_signed_url("up/replace.txt", result["token"], b"new")
    assert files.download("up/replace.txt") == b"new"


def test_signed_upload_url_checks_the_insert_policy(user1, anon, signed):
    mine = user1.from_(signed)
    result = mine.create_signed_upload_url("u1/by-token.txt")
    anon.from_(signed).upload_to_signed_url("u1/by-token.txt", result["token"], b"mine")
    assert mine.exists("u1/by-token.txt") is True

    denied = api_error(mine.create_signed_upload_url, "u2/by-token.txt")
    assert str(denied.status) == "403"
    assert str(api_error(anon.from_(signed).create_signed_upload_url, "anon.txt").status) == "403"
