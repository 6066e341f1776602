"""storage3's SyncStorageClient against pgstorage: every bucket and object method, public URLs,
and errors as the client surfaces them (StorageApiError: .status is the body's statusCode,
.code the body's error)."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from storage3 import SyncBucket

from conftest import SERVICE_KEY, STORAGE_URL, api_error, bucket_name, fetch

PREFIX = "py-core"


@pytest.fixture(scope="module")
def private(service) -> str:
    bucket = bucket_name(f"{PREFIX}-private")
    assert service.create_bucket(bucket) == {"name": bucket}
    return bucket


@pytest.fixture(scope="module")
def readable(service) -> str:
    """Public, and opened to anon by the fixture's objects_public_read policy."""
    bucket = bucket_name(f"{PREFIX}-public") + "-readable"
    service.create_bucket(bucket, options={"public": True})
    return bucket


@pytest.fixture(scope="module")
def closed(service) -> str:
    """Public too, but no policy lets anyone read its objects."""
    bucket = bucket_name(f"{PREFIX}-public-closed")
    service.create_bucket(bucket, options={"public": True})
    return bucket


# ---------------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------------


def test_create_bucket_answers_the_name_and_get_bucket_the_whole_bucket(service):
    bucket = bucket_name(f"{PREFIX}-made")
    created = service.create_bucket(
        bucket,
        options={
            "public": False,
            "file_size_limit": 1_000_000,
            "allowed_mime_types": ["image/png", "text/plain"],
        },
    )
    assert created == {"name": bucket}

    got = service.get_bucket(bucket)
    assert isinstance(got, SyncBucket)
    assert got.id == bucket
    assert got.name == bucket
    assert got.owner == ""  # no sub in the service key
    assert got.public is False
    assert got.file_size_limit == 1_000_000
    assert got.allowed_mime_types == ["image/png", "text/plain"]
    assert isinstance(got.created_at, datetime)
    assert isinstance(got.updated_at, datetime)


def test_create_bucket_with_a_distinct_name(service):
    bucket = bucket_name(f"{PREFIX}-named")
    assert service.create_bucket(bucket, name=bucket + "-label") == {"name": bucket + "-label"}
    assert service.get_bucket(bucket).name == bucket + "-label"


def test_create_bucket_twice_is_a_409_duplicate(service, private):
    error = api_error(service.create_bucket, private)
    assert str(error.status) == "409"
    assert error.code == "Duplicate"


def test_get_bucket_of_a_missing_bucket_is_a_404(service):
    error = api_error(service.get_bucket, f"{PREFIX}-no-such-bucket")
    assert str(error.status) == "404"
    assert error.message == "Bucket not found"


def test_list_buckets(service, anon, private, readable, closed):
    buckets = service.list_buckets()
    assert all(isinstance(b, SyncBucket) for b in buckets)
    ids = {b.id for b in buckets}
    assert {private, readable, closed} <= ids
    assert next(b for b in buckets if b.id == readable).public is True

    # anon sees the public buckets only (the shipped public_buckets_are_visible policy).
    anon_ids = {b.id for b in anon.list_buckets()}
    assert {readable, closed} <= anon_ids
    assert private not in anon_ids


def test_update_bucket(service):
    bucket = bucket_name(f"{PREFIX}-upd")
    service.create_bucket(bucket)
    answer = service.update_bucket(
        bucket, {"public": True, "file_size_limit": 2048, "allowed_mime_types": ["text/plain"]}
    )
    assert answer == {"message": "Successfully updated"}
    got = service.get_bucket(bucket)
    assert got.public is True
    assert got.file_size_limit == 2048
    assert got.allowed_mime_types == ["text/plain"]

    service.update_bucket(bucket, {"public": False})
    got = service.get_bucket(bucket)
    assert got.public is False
    assert got.file_size_limit == 2048, "fields left out stay as they were"

    error = api_error(service.update_bucket, f"{PREFIX}-no-such-bucket", {"public": True})
    assert str(error.status) == "404"


def test_bucket_limits_refuse_uploads_with_413_and_415(service):
    bucket = bucket_name(f"{PREFIX}-limits")
    service.create_bucket(
        bucket, options={"file_size_limit": 10, "allowed_mime_types": ["text/plain"]}
    )
    files = service.from_(bucket)
    files.upload("fits.txt", b"0123456789", {"content-type": "text/plain"})

    too_big = api_error(files.upload, "big.txt", b"0123456789a", {"content-type": "text/plain"})
    assert str(too_big.status) == "413"
    assert too_big.code == "Payload too large"

    wrong_type = api_error(files.upload, "a.png", b"png", {"content-type": "image/png"})
    assert str(wrong_type.status) == "415"
    assert wrong_type.code == "invalid_mime_type"


def test_empty_bucket_then_delete_bucket(service):
    bucket = bucket_name(f"{PREFIX}-gone")
    service.create_bucket(bucket)
    files = service.from_(bucket)
    files.upload("a.txt", b"a")
    files.upload("dir/b.txt", b"b")

    not_empty = api_error(service.delete_bucket, bucket)
    assert str(not_empty.status) == "409"

    assert service.empty_bucket(bucket) == {"message": "Successfully emptied"}
    assert files.exists("a.txt") is False
    assert files.exists("dir/b.txt") is False
    assert service.empty_bucket(bucket) == {"message": "Successfully emptied"}

    assert service.delete_bucket(bucket) == {"message": "Successfully deleted"}
    assert str(api_error(service.get_bucket, bucket).status) == "404"
    assert str(api_error(service.delete_bucket, bucket).status) == "404"


# ---------------------------------------------------------------------------------------------
# Upload, update, download, info, exists
# ---------------------------------------------------------------------------------------------


def test_upload_with_options_and_info(service, private):
    files = service.from_(private)
    result = files.upload(
        "docs/report.json",
        b'{"ok":true}',
        {
            "content-type": "application/json",
            "cache-control": "60",
            "metadata": {"author": "ada", "pages": 3},
        },
    )
    assert result.path == "docs/report.json"
    assert result.full_path == f"{private}/docs/report.json"
    assert result.fullPath == f"{private}/docs/report.json"

    info = files.info("docs/report.json")
    assert info["name"] == "docs/report.json"
    assert info["bucket_id"] == private
    assert info["size"] == 11
    assert info["content_type"] == "application/json"
    assert info["cache_control"] == "max-age=60"
    assert info["metadata"] == {"author": "ada", "pages": 3}
    assert info["etag"]
    assert info["id"]
    datetime.fromisoformat(info["last_modified"])
    datetime.fromisoformat(info["created_at"])

    assert files.download("docs/report.json") == b'{"ok":true}'


def test_upload_defaults(service, private):
    files = service.from_(private)
    files.upload("plain.txt", b"hello")
    info = files.info("plain.txt")
    # storage3 sends its default as the file part's type; parameter case is not significant.
    assert info["content_type"].lower() == "text/plain;charset=utf-8"
    assert info["cache_control"] == "max-age=3600"
    assert info["metadata"] == {}


def test_upload_from_a_file_path_and_a_file_object(service, private, tmp_path):
    data = bytes(range(256)) * 300
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    files = service.from_(private)
    files.upload("files/from-path.bin", path, {"content-type": "application/octet-stream"})
    with path.open("rb") as handle:
        files.upload("files/from-handle.bin", handle)
    assert files.download("files/from-path.bin") == data
    assert files.download("files/from-handle.bin") == data
    assert files.info("files/from-path.bin")["size"] == len(data)


def test_a_second_upload_is_a_409_duplicate_and_upsert_replaces(service, private):
    files = service.from_(private)
    files.upload("dup.txt", b"first")
    error = api_error(files.upload, "dup.txt", b"second")
    assert str(error.status) == "409"
    assert error.code == "Duplicate"
    assert files.download("dup.txt") == b"first"

    first_id = files.info("dup.txt")["id"]
    files.upload("dup.txt", b"third", {"upsert": "true", "content-type": "text/csv"})
    assert files.download("dup.txt") == b"third"
    info = files.info("dup.txt")
    assert info["id"] == first_id, "an upsert keeps the object id"
    assert info["content_type"] == "text/csv"


def test_update_replaces_bytes_and_options(service, private):
    files = service.from_(private)
    files.upload("upd/a.txt", b"old bytes")
    result = files.update(
        "upd/a.txt",
        b"new",
        {"content-type": "text/markdown", "cache-control": "10", "metadata": {"v": 2}},
    )
    assert result.full_path == f"{private}/upd/a.txt"
    assert files.download("upd/a.txt") == b"new"
    info = files.info("upd/a.txt")
    assert info["size"] == 3
    assert info["content_type"] == "text/markdown"
    assert info["cache_control"] == "max-age=10"
    assert info["metadata"] == {"v": 2}


def test_missing_objects_are_404_not_found_and_exists_is_false(service, private):
    files = service.from_(private)
    download = api_error(files.download, "nope/missing.txt")
    assert str(download.status) == "404"
    assert download.code == "not_found"

    info = api_error(files.info, "nope/missing.txt")
    assert str(info.status) == "404"
    assert info.code == "not_found"
    assert info.message == "Object not found"

    assert files.exists("nope/missing.txt") is False


def test_exists_is_true_for_an_object_that_is_there(service, private):
    files = service.from_(private)
    files.upload("here.txt", b"x")
    assert files.exists("here.txt") is True


def test_names_with_spaces_and_unicode(service, private):
    files = service.from_(private)
    name = "folder with space/résumé ü 1.txt"
    files.upload(name, b"unicode")
    assert files.info(name)["name"] == name
    assert files.download(name) == b"unicode"
    assert files.exists(name) is True


# ---------------------------------------------------------------------------------------------
# Move, copy, remove
# ---------------------------------------------------------------------------------------------


def test_move(service, private):
    files = service.from_(private)
    files.upload("mv/from.txt", b"moving")
    object_id = files.info("mv/from.txt")["id"]
    answer = files.move("mv/from.txt", "mv/to.txt")
    assert answer["message"] == "Successfully moved"
    assert files.exists("mv/from.txt") is False
    assert files.download("mv/to.txt") == b"moving"
    assert files.info("mv/to.txt")["id"] == object_id

    missing = api_error(files.move, "mv/none.txt", "mv/x.txt")
    assert str(missing.status) == "404"

    files.upload("mv/other.txt", b"other")
    onto = api_error(files.move, "mv/to.txt", "mv/other.txt")
    assert str(onto.status) == "409"
    assert files.download("mv/other.txt") == b"other"


def test_copy(service, private):
    files = service.from_(private)
    files.upload("cp/src.txt", b"copied", {"metadata": {"tag": "orig"}})
    answer = files.copy("cp/src.txt", "cp/dst.txt")
    assert answer["Key"] == f"{private}/cp/dst.txt"
    assert answer["Id"]
    assert files.download("cp/src.txt") == b"copied"
    assert files.download("cp/dst.txt") == b"copied"
    assert files.info("cp/dst.txt")["metadata"] == {"tag": "orig"}

    missing = api_error(files.copy, "cp/none.txt", "cp/x.txt")
    assert str(missing.status) == "404"


def test_remove(service, private):
    files = service.from_(private)
    files.upload("rm/a.txt", b"a")
    files.upload("rm/b.txt", b"b")
    removed = files.remove(["rm/a.txt", "rm/b.txt", "rm/none.txt"])
    assert sorted(o["name"] for o in removed) == ["rm/a.txt", "rm/b.txt"]
    assert all(o["bucket_id"] == private and o["id"] for o in removed)
    assert files.exists("rm/a.txt") is False
    assert files.remove(["rm/a.txt"]) == []


# ---------------------------------------------------------------------------------------------
# Public URLs: `public` is a flag policies read, not a bypass of Row Level Security
# ---------------------------------------------------------------------------------------------


def test_public_url_with_a_read_policy_serves_the_bytes(service, anon, readable):
    files = service.from_(readable)
    files.upload("pics/a b.txt", b"public bytes", {"content-type": "text/plain"})
    url = files.get_public_url("pics/a b.txt")
    assert url == f"{STORAGE_URL}object/public/{readable}/pics/a%20b.txt"

    response = fetch(url)
    assert response.status_code == 200
    assert response.content == b"public bytes"
    assert response.headers["content-type"] == "text/plain"

    download = fetch(files.get_public_url("pics/a b.txt", {"download": True}))
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")

    named = fetch(files.get_public_url("pics/a b.txt", {"download": "x.txt"}))
    assert "x.txt" in named.headers["content-disposition"]

    # The anonymous client reads it through the ordinary route too.
    assert anon.from_(readable).download("pics/a b.txt") == b"public bytes"


def test_a_public_url_needs_no_headers_at_all(service, readable):
    """A browser given the link: a bare GET, no credentials, no apikey. The fixture's policy is
    the seed's pattern; the bucket subquery sees public buckets through the shipped policy."""
    files = service.from_(readable)
    files.upload("bare.txt", b"bare bytes", {"content-type": "text/plain"})
    with httpx.Client(headers={}) as bare:
        response = bare.get(files.get_public_url("bare.txt"))
    assert response.status_code == 200
    assert response.content == b"bare bytes"


def test_version(service):
    response = httpx.get(f"{STORAGE_URL}version")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.count(".") == 2


def test_public_url_without_a_read_policy_is_404(service, closed):
    files = service.from_(closed)
    files.upload("secret.txt", b"not for anon")
    response = fetch(files.get_public_url("secret.txt"))
    assert response.status_code == 404
    assert response.json()["statusCode"] == "404"


def test_the_public_route_ignores_credentials(service, private):
    files = service.from_(private)
    files.upload("private.txt", b"private")
    response = httpx.get(
        files.get_public_url("private.txt"),
        headers={"Authorization": f"Bearer {SERVICE_KEY}", "apiKey": SERVICE_KEY},
    )
    assert response.status_code == 404


# ---------------------------------------------------------------------------------------------
# Row Level Security, as the client sees it
# ---------------------------------------------------------------------------------------------


def test_anon_upload_without_a_policy_is_403(service, anon, private):
    error = api_error(anon.from_(private).upload, "anon.txt", b"x")
    assert str(error.status) == "403"
    assert error.code == "Unauthorized"
    assert service.from_(private).exists("anon.txt") is False


def test_users_work_in_their_own_folder_only(user1, user2, private):
    mine = user1.from_(private)
    assert mine.upload("u1/notes.txt", b"u1 notes").full_path == f"{private}/u1/notes.txt"
    assert mine.download("u1/notes.txt") == b"u1 notes"
    mine.upload("u1/notes.txt", b"u1 notes v2", {"upsert": "true"})
    mine.update("u1/notes.txt", b"u1 notes v3")
    assert mine.info("u1/notes.txt")["size"] == 11

    denied = api_error(mine.upload, "u2/intruder.txt", b"x")
    assert str(denied.status) == "403"

    theirs = user2.from_(private)
    assert theirs.exists("u1/notes.txt") is False
    assert str(api_error(theirs.download, "u1/notes.txt").status) == "404"
    assert theirs.remove(["u1/notes.txt"]) == []
    assert mine.exists("u1/notes.txt") is True

    mine.move("u1/notes.txt", "u1/archive/notes.txt")
    assert str(api_error(mine.move, "u1/archive/notes.txt", "u2/notes.txt").status) == "403"
    assert [o["name"] for o in mine.remove(["u1/archive/notes.txt"])] == ["u1/archive/notes.txt"]
