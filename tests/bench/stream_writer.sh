#!/usr/bin/env bash
# stream_writer.sh BUILD_DIR: the SDK's streaming .out writer (session.out.pipe: S2 append
# sessions over HTTP/2) through Tether: chunks/s with 1 and 8 writers and chunk -> subscriber
# latency, next to the unary append from the same Node client in the same run
# (tests/compat/agent/writer-bench.mjs, beside the SDK it imports from tests/compat/node_modules). Starts its own stores
# and tree (2 gateway processes).
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: stream_writer.sh BUILD_DIR}" && pwd -P)
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
if [[ ! -d tests/compat/node_modules/@trigger.dev/sdk ]]; then
  (cd tests/compat && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
bench_tree_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project writer --type dev)
echo "== the SDK's streaming writer (s2s over HTTP/2): chunks/s and chunk -> subscriber latency, next to unary appends from the same client"
out=$(cd tests/compat && TETHER_URL=$URL TETHER_SECRET_KEY=$KEY BENCH_CHUNKS=${TETHER_BENCH_CHUNKS:-20000} \
  node agent/writer-bench.mjs)
echo "$out"
v() { jq -r --arg c "$1" "select(.case == \$c) | .$2" <<<"$out"; }
w1=$(v s2s_writer_1 chunks_per_s)
w8=$(v s2s_writer_8 chunks_per_s)
u=$(v unary_append_64 chunks_per_s)
echo "summary: streaming writer chunks/s: 1 writer $w1, 8 writers $w8; unary appends (64 in flight, same client) $u; writer/unary $(
  awk -v a="$w1" -v b="$u" 'BEGIN{printf "%.2f", a/b}') (1 writer), $(awk -v a="$w8" -v b="$u" 'BEGIN{printf "%.2f", a/b}') (8 writers)"
echo "summary: streaming writer chunk -> subscriber at 100 chunks/s: p50 $(v s2s_chunk_to_subscriber_100hz p50_ms) ms, p99 $(
  v s2s_chunk_to_subscriber_100hz p99_ms) ms, p99.9 $(v s2s_chunk_to_subscriber_100hz p999_ms) ms, $(
  v s2s_chunk_to_subscriber_100hz delivered)/1000 delivered (the SDK lingers up to X-S2-Flush-Interval-Ms = 100 ms to batch)"
bench_tree_stop
