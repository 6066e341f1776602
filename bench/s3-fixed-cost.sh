#!/usr/bin/env bash
# The fixed cost of one S3 GetObject against one REST GET, as instruction counts, which stay
# repeatable on a busy machine: the server runs under callgrind, and N presigned GETs and N REST
# GETs of the same 1 KiB object (one keep-alive connection each) are counted apart.
#
#   cargo build --release && bench/s3-fixed-cost.sh            # N=300
#   N=100 OUT=/tmp/cg bench/s3-fixed-cost.sh                   # keeps the profiles in /tmp/cg
#
# Prints instructions per request of the server process (PostgreSQL's are not counted: the
# database work is the same for both). callgrind_annotate OUT/s3.out shows where they go.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/pgstorage}
VENV=tests/clients/s3/.venv
OUT=${OUT:-}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { echo "run scripts/install-client-deps first" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret-benchsecret

work=$(mktemp -d /tmp/pgstorage-cg.XXXXXX)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "$BIN" serve --data-dir "$work/data" --port "$port" --gc-interval-seconds 0 \
  --s3-api-access-key-id "$AWS_ACCESS_KEY_ID" --s3-api-secret-access-key "$AWS_SECRET_ACCESS_KEY" \
  >"$work/out.log" 2>"$work/err.log" &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

url="http://127.0.0.1:$port"
for _ in $(seq 1 1200); do
  curl -fsS "$url/status" >/dev/null 2>&1 && break
  sleep 0.25
done
key=$(awk '/service_role key/ {print $3}' "$work/out.log")
curl -fsS -X POST "$url/bucket" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{"name":"bench"}' >/dev/null
head -c 1024 /dev/urandom >"$work/small.bin"
curl -fsS -X POST --data-binary @"$work/small.bin" -H "Authorization: Bearer $key" \
  -H 'content-type: application/octet-stream' "$url/object/bench/small.bin" >/dev/null
mapfile -t urls < <("$VENV/bin/python" bench/s3_client.py presign "$url" bench small.bin)
presigned=${urls[0]}

# N GETs of one URL over one connection; fails on anything but 200.
gets() {
  python3 - "$1" "$N" "${2:-}" <<'PY'
import http.client, sys, urllib.parse
url, n, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
target = u.path + ("?" + u.query if u.query else "")
headers = {"Authorization": f"Bearer {token}"} if token else {}
for _ in range(n):
    conn.request("GET", target, headers=headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
}
count() {
  # Warm-up outside the count, then N counted.
  gets "$@"
  callgrind_control -z "$pid" >/dev/null
  gets "$@"
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  local dump
  dump=$(ls -t "$work"/cg.out.* | head -1)
  awk -v n="$N" '/^summary:/ {printf "%.0f", $2 / n}' "$dump"
  if [ -n "$OUT" ]; then mkdir -p "$OUT"; cp "$dump" "$OUT/$3.out"; fi
}
s3=$(count "$presigned" "" s3)
rest=$(count "$url/object/authenticated/bench/small.bin" "$key" rest)
echo "instructions per GET (server process, N=$N): S3 presigned $s3, REST $rest, ratio $(python3 -c "print(f'{$s3/$rest:.2f}')")"
