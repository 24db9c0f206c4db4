# session_cache_test.sh - appends without a session lookup, and the close rule that makes that
# safe. A gateway process keeps the session rows it read (TETHER_GW_SESSION_CACHE_TTL): with
# the session-manager stopped (SIGSTOP), appends to a session the gateways have seen still go
# through. A close seals the session's streams in the stream-broker before its answer
# returns, so the very next append, on either gateway process, whatever they cache, is 409
# with nothing written; a close answered while the broker was away is completed by its retry.
. "$(dirname "$0")/../lib/itest.sh"

tree_start TETHER_GW_SESSION_CACHE_TTL=30s
S=$$-$RANDOM
KEY=$(ctl env create --org "sc-$S" --project a --type dev)
PSQL() { psql -tA "$TETHER_PG_URL" -c "$1"; }
create() {
  curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' \
    -d "{\"type\":\"chat\",\"externalId\":\"$1\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
    "$TREE_URL/api/v1/sessions"
}
# append N EXT: N appends to .out on N fresh connections (SO_REUSEPORT spreads them over both
# gateway processes); prints each status
appends() {
  local n=$1 ext=$2
  for i in $(seq 1 "$n"); do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Authorization: Bearer $KEY" \
      --data-binary "m$i" "$TREE_URL/realtime/v1/sessions/$ext/out/append" &
  done
  wait
}
gw_pids=$(ctl status --json | jq -r '.children[] | select(.name | startswith("gateway")) | .pid')
is "$(wc -w <<<"$gw_pids")" 2 "the tree runs two gateway processes"

is "$(create "cached-$S")" 201 "a session"
is "$(appends 16 "cached-$S" | sort -u)" 200 "16 appends on fresh connections: both processes have read the row"
SM=$(child_field session-manager pid)
kill -STOP "$SM"
out=$(appends 16 "cached-$S" | sort -u)
kill -CONT "$SM"
is "$out" 200 "with the session-manager stopped, appends still go through: no session lookup"

is "$(create "closed-$S")" 201 "another session"
is "$(appends 16 "closed-$S" | sort -u)" 200 "both processes cache it"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"reason":"done"}' "$TREE_URL/api/v1/sessions/closed-$S/close")
is "$code" 200 "close"
n_before=$(redis-cli -u "$TETHER_REDIS_URL" --raw EVAL "return redis.call('XLEN', KEYS[1])" 1 \
  "tether:stream:{$(PSQL "SELECT environment_id FROM sessions WHERE external_id = 'closed-$S'"):closed-$S}:out")
is "$(appends 32 "closed-$S" | sort -u)" 409 "at once after the close: 32 appends over both processes are 409"
body=$(curl -s -X POST -H "Authorization: Bearer $KEY" --data-binary x "$TREE_URL/realtime/v1/sessions/closed-$S/out/append")
is "$(jq -r '[.code, .closedReason] | join(",")' <<<"$body")" "session_closed,done" "with the contract's body and the close reason"
n_after=$(redis-cli -u "$TETHER_REDIS_URL" --raw EVAL "return redis.call('XLEN', KEYS[1])" 1 \
  "tether:stream:{$(PSQL "SELECT environment_id FROM sessions WHERE external_id = 'closed-$S'"):closed-$S}:out")
is "$n_after" "$n_before" "and nothing was written"

# a close while the stream-broker is away: committed, answered 503, sealed by the retry
is "$(create "retry-$S")" 201 "a third session"
is "$(appends 8 "retry-$S" | sort -u)" 200 "cached"
SB=$(child_field stream-broker pid)
kill -STOP "$SB"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 15 -X POST -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{}' "$TREE_URL/api/v1/sessions/retry-$S/close")
kill -CONT "$SB"
is "$code" 503 "a close the broker cannot seal is 503 (retry)"
is "$(PSQL "SELECT closed_at IS NOT NULL FROM sessions WHERE external_id = 'retry-$S'")" t "the row is closed"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{}' "$TREE_URL/api/v1/sessions/retry-$S/close")
is "$code" 200 "the retried close answers 200"
is "$(appends 16 "retry-$S" | sort -u)" 409 "and then every append is 409"

tree_stop
done_testing
