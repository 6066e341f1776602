#!/usr/bin/env python3
"""Throughput and latency of each byte store (issue #5).

For every backend: 1 KiB and 1 MiB objects uploaded and downloaded by concurrent clients
(requests/s, p50, p99), then one large object (MB/s each way, and the server's peak resident
memory). Starts the release build on its embedded PostgreSQL in a temporary directory; the s3
backend also starts moto (scripts/install-s3-deps installs it).

    cargo build --release && python3 bench/stores.py [--backends fs,postgres,s3] [--large-mib 1024]
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOTO = os.path.join(ROOT, ".venv/moto/bin/moto_server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"{url} did not answer")


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, backend, work):
        self.port = free_port()
        args = [os.path.join(ROOT, "target/release/pgstorage"), "serve", "--data-dir", f"{work}/data",
                "--port", str(self.port), "--gc-interval-seconds", "0", "--backend", backend]
        self.moto = None
        if backend == "s3":
            if not os.path.exists(MOTO):
                sys.exit("moto is not installed: run scripts/install-s3-deps")
            moto_port = free_port()
            self.moto = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(moto_port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(f"http://127.0.0.1:{moto_port}/")
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{moto_port}/bench", method="PUT"))
            args += ["--s3-endpoint", f"http://127.0.0.1:{moto_port}", "--s3-bucket", "bench",
                     "--s3-region", "us-east-1", "--s3-access-key-id", "x", "--s3-secret-access-key", "x",
                     "--s3-force-path-style"]
        self.out = open(f"{work}/out.log", "w+")
        self.process = subprocess.Popen(args, stdout=self.out, stderr=open(f"{work}/err.log", "w"))
        deadline = time.time() + 120
        while time.time() < deadline:
            self.out.seek(0)
            text = self.out.read()
            if "service_role key" in text:
                break
            if self.process.poll() is not None:
                sys.exit(f"server exited: {open(f'{work}/err.log').read()[-2000:]}")
            time.sleep(0.1)
        self.key = [l.split()[-1] for l in text.splitlines() if l.startswith("service_role key")][0]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)
        if self.moto:
            self.moto.terminate()
            self.moto.wait(timeout=30)


def request(conn, method, path, key, body=None, headers=None):
    h = {"Authorization": f"Bearer {key}"}
    h.update(headers or {})
    start = time.perf_counter()
    conn.request(method, path, body, h)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        sys.exit(f"{method} {path}: HTTP {response.status} {data[:200]!r}")
    return elapsed, data


def load(server, size, count, workers):
    """Uploads `count` objects of `size` bytes, then downloads them, with `workers` clients."""
    payload = os.urandom(size)
    results = {"upload": [], "download": []}
    for phase in ("upload", "download"):
        latencies = []
        lock = threading.Lock()

        def work(index):
            conn = http.client.HTTPConnection("127.0.0.1", server.port)
            mine = []
            for i in range(index, count, workers):
                path = f"/object/bench/{size}/{i:06d}.bin"
                if phase == "upload":
                    t, _ = request(conn, "POST", path, server.key, payload,
                                   {"Content-Type": "application/octet-stream"})
                else:
                    t, data = request(conn, "GET", path, server.key)
                    assert len(data) == size
                mine.append(t)
            with lock:
                latencies.extend(mine)

        started = time.perf_counter()
        threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        latencies.sort()
        results[phase] = (count / wall, statistics.median(latencies) * 1000,
                          latencies[int(len(latencies) * 0.99) - 1] * 1000)
    return results


def large(server, work, mib):
    path = f"{work}/large.bin"
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1024 * 1024))
    url = f"http://127.0.0.1:{server.port}"
    auth = ["-H", f"Authorization: Bearer {server.key}"]
    up = subprocess.run(["curl", "-fsS", "-X", "POST", "-T", path, *auth, "-H", "content-type: application/octet-stream",
                         "-o", "/dev/null", "-w", "%{time_total}", f"{url}/object/bench/large.bin"],
                        capture_output=True, text=True, check=True).stdout
    down = subprocess.run(["curl", "-fsS", *auth, "-o", "/dev/null", "-w", "%{time_total} %{size_download}",
                           f"{url}/object/authenticated/bench/large.bin"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert int(down[1]) == mib * 1024 * 1024, down
    os.remove(path)
    size_mb = mib * 1024 * 1024 / 1e6
    return size_mb / float(up), size_mb / float(down[0]), rss_kib(server.process.pid, "VmHWM") // 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="fs,postgres,s3")
    parser.add_argument("--small-count", type=int, default=2000)
    parser.add_argument("--medium-count", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--large-mib", type=int, default=1024)
    args = parser.parse_args()
    rows, big_rows = [], []
    for backend in args.backends.split(","):
        work = tempfile.mkdtemp(prefix=f"pgstorage-bench-{backend}-")
        os.chmod(work, 0o755)
        server = Server(backend, work)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port)
            request(conn, "POST", "/bucket", server.key, json.dumps({"name": "bench"}),
                    {"Content-Type": "application/json"})
            for size, count in ((1024, args.small_count), (1024 * 1024, args.medium_count)):
                r = load(server, size, count, args.workers)
                label = "1 KiB" if size == 1024 else "1 MiB"
                for phase in ("upload", "download"):
                    rps, p50, p99 = r[phase]
                    rows.append(f"| {backend} | {label} {phase} | {rps:.0f} | {p50:.1f} | {p99:.1f} |")
                    print(rows[-1], file=sys.stderr)
            up, down, peak = large(server, work, args.large_mib)
            big_rows.append(f"| {backend} | {args.large_mib} MiB | {up:.0f} MB/s | {down:.0f} MB/s | {peak} MiB |")
            print(big_rows[-1], file=sys.stderr)
        finally:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)
    print(f"| store | objects | requests/s ({args.workers} clients) | p50 (ms) | p99 (ms) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("| store | object | upload | download | server peak RSS |")
    print("|---|---|---|---|---|")
    print("\n".join(big_rows))


if __name__ == "__main__":
    main()
