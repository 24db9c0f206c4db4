# body_limit_test.sh - one limit and one 413 body per route family. The /api and /realtime
# routes answer every body over their limit with the contract's {"error":"Request body too
# large"} and CORS, whichever check refused it: a route's byte cap (sessions), or for append
# the record's metered size (8 + the envelope's length <= 1 MiB), however far over it is. The
# S2 endpoint's one limit is S2's: 1 MiB metered per batch, answered in S2's error shape, so a
# base64 batch whose JSON is larger than 1 MiB but whose records are not is taken.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
S=$$-$RANDOM
KEY=$(ctl env create --org "bl-$S" --project a --type dev)
F=$TETHER_TEST_TMP/bl.$S
post() { # post PATH FILE [curl args...]: sets CODE, BODY, CORS
  local p=$1 f=$2
  shift 2
  local out
  out=$(curl -s -D "$F.h" -w '\n%{http_code}' -H "Authorization: Bearer $KEY" -H 'Origin: https://app.example' \
    "$@" --data-binary "@$f" "$TREE_URL$p")
  CODE=${out##*$'\n'}
  BODY=$(jq -c . <<<"${out%$'\n'*}" 2>/dev/null)
  CORS=$(grep -i '^access-control-allow-origin:' "$F.h" | tr -d '\r' | cut -d' ' -f2)
  RETRY=$(grep -i '^x-should-retry:' "$F.h" | tr -d '\r' | cut -d' ' -f2)
}
TOO_LARGE='413 {"error":"Request body too large"} https://app.example'

printf '{"type":"chat","externalId":"bl-%s","taskIdentifier":"echo","triggerConfig":{"basePayload":{}}}' "$S" >"$F.create"
post /api/v1/sessions "$F.create" -H 'Content-Type: application/json'
is "$CODE" 201 "a session"

# the sessions family: the route's byte cap
python3 -c 'import json; print(json.dumps({"type": "chat", "taskIdentifier": "echo", "triggerConfig": {"basePayload": {}}, "metadata": {"x": "a" * 40000}}))' >"$F.big"
post /api/v1/sessions "$F.big" -H 'Content-Type: application/json'
is "$CODE $BODY $CORS" "$TOO_LARGE" "a create over 32 KiB: 413, the contract's body"
is "$RETRY" false "not to be retried"

# append: one limit, the metered size; the same answer at one byte over and at 1.5 MiB
OVER=$((8 + 9 + 8 + 3 + 2)) # 8 + len({"data":"","id":"big"})
head -c $((1048576 - OVER + 1)) /dev/zero | tr '\0' a >"$F.1"
post "/realtime/v1/sessions/bl-$S/out/append" "$F.1" -H 'X-Part-Id: big'
is "$CODE $BODY $CORS" "$TOO_LARGE" "an append one metered byte over 1 MiB: 413, the contract's body"
head -c $((1048576 + 1)) /dev/zero | tr '\0' a >"$F.2"
post "/realtime/v1/sessions/bl-$S/out/append" "$F.2" -H 'X-Part-Id: big'
is "$CODE $BODY $CORS" "$TOO_LARGE" "a raw body over 1 MiB: the same 413"
is "$RETRY" false "not to be retried either"
head -c $((1536 * 1024)) /dev/zero | tr '\0' a >"$F.3"
post "/realtime/v1/sessions/bl-$S/out/append" "$F.3" -H 'X-Part-Id: big'
is "$CODE $BODY $CORS" "$TOO_LARGE" "1.5 MiB: the same 413"
head -c 600000 /dev/zero | tr '\0' '\001' >"$F.4" # each byte is \u0001 in the envelope: 6x
post "/realtime/v1/sessions/bl-$S/out/append" "$F.4" -H 'X-Part-Id: big'
is "$CODE $BODY $CORS" "$TOO_LARGE" "600 kB whose envelope escapes past 1 MiB: the same 413"
post "/realtime/v1/sessions/nosuch-$S/out/append" "$F.2" -H 'X-Part-Id: big'
is "$CODE" 413 "the limit is checked before the session is looked up"
printf hi >"$F.ok"
post "/realtime/v1/sessions/bl-$S/out/append" "$F.ok"
is "$CODE" 200 "a small append is taken"

# the S2 family: 1 MiB metered per batch, S2's error shape
S2=/s2/v1/streams/sessions%2Fbl-$S%2Fout/records
S2_TOO_LARGE='413 {"code":"invalid","message":"a batch may hold at most 1 MiB of metered records"}'
python3 -c 'import json; b = "c" * 600000; print(json.dumps({"records": [{"body": b}, {"body": b}]}))' >"$F.s1"
post "$S2" "$F.s1" -H 'Content-Type: application/json'
is "$CODE $BODY" "$S2_TOO_LARGE" "an S2 batch of 1.2 MB metered: 413 in S2's shape"
python3 -c 'import json; b = "c" * 1200000; print(json.dumps({"records": [{"body": b}]}))' >"$F.s2"
post "$S2" "$F.s2" -H 'Content-Type: application/json'
is "$CODE $BODY" "$S2_TOO_LARGE" "a 1.2 MB record: the same 413"
python3 -c 'import base64, json; b = base64.b64encode(b"d" * 900000).decode(); print(json.dumps({"records": [{"body": b}]}))' >"$F.s3"
post "$S2" "$F.s3" -H 'Content-Type: application/json' -H 'S2-Format: base64'
is "$CODE" 200 "a base64 batch of 1.2 MB JSON but 900 kB metered is taken"
rm -f "$F".*
tree_stop
done_testing
