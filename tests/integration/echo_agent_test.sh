# echo_agent_test.sh - the example worker (examples/echo-agent) against a real tree: every .in
# message answered exactly once, in order, across runs (a run that idles out and its
# continuation), with the cursor on a .out longer than one /records answer, across a kill -9 of
# the agent in the middle of a burst (the lease runs out, the next attempt resumes), and a
# SIGTERM that completes the run.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
S=$$-$RANDOM
KEY=$(ctl env create --org "ea-$S" --project a --type dev)
ALOG=$TREE_DIR/echo-agent.log
AGENT=

# agent_start [LEASE_S]: leases of 3 s by default, so a killed agent's run is taken back within
# about 4 s. Idle runs complete (TETHER_ECHO_SLEEP_SECONDS=0) unless ECHO_SLEEP says otherwise.
agent_start() {
  TETHER_URL=$TREE_URL TETHER_SECRET_KEY=$KEY TETHER_ECHO_LEASE_SECONDS=${1:-3} \
    TETHER_ECHO_SLEEP_SECONDS=${ECHO_SLEEP:-0} \
    "$TETHER_TEST_BIN/echo-agent" >>"$ALOG" 2>&1 &
  AGENT=$!
}
cleanup() {
  [[ -n $AGENT ]] && kill -KILL "$AGENT" 2>/dev/null
  itest_cleanup
}
trap cleanup EXIT

api() { # api METHOD PATH [BODY]: sets BODY
  BODY=$(curl -s -X "$1" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    ${3+--data-binary "$3"} "$TREE_URL$2")
}
create() { # create KEY IDLE_S MAX_ATTEMPTS: sets RUN to the session's first run
  api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"$1\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{},\"idleTimeoutInSeconds\":$2,\"maxAttempts\":$3}}"
  RUN=$(jq -r .runId <<<"$BODY")
}
append() { # append KEY TEXT
  curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H "X-Part-Id: $1-$2" --data-binary "$2" \
    "$TREE_URL/realtime/v1/sessions/$1/in/append"
}
# out KEY [AFTER]: .out as "text" for a reply and "@cursor" for a turn-complete, comma-separated
out() {
  curl -s -H "Authorization: Bearer $KEY" "$TREE_URL/realtime/v1/sessions/$1/out/records${2:+?afterEventId=$2}" |
    jq -r '[.records[] | if (.headers // [] | map(.[0]) | index("trigger-control")) != null
             then "@" + (.headers | map(select(.[0] == "session-in-event-id"))[0][1])
             else .data.text end] | join(",")'
}
turns_are() { [[ $(out "$1" "${3-}" | tr ',' '\n' | grep -c '^@') == "$2" ]]; }
run_status() { api GET "/api/v3/runs/$1" && jq -r .status <<<"$BODY"; }
run_status_is() { [[ $(run_status "$1") == "$2" ]]; }
current_run() { api GET "/api/v1/sessions/$1" && jq -r .currentRunId <<<"$BODY"; }
expect() { # expect N PREFIX: "P0,@0,P1,@1,…" for N messages
  local i s=""
  for ((i = 0; i < $1; i++)); do s+="${s:+,}$2$i,@$i"; done
  echo "$s"
}

agent_start

# --- a run that idles out, then its continuation
C=cont-$S
create "$C" 2 1
FIRST=$RUN
for i in 0 1 2; do append "$C" "c$i"; done
ok "the first run answers three messages" wait_for 10000 turns_are "$C" 3
ok "and completes once .in has been idle for 2 s" wait_for 8000 run_status_is "$FIRST" COMPLETED
for i in 3 4; do append "$C" "c$i"; done
ok "two more messages are answered" wait_for 10000 turns_are "$C" 5
is "$(out "$C")" "$(expect 5 c)" "each message answered once, in order, each reply followed by its cursor"
SECOND=$(current_run "$C")
ok "by a second run" test -n "$SECOND" -a "$SECOND" != "$FIRST"
api GET "/api/v3/runs/$SECOND"
is "$(jq -c '[.payload.continuation, .payload.previousRunId == "'"$FIRST"'"]' <<<"$BODY")" "[true,true]" \
  "a continuation of the first"
ok "which resumed after the cursor the first left" grep -q "$SECOND.*\"msg\":\".in answered up to seq 2, resuming after it\"" "$ALOG"

# --- the cursor is the LAST turn-complete, even past what one /records answer holds (10,000)
L=long-$S
NAME=$(jq -rn --arg n "sessions/$L/out" '$n|@uri')
s2_batch() { # s2_batch JQ_RECORDS: one S2 append on .out of L, with the secret key
  curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data-binary "$(jq -nc "{records: ($1)}")" "$TREE_URL/s2/v1/streams/$NAME/records"
}
TC='{headers: [["trigger-control", "turn-complete"], ["session-in-event-id", ""]], body: ""}'
codes=$(s2_batch "[range(5) | {body: \"early\"}] + [$TC | .headers[1][1] = \"0\"] + [range(994) | {body: \"f\"}]")
for _ in $(seq 1 9); do codes+=,$(s2_batch '[range(1000) | {body: "f"}]'); done
codes+=,$(s2_batch "[range(400) | {body: \"f\"}] + [$TC | .headers[1][1] = \"1\"] + [range(99) | {body: \"late\"}]")
is "$codes" "$(printf '200,%.0s' $(seq 1 10))200" ".out holds 10,500 records: turn-completes at seq 5 (cursor 0) and 10,400 (cursor 1)"
create "$L" 2 1
ok "the run for it has read the cursor" wait_for 10000 grep -q "$RUN.*\"msg\":\".in answered up to seq 1, resuming after it\"" "$ALOG"
for t in a b c; do append "$L" "$t"; done
ok "the one message after the cursor is answered" wait_for 10000 turns_are "$L" 1 10499
is "$(out "$L" 10499)" "c,@2" "only the message after the last turn-complete, not those the early one left"

# --- kill -9 of the agent in the middle of a burst, then a new agent
K=kill-$S
create "$K" 30 3
(for i in $(seq 0 29); do
  append "$K" "k$i"
  sleep 0.05
done) &
BURST=$!
ok "the burst's first messages are being answered" wait_for 10000 turns_are "$K" 3
kill -KILL "$AGENT"
wait "$AGENT" 2>/dev/null
diag "killed the agent after $(out "$K" | tr ',' '\n' | grep -c '^@') turns"
agent_start
wait "$BURST"
ok "after the lease runs out, the run's next attempt answers the rest" wait_for 20000 turns_are "$K" 30
is "$(out "$K")" "$(expect 30 k)" "every message answered exactly once, in order, across the kill"
ok "attempt 2 resumed after the cursor" grep -q "$RUN.*attempt 2" "$ALOG"

# --- SIGTERM: the agent completes its run and exits 0; a new message then gets a continuation
kill -TERM "$AGENT"
wait "$AGENT"
is "$?" 0 "SIGTERM stops the agent with exit 0"
AGENT=
is "$(run_status "$RUN")" COMPLETED "after completing the run it held"
append "$K" k30
agent_start 30
ok "a new message after the restart is answered by a continuation" wait_for 10000 turns_are "$K" 31
is "$(out "$K" | tr ',' '\n' | tail -2 | paste -sd,)" "k30,@30" "once"

# --- a message that lands as the run idles out: the session's run is still live, so the append
# triggers nothing; the agent, once it has completed the run, sees it unanswered and swaps in a
# continuation (end-and-continue). The agent is held (SIGSTOP) across the server's idle end.
H=hand-$S
create "$H" 2 1
append "$H" h0
ok "h0 is answered" wait_for 10000 turns_are "$H" 1
sleep 0.5
kill -STOP "$AGENT"
sleep 4.5 # well past the server's idle end (2 s after the last batch, on a 1 s tick)
append "$H" h1
is "$(run_status "$RUN")" EXECUTING "h1 lands while the run is still live"
kill -CONT "$AGENT"
ok "h1 is answered after the run completed" wait_for 10000 turns_are "$H" 2
is "$(out "$H")" "h0,@0,h1,@1" "each once, in order"
ok "by a continuation the run swapped in" grep -q "run.continued\",\"run\":\"$RUN\".*continuation run_.* queued" "$ALOG"

# --- an idle run sleeps on .in (session-stream wait + suspend): no worker holds it, and the next
# message wakes the same run, on any worker
kill -TERM "$AGENT"
wait "$AGENT"
ECHO_SLEEP=60 agent_start
Z=sleep-$S
create "$Z" 1 1
append "$Z" z0
ok "z0 is answered" wait_for 10000 turns_are "$Z" 1
run_sleeps() { [[ $(run_status "$RUN") == WAITING* ]] && grep -q "run.suspended\",\"run\":\"$RUN\"" "$ALOG"; }
ok "idle for 1 s, the run suspends on .in instead of completing ($(run_status "$RUN"))" wait_for 8000 run_sleeps
append "$Z" z1
ok "the next message wakes it" wait_for 10000 turns_are "$Z" 2
is "$(out "$Z")" "z0,@0,z1,@1" "... answered once, in order"
is "$(current_run "$Z")" "$RUN" "... by the same run, resumed"
ok "... which logged its resume" grep -q "run.resumed\",\"run\":\"$RUN\".*woken by a message" "$ALOG"
RESUMES=$(grep -c "run.suspended\",\"run\":\"$RUN\"" "$ALOG")
ok "and it sleeps again once idle" wait_for 8000 bash -c "(( \$(grep -c 'run.suspended\",\"run\":\"$RUN\"' '$ALOG') > $RESUMES ))"

ok "the agent logged no error" bash -c "! grep -q '\"lvl\":\"error\"' '$ALOG'"
kill -TERM "$AGENT"
wait "$AGENT"
AGENT=
tree_stop
done_testing
