#!/usr/bin/env bash
# sse_latency.sh BUILD_DIR: append-to-subscriber latency through the gateway's SSE feeds
# (sse_bench latency): (i) 1,000 subscribers on one stream, (ii) 1,000 streams with one
# subscriber each. Appends go through HTTP at a fixed rate and carry their send time; every
# subscriber notes when each record reaches it. Starts its own stores and tree (2 gateway
# processes, the default). Appends a second: TETHER_BENCH_FANOUT_RATE (default 20) and
# TETHER_BENCH_STREAMS_RATE (default 200).
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: sse_latency.sh BUILD_DIR}" && pwd -P)
DUR=${TETHER_BENCH_SECONDS:-5}
FANOUT_RATE=${TETHER_BENCH_FANOUT_RATE:-20}
STREAMS_RATE=${TETHER_BENCH_STREAMS_RATE:-200}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
bench_tree_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project bench --type dev)
P=bench-$$

run() { # run CASE PREFIX STREAMS SUBS RATE
  local out
  out=$("$BUILD/bench/sse_bench" latency --url "$URL" --key "$KEY" --name "$1" --prefix "$2" \
    --create --streams "$3" --subs "$4" --rate "$5" --seconds "$DUR")
  echo "$out"
  printf -v "L_$1" '%s' "$(jq -r '"p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, p99.9 \(.p999_ms) ms, \(.deliveries_received)/\(.deliveries_expected) delivered"' <<<"$out")"
}
echo "== SSE append-to-subscriber latency (sse_bench latency, ${DUR}s, 2 gateway processes)"
run sse_fanout_1x1000 "$P-f" 1 1000 "$FANOUT_RATE"
run sse_streams_1000x1 "$P-s" 1000 1 "$STREAMS_RATE"
echo "summary: 1 stream x 1000 subscribers at ${FANOUT_RATE} appends/s: ${L_sse_fanout_1x1000}; 1000 streams x 1 subscriber at ${STREAMS_RATE} appends/s: ${L_sse_streams_1000x1}"
