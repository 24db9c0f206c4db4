# supervisor_test.sh - the process tree: start order and readiness, restart after kill -9,
# restart intensity and permanent failure, operator commands, leader lock with fencing,
# orphaned children, and a SIGTERM that leaves nothing behind.
. "$(dirname "$0")/../lib/itest.sh"

ACTORS="session-manager run-manager stream-broker waitpoint-registry clickhouse-replicator"

tree_start
ok "the tree comes up and /healthz answers 200" healthz_is 200
body=$(curl -s "$TREE_URL/healthz")
for a in $ACTORS; do
  is "$(jq -r --arg a "$a" '.actors[$a].state' <<<"$body")" up "/healthz names $a as up"
done
is "$(ctl status --json | jq -r '.leader')" true "this node holds the leader lock"

# --- kill -9 of each actor: /healthz is 200 again within 1 s and status shows the restart
sleep 1.1 # every child has been up for longer than the minimum restart interval
for a in $ACTORS; do
  pid=$(child_field "$a" pid)
  kill -9 "$pid"
  t0=$(now_ms)
  # healthz must see the new instance; poll until 200 with a different pid
  wait_for 3000 bash -c "[[ \$(curl -s --max-time 1 $TREE_URL/healthz | jq -r '.actors[\"$a\"].pid') != $pid ]] && [[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 $TREE_URL/healthz) == 200 ]]"
  took=$(($(now_ms) - t0))
  diag "$a back after ${took}ms"
  if ! ok "$a is healthy again within 1 s of kill -9 (${took}ms)" test "$took" -lt 1000; then
    # what the tree said meanwhile, to tell a slow store from a slow restart
    tail -n 40 "$TREE_LOG" | sed 's/^/# /'
    curl -s --max-time 2 "$TREE_URL/healthz" | sed 's/^/# healthz: /'
  fi
  is "$(child_field "$a" restarts)" 1 "tetherctl status shows $a restarted once"
  is "$(child_field "$a" last_exit)" "signal 9" "tetherctl status shows why $a died"
done

# --- operator commands
ok "tetherctl stop stream-broker" ctl_quiet stop stream-broker
ok "stream-broker is stopped" wait_for 5000 child_state_is stream-broker stopped
ok "/healthz is 503 while it is down" healthz_is 503
failing_is() { [[ $(curl -s --max-time 2 "$TREE_URL/healthz" | jq -r '.failing | join(",")') == "$1" ]]; }
ok "/healthz names the failing actor" wait_for 3000 failing_is stream-broker
ok "tetherctl start stream-broker" ctl_quiet start stream-broker
ok "stream-broker is up again" wait_for 5000 child_state_is stream-broker up
old=$(child_field run-manager pid)
ok "tetherctl restart run-manager" ctl_quiet restart run-manager
ok "run-manager runs with a new pid" wait_for 5000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"run-manager\") | .pid') != $old ]]"
ok "run-manager is up after the restart" wait_for 5000 child_state_is run-manager up
ok "tetherctl kill sends a signal" ctl_quiet kill waitpoint-registry TERM
ok "a child killed by an operator comes back" wait_for 5000 child_state_is waitpoint-registry up
ok "tetherctl refuses an unknown child" bash -c "! $TETHER_TEST_BIN/tetherctl restart no-such-actor 2>/dev/null"

# --- leader lock: losing it stops the leader-only child; regaining it gives a higher token
token=$(ctl status --json | jq -r '.fencing_token')
redis-cli -u "$TETHER_REDIS_URL" del '{tether:leader}' >/dev/null
redis-cli -u "$TETHER_REDIS_URL" set '{tether:leader}' 'another-node:1:999' PX 1500 >/dev/null
ok "the leader-only child stops when another node holds the lock" \
  wait_for 6000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.leader') == false ]] && [[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"clickhouse-replicator\") | .pid') == 0 ]]"
ok "the lock is taken back after the other holder's TTL" \
  wait_for 10000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.leader') == true ]]"
ok "the leader-only child runs again" wait_for 6000 child_state_is clickhouse-replicator up
new=$(ctl status --json | jq -r '.fencing_token')
ok "the fencing token grew ($token -> $new)" test "$new" -gt "$token"

# --- a second supervisor on the same run directory refuses to start
"$TETHER_TEST_BIN/supervisor" >/dev/null 2>&1
is "$?" 100 "a second supervisor on the same run dir exits 100"

# --- SIGTERM stops the whole tree in order, leaving nothing
tree_stop
is "$TREE_EXIT" 0 "the supervisor exits 0 on SIGTERM"
is "$TREE_LEFT" "" "no child is left running after SIGTERM"
ok "children stopped in reverse dependency order (gateway before session-manager)" \
  bash -c "awk '/\"msg\":\"gateway[.0-9]*: stopped/{g=NR} /\"msg\":\"session-manager: stopped/{s=NR} END{exit !(g && s && g < s)}' $TREE_LOG"

# --- a child that crashes in a loop is given up on; the rest keep running
tree_start TETHER_SV_INTENSITY=3 TETHER_SV_PERIOD=30s TETHER_SV_MIN_RESTART=100ms \
  TETHER_SV_BACKOFF_MAX=200ms TETHER_SV_CMD_WAITPOINT_REGISTRY='sleep 0.05; exit 3' || true
ok "a crash-looping child is marked failed at the intensity limit" \
  wait_for 8000 child_state_is waitpoint-registry failed
is "$(child_field waitpoint-registry last_exit)" "exit 3" "its last exit is recorded"
for a in session-manager run-manager stream-broker clickhouse-replicator; do
  is "$(child_field "$a" state)" up "$a keeps running"
done
ok "the gateway still starts and serves (503 naming the failed actor)" \
  wait_for 5000 bash -c "[[ \$(curl -s $TREE_URL/healthz | jq -r '.failing | join(\",\")') == waitpoint-registry ]]"
tree_stop
is "$TREE_LEFT" "" "nothing left after stopping the second tree"

# --- exit code 100 is permanent: no restart at all
tree_start_nowait TETHER_SV_CMD_STREAM_BROKER='exit 100'
ok "a child exiting 100 is failed without a restart" wait_for 5000 child_state_is stream-broker failed
is "$(child_field stream-broker restarts)" 0 "it was never restarted"
tree_stop

# --- children exit when the supervisor dies
tree_start
pids=$(tree_pids)
kill -9 "$TREE_PID"
wait "$TREE_PID" 2>/dev/null
gone() {
  for p in $pids; do
    [[ -e /proc/$p && $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) != Z ]] && return 1
  done
  return 0
}
ok "every child exits when the supervisor is killed" wait_for 5000 gone

done_testing
