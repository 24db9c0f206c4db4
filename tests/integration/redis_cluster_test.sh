# redis_cluster_test.sh - the tree on a real 3-master Redis Cluster (tests/lib/redis-cluster.sh,
# its own ports, in $TETHER_TEST_TMP): the stream-broker's integration tests (streams, records,
# ratelimit) run again with TETHER_REDIS_URL=redis://...?cluster=1, their TAP lines renumbered
# into this file's and named after the test; then a tree of our own: the leader lock and the
# replicator's fence in the cluster, the keys of one session in one slot on one master, many
# sessions spread over all three masters, and no cross-slot error or MOVED hint in any log.
. "$(dirname "$0")/../lib/itest.sh"
. "$(dirname "$0")/../lib/redis-cluster.sh"
DIR=$(cd "$(dirname "$0")" && pwd)

if ! redis_cluster_start "$TETHER_TEST_TMP/redis-cluster.$$" 2>"$TETHER_TEST_TMP/redis-cluster.$$.err"; then
  ok "a 3-master Redis Cluster starts" false
  sed 's/^/# /' "$TETHER_TEST_TMP/redis-cluster.$$.err"
  done_testing
  exit
fi
read -r -a PORTS <<<"$RC_PORTS"
ok "a 3-master Redis Cluster starts ($RC_URL)" test "${#PORTS[@]}" = 3
TREES_BEFORE=$(find "$TETHER_TEST_TMP" -maxdepth 1 -name "tree.*" | sort)

# subtest NAME FILE [VAR=VALUE ...]: FILE against the cluster; its TAP lines as ours, "NAME: "
# before each description, and one more line saying it exited 0 with as many tests as it planned.
subtest() {
  local name=$1 file=$2 out rc line plan="" n=0 t0
  shift 2
  out=$TETHER_TEST_TMP/redis-cluster.$$.$name
  t0=$(now_ms)
  env TETHER_REDIS_URL="$RC_URL" "$@" timeout --kill-after=5 200 bash "$file" >"$out" 2>"$out.err"
  rc=$?
  diag "$name took $(($(now_ms) - t0)) ms on the cluster"
  while IFS= read -r line; do
    if [[ $line =~ ^(not )?ok\ [0-9]+( - |\ )?(.*)$ ]]; then
      n=$((n + 1))
      T_N=$((T_N + 1))
      if [[ -n ${BASH_REMATCH[1]} ]]; then
        T_FAILED=$((T_FAILED + 1))
        echo "not ok $T_N - $name: ${BASH_REMATCH[3]}"
      else
        echo "ok $T_N - $name: ${BASH_REMATCH[3]}"
      fi
    elif [[ $line =~ ^1\.\.([0-9]+) ]]; then
      plan=${BASH_REMATCH[1]}
    elif [[ $line == '#'* ]]; then
      line=${line#'#'}
      echo "# $name: ${line# }"
    fi
  done <"$out"
  if ! ok "$name: exited 0 and ran the $plan tests it planned" test "$rc" = 0 -a "$plan" = "$n"; then
    diag "$name exited $rc, planned '$plan', ran $n"
    tail -n 20 "$out.err" | sed 's/^/# /'
  fi
}

# The tests' trees end killed, holding the leader lock for its TTL: every tree after the first
# takes a lock key of its own (hash-tagged like the default) rather than wait for it.
subtest streams "$DIR/streams_test.sh"
subtest records "$DIR/records_test.sh" TETHER_SV_LEADER_KEY="{tether:leader:records-$$}"
subtest ratelimit "$DIR/ratelimit_test.sh" TETHER_SV_LEADER_KEY="{tether:leader:ratelimit-$$}"

# ---- a tree of our own: the leader lock, many sessions
S=$$-$RANDOM
LK="{tether:leader:rc-$S}"
UNTAGGED=$TETHER_TEST_TMP/rc-untagged.$S
code=0
env TETHER_REDIS_URL="$RC_URL" TETHER_SV_LEADER_KEY=tether:leader TETHER_RUN_DIR="$UNTAGGED" \
  TETHER_BIN_DIR="$TETHER_TEST_BIN" timeout 10 "$TETHER_TEST_BIN/supervisor" >"$UNTAGGED.log" 2>&1 ||
  code=$?
is "$code" 100 "a leader key with no hash tag is refused with a cluster URL (exit 100)"
ok "and the log says why" grep -q 'TETHER_SV_LEADER_KEY tether:leader holds no {hash tag}' "$UNTAGGED.log"
tree_start TETHER_REDIS_URL="$RC_URL" TETHER_SV_LEADER_KEY="$LK"
KEY=$(ctl env create --org "rc-$S" --project a --type dev)
ok "the tree is up on the cluster, /healthz 200" healthz_is 200
ok "this node holds the leader lock" \
  wait_for 5000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r .leader) == true ]]"
ok "the leader-only replicator runs" wait_for 6000 child_state_is clickhouse-replicator up
ok "and checks its fencing token against the lock's fence" \
  wait_for 3000 grep -q "chr.fencing.*$LK:fence" "$TREE_LOG"
lock=$(redis-cli -c -p "${PORTS[0]}" GET "$LK")
fence=$(redis-cli -c -p "${PORTS[1]}" GET "$LK:fence")
ok "the lock and its fence are in the cluster ($lock, fence $fence)" test -n "$lock" -a -n "$fence"
is "${lock##*:}" "$fence" "the lock's token is the fence's value"

NSESS=32
codes=""
for i in $(seq 1 "$NSESS"); do
  curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"type\":\"chat\",\"externalId\":\"spread-$S-$i\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
    "$TREE_URL/api/v1/sessions"
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H "X-Part-Id: p$i" \
    --data-binary "r$i" "$TREE_URL/realtime/v1/sessions/spread-$S-$i/out/append")
  codes="$codes$c "
done
is "$codes" "$(printf '200 %.0s' $(seq 1 "$NSESS"))" "$NSESS sessions each append a record"
got=$(curl -s -H "Authorization: Bearer $KEY" "$TREE_URL/realtime/v1/sessions/spread-$S-7/out/records")
is "$(jq -c '[.records[] | [.seqNum, .data, .id]]' <<<"$got" 2>/dev/null)" '[[0,"r7","p7"]]' \
  "and one reads its record back"
tree_stop
is "$TREE_EXIT" 0 "the tree stops cleanly"

# ---- where the keys are: every master's tether:* keys, each one's slot (CLUSTER KEYSLOT)
KEYS_JSON=$(python3 - "$S" "${PORTS[@]}" <<'PY'
import json, socket, sys

spread, ports = "spread-" + sys.argv[1] + "-", [int(p) for p in sys.argv[2:]]

def send(s, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    s.sendall(out)

def read(f):
    line = f.readline()
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest
    if t == b"-":
        raise RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read(f) for _ in range(n)]
    raise RuntimeError("bad reply %r" % line)

def tag(k):
    o = k.find(b"{")
    c = k.find(b"}", o + 1) if o >= 0 else -1
    return k[o + 1:c] if c > o + 1 else None

tags, keyslot_of_tag, wrong, nkeys, per_master = {}, {}, [], 0, []
for p in ports:
    s = socket.create_connection(("127.0.0.1", p))
    f = s.makefile("rb")
    keys, cur = [], b"0"
    while True:
        send(s, "SCAN", cur, "MATCH", "tether:*", "COUNT", 1000)
        cur, batch = read(f)
        keys += batch
        if cur == b"0":
            break
    for k in keys:
        send(s, "CLUSTER", "KEYSLOT", k)
    slots = [read(f) for _ in keys]
    for k, sl in zip(keys, slots):
        t = tag(k)
        if t is None:
            wrong.append(k.decode(errors="replace"))
            continue
        if t not in keyslot_of_tag:
            send(s, "CLUSTER", "KEYSLOT", t)
            keyslot_of_tag[t] = read(f)
        if sl != keyslot_of_tag[t]:
            wrong.append(k.decode(errors="replace"))
        e = tags.setdefault(t, {"masters": set(), "slots": set(), "keys": 0})
        e["masters"].add(p)
        e["slots"].add(sl)
        e["keys"] += 1
    nkeys += len(keys)
    per_master.append(len(keys))
    s.close()

sessions = {t: e for t, e in tags.items() if b":" in t}  # {env:key}; {env} is an environment's
split = [t.decode(errors="replace") for t, e in sessions.items()
         if len(e["masters"]) != 1 or len(e["slots"]) != 1]
mine = [e for t, e in sessions.items() if t.split(b":", 1)[1].startswith(spread.encode())]
print(json.dumps({
    "keys": nkeys, "per_master": per_master, "untagged_or_wrong_slot": wrong[:5],
    "sessions": len(sessions), "multikey_sessions": sum(1 for e in sessions.values() if e["keys"] > 1),
    "split": split[:5], "spread_sessions": len(mine),
    "spread_masters": len(set().union(*(e["masters"] for e in mine))) if mine else 0,
}))
PY
)
diag "keys: $KEYS_JSON"
jqk() { jq -r "$1" <<<"$KEYS_JSON"; }
ok "the tests left tether:* keys on every master ($(jqk '.per_master | join("/")'))" \
  test "$(jqk '[.per_master[] | select(. > 0)] | length')" = 3
is "$(jqk '.untagged_or_wrong_slot | length')" 0 "every tether:* key has a hash tag and lives in its tag's slot"
ok "sessions with several keys were written ($(jqk .multikey_sessions) of $(jqk .sessions))" \
  test "$(jqk .multikey_sessions)" -ge 3
is "$(jqk '.split | length')" 0 "every key of one session is in one slot on one master"
is "$(jqk .spread_sessions)" "$NSESS" "the $NSESS sessions' keys were found"
is "$(jqk .spread_masters)" 3 "the $NSESS sessions spread over the 3 masters"

# ---- what the processes said
TREES_AFTER=$(find "$TETHER_TEST_TMP" -maxdepth 1 -name "tree.*" | sort)
mapfile -t LOGS < <(comm -13 <(printf '%s\n' "$TREES_BEFORE") <(printf '%s\n' "$TREES_AFTER") |
  grep . | sed 's|$|/tree.log|')
LOGS+=(/dev/null) # never a grep of stdin
NLOGS=$((${#LOGS[@]} - 1))
ok "the $NLOGS trees (the tests' and ours) read the slot map (db.redis_cluster_map)" \
  test "$NLOGS" -ge 4 -a "$(grep -l 'db.redis_cluster_map' "${LOGS[@]}" 2>/dev/null | grep -c .)" = "$NLOGS"
bad=$(grep -hE 'CROSSSLOT|db\.redis_cluster_(hint|slots|full|host)|db\.redis_not_cluster|sv\.leader_error' \
  "${LOGS[@]}" 2>/dev/null | head -5)
ok "no cross-slot error, MOVED hint or unreadable map in their logs" test -z "$bad"
[[ -n $bad ]] && cut -c1-300 <<<"$bad" | sed 's/^/# /'

redis_cluster_stop
diag "redis_cluster_test took $SECONDS s"
done_testing
