# netns.sh - several Tether nodes on one machine, each in a network namespace of its own
# (sourced by tests/cluster/*_test.sh and tests/bench/cluster.sh). Needs ROOT and BUILD; root.
#
# The layout, made by cl_net_up and removed by cl_net_down (also at exit):
#
#   host: bridge $CL_BR with $CL_NET.0.254/24 (PostgreSQL, ClickHouse) and $CL_NET.1.254/24
#         (Redis alone, so a node can be cut off from Redis and nothing else)
#   node i: namespace $CL_NS<i>, eth0 = $CL_NET.0.<i>/24, default route via the bridge
#
# Stores are a services.sh instance of this run listening on the bridge's addresses as well as
# on 127.0.0.1 (TETHER_STORES_LISTEN), so the nodes and the host-side clients share them.
# A node is one supervisor started inside its namespace with TETHER_NODE_ID=node<i> and
# TETHER_NODE_ADDR=$CL_NET.0.<i>; its gateway answers at http://$CL_NET.0.<i>:8787 and
# tetherctl reaches it through its run directory (Unix sockets cross namespaces).

CL_ID=$$
CL_NET=10.$((CL_ID % 200 + 20)) # a /16 of our own: concurrent runs rarely share it
CL_BR=tc${CL_ID}br
CL_NS=tc${CL_ID}n
CL_DIR=""
CL_PIDS=() # supervisors, by node number
CL_PORT=8787

cl_have_netns() {
  [[ $(id -u) == 0 ]] && command -v ip >/dev/null &&
    ip netns add "${CL_NS}probe" 2>/dev/null && ip netns del "${CL_NS}probe"
}

cl_net_up() { # cl_net_up N
  local n=$1 i
  ip link add "$CL_BR" type bridge || return 1
  ip addr add "$CL_NET.0.254/24" dev "$CL_BR" && ip addr add "$CL_NET.1.254/24" dev "$CL_BR" &&
    ip link set "$CL_BR" up || return 1
  for ((i = 1; i <= n; i++)); do
    ip netns add "$CL_NS$i" || return 1
    ip link add "tc${CL_ID}v$i" type veth peer name "tc${CL_ID}p$i" || return 1
    ip link set "tc${CL_ID}p$i" netns "$CL_NS$i" || return 1
    ip link set "tc${CL_ID}v$i" master "$CL_BR" && ip link set "tc${CL_ID}v$i" up || return 1
    ip -n "$CL_NS$i" link set "tc${CL_ID}p$i" name eth0 &&
      ip -n "$CL_NS$i" addr add "$CL_NET.0.$i/24" dev eth0 &&
      ip -n "$CL_NS$i" link set eth0 up && ip -n "$CL_NS$i" link set lo up &&
      ip -n "$CL_NS$i" route add default via "$CL_NET.0.254" || return 1
  done
}

cl_net_down() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk -v p="$CL_NS" 'index($1, p) == 1 {print $1}'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  ip link del "$CL_BR" 2>/dev/null
  return 0
}

# cl_stores_up DIR: PostgreSQL, Redis and ClickHouse for the nodes; sets CL_PG, CL_REDIS, CL_CH
# (the URLs the nodes use) and exports the 127.0.0.1 ones as TETHER_*_URL for host-side tools.
cl_stores_up() {
  CL_DIR=$1
  # ports of their own: the suite's stores export theirs (services.env), which would be taken
  env -u TETHER_PG_PORT -u TETHER_REDIS_PORT -u TETHER_CH_HTTP_PORT -u TETHER_CH_TCP_PORT \
    TETHER_STORES_LISTEN=$CL_NET.0.254/24 TETHER_REDIS_LISTEN=$CL_NET.1.254 TETHER_PORTS=auto \
    TETHER_PG_FAST=1 "$ROOT/compose/services.sh" start "$CL_DIR/services" >"$CL_DIR/services.log" 2>&1 ||
    { cat "$CL_DIR/services.log" >&2; return 1; }
  set -a && . "$CL_DIR/services/services.env" && set +a
  "$ROOT/compose/migrate.sh" "$TETHER_PG_URL" >>"$CL_DIR/services.log" 2>&1 || return 1
  CL_PG=${TETHER_PG_URL/127.0.0.1/$CL_NET.0.254}
  CL_REDIS=${TETHER_REDIS_URL/127.0.0.1/$CL_NET.1.254}
  CL_CH=${TETHER_CH_URL/127.0.0.1/$CL_NET.0.254}
}

cl_stores_down() {
  [[ -n $CL_DIR ]] && "$ROOT/compose/services.sh" stop "$CL_DIR/services" >/dev/null 2>&1
  return 0
}

cl_url() { printf 'http://%s.0.%s:%s' "$CL_NET" "$1" "$CL_PORT"; }
cl_run_dir() { printf '%s/node%s/run' "$CL_DIR" "$1"; }
cl_log() { printf '%s/node%s/tree.log' "$CL_DIR" "$1"; }
cl_ctl() { # cl_ctl NODE ARGS...
  local i=$1
  shift
  TETHER_RUN_DIR=$(cl_run_dir "$i") "$BUILD/bin/tetherctl" "$@"
}

# cl_node_start I [VAR=VALUE ...]: node I's supervisor in its namespace, in the background.
cl_node_start() {
  local i=$1
  shift
  mkdir -p "$CL_DIR/node$i"
  ip netns exec "$CL_NS$i" env TETHER_NODE_ID="node$i" TETHER_NODE_ADDR="$CL_NET.0.$i" \
    TETHER_HTTP_HOST=0.0.0.0 TETHER_HTTP_PORT=$CL_PORT TETHER_GW_PUBLIC_URL="$(cl_url "$i")" \
    TETHER_RUN_DIR="$(cl_run_dir "$i")" TETHER_BIN_DIR="$BUILD/bin" \
    TETHER_PG_URL="$CL_PG" TETHER_REDIS_URL="$CL_REDIS" TETHER_CH_URL="$CL_CH" \
    TETHER_SHUTDOWN_GRACE=2s "$@" "$BUILD/bin/supervisor" >>"$(cl_log "$i")" 2>&1 &
  CL_PIDS[$i]=$!
}

cl_healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$(cl_url "$1")/healthz"; }

# cl_node_kill I: SIGKILL to everything in node I's namespace (its supervisor and children).
cl_node_kill() {
  ip netns pids "$CL_NS$1" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
  wait "${CL_PIDS[$1]}" 2>/dev/null
  return 0
}

# cl_redis_cut I / cl_redis_heal I: node I loses / regains its route to Redis, and only that.
cl_redis_cut() { ip -n "$CL_NS$1" route add blackhole "$CL_NET.1.254/32"; }
cl_redis_heal() { ip -n "$CL_NS$1" route del blackhole "$CL_NET.1.254/32"; }

# cl_leader: the node number whose supervisor holds the leader lock, or nothing.
cl_leader() {
  local i
  for i in "${!CL_PIDS[@]}"; do
    [[ $(cl_ctl "$i" status --json 2>/dev/null | jq -r .leader 2>/dev/null) == true ]] && {
      echo "$i"
      return 0
    }
  done
  return 1
}
