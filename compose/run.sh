#!/usr/bin/env bash
# run.sh BUILD_DIR: what `make run` does after building. Starts PostgreSQL, Redis and ClickHouse
# with their data in ./var/services (kept across runs), applies migrations, then runs the
# supervisor (and through it the whole tree) in the foreground. Ctrl-C or SIGTERM stops the tree
# in order, then the stores; nothing is left running.
# Exit: the supervisor's exit code; 100 usage; 111 the stores could not be started.
set -euo pipefail

readonly PROG=run.sh
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/.." && pwd -P)
readonly ROOT
BUILD=${1:-}
[[ -n $BUILD && -x $BUILD/bin/supervisor ]] || {
  printf 'usage: %s BUILD_DIR (with bin/supervisor in it; run `make run`)\n' "$PROG" >&2
  exit 100
}
BIN=$(cd -- "$BUILD/bin" && pwd -P)
VAR=${TETHER_VAR_DIR:-$ROOT/var}
mkdir -p "$VAR"

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

"$ROOT/compose/services.sh" start "$VAR/services" || exit 111
stop_stores() { "$ROOT/compose/services.sh" stop "$VAR/services" || true; }
trap stop_stores EXIT

set -a
# shellcheck disable=SC1091
. "$VAR/services/services.env"
set +a
"$ROOT/compose/migrate.sh" "$TETHER_PG_URL"

export TETHER_RUN_DIR=${TETHER_RUN_DIR:-$VAR/run}
export TETHER_HTTP_PORT=${TETHER_HTTP_PORT:-8787}
export TETHER_HTTP_HOST=${TETHER_HTTP_HOST:-127.0.0.1}
export TETHER_LOG_FORMAT=${TETHER_LOG_FORMAT:-text}
export TETHER_BIN_DIR=$BIN
URL="http://$TETHER_HTTP_HOST:$TETHER_HTTP_PORT"

"$BIN/supervisor" &
SV=$!
# Ctrl-C reaches the supervisor too (same process group); forwarding covers SIGTERM and the
# case where we run without a terminal. The supervisor stops its children in reverse order.
forward() { kill -TERM "$SV" 2>/dev/null || true; }
trap forward INT TERM

for _ in $(seq 1 150); do
  if curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null; then
    cat >&2 <<MSG

  Tether is up at $URL   (health: curl $URL/healthz)
  Operator tool:  TETHER_RUN_DIR=$TETHER_RUN_DIR $BIN/tetherctl status
  Bus traffic:    TETHER_RUN_DIR=$TETHER_RUN_DIR $BIN/tetherctl tap
  Stop:           Ctrl-C

MSG
    [[ -x $BIN/tetherctl ]] && [[ -f $ROOT/compose/bootstrap.sh ]] && "$ROOT/compose/bootstrap.sh" "$BIN" "$URL" || true
    break
  fi
  kill -0 "$SV" 2>/dev/null || break
  sleep 0.1
done

code=0
while kill -0 "$SV" 2>/dev/null; do
  wait "$SV" && code=0 || code=$?
done
say "supervisor exited ($code); stopping the stores"
exit "$code"
