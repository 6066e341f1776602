"""boto3 side of bench/s3.sh (run with tests/clients/s3/.venv/bin/python).

  presign URL BUCKET KEY               prints a presigned GET URL, then a presigned PUT URL
  complete URL BUCKET PARTS SIZE REPS  uploads PARTS parts of SIZE bytes REPS times and prints
                                       the median CompleteMultipartUpload time (ms)
  list URL BUCKET PREFIX N             prints the median and p99 (ms) of N ListObjectsV2 pages
                                       (100 keys) under PREFIX, from its middle

The key pair comes from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def client(url):
    return boto3.client(
        "s3",
        endpoint_url=f"{url}/s3",
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, max_pool_connections=16,
                      retries={"max_attempts": 1}),
    )


def presign(url, bucket, key):
    s3 = client(url)
    for method in ("get_object", "put_object"):
        print(s3.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600))


def complete(url, bucket, parts, size, reps):
    s3 = client(url)
    body = os.urandom(size)
    times = []
    for rep in range(reps):
        key = f"complete/{parts}x{size}-{rep}"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

        def put(n):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)
            return {"PartNumber": n, "ETag": r["ETag"]}

        workers = 8 if size < (1 << 20) else 2
        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(put, range(1, parts + 1)))
        start = time.perf_counter()
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                     MultipartUpload={"Parts": done})
        times.append((time.perf_counter() - start) * 1000)
        head = s3.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] != parts * size:
            sys.exit(f"{key}: {head['ContentLength']} bytes, expected {parts * size}")
    print(f"{statistics.median(times):.1f}")


def listing(url, bucket, prefix, n):
    s3 = client(url)
    first = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1000)
    start_after = first["Contents"][len(first["Contents"]) // 2]["Key"]
    times = []
    for i in range(n + 20):
        start = time.perf_counter()
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=100, StartAfter=start_after)
        elapsed = (time.perf_counter() - start) * 1000
        if page["KeyCount"] != 100:
            sys.exit(f"{bucket}/{prefix}: {page['KeyCount']} keys in a page")
        if i >= 20:
            times.append(elapsed)
    times.sort()
    print(f"{statistics.median(times):.2f} {times[int(len(times) * 0.99) - 1]:.2f}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "presign":
        presign(*args)
    elif cmd == "complete":
        complete(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    elif cmd == "list":
        listing(args[0], args[1], args[2], int(args[3]))
    else:
        sys.exit(f"unknown command {cmd}")
