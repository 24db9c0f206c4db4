# replicator_test.sh - the clickhouse-replicator against real PostgreSQL, ClickHouse and Redis:
# created, updated and closed sessions reach ClickHouse with the commit LSN as _version; the
# list endpoint (filters, both cursors, read-your-writes); kill -9 after an insert and before
# its ack, and before an insert (fault points), lose nothing and duplicates collapse under
# FINAL; ClickHouse stopped for CH_DOWN_S seconds is waited out; two supervisors on one Redis
# run exactly one replicator, and when the leader dies the other takes over from the slot; a
# replicator whose fencing token is outdated writes nothing.
. "$(dirname "$0")/../lib/itest.sh"

CH_DOWN_S=${CH_DOWN_S:-30}
S=$$-$RANDOM
FAULT=$TETHER_TEST_TMP/chr-fault-$S
CH_PID=$(cat "$TETHER_TEST_TMP/services/clickhouse/clickhouse.pid" 2>/dev/null)
trap 'kill -CONT "$CH_PID" 2>/dev/null; itest_cleanup' EXIT

chq() { curl -s --max-time 5 "$TETHER_CH_URL/" --data-binary "$1"; }
# rows of session friendly id $1 after FINAL, and before it (duplicates)
ch_final() { chq "SELECT count() FROM sessions_v1 FINAL WHERE friendly_id = '$1' AND _is_deleted = 0"; }
ch_raw() { chq "SELECT count() FROM sessions_v1 WHERE friendly_id = '$1'"; }
ch_col() { chq "SELECT $2 FROM sessions_v1 FINAL WHERE friendly_id = '$1'"; }
api() {
  local m=$1 p=$2 body=${3-} auth=${4:-$KEY}
  if [[ -n $body ]]; then
    BODY=$(curl -s -X "$m" -H "Authorization: Bearer $auth" -H 'Content-Type: application/json' \
      --data-binary "$body" -w '\n%{http_code}' "$TREE_URL$p")
  else
    BODY=$(curl -s -X "$m" -H "Authorization: Bearer $auth" -w '\n%{http_code}' "$TREE_URL$p")
  fi
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
create() { # create EXTERNAL_ID TYPE [TAGS_JSON] -> SID
  api POST /api/v1/sessions "{\"type\":\"$2\",\"externalId\":\"$1\",\"taskIdentifier\":\"t-$S\",\"triggerConfig\":{\"basePayload\":{}},\"tags\":${3:-[]}}"
  SID=$(jq -r .id <<<"$BODY")
}
in_ch() { [[ $(ch_final "$1") == 1 ]]; }
chr_pid() { child_field clickhouse-replicator pid; }

tree_start TETHER_CHR_FAULT_FILE="$FAULT" TETHER_CHR_LAG_LOG_INTERVAL=1s
KEY=$(ctl env create --org "chr-$S" --project a --type dev)
ok "the replicator streams" wait_for 10000 grep -q '"chr.streaming"' "$TREE_LOG"

# --- create, update, close reach ClickHouse with growing versions
create "a-$S" chat '["user:1","plan:pro"]'
A=$SID
ok "a created session is in ClickHouse" wait_for 5000 in_ch "$A"
is "$(ch_col "$A" "type, task_identifier, arrayStringConcat(tags, ','), external_id, _is_deleted" | tr '\t' ' ')" \
  "chat t-$S user:1,plan:pro a-$S 0" "its columns"
v1=$(ch_col "$A" _version)
api PATCH "/api/v1/sessions/$A" '{"tags":["user:1","plan:free"]}'
is "$CODE" 200 "update"
ok "the update reaches ClickHouse" wait_for 5000 bash -c "[[ \$(curl -s '$TETHER_CH_URL/' --data-binary \"SELECT arrayStringConcat(tags, ',') FROM sessions_v1 FINAL WHERE friendly_id = '$A'\") == user:1,plan:free ]]"
v2=$(ch_col "$A" _version)
ok "with a higher _version (commit LSN $v1 -> $v2)" test "$v2" -gt "$v1"
api POST "/api/v1/sessions/$A/close" '{"reason":"test-close"}'
ok "the close reaches ClickHouse" wait_for 5000 bash -c "[[ \$(curl -s '$TETHER_CH_URL/' --data-binary \"SELECT closed_reason FROM sessions_v1 FINAL WHERE friendly_id = '$A' AND isNotNull(closed_at)\") == test-close ]]"
ok "one row per session under FINAL" test "$(ch_final "$A")" = 1

# --- the list
create "b-$S" chat '["user:2"]'
B=$SID
create "c-$S" agent '["user:2","plan:pro"]'
C=$SID
api GET "/api/v1/sessions?filter%5BexternalId%5D=c-$S"
is "$CODE $(jq -r '[.data[].id] | join(",")' <<<"$BODY")" "200 $C" "a session listed at once after its create (read-your-writes)"
api GET "/api/v1/sessions"
is "$(jq -r '[.data[].id] | join(",")' <<<"$BODY")" "$C,$B,$A" "the list, newest first"
is "$(jq -r '.data[0] | [.type, .taskIdentifier, (.tags|join(":")), .closedAt, (has("triggerConfig"))] | map(tostring) | join(" ")' <<<"$BODY")" \
  "agent t-$S user:2:plan:pro null false" "items: SessionItem without triggerConfig"
api GET "/api/v1/sessions?filter%5Btype%5D=agent,chat&filter%5Bstatus%5D=CLOSED"
is "$(jq -r '[.data[].id] | join(",")' <<<"$BODY")" "$A" "type list and status CLOSED"
api GET "/api/v1/sessions?filter%5Bstatus%5D=ACTIVE&filter%5Btags%5D=plan:pro"
is "$(jq -r '[.data[].id] | join(",")' <<<"$BODY")" "$C" "status ACTIVE and a tag"
api GET "/api/v1/sessions?filter%5BtaskIdentifier%5D=t-$S&filter%5BcreatedAt%5D%5Bperiod%5D=1h"
is "$(jq -r '.data | length' <<<"$BODY")" 3 "task identifier and a created-at period"
api GET "/api/v1/sessions?page%5Bsize%5D=2"
is "$(jq -r '[.data[].id] | join(",")' <<<"$BODY") $(jq -r '.pagination | has("previous")' <<<"$BODY")" "$C,$B false" "page 1 of size 2"
NEXT=$(jq -r .pagination.next <<<"$BODY")
api GET "/api/v1/sessions?page%5Bsize%5D=2&page%5Bafter%5D=$NEXT"
is "$(jq -r '[.data[].id] | join(",")' <<<"$BODY") $(jq -r '.pagination | has("next")' <<<"$BODY")" "$A false" "page 2 (page[after])"
PREV=$(jq -r .pagination.previous <<<"$BODY")
api GET "/api/v1/sessions?page%5Bsize%5D=2&page%5Bbefore%5D=$PREV"
is "$(jq -r '[.data[].id] | join(",")' <<<"$BODY")" "$C,$B" "back to page 1 (page[before])"
api GET "/api/v1/sessions?page%5Bafter%5D=x&page%5Bbefore%5D=y"
is "$CODE $(jq -r '.error + " " + (.details[0].path | join("."))' <<<"$BODY")" "400 Query Error page[before]" "both cursors: 400"
api GET "/api/v1/sessions?page%5Bsize%5D=101"
is "$CODE" 400 "page[size] above 100: 400"
api GET "/api/v1/sessions?filter%5Bstatus%5D=OPEN"
is "$CODE" 400 "an unknown status: 400"
api GET "/api/v1/sessions?filter%5BcreatedAt%5D%5Bfrom%5D=2024-01-01"
is "$CODE" 400 "an ISO created-at bound: 400"

# --- kill -9 after an insert, before its acknowledgement: replayed, collapsed
pid=$(chr_pid)
echo after_insert >"$FAULT"
create "d-$S" chat
D=$SID
ok "the replicator died after inserting" wait_for 10000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"clickhouse-replicator\") | .pid') != $pid ]]"
ok "the row is in ClickHouse once under FINAL" wait_for 10000 in_ch "$D"
# the replay itself: the new process inserts the batch again (raw rows before a merge: 2)
npid=$(chr_pid)
replayed() { grep '"chr.lag"' "$TREE_LOG" | grep "\"pid\":$npid," | grep -qE 'rows inserted [1-9]'; }
ok "the restarted replicator inserted the unacknowledged batch again" wait_for 5000 replayed
diag "rows of it in ClickHouse before FINAL: $(ch_raw "$D") (a background merge may already have collapsed them)"
is "$(ch_final "$D")" 1 "the duplicate collapses under FINAL"

# --- kill -9 before an insert: nothing lost
ok "the replicator streams again" wait_for 10000 bash -c "[[ \$(grep -c '\"chr.streaming\"' '$TREE_LOG') -ge 2 ]]"
pid=$(chr_pid)
echo before_insert >"$FAULT"
create "e-$S" chat
E=$SID
ok "the replicator died before inserting" wait_for 10000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"clickhouse-replicator\") | .pid') != $pid ]]"
ok "after the restart the row arrives" wait_for 10000 in_ch "$E"

# --- ClickHouse stopped: back off, catch up, lose nothing
kill -STOP "$CH_PID"
t0=$(now_ms)
for i in $(seq 1 20); do create "f$i-$S" chat; F[$i]=$SID; done
pid=$(chr_pid)
sleep "$CH_DOWN_S"
ok "the replicator backed off (chr.insert_failed logged)" grep -q '"chr.insert_failed"' "$TREE_LOG"
is "$(chr_pid)" "$pid" "and did not crash while ClickHouse was stopped"
kill -CONT "$CH_PID"
diag "ClickHouse was stopped for $((($(now_ms) - t0) / 1000)) s"
all_in() { for i in $(seq 1 20); do in_ch "${F[$i]}" || return 1; done; }
ok "it caught up: all 20 sessions made during the outage are in ClickHouse" wait_for 20000 all_in
api GET "/api/v1/sessions?filter%5Btype%5D=chat&page%5Bsize%5D=100"
is "$(jq -r '.data | length' <<<"$BODY")" 24 "and listed"

tree_stop
is "$TREE_EXIT" 0 "the tree stops cleanly"

# --- two supervisors on one Redis: one replicator; the other takes over from the slot
tree_start TETHER_SV_LEADER_TTL=3s TETHER_NODE_ID=node-a
A_PID=$TREE_PID A_RUN=$TETHER_RUN_DIR A_LOG=$TREE_LOG
tree_start_nowait TETHER_SV_LEADER_TTL=3s TETHER_NODE_ID=node-b
B_PID=$TREE_PID B_RUN=$TETHER_RUN_DIR B_URL=$TREE_URL B_LOG=$TREE_LOG
wait_for 15000 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' $B_URL/livez) == 200 ]]" || true
sleep 2
st() { TETHER_RUN_DIR=$1 "$TETHER_TEST_BIN/tetherctl" status --json 2>/dev/null | jq -r '.children[] | select(.name=="clickhouse-replicator") | .pid'; }
pa=$(st "$A_RUN")
pb=$(st "$B_RUN")
ok "exactly one replicator runs (node a: pid ${pa:-0}, node b: pid ${pb:-0})" bash -c "[[ ${pa:-0} -gt 0 && ${pb:-0} -eq 0 ]]"
ok "and only one streams" test "$(cat "$A_LOG" "$B_LOG" | grep -c '"chr.streaming"')" = 1
kill -KILL "$A_PID"
t0=$(now_ms)
ok "node b's replicator starts within the lock TTL" wait_for 6000 bash -c "(( \$(TETHER_RUN_DIR=$B_RUN $TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"clickhouse-replicator\") | .pid') > 0 ))"
diag "taken over after $(($(now_ms) - t0)) ms"
ok "and streams from the slot" wait_for 15000 grep -q '"chr.streaming"' "$B_LOG"
TREE_URL=$B_URL TREE_PID=$B_PID
export TETHER_RUN_DIR=$B_RUN
create "g-$S" chat
ok "a session made after the failover reaches ClickHouse" wait_for 10000 in_ch "$SID"

# --- a deposed leader: once the fence counter moves past its token it inserts and acks nothing
redis-cli -u "$TETHER_REDIS_URL" INCR '{tether:leader}:fence' >/dev/null
create "h-$S" chat
H=$SID
ok "the replicator sees the fence moved past its token" wait_for 5000 grep -q '"chr.fenced"' "$B_LOG"
sleep 1
is "$(ch_final "$H")" 0 "and did not insert the row committed after that"
tree_stop
is "$TREE_EXIT" 0 "node b stops cleanly"
done_testing
