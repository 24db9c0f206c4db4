# sessions_test.sh - the sessions API over real HTTP and real PostgreSQL: create (validation,
# 201/200, the concurrent-create race), retrieve by either id, PATCH rules, write-once close and
# its race, closed/expired refusals, the §3.5 scope matrix with session tokens, and environments
# kept apart.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
S=$$-$RANDOM
KEY=$(ctl env create --org "ss-$S" --project a --type dev)
KEYB=$(ctl env create --org "ss-$S" --project b --type dev)
PSQL() { psql -tA "$TETHER_PG_URL" -c "$1"; }

# post PATH BODY [AUTH] -> CODE, BODY, HDRS
api() {
  local m=$1 p=$2 body=${3-} auth=${4:-$KEY}
  HDRS=$(mktemp)
  if [[ -n $body ]]; then
    BODY=$(curl -s -X "$m" -D "$HDRS" -H "Authorization: Bearer $auth" -H 'Content-Type: application/json' \
      -H 'Origin: https://app.example' --data-binary "$body" -w '\n%{http_code}' "$TREE_URL$p")
  else
    BODY=$(curl -s -X "$m" -D "$HDRS" -H "Authorization: Bearer $auth" -H 'Origin: https://app.example' \
      -w '\n%{http_code}' "$TREE_URL$p")
  fi
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
hdr() { grep -i "^$1:" "$HDRS" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
TC='"triggerConfig":{"basePayload":{"hello":"world","message":"first turn"},"idleTimeoutInSeconds":30}'

# --- create and its validation
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"  chat-$S  \",\"taskIdentifier\":\"echo\",$TC,\"tags\":[\"x\"],\"metadata\":{\"m\":1}}"
is "$CODE" 201 "a new session is 201"
SID=$(jq -r .id <<<"$BODY")
RUN=$(jq -r .runId <<<"$BODY")
TOKEN=$(jq -r .publicAccessToken <<<"$BODY")
ok "it has a friendly id, a run and a token" bash -c "[[ '$SID' =~ ^session_c[0-9a-z]{24}$ && '$RUN' =~ ^run_ && -n '$TOKEN' ]]"
is "$(jq -r .externalId <<<"$BODY")" "chat-$S" "externalId is trimmed"
is "$(jq -r '[.isCached, .currentRunId == .runId, .triggerConfig.basePayload.hello, .tags[0], .metadata.m] | map(tostring) | join(",")' <<<"$BODY")" \
  "false,true,world,x,1" "the response carries the SessionItem fields"
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"chat-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{\"v\":2}}}"
is "$CODE" 200 "the same externalId again is 200"
is "$(jq -r '[.isCached, .id == "'"$SID"'", .runId == "'"$RUN"'", .triggerConfig.basePayload.v] | map(tostring) | join(",")' <<<"$BODY")" \
  "true,true,true,2" "cached: same row, same live run, triggerConfig refreshed"

for bad in '{}' '{"type":"chat","taskIdentifier":"t"}' \
  "{\"type\":\"chat\",\"taskIdentifier\":\"t\",\"externalId\":\"session_abc\",$TC}" \
  "{\"type\":\"\",\"taskIdentifier\":\"t\",$TC}" \
  '{"type":"chat","taskIdentifier":"t","triggerConfig":{"basePayload":{},"maxAttempts":11}}' \
  '{"type":"chat","taskIdentifier":"t","triggerConfig":{"basePayload":{},"machine":"huge"}}' \
  '{"type":"chat","taskIdentifier":"t","triggerConfig":{"basePayload":{},"tags":["1","2","3","4","5","6","7","8","9","10","11"]}}' \
  '{"type":"chat","taskIdentifier":"t","triggerConfig":{"basePayload":[]}}'; do
  api POST /api/v1/sessions "$bad"
  is "$CODE" 400 "invalid create body is 400: $(cut -c1-60 <<<"$bad")"
done
api POST /api/v1/sessions '{"type":'
is "$CODE $BODY" '400 {"error":"Invalid JSON"}' "invalid JSON is 400"
api POST /api/v1/sessions ' '
is "$CODE" 400 "a blank body is 400"
big=$(head -c 40000 /dev/zero | tr '\0' a)
api POST /api/v1/sessions "{\"type\":\"chat\",\"taskIdentifier\":\"t\",$TC,\"metadata\":{\"b\":\"$big\"}}"
is "$CODE $BODY" '413 {"error":"Request body too large"}' "a body over 32 KiB is 413"
is "$(hdr access-control-allow-origin)" https://app.example "the 413 carries CORS"
api POST /api/v1/sessions "{\"type\":\"chat\",\"taskIdentifier\":\"t\",$TC}" "tr_dev_nosuchkey0000000000"
is "$CODE" 401 "an unknown key is 401 before anything else"

# --- the create race: 50 concurrent first calls with one externalId
RACE="race-$S"
PIDS=()
for i in $(seq 1 50); do
  curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Authorization: Bearer $KEY" \
    --data-binary "{\"type\":\"chat\",\"externalId\":\"$RACE\",\"taskIdentifier\":\"echo\",$TC}" \
    "$TREE_URL/api/v1/sessions" &
  PIDS+=($!)
done >"$TREE_DIR/race.codes"
wait "${PIDS[@]}" # not a bare wait: that would wait for the tree too
is "$(grep -c '^201$' "$TREE_DIR/race.codes")" 1 "50 concurrent creates: exactly one 201"
is "$(grep -c '^200$' "$TREE_DIR/race.codes")" 49 "and 49 cached 200s"
RSID=$(PSQL "SELECT id FROM sessions WHERE external_id = '$RACE'")
is "$(PSQL "SELECT count(*) FROM sessions WHERE external_id = '$RACE'")" 1 "one session row"
is "$(PSQL "SELECT count(*) FROM task_runs WHERE session_id = '$RSID' AND status NOT IN ('CANCELED','INTERRUPTED','COMPLETED_SUCCESSFULLY','COMPLETED_WITH_ERRORS','SYSTEM_FAILURE','CRASHED','EXPIRED','TIMED_OUT')")" \
  1 "exactly one live run"
is "$(PSQL "SELECT count(*) FROM task_runs r JOIN sessions_bound s ON s.id = r.session_id WHERE s.id = '$RSID' AND r.id <> s.current_run_id AND r.status <> 'CANCELED'")" \
  0 "every losing run is CANCELED"
is "$(PSQL "SELECT count(*) FROM session_runs WHERE session_id = '$RSID'")" 1 "session_runs holds only the winner"
is "$(PSQL "SELECT count(*) FROM session_runs sr JOIN sessions_bound s ON s.id = sr.session_id WHERE s.id = '$RSID' AND sr.run_id = s.current_run_id")" \
  1 "and it is the current run"

# --- retrieve
api GET "/api/v1/sessions/chat-$S"
is "$CODE" 200 "GET by externalId"
is "$(jq -r .id <<<"$BODY")" "$SID" "finds the session"
api GET "/api/v1/sessions/$SID"
is "$(jq -r .externalId <<<"$BODY")" "chat-$S" "GET by friendly id finds the same row"
is "$(jq -r .currentRunId <<<"$BODY")" "$RUN" "currentRunId is the friendly run id"
api GET /api/v1/sessions/session_cnosuchsession0000000000000
is "$CODE $BODY" '404 {"error":"Not found"}' "an unknown session is 404"
is "$(hdr x-should-retry)" false "with x-should-retry: false"

# --- the scope matrix (§3.5) with the session token minted on the externalId
api GET "/api/v1/sessions/chat-$S" "" "$TOKEN"
is "$CODE" 200 "session token: GET by externalId"
api GET "/api/v1/sessions/$SID" "" "$TOKEN"
is "$CODE" 200 "session token: GET by friendly id (row-derived ids authorize both forms)"
api PATCH "/api/v1/sessions/chat-$S" '{"tags":["z"]}' "$TOKEN"
is "$CODE" 403 "session token: PATCH is 403 (needs admin)"
is "$(jq -r '[.code,.param,.type]|join(",")' <<<"$BODY")" unauthorized,access_token,authorization "403 body of the contract"
api POST "/api/v1/sessions/chat-$S/close" '{}' "$TOKEN"
is "$CODE" 403 "session token: close is 403"
api POST /api/v1/sessions "{\"type\":\"chat\",\"taskIdentifier\":\"echo\",$TC}" "$TOKEN"
is "$CODE" 403 "session token: create is 403 (needs write:sessions or write:tasks)"
api PATCH /api/v1/sessions/session_cnosuchsession0000000000000 '{"tags":[]}' "$TOKEN"
is "$CODE" 403 "an action route answers 403 before 404"
api GET /api/v1/sessions/session_cnosuchsession0000000000000 "" "$TOKEN"
is "$CODE" 404 "a loader route answers 404 before 403"
api GET "/api/v1/sessions/chat-$S" "" "$KEYB"
is "$CODE" 404 "another environment's key cannot see the session"

# --- PATCH rules
api PATCH "/api/v1/sessions/chat-$S" '{"tags":["p","q"],"metadata":{"k":"v"}}'
is "$(jq -c '[.tags,.metadata]' <<<"$BODY")" '[["p","q"],{"k":"v"}]' "PATCH replaces tags and metadata"
api PATCH "/api/v1/sessions/chat-$S" '{"externalId":"another"}'
is "$CODE" 422 "changing externalId is 422"
api PATCH "/api/v1/sessions/chat-$S" "{\"externalId\":\"chat-$S\",\"metadata\":null}"
is "$CODE $(jq -c .metadata <<<"$BODY")" "200 null" "the same externalId is a no-op; metadata null clears"
api PATCH /api/v1/sessions/nobody-here '{"tags":[]}'
is "$CODE $BODY" '404 {"error":"Session not found"}' "PATCH of a missing session is 404"

# --- close: write-once, and races keep the first
api POST "/api/v1/sessions/chat-$S/close" '{"reason":7}'
is "$CODE $BODY" '400 {"error":"Validation error: Expected string at \"reason\""}' "a close reason that is no string is 400 naming it"
api POST "/api/v1/sessions/chat-$S/close" "{\"reason\":\"$(head -c 257 /dev/zero | tr '\0' r)\"}"
is "$CODE $BODY" '400 {"error":"Validation error: String must contain at most 256 character(s) at \"reason\""}' "a reason over 256 is 400"
api POST "/api/v1/sessions/chat-$S/close" '{"reason":"first"}'
is "$CODE $(jq -r .closedReason <<<"$BODY")" "200 first" "close"
AT=$(jq -r .closedAt <<<"$BODY")
api POST "/api/v1/sessions/$SID/close" '{"reason":"second"}'
is "$(jq -r '[.closedAt,.closedReason]|join(",")' <<<"$BODY")" "$AT,first" "a second close keeps the first closedAt and reason"
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"chat-$S\",\"taskIdentifier\":\"echo\",$TC}"
is "$CODE" 409 "create on a closed session is 409"
is "$(hdr x-should-retry)" false "with x-should-retry: false"
is "$(jq -r .code <<<"$BODY")" session_closed "and code session_closed"
api POST "/api/v1/sessions/chat-$S/end-and-continue" "{\"callingRunId\":\"$RUN\",\"reason\":\"upgrade\"}"
is "$CODE" 400 "end-and-continue on a closed session is 400"

CR="close-race-$S"
PIDS=()
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"$CR\",\"taskIdentifier\":\"echo\",$TC}"
for i in $(seq 1 10); do
  curl -s -X POST -H "Authorization: Bearer $KEY" --data-binary "{\"reason\":\"r$i\"}" \
    "$TREE_URL/api/v1/sessions/$CR/close" | jq -r '[.closedAt,.closedReason]|join(",")' &
  PIDS+=($!)
done >"$TREE_DIR/close.out"
wait "${PIDS[@]}"
is "$(sort -u "$TREE_DIR/close.out" | wc -l)" 1 "10 concurrent closes all return the winner's closedAt and reason"

api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"exp-$S\",\"taskIdentifier\":\"echo\",$TC,\"expiresAt\":\"2020-01-01T00:00:00.000Z\"}"
is "$CODE" 409 "create of an expired session is 409"

# --- end-and-continue: one winner; a caller that is not current gets swapped: false
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"eac-$S\",\"taskIdentifier\":\"echo\",$TC}"
CUR=$(jq -r .runId <<<"$BODY")
PIDS=()
for i in 1 2; do
  curl -s -X POST -H "Authorization: Bearer $KEY" --data-binary "{\"callingRunId\":\"$CUR\",\"reason\":\"upgrade\"}" \
    "$TREE_URL/api/v1/sessions/eac-$S/end-and-continue" | jq -r .swapped &
  PIDS+=($!)
done >"$TREE_DIR/eac.out"
wait "${PIDS[@]}"
is "$(sort "$TREE_DIR/eac.out" | tr '\n' ' ')" "false true " "two racing end-and-continue callers: one wins"
api POST "/api/v1/sessions/eac-$S/end-and-continue" "{\"callingRunId\":\"$CUR\",\"reason\":\"upgrade\"}"
is "$(jq -r .swapped <<<"$BODY")" false "the old run is no longer current: swapped false"
api POST "/api/v1/sessions/eac-$S/end-and-continue" '{"callingRunId":"run_cnosuchrun00000000000000000","reason":"manual"}'
is "$CODE" 404 "an unknown callingRunId is 404"

tree_stop
is "$TREE_LEFT" "" "nothing left running"

# --- kill -9 of the run-manager in the middle of a burst of creates (clients retry, as the SDK
# does on 5xx): afterwards every session has at most one live run, and no queued run is left
# that no session points at once the orphan sweep has run
tree_start TETHER_RM_ORPHAN_GRACE=2s
KEY=$(ctl env create --org "chaos-$S" --project p --type dev)
PIDS=()
for i in $(seq 1 30); do
  curl -s -o /dev/null -w '%{http_code}\n' --retry 5 --retry-delay 1 --retry-all-errors -X POST \
    -H "Authorization: Bearer $KEY" \
    --data-binary "{\"type\":\"chat\",\"externalId\":\"burst-$S-$i\",\"taskIdentifier\":\"echo\",$TC}" \
    "$TREE_URL/api/v1/sessions" &
  PIDS+=($!)
  ((i == 10)) && kill -9 "$(child_field run-manager pid)"
done >"$TREE_DIR/burst.codes"
wait "${PIDS[@]}"
is "$(grep -cE '^20[01]$' "$TREE_DIR/burst.codes")" 30 "every create of the burst eventually succeeded"
ENVID=$(PSQL "SELECT id FROM runtime_environments WHERE api_key = '$KEY'")
LIVE="status NOT IN ('CANCELED','INTERRUPTED','COMPLETED_SUCCESSFULLY','COMPLETED_WITH_ERRORS','SYSTEM_FAILURE','CRASHED','EXPIRED','TIMED_OUT')"
orphans() {
  PSQL "SELECT count(*) FROM task_runs r JOIN sessions_bound s ON s.id = r.session_id
        WHERE r.runtime_environment_id = '$ENVID' AND r.status = 'PENDING'
          AND s.current_run_id IS DISTINCT FROM r.id"
}
diag "queued runs no session points at, right after the burst: $(orphans)"
ok "none survive the orphan grace plus a sweep" wait_for 6000 bash -c "[[ \$(psql -tA '$TETHER_PG_URL' -c \"SELECT count(*) FROM task_runs r JOIN sessions_bound s ON s.id = r.session_id WHERE r.runtime_environment_id = '$ENVID' AND r.status = 'PENDING' AND s.current_run_id IS DISTINCT FROM r.id\") == 0 ]]"
# a run triggered just before the kill, whose claim never happened, is live (PENDING) until that
# sweep cancels it - and is never handed to a worker meanwhile; after it, one live run per session
is "$(PSQL "SELECT count(*) FROM (SELECT session_id FROM task_runs WHERE runtime_environment_id = '$ENVID' AND $LIVE GROUP BY session_id HAVING count(*) > 1) x")" \
  0 "no session has more than one live run"
is "$(PSQL "SELECT count(*) FROM sessions_bound WHERE runtime_environment_id = '$ENVID' AND current_run_id IS NULL")" \
  0 "every session of the burst points at a run"
tree_stop
done_testing
