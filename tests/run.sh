#!/usr/bin/env bash
# run.sh BUILD_DIR: runs every test and prints "N passed, N failed" as its last line.
#  - unit tests: every binary BUILD_DIR/tests/**/*_test (TAP), each under a timeout;
#  - integration tests: real PostgreSQL, Redis and ClickHouse started once on free ports in a
#    temporary directory, then every tests/integration/*_test.sh (TAP) against BUILD_DIR/bin;
#  - the short fuzz run (tests/fuzz/run.sh), one TAP line per libFuzzer target;
#  - the cluster tests (tests/cluster/*_test.sh: three nodes in network namespaces, stores of
#    their own);
#  - compatibility tests (tests/compat/run.sh) when present;
#  - the ClickHouse dialect tests (tests/chdb/run.sh: a current engine, chDB, and the test server).
# A test file that crashes or times out without reporting counts as one failure.
# Exit: 0 when nothing failed, 1 otherwise.
set -uo pipefail

ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/.." && pwd -P)
BUILD=$(cd -- "${1:?usage: run.sh BUILD_DIR}" && pwd -P)
cd "$ROOT"

PASSED=0 FAILED=0
FAILURES=()
ONLY=${TETHER_TEST_ONLY:-} # substring filter on test file paths

# tap_plan FILE: N of the plan line "1..N" (optionally "# ..."), empty when there is none or
# more than one.
tap_plan() {
  local plans
  plans=$(grep -E '^1\.\.[0-9]+( *#.*)?$' "$1" | sed -E 's/^1\.\.([0-9]+).*/\1/')
  [[ $(printf '%s\n' "$plans" | grep -c .) == 1 ]] && printf '%s' "$plans"
}

# run_tap NAME TIMEOUT CMD...: runs one TAP producer, echoes its output, tallies its lines.
run_tap() {
  local name=$1 limit=$2 out rc ok notok
  shift 2
  out=$(mktemp)
  printf '# %s\n' "$name"
  timeout --kill-after=10 "$limit" "$@" >"$out" 2>"$out.err"
  rc=$?
  sed 's/^/    /' "$out"
  ok=$(grep -c '^ok ' "$out")
  notok=$(grep -c '^not ok ' "$out")
  PASSED=$((PASSED + ok))
  FAILED=$((FAILED + notok))
  if ((notok > 0)); then
    FAILURES+=("$name")
  fi
  if ((rc != 0 && notok == 0)); then
    FAILED=$((FAILED + 1))
    FAILURES+=("$name (exit $rc$( ((rc == 124)) && echo ', timed out'))")
    printf '    not ok - %s exited %d without reporting a failure\n' "$name" "$rc"
  elif ((rc == 0)); then
    # an exit code alone proves nothing: a script that stops early exits 0 too. The plan
    # (1..N, first or last) must be there and match what ran.
    local plan
    plan=$(tap_plan "$out")
    if [[ -z $plan ]]; then
      FAILED=$((FAILED + 1))
      FAILURES+=("$name (no TAP plan)")
      printf '    not ok - %s printed no TAP plan (1..N)\n' "$name"
    elif ((plan != ok + notok)); then
      FAILED=$((FAILED + 1))
      FAILURES+=("$name (planned $plan, ran $((ok + notok)))")
      printf '    not ok - %s planned %d tests and ran %d\n' "$name" "$plan" "$((ok + notok))"
    elif ((plan == 0)); then
      FAILED=$((FAILED + 1))
      FAILURES+=("$name (ran no test)")
      printf '    not ok - %s ran no test\n' "$name"
    fi
  fi
  if ((rc != 0)) && [[ -s $out.err ]]; then
    printf '    --- stderr (last 40 lines) ---\n'
    tail -n 40 "$out.err" | sed 's/^/    /'
  fi
  rm -f "$out" "$out.err"
}

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Leak checking for unit tests; processes of the running tree are killed on purpose.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0

while IFS= read -r t; do
  [[ -n $ONLY && $t != *"$ONLY"* ]] && continue
  run_tap "unit ${t#"$BUILD"/tests/}" 120 "$t"
done < <(find "$BUILD/tests" -type f -name '*_test' -perm -u+x 2>/dev/null | sort)
# the short fuzz run (tests/fuzz/README.md): every libFuzzer target for a few seconds
[[ -z $ONLY || tests/fuzz/run.sh == *"$ONLY"* ]] && run_tap "fuzz" 300 tests/fuzz/run.sh

# ---- integration ----
ITESTS=()
for t in tests/integration/*_test.sh; do
  [[ -e $t ]] || continue
  [[ -n $ONLY && $t != *"$ONLY"* ]] && continue
  ITESTS+=("$t")
done

# three nodes in network namespaces (tests/cluster/netns.sh)
CTESTS=()
for t in tests/cluster/*_test.sh; do
  [[ -e $t ]] || continue
  [[ -n $ONLY && $t != *"$ONLY"* ]] && continue
  CTESTS+=("$t")
done

CHDB=""
[[ -x tests/chdb/run.sh && tests/chdb/run.sh == *"$ONLY"* ]] && CHDB=tests/chdb/run.sh
COMPAT= # the compatibility tests run with every test, or alone (TETHER_TEST_ONLY=compat)
[[ -x tests/compat/run.sh && tests/compat/run.sh == *"$ONLY"* ]] && COMPAT=tests/compat/run.sh

if ((${#ITESTS[@]} > 0)) || ((${#CTESTS[@]} > 0)) || [[ -n $COMPAT ]] || [[ -n $CHDB ]]; then
  # Stores, trees and their logs live in memory when the machine has a tmpfs: a disk stalled by
  # another tenant's fsyncs would otherwise hold up a log write or a store's commit for seconds,
  # and the tests that measure recovery would measure the disk. TETHER_TEST_DIR overrides it.
  base=${TETHER_TEST_DIR:-}
  if [[ -z $base ]]; then
    base=/tmp
    if [[ -d /dev/shm && -w /dev/shm ]] &&
      (($(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}') > 1048576)); then
      base=/dev/shm
    fi
  fi
  SVC=$(mktemp -d "$base/tether-test.XXXXXX")
  chmod 755 "$SVC"
  cleanup() {
    compose/services.sh stop "$SVC/services" >/dev/null 2>&1 || true
    [[ -n ${TETHER_TEST_KEEP:-} ]] || rm -rf "$SVC"
  }
  trap cleanup EXIT
  if TETHER_PORTS=auto TETHER_PG_FAST=1 compose/services.sh start "$SVC/services" >"$SVC/services.log" 2>&1 &&
    set -a && . "$SVC/services/services.env" && set +a &&
    compose/migrate.sh "$TETHER_PG_URL" >>"$SVC/services.log" 2>&1; then
    export TETHER_TEST_BIN=$BUILD/bin TETHER_TEST_TMP=$SVC
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0
    for t in "${ITESTS[@]}"; do
      run_tap "integration ${t#tests/integration/}" 300 bash "$t"
    done
    # the cluster tests start stores of their own on a bridge their nodes reach
    for t in "${CTESTS[@]}"; do
      run_tap "cluster ${t#tests/cluster/}" 300 bash "$t" "$BUILD"
    done
    if [[ -n $COMPAT ]]; then
      run_tap "compat" 600 "$COMPAT"
    fi
    if [[ -n $CHDB ]]; then
      run_tap "chdb" 600 "$CHDB" "$BUILD"
    fi
    run_tap "logs" 60 tests/lib/check-logs.sh "$SVC"
  else
    cat "$SVC/services.log"
    FAILED=$((FAILED + 1))
    FAILURES+=("starting the stores for integration tests")
  fi
fi

if ((${#FAILURES[@]} > 0)); then
  printf '\nfailed:\n'
  printf '  %s\n' "${FAILURES[@]}"
fi
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
