/*
 * gw.h - the gateway process: HTTP (h2o evloop) in front of the bus.
 *
 * One thread per process runs the h2o loop; the bus's completions, the
 * signalfd and the supervisor-death pipe are h2o sockets in that loop, so
 * every handler and bus callback runs on it. Several gateway processes
 * share the port through SO_REUSEPORT.
 */
#ifndef TETHER_GW_H
#define TETHER_GW_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>

#include "bus.h"
#include "cfg.h"
#include "edge.h"

/* The actors /healthz asks, in the order it reports them; also indexes gw->actors. */
enum {
    GW_ACTOR_SESSION_MANAGER,
    GW_ACTOR_RUN_MANAGER,
    GW_ACTOR_STREAM_BROKER,
    GW_ACTOR_WAITPOINT_REGISTRY,
    GW_ACTOR_CH_REPLICATOR,
    GW_NACTORS,
    /* not an actor: the supervisor's control socket, asked by the console (console.c) */
    GW_PEER_SUPERVISOR = GW_NACTORS,
    GW_NPEERS,
};
extern const char *const gw_actor_names[GW_NPEERS];

struct gw_cfg {
    char *http_host;
    long long http_port;
    long long health_timeout_ms;
    long long req_timeout_ms;
    long long auth_cache_ttl_ms;
    long long max_body;
    long long sse_buffer;
    char *public_url;
    long long session_cache_ttl_ms;
    long long session_cache_max;
    char *allowed_hosts;
    long long h2_idle_timeout_ms;
    long long h2_max_connections;
    long long snapshot_url_ttl_ms;
    char *rate_api; /* "BURST/PER_S" or "" (ratelimit.h) */
    char *rate_realtime;
    char *tls_cert; /* TLS on the port when both are set (tls.h) */
    char *tls_key;
};

/* The kinds of long-poll (longpoll.h): a board each. */
enum gw_lp_boards {
    GW_LP_DEQUEUE, /* waiting dequeues (h_dequeue.c) */
    GW_LP_HOLD,    /* waiting holds (h_run_suspend.c) */
    GW_LP_BOARDS,
};
struct gw_lp_board;
struct gw_feeds;
struct gw_sesscache;

struct gw {
    struct cfg_common cfg;
    struct gw_cfg gw;
    struct gw_hosts allowed; /* TETHER_GW_ALLOWED_HOSTS; n = 0: every Host, none echoed */
    char listen_base[64];    /* http(s)://<listen address>:<port>, X-S2-Endpoint's default */
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    h2o_socket_t *bus_sock, *sig_sock, *parent_sock;
    struct bus *bus;
    struct bus_peer *actors[GW_NPEERS];   /* indexed by the enum above */
    unsigned inflight;                    /* HTTP requests waiting on the bus */
    struct gw_lp_board *lp[GW_LP_BOARDS]; /* long-polls by kind (longpoll.h); made on first use */
    struct gw_feeds *feeds; /* SSE feeds of record streams (feed_topics.c); made on first use */
    struct gw_sesscache *sessions;  /* recent session rows (sesscache.h, sessref.c) */
    struct bus_sub *session_events; /* session.changed from the session-manager */
    bool stopping;
    uint64_t stop_deadline_mono;
    uint64_t started_mono;
};

/* The process's gateway; handlers reach it through the h2o context. */
struct gw *gw_of(h2o_req_t *req);

/* sessref.c: the session cache and the session.changed subscription that keeps it current. */
err_t gw_sessions_open(struct gw *gw);

/* healthz.c */
int gw_on_healthz(struct gw *gw, h2o_req_t *req);

/* console.c: GET /console, the page compiled in */
int gw_on_console(struct gw *gw, h2o_req_t *req);
/* Dials the supervisor's control socket (TETHER_SV_CONTROL_URL, else <bus>/supervisor.ipc). */
err_t gw_console_peer_open(struct gw *gw);

#endif
