# The S3 and TUS fronts for bench/ceilings (sourced by it; uses its $work, $sub, URL, USER,
# SERVICE, run_wrk and $results). Small requests: S3 GetObject and PutObject through presigned
# URLs signed with a database S3 key bound to the benchmark user (`authenticated`, its `sub`),
# and TUS creation-with-upload POSTs; large: one TUS upload in 6 MiB PATCHes and `aws s3 cp`.
S3_PUT_RATE=${S3_PUT_RATE:-8000}
S3_LARGE=${S3_LARGE:-1}
export TUS_CHUNK_MIB=${TUS_CHUNK_MIB:-6} # the report names it
S3_VENV=${S3_VENV:-tests/clients/s3/.venv}

# Creates the server's S3 key and its wrk scripts in $work/tag. The key goes into the running
# server's database (the data directory is locked by the server, so through its socket; the
# secret is sealed under a key derived from the JWT secret, which must be the server's).
fronts_setup() { # tag bin
  local tag=$1 bin=$2 dir="$work/$1" u=${URL[$1]} keys
  keys=$("$bin" s3-keys create --database-url "postgresql:///pgstorage?host=$dir/data/run&user=postgres" \
           --jwt-secret "$(cat "$dir/data/jwt-secret")" --role authenticated --sub "$sub" \
           --description bench 2>"$dir/s3-keys.log") || { cat "$dir/s3-keys.log" >&2; exit 1; }
  awk '/^access key id:/ {print $4} /^secret access key:/ {print $4}' <<<"$keys" >"$dir/s3key"
  [ "$(wc -l <"$dir/s3key")" = 2 ] || { echo "s3-keys create printed no key pair" >&2; exit 1; }
  presign "$tag" GET "/s3/bench/$sub/{n}.bin" 1 "$OWN" >"$dir/s3get.txt"
  # The same GETs with the user's JWT as the session token (the anon key as the secret): no
  # key to look up in the database, so the difference is what a database key costs.
  python3 bench/lib/presign.py GET "${u#http://}" bench "$(awk '/^anon key:/ {print $3}' "$dir/out.log")" \
    "/s3/bench/$sub/{n}.bin" 1 "$OWN" "${USER[$tag]}" >"$dir/s3getjwt.txt"
  local kind
  for kind in s3get s3getjwt; do
    curl -fsS -o /dev/null "$u$(head -1 "$dir/$kind.txt")" || { echo "presigned S3 GET ($kind) refused" >&2; exit 1; }
    cat >"$dir/$kind.lua" <<LUA
local urls = {}
for line in io.lines("$dir/$kind.txt") do urls[#urls + 1] = line end
request = function()
  return wrk.format("GET", urls[math.random(#urls)])
end
LUA
  done
  # One presigned URL per request, each thread its own file (written per round by
  # fronts_small); a thread that runs out stops, and run_wrk counts that as an error.
  cat >"$dir/s3put.lua" <<LUA
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local urls, i = {}, 0
init = function()
  for line in io.lines("$dir/s3put-" .. tid .. ".txt") do urls[#urls + 1] = line end
end
wrk.method = "PUT"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
request = function()
  i = i + 1
  if i > #urls then
    io.stderr:write("s3put: thread " .. tid .. " ran out of presigned URLs (raise S3_PUT_RATE)\n")
    wrk.thread:stop()
    i = #urls
  end
  return wrk.format(nil, urls[i])
end
LUA
  # TUS creation-with-upload: one POST carries the whole 1 KiB (Upload-Length = the body), so
  # the upload completes in that request; the object name goes base64-encoded in the metadata.
  cat >"$dir/tus.lua" <<LUA
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for k = 1, #s, 3 do
    local a, b, c = s:byte(k, k + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 4 - (b and 0 or 1) - (c and 0 or 1)
    for j = 1, 4 do
      local v = math.floor(n / 2 ^ (6 * (4 - j))) % 64
      out[#out + 1] = j <= chars and alphabet:sub(v + 1, v + 1) or "="
    end
  end
  return table.concat(out)
end
local counter = 0
local bucket = b64("bench")
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Authorization"] = "Bearer ${USER[$tag]}"
wrk.headers["Tus-Resumable"] = "1.0.0"
wrk.headers["Upload-Length"] = "1024"
wrk.headers["Content-Type"] = "application/offset+octet-stream"
request = function()
  counter = counter + 1
  local name = "$sub/tus-" .. os.getenv("RUN_TAG") .. "-" .. tid .. "-" .. counter .. ".bin"
  wrk.headers["Upload-Metadata"] = "bucketName " .. bucket .. ",objectName " .. b64(name)
  return wrk.format(nil, "/upload/resumable")
end
LUA
}

presign() { # tag method template first last: path?query lines, signed with the tag's key
  local dir="$work/$1" u=${URL[$1]}
  python3 bench/lib/presign.py "$2" "${u#http://}" "$(sed -n 1p "$dir/s3key")" "$(sed -n 2p "$dir/s3key")" "$3" "$4" "$5"
}

# S3 GetObject (database key, then session token), S3 PutObject to new keys and TUS uploads to
# new keys, 16 connections.
fronts_small() { # tag round prefix
  local tag=$1 round=$2 prefix=$3 dir="$work/$1" u=${URL[$1]}
  run_wrk "${prefix}s3get16" "$CONNS" "$u" "$dir/s3get.lua"
  run_wrk "${prefix}s3getjwt16" "$CONNS" "$u" "$dir/s3getjwt.lua"
  presign "$tag" PUT "/s3/bench/$sub/s3-r$round-{n}.bin" 1 "$((S3_PUT_RATE * SECONDS_EACH))" >"$dir/s3put.txt"
  awk -v d="$dir" '{print > (d "/s3put-" (NR % 2 + 1) ".txt")}' "$dir/s3put.txt"
  run_wrk "${prefix}s3put16" "$CONNS" "$u" "$dir/s3put.lua"
  rm -f "$dir"/s3put*.txt
  RUN_TAG="r$round" run_wrk "${prefix}tus16" "$CONNS" "$u" "$dir/tus.lua"
}

# Appends "name MB/s" and the server's CPU seconds for one upload ("cpu_name seconds"). A
# command that prints a number (tus_upload.py: its retried PATCHes) has it counted as errors.
timed_upload() { # name command...
  local name=$1 t0 t1 c0 c1 out errors
  shift
  c0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t0=$(date +%s.%N)
  out=$("$@")
  t1=$(date +%s.%N); c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  errors=$(tail -1 <<<"$out")
  [[ "$errors" =~ ^[0-9]+$ ]] || errors=0
  python3 -c 'import os,sys; t0,t1,c0,c1,size=map(float,sys.argv[2:7]); hz=os.sysconf("SC_CLK_TCK")
print(sys.argv[1], size/(t1-t0)/1e6, "nan nan", sys.argv[7]); print("cpu_" + sys.argv[1], (c1-c0)/hz, "nan nan 0")' \
    "$name" "$t0" "$t1" "$c0" "$c1" "$((SIZE_MIB * 1024 * 1024))" "$errors" >>"$results"
}

# The large file through TUS (6 MiB PATCHes) and, unless S3_LARGE=0, `aws s3 cp` (multipart,
# 8 MiB parts, payload signed: the CLI hashes every byte on the same 2 cores).
fronts_large() { # round
  local round=$1 bytes=$((SIZE_MIB * 1024 * 1024)) name size
  timed_upload large_tus python3 bench/lib/tus_upload.py "$url" "$user" bench "$sub/tus-big-$round.bin" \
    "$work/www/big.bin" "$((TUS_CHUNK_MIB * 1024 * 1024))"
  if [ "$(awk '$1 == "large_tus" {e = $5} END {print e + 0}' "$results")" -gt 0 ]; then
    echo "TUS PATCHes were retried; the server's last warnings:" >&2
    grep -E 'WARN|ERROR' "$work/new/err.log" | tail -5 >&2 || true
  fi
  if [ "$S3_LARGE" = 1 ]; then
    AWS_ACCESS_KEY_ID=$(sed -n 1p "$work/new/s3key") AWS_SECRET_ACCESS_KEY=$(sed -n 2p "$work/new/s3key") \
      AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
      timed_upload large_s3 "$S3_VENV/bin/aws" --endpoint-url "$url/s3" s3 cp --only-show-errors \
      "$work/www/big.bin" "s3://bench/$sub/s3-big-$round.bin"
  fi
  # Each arrived whole (its size; the clients' own tests check the bytes), then goes.
  for name in "tus-big-$round.bin" "s3-big-$round.bin"; do
    [ "$name" != "s3-big-$round.bin" ] || [ "$S3_LARGE" = 1 ] || continue
    size=$(curl -fsS -H "Authorization: Bearer $user" "$url/object/info/bench/$sub/$name" |
             python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
    [ "$size" = "$bytes" ] || { echo "$name: $size bytes, expected $bytes" >&2; exit 1; }
    curl -fsS -X DELETE -H "Authorization: Bearer ${SERVICE[new]}" "$url/object/bench/$sub/$name" >/dev/null
  done
}
