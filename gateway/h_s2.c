/*
 * h_s2.c - the S2 side of a session's channels: PUT .../:io, which hands out
 * the S2 credentials for writing the channel (a token scoped to its stream),
 * and the S2-compatible records endpoint agents write and read through with
 * them (/s2/v1/streams/:stream/records), in S2's JSON or protobuf
 * (s2proto.h) and S2's error shape. The steps every channel route shares are
 * h_streams.c's (streams_int.h); gw_s2_format is shared from here, as the SSE
 * subscription reads S2-Format too.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "gw.h"
#include "handlers.h"
#include "jbuf.h"
#include "msg.h"
#include "msg_stream.h"
#include "path.h"
#include "s2proto.h"
#include "sessref.h"
#include "streams_int.h"

/* S2 clients refuse a basin name outside 8-48 of [a-z0-9-] before sending anything */
#define GW_S2_BASIN "tether-sessions"
#define GW_S2_TOKEN_TTL_S 86400
#define GW_S2_TAIL_OFFSET_MAX 16 /* stream.peek's bound */

/* ---- PUT /realtime/v1/sessions/:session/:io: S2 credentials for writing the channel ---- */

/*
 * An S2 stream's name: "sessions/<key>/<io>" for the session's own pair,
 * "sessions/<key>/channels/<channel>/<io>" for a side channel's (a key holds no "/").
 */
static void gw_s2_name(char *out, size_t cap, const struct gw_feed_opts *f)
{
    if (f->channel[0])
        snprintf(out, cap, "sessions/%s/channels/%s/%s", f->key, f->channel, f->io);
    else
        snprintf(out, cap, "sessions/%s/%s", f->key, f->io);
}

/* The one scope an S2 access token carries: its stream. */
static void gw_s2_scope(char *out, size_t cap, const struct gw_feed_opts *f)
{
    char name[STREAM_NAME_MAX];
    gw_s2_name(name, sizeof(name), f);
    snprintf(out, cap, "s2:append:%s", name);
}

static void gw_init_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct slice s;
    char base[512], endpoint[600], name[STREAM_NAME_MAX], scope[STREAM_NAME_MAX + 16];
    if (!gw_stream_row(c, rc, env, &s, "write", "Session not found") || !gw_out_writer_ok(c, s))
        return;
    if (s.n && gw_sess_u64(s, "closed_at_ms")) {
        gw_respond_error(c, 400, "Cannot initialize a stream on a closed session", GW_NO_RETRY);
        return;
    }
    gw_stream_name(c, s);
    gw_s2_scope(scope, sizeof(scope), &st->feed);
    const char *const scopes[] = {scope};
    char *token =
        gw_jwt_mint(c->auth.env.signing_key, c->auth.env.id, scopes, 1, GW_S2_TOKEN_TTL_S);
    if (!token) {
        gw_respond_err(c, ERR_INTERNAL, "could not mint the stream token");
        return;
    }
    gw_public_base(c, base, sizeof(base));
    snprintf(endpoint, sizeof(endpoint), "%s/s2/v1", base);
    gw_s2_name(name, sizeof(name), &st->feed);
    gw_add_header(c, "x-s2-access-token", token);
    gw_add_header(c, "x-s2-stream-name", name);
    gw_add_header(c, "x-s2-basin", GW_S2_BASIN);
    gw_add_header(c, "x-s2-endpoint", endpoint);
    gw_add_header(c, "x-s2-flush-interval-ms", "100");
    gw_add_header(c, "x-s2-max-retries", "10");
    gw_add_header(c, "access-control-expose-headers", "*");
    free(token);
    gw_respond_json(c, 202, json_pack("{s:s}", "version", "v2"), 0);
}

void gw_on_stream_init(struct gw_call *c)
{
    (void)gw_st(c);
    err_t rc = gw_session_lookup(c, gw_init_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

/* ---- the S2-compatible records endpoint: /s2/v1/streams/:stream/records ---- */

int gw_s2_stream_check(const struct gw_auth *a, const char *name, struct gw_feed_opts *feed,
                       const char **code, const char **message)
{
    const char *key = name + 9, *slash, *io;
    char scope[STREAM_NAME_MAX + 16];
    size_t chn = 0;
    /* sessions/<key>/<io> or sessions/<key>/channels/<channel>/<io> (gw_s2_name) */
    bool ok = strncmp(name, "sessions/", 9) == 0 && (slash = strchr(key, '/')) != NULL &&
              slash > key && (size_t)(slash - key) <= STREAM_KEY_MAX;
    if (ok) {
        io = slash + 1;
        if (strncmp(io, "channels/", 9) == 0) {
            const char *ch = io + 9, *end = strchr(ch, '/');
            chn = end ? (size_t)(end - ch) : 0;
            ok = chn > 0 && chn <= STREAM_CHANNEL_MAX;
            if (ok) {
                snprintf(feed->channel, sizeof(feed->channel), "%.*s", (int)chn, ch);
                ok = stream_channel_valid(feed->channel);
                io = end + 1;
            }
        }
        /* gw_id_problem: a key no session URL can carry (path.h), so no session's stream has it */
        ok = ok && stream_io_valid(io) && !gw_id_problem(key, (size_t)(slash - key));
    }
    if (!ok) {
        feed->channel[0] = '\0';
        *code = "stream_not_found";
        *message = "no such stream";
        return 404;
    }
    snprintf(feed->env, sizeof(feed->env), "%s", a->env.id);
    snprintf(feed->key, sizeof(feed->key), "%.*s", (int)(slash - key), key);
    snprintf(feed->io, sizeof(feed->io), "%s", io);
    if (a->kind == GW_AUTH_SECRET)
        return 0;
    gw_s2_scope(scope, sizeof(scope), feed);
    for (unsigned i = 0; i < a->nscopes; i++)
        if (strcmp(a->scopes[i], scope) == 0)
            return 0;
    *code = "permission_denied";
    *message = "the access token does not cover this stream";
    return 403;
}

/* The stream of an S2 request (gw_s2_stream_check), or false after answering its error. */
static bool gw_s2_stream(struct gw_call *c)
{
    const char *code, *message;
    int status = gw_s2_stream_check(&c->auth, c->params.session, &gw_st(c)->feed, &code, &message);
    if (status == 0)
        return true;
    gw_respond_json(c, status, json_pack("{s:s,s:s}", "code", code, "message", message),
                    GW_NO_RETRY);
    return false;
}

/*
 * S2-Format: how record bytes travel in the JSON of S2 appends and reads (absent or "raw": as
 * text, "base64"). Sets *f; false after answering 422 for any other value.
 */
bool gw_s2_format(struct gw_call *c, enum gw_rec_format *f)
{
    size_t n;
    const char *v = gw_header(c->req, "s2-format", &n);
    if (!v || (n == 3 && strncasecmp(v, "raw", 3) == 0)) {
        *f = GW_REC_RAW;
        return true;
    }
    if (n == 6 && strncasecmp(v, "base64", 6) == 0) {
        *f = GW_REC_BASE64;
        return true;
    }
    gw_respond_json(
        c, 422,
        json_pack("{s:s,s:s}", "code", "invalid", "message", "S2-Format must be raw or base64"),
        GW_NO_RETRY);
    return false;
}

/* The S2 endpoint's one 413: a batch over STREAM_RECORD_MAX metered, in S2's error shape. */
static void gw_s2_too_large(struct gw_call *c)
{
    gw_respond_json(c, 413,
                    json_pack("{s:s,s:s}", "code", "invalid", "message",
                              "a batch may hold at most 1 MiB of metered records"),
                    GW_NO_RETRY);
}

err_t gw_s2_appended(const struct envelope *env, uint64_t *first, uint32_t *n, uint64_t *tail,
                     uint64_t *ts)
{
    struct msg_stream_append_reply m;
    struct mp_reader v;
    if (msg_decode(&msg_stream_append_reply_form, env->body.p, env->body.n, &m) != OK)
        return ERR_PROTO;
    *tail = m.tail;
    *ts = m.ts;
    if (msg_stream_items(m.seqs, &v, n) != OK || *n == 0 || mp_read_uint(&v, first) != OK)
        return ERR_PROTO;
    return OK;
}

static void gw_s2_on_appended(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    uint32_t n;
    uint64_t first = 0, tail = 0, ts = 0;
    if (rc == ERR_TOOBIG) { /* the broker's own check of the same limit: the same answer */
        gw_s2_too_large(c);
        return;
    }
    if (rc == ERR_INVAL) {
        /* the broker's validation text names what is wrong with the records */
        char msg[256] = "invalid records";
        if (env && env->err_msg.p)
            (void)slice_copy(env->err_msg, msg, sizeof(msg));
        gw_respond_json(c, 422, json_pack("{s:s,s:s}", "code", "invalid", "message", msg),
                        GW_NO_RETRY);
        return;
    }
    if (rc == ERR_CLOSED && env) { /* the session is sealed: its streams take nothing more */
        gw_respond_json(c, 409,
                        json_pack("{s:s,s:s}", "code", "session_closed", "message",
                                  "the session is closed: its streams take no more records"),
                        GW_NO_RETRY);
        return;
    }
    if (rc != OK) {
        gw_respond_err(c, rc, "stream.append");
        return;
    }
    if (gw_s2_appended(env, &first, &n, &tail, &ts) != OK) {
        gw_respond_err(c, ERR_PROTO, "stream.append");
        return;
    }
    if (st->proto) {
        uint8_t ack[S2_ACK_MAX];
        size_t len = s2_ack_encode(ack, first, first + n, tail, ts);
        gw_respond_bytes(c, 200, "application/protobuf", ack, len);
        return;
    }
    gw_respond_json(c, 200,
                    json_pack("{s:{s:I,s:I},s:{s:I,s:I},s:{s:I,s:I}}", "start", "seq_num",
                              (json_int_t)first, "timestamp", (json_int_t)ts, "end", "seq_num",
                              (json_int_t)(first + n), "timestamp", (json_int_t)ts, "tail",
                              "seq_num", (json_int_t)tail, "timestamp", (json_int_t)ts),
                    0);
}

err_t gw_s2_put_records(struct mp_writer *w, const struct s2_input *in, const char *part_prefix)
{
    char part[STREAM_PART_ID_MAX + 1];
    struct mp_writer hw; /* one record's headers at a time */
    mp_writer_init(&hw);
    mp_put_array(w, (uint32_t)in->nrecords);
    for (size_t i = 0; i < in->nrecords && mp_writer_err(&hw) == OK; i++) {
        const struct s2_record *r = &in->records[i];
        struct msg_stream_record_in rec = {
            .headers = MSG_STREAM_NO_HEADERS,
            .body = r->body.p ? r->body : (struct slice){"", 0},
        };
        if (part_prefix) {
            snprintf(part, sizeof(part), "%s:%zu", part_prefix, i);
            rec.part_id = msg_str(part);
        }
        if (r->nheaders > 0) {
            mp_writer_reset(&hw);
            mp_put_array(&hw, (uint32_t)r->nheaders);
            for (size_t h = r->first_header; h < r->first_header + r->nheaders; h++) {
                mp_put_array(&hw, 2);
                mp_put_strn(&hw, in->headers[h].name.p, in->headers[h].name.n);
                mp_put_strn(&hw, in->headers[h].value.p, in->headers[h].value.n);
            }
            rec.headers = (struct slice){mp_writer_data(&hw), mp_writer_len(&hw)};
        }
        msg_encode(&msg_stream_record_in_form, w, &rec);
    }
    err_t rc = mp_writer_err(&hw);
    mp_writer_fini(&hw);
    return rc;
}

int gw_s2_input_check(const struct s2_input *in, char *why, size_t cap)
{
    if (in->conditional) {
        snprintf(why, cap, "match_seq_num and fencing_token are not supported");
        return 422;
    }
    /* the route's one limit (it has no byte cap of its own): S2 caps a whole batch at 1 MiB
     * metered; it also keeps the bus request under the receive limit whatever the record
     * count */
    if (in->metered > STREAM_RECORD_MAX) {
        snprintf(why, cap, "a batch may hold at most 1 MiB of metered records");
        return 413;
    }
    return 0;
}

/*
 * S2 append, JSON or protobuf (s2proto.h). A trim command record in the batch is stored like
 * any record and makes the stream-broker trim the stream (docs/stream-broker.md).
 */
void gw_on_s2_append(struct gw_call *c)
{
    struct gw_stream_state *st;
    struct s2_input in;
    struct mp_writer w;
    char why[160];
    err_t rc;
    if (!gw_s2_stream(c))
        return;
    st = c->state;
    if (!gw_s2_format(c, &st->feed.format))
        return;
    st->proto = c->body == NULL; /* the pipeline left a protobuf body unparsed */
    if (st->proto)
        rc = s2_input_from_proto((const uint8_t *)c->req->entity.base, c->req->entity.len, &in, why,
                                 sizeof(why));
    else
        rc = s2_input_from_json(c->body, st->feed.format == GW_REC_BASE64, &in, why, sizeof(why));
    int status = rc == OK ? gw_s2_input_check(&in, why, sizeof(why)) : 422;
    if (status != 0)
        s2_input_fini(&in);
    if (status == 413) {
        gw_s2_too_large(c);
        return;
    }
    if (status != 0) {
        gw_respond_json(c, 422, json_pack("{s:s,s:s}", "code", "invalid", "message", why),
                        GW_NO_RETRY);
        return;
    }
    struct msg_stream_append m = {.name = gw_feed_stream_name(&st->feed)};
    mp_writer_init(&w);
    msg_stream_append_open(&w, &m);
    rc = gw_s2_put_records(&w, &in, NULL);
    s2_input_fini(&in);
    if (rc == OK)
        rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_APPEND, mp_writer_data(&w),
                         mp_writer_len(&w), gw_s2_on_appended);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "stream.append");
}

static void gw_s2_on_read(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct msg_stream_range m;
    struct mp_reader v;
    uint32_t n = 0;
    uint64_t seq;
    struct jbuf b = {0};
    if (rc == OK && msg_decode(&msg_stream_range_form, env->body.p, env->body.n, &m) != OK)
        rc = ERR_PROTO; /* a malformed broker reply */
    if (rc != OK) {
        gw_respond_err(c, rc, "stream.read");
        return;
    }
    /* the records as S2 renders them in st->feed.format: valid JSON whatever their bytes */
    jbuf_puts(&b, "{\"records\":[");
    if (msg_stream_items(m.records, &v, &n) == OK)
        for (uint32_t i = 0; i < n && (!st->limit || i < st->limit); i++) {
            if (i)
                jbuf_put(&b, ",", 1);
            if (gw_record_json(&v, &b, st->feed.format, &seq, NULL) != OK) {
                jbuf_free(&b);
                gw_respond_err(c, ERR_PROTO, "stream.read"); /* a malformed broker reply */
                return;
            }
        }
    jbuf_fmt(&b, "],\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "}}", m.tail,
             m.tail_ts);
    if (b.err != OK) {
        jbuf_free(&b);
        gw_respond_err(c, b.err, "stream.read");
        return;
    }
    gw_respond_bytes(c, 200, GW_CT_JSON, b.p, b.n);
    jbuf_free(&b);
}

void gw_on_s2_read(struct gw_call *c)
{
    char q[32];
    uint64_t seq = 0, count = 1000, wait = 0;
    size_t n;
    if (!gw_s2_stream(c))
        return;
    struct gw_stream_state *st = c->state;
    if (!gw_s2_format(c, &st->feed.format))
        return;
    if ((gw_query(c->req, "seq_num", q, sizeof(q)) && !gw_parse_u64(q, strlen(q), &seq)) ||
        (gw_query(c->req, "count", q, sizeof(q)) &&
         (!gw_parse_u64(q, strlen(q), &count) || count == 0 || count > 1000)) ||
        (gw_query(c->req, "wait", q, sizeof(q)) &&
         (!gw_parse_u64(q, strlen(q), &wait) || wait > 600))) {
        gw_respond_json(c, 422,
                        json_pack("{s:s,s:s}", "code", "invalid", "message",
                                  "seq_num, count (1-1000) and wait (0-600) are integers"),
                        GW_NO_RETRY);
        return;
    }
    if (gw_query(c->req, "tail_offset", q, sizeof(q))) {
        /* the last records, as a tail peek: S2's tail_offset, within what stream.peek serves */
        uint64_t off;
        if (!gw_parse_u64(q, strlen(q), &off) || off == 0 || off > GW_S2_TAIL_OFFSET_MAX) {
            gw_respond_json(c, 422,
                            json_pack("{s:s,s:s}", "code", "invalid", "message",
                                      "tail_offset must be an integer from 1 to 16"),
                            GW_NO_RETRY);
            return;
        }
        struct msg_stream_peek m = {gw_feed_stream_name(&st->feed), off};
        struct mp_writer w;
        mp_writer_init(&w);
        msg_encode(&msg_stream_peek_form, &w, &m);
        st->limit = (unsigned)count; /* of those, the first count */
        err_t rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_PEEK, mp_writer_data(&w),
                               mp_writer_len(&w), gw_s2_on_read);
        mp_writer_fini(&w);
        if (rc != OK)
            gw_respond_err(c, rc, "stream.peek");
        return;
    }
    const char *accept = gw_header(c->req, "accept", &n);
    if (accept && n >= 17 && memmem(accept, n, "text/event-stream", 17)) {
        st->feed.start = seq;
        st->feed.wait_ms = wait * 1000;
        st->feed.drain = wait == 0;
        gw_feed_start(c, &st->feed);
        return;
    }
    struct msg_stream_read m = {gw_feed_stream_name(&st->feed), seq, count};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_stream_read_form, &w, &m);
    err_t rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_READ, mp_writer_data(&w),
                           mp_writer_len(&w), gw_s2_on_read);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "stream.read");
}
