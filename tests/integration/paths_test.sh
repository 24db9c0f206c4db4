# paths_test.sh - how URLs reach the routes: every path parameter is decoded exactly once, from
# the raw path (never twice: y%2531 is the id "y%31", not "y1"); ids a URL cannot carry are
# refused at create; %25, %2F, %00, .., %ff in each :param are a 400 at the edge (before any
# store); the query is not part of the path; the S2 :stream keeps its slashes, encoded or not;
# and a session with a tricky but accepted externalId is reachable on every route with the SDK's
# encodeURIComponent, by its own token too.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
S=$$-$RANDOM
KEY=$(ctl env create --org "pa-$S" --project a --type dev)

# api METHOD PATH BODY [AUTH [curl args...]] -> CODE, BODY, HDRS (the path is sent as is)
api() {
  local m=$1 p=$2 body=${3-} auth=${4:-$KEY}
  shift 4 2>/dev/null || shift $#
  local data=()
  [[ -n $body ]] && data=(--data-binary "$body")
  HDRS=$(mktemp)
  BODY=$(curl -s --path-as-is -X "$m" -D "$HDRS" -H "Authorization: Bearer $auth" "$@" \
    "${data[@]}" -w '\n%{http_code}' "$TREE_URL$p")
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
hdr() { grep -i "^$1:" "$HDRS" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
# encodeURIComponent: jq's @uri, which also encodes the five characters it leaves alone
enc() { jq -rn --arg s "$1" '$s|@uri' | sed "s/%21/!/g; s/%27/'/g; s/%28/(/g; s/%29/)/g; s/%2A/*/g"; }
create() { # create EXTERNAL_ID (any JSON string text, unquoted)
  api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"$1\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
    "$KEY" -H 'Content-Type: application/json'
}
params_error() { [[ $CODE == 400 && $(jq -r .error <<<"$BODY") == "Params Error" && $(jq -r ".details[0].path[0]" <<<"$BODY") == "$1" ]]; }

# --- one decoding: what the SDK sends for "y%31" is not the session "y1"
create "y1-$S"
is "$CODE" 201 "a session y1"
Y1=y1-$S
api GET "/api/v1/sessions/y%2531-$S"
ok "GET y%2531 (the id y%31) is not the session y1" params_error session
api POST "/realtime/v1/sessions/y%2531-$S/in/append" "lost" "$KEY" -H 'X-Part-Id: p1'
ok "an append to y%2531 is refused" params_error session
api GET "/realtime/v1/sessions/$Y1/in/records"
is "$CODE $(jq -c .records <<<"$BODY")" "200 []" "and nothing landed in y1's stream"
create "y%31-$S"
is "$CODE $BODY" '400 {"error":"Validation error: externalId must not contain \"%\" at \"externalId\""}' \
  "an externalId with '%' is refused at create"

# --- bad values in every :param: a 400 naming it, before any store
for v in %25 %2F %00 .. %2e%2E %ff a%2Fb %zz; do
  api GET "/api/v1/sessions/$v"
  ok "GET /api/v1/sessions/$v is 400 Params Error (session)" params_error session
  api POST "/api/v1/sessions/$v/close" '{}' "$KEY" -H 'Content-Type: application/json'
  ok "close of $v is 400 (session)" params_error session
  api PUT "/realtime/v1/sessions/$v/in" ""
  ok "PUT realtime $v is 400 (session)" params_error session
  api GET "/realtime/v1/sessions/$v/in/records"
  ok "records of $v is 400 (session)" params_error session
  api POST "/realtime/v1/sessions/$Y1/$v/append" "x"
  ok "append to :io $v is 400 (io)" params_error io
  api GET "/api/v3/runs/$v"
  ok "GET /api/v3/runs/$v is 400 (run)" params_error run
  api GET "/s2/v1/streams/sessions%2F$v%2Fin/records" "" "$KEY" -H 'Accept: application/json'
  is "$CODE $(jq -r .code <<<"$BODY")" "404 stream_not_found" "the S2 stream sessions/$v/in names no stream"
done
ok "no store saw a byte that is not UTF-8" bash -c "! grep -qi 'invalid byte sequence' '$TREE_LOG'"
api GET "/api/v1/sessions/$Y1/../$Y1"
is "$CODE" 404 "dot segments are not resolved: a path with one matches no route"
api GET "/api/v1/sessions/$Y1?x=%2F&y=/"
is "$CODE $(jq -r .externalId <<<"$BODY")" "200 $Y1" "the query is not part of :session"
api GET "/api/v1/sessions/$Y1?"
is "$CODE" 200 "an empty query neither"

# --- externalIds a URL cannot carry are refused at create (and by PATCH)
for bad in 'a/b' '..' '.' '50%' 'a\u0001b' 'a\u007fb' 'a\u0085b'; do
  create "$bad"
  is "$CODE $(jq -r '.error | test("^Validation error: externalId must ")' <<<"$BODY")" "400 true" "externalId \"$bad\" is 400"
done
create "a/b"
is "$BODY" '{"error":"Validation error: externalId must not contain \"/\" at \"externalId\""}' "the 400 names the rule"
api PATCH "/api/v1/sessions/$Y1" '{"externalId":"a/b"}' "$KEY" -H 'Content-Type: application/json'
is "$CODE" 400 "PATCH with such an externalId is 400"

# --- tricky but accepted ids: every route, with encodeURIComponent, by the session's own token
IDS=("chat one $S" "ünï©ødé 日本 $S" "a+b=c $S" "k:v:$S" "q?x=1&y#z $S" "(x)!*~' $S" "..$S" "back\\\\slash $S")
for E in "${IDS[@]}"; do
  create "$E"
  E=$(jq -r .externalId <<<"$BODY")
  is "$CODE" 201 "create \"$E\""
  T=$(jq -r .publicAccessToken <<<"$BODY")
  RUN=$(jq -r .runId <<<"$BODY")
  U=$(enc "$E")
  api GET "/api/v1/sessions/$U" "" "$T"
  is "$CODE $(jq -r .externalId <<<"$BODY")" "200 $E" "[$E] GET with its token"
  api PATCH "/api/v1/sessions/$U" '{"tags":["t"]}' "$KEY" -H 'Content-Type: application/json'
  is "$CODE $(jq -c .tags <<<"$BODY")" '200 ["t"]' "[$E] PATCH"
  api PUT "/realtime/v1/sessions/$U/in" "" "$T"
  is "$CODE" 202 "[$E] PUT .in with its token"
  api POST "/realtime/v1/sessions/$U/in/append" "hi" "$T" -H 'X-Part-Id: a1'
  is "$CODE $(jq -r .seq <<<"$BODY")" "200 0" "[$E] append with its token"
  api GET "/realtime/v1/sessions/$U/in/records" "" "$T"
  is "$(jq -c '[.records[] | [.seqNum, .data]]' <<<"$BODY")" '[[0,"hi"]]' "[$E] records with its token"
  is "$(curl -s -N --max-time 8 -H "Authorization: Bearer $T" -H 'Timeout-Seconds: 1' "$TREE_URL/realtime/v1/sessions/$U/in" |
    grep '^data: {"records"' | sed 's/^data: //' | jq -r '.records[].seq_num' | paste -sd, -)" "0" "[$E] SSE with its token"
  api PUT "/realtime/v1/sessions/$U/out" ""
  NAME=$(hdr x-s2-stream-name)
  S2T=$(hdr x-s2-access-token)
  EP=$(hdr x-s2-endpoint)
  is "$NAME" "sessions/$E/out" "[$E] X-S2-Stream-Name carries the id"
  api POST "/s2/v1/streams/$(enc "$NAME")/records" '{"records":[{"body":"{\"data\":\"o\",\"id\":\"o1\"}"}]}' "$S2T" \
    -H 'Content-Type: application/json'
  is "$CODE $(jq -r .end.seq_num <<<"$BODY")" "200 1" "[$E] the S2 append with its stream token (name encoded)"
  [[ $EP == "$TREE_URL/s2/v1" ]] || diag "X-S2-Endpoint is $EP"
  api GET "/realtime/v1/sessions/$U/out/records"
  is "$(jq -c '[.records[].data]' <<<"$BODY")" '["o"]' "[$E] the record is in the session's .out"
  api POST "/api/v1/sessions/$U/end-and-continue" "{\"callingRunId\":\"$RUN\",\"reason\":\"manual\"}" "$T" \
    -H 'Content-Type: application/json'
  is "$CODE" 200 "[$E] end-and-continue with its token"
  api POST "/api/v1/sessions/$U/close" '{}' "$KEY" -H 'Content-Type: application/json'
  is "$CODE $(jq -r .externalId <<<"$BODY")" "200 $E" "[$E] close"
done
# the S2 endpoint takes a stream name's slashes raw too
api PUT "/realtime/v1/sessions/$Y1/out" ""
S2T=$(hdr x-s2-access-token)
api POST "/s2/v1/streams/sessions/$Y1/out/records" '{"records":[{"body":"r"}]}' "$S2T" -H 'Content-Type: application/json'
is "$CODE $(jq -r .end.seq_num <<<"$BODY")" "200 1" "an S2 stream name with raw slashes"

tree_stop
is "$TREE_LEFT" "" "nothing left running"
done_testing
