#!/usr/bin/env bash
# waitpoints.sh BUILD_DIR: session-channel waits. N sessions (TETHER_BENCH_WAITERS, default 1000),
# each with its run waiting on its own .in (POST /api/v1/runs/:run/session-streams/wait, 16 in
# parallel: waits registered per second), then one append to each .in, paced (default 200/s),
# and for each waiter the time from just before its append was sent to the waitpoint's
# completed_at in PostgreSQL (append -> waiter completed, p50/p99/max). Starts its own stores
# and tree.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: waitpoints.sh BUILD_DIR}" && pwd -P)
N=${TETHER_BENCH_WAITERS:-1000}
RATE=${TETHER_BENCH_WAIT_RATE:-200}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
bench_tree_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench-wp --project wp --type dev)
P=wp-$$
echo "== session-channel waits: $N waiters on $N channels (registered 16 at a time), appends at ${RATE}/s"
seq 1 "$N" | xargs -P 16 -I@@ curl -fs -X POST -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d "{\"type\":\"chat\",\"externalId\":\"$P-@@\",\"taskIdentifier\":\"bench-wp\",\"triggerConfig\":{\"basePayload\":{}}}" \
  "$URL/api/v1/sessions" | jq -r '[.externalId, .runId] | @tsv' >"$T/runs.tsv"
have=$(wc -l <"$T/runs.tsv")
t0=$(date +%s%N)
xargs -P 16 -L 1 sh -c 'curl -fs -o /dev/null -X POST -H "Authorization: Bearer $0" \
  -H "Content-Type: application/json" -d "{\"session\":\"$2\",\"io\":\"in\"}" \
  "$1/api/v1/runs/$3/session-streams/wait" || echo fail' "$KEY" "$URL" <"$T/runs.tsv" >"$T/reg.out" 2>&1 || true
t1=$(date +%s%N)
failed=$(grep -c fail "$T/reg.out" || true)
reg_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
reg_rate=$(awk -v n="$((have - failed))" -v s="$reg_s" 'BEGIN{printf "%.1f", n/s}')
printf '{"case":"waits_registered","waiters":%d,"failed":%d,"seconds":%s,"waits_per_s":%s}\n' \
  "$have" "$failed" "$reg_s" "$reg_rate"

# one append per channel, paced; the send time of each, in ms
gap=$(awk -v r="$RATE" 'BEGIN{printf "%.4f", 1/r}')
: >"$T/sent.tsv"
apids=()
while IFS=$'\t' read -r ext run; do
  printf '%s\t%s\n' "$ext" "$(($(date +%s%N) / 1000000))" >>"$T/sent.tsv"
  curl -fs -o /dev/null -X POST -H "Authorization: Bearer $KEY" --data-binary "wake" \
    "$URL/realtime/v1/sessions/$ext/in/append" &
  apids+=($!)
  sleep "$gap"
done <"$T/runs.tsv"
wait "${apids[@]}" || true # only the appends: the tree is a child of this shell too
sleep 3 # the sweep's interval (2 s) bounds a lost drain
psql -tA -F $'\t' "$TETHER_PG_URL" -c "SELECT stream_key, (extract(epoch FROM completed_at) * 1000)::bigint
  FROM waitpoints WHERE stream_key LIKE '$P-%' AND status = 'COMPLETED'" >"$T/done.tsv" 2>/dev/null || true
stats=$(awk -F'\t' 'NR == FNR { sent[$1] = $2; next } ($1 in sent) { print $2 - sent[$1] }' \
  "$T/sent.tsv" "$T/done.tsv" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "0 0 0 0"; exit }
    p50 = v[int(NR * 0.50 + 0.5) > 0 ? int(NR * 0.50 + 0.5) : 1]
    p99 = v[int(NR * 0.99 + 0.5) > 0 ? int(NR * 0.99 + 0.5) : 1]
    print NR, p50, p99, v[NR] }')
read -r done_n p50 p99 max <<<"$stats"
printf '{"case":"append_to_waiter","waiters":%d,"completed":%d,"appends_per_s":%d,"p50_ms":%s,"p99_ms":%s,"max_ms":%s}\n' \
  "$have" "$done_n" "$RATE" "$p50" "$p99" "$max"
echo "summary: $have session-channel waits registered at ${reg_rate}/s ($failed failed); append -> waiter completed p50 ${p50} ms, p99 ${p99} ms, max ${max} ms ($done_n/$have completed)"
bench_tree_stop
