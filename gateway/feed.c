/*
 * feed.c - SSE responses following record streams, and the fan-out of the
 * stream-broker's events to them (see feed.h).
 *
 * Output goes through two buffers: `out` is what h2o is writing (it must
 * stay valid until h2o calls proceed), `pend` collects what comes
 * meanwhile. Only one h2o_send is ever outstanding, as h2o requires.
 */
#include "feed.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "clock.h"
#include "gw.h"
#include "log.h"
#include "metrics.h"
#include "mem.h"
#include "msg.h"

#define GW_FEED_TICK_MS 1000
#define GW_FEED_READ_COUNT 1000
#define GW_FEED_BUCKETS 4096
#define GW_FEED_STALL_MS 60000 /* a write the client has not taken by then cuts it off */
/* An idle feed whose stream has events re-reads it this long after its last read (at the next
 * ping): the bound on how long a lost last event can delay a record (feed.h) */
#define GW_FEED_RESYNC_MS 60000

struct gw_feed_topic;

struct gw_feed {
    h2o_generator_t gen; /* first: h2o hands it back */
    struct gw *gw;
    h2o_req_t *req;      /* NULL once the client is gone */
    struct gw_feed_ref *ref;
    struct gw_feed_opts o;
    struct gw_feed_topic *topic;
    struct gw_feed *tprev, *tnext; /* in topic->feeds */
    h2o_timeout_entry_t tick;
    uint64_t next_seq;
    uint64_t deadline_mono, next_ping_mono, started_mono;
    uint64_t read_mono; /* when the last read was sent */
    uint64_t delivered, bytes;
    unsigned calls;       /* bus calls in flight: the feed outlives its client until they end */
    bool reading, read_again, live, sending, final_sent, ending, cut;
    bool read_later; /* a read waits until the client has taken what is in flight */
    size_t owed;     /* bytes of live records waiting in the broker for a read_later */
    uint64_t send_started_mono;
    struct jbuf out, pend;
    struct gw_stream_log log; /* written when the stream ends */
};

/* The pool-side half: tells the feed its request went away. */
struct gw_feed_ref {
    struct gw_feed *feed;
};

struct gw_feed_topic {
    struct gw_feed_topic *next; /* in the bucket */
    struct gw_feed *feeds;
    unsigned nfeeds;
    bool polled; /* no events for it (no subscription): its feeds re-read on every ping */
    char name[];
};

struct gw_feeds {
    h2o_timeout_t tick;
    struct bus_sub *sub; /* the stream-broker's events; NULL: feeds poll on every ping */
    struct gw_feed_topic *buckets[GW_FEED_BUCKETS];
    unsigned nfeeds;
    size_t buffer_max;
};

static void gw_feed_read(struct gw_feed *f);
static void gw_feeds_on_event(void *arg, const char *topic, const struct envelope *env);

/* ---- the registry of topics ---- */

static unsigned gw_topic_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % GW_FEED_BUCKETS;
}

static struct gw_feeds *gw_feeds_get(struct gw *gw)
{
    char urls[BUS_URL_MAX * 8];
    if (gw->feeds)
        return gw->feeds;
    struct gw_feeds *fs = xcalloc(1, sizeof(*fs));
    fs->buffer_max = (size_t)gw->gw.sse_buffer;
    h2o_timeout_init(gw->ctx.loop, &fs->tick, GW_FEED_TICK_MS);
    gw_events_urls(gw, "stream-broker", urls, sizeof(urls));
    if (!urls[0] || bus_sub_open(gw->bus, urls, gw_feeds_on_event, gw, &fs->sub) != OK) {
        LOG_WARN("gw.feed_events", "cannot follow the stream-broker's events; feeds poll");
        fs->sub = NULL;
    }
    gw->feeds = fs;
    return fs;
}

static struct gw_feed_topic *gw_topic_find(struct gw_feeds *fs, const char *name)
{
    for (struct gw_feed_topic *t = fs->buckets[gw_topic_hash(name)]; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static void gw_topic_join(struct gw_feeds *fs, struct gw_feed *f, const char *name)
{
    struct gw_feed_topic *t = gw_topic_find(fs, name);
    if (!t) {
        size_t n = strlen(name);
        t = xcalloc(1, sizeof(*t) + n + 1);
        memcpy(t->name, name, n + 1);
        unsigned b = gw_topic_hash(name);
        t->next = fs->buckets[b];
        fs->buckets[b] = t;
        t->polled = !fs->sub;
        if (fs->sub && bus_sub_add(fs->sub, name) != OK) {
            LOG_WARN("gw.feed_events", "cannot subscribe to a stream's events; it is polled");
            t->polled = true;
        }
    }
    f->topic = t;
    f->tprev = NULL;
    f->tnext = t->feeds;
    if (t->feeds)
        t->feeds->tprev = f;
    t->feeds = f;
    t->nfeeds++;
    fs->nfeeds++;
}

static void gw_topic_leave(struct gw_feeds *fs, struct gw_feed *f)
{
    struct gw_feed_topic *t = f->topic;
    if (!t)
        return;
    if (f->tprev)
        f->tprev->tnext = f->tnext;
    else
        t->feeds = f->tnext;
    if (f->tnext)
        f->tnext->tprev = f->tprev;
    f->topic = NULL;
    fs->nfeeds--;
    if (--t->nfeeds > 0)
        return;
    for (struct gw_feed_topic **pp = &fs->buckets[gw_topic_hash(t->name)]; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    if (fs->sub)
        (void)bus_sub_remove(fs->sub, t->name);
    free(t);
}

/* ---- lifetime ---- */

static void gw_feed_free_if_done(struct gw_feed *f)
{
    if (f->req || f->calls > 0)
        return;
    jbuf_free(&f->out);
    jbuf_free(&f->pend);
    free(f);
}

/* The request is gone (client left, or the response ended and h2o disposed of it). */
static void gw_feed_detach(struct gw_feed *f)
{
    struct gw_feeds *fs = f->gw->feeds;
    if (h2o_timeout_is_linked(&f->tick))
        h2o_timeout_unlink(&f->tick);
    gw_topic_leave(fs, f);
    if (f->req) {
        gw_metrics_sse_close(f->delivered, f->bytes);
        gw_stream_log_end(&f->log, f->bytes, f->delivered, f->cut);
    }
    f->req = NULL;
    gw_feed_free_if_done(f);
}

static void gw_feed_ref_dispose(void *p)
{
    struct gw_feed_ref *ref = p;
    if (ref->feed)
        gw_feed_detach(ref->feed);
}

/* ---- output ---- */

static h2o_socket_t *gw_feed_socket(struct gw_feed *f)
{
    h2o_conn_t *conn = f->req ? f->req->conn : NULL;
    return conn && conn->callbacks->get_socket ? conn->callbacks->get_socket(conn) : NULL;
}

/*
 * True when the client has closed its side. h2o does not read an HTTP/1 connection while its
 * response streams, so an idle feed would only learn of a departed client when a ping fails
 * (5-15 s on), holding the socket and the feed meanwhile; under connect/disconnect churn that
 * ran a gateway out of descriptors. A pipelined request or HTTP/2 frames are data, not an end.
 */
static bool gw_feed_client_gone(struct gw_feed *f)
{
    h2o_socket_t *sock = gw_feed_socket(f);
    char c;
    if (!sock)
        return false;
    ssize_t r = recv(h2o_socket_get_fd(sock), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void gw_feed_flush(struct gw_feed *f)
{
    if (!f->req || f->sending || f->final_sent)
        return;
    if (f->pend.err != OK) { /* out of memory for this client: end it */
        f->cut = true;
        f->final_sent = true;
        h2o_send(f->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    if (f->pend.n == 0 && !f->ending)
        return;
    struct jbuf t = f->out;
    f->out = f->pend;
    f->pend = t;
    f->pend.n = 0;
    h2o_iovec_t iov = h2o_iovec_init(f->out.p ? f->out.p : "", f->out.n);
    f->bytes += f->out.n;
    f->sending = true;
    f->send_started_mono = clock_mono_ms();
    if (f->ending) {
        f->final_sent = true;
        h2o_send(f->req, &iov, 1, H2O_SEND_STATE_FINAL);
    } else {
        h2o_send(f->req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
    }
}

/* Ends a client that does not read. h2o still holds a write for it: shutting the socket fails
 * that write, and h2o then closes the connection and disposes of the request (which detaches
 * the feed). */
static void gw_feed_cut(struct gw_feed *f)
{
    h2o_socket_t *sock = gw_feed_socket(f);
    f->cut = true;
    if (sock)
        (void)shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

/*
 * Sends or keeps what was just added to pend (which held `before` bytes). What waits behind a
 * write the client has not taken is live records, in pend or owed (left in the broker for a
 * read), and pings: past the bound the client is cut off. A frame of any size may wait alone,
 * so one large record does not cut off a client that reads.
 */
static void gw_feed_queued(struct gw_feed *f, size_t before)
{
    if (f->sending && before > 0 && f->pend.n + f->owed > f->gw->feeds->buffer_max) {
        gw_feed_cut(f);
        return;
    }
    gw_feed_flush(f);
}

/* Queues text for the client. */
static void gw_feed_put(struct gw_feed *f, const char *s, size_t n)
{
    if (!f->req || f->final_sent)
        return;
    size_t before = f->pend.n;
    jbuf_put(&f->pend, s, n);
    gw_feed_queued(f, before);
}

static void gw_feed_end(struct gw_feed *f, const char *error)
{
    char buf[256];
    if (!f->req || f->ending)
        return;
    if (error) {
        int w = snprintf(buf, sizeof(buf), "event: error\ndata: %s\n\n", error);
        jbuf_put(&f->pend, buf, (size_t)w);
    } else {
        jbuf_puts(&f->pend, "data: [DONE]\n\n");
    }
    f->ending = true;
    if (h2o_timeout_is_linked(&f->tick))
        h2o_timeout_unlink(&f->tick);
    gw_feed_flush(f);
}

static void gw_feed_on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    struct gw_feed *f = (struct gw_feed *)gen;
    (void)req;
    f->sending = false;
    f->out.n = 0;
    gw_feed_flush(f);
    if (f->read_later && !f->sending && f->req && !f->ending) {
        f->read_later = false;
        gw_feed_read(f);
    }
}

static void gw_feed_on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)gen;
    (void)req; /* the pool's dispose (gw_feed_ref_dispose) follows and does the work */
}

/* Sends `event: ping` and picks the next one 5-15 s on, randomised so that 10,000 idle feeds
 * do not ping in step. */
static void gw_feed_ping(struct gw_feed *f, uint64_t now)
{
    char ping[96];
    int w = snprintf(ping, sizeof(ping), "event: ping\ndata: {\"timestamp\":%" PRIu64 "}\n\n",
                     clock_wall_ms());
    f->next_ping_mono = now + 5000 + nng_random() % 10000;
    gw_feed_put(f, ping, (size_t)w);
}

/* Appends an `event: batch` frame of records already rendered as a JSON array body. */
static void gw_feed_batch(struct gw_feed *f, const char *records, size_t n, unsigned count,
                          uint64_t last_seq, uint64_t tail, uint64_t tail_ts)
{
    char head[128], tailj[96];
    uint64_t now = clock_mono_ms();
    size_t before = f->pend.n;
    if (!f->req || f->final_sent)
        return;
    f->delivered += count;
    int w = snprintf(head, sizeof(head), "event: batch\nid: %" PRIu64 ",%" PRIu64 ",%" PRIu64
                     "\ndata: {\"records\":[",
                     last_seq, f->delivered, f->bytes + f->pend.n + n);
    jbuf_put(&f->pend, head, (size_t)w);
    jbuf_put(&f->pend, records, n);
    w = snprintf(tailj, sizeof(tailj), "],\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64
                 "}}\n\n",
                 tail, tail_ts);
    jbuf_put(&f->pend, tailj, (size_t)w);
    f->deadline_mono = now + f->o.wait_ms; /* the idle wait restarts after every batch */
    gw_feed_queued(f, before);
}

/* ---- records ---- */

void gw_stream_put_name(struct mp_writer *w, const struct gw_feed_opts *o, uint32_t extra)
{
    mp_put_map(w, 3 + extra);
    mp_put_kv_str(w, "env", o->env);
    mp_put_kv_str(w, "key", o->key);
    mp_put_kv_str(w, "io", o->io);
}

/* One of a record's byte strings as a JSON string, in format f. */
static void gw_record_bytes(struct jbuf *b, enum gw_rec_format f, struct slice s)
{
    if (f == GW_REC_BASE64)
        jbuf_base64(b, s.p, s.n);
    else
        jbuf_str(b, s.p, s.n, 0);
}

err_t gw_record_json(struct mp_reader *r, struct jbuf *b, enum gw_rec_format f, uint64_t *seq,
                     uint64_t *ts_out)
{
    uint32_t nk, nh;
    uint64_t ts = 0;
    struct slice body = SLICE_NULL;
    struct mp_reader headers = {0};
    bool have_headers = false;
    *seq = UINT64_MAX;
    if (mp_read_map(r, &nk) != OK)
        return ERR_PROTO;
    for (uint32_t i = 0; i < nk; i++) {
        struct slice k;
        if (mp_read_str(r, &k) != OK)
            return ERR_PROTO;
        if (slice_eq(k, "seq")) {
            if (mp_read_uint(r, seq) != OK)
                return ERR_PROTO;
        } else if (slice_eq(k, "ts")) {
            if (mp_read_uint(r, &ts) != OK)
                return ERR_PROTO;
        } else if (slice_eq(k, "body")) {
            if (mp_read_bin(r, &body) != OK)
                return ERR_PROTO;
        } else if (slice_eq(k, "headers")) {
            headers = *r;
            have_headers = true;
            if (mp_skip(r, NULL) != OK)
                return ERR_PROTO;
        } else if (mp_skip(r, NULL) != OK) {
            return ERR_PROTO;
        }
    }
    if (*seq == UINT64_MAX)
        return ERR_PROTO;
    if (ts_out)
        *ts_out = ts;
    jbuf_fmt(b, "{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64, *seq, ts);
    if (have_headers) {
        if (mp_read_array(&headers, &nh) != OK)
            return ERR_PROTO;
        if (nh > 0) {
            jbuf_puts(b, ",\"headers\":[");
            for (uint32_t i = 0; i < nh; i++) {
                uint32_t two;
                struct slice hn, hv;
                if (mp_read_array(&headers, &two) != OK || two != 2 ||
                    mp_read_str(&headers, &hn) != OK || mp_read_str(&headers, &hv) != OK)
                    return ERR_PROTO;
                jbuf_puts(b, i ? ",[" : "[");
                gw_record_bytes(b, f, hn);
                jbuf_put(b, ",", 1);
                gw_record_bytes(b, f, hv);
                jbuf_put(b, "]", 1);
            }
            jbuf_put(b, "]", 1);
        }
    }
    if (body.n > 0) {
        jbuf_puts(b, ",\"body\":");
        gw_record_bytes(b, f, body);
    }
    jbuf_put(b, "}", 1);
    return b->err;
}

static void gw_feed_on_read(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_feed *f = arg;
    struct mp_reader v;
    uint32_t n = 0;
    uint64_t tail = 0, tail_ts = 0, last = 0;
    unsigned count = 0;
    struct jbuf recs = {0};

    f->calls--;
    f->reading = false;
    if (!f->req || f->ending) {
        gw_feed_free_if_done(f);
        return;
    }
    if (rc != OK) {
        /* the broker is away: tell the client, which reconnects with Last-Event-ID */
        LOG_WARN("sse.read_failed", "reading a stream failed: %s", err_str(rc));
        gw_feed_end(f, "stream read failed; reconnect with Last-Event-ID");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "tail", &v) == OK)
        (void)mp_read_uint(&v, &tail);
    if (mp_map_find(env->body.p, env->body.n, "tail_ts", &v) == OK)
        (void)mp_read_uint(&v, &tail_ts);
    if (mp_map_find(env->body.p, env->body.n, "records", &v) == OK && mp_read_array(&v, &n) == OK) {
        for (uint32_t i = 0; i < n; i++) {
            uint64_t seq;
            size_t mark = recs.n;
            if (count)
                jbuf_put(&recs, ",", 1);
            if (gw_record_json(&v, &recs, f->o.format, &seq, NULL) != OK) {
                jbuf_free(&recs);
                LOG_WARN("sse.read_failed", "the stream-broker sent a malformed record");
                gw_feed_end(f, "malformed record from the stream store");
                return;
            }
            if (seq < f->next_seq) { /* already delivered (a concurrent event) */
                recs.n = mark;
                continue;
            }
            f->next_seq = seq + 1;
            last = seq;
            count++;
        }
    }
    /* nothing at or after next_seq: a start beyond the tail starts at the tail (S2's clamp),
     * and a cursor inside trimmed history moves past it */
    if (n == 0)
        f->next_seq = tail;
    if (count)
        gw_feed_batch(f, recs.p, recs.n, count, last, tail, tail_ts);
    jbuf_free(&recs);
    if (!f->req || f->ending)
        return;
    if (n >= GW_FEED_READ_COUNT || f->read_again || (n > 0 && f->next_seq < tail)) {
        f->read_again = false;
        gw_feed_read(f);
        return;
    }
    if (f->o.drain) {
        gw_feed_end(f, NULL);
        return;
    }
    if (!f->live) {
        /* at the tail: the first ping says so, as S2 does */
        f->live = true;
        gw_feed_ping(f, clock_mono_ms());
    }
}

static void gw_feed_read(struct gw_feed *f)
{
    struct mp_writer w;
    struct bus_trace trace;
    if (f->reading) {
        f->read_again = true;
        return;
    }
    if (f->sending) {
        /* pull, not push: a backlog of megabytes reaches the client at its pace, and only
         * one read's worth is ever held for it */
        f->read_later = true;
        return;
    }
    f->owed = 0; /* this read brings them */
    f->read_mono = clock_mono_ms();
    bus_trace_new(&trace);
    mp_writer_init(&w);
    gw_stream_put_name(&w, &f->o, 2);
    mp_put_kv_uint(&w, "from", f->next_seq);
    mp_put_kv_uint(&w, "count", GW_FEED_READ_COUNT);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_call(f->gw->actors[GW_ACTOR_STREAM_BROKER], MSG_STREAM_READ, mp_writer_data(&w),
                      mp_writer_len(&w), &trace, gw_feed_on_read, f);
    mp_writer_fini(&w);
    if (rc != OK) {
        gw_feed_end(f, "stream read failed; reconnect with Last-Event-ID");
        return;
    }
    f->reading = true;
    f->calls++;
    gw_metrics_feed_read();
}

/* ---- events and time ---- */

static void gw_feeds_on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct gw *gw = arg;
    struct gw_feeds *fs = gw->feeds;
    struct mp_reader v;
    struct gw_feed_topic *t;
    if (!fs || !(t = gw_topic_find(fs, topic)))
        return;
    if (mp_map_find(env->body.p, env->body.n, "record", &v) != OK)
        return;
    /* render once for every feed of the topic that wants that format */
    struct jbuf recs[GW_REC_BASE64 + 1] = {{0}}, *rec;
    bool rendered[GW_REC_BASE64 + 1] = {false};
    uint64_t seq, ts;
    struct mp_reader start = v;
    if (gw_record_json(&v, &recs[GW_REC_RAW], GW_REC_RAW, &seq, &ts) != OK) {
        jbuf_free(&recs[GW_REC_RAW]);
        return;
    }
    rendered[GW_REC_RAW] = true;
    for (struct gw_feed *f = t->feeds, *next; f; f = next) {
        next = f->tnext; /* delivering may end (and unlink) f */
        if (f->ending)
            continue;
        rec = &recs[f->o.format];
        if (!rendered[f->o.format]) {
            struct mp_reader again = start;
            rendered[f->o.format] = true;
            (void)gw_record_json(&again, rec, f->o.format, &seq, &ts); /* parsed once already */
        }
        if (f->reading) {
            f->read_again = true; /* its read may have run before this record: read once more */
        } else if (!f->live) {
            continue;
        } else if (seq == f->next_seq) {
            f->next_seq = seq + 1;
            gw_feed_batch(f, rec->p, rec->n, 1, seq, seq + 1, ts);
        } else if (seq > f->next_seq) {
            if (f->sending) { /* the read waits for the client: count what it will owe */
                f->owed += rec->n;
                if (f->pend.n + f->owed > fs->buffer_max) {
                    gw_feed_cut(f);
                    continue;
                }
            }
            gw_feed_read(f); /* a gap: read it from the store, in order */
        }
    }
    for (unsigned i = 0; i <= GW_REC_BASE64; i++)
        jbuf_free(&recs[i]);
}

static void gw_feed_on_tick(h2o_timeout_entry_t *entry)
{
    struct gw_feed *f = (struct gw_feed *)((char *)entry - offsetof(struct gw_feed, tick));
    uint64_t now = clock_mono_ms();
    if (!f->req || f->ending)
        return;
    if (f->sending && !f->cut && now - f->send_started_mono > GW_FEED_STALL_MS) {
        /* a write untaken this long: the client has stopped reading, whatever it is owed */
        gw_feed_cut(f);
    } else if (!f->sending && gw_feed_client_gone(f)) {
        /* ends the response; h2o disposes of the request, which detaches (and may free) f */
        f->ending = true;
        f->final_sent = true;
        h2o_send(f->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    if (f->live && now >= f->deadline_mono) {
        gw_feed_end(f, NULL);
        return;
    }
    if (f->live && now >= f->next_ping_mono) {
        gw_feed_ping(f, now);
        if (!f->req)
            return;
        /* a gap shows itself in the next event (seq past next_seq: read at once); only a lost
         * last event shows nothing, so an idle feed re-reads rarely - or on every ping when
         * its stream has no events to follow */
        if (f->topic && (f->topic->polled || now - f->read_mono >= GW_FEED_RESYNC_MS))
            gw_feed_read(f);
    }
    h2o_timeout_link(f->gw->ctx.loop, &f->gw->feeds->tick, &f->tick);
}

/* ---- start, stop ---- */

void gw_feed_start(struct gw_call *c, const struct gw_feed_opts *o)
{
    struct gw *gw = c->gw;
    struct gw_feeds *fs = gw_feeds_get(gw);
    char topic[STREAM_NAME_MAX];
    struct gw_feed_opts opts = *o; /* o may live in c->state, which ends with the call */
    o = &opts;
    if (stream_topic(topic, sizeof(topic), o->env, o->key, o->io) != OK) {
        gw_respond_error(c, 400, "Invalid stream", 0);
        return;
    }
    gw_add_header(c, "cache-control", "no-cache");
    gw_add_header(c, "x-stream-version", "v2");
    struct gw_stream_log log;
    h2o_req_t *req = gw_call_stream(c, 200, "text/event-stream", &log);
    if (!req)
        return;
    struct gw_feed *f = xcalloc(1, sizeof(*f));
    f->log = log;
    struct gw_feed_ref *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), gw_feed_ref_dispose);
    ref->feed = f;
    f->ref = ref;
    f->gw = gw;
    f->req = req;
    f->o = *o;
    f->next_seq = o->start;
    f->started_mono = clock_mono_ms();
    f->deadline_mono = f->started_mono + o->wait_ms;
    f->gen.proceed = gw_feed_on_proceed;
    f->gen.stop = gw_feed_on_stop;
    f->tick.cb = gw_feed_on_tick;
    /* listen before the first read, so a record appended meanwhile is not missed */
    gw_topic_join(fs, f, topic);
    gw_metrics_sse_open();
    h2o_start_response(req, &f->gen);
    /* the headers go out now: the client's fetch gives up on headers after 30 s */
    f->sending = true;
    f->send_started_mono = clock_mono_ms();
    h2o_send(req, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
    if (!o->drain)
        h2o_timeout_link(gw->ctx.loop, &fs->tick, &f->tick);
    gw_feed_read(f);
}

void gw_feeds_stop(struct gw *gw)
{
    struct gw_feeds *fs = gw->feeds;
    if (!fs)
        return;
    for (unsigned b = 0; b < GW_FEED_BUCKETS; b++)
        for (struct gw_feed_topic *t = fs->buckets[b]; t; t = t->next)
            for (struct gw_feed *f = t->feeds; f; f = f->tnext)
                gw_feed_end(f, "the server is restarting; reconnect with Last-Event-ID");
}

unsigned gw_feeds_count(const struct gw *gw)
{
    return gw->feeds ? gw->feeds->nfeeds : 0;
}
