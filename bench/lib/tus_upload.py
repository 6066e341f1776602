"""One file as a TUS upload in PATCHes over one keep-alive connection (bench/ceilings' large
section; the approach of bench/resumable.sh), standard library only.

  tus_upload.py ORIGIN TOKEN BUCKET NAME FILE CHUNK_BYTES

Creates the upload with its length declared (no bytes in the POST), sends the file in
CHUNK_BYTES PATCHes as it reads it, and prints the seconds from the POST to the last answer.
"""
import base64
import http.client
import os
import sys
import time
from urllib.parse import urlsplit


def main():
    origin, token, bucket, name, path, chunk = sys.argv[1:]
    chunk = int(chunk)
    b64 = lambda s: base64.b64encode(s.encode()).decode()
    host = urlsplit(origin)
    conn = http.client.HTTPConnection(host.hostname, host.port)
    common = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    size, offset = os.path.getsize(path), 0
    start = time.monotonic()
    conn.request("POST", "/upload/resumable", headers={
        **common, "Upload-Length": str(size),
        "Upload-Metadata": f"bucketName {b64(bucket)},objectName {b64(name)}"})
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        sys.exit(f"creation: {r.status}")
    location = urlsplit(r.getheader("Location")).path
    with open(path, "rb") as f:
        while offset < size:
            data = f.read(chunk)
            conn.request("PATCH", location, body=data, headers={
                **common, "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"})
            r = conn.getresponse()
            answer = r.read()
            if r.status != 204:
                sys.exit(f"PATCH at {offset}: {r.status} {answer[:200]!r}")
            offset += len(data)
    print(f"{time.monotonic() - start:.3f}")


if __name__ == "__main__":
    main()
