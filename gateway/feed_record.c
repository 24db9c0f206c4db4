/*
 * feed_record.c - records as S2 JSON (gw_record_json) and the stream's name
 * in a stream.* request (gw_feed_stream_name): what feeds, /records and the
 * S2-compatible routes share (see feed.h).
 */
#include "feed.h"

#include <inttypes.h>

/* ---- records ---- */

struct msg_stream_name gw_feed_stream_name(const struct gw_feed_opts *o)
{
    return msg_stream_name_of(o->env, o->key, o->channel, o->io);
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
