#!/usr/bin/env bash
# replication.sh BUILD_DIR: the clickhouse-replicator's two numbers.
# (1) PostgreSQL commit -> row visible in ClickHouse (what the list reads), p50/p99, while pgbench
#     commits TETHER_BENCH_RATE (1000) session inserts per second for TETHER_BENCH_SECONDS (10);
#     each row's created_at is clock_timestamp() at its insert (autocommit: the commit follows at
#     once), and a poller records when ClickHouse first shows it (resolution: one poll, ~10-20 ms).
# (2) GET /api/v1/sessions latency (p50/p99 of 100 requests, 20 per page, with and without a
#     filter) with TETHER_BENCH_SESSIONS (100000) sessions in the environment.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: replication.sh BUILD_DIR}" && pwd -P)
DUR=${TETHER_BENCH_SECONDS:-10}
RATE=${TETHER_BENCH_RATE:-1000}
NSESS=${TETHER_BENCH_SESSIONS:-100000}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
bench_tree_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project repl --type dev)
PSQL() { psql -X -tA "$TETHER_PG_URL" -c "$1"; }
ENV=$(PSQL "SELECT id FROM runtime_environments WHERE api_key = '$KEY'")
read -r ORG PROJ <<<"$(PSQL "SELECT organization_id || ' ' || project_id FROM runtime_environments WHERE id = '$ENV'")"
chq() { curl -s "$TETHER_CH_URL/" --data-binary "$1"; }
for _ in $(seq 100); do grep -q '"chr.streaming"' "$T/tree.log" 2>/dev/null && break; sleep 0.1; done

pct() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "null null"; exit}
  p50=a[int(NR*0.5)+(NR*0.5>int(NR*0.5))]; p99=a[int(NR*0.99)+(NR*0.99>int(NR*0.99))];
  print (p50==""?a[NR]:p50), (p99==""?a[NR]:p99)}'; }

# ---- (1) commit -> visible
cat >"$T/insert.sql" <<SQL
\\set n random(1, 1000000000)
INSERT INTO sessions (id, friendly_id, type, project_id, runtime_environment_id, organization_id,
    environment_type, task_identifier, trigger_config, created_at, updated_at)
VALUES ('l' || :client_id || '-' || :n || '-' || txid_current(), 'session_l' || :client_id || '-' || :n || '-' || txid_current(),
    'lat', '$PROJ', 'bench-lat', '$ORG', 'DEVELOPMENT', 'echo', '{}', clock_timestamp(), clock_timestamp());
SQL
echo "== commit -> visible in ClickHouse at $RATE commits/s for ${DUR}s"
: >"$T/seen"
(
  last=0
  end=$(($(date +%s) + DUR + 15))
  while (($(date +%s) < end)); do
    now=$(($(date +%s%N) / 1000000))
    rows=$(chq "SELECT session_id, created_at_ms FROM sessions_v1 WHERE environment_id = 'bench-lat' AND created_at_ms > $last FORMAT TabSeparated")
    if [[ -n $rows ]]; then
      awk -v now="$now" '{print $1, now - $2}' <<<"$rows" >>"$T/seen"
      last=$(awk 'BEGIN{m=0} {if ($2>m) m=$2} END{print m}' <<<"$rows")
      last=$((last > 0 ? last - 1000 : 0)) # late commits with earlier timestamps: look back 1 s
    fi
    sleep 0.005
  done
) &
POLL=$!
pgbench -n -c8 -j2 -R "$RATE" -T "$DUR" -f "$T/insert.sql" "$TETHER_PG_URL" >"$T/pgbench.log" 2>&1 || true
sent=$(PSQL "SELECT count(*) FROM sessions WHERE runtime_environment_id = 'bench-lat'")
for _ in $(seq 150); do
  [[ $(sort -u -k1,1 "$T/seen" | wc -l) -ge $sent ]] && break
  sleep 0.1
done
kill "$POLL" 2>/dev/null || true
wait "$POLL" 2>/dev/null || true
seen=$(sort -u -k1,1 "$T/seen" | wc -l)
read -r p50 p99 <<<"$(sort -u -k1,1 "$T/seen" | awk '{print $2}' | pct)"
rate=$(awk '/^tps/ {print $3; exit}' "$T/pgbench.log")
printf '{"case":"commit_to_clickhouse","commits":%s,"seen":%s,"commits_per_s":%s,"p50_ms":%s,"p99_ms":%s,"goal_p99_ms":500}\n' \
  "$sent" "$seen" "${rate:-null}" "$p50" "$p99"

# ---- (2) the list at NSESS sessions
echo "== GET /api/v1/sessions with $NSESS sessions in the environment"
PSQL "INSERT INTO sessions (id, friendly_id, external_id, type, project_id, runtime_environment_id,
  organization_id, environment_type, task_identifier, trigger_config, tags, created_at, updated_at)
  SELECT 'c' || lpad(to_hex(g), 24, '0'), 'session_c' || lpad(to_hex(g), 24, '0'), 'ext-' || g,
    CASE WHEN g % 10 = 0 THEN 'agent' ELSE 'chat' END, '$PROJ', '$ENV', '$ORG', 'DEVELOPMENT',
    'echo', '{}', ARRAY['n:' || (g % 100)], now() - (g || ' ms')::interval, now() - interval '1 minute'
  FROM generate_series(1, $NSESS) g" >/dev/null
for _ in $(seq 600); do
  n=$(chq "SELECT count() FROM sessions_v1 FINAL WHERE environment_id = '$ENV'")
  [[ $n -ge $NSESS ]] && break
  sleep 0.1
done
echo "# ClickHouse holds $n of them"
lat() { # lat QUERY -> p50 p99 (ms) of 100 requests
  for _ in $(seq 100); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $KEY" "$URL/api/v1/sessions$1"
  done | awk '{printf "%.1f\n", $1 * 1000}' | pct
}
read -r a50 a99 <<<"$(lat '?page%5Bsize%5D=20')"
printf '{"case":"list_first_page","sessions":%s,"p50_ms":%s,"p99_ms":%s}\n' "$NSESS" "$a50" "$a99"
read -r b50 b99 <<<"$(lat '?page%5Bsize%5D=20&filter%5Btype%5D=agent&filter%5Btags%5D=n:10,n:20&filter%5Bstatus%5D=ACTIVE')"
printf '{"case":"list_filtered","sessions":%s,"p50_ms":%s,"p99_ms":%s}\n' "$NSESS" "$b50" "$b99"
mid=$(chq "SELECT session_id FROM sessions_v1 FINAL WHERE environment_id = '$ENV' ORDER BY session_id LIMIT 1 OFFSET $((NSESS / 2))")
read -r c50 c99 <<<"$(lat "?page%5Bsize%5D=20&page%5Bafter%5D=$mid")"
printf '{"case":"list_mid_cursor","sessions":%s,"p50_ms":%s,"p99_ms":%s}\n' "$NSESS" "$c50" "$c99"
echo "summary: commit->ClickHouse p50 ${p50} ms, p99 ${p99} ms at ${rate:-?} commits/s (goal p99 <= 500 ms); list p50/p99 ${a50}/${a99} ms at $NSESS sessions"
