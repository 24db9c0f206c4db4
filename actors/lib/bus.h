/*
 * bus.h - the message bus between Tether processes (nng + msgpack envelopes).
 *
 * One struct bus per process. It offers:
 *  - servers: a REP socket with one nng context per request in flight;
 *  - peers: a REQ socket dialing every instance of one actor, with a
 *    deadline on every call and a re-send (attempt + 1) when the instance
 *    holding the request dies;
 *  - events: PUB/SUB with a topic per message;
 *  - a tap: every envelope this process sends or receives is mirrored on a
 *    PUB socket, but only while someone is connected to it (an atomic load
 *    otherwise);
 *  - fault injection: drop, delay or duplicate a fraction of this process's
 *    messages, switched at run time by the supervisor's bus.fault events.
 *
 * Threads: nng completes I/O on its own threads. Everything this module
 * hands to the caller (requests to serve, replies to calls, events) is
 * queued and delivered on the owner's thread inside bus_dispatch(), which
 * the owner calls when bus_fd() is readable. Handlers and callbacks
 * therefore never race with the owner's loop. Only bus_call_sync() blocks.
 *
 * Memory: a received envelope (and every slice in it) belongs to the bus
 * and is valid until the handler replies or the callback returns.
 */
#ifndef TETHER_LIB_BUS_H
#define TETHER_LIB_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "err.h"
#include "msgcodec.h"

#define BUS_URL_MAX 256
#define BUS_NAME_MAX 32
/* Longest event topic, NUL included: room for any stream's topic (proto/stream.h). */
#define BUS_TOPIC_MAX 2048

struct bus;
struct bus_server;
struct bus_peer;
struct bus_sub;
struct bus_pub;
struct bus_req;

struct bus_opts {
    const char *proc;      /* this process's actor name ("run-manager") */
    const char *self;      /* its name in the supervisor ("gateway.1"); NULL = proc */
    unsigned instance;     /* instance number on this node (TETHER_INSTANCE) */
    const char *dir;       /* directory of ipc:// endpoints */
    size_t recv_max;       /* receive limit, bytes (> 1 MiB + ENV_OVERHEAD_MAX) */
    uint32_t timeout_ms;   /* default call deadline */
    unsigned inflight;     /* contexts per server */
    bool tap;              /* offer a tap socket */
    bool follow_faults;    /* subscribe to the supervisor's bus.fault events */
};

/* Fault-injection setting of one process; all zero means none. */
struct bus_fault {
    double drop;       /* fraction of messages silently dropped */
    double dup;        /* fraction delivered (or sent) twice */
    uint32_t delay_ms; /* delay added ... */
    double delay_rate; /* ... to this fraction of messages */
};

/* Trace context a call carries (from the HTTP request or the request being served). */
struct bus_trace {
    char trace_id[ENV_TRACE_LEN + 1]; /* "" when none */
    uint32_t timeout_ms;              /* 0 = the bus default */
};

/* Fills trace->trace_id with a fresh random W3C trace id. */
void bus_trace_new(struct bus_trace *trace);

/*
 * Takes the trace id from a W3C traceparent header value
 * ("00-<32 hex trace>-<16 hex parent>-<2 hex flags>"); false (trace
 * untouched) when v is not one.
 */
bool bus_trace_from_traceparent(struct bus_trace *trace, const char *v, size_t n);

/* ---- lifecycle ---- */

/* Opens the bus: the completion queue, the tap (if asked) and the fault subscription. */
err_t bus_open(struct bus **out, const struct bus_opts *opts);
/* Closes every socket, cancels every call (callbacks are not run) and frees. NULL is fine. */
void bus_close(struct bus *b);

/* Readable when bus_dispatch() has work. Watch it; never read or close it. */
int bus_fd(const struct bus *b);
/* Runs everything queued for the owner's thread. */
void bus_dispatch(struct bus *b);

const char *bus_proc(const struct bus *b);

/* Default endpoint of an actor instance: "ipc://<dir>/<actor>.<instance>.ipc". */
void bus_actor_url(const struct bus *b, const char *actor, unsigned instance, char *out,
                   size_t cap);

/*
 * URLs to dial for an actor: $TETHER_BUS_PEERS_<ACTOR> (comma-separated, the
 * actor's name upper-cased with '-' as '_') or its instance-0 default.
 */
void bus_actor_peers(const struct bus *b, const char *actor, char *out, size_t cap);

/*
 * The event sockets of every instance of actor, comma-separated, from its request endpoints:
 * ipc://<dir>/<actor>.<n>.ipc publishes on ipc://<dir>/<actor>.events.<n>.ipc.
 */
void bus_actor_events_urls(const struct bus *b, const char *actor, char *out, size_t cap);

/* ---- serving requests ---- */

/* Called on the owner's thread for each request. Must eventually reply exactly once. */
typedef void (*bus_handler_fn)(struct bus_req *req, void *arg);

/* Listens on url (comma-separated list allowed) with opts->inflight contexts. */
err_t bus_serve(struct bus *b, const char *url, bus_handler_fn fn, void *arg,
                struct bus_server **out);

const struct envelope *bus_req_env(const struct bus_req *req);

/* Replies with body (raw msgpack map, or NULL/0 for nil) and releases req. */
err_t bus_reply(struct bus_req *req, const void *body, size_t n);
/* Replies with an error and releases req. msg is optional. */
err_t bus_reply_err(struct bus_req *req, err_t code, const char *msg);
/*
 * Replies with the typed body m of form f (msgcodec.h) and releases req. raw, when not NULL,
 * is the writer a raw field of m points into (the caller still frees it): had writing it
 * failed, or the body's encoding fails, the answer is ERR_NOMEM "could not encode the reply".
 */
err_t bus_reply_msg(struct bus_req *req, const struct msg_form *f, const void *m,
                    const struct mp_writer *raw);

/*
 * Holding a reply (the actor's once routes, actor.c): after bus_req_hold(req)
 * the next bus_reply()/bus_reply_err() builds the reply and keeps it instead
 * of sending it; req and its envelope stay valid. bus_req_held() is that
 * reply (NULL before it), borrowed from req. bus_req_release() sends it and
 * releases req (ERR_INVAL when nothing is held); bus_req_release_err() drops
 * it and replies with an error instead. Owner's thread only.
 */
void bus_req_hold(struct bus_req *req);
const struct envelope *bus_req_held(const struct bus_req *req);
err_t bus_req_release(struct bus_req *req);
err_t bus_req_release_err(struct bus_req *req, err_t code, const char *msg);

/* Requests received and not yet replied to, over all servers. */
unsigned bus_inflight(const struct bus *b);

/* ---- calling other processes ---- */

/* Dials urls (comma-separated); name is the actor's name, for the tap and faults. */
err_t bus_peer_open(struct bus *b, const char *name, const char *urls, struct bus_peer **out);
/* Dials the actor's default or configured endpoints (bus_actor_peers). */
err_t bus_peer_open_actor(struct bus *b, const char *actor, struct bus_peer **out);
/*
 * For a leader-only actor: as bus_peer_open_actor, and while the cluster view names another
 * node as leader, that node's registered tcp:// endpoint for it too (bus_cluster.c), so calls
 * reach the one instance in the cluster wherever it runs.
 */
err_t bus_peer_open_leader(struct bus *b, const char *actor, struct bus_peer **out);

/*
 * Reply callback, on the owner's thread. rc is OK with the reply envelope,
 * or ERR_TIMEOUT, ERR_CLOSED, ERR_PROTO, or the code of an error reply (then
 * env->err_msg may say more). env is NULL unless a reply arrived.
 */
typedef void (*bus_reply_fn)(void *arg, err_t rc, const struct envelope *env);

/*
 * Sends a request and calls cb once with the outcome. Returns OK when the
 * call is under way; on an error return cb is never called.
 */
err_t bus_call(struct bus_peer *p, uint16_t type, const void *body, size_t n,
               const struct bus_trace *trace, bus_reply_fn cb, void *arg);

/* A reply kept by bus_call_sync; free with bus_msg_free. */
struct bus_msg {
    void *_nng;
    struct envelope env;
};

/*
 * Blocking call for tools (tetherctl) and tests; must not be used on a
 * loop thread that also serves requests. On OK *reply holds the reply.
 */
err_t bus_call_sync(struct bus_peer *p, uint16_t type, const void *body, size_t n,
                    uint32_t timeout_ms, struct bus_msg *reply);
void bus_msg_free(struct bus_msg *m);

/* ---- events ---- */

/* Listens on url (a comma-separated list: ipc:// for the node, tcp:// for other nodes). */
err_t bus_pub_open(struct bus *b, const char *url, struct bus_pub **out);
/* Publishes an event; topic is matched exactly by subscribers. Never blocks. */
err_t bus_publish(struct bus_pub *p, const char *topic, uint16_t type, const void *body,
                  size_t n);

/* Event callback, on the owner's thread. */
typedef void (*bus_event_fn)(void *arg, const char *topic, const struct envelope *env);

/* Dials urls (comma-separated) and delivers events of subscribed topics to fn. */
err_t bus_sub_open(struct bus *b, const char *urls, bus_event_fn fn, void *arg,
                   struct bus_sub **out);
/*
 * Follows actor's events wherever they are published: on this node (bus_actor_events_urls) and
 * on every other node the cluster view names (dials come and go with the view: bus_cluster.c).
 */
err_t bus_sub_open_actor(struct bus *b, const char *actor, bus_event_fn fn, void *arg,
                         struct bus_sub **out);
err_t bus_sub_add(struct bus_sub *s, const char *topic);
err_t bus_sub_remove(struct bus_sub *s, const char *topic);

/* ---- the cluster ---- */

#define BUS_CLUSTER_NODES 32
#define BUS_CLUSTER_NAME_MAX 64

/* One node of the cluster as this node's supervisor last read the registry. */
struct bus_cluster_node {
    char node[BUS_CLUSTER_NAME_MAX];
    char addr[BUS_CLUSTER_NAME_MAX]; /* TETHER_NODE_ADDR, "" for a node without one */
    bool leader;
    uint64_t fencing_token;          /* of its lock, 0 unless leader */
    uint64_t age_ms;                 /* since its last heartbeat, when read */
};

/*
 * The supervisor's cluster.members event, kept by every process that follows its supervisor's
 * events (bus_opts.follow_faults). known is false until the first arrives; seen_mono is when
 * the last did (clock_mono_ms). Owner thread only.
 */
struct bus_cluster {
    bool known;
    char self[BUS_CLUSTER_NAME_MAX];
    char leader[BUS_CLUSTER_NAME_MAX]; /* "" while no node leads */
    uint64_t seen_mono;
    unsigned n;
    struct bus_cluster_node nodes[BUS_CLUSTER_NODES];
};

const struct bus_cluster *bus_cluster_view(const struct bus *b);

/* ---- faults and the tap ---- */

/* Sets this process's fault injection (also what bus.fault events do). */
void bus_fault_set(struct bus *b, const struct bus_fault *f);
void bus_fault_get(struct bus *b, struct bus_fault *f);
/* Parses "drop=0.1 dup=0.05 delay=50ms delay_rate=0.5" (also comma-separated). */
err_t bus_fault_parse(const char *s, struct bus_fault *f);

/* Endpoint of the supervisor's event socket (bus.fault), "ipc://<dir>/supervisor.events.ipc". */
void bus_supervisor_events_url(const char *dir, char *out, size_t cap);
/* Directory holding every process's tap endpoint. */
void bus_tap_dir(const char *dir, char *out, size_t cap);
/* Number of tap listeners connected (0 = the tap costs nothing). */
unsigned bus_tap_listeners(const struct bus *b);
struct tap_filter;
/*
 * The registered listeners' filters (tap_filter.h), n of them (0 clears), valid for
 * TAP_FILTER_LEASE_MS unless set again: the supervisor sets its own, every other process gets
 * them from bus.tap events. While as many listeners have registered as are connected, and
 * none of them wants everything, a message that matches none of them is not mirrored.
 */
void bus_tap_filters_set(struct bus *b, const struct tap_filter *f, unsigned n);

/*
 * Tap message: one or more records, each a msgpack array [ts_ms u64, proc str, instance u32,
 * dir str ("in"|"out"), peer str, topic str|nil, envelope bin, bytes u64] (docs/bus.md).
 */

#endif
