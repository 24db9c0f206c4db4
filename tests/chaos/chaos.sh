#!/usr/bin/env bash
# chaos.sh BUILD_DIR [--seconds N] [--short] [--seed N] [--out DIR]
#
# The chaos suite: a tree on real stores, two echo agents, the mixed workload (workload.mjs)
# writing a history, and a nemesis that faults one actor at a time on a schedule (kill -9
# every 2 s, SIGSTOP then SIGCONT, bus drop/delay/duplicate, a store paused, a gateway killed
# with connections open), all through `tetherctl chaos`. When the time is up the nemesis stops
# (every fault undone), the tree is left to heal, the workload drains every stream, and
# check.mjs judges the history. Prints the checker's table; the last line is
# "chaos: N anomalies (seed S, history FILE)".
#
#   --short      the ~60 s form that `make test` runs (tests/integration/chaos_test.sh)
#   --seconds N  the load's length (default 300, or 45 with --short); the schedule is spread
#                over it
#   --seed N     the workload's choices (the schedule is fixed): the same seed replays them
#   --out DIR    where the history, the nemesis log and the tree's logs are kept (default
#                build/chaos/<seed>)
#
# Stores: the ones exported by tests/run.sh (TETHER_PG_URL, TETHER_REDIS_URL, TETHER_CH_URL,
# TETHER_TEST_TMP) when set; otherwise it starts its own on free ports and removes them after.
# Exit: 0 no anomaly, 1 anomalies (or the run could not be made), 100 usage.
set -uo pipefail

ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: chaos.sh BUILD_DIR [--seconds N] [--short] [--seed N] [--out DIR]}" && pwd -P) || exit 100
shift
SECONDS_LOAD="" SHORT=0 SEED=$(( $(date +%s) % 1000000 )) OUT=""
while (($#)); do
  case $1 in
    --seconds) SECONDS_LOAD=${2:?}; shift 2 ;;
    --short) SHORT=1; shift ;;
    --seed) SEED=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    *) echo "chaos.sh: unknown option $1" >&2; exit 100 ;;
  esac
done
[[ -n $SECONDS_LOAD ]] || SECONDS_LOAD=$( ((SHORT)) && echo 45 || echo 300)
[[ $SECONDS_LOAD =~ ^[0-9]+$ ]] && ((SECONDS_LOAD >= 20 && SECONDS_LOAD <= 3600)) || {
  echo "chaos.sh: --seconds must be 20-3600" >&2
  exit 100
}
OUT=${OUT:-$ROOT/build/chaos/$SEED}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd -P)
cd "$ROOT" || exit 1
T0=$(date +%s)
say() { printf 'chaos: %3d s: %s\n' "$(($(date +%s) - T0))" "$*" >&2; }

# ---- stores
OWN_STORES=""
if [[ -z ${TETHER_TEST_TMP:-} || -z ${TETHER_PG_URL:-} ]]; then
  base=/tmp
  [[ -d /dev/shm && -w /dev/shm ]] && base=/dev/shm
  OWN_STORES=$(mktemp -d "$base/tether-chaos.XXXXXX")
  chmod 755 "$OWN_STORES"
  say "starting PostgreSQL, Redis and ClickHouse in $OWN_STORES"
  if ! TETHER_PORTS=auto TETHER_PG_FAST=1 compose/services.sh start "$OWN_STORES/services" >"$OUT/services.log" 2>&1; then
    cat "$OUT/services.log" >&2
    exit 1
  fi
  set -a && . "$OWN_STORES/services/services.env" && set +a
  compose/migrate.sh "$TETHER_PG_URL" >>"$OUT/services.log" 2>&1 || { say "migrations failed"; exit 1; }
  export TETHER_TEST_TMP=$OWN_STORES
fi
STORE_DIR=$TETHER_TEST_TMP/services
export TETHER_TEST_BIN=$BUILD/bin
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}

. "$ROOT/tests/lib/itest.sh"

NEMESIS_PID="" WORKLOAD_PID="" AGENTS=()
chaos_cleanup() {
  exec 2>/dev/null # the shell's "Killed" lines for the processes stopped here
  [[ -n $NEMESIS_PID ]] && kill -TERM -- "-$NEMESIS_PID" 2>/dev/null
  [[ -n $WORKLOAD_PID ]] && kill -KILL "$WORKLOAD_PID" 2>/dev/null
  for a in "${AGENTS[@]}"; do kill -KILL "$a" 2>/dev/null; done
  # never leave a store stopped, whatever happened to the nemesis
  for f in "$STORE_DIR/pg/data/postmaster.pid" "$STORE_DIR/redis/redis.pid" "$STORE_DIR/clickhouse/clickhouse.pid"; do
    [[ -r $f ]] && kill -CONT "$(head -c 32 "$f" | head -n1)" 2>/dev/null
  done
  itest_cleanup
  if [[ -n $OWN_STORES ]]; then
    compose/services.sh stop "$OWN_STORES/services" >/dev/null 2>&1
    rm -rf "$OWN_STORES"
  fi
}
trap chaos_cleanup EXIT
trap 'exit 143' TERM INT HUP # the EXIT trap runs on these too: no store left stopped

# ---- the tree. The nemesis kills one child every 2 s for up to 20 s: ten deaths, which the
# supervisor's default restart intensity (10 within 60 s, docs/supervisor.md) takes for a crash
# loop and answers by giving the child up (`failed`), and whose backoff (1, 2, 4, 8 s ...) would
# keep it down most of the time. Faults from outside are not a crash loop, so this tree allows
# them: intensity 32 (the most it takes) within 60 s, backoff at most 1 s (two spawns still at
# least TETHER_SV_MIN_RESTART apart).
tree_start TETHER_SV_INTENSITY=32 TETHER_SV_BACKOFF_MAX=1s >/dev/null || { say "the tree did not come up (log: $TREE_LOG)"; tail -n 20 "$TREE_LOG" >&2; exit 1; }
say "tree up at $TREE_URL"
KEY=$(ctl env create --org "chaos-$SEED-$$" --project a --type dev) || { say "no environment"; exit 1; }
for i in 1 2; do
  TETHER_URL=$TREE_URL TETHER_SECRET_KEY=$KEY TETHER_ECHO_LEASE_SECONDS=3 TETHER_ECHO_SLEEP_SECONDS=5 \
    "$TETHER_TEST_BIN/echo-agent" >>"$OUT/echo-agent.$i.log" 2>&1 &
  AGENTS+=($!)
done

mapfile -t GATEWAYS < <(ctl status --json | jq -r '.children[].name | select(startswith("gateway"))')
ACTORS=(stream-broker session-manager run-manager waitpoint-registry clickhouse-replicator)

# ---- the nemesis: one fault at a time, the schedule spread over the load's length
# Each step is "KIND TARGET SECONDS"; the steps' seconds are scaled to fill the load, leaving
# the last 10 % without faults so the tail of the load runs on a healed tree too.
STEPS=()
if ((SHORT)); then
  for a in "${ACTORS[@]}" "${GATEWAYS[0]}"; do STEPS+=("kill $a 4"); done
  STEPS+=("bus stream-broker 6" "bus session-manager 4" "pause run-manager 3"
    "store redis 2" "store postgres 2")
else
  for a in "${ACTORS[@]}" "${GATEWAYS[@]}"; do
    STEPS+=("kill $a 20" "bus $a 15" "pause $a 4")
  done
  STEPS+=("store redis 4" "store postgres 4" "store clickhouse 4")
fi
total=0
for s in "${STEPS[@]}"; do total=$((total + ${s##* })); done

nemesis() {
  local scale gap kind target secs dur
  # seconds of faults per second of load, at most 0.9 of it; gaps between steps make the rest
  scale=$(awk -v l="$SECONDS_LOAD" -v t="$total" 'BEGIN { s = 0.9 * l / t; print (s > 1 ? 1 : s) }')
  gap=$(awk -v l="$SECONDS_LOAD" -v t="$total" -v s="$scale" -v n="${#STEPS[@]}" \
    'BEGIN { g = (0.9 * l - t * s) / n; print (g < 0.2 ? 0.2 : g) }')
  sleep 2 # the workload's sessions exist first
  for s in "${STEPS[@]}"; do
    read -r kind target secs <<<"$s"
    dur=$(awk -v a="$secs" -v s="$scale" 'BEGIN { d = a * s; printf "%dms", (d < 1 ? 1000 : d * 1000) }')
    case $kind in
      kill) ctl chaos kill "$target" --every 2s --for "$dur" ;;
      pause) ctl chaos pause "$target" --for "$dur" ;;
      bus) ctl chaos bus "$target" drop=0.1 dup=0.05 delay=200ms --for "$dur" ;;
      store)
        case $target in
          postgres) f=$STORE_DIR/pg/data/postmaster.pid ;;
          redis) f=$STORE_DIR/redis/redis.pid ;;
          clickhouse) f=$STORE_DIR/clickhouse/clickhouse.pid ;;
        esac
        ctl chaos store --pidfile "$f" --name "$target" --for "$dur" ;;
    esac
    sleep "$gap"
  done
}

# what the tree and the workload were doing, when a run goes wrong
diagnose() {
  say "supervisor's view:"
  ctl status >&2 2>&1
  say "workload's last lines:"
  tail -n 15 "$OUT/workload.log" >&2
  say "nemesis's last actions:"
  tail -n 5 "$OUT/nemesis.jsonl" >&2
  tail -n 5 "$OUT/nemesis.err" >&2
}

HIST=$OUT/history.jsonl
READY=$OUT/healed
rm -f "$READY"
say "seed $SEED, ${SECONDS_LOAD}s of load, ${#STEPS[@]} nemesis steps, history $HIST"
# The workload's budget bounds its whole run (the load, the heal, the echo wait, the final
# reads); past it, it sends nothing more and ends. The short form must fit the test suite's
# 300 s for one file with the stores' and tree's start around it.
BUDGET=$( ((SHORT)) && echo $((SECONDS_LOAD + 150)) || echo $((SECONDS_LOAD + 300)))
node tests/chaos/workload.mjs --url "$TREE_URL" --key "$KEY" --history "$HIST" \
  --seconds "$SECONDS_LOAD" --seed "$SEED" --pg "$TETHER_PG_URL" --ch "$TETHER_CH_URL" \
  --ready "$READY" --budget "$BUDGET" >"$OUT/workload.log" 2>&1 &
WORKLOAD_PID=$!
WORKLOAD_START=$(date +%s)
set -m
nemesis >"$OUT/nemesis.jsonl" 2>"$OUT/nemesis.err" &
NEMESIS_PID=$!
set +m

sleep "$SECONDS_LOAD"
# the load's time is up: the nemesis stops, every fault it set is undone (tetherctl chaos
# undoes its own on SIGTERM), and the tree heals
say "load time is up; stopping the nemesis"
kill -TERM -- "-$NEMESIS_PID" 2>/dev/null || kill -TERM "$NEMESIS_PID" 2>/dev/null
wait "$NEMESIS_PID" 2>/dev/null
NEMESIS_PID=""
for a in "${ACTORS[@]}" "${GATEWAYS[@]}"; do ctl_quiet fault "$a" off; done
if wait_for 60000 healthz_is 200; then
  say "tree healed"
else
  say "the tree did not heal within 60 s"
  diagnose
fi
touch "$READY"
# the workload ends by its budget; 30 s past it, it is stopped
deadline=$((WORKLOAD_START + BUDGET + 30))
while kill -0 "$WORKLOAD_PID" 2>/dev/null && (($(date +%s) < deadline)); do sleep 0.5; done
if kill -0 "$WORKLOAD_PID" 2>/dev/null; then
  say "the workload did not end within its budget (${BUDGET} s); stopping it"
  diagnose
  kill -KILL "$WORKLOAD_PID" 2>/dev/null
fi
wait "$WORKLOAD_PID"
wrc=$?
WORKLOAD_PID=""
say "workload ended (exit $wrc); its phases:"
grep '^workload: ' "$OUT/workload.log" | sed 's/^/  /' >&2
((wrc == 0)) || { say "the workload failed (exit $wrc)"; diagnose; }

# the nemesis's actions go into the history (their own clocks; the checker counts them)
jq -c '{op: "nemesis"} + .' "$OUT/nemesis.jsonl" >>"$HIST" 2>/dev/null
cp "$TREE_LOG" "$OUT/tree.log" 2>/dev/null
node tests/chaos/check.mjs "$HIST" | tee "$OUT/report.txt"
crc=${PIPESTATUS[0]}
node tests/chaos/check.mjs "$HIST" --json >"$OUT/report.json"
n=$(jq '[.anomalies[]] | add' "$OUT/report.json" 2>/dev/null || echo '?')
printf 'chaos: %s anomalies (seed %s, history %s)\n' "$n" "$SEED" "$HIST"
((crc == 0 && wrc == 0))
