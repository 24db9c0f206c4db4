/*
 * h_records.c - GET /realtime/v1/sessions/:session/:io/records (the /records
 * row of the contract's §15): a channel's records after afterEventId as one
 * JSON answer, each envelope unwrapped. The steps every channel route shares
 * are h_streams.c's (streams_int.h).
 */
#include <inttypes.h>
#include <string.h>

#include "gw.h"
#include "handlers.h"
#include "jbuf.h"
#include "jscan.h"
#include "msg.h"
#include "msg_stream.h"
#include "sessref.h"
#include "streams_int.h"

/* One /records answer stops after whichever comes first; the caller continues with the last
 * seqNum as afterEventId. The byte bound keeps a stream of large records from costing the
 * gateway gigabytes for one request. */
#define GW_RECORDS_MAX 10000
#define GW_RECORDS_BYTES_MAX (8u << 20)

static void gw_records_read(struct gw_call *c);

/*
 * One record as the /records answer shows it: the envelope unwrapped. A body that is a JSON
 * object with "data" gives that value and its "id" (a string, else "") copied as written, so
 * escapes such as \u0000 stay what they were; any other body is data as a string of its
 * bytes (jbuf_bytes: lossless). Header names and values likewise. Nothing a record holds makes
 * the answer fail.
 */
static void gw_records_put(struct gw_stream_state *st, struct slice rec)
{
    static const char *const envelope[] = {"data", "id"};
    struct mp_reader r, hr;
    struct slice body = SLICE_NULL, hn, hv, env[2];
    uint64_t seq = 0;
    uint32_t nh = 0, two, ok_headers = 0;
    bool control = false, have_headers = false;
    if (mp_map_find(rec.p, rec.n, "seq", &r) == OK)
        (void)mp_read_uint(&r, &seq);
    if (mp_map_find(rec.p, rec.n, "body", &r) == OK)
        (void)mp_read_bin(&r, &body);
    if (mp_map_find(rec.p, rec.n, "headers", &hr) == OK && mp_read_array(&hr, &nh) == OK) {
        have_headers = true;
        r = hr;
        for (uint32_t h = 0; h < nh; h++, ok_headers++) {
            if (mp_read_array(&r, &two) != OK || two != 2 || mp_read_str(&r, &hn) != OK ||
                mp_read_str(&r, &hv) != OK)
                break;
            if (h == 0 && hn.n == 0) /* a stream command record: not for readers */
                return;
            if (slice_eq(hn, "trigger-control"))
                control = true;
        }
    }
    struct jbuf *b = &st->acc;
    if (st->nrecs++)
        jbuf_put(b, ",", 1);
    jbuf_puts(b, "{\"data\":");
    if (!control && body.n && jscan_members(body.p, body.n, envelope, env, 2) == OK && env[0].p) {
        jbuf_put(b, env[0].p, env[0].n);
        jbuf_puts(b, ",\"id\":");
        if (env[1].p && env[1].p[0] == '"')
            jbuf_put(b, env[1].p, env[1].n);
        else
            jbuf_puts(b, "\"\"");
    } else {
        if (!control && body.n)
            jbuf_bytes(b, body.p, body.n);
        else
            jbuf_puts(b, "\"\"");
        jbuf_puts(b, ",\"id\":\"\"");
    }
    jbuf_fmt(b, ",\"seqNum\":%" PRIu64, seq);
    if (have_headers && ok_headers > 0) {
        jbuf_puts(b, ",\"headers\":[");
        for (uint32_t h = 0; h < ok_headers; h++) {
            (void)mp_read_array(&hr, &two);
            (void)mp_read_str(&hr, &hn);
            (void)mp_read_str(&hr, &hv);
            jbuf_puts(b, h ? ",[" : "[");
            jbuf_bytes(b, hn.p, hn.n);
            jbuf_put(b, ",", 1);
            jbuf_bytes(b, hv.p, hv.n);
            jbuf_put(b, "]", 1);
        }
        jbuf_put(b, "]", 1);
    }
    jbuf_put(b, "}", 1);
}

static void gw_records_finish(struct gw_call *c)
{
    struct gw_stream_state *st = c->state;
    jbuf_puts(&st->acc, "]}");
    if (st->acc.err != OK) {
        jbuf_free(&st->acc);
        gw_respond_err(c, ERR_NOMEM, "records");
        return;
    }
    struct jbuf acc = st->acc; /* c->state goes with the call */
    st->acc = (struct jbuf){0};
    gw_respond_bytes(c, 200, GW_CT_JSON, acc.p, acc.n);
    jbuf_free(&acc);
}

static void gw_records_on_read(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct msg_stream_range m;
    struct mp_reader v;
    uint32_t n = 0;
    uint64_t last = 0;
    if (rc == OK && msg_decode(&msg_stream_range_form, env->body.p, env->body.n, &m) != OK)
        rc = ERR_PROTO; /* a malformed broker reply */
    if (rc != OK) {
        jbuf_free(&st->acc);
        gw_respond_err(c, rc, "stream.read");
        return;
    }
    uint64_t tail = m.tail;
    bool full = false;
    if (msg_stream_items(m.records, &v, &n) == OK) {
        for (uint32_t i = 0; i < n && !full; i++) {
            struct slice rec;
            struct mp_reader r;
            uint64_t seq = last;
            if (mp_skip(&v, &rec) != OK)
                break;
            if (mp_map_find(rec.p, rec.n, "seq", &r) == OK)
                (void)mp_read_uint(&r, &seq);
            /* the byte bound is on the answer as rendered (escapes included), with its closing
             * "]}": a record that would pass it is left for the caller's next request - unless
             * it is the answer's first, or a large record could never be read */
            size_t before = st->acc.n;
            unsigned had = st->nrecs;
            gw_records_put(st, rec);
            if (had > 0 && st->acc.n + 2 > GW_RECORDS_BYTES_MAX) {
                st->acc.n = before;
                if (st->acc.p)
                    st->acc.p[before] = '\0';
                st->nrecs = had;
                full = true;
                break;
            }
            last = seq;
            full = st->nrecs >= GW_RECORDS_MAX;
        }
    }
    if (!full && n > 0 && last + 1 < tail) {
        st->from = last + 1;
        gw_records_read(c);
        return;
    }
    gw_records_finish(c);
}

static void gw_records_read(struct gw_call *c)
{
    struct gw_stream_state *st = c->state;
    struct msg_stream_read m = {gw_feed_stream_name(&st->feed), st->from, 1000};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_stream_read_form, &w, &m);
    err_t rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_READ, mp_writer_data(&w),
                           mp_writer_len(&w), gw_records_on_read);
    mp_writer_fini(&w);
    if (rc != OK) {
        jbuf_free(&st->acc);
        gw_respond_err(c, rc, "stream.read");
    }
}

static void gw_records_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct slice s;
    if (!gw_stream_row(c, rc, env, &s, "read", "Not found"))
        return;
    gw_stream_name(c, s);
    jbuf_puts(&st->acc, "{\"records\":[");
    gw_records_read(c);
}

void gw_on_stream_records(struct gw_call *c)
{
    struct gw_stream_state *st = gw_st(c);
    char after[32];
    uint64_t v;
    if (gw_query(c->req, "afterEventId", after, sizeof(after))) {
        if (!gw_parse_u64(after, strlen(after), &v)) {
            gw_respond_error(c, 400, "afterEventId must be a non-negative integer", GW_NO_RETRY);
            return;
        }
        st->from = v + 1;
    }
    err_t rc = gw_session_lookup_cached(c, gw_records_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}
