#!/usr/bin/env bash
# services.sh: run PostgreSQL 15, Redis 7 and ClickHouse 18.16 as plain local processes (no
# containers, no systemd), every file under DIR, listening on 127.0.0.1 (and, for a cluster test,
# on the address TETHER_STORES_LISTEN names).
# Usage: services.sh start DIR [--fresh] | stop DIR | status DIR | env DIR   (see compose/README.md)
# Exit: 0 ok, 100 usage or bad configuration, 111 a service could not be started or stopped.
set -euo pipefail

readonly PROG=services.sh
readonly EX_USAGE=100 EX_TEMP=111
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/.." && pwd -P)
readonly ROOT
. "$ROOT/compose/sql-split.sh"
readonly ALL_SERVICES="pg redis clickhouse"
# Default ports: below Linux's ephemeral range (32768-60999, net.ipv4.ip_local_port_range), so an
# outgoing connection never holds one of them as its local port (a TIME-WAIT socket left by a
# load test blocks a bind for 60 s), and below the 20000-32767 that TETHER_PORTS=auto and the
# tests' free_port pick from. actors/lib/cfg.c's default URLs name the same ports.
readonly DEF_PG_PORT=15432 DEF_REDIS_PORT=16379 DEF_CH_HTTP_PORT=18123 DEF_CH_TCP_PORT=19000
readonly CH_SERVER=${TETHER_CH_SERVER:-/usr/sbin/clickhouse-server}
WAIT_FAILURE=""

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  local code=$1
  shift
  say "$*"
  exit "$code"
}
usage() {
  cat >&2 <<EOF
usage: $PROG start DIR [--fresh]
       $PROG stop DIR
       $PROG status DIR
       $PROG env DIR
env: TETHER_SERVICES="$ALL_SERVICES"  TETHER_PORTS=auto
     TETHER_PG_PORT=$DEF_PG_PORT  TETHER_REDIS_PORT=$DEF_REDIS_PORT  TETHER_CH_HTTP_PORT=$DEF_CH_HTTP_PORT  TETHER_CH_TCP_PORT=$DEF_CH_TCP_PORT
     TETHER_PG_FAST=0  TETHER_REDIS_APPENDFSYNC=everysec  TETHER_REDIS_MAXMEMORY=1gb  TETHER_SERVICES_TIMEOUT=30
     TETHER_STORES_LISTEN=ADDR/PREFIX (also listen on ADDR, trust PREFIX's hosts)  TETHER_REDIS_LISTEN=ADDR
EOF
  exit "$EX_USAGE"
}

# ---------------------------------------------------------------------------------------------
# small helpers

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# TETHER_STORES_LISTEN=10.77.0.254/24: every store also listens on that address and trusts the
# hosts of that network (the cluster test's nodes, in network namespaces behind a bridge: they
# cannot reach the host's 127.0.0.1). TETHER_REDIS_LISTEN moves Redis's extra address elsewhere,
# so a test can cut a node off from Redis alone. No authentication is added: a test network only.
readonly IPV4_RE='^([0-9]{1,3}\.){3}[0-9]{1,3}$'
LISTEN_ADDR="" LISTEN_NET="" REDIS_ADDR=""
if [[ -n ${TETHER_STORES_LISTEN:-} ]]; then
  LISTEN_ADDR=${TETHER_STORES_LISTEN%/*}
  [[ $TETHER_STORES_LISTEN == */* && $LISTEN_ADDR =~ $IPV4_RE && ${TETHER_STORES_LISTEN##*/} =~ ^[0-9]{1,2}$ ]] || {
    printf '%s: TETHER_STORES_LISTEN must be an IPv4 address with its prefix, like 10.77.0.254/24: %s\n' \
      "$PROG" "$TETHER_STORES_LISTEN" >&2
    exit "$EX_USAGE"
  }
  LISTEN_NET=$TETHER_STORES_LISTEN
  REDIS_ADDR=${TETHER_REDIS_LISTEN:-$LISTEN_ADDR}
  [[ $REDIS_ADDR =~ $IPV4_RE ]] || {
    printf '%s: TETHER_REDIS_LISTEN must be an IPv4 address: %s\n' "$PROG" "$REDIS_ADDR" >&2
    exit "$EX_USAGE"
  }
fi

# First line of a file into REPLY (ClickHouse writes its pid file without a newline).
read_line() {
  REPLY=""
  { read -r REPLY <"$1" || [[ -n $REPLY ]]; } 2>/dev/null
}

# Microseconds since the epoch, without forking.
now_us() { printf '%s' "${EPOCHREALTIME/./}"; }

# "1.23" from a start time in microseconds.
elapsed() {
  local us=$(($(now_us) - $1))
  printf '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000))
}

# Run a command as a service user. Root must switch (initdb and postgres refuse to run as root);
# anybody else runs the services as themselves.
as_user() {
  local user=$1
  shift
  if [[ $EUID -eq 0 ]]; then
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

# Run a command that leaves a server behind, with stdin from /dev/null and every fd above 2
# closed: a server must not inherit our lock (fd 9) or a caller's pipe, or whoever waits for
# that pipe's EOF (a $(...) or | in the caller) would wait for the server's whole life.
daemon() {
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then exec {fd}>&-; fi
    done 2>/dev/null
    "$@" </dev/null
  )
}

# Give a service directory to its user (root only). chown -R only when the top is not theirs yet,
# so restarting over a big data dir costs nothing.
own() {
  local dir=$1 user=$2 owner
  [[ $EUID -eq 0 ]] || return 0
  owner=$(stat -c %U "$dir")
  if [[ $owner != "$user" ]]; then
    chown -R "$user:" "$dir"
  fi
}

# Make DIR and every parent traversable (o+x) for the postgres and clickhouse users: mktemp -d
# makes 0700 directories, and a service that cannot reach its data dir fails with EACCES.
open_path() {
  local p=$1 mode
  while :; do
    mode=$(stat -c %a "$p")
    if (((8#$mode & 1) == 0)); then
      chmod o+x "$p"
      say "chmod o+x $p (the service users must traverse it)"
    fi
    [[ $p == / ]] && break
    p=$(dirname -- "$p")
  done
}

# Print the last lines of each existing log file, for a failed start.
show_logs() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    say "--- last lines of $f"
    tail -n 20 -- "$f" >&2 || true
  done
}

# True if PID is a live (not zombie) process. The reaper in some containers is slow, so a
# stopped daemon can linger as Z for a second or two; that counts as gone.
pid_live() {
  local pid=$1 stat
  is_uint "$pid" || return 1
  { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# The pid recorded for service SVC in DIR if that process is alive *and* is our server (its
# command line names our data dir, port or config file), so a stale pid file whose pid now
# belongs to another process never counts. Prints the pid, or fails.
svc_pid() {
  local svc=$1 pidfile pid cmd port
  case $svc in
    pg) pidfile=$DIR/pg/data/postmaster.pid ;;
    redis) pidfile=$DIR/redis/redis.pid ;;
    clickhouse) pidfile=$DIR/clickhouse/clickhouse.pid ;;
  esac
  read_line "$pidfile" || return 1
  pid=$REPLY
  pid_live "$pid" || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case $svc in
    pg) [[ "$cmd " == *" -D $DIR/pg/data "* ]] || return 1 ;;
    redis)
      # Redis replaces its command line with "redis-server ADDR:PORT".
      port=$(svc_ports redis)
      [[ -n $port && "$cmd " == "redis-server 127.0.0.1:$port "* ]] || return 1
      ;;
    clickhouse) [[ "$cmd " == *" --config-file=$DIR/clickhouse/config.xml "* ]] || return 1 ;;
  esac
  printf '%s' "$pid"
}

# Ports recorded by the last start of SVC ("" if none): one port, or "http tcp" for ClickHouse.
svc_ports() {
  read_line "$DIR/$1/ports" || REPLY=""
  printf '%s' "$REPLY"
}

# Wait until "$@" succeeds, at most TIMEOUT seconds. With -a PATTERN, give up at once when no
# process's command line matches PATTERN any more (the server died during start-up: a port
# already taken, a bad data dir), instead of waiting out the timeout. On failure WAIT_FAILURE
# says which.
wait_until() {
  local alive="" deadline
  if [[ $1 == -a ]]; then
    alive=$2
    shift 2
  fi
  WAIT_FAILURE="did not answer within ${TIMEOUT}s"
  deadline=$(($(now_us) + TIMEOUT * 1000000))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $alive ]] && ! pgrep -f -- "$alive" >/dev/null; then
      WAIT_FAILURE="exited during start-up"
      return 1
    fi
    (($(now_us) < deadline)) || return 1
    sleep 0.03
  done
}

# A string as an extended regular expression that matches only itself (for pgrep -f).
ere_quote() { printf '%s' "$1" | sed 's/[][\\.*^$+?(){}|]/\\&/g'; }

# ---------------------------------------------------------------------------------------------
# ports

# The TCP sockets whose local port is P, any state, one "STATE local -> peer" a line (needs ss).
port_sockets() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -Htan "sport = :$1" 2>/dev/null | awk '{ printf "%s %s -> %s\n", $1, $4, $5 }'
}

# True if P is held by a listener or a live connection (an outgoing one keeps its local port).
# TIME-WAIT and closing sockets do not count: a server restarted on its port leaves its own
# there, and those do not block it (SO_REUSEADDR); the ones an outgoing connection leaves do,
# and bind_failure names them when a server could not listen.
port_in_use() {
  local p=$1
  if command -v ss >/dev/null 2>&1; then
    [[ -n $(ss -Htan state listening state established state syn-sent state syn-recv \
      "sport = :$p" 2>/dev/null) ]]
  else
    (: <>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
  fi
}

# What holds port P, for a message: its first socket that is not TIME-WAIT, else the first.
port_holder() {
  local socks
  socks=$(port_sockets "$1")
  if [[ -z $socks ]]; then
    printf 'a listener'
  elif grep -qv '^TIME-WAIT ' <<<"$socks"; then
    grep -v '^TIME-WAIT ' <<<"$socks" | head -n 1 | tr -d '\n'
  else
    head -n 1 <<<"$socks" | tr -d '\n'
  fi
}

# Byte size of FILE (0 if none): where this start's lines of a log begin.
log_mark() { stat -c %s -- "$1" 2>/dev/null || printf 0; }

# bind_failure SVC MARK LOG "PORT VAR"...: when LOG (from byte MARK on: this start's lines) says
# a bind failed with "Address already in use", dies with one line naming the port, its variable,
# the sockets found on it and what to do. Otherwise returns (the caller reports the failure).
bind_failure() {
  local svc=$1 mark=$2 log=$3 new pv p var socks
  shift 3
  [[ -f $log ]] || return 0
  new=$(tail -c +"$((mark + 1))" -- "$log" 2>/dev/null | grep -m 1 'Address already in use') || return 0
  p=${1% *} var=${1#* }
  for pv in "$@"; do # the port the log names (ClickHouse), else one with sockets on it
    if [[ $new =~ :${pv% *}([^0-9]|$) ]] || [[ -n $(port_sockets "${pv% *}") ]]; then
      p=${pv% *} var=${pv#* }
      break
    fi
  done
  socks=$(port_sockets "$p" | head -n 2 | paste -sd ';' | sed 's/;/; /g')
  die "$EX_TEMP" "$svc: cannot listen on 127.0.0.1:$p ($var): address already in use, by ${socks:-a socket ss cannot show} (a port an outgoing connection used stays blocked while its socket is in TIME-WAIT, 60 s); set $var to another port, or TETHER_PORTS=auto; log: $log"
}

# The kernel's ephemeral range (local ports of outgoing connections) into EPH_LO and EPH_HI.
EPH_LO=32768 EPH_HI=60999
if read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && is_uint "$lo" && is_uint "$hi"; then
  EPH_LO=$lo EPH_HI=$hi
fi
ephemeral() { (($1 >= EPH_LO && $1 <= EPH_HI)); }

TAKEN=" " # ports handed out during this run
port_ok() { [[ $TAKEN != *" $1 "* ]] && ! port_in_use "$1"; }

# choose_port VAR DEFAULT OLD: sets PORT. Precedence: a number in $VAR; then "auto" (from $VAR
# or TETHER_PORTS=auto): the OLD port from the last start if still free, else a random free one
# in 20000-32767 (below the kernel's ephemeral range, so no outgoing connection holds it);
# unset: the OLD port (unless it lies in the ephemeral range), else DEFAULT. A fixed port that
# is busy is an error, and one inside the ephemeral range is warned about.
choose_port() {
  local var=$1 def=$2 old=$3 val i
  val=${!var-}
  if [[ -z $val && ${TETHER_PORTS-} == auto ]]; then
    val=auto
  fi
  case $val in
    auto)
      if [[ -n $old ]] && port_ok "$old"; then
        PORT=$old
      else
        for ((i = 0; i < 200; i++)); do
          PORT=$(((RANDOM << 15 | RANDOM) % 12768 + 20000))
          port_ok "$PORT" && break
        done
        port_ok "$PORT" || die "$EX_TEMP" "no free port found for $var"
      fi
      ;;
    "" | [0-9]*)
      if [[ -z $val ]]; then
        PORT=${old:-$def}
        # a data dir of an older Tether remembers a default of then (55432 ...), in the range
        if [[ -n $old ]] && ephemeral "$old" && ! ephemeral "$def"; then
          say "$var: the last start's port $old lies in the ephemeral range ($EPH_LO-$EPH_HI), where an outgoing connection can hold it; moving to $def"
          PORT=$def
        fi
      else
        PORT=$val
      fi
      if ! is_uint "$PORT" || ((PORT < 1 || PORT > 65535)); then
        die "$EX_USAGE" "$var: not a port number or auto: $PORT"
      fi
      port_ok "$PORT" ||
        die "$EX_TEMP" "port $PORT ($var) is already in use on this machine: $(port_holder "$PORT"); set $var to another port, or TETHER_PORTS=auto"
      if ephemeral "$PORT"; then
        say "$var: port $PORT lies in this machine's ephemeral range ($EPH_LO-$EPH_HI): an outgoing connection may hold it and make a later start fail"
      fi
      ;;
    *) die "$EX_USAGE" "$var: not a port number or auto: $val" ;;
  esac
  TAKEN+="$PORT "
}

# Old port of a service: from its dir, else from services.env (unless --fresh).
old_port() {
  local svc=$1 idx=$2 envkey=$3 ports
  local -a arr
  ((FRESH)) && return 0
  ports=$(svc_ports "$svc")
  if [[ -n $ports ]]; then
    read -r -a arr <<<"$ports"
    printf '%s' "${arr[idx]-}"
  else
    printf '%s' "${ENVFILE_VALUES[$envkey]-}"
  fi
}

# ---------------------------------------------------------------------------------------------
# services.env

declare -A ENVFILE_VALUES=()
readonly ENV_KEYS="TETHER_PG_URL TETHER_PG_PORT TETHER_REDIS_URL TETHER_REDIS_PORT TETHER_CH_URL TETHER_CH_HTTP_PORT TETHER_CH_TCP_PORT"

read_envfile() {
  local key val
  [[ -f $DIR/services.env ]] || return 0
  while IFS='=' read -r key val; do
    if [[ $key == TETHER_* ]]; then ENVFILE_VALUES[$key]=$val; fi
  done <"$DIR/services.env"
}

write_envfile() {
  local key tmp=$DIR/.services.env.tmp
  : >"$tmp"
  for key in $ENV_KEYS; do
    if [[ -n ${ENVFILE_VALUES[$key]-} ]]; then
      printf '%s=%s\n' "$key" "${ENVFILE_VALUES[$key]}" >>"$tmp"
    fi
  done
  mv -f -- "$tmp" "$DIR/services.env"
}

set_env_for() {
  local svc=$1 ports
  read -r -a ports <<<"$(svc_ports "$svc")"
  case $svc in
    pg)
      ENVFILE_VALUES[TETHER_PG_URL]="postgresql://postgres@127.0.0.1:${ports[0]}/tether"
      ENVFILE_VALUES[TETHER_PG_PORT]=${ports[0]}
      ;;
    redis)
      ENVFILE_VALUES[TETHER_REDIS_URL]="redis://127.0.0.1:${ports[0]}"
      ENVFILE_VALUES[TETHER_REDIS_PORT]=${ports[0]}
      ;;
    clickhouse)
      ENVFILE_VALUES[TETHER_CH_URL]="http://127.0.0.1:${ports[0]}"
      ENVFILE_VALUES[TETHER_CH_HTTP_PORT]=${ports[0]}
      ENVFILE_VALUES[TETHER_CH_TCP_PORT]=${ports[1]}
      ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_bindir() {
  local d
  if [[ -n ${TETHER_PG_BINDIR-} ]]; then
    d=$TETHER_PG_BINDIR
  elif [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
    d=/usr/lib/postgresql/15/bin
  else
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  [[ -x $d/postgres && -x $d/initdb && -x $d/pg_ctl ]] ||
    die "$EX_TEMP" "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (run compose/deps.sh)"
  printf '%s' "$d"
}

pg_psql() {
  local port=$1
  shift
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

pg_start() {
  local port=$1 d=$DIR/pg t0 sockdir mark
  t0=$(now_us)
  PG_BIN=$(pg_bindir)
  mkdir -p "$d"
  own "$d" postgres
  as_user postgres mkdir -p "$d/sock"
  if [[ ! -s $d/data/PG_VERSION ]]; then
    if ! as_user postgres "$PG_BIN/initdb" -D "$d/data" -U postgres -A trust -E UTF8 \
      --locale=C.UTF-8 --no-sync >"$d/initdb.log" 2>&1; then
      show_logs "$d/initdb.log"
      die "$EX_TEMP" "pg: initdb failed in $d/data"
    fi
    # Our settings live in tether.conf, rewritten at every start, so a new port or
    # TETHER_PG_FAST takes effect on restart without touching postgresql.conf again.
    printf "\n# Written by compose/services.sh at every start.\ninclude_if_exists = 'tether.conf'\n" |
      as_user postgres tee -a "$d/data/postgresql.conf" >/dev/null
  fi
  # A Unix socket path must fit in 107 bytes; under a deep DIR go TCP-only (every Tether client
  # uses 127.0.0.1 anyway, and pg_ctl -w watches postmaster.pid, not the socket).
  sockdir=$d/sock
  if ((${#sockdir} + 17 > 107)); then
    say "pg: $sockdir is too long for a Unix socket; listening on TCP only"
    sockdir=""
  fi
  {
    printf '# Written by compose/services.sh at every start; edits are lost.\n'
    printf "listen_addresses = '127.0.0.1%s'\nport = %s\nunix_socket_directories = '%s'\n" \
      "${LISTEN_ADDR:+,$LISTEN_ADDR}" "$port" "$sockdir"
    printf 'wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\nmax_connections = 200\n'
    # the clickhouse-replicator's slot: a stalled slot may hold this much WAL, then it is
    # invalidated rather than filling the disk (docs/clickhouse-replicator.md#when-the-slot-falls-behind)
    printf 'max_slot_wal_keep_size = %s\n' "${TETHER_PG_SLOT_WAL_KEEP:-1GB}"
    if [[ ${TETHER_PG_FAST-0} == 1 ]]; then
      printf '# TETHER_PG_FAST=1: test speed, no crash safety\n'
      printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n'
    fi
  } | as_user postgres tee "$d/data/tether.conf" >/dev/null
  if [[ -n $LISTEN_NET ]] && ! grep -qF "host all all $LISTEN_NET trust" "$d/data/pg_hba.conf"; then
    printf 'host all all %s trust\n' "$LISTEN_NET" | as_user postgres tee -a "$d/data/pg_hba.conf" >/dev/null
  fi
  pg_wait_zombie "$d/data/postmaster.pid"
  printf '%s\n' "$port" >"$d/ports"
  WAIT_FAILURE="pg_ctl start failed"
  mark=$(log_mark "$d/server.log")
  if ! daemon as_user postgres "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t "$TIMEOUT" -s \
    start >"$d/pg_ctl.log" 2>&1 ||
    ! wait_until pg_psql "$port" -d postgres -c 'SELECT 1'; then
    bind_failure pg "$mark" "$d/server.log" "$port TETHER_PG_PORT"
    show_logs "$d/pg_ctl.log" "$d/server.log"
    die "$EX_TEMP" "pg: server on 127.0.0.1:$port failed to start: $WAIT_FAILURE; logs in $d"
  fi
  pg_ensure_db "$port"
  say "pg: ready on 127.0.0.1:$port in $(elapsed "$t0")s"
}

# A postmaster killed by SIGKILL leaves postmaster.pid behind. postgres copes with that (and
# checks that no old backend still uses the shared memory), but kill(pid, 0) succeeds on a zombie,
# so while the dead postmaster is not yet reaped it refuses to start ("lock file already exists").
# Wait for the reaper; remove the file only if the zombie outlives the timeout.
pg_wait_zombie() {
  local pidfile=$1 pid deadline
  read_line "$pidfile" || return 0
  pid=$REPLY
  is_uint "$pid" && [[ -e /proc/$pid ]] || return 0
  pid_live "$pid" && return 0 # a live process: postgres decides
  deadline=$(($(now_us) + TIMEOUT * 1000000))
  while [[ -e /proc/$pid ]] && (($(now_us) < deadline)); do
    sleep 0.05
  done
  if [[ -e /proc/$pid ]]; then
    say "pg: old postmaster $pid is still an unreaped zombie; removing its postmaster.pid"
    rm -f -- "$pidfile"
  fi
}

pg_ensure_db() {
  local has
  has=$(pg_psql "$1" -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = 'tether'")
  if [[ $has != 1 ]]; then
    pg_psql "$1" -d postgres -c 'CREATE DATABASE tether'
  fi
}

# ---------------------------------------------------------------------------------------------
# Redis

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }

# Redis refuses writes (OOM, which Tether answers 503 + x-should-retry: true) rather than grow
# past TETHER_REDIS_MAXMEMORY, and never evicts: every key is data (streams, leases, counters).
redis_start() {
  local port=$1 d=$DIR/redis t0 fsync=${TETHER_REDIS_APPENDFSYNC:-everysec} mark
  local maxmem=${TETHER_REDIS_MAXMEMORY:-1gb}
  t0=$(now_us)
  case $fsync in
    always | everysec | no) ;;
    *) die "$EX_USAGE" "TETHER_REDIS_APPENDFSYNC must be always, everysec or no: $fsync" ;;
  esac
  shopt -s nocasematch
  [[ $maxmem =~ ^[0-9]+(b|k|kb|m|mb|g|gb)?$ ]] ||
    die "$EX_USAGE" "TETHER_REDIS_MAXMEMORY must be bytes or a size like 512mb, 1gb (0: no limit): $maxmem"
  shopt -u nocasematch
  mkdir -p "$d"
  rm -f -- "$d/redis.pid"
  printf '%s\n' "$port" >"$d/ports"
  WAIT_FAILURE="could not be started"
  mark=$(log_mark "$d/redis.log")
  local bind=(--bind 127.0.0.1)
  [[ -n $REDIS_ADDR ]] && bind=(--bind 127.0.0.1 "$REDIS_ADDR" --protected-mode no)
  if ! daemon redis-server "${bind[@]}" --port "$port" --dir "$d" \
    --appendonly yes --appendfsync "$fsync" --save "" \
    --maxmemory "$maxmem" --maxmemory-policy noeviction \
    --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" >/dev/null 2>&1 ||
    ! wait_until -a "^redis-server .*(127\.0\.0\.1:$port( |\$)|--port $port )" redis_ping "$port"; then
    bind_failure redis "$mark" "$d/redis.log" "$port TETHER_REDIS_PORT"
    show_logs "$d/redis.log"
    die "$EX_TEMP" "redis: server on 127.0.0.1:$port $WAIT_FAILURE; log: $d/redis.log"
  fi
  say "redis: ready on 127.0.0.1:$port (appendfsync $fsync, maxmemory $maxmem noeviction) in $(elapsed "$t0")s"
}

# ---------------------------------------------------------------------------------------------
# ClickHouse

ch_write_config() {
  local d=$1 http=$2 tcp=$3
  cat >"$d/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by compose/services.sh at every start; edits are lost. -->
<yandex>
  <logger>
    <level>warning</level>
    <log>$d/log/server.log</log>
    <errorlog>$d/log/server.err.log</errorlog>
    <size>50M</size>
    <count>2</count>
  </logger>
  <!-- The only ports it opens: interserver_http_port (9009), https_port, tcp_port_secure and
       the others are opened only when set, and are not. -->
  <http_port>$http</http_port>
  <tcp_port>$tcp</tcp_port>
  <listen_host>127.0.0.1</listen_host>${LISTEN_ADDR:+
  <listen_host>$LISTEN_ADDR</listen_host>}
  <path>$d/data/</path>
  <tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path>
  <format_schema_path>$d/format_schemas/</format_schema_path>
  <users_config>$d/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>104857600</mark_cache_size>
  <uncompressed_cache_size>104857600</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
EOF
  cat >"$d/users.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by compose/services.sh at every start; edits are lost. -->
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <use_uncompressed_cache>0</use_uncompressed_cache>
      <load_balancing>random</load_balancing>
      <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>${LISTEN_NET:+
        <ip>$LISTEN_NET</ip>}
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
EOF
}

ch_ping() { [[ $(curl -s --max-time 2 "http://127.0.0.1:$1/ping") == "Ok." ]]; }

# POST each statement of a SQL file (sql-split.sh) to the HTTP port.
ch_apply_file() {
  local port=$1 file=$2 stmt resp code
  sql_split "$file"
  for stmt in "${SQL_STMTS[@]}"; do
    resp=$(printf '%s' "$stmt" | curl -sS --max-time 60 -w '\n%{http_code}' \
      --data-binary @- "http://127.0.0.1:$port/") || resp=$'\n000'
    code=${resp##*$'\n'}
    if [[ $code != 200 ]]; then
      say "clickhouse: ${file#"$ROOT"/} was rejected (HTTP $code):"
      printf '%s\n' "${resp%$'\n'*}" >&2
      return 1
    fi
  done
}

clickhouse_start() {
  local http=$1 tcp=$2 d=$DIR/clickhouse t0 mark
  t0=$(now_us)
  mkdir -p "$d"/{data,tmp,user_files,format_schemas,log}
  ch_write_config "$d" "$http" "$tcp"
  own "$d" clickhouse
  rm -f -- "$d/clickhouse.pid"
  printf '%s %s\n' "$http" "$tcp" >"$d/ports"
  # --daemon: the server reopens its own stdout into log/; redirecting it there ourselves (as
  # root) makes it fail with "Cannot attach stdout", so send ours to /dev/null.
  WAIT_FAILURE="could not be started"
  mark=$(log_mark "$d/log/server.err.log")
  if ! daemon as_user clickhouse "$CH_SERVER" --config-file="$d/config.xml" --daemon \
    --pid-file="$d/clickhouse.pid" >/dev/null 2>&1 ||
    ! wait_until -a "--config-file=$(ere_quote "$d/config.xml")( |\$)" ch_ping "$http"; then
    bind_failure clickhouse "$mark" "$d/log/server.err.log" "$http TETHER_CH_HTTP_PORT" "$tcp TETHER_CH_TCP_PORT"
    show_logs "$d/log/server.err.log" "$d/log/server.log" "$d/log/stderr.log"
    die "$EX_TEMP" "clickhouse: server on 127.0.0.1:$http $WAIT_FAILURE; logs in $d/log"
  fi
  ch_apply_schema "$http"
  say "clickhouse: ready on 127.0.0.1:$http (tcp $tcp), $CH_FILES schema file(s) applied, in $(elapsed "$t0")s"
}

# Apply every sql/clickhouse/NNNN_*.sql in order. They are idempotent (IF NOT EXISTS), so this
# runs at every start, also when the server was already running: new files get picked up.
ch_apply_schema() {
  local f
  CH_FILES=0
  for f in "$ROOT"/sql/clickhouse/[0-9][0-9][0-9][0-9]_*.sql; do
    [[ -e $f ]] || continue
    ch_apply_file "$1" "$f" || die "$EX_USAGE" "clickhouse: schema not applied (server left running)"
    CH_FILES=$((CH_FILES + 1))
  done
}

# ---------------------------------------------------------------------------------------------
# commands

check_prereqs() {
  local svc missing=()
  for svc in $SERVICES; do
    case $svc in
      pg) pg_bindir >/dev/null ;;
      redis)
        command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
        command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
        ;;
      clickhouse) [[ -x $CH_SERVER ]] || missing+=(clickhouse-server) ;;
    esac
  done
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "$EX_TEMP" "missing: ${missing[*]} (run compose/deps.sh)"
  fi
  if [[ $EUID -eq 0 ]]; then
    for svc in $SERVICES; do
      case $svc in
        pg) id -u postgres >/dev/null 2>&1 || die "$EX_TEMP" "user postgres does not exist (install postgresql)" ;;
        clickhouse) id -u clickhouse >/dev/null 2>&1 ||
          die "$EX_TEMP" "user clickhouse does not exist (install clickhouse-server)" ;;
      esac
    done
  fi
}

cmd_start() {
  local svc pid old1 old2 http running=() ports=()
  check_prereqs
  if ((FRESH)); then
    cmd_stop
    for svc in $SERVICES; do
      rm -rf -- "${DIR:?}/$svc"
    done
  fi
  read_envfile
  if [[ $EUID -eq 0 && (" $SERVICES " == *" pg "* || " $SERVICES " == *" clickhouse "*) ]]; then
    open_path "$DIR"
  fi
  for svc in $SERVICES; do
    if pid=$(svc_pid "$svc"); then
      say "$svc: already running (pid $pid, port $(svc_ports "$svc"))"
      running+=("$svc")
      TAKEN+="$(svc_ports "$svc") "
    fi
  done
  for svc in $SERVICES; do
    [[ " ${running[*]-} " == *" $svc "* ]] && continue
    case $svc in
      pg)
        choose_port TETHER_PG_PORT "$DEF_PG_PORT" "$(old_port pg 0 TETHER_PG_PORT)"
        pg_start "$PORT"
        ;;
      redis)
        choose_port TETHER_REDIS_PORT "$DEF_REDIS_PORT" "$(old_port redis 0 TETHER_REDIS_PORT)"
        redis_start "$PORT"
        ;;
      clickhouse)
        old1=$(old_port clickhouse 0 TETHER_CH_HTTP_PORT)
        old2=$(old_port clickhouse 1 TETHER_CH_TCP_PORT)
        choose_port TETHER_CH_HTTP_PORT "$DEF_CH_HTTP_PORT" "$old1"
        http=$PORT
        choose_port TETHER_CH_TCP_PORT "$DEF_CH_TCP_PORT" "$old2"
        clickhouse_start "$http" "$PORT"
        ;;
    esac
    set_env_for "$svc"
    write_envfile
  done
  # Servers found running: make sure what a start promises is there, then record them.
  for svc in "${running[@]}"; do
    read -r -a ports <<<"$(svc_ports "$svc")"
    case $svc in
      pg)
        PG_BIN=$(pg_bindir)
        pg_ensure_db "${ports[0]}"
        ;;
      clickhouse) ch_apply_schema "${ports[0]}" ;;
    esac
    set_env_for "$svc"
  done
  write_envfile
}

# Wait until no process in LEFT ("svc:pid" entries) is alive, at most $1 seconds; the
# survivors stay in LEFT.
wait_gone() {
  local deadline e
  local -a still
  deadline=$(($(now_us) + $1 * 1000000))
  while :; do
    still=()
    for e in "${LEFT[@]}"; do
      if pid_live "${e#*:}"; then still+=("$e"); fi
    done
    LEFT=("${still[@]}")
    [[ ${#LEFT[@]} -eq 0 ]] && return 0
    (($(now_us) < deadline)) || return 1
    sleep 0.02
  done
}

# Signal every running service at once, then wait for all of them, so a stop costs the slowest
# shutdown, not the sum. After STOP_TIMEOUT: SIGQUIT for PostgreSQL (immediate shutdown, which
# also ends its children) and SIGKILL for the others; 5 s later SIGKILL for anything left.
cmd_stop() {
  local svc pid e sig
  local -a stopped=()
  LEFT=()
  for svc in $SERVICES; do
    pid=$(svc_pid "$svc") || continue
    case $svc in
      pg) sig=INT ;; # fast shutdown: roll back open transactions, checkpoint, exit
      *) sig=TERM ;; # redis: flush and fsync the AOF, exit; clickhouse: clean shutdown
    esac
    kill -s "$sig" "$pid" 2>/dev/null || true
    LEFT+=("$svc:$pid")
  done
  [[ ${#LEFT[@]} -gt 0 ]] || return 0
  stopped=("${LEFT[@]}")
  if ! wait_gone "$STOP_TIMEOUT"; then
    for e in "${LEFT[@]}"; do
      if [[ ${e%%:*} == pg ]]; then sig=QUIT; else sig=KILL; fi
      say "${e%%:*}: still running after ${STOP_TIMEOUT}s, sending SIG$sig"
      kill -s "$sig" "${e#*:}" 2>/dev/null || true
    done
    if ! wait_gone 5; then
      for e in "${LEFT[@]}"; do
        kill -s KILL "${e#*:}" 2>/dev/null || true
      done
      wait_gone 2 || die "$EX_TEMP" "could not stop: ${LEFT[*]}"
    fi
  fi
  for e in "${stopped[@]}"; do
    say "${e%%:*}: stopped (pid ${e#*:})"
  done
}

cmd_status() {
  local svc pid ports rc=0
  for svc in $SERVICES; do
    ports=$(svc_ports "$svc")
    ports=${ports:--}
    if pid=$(svc_pid "$svc"); then
      printf '%-10s running  port=%s pid=%s\n' "$svc" "${ports// //}" "$pid"
    else
      printf '%-10s stopped  port=%s\n' "$svc" "${ports// //}"
      rc=$EX_TEMP
    fi
  done
  return "$rc"
}

cmd_env() {
  [[ -f $DIR/services.env ]] || die "$EX_TEMP" "no $DIR/services.env (run: $PROG start $DIR)"
  cat -- "$DIR/services.env"
}

# ---------------------------------------------------------------------------------------------
# main

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=$2
shift 2
FRESH=0
case $CMD in
  start)
    case ${1-} in
      "") ;;
      --fresh) FRESH=1 ;;
      *) usage ;;
    esac
    [[ $# -le 1 ]] || usage
    ;;
  stop | status | env) [[ $# -eq 0 ]] || usage ;;
  *) usage ;;
esac
[[ -n $DIR ]] || usage

SERVICES=""
for svc in ${TETHER_SERVICES:-$ALL_SERVICES}; do
  [[ " $ALL_SERVICES " == *" $svc "* ]] || die "$EX_USAGE" "TETHER_SERVICES: unknown service '$svc' (known: $ALL_SERVICES)"
  [[ " $SERVICES " == *" $svc "* ]] || SERVICES+="$svc "
done
SERVICES=${SERVICES% }
# Keep pg, redis, clickhouse order whatever order the user gave.
ordered=""
for svc in $ALL_SERVICES; do
  if [[ " $SERVICES " == *" $svc "* ]]; then ordered+="$svc "; fi
done
SERVICES=${ordered% }

TIMEOUT=${TETHER_SERVICES_TIMEOUT:-30}
STOP_TIMEOUT=${TETHER_SERVICES_STOP_TIMEOUT:-20}
if ! is_uint "$TIMEOUT" || ! is_uint "$STOP_TIMEOUT"; then
  die "$EX_USAGE" "TETHER_SERVICES_TIMEOUT and TETHER_SERVICES_STOP_TIMEOUT must be whole seconds"
fi

if [[ $CMD == start ]]; then
  mkdir -p -- "$DIR" || die "$EX_TEMP" "cannot create $DIR"
fi
if [[ ! -d $DIR ]]; then
  [[ $CMD == stop ]] && exit 0 # nothing can be running there
  die "$EX_TEMP" "$DIR: no such directory"
fi
DIR=$(cd -- "$DIR" && pwd -P)

case $CMD in
  start | stop)
    # One start/stop at a time per DIR (daemon() keeps the servers from inheriting the lock).
    exec 9>"$DIR/.services.lock"
    flock -w 60 9 || die "$EX_TEMP" "another $PROG is busy with $DIR"
    "cmd_$CMD"
    ;;
  status) cmd_status ;;
  env) cmd_env ;;
esac
