#!/usr/bin/env bash
# schema.sh: bring both stores' schema up to date before a node starts: the PostgreSQL
# migrations (compose/migrate.sh against $TETHER_PG_URL: each once, under an advisory lock) and
# the ClickHouse files sql/clickhouse/NNNN_*.sql (idempotent, IF NOT EXISTS; POSTed one
# statement at a time to $TETHER_CH_URL, as compose/services.sh does). Any number of nodes may
# run it at once. What the image's schema step runs (docs/operations.md#schema-migrations).
# Exit: 0 ok, 100 a file was refused (bad SQL) or a URL is missing, 111 a store is unreachable.
set -euo pipefail

readonly PROG=schema.sh
readonly EX_USAGE=100 EX_TEMP=111
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/.." && pwd -P)
readonly ROOT
. "$ROOT/compose/sql-split.sh"

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  local code=$1
  shift
  say "$*"
  exit "$code"
}

[[ $# -eq 0 ]] || {
  printf 'usage: %s   (reads TETHER_PG_URL and TETHER_CH_URL)\n' "$PROG" >&2
  exit "$EX_USAGE"
}
[[ -n ${TETHER_PG_URL-} ]] || die "$EX_USAGE" "TETHER_PG_URL is not set"
[[ -n ${TETHER_CH_URL-} ]] || die "$EX_USAGE" "TETHER_CH_URL is not set"

"$ROOT/compose/migrate.sh" "$TETHER_PG_URL" # exits 100 or 111 itself

# ch_post STATEMENT FILE: one statement; 200 is done, no answer at all is an unreachable server,
# another answer is bad SQL once it has been refused three times: while the schema step of
# another node creates the same table, ClickHouse may refuse this CREATE ... IF NOT EXISTS ("is
# creating or attaching right now") instead of waiting for it. The URL (which may hold a
# password) is never printed.
ch_post() {
  local resp code try
  for try in 1 2 3; do
    resp=$(printf '%s' "$1" | curl -sS --max-time 60 -w '\n%{http_code}' --data-binary @- \
      "${TETHER_CH_URL%/}/" 2>&1) || resp=$'\n000'
    code=${resp##*$'\n'}
    case $code in
      200) return 0 ;;
      000) die "$EX_TEMP" "clickhouse: could not reach the server for ${2#"$ROOT"/}" ;;
    esac
    ((try == 3)) || sleep 1
  done
  say "clickhouse: ${2#"$ROOT"/} was refused (HTTP $code):"
  printf '%s\n' "${resp%$'\n'*}" >&2
  exit "$EX_USAGE"
}

n=0
for f in "$ROOT"/sql/clickhouse/[0-9][0-9][0-9][0-9]_*.sql; do
  [[ -e $f ]] || continue
  sql_split "$f"
  for s in "${SQL_STMTS[@]}"; do ch_post "$s" "$f"; done
  n=$((n + 1))
done
say "clickhouse: $n schema file(s) applied"
