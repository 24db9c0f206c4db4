#!/usr/bin/env bash
# cluster.sh BUILD_DIR: stream appends per second through 1, 2 and 3 nodes on shared stores
# (tests/cluster/netns.sh: each node in a network namespace of its own, stores on the host side
# of a bridge), next to raw XADD against the same Redis from the same host, in the same run.
# The load is the same in every case: wrk, 64 keep-alive connections in all, 1 KiB bodies, each
# connection on a stream of its own (.out), split evenly over the nodes (one wrk per node,
# started together; their rates are summed). Every node runs the default tree (2 gateway
# processes) at log level warn. Needs root; prints JSON lines and a summary line.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: cluster.sh BUILD_DIR}" && pwd -P)
DUR=${TETHER_BENCH_SECONDS:-5}
cd "$ROOT"
. "$ROOT/tests/cluster/netns.sh"
. "$ROOT/tests/bench/lib.sh" # bench_sessions only: the stores here are the bridge's

echo "== stream appends through 1, 2 and 3 nodes (wrk, 64 connections in all, 1 KiB, 64 streams, ${DUR}s) vs raw XADD (redis-benchmark -c64) on the same Redis"
if ! cl_have_netns; then
  echo '{"case":"cluster_appends","skipped":"network namespaces need root and iproute2"}'
  exit 0
fi
T=$(mktemp -d /tmp/tether-bench-cluster.XXXXXX)
chmod 755 "$T"
stop() {
  cl_net_down
  cl_stores_down
  rm -rf "$T"
}
trap stop EXIT
cl_net_up 3
cl_stores_up "$T"

NODE_ENV=(TETHER_LOG_LEVEL=warn "TETHER_SV_LEADER_KEY={tether:bench$$}")
ready() { [[ $(cl_healthz "$1") == 200 ]]; }
wait_ready() {
  local _
  for _ in $(seq 150); do ready "$1" && return 0; sleep 0.2; done
  echo "node $1 did not come up; see $(cl_log "$1")" >&2
  return 1
}

cl_node_start 1 "${NODE_ENV[@]}"
wait_ready 1
KEY=$(cl_ctl 1 env create --org bench --project bench --type dev)
P=bench-$$
bench_sessions "$(cl_url 1)" "$KEY" "$P" $(seq 0 63)

# one wrk per node, each cycling over streams FIRST..FIRST+CONNS-1 (its connections' own)
cat >"$T/append.lua" <<'LUA'
local body = string.rep("x", 1024)
local first, conns, head = 0, 1, ""
function init(args)
  first = tonumber(args[1])
  conns = tonumber(args[2])
  head = args[3]
end
local n = 0
function request()
  local s = first + n % conns
  n = n + 1
  return wrk.format("POST", head .. s .. "/out/append", nil, body)
end
LUA

cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; } # busy idle
run() { # run NODES: the summed appends/s of 64 connections split over nodes 1..NODES
  local nodes=$1 i per first=0 conns total=0 non2xx=0 rps bad pids=() c0 c1 busy
  per=$((64 / nodes))
  c0=$(cpu_ticks)
  for ((i = 1; i <= nodes; i++)); do
    conns=$per
    ((i == nodes)) && conns=$((64 - first))
    wrk -t1 -c"$conns" -d"${DUR}s" -s "$T/append.lua" -H "Authorization: Bearer $KEY" \
      -H 'Content-Type: text/plain' "$(cl_url "$i")" -- "$first" "$conns" "/realtime/v1/sessions/$P-" \
      >"$T/wrk.$nodes.$i" 2>&1 &
    pids+=($!)
    first=$((first + conns))
  done
  for i in "${pids[@]}"; do wait "$i" || { cat "$T"/wrk.$nodes.* >&2; return 1; }; done
  c1=$(cpu_ticks)
  # how much of the machine's CPU (every core) the run used: wrk, the nodes and the stores
  busy=$(awk -v a="$c0" -v b="$c1" 'BEGIN{split(a, x, " "); split(b, y, " ");
    d = (y[1] - x[1]) + (y[2] - x[2]); printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0)}')
  for ((i = 1; i <= nodes; i++)); do
    rps=$(awk '/Requests\/sec/ {print $2}' "$T/wrk.$nodes.$i")
    bad=$(awk '/Non-2xx/ {print $5}' "$T/wrk.$nodes.$i")
    total=$(awk -v a="$total" -v b="${rps:-0}" 'BEGIN{printf "%.2f", a + b}')
    non2xx=$((non2xx + ${bad:-0}))
  done
  printf '{"case":"cluster_appends_%s_nodes","appends_per_s":%s,"non_2xx":%s,"nodes":%s,"connections":64,"body_bytes":1024,"cpu_busy_pct":%s}\n' \
    "$nodes" "$total" "$non2xx" "$nodes" "$busy"
  printf -v "R_$nodes" '%s' "$total"
  printf -v "B_$nodes" '%s' "$busy"
}

run 1
for n in 2 3; do
  cl_node_start "$n" "${NODE_ENV[@]}"
  wait_ready "$n"
  sleep 2 # the cluster view (once a second) and the gateways' dials settle first
  run "$n"
done

RPORT=${TETHER_REDIS_URL##*:}
RPORT=${RPORT%%/*}
FIELD=$(head -c 1024 /dev/zero | tr '\0' x)
R_xadd=$(redis-benchmark -h 127.0.0.1 -p "$RPORT" -c 64 -n $((DUR * 40000)) -r 64 --csv \
  XADD 'bench:xadd:__rand_int__' '*' b "$FIELD" | tail -1 | cut -d, -f2 | tr -d '"')
printf '{"case":"cluster_redis_xadd_64_streams","xadd_per_s":%s,"clients":64,"field_bytes":1024}\n' "$R_xadd"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "summary: appends/s by nodes on one $(nproc)-core machine: 1 node $R_1, 2 nodes $R_2 ($(ratio "$R_2" "$R_1")x), 3 nodes $R_3 ($(ratio "$R_3" "$R_1")x); raw XADD $R_xadd (1 node/XADD $(ratio "$R_1" "$R_xadd"), 3 nodes/XADD $(ratio "$R_3" "$R_xadd")); CPU busy $B_1 %, $B_2 %, $B_3 % (the cores, not Redis, bound it: nodes share them)"
