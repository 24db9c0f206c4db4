/*
 * feed.c - SSE responses following record streams: each feed's output,
 * its reads from the stream-broker, its pings and its end (see feed.h).
 * The table of topics and the fan-out of the broker's events to the feeds
 * are in feed_topics.c, the records' S2 JSON in feed_record.c.
 *
 * Output goes through two buffers: `out` is what h2o is writing (it must
 * stay valid until h2o calls proceed), `pend` collects what comes
 * meanwhile. Only one h2o_send is ever outstanding, as h2o requires.
 */
#include "feed_int.h"

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
#include "msg_stream.h"

#define GW_FEED_READ_COUNT 1000
#define GW_FEED_STALL_MS 60000 /* a write the client has not taken by then cuts it off */
/* An idle feed whose stream has events re-reads it this long after its last read (at the next
 * ping): the bound on how long a lost last event can delay a record (feed.h) */
#define GW_FEED_RESYNC_MS 60000

/* The pool-side half: tells the feed its request went away. */
struct gw_feed_ref {
    struct gw_feed *feed;
};

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
    return gw_req_client_gone(f->req);
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
void gw_feed_cut(struct gw_feed *f)
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

void gw_feed_end(struct gw_feed *f, const char *error)
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
void gw_feed_batch(struct gw_feed *f, const char *records, size_t n, unsigned count,
                   uint64_t last_seq, uint64_t tail, uint64_t tail_ts)
{
    char head[128], tailj[96];
    uint64_t now = clock_mono_ms();
    size_t before = f->pend.n;
    if (!f->req || f->final_sent)
        return;
    f->delivered += count;
    int w = snprintf(head, sizeof(head),
                     "event: batch\nid: %" PRIu64 ",%" PRIu64 ",%" PRIu64 "\ndata: {\"records\":[",
                     last_seq, f->delivered, f->bytes + f->pend.n + n);
    jbuf_put(&f->pend, head, (size_t)w);
    jbuf_put(&f->pend, records, n);
    w = snprintf(tailj, sizeof(tailj),
                 "],\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "}}\n\n", tail,
                 tail_ts);
    jbuf_put(&f->pend, tailj, (size_t)w);
    f->deadline_mono = now + f->o.wait_ms; /* the idle wait restarts after every batch */
    gw_feed_queued(f, before);
}

/* ---- reads ---- */

static void gw_feed_on_read(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_feed *f = arg;
    struct msg_stream_range m;
    struct mp_reader v;
    uint32_t n = 0;
    uint64_t tail, tail_ts, last = 0;
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
    if (msg_decode(&msg_stream_range_form, env->body.p, env->body.n, &m) != OK) {
        LOG_WARN("sse.read_failed", "the stream-broker sent a malformed stream.read reply");
        gw_feed_end(f, "malformed record from the stream store");
        return;
    }
    tail = m.tail;
    tail_ts = m.tail_ts;
    if (msg_stream_items(m.records, &v, &n) == OK) {
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

void gw_feed_read(struct gw_feed *f)
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
    struct msg_stream_read m = {msg_stream_name_of(f->o.env, f->o.key, f->o.channel, f->o.io),
                                f->next_seq, GW_FEED_READ_COUNT};
    mp_writer_init(&w);
    msg_encode(&msg_stream_read_form, &w, &m);
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

/* ---- time ---- */

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
         * its stream has no events to follow, or no follow lease confirmed yet */
        if (f->topic &&
            (f->topic->polled || !f->topic->followed || now - f->read_mono >= GW_FEED_RESYNC_MS))
            gw_feed_read(f);
    }
    h2o_timeout_link(f->gw->ctx.loop, &f->gw->feeds->tick, &f->tick);
}

/* ---- start ---- */

void gw_feed_start(struct gw_call *c, const struct gw_feed_opts *o)
{
    struct gw *gw = c->gw;
    struct gw_feeds *fs = gw_feeds_get(gw);
    char topic[STREAM_NAME_MAX];
    struct gw_feed_opts opts = *o; /* o may live in c->state, which ends with the call */
    o = &opts;
    if (stream_topic(topic, sizeof(topic), o->env, o->key, o->channel, o->io) != OK) {
        gw_respond_error(c, 400, "Invalid stream", 0);
        return;
    }
    gw_add_header(c, "cache-control", "no-cache");
    gw_add_header(c, "x-stream-version", "v2");
    struct gw_stream_log log;
    h2o_req_t *req = gw_call_stream(c, 200, "text/event-stream", &log);
    if (!req)
        return;
    size_t ne = strlen(o->env) + 1, nk = strlen(o->key) + 1, nc = strlen(o->channel) + 1,
           ni = strlen(o->io) + 1;
    struct gw_feed *f = xcalloc(1, sizeof(*f) + ne + nk + nc + ni);
    char *p = f->name;
    f->o.env = memcpy(p, o->env, ne);
    f->o.key = memcpy(p += ne, o->key, nk);
    f->o.channel = memcpy(p += nk, o->channel, nc);
    f->o.io = memcpy(p += nc, o->io, ni);
    f->o.wait_ms = o->wait_ms;
    f->o.drain = o->drain;
    f->o.format = o->format;
    f->log = log;
    struct gw_feed_ref *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), gw_feed_ref_dispose);
    ref->feed = f;
    f->ref = ref;
    f->gw = gw;
    f->req = req;
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
