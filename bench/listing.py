#!/usr/bin/env python3
"""Listing latency at 1,000,000 objects next to 10,000 (issue #4).

Starts the release build on its embedded default in a temporary directory, seeds two buckets with
the same tree shape (rows only: listing never reads bytes), and times list-v2 pages of 100 at
several depths and cursor positions: p50 and p99 over many sequential keep-alive requests, as
service_role (no RLS) and as an authenticated user under a policy.

    cargo build --release && python3 bench/listing.py [--requests 300]
"""
import argparse
import base64
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shape(scale):
    """Counts for a tree of `scale` objects, chosen so every measured page has 100 entries:
    users/uNNNN/photos/… (the middle user has at least 150 photos), logs/day-NNN/…, and one
    huge archive/2024/ folder holding the rest."""
    if scale >= 1_000_000:
        users, photos, mid_photos, days, logs = 500, 1000, 1000, 350, 1000
    else:
        users, photos, mid_photos, days, logs = 200, 10, 150, 35, 100
    mid = users // 2
    archive = scale - (users - 1) * photos - mid_photos - days * logs
    assert archive >= 200, "too few objects for this shape"
    return dict(users=users, photos=photos, mid=mid, mid_photos=mid_photos, days=days, logs=logs,
                archive=archive)


def tree_sql(bucket, s):
    meta = '{"size": 1024, "mimetype": "image/jpeg"}'
    return f"""
    insert into storage.buckets (id, name) values ('{bucket}', '{bucket}');
    insert into storage.objects (bucket_id, name, metadata)
      select '{bucket}', format('users/u%s/photos/img_%s.jpg', lpad(u::text, 4, '0'), lpad(p::text, 6, '0')), '{meta}'
      from generate_series(1, {s['users']}) u, generate_series(1, {s['photos']}) p where u <> {s['mid']};
    insert into storage.objects (bucket_id, name, metadata)
      select '{bucket}', format('users/u%s/photos/img_%s.jpg', lpad({s['mid']}::text, 4, '0'), lpad(p::text, 6, '0')), '{meta}'
      from generate_series(1, {s['mid_photos']}) p;
    insert into storage.objects (bucket_id, name, metadata)
      select '{bucket}', format('logs/day-%s/part-%s.log', lpad(d::text, 3, '0'), lpad(p::text, 5, '0')), '{meta}'
      from generate_series(1, {s['days']}) d, generate_series(1, {s['logs']}) p;
    insert into storage.objects (bucket_id, name, metadata)
      select '{bucket}', format('archive/2024/f%s.bin', lpad(i::text, 6, '0')), '{meta}'
      from generate_series(1, {s['archive']}) i;
    """


def cursor(after):
    """The server's cursor for resuming after name `after` (opaque to clients)."""
    raw = json.dumps({"from": after + "\u0001", "column": "name", "descending": False})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def pages(s):
    mid_user = f"users/u{s['mid']:04d}"
    return [
        ("root level", {"prefix": "", "with_delimiter": True}),
        ("users/ (folders), first page", {"prefix": "users/", "with_delimiter": True}),
        ("users/ (folders), middle cursor", {"prefix": "users/", "with_delimiter": True,
                                             "cursor": cursor(mid_user + "0")}),
        ("users/uNNNN/photos/ (depth 3)", {"prefix": f"{mid_user}/photos/", "with_delimiter": True}),
        ("archive/2024/ (huge folder), first page", {"prefix": "archive/2024/", "with_delimiter": True}),
        ("archive/2024/ (huge folder), middle cursor", {"prefix": "archive/2024/", "with_delimiter": True,
                                                        "cursor": cursor(f"archive/2024/f{s['archive'] // 2:06d}.bin")}),
        ("logs/ flat (no delimiter), middle", {"prefix": "logs/",
                                               "cursor": cursor(f"logs/day-{s['days'] // 2:03d}/part-{s['logs'] // 2:05d}.log")}),
    ]


def v1_pages(s):
    mid_user = f"users/u{s['mid']:04d}"
    return [
        ("v1: users/ (folders, by name)", {"prefix": "users/"}),
        ("v1: users/uNNNN/photos/ (depth 3)", {"prefix": f"{mid_user}/photos/"}),
        ("v1: archive/2024/ (huge folder)", {"prefix": "archive/2024/"}),
    ]


def count_entries(page):
    if isinstance(page, list):
        return len(page)
    return len(page["folders"]) + len(page["objects"])


def timed_pair(conn, small, big, key, n):
    """Times the small- and big-bucket requests alternately, so both see the same machine."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    samples = {"small": [], "big": []}
    counts = {}
    for i in range(n + 20):
        for which, (path, body) in (("small", small), ("big", big)):
            payload = json.dumps({**body, "limit": 100})
            start = time.perf_counter()
            conn.request("POST", path, payload, headers)
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200:
                sys.exit(f"{path} {payload}: HTTP {response.status} {data[:300]!r}")
            if i >= 20:  # warm-up
                samples[which].append(elapsed * 1000)
            counts[which] = count_entries(json.loads(data))
    result = []
    for which in ("small", "big"):
        xs = sorted(samples[which])
        result.append((statistics.median(xs), xs[int(len(xs) * 0.99) - 1], counts[which]))
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--big", type=int, default=1_000_000)
    args = parser.parse_args()
    binary = os.path.join(ROOT, "target/release/pgstorage")
    work = tempfile.mkdtemp(prefix="pgstorage-listing-")
    os.chmod(work, 0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = open(os.path.join(work, "out.log"), "w+")
    server = subprocess.Popen([binary, "serve", "--data-dir", f"{work}/data", "--port", str(port),
                               "--gc-interval-seconds", "0"], stdout=out, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            out.seek(0)
            text = out.read()
            if "service_role key" in text:
                break
            time.sleep(0.1)
        keys = {line.split()[0]: line.split()[-1] for line in text.splitlines() if " key:" in line}
        service = keys["service_role"]
        user = subprocess.run([binary, "token", "--data-dir", f"{work}/data", "--role", "authenticated",
                               "--sub", "bench-user"], capture_output=True, text=True, check=True).stdout.strip()
        psql = ["psql", "-q", "-v", "ON_ERROR_STOP=1", f"host={work}/data/run user=postgres dbname=pgstorage"]
        shapes = {}
        for bucket, scale in (("big", args.big), ("small", 10_000)):
            shapes[bucket] = shape(scale)
            started = time.time()
            subprocess.run(psql + ["-c", tree_sql(bucket, shapes[bucket])], check=True)
            print(f"seeded {bucket}: {scale} objects in {time.time() - started:.0f}s", file=sys.stderr)
        subprocess.run(psql + ["-c", """
            analyze storage.objects;
            create policy bench_read on storage.objects for select to authenticated
              using (bucket_id in ('big', 'small') and (storage.foldername(name))[1] <> 'private');
        """], check=True)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        print(f"| page (limit 100) | role | 10k p50 / p99 (ms) | 1M p50 / p99 (ms) | ratio p50 / p99 |")
        print("|---|---|---|---|---|")
        for role, key in (("service_role", service), ("authenticated + RLS", user)):
            runs = [("list-v2", p, q) for p, q in zip(pages(shapes["small"]), pages(shapes["big"]))]
            runs += [("list", p, q) for p, q in zip(v1_pages(shapes["small"]), v1_pages(shapes["big"]))]
            for route, (label, small_body), (_, big_body) in runs:
                (s50, s99, sn), (b50, b99, bn) = timed_pair(
                    conn, (f"/object/{route}/small", small_body), (f"/object/{route}/big", big_body),
                    key, args.requests)
                print(f"| {label} ({sn} / {bn} entries) | {role} | {s50:.2f} / {s99:.2f} | "
                      f"{b50:.2f} / {b99:.2f} | {b50 / s50:.2f} / {b99 / s99:.2f} |")
    finally:
        server.terminate()
        server.wait(timeout=60)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
