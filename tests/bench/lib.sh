# lib.sh - what the HTTP benchmarks share (sourced): stores and a tree of their own in a
# temporary directory, started on free ports and stopped at exit. Needs ROOT and BUILD.
# Sets T (the directory), URL, SV (the supervisor's pid) and exports the store URLs.
bench_tree_start() {
  T=$(mktemp -d /tmp/tether-bench.XXXXXX)
  chmod 755 "$T"
  trap bench_tree_stop EXIT
  TETHER_PORTS=auto TETHER_PG_FAST=1 "$ROOT/compose/services.sh" start "$T/s" >"$T/services.log" 2>&1 || {
    cat "$T/services.log" >&2
    exit 111
  }
  set -a && . "$T/s/services.env" && set +a
  "$ROOT/compose/migrate.sh" >/dev/null
  local port=$((20000 + RANDOM % 12768)) # below the ephemeral range
  export TETHER_RUN_DIR=$T/run TETHER_HTTP_PORT=$port TETHER_LOG_LEVEL=warn
  "$BUILD/bin/supervisor" 2>"$T/tree.log" &
  SV=$!
  URL=http://127.0.0.1:$port
  for _ in $(seq 100); do curl -fs -o /dev/null "$URL/healthz" && return 0; sleep 0.1; done
  echo "the tree did not come up; see $T/tree.log" >&2
  return 1
}

bench_tree_stop() {
  [[ -n ${SV:-} ]] && kill -TERM "$SV" 2>/dev/null && wait "$SV" 2>/dev/null
  "$ROOT/compose/services.sh" stop "$T/s" >/dev/null 2>&1 || true
  rm -rf "$T"
}
