#!/usr/bin/env bash
# stream_append.sh BUILD_DIR: stream appends per second through Tether (wrk, 64 keep-alive
# connections, 1 KiB bodies on .out with the secret key) on one stream shared by every connection
# and on 64 streams, next to raw XADD of a 1 KiB field from redis-benchmark (64 clients) against
# the same Redis in the same run. Starts its own stores and tree (2 gateway processes).
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: stream_append.sh BUILD_DIR}" && pwd -P)
DUR=${TETHER_BENCH_SECONDS:-5}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
bench_tree_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project bench --type dev)
P=bench-$$
# an append needs its session's row: one shared stream and 64 of their own
for i in shared $(seq 0 63); do echo "$i"; done |
  xargs -P 8 -I@@ curl -fs -o /dev/null -X POST -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' \
    -d "{\"type\":\"chat\",\"externalId\":\"$P-@@\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
    "$URL/api/v1/sessions"

# wrk cannot tie a request to a connection; with 2 threads of 32 connections, each thread
# cycling over 32 streams of its own keeps the 64 requests in flight on 64 different streams.
cat >"$T/append.lua" <<LUA
local body = string.rep("x", 1024)
local prefix = "$P"
local threads = 0
function setup(thread)
  thread:set("first", threads * 32)
  threads = threads + 1
end
local per_stream = false
function init(args)
  per_stream = args[1] == "per_stream"
end
local n = 0
function request()
  local s = "shared"
  if per_stream then
    s = tostring(first + n % 32)
    n = n + 1
  end
  return wrk.format("POST", "/realtime/v1/sessions/" .. prefix .. "-" .. s .. "/out/append", nil, body)
end
LUA
run() { # run CASE [per_stream]: wrk hands what follows -- to init()
  local out rps non2xx
  out=$(wrk -t2 -c64 -d"${DUR}s" -s "$T/append.lua" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: text/plain' "$URL" -- "${2:-}")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '{"case":"%s","appends_per_s":%s,"non_2xx":%s,"connections":64,"body_bytes":1024}\n' \
    "$1" "$rps" "${non2xx:-0}"
  printf -v "R_$1" '%s' "$rps"
}
echo "== stream appends: Tether (wrk -t2 -c64 -d${DUR}s, 1 KiB, .out) vs raw XADD (redis-benchmark -c64, 1 KiB field)"
run tether_append_one_stream
run tether_append_64_streams per_stream

RPORT=${TETHER_REDIS_URL##*:}
RPORT=${RPORT%%/*}
FIELD=$(head -c 1024 /dev/zero | tr '\0' x)
xadd() { # xadd CASE [redis-benchmark args...]: requests per second of the last CSV line
  local name=$1 rps
  shift
  rps=$(redis-benchmark -h 127.0.0.1 -p "$RPORT" -c 64 -n $((DUR * 40000)) --csv "$@" |
    tail -1 | cut -d, -f2 | tr -d '"')
  printf '{"case":"%s","xadd_per_s":%s,"clients":64,"field_bytes":1024}\n' "$name" "$rps"
  printf -v "R_$name" '%s' "$rps"
}
xadd redis_xadd_one_stream XADD bench:xadd:one '*' b "$FIELD"
xadd redis_xadd_64_streams -r 64 XADD 'bench:xadd:__rand_int__' '*' b "$FIELD"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "summary: appends/s one stream ${R_tether_append_one_stream} vs XADD ${R_redis_xadd_one_stream} (ratio $(
  ratio "$R_tether_append_one_stream" "$R_redis_xadd_one_stream")); 64 streams ${R_tether_append_64_streams} vs XADD ${R_redis_xadd_64_streams} (ratio $(
  ratio "$R_tether_append_64_streams" "$R_redis_xadd_64_streams"))"
