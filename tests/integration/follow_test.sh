# follow_test.sh - follow leases (stream.follow, docs/stream-broker.md): the stream-broker
# publishes a stream's records as stream.record events only while some process holds an
# unexpired lease on it. A stream nobody follows costs no event; an SSE subscriber's gateway
# takes a lease at once (so records appended right after the subscribe arrive live), and the
# lease outlives the subscriber until it expires.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
S=$$-$RANDOM
J=$(ctl env create --org "fl-$S" --project a --type dev --json)
KEY=$(jq -r .api_key <<<"$J")
ENV=$(jq -r .id <<<"$J")
R() { redis-cli -u "$TETHER_REDIS_URL" "$@"; }
append() { # append BODY: the HTTP code
  curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
    --data-binary "$1" "$TREE_URL/realtime/v1/sessions/fl-$S/out/append"
}
tap_records() { # tap_records SECONDS FILE: stream.record events the stream-broker publishes
  ctl tap --actor stream-broker --type stream.record --seconds "$1" >"$2" &
  TAP=$!
  sleep 1.2 # the tap dials every process's tap socket once a second
}
published() { grep -c '"proc":"stream-broker","dir":"out".*"type":"stream.record"' "$1"; }

code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d "{\"type\":\"chat\",\"externalId\":\"fl-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" "$TREE_URL/api/v1/sessions")
is "$code" 201 "a session"
is "$(append first)" 200 "an append to a stream nobody follows"
SKEY=$(R --scan --pattern "tether:stream:{$ENV:*fl-$S}:out" | head -1)
ok "its records are in Redis ($SKEY)" test -n "$SKEY"
FK="$SKEY:followers"

tap_records 2.5 "$TREE_DIR/tap1.out"
for i in 1 2 3; do append "quiet-$i" >/dev/null; done
wait $TAP
is "$(published "$TREE_DIR/tap1.out")" 0 "no stream.record event for a stream nobody follows"
is "$(R EXISTS "$FK")" 0 "and no lease on it"

# a subscriber: its gateway takes a lease before its first live record
curl -s -N --max-time 6 -H "Authorization: Bearer $KEY" \
  "$TREE_URL/realtime/v1/sessions/fl-$S/out" >"$TREE_DIR/sse.out" &
SSE=$!
wait_for 3000 bash -c "[[ \$(redis-cli -u '$TETHER_REDIS_URL' ZCARD '$FK') == 1 ]]"
is "$(R ZCARD "$FK")" 1 "the subscriber's gateway holds one lease"
ok "held by a gateway" bash -c "R() { redis-cli -u '$TETHER_REDIS_URL' \"\$@\"; }; R ZRANGE '$FK' 0 -1 | grep -q '^gateway\.'"
left=$(($(R ZSCORE "$FK" "$(R ZRANGE "$FK" 0 0)") - $(R TIME | head -1) * 1000))
ok "for 30 s ($left ms left)" test "$left" -gt 20000 -a "$left" -le 31000
ttl=$(R PTTL "$FK")
ok "the lease key expires with its newest lease ($ttl ms)" test "$ttl" -gt 20000 -a "$ttl" -le 30000

tap_records 2.5 "$TREE_DIR/tap2.out"
for i in 1 2; do append "live-$i" >/dev/null; done
wait $TAP
is "$(published "$TREE_DIR/tap2.out")" 2 "a followed stream's records are published"
wait $SSE
for b in first quiet-3 live-1 live-2; do
  ok "the subscriber read '$b'" grep -q "\"data\\\\\":\\\\\"$b\\\\\"" "$TREE_DIR/sse.out"
done
is "$(R ZCARD "$FK")" 1 "the lease outlives its subscriber (it expires; it is not ended)"

tree_stop
done_testing
