#!/usr/bin/env bash
# sse_latency.sh BUILD_DIR: append-to-subscriber latency through the gateway's SSE feeds
# (sse_bench latency): (i) 1,000 subscribers on one stream, (ii) 1,000 streams with one
# subscriber each; then the same two cases on nchan (sse_bench --server nchan: its publisher and
# EventSource subscriber, messages in the same Redis), and the raw store's floor, the round trip
# of one XADD (redis-benchmark -c 1). Appends go through HTTP at a fixed rate and carry their send
# time; every subscriber notes when each record reaches it. Starts its own stores and tree (2
# gateway processes, the default) and nchan (2 workers). Appends a second:
# TETHER_BENCH_FANOUT_RATE (default 20) and TETHER_BENCH_STREAMS_RATE (default 1000).
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: sse_latency.sh BUILD_DIR}" && pwd -P)
DUR=${TETHER_BENCH_SECONDS:-5}
FANOUT_RATE=${TETHER_BENCH_FANOUT_RATE:-20}
STREAMS_RATE=${TETHER_BENCH_STREAMS_RATE:-1000}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
bench_tree_start
bench_nchan_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project bench --type dev)
P=bench-$$

run() { # run CASE PREFIX STREAMS SUBS RATE sse_bench-args...
  local name=$1 prefix=$2 streams=$3 subs=$4 rate=$5 out
  shift 5
  out=$("$BUILD/bench/sse_bench" latency --name "$name" --prefix "$prefix" --streams "$streams" \
    --subs "$subs" --rate "$rate" --seconds "$DUR" --appenders 16 "$@")
  echo "$out"
  printf -v "L_$name" '%s' "$(jq -r '"p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, p99.9 \(.p999_ms) ms, \(.deliveries_received)/\(.deliveries_expected) delivered"' <<<"$out")"
}
TETHER=(--url "$URL" --key "$KEY" --create)
NCHAN=(--url "$NCHAN_URL" --server nchan)
echo "== SSE append-to-subscriber latency (sse_bench latency, ${DUR}s): Tether (2 gateway processes), nchan (2 workers), raw XADD round trip"
run sse_fanout_1x1000 "$P-f" 1 1000 "$FANOUT_RATE" "${TETHER[@]}"
run sse_streams_1000x1 "$P-s" 1000 1 "$STREAMS_RATE" "${TETHER[@]}"
run nchan_fanout_1x1000 "$P-nf" 1 1000 "$FANOUT_RATE" "${NCHAN[@]}"
run nchan_streams_1000x1 "$P-ns" 1000 1 "$STREAMS_RATE" "${NCHAN[@]}"

# The raw store's floor: one client, one XADD of a 1 KiB field at a time, on one key and on 1,000.
# redis-benchmark's percentile table steps in halvings (50, 75, ..., 99.902 %): each figure is the
# first row at or above it.
RPORT=${TETHER_REDIS_URL##*:}
RPORT=${RPORT%%/*}
FIELD=$(head -c 1024 /dev/zero | tr '\0' x)
xadd() { # xadd CASE [redis-benchmark args...]
  local name=$1
  shift
  redis-benchmark -h 127.0.0.1 -p "$RPORT" -c 1 -n 20000 "$@" 2>/dev/null | tr '\r' '\n' |
    awk -v name="$name" '
      /^Latency by percentile distribution/ {on = 1; next}
      on && !/%/ {on = 0}
      on {p = $1 + 0; v = $3 + 0
          if (p50 == "" && p >= 50) p50 = v
          if (p99 == "" && p >= 99) p99 = v
          if (p999 == "" && p >= 99.9) p999 = v
          max = v}
      END {printf "{\"case\":\"%s\",\"clients\":1,\"requests\":20000,\"field_bytes\":1024,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f}\n", name, p50, p99, p999, max}'
}
out=$(xadd redis_xadd_latency_one_stream XADD bench:xlat:one '*' b "$FIELD")
echo "$out"
L_redis_xadd_latency_one_stream=$(jq -r '"p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, p99.9 \(.p999_ms) ms"' <<<"$out")
out=$(xadd redis_xadd_latency_1000_streams -r 1000 XADD 'bench:xlat:__rand_int__' '*' b "$FIELD")
echo "$out"
L_redis_xadd_latency_1000_streams=$(jq -r '"p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, p99.9 \(.p999_ms) ms"' <<<"$out")
echo "summary: 1 stream x 1000 subscribers at ${FANOUT_RATE} appends/s: Tether ${L_sse_fanout_1x1000}; nchan ${L_nchan_fanout_1x1000}; raw XADD round trip ${L_redis_xadd_latency_one_stream}"
echo "summary: 1000 streams x 1 subscriber at ${STREAMS_RATE} appends/s: Tether ${L_sse_streams_1000x1}; nchan ${L_nchan_streams_1000x1}; raw XADD round trip ${L_redis_xadd_latency_1000_streams}"
