# run_test.sh - `make run` as a newcomer uses it: compose/run.sh brings the stores and the
# tree up, /healthz answers 200 within 15 s, Ctrl-C (SIGINT to the process group) stops
# everything, and a second run reuses the same var directory and its data.
. "$(dirname "$0")/../lib/itest.sh"

VAR=$(mktemp -d "$TETHER_TEST_TMP/var.XXXXXX")
PORT=$(free_port)
TREE_URL="http://127.0.0.1:$PORT"

start_run() {
  # a process group of its own, as a terminal would give it
  setsid env -u TETHER_RUN_DIR -u TETHER_PG_URL -u TETHER_REDIS_URL -u TETHER_CH_URL \
    -u TETHER_PG_PORT -u TETHER_REDIS_PORT -u TETHER_CH_HTTP_PORT -u TETHER_CH_TCP_PORT \
    TETHER_VAR_DIR="$VAR" TETHER_PORTS=auto TETHER_PG_FAST=1 TETHER_HTTP_PORT="$PORT" \
    TETHER_SHUTDOWN_GRACE=2s compose/run.sh "$(dirname "$TETHER_TEST_BIN")" >>"$VAR/run.log" 2>&1 &
  RUN_PID=$!
  TREES+=("$RUN_PID")
}
store_pids() {
  cat "$VAR/services/redis/redis.pid" "$VAR/services/clickhouse/clickhouse.pid" 2>/dev/null
  head -1 "$VAR/services/pg/data/postmaster.pid" 2>/dev/null
}
alive() { [[ -e /proc/$1 && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
none_alive() {
  for p in "$@"; do alive "$p" && return 1; done
  return 0
}
stop_run() {
  kill -INT -- "-$RUN_PID"
  wait "$RUN_PID" 2>/dev/null
}

cd "$(dirname "$0")/../.."
t0=$(now_ms)
start_run
ok "make run: /healthz answers 200 within 15 s" wait_for 15000 healthz_is 200
diag "up after $(($(now_ms) - t0))ms (fresh stores)"
ok "make run prints the URL" wait_for 3000 grep -q "Tether is up at $TREE_URL" "$VAR/run.log"
body=$(curl -s "$TREE_URL/healthz")
is "$(jq -r '[.actors[] | select(.state == "up")] | length' <<<"$body")" 5 "all five actors are up"
export TETHER_RUN_DIR=$VAR/run
pids="$(tree_pids) $(store_pids)"
pg_port=$(grep TETHER_PG_PORT= "$VAR/services/services.env")
psql -q "$(grep TETHER_PG_URL= "$VAR/services/services.env" | cut -d= -f2-)" \
  -c "INSERT INTO tether_meta(key, value) VALUES ('run_test', 'kept')" >/dev/null
stop_run
ok "Ctrl-C stops the tree and the stores: nothing left running" wait_for 10000 none_alive $pids

start_run
ok "a second make run comes up" wait_for 15000 healthz_is 200
is "$(grep TETHER_PG_PORT= "$VAR/services/services.env")" "$pg_port" "it reuses the var directory (same ports)"
is "$(psql -tA "$(grep TETHER_PG_URL= "$VAR/services/services.env" | cut -d= -f2-)" \
  -c "SELECT value FROM tether_meta WHERE key = 'run_test'")" kept "data written in the first run is still there"
pids="$(tree_pids) $(store_pids)"
stop_run
ok "the second run stops cleanly too" wait_for 10000 none_alive $pids
done_testing
