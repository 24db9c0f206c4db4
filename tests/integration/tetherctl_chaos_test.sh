# tetherctl_chaos_test.sh - tetherctl chaos: kill once and on a schedule, pause (and its undo on
# SIGTERM), a bus fault set and cleared (and cleared on SIGINT), a store process stopped and
# continued through its pidfile, the JSON lines each action prints, and the usage errors.
. "$(dirname "$0")/../lib/itest.sh"

# restarts come quickly and never add up to "failed": the kills below are many and close together
tree_start TETHER_SV_MIN_RESTART=100ms TETHER_SV_BACKOFF_MAX=200ms TETHER_SV_INTENSITY=32
ok "the tree comes up" healthz_is 200
# the binary itself in the background, not the ctl function: $! must be tetherctl's pid (a
# signal to a subshell running ctl would not reach it)
CTL=$TETHER_TEST_BIN/tetherctl
# chaos runs with leak checking (the harness turns it off for the tree, which is killed on
# purpose); env execs, so $! stays tetherctl's pid
CHAOS=(env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 "$CTL" chaos)

# pstate PID: the state letter of /proc/PID/stat (after the last ')', comm may hold spaces)
pstate() { sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null; }
pstate_is() { [[ $(pstate "$1") == "$2" ]]; }
pstate_not() { [[ -n $(pstate "$1") && $(pstate "$1") != "$2" ]]; }
json_ok() { jq -e "$2" <<<"$1" >/dev/null 2>&1; } # json_ok TEXT FILTER
file_ok() { jq -se "$2" "$1" >/dev/null 2>&1; }   # file_ok FILE FILTER (over all lines)
fault_of() { ctl faults | jq -c --arg t "$1" '.faults[] | select(.target==$t) | [.drop,.dup,.delay_ms,.delay_rate]'; }
fault_is() { [[ $(fault_of "$1") == "$2" ]]; }
rc_of() { "$@" >/dev/null 2>&1; echo $?; }

# --- kill once: the child restarts
ok "stream-broker is up" wait_for 10000 child_state_is stream-broker up
pid0=$(child_field stream-broker pid)
r0=$(child_field stream-broker restarts)
out=$("${CHAOS[@]}" kill stream-broker)
is "$?" 0 "chaos kill exits 0"
diag "$out"
is "$(jq -r '[.chaos, .target, .signal, .ok] | map(tostring) | join(",")' <<<"$out")" \
  "kill,stream-broker,KILL,true" "it prints one line: chaos kill, target, signal KILL, ok"
ok "the line carries ts_ms (wall) and mono_ms" \
  json_ok "$out" '(.ts_ms | type == "number") and (.ts_ms > 1700000000000) and (.mono_ms | type == "number")'
restarted() {
  [[ $(child_field stream-broker restarts) -gt $r0 && $(child_field stream-broker pid) != "$pid0" ]] &&
    child_state_is stream-broker up
}
ok "the child restarts: RESTARTS grows and the pid changes" wait_for 5000 restarted

# --- kill on a schedule: one line per tick, a tick that finds the child restarting is no error
ok "stream-broker is up again" wait_for 5000 child_state_is stream-broker up
"${CHAOS[@]}" kill stream-broker --every 300ms --for 1s >"$TREE_DIR/kills.out"
is "$?" 0 "chaos kill --every 300ms --for 1s exits 0"
sed 's/^/# /' "$TREE_DIR/kills.out"
n=$(grep -c '"chaos":"kill"' "$TREE_DIR/kills.out")
ok "at least 2 kills reported ($n)" test "$n" -ge 2
ok "at most 4 ticks in 1 s at 300 ms ($n)" test "$n" -le 4
ok "the first tick killed the child" file_ok "$TREE_DIR/kills.out" '.[0].ok == true'
ok "a tick that missed the child says it was not running" \
  file_ok "$TREE_DIR/kills.out" 'all(.[]; .ok or (.error == "not running" and .code == "ERR_CONFLICT"))'
ok "ticks are about 300 ms apart (mono_ms)" \
  file_ok "$TREE_DIR/kills.out" '[range(1; length) as $i | .[$i].mono_ms - .[$i-1].mono_ms] | all(. >= 200 and . <= 600)'
ok "stream-broker comes back after the kills" wait_for 5000 child_state_is stream-broker up

# --- a kill that finds the child not running is reported, and the schedule goes on
ok "tetherctl stop stream-broker" ctl_quiet stop stream-broker
ok "stream-broker is stopped" wait_for 5000 child_state_is stream-broker stopped
"${CHAOS[@]}" kill stream-broker --every 200ms --for 500ms >"$TREE_DIR/kills2.out"
is "$?" 0 "kills of a stopped child exit 0"
n=$(grep -c '"chaos":"kill"' "$TREE_DIR/kills2.out")
ok "every tick is reported ($n)" test "$n" -eq 3
ok "each says not running" \
  file_ok "$TREE_DIR/kills2.out" 'all(.[]; .ok == false and .error == "not running" and .code == "ERR_CONFLICT")'
ok "tetherctl start stream-broker" ctl_quiet start stream-broker
ok "stream-broker is up once started" wait_for 5000 child_state_is stream-broker up

# --- pause: SIGSTOP for the duration, then SIGCONT
ok "waitpoint-registry is up" wait_for 5000 child_state_is waitpoint-registry up
wp=$(child_field waitpoint-registry pid)
"${CHAOS[@]}" pause waitpoint-registry --for 1s >"$TREE_DIR/pause.out" &
P=$!
ok "the child is stopped (state T) during the pause" wait_for 800 pstate_is "$wp" T
wait $P
is "$?" 0 "chaos pause exits 0"
ok "the child runs again (not T) once it returns" pstate_not "$wp" T
is "$(jq -r .phase "$TREE_DIR/pause.out" | tr '\n' ' ')" "stop cont " "it prints a stop and a cont line"
ok "both lines name the child's pid and are ok" \
  file_ok "$TREE_DIR/pause.out" "all(.[]; .pid == $wp and .ok and .chaos == \"pause\")"
ok "the cont line is about 1 s after the stop line" \
  file_ok "$TREE_DIR/pause.out" '(.[1].mono_ms - .[0].mono_ms) as $d | $d >= 950 and $d <= 1500'
is "$(child_field waitpoint-registry pid)" "$wp" "a paused child is not restarted"

# --- pause interrupted: SIGTERM continues the child at once, exit 0
"${CHAOS[@]}" pause waitpoint-registry --for 20s >"$TREE_DIR/pause2.out" &
P=$!
sleep 0.3
ok "stopped 0.3 s into a 20 s pause" pstate_is "$wp" T
t0=$(now_ms)
kill -TERM $P
wait $P
rc=$?
took=$(($(now_ms) - t0))
is "$rc" 0 "an interrupted pause exits 0"
ok "it returned at once after SIGTERM (${took}ms)" test "$took" -lt 1000
ok "and the child is continued" pstate_not "$wp" T
ok "its cont line says it was interrupted" \
  file_ok "$TREE_DIR/pause2.out" '.[1].phase == "cont" and .[1].interrupted == true and .[1].ok'

# --- bus: the fault is set for the duration and cleared after
"${CHAOS[@]}" bus run-manager drop=0.1 dup=0.05 delay=50ms --for 1500ms >"$TREE_DIR/bus.out" &
P=$!
ok "tetherctl faults shows the fault during chaos bus" wait_for 1200 fault_is run-manager '[0.1,0.05,50,1]'
wait $P
is "$?" 0 "chaos bus exits 0"
is "$(fault_of run-manager)" "[0,0,0,0]" "the fault is zeros after it"
is "$(jq -r .phase "$TREE_DIR/bus.out" | tr '\n' ' ')" "set clear " "it prints a set and a clear line"
ok "the set line carries the fault" \
  file_ok "$TREE_DIR/bus.out" '.[0].drop == 0.1 and .[0].dup == 0.05 and .[0].delay_ms == 50 and .[0].delay_rate == 1'

"${CHAOS[@]}" bus run-manager drop=0.5 --for 30s >"$TREE_DIR/bus2.out" &
P=$!
ok "a second fault is set" wait_for 1200 fault_is run-manager '[0.5,0,0,0]'
t0=$(now_ms)
kill -INT $P
wait $P
rc=$?
took=$(($(now_ms) - t0))
is "$rc" 0 "chaos bus interrupted by SIGINT exits 0"
ok "it returned at once (${took}ms)" test "$took" -lt 1000
is "$(fault_of run-manager)" "[0,0,0,0]" "SIGINT cleared the fault"
ok "its clear line says it was interrupted" \
  file_ok "$TREE_DIR/bus2.out" '.[1].phase == "clear" and .[1].interrupted == true and .[1].ok'

# --- store: a process that is not the supervisor's, by its pidfile
sleep 60 &
SP=$!
printf '%s' "$SP" >"$TREE_DIR/store.pid" # no newline, as ClickHouse writes it
"${CHAOS[@]}" store --pidfile "$TREE_DIR/store.pid" --for 1s --name redis >"$TREE_DIR/store.out" &
P=$!
ok "the store process is stopped (T)" wait_for 800 pstate_is "$SP" T
wait $P
is "$?" 0 "chaos store exits 0"
ok "the store process runs again after it" pstate_not "$SP" T
ok "it prints stop and cont lines with the pid and --name as target" \
  file_ok "$TREE_DIR/store.out" "length == 2 and .[0].phase == \"stop\" and .[1].phase == \"cont\" and all(.[]; .pid == $SP and .target == \"redis\" and .ok)"
printf '%s\n5432\n/dev/shm\n' "$SP" >"$TREE_DIR/postmaster.pid" # PostgreSQL: the pid on line 1
"${CHAOS[@]}" store --pidfile "$TREE_DIR/postmaster.pid" --for 20s --name postgres >/dev/null &
P=$!
ok "a postmaster.pid-style file works too" wait_for 800 pstate_is "$SP" T
kill -HUP $P
wait $P
is "$?" 0 "chaos store interrupted by SIGHUP exits 0"
ok "and the store process is continued" pstate_not "$SP" T
kill $SP
wait $SP 2>/dev/null
out=$("${CHAOS[@]}" store --pid "$SP" --for 1s)
is "$?" 1 "a pid that is not alive is refused (exit 1)"
ok "with an error line" json_ok "$out" '.ok == false and .error == "no such process"'

# --- usage and errors
is "$(rc_of "${CHAOS[@]}" pause waitpoint-registry)" 100 "pause without --for: exit 100"
is "$(rc_of "${CHAOS[@]}" kill stream-broker --every 10ms --for 1s)" 100 "--every 10ms: exit 100"
is "$(rc_of "${CHAOS[@]}" kill stream-broker --every 1s)" 100 "--every without --for: exit 100"
is "$(rc_of "${CHAOS[@]}" pause waitpoint-registry --for 2h)" 100 "--for above 1h: exit 100"
is "$(rc_of "${CHAOS[@]}" nosuch stream-broker)" 100 "unknown subcommand: exit 100"
is "$(rc_of "${CHAOS[@]}" store --pid 1 --for 1s)" 100 "--pid 1: exit 100"
is "$(rc_of "${CHAOS[@]}" bus run-manager drop=2 --for 1s)" 100 "a bad fault: exit 100"
is "$(rc_of "${CHAOS[@]}" kill stream-broker --signal NOPE)" 100 "an unknown signal: exit 100"
out=$("${CHAOS[@]}" kill no-such-child 2>/dev/null)
is "$?" 1 "kill of an unknown child: exit 1"
ok "with an error line" json_ok "$out" '.ok == false and .code == "ERR_NOTFOUND"'
is "$(rc_of env TETHER_RUN_DIR="$TREE_DIR/nowhere" "${CHAOS[@]}" kill stream-broker)" \
  111 "no supervisor: exit 111"
is "$(fault_of run-manager)" "[0,0,0,0]" "no fault was left behind"

tree_stop
is "$TREE_EXIT" 0 "the supervisor exits 0 on SIGTERM"
is "$TREE_LEFT" "" "no child is left running"
done_testing
