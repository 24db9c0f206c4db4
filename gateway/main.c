/*
 * gateway - Tether's HTTP door: turns requests into bus messages.
 *
 * Interface: listens on TETHER_HTTP_HOST:TETHER_HTTP_PORT with SO_REUSEPORT
 * (several gateway processes share the port). Signals: SIGTERM/SIGINT stop
 * accepting, finish in-flight requests within TETHER_SHUTDOWN_GRACE, exit 0.
 * Exit codes: 0 clean stop, 100 bad configuration, 111 cannot listen or join
 * the bus. Readiness: after the listener is bound and the bus is joined.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "feed.h"
#include "gw.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "proc.h"
#include "ratelimit.h"
#include "s2s.h"
#include "tls.h"

#define GW_OFF(f) offsetof(struct gw_cfg, f)

/* 10,000 subscribers plus the bus, stores and headroom */
#define GW_FDS_WANTED 16384

static const struct cfg_def gw_cfg_defs[] = {
    {"TETHER_HTTP_HOST", CFG_STR, "127.0.0.1", 0, 0, GW_OFF(http_host),
     "address the gateway listens on (0.0.0.0 for every interface)"},
    {"TETHER_HTTP_PORT", CFG_INT, "8787", 1, 65535, GW_OFF(http_port), "HTTP port"},
    {"TETHER_GW_HEALTH_TIMEOUT", CFG_MS, "800ms", 10, 60000, GW_OFF(health_timeout_ms),
     "how long /healthz waits for each actor"},
    {"TETHER_GW_REQ_TIMEOUT", CFG_MS, "10s", 100, 600000, GW_OFF(req_timeout_ms),
     "time a client has to send a whole request (slow clients are cut off)"},
    {"TETHER_GW_AUTH_CACHE_TTL", CFG_MS, "5s", 0, 600000, GW_OFF(auth_cache_ttl_ms),
     "how long a resolved key, environment or validated token is reused without asking again"},
    {"TETHER_GW_MAX_BODY", CFG_INT, "2097152", 65536, 67108864, GW_OFF(max_body),
     "largest request body h2o buffers at all; just above the largest route cap; a "
     "Content-Length or chunk sizes declaring more are refused (413) before the body is read"},
    {"TETHER_GW_SSE_BUFFER", CFG_INT, "65536", 4096, 67108864, GW_OFF(sse_buffer),
     "bytes of live records an SSE client may leave waiting behind a write it is not taking "
     "before it is cut off (it reconnects with Last-Event-ID); history is read at its pace"},
    {"TETHER_GW_PUBLIC_URL", CFG_STR, "", 0, 0, GW_OFF(public_url),
     "base URL clients reach the gateway at, for X-S2-Endpoint; empty: the request's Host if "
     "TETHER_GW_ALLOWED_HOSTS admitted it, else http://<TETHER_HTTP_HOST>:<TETHER_HTTP_PORT> "
     "(0.0.0.0 read as 127.0.0.1)"},
    {"TETHER_GW_SESSION_CACHE_TTL", CFG_MS, "2s", 0, 600000, GW_OFF(session_cache_ttl_ms),
     "how long a gateway process reuses a session row for appends, subscribes and /records "
     "without asking the session-manager (dropped at once on session.changed; a close is enforced "
     "by the stream-broker's seal whatever is cached)"},
    {"TETHER_GW_SESSION_CACHE_MAX", CFG_INT, "10000", 0, 10000000, GW_OFF(session_cache_max),
     "session rows one gateway process keeps (least recently used goes first); 0 turns the cache "
     "off"},
    {"TETHER_GW_ALLOWED_HOSTS", CFG_STR, "", 0, 0, GW_OFF(allowed_hosts),
     "comma list of host or host:port the API answers for (any other Host: 421); empty: every "
     "Host, and none is ever echoed"},
    {"TETHER_GW_H2_IDLE_TIMEOUT", CFG_MS, "30s", 100, 3600000, GW_OFF(h2_idle_timeout_ms),
     "how long an HTTP/2 connection (the SDK's streaming writer) may stay open without a stream "
     "before the gateway ends it with GOAWAY"},
    {"TETHER_GW_SNAPSHOT_URL_TTL", CFG_MS, "1h", 1000, 604800000, GW_OFF(snapshot_url_ttl_ms),
     "how long a presigned snapshot URL (PUT/GET /api/v1/sessions/:session/snapshot-url) "
     "stays good"},
    {"TETHER_GW_RATE_API", CFG_STR, "", 0, 0, GW_OFF(rate_api),
     "rate limit per environment on the routes under /api/: BURST/PER_S (a token bucket of "
     "BURST tokens gaining PER_S a second, shared by every gateway through Redis), e.g. 750/25; "
     "empty: no limit"},
    {"TETHER_GW_RATE_REALTIME", CFG_STR, "", 0, 0, GW_OFF(rate_realtime),
     "the same for /realtime/ and /s2/ (appends, subscriptions, S2 records); empty: no limit"},
    {"TETHER_GW_H2_MAX_CONNECTIONS", CFG_INT, "256", 1, 65536, GW_OFF(h2_max_connections),
     "HTTP/2 connections (the SDK's streaming writer) one gateway process serves at once; each "
     "may hold up to 16 MiB of batches not yet acknowledged, so this bounds that memory; more "
     "are closed at once (the writer retries)"},
    {"TETHER_GW_TLS_CERT", CFG_STR, "", 0, 0, GW_OFF(tls_cert),
     "PEM certificate chain: with TETHER_GW_TLS_KEY, the port speaks TLS only (ALPN h2 for the "
     "SDK's streaming writer, http/1.1 for the rest); empty: plain TCP (HTTP/1 and h2c)"},
    {"TETHER_GW_TLS_KEY", CFG_STR, "", 0, 0, GW_OFF(tls_key),
     "PEM private key of TETHER_GW_TLS_CERT"},
};

static struct gw *gw_self;

struct gw *gw_of(h2o_req_t *req)
{
    (void)req;
    return gw_self;
}

static int gw_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct gw *gw = gw_of(req);
    (void)self;
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/livez"))) {
        static const char ok[] = "{\"status\":\"ok\"}";
        gw_send_plain(req, 200, ok, sizeof(ok) - 1, "/livez", clock_mono_ms(), 0);
        return 0;
    }
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/metrics")))
        return gw_on_metrics(gw, req);
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/console")) ||
        h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/console/")))
        return gw_on_console(gw, req);
    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/healthz")))
        return gw_http_on_req(gw, req);
    {
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
            !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
            static const char body[] = "{\"error\":\"Method not allowed\"}";
            gw_send_plain(req, 405, body, sizeof(body) - 1, "/healthz", clock_mono_ms(), 0);
            return 0;
        }
        return gw_on_healthz(gw, req);
    }
}

/* An HTTP/1 connection: the framing guard sees every byte before h2o parses it (edge.h). */
static void gw_http1(struct gw *gw, h2o_socket_t *sock)
{
    gw_edge_guard(sock, (size_t)gw->gw.max_body);
    h2o_accept(&gw->accept_ctx, sock);
}

static void gw_on_accept(h2o_socket_t *listener, const char *err)
{
    struct gw *gw = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
        return;
    if (gw_tls_on())
        gw_tls_accept(gw, sock, gw_http1); /* ALPN h2 goes to the S2 append sessions */
    else
        s2s_accept(gw, sock, gw_http1); /* so does h2c */
}

static void gw_on_bus(h2o_socket_t *sock, const char *err)
{
    struct gw *gw = sock->data;
    (void)err;
    bus_dispatch(gw->bus);
}

static void gw_begin_stop(struct gw *gw, const char *why)
{
    if (gw->stopping) {
        gw->stop_deadline_mono = clock_mono_ms();
        return;
    }
    LOG_INFO("gw.stopping", "stopping: %s", why);
    gw->stopping = true;
    gw->stop_deadline_mono = clock_mono_ms() + (uint64_t)gw->cfg.shutdown_grace_ms;
    if (gw->listener) {
        h2o_socket_read_stop(gw->listener);
        h2o_socket_close(gw->listener);
        gw->listener = NULL;
    }
    gw_feeds_stop(gw); /* SSE clients reconnect (to another gateway) with Last-Event-ID */
    s2s_stop(gw);      /* S2 writers re-send what was not acknowledged on a new connection */
}

static void gw_on_signal(h2o_socket_t *sock, const char *err)
{
    struct gw *gw = sock->data;
    struct signalfd_siginfo si;
    int fd = h2o_socket_get_fd(sock);
    (void)err;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            gw_begin_stop(gw, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void gw_on_parent(h2o_socket_t *sock, const char *err)
{
    struct gw *gw = sock->data;
    (void)err;
    if (proc_parent_gone(h2o_socket_get_fd(sock))) {
        LOG_WARN("gw.orphaned", "the supervisor is gone; exiting");
        h2o_socket_read_stop(sock);
        gw->stopping = true;
        gw->stop_deadline_mono = clock_mono_ms();
    }
}

static int gw_listen(struct gw *gw)
{
    struct sockaddr_in addr;
    int fd, one = 1;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)gw->gw.http_port);
    if (inet_pton(AF_INET, gw->gw.http_host, &addr.sin_addr) != 1) {
        LOG_ERROR("cfg.invalid", "TETHER_HTTP_HOST \"%s\" is not an IPv4 address",
                  gw->gw.http_host);
        return -2;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0) {
        LOG_ERROR("gw.listen_failed", "cannot listen on %s:%lld: %s", gw->gw.http_host,
                  gw->gw.http_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    gw->listener = h2o_evloop_socket_create(gw->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    gw->listener->data = gw;
    h2o_socket_read_start(gw->listener, gw_on_accept);
    return 0;
}

/* Watches a foreign fd in the h2o loop (h2o closes what it owns, hence the dup). */
static h2o_socket_t *gw_watch_fd(struct gw *gw, int fd, h2o_socket_cb cb)
{
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0)
        return NULL;
    h2o_socket_t *s = h2o_evloop_socket_create(gw->ctx.loop, copy, H2O_SOCKET_FLAG_DONT_READ);
    s->data = gw;
    h2o_socket_read_start(s, cb);
    return s;
}

/* Every SSE subscriber holds a socket for as long as it watches, so the soft descriptor limit
 * (1024 by default) and not memory is what caps a gateway: raise it to the hard limit. */
static void gw_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t before = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = before;
    }
    if (rl.rlim_cur < GW_FDS_WANTED)
        LOG_WARN("gw.fd_limit",
                 "descriptor limit %llu (hard %llu) caps concurrent connections "
                 "below %d; raise the hard limit (ulimit -Hn)",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, GW_FDS_WANTED);
    else
        LOG_INFO("gw.fd_limit", "descriptor limit %llu", (unsigned long long)rl.rlim_cur);
}

static int gw_run(struct gw *gw, int argc, char **argv)
{
    struct cfg_table tables[] = {
        {cfg_common_defs, cfg_common_defs_len, &gw->cfg},
        CFG_TABLE(gw_cfg_defs, &gw->gw),
    };
    enum cfg_action action;
    sigset_t set;
    int sfd, rc;

    log_init("gateway", LOG_LVL_INFO, true);
    if (cfg_load(tables, 2, argc, argv, "gateway", &action) != OK)
        return EXIT_PERMANENT;
    if (action == CFG_PRINTED)
        return 0;
    if (cfg_common_apply(&gw->cfg, proc_child_name("gateway")) != OK)
        return EXIT_PERMANENT;
    gw->started_mono = clock_mono_ms();
    char why[320];
    if (gw_hosts_parse(gw->gw.allowed_hosts, &gw->allowed, why, sizeof(why)) != OK) {
        LOG_ERROR("cfg.invalid", "TETHER_GW_ALLOWED_HOSTS: %s", why);
        return EXIT_PERMANENT;
    }
    if (gw_tls_open(gw) != OK || gw_rate_open(gw) != OK)
        return EXIT_PERMANENT;
    gw_listen_base(gw->gw.http_host, gw->gw.http_port, gw_tls_on(), gw->listen_base,
                   sizeof(gw->listen_base));
    if (!gw->gw.public_url || !*gw->gw.public_url)
        LOG_WARN("gw.public_url_unset",
                 "TETHER_GW_PUBLIC_URL is not set: X-S2-Endpoint names %s; set it to the URL "
                 "clients reach the gateway at",
                 gw->allowed.n ? "the request's Host (one of TETHER_GW_ALLOWED_HOSTS)"
                               : gw->listen_base);
    gw_raise_fd_limit();

    /* block before nng starts its threads, so the signals reach the signalfd */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
        (sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        return EXIT_TEMPORARY;
    signal(SIGPIPE, SIG_IGN);

    char busdir[BUS_URL_MAX];
    cfg_bus_dir(&gw->cfg, busdir, sizeof(busdir));
    struct bus_opts bo = {
        .proc = "gateway",
        .self = proc_child_name("gateway"),
        .instance = proc_instance(),
        .dir = busdir,
        .recv_max = (size_t)gw->cfg.bus_recv_max,
        .timeout_ms = (uint32_t)gw->cfg.bus_timeout_ms,
        .inflight = 1,
        .tap = gw->cfg.bus_tap,
        .follow_faults = true,
    };
    if (bus_open(&gw->bus, &bo) != OK)
        return EXIT_TEMPORARY;
    for (unsigned i = 0; i < GW_NACTORS; i++) {
        /* the replicator runs on the leader node only: a follower's lists go there */
        err_t prc = i == GW_ACTOR_CH_REPLICATOR
                        ? bus_peer_open_leader(gw->bus, gw_actor_names[i], &gw->actors[i])
                        : bus_peer_open_actor(gw->bus, gw_actor_names[i], &gw->actors[i]);
        if (prc != OK)
            return EXIT_TEMPORARY;
    }
    if (gw_console_peer_open(gw) != OK)
        return EXIT_TEMPORARY;
    if (gw_sessions_open(gw) != OK)
        return EXIT_TEMPORARY;
    rc = gw_metrics_open(gw, proc_instance());
    if (rc != OK) /* an instance past the slots is the operator's to fix; memory is not */
        return rc == ERR_INVAL ? EXIT_PERMANENT : EXIT_TEMPORARY;

    h2o_config_init(&gw->config);
    /* A connection's read buffer lives as long as its request (h2o's HTTP/1 keeps the request's
     * bytes in it until the response ends), so an idle SSE subscriber holds one for hours. h2o
     * 2.2 starts it at 8 KiB; its loop reserves 4 KiB a read, so 4 KiB is the smallest that is
     * still recycled (docs/rationale.md). The prototype is per thread: this is the loop's. */
    h2o_socket_buffer_prototype._initial_buf.capacity = H2O_SOCKET_INITIAL_INPUT_BUFFER_SIZE;
    gw->config.http1.req_timeout = (uint64_t)gw->gw.req_timeout_ms;
    /* h2o buffers a whole body before we see it: this bounds what a client can make it hold */
    gw->config.max_request_entity_size = (size_t)gw->gw.max_body;
    /* HTTP/1 only: the framing guard (edge.h) reads HTTP/1, and no client needs h2c */
    gw->config.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host =
        h2o_config_register_host(&gw->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = gw_on_req;
    h2o_context_init(&gw->ctx, h2o_evloop_create(), &gw->config);
    gw->accept_ctx.ctx = &gw->ctx;
    gw->accept_ctx.hosts = gw->config.hosts;

    rc = gw_listen(gw);
    if (rc == -2)
        return EXIT_PERMANENT;
    if (rc != 0)
        return EXIT_TEMPORARY;
    gw->bus_sock = gw_watch_fd(gw, bus_fd(gw->bus), gw_on_bus);
    gw->sig_sock = gw_watch_fd(gw, sfd, gw_on_signal);
    close(sfd);
    int pfd = proc_parent_fd();
    if (pfd >= 0)
        gw->parent_sock = gw_watch_fd(gw, pfd, gw_on_parent);
    if (!gw->bus_sock || !gw->sig_sock)
        return EXIT_TEMPORARY;

    proc_notify_ready();
    LOG_INFO("gw.ready", "listening on http://%s:%lld", gw->gw.http_host, gw->gw.http_port);
    while (!gw->stopping || (gw->inflight > 0 && clock_mono_ms() < gw->stop_deadline_mono))
        h2o_evloop_run(gw->ctx.loop, gw->stopping ? 50 : INT32_MAX);
    LOG_INFO("gw.stopped", "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static struct gw gw;
    gw_self = &gw;
    int code = gw_run(&gw, argc, argv);
    /* the h2o loop is not torn down: the process exits, and the bus closes its sockets */
    bus_close(gw.bus);
    gw_metrics_close();
    struct cfg_table tables[] = {
        {cfg_common_defs, cfg_common_defs_len, &gw.cfg},
        CFG_TABLE(gw_cfg_defs, &gw.gw),
    };
    cfg_free(tables, 2);
    return code;
}
