# feed_idle_test.sh - idle SSE feeds cost the stream store nothing. (Only the gateways' reads
# count: the waitpoint registry's sweep reads channels of waiters other tests left pending.) N feeds wait at the tail of
# their streams; over 20 s (one or more pings each, every 5-15 s) the stream-broker is asked for
# almost no stream.read: a feed re-reads when an event shows a gap, and when idle only 60 s
# after its last read (feed.h). A record appended then still reaches its feed at once.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
S=$$-$RANDOM
KEY=$(ctl env create --org "fi-$S" --project a --type dev)
N=40
OUT=$TETHER_TEST_TMP/fi.$S
mkdir -p "$OUT"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"type\":\"chat\",\"externalId\":\"idle-$S-7\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
  "$TREE_URL/api/v1/sessions")
is "$code" 201 "a session for one of the feeds (the others follow streams without a row)"
pids=()
for i in $(seq 1 "$N"); do
  # no row: an externalId addresses its own (empty) stream
  curl -s -N --max-time 60 -H "Authorization: Bearer $KEY" -H 'Timeout-Seconds: 600' \
    "$TREE_URL/realtime/v1/sessions/idle-$S-$i/out" >"$OUT/$i" 2>/dev/null &
  pids+=($!)
done
pinged() { [[ $(grep -l '^event: ping' "$OUT"/* 2>/dev/null | wc -l) -eq $N ]]; }
ok "$N feeds are at their tails (first ping)" wait_for 20000 pinged
sleep 3 # on a busy machine a feed's first read may still be on its way at its first ping
reads=$(ctl tap --type stream.read --seconds 20 |
  jq -r 'select(.proc == "stream-broker" and .dir == "in" and .kind == "request" and
    (.sender | startswith("gateway"))) | .req' | wc -l)
diag "$reads stream.read requests from $N idle feeds in 20 s"
ok "idle feeds do not re-read on their pings (at most N/10 reads in 20 s)" test "$reads" -le $((N / 10))
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" --data-binary live \
  "$TREE_URL/realtime/v1/sessions/idle-$S-7/out/append")
is "$code" 200 "an append to one of the streams"
got() { grep -q '"seq_num":0' "$OUT/7"; }
ok "reaches its idle feed at once (the event)" wait_for 3000 got
kill "${pids[@]}" 2>/dev/null
wait "${pids[@]}" 2>/dev/null
rm -rf "$OUT"
tree_stop
done_testing
