#!/usr/bin/env bash
# stream_append.sh BUILD_DIR: stream appends per second through Tether (wrk, 64 keep-alive
# connections, 1 KiB bodies with the secret key) on one stream shared by every connection and on
# 64 streams (.out), and on one stream's .in; next to nchan publishing the same bodies with the
# same wrk script to one channel and to 64 (nginx-light + libnginx-mod-nchan, messages stored in
# the same Redis, tests/bench/lib.sh), and to raw XADD of a 1 KiB field from redis-benchmark
# (64 clients) against that Redis, all in the same run. Starts its own stores and tree (2 gateway
# processes) and nchan (2 workers).
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: stream_append.sh BUILD_DIR}" && pwd -P)
DUR=${TETHER_BENCH_SECONDS:-5}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
bench_tree_start
bench_nchan_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project bench --type dev)
P=bench-$$
# an append needs its session's row: one shared stream and 64 of their own
bench_sessions "$URL" "$KEY" "$P" shared $(seq 0 63)

# One script for both servers: the path is HEAD <stream> TAIL. wrk cannot tie a request to a
# connection; with 2 threads of 32 connections, each thread cycling over 32 streams of its own
# keeps the 64 requests in flight on 64 different streams.
cat >"$T/append.lua" <<'LUA'
local body = string.rep("x", 1024)
local threads = 0
function setup(thread)
  thread:set("first", threads * 32)
  threads = threads + 1
end
local per_stream, head, tail = false, "", ""
function init(args)
  per_stream = args[1] == "per_stream"
  head = args[2]
  tail = args[3] or ""
end
local n = 0
function request()
  local s = "shared"
  if per_stream then
    s = tostring(first + n % 32)
    n = n + 1
  end
  return wrk.format("POST", head .. s .. tail, nil, body)
end
LUA
run() { # run CASE BASE_URL one|per_stream HEAD TAIL [wrk args...]: wrk hands what follows -- to init()
  local name=$1 base=$2 spread=$3 head=$4 tail=$5 out rps non2xx
  shift 5
  out=$(wrk -t2 -c64 -d"${DUR}s" -s "$T/append.lua" "$@" -H 'Content-Type: text/plain' "$base" \
    -- "$spread" "$head" "$tail")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '{"case":"%s","appends_per_s":%s,"non_2xx":%s,"connections":64,"body_bytes":1024}\n' \
    "$name" "$rps" "${non2xx:-0}"
  printf -v "R_$name" '%s' "$rps"
}
echo "== stream appends: Tether (wrk -t2 -c64 -d${DUR}s, 1 KiB) vs nchan (the same wrk script, Redis storage) vs raw XADD (redis-benchmark -c64, 1 KiB field)"
TS=/realtime/v1/sessions/$P-
AUTH=(-H "Authorization: Bearer $KEY")
run tether_append_one_stream "$URL" one "$TS" /out/append "${AUTH[@]}"
run tether_append_64_streams "$URL" per_stream "$TS" /out/append "${AUTH[@]}"
run tether_append_in_one_stream "$URL" one "$TS" /in/append "${AUTH[@]}"
run nchan_publish_one_channel "$NCHAN_URL" one "/pub/$P-" ""
run nchan_publish_64_channels "$NCHAN_URL" per_stream "/pub/$P-" ""

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
line() { # line WHAT TETHER NCHAN XADD
  echo "summary: $1: Tether $2, nchan $3, raw XADD $4, Tether/XADD $(ratio "$2" "$4"), Tether/nchan $(ratio "$2" "$3")"
}
line "appends/s one stream (.out)" "$R_tether_append_one_stream" "$R_nchan_publish_one_channel" "$R_redis_xadd_one_stream"
line "appends/s 64 streams (.out)" "$R_tether_append_64_streams" "$R_nchan_publish_64_channels" "$R_redis_xadd_64_streams"
line "appends/s one stream (.in)" "$R_tether_append_in_one_stream" "$R_nchan_publish_one_channel" "$R_redis_xadd_one_stream"
