# runs_test.sh - task runs, the session-run claim and the worker API, against a tree with three
# run-manager instances: concurrent run.ensure on one session (threads racing in the claim
# UPDATE, and calls over the bus) leave exactly one live run and cancel every loser; a dead
# current run gets a continuation (continuation, previousRunId, no first-turn keys); swap races;
# the worker API over HTTP (long-poll wake-up, heartbeat, cancel, fail and retry, lease expiry
# then CRASHED, maxDuration, ttl, tokens and scopes, env scoping); orphaned runs are swept; and a
# kill -9 of run-managers in a burst of ensures leaves every session with at most one live run.
# Sessions are inserted with psql (session creation over HTTP is tested by sessions_test.sh);
# run.ensure and run.swap are driven by tests/drivers/claim_driver.c.
. "$(dirname "$0")/../lib/itest.sh"

PSQL=$(command -v psql || printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
sql() { # sql QUERY [VAR=VALUE ...]: one value per line; values reach SQL as psql variables
  local q=$1
  shift
  local vars=()
  for v in "$@"; do vars+=(-v "$v"); done
  "$PSQL" -X -qtA -d "$TETHER_PG_URL" "${vars[@]}" <<<"$q"
}
CLAIM=$(dirname "$TETHER_TEST_BIN")/drivers/claim_driver
U="r$$x$RANDOM"
MARK="payload-marker-$U" # put in payloads: must never reach a log line

new_cuid() { printf 'c%s' "$(tr -dc 'a-z0-9' </dev/urandom | head -c 24)"; }

# mk_session ENV_ID TASK TRIGGER_CONFIG_JSON [EXTERNAL_ID]: inserts a session row, prints its id.
mk_session() {
  local id
  id=$(new_cuid)
  sql "INSERT INTO sessions (id, friendly_id, external_id, type, project_id, runtime_environment_id,
         organization_id, environment_type, task_identifier, trigger_config)
       SELECT :'id', 'session_' || :'id', NULLIF(:'ext', ''), 'chat.agent', e.project_id, e.id,
         e.organization_id, e.type, :'task', :'tc'::jsonb
       FROM runtime_environments e WHERE e.id = :'env'" \
    id="$id" ext="${4:-}" task="$2" tc="$3" env="$1" >/dev/null
  printf '%s' "$id"
}

# claim MODE ARGS...: runs claim_driver (the run-manager's claim, concurrently); output in $OUT.
claim() {
  OUT=$(env TETHER_BUS_PEERS_RUN_MANAGER="$RM_PEERS" "$CLAIM" "$@" 2>"$TREE_DIR/claim.err")
  CLAIM_RC=$?
}
ensure1() { # ensure1 ENV SESSION [REASON]: one run.ensure over the bus; prints "run_id triggered"
  claim bus "$1" "${3:-initial}" 1 "$2"
  awk '/^ok /{print $3, $4}' <<<"$OUT"
}

# api METHOD PATH [BODY] [CREDENTIAL]: sets CODE, BODY and HDRS (the response headers).
api() {
  local args=(-s -o "$TREE_DIR/api.body" -D "$TREE_DIR/api.hdrs" -w '%{http_code}' --max-time 90
    -X "$1" -H "Authorization: Bearer ${4:-$KEY}")
  [[ -n ${3:-} ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  CODE=$(curl "${args[@]}" "$TREE_URL$2")
  BODY=$(cat "$TREE_DIR/api.body")
  HDRS=$(tr -d '\r' <"$TREE_DIR/api.hdrs")
}
j() { jq -r "$1" <<<"$BODY"; }
jq_ok() { jq -e "$1" <<<"$BODY" >/dev/null; }
# sdk_parses: the SDK's own zod schema (RetrieveRunResponse of @trigger.dev/core, pinned in
# tests/compat) accepts $BODY. Without node or the packages, only a note is printed.
COMPAT=$(cd "$(dirname "$0")/../compat" && pwd -P)
SDK_OK=0
[[ -d $COMPAT/node_modules/@trigger.dev/core ]] && command -v node >/dev/null && SDK_OK=1
sdk_parses() {
  ((SDK_OK)) || return 0
  printf '%s' "$BODY" >"$TREE_DIR/sdk.json"
  (cd "$COMPAT" && node --input-type=module -e "
    import { RetrieveRunResponse } from '@trigger.dev/core/v3';
    import { readFileSync } from 'node:fs';
    const r = RetrieveRunResponse.safeParse(JSON.parse(readFileSync(process.argv[1], 'utf8')));
    if (!r.success) { console.log('# ' + JSON.stringify(r.error.issues)); process.exit(1); }
  " "$TREE_DIR/sdk.json")
}
dequeue() { # dequeue TASK [EXTRA_JSON_FIELDS]: one dequeue, no wait
  api POST /api/v1/workers/dequeue "{\"taskIdentifiers\":[\"$1\"]${2:+,$2}}"
}
jwt_scopes() { # jwt_scopes TOKEN: the scopes claim, one per line
  local p
  p=$(cut -d. -f2 <<<"$1" | tr '_-' '/+')
  while ((${#p} % 4)); do p="$p="; done
  base64 -d <<<"$p" 2>/dev/null | jq -r '.scopes[]'
}
run_status() { sql "SELECT status FROM task_runs WHERE friendly_id = :'r'" r="$1"; }
run_field() { sql "SELECT $2 FROM task_runs WHERE friendly_id = :'r'" r="$1"; }
status_is() { [[ $(run_status "$1") == "$2" ]]; }
field_is() { [[ $(run_field "$1" "$2") == "$3" ]]; }
current_run() { sql "SELECT COALESCE('run_' || current_run_id, '') FROM sessions_bound WHERE id = :'s'" s="$1"; }
live_runs() {
  sql "SELECT count(*) FROM task_runs WHERE session_id = :'s' AND status NOT IN ('CANCELED',
       'INTERRUPTED', 'COMPLETED_SUCCESSFULLY', 'COMPLETED_WITH_ERRORS', 'SYSTEM_FAILURE',
       'CRASHED', 'EXPIRED', 'TIMED_OUT')" s="$1"
}

if [[ ! -x $CLAIM ]]; then
  ok "claim_driver is built ($CLAIM): make unit-bins" false
  done_testing
  exit
fi

((SDK_OK)) || diag "no node or tests/compat/node_modules: the SDK schema checks only pass through"
tree_start TETHER_SV_INSTANCES_RUN_MANAGER=3 TETHER_RM_ORPHAN_GRACE=2s
BUS_DIR=$TETHER_RUN_DIR/bus
RM_PEERS="ipc://$BUS_DIR/run-manager.0.ipc,ipc://$BUS_DIR/run-manager.1.ipc,ipc://$BUS_DIR/run-manager.2.ipc"
export TETHER_RUN_DIR

J=$(ctl env create --org "rm-$U" --project p --type dev --json)
ENV=$(jq -r .id <<<"$J")
KEY=$(jq -r .api_key <<<"$J")
J2=$(ctl env create --org "rm-$U" --project q --type dev --json)
ENV2=$(jq -r .id <<<"$J2")
KEY2=$(jq -r .api_key <<<"$J2")
ok "two environments to work in" test -n "$ENV" -a -n "$KEY" -a -n "$ENV2"

TC_CHAT='{"basePayload":{"chatId":"c1","message":"hello '$MARK'","messages":[1],"trigger":"submit","keep":1},"idleTimeoutInSeconds":30,"maxAttempts":2,"tags":["t1","t2"],"machine":"small-1x","queue":"chat"}'

# ---------------------------------------------------------------- the claim: 50 racing threads
S1=$(mk_session "$ENV" "agent-$U" "$TC_CHAT" "ext-$U-1")
claim threads "$ENV" "$S1" 50 initial
is "$CLAIM_RC" 0 "50 concurrent ensures (threads, one connection each) all answer"
is "$(awk '/^ok /{print $3}' <<<"$OUT" | sort -u | wc -l)" 1 "... every one names the same run"
R1=$(awk '/^ok /{print $3; exit}' <<<"$OUT")
is "$(awk '/^ok / && $4 == 1' <<<"$OUT" | wc -l)" 1 "... exactly one says it triggered it"
is "$(current_run "$S1")" "$R1" "the session points at that run"
is "$(live_runs "$S1")" 1 "the session has exactly one live run"
LOSERS=$(sql "SELECT count(*) FROM task_runs WHERE session_id = :'s' AND friendly_id <> :'r'" s="$S1" r="$R1")
diag "threads: $LOSERS losing run(s) were triggered"
ok "the race produced losers (real concurrency in the claim)" test "$LOSERS" -ge 1
is "$(sql "SELECT count(*) FROM task_runs WHERE session_id = :'s' AND friendly_id <> :'r'
           AND (status <> 'CANCELED' OR error->>'message' <> 'lost session-run claim race')" \
  s="$S1" r="$R1")" 0 "every loser's run is CANCELED with \"lost session-run claim race\""
is "$(sql "SELECT string_agg('run_' || run_id || ' ' || reason, ',') FROM session_runs
           WHERE session_id = :'s'" s="$S1")" "$R1 initial" "session_runs holds only the winner"
is "$(sql "SELECT current_run_version FROM sessions_bound WHERE id = :'s'" s="$S1")" 1 \
  "current_run_version went 0 -> 1 once"
P=$(run_field "$R1" payload::text)
is "$(jq -c '{chatId, message: (.message | startswith("hello")), messages, trigger, keep, sessionId, idleTimeoutInSeconds, c: has("continuation")}' <<<"$P")" \
  "{\"chatId\":\"c1\",\"message\":true,\"messages\":[1],\"trigger\":\"submit\",\"keep\":1,\"sessionId\":\"session_$S1\",\"idleTimeoutInSeconds\":30,\"c\":false}" \
  "a first run's payload: basePayload + idleTimeoutInSeconds + sessionId"
is "$(run_field "$R1" "concat_ws(' ', status, attempt, max_attempts, machine, queue, array_to_string(tags, '+'), idle_timeout_s)")" \
  "PENDING 1 2 small-1x chat t1+t2 30" "options from triggerConfig: maxAttempts, machine, queue, tags, idle timeout"

# ---------------------------------------------------------------- the claim over the bus
S2=$(mk_session "$ENV" "agent-$U" '{"basePayload":{"n":2}}')
claim bus "$ENV" initial 50 "$S2"
is "$CLAIM_RC" 0 "50 concurrent run.ensure over the bus (3 run-manager instances) all answer"
R2=$(current_run "$S2")
is "$(awk '/^ok /{print $3}' <<<"$OUT" | sort -u)" "$R2" "... every one names the session's run"
is "$(awk '/^ok / && $4 == 1' <<<"$OUT" | wc -l)" 1 "... exactly one triggered it"
is "$(live_runs "$S2")" 1 "one live run"
is "$(sql "SELECT count(*) FROM task_runs WHERE session_id = :'s' AND friendly_id <> :'r'
           AND status <> 'CANCELED'" s="$S2" r="$R2")" 0 "every other run of the session is CANCELED"
is "$(sql "SELECT count(*) FROM session_runs WHERE session_id = :'s'" s="$S2")" 1 "one audit row"
diag "bus: $(sql "SELECT count(*) FROM task_runs WHERE session_id = :'s'" s="$S2") run(s) triggered for 50 calls"
is "$(ensure1 "$ENV" "$S2")" "$R2 0" "an ensure while the run is alive returns it, triggered false"
claim bus "$ENV2" initial 1 "$S2"
ok "a session of another environment is ERR_NOTFOUND" grep -q '^err .* ERR_NOTFOUND session not found' <<<"$OUT"
claim bus "$ENV" sideways 1 "$S2"
ok "an unknown reason is ERR_INVAL" grep -q '^err .* ERR_INVAL reason must be' <<<"$OUT"
SB=$(mk_session "$ENV" "agent-$U" '{"basePayload":[1,2]}')
claim bus "$ENV" initial 1 "$SB"
ok "a basePayload that is not an object is ERR_INVAL" grep -q '^err .* ERR_INVAL triggerConfig.basePayload' <<<"$OUT"
is "$(sql "SELECT count(*) FROM task_runs WHERE session_id = :'s'" s="$SB")" 0 "... and triggers nothing"

# the session-channel rule is the run-manager's, where it reads the row: whatever a gateway's copy
# of the row says, a closed or expired session gets no new run
SCL=$(mk_session "$ENV" "ended-$U" '{"basePayload":{}}')
sql "UPDATE sessions SET closed_at = now(), closed_reason = 'done' WHERE id = :'s'" s="$SCL" >/dev/null
claim bus "$ENV" initial 1 "$SCL"
ok "run.ensure of a closed session is ERR_CONFLICT \"the session is closed\"" \
  grep -q '^err .* ERR_CONFLICT the session is closed' <<<"$OUT"
SEX=$(mk_session "$ENV" "ended-$U" '{"basePayload":{}}')
sql "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = :'s'" s="$SEX" >/dev/null
claim bus "$ENV" continuation 1 "$SEX"
ok "run.ensure of an expired session is ERR_CONFLICT \"the session has expired\"" \
  grep -q '^err .* ERR_CONFLICT the session has expired' <<<"$OUT"
is "$(sql "SELECT count(*) FROM task_runs WHERE session_id IN (:'a', :'b')" a="$SCL" b="$SEX")" 0 \
  "... and neither triggered a run"
SCS=$(mk_session "$ENV" "ended-$U" '{"basePayload":{}}')
RCS=$(ensure1 "$ENV" "$SCS" | cut -d' ' -f1)
sql "UPDATE sessions SET closed_at = now() WHERE id = :'s'" s="$SCS" >/dev/null
claim swap-bus "$ENV" "$SCS" "$RCS" 1 continuation
ok "run.swap of a closed session is ERR_CONFLICT, and triggers nothing" \
  grep -q '^err .* ERR_CONFLICT the session is closed' <<<"$OUT"
is "$(sql "SELECT count(*) FROM task_runs WHERE session_id = :'s'" s="$SCS")" 1 "... (its one run only)"

# ---------------------------------------------------------------- worker API: dequeue, tokens
api POST /api/v1/workers/dequeue '{"taskIdentifiers":["x"]}' nope
is "$CODE" 401 "dequeue without a valid key is 401"
api POST /api/v1/workers/dequeue '{"maxRuns":1}'
is "$CODE" 400 "dequeue without taskIdentifiers is 400"
api POST /api/v1/workers/dequeue '{"taskIdentifiers":["x"],"maxRuns":51}'
is "$CODE $(j .error)" "400 maxRuns must be an integer from 1 to 50" "maxRuns above 50 is 400"
api POST /api/v1/workers/dequeue '{"taskIdentifiers":["x"],"waitSeconds":61}'
is "$CODE" 400 "waitSeconds above 60 is 400"
api POST /api/v1/workers/dequeue '{"taskIdentifiers":[]}'
is "$CODE" 400 "an empty taskIdentifiers is 400"

dequeue "agent-$U" '"maxRuns":1,"workerId":"w1"'
is "$CODE/$(j '.runs | length')" "200/1" "maxRuns 1 hands out one run of the two queued"
FIRST=$BODY
dequeue "agent-$U" '"maxRuns":5,"workerId":"w1"'
is "$CODE" 200 "dequeue answers 200"
BODY=$(jq -sc '{runs: (.[0].runs + .[1].runs), workerId: .[1].workerId}' <<<"$FIRST$BODY")
is "$(j '[.runs[].id] | sort | join(",")')" "$(printf '%s\n' "$R1" "$R2" | sort | paste -sd,)" \
  "it hands out the two claimed runs, never a loser's"
is "$(j .workerId)" w1 "the answer names the worker"
ITEM=$(jq -c --arg r "$R1" '.runs[] | select(.id == $r)' <<<"$BODY")
is "$(jq -r '[.taskIdentifier, .attempt, .maxAttempts, .sessionId, .sessionKey, .idleTimeoutInSeconds, .payload.keep] | join(" ")' <<<"$ITEM")" \
  "agent-$U 1 2 session_$S1 ext-$U-1 30 1" "a run carries task, attempt, maxAttempts, session, key, idle timeout and payload"
TOK1=$(jq -r .token <<<"$ITEM")
is "$(jwt_scopes "$TOK1" | sort | paste -sd' ')" \
  "$(printf '%s\n' "read:runs:$R1" "write:runs:$R1" "read:sessions:ext-$U-1" "write:sessions:ext-$U-1" \
    "read:sessions:session_$S1" "write:sessions:session_$S1" | sort | paste -sd' ')" \
  "the run token: read/write on the run and on the session (addressing key and friendly id)"
is "$(run_field "$R1" "status || ' ' || lease_owner")" "DEQUEUED w1" "a dequeued run is DEQUEUED, leased to the worker"
dequeue "agent-$U"
is "$(j '.runs | length')" 0 "nothing else is queued for the task"

api GET "/api/v1/sessions/session_$S1" "" "$TOK1"
ok "the run token is a token of the environment (the gateway accepts it)" test "$CODE" != 401

# ---------------------------------------------------------------- heartbeat, get, complete
api POST "/api/v1/runs/$R1/heartbeat" '{"workerId":"w1","leaseSeconds":120}' "$TOK1"
is "$CODE $BODY" "200 {}" "heartbeat with the run token is 200 {}"
is "$(run_field "$R1" "status || ' ' || (lease_expires_at > now() + interval '100 seconds')")" "EXECUTING true" \
  "the heartbeat made it EXECUTING and extended the lease (leaseSeconds 120)"
api POST "/api/v1/runs/$R1/heartbeat" '{"workerId":"w2"}' "$TOK1"
is "$CODE $(j .error)" "409 run is no longer leased to this worker" "a heartbeat from another worker is 409"
ok "... with x-should-retry: false" grep -qi '^x-should-retry: false' <<<"$HDRS"
api POST "/api/v1/runs/$R2/heartbeat" '{"workerId":"w1"}' "$TOK1"
is "$CODE" 403 "the token of one run cannot heartbeat another"
api POST "/api/v1/runs/$R1/heartbeat" 'not json' "$TOK1"
is "$CODE" 400 "a heartbeat body that is not JSON is 400"
api POST "/api/v1/runs/$R1/heartbeat" "" "$TOK1"
is "$CODE" 200 "an empty heartbeat body is fine (no owner check, default lease)"

api GET "/api/v3/runs/$R1" "" "$TOK1"
is "$CODE" 200 "runs.retrieve with the run token is 200"
is "$(j '[.id, .status, .taskIdentifier, .isExecuting, .isQueued, .isCompleted, .attemptCount, .payload.sessionId, (.tags | join("+")), .sessionId] | join(" ")')" \
  "$R1 EXECUTING agent-$U true false false 1 session_$S1 t1+t2 session_$S1" \
  "the run object: id, public status, task, flags, attemptCount, payload, tags"
ok "the SDK's RetrieveRunResponse schema accepts it (EXECUTING)" sdk_parses
ok "... with the fields the SDK's RetrieveRunResponse requires" \
  jq_ok 'has("createdAt") and has("updatedAt") and has("startedAt") and (.isTest == false) and (.costInCents == 0) and (.baseCostInCents == 0) and (.durationMs == 0) and (.depth == 0) and (.triggerFunction == "trigger") and (.relatedRuns == {}) and (.isWaiting == false) and (.isSuccess == false) and (.isFailed == false) and (.isCancelled == false) and (.createdAt | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z$"))'
api GET "/api/v3/runs/$R2" "" "$TOK1"
is "$CODE" 403 "the token of one run cannot read another"
api GET "/api/v3/runs/run_$(new_cuid)"
is "$CODE $(j .error)" "404 Run not found" "an unknown run is 404"
api GET "/api/v3/runs/$R1" "" "$KEY2"
is "$CODE" 404 "a run of another environment is 404 to that environment's key"
api POST "/api/v2/runs/$R1/cancel" "" "$KEY2"
is "$CODE" 404 "... and cannot be cancelled from there"

api POST "/api/v1/runs/$R1/complete" '{"workerId":"w1","output":{"answer":42}}' "$TOK1"
is "$CODE $BODY" "200 {}" "complete is 200 {}"
api GET "/api/v3/runs/$R1"
is "$(j '[.status, .isCompleted, .isSuccess, .output.answer, (.finishedAt != null)] | join(" ")')" \
  "COMPLETED true true 42 true" "a completed run: COMPLETED, isSuccess, output, finishedAt"
ok "... which the SDK's schema accepts" sdk_parses
api POST "/api/v1/runs/$R1/complete" '{"workerId":"w1","output":1}' "$TOK1"
is "$CODE" 409 "completing it again is 409"
api POST "/api/v1/runs/$R1/heartbeat" '{"workerId":"w1"}' "$TOK1"
is "$CODE" 409 "a heartbeat on a finished run is 409"

# ---------------------------------------------------------------- continuation of a dead run
read -r R1B TRIG <<<"$(ensure1 "$ENV" "$S1" continuation)"
is "$TRIG" 1 "ensure on a session whose run completed triggers a new run"
ok "... a different run" test "$R1B" != "$R1"
P=$(run_field "$R1B" payload::text)
is "$(jq -c '{chatId, keep, sessionId, continuation, previousRunId, idleTimeoutInSeconds, m: has("message"), ms: has("messages"), t: has("trigger")}' <<<"$P")" \
  "{\"chatId\":\"c1\",\"keep\":1,\"sessionId\":\"session_$S1\",\"continuation\":true,\"previousRunId\":\"$R1\",\"idleTimeoutInSeconds\":30,\"m\":false,\"ms\":false,\"t\":false}" \
  "the continuation's payload: continuation, previousRunId, and no message/messages/trigger"
is "$(sql "SELECT string_agg(reason, ',' ORDER BY triggered_at) FROM session_runs WHERE session_id = :'s'" s="$S1")" \
  "initial,continuation" "session_runs records both runs with their reasons"

# ---------------------------------------------------------------- fail and retry
dequeue "agent-$U" '"workerId":"w3"'
is "$(j '.runs[0].id') $(j '.runs[0].attempt')" "$R1B 1" "the continuation is dequeued (attempt 1)"
TOK=$(j '.runs[0].token')
api POST "/api/v1/runs/$R1B/fail" '{"workerId":"w3","error":{"message":"boom","name":"Error"}}' "$TOK"
is "$CODE $BODY" '200 {"retrying":true}' "a failure with attempts left is retried"
is "$(run_field "$R1B" "status || ' ' || attempt || ' ' || (lease_owner IS NULL)")" "PENDING 2 true" \
  "... queued again as attempt 2"
api GET "/api/v3/runs/$R1B"
is "$(j '[.status, .isQueued, .error.message] | join(" ")')" "QUEUED true boom" "runs.retrieve shows it QUEUED with the error"
ok "... which the SDK's schema accepts" sdk_parses
dequeue "agent-$U" '"workerId":"w3"'
is "$(j '.runs[0].id') $(j '.runs[0].attempt')" "$R1B 2" "attempt 2 is dequeued"
api POST "/api/v1/runs/$R1B/fail" '{"workerId":"w3","error":"plain text"}' "$(j '.runs[0].token')"
is "$CODE $BODY" '200 {"retrying":false}' "the last attempt's failure is final"
api GET "/api/v3/runs/$R1B"
is "$(j '[.status, .isFailed, .isCompleted, .error.message, .attemptCount] | join(" ")')" \
  "FAILED true true plain text 2" "runs.retrieve: FAILED, error as SerializedError, attemptCount 2"
ok "... which the SDK's schema accepts" sdk_parses

# ---------------------------------------------------------------- cancel
read -r R1C _ <<<"$(ensure1 "$ENV" "$S1" continuation)"
dequeue "agent-$U" '"workerId":"w4"'
TOK=$(j '.runs[0].token')
is "$(j '.runs[0].id')" "$R1C" "a new continuation after the failure is dequeued"
api POST "/api/v2/runs/$R1C/cancel" "" "$TOK"
is "$CODE $BODY" "200 {\"id\":\"$R1C\"}" "runs.cancel with the run token is 200 {id}"
api POST "/api/v1/runs/$R1C/heartbeat" '{"workerId":"w4"}' "$TOK"
is "$CODE" 409 "a heartbeat after cancel is 409"
api GET "/api/v3/runs/$R1C"
is "$(j '[.status, .isCancelled, .isCompleted, .isFailed] | join(" ")')" "CANCELED true true false" "runs.retrieve: CANCELED"
ok "... which the SDK's schema accepts" sdk_parses
api POST "/api/v2/runs/$R1C/cancel"
is "$CODE" 200 "cancelling a cancelled run is still 200"

# ---------------------------------------------------------------- swap (end-and-continue)
S3=$(mk_session "$ENV" "swap-$U" '{"basePayload":{"message":"m","k":3}}')
read -r R3 _ <<<"$(ensure1 "$ENV" "$S3")"
dequeue "swap-$U" '"workerId":"agent"' # the caller of end-and-continue is a running run
is "$(j '.runs[0].id')" "$R3" "the session's run is running"
claim swap-threads "$ENV" "$S3" "$R3" 2 manual
is "$CLAIM_RC" 0 "two concurrent swaps of the current run both answer"
is "$(awk '/^ok / && $4 == 1' <<<"$OUT" | wc -l)" 1 "... exactly one swapped"
R3W=$(awk '/^ok / && $4 == 1 {print $3}' <<<"$OUT")
is "$(awk '/^ok / && $4 == 0 {print $3}' <<<"$OUT")" "$R3W" "... the other answers the winner's run, swapped false"
is "$(current_run "$S3")" "$R3W" "the session points at the winner"
is "$(sql "SELECT count(*) FROM task_runs WHERE session_id = :'s' AND status = 'CANCELED'
           AND error->>'message' = 'lost session-run claim race'" s="$S3")" 1 "the losing swap's run is CANCELED"
is "$(run_status "$R3")" DEQUEUED "the calling run is left to end itself"
is "$(jq -c '{continuation, previousRunId, k, m: has("message")}' <<<"$(run_field "$R3W" payload::text)")" \
  "{\"continuation\":true,\"previousRunId\":\"$R3\",\"k\":3,\"m\":false}" "the swapped-in run is a continuation of the caller"
is "$(sql "SELECT string_agg('run_' || run_id || ' ' || reason, ',' ORDER BY triggered_at) FROM session_runs WHERE session_id = :'s'" s="$S3")" \
  "$R3 initial,$R3W manual" "session_runs: the initial run and the swap winner"
claim swap-bus "$ENV" "$S3" "$R3" 1 continuation
is "$(awk '/^ok /{print $3, $4}' <<<"$OUT")" "$R3W 0" "a caller that is no longer the current run gets swapped false and the current run"
is "$(live_runs "$S3")" 2 "... its own new run was cancelled (live: the current run and the old caller)"
claim swap-bus "$ENV" "$S3" "run_$(new_cuid)" 1 manual
ok "an unknown callingRunId is ERR_NOTFOUND with the contract's text" \
  grep -q '^err .* ERR_NOTFOUND callingRunId not found in this environment' <<<"$OUT"
claim swap-bus "$ENV2" "$S3" "$R3W" 1 manual
ok "a callingRunId of another environment is ERR_NOTFOUND too" grep -q "ERR_NOTFOUND callingRunId" <<<"$OUT"

# ---------------------------------------------------------------- long-poll
T_LP="lp-$U"
S4=$(mk_session "$ENV" "$T_LP" '{"basePayload":{}}')
t0=$(now_ms)
api POST /api/v1/workers/dequeue "{\"taskIdentifiers\":[\"$T_LP\"],\"waitSeconds\":1}"
el=$(($(now_ms) - t0))
is "$CODE $(j '.runs | length')" "200 0" "a long-poll with nothing queued answers {runs: []} ..."
ok "... at its deadline (${el} ms for waitSeconds 1)" test "$el" -ge 900 -a "$el" -lt 2500
(
  curl -s --max-time 30 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data "{\"taskIdentifiers\":[\"other-$U\",\"$T_LP\"],\"waitSeconds\":20,\"workerId\":\"lp\"}" \
    "$TREE_URL/api/v1/workers/dequeue" >"$TREE_DIR/lp.json"
  now_ms >"$TREE_DIR/lp.t"
) &
LP=$!
sleep 1
t0=$(now_ms)
read -r R4 _ <<<"$(ensure1 "$ENV" "$S4")"
wait "$LP"
el=$(($(cat "$TREE_DIR/lp.t") - t0))
is "$(jq -r '.runs[0].id' "$TREE_DIR/lp.json")" "$R4" "a waiting dequeue gets the run queued while it waits"
ok "... within a second of the run being queued (${el} ms)" test "$el" -lt 1000
# an idle wait polls the run-manager every 2 s, not in a loop: watch its run.dequeue on the tap
TRACE=$(tr -dc 'a-f0-9' </dev/urandom | head -c 32)
ctl tap --trace "$TRACE" --type run.dequeue --seconds 4.5 >"$TREE_DIR/tap.out" 2>/dev/null &
TAP=$!
sleep 1 # the tap dials every process
curl -s --max-time 30 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -H "traceparent: 00-$TRACE-0123456789abcdef-01" \
  --data "{\"taskIdentifiers\":[\"idle-$U\"],\"waitSeconds\":3}" \
  "$TREE_URL/api/v1/workers/dequeue" >/dev/null
wait "$TAP"
NDQ=$(jq -r 'select(.proc | startswith("gateway")) | select(.dir == "out" and .kind == "request") | .req' "$TREE_DIR/tap.out" | sort -u | wc -l)
ok "an idle 3 s long-poll asks the run-manager 1-3 times, not in a loop ($NDQ)" test "$NDQ" -ge 1 -a "$NDQ" -le 3

# a client that leaves mid-wait does not strand a run: it is given back or left queued
curl -s --max-time 1 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  --data "{\"taskIdentifiers\":[\"gone-$U\"],\"waitSeconds\":30,\"workerId\":\"gone\"}" \
  "$TREE_URL/api/v1/workers/dequeue" >/dev/null
S5=$(mk_session "$ENV" "gone-$U" '{"basePayload":{}}')
read -r R5 _ <<<"$(ensure1 "$ENV" "$S5")"
ok "a run queued after its waiter left stays (or goes back) to QUEUED" wait_for 3000 status_is "$R5" PENDING
dequeue "gone-$U"
is "$(j '.runs[0].id')" "$R5" "... and the next worker gets it"

# ---------------------------------------------------------------- lease expiry, crash
S6=$(mk_session "$ENV" "lease-$U" '{"basePayload":{"message":"first"},"maxAttempts":2}')
read -r R6 _ <<<"$(ensure1 "$ENV" "$S6")"
dequeue "lease-$U" '"leaseSeconds":1,"workerId":"dies"'
is "$(j '.runs[0].id')" "$R6" "a run is dequeued with a 1 s lease"
TOK=$(j '.runs[0].token')
ok "without heartbeats the sweep takes it back as attempt 2" \
  wait_for 4000 field_is "$R6" "status || ' ' || attempt" "PENDING 2"
api POST "/api/v1/runs/$R6/heartbeat" '{"workerId":"dies"}' "$TOK"
is "$CODE" 409 "the worker that lost the lease gets 409"
api POST "/api/v1/runs/$R6/complete" '{"workerId":"dies"}' "$TOK"
is "$CODE" 409 "... and cannot complete it any more"
dequeue "lease-$U" '"leaseSeconds":1,"workerId":"dies-too"'
is "$(j '.runs[0].id') $(j '.runs[0].attempt')" "$R6 2" "attempt 2 is handed out"
ok "its lease expiring on the last attempt makes it CRASHED" wait_for 4000 status_is "$R6" CRASHED
api GET "/api/v3/runs/$R6"
is "$(j '[.status, .isFailed, .error.name] | join(" ")')" "CRASHED true LeaseExpired" "runs.retrieve: CRASHED"
ok "... which the SDK's schema accepts" sdk_parses
read -r R6B TRIG <<<"$(ensure1 "$ENV" "$S6" continuation)"
is "$TRIG $(jq -c '{continuation, previousRunId, m: has("message")}' <<<"$(run_field "$R6B" payload::text)")" \
  "1 {\"continuation\":true,\"previousRunId\":\"$R6\",\"m\":false}" "a crashed run's session gets a continuation"

# ---------------------------------------------------------------- maxDuration, ttl
S7=$(mk_session "$ENV" "dur-$U" '{"basePayload":{},"maxDuration":1}')
read -r R7 _ <<<"$(ensure1 "$ENV" "$S7")"
dequeue "dur-$U" '"workerId":"slow"'
TOK=$(j '.runs[0].token')
ok "a run past its maxDuration is TIMED_OUT" wait_for 4000 status_is "$R7" TIMED_OUT
api POST "/api/v1/runs/$R7/heartbeat" '{"workerId":"slow"}' "$TOK"
is "$CODE" 409 "... and its worker's heartbeat is 409"
S8=$(mk_session "$ENV" "ttl-$U" '{"basePayload":{},"ttl":"1s"}')
read -r R8 _ <<<"$(ensure1 "$ENV" "$S8")"
is "$(run_field "$R8" ttl_s)" 1 "ttl \"1s\" is stored as 1 s"
ok "a run not started within its ttl is EXPIRED" wait_for 4000 status_is "$R8" EXPIRED
api GET "/api/v3/runs/$R8"
is "$(j '[.status, .ttl, (.expiredAt != null)] | join(" ")')" "EXPIRED 1s true" "runs.retrieve: EXPIRED, ttl, expiredAt"
ok "... which the SDK's schema accepts" sdk_parses
S9=$(mk_session "$ENV" "ttl2-$U" '{"basePayload":{},"ttl":"soon"}')
read -r R9 _ <<<"$(ensure1 "$ENV" "$S9")"
is "$(run_field "$R9" "COALESCE(ttl_s::text, 'none')")" none "an unparsable ttl means no ttl"

# ---------------------------------------------------------------- orphans
OR=$(new_cuid)
sql "INSERT INTO task_runs (id, friendly_id, runtime_environment_id, organization_id, project_id,
       task_identifier, session_id, payload, created_at)
     VALUES (:'id', 'run_' || :'id', :'env', 'o', 'p', :'task', :'s', '{}', now() - interval '1 minute')" \
  id="$OR" env="$ENV" task="orphan-$U" s="$S9" >/dev/null
dequeue "orphan-$U"
is "$(j '.runs | length')" 0 "a queued run no session points at is never handed out"
ok "the orphan sweep cancels it" wait_for 3000 status_is "run_$OR" CANCELED
is "$(run_field "run_$OR" "error->>'message'")" "orphaned: no session points at this run (its claim was lost or never made)" \
  "... saying why"

# ---------------------------------------------------------------- kill -9 during a burst
SS=()
for i in $(seq 1 30); do SS+=("$(mk_session "$ENV" "burst-$U" '{"basePayload":{"i":'"$i"'}}')"); done
restarts0=$(child_field run-manager.0 restarts)
(
  export CT_SPREAD_MS=20
  claim bus "$ENV" initial 30 "${SS[@]}"
  printf '%s\n' "$OUT" >"$TREE_DIR/burst.out"
  echo "$CLAIM_RC" >"$TREE_DIR/burst.rc"
) &
BURST=$!
sleep 0.2
ctl_quiet kill run-manager.0 KILL
sleep 0.1
ctl_quiet kill run-manager.1 KILL
wait "$BURST"
is "$(cat "$TREE_DIR/burst.rc")" 0 "every ensure of the burst answered in the end (callers retry)"
ok "run-manager.0 was killed and restarted" \
  wait_for 10000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"run-manager.0\") | .restarts') -gt $restarts0 ]]"
sleep 3.5 # the orphan grace (2 s) and a sweep
IDS=$(printf "'%s'," "${SS[@]}")
IDS=${IDS%,}
is "$(sql "SELECT count(*) FROM sessions s WHERE s.id IN ($IDS) AND (SELECT count(*) FROM task_runs r
           WHERE r.session_id = s.id AND r.status NOT IN ('CANCELED', 'COMPLETED_SUCCESSFULLY',
           'COMPLETED_WITH_ERRORS', 'SYSTEM_FAILURE', 'CRASHED', 'EXPIRED', 'TIMED_OUT')) > 1")" 0 \
  "afterwards no session has more than one live run"
is "$(sql "SELECT count(*) FROM sessions_bound s WHERE s.id IN ($IDS) AND s.current_run_id IS NULL")" 0 \
  "every session of the burst has a current run"
is "$(sql "SELECT count(*) FROM task_runs r WHERE r.session_id IN ($IDS) AND r.status = 'PENDING'
           AND NOT EXISTS (SELECT 1 FROM sessions_bound s WHERE s.id = r.session_id AND s.current_run_id = r.id)")" 0 \
  "no queued run without a session pointing at it survived the orphan grace and a sweep"
is "$(sql "SELECT count(*) FROM task_runs r WHERE r.status = 'PENDING' AND r.session_id IS NOT NULL
           AND r.started_at IS NULL AND r.created_at < now() - interval '3 seconds'
           AND NOT EXISTS (SELECT 1 FROM sessions_bound s WHERE s.id = r.session_id AND s.current_run_id = r.id)")" 0 \
  "... nor anywhere in the database"
diag "burst: $(sql "SELECT count(*) FROM task_runs WHERE session_id IN ($IDS)") runs for 30 sessions; $(grep -c 'run.claim_lost' "$TREE_LOG") lost claims logged in the whole test"

# ---------------------------------------------------------------- logs
ok "no payload text reached a log line" bash -c "! grep -q '$MARK' '$TREE_LOG'"
ok "no sanitizer report in the tree's log" bash -c "! grep -Eq 'AddressSanitizer|runtime error:|LeakSanitizer' '$TREE_LOG'"
tree_stop
is "$TREE_EXIT" 0 "the tree stops cleanly"
is "$TREE_LEFT" "" "no process is left behind"

done_testing
