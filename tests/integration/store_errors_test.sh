# store_errors_test.sh - transient store trouble is the server's, not the client's: a create cut
# off by PostgreSQL's statement_timeout (SQLSTATE 57014) answers 503 with x-should-retry: true
# (it was 400), writes nothing, and the same request succeeds once the store is free again.
. "$(dirname "$0")/../lib/itest.sh"

tree_start TETHER_PG_STATEMENT_TIMEOUT=300ms
S=$$-$RANDOM
KEY=$(ctl env create --org "se-$S" --project a --type dev)
PSQL() { psql -tA "$TETHER_PG_URL" -c "$1"; }
HDRS=$TREE_DIR/hdrs
create() {
  curl -s -D "$HDRS" -o "$TREE_DIR/body" -w '%{http_code}' -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' --max-time 10 \
    --data-binary "{\"type\":\"chat\",\"externalId\":\"locked-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
    "$TREE_URL/api/v1/sessions"
}

# hold the sessions table for 3 s: every create waits for the lock until statement_timeout
psql -q "$TETHER_PG_URL" -c "BEGIN; LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;" >/dev/null &
LOCKER=$!
wait_for 3000 bash -c "[[ \$(psql -tA '$TETHER_PG_URL' -c \"SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'sessions' AND l.mode = 'AccessExclusiveLock' AND l.granted\") == 1 ]]"
code=$(create)
is "$code" 503 "a create cut off by statement_timeout is 503 (not 400)"
is "$(grep -i '^x-should-retry:' "$HDRS" | tr -d '\r' | cut -d' ' -f2)" true "with x-should-retry: true"
is "$(jq -r .error "$TREE_DIR/body")" "Service temporarily unavailable; retry" "with the documented text"
wait "$LOCKER"
is "$(PSQL "SELECT count(*) FROM sessions WHERE external_id = 'locked-$S'")" 0 "the refused create wrote nothing"
code=$(create)
is "$code" 201 "the same create succeeds once the store is free"
ok "the actor logged the SQLSTATE with its class" grep -q '"event":"db.pg_query_failed".*57014, ERR_TIMEOUT' "$TREE_LOG"

tree_stop
done_testing
