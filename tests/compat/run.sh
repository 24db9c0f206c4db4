#!/usr/bin/env bash
# run.sh: the compatibility tests - the real @trigger.dev/sdk (pinned in package-lock.json)
# against a running Tether tree. Called by tests/run.sh with real stores up (TETHER_PG_URL,
# TETHER_REDIS_URL, TETHER_CH_URL, TETHER_TEST_BIN, TETHER_TEST_TMP exported). Installs the
# npm packages from the lockfile when they are missing, starts a tree, creates two
# environments and runs every *.test.mjs with node's test runner (TAP output).
set -uo pipefail
HERE=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")" && pwd -P)
cd "$HERE"

if [[ ! -d node_modules/@trigger.dev/sdk ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error >&2 || {
    echo "not ok 1 - npm ci (could not install the pinned SDK)"
    exit 1
  }
fi

. "$HERE/../lib/itest.sh"
tree_start >/dev/null
export TETHER_URL=$TREE_URL
export TETHER_TREE_LOG=$TREE_LOG
suffix=$$-$RANDOM
export TETHER_SECRET_KEY TETHER_SECRET_KEY_B
TETHER_SECRET_KEY=$(ctl env create --org "compat-$suffix" --project a --type dev) || exit 1
TETHER_SECRET_KEY_B=$(ctl env create --org "compat-$suffix" --project b --type dev) || exit 1

node --test --test-reporter=tap --test-concurrency=1 ./*.test.mjs
rc=$?
tree_stop
exit $rc
