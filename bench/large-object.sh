#!/usr/bin/env bash
# One large object through the server: upload and download throughput, and the server's peak
# resident memory (VmHWM), which must stay far below the object's size because bytes stream.
#
#   cargo build --release && bench/large-object.sh            # 1 GiB
#   SIZE_MIB=256 bench/large-object.sh                         # smaller
#
# Runs the embedded default in a temporary directory; needs curl and the PostgreSQL binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
BIN=${BIN:-target/release/pgstorage}
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
auth=(-H "Authorization: Bearer $key")

curl -fsS -X POST "$url/bucket" "${auth[@]}" -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$work/big.bin"
want=$(sha256sum "$work/big.bin" | cut -d' ' -f1)
rss() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$pid/status"; }

idle=$(rss VmRSS)
# CPU seconds (user + system) the server has used: repeatable where wall-clock time is not.
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$pid/stat"; }
cpu0=$(server_cpu)
up=$(curl -fsS -X POST -T "$work/big.bin" "${auth[@]}" -H 'content-type: application/octet-stream' \
        -o /dev/null -w '%{time_total} %{speed_upload}' "$url/object/bench/big.bin")
peak_up=$(rss VmHWM)
cpu1=$(server_cpu)
down=$(curl -fsS "${auth[@]}" -o /dev/null -w '%{time_total} %{speed_download} %{size_download}' \
        "$url/object/authenticated/bench/big.bin")
peak_all=$(rss VmHWM)
got=$(curl -fsS "${auth[@]}" "$url/object/info/bench/big.bin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sha256"])')
[ "$got" = "$want" ] || { echo "sha256 mismatch: stored $got, sent $want" >&2; exit 1; }

read -r up_s up_bps <<<"$up"
read -r down_s down_bps down_bytes <<<"$down"
[ "$down_bytes" = "$((SIZE_MIB * 1024 * 1024))" ] || { echo "short download: $down_bytes bytes" >&2; exit 1; }
mb() { python3 -c "print(f'{$1/1e6:.0f}')"; }
echo "object:           $SIZE_MIB MiB (sha256 verified by the server's own metadata)"
echo "upload:           ${up_s}s, $(mb "$up_bps") MB/s, server CPU $(python3 -c "print(f'{$cpu1 - $cpu0:.1f}')") s"
echo "download:         ${down_s}s, $(mb "$down_bps") MB/s"
echo "server RSS idle:  $((idle / 1024)) MiB"
echo "server peak RSS:  $((peak_up / 1024)) MiB after upload, $((peak_all / 1024)) MiB after download"
