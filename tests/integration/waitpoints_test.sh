# waitpoints_test.sh - the waitpoint-registry end to end: session-channel waits (§5.10: 404s,
# race-check from lastSeqNum + 1, idempotency, the Redis TTL that only grows, 10 waiters woken
# by one append), tokens (create, complete write-once, retrieve, list), timeouts by duration and
# by date, durations, a run that suspends and resumes on another worker with the output, the
# reconciliation sweep after a kill -9 of the registry between append and drain, timeouts that
# fire once across a kill -9, and bad input that writes nothing.
. "$(dirname "$0")/../lib/itest.sh"

PSQL=$(command -v psql || printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
sql() {
  local q=$1
  shift
  local vars=()
  for v in "$@"; do vars+=(-v "$v"); done
  "$PSQL" -X -qtA -d "$TETHER_PG_URL" "${vars[@]}" <<<"$q"
}
RCLI=$(command -v redis-cli)
rcli() { "$RCLI" -u "$TETHER_REDIS_URL" "$@"; }
U="w$$x$RANDOM"
api() { # api METHOD PATH [BODY] [CREDENTIAL]: sets CODE and BODY
  local args=(-s -o "$TREE_DIR/api.body" -w '%{http_code}' --max-time 30 -X "$1"
    -H "Authorization: Bearer ${4:-$KEY}")
  [[ -n ${3:-} ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  CODE=$(curl "${args[@]}" "$TREE_URL$2")
  BODY=$(cat "$TREE_DIR/api.body")
}
j() { jq -r "$1" <<<"$BODY"; }
wp_status() { sql "SELECT status FROM waitpoints WHERE friendly_id = :'w'" w="$1"; }
wp_is() { [[ $(wp_status "$1") == "$2" ]]; }
wp_count() { sql "SELECT count(*) FROM waitpoints WHERE runtime_environment_id = :'e'" e="$ENV"; }
new_cuid() { printf 'c%s' "$(tr -dc 'a-z0-9' </dev/urandom | head -c 24)"; }
mk_session() { # mk_session EXTERNAL_ID: a session row (no run), prints its id
  local id
  id=$(new_cuid)
  sql "INSERT INTO sessions (id, friendly_id, external_id, type, project_id, runtime_environment_id,
         organization_id, environment_type, task_identifier, trigger_config)
       SELECT :'id', 'session_' || :'id', :'ext', 'chat.agent', e.project_id, e.id,
         e.organization_id, e.type, :'task', '{\"basePayload\":{}}'::jsonb
       FROM runtime_environments e WHERE e.id = :'env'" id="$id" ext="$1" task="stask-$U" env="$ENV" >/dev/null
  printf '%s' "$id"
}
mk_run() { # mk_run [TASK]: a queued run (no session), prints its friendly id
  local id
  id=$(new_cuid)
  sql "INSERT INTO task_runs (id, friendly_id, runtime_environment_id, organization_id, project_id,
         task_identifier, payload) SELECT :'id', 'run_' || :'id', e.id, e.organization_id,
         e.project_id, :'task', '{}'::jsonb FROM runtime_environments e WHERE e.id = :'env'" \
    id="$id" task="${1:-wtask-$U}" env="$ENV" >/dev/null
  printf 'run_%s' "$id"
}
append() { # append KEY IO TEXT
  api POST "/realtime/v1/sessions/$1/$2/append" "$3"
}
ssw() { # ssw RUN BODY [CREDENTIAL]
  api POST "/api/v1/runs/$1/session-streams/wait" "$2" "${3:-}"
}

tree_start TETHER_WP_SWEEP_INTERVAL=2s
J=$(ctl env create --org "wp-$U" --project p --type dev --json)
ENV=$(jq -r .id <<<"$J")
KEY=$(jq -r .api_key <<<"$J")
J2=$(ctl env create --org "wp-$U" --project q --type dev --json)
KEY2=$(jq -r .api_key <<<"$J2")
ok "an environment to work in" test -n "$ENV" -a -n "$KEY"
R=$(mk_run "other-$U") # the run the channel waits belong to (never dequeued here)

# ------------------------------------------------------------------ §5.10 404s and bad input
S1=$(mk_session "chat-$U-1")
ssw "run_cnotarunatall00000000000" '{"session":"chat-'$U'-1","io":"in"}'
is "$CODE $(j .error)" "404 Run not found" "a wait for an unknown run: 404 Run not found"
ssw "$R" '{"session":"chat-'$U'-1","io":"in"}' "$KEY2"
is "$CODE" 404 "a run of another environment: 404"
ssw "$R" '{"session":"session_cnotasession000000000000","io":"in"}'
is "$CODE $(j .error)" "404 Session not found" "a friendly session id with no row: 404 Session not found"
BEFORE=$(wp_count)
for bad in '{"io":"in"}' '{"session":"x","io":"up"}' '{"session":"","io":"in"}' \
  '{"session":"x","io":"in","timeout":"soon"}' '{"session":"x","io":"in","timeout":5}' \
  '{"session":"x","io":"in","lastSeqNum":-1}' '{"session":"x","io":"in","lastSeqNum":1.5}' \
  '{"session":"x","io":"in","idempotencyKey":7}' '{"session":"x","io":"in","tags":[1]}' \
  "{\"session\":\"x\",\"io\":\"in\",\"idempotencyKey\":\"$(head -c 2049 /dev/zero | tr '\0' k)\"}"; do
  ssw "$R" "$bad"
  is "$CODE" 400 "bad wait body $bad: 400"
done
ssw "$R" '{"session":"x","io":"in","tags":["a","b","c","d","e","f","g","h","i","j","k"]}'
is "$CODE" 422 "11 tags: 422"
ssw "$R" "{\"session\":\"x\",\"io\":\"in\",\"tags\":[\"$(head -c 129 /dev/zero | tr '\0' t)\"]}"
is "$CODE" 422 "a tag over 128 characters: 422"
is "$(wp_count)" "$BEFORE" "... and no bad request wrote a waitpoint"

# ------------------------------------------------------------------ race-check and drain
append "chat-$U-1" in '{"m":"first"}'
is "$CODE" 200 "a record lands on .in before anyone waits"
ssw "$R" '{"session":"chat-'$U'-1","io":"in"}'
W0=$(j .waitpointId)
is "$CODE $(j .isCached)" "200 false" "a waiter registered after the record: 200, not cached"
is "$(wp_status "$W0")" COMPLETED "... it completed at once (race-check from seq 0)"
is "$(sql "SELECT output FROM waitpoints WHERE friendly_id = :'w'" w="$W0")" '{"m":"first"}' \
  "... with that record's envelope data"
ssw "$R" '{"session":"chat-'$U'-1","io":"in","lastSeqNum":0}'
W1=$(j .waitpointId)
is "$(wp_status "$W1")" PENDING "a waiter after lastSeqNum 0 waits for seq 1"
KEYS="tr:ssw:$ENV:chat-$U-1:in"
is "$(rcli SISMEMBER "$KEYS" "${W1#waitpoint_}")" 1 "... registered in the env-scoped Redis set"
FK="$(rcli --scan --pattern "tether:stream:{$ENV:*chat-$U-1}:in" | head -1):followers"
lease() { rcli ZRANGE "$FK" 0 -1 | grep -q '^waitpoint-registry\.'; }
wait_for 3000 lease
ok "... and the registry holds a follow lease on the channel, so its records are published" lease
append "chat-$U-1" in '{"m":"second"}'
wait_for 3000 wp_is "$W1" COMPLETED
ok "one append completes it (drain)" wp_is "$W1" COMPLETED
is "$(sql "SELECT output FROM waitpoints WHERE friendly_id = :'w'" w="$W1")" '{"m":"second"}' \
  "... with the appended record's data"

# 10 waiters on one channel, one append
S2=$(mk_session "chat-$U-2")
WS=()
for i in $(seq 1 10); do
  ssw "$R" '{"session":"chat-'$U'-2","io":"out"}'
  WS+=("$(j .waitpointId)")
done
is "$(sql "SELECT count(*) FROM waitpoints WHERE stream_key = :'k' AND status = 'PENDING'" k="chat-$U-2")" 10 \
  "10 waiters pending on .out"
append "chat-$U-2" out '{"m":"all"}'
all_done() { [[ $(sql "SELECT count(*) FROM waitpoints WHERE stream_key = :'k' AND status = 'COMPLETED'" k="chat-$U-2") == 10 ]]; }
wait_for 3000 all_done
ok "one append on .out wakes all 10" all_done

# TTL only grows; idempotency
S3=$(mk_session "chat-$U-3")
ssw "$R" '{"session":"chat-'$U'-3","io":"in","timeout":"1h"}'
K3="tr:ssw:$ENV:chat-$U-3:in"
T1=$(rcli PTTL "$K3")
ssw "$R" '{"session":"chat-'$U'-3","io":"in","timeout":"10s"}'
T2=$(rcli PTTL "$K3")
ok "a shorter waiter does not shrink the set's TTL ($T1 -> $T2 ms)" test "$T2" -gt 3000000
ssw "$R" '{"session":"chat-'$U'-3","io":"in","timeout":"2h"}'
ok "a longer waiter grows it" test "$(rcli PTTL "$K3")" -gt 3700000
ssw "$R" '{"session":"chat-'$U'-3","io":"in","idempotencyKey":"k-'$U'","idempotencyKeyTTL":"1h"}'
WI=$(j .waitpointId)
ssw "$R" '{"session":"chat-'$U'-3","io":"in","idempotencyKey":"k-'$U'"}'
is "$(j .waitpointId) $(j .isCached)" "$WI true" "the same idempotency key: the same waitpoint, isCached"

# closed session: no new waits
sql "UPDATE sessions SET closed_at = now() WHERE id = :'s'" s="$S3" >/dev/null
ssw "$R" '{"session":"chat-'$U'-3","io":"in"}'
is "$CODE" 409 "a closed session takes no new waits (409)"

# ------------------------------------------------------------------ timeouts
ssw "$R" '{"session":"chat-'$U'-1","io":"in","lastSeqNum":99,"timeout":"1s"}'
WT=$(j .waitpointId)
wait_for 3000 wp_is "$WT" TIMED_OUT
ok "timeout by duration (1s): TIMED_OUT" wp_is "$WT" TIMED_OUT
late=$(sql "SELECT (extract(epoch FROM completed_at - timeout_at) * 1000)::int FROM waitpoints WHERE friendly_id = :'w'" w="$WT")
ok "... fired within 1 s of its due time (${late} ms)" test "$late" -lt 1000
DUE=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%S.000Z)
api POST /api/v1/waitpoints/tokens '{"timeout":"'$DUE'"}'
WD=$(j .id)
is "$CODE" 200 "a token with an ISO date timeout"
wait_for 4000 wp_is "$WD" TIMED_OUT
ok "timeout by date: TIMED_OUT" wp_is "$WD" TIMED_OUT
api GET "/api/v1/waitpoints/tokens/$WD"
is "$(j .status) $(j .outputIsError) $(j '.output | fromjson | .code')" "TIMED_OUT true TRIGGER_WAITPOINT_TIMEOUT" \
  "... retrieve shows the SDK's timeout error"

# ------------------------------------------------------------------ tokens
api POST /api/v1/waitpoints/tokens '{"tags":["t-'$U'"],"idempotencyKey":"tok-'$U'"}'
TK=$(j .id)
is "$CODE $(j .isCached)" "200 false" "create a token"
ok "... with a URL" grep -q "/api/v1/waitpoints/tokens/$TK" <<<"$(j .url)"
api POST /api/v1/waitpoints/tokens '{"idempotencyKey":"tok-'$U'"}'
is "$(j .id) $(j .isCached)" "$TK true" "same idempotency key: the same token"
api GET "/api/v1/waitpoints/tokens?filter%5Bstatus%5D=WAITING&filter%5Btags%5D=t-$U"
is "$(j '.data | length') $(j '.data[0].id')" "1 $TK" "list WAITING with its tag"
api POST "/api/v1/waitpoints/tokens/$TK/complete" '{"data":{"ok":1}}'
is "$CODE $(j .success)" "200 true" "complete it"
api POST "/api/v1/waitpoints/tokens/$TK/complete" '{"data":{"ok":2}}'
is "$CODE" 200 "complete again: 200 ..."
api GET "/api/v1/waitpoints/tokens/$TK"
is "$(j .status) $(j .output)" 'COMPLETED {"ok":1}' "... but the first output stays (write-once)"
api GET "/api/v1/waitpoints/tokens/$TK" "" "$KEY2"
is "$CODE" 404 "another environment's token: 404"
BEFORE=$(wp_count)
for bad in '{"timeout":"later"}' '{"tags":"x","idempotencyKey":3}' '{"timeout":{}}'; do
  api POST /api/v1/waitpoints/tokens "$bad"
  is "$CODE" 400 "bad token body $bad: 400"
done
api POST /api/v1/waitpoints/tokens '{"tags":["1","2","3","4","5","6","7","8","9","10","11"]}'
is "$CODE" 422 "a token with 11 tags: 422"
is "$(wp_count)" "$BEFORE" "... and none wrote a waitpoint"

# ------------------------------------------------------------------ a token's url: the callback
cb() { # cb URL [CURL ARGS...]: POST without a credential; sets CODE and BODY
  local url=$1
  shift
  CODE=$(curl -s -o "$TREE_DIR/api.body" -w '%{http_code}' --max-time 30 -X POST "$@" "$url")
  BODY=$(cat "$TREE_DIR/api.body")
}
api POST /api/v1/waitpoints/tokens '{}'
TC=$(j .id) URL=$(j .url)
ok "a token's url is its callback with a 64-hex hash" \
  grep -Eq "^http://[^/]+/api/v1/waitpoints/tokens/$TC/callback/[0-9a-f]{64}\$" <<<"$URL"
api GET "/api/v1/waitpoints/tokens/$TC"
is "$(j .url)" "$URL" "... the same url when retrieved"
BADURL="${URL%?}$( [[ ${URL: -1} == 0 ]] && echo 1 || echo 0)"
cb "$BADURL" -H 'Content-Type: application/json' --data-binary '{"x":1}'
is "$CODE $(j .error)" "401 Invalid URL, hash doesn't match" "a wrong hash: 401"
cb "${URL%/*}/abc" --data-binary '{"x":1}'
is "$CODE" 401 "a hash of the wrong shape: 401"
cb "${URL%/*/*}/callback/${URL##*/}" --data-binary '{"x":1}' -H 'Authorization: Bearer nonsense'
is "$CODE" 200 "an Authorization header is ignored: the url is the capability ..."
api GET "/api/v1/waitpoints/tokens/$TC"
is "$(j .status) $(j .output)" 'COMPLETED {"x":1}' "... the body is the output"
cb "$URL" --data-binary '{"x":2}'
is "$CODE $(j .success)" "200 true" "the url again: 200 ..."
api GET "/api/v1/waitpoints/tokens/$TC"
is "$(j .output)" '{"x":1}' "... and the first output stays (write-once)"
api POST /api/v1/waitpoints/tokens '{}'
TC2=$(j .id) URL2=$(j .url)
cb "${URL2/$TC2/waitpoint_cnotawaitpoint0000000000}" --data-binary '{}'
is "$CODE $(j .error)" "404 Waitpoint not found" "an unknown waitpoint: 404"
cb "${URL2/$TC2/$TC}" --data-binary '{}'
is "$CODE" 401 "another token's hash: 401"
head -c $((1024 * 1024 + 10)) /dev/zero | tr '\0' 'a' >"$TREE_DIR/big.body"
cb "$URL2" -H 'Content-Type: application/json' --data-binary "@$TREE_DIR/big.body"
is "$CODE" 413 "a body over 1 MiB: 413"
ok "... and the token is still waiting" wp_is "$TC2" PENDING
api POST /api/v1/waitpoints/tokens '{}' "$KEY2"
URL3=$(j .url)
ok "another environment's url has another hash" test "${URL3##*/}" != "${URL2##*/}"
cb "$URL2" --data-binary 'not json'
is "$CODE" 200 "a body that is no JSON completes it ..."
api GET "/api/v1/waitpoints/tokens/$TC2"
is "$(j .status) $(j .output)" 'COMPLETED {}' "... with {}"

# ------------------------------------------------------------------ a run that sleeps
RS=$(mk_run)
lease() { sql "UPDATE task_runs SET status = 'DEQUEUED', lease_owner = :'w', lease_expires_at = now() + interval '30 s', started_at = now() WHERE friendly_id = :'r'" r="$1" w="$2" >/dev/null; }
lease "$RS" w1
api POST /api/v1/waitpoints/tokens '{}'
TS=$(j .id)
api POST "/engine/v1/runs/$RS/waitpoints/tokens/$TS/wait"
is "$CODE $(j .success)" "200 true" "block the run on a token"
api POST "/engine/v1/runs/$RS/waitpoints/tokens/waitpoint_cnotawaitpoint0000000000/wait"
is "$CODE $(j .error)" "404 Waitpoint not found" "block on an unknown waitpoint: 404"
api POST "/api/v1/runs/$RS/suspend" '{"workerId":"w2"}'
is "$CODE" 409 "suspend by a worker not holding the lease: 409"
api POST "/api/v1/runs/$RS/suspend" '{"workerId":"w1"}'
is "$CODE $(j .suspended) $(j .pending)" "200 true 1" "the worker suspends it"
is "$(sql "SELECT status || ' ' || COALESCE(lease_owner, '-') FROM task_runs WHERE friendly_id = :'r'" r="$RS")" \
  "WAITING_TO_RESUME -" "... WAITING, no lease"
api POST /api/v1/workers/dequeue '{"taskIdentifiers":["wtask-'$U'"],"workerId":"w2"}'
is "$(j '.runs | length')" 0 "... nothing to dequeue while it waits"
api POST "/api/v1/waitpoints/tokens/$TS/complete" '{"data":{"answer":42}}'
run_pending() { [[ $(sql "SELECT status FROM task_runs WHERE friendly_id = :'r'" r="$RS") == PENDING ]]; }
wait_for 3000 run_pending
ok "completing its token queues it again" run_pending
api POST /api/v1/workers/dequeue '{"taskIdentifiers":["wtask-'$U'"],"workerId":"w2"}'
is "$(j '.runs[0].id')" "$RS" "another worker dequeues it"
is "$(j '.runs[0].resume.waitpoints[0].id') $(j '.runs[0].resume.waitpoints[0].output') $(j '.runs[0].resume.waitpoints[0].outputIsError')" \
  "$TS {\"answer\":42} false" "... as a resume with the waitpoint's output"
api POST "/api/v1/runs/$RS/suspend" '{"workerId":"w2"}'
is "$(j .suspended) $(j .pending) $(j '.waitpoints | length')" "false 0 0" "nothing left to wait on: suspend answers false"

# ------------------------------------------------------------------ a worker that holds: the long-poll
RH=$(mk_run)
lease "$RH" w1
api POST /api/v1/waitpoints/tokens '{}'
TH=$(j .id)
api POST "/engine/v1/runs/$RH/waitpoints/tokens/$TH/wait"
api POST "/api/v1/runs/$RH/suspend" '{"workerId":"w1","hold":true,"waitSeconds":61}'
is "$CODE" 400 "waitSeconds over 60: 400"
api POST "/api/v1/runs/$RH/suspend" '{"workerId":"w1","waitSeconds":5}'
is "$CODE" 400 "waitSeconds without hold: 400"
T0=$(date +%s%N)
api POST "/api/v1/runs/$RH/suspend" '{"workerId":"w1","hold":true,"waitSeconds":1}'
MS=$((($(date +%s%N) - T0) / 1000000))
is "$CODE $(j .suspended) $(j .pending)" "200 false 1" "a hold whose token stays pending answers at its deadline ..."
ok "... after about waitSeconds (${MS} ms)" test "$MS" -ge 900 -a "$MS" -lt 2500
T0=$(date +%s%N)
(
  sleep 0.5
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data-binary '{"data":{"held":1}}' "$TREE_URL/api/v1/waitpoints/tokens/$TH/complete"
) &
COMPLETER=$!
api POST "/api/v1/runs/$RH/suspend" '{"workerId":"w1","hold":true,"waitSeconds":20}'
MS=$((($(date +%s%N) - T0) / 1000000))
wait "$COMPLETER"
is "$CODE $(j .suspended) $(j .pending) $(j '.waitpoints[0].id') $(j '.waitpoints[0].output')" \
  "200 false 0 $TH {\"held\":1}" "a holding worker's long-poll answers when its token completes ..."
ok "... woken by the registry's event, not the 2 s poll (${MS} ms)" test "$MS" -lt 1500
is "$(sql "SELECT status || ' ' || COALESCE(lease_owner, '-') FROM task_runs WHERE friendly_id = :'r'" r="$RH")" \
  "DEQUEUED w1" "... and the run stayed leased to it"
api POST "/api/v1/runs/$RH/suspend" '{"workerId":"w2","hold":true,"waitSeconds":5}'
is "$CODE" 409 "a hold by a worker not holding the lease: 409 at once"
api POST /api/v1/waitpoints/tokens '{}'
TC=$(j .id)
api POST "/engine/v1/runs/$RS/waitpoints/tokens/$TC/wait"
api POST "/api/v1/runs/$RS/suspend" '{"workerId":"w2"}'
api POST "/api/v2/runs/$RS/cancel"
is "$(sql "SELECT status FROM task_runs WHERE friendly_id = :'r'" r="$RS")" CANCELED "cancel of a waiting run works"

# a duration
RD=$(mk_run)
lease "$RD" w1
# due 1-2 s from now (whole seconds): after the suspend below, which the check relies on (a
# duration due before the run suspends completes with nothing to wake; the run stays leased)
api POST "/engine/v1/runs/$RD/wait/duration" "{\"date\":\"$(date -u -d '+2 second' +%Y-%m-%dT%H:%M:%S.000Z)\"}"
is "$CODE" 200 "wait.for: a duration waitpoint"
WDUR=$(j .waitpoint.id)
api POST "/api/v1/runs/$RD/suspend" '{"workerId":"w1"}'
wait_for 5000 wp_is "$WDUR" COMPLETED
ok "the timer completes the duration" wp_is "$WDUR" COMPLETED
rd_pending() { [[ $(sql "SELECT status FROM task_runs WHERE friendly_id = :'r'" r="$RD") == PENDING ]]; }
wait_for 3000 rd_pending
ok "... and its run is queued again" rd_pending

# ------------------------------------------------------------------ kill -9 between append and drain
S4=$(mk_session "chat-$U-4")
ssw "$R" '{"session":"chat-'$U'-4","io":"in"}'
WK=$(j .waitpointId)
WPPID=$(child_field waitpoint-registry pid)
kill -STOP "$WPPID"
append "chat-$U-4" in '{"m":"lost"}'
# judged while it is stopped: once killed, its restart sweeps at start and may win the race
ok "the registry was killed before it drained" wp_is "$WK" PENDING
kill -KILL "$WPPID"
wait_for 8000 wp_is "$WK" COMPLETED
ok "the restarted registry's sweep completes the waiter" wp_is "$WK" COMPLETED

# ------------------------------------------------------------------ kill -9 during timeouts: each fires once
WAVE=()
for i in $(seq 1 20); do
  api POST /api/v1/waitpoints/tokens '{"timeout":"2s"}'
  WAVE+=("$(j .id)")
done
sleep 1.8
kill -KILL "$(child_field waitpoint-registry pid)"
all_timed() { [[ $(sql "SELECT count(*) FROM waitpoints WHERE friendly_id = ANY(string_to_array(:'l', ' ')) AND status = 'TIMED_OUT'" l="${WAVE[*]}") == 20 ]]; }
wait_for 10000 all_timed
ok "every timeout fired after the restart" all_timed
dups=0
for w in "${WAVE[@]}"; do
  n=$(grep -c "${w} timed out" "$TREE_LOG")
  ((n != 1)) && dups=$((dups + 1))
done
is "$dups" 0 "... each exactly once"

tree_stop
done_testing
