# itest.sh - harness for integration tests (sourced). Tests speak TAP through ok/is/not_ok.
#
# tests/run.sh exports TETHER_TEST_BIN (binaries), TETHER_TEST_TMP and the store URLs
# (TETHER_PG_URL, TETHER_REDIS_URL, TETHER_CH_URL) of real stores it started. A test starts
# its own supervisor tree with tree_start (fresh run dir, free HTTP port) and stops it with
# tree_stop; whatever it leaves running is killed at exit.

set -uo pipefail
: "${TETHER_TEST_BIN:?run through tests/run.sh (TETHER_TEST_BIN unset)}"

T_N=0
T_FAILED=0
ok() { # ok DESC CMD...  passes when CMD succeeds
  local desc=$1
  shift
  T_N=$((T_N + 1))
  if "$@"; then
    echo "ok $T_N - $desc"
  else
    T_FAILED=$((T_FAILED + 1))
    echo "not ok $T_N - $desc"
    return 1
  fi
}
is() { # is GOT WANT DESC
  T_N=$((T_N + 1))
  if [[ $1 == "$2" ]]; then
    echo "ok $T_N - $3"
  else
    T_FAILED=$((T_FAILED + 1))
    echo "not ok $T_N - $3 (got '$1', want '$2')"
  fi
}
diag() { echo "# $*"; }
done_testing() {
  echo "1..$T_N"
  ((T_FAILED == 0))
}

now_ms() { printf '%s' "$(($(date +%s%N) / 1000000))"; }

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12768)) # below the ephemeral range (32768+)
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}

# tree_start_nowait [VAR=VALUE ...]: starts a supervisor tree with extra environment (fresh run
# dir, free HTTP port) and returns once its control socket answers.
# Sets TREE_DIR, TREE_PORT, TREE_URL, TREE_PID, TREE_LOG.
tree_start_nowait() {
  TREE_DIR=$(mktemp -d "$TETHER_TEST_TMP/tree.XXXXXX")
  TREE_PORT=$(free_port)
  TREE_URL="http://127.0.0.1:$TREE_PORT"
  TREE_LOG=$TREE_DIR/tree.log
  export TETHER_RUN_DIR=$TREE_DIR/run
  env TETHER_HTTP_PORT="$TREE_PORT" TETHER_BIN_DIR="$TETHER_TEST_BIN" \
    TETHER_SHUTDOWN_GRACE=${TETHER_SHUTDOWN_GRACE:-2s} "$@" \
    "$TETHER_TEST_BIN/supervisor" >"$TREE_LOG" 2>&1 &
  TREE_PID=$!
  TREES+=("$TREE_PID")
  wait_for 10000 ctl_quiet status
}

# tree_start [VAR=VALUE ...]: tree_start_nowait, then waits for /healthz to answer 200.
tree_start() {
  tree_start_nowait "$@"
  wait_for 15000 healthz_is 200
}

# tree_pids: every child pid the supervisor reports.
tree_pids() { ctl status --json 2>/dev/null | jq -r '.children[] | select(.pid > 0) | .pid'; }

tree_stop() {
  local pids
  pids=$(tree_pids)
  kill -TERM "$TREE_PID" 2>/dev/null
  wait "$TREE_PID" 2>/dev/null
  TREE_EXIT=$?
  TREE_LEFT=""
  for p in $pids; do
    if [[ -e /proc/$p ]] && [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) != Z ]]; then
      TREE_LEFT="$TREE_LEFT $p"
    fi
  done
}

ctl() { "$TETHER_TEST_BIN/tetherctl" "$@"; }
ctl_quiet() { "$TETHER_TEST_BIN/tetherctl" "$@" >/dev/null 2>&1; }

healthz_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$TREE_URL/healthz"; }
healthz_is() { [[ $(healthz_code) == "$1" ]]; }

child_field() { # child_field NAME FIELD
  ctl status --json 2>/dev/null | jq -r --arg n "$1" ".children[] | select(.name==\$n) | .$2"
}
child_state_is() { [[ $(child_field "$1" state) == "$2" ]]; }

# wait_for MS CMD...: retries CMD every 20 ms until it succeeds or MS pass.
wait_for() {
  local limit=$1 start
  shift
  start=$(now_ms)
  until "$@"; do
    (($(now_ms) - start > limit)) && return 1
    sleep 0.02
  done
}

TREES=()
itest_cleanup() {
  for p in "${TREES[@]}"; do
    kill -KILL "$p" 2>/dev/null
  done
  # the supervisor's children die with it (parent pipe); give them a moment
  sleep 0.2
}
trap itest_cleanup EXIT
