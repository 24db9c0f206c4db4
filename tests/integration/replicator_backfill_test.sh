# replicator_backfill_test.sh - the clickhouse-replicator against real PostgreSQL, ClickHouse and
# Redis, part two. (1) The initial backfill: sessions that exist in PostgreSQL before the slot
# does are copied once, even when the replicator is killed in the middle of the copy (fault point
# mid_backfill): the restart finds a slot without a finished backfill, makes it again and copies
# everything; the repeats collapse under FINAL and a later change still wins. (2) A row ClickHouse
# refuses as bad data (fault "refuse_row MARKER": ClickHouse itself answers Code: 117 for it) is
# logged with its LSN and skipped after TETHER_CHR_MAX_TRIES; the rows around it arrive and the
# slot's confirmed_flush_lsn moves past it.
. "$(dirname "$0")/../lib/itest.sh"

S=$$-$RANDOM
A=bf$$x$RANDOM # a prefix for ids made here: alphanumeric like a cuid (the list's cursor rule)
FAULT=$TETHER_TEST_TMP/chr-fault-bf-$S
SLOT=sessions_to_clickhouse_v1 # TETHER_CHR_SLOT's default
N=250                          # sessions made before the slot: 3 chunks of 100
PSQL() { psql -X -qtA "$TETHER_PG_URL" -c "$1"; }
chq() { curl -s --max-time 5 "$TETHER_CH_URL/" --data-binary "$1"; }
api() {
  local m=$1 p=$2 body=${3-}
  if [[ -n $body ]]; then
    BODY=$(curl -s -X "$m" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
      --data-binary "$body" -w '\n%{http_code}' "$TREE_URL$p")
  else
    BODY=$(curl -s -X "$m" -H "Authorization: Bearer $KEY" -w '\n%{http_code}' "$TREE_URL$p")
  fi
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
create() { # create EXTERNAL_ID -> SID (the friendly id)
  api POST /api/v1/sessions "{\"type\":\"chat\",\"externalId\":\"$1\",\"taskIdentifier\":\"t-$S\",\"triggerConfig\":{\"basePayload\":{}}}"
  SID=$(jq -r .id <<<"$BODY")
}
in_ch() { [[ $(chq "SELECT count() FROM sessions_v1 FINAL WHERE friendly_id = '$1' AND _is_deleted = 0") == 1 ]]; }
chr_pid() { child_field clickhouse-replicator pid; }
streams() { [[ $(grep -c '"chr.streaming"' "$TREE_LOG") -ge ${1:-1} ]]; }

# --- an environment (and the migrations), then no replicator and no slot
tree_start
KEY=$(ctl env create --org "bf-$S" --project a --type dev)
ENV=$(PSQL "SELECT id FROM runtime_environments WHERE api_key = '$KEY'")
read -r ORG PROJ <<<"$(PSQL "SELECT organization_id || ' ' || project_id FROM runtime_environments WHERE id = '$ENV'")"
ok "the first replicator streams (its slot exists)" wait_for 10000 streams
tree_stop
is "$TREE_EXIT" 0 "the tree stops (no replicator holds the slot)"
PSQL "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT'" >/dev/null
is "$(PSQL "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'")" 0 "the slot is dropped"

# --- sessions made while no slot exists (an hour old: the list's read-your-writes window
# does not see them, only ClickHouse does)
PSQL "INSERT INTO sessions (id, friendly_id, external_id, type, project_id, runtime_environment_id,
  organization_id, environment_type, task_identifier, trigger_config, tags, created_at, updated_at)
  SELECT '$A' || lpad(g::text, 4, '0'), 'session_$A' || lpad(g::text, 4, '0'), 'pre-' || g,
    'chat', '$PROJ', '$ENV', '$ORG', 'DEVELOPMENT', 'pre-$S', '{}', ARRAY['n:' || (g % 7)],
    now() - interval '1 hour' + (g || ' ms')::interval, now() - interval '1 hour'
  FROM generate_series(1, $N) g"
is "$(PSQL "SELECT count(*) FROM sessions WHERE runtime_environment_id = '$ENV'")" "$N" "$N sessions in PostgreSQL before the slot"
is "$(chq "SELECT count() FROM sessions_v1 WHERE environment_id = '$ENV'")" 0 "none of them in ClickHouse"

# --- the replicator makes the slot, copies one chunk and is killed; the restart copies all
echo mid_backfill >"$FAULT"
tree_start_nowait TETHER_CHR_FAULT_FILE="$FAULT" TETHER_CHR_BACKFILL_ROWS=100 TETHER_CHR_MAX_TRIES=3 \
  TETHER_CHR_BACKOFF_MAX=200ms
ok "the replicator was killed after the first backfill chunk" wait_for 15000 grep -q '"chr.fault".*mid_backfill' "$TREE_LOG"
ok "the restarted one found the slot's backfill unfinished and made the slot again" \
  wait_for 15000 grep -q '"chr.slot_recreated"' "$TREE_LOG"
ok "and streams" wait_for 15000 streams
is "$(grep -c '"chr.slot_created"' "$TREE_LOG")" 2 "two slots were made (the first one's copy was cut short)"
is "$(chq "SELECT count() FROM sessions_v1 FINAL WHERE environment_id = '$ENV' AND _is_deleted = 0")" "$N" \
  "every pre-existing session is in ClickHouse under FINAL"
is "$(chq "SELECT max(c) FROM (SELECT count() AS c FROM sessions_v1 FINAL WHERE environment_id = '$ENV' GROUP BY session_id)")" 1 \
  "each exactly once"
is "$(chq "SELECT uniqExact(session_id) FROM sessions_v1 WHERE environment_id = '$ENV'")" "$N" "no session is missing from the raw rows"
diag "raw rows before a merge: $(chq "SELECT count() FROM sessions_v1 WHERE environment_id = '$ENV'") (the cut-short copy's rows plus the full copy's)"
bf_lsn=$(PSQL "SELECT backfilled_lsn - '0/0'::pg_lsn FROM clickhouse_replicator_slots WHERE slot_name = '$SLOT'")
is "$(chq "SELECT uniqExact(_version), any(_version) FROM sessions_v1 FINAL WHERE environment_id = '$ENV'" | tr '\t' ' ')" \
  "1 $bf_lsn" "their _version is the new slot's consistent point (recorded as backfilled)"

# the list pages through them once each, newest first (ClickHouse: they are an hour old)
ids=() after=""
for _ in 1 2 3 4; do
  api GET "/api/v1/sessions?filter%5BtaskIdentifier%5D=pre-$S&page%5Bsize%5D=100${after:+&page%5Bafter%5D=$after}"
  [[ $CODE == 200 ]] || diag "list page: $CODE $BODY"
  mapfile -t -O "${#ids[@]}" ids < <(jq -r '.data[].id' <<<"$BODY")
  after=$(jq -r '.pagination.next // empty' <<<"$BODY")
  [[ -z $after ]] && break
done
want=$(PSQL "SELECT string_agg(friendly_id, ' ' ORDER BY id DESC) FROM sessions WHERE runtime_environment_id = '$ENV'")
is "${#ids[@]} $(printf '%s\n' "${ids[@]}" | sort -u | wc -l)" "$N $N" "the list shows $N sessions, none twice"
is "${ids[*]}" "$want" "in session id order, newest first"

# a change after the backfill wins over the copied row
api PATCH "/api/v1/sessions/session_${A}0007" '{"tags":["changed"]}'
is "$CODE" 200 "an update of a backfilled session"
ok "reaches ClickHouse over the copied row" wait_for 5000 bash -c "[[ \$(curl -s '$TETHER_CH_URL/' --data-binary \"SELECT arrayStringConcat(tags, ',') FROM sessions_v1 FINAL WHERE friendly_id = 'session_${A}0007'\") == changed ]]"

# --- a row ClickHouse refuses: logged with its LSN and skipped, the slot moves on
create "ok1-$S"
OK1=$SID
ok "a session before the bad one reaches ClickHouse" wait_for 5000 in_ch "$OK1"
pid=$(chr_pid)
echo "refuse_row bad-$S" >"$FAULT"
create "ok2-$S"
OK2=$SID
create "bad-$S"
BAD=$SID
BAD_ID=$(PSQL "SELECT id FROM sessions WHERE friendly_id = '$BAD'")
create "ok3-$S"
OK3=$SID
skipped() { grep '"chr.row_skipped"' "$TREE_LOG" | grep -q "session $BAD_ID at LSN"; }
ok "the refused row is logged as chr.row_skipped with its LSN" wait_for 20000 skipped
LINE=$(grep '"chr.row_skipped"' "$TREE_LOG" | grep "session $BAD_ID at LSN" | head -1)
LSN=$(grep -oE 'at LSN [0-9A-F]+/[0-9A-F]+' <<<"$LINE" | cut -d' ' -f3)
diag "skipped at LSN $LSN: $LINE"
ok "after TETHER_CHR_MAX_TRIES (3) tries" grep -q " 3 times" <<<"$LINE"
ok "ClickHouse refused the batch as bad data first (chr.batch_refused)" grep -q '"chr.batch_refused"' "$TREE_LOG"
ok "the rows around it arrive" wait_for 5000 bash -c "$(declare -f in_ch chq); in_ch $OK2 && in_ch $OK3"
is "$(chq "SELECT count() FROM sessions_v1 WHERE friendly_id = '$BAD'")" 0 "the refused row is not in ClickHouse"
past() { [[ $(PSQL "SELECT confirmed_flush_lsn >= '$LSN'::pg_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'") == t ]]; }
ok "the slot's confirmed_flush_lsn moves past it" wait_for 15000 past
diag "confirmed_flush_lsn $(PSQL "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")"
rm -f "$FAULT"
create "ok4-$S"
ok "a later session arrives" wait_for 5000 in_ch "$SID"
is "$(chr_pid)" "$pid" "the replicator never restarted"
is "$(chq "SELECT count() FROM sessions_v1 WHERE friendly_id = '$BAD'")" 0 "and the skipped row stays skipped"

tree_stop
is "$TREE_EXIT" 0 "the tree stops cleanly"
done_testing
