#!/usr/bin/env bash
# sse_memory.sh BUILD_DIR: what an idle SSE subscription costs the gateway in memory. One
# gateway process (TETHER_GATEWAY_PROCS=1); its VmRSS before and after 10,000 idle subscriptions
# spread over 100 streams (sse_bench hold), per connection; /healthz must count the 10,000 feeds.
# Kernel socket buffers are not in a process's RSS and are not counted. Starts its own stores
# and tree. TETHER_BENCH_SSE_CONNS changes the count (a multiple of 100).
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: sse_memory.sh BUILD_DIR}" && pwd -P)
N=${TETHER_BENCH_SSE_CONNS:-10000}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
export TETHER_GATEWAY_PROCS=1
bench_tree_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project bench --type dev)
P=bench-$$
health() { curl -fs --max-time 5 "$URL/healthz"; }
GW=$(health | jq -r .gateway.pid)
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$GW/status"; }

# Warm-up: the first feeds set up what every later one shares (the subscription to the
# stream-broker's events, h2o's buffers); they end on their own after Timeout-Seconds: 1.
for i in $(seq 1 50); do echo "$i"; done |
  xargs -P 50 -I@@ curl -s -o /dev/null --max-time 5 -H "Authorization: Bearer $KEY" \
    -H 'Timeout-Seconds: 1' "$URL/realtime/v1/sessions/$P-warm-@@/out"
sleep 1
BEFORE=$(rss_kb)

coproc HOLD { exec "$BUILD/bench/sse_bench" hold --url "$URL" --key "$KEY" --prefix "$P" \
  --create --streams 100 --subs $((N / 100)) --timeout 120; }
exec {HOUT}<&"${HOLD[0]}" {HIN}>&"${HOLD[1]}" # bash drops its own copies when the tool exits
HPID=$HOLD_PID
read -r -t 180 CONNECTED <&"$HOUT"
sleep 1 # every feed has sent its first ping; nothing else is under way
AFTER=$(rss_kb)
FEEDS=$(health | jq -r .gateway.feeds)
(echo close >&"$HIN") 2>/dev/null || true
read -r -t 60 _ <&"$HOUT" || true
wait "$HPID" || true
exec {HOUT}<&- {HIN}>&-

echo "== SSE idle connections: gateway memory (1 gateway process, $N subscriptions over 100 streams)"
printf '{"case":"sse_idle_memory","connections":%d,"live":%s,"feeds":%s,"connect_s":%s,"rss_before_kb":%d,"rss_after_kb":%d,"bytes_per_connection":%d}\n' \
  "$N" "$(jq -r .live <<<"$CONNECTED")" "$FEEDS" "$(jq -r .seconds <<<"$CONNECTED")" \
  "$BEFORE" "$AFTER" $(((AFTER - BEFORE) * 1024 / N))
if [[ $FEEDS != "$N" ]]; then
  echo "/healthz counted $FEEDS feeds, not $N" >&2
  exit 1
fi
echo "summary: ${N} idle SSE connections cost the gateway $(((AFTER - BEFORE) / 1024)) MiB of RSS: $(((AFTER - BEFORE) * 1024 / N)) bytes each ($(jq -r .seconds <<<"$CONNECTED") s to open them all)"
