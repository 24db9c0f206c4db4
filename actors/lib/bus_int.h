/*
 * bus_int.h - what the bus modules (bus.c, bus_serve.c, bus_call.c,
 * bus_event.c, bus_tap.c, bus_fault.c) share. Not for users of the bus:
 * they include bus.h.
 */
#ifndef TETHER_LIB_BUS_INT_H
#define TETHER_LIB_BUS_INT_H

#include <stdatomic.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "bus.h"
#include "pmetrics.h"
#include "tap_filter.h"
#include "mp.h"

/* Something to run on the owner's thread; embedded first in what it belongs to. */
struct bus_item {
    struct bus_item *next;
    void (*run)(struct bus_item *it);  /* deliver to the owner */
    void (*drop)(struct bus_item *it); /* free without delivering (bus_close) */
};

struct bus_dial;

/* A dial of a subscriber to another node's event socket (bus_cluster.c). */
struct bus_sub_remote {
    struct bus_sub_remote *next;
    struct bus_dial *dial;
    bool keep; /* still named by the latest cluster view */
    char url[BUS_URL_MAX];
};

struct bus_sub {
    struct bus_sub *next;
    struct bus *bus;
    nng_socket sock;
    nng_aio *aio;
    bus_event_fn fn;
    void *arg;
    char actor[BUS_NAME_MAX];        /* bus_sub_open_actor: whose events, on every node */
    struct bus_sub_remote *remotes;  /* owner thread only */
};

/* Tap: a batch of records is sent every this many ms while anyone listens, or once this big.
 * Each batch wakes the listener's threads, and on a busy machine those wake-ups, not the
 * copying, were most of what a listener cost the bus (docs/rationale.md). */
#define BUS_TAP_FLUSH_MS 50
#define BUS_TAP_BATCH_BYTES (256 * 1024)
/* Tap: records are copied as they are into buffers of this size, one per thread up to
 * BUS_TAP_SLOTS threads (more share them), and at most BUS_TAP_RAW_MAX buffers wait for the
 * flusher; past that, records are dropped. A message over BUS_TAP_RAW_REC_MAX is cut for
 * display at once, so that it fits. */
#define BUS_TAP_SLOTS 8
#define BUS_TAP_RAW_BYTES (64 * 1024)
#define BUS_TAP_RAW_MAX 64
#define BUS_TAP_RAW_REC_MAX (16 * 1024)
/* Tap: a thread that fills a buffer wakes the flusher early once this many are ready. */
#define BUS_TAP_WAKE_AT 16
struct bus_tap_raw;
/* A slot takes a cache line of its own, so that two threads' exchanges do not take the line
 * from each other's core. */
#define BUS_TAP_LINE 64
struct bus_tap_slot {
    _Atomic(struct bus_tap_raw *) raw;
    char pad[BUS_TAP_LINE - sizeof(void *)];
};

/* Redial (bus_redial.c): every this many ms a thread looks for dials that have had no
 * connection for BUS_REDIAL_AFTER_MS, and dials them anew. */
#define BUS_REDIAL_CHECK_MS 100
#define BUS_REDIAL_AFTER_MS 300

struct bus {
    char proc[BUS_NAME_MAX];
    char self[ENV_SENDER_MAX + 1]; /* "proc" or "proc.N": what faults and the tap name */
    unsigned instance;
    char dir[BUS_URL_MAX];
    size_t recv_max;
    uint32_t timeout_ms;
    unsigned ctx_per_server;

    nng_mtx *qmtx; /* guards the queue */
    struct bus_item *qhead, *qtail;
    int efd;       /* eventfd: readable while the queue is non-empty */

    _Atomic uint64_t next_req_id;
    uint64_t origin;   /* this process's random id, in every request it sends (never 0) */
    unsigned inflight; /* owner thread only */

    struct bus_server *servers;
    struct bus_peer *peers;
    struct bus_sub *subs;
    struct bus_pub *pubs;

    /* tap: records are batched (bus_tap.c) and sent by a thread while anyone listens */
    bool tap_open;
    nng_socket tap;
    atomic_uint tap_pipes;
    /* records copied so far, a buffer per slot, or NULL: a thread takes its slot's buffer
     * with an exchange, copies into it and puts it back, so threads that mirror at once never
     * wait; a full buffer goes on the ready list (pushed with a compare-and-swap) */
    char tap_line[BUS_TAP_LINE]; /* keeps tap_pipes, read by every message, off the slots' lines */
    struct bus_tap_slot tap_slot[BUS_TAP_SLOTS];
    _Atomic(struct bus_tap_raw *) tap_ready;
    atomic_uint tap_nready; /* buffers put on the ready list since the flusher last took it */
    atomic_uint tap_raws; /* buffers allocated, at most BUS_TAP_RAW_MAX */
    nng_mtx *tap_mtx; /* guards what follows */
    nng_cv *tap_cv;   /* wakes the flusher: a listener came, or the bus closes */
    bool tap_closing;
    struct bus_tap_raw *tap_pool; /* buffers the flusher emptied, for reuse while listening */
    nng_thread *tap_flusher;
    /* the listeners' filters (tap_filter.h), from bus.tap events; guarded by tap_mtx */
    struct tap_filter tap_filters[TAP_FILTERS_MAX];
    unsigned tap_nfilters;
    uint64_t tap_filters_until; /* clock_mono_ms past which they are stale */
    atomic_bool tap_filtering;  /* some filter narrows what is mirrored: test each message */
    struct pm_series *tap_records, *tap_filtered, *tap_dropped; /* figures (pmetrics.h) */

    /* every dial of this bus (bus_redial.c); guarded by dial_mtx */
    nng_mtx *dial_mtx;
    nng_cv *dial_cv;
    struct bus_dial *dials;
    bool dial_stopping;
    nng_thread *redialer;
    struct pm_series *redials;
    /* faults */
    nng_mtx *fmtx;
    struct bus_fault fault;
    atomic_bool fault_on;
    bool fault_sub_open;
    nng_socket fault_sub;
    nng_aio *fault_aio;

    /* the cluster view of this node's supervisor (bus_cluster.c); owner thread only */
    struct bus_cluster cluster;
    void *cluster_body; /* the view's event body as it came (the nodes' event sockets) */
    size_t cluster_body_n;
};

/* Queues an item for the owner's thread; callable from any thread. */
void bus_queue_push(struct bus *b, struct bus_item *it);

/* Encodes an envelope around body into a new nng message. */
err_t bus_msg_build(const struct envelope *env, const char *topic, const void *body, size_t n,
                    nng_msg **out);

/* Fills out with a random trace id (ENV_TRACE_LEN hex digits, never all zero, NUL-terminated). */
void bus_trace_fill(char *out);

/* Maps an nng error to err_t (logging nothing). */
err_t bus_nng_err(int rv);

/* Applies socket options every bus socket gets (receive limit, reconnect timing). */
void bus_socket_tune(struct bus *b, nng_socket s);

/*
 * Dials url from s (non-blocking: retried in the background) and keeps the dial alive: one that
 * has had no connection for BUS_REDIAL_AFTER_MS is dialed anew (bus_redial.c says why). out, if
 * not NULL, is for bus_dial_close; a dial not closed so ends with its socket and the bus.
 */
err_t bus_dial(struct bus *b, nng_socket s, const char *url, struct bus_dial **out);
/* Closes a dial of bus_dial (NULL: nothing); its record is freed later. Owner thread. */
void bus_dial_close(struct bus *b, struct bus_dial *d);
/* The dial's current nng dialer (for tests: it changes when it is dialed anew). */
nng_dialer bus_dial_dialer(struct bus *b, const struct bus_dial *d);
/* Starts the redial thread (bus_open); stops it (before the sockets close); frees the records. */
err_t bus_redial_open(struct bus *b);
void bus_redial_stop(struct bus *b);
void bus_redial_free(struct bus *b);
/* Dials each URL of a comma-separated list with bus_dial. */
err_t bus_dial_all(struct bus *b, nng_socket s, const char *urls, const char *what);

/* Tap: an envelope over BUS_TAP_CUT_AT bytes is published with its body cut for display
 * (strings to BUS_TAP_STR_MAX bytes, bins as their length: what tetherctl shows of them). */
#define BUS_TAP_CUT_AT 512
#define BUS_TAP_STR_MAX 256

/* Tap: applies a bus.tap event (the listeners' filters, from the supervisor). nng thread. */
void bus_tap_filters_event(struct bus *b, const struct envelope *env);

/* Tap: mirrors one message if someone listens. env_bytes is the encoded envelope. */
void bus_tap_emit(struct bus *b, const char *dir, const char *peer, const char *topic,
                  const void *env_bytes, size_t n);
err_t bus_tap_open(struct bus *b);
void bus_tap_close(struct bus *b);

/* Faults: what to do with one message. */
enum bus_fault_action {
    BUS_FAULT_PASS,
    BUS_FAULT_DROP,
    BUS_FAULT_DELAY,
    BUS_FAULT_DUP,
};
enum bus_fault_action bus_fault_decide(struct bus *b, uint32_t *delay_ms);
err_t bus_fault_follow(struct bus *b);
void bus_fault_unfollow(struct bus *b);

void bus_subs_close(struct bus *b);

/* Cluster: hands a cluster.members event message to the owner's thread (takes m). nng thread. */
void bus_cluster_event(struct bus *b, nng_msg *m);
/* Cluster: dials the other nodes' event sockets of s's actor that the view names, and
 * closes the dials of nodes no longer in it. Owner thread. */
void bus_cluster_dial(struct bus *b, struct bus_sub *s);
/* Cluster: closes s's dials to other nodes. */
void bus_cluster_undial(struct bus_sub *s);
/*
 * Cluster: the tcp:// request endpoint the view's leader registered for actor, when the leader
 * is another node that registered one; false otherwise (no leader, this node leads). Owner
 * thread.
 */
bool bus_cluster_leader_url(const struct bus *b, const char *actor, char *out, size_t cap);
/* Cluster: points every bus_peer_open_leader peer at the view's leader (bus_call.c). */
void bus_peers_cluster(struct bus *b);
void bus_pubs_close(struct bus *b);

/* Servers (bus_serve.c): closes every server; a request the owner still holds is
 * freed and never replies. Called by bus_close only, before the queue is drained. */
void bus_servers_close(struct bus *b);
/* Peers (bus_call.c): bus_peers_close closes the sockets and stops every live call,
 * whose completions land in the queue; bus_peers_free frees the peers and must come
 * only after bus_close drained the queue of those calls. Called by bus_close only. */
void bus_peers_close(struct bus *b);
void bus_peers_free(struct bus *b);

/* Splits a topic-framed event message: "<topic>\0<envelope>". */
err_t bus_event_split(const void *data, size_t n, const char **topic, const void **env,
                      size_t *env_n);

#endif
