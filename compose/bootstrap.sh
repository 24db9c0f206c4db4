#!/usr/bin/env bash
# bootstrap.sh BIN_DIR URL: run by compose/run.sh once the tree is healthy. Makes sure the
# development environment of org/project "default" exists (`tetherctl env bootstrap`, idempotent:
# every later run finds the same environment) and prints its secret key with two commands to try
# it on stderr, and the key alone on stdout (run.sh hands it to the echo-agent). Retries for a few
# seconds while the session-manager is not answering yet.
# TETHER_RUN_DIR must name the running tree's run directory (run.sh exports it).
# Exit: 0 printed; 100 usage; 111 the session-manager never answered; 1 it refused.
set -uo pipefail

readonly PROG=bootstrap.sh
BIN=${1:-}
URL=${2:-}
[[ -n $BIN && -n $URL && -x $BIN/tetherctl ]] || {
  printf 'usage: %s BIN_DIR URL   (BIN_DIR holding tetherctl)\n' "$PROG" >&2
  exit 100
}
: "${TETHER_RUN_DIR:?TETHER_RUN_DIR must name the running tree (compose/run.sh exports it)}"

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# 111 (nothing answered, or the store is down) is worth another try; anything else is final.
deadline=$((SECONDS + ${TETHER_BOOTSTRAP_WAIT_S:-15}))
errf=$(mktemp)
trap 'rm -f "$errf"' EXIT
while :; do
  rc=0
  key=$("$BIN/tetherctl" env bootstrap 2>"$errf") || rc=$?
  ((rc == 0)) && break
  if ((rc != 111 || SECONDS >= deadline)); then
    cat "$errf" >&2
    say "could not bootstrap the development environment (tetherctl exit $rc)"
    exit "$rc"
  fi
  sleep 0.5
done

cat >&2 <<MSG
  Secret key (development environment): $key
  Console:        $URL/console (sign in with that key)
  Try it:
    curl -X POST -H "Authorization: Bearer $key" $URL/api/v1/auth/jwt/claims
    curl -H "Authorization: Bearer $key" $URL/healthz
  More keys:      TETHER_RUN_DIR=$TETHER_RUN_DIR $BIN/tetherctl env create --org ORG --project PROJ --type dev
  An echo agent serves task "echo" with this key: see "Try it" in README.md.

MSG
printf '%s\n' "$key"
