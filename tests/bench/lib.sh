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

# bench_sessions URL KEY PREFIX SUFFIX...: creates the sessions PREFIX-SUFFIX (8 at a time) that
# the appends of a benchmark need.
bench_sessions() {
  local url=$1 key=$2 prefix=$3
  shift 3
  printf '%s\n' "$@" |
    xargs -P 8 -I@@ curl -fs -o /dev/null -X POST -H "Authorization: Bearer $key" \
      -H 'Content-Type: application/json' \
      -d "{\"type\":\"chat\",\"externalId\":\"$prefix-@@\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
      "$url/api/v1/sessions"
}

bench_tree_stop() {
  if [[ -f ${T:-}/nchan/nginx.pid ]]; then
    local np
    np=$(cat "$T/nchan/nginx.pid")
    kill -TERM "$np" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$np" 2>/dev/null || break; sleep 0.1; done
  fi
  [[ -n ${SV:-} ]] && kill -TERM "$SV" 2>/dev/null && wait "$SV" 2>/dev/null
  "$ROOT/compose/services.sh" stop "$T/s" >/dev/null 2>&1 || true
  rm -rf "$T"
}

# bench_nchan_start: nchan (Debian's nginx-light with libnginx-mod-nchan) as a plain process of
# this run, never the system service: its own configuration, pid file, logs and temporary files
# in $T/nchan, two workers (as Tether's two gateway processes), on a free loopback port, storing
# its messages in the Redis of bench_tree_start (nchan_redis_storage_mode distributed: Redis
# holds every channel's messages and is read for them, as Tether's streams are; the Redis has
# appendonly yes, appendfsync everysec for both). Channel <id>: POST /pub/<id> publishes (the
# body is the message), GET /sub/<id> subscribes with EventSource from the newest message and
# sends "event: ping" every second. Sets NCHAN_URL; bench_tree_stop stops it.
bench_nchan_start() {
  local mod=/usr/lib/nginx/modules/ngx_nchan_module.so d=$T/nchan port
  if ! command -v nginx >/dev/null || [[ ! -f $mod ]]; then
    echo "nchan needs nginx-light and libnginx-mod-nchan (compose/deps.sh installs them)" >&2
    return 111
  fi
  mkdir -p "$d/tmp"
  chmod 1777 "$d/tmp" # the workers run as nobody when the master runs as root
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 12768))
    cat >"$d/nginx.conf" <<CONF
load_module $mod;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 10000; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_requests 100000000;
  upstream tether_bench_redis {
    nchan_redis_server "$TETHER_REDIS_URL";
    nchan_redis_storage_mode distributed;
  }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location ~ ^/pub/(.+)\$ {
      nchan_publisher;
      nchan_channel_id \$1;
      nchan_redis_pass tether_bench_redis;
      nchan_message_buffer_length 1000;
    }
    location ~ ^/sub/(.+)\$ {
      nchan_subscriber eventsource;
      nchan_channel_id \$1;
      nchan_redis_pass tether_bench_redis;
      nchan_subscriber_first_message newest;
      nchan_eventsource_ping_interval 1;
      nchan_eventsource_ping_event ping;
    }
  }
}
CONF
    # nginx forks its master and exits once the listening socket is bound (or failed to bind)
    if nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" 2>>"$d/start.log"; then
      NCHAN_URL=http://127.0.0.1:$port
      break
    fi
  done
  [[ -n ${NCHAN_URL:-} ]] || {
    echo "nchan did not start: $(tail -3 "$d/start.log" 2>/dev/null)" >&2
    return 1
  }
  # the probe's message must be in Redis: a channel kept in nginx's memory would measure
  # something else
  local probe=tether-bench-probe-$$ key
  for _ in $(seq 50); do
    curl -fs -o /dev/null -X POST --data-binary probe "$NCHAN_URL/pub/$probe" && break
    sleep 0.1
  done
  key=$(redis-cli -u "$TETHER_REDIS_URL" --raw exists "{channel:/$probe}:messages")
  [[ $key == 1 ]] || {
    echo "nchan's messages are not in Redis ($TETHER_REDIS_URL); see $d/error.log" >&2
    return 1
  }
}
