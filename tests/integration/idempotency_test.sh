# idempotency_test.sh - a request the bus delivers twice is handled once: the session-manager and
# the run-manager answer the second arrival of a non-idempotent write with the first arrival's
# answer and change nothing (docs/bus.md, "Requests handled once"). Made deterministic with the
# bus's duplicate fault, on the receiving side (the actor runs the same request twice) and on the
# sending side (the gateway sends the same request twice); then the kill -9 burst of creates that
# found the duplicate session.
. "$(dirname "$0")/../lib/itest.sh"

tree_start TETHER_RM_ORPHAN_GRACE=2s TETHER_BUS_REPLY_SWEEP=1s
S=$$-$RANDOM
J=$(ctl env create --org "idem-$S" --project p --type dev --json)
KEY=$(jq -r .api_key <<<"$J")
ENVID=$(jq -r .id <<<"$J")
PSQL() { psql -tA "$TETHER_PG_URL" -c "$1"; }
TC='"triggerConfig":{"basePayload":{"hello":"world"},"idleTimeoutInSeconds":30}'
api() { # api METHOD PATH [BODY] -> CODE, BODY
  BODY=$(curl -s -X "$1" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} -w '\n%{http_code}' "$TREE_URL$2")
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
sessions() { PSQL "SELECT count(*) FROM sessions WHERE runtime_environment_id = '$ENVID'"; }
# fault_on NAME SETTING: sets a fault and waits until the process logged that it applies it
fault_on() {
  local before
  before=$(grep -c '"bus.fault_set"' "$TREE_LOG")
  ctl_quiet fault "$1" "$2"
  wait_for 3000 bash -c "(( \$(grep -c '\"bus.fault_set\"' '$TREE_LOG') > $before ))"
  sleep 0.2 # every instance of NAME
}
fault_off() { fault_on "$1" off; }

# --- session.create delivered twice to the session-manager: one row, both answers the same
ctl tap --actor session-manager --type session.create --seconds 6 >"$TREE_DIR/tap.out" &
TAP=$!
sleep 1.5 # the tap dials every second
fault_on session-manager dup=1
CODES=""
IDS=()
for i in 1 2 3 4 5; do
  api POST /api/v1/sessions "{\"type\":\"chat\",\"taskIdentifier\":\"echo\",$TC}"
  CODES="$CODES$CODE "
  IDS+=("$(jq -r .id <<<"$BODY")")
done
fault_off session-manager
is "$CODES" "201 201 201 201 201 " "five creates without externalId, each handled twice, are 201"
is "$(sessions)" 5 "five creates delivered twice made five session rows"
is "$(PSQL "SELECT count(*) FROM sessions_bound WHERE runtime_environment_id = '$ENVID' AND current_run_id IS NULL")" \
  0 "every session row has its run"
is "$(PSQL "SELECT count(*) FROM sessions WHERE runtime_environment_id = '$ENVID' AND friendly_id IN ($(printf "'%s'," "${IDS[@]}" | sed 's/,$//'))")" \
  5 "the rows are the ones the answers named"
wait $TAP
# the session-manager's replies, two per request (the second is the duplicate's, thrown away)
jq -s '[.[] | select(.proc == "session-manager" and .dir == "out" and .kind == "reply")]
       | group_by(.req) | map({n: length, ids: (map(.body.session.id) | unique)})' \
  "$TREE_DIR/tap.out" >"$TREE_DIR/tap.pairs"
is "$(jq '[.[] | select(.n == 2)] | length' "$TREE_DIR/tap.pairs")" 5 \
  "the tap shows two answers to each of the five requests"
is "$(jq '[.[] | select((.ids | length) != 1)] | length' "$TREE_DIR/tap.pairs")" 0 \
  "both answers to one request carry the same session id"

# --- the gateway sends each session.create twice (the same request: same id)
fault_on gateway dup=1
CODES=""
for i in 1 2 3; do
  api POST /api/v1/sessions "{\"type\":\"chat\",\"taskIdentifier\":\"echo\",$TC}"
  CODES="$CODES$CODE "
done
fault_off gateway
is "$CODES" "201 201 201 " "three creates sent twice by the gateway are 201"
is "$(sessions)" 8 "and made three more rows, not six"

# --- a create with an externalId delivered twice is 201 (the first answer), not 200
fault_on session-manager dup=1
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"ext-$S\",\"taskIdentifier\":\"echo\",$TC}"
fault_off session-manager
is "$CODE $(jq -r .isCached <<<"$BODY")" "201 false" "an upsert delivered twice answers as its first arrival did"

# --- run.dequeue delivered twice leases what it answered, nothing more
PSQL "UPDATE task_runs SET status = 'CANCELED' WHERE runtime_environment_id = '$ENVID'" >/dev/null
for i in 1 2; do
  api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"dq-$S-$i\",\"taskIdentifier\":\"dq\",$TC}"
done
is "$(PSQL "SELECT count(*) FROM task_runs WHERE runtime_environment_id = '$ENVID' AND status = 'PENDING'")" \
  2 "two queued runs"
fault_on run-manager dup=1
api POST /api/v1/workers/dequeue '{"taskIdentifiers":["dq"],"maxRuns":1}'
fault_off run-manager
is "$CODE $(jq '.runs | length' <<<"$BODY")" "200 1" "a dequeue delivered twice answers one run"
is "$(PSQL "SELECT count(*) FROM task_runs WHERE runtime_environment_id = '$ENVID' AND status = 'PENDING'")" \
  1 "and leased only that one: the other is still queued"

# --- run.swap (end-and-continue) delivered twice triggers one continuation
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"eac-$S\",\"taskIdentifier\":\"echo\",$TC}"
CUR=$(jq -r .runId <<<"$BODY")
SESS=$(PSQL "SELECT id FROM sessions WHERE runtime_environment_id = '$ENVID' AND external_id = 'eac-$S'")
fault_on run-manager dup=1
api POST "/api/v1/sessions/eac-$S/end-and-continue" "{\"callingRunId\":\"$CUR\",\"reason\":\"upgrade\"}"
fault_off run-manager
is "$CODE $(jq -r .swapped <<<"$BODY")" "200 true" "an end-and-continue delivered twice swaps"
is "$(PSQL "SELECT count(*) FROM task_runs WHERE session_id = '$SESS'")" 2 \
  "the session has its first run and one continuation, no canceled extra"

# --- the request keys are swept once expired
is "$(PSQL "SELECT count(*) > 0 FROM bus_replies")" t "answers of handled writes are kept"
PSQL "UPDATE bus_replies SET expires_at = now() - interval '1 second'" >/dev/null
ok "expired answers are swept" wait_for 15000 bash -c "[[ \$(psql -tA '$TETHER_PG_URL' -c 'SELECT count(*) FROM bus_replies WHERE expires_at < now()') == 0 ]]"
tree_stop
is "$TREE_LEFT" "" "nothing left running"

# --- kill -9 of the session-manager (twice) during a burst of creates without externalId, 24 at a
# time and without client retries: every 201 names its own row, and no row exists that no answer
# named (a create re-sent to the new instance after the first one committed used to make a second
# row, without a run)
tree_start
J=$(ctl env create --org "idem-burst-$S" --project p --type dev --json)
KEY=$(jq -r .api_key <<<"$J")
ENVID=$(jq -r .id <<<"$J")
N=${IDEM_BURST:-300}
seq 1 "$N" | xargs -P 24 -I{} curl -s -o "$TREE_DIR/burst.{}" -w '%{http_code}\n' -X POST \
  -H "Authorization: Bearer $KEY" --data-binary "{\"type\":\"chat\",\"taskIdentifier\":\"echo\",$TC}" \
  "$TREE_URL/api/v1/sessions" >"$TREE_DIR/burst.codes" &
BURST=$!
for k in 1 2; do
  wait_for 20000 bash -c "(( \$(wc -l <'$TREE_DIR/burst.codes') >= $N * $k / 3 ))"
  kill -9 "$(child_field session-manager pid)"
  wait_for 10000 child_state_is session-manager up
done
wait $BURST
OKS=$(grep -c '^201$' "$TREE_DIR/burst.codes")
diag "burst: $OKS of $N created; others: $(grep -v '^201$' "$TREE_DIR/burst.codes" | sort | uniq -c | tr '\n' ' ')"
diag "requests answered again after a re-send: $(grep -c '"bus.replayed"' "$TREE_LOG")"
ok "most creates of the burst succeeded ($OKS of $N)" test "$OKS" -ge $((N * 9 / 10))
cat "$TREE_DIR"/burst.[0-9]* | jq -r 'select(.id) | .id' | sort >"$TREE_DIR/burst.ids"
is "$(sort -u "$TREE_DIR/burst.ids" | wc -l)" "$OKS" "every 201 named a session of its own"
PSQL "SELECT friendly_id FROM sessions WHERE runtime_environment_id = '$ENVID'" | sort >"$TREE_DIR/burst.rows"
ok "no more unanswered rows than failed answers" test "$(comm -13 "$TREE_DIR/burst.ids" "$TREE_DIR/burst.rows" | wc -l)" -le "$((N - OKS))"
ok "no more sessions without a run than failed answers" \
  test "$(PSQL "SELECT count(*) FROM sessions_bound WHERE runtime_environment_id = '$ENVID' AND current_run_id IS NULL")" -le "$((N - OKS))"
tree_stop
done_testing
