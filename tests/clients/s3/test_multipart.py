"""Multipart uploads: the AWS CLI's and boto3's automatic multipart, the seven s3api calls
by hand, the multipart ETag, its errors, and RLS deciding who may start one."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

from boto3.s3.transfer import TransferConfig
from conftest import STATIC_ID, STATIC_SECRET, dbkey, error_of, rest, session, static
from test_awscli import aws

MIB = 1024 * 1024


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_aws_cli_cp_of_20_mib_is_multipart_and_reads_back_identical(bucket, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MIB))
    aws(STATIC_ID, STATIC_SECRET, "s3", "cp", str(big), f"s3://{bucket}/big.bin")
    head = static().head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 20 * MIB
    # 8 MiB parts: 8 + 8 + 4, and the multipart ETag says so.
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
    back = tmp_path / "back.bin"
    aws(STATIC_ID, STATIC_SECRET, "s3", "cp", f"s3://{bucket}/big.bin", str(back))
    assert sha256(back) == sha256(big)


def test_boto3_upload_file_with_a_small_threshold(bucket, tmp_path):
    data = os.urandom(11 * MIB + 123)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3 = static()
    s3.upload_file(str(path), bucket, "dir/f.bin", Config=config, ExtraArgs={"ContentType": "application/x-test", "Metadata": {"color": "blue"}})
    head = s3.head_object(Bucket=bucket, Key="dir/f.bin")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"color": "blue"}
    body = s3.get_object(Bucket=bucket, Key="dir/f.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    # A range across a part boundary.
    ranged = s3.get_object(Bucket=bucket, Key="dir/f.bin", Range=f"bytes={5 * MIB - 3}-{5 * MIB + 2}")["Body"].read()
    assert ranged == data[5 * MIB - 3 : 5 * MIB + 3]
    # Parts by number, and the object's parts in its attributes.
    second = s3.get_object(Bucket=bucket, Key="dir/f.bin", PartNumber=2)
    assert second["PartsCount"] == 3 and second["ContentLength"] == 5 * MIB
    assert second["Body"].read() == data[5 * MIB : 10 * MIB]
    third = s3.head_object(Bucket=bucket, Key="dir/f.bin", PartNumber=3)
    assert third["ContentLength"] == MIB + 123 and third["PartsCount"] == 3
    code, status, _ = error_of(s3.get_object, Bucket=bucket, Key="dir/f.bin", PartNumber=4)
    assert (code, status) == ("InvalidRange", 416)
    attrs = s3.get_object_attributes(Bucket=bucket, Key="dir/f.bin", ObjectAttributes=["ObjectParts", "ObjectSize"])
    assert attrs["ObjectSize"] == len(data)
    assert attrs["ObjectParts"]["TotalPartsCount"] == 3
    assert [(p["PartNumber"], p["Size"]) for p in attrs["ObjectParts"]["Parts"]] == [(1, 5 * MIB), (2, 5 * MIB), (3, MIB + 123)]


def test_s3api_create_upload_list_complete_abort(bucket):
    s3 = static()
    part1, part2 = os.urandom(5 * MIB), b"tail"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m.bin", ContentType="text/plain", CacheControl="max-age=60")
    uid = upload["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == [("m.bin", uid)]
    e1 = s3.upload_part(Bucket=bucket, Key="m.bin", UploadId=uid, PartNumber=1, Body=part1)["ETag"]
    assert e1.strip('"') == hashlib.md5(part1).hexdigest()
    # Content-MD5 and checksums are verified.
    code, status, _ = error_of(
        s3.upload_part, Bucket=bucket, Key="m.bin", UploadId=uid, PartNumber=2, Body=part2, ContentMD5="AAAAAAAAAAAAAAAAAAAAAA=="
    )
    assert (code, status) == ("BadDigest", 400)
    e2 = s3.upload_part(Bucket=bucket, Key="m.bin", UploadId=uid, PartNumber=2, Body=part2, ChecksumAlgorithm="SHA256")["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key="m.bin", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, 5 * MIB, e1), (2, 4, e2)]
    # Out of order, and a wrong ETag.
    code, status, _ = error_of(
        s3.complete_multipart_upload, Bucket=bucket, Key="m.bin", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]},
    )
    assert (code, status) == ("InvalidPartOrder", 400)
    code, status, _ = error_of(
        s3.complete_multipart_upload, Bucket=bucket, Key="m.bin", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}, {"PartNumber": 2, "ETag": e2}]},
    )
    assert (code, status) == ("InvalidPart", 400)
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="m.bin", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    digests = hashlib.md5(bytes.fromhex(e1.strip('"')) + bytes.fromhex(e2.strip('"'))).hexdigest()
    assert done["ETag"] == f'"{digests}-2"'
    got = s3.get_object(Bucket=bucket, Key="m.bin")
    assert got["Body"].read() == part1 + part2
    assert got["ContentType"] == "text/plain" and got["CacheControl"] == "max-age=60"
    assert got["ETag"] == done["ETag"]
    # The upload is gone once complete.
    code, status, _ = error_of(s3.list_parts, Bucket=bucket, Key="m.bin", UploadId=uid)
    assert (code, status) == ("NoSuchUpload", 404)

    # A part too small before the last, a copied part with a range, and an abort.
    uid = s3.create_multipart_upload(Bucket=bucket, Key="n.bin")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="n.bin", UploadId=uid, PartNumber=1, Body=b"x")["ETag"]
    copied = s3.upload_part_copy(
        Bucket=bucket, Key="n.bin", UploadId=uid, PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "m.bin"}, CopySourceRange=f"bytes={5 * MIB}-{5 * MIB + 3}",
    )["CopyPartResult"]["ETag"]
    assert copied.strip('"') == hashlib.md5(b"tail").hexdigest()
    code, status, _ = error_of(
        s3.complete_multipart_upload, Bucket=bucket, Key="n.bin", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": copied}]},
    )
    assert (code, status) == ("EntityTooSmall", 400)
    # Another key with this upload's id is not this upload.
    code, status, _ = error_of(s3.abort_multipart_upload, Bucket=bucket, Key="other.bin", UploadId=uid)
    assert (code, status) == ("NoSuchUpload", 404)
    s3.abort_multipart_upload(Bucket=bucket, Key="n.bin", UploadId=uid)
    code, status, _ = error_of(s3.upload_part, Bucket=bucket, Key="n.bin", UploadId=uid, PartNumber=3, Body=b"y")
    assert (code, status) == ("NoSuchUpload", 404)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket) or not s3.list_multipart_uploads(Bucket=bucket)["Uploads"]


def test_aws_s3api_multipart_by_hand(bucket, tmp_path):
    part = tmp_path / "p"
    part.write_bytes(b"only part")
    created = aws(STATIC_ID, STATIC_SECRET, "s3api", "create-multipart-upload", "--bucket", bucket, "--key", "h.txt",
                  "--query", "UploadId", "--output", "text").stdout.strip()
    etag = aws(STATIC_ID, STATIC_SECRET, "s3api", "upload-part", "--bucket", bucket, "--key", "h.txt", "--upload-id", created,
               "--part-number", "1", "--body", str(part), "--query", "ETag", "--output", "text").stdout.strip()
    listed = aws(STATIC_ID, STATIC_SECRET, "s3api", "list-parts", "--bucket", bucket, "--key", "h.txt", "--upload-id", created).stdout
    assert '"PartNumber": 1' in listed
    parts = tmp_path / "parts.json"
    parts.write_text('{"Parts": [{"PartNumber": 1, "ETag": %s}]}' % ('"' + etag.replace('"', '\\"') + '"'))
    aws(STATIC_ID, STATIC_SECRET, "s3api", "complete-multipart-upload", "--bucket", bucket, "--key", "h.txt",
        "--upload-id", created, "--multipart-upload", f"file://{parts}")
    assert static().get_object(Bucket=bucket, Key="h.txt")["Body"].read() == b"only part"
    other = aws(STATIC_ID, STATIC_SECRET, "s3api", "create-multipart-upload", "--bucket", bucket, "--key", "a.txt",
                "--query", "UploadId", "--output", "text").stdout.strip()
    aws(STATIC_ID, STATIC_SECRET, "s3api", "abort-multipart-upload", "--bucket", bucket, "--key", "a.txt", "--upload-id", other)


def test_creating_an_upload_outside_ones_folder_is_denied(bucket):
    # u1 (database key) and u2 (session token) may write only under their own folder.
    for s3, own, theirs in [(dbkey(), "u1", "u2"), (session(), "u2", "u1")]:
        code, status, _ = error_of(s3.create_multipart_upload, Bucket=bucket, Key=f"{theirs}/x.bin")
        assert (code, status) == ("AccessDenied", 403)
        uid = s3.create_multipart_upload(Bucket=bucket, Key=f"{own}/x.bin")["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key=f"{own}/x.bin", UploadId=uid, PartNumber=1, Body=b"mine")["ETag"]
        s3.complete_multipart_upload(
            Bucket=bucket, Key=f"{own}/x.bin", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
        )
        assert s3.get_object(Bucket=bucket, Key=f"{own}/x.bin")["Body"].read() == b"mine"
    # Someone else's upload is not theirs to continue.
    uid = dbkey().create_multipart_upload(Bucket=bucket, Key="u1/y.bin")["UploadId"]
    code, status, _ = error_of(session().upload_part, Bucket=bucket, Key="u1/y.bin", UploadId=uid, PartNumber=1, Body=b"z")
    assert (code, status) == ("AccessDenied", 403)


def test_create_keeps_the_representation_headers_for_the_object(bucket):
    s3 = static()
    upload = s3.create_multipart_upload(
        Bucket=bucket,
        Key="headers/report.csv.gz",
        ContentType="text/csv",
        CacheControl="max-age=300",
        ContentDisposition='attachment; filename="report.csv.gz"',
        ContentEncoding="gzip",
        Metadata={"origin": "export"},
    )
    parts = []
    for number, data in [(1, b"a" * (5 * MIB)), (2, b"tail")]:
        part = s3.upload_part(Bucket=bucket, Key="headers/report.csv.gz", UploadId=upload["UploadId"], PartNumber=number, Body=data)
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="headers/report.csv.gz", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    for read in (s3.head_object, s3.get_object):
        got = read(Bucket=bucket, Key="headers/report.csv.gz")
        assert got["ContentType"] == "text/csv"
        assert got["CacheControl"] == "max-age=300"
        assert got["ContentDisposition"] == 'attachment; filename="report.csv.gz"'
        assert got["ContentEncoding"] == "gzip"
        assert got["Metadata"] == {"origin": "export"}
    status, info, _ = rest("GET", f"/object/info/{bucket}/headers/report.csv.gz")
    assert status == 200
    assert (info["content_type"], info["cache_control"], info["metadata"]) == ("text/csv", "max-age=300", {"origin": "export"})
    assert info["size"] == 5 * MIB + 4


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_composite_checksums(bucket):
    """An upload created with a checksum algorithm: each part's checksum is kept and listed, a
    completion naming another is refused, and the object's checksum is AWS's composite."""
    s3 = static()
    datas = [os.urandom(5 * MIB), b"last part"]
    digests = {
        "SHA256": lambda d: hashlib.sha256(d).digest(),
        "CRC32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    }
    for algorithm, digest in digests.items():
        key = f"sums/{algorithm}.bin"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=algorithm)
        assert upload["ChecksumAlgorithm"] == algorithm
        parts = []
        for number, data in enumerate(datas, 1):
            part = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=data, ChecksumAlgorithm=algorithm
            )
            assert part[f"Checksum{algorithm}"] == _b64(digest(data))
            parts.append({"PartNumber": number, "ETag": part["ETag"], f"Checksum{algorithm}": part[f"Checksum{algorithm}"]})
        listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        assert listed["ChecksumAlgorithm"] == algorithm
        assert [p[f"Checksum{algorithm}"] for p in listed["Parts"]] == [_b64(digest(d)) for d in datas]
        # A part checksum that is not the part's is refused, and the upload stays.
        wrong = [dict(parts[0], **{f"Checksum{algorithm}": _b64(digest(b"other"))}), parts[1]]
        code, _, _ = error_of(
            s3.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": wrong}
        )
        assert code == "InvalidPart"
        done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})
        composite = _b64(digest(b"".join(digest(d) for d in datas))) + "-2"
        assert done[f"Checksum{algorithm}"] == composite
        assert done["ChecksumType"] == "COMPOSITE"
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(datas)
        # Whole-object reads that ask for it get the composite checksum back; ranges do not.
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert (head[f"Checksum{algorithm}"], head["ChecksumType"]) == (composite, "COMPOSITE")
        got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert got[f"Checksum{algorithm}"] == composite and got["Body"].read() == b"".join(datas)
        assert f"Checksum{algorithm}" not in s3.head_object(Bucket=bucket, Key=key)
        ranged = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", Range="bytes=0-9")
        assert f"Checksum{algorithm}" not in ranged and ranged["Body"].read() == datas[0][:10]
