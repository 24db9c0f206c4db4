# quota_test.sh - what a stream and an environment may hold in Redis: per-stream retention (the
# newest TETHER_SB_STREAM_MAX_RECORDS records, TETHER_SB_STREAM_MAX_BYTES bytes; seqs dense and
# never reused), the environment's quota (TETHER_SB_ENV_MAX_BYTES: 507 + x-should-retry: false,
# nothing written; a stream at its retention limit still takes appends; a trim makes room), the
# counters against the records they count, and a full Redis (maxmemory, noeviction, as
# compose/services.sh starts it): 503 + x-should-retry: true, nothing written, reads still served.
# The stream-broker gets a Redis of its own, started by services.sh, so that filling it up
# disturbs neither the rest of the tree nor other tests.
. "$(dirname "$0")/../lib/itest.sh"

S=$$-$RANDOM
RDIR=$(mktemp -d "$TETHER_TEST_TMP/quota-redis.XXXXXX")
stop_redis() { TETHER_SERVICES=redis "$(dirname "$0")/../../compose/services.sh" stop "$RDIR" >/dev/null 2>&1; }
trap 'itest_cleanup; stop_redis' EXIT
# (tests/run.sh exports the shared Redis's port: a port of its own instead)
env -u TETHER_REDIS_PORT TETHER_SERVICES=redis TETHER_PORTS=auto TETHER_REDIS_MAXMEMORY=64mb \
  "$(dirname "$0")/../../compose/services.sh" start "$RDIR" 2>"$RDIR/start.log" || cat "$RDIR/start.log" >&2
RPORT=$(sed -n 's/^TETHER_REDIS_PORT=//p' "$RDIR/services.env")
R() { redis-cli -h 127.0.0.1 -p "$RPORT" "$@"; }
is "$(R CONFIG GET maxmemory | tail -1)/$(R CONFIG GET maxmemory-policy | tail -1)" "67108864/noeviction" \
  "services.sh starts Redis with TETHER_REDIS_MAXMEMORY and noeviction"

tree_start TETHER_SB_STREAM_MAX_RECORDS=5 TETHER_SB_STREAM_MAX_BYTES=4096 TETHER_SB_ENV_MAX_BYTES=12000 \
  TETHER_SV_CMD_STREAM_BROKER="exec env TETHER_REDIS_URL=redis://127.0.0.1:$RPORT $TETHER_TEST_BIN/stream-broker"
J=$(ctl env create --org "qt-$S" --project a --type dev --json)
KEY=$(jq -r .api_key <<<"$J")
ENV=$(jq -r .id <<<"$J")

api() { # api METHOD PATH BODY [curl args...]
  local m=$1 p=$2 body=$3
  shift 3
  HDRS=$(mktemp)
  BODY=$(curl -s -X "$m" -D "$HDRS" -H "Authorization: Bearer $KEY" "$@" --data-binary "$body" \
    -w '\n%{http_code}' "$TREE_URL$p")
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
hdr() { grep -i "^$1:" "$HDRS" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
session() {
  api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"$1-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
    -H 'Content-Type: application/json'
  [[ $CODE == 201 ]]
}
append() { api POST "/realtime/v1/sessions/$1-$S/out/append" "$3" -H "X-Part-Id: $2"; } # SESSION PART BODY
seqs() {
  api GET "/realtime/v1/sessions/$1-$S/out/records" "" -G
  jq -c '[.records[].seqNum]' <<<"$BODY"
}
# a record's metered size, as the gateway wraps it: 8 + len({"data":"<body>","id":"<part>"})
metered() { local e="{\"data\":\"$2\",\"id\":\"$1\"}"; echo $((8 + ${#e})); }
skey() { R --scan --pattern "tether:stream:{$ENV:*$1-$S}:out" | head -1; }
used() { R GET "tether:quota:{$ENV}:bytes"; }
# what a stream's records weigh, counted from the records themselves
weigh() {
  R EVAL "local t = 0
    for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
      local f = e[2]
      local n = 8 + #f[4]
      for i = 5, #f - 1, 2 do n = n + 2 + #f[i] + #f[i + 1] end
      t = t + n
    end
    return t" 1 "$1"
}
BIG=$(head -c 1500 /dev/zero | tr '\0' b)
BIGSZ=$(metered b0 "$BIG")

for s in rec byt q3 q4 q5; do session "$s" || diag "session $s: $CODE $BODY"; done

# --- retention by records: the newest 5, seqs go on
for i in 0 1 2 3 4 5 6 7; do append rec "r$i" "m$i"; done
is "$(jq -r .seq <<<"$BODY")" 7 "the eighth append is seq 7"
is "$(seqs rec)" "[3,4,5,6,7]" "the stream keeps its newest 5 records"
append rec r8 m8
is "$CODE/$(jq -r .seq <<<"$BODY")" "200/8" "the next append is seq 8: seqs are never reused"
is "$(seqs rec)" "[4,5,6,7,8]" "and the oldest goes"
REC=$(skey rec)
is "$(R XLEN "$REC")/$(R GET "$REC:bytes")" "5/$((5 * $(metered r0 m0)))" "Redis holds 5 entries and counts their bytes"

# --- retention by bytes: 4096 hold two records of ~1.5 KB
for i in 0 1 2; do append byt "b$i" "$BIG"; done
is "$(seqs byt)" "[1,2]" "the stream keeps the newest records within 4096 bytes"
BYT=$(skey byt)
is "$(R GET "$BYT:bytes")" "$((2 * BIGSZ))" "its byte counter says so"

# --- the environment's quota (12000 bytes)
is "$(used)" "$((5 * $(metered r0 m0) + 2 * BIGSZ))" "the environment's counter is the sum of its streams"
for s in q3 q4; do
  append "$s" x0 "$BIG"
  append "$s" x1 "$BIG"
done
append q5 x0 "$BIG"
is "$CODE" 200 "appends within the quota are taken"
BEFORE=$(used)
Q5=$(skey q5)
append q5 x1 "$BIG"
is "$CODE" 507 "an append that would pass the environment's quota is 507"
is "$(hdr x-should-retry)" false "with x-should-retry: false"
is "$(jq -r .error <<<"$BODY")" "Stream storage quota of this environment is used up" "and says why"
is "$(R XLEN "$Q5")/$(used)" "1/$BEFORE" "nothing was written, nothing counted"
append q5 x1 "$BIG"
is "$CODE" 507 "a retry is refused the same way"
append byt b3 "$BIG"
is "$CODE/$(seqs byt)" "200/[2,3]" "a stream at its byte limit still takes appends in a full environment (one out, one in)"
append rec r9 m9
is "$CODE/$(jq -r .seq <<<"$BODY")" "200/9" "so does one at its record limit"
append q5 s0 small
is "$CODE" 200 "a small append that fits in what is left is taken"
is "$(used)" "$((BEFORE + $(metered s0 small)))" "and counted"

# an S2 trim command deletes q3's two records: their bytes go back to the environment
python3 -c 'import sys; sys.stdout.buffer.write(b"\x0a\x12\x12\x06\x12\x04trim\x1a\x08" + (2).to_bytes(8, "big"))' >"$TETHER_TEST_TMP/qtrim.$S"
BEFORE=$(used)
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/protobuf' \
  --data-binary "@$TETHER_TEST_TMP/qtrim.$S" "$TREE_URL/s2/v1/streams/sessions%2Fq3-$S%2Fout/records")
rm -f "$TETHER_TEST_TMP/qtrim.$S"
is "$CODE/$(seqs q3)" "200/[]" "a trim command deletes the records before its point"
is "$(used)" "$((BEFORE - 2 * BIGSZ + 22))" "the environment gets their bytes back (the 22-byte command stays)"
append q5 x1 "$BIG"
is "$CODE" 200 "and the append refused before is taken now"

ALL=0 OKW=0 N=0
for k in $(R --scan --pattern "tether:stream:{$ENV:*:out"); do
  N=$((N + 1))
  ALL=$((ALL + $(R GET "$k:bytes")))
  [[ $(R GET "$k:bytes") == "$(weigh "$k")" ]] && OKW=$((OKW + 1))
done
is "$OKW/$N" "5/5" "every stream's byte counter matches its records"
is "$(used)" "$ALL" "the environment's counter is still the sum of its streams"

# --- a full Redis: 503 + x-should-retry: true, nothing written, reads still served
LEN=$(R XLEN "$REC")
USED=$(used)
R CONFIG SET maxmemory 1mb >/dev/null # below what it holds already
append rec full1 m
is "$CODE" 503 "an append to a full Redis is 503"
is "$(hdr x-should-retry)" true "with x-should-retry: true"
is "$(R XLEN "$REC")/$(used)" "$LEN/$USED" "nothing was written, nothing reserved"
is "$(seqs rec)" "[5,6,7,8,9]" "reads are still served"
R CONFIG SET maxmemory 64mb >/dev/null
append rec full1 m
is "$CODE/$(jq -r .seq <<<"$BODY")" "200/10" "once Redis has room again, appends are taken"

tree_stop
done_testing
