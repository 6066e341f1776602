#!/usr/bin/env bash
# The S3 API against the REST API on the same server, in one run (issue #10's numbers):
#   1. GetObject (presigned GET URLs) vs REST GET of one 1 KiB object: requests/s, wrk, 16
#      connections, alternating, median of 3 rounds;
#   2. PutObject (presigned PUT URLs) vs REST upsert (POST, x-upsert) of 1 KiB on one key, same;
#   3. a 1 GiB multipart upload with `aws s3 cp` (8 MiB parts; again with payload signing off)
#      vs `curl -T` to REST: throughput, the server's peak RSS during each (VmHWM, reset in
#      between through clear_refs) and the CPU seconds of client and server;
#   4. CompleteMultipartUpload of 1,000 parts of 1 KiB, and of 10 parts of 100 MiB vs 10 of 5 MiB;
#   5. ListObjectsV2 pages (100 keys) in a bucket of 10k rows vs one of LIST_BIG rows (seeded
#      with SQL, rows only), alternating; LIST_BIG=0 skips it.
#
#   cargo build --release && scripts/install-client-deps && bench/s3.sh
#   SIZE_MIB=256 SECONDS_EACH=2 LIST_BIG=0 bench/s3.sh         # quicker
#   ONLY_LARGE=1 bench/s3.sh                                    # section 3 alone
#
# Needs wrk (apt-get install wrk), curl, psql and the PostgreSQL binaries, and the boto3/AWS CLI
# virtualenv tests/clients/s3/.venv. Runs the embedded default in a temporary directory,
# loopback only; every loop is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
SECONDS_EACH=${SECONDS_EACH:-4}
ROUNDS=${ROUNDS:-3}
LIST_BIG=${LIST_BIG:-1000000}
ONLY_LARGE=${ONLY_LARGE:-0}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/pgstorage}
VENV=tests/clients/s3/.venv
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$VENV/bin/aws" ] || { echo "run scripts/install-client-deps first" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
py=$VENV/bin/python
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret-benchsecret AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

work=$(mktemp -d /tmp/pgstorage-bench-s3.XXXXXX)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --data-dir "$work/data" --port "$port" --gc-interval-seconds 0 \
  --s3-api-access-key-id "$AWS_ACCESS_KEY_ID" --s3-api-secret-access-key "$AWS_SECRET_ACCESS_KEY" \
  --multipart-min-part-size 1 >"$work/out.log" 2>"$work/err.log" &
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
head -c 1024 /dev/urandom >"$work/small.bin"
curl -fsS -X POST --data-binary @"$work/small.bin" "${auth[@]}" -H 'content-type: application/octet-stream' \
  "$url/object/bench/small.bin" >/dev/null
mapfile -t presigned < <("$py" bench/s3_client.py presign "$url" bench small.bin)
mapfile -t presigned_put < <("$py" bench/s3_client.py presign "$url" bench put.bin)
curl -fsS -o /dev/null "${presigned[0]}" || { echo "presigned GET refused" >&2; exit 1; }

cat >"$work/put.lua" <<'EOF'
wrk.method = "PUT"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["x-upsert"] = "true"
EOF

# One wrk run: prints its requests/s; fails on any error or non-2xx response.
rate() {
  local out
  out=$(wrk -t2 -c16 -d"${SECONDS_EACH}s" "$@")
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "wrk $*: errors" >&2
    echo "$out" >&2
    exit 1
  fi
  awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out"
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

if [ "$ONLY_LARGE" = 0 ]; then
declare -a s3get restget s3put restput
# Warm-up (discarded): the first round of each kind ran measurably slower in trial runs.
saved=$SECONDS_EACH SECONDS_EACH=1
rate "${presigned[0]}" >/dev/null
rate "${auth[@]}" "$url/object/authenticated/bench/small.bin" >/dev/null
rate -s "$work/put.lua" "${presigned_put[1]}" >/dev/null
rate -s "$work/post.lua" "${auth[@]}" "$url/object/bench/put-rest.bin" >/dev/null
SECONDS_EACH=$saved
for r in $(seq 1 "$ROUNDS"); do
  s3get+=("$(rate "${presigned[0]}")")
  restget+=("$(rate "${auth[@]}" "$url/object/authenticated/bench/small.bin")")
  s3put+=("$(rate -s "$work/put.lua" "${presigned_put[1]}")")
  restput+=("$(rate -s "$work/post.lua" "${auth[@]}" "$url/object/bench/put-rest.bin")")
  echo "round $r: GET s3 ${s3get[-1]} rest ${restget[-1]}; PUT s3 ${s3put[-1]} rest ${restput[-1]} req/s" >&2
done
g_s3=$(median "${s3get[@]}"); g_rest=$(median "${restget[@]}")
p_s3=$(median "${s3put[@]}"); p_rest=$(median "${restput[@]}")
echo "GET 1 KiB:   S3 $g_s3 req/s, REST $g_rest req/s, ratio $(ratio "$g_s3" "$g_rest") (target >= 0.85)"
echo "PUT 1 KiB:   S3 $p_s3 req/s, REST $p_rest req/s, ratio $(ratio "$p_s3" "$p_rest") (target >= 0.85)"
fi

# --- 3. one large file: aws s3 cp (multipart) vs curl -T (REST) ------------------------------
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$work/big.bin"
want=$(sha256sum "$work/big.bin" | cut -d' ' -f1)
hwm() { awk '$1 == "VmHWM:" {print int($2 / 1024)}' "/proc/$pid/status"; }
reset_hwm() { echo 5 >"/proc/$pid/clear_refs"; }
now() { date +%s.%N; }
# CPU seconds (user + system) the server has used so far, and the client's, per upload: both
# share the machine's cores, so a client that hashes every byte slows the server down.
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat"; }
TIMEFORMAT='%U %S'
reset_hwm
c0=$(server_cpu); t0=$(now)
cl_s3=$( { time "$VENV/bin/aws" --endpoint-url "$url/s3" s3 cp --only-show-errors "$work/big.bin" s3://bench/big-s3.bin; } 2>&1 | tail -1)
t1=$(now); c1=$(server_cpu)
rss_s3=$(hwm)
reset_hwm
c2=$(server_cpu); t2=$(now)
cl_rest=$( { time curl -fsS -X POST -T "$work/big.bin" "${auth[@]}" -H 'content-type: application/octet-stream' \
  -o /dev/null "$url/object/bench/big-rest.bin"; } 2>&1 | tail -1)
t3=$(now); c3=$(server_cpu)
rss_rest=$(hwm)
# The same AWS CLI upload with payload signing off (UNSIGNED-PAYLOAD, as clients send over
# HTTPS): neither the CLI nor the server hashes the body for the signature.
printf '[default]\ns3 =\n  payload_signing_enabled = false\n' >"$work/aws-unsigned.config"
reset_hwm
c4=$(server_cpu); t4=$(now)
cl_uns=$( { time AWS_CONFIG_FILE="$work/aws-unsigned.config" "$VENV/bin/aws" --endpoint-url "$url/s3" s3 cp \
  --only-show-errors "$work/big.bin" s3://bench/big-s3-unsigned.bin; } 2>&1 | tail -1)
t5=$(now); c5=$(server_cpu)
rss_uns=$(hwm)
cpu() { python3 -c "print(f'{$1 + $2:.2f}')"; }
echo "CPU seconds: aws s3 cp $(cpu $cl_s3), server $(cpu "$c1" "-$c0"); curl $(cpu $cl_rest), server $(cpu "$c3" "-$c2"); aws unsigned $(cpu $cl_uns), server $(cpu "$c5" "-$c4")"
got=$(curl -fsS "${auth[@]}" "$url/object/info/bench/big-rest.bin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sha256"])')
[ "$got" = "$want" ] || { echo "big-rest.bin: sha256 mismatch" >&2; exit 1; }
for name in big-s3.bin big-s3-unsigned.bin; do
  s3_got=$(curl -fsS "${auth[@]}" "$url/object/authenticated/bench/$name" | sha256sum | cut -d' ' -f1)
  [ "$s3_got" = "$want" ] || { echo "$name reads back different bytes" >&2; exit 1; }
done
mbps() { python3 -c "print(f'{$SIZE_MIB*1048576/($2-$1)/1e6:.0f}')"; }
up_s3=$(mbps "$t0" "$t1"); up_rest=$(mbps "$t2" "$t3"); up_uns=$(mbps "$t4" "$t5")
echo "$SIZE_MIB MiB:    aws s3 cp $up_s3 MB/s (peak RSS $rss_s3 MiB), curl REST $up_rest MB/s (peak RSS $rss_rest MiB), ratio $(ratio "$up_s3" "$up_rest") (targets >= 0.80, < 64 MiB)"
echo "$SIZE_MIB MiB:    aws s3 cp, unsigned payload $up_uns MB/s (peak RSS $rss_uns MiB), ratio $(ratio "$up_uns" "$up_rest")"

[ "$ONLY_LARGE" = 0 ] || exit 0

# --- 4. CompleteMultipartUpload -----------------------------------------------------------
c1000=$("$py" bench/s3_client.py complete "$url" bench 1000 1024 "$ROUNDS")
echo "complete 1,000 parts of 1 KiB: $c1000 ms (target < 200)"
c5=$("$py" bench/s3_client.py complete "$url" bench 10 $((5 << 20)) "$ROUNDS")
c100=$("$py" bench/s3_client.py complete "$url" bench 10 $((100 << 20)) 1)
echo "complete 10 parts: 5 MiB $c5 ms, 100 MiB $c100 ms, ratio $(ratio "$c100" "$c5") (target <= 1.5)"

# --- 5. ListObjectsV2 at 10k vs LIST_BIG rows ---------------------------------------------
if [ "$LIST_BIG" -gt 0 ]; then
  psql=(psql -q -v ON_ERROR_STOP=1 "host=$work/data/run user=postgres dbname=pgstorage")
  for b in 10000 "$LIST_BIG"; do
    "${psql[@]}" -c "insert into storage.buckets (id, name) values ('list$b', 'list$b');
      insert into storage.objects (bucket_id, name, metadata)
        select 'list$b', format('data/f%s.bin', lpad(i::text, 7, '0')), '{\"size\": 1024, \"mimetype\": \"application/octet-stream\"}'
        from generate_series(1, $b) i;
      analyze storage.objects;"
  done
  small=() big=()
  for r in $(seq 1 "$ROUNDS"); do
    read -r s50 _ < <("$py" bench/s3_client.py list "$url" list10000 data/ 200)
    read -r b50 _ < <("$py" bench/s3_client.py list "$url" "list$LIST_BIG" data/ 200)
    small+=("$s50") big+=("$b50")
  done
  l_s=$(median "${small[@]}"); l_b=$(median "${big[@]}")
  echo "ListObjectsV2 page of 100: 10k rows $l_s ms, $LIST_BIG rows $l_b ms (p50), ratio $(ratio "$l_b" "$l_s") (target <= 1.5)"
fi
