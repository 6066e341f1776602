"""One file as a TUS upload in PATCHes over one keep-alive connection (bench/ceilings' large
section; the approach of bench/resumable.sh), standard library only.

  tus_upload.py ORIGIN TOKEN BUCKET NAME FILE CHUNK_BYTES

Creates the upload with its length declared (no bytes in the POST), sends the file in
CHUNK_BYTES PATCHes as it reads it, and prints the number of PATCHes it had to retry. A PATCH
answered 5xx is retried as TUS clients do: HEAD for the upload's offset, then on from there (at
most MAX_RETRIES in all; each is reported on stderr with the server's message).
"""
import base64
import http.client
import os
import sys
from urllib.parse import urlsplit


MAX_RETRIES = 3


def main():
    origin, token, bucket, name, path, chunk = sys.argv[1:]
    chunk = int(chunk)
    b64 = lambda s: base64.b64encode(s.encode()).decode()
    host = urlsplit(origin)
    conn = http.client.HTTPConnection(host.hostname, host.port)
    common = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    size, offset, retries = os.path.getsize(path), 0, 0
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
            f.seek(offset)
            data = f.read(chunk)
            conn.request("PATCH", location, body=data, headers={
                **common, "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"})
            r = conn.getresponse()
            answer = r.read()
            if r.status == 204:
                offset += len(data)
                continue
            if r.status < 500 or retries == MAX_RETRIES:
                sys.exit(f"PATCH at {offset}: {r.status} {answer[:200]!r}")
            retries += 1
            print(f"tus_upload: PATCH at {offset} answered {r.status} {answer[:200]!r}; retrying",
                  file=sys.stderr)
            conn.request("HEAD", location, headers=common)
            r = conn.getresponse()
            r.read()
            offset = int(r.getheader("Upload-Offset"))
    print(retries)


if __name__ == "__main__":
    main()
