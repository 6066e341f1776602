#!/usr/bin/env bash
# Image transformations through HTTP: the server's peak resident memory (VmHWM) with 8
# concurrent transformations of 24-megapixel sources (JPEG, then PNG), the p50 of a 2000×2000
# JPEG rendered as a 400-pixel-wide WebP (uncached), and a cached rendition against a plain
# download of the same size (p50 of each, alternating).
#
#   cargo build --release && bench/transforms.sh
#   RUNS=50 bench/transforms.sh
#
# Runs the embedded default in a temporary directory, twice over the same data: first with
# --transform-cache off (every request renders), then on. Needs curl, the PostgreSQL binaries
# and a Python with Pillow to make the sources (PYTHON=..., e.g. a virtualenv with
# `pip install pillow`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
BIN=${BIN:-target/release/pgstorage}
PYTHON=${PYTHON:-python3}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d /tmp/pgstorage-bench.XXXXXX)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
pid=
stop() { [ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; pid=; }
cleanup() { stop; rm -rf "$work"; }
trap cleanup EXIT
start() {
  "$BIN" serve --data-dir "$work/data" --port "$port" --gc-interval-seconds 0 \
    --transform-cache "$1" --transform-queue-timeout 10m >>"$work/out.log" 2>>"$work/err.log" &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fsS "$url/status" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "the server did not start" >&2; cat "$work/err.log" >&2; exit 1
}
rss() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$pid/status"; }

echo "making sources..." >&2
"$PYTHON" - "$work" <<'PY'
import random, sys
from PIL import Image, ImageFilter
work = sys.argv[1]
def photo(w, h):
    # A smooth gradient with noise: compresses like a photograph, not like a flat colour.
    small = Image.new("RGB", (w // 50, h // 50))
    small.putdata([(x * 255 // (w // 50), y * 255 // (h // 50), 128)
                   for y in range(h // 50) for x in range(w // 50)])
    base = small.resize((w, h), Image.BILINEAR)
    noise = Image.effect_noise((w, h), 24).convert("RGB")
    return Image.blend(base, noise, 0.15)
photo(6000, 4000).save(f"{work}/24mp.jpg", quality=85)
small = Image.new("RGB", (60, 40))
small.putdata([(x * 4, y * 6, 200 - x) for y in range(40) for x in range(60)])
small.resize((6000, 4000), Image.BILINEAR).save(f"{work}/24mp.png", compress_level=6)
photo(2000, 2000).save(f"{work}/2000.jpg", quality=85)
PY
ls -l "$work"/*.jpg "$work"/*.png >&2

start off
key=$(awk '/service_role key/ {print $3}' "$work/out.log" | tail -1)
auth=(-H "Authorization: Bearer $key")
curl -fsS -X POST "$url/bucket" "${auth[@]}" -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
put() { curl -fsS -X POST -T "$1" "${auth[@]}" -H "content-type: $2" -o /dev/null "$url/object/bench/$3"; }
put "$work/24mp.jpg" image/jpeg 24mp.jpg
put "$work/24mp.png" image/png 24mp.png
put "$work/2000.jpg" image/jpeg 2000.jpg
idle=$(rss VmRSS)

# 8 at once, each a different width so that nothing could be shared.
burst() {
  local name=$1 pids=()
  for i in $(seq 1 8); do
    curl -fsS "${auth[@]}" -o /dev/null "$url/render/image/authenticated/bench/$name?width=$((396 + i))&format=webp" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
t0=$(date +%s.%N); burst 24mp.jpg; t1=$(date +%s.%N)
peak_jpeg=$(rss VmHWM)
burst 24mp.png; t2=$(date +%s.%N)
peak_png=$(rss VmHWM)

times() { # url, runs -> one time_total per line
  for _ in $(seq 1 "$2"); do curl -fsS "${auth[@]}" -o /dev/null -w '%{time_total}\n' "$1"; done
}
p50() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.stdin]; print(f"{statistics.median(v)*1000:.1f}")'; }
webp="$url/render/image/authenticated/bench/2000.jpg?width=400&format=webp"
curl -fsS "${auth[@]}" -o /dev/null "$webp"
uncached=$(times "$webp" "$RUNS" | p50)
stop

start on
curl -fsS "${auth[@]}" -o "$work/rendition.webp" "$webp"
size=$(stat -c %s "$work/rendition.webp")
head -c "$size" /dev/urandom >"$work/plain.bin"
put "$work/plain.bin" application/octet-stream plain.bin
sleep 1
curl -fsS "${auth[@]}" -o /dev/null "$webp"
plain="$url/object/authenticated/bench/plain.bin"
: >"$work/cached.t"; : >"$work/plain.t"
for _ in $(seq 1 "$RUNS"); do
  times "$webp" 1 >>"$work/cached.t"
  times "$plain" 1 >>"$work/plain.t"
done
cached=$(p50 <"$work/cached.t")
download=$(p50 <"$work/plain.t")
stop

echo "machine:                 $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server RSS idle:         $((idle / 1024)) MiB"
echo "8 × 24 MP JPEG → WebP:   peak RSS $((peak_jpeg / 1024)) MiB, $(python3 -c "print(f'{$t1 - $t0:.1f}')") s for the 8"
echo "8 × 24 MP PNG → WebP:    peak RSS $((peak_png / 1024)) MiB, $(python3 -c "print(f'{$t2 - $t1:.1f}')") s for the 8"
echo "2000² JPEG → 400 WebP:   p50 ${uncached} ms uncached ($RUNS runs)"
echo "cached rendition:        p50 ${cached} ms; plain download of the same $size bytes: p50 ${download} ms"
