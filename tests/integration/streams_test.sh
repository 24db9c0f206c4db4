# streams_test.sh - a session's channels over real HTTP and real Redis: append with X-Part-Id
# de-duplication, the 1 MiB metered limit, closed sessions, .out writers, SSE subscribe with
# resume and live delivery across gateways, Timeout-Seconds bounds, settled peek, /records, the
# S2-compatible endpoint, and kill -9 of the stream-broker during appends.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
S=$$-$RANDOM
KEY=$(ctl env create --org "st-$S" --project a --type dev)

api() {
  local m=$1 p=$2 body=${3-} auth=${4:-$KEY}
  shift 4 2>/dev/null || shift $#
  HDRS=$(mktemp)
  BODY=$(curl -s -X "$m" -D "$HDRS" -H "Authorization: Bearer $auth" -H 'Origin: https://app.example' \
    "$@" --data-binary "$body" -w '\n%{http_code}' "$TREE_URL$p")
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
hdr() { grep -i "^$1:" "$HDRS" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
append() { # append IO PART BODY [AUTH]
  api POST "/realtime/v1/sessions/chat-$S/$1/append" "$3" "${4:-$KEY}" -H "X-Part-Id: $2"
}
sse() { # sse IO [curl args...]: the raw SSE body
  local io=$1
  shift
  curl -s -N --max-time 8 -H "Authorization: Bearer $KEY" "$@" "$TREE_URL/realtime/v1/sessions/chat-$S/$io"
}
seqs() { grep '^data: {"records"' | sed 's/^data: //' | jq -r '.records[].seq_num' | paste -sd, -; }

api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"chat-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" "$KEY" -H 'Content-Type: application/json'
is "$CODE" 201 "a session to talk on"
SID=$(jq -r .id <<<"$BODY")
TOKEN=$(jq -r .publicAccessToken <<<"$BODY")

# --- append
append in p1 'hello'
is "$CODE/$(jq -c . <<<"$BODY")" '200/{"ok":true,"seq":0}' "an append answers its seq"
append in p1 'hello'
is "$CODE/$(jq -c . <<<"$BODY")" '200/{"ok":true,"seq":0}' "the same X-Part-Id answers the original seq"
append in p2 'world' "$TOKEN"
is "$CODE/$(jq -r .seq <<<"$BODY")" "200/1" "a session token appends to .in"
append out o1 'nope' "$TOKEN"
is "$CODE" 403 "a session token may not write .out"
append out o1 '{"a":1}'
is "$CODE/$(jq -r .seq <<<"$BODY")" "200/0" "the secret key writes .out"
api GET "/realtime/v1/sessions/chat-$S/in/records" "" "$KEY" -G
is "$(jq -c '[.records[] | [.seqNum, .data, .id]]' <<<"$BODY")" '[[0,"hello","p1"],[1,"world","p2"]]' \
  "/records returns each record once, unwrapped"
api GET "/realtime/v1/sessions/chat-$S/in/records?afterEventId=0" "" "$KEY" -G
is "$(jq -c '[.records[].seqNum]' <<<"$BODY")" '[1]' "/records resumes after afterEventId"
api GET "/realtime/v1/sessions/chat-$S/in/records?afterEventId=x1" "" "$KEY" -G
is "$CODE" 400 "a malformed afterEventId is 400"
api GET "/realtime/v1/sessions/chat-$S/in/records?afterEventId=5&afterEventId=0" "" "$KEY" -G
is "$CODE $(jq -c '[.records[].seqNum]' <<<"$BODY")" '200 [1]' "a repeated afterEventId: the last wins"
api GET "/realtime/v1/sessions/chat-$S/in/records?afterEventId=0&afterEventId=x" "" "$KEY" -G
is "$CODE" 400 "and a malformed last one is 400"
api GET "/realtime/v1/sessions/chat-$S/in/records?afterEventId=$(printf '9%.0s' $(seq 1 40))" "" "$KEY" -G
is "$CODE" 400 "an afterEventId too long for any seq is 400, not read as absent"
api GET "/realtime/v1/sessions/chat-$S/in/records?afterEventId=0%00" "" "$KEY" -G
is "$CODE" 400 "an afterEventId with %00 is 400"

# --- the metered limit: 8 + len({"data":"<body>","id":"<part>"}) <= 1 MiB
OVER=$((8 + 9 + 8 + 3 + 2))
MAX=$((1048576 - OVER))
head -c "$MAX" /dev/zero | tr '\0' a >"$TETHER_TEST_TMP/max.$S"
head -c $((MAX + 1)) /dev/zero | tr '\0' a >"$TETHER_TEST_TMP/over.$S"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'X-Part-Id: big' \
  --data-binary "@$TETHER_TEST_TMP/max.$S" "$TREE_URL/realtime/v1/sessions/chat-$S/out/append")
is "$CODE" 200 "a record of exactly the metered maximum is accepted"
OUT=$(curl -s -D - -w '\n%{http_code}' -H "Authorization: Bearer $KEY" -H 'X-Part-Id: big2' -H 'Origin: https://app.example' \
  --data-binary "@$TETHER_TEST_TMP/over.$S" "$TREE_URL/realtime/v1/sessions/chat-$S/out/append")
is "${OUT##*$'\n'}" 413 "one byte more is 413"
ok "the 413 carries CORS" grep -qi '^access-control-allow-origin: https://app.example' <<<"$OUT"
rm -f "$TETHER_TEST_TMP/max.$S" "$TETHER_TEST_TMP/over.$S"

# --- SSE: history, resume, bounds, HEAD
OUT=$(sse in -H 'Timeout-Seconds: 1')
is "$(seqs <<<"$OUT")" "0,1" "SSE sends the history as batches"
ok "and ends with [DONE] after Timeout-Seconds" grep -q '^data: \[DONE\]' <<<"$OUT"
is "$(sse in -H 'Timeout-Seconds: 1' -H 'Last-Event-ID: 0' | seqs)" "1" "Last-Event-ID resumes after it"
is "$(sse in -H 'Timeout-Seconds: 1' -H 'Last-Event-ID: 99' | seqs)" "" "a cursor past the tail starts at the tail"
# Last-Event-ID as the contract reads it: the text before the first '-' through Number()
for c in '0 ' '0e0' '0x0' '0.5' '0-7'; do
  is "$(sse in -H 'Timeout-Seconds: 1' -H "Last-Event-ID: $c" | seqs)" "1" "Last-Event-ID '$c' is 0: resumes at 1"
done
for c in '1e3' '0x10'; do
  is "$(sse in -H 'Timeout-Seconds: 1' -H "Last-Event-ID: $c" | seqs)" "" "Last-Event-ID '$c' is past the tail"
done
for c in 'abc' '12,3,456' '-1'; do
  is "$(sse in -H 'Timeout-Seconds: 1' -H "Last-Event-ID: $c" | seqs)" "0,1" "Last-Event-ID '$c' is no number: starts at 0"
done
H=$(curl -s -D - -o /dev/null --max-time 5 -H "Authorization: Bearer $KEY" -H 'Timeout-Seconds: 1' "$TREE_URL/realtime/v1/sessions/chat-$S/in")
ok "SSE says X-Stream-Version: v2" grep -qi '^x-stream-version: v2' <<<"$H"
for bad in 0 601 10abc; do
  is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H "Timeout-Seconds: $bad" "$TREE_URL/realtime/v1/sessions/chat-$S/in")" 400 "Timeout-Seconds $bad is 400"
done
is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$TREE_URL/realtime/v1/sessions/session_cnotthere000000000000000/in")" 404 "an unknown friendly id is 404"
is "$(curl -s -N --max-time 5 -H "Authorization: Bearer $KEY" -H 'Timeout-Seconds: 1' "$TREE_URL/realtime/v1/sessions/nobody-$S/in" | grep -c '^data: \[DONE\]')" 1 \
  "an unknown externalId subscribes to an empty stream"
is "$(curl -s -I -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$TREE_URL/realtime/v1/sessions/chat-$S/in")" 200 "HEAD is 200"

# --- live delivery, on the other gateway too (two gateway processes share the port)
SUBS=()
for i in 1 2 3 4; do
  sse in -H 'Timeout-Seconds: 3' -H 'Last-Event-ID: 1' >"$TETHER_TEST_TMP/live.$S.$i" &
  SUBS+=($!)
done
sleep 0.7
for i in 0 1 2 3 4 5 6 7 8 9; do append in "live-$i" "m$i"; done
wait "${SUBS[@]}"
for i in 1 2 3 4; do
  is "$(seqs <"$TETHER_TEST_TMP/live.$S.$i")" "2,3,4,5,6,7,8,9,10,11" "subscriber $i got every live record once, in order"
done
rm -f "$TETHER_TEST_TMP"/live.$S.*

# --- the S2 endpoint and settled peek
api PUT "/realtime/v1/sessions/chat-$S/out" "" "$TOKEN"
is "$CODE" 403 "PUT on .out with a session token is 403"
api PUT "/realtime/v1/sessions/chat-$S/out" ""
is "$CODE/$(jq -r .version <<<"$BODY")" "202/v2" "PUT answers 202 {version: v2}"
S2T=$(hdr x-s2-access-token)
EP=$(hdr x-s2-endpoint)
NAME=$(hdr x-s2-stream-name)
is "$NAME" "sessions/chat-$S/out" "X-S2-Stream-Name names the channel"
OUT=$(curl -s -H "Authorization: Bearer $S2T" -H 'Content-Type: application/json' \
  -d '{"records":[{"body":"{\"data\":{\"type\":\"text\",\"t\":\"hi\"},\"id\":\"r1\"}"},{"headers":[["trigger-control","turn-complete"],["session-in-event-id","11"]]}]}' \
  "$EP/streams/$(jq -rn --arg n "$NAME" '$n|@uri')/records")
is "$(jq -c '[.start.seq_num, .end.seq_num, .tail.seq_num]' <<<"$OUT")" "[2,4,4]" "the S2 append acknowledges start, end and tail"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $S2T" -H 'Content-Type: application/json' -d '{"records":[{"body":"x"}]}' "$EP/streams/sessions%2Fchat-$S%2Fin/records")" 403 \
  "the S2 token covers only its stream"
H=$(curl -s -D - --max-time 5 -H "Authorization: Bearer $KEY" -H 'X-Peek-Settled: 1' "$TREE_URL/realtime/v1/sessions/chat-$S/out")
ok "after a turn-complete, a settled peek answers X-Session-Settled: true" grep -qi '^x-session-settled: true' <<<"$H"
ok "and closes at once with [DONE]" grep -q '^data: \[DONE\]' <<<"$H"
api GET "/realtime/v1/sessions/chat-$S/out/records?afterEventId=2" "" "$KEY" -G
is "$(jq -c '.records[0] | [.seqNum, .data, .headers[0][1]]' <<<"$BODY")" '[3,"","turn-complete"]' "/records shows a control record with its headers"

# --- kill -9 of the stream-broker during a burst: retries with the same part ids
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"burst-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" "$KEY" -H 'Content-Type: application/json'
bpid=$(child_field stream-broker pid)
(
  for i in $(seq 0 59); do
    for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
      c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -H "Authorization: Bearer $KEY" -H "X-Part-Id: burst-$i" \
        --data-binary "b$i" "$TREE_URL/realtime/v1/sessions/burst-$S/in/append")
      [[ $c == 200 ]] && break
      sleep 0.1
    done
  done
) &
BURST=$!
sleep 0.3
kill -9 "$bpid"
wait "$BURST"
OUT=$(curl -s -N --max-time 8 -H "Authorization: Bearer $KEY" -H 'Timeout-Seconds: 1' "$TREE_URL/realtime/v1/sessions/burst-$S/in")
is "$(grep '^data: {"records"' <<<"$OUT" | sed 's/^data: //' | jq -r '.records[].body | fromjson | .data' | paste -sd, -)" \
  "$(seq 0 59 | sed 's/^/b/' | paste -sd, -)" "after a kill -9 of the broker every record is there once, in order"

# --- the agent's run token writes .out (PUT and append)
api POST /api/v1/workers/dequeue '{"taskIdentifiers":["echo"],"maxRuns":50}' "$KEY" -H 'Content-Type: application/json'
RT=$(jq -r --arg s "$SID" '[.runs[] | select(.sessionId == $s)][0].token' <<<"$BODY")
ok "the session's run was dequeued with a run token" test -n "$RT" -a "$RT" != null
api PUT "/realtime/v1/sessions/chat-$S/out" "" "$RT"
is "$CODE" 202 "PUT on .out with the session's run token is 202"
append out rt1 'from the agent' "$RT"
is "$CODE" 200 "the run token appends to .out"
ok "the gateways are still the same processes" bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq '[.children[] | select(.name | startswith(\"gateway\")) | .restarts] | add') == 0 ]]"

# --- large records: reads are cut to the bus limit and continued; readers take them at their pace
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"big-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" "$KEY" -H 'Content-Type: application/json'
head -c 900000 /dev/zero | tr '\0' b >"$TETHER_TEST_TMP/big.$S"
for i in 0 1 2 3 4 5; do
  curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H "X-Part-Id: big-$i" \
    --data-binary "@$TETHER_TEST_TMP/big.$S" "$TREE_URL/realtime/v1/sessions/big-$S/out/append"
done
rm -f "$TETHER_TEST_TMP/big.$S"
api GET "/realtime/v1/sessions/big-$S/out/records" "" "$KEY" -G
is "$(jq -c '[.records[] | [.seqNum, (.data | length)]] | map(.[0]), (map(.[1]) | unique)' <<<"$BODY" | paste -sd' ')" \
  '[0,1,2,3,4,5] [900000]' "/records returns 5.4 MB of records over several broker reads"
OUT=$(curl -s -N --max-time 20 --limit-rate 3M -H "Authorization: Bearer $KEY" -H 'Timeout-Seconds: 1' \
  "$TREE_URL/realtime/v1/sessions/big-$S/out")
is "$(seqs <<<"$OUT")" "0,1,2,3,4,5" "a slow SSE reader gets the whole 5.4 MB history, in order"
ok "and its [DONE]" grep -q '^data: \[DONE\]' <<<"$OUT"
# the 8 MiB bound of /records holds on the answer as sent: records of 450,000 '"' are 450 kB
# stored and 900 kB rendered, so ten make a 9 MB history; a caller reads it in two answers
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"bound-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" "$KEY" -H 'Content-Type: application/json'
head -c 450000 /dev/zero | tr '\0' '"' >"$TETHER_TEST_TMP/bound.$S"
for i in 0 1 2 3 4 5 6 7 8 9; do
  curl -s -o /dev/null -H "Authorization: Bearer $KEY" --data-binary "@$TETHER_TEST_TMP/bound.$S" \
    "$TREE_URL/realtime/v1/sessions/bound-$S/out/append"
done
curl -s -o "$TETHER_TEST_TMP/bound.$S" -H "Authorization: Bearer $KEY" "$TREE_URL/realtime/v1/sessions/bound-$S/out/records"
SIZE=$(stat -c %s "$TETHER_TEST_TMP/bound.$S")
ok "one /records answer stays within 8 MiB (got $SIZE bytes)" test "$SIZE" -le 8388608
FIRST=$(jq -c '[.records[].seqNum]' "$TETHER_TEST_TMP/bound.$S")
LAST=$(jq '.records[-1].seqNum' "$TETHER_TEST_TMP/bound.$S")
curl -s -o "$TETHER_TEST_TMP/bound.$S" -H "Authorization: Bearer $KEY" \
  "$TREE_URL/realtime/v1/sessions/bound-$S/out/records?afterEventId=$LAST"
is "$(jq -c --argjson a "$FIRST" '$a + [.records[].seqNum]' "$TETHER_TEST_TMP/bound.$S")" '[0,1,2,3,4,5,6,7,8,9]' \
  "continuing after the last seqNum reads every record once"
rm -f "$TETHER_TEST_TMP/bound.$S"
python3 -c 'import json; b = "c" * 600000; print(json.dumps({"records": [{"body": b}, {"body": b}]}))' \
  >"$TETHER_TEST_TMP/s2big.$S"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  --data-binary "@$TETHER_TEST_TMP/s2big.$S" "$TREE_URL/s2/v1/streams/sessions%2Fbig-$S%2Fout/records")
rm -f "$TETHER_TEST_TMP/s2big.$S"
is "$CODE" 413 "an S2 batch over 1 MiB metered is 413"
# A client that stops reading: a tiny receive window, then appends until what waits for it
# passes TETHER_GW_SSE_BUFFER. The gateway cuts it off, so reading afterwards reaches the end
# long before Timeout-Seconds would.
# The client waits for the appends to be done (a file says so), however long a loaded machine
# takes over them: reading earlier could drain what waits before it passes the limit.
rm -f "$TETHER_TEST_TMP/stall-done.$S"
python3 - "$TREE_URL" "$KEY" "big-$S" "$TETHER_TEST_TMP/stall-done.$S" >"$TETHER_TEST_TMP/stall.$S" <<'PY' &
import os, socket, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((u.hostname, u.port))
s.sendall(("GET /realtime/v1/sessions/%s/out HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Timeout-Seconds: 600\r\nLast-Event-ID: 5\r\n\r\n" % (sys.argv[3], sys.argv[2])).encode())
t0 = time.time()
while not os.path.exists(sys.argv[4]) and time.time() - t0 < 120:
    time.sleep(0.1)
time.sleep(1)  # the gateway's feed takes the last append's event
s.settimeout(5)
n, t0, ended = 0, time.time(), False
while not ended and time.time() - t0 < 15:  # pings keep an uncut stream alive: bound it
    try:
        b = s.recv(65536)
    except socket.timeout:
        continue
    except OSError:  # reset by the gateway
        break
    ended = not b
    n += len(b)
ended = ended or time.time() - t0 < 15
print("ended" if ended else "hung", n)
PY
STALL=$!
sleep 1
for i in $(seq 1 40); do
  head -c 200000 /dev/zero | tr '\0' d | curl -s -o /dev/null -H "Authorization: Bearer $KEY" \
    --data-binary @- "$TREE_URL/realtime/v1/sessions/big-$S/out/append"
done
touch "$TETHER_TEST_TMP/stall-done.$S"
wait "$STALL"
read -r how got <"$TETHER_TEST_TMP/stall.$S"
is "$how" ended "a client that stops reading is cut off (not held until Timeout-Seconds)"
ok "before it had everything (got $got of ~8 MB)" test "${got:-0}" -lt 8000000
rm -f "$TETHER_TEST_TMP/stall.$S" "$TETHER_TEST_TMP/stall-done.$S"

# --- S2 protobuf appends (what the S2 client sends for bytes records): a trim command
api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"trim-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" "$KEY" -H 'Content-Type: application/json'
for i in 0 1 2 3 4; do
  curl -s -o /dev/null -H "Authorization: Bearer $KEY" --data-binary "t$i" "$TREE_URL/realtime/v1/sessions/trim-$S/out/append"
done
python3 -c 'import sys; sys.stdout.buffer.write(b"\x0a\x12\x12\x06\x12\x04trim\x1a\x08" + (3).to_bytes(8, "big"))' >"$TETHER_TEST_TMP/trim.$S"
curl -s -D "$TETHER_TEST_TMP/trim.$S.h" -o "$TETHER_TEST_TMP/trim.$S.ack" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/protobuf' -H 'Accept: application/protobuf' \
  --data-binary "@$TETHER_TEST_TMP/trim.$S" "$TREE_URL/s2/v1/streams/sessions%2Ftrim-$S%2Fout/records"
ok "a protobuf append is answered in protobuf" grep -qi '^content-type: application/protobuf' "$TETHER_TEST_TMP/trim.$S.h"
is "$(od -An -tx1 "$TETHER_TEST_TMP/trim.$S.ack" | tr -d ' \n' | cut -c1-2,5-8)" "0a0805" "the ack's start is the trim record's seq (5)"
api GET "/realtime/v1/sessions/trim-$S/out/records" "" "$KEY" -G
is "$(jq -c '[.records[].seqNum]' <<<"$BODY")" '[3,4]' "the trim command deleted the records before 3 (and is itself skipped)"
is "$(curl -s -N --max-time 8 -H "Authorization: Bearer $KEY" -H 'Timeout-Seconds: 1' "$TREE_URL/realtime/v1/sessions/trim-$S/out" | seqs)" \
  "3,4,5" "SSE from 0 starts at the trim point"
OUT=$(curl -s -H "Authorization: Bearer $KEY" -H 'Accept: application/json' \
  "$TREE_URL/s2/v1/streams/sessions%2Ftrim-$S%2Fout/records?tail_offset=2&count=1&wait=0")
is "$(jq -c '[.records[].seq_num, .tail.seq_num]' <<<"$OUT")" '[4,6]' "an S2 read with tail_offset=2&count=1 answers the record at tail - 2"
printf '\x0a\x7f\x12' >"$TETHER_TEST_TMP/trim.$S"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/protobuf' \
  --data-binary "@$TETHER_TEST_TMP/trim.$S" "$TREE_URL/s2/v1/streams/sessions%2Ftrim-$S%2Fout/records")
is "$CODE" 422 "a malformed protobuf body is 422"
rm -f "$TETHER_TEST_TMP/trim.$S" "$TETHER_TEST_TMP/trim.$S.h" "$TETHER_TEST_TMP/trim.$S.ack"

# --- a closed session takes nothing
api POST "/api/v1/sessions/$SID/close" '{"reason":"done"}' "$KEY" -H 'Content-Type: application/json'
append in p9 'late'
is "$CODE/$(jq -r .code <<<"$BODY")" "409/session_closed" "append to a closed session is 409 session_closed"
ok "with x-should-retry: false" grep -qi '^x-should-retry: false' "$HDRS"
api GET "/realtime/v1/sessions/chat-$S/in/records?afterEventId=11" "" "$KEY" -G
is "$(jq '.records | length' <<<"$BODY")" 0 "and nothing was written"

done_testing
