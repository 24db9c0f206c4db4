# client_drop_test.sh - clients that leave mid-call. Every actor's bus traffic is delayed
# (tetherctl fault ... delay=200ms), and on every route that makes a bus call clients send a
# request and close the socket at once, many times: the reply then comes back for a client
# that is gone. The gateway must neither crash nor report to the sanitizers (the test tree is
# the ASan build), must not leak the calls, and must go on answering.
#
# With HTTP/1 (all the gateway serves), h2o 2.2.5 stops reading a connection while it handles
# a request, so it disposes the request only when the answer is written: these drops exercise
# the write to a closed socket. A request disposed mid-call (HTTP/2) is finished by the
# gateway's resume step (gw_call_bus, http.h) before any handler runs again.
. "$(dirname "$0")/../lib/itest.sh"

tree_start TETHER_GW_SESSION_CACHE_MAX=0
S=$$-$RANDOM
KEY=$(ctl env create --org "cd-$S" --project a --type dev)
N=${DROP_N:-12}

curl -s -o /dev/null -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"type\":\"chat\",\"externalId\":\"drop-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
  "$TREE_URL/api/v1/sessions"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$TREE_URL/api/v1/sessions/drop-$S")
is "$code" 200 "a session to drop requests on"
gw_before=$(ctl status --json | jq -r '[.children[] | select(.name | startswith("gateway")) | .pid] | sort | join(",")')

for a in session-manager stream-broker run-manager waitpoint-registry clickhouse-replicator; do
  ctl_quiet fault "$a" delay=200ms
done
sleep 1.5 # a fault reaches its process within a second

# drop METHOD PATH [BODY [CONTENT-TYPE]]: N connections that send the request and close at once
drop() {
  local m=$1 p=$2 body=${3-} ct=${4:-application/json} i req pids=()
  req="$m $p HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer $KEY\r\nOrigin: https://app.example\r\n"
  req+="Content-Type: $ct\r\nX-Peek-Settled: 1\r\nContent-Length: ${#body}\r\n\r\n$body"
  for ((i = 0; i < N; i++)); do
    (
      exec 3<>"/dev/tcp/127.0.0.1/$TREE_PORT" || exit 0
      printf '%b' "$req" >&3
      exec 3>&-
    ) 2>/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}" # not a bare wait: the tree is a child of this shell too
}
SESS=/api/v1/sessions/drop-$S
RT=/realtime/v1/sessions/drop-$S
S2=/s2/v1/streams/sessions%2Fdrop-$S%2Fout/records
RUN=/api/v1/runs/run_nosuchrun0000000000000
drop POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"drop2-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}"
drop GET "/api/v1/sessions?page%5Bsize%5D=5"
drop GET "$SESS"
drop PATCH "$SESS" '{"metadata":{"a":1}}'
drop POST "$SESS/end-and-continue" '{"callingRunId":"run_nosuchrun0000000000000","reason":"manual"}'
drop PUT "$RT/out"
drop GET "$RT/out"
drop HEAD "$RT/in"
drop GET "/realtime/v1/sessions/nosuchrow-$S/out" # no row: an externalId's own stream
drop POST "$RT/in/append" 'hello' text/plain
drop POST "$RT/out/append" 'hello' text/plain
drop GET "$RT/out/records?afterEventId=0"
drop POST "$S2" '{"records":[{"body":"x"}]}'
drop GET "$S2?seq_num=0&count=5"
drop GET "$S2?tail_offset=2"
drop POST /api/v1/workers/dequeue '{"taskIdentifiers":["echo"],"maxRuns":1}'
drop POST "$RUN/heartbeat" '{}'
drop POST "$RUN/complete" '{"output":"x"}'
drop POST "$RUN/fail" '{"error":{"message":"x"}}'
drop POST /api/v2/runs/run_nosuchrun0000000000000/cancel '{}'
drop GET /api/v3/runs/run_nosuchrun0000000000000
drop POST /api/v1/waitpoints/tokens '{}'
drop GET /api/v1/waitpoints/tokens
drop POST "$SESS/close" '{"reason":"dropped"}'
sleep 3 # every delayed reply has come back to its departed client
slow=$(grep '"http.access"' "$TREE_LOG" | jq -r 'select(.duration_ms >= 200) | "\(.method) \(.path)"' 2>/dev/null | sort -u | wc -l)
diag "$slow routes answered departed clients after a delayed bus call"
ok "the drops reached the bus calls of at least 20 routes" test "$slow" -ge 20

for a in session-manager stream-broker run-manager waitpoint-registry clickhouse-replicator; do
  ctl_quiet fault "$a" off
done
gw_after=$(ctl status --json | jq -r '[.children[] | select(.name | startswith("gateway")) | .pid] | sort | join(",")')
is "$gw_after" "$gw_before" "no gateway process died"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$TREE_URL/api/v1/sessions/drop-$S")
is "$code" 200 "the gateway still answers"
ok "the tree logged no sanitizer report" bash -c "! grep -Eq 'AddressSanitizer|runtime error:|LeakSanitizer' '$TREE_LOG'"
tree_stop
is "$TREE_EXIT" 0 "the tree stops cleanly"
ok "no sanitizer report at exit (leaks included)" bash -c "! grep -Eq 'AddressSanitizer|runtime error:|LeakSanitizer' '$TREE_LOG'"
done_testing
