#!/usr/bin/env bash
# redis-cluster.sh - a throwaway 3-master Redis Cluster on free ports, for tests.
#
# Sourced: redis_cluster_start [DIR] starts it (DIR: a new temporary directory by default) and
# stops it, removing DIR, when the shell exits (chained to the EXIT trap set before); it sets
# RC_DIR, RC_PORTS (the three ports, space-separated), RC_URL (redis://127.0.0.1:<first>?cluster=1)
# and RC_NODES_FILE. redis_cluster_stop stops it earlier.
# Run: redis-cluster.sh start DIR [OWNER_PID] prints RC_URL and leaves the cluster running
# (DIR/cluster.env holds RC_PORTS and RC_URL); redis-cluster.sh stop DIR stops it and removes DIR.
# A watcher stops it once its owner (the sourcing shell, or OWNER_PID when given) is gone, so a
# test killed by its timeout leaves no server behind.
#
# Each node: redis-server --cluster-enabled yes, no persistence, bound to 127.0.0.1 on a port
# in 20000-22767 whose cluster bus port (port + 10000) is free too, below the ephemeral range.

# rc_alive PID: the process exists and is no zombie (re-parented ones are reaped late here).
rc_alive() {
  [[ -e /proc/$1 ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# rc_port_free P: nothing listens on P nor on its bus port P + 10000.
rc_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null &&
    ! (exec 3<>"/dev/tcp/127.0.0.1/$(($1 + 10000))") 2>/dev/null
}

# rc_node_start DIR: starts one node on a free port (retrying when another process took it
# first); prints the port.
rc_node_start() {
  local dir=$1 p pid _
  for _ in 1 2 3 4 5 6 7 8; do
    p=$((20000 + RANDOM % 2768))
    [[ -e $dir/$p.pid ]] && continue
    rc_port_free "$p" || continue
    mkdir -p "$dir/$p"
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" \
      --cluster-node-timeout 5000 --dir "$dir/$p" >"$dir/$p.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/$p.pid"
    local start=$SECONDS
    while ((SECONDS - start < 10)) && rc_alive "$pid"; do # dead: it could not bind
      # ours, not a server another process started on the port meanwhile
      if redis-cli -p "$p" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
        echo "$p"
        return 0
      fi
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    rm -f "$dir/$p.pid"
  done
  echo "redis-cluster.sh: could not start a redis-server (see $dir/*.log)" >&2
  return 1
}

# rc_all_ok PORTS...: every node says cluster_state:ok and knows every other.
rc_all_ok() {
  local p info
  for p in "$@"; do
    info=$(redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r')
    grep -q '^cluster_state:ok$' <<<"$info" || return 1
    grep -q "^cluster_known_nodes:$#\$" <<<"$info" || return 1
  done
}

# rc_up DIR: starts the three nodes, creates the cluster, waits until it serves; writes
# DIR/cluster.env.
rc_up() {
  local dir=$1 owner=${2:-} ports=() p _ start
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "redis-cluster.sh: redis-server and redis-cli are needed" >&2
    return 1
  fi
  mkdir -p "$dir" || return 1
  rc_watch "$dir" "$owner"
  for _ in 1 2 3; do
    p=$(rc_node_start "$dir") || return 1
    ports+=("$p")
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
    >"$dir/create.log" 2>&1 || {
    echo "redis-cluster.sh: redis-cli --cluster create failed:" >&2
    tail -n 20 "$dir/create.log" >&2
    return 1
  }
  start=$SECONDS
  until rc_all_ok "${ports[@]}"; do
    if ((SECONDS - start > 20)); then
      echo "redis-cluster.sh: the cluster did not reach cluster_state:ok within 20 s" >&2
      return 1
    fi
    sleep 0.1
  done
  {
    echo "RC_PORTS='${ports[*]}'"
    echo "RC_URL='redis://127.0.0.1:${ports[0]}?cluster=1'"
  } >"$dir/cluster.env"
}

# rc_watch DIR [OWNER]: a background watcher that runs rc_down DIR once OWNER has exited (none
# without OWNER). Its pid is DIR/watch.pid, which rc_down stops like a node; it removes that file
# itself before it stops the rest.
rc_watch() {
  local dir=$1 owner=${2:-}
  [[ -n $owner ]] || return 0
  (
    trap '' HUP
    while rc_alive "$owner"; do sleep 1; done
    rm -f "$dir/watch.pid"
    rc_down "$dir"
  ) </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/watch.pid"
}

# rc_down DIR: stops every node started in DIR (SIGKILL after 5 s) and removes DIR.
rc_down() {
  local dir=$1 f pid pids=()
  [[ -n $dir && -d $dir ]] || return 0
  for f in "$dir"/*.pid; do
    [[ -e $f ]] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  local start=$SECONDS
  for pid in "${pids[@]}"; do
    while rc_alive "$pid" && ((SECONDS - start < 5)); do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null
  done
  rm -rf "$dir"
}

redis_cluster_start() {
  RC_DIR=${1:-$(mktemp -d "${TETHER_TEST_TMP:-${TMPDIR:-/tmp}}/redis-cluster.XXXXXX")}
  RC_NODES_FILE=$RC_DIR/cluster.env
  # stopped at exit, after whatever the EXIT trap did before
  local prev
  prev=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT\$/\\1/")
  # shellcheck disable=SC2064
  trap "${prev:+$prev; }redis_cluster_stop" EXIT
  rc_up "$RC_DIR" "$$" || return 1
  # shellcheck disable=SC1090
  . "$RC_NODES_FILE"
}

redis_cluster_stop() {
  [[ -n ${RC_DIR:-} ]] && rc_down "$RC_DIR"
  RC_DIR=
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -uo pipefail
  case ${1:-} in
  start)
    rc_up "${2:?usage: redis-cluster.sh start DIR [OWNER_PID]}" "${3:-}" || {
      rc_down "$2"
      exit 1
    }
    . "$2/cluster.env"
    echo "$RC_URL"
    ;;
  stop) rc_down "${2:?usage: redis-cluster.sh stop DIR}" ;;
  *)
    echo "usage: redis-cluster.sh start DIR [OWNER_PID] | stop DIR (or source it: redis_cluster_start [DIR])" >&2
    exit 100
    ;;
  esac
fi
