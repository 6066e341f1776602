#!/usr/bin/env bash
# A large upload and download on two builds, alternating, next to the ceilings measured in the
# same rounds: the disk (dd with fdatasync), one core's MD5 (openssl speed) and nginx (Debian's
# package) serving a file of the same size. Each server run is bench/large-object.sh (a fresh
# embedded server, one object).
#
#   BIN=target/release/pgstorage BASE_BIN=/path/to/baseline bench/large-alternate.sh
#   ROUNDS=5 SIZE_MIB=1024 ...                                       # the defaults
#
# Prints one line per run and the median of each figure; the server's CPU seconds per upload
# (user + system) are the part that does not depend on the load.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SIZE_MIB=${SIZE_MIB:-1024}
BIN=${BIN:-target/release/pgstorage}
BASE_BIN=${BASE_BIN:?the baseline build to compare with}
export SIZE_MIB

out=$(mktemp /tmp/pgstorage-large-alternate.XXXXXX)
work=$(mktemp -d /tmp/pgstorage-large-alternate.XXXXXX)
chmod 755 "$work"
nginx_pid=""
cleanup() {
  [ -n "$nginx_pid" ] && { kill -TERM "$nginx_pid" 2>/dev/null; wait "$nginx_pid" 2>/dev/null || true; }
  rm -rf "$out" "$work"
}
trap cleanup EXIT
mkdir -p "$work/www" "$work/nginx"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$work/www/big.bin"
nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>"$work/nginx/start.log" &
nginx_pid=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null -r 0-0 "http://127.0.0.1:$nginx_port/big.bin" 2>/dev/null && break; sleep 0.1; done
run() { # tag binary
  local report
  report=$(BIN="$2" bench/large-object.sh)
  # "upload:           2.1s, 511 MB/s, server CPU 3.4 s" and "download:  0.4s, 2700 MB/s"
  awk -v t="$1" '/^upload:/ {print t"_upload", $3, $7} /^download:/ {print t"_download", $3, "nan"}' <<<"$report" | tee -a "$out"
}
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if [ $((round % 2)) = 1 ]; then run base "$BASE_BIN"; run new "$BIN"; else run new "$BIN"; run base "$BASE_BIN"; fi
  ngx=$(curl -fsS -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$nginx_port/big.bin")
  echo "nginx_download $(python3 -c "print(round($ngx/1e6))") nan" | tee -a "$out"
  dd_out=$(dd if=/dev/zero of="$work/dd.bin" bs=1M count="$SIZE_MIB" conv=fdatasync 2>&1)
  rm -f "$work/dd.bin"
  python3 -c 'import sys,re; m=re.search(r"^(\d+) bytes.*copied, ([\d.]+) s", sys.argv[1], re.M); print("dd_fdatasync", round(int(m.group(1))/float(m.group(2))/1e6), "nan")' "$dd_out" | tee -a "$out"
  md5=$(openssl speed -bytes 1048576 -seconds 2 md5 2>/dev/null | awk '$1 == "md5" {v=$NF} END {sub("k", "", v); print int(v * 1000 / 1e6)}')
  echo "openssl_md5 $md5 nan" | tee -a "$out"
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rate, cpu = line.split()
    rows.setdefault(name, []).append((float(rate), float(cpu)))
med = {k: statistics.median(r for r, _ in v) for k, v in rows.items()}
for k, v in rows.items():
    cpu = [c for _, c in v if c == c]
    extra = f", server CPU median {statistics.median(cpu):.1f} s" if cpu else ""
    print(f"{k:16} median {med[k]:7.0f} MB/s  runs {[round(r) for r, _ in v]}{extra}")
ceiling = min(med["dd_fdatasync"], med["openssl_md5"])
for t in ("base", "new"):
    print(f"{t} upload / min(dd, md5) = {med[t + '_upload'] / ceiling:.0%}, "
          f"download / nginx = {med[t + '_download'] / med['nginx_download']:.0%}")
PY
