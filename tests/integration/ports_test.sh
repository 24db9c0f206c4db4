# ports_test.sh - the stores' ports (compose/services.sh): the defaults lie outside the kernel's
# ephemeral range (where an outgoing connection's socket can hold a port no server listens on)
# and outside the 20000-32767 that TETHER_PORTS=auto and free_port pick from, the programs'
# default URLs name them, and a port a connection holds (live, or left in TIME-WAIT) is reported
# in one line naming the port, its variable and why. ClickHouse opens no port besides its two.
# Every store here runs on a free port in a directory of its own: the defaults are never taken.
. "$(dirname "$0")/../lib/itest.sh"

SVC=$(cd "$(dirname "$0")/../../compose" && pwd)/services.sh
# tests/run.sh exports the shared stores' ports: none of them may leak into these starts
svc() { env -u TETHER_PG_PORT -u TETHER_REDIS_PORT -u TETHER_CH_HTTP_PORT -u TETHER_CH_TCP_PORT \
  -u TETHER_PORTS "$@"; }
HOLDERS=()
trap 'for p in "${HOLDERS[@]}"; do kill "$p" 2>/dev/null; done; itest_cleanup' EXIT

# --- the defaults
read -r LO HI </proc/sys/net/ipv4/ip_local_port_range
DEFS=$("$SVC" 2>&1 | grep -o 'TETHER_[A-Z_]*PORT=[0-9]*')
is "$(wc -l <<<"$DEFS")" 4 "services.sh names four default ports"
for d in $DEFS; do
  v=${d%=*} p=${d#*=}
  ok "$v=$p lies outside this machine's ephemeral range ($LO-$HI)" test "$p" -lt "$LO" -o "$p" -gt "$HI"
  ok "$v=$p lies outside Linux's default ephemeral range (32768-60999)" test "$p" -lt 32768 -o "$p" -gt 60999
  ok "$v=$p lies outside the auto / free_port range (20000-32767)" test "$p" -lt 20000 -o "$p" -gt 32767
done
port_of() { sed -n "s/^$1=//p" <<<"$DEFS"; }
CFG=$(env -u TETHER_PG_URL -u TETHER_REDIS_URL -u TETHER_CH_URL "$TETHER_TEST_BIN/stream-broker" --print-config 2>/dev/null)
ok "the programs' default PostgreSQL URL names TETHER_PG_PORT's default" \
  grep -q "^TETHER_PG_URL=postgresql://postgres@127.0.0.1:$(port_of TETHER_PG_PORT)/tether$" <<<"$CFG"
ok "the default Redis URL names TETHER_REDIS_PORT's" grep -q "^TETHER_REDIS_URL=redis://127.0.0.1:$(port_of TETHER_REDIS_PORT)$" <<<"$CFG"
ok "the default ClickHouse URL names TETHER_CH_HTTP_PORT's" grep -q "^TETHER_CH_URL=http://127.0.0.1:$(port_of TETHER_CH_HTTP_PORT)$" <<<"$CFG"

# --- a port an outgoing connection holds, alive: refused before the start, in one line
P=$(free_port)
python3 - "$P" >"$TETHER_TEST_TMP/hold.$P" <<'EOF' &
import socket, sys, time
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
c = socket.socket(); c.bind(('127.0.0.1', int(sys.argv[1]))); c.connect(l.getsockname())
a, _ = l.accept()
print('ready', flush=True)
time.sleep(60)
EOF
HOLDERS+=($!)
wait_for 5000 grep -q ready "$TETHER_TEST_TMP/hold.$P"
D=$(mktemp -d "$TETHER_TEST_TMP/ports.XXXXXX")
rc=0
svc TETHER_SERVICES=redis TETHER_REDIS_PORT="$P" "$SVC" start "$D" 2>"$D/err" || rc=$?
is "$rc" 111 "a start on a port a live connection holds fails (111)"
is "$(wc -l <"$D/err")" 1 "with one line"
ok "naming the port, its variable and the connection" \
  grep -Eq "port $P \(TETHER_REDIS_PORT\) is already in use.*ESTAB 127\.0\.0\.1:$P -> " "$D/err"
diag "$(cat "$D/err")"
no_redis() { ! pgrep -f "^redis-server 127\.0\.0\.1:$1( |\$)" >/dev/null; }
ok "no server was started" no_redis "$P"
kill "${HOLDERS[@]}" 2>/dev/null

# --- a port an outgoing connection left in TIME-WAIT: the server cannot bind it, said in one line
P=$(free_port)
python3 - "$P" <<'EOF'
import socket, sys, time
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
c = socket.socket(); c.bind(('127.0.0.1', int(sys.argv[1]))); c.connect(l.getsockname())
a, _ = l.accept()
c.close()  # the client closes first: its side, port P, stays in TIME-WAIT for 60 s
time.sleep(0.1)
a.close()
EOF
D=$(mktemp -d "$TETHER_TEST_TMP/ports.XXXXXX")
rc=0
svc TETHER_SERVICES=redis TETHER_REDIS_PORT="$P" "$SVC" start "$D" 2>"$D/err" || rc=$?
is "$rc" 111 "a start on a port held in TIME-WAIT fails (111)"
is "$(wc -l <"$D/err")" 1 "with one line"
ok "naming the port, its variable and why" \
  grep -Eq "redis: cannot listen on 127\.0\.0\.1:$P \(TETHER_REDIS_PORT\): address already in use, by TIME-WAIT 127\.0\.0\.1:$P -> .*TETHER_PORTS=auto" "$D/err"
diag "$(cat "$D/err")"

# --- ClickHouse listens on its two ports only
D=$(mktemp -d "$TETHER_TEST_TMP/ports.XXXXXX")
chmod 755 "$D"
if svc TETHER_SERVICES=clickhouse TETHER_PORTS=auto "$SVC" start "$D" 2>"$D/err"; then
  read -r HTTP TCP <"$D/clickhouse/ports"
  PID=$(cat "$D/clickhouse/clickhouse.pid")
  is "$(ss -Hltnp 2>/dev/null | grep "pid=$PID," | awk '{print $4}' | sed 's/.*://' | sort -n | paste -sd ' ')" \
    "$(printf '%s\n' "$HTTP" "$TCP" | sort -n | paste -sd ' ')" "ClickHouse opens its HTTP and native ports and no other"
  svc TETHER_SERVICES=clickhouse "$SVC" stop "$D" 2>/dev/null
else
  ok "ClickHouse starts" false
  diag "$(cat "$D/err")"
fi

done_testing
