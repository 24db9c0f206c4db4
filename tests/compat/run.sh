#!/usr/bin/env bash
# run.sh: the compatibility tests - the real @trigger.dev/sdk (pinned in package-lock.json)
# against a running Tether tree. Called by tests/run.sh with real stores up (TETHER_PG_URL,
# TETHER_REDIS_URL, TETHER_CH_URL, TETHER_TEST_BIN, TETHER_TEST_TMP exported). Installs the
# npm packages from the lockfile when they are missing, starts a tree, creates three
# environments, starts the example worker (echo-agent) on the third, and runs every *.test.mjs
# with node's test runner (TAP output).
set -uo pipefail
HERE=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")" && pwd -P)
cd "$HERE" || exit 1

if [[ ! -d node_modules/@trigger.dev/sdk ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error >&2 || {
    echo "not ok 1 - npm ci (could not install the pinned SDK)"
    exit 1
  }
fi

. "$HERE/../lib/itest.sh"
# HTTP/2 connections the SDK pools in the test processes end soon after their last stream, so the
# processes exit when their tests are done
tree_start TETHER_GW_H2_IDLE_TIMEOUT=2s >/dev/null
export TETHER_URL=$TREE_URL
export TETHER_TREE_LOG=$TREE_LOG
suffix=$$-$RANDOM
export TETHER_SECRET_KEY TETHER_SECRET_KEY_B TETHER_SECRET_KEY_ECHO TETHER_SECRET_KEY_AGENT
TETHER_SECRET_KEY=$(ctl env create --org "compat-$suffix" --project a --type dev) || exit 1
TETHER_SECRET_KEY_B=$(ctl env create --org "compat-$suffix" --project b --type dev) || exit 1
# The echo-agent serves an environment of its own: the runs other tests trigger stay queued.
TETHER_SECRET_KEY_ECHO=$(ctl env create --org "compat-$suffix" --project echo --type dev) || exit 1
# agent.test.mjs starts its own worker written with the SDK (agent/sdk-agent.mjs) on this one.
TETHER_SECRET_KEY_AGENT=$(ctl env create --org "compat-$suffix" --project agent --type dev) || exit 1
# Its idle runs complete (echo.test.mjs checks the continuation after a completed run).
TETHER_URL=$TREE_URL TETHER_SECRET_KEY=$TETHER_SECRET_KEY_ECHO TETHER_ECHO_SLEEP_SECONDS=0 \
  "$TETHER_TEST_BIN/echo-agent" 2>"$TREE_DIR/echo-agent.log" &
AGENT=$!
trap 'kill -KILL "$AGENT" 2>/dev/null; itest_cleanup' EXIT

node --test --test-reporter=tap --test-concurrency=1 ./*.test.mjs
rc=$?
kill -TERM "$AGENT" 2>/dev/null
wait "$AGENT" || echo "# echo-agent exited $? (log: $TREE_DIR/echo-agent.log)" >&2
tree_stop
exit $rc
