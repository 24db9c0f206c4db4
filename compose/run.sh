#!/usr/bin/env bash
# run.sh BUILD_DIR: what `make run` does after building. Starts PostgreSQL, Redis and ClickHouse
# with their data in ./var/services (kept across runs), applies migrations, then runs the
# supervisor (and through it the whole tree) in the foreground, and once the tree is healthy one
# example worker (BUILD_DIR/bin/echo-agent, task "echo") with the development environment's
# secret key. Ctrl-C or SIGTERM stops the worker, the tree in order, then the stores; nothing is
# left running.
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

# set before the start: a start that fails half-way leaves no store running either
stop_stores() { "$ROOT/compose/services.sh" stop "$VAR/services" || true; }
trap stop_stores EXIT
"$ROOT/compose/services.sh" start "$VAR/services" || exit 111

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
AGENT=
STOPPING=0
# Ctrl-C reaches the supervisor and the worker too (same process group): the supervisor stops
# the tree in reverse order, the worker completes the runs it holds if the tree still answers
# (else they are left to their leases). SIGTERM and SIGHUP are forwarded, to the worker first,
# which completes its runs (at most 5 s) before the tree stops. A second signal passes on: the
# worker abandons its runs, the supervisor kills its children.
forward() { # forward SIGNAL
  if ((STOPPING)); then
    [[ -z $AGENT ]] || kill -TERM "$AGENT" 2>/dev/null || true
    kill -TERM "$SV" 2>/dev/null || true
    return 0 # a bare return in a trap answers the interrupted wait's status: set -e would exit
  fi
  STOPPING=1
  # after a Ctrl-C both had the SIGINT already: another stop request would be a second one
  [[ $1 == INT ]] && return 0
  if [[ -n $AGENT ]]; then
    kill -TERM "$AGENT" 2>/dev/null || true
    wait "$AGENT" 2>/dev/null || true
    AGENT=
  fi
  kill -TERM "$SV" 2>/dev/null || true
}
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward HUP' HUP

for _ in $(seq 1 150); do
  if curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null; then
    cat >&2 <<MSG

  Tether is up at $URL   (health: curl $URL/healthz)
  Operator tool:  TETHER_RUN_DIR=$TETHER_RUN_DIR $BIN/tetherctl status
  Bus traffic:    TETHER_RUN_DIR=$TETHER_RUN_DIR $BIN/tetherctl tap
  Stop:           Ctrl-C

MSG
    key=$("$ROOT/compose/bootstrap.sh" "$BIN" "$URL") || key=
    if [[ -n $key && -x $BIN/echo-agent ]] && ((!STOPPING)); then
      # short leases: runs it leaves behind at a Ctrl-C are taken back soon after the next start
      TETHER_URL=$URL TETHER_SECRET_KEY=$key TETHER_ECHO_LEASE_SECONDS=10 "$BIN/echo-agent" &
      AGENT=$!
    fi
    break
  fi
  kill -0 "$SV" 2>/dev/null || break
  sleep 0.1
done

code=0
while kill -0 "$SV" 2>/dev/null; do
  wait "$SV" && code=0 || code=$?
done
if [[ -n $AGENT ]]; then # the tree stopped (a Ctrl-C, or on its own): so does the worker
  kill -TERM "$AGENT" 2>/dev/null || true
  wait "$AGENT" 2>/dev/null || true
fi
say "supervisor exited ($code); stopping the stores"
exit "$code"
