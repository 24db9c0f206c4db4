#!/usr/bin/env bash
# check-logs.sh DIR: after a full test run, no log line under DIR may carry a secret key or a
# token. Log lines are what the processes write (JSON objects, or the text format's
# "<timestamp> <level> <proc>[pid]" lines); a terminal transcript's other lines (make run
# prints the development key on purpose) are not log lines. TAP output.
set -uo pipefail
DIR=${1:?usage: check-logs.sh DIR}
SECRET='tr_(dev|stg|prod|preview)_[0-9A-Za-z]{20}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}'
LOGLINE='^(\{"ts":"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z (error|warn|info|debug) )'
files=$(find "$DIR" -type f \( -name '*.log' \) 2>/dev/null | sort)
n=$(cat $files /dev/null 2>/dev/null | grep -cE "$LOGLINE")
leaks=$(cat $files /dev/null 2>/dev/null | grep -E "$LOGLINE" | grep -E "$SECRET" | head -5)
if [[ -z $leaks ]]; then
  echo "ok 1 - no secret key or token in any of $n log lines of this test run"
else
  echo "not ok 1 - a log line carries a secret key or a token:"
  sed 's/^/# /' <<<"$leaks" | cut -c1-300
fi
echo "1..1"
[[ -z $leaks ]]
