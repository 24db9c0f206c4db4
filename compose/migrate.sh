#!/usr/bin/env bash
# migrate.sh [PG_URL]: apply sql/postgres/NNNN_name.sql in numeric order, each exactly once,
# recorded in tether_migrations. Each file runs in its own transaction under an advisory lock,
# so several nodes may run this at the same time. PG_URL defaults to $TETHER_PG_URL.
# Exit: 0 ok, 100 usage or a migration failed (SQL error), 111 database unreachable.
set -euo pipefail

readonly PROG=migrate.sh
readonly EX_USAGE=100 EX_TEMP=111
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/.." && pwd -P)
readonly ROOT
readonly MIGRATIONS_DIR=${TETHER_PG_MIGRATIONS_DIR:-$ROOT/sql/postgres}
# Advisory lock key shared by every migrate.sh: the bytes of "tether" as an integer.
readonly LOCK_KEY=127961049113970

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  local code=$1
  shift
  say "$*"
  exit "$code"
}

[[ $# -le 1 && ${1-} != -* ]] || {
  printf "usage: %s [PG_URL]   (default: \$TETHER_PG_URL)\n" "$PROG" >&2
  exit "$EX_USAGE"
}
URL=${1:-${TETHER_PG_URL-}}
[[ -n $URL ]] || die "$EX_USAGE" "no database: pass PG_URL or set TETHER_PG_URL"

PSQL=$(command -v psql || true)
if [[ -z $PSQL ]]; then
  PSQL=$(printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
  [[ -x $PSQL ]] || die "$EX_TEMP" "psql not found (run compose/deps.sh)"
fi
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10} PGAPPNAME=${PGAPPNAME:-tether-migrate}

# psql exit codes: 1 psql's own fatal error, 2 connection failed or lost, 3 error in the script.
psql_failed() {
  local rc=$1 what=$2
  case $rc in
    3) die "$EX_USAGE" "$what failed; nothing of it was applied" ;;
    *) die "$EX_TEMP" "$what: could not talk to the database (psql exit $rc)" ;;
  esac
}

run_psql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$URL" "$@"; }

[[ -d $MIGRATIONS_DIR ]] || die "$EX_USAGE" "$MIGRATIONS_DIR: no such directory"

# Collect the files; the 4-digit prefix is the version and must be unique.
declare -a FILES=()
declare -A SEEN=()
for f in "$MIGRATIONS_DIR"/[0-9][0-9][0-9][0-9]_*.sql; do
  [[ -e $f ]] || continue
  base=${f##*/}
  v=${base%%_*}
  [[ -z ${SEEN[$v]-} ]] || die "$EX_USAGE" "two migrations with version $v: ${SEEN[$v]} and $base"
  SEEN[$v]=$base
  FILES+=("$f")
done
[[ ${#FILES[@]} -gt 0 ]] || exit 0

# Versions already applied, read without the lock: only a shortcut so that a start with nothing
# to do costs one connection. Every file is checked again under the lock before it runs.
rc=0
applied=$(run_psql -tA <<'EOF'
SELECT to_regclass('tether_migrations') IS NOT NULL AS has_table \gset
\if :has_table
SELECT version FROM tether_migrations;
\endif
EOF
) || rc=$?
((rc == 0)) || psql_failed "$rc" "reading tether_migrations"
declare -A APPLIED=()
while read -r v; do
  if [[ -n $v ]]; then APPLIED[$v]=1; fi
done <<<"$applied"

for f in "${FILES[@]}"; do
  base=${f##*/}
  v=${base%%_*}
  name=${base#*_}
  name=${name%.sql}
  [[ -z ${APPLIED[$v]-} ]] || continue
  rc=0
  # Query output goes to /dev/null (\o); only the \echo marker reaches stdout, after COMMIT.
  out=$(run_psql -v "version=$v" -v "name=$name" -v "file=$f" <<EOF
\o /dev/null
SET client_min_messages = warning;
BEGIN;
SELECT pg_advisory_xact_lock($LOCK_KEY);
CREATE TABLE IF NOT EXISTS tether_migrations (
    version    text PRIMARY KEY,
    name       text,
    applied_at timestamptz DEFAULT now()
);
SELECT EXISTS (SELECT 1 FROM tether_migrations WHERE version = :'version') AS done \gset
\if :done
\else
\i :file
INSERT INTO tether_migrations (version, name) VALUES (:'version', :'name');
\endif
COMMIT;
\if :done
\else
\echo tether-migrate-applied
\endif
EOF
  ) || rc=$?
  ((rc == 0)) || psql_failed "$rc" "migration $base"
  if [[ $out == *tether-migrate-applied* ]]; then
    say "applied $base"
  fi
done
