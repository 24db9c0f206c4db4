#!/usr/bin/env bash
# session_create.sh BUILD_DIR: session creates per second through Tether (wrk, 32 connections,
# a new externalId per request: create + ensure-run + token) next to the same PostgreSQL work as
# raw SQL from pgbench with 32 clients, on the same stores in the same run.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: session_create.sh BUILD_DIR}" && pwd -P)
DUR=${TETHER_BENCH_SECONDS:-5}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
bench_tree_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project bench --type dev)
cat >"$T/create.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"type":"chat","externalId":"bench-%d-%d-%d","taskIdentifier":"echo",' ..
    '"triggerConfig":{"basePayload":{"hello":"world"}}}', math.random(1, 1e9), os.time(), n)
  return wrk.format("POST", "/api/v1/sessions", nil, body)
end
LUA
echo "== session creates: Tether (wrk -t2 -c32 -d${DUR}s) vs the same SQL (pgbench -c32 -j2 -T${DUR})"
out=$(wrk -t2 -c32 -d"${DUR}s" -s "$T/create.lua" -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" "$URL")
tether=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
printf '{"case":"tether_http_create","creates_per_s":%s,"non_2xx":%s}\n' "$tether" "${non2xx:-0}"
# pgbench's default protocol parses and plans every statement, as Tether did before it prepared
# them (actors/lib/db_pg.h); -M prepared is PostgreSQL at its best: both are reported
pg=$(pgbench -n -c32 -j2 -T"$DUR" -f tests/bench/session_create.sql "$TETHER_PG_URL" 2>&1 |
  awk '/^tps/ {print $3; exit}')
printf '{"case":"pgbench_raw_sql","creates_per_s":%s}\n' "$pg"
pgp=$(pgbench -n -M prepared -c32 -j2 -T"$DUR" -f tests/bench/session_create.sql "$TETHER_PG_URL" 2>&1 |
  awk '/^tps/ {print $3; exit}')
printf '{"case":"pgbench_raw_sql_prepared","creates_per_s":%s}\n' "$pgp"
echo "summary: Tether ${tether} creates/s vs raw SQL ${pg}/s: ratio $(awk -v a="$tether" -v b="$pg" 'BEGIN{printf "%.2f", a/b}'); vs raw SQL prepared ${pgp}/s: ratio $(awk -v a="$tether" -v b="$pgp" 'BEGIN{printf "%.2f", a/b}')"
