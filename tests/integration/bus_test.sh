# bus_test.sh - the bus between processes: a 1 MiB record plus its envelope crosses every
# hop, the tap mirrors traffic (with filters, applied by the processes themselves), faults drop/delay/duplicate messages and the
# caller sees a clean error, and a request is re-sent when the instance holding it dies.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
MIB=1048576

# --- size: a maximum-size record with its envelope crosses the bus, byte-exact
for a in session-manager run-manager stream-broker waitpoint-registry clickhouse-replicator; do
  out=$(ctl ping "$a" --size $MIB)
  is "$(jq -r '.ok' <<<"$out")" true "1 MiB + envelope round trip to $a is byte-exact"
done
diag "$(ctl ping stream-broker --size $MIB)"
out=$(ctl ping stream-broker --size $((MIB + 65536)))
is "$(jq -r '.ok' <<<"$out")" true "a message above 1 MiB + 64 KiB is still accepted (limit 4 MiB)"

# --- tap: health traffic is visible, with filters
ctl tap --type health.ping --seconds 4 --count 20 >"$TREE_DIR/tap.out" &
TAP=$!
sleep 1.2 # the tap dials every process's tap socket once a second
curl -s -o /dev/null "$TREE_URL/healthz"
wait $TAP
ok "tap shows health.ping requests leaving the gateway" \
  grep -q '"proc":"gateway[.0-9]*","dir":"out".*"type":"health.ping","kind":"request"' "$TREE_DIR/tap.out"
ok "tap shows actors receiving them" \
  grep -q '"proc":"stream-broker","dir":"in".*"type":"health.ping","kind":"request"' "$TREE_DIR/tap.out"
ok "tap shows the replies" grep -q '"type":"health.ping","kind":"reply".*"state":"up"' "$TREE_DIR/tap.out"
ok "tap lines are JSON" bash -c "jq -e . $TREE_DIR/tap.out >/dev/null"

TRACE=4bf92f3577b34da6a3ce929d0e0e4736
ctl tap --trace $TRACE --seconds 3 >"$TREE_DIR/tap2.out" &
TAP=$!
sleep 1.2
curl -s -o /dev/null -H "traceparent: 00-$TRACE-00f067aa0ba902b7-01" "$TREE_URL/healthz"
curl -s -o /dev/null "$TREE_URL/healthz" # another trace: filtered out
wait $TAP
n=$(grep -c . "$TREE_DIR/tap2.out")
ok "the traceparent's trace id reaches the bus and --trace filters on it ($n lines)" test "$n" -ge 10
ok "every line of the trace filter carries that trace" \
  bash -c "! jq -r .trace $TREE_DIR/tap2.out | grep -v $TRACE"
ctl tap --actor run-manager --seconds 2.5 >"$TREE_DIR/tap3.out" &
TAP=$!
sleep 1.2
curl -s -o /dev/null "$TREE_URL/healthz"
wait $TAP
ok "--actor keeps only traffic to or from that actor" \
  bash -c "[[ -s $TREE_DIR/tap3.out ]] && ! jq -r '[.proc,.peer]|join(\" \")' $TREE_DIR/tap3.out | grep -v run-manager"
ctl tap --rate --seconds 3.5 >"$TREE_DIR/rate.out" &
TAP=$!
sleep 1.2
for _ in 1 2 3 4 5; do curl -s -o /dev/null "$TREE_URL/healthz"; done
wait $TAP
ok "--rate prints per-type message rates" bash -c "jq -e '.rates[\"health.ping\"] > 0' $TREE_DIR/rate.out | grep -q true"

# --- filters are applied where the messages are: nothing is copied for a listener that does not
# want it, as long as every listener registered its filter (docs/bus.md#the-tap)
mval() { curl -s "$TREE_URL/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
SMR='tether_bus_tap_records_total{process="session-manager"}'
SMF='tether_bus_tap_filtered_total{process="session-manager"}'
RMR='tether_bus_tap_records_total{process="run-manager"}'
ctl tap --actor run-manager --seconds 4 >"$TREE_DIR/tap4.out" &
TAP=$!
sleep 1.5 # dialled, registered, published
r0=$(mval "$SMR") f0=$(mval "$SMF") rr0=$(mval "$RMR")
for _ in 1 2 3 4 5; do curl -s -o /dev/null "$TREE_URL/healthz"; done
sleep 0.3
r1=$(mval "$SMR") f1=$(mval "$SMF") rr1=$(mval "$RMR")
wait $TAP
ok "the session-manager keeps what the listener does not want off its tap ($f0 -> $f1)" test "$f1" -gt "$f0"
is "$r1" "$r0" "and copies none of it"
ok "the run-manager mirrors its own ($rr0 -> $rr1)" test "$rr1" -gt "$rr0"
ok "the listener sees only the run-manager's traffic" \
  bash -c "[[ -s $TREE_DIR/tap4.out ]] && ! jq -r '[.proc,.peer]|join(\" \")' $TREE_DIR/tap4.out | grep -v run-manager"
ctl tap --actor run-manager --seconds 4 >/dev/null &
TAP=$!
ctl tap --seconds 4 >/dev/null &
TAP2=$!
sleep 1.5
r0=$(mval "$SMR")
for _ in 1 2 3; do curl -s -o /dev/null "$TREE_URL/healthz"; done
sleep 0.3
r1=$(mval "$SMR")
wait $TAP $TAP2
ok "with a second listener that wants everything, everything is mirrored again ($r0 -> $r1)" \
  test "$r1" -gt "$r0"
ok "the supervisor logged the registrations" grep -q '"sv.tap_filter"' "$TREE_LOG"

# --- faults
ok "tetherctl fault sets a drop fault" ctl_quiet fault stream-broker drop=1
sleep 0.3
t0=$(now_ms)
code=$(healthz_code)
took=$(($(now_ms) - t0))
is "$code" 503 "with stream-broker dropping every message /healthz answers 503"
is "$(curl -s "$TREE_URL/healthz" | jq -r '.actors["stream-broker"].error')" "timed out" \
  "the dropped request is reported as a timeout"
ok "the caller waits no longer than its deadline (${took}ms)" test "$took" -lt 2000
out=$(ctl ping stream-broker --timeout 300ms)
rc=$?
is "$(jq -r '.error' <<<"$out")" ERR_TIMEOUT "a bus call to the dropping actor ends in a clean ERR_TIMEOUT"
is "$rc" 1 "tetherctl exits 1 on that error, without crashing"
ok "other actors are not affected" bash -c "$TETHER_TEST_BIN/tetherctl ping run-manager >/dev/null"
ok "clearing the fault" ctl_quiet fault stream-broker off
ok "/healthz is 200 again" wait_for 2000 healthz_is 200

ctl_quiet fault run-manager delay=300ms
sleep 0.3
rtt=$(ctl ping run-manager | jq -r '.rtt_ms')
ok "a delay fault delays the request ($rtt ms >= 300)" test "$rtt" -ge 300
ctl_quiet fault run-manager off

ctl_quiet fault session-manager dup=1
sleep 0.3
out=$(ctl ping session-manager --size 1000 --count 3 | jq -s 'map(.ok) | all')
is "$out" true "with every request duplicated, each caller still gets exactly its own reply"
ctl_quiet fault session-manager off
is "$(ctl faults | jq -r '[.faults[] | select(.drop > 0 or .dup > 0 or .delay_ms > 0)] | length')" 0 \
  "tetherctl faults lists no active fault after clearing"

# --- re-send on instance death: the request held by a dying instance goes to its successor
ctl_quiet fault waitpoint-registry delay=700ms
sleep 0.3
ctl ping waitpoint-registry --timeout 5s >"$TREE_DIR/resend.out" &
PING=$!
sleep 0.3
kill -9 "$(child_field waitpoint-registry pid)"
wait $PING
is "$(jq -r '.ok' "$TREE_DIR/resend.out")" true "a request survives the death of the instance holding it"
is "$(jq -r '.attempt' "$TREE_DIR/resend.out")" 2 "it was re-sent as attempt 2"
ctl_quiet fault waitpoint-registry off

tree_stop
is "$TREE_LEFT" "" "nothing left running"
done_testing
