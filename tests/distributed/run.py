"""The distributed tier: three pgstorage servers on a PostgreSQL primary with a synchronous
streaming standby and one S3 byte store, load spread round-robin over the servers while faults
happen, then every invariant checked against the database and the store.

Run through tests/distributed/run (which builds the binary and finds Python's dependencies).
Asserts invariants only; timings are reported, never asserted.
"""

import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict

import boto3
import requests
from botocore.config import Config as BotoConfig

BIN = os.environ["PGSTORAGE_BIN"]
WORK = os.environ["DIST_WORK"]
DURATION = float(os.environ.get("DIST_SECONDS", "45"))
WORKERS = int(os.environ.get("DIST_WORKERS", "9"))
JWT_SECRET = "distributed-tier-secret-distributed-tier-secret"
S3_API_KEY, S3_API_SECRET = "distkey", "distsecret-distsecret"
BUCKET = "dist"
MIN_PART = 64 * 1024

started_at = time.monotonic()


def log(message):
    print(f"[{time.monotonic() - started_at:7.2f}s] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, **kwargs):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a primary and a synchronous streaming standby, both on loopback.
# ---------------------------------------------------------------------------------------------

def pg_bindir():
    """The server's own directory, so that every tool (pg_basebackup, psql) is of its version."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    if os.path.isdir("/usr/lib/postgresql"):
        versions = [v for v in os.listdir("/usr/lib/postgresql") if v.isdigit()]
        for version in sorted(versions, key=int, reverse=True):
            if os.path.exists(f"/usr/lib/postgresql/{version}/bin/initdb"):
                return f"/usr/lib/postgresql/{version}/bin"
    raise SystemExit("initdb not found: install the PostgreSQL server binaries")


def pg_bin(name):
    path = os.path.join(pg_bindir(), name)
    return path if os.path.exists(path) else (shutil.which(name) or path)


def as_postgres(args):
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + args
    return args


class Postgres:
    def __init__(self, name, port):
        self.name, self.port = name, port
        self.data = os.path.join(WORK, name)
        self.logfile = os.path.join(WORK, f"{name}.log")

    def start(self, settings):
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        run(as_postgres([pg_bin("pg_ctl"), "-D", self.data, "-l", self.logfile, "-w", "-t", "60",
                         "-o", f"-p {self.port} -k {WORK} -c listen_addresses=127.0.0.1 {options}",
                         "start"]))

    def stop(self, mode="fast"):
        subprocess.run(as_postgres([pg_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop"]),
                       capture_output=True)

    def promote(self):
        run(as_postgres([pg_bin("pg_ctl"), "-D", self.data, "-w", "promote"]))

    def sql(self, statement, dbname="storage"):
        out = run(as_postgres([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                               "postgres", "-d", dbname, "-XAtq", "-v", "ON_ERROR_STOP=1",
                               "-c", statement]))
        return out.stdout.strip()


def start_databases():
    primary = Postgres("primary", free_port())
    standby = Postgres("standby", free_port())
    os.makedirs(primary.data)
    if os.geteuid() == 0:
        shutil.chown(WORK, "postgres")
        shutil.chown(primary.data, "postgres")
    run(as_postgres([pg_bin("initdb"), "-D", primary.data, "-U", "postgres", "--auth=trust",
                     "--no-sync"]))
    common = {"max_connections": "300", "fsync": "off", "wal_level": "replica",
              "max_wal_senders": "5", "hot_standby": "on"}
    # Every commit waits for the standby to have the WAL on disk: an acknowledged write
    # survives losing the primary.
    primary.start({**common, "synchronous_standby_names": "'*'", "synchronous_commit": "on"})
    run(as_postgres([pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                     "-U", "postgres", "-D", standby.data, "-R", "-X", "stream"]))
    # Once promoted the standby stands alone: it must not wait for a standby of its own.
    standby.start({**common, "synchronous_standby_names": "''"})
    primary.sql("create database storage", dbname="postgres")
    for _ in range(100):
        if primary.sql("select count(*) from pg_stat_replication where sync_state = 'sync'",
                       dbname="postgres") == "1":
            break
        time.sleep(0.1)
    else:
        raise SystemExit("the standby never became synchronous")
    return primary, standby


def database_url(primary, standby, user):
    # The multi-host form: the driver tries each host in turn and keeps the one that accepts
    # writes, so after a promotion the servers reconnect to the new primary by themselves.
    return (f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} user={user} "
            f"dbname=storage target_session_attrs=read-write sslmode=disable connect_timeout=5")


# ---------------------------------------------------------------------------------------------
# The byte store (moto here; Garage when the harness provides one) and the servers.
# ---------------------------------------------------------------------------------------------

def start_store():
    if os.environ.get("DIST_S3_ENDPOINT"):
        store = {"endpoint": os.environ["DIST_S3_ENDPOINT"],
                 "key": os.environ["DIST_S3_KEY"], "secret": os.environ["DIST_S3_SECRET"],
                 "bucket": os.environ["DIST_S3_BUCKET"],
                 "region": os.environ.get("DIST_S3_REGION", "garage")}
        client = store_client(store)
        # A fresh bucket each run, so the orphan check sees only this run's keys.
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=store["bucket"]):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=store["bucket"], Delete={"Objects": keys})
        except client.exceptions.NoSuchBucket:
            client.create_bucket(Bucket=store["bucket"])
        return None, store
    port = free_port()
    moto = subprocess.Popen([os.environ["MOTO_SERVER"], "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(os.path.join(WORK, "moto.log"), "w"),
                            stderr=subprocess.STDOUT)
    store = {"endpoint": f"http://127.0.0.1:{port}", "key": "test", "secret": "test",
             "bucket": "dist-bytes", "region": "us-east-1"}
    for _ in range(100):
        try:
            requests.get(store["endpoint"], timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    store_client(store).create_bucket(Bucket=store["bucket"])
    return moto, store


def store_client(store):
    return boto3.client("s3", endpoint_url=store["endpoint"], aws_access_key_id=store["key"],
                        aws_secret_access_key=store["secret"], region_name=store["region"],
                        config=BotoConfig(s3={"addressing_style": "path"}))


def store_args(store):
    return ["--backend", "s3", "--s3-endpoint", store["endpoint"], "--s3-bucket", store["bucket"],
            "--s3-access-key-id", store["key"], "--s3-secret-access-key", store["secret"],
            "--s3-region", store["region"], "--s3-force-path-style"]


class Server:
    def __init__(self, index, admin_url, request_url, store):
        self.index, self.port = index, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--data-dir", os.path.join(WORK, f"server{index}"),
                     "--database-url", admin_url, "--request-database-url", request_url,
                     "--jwt-secret", JWT_SECRET, "--db-pool-size", "12",
                     "--s3-api-access-key-id", S3_API_KEY,
                     "--s3-api-secret-access-key", S3_API_SECRET,
                     "--multipart-min-part-size", str(MIN_PART),
                     # The lease is short so that the bytes of uploads cut off by SIGKILL can be
                     # collected at the end of the run; the collector runs there, not here.
                     "--upload-lease-seconds", "5", "--gc-interval-seconds", "0",
                     ] + store_args(store)
        self.process = None

    def start(self):
        self.spawn()
        self.wait_ready()

    def spawn(self):
        self.process = subprocess.Popen(
            self.args, stdout=open(os.path.join(WORK, f"server{self.index}.log"), "a"),
            stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})

    def wait_ready(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/status", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                raise SystemExit(f"server {self.index} exited; see server{self.index}.log")
            time.sleep(0.1)
        raise SystemExit(f"server {self.index} did not start")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def jwt(role):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"role": role, "exp": int(time.time()) + 86400}).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256)
    return f"{header}.{claims}.{b64(signature.digest())}"


SERVICE = {"Authorization": f"Bearer {jwt('service_role')}"}


# ---------------------------------------------------------------------------------------------
# The load: a ledger of acknowledged writes, and what each operation's answers were.
# ---------------------------------------------------------------------------------------------

class Ledger:
    """What each key may hold: the set of sha256s (None: absent) it can have, given which
    writes were acknowledged (the set shrinks to one) and which were not (they may or may not
    have happened, so their outcome joins the set)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.possible = {}

    def get(self, key):
        with self.lock:
            return set(self.possible.get(key, {None}))

    def acknowledged(self, key, sha):
        with self.lock:
            self.possible[key] = {sha}

    def uncertain(self, key, sha):
        with self.lock:
            self.possible.setdefault(key, {None}).add(sha)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = defaultdict(list)
        self.statuses = defaultdict(lambda: defaultdict(int))
        self.events = []  # (time, operation, status) of every failure, for the fault windows
        self.violations = []

    def record(self, operation, status, seconds):
        with self.lock:
            self.statuses[operation][status] += 1
            if isinstance(status, int) and status < 300:
                self.latencies[operation].append(seconds)
            elif not isinstance(status, int) or status >= 500:
                self.events.append((time.monotonic(), operation, status))

    def violation(self, text):
        with self.lock:
            self.violations.append(text)
        log(f"VIOLATION: {text}")


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Worker(threading.Thread):
    def __init__(self, index, servers, ledger, stats, stop):
        super().__init__(daemon=True)
        self.index, self.servers, self.ledger, self.stats, self.stop = \
            index, servers, ledger, stats, stop
        self.random = random.Random(index)
        self.turn = index
        self.keys = []
        self.counter = 0
        self.session = requests.Session()
        self.s3 = [boto3.client("s3", endpoint_url=f"{s.url}/s3", aws_access_key_id=S3_API_KEY,
                                aws_secret_access_key=S3_API_SECRET, region_name="us-east-1",
                                config=BotoConfig(s3={"addressing_style": "path"},
                                                  retries={"max_attempts": 1},
                                                  connect_timeout=5, read_timeout=30))
                   for s in servers]

    def next_server(self):
        """Round-robin over the servers, no stickiness: every request may land elsewhere."""
        self.turn += 1
        return self.turn % len(self.servers)

    def url(self, path):
        return f"{self.servers[self.next_server()].url}{path}"

    def new_key(self):
        self.counter += 1
        return f"w{self.index}/k{self.counter}"

    def body(self):
        return os.urandom(self.random.choice([100, 4096, 50_000, 300_000]))

    def call(self, operation, method, path, **kwargs):
        begun = time.monotonic()
        try:
            response = self.session.request(method, self.url(path), timeout=60, **kwargs)
            status = response.status_code
        except requests.RequestException as e:
            response, status = None, type(e).__name__
        self.stats.record(operation, status, time.monotonic() - begun)
        if isinstance(status, int) and status >= 500 and status != 503:
            self.stats.violation(f"{operation} {path}: {status} {response.text[:200]}")
        return response, status

    def run(self):
        operations = [(self.upload, 4), (self.overwrite, 3), (self.read, 6), (self.copy, 1),
                      (self.move, 1), (self.delete, 1), (self.multipart, 1), (self.tus, 1)]
        choices = [op for op, weight in operations for _ in range(weight)]
        while not self.stop.is_set():
            operation = self.random.choice(choices)
            if operation not in (self.upload, self.multipart, self.tus) and not self.keys:
                operation = self.upload
            operation()

    def write(self, operation, key, data, upsert):
        headers = {**SERVICE, "content-type": "application/octet-stream"}
        if upsert:
            headers["x-upsert"] = "true"
        method = "PUT" if upsert else "POST"
        _, status = self.call(operation, method, f"/object/{BUCKET}/{key}", headers=headers,
                              data=data)
        if status == 200:
            self.ledger.acknowledged(key, sha(data))
            if key not in self.keys:
                self.keys.append(key)
        elif not isinstance(status, int) or status >= 500:
            self.ledger.uncertain(key, sha(data))
            if key not in self.keys:
                self.keys.append(key)
        elif status != 409:
            self.stats.violation(f"{operation} {key}: unexpected {status}")

    def upload(self):
        self.write("upload", self.new_key(), self.body(), upsert=False)

    def overwrite(self):
        self.write("overwrite", self.random.choice(self.keys), self.body(), upsert=True)

    def read(self):
        key = self.random.choice(self.keys)
        possible = self.ledger.get(key)
        response, status = self.call("read", "GET", f"/object/authenticated/{BUCKET}/{key}",
                                     headers=SERVICE)
        if status == 200:
            got = sha(response.content)
            if got not in possible:
                self.stats.violation(f"read {key}: body {got[:12]} is none of what was written")
        elif status == 404:
            if None not in possible:
                self.stats.violation(f"read {key}: 404 after an acknowledged write")

    def copy(self):
        source, destination = self.random.choice(self.keys), self.new_key()
        possible = self.ledger.get(source)
        _, status = self.call("copy", "POST", "/object/copy", headers=SERVICE,
                              json={"bucketId": BUCKET, "sourceKey": source,
                                    "destinationKey": destination})
        for value in possible:
            if status == 200:
                # The copy holds one of the source's possible bodies.
                self.ledger.uncertain(destination, value)
            elif not isinstance(status, int) or status >= 500:
                self.ledger.uncertain(destination, value)
        if status == 200 and len(possible) == 1:
            self.ledger.acknowledged(destination, next(iter(possible)))
        if status == 200 or not isinstance(status, int) or status >= 500:
            self.keys.append(destination)

    def move(self):
        source, destination = self.random.choice(self.keys), self.new_key()
        possible = self.ledger.get(source)
        _, status = self.call("move", "POST", "/object/move", headers=SERVICE,
                              json={"bucketId": BUCKET, "sourceKey": source,
                                    "destinationKey": destination})
        if status == 200:
            self.ledger.acknowledged(source, None)
            self.keys.remove(source)
            for value in possible:
                self.ledger.uncertain(destination, value)
            if len(possible) == 1:
                self.ledger.acknowledged(destination, next(iter(possible)))
            self.keys.append(destination)
        elif not isinstance(status, int) or status >= 500:
            self.ledger.uncertain(source, None)
            for value in possible:
                self.ledger.uncertain(destination, value)
            self.keys.append(destination)

    def delete(self):
        key = self.random.choice(self.keys)
        _, status = self.call("delete", "DELETE", f"/object/{BUCKET}/{key}", headers=SERVICE)
        if status in (200, 404):
            self.ledger.acknowledged(key, None)
            self.keys.remove(key)
        elif not isinstance(status, int) or status >= 500:
            self.ledger.uncertain(key, None)

    def multipart(self):
        """An S3 multipart upload whose create, parts and completion go to different servers."""
        key = self.new_key()
        parts = [os.urandom(MIN_PART * 2), os.urandom(MIN_PART * 2), os.urandom(1000)]
        data = b"".join(parts)
        begun = time.monotonic()
        try:
            upload = self.s3[self.next_server()].create_multipart_upload(Bucket=BUCKET, Key=key)
            done = []
            for number, part in enumerate(parts, start=1):
                answer = self.s3[self.next_server()].upload_part(
                    Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=number,
                    Body=part)
                done.append({"PartNumber": number, "ETag": answer["ETag"]})
            self.ledger.uncertain(key, sha(data))
            self.keys.append(key)
            self.s3[self.next_server()].complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
                MultipartUpload={"Parts": done})
            status = 200
            self.ledger.acknowledged(key, sha(data))
        except Exception as e:  # botocore's errors: the status is in the response, if any
            status = getattr(e, "response", {}).get("ResponseMetadata", {}).get(
                "HTTPStatusCode") or type(e).__name__
            if isinstance(status, int) and status >= 500 and status != 503:
                self.stats.violation(f"multipart {key}: {status} {e}")
        self.stats.record("s3 multipart", status, time.monotonic() - begun)

    def tus(self):
        """A resumable upload created on one server and sent in chunks to the others."""
        key = self.new_key()
        chunks = [os.urandom(MIN_PART * 2), os.urandom(5000)]
        data = b"".join(chunks)
        metadata = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                            for k, v in [("bucketName", BUCKET), ("objectName", key)])
        tus = {**SERVICE, "Tus-Resumable": "1.0.0"}
        begun = time.monotonic()
        status = None
        try:
            response = self.session.post(self.url("/upload/resumable"), timeout=30,
                                         headers={**tus, "Upload-Length": str(len(data)),
                                                  "Upload-Metadata": metadata})
            status = response.status_code
            if status == 201:
                location = requests.utils.urlparse(response.headers["Location"]).path
                offset = 0
                for chunk in chunks:
                    if offset + len(chunk) == len(data):
                        self.ledger.uncertain(key, sha(data))
                        if key not in self.keys:
                            self.keys.append(key)
                    response = self.session.patch(
                        self.url(location), data=chunk, timeout=30,
                        headers={**tus, "Upload-Offset": str(offset),
                                 "Content-Type": "application/offset+octet-stream"})
                    status = response.status_code
                    if status != 204:
                        break
                    offset += len(chunk)
                if status == 204:
                    status = 200
                    self.ledger.acknowledged(key, sha(data))
        except requests.RequestException as e:
            status = type(e).__name__
        if isinstance(status, int) and status >= 500 and status != 503:
            self.stats.violation(f"tus {key}: {status}")
        self.stats.record("tus", status, time.monotonic() - begun)


def race(servers, stats, races, number):
    """Several clients create one new key without upsert, each through a different server:
    exactly one may win."""
    key = f"race/{number}"
    bodies = [os.urandom(2000) for _ in range(6)]
    statuses = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def contender(i):
        barrier.wait()
        try:
            statuses[i] = requests.post(
                f"{servers[i % len(servers)].url}/object/{BUCKET}/{key}", data=bodies[i],
                headers={**SERVICE, "content-type": "application/octet-stream"},
                timeout=30).status_code
        except requests.RequestException as e:
            statuses[i] = type(e).__name__
    threads = [threading.Thread(target=contender, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, s in enumerate(statuses) if s == 200]
    if len(winners) > 1:
        stats.violation(f"race {key}: {len(winners)} winners {statuses}")
    for s in statuses:
        if isinstance(s, int) and s not in (200, 409, 400, 503):
            stats.violation(f"race {key}: answer {s}")
    races.append((key, statuses, [sha(b) for b in bodies]))


# ---------------------------------------------------------------------------------------------
# Faults, and what each cost.
# ---------------------------------------------------------------------------------------------

def window(stats, start, end):
    """Failed requests between two instants: how many, and the span from the first to last."""
    failures = [(t, op, s) for t, op, s in stats.events if start <= t <= end]
    if not failures:
        return "no failed request"
    by_status = defaultdict(int)
    for _, _, s in failures:
        by_status[s] += 1
    return (f"{len(failures)} failed requests, the last {failures[-1][0] - start:.2f}s after "
            f"the fault ({', '.join(f'{s}: {n}' for s, n in sorted(by_status.items(), key=str))})")


def main():
    if os.path.exists(WORK):
        # A run that was killed may have left its clusters running.
        for name in ("primary", "standby"):
            if os.path.exists(os.path.join(WORK, name, "postmaster.pid")):
                Postgres(name, 0).stop("immediate")
        shutil.rmtree(WORK)
    os.makedirs(WORK)
    moto = None
    primary = standby = None
    servers = []
    try:
        log("starting PostgreSQL: a primary and a synchronous standby")
        primary, standby = start_databases()
        moto, store = start_store()
        admin_url = database_url(primary, standby, "postgres")
        request_url = database_url(primary, standby, "pgstorage_request")
        run([BIN, "migrate", "--database-url", admin_url])
        primary.sql("create role pgstorage_request login noinherit; "
                    "grant anon, authenticated, service_role to pgstorage_request")
        servers = [Server(i, admin_url, request_url, store) for i in range(3)]
        for server in servers:
            server.spawn()
        for server in servers:
            server.wait_ready()
        log(f"servers on {', '.join(s.url for s in servers)}; store {store['endpoint']}")
        response = requests.post(f"{servers[0].url}/bucket", headers=SERVICE,
                                 json={"name": BUCKET})
        assert response.status_code == 200, response.text

        ledger, stats, stop, races = Ledger(), Stats(), threading.Event(), []
        workers = [Worker(i, servers, ledger, stats, stop) for i in range(WORKERS)]
        load_start = time.monotonic()
        for worker in workers:
            worker.start()
        faults = {}

        def at(seconds):
            time.sleep(max(0.0, load_start + seconds - time.monotonic()))

        race(servers, stats, races, 0)
        at(DURATION * 0.15)
        log("fault: SIGKILL server 1 (restarted after 3 s)")
        begun = time.monotonic()
        servers[1].kill()
        time.sleep(3)
        servers[1].start()
        faults["SIGKILL of one server"] = (begun, time.monotonic() + 2)
        race(servers, stats, races, 1)

        at(DURATION * 0.4)
        log("fault: primary stopped (immediate), standby promoted")
        stopped = time.monotonic()
        primary.stop("immediate")
        race(servers, stats, races, 2)
        time.sleep(1)
        standby.promote()
        promoted = time.monotonic()
        log(f"standby promoted {promoted - stopped:.2f}s after the primary stopped")
        faults["PostgreSQL failover"] = (stopped, promoted + 15)
        at(DURATION * 0.7)
        race(servers, stats, races, 3)
        store_fault = os.environ.get("DIST_STORE_FAULT")
        if store_fault:
            # With a distributed store (DIST_S3_*): e.g. a command that kills one of its nodes
            # and starts it again. Reads must still never return a wrong body.
            at(DURATION * 0.8)
            log(f"fault: {store_fault}")
            begun = time.monotonic()
            subprocess.run(store_fault, shell=True, check=True)
            faults["store node restarted"] = (begun, time.monotonic() + 5)
        at(DURATION)
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        load_seconds = time.monotonic() - load_start
        log("load finished; checking invariants")
        check(primary, standby, servers, store, ledger, stats, races)
        report(stats, faults, load_seconds, promoted - stopped)
        if stats.violations:
            print(f"\n{len(stats.violations)} violations:")
            for v in stats.violations[:50]:
                print(f"  {v}")
            return 1
        print("\ndistributed tier: every invariant holds")
        return 0
    finally:
        for server in servers:
            if server.process and server.process.poll() is None:
                server.process.terminate()
                server.process.wait()
        for pg in (primary, standby):
            if pg:
                pg.stop("immediate")
        if moto:
            moto.terminate()
            moto.wait()


def check(primary, standby, servers, store, ledger, stats, races):
    db = standby  # the new primary
    # 1. Every row's bytes are in the store and match its sha256 (read through each server;
    # segmented objects, from multipart and resumable uploads, record no sha256 of their own:
    # their bytes are checked against the ledger below).
    rows = {}
    for line in db.sql(f"select name, coalesce(metadata->>'sha256', '') from storage.objects "
                       f"where bucket_id = '{BUCKET}'").splitlines():
        name, recorded = line.split("|")
        rows[name] = recorded
    session = requests.Session()
    held = {}
    for i, (name, recorded) in enumerate(sorted(rows.items())):
        url = f"{servers[i % len(servers)].url}/object/authenticated/{BUCKET}/{name}"
        response = session.get(url, headers=SERVICE, timeout=60)
        held[name] = sha(response.content)
        if response.status_code != 200 or (recorded and held[name] != recorded):
            stats.violation(f"row {name}: {response.status_code}, bytes do not match its sha256")
    log(f"{len(rows)} rows read back, bytes match their sha256")
    # 2. Every acknowledged write is there; an acknowledged delete stays deleted.
    for key, possible in ledger.possible.items():
        present = held.get(key)
        if present not in possible:
            stats.violation(f"ledger {key}: the store holds {present and present[:12]}, "
                            f"expected one of {[p and p[:12] for p in possible]}")
    certain = sum(1 for p in ledger.possible.values() if len(p) == 1)
    log(f"ledger: {len(ledger.possible)} keys checked ({certain} with an acknowledged state)")
    # 3. Races: one winner, and the object holds the winner's bytes.
    for key, statuses, digests in races:
        winners = [i for i, s in enumerate(statuses) if s == 200]
        if winners and held.get(key) != digests[winners[0]]:
            stats.violation(f"race {key}: the row does not hold the winner's bytes")
        if key in held and held[key] not in digests:
            stats.violation(f"race {key}: the row holds bytes nobody sent")
        log(f"race {key}: {statuses}")
    # 4. No orphan once the collector has run with every lease expired.
    time.sleep(6)  # past --upload-lease-seconds
    # Uploads cut off by a fault stay open until --multipart-expiry; expire them now so their
    # parts count as abandoned.
    db.sql("update storage.s3_multipart_uploads set expires_at = now() - interval '1 second'")
    staged = db.sql("select count(*) from storage.byte_journal where state = 'staged'")
    released = db.sql("select count(*) from storage.byte_journal where state = 'released'")
    log(f"journal before gc: {staged} staged (uploads cut off or in progress), {released} released")
    url = database_url(primary, standby, "postgres")
    out = run([BIN, "gc", "--database-url", url, "--gc-grace-seconds", "0"] + store_args(store))
    log(f"gc: {out.stdout.strip()}")
    out = run([BIN, "gc", "--database-url", url, "--gc-grace-seconds", "0"] + store_args(store))
    log(f"gc again: {out.stdout.strip()}")
    referenced = set(db.sql(
        "select version from storage.objects where version is not null "
        "union select key from storage.object_segments "
        "union select version from storage.s3_multipart_uploads_parts "
        "where version is not null").splitlines())
    journal = db.sql("select state || ' ' || count(*) from storage.byte_journal group by state")
    client = store_client(store)
    stored = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=store["bucket"]):
        for item in page.get("Contents", []):
            stored.add(item["Key"].rsplit("/", 1)[-1])
    orphans = stored - referenced
    missing = {k for k in referenced if k not in stored} - manifests(db)
    log(f"store: {len(stored)} keys, {len(referenced)} referenced, journal: {journal or 'empty'}")
    if orphans:
        stats.violation(f"{len(orphans)} orphan keys after gc, e.g. {sorted(orphans)[:3]}")
    if missing:
        stats.violation(f"{len(missing)} referenced keys missing, e.g. {sorted(missing)[:3]}")
    for server in servers:
        with open(os.path.join(WORK, f"server{server.index}.log"), errors="replace") as f:
            if "panicked" in f.read():
                stats.violation(f"server {server.index} panicked (see its log)")
    open_uploads = client.list_multipart_uploads(Bucket=store["bucket"]).get("Uploads", [])
    log(f"store-side multipart uploads left open (a lifecycle rule aborts them): "
        f"{len(open_uploads)}")


def manifests(db):
    """Versions of segmented objects: a manifest names segments and has no bytes of its own."""
    return set(db.sql("select distinct version from storage.object_segments").splitlines())


def report(stats, faults, load_seconds, promotion):
    print(f"\n== load: {load_seconds:.1f}s, {WORKERS} clients round-robin over 3 servers")
    print(f"{'operation':<14}{'ok':>7}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}  other answers")
    for operation in sorted(stats.statuses):
        latencies = sorted(stats.latencies[operation])
        ok = len(latencies)
        p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 \
            if latencies else 0
        other = ", ".join(f"{s}: {n}" for s, n in sorted(stats.statuses[operation].items(),
                                                         key=lambda x: str(x[0]))
                          if not (isinstance(s, int) and s < 300))
        print(f"{operation:<14}{ok:>7}{ok / load_seconds:>8.1f}{p50:>9.1f}{p99:>9.1f}  {other}")
    print("\n== faults")
    for name, (start, end) in faults.items():
        print(f"{name}: {window(stats, start, end)}")
    print(f"(standby promoted {promotion:.2f}s after the primary stopped)")


if __name__ == "__main__":
    sys.exit(main())
