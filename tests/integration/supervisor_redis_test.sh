# supervisor_redis_test.sh - the supervisor's leader lock never holds up its loop: with Redis
# stopped (SIGSTOP, so every command hangs rather than fails), tetherctl still answers at once,
# a killed actor is reaped and restarted within 1 s, and the lock is given up after half its
# TTL; with Redis back the lock is taken again.
. "$(dirname "$0")/../lib/itest.sh"

REDIS_PID=$(cat "$TETHER_TEST_TMP/services/redis/redis.pid" 2>/dev/null)
ok "the test Redis's pid is known" test -n "$REDIS_PID"
trap 'kill -CONT "$REDIS_PID" 2>/dev/null; itest_cleanup' EXIT

tree_start TETHER_SV_LEADER_TTL=3s
leader() { ctl status --json 2>/dev/null | jq -r .leader; }
ok "the node holds the leader lock" wait_for 5000 bash -c '[[ $('"$TETHER_TEST_BIN"'/tetherctl status --json | jq -r .leader) == true ]]'

kill -STOP "$REDIS_PID"
slowest=0
for i in $(seq 1 15); do
  t0=$(now_ms)
  ctl_quiet status
  d=$(($(now_ms) - t0))
  ((d > slowest)) && slowest=$d
  sleep 0.1
done
diag "slowest tetherctl status with Redis stopped: ${slowest}ms"
ok "tetherctl answers within 150 ms while Redis hangs (slowest ${slowest}ms)" test "$slowest" -lt 150

pid=$(child_field session-manager pid)
restarts=$(child_field session-manager restarts)
t0=$(now_ms)
kill -KILL "$pid"
ok "a killed actor is restarted while Redis hangs" \
  wait_for 3000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"session-manager\") | .restarts') -gt $restarts && \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"session-manager\") | .pid') -gt 0 ]]"
d=$(($(now_ms) - t0))
diag "session-manager respawned after ${d}ms"
ok "within 1 s (${d}ms)" test "$d" -lt 1000
ok "the lock is given up after half its TTL without Redis" wait_for 4000 bash -c '[[ $('"$TETHER_TEST_BIN"'/tetherctl status --json | jq -r .leader) == false ]]'

kill -CONT "$REDIS_PID"
ok "with Redis back the node takes the lock again" wait_for 8000 bash -c '[[ $('"$TETHER_TEST_BIN"'/tetherctl status --json | jq -r .leader) == true ]]'

tree_stop
is "$TREE_EXIT" 0 "the tree stops cleanly"
ok "the lock was released at stop" bash -c "! grep -q . <<<\"\$(redis-cli -u '$TETHER_REDIS_URL' GET '{tether:leader}')\""
done_testing
