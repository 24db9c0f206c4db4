/*
 * console_tap.c - GET /api/v1/console/tap: the bus tap as an SSE stream, for the console's tap
 * view (docs/console.md). Secret key; filters in the query: actor, type, trace, status,
 * session, env (tap_filter.h).
 *
 * One reader thread per gateway process, running only while someone watches, owns a SUB socket
 * that dials every process's tap (tap_listen.h). It reads each record once, tests it against
 * every viewer's filter, renders a record some viewer wants once (tap_record_json, the lines
 * tetherctl tap prints) and queues it with the set of viewers it is for; an eventfd wakes the
 * h2o loop, which writes it to them. Each viewer's filter is registered with the supervisor
 * (sv.tap_filter, renewed every second), so the processes keep the rest off their taps.
 *
 * The reader thread, not the loop, closes the socket when the last viewer leaves: nng 1.5 may
 * hang closing a SUB socket that is still taking messages (docs/rationale.md). A hang costs
 * that thread only; the next viewer starts a new one.
 *
 * A viewer that does not read loses lines (counted, and said in an `event: dropped`) rather
 * than holding the gateway's memory: past GW_TAP_VIEWER_MAX bytes waiting, its lines are
 * dropped; the reader's own queue is bounded the same way.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/supplemental/util/platform.h>

#include "cfg.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "http.h"
#include "jbuf.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "proc.h"
#include "tap_filter.h"
#include "tap_listen.h"
#include "tap_record.h"

#define GW_TAP_VIEWERS 32            /* at once, per gateway process */
#define GW_TAP_QUEUE_MAX (4u << 20)  /* rendered lines the loop has not taken yet */
#define GW_TAP_VIEWER_MAX (1u << 20) /* bytes one viewer may have waiting */
#define GW_TAP_TICK_MS 1000          /* filter renewals, pings */
#define GW_TAP_PING_MS 10000

struct gw_tap_line {
    struct gw_tap_line *next;
    uint32_t viewers; /* bit i: viewer slot i wants it */
    size_t n;
    char text[];
};

struct gw_tap_viewer;

/* What the reader and the loop share; mu guards all of it. */
struct gw_tap_shared {
    pthread_mutex_t mu;
    struct tap_filter want[GW_TAP_VIEWERS];
    uint32_t active; /* viewer slots in use */
    unsigned gen;    /* bumped when a viewer comes or goes: the reader's copy is then stale */
    struct gw_tap_line *head, *tail;
    size_t queued;
    uint64_t dropped; /* lines the queue had no room for */
};

/* One reader thread; it frees itself when told to stop. */
struct gw_tap_reader {
    struct gw_tap_hub *hub;
    atomic_bool stop;
    char bus_dir[BUS_URL_MAX];
    size_t recv_max;
};

struct gw_tap_hub {
    struct gw *gw;
    struct gw_tap_shared sh;
    struct gw_tap_reader *reader; /* the running one, or NULL */
    int efd;                      /* the reader's wake-up, read by the loop through esock */
    h2o_socket_t *esock;
    h2o_timeout_t tick;
    h2o_timeout_entry_t tick_entry;
    struct gw_tap_viewer *viewers[GW_TAP_VIEWERS];
    unsigned serial;
};

struct gw_tap_viewer {
    h2o_generator_t gen; /* first: h2o hands it back */
    struct gw_tap_hub *hub;
    h2o_req_t *req; /* NULL once the client is gone */
    unsigned slot;
    struct tap_filter want;
    char reg_id[64];
    struct jbuf out, pend;
    bool sending;
    uint64_t lines, bytes, dropped, dropped_told, last_ping_mono;
    struct gw_stream_log log;
};

struct gw_tap_ref {
    struct gw_tap_viewer *v;
};

static struct gw_tap_hub *gw_tap_hub_self; /* one per process, made on first use */

/* ---- the reader thread ---- */

static void gw_tap_reader_push(struct gw_tap_hub *hub, uint32_t viewers, struct jbuf *line)
{
    struct gw_tap_shared *sh = &hub->sh;
    struct gw_tap_line *l = malloc(sizeof(*l) + line->n);
    if (!l)
        return;
    l->next = NULL;
    l->viewers = viewers;
    l->n = line->n;
    memcpy(l->text, line->p, line->n);
    pthread_mutex_lock(&sh->mu);
    bool wake = sh->head == NULL;
    if (sh->queued + l->n > GW_TAP_QUEUE_MAX) {
        sh->dropped++;
        free(l);
        l = NULL;
    } else {
        if (sh->tail)
            sh->tail->next = l;
        else
            sh->head = l;
        sh->tail = l;
        sh->queued += l->n;
    }
    pthread_mutex_unlock(&sh->mu);
    if (l && wake) {
        uint64_t one = 1;
        (void)!write(hub->efd, &one, sizeof(one));
    }
}

/* One tap message: every record some viewer wants, rendered once. */
static void gw_tap_reader_message(struct gw_tap_hub *hub, const char *buf, size_t n,
                                  struct tap_filter *want, unsigned *gen, uint32_t *active,
                                  struct tap_record *rec)
{
    struct mp_reader r;
    pthread_mutex_lock(&hub->sh.mu);
    if (*gen != hub->sh.gen) {
        *gen = hub->sh.gen;
        *active = hub->sh.active;
        memcpy(want, hub->sh.want, sizeof(hub->sh.want));
    }
    pthread_mutex_unlock(&hub->sh.mu);

    mp_reader_init(&r, buf, n);
    while (mp_reader_left(&r) > 0) {
        err_t rc = tap_record_next(&r, rec);
        if (rc == ERR_PROTO)
            return;
        if (rc != OK)
            continue;
        uint32_t viewers = 0;
        for (unsigned i = 0; i < GW_TAP_VIEWERS; i++)
            if ((*active & (1u << i)) && tap_record_match(&want[i], rec))
                viewers |= 1u << i;
        if (!viewers)
            continue;
        struct jbuf line = {0};
        jbuf_puts(&line, "event: record\ndata: ");
        tap_record_json(rec, &line);
        jbuf_puts(&line, "\n\n");
        if (line.err == OK)
            gw_tap_reader_push(hub, viewers, &line);
        jbuf_free(&line);
    }
}

static void *gw_tap_reader_main(void *arg)
{
    struct gw_tap_reader *rd = arg;
    struct tap_dials *dials = calloc(1, sizeof(*dials));
    struct tap_filter *want = calloc(GW_TAP_VIEWERS, sizeof(*want));
    struct tap_record *rec = malloc(sizeof(*rec));
    nng_socket sub;
    bool open = false;
    uint64_t last_scan = 0;
    unsigned gen = ~0u;
    uint32_t active = 0;

    if (dials && want && rec && nng_sub0_open(&sub) == 0) {
        open = true;
        (void)nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
        (void)nng_socket_set_size(sub, NNG_OPT_RECVMAXSZ, rd->recv_max * 2);
        (void)nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 200);
        (void)nng_socket_set_ms(sub, NNG_OPT_RECONNMINT, 50);
    } else {
        LOG_WARN("gw.tap_failed", "could not open the console's tap reader");
    }
    while (open && !atomic_load(&rd->stop)) {
        uint64_t now = clock_mono_ms();
        if (now - last_scan >= 1000) {
            tap_listen_rescan(sub, rd->bus_dir, dials);
            last_scan = now;
        }
        char *buf;
        size_t n;
        if (nng_recv(sub, &buf, &n, NNG_FLAG_ALLOC) != 0)
            continue;
        if (!atomic_load(&rd->stop))
            gw_tap_reader_message(rd->hub, buf, n, want, &gen, &active, rec);
        nng_free(buf, n);
    }
    if (open)
        nng_close(sub); /* may hang in nng 1.5 under load: this thread's problem alone */
    free(dials);
    free(want);
    free(rec);
    free(rd);
    return NULL;
}

static void gw_tap_reader_start(struct gw_tap_hub *hub)
{
    pthread_t th;
    pthread_attr_t attr;
    char dir[BUS_URL_MAX];
    struct gw_tap_reader *rd = xcalloc(1, sizeof(*rd));
    rd->hub = hub;
    cfg_bus_dir(&hub->gw->cfg, dir, sizeof(dir));
    snprintf(rd->bus_dir, sizeof(rd->bus_dir), "%s", dir);
    rd->recv_max = (size_t)hub->gw->cfg.bus_recv_max;
    atomic_init(&rd->stop, false);
    /* the loop's signals stay blocked in the thread, as nng's own threads have them */
    if (pthread_attr_init(&attr) != 0 ||
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0 ||
        pthread_create(&th, &attr, gw_tap_reader_main, rd) != 0) {
        LOG_WARN("gw.tap_failed", "could not start the console's tap reader: %s", strerror(errno));
        free(rd);
        return;
    }
    pthread_attr_destroy(&attr);
    hub->reader = rd;
}

/* ---- the loop's side ---- */

static void gw_tap_viewer_flush(struct gw_tap_viewer *v)
{
    if (!v->req || v->sending || v->pend.n == 0)
        return;
    if (v->pend.err != OK) {
        h2o_send(v->req, NULL, 0, H2O_SEND_STATE_ERROR);
        v->sending = true;
        return;
    }
    struct jbuf t = v->out;
    v->out = v->pend;
    v->pend = t;
    v->pend.n = 0;
    h2o_iovec_t iov = h2o_iovec_init(v->out.p, v->out.n);
    v->bytes += v->out.n;
    v->sending = true;
    h2o_send(v->req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void gw_tap_viewer_put(struct gw_tap_viewer *v, const char *s, size_t n, bool line)
{
    if (!v->req)
        return;
    if (line && v->pend.n + n > GW_TAP_VIEWER_MAX) {
        v->dropped++;
        return;
    }
    if (line && v->dropped > v->dropped_told && v->pend.n == 0) {
        jbuf_fmt(&v->pend, "event: dropped\ndata: {\"lines\":%" PRIu64 "}\n\n", v->dropped);
        v->dropped_told = v->dropped;
    }
    jbuf_put(&v->pend, s, n);
    if (line)
        v->lines++;
    gw_tap_viewer_flush(v);
}

static void gw_tap_on_wake(h2o_socket_t *sock, const char *err)
{
    struct gw_tap_hub *hub = sock->data;
    uint64_t count;
    (void)err;
    (void)!read(hub->efd, &count, sizeof(count));
    pthread_mutex_lock(&hub->sh.mu);
    struct gw_tap_line *l = hub->sh.head;
    hub->sh.head = hub->sh.tail = NULL;
    hub->sh.queued = 0;
    pthread_mutex_unlock(&hub->sh.mu);
    while (l) {
        struct gw_tap_line *next = l->next;
        for (unsigned i = 0; i < GW_TAP_VIEWERS; i++)
            if ((l->viewers & (1u << i)) && hub->viewers[i])
                gw_tap_viewer_put(hub->viewers[i], l->text, l->n, true);
        free(l);
        l = next;
    }
}

static void gw_tap_ignore(void *arg, err_t rc, const struct envelope *env)
{
    (void)arg;
    (void)rc;
    (void)env;
}

/* sv.tap_filter for one viewer: its filter, or its end. The answer does not matter: without a
 * supervisor the processes send everything and the filter is applied here. */
static void gw_tap_register(struct gw_tap_hub *hub, const struct gw_tap_viewer *v, bool cancel)
{
    struct mp_writer w;
    mp_writer_init(&w);
    if (tap_filter_request_put(&w, v->reg_id, &v->want, cancel) == OK &&
        hub->gw->actors[GW_PEER_SUPERVISOR])
        (void)bus_call(hub->gw->actors[GW_PEER_SUPERVISOR], MSG_SV_TAP_FILTER, mp_writer_data(&w),
                       mp_writer_len(&w), NULL, gw_tap_ignore, NULL);
    mp_writer_fini(&w);
}

static void gw_tap_on_tick(h2o_timeout_entry_t *entry)
{
    struct gw_tap_hub *hub = H2O_STRUCT_FROM_MEMBER(struct gw_tap_hub, tick_entry, entry);
    uint64_t now = clock_mono_ms();
    bool any = false;
    for (unsigned i = 0; i < GW_TAP_VIEWERS; i++) {
        struct gw_tap_viewer *v = hub->viewers[i];
        if (!v)
            continue;
        any = true;
        gw_tap_register(hub, v, false);
        if (now - v->last_ping_mono >= GW_TAP_PING_MS) {
            static const char ping[] = "event: ping\ndata: {}\n\n";
            v->last_ping_mono = now;
            gw_tap_viewer_put(v, ping, sizeof(ping) - 1, false);
        }
    }
    if (any)
        h2o_timeout_link(hub->gw->ctx.loop, &hub->tick, &hub->tick_entry);
}

static struct gw_tap_hub *gw_tap_hub_get(struct gw *gw)
{
    if (gw_tap_hub_self)
        return gw_tap_hub_self;
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0)
        return NULL;
    struct gw_tap_hub *hub = xcalloc(1, sizeof(*hub));
    hub->gw = gw;
    hub->efd = efd;
    pthread_mutex_init(&hub->sh.mu, NULL);
    hub->esock = h2o_evloop_socket_create(gw->ctx.loop, dup(efd), H2O_SOCKET_FLAG_DONT_READ);
    hub->esock->data = hub;
    h2o_socket_read_start(hub->esock, gw_tap_on_wake);
    h2o_timeout_init(gw->ctx.loop, &hub->tick, GW_TAP_TICK_MS);
    hub->tick_entry.cb = gw_tap_on_tick;
    gw_tap_hub_self = hub;
    return hub;
}

static void gw_tap_viewer_free_if_done(struct gw_tap_viewer *v)
{
    if (v->req || v->sending)
        return;
    jbuf_free(&v->out);
    jbuf_free(&v->pend);
    free(v);
}

/* The request is gone (the client left, or the gateway ends the response). */
static void gw_tap_ref_dispose(void *p)
{
    struct gw_tap_ref *ref = p;
    struct gw_tap_viewer *v = ref->v;
    struct gw_tap_hub *hub = v->hub;
    pthread_mutex_lock(&hub->sh.mu);
    hub->sh.active &= ~(1u << v->slot);
    hub->sh.gen++;
    uint32_t active = hub->sh.active;
    pthread_mutex_unlock(&hub->sh.mu);
    hub->viewers[v->slot] = NULL;
    gw_tap_register(hub, v, true);
    if (!active && hub->reader) {
        atomic_store(&hub->reader->stop, true); /* it frees itself */
        hub->reader = NULL;
    }
    gw_stream_log_end(&v->log, v->bytes, v->lines, false);
    v->req = NULL;
    v->sending = false; /* h2o calls nothing more on a disposed request */
    gw_tap_viewer_free_if_done(v);
}

static void gw_tap_on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    struct gw_tap_viewer *v = (struct gw_tap_viewer *)gen;
    (void)req;
    v->sending = false;
    v->out.n = 0;
    gw_tap_viewer_flush(v);
}

static void gw_tap_on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)gen;
    (void)req; /* the pool's dispose (gw_tap_ref_dispose) follows and does the work */
}

void gw_on_console_tap(struct gw_call *c)
{
    struct tap_filter want = {0};
    for (unsigned i = 0; i < tap_filter_nnames; i++) {
        const char *name = tap_filter_names[i];
        char v[sizeof(want.session) + 1];
        if (gw_query(c->req, name, v, sizeof(v)) && tap_filter_set(&want, name, v) != OK) {
            char msg[96];
            snprintf(msg, sizeof(msg), "%s: 1 to %zu bytes, no NUL", name, tap_filter_room(name));
            gw_respond_error(c, 400, msg, GW_NO_RETRY);
            return;
        }
    }
    struct gw_tap_hub *hub = gw_tap_hub_get(c->gw);
    unsigned slot = 0;
    while (hub && slot < GW_TAP_VIEWERS && hub->viewers[slot])
        slot++;
    if (!hub || slot == GW_TAP_VIEWERS) {
        gw_respond_error(c, 503, "Too many tap viewers on this gateway", 0);
        return;
    }
    gw_add_header(c, "cache-control", "no-cache");
    struct gw_stream_log log;
    h2o_req_t *req = gw_call_stream(c, 200, "text/event-stream", &log);
    if (!req)
        return;
    struct gw_tap_viewer *v = xcalloc(1, sizeof(*v));
    struct gw_tap_ref *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), gw_tap_ref_dispose);
    ref->v = v;
    v->hub = hub;
    v->req = req;
    v->slot = slot;
    v->want = want;
    v->log = log;
    v->last_ping_mono = clock_mono_ms();
    snprintf(v->reg_id, sizeof(v->reg_id), "gateway.%u.console.%u", proc_instance(), ++hub->serial);
    v->gen.proceed = gw_tap_on_proceed;
    v->gen.stop = gw_tap_on_stop;
    hub->viewers[slot] = v;
    pthread_mutex_lock(&hub->sh.mu);
    hub->sh.want[slot] = want;
    hub->sh.active |= 1u << slot;
    hub->sh.gen++;
    pthread_mutex_unlock(&hub->sh.mu);
    gw_tap_register(hub, v, false);
    if (!hub->reader)
        gw_tap_reader_start(hub);
    if (!h2o_timeout_is_linked(&hub->tick_entry)) /* c has ended: the hub knows the gateway */
        h2o_timeout_link(hub->gw->ctx.loop, &hub->tick, &hub->tick_entry);
    h2o_start_response(req, &v->gen);
    /* a first frame, so the headers go out now and the page knows it is connected (h2o holds
     * them back until there is a body to send) */
    static const char hello[] = "event: ping\ndata: {}\n\n";
    gw_tap_viewer_put(v, hello, sizeof(hello) - 1, false);
}
