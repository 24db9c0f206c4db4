#!/usr/bin/env bash
# run.sh BUILD_DIR: Tether's ClickHouse SQL on a current ClickHouse engine (chDB, pinned in
# package-lock.json) and, when TETHER_CH_URL is set, on the test server too (queries.test.mjs).
# Called by tests/run.sh; installs the npm packages from the lockfile when they are missing
# (chDB's libchdb.so is about 550 MB unpacked). TAP output.
set -uo pipefail
HERE=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")" && pwd -P)
BUILD=$(cd -- "${1:?usage: run.sh BUILD_DIR}" && pwd -P) || exit 1
cd "$HERE" || exit 1
if [[ ! -d node_modules/chdb ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  # npm install, not npm ci: chdb's optional per-platform packages that do not exist for this
  # version are missing from the lock, and npm ci refuses such a lock; install keeps to it
  npm install --no-audit --no-fund --no-save --loglevel=error >&2 || {
    echo "not ok 1 - npm ci (could not install the pinned chdb)"
    echo "1..1"
    exit 1
  }
fi
export CHR_SQL_DRIVER=$BUILD/drivers/chr_sql_driver
exec node --test --test-reporter=tap --test-concurrency=1 ./queries.test.mjs
