#!/usr/bin/env bash
# run.sh [--runs N] [TARGET...]: builds the libFuzzer targets of tests/fuzz (make fuzz-bins, into
# build/fuzz) and runs each in turn, never two at once, from its seeds (tests/fuzz/seeds/<target>,
# and tests/golden for env_fuzz) with its dictionary (tests/fuzz/dict/<target>.dict) when it has one.
#  - without --runs (the test suite's short run): TAP, one line per target, each for
#    TETHER_FUZZ_SECONDS seconds (default 5) on a fresh corpus;
#  - with --runs N (make fuzz): N executions each on the corpus kept in build/fuzz/corpus/<target>,
#    and a table: executions, seconds, exec/s, coverage, crashes.
# A crash input goes to build/fuzz/crashes/<target>-crash-<sha1> (or leak-, timeout-, oom-), and
# its path is printed; replay it with build/fuzz/<target> <path>. tests/fuzz/README.md has more.
# Exit: 0 when no target crashed, 1 when one did, 100 usage, 111 no clang with libFuzzer or a
# build failure.
set -uo pipefail

ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
cd "$ROOT"

readonly OUT=build/fuzz EX_USAGE=100 EX_TEMP=111
RUNS=""
SECS=${TETHER_FUZZ_SECONDS:-5}
TARGETS=()

usage() {
  printf 'usage: run.sh [--runs N] [TARGET...]\n' >&2
  exit "$EX_USAGE"
}

while (($#)); do
  case $1 in
    --runs)
      [[ ${2-} =~ ^[0-9]+$ ]] || usage
      RUNS=$2
      shift 2
      ;;
    -*) usage ;;
    *)
      TARGETS+=("$1")
      shift
      ;;
  esac
done
[[ $SECS =~ ^[0-9]+$ ]] || usage

# tap_fail MESSAGE [DETAIL_FILE]: the one TAP failure when nothing can run.
tap_fail() {
  if [[ -z $RUNS ]]; then
    printf '1..1\nnot ok 1 - fuzz: %s\n' "$1"
  else
    printf 'run.sh: %s\n' "$1" >&2
  fi
  [[ -n ${2-} && -s $2 ]] && tail -n 30 "$2" | sed 's/^/# /'
  exit "$EX_TEMP"
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# libFuzzer is clang's libclang_rt.fuzzer (Debian: clang + libclang-rt-14-dev, compose/deps.sh):
# without it there is nothing to run, which is a failure, not a skip
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
  >"$TMP/probe.c"
if ! command -v clang >/dev/null 2>&1; then
  tap_fail "clang is not installed (compose/deps.sh installs clang and libclang-rt-14-dev)"
fi
if ! clang -fsanitize=fuzzer,address,undefined "$TMP/probe.c" -o "$TMP/probe" >"$TMP/probe.log" 2>&1; then
  tap_fail "clang cannot link libFuzzer (libclang-rt-14-dev missing? compose/deps.sh)" "$TMP/probe.log"
fi

if ! make --no-print-directory -j"$(nproc)" fuzz-bins >"$TMP/build.log" 2>&1; then
  tap_fail "make fuzz-bins failed" "$TMP/build.log"
fi

if ((${#TARGETS[@]} == 0)); then
  for src in tests/fuzz/*_fuzz.c; do
    TARGETS+=("$(basename "$src" .c)")
  done
fi
for t in "${TARGETS[@]}"; do
  [[ -x $OUT/$t ]] || tap_fail "no such target: $t"
done

# Longest input each target is given: what its decoder can meet (a path param is 1 KiB, a
# query value 1 KiB) without spending the runs on inputs that only cost time.
max_len() {
  case $1 in
    headers_fuzz) echo 1024 ;;
    path_fuzz | json_fuzz) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

mkdir -p "$OUT/crashes" "$OUT/logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

n=0 failed=0
[[ -z $RUNS ]] && printf '1..%d\n' "${#TARGETS[@]}"
[[ -n $RUNS ]] && printf '%-14s %12s %9s %9s %7s %7s  %s\n' target executions seconds 'exec/s' cov ft crashes
for t in "${TARGETS[@]}"; do
  n=$((n + 1))
  seeds=()
  [[ -d tests/fuzz/seeds/$t ]] && seeds+=("tests/fuzz/seeds/$t")
  [[ $t == env_fuzz ]] && seeds+=(tests/golden)
  opts=(-max_len="$(max_len "$t")" -timeout=25 -print_final_stats=1
    -artifact_prefix="$OUT/crashes/$t-")
  [[ -f tests/fuzz/dict/$t.dict ]] && opts+=(-dict="tests/fuzz/dict/$t.dict")
  if [[ -n $RUNS ]]; then
    corpus=$OUT/corpus/$t
    opts+=(-runs="$RUNS")
    log=$OUT/logs/$t.log
  else
    corpus=$TMP/corpus-$t
    opts+=(-max_total_time="$SECS")
    log=$TMP/$t.log
  fi
  mkdir -p "$corpus"
  before=$(ls "$OUT/crashes" | grep -c "^$t-" || true)
  start=$(date +%s.%N)
  "$OUT/$t" "${opts[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  after=$(ls "$OUT/crashes" | grep -c "^$t-" || true)
  crashes=$((after - before))
  ((rc != 0 && crashes == 0)) && crashes=1 # it stopped without writing an input: still a failure
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | sed 's/cov: //')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | sed 's/ft: //')
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  rate=$(awk -v e="${execs:-0}" -v s="$secs" 'BEGIN { printf "%d", (s > 0) ? e / s : 0 }')
  if ((crashes == 0)); then
    if [[ -n $RUNS ]]; then
      printf '%-14s %12s %9s %9s %7s %7s  %s\n' "$t" "${execs:-?}" "$secs" "$rate" "${cov:-?}" "${ft:-?}" 0
    else
      printf 'ok %d - %s: %s runs in %s s, cov %s\n' "$n" "$t" "${execs:-?}" "$secs" "${cov:-?}"
    fi
    continue
  fi
  failed=$((failed + 1))
  input=$(grep -o "Test unit written to .*" "$log" | tail -n 1 | sed 's/Test unit written to //')
  if [[ -n $RUNS ]]; then
    printf '%-14s %12s %9s %9s %7s %7s  %s\n' "$t" "${execs:-?}" "$secs" "$rate" "${cov:-?}" "${ft:-?}" "$crashes"
    printf '  %s stopped (exit %d): input %s, log %s\n' "$t" "$rc" "${input:-none written}" "$log"
  else
    printf 'not ok %d - %s: exit %d after %s runs; input %s\n' "$n" "$t" "$rc" "${execs:-?}" \
      "${input:-none written}"
  fi
  # what broke: the invariant or the sanitizer's summary, and the top of the stack
  grep -m 1 -E 'invariant violated|runtime error|SUMMARY|ERROR: libFuzzer|LeakSanitizer' "$log" |
    sed 's/^/# /'
  grep -m 6 -E '^ +#[0-9]+ .* in (gw_|s2_|jscan|jbuf|mp_|env_|check_|fuzz_)' "$log" | sed 's/^/# /'
done

((failed == 0))
