# metrics_test.sh - GET /metrics (docs/gateway.md#metrics): Prometheus text that promtool
# accepts, idle and under load; figures shared by the gateway processes of a node (every scrape,
# whichever process answers, shows every request) and kept across a gateway's kill -9; request
# counts by route and status, SSE connections open, bus requests by actor; and the actors' and
# the supervisor's figures (actors/lib/pmetrics.h): requests by type and outcome, store calls,
# children up and restarted, the leader, the replicator's lag, waitpoints pending.
. "$(dirname "$0")/../lib/itest.sh"

tree_start TETHER_GATEWAY_PROCS=2
S=$$-$RANDOM
KEY=$(ctl env create --org "mt-$S" --project a --type dev)
OUT=$TETHER_TEST_TMP/mt.$S
mkdir -p "$OUT"
scrape() { curl -s --max-time 5 "$TREE_URL/metrics"; }
# metric NAME_WITH_LABELS: its value in a fresh scrape (empty when absent)
metric() { scrape | awk -v k="$1" '$1 == k { print $2 }'; }
APPEND='tether_http_requests_total{route="/realtime/v1/sessions/:session/:io/append",method="POST",status="200"}'

ctype=$(curl -s -o /dev/null -w '%{content_type}' "$TREE_URL/metrics")
is "$ctype" "text/plain; version=0.0.4; charset=utf-8" "/metrics answers in the text format, without a key"
scrape >"$OUT/idle.txt"
ok "promtool check metrics accepts an idle scrape" promtool check metrics <"$OUT/idle.txt"
is "$(metric tether_gateway_processes)" 2 "both gateway processes count into the shared figures"
is "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$TREE_URL/metrics")" 405 "POST /metrics: 405"

code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"type\":\"chat\",\"externalId\":\"mt-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
  "$TREE_URL/api/v1/sessions")
is "$code" 201 "a session"
# one connection each: SO_REUSEPORT spreads them over both processes
n200=0
for i in $(seq 1 40); do
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" --data-binary "m$i" \
    "$TREE_URL/realtime/v1/sessions/mt-$S/out/append")
  [[ $c == 200 ]] && n200=$((n200 + 1))
done
is "$n200" 40 "40 appends answered 200"
same=0
for i in $(seq 1 8); do [[ $(metric "$APPEND") == 40 ]] && same=$((same + 1)); done
is "$same" 8 "8 scrapes, whichever process answers each: every one counts the 40 appends"
curl -s -o /dev/null -H "Authorization: Bearer $KEY" "$TREE_URL/api/v1/nothing-here"
curl -s -o /dev/null -H "Authorization: Bearer tr_dev_wrong" "$TREE_URL/api/v1/sessions/mt-$S"
ok "a 404 without a route is counted as (unmatched)" \
  test "$(metric 'tether_http_requests_total{route="(unmatched)",method="",status="404"}')" -ge 1
ok "a 401 is counted on its route" \
  test "$(metric 'tether_http_requests_total{route="/api/v1/sessions/:session",method="GET",status="401"}')" -ge 1
ok "the append durations are a histogram of 40" \
  test "$(metric 'tether_http_request_duration_seconds_count{route="/realtime/v1/sessions/:session/:io/append",method="POST"}')" = 40
ok "bus requests to the stream-broker are counted" \
  test "$(metric 'tether_gateway_bus_requests_total{actor="stream-broker",outcome="ok"}')" -ge 40

# SSE: three subscribers open, then gone
pids=()
for i in 1 2 3; do
  curl -s -N --max-time 30 -H "Authorization: Bearer $KEY" -H 'Timeout-Seconds: 60' \
    "$TREE_URL/realtime/v1/sessions/mt-$S/out" >"$OUT/sse.$i" 2>/dev/null &
  pids+=($!)
done
three_open() { [[ $(metric tether_sse_connections) == 3 ]]; }
ok "three SSE connections open" wait_for 10000 three_open
sleep 0.3 # each stream then lasts at least that long, which its access log line must show
kill "${pids[@]}" 2>/dev/null
wait "${pids[@]}" 2>/dev/null
none_open() { [[ $(metric tether_sse_connections) == 0 ]]; }
ok "and none once their clients left" wait_for 10000 none_open
ok "their records are counted when they end (3 x 40)" test "$(metric tether_sse_records_total)" -ge 120
# their access log lines are written at their end, with what they sent
sse_lines() {
  grep '"http.access"' "$TREE_LOG" |
    jq -c 'select(.stream == true and .path == "/realtime/v1/sessions/:session/:io")' 2>/dev/null
}
ended_logged() { [[ $(sse_lines | jq -s 'map(select(.records >= 40 and .status == 200)) | length') -ge 3 ]]; }
ok "each stream's access log line comes at its end, with its 40 records" wait_for 5000 ended_logged
is "$(sse_lines | jq -s 'map(select(.records >= 40)) | all(.bytes > 40 * 10 and .duration_ms >= 100)')" true   "with the bytes sent and the whole duration"

# a scrape under load
for w in 1 2 3 4; do
  (for i in $(seq 1 150); do
    curl -s -o /dev/null -H "Authorization: Bearer $KEY" --data-binary "l$w-$i" \
      "$TREE_URL/realtime/v1/sessions/mt-$S/in/append"
  done) &
  pids+=($!)
done
sleep 1
scrape >"$OUT/load.txt"
ok "promtool check metrics accepts a scrape under load" promtool check metrics <"$OUT/load.txt"
wait "${pids[@]}" 2>/dev/null

# a gateway killed: its slot keeps counting from where it was
before=$(metric "$APPEND")
starts=$(metric tether_gateway_starts_total)
pid=$(child_field gateway.0 pid)
kill -KILL "$pid"
restarted() { [[ $(child_field gateway.0 pid) != "$pid" ]] && child_state_is gateway.0 up; }
ok "gateway.0 is restarted after kill -9" wait_for 15000 restarted
ok "the tree is healthy again" wait_for 15000 healthz_is 200
is "$(metric "$APPEND")" "$before" "the appends counted before the kill are all still there"
is "$(metric tether_gateway_starts_total)" $((starts + 1)) "one more gateway start"
both() { [[ $(metric tether_gateway_processes) == 2 ]]; }
ok "both processes count again" wait_for 5000 both

# the actors' and the supervisor's figures, from their own files
ok "the session-manager counts its session.create" \
  test "$(metric 'tether_actor_bus_requests_total{process="session-manager",type="session.create",outcome="ok"}')" -ge 1
ok "the stream-broker its appends, with their durations" \
  test "$(metric 'tether_actor_bus_request_duration_seconds_count{process="stream-broker",type="stream.append"}')" -ge 640
ok "store calls are timed: the stream-broker's Redis" \
  test "$(metric 'tether_store_call_duration_seconds_count{process="stream-broker",store="redis"}')" -ge 1
ok "and the session-manager's PostgreSQL" \
  test "$(metric 'tether_store_call_duration_seconds_count{process="session-manager",store="postgres"}')" -ge 1
is "$(metric 'tether_supervisor_child_up{process="supervisor",child="run-manager"}')" 1 "the supervisor shows its children up"
is "$(metric 'tether_supervisor_leader{process="supervisor"}')" 1 "and that it is the leader"
ok "the replicator shows its lag" test -n "$(metric 'tether_replicator_lag_seconds{process="clickhouse-replicator"}')"
wp_counted() { [[ -n $(metric 'tether_waitpoints_pending{process="waitpoint-registry",kind="MANUAL"}') ]]; }
ok "the waitpoint registry its pending waitpoints" wait_for 5000 wp_counted
R='tether_supervisor_restarts_total{process="supervisor",child="stream-broker"}'
A='tether_actor_bus_requests_total{process="stream-broker",type="stream.append",outcome="ok"}'
r0=$(metric "$R")
a0=$(metric "$A")
pid=$(child_field stream-broker pid)
kill -KILL "$pid"
sb_back() { [[ $(child_field stream-broker pid) != "$pid" ]] && child_state_is stream-broker up; }
ok "the stream-broker is restarted after kill -9" wait_for 15000 sb_back
is "$(metric "$R")" $((r0 + 1)) "its restart is counted"
is "$(metric "$A")" "$a0" "and its figures are still there: its file outlived it"
scrape >"$OUT/actors.txt"
ok "promtool check metrics accepts the whole node's scrape" promtool check metrics <"$OUT/actors.txt"

grep -q '"level":"warn".*gw.metrics_unshared' "$TREE_LOG"
is "$?" 1 "no gateway fell back to figures of its own"
rm -rf "$OUT"
tree_stop
done_testing
