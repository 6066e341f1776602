#!/usr/bin/env bash
# A large file as a resumable (TUS) upload in 6 MiB PATCHes, against the same file as one REST
# upload; the server's peak resident memory; and what finishing an upload costs for a small and
# a large file (a final empty PATCH that declares the length, so it measures completion alone).
#
#   cargo build --release && bench/resumable.sh             # 1 GiB
#   SIZE_MIB=256 bench/resumable.sh                          # smaller
#
# Runs the embedded default in a temporary directory; needs curl, python3 and the PostgreSQL
# binaries. The TUS client is a few lines of Python over one keep-alive connection (standard
# library only), sending each chunk from the file as it reads it.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
CHUNK_MIB=${CHUNK_MIB:-6}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/pgstorage}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d /tmp/pgstorage-bench.XXXXXX)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --data-dir "$work/data" --port "$port" --gc-interval-seconds 0 >"$work/out.log" 2>"$work/err.log" &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

url="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  curl -fsS "$url/status" >/dev/null 2>&1 && break
  sleep 0.1
done
key=$(awk '/service_role key/ {print $3}' "$work/out.log")
curl -fsS -X POST "$url/bucket" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{"name":"bench"}' >/dev/null
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$work/big.bin"
head -c "$((10 * 1024 * 1024))" /dev/urandom >"$work/small.bin"
rss() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$pid/status"; }
# CPU seconds (user + system) the server has used so far: the repeatable figure on a busy
# machine, where wall-clock throughput is not.
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat"; }

c0=$(server_cpu)
rest=$(curl -fsS -X POST -T "$work/big.bin" -H "Authorization: Bearer $key" \
        -H 'content-type: application/octet-stream' -o /dev/null -w '%{time_total}' "$url/object/bench/rest.bin")

tus() { # tus <file> <object name>: prints "<seconds of the whole upload> <seconds of the final PATCH>"
  python3 - "$port" "$key" "$1" "$2" "$((CHUNK_MIB * 1024 * 1024))" <<'PY'
import base64, http.client, os, sys, time
port, key, path, name, chunk = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
b64 = lambda s: base64.b64encode(s.encode()).decode()
conn = http.client.HTTPConnection("127.0.0.1", int(port))
common = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
start = time.monotonic()
conn.request("POST", "/upload/resumable", headers={**common, "Upload-Defer-Length": "1",
             "Upload-Metadata": f"bucketName {b64('bench')},objectName {b64(name)}"})
r = conn.getresponse(); r.read()
assert r.status == 201, r.status
location = r.getheader("Location").split(f":{port}", 1)[1]
size, offset = os.path.getsize(path), 0
with open(path, "rb") as f:
    while offset < size:
        data = f.read(chunk)
        conn.request("PATCH", location, body=data, headers={**common, "Upload-Offset": str(offset),
                     "Content-Type": "application/offset+octet-stream"})
        r = conn.getresponse(); r.read()
        assert r.status == 204, (r.status, r.read())
        offset += len(data)
finish = time.monotonic()
conn.request("PATCH", location, body=b"", headers={**common, "Upload-Offset": str(offset),
             "Upload-Length": str(size), "Content-Type": "application/offset+octet-stream"})
r = conn.getresponse(); r.read()
assert r.status == 204, r.status
end = time.monotonic()
print(f"{end - start:.2f} {(end - finish) * 1000:.1f}")
PY
}
c1=$(server_cpu)
read -r tus_s big_finish_ms <<<"$(tus "$work/big.bin" tus.bin)"
c2=$(server_cpu)
peak=$(rss VmHWM)
read -r _ small_finish_ms <<<"$(tus "$work/small.bin" small.bin)"

want=$(sha256sum "$work/big.bin" | cut -d' ' -f1)
got=$(curl -fsS -H "Authorization: Bearer $key" "$url/object/authenticated/bench/tus.bin" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "sha256 mismatch: read back $got, sent $want" >&2; exit 1; }

mbps() { python3 -c "print(f'{$SIZE_MIB * 1048576 / $1 / 1e6:.0f}')"; }
echo "file:                 $SIZE_MIB MiB, TUS in $CHUNK_MIB MiB PATCHes (sha256 of the read-back verified)"
echo "REST, one request:    ${rest}s, $(mbps "$rest") MB/s"
echo "TUS:                  ${tus_s}s, $(mbps "$tus_s") MB/s ($(python3 -c "print(f'{$rest / $tus_s * 100:.0f}')")% of REST's throughput)"
echo "finishing (final PATCH, no bytes): ${small_finish_ms} ms for 10 MiB, ${big_finish_ms} ms for $SIZE_MIB MiB"
echo "server CPU seconds:   REST $(python3 -c "print(f'{$c1 - $c0:.2f}')"), TUS $(python3 -c "print(f'{$c2 - $c1:.2f}')")"
echo "server peak RSS:      $((peak / 1024)) MiB"
