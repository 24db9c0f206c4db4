#!/usr/bin/env bash
# cluster_test.sh - three nodes in network namespaces on shared stores (tests/cluster/netns.sh):
# the cluster view, a record appended through one node reaching SSE subscribers on the others,
# and the chaos suite's mixed workload across all three while the leader node is killed
# (kill -9 of its supervisor and children) and, later, the next leader is cut off from Redis.
# Checked: the leader lock moves within its TTL, never two leaders at once (from the fencing
# tokens and the times in every node's log), a node that cannot reach Redis acknowledges no
# append, it rejoins once healed, and the workload's history has no anomaly (no acknowledged
# append lost or duplicated; ClickHouse agrees with PostgreSQL across the replicator's moves).
# TAP. Usage: cluster_test.sh BUILD_DIR (tests/run.sh runs it).
set -uo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: cluster_test.sh BUILD_DIR}" && pwd -P) || exit 100
export TETHER_TEST_BIN=$BUILD/bin TETHER_TEST_TMP=${TETHER_TEST_TMP:-/tmp}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
. "$ROOT/tests/lib/itest.sh"
. "$ROOT/tests/cluster/netns.sh"
cd "$ROOT" || exit 1

TTL_MS=3000
LOAD_S=40
T0=$(now_ms)
say() { diag "$(( ($(now_ms) - T0) / 1000 )) s: $*"; }

# make test runs as root (compose/deps.sh installs with apt-get), so a missing namespace is a
# failure to see, not a skip to overlook
if ! ok "network namespaces can be made (root, iproute2)" cl_have_netns; then
  done_testing
  exit 1
fi

D=$(mktemp -d "${TETHER_TEST_TMP}/cluster.XXXXXX")
chmod 755 "$D"
AGENTS=() WL=""
cleanup() {
  exec 2>/dev/null
  [[ -n $WL ]] && kill -KILL "$WL"
  for a in "${AGENTS[@]}"; do kill -KILL "$a"; done
  cl_net_down
  cl_stores_down
  [[ -n ${TETHER_TEST_KEEP:-} ]] || rm -rf "$D"
}
trap cleanup EXIT

ok "a bridge and three network namespaces" cl_net_up 3 || exit 1
ok "stores on the bridge" cl_stores_up "$D" || exit 1
say "stores up; starting three nodes"
NODE_ENV=(TETHER_GATEWAY_PROCS=1 TETHER_SV_LEADER_TTL=${TTL_MS}ms "TETHER_SV_LEADER_KEY={tether:cl$$}"
  TETHER_SV_INTENSITY=32 TETHER_SV_BACKOFF_MAX=1s TETHER_SV_NODE_TTL=3s)
for i in 1 2 3; do cl_node_start "$i" "${NODE_ENV[@]}"; done

node_ready() { [[ $(cl_healthz "$1") == 200 ]]; }
all_ready() { local i; for i in 1 2 3; do [[ $(cl_healthz "$i") == 200 ]] || return 1; done; }
ok "every node's /healthz answers 200 (followers included)" wait_for 60000 all_ready ||
  { for i in 1 2 3; do curl -s "$(cl_url "$i")/healthz" | head -c 600; echo; done; }

view() { curl -s --max-time 3 "$(cl_url "$1")/healthz" | jq -c "${2:-.cluster}"; }
three_seen() { local i; for i in 1 2 3; do [[ $(view "$i" '.cluster.nodes | length') == 3 ]] || return 1; done; }
ok "every node's /healthz lists the three nodes" wait_for 10000 three_seen
LEADERS=$(for i in 1 2 3; do view "$i" '.cluster.leader'; done | sort -u)
is "$(wc -l <<<"$LEADERS")" 1 "the three nodes agree on one leader ($LEADERS)"
is "$(cl_ctl 1 status --cluster | awk 'NR > 2' | wc -l)" 3 "tetherctl status --cluster lists three nodes"
is "$(curl -s "$(cl_url 2)/metrics" | awk '$1 == "tether_cluster_nodes{process=\"supervisor\"}" {print $2}')" 3 \
  "/metrics: tether_cluster_nodes is 3"
A=$(cl_leader)
is "$(view "$A" .cluster.node)" "\"node$A\"" "the leader's /healthz names itself"
ok "a follower reports the replicator as standby" \
  test "$(view $(((A % 3) + 1)) '.actors["clickhouse-replicator"].state')" == '"standby"'

# ---- a record appended through one node reaches subscribers on the others ----------------------
KEY=$(cl_ctl 1 env create --org "cl-$$" --project a --type dev)
curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  --data-binary "{\"type\":\"chat\",\"externalId\":\"x-$$\",\"taskIdentifier\":\"nobody\",\"triggerConfig\":{\"basePayload\":{}}}" \
  "$(cl_url 1)/api/v1/sessions"
for i in 1 2; do
  curl -s -N --max-time 20 -H "Authorization: Bearer $KEY" -H 'timeout-seconds: 15' \
    "$(cl_url "$i")/realtime/v1/sessions/x-$$/out" >"$D/sse.$i" 2>/dev/null &
done
sleep 1
t_append=$(now_ms)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'X-Part-Id: c1' \
  --data-binary 'across' "$(cl_url 3)/realtime/v1/sessions/x-$$/out/append")
is "$code" 200 "an append through node 3"
for i in 1 2; do
  got() { grep -q 'across' "$D/sse.$1"; }
  if wait_for 10000 got "$i"; then
    ms=$(($(now_ms) - t_append))
    # without node 3's events a feed would see it only at its next resync (GW_FEED_RESYNC_MS)
    ok "a subscriber on node $i has it in $ms ms (events straight from node 3's broker)" test "$ms" -lt 3000
  else
    ok "a subscriber on node $i has it" false
  fi
done

# the sessions list is served by the clickhouse-replicator, which runs on the leader only: every
# node's gateway sends it there
listed() {
  local i
  for i in 1 2 3; do
    curl -s --max-time 5 -H "Authorization: Bearer $KEY" \
      "$(cl_url "$i")/api/v1/sessions?filter%5BexternalId%5D=x-$$" | jq -e '.data | length == 1' >/dev/null ||
      return 1
  done
}
ok "every node lists the session (followers through the leader's replicator)" wait_for 15000 listed

dialed() { # a gateway follows a broker once a feed needs it: those of nodes 1 and 2 have one
  local i n
  for i in 1 2; do
    n=$(grep -c '"event":"bus.cluster_dial".*stream-broker' "$(cl_log "$i")")
    ((n >= 2)) || return 1
  done
}
ok "the subscribers' gateways dial the other nodes' stream-broker event sockets" wait_for 10000 dialed

# ---- the mixed workload across the nodes, a leader killed, a leader cut off from Redis ---------
URLS=$(cl_url 1),$(cl_url 2),$(cl_url 3)
for i in 2 3; do
  TETHER_URL=$(cl_url "$i") TETHER_SECRET_KEY=$KEY TETHER_ECHO_LEASE_SECONDS=3 TETHER_ECHO_SLEEP_SECONDS=5 \
    "$BUILD/bin/echo-agent" >>"$D/echo-agent.$i.log" 2>&1 &
  AGENTS+=($!)
done
HIST=$D/history.jsonl READY=$D/healed
say "workload: ${LOAD_S}s across three nodes"
node tests/chaos/workload.mjs --url "$URLS" --key "$KEY" --history "$HIST" --seconds "$LOAD_S" \
  --seed $$ --pg "$TETHER_PG_URL" --ch "$TETHER_CH_URL" --ready "$READY" --writers 9 --subscribers 6 --sessions 12 \
  >"$D/workload.log" 2>&1 &
WL=$!

sleep 8
A=$(cl_leader)
say "killing node $A (the leader): its supervisor and children, with SIGKILL"
KILL_MS=$(now_ms)
cl_node_kill "$A"
new_leader() { local l; l=$(cl_leader) && [[ $l != "$A" ]]; }
ok "another node takes the lock" wait_for 10000 new_leader
B=$(cl_leader)
acq_ms=$(grep '"event":"sv.leader_acquired"' "$(cl_log "$B")" | tail -1 | jq -r .ts)
acq_ms=$(date -d "$acq_ms" +%s%3N)
FAILOVER=$((acq_ms - KILL_MS))
diag "failover: node $B acquired the lock $FAILOVER ms after node $A was killed (TTL $TTL_MS ms)"
# the lock expires at most one TTL after the dead leader's last renewal; one round trip on top
ok "the lock moved within its TTL ($FAILOVER ms <= $TTL_MS + 100 ms)" test "$FAILOVER" -le $((TTL_MS + 100))
sleep 2
say "node $A comes back"
cl_node_start "$A" "${NODE_ENV[@]}"
ok "node $A rejoins (its /healthz answers 200)" wait_for 30000 node_ready "$A"

sleep 4
B=$(cl_leader)
say "cutting node $B (the leader now) off from Redis"
cl_redis_cut "$B"
CUT_MS=$(now_ms)
lost() { grep -q '"event":"sv.leader_lost"' "$(cl_log "$B")"; }
ok "node $B gives up the lock it cannot renew" wait_for $((TTL_MS * 2)) lost
other_leader() { local l; l=$(cl_leader) && [[ $l != "$B" ]]; }
ok "another node leads while node $B is cut off" wait_for $((TTL_MS * 3)) other_leader
code=$(curl -s -o "$D/cut.body" -w '%{http_code}' --max-time 20 -H "Authorization: Bearer $KEY" \
  -H 'X-Part-Id: cut1' --data-binary 'lost?' "$(cl_url "$B")/realtime/v1/sessions/x-$$/out/append")
ok "node $B acknowledges no append it cannot store (answered $code)" test "$code" != 200 -a "$code" != 000
sleep 3
say "healing node $B"
cl_redis_heal "$B"
HEAL_MS=$(now_ms)
ok "node $B rejoins after the heal (/healthz 200)" wait_for 30000 node_ready "$B"
ok "node $B is in every view again" wait_for 10000 three_seen
touch "$READY"

wait "$WL"
wrc=$?
WL=""
is "$wrc" 0 "the workload ran to its end"
grep '^workload: ' "$D/workload.log" | sed 's/^/# /'
node tests/chaos/check.mjs "$HIST" >"$D/report.txt" 2>&1
crc=$?
sed 's/^/# /' "$D/report.txt"
is "$crc" 0 "the history has no anomaly: no acknowledged append lost, duplicated or out of order"

ok "after the failovers every node lists through the new leader's replicator" wait_for 15000 listed

# ---- the leader history: fencing tokens rise, and no two nodes lead at once --------------------
# line by line: a line that is not JSON (a sanitizer's report, say) must not hide the events after
# it, and is shown
for i in 1 2 3; do
  jq -cR --arg n "$i" 'fromjson? | select(.event == "sv.leader_acquired" or .event == "sv.leader_lost")
    | {node: $n, ts, event, msg}' "$(cl_log "$i")" 2>/dev/null
done >"$D/leaders.jsonl"
for i in 1 2 3; do
  stray=$(grep -cv '^{' "$(cl_log "$i")" 2>/dev/null || true)
  if [[ ${stray:-0} -gt 0 ]]; then
    diag "node $i's log has $stray lines that are not JSON; the first:"
    grep -v '^{' "$(cl_log "$i")" | head -3 | cut -c1-200 | sed 's/^/#   /'
  fi
done
node - "$D/leaders.jsonl" "$A" "$KILL_MS" <<'EOF' >"$D/leaders.txt"
const fs = require('fs');
const [file, killed, killMs] = process.argv.slice(2);
const ev = fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(JSON.parse)
  .map((e) => ({ ...e, t: Date.parse(e.ts) })).sort((a, b) => a.t - b.t);
const open = new Map(); // node -> {from, token}
const spans = [];
for (const e of ev) {
  if (e.event === 'sv.leader_acquired') {
    // a node killed while leading logs no loss: its span ended at the kill
    if (open.has(e.node) && e.node === killed) spans.push({ ...open.get(e.node), node: e.node, to: Number(killMs) });
    open.set(e.node, { from: e.t, token: Number((e.msg.match(/token (\d+)/) || [])[1]) });
  } else if (open.has(e.node)) {
    spans.push({ ...open.get(e.node), node: e.node, to: e.t });
    open.delete(e.node);
  }
}
for (const [node, s] of open) spans.push({ ...s, node, to: node === killed && s.from < Number(killMs) ? Number(killMs) : Date.now() });
spans.sort((a, b) => a.from - b.from);
let overlaps = 0, rising = true;
for (let i = 1; i < spans.length; i++) {
  if (spans[i].from < spans[i - 1].to) overlaps++;
  if (!(spans[i].token > spans[i - 1].token)) rising = false;
}
for (const s of spans) console.log(`node ${s.node} led ${s.to - s.from} ms with token ${s.token}`);
console.log(`spans ${spans.length} overlaps ${overlaps} rising ${rising}`);
EOF
sed 's/^/# /' "$D/leaders.txt"
summary=$(tail -1 "$D/leaders.txt")
ok "at least three leaderships in the history (start, after the kill, after the cut)" \
  test "$(awk '{print $2}' <<<"$summary")" -ge 3
is "$(awk '{print $4}' <<<"$summary")" 0 "no two nodes led at once"
is "$(awk '{print $6}' <<<"$summary")" true "each leadership's fencing token is above the one before"
diag "cut at +$((CUT_MS - T0)) ms, healed at +$((HEAL_MS - T0)) ms; logs in $D (TETHER_TEST_KEEP=1 keeps them)"
done_testing
