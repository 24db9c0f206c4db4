/*
 * wire.c - the stream-broker's pure parts: request validation, Redis key
 * names, stream entries read back from Redis, and record objects.
 *
 * No I/O and no logging: callers decide what a failure means. Every size
 * taken from a request is checked against proto/stream.h's limits before
 * anything is allocated for it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "msg_stream.h"
#include "sb.h"

/* ---- requests ---- */

/* The answer to a body that does not decode as what (a stream.* request with the stream's
 * name; rest: its other fields). */
static err_t sb_why_body(err_t rc, const char *what, const char *rest, char *why, size_t cap)
{
    if (rc == ERR_PROTO)
        snprintf(why, cap, "the request body must be a map");
    else
        snprintf(why, cap,
                 "%s needs strings env (1-%u bytes), key (1-%u), io and channel (nil or 1-%u)%s",
                 what, STREAM_ENV_MAX, STREAM_KEY_MAX, STREAM_CHANNEL_MAX, rest);
    return ERR_INVAL;
}

/* A name's value: 1..cap-1 bytes without NUL, copied into buf with its NUL. */
static bool sb_name_copy(struct slice v, char *buf, size_t cap)
{
    return v.n > 0 && !memchr(v.p, '\0', v.n) && slice_copy(v, buf, cap) == OK;
}

err_t sb_stream_of(const struct msg_stream_name *n, struct sb_stream *s, char *why, size_t cap)
{
    memset(s, 0, sizeof(*s));
    if (!sb_name_copy(n->env, s->env, sizeof(s->env))) {
        snprintf(why, cap, "env must be a string of 1-%u bytes without NUL", STREAM_ENV_MAX);
        return ERR_INVAL;
    }
    if (!sb_name_copy(n->key, s->key, sizeof(s->key))) {
        snprintf(why, cap, "key must be a string of 1-%u bytes without NUL", STREAM_KEY_MAX);
        return ERR_INVAL;
    }
    if (!sb_name_copy(n->io, s->io, sizeof(s->io)) || !stream_io_valid(s->io)) {
        snprintf(why, cap, "io must be \"in\" or \"out\"");
        return ERR_INVAL;
    }
    /* optional: absent or nil names the session's own pair */
    if (n->channel.p && (!sb_name_copy(n->channel, s->channel, sizeof(s->channel)) ||
                         !stream_channel_valid(s->channel))) {
        snprintf(why, cap, "channel must be nil or 1-%u of [A-Za-z0-9._-]", STREAM_CHANNEL_MAX);
        return ERR_INVAL;
    }
    return OK;
}

err_t sb_check_uint(const char *key, uint64_t v, uint64_t min, uint64_t max, char *why, size_t cap)
{
    if (v >= min && v <= max)
        return OK;
    snprintf(why, cap, "%s must be an integer from %" PRIu64 " to %" PRIu64, key, min, max);
    return ERR_INVAL;
}

err_t sb_parse_range(struct slice body, bool peek, struct sb_stream *s, uint64_t *from,
                     uint64_t *count, char *why, size_t cap)
{
    err_t rc;
    if (peek) {
        struct msg_stream_peek m;
        if ((rc = msg_decode(&msg_stream_peek_form, body.p, body.n, &m)) != OK)
            return sb_why_body(rc, "stream.peek", " and count (an integer)", why, cap);
        *from = 0;
        *count = m.count;
        rc = sb_stream_of(&m.name, s, why, cap);
    } else {
        struct msg_stream_read m;
        if ((rc = msg_decode(&msg_stream_read_form, body.p, body.n, &m)) != OK)
            return sb_why_body(rc, "stream.read", ", from and count (integers)", why, cap);
        *from = m.from;
        *count = m.count;
        rc = sb_stream_of(&m.name, s, why, cap);
    }
    return rc == OK
               ? sb_check_uint("count", *count, 1, peek ? SB_PEEK_MAX : STREAM_BATCH_MAX, why, cap)
               : rc;
}

err_t sb_parse_trim(struct slice body, struct sb_stream *s, uint64_t *before, char *why, size_t cap)
{
    struct msg_stream_trim m;
    err_t rc = msg_decode(&msg_stream_trim_form, body.p, body.n, &m);
    if (rc != OK)
        return sb_why_body(rc, "stream.trim", " and before (an integer)", why, cap);
    *before = m.before;
    return sb_stream_of(&m.name, s, why, cap);
}

err_t sb_parse_follow(struct slice body, struct sb_follow_req *f, char *why, size_t cap)
{
    struct msg_stream_follow m;
    struct mp_reader v;
    struct slice item;
    char one[SB_WHY_MAX];
    memset(f, 0, sizeof(*f));
    err_t rc = msg_decode(&msg_stream_follow_form, body.p, body.n, &m);
    if (rc == ERR_PROTO)
        return sb_why_body(rc, "stream.follow", "", why, cap);
    if (rc != OK) {
        snprintf(why, cap,
                 "stream.follow needs holder (a string of 1-%u bytes), ttl_ms (an integer) and "
                 "streams (an array of stream names)",
                 STREAM_FOLLOW_HOLDER_MAX);
        return ERR_INVAL;
    }
    f->holder = m.holder;
    if (memchr(f->holder.p, '\0', f->holder.n)) {
        snprintf(why, cap, "holder must be a string of 1-%u bytes without NUL",
                 STREAM_FOLLOW_HOLDER_MAX);
        return ERR_INVAL;
    }
    f->ttl_ms = m.ttl_ms;
    if ((rc = sb_check_uint("ttl_ms", f->ttl_ms, 0, 10u * STREAM_FOLLOW_TTL_MS, why, cap)) != OK)
        return rc;
    if (msg_stream_items(m.streams, &v, &f->n) != OK || f->n == 0 ||
        f->n > STREAM_FOLLOW_BATCH_MAX) {
        f->n = 0;
        snprintf(why, cap, "streams must be an array of 1-%u stream names",
                 STREAM_FOLLOW_BATCH_MAX);
        return ERR_INVAL;
    }
    f->names = xcalloc(f->n, sizeof(*f->names));
    for (uint32_t i = 0; i < f->n; i++) {
        struct msg_stream_name name;
        if (mp_skip(&v, &item) != OK) {
            snprintf(why, cap, "streams[%" PRIu32 "] is malformed", i);
            return ERR_INVAL;
        }
        rc = msg_decode(&msg_stream_name_form, item.p, item.n, &name);
        if (rc != OK)
            (void)sb_why_body(rc, "a stream name", "", one, sizeof(one));
        else
            rc = sb_stream_of(&name, &f->names[i], one, sizeof(one));
        if (rc != OK) {
            snprintf(why, cap, "streams[%" PRIu32 "]: %s", i, one);
            return ERR_INVAL;
        }
    }
    return OK;
}

void sb_follow_req_fini(struct sb_follow_req *f)
{
    free(f->names);
    f->names = NULL;
}

/* headers: nil/absent or an array of at most STREAM_HEADERS_MAX [str, str]; sums their bytes. */
static bool sb_parse_headers(struct slice rec, struct sb_record_in *r, size_t *bytes)
{
    struct mp_reader v;
    enum mp_type t;
    uint32_t n, two;
    struct slice name, value;
    *bytes = 0;
    r->headers = SLICE_NULL;
    r->nheaders = 0;
    err_t rc = mp_map_find(rec.p, rec.n, "headers", &v);
    if (rc == ERR_NOTFOUND)
        return true;
    if (rc != OK || mp_peek(&v, &t) != OK)
        return false;
    if (t == MP_NIL)
        return true;
    const char *start = (const char *)v.p;
    if (mp_read_array(&v, &n) != OK || n > STREAM_HEADERS_MAX)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        if (mp_read_array(&v, &two) != OK || two != 2 || mp_read_str(&v, &name) != OK ||
            mp_read_str(&v, &value) != OK)
            return false;
        *bytes += name.n + value.n;
    }
    r->headers = (struct slice){start, (size_t)((const char *)v.p - start)};
    r->nheaders = n;
    return true;
}

/* One record map; i is its index, for the message. */
static err_t sb_parse_record(struct slice rec, uint32_t i, struct sb_record_in *r, char *why,
                             size_t cap)
{
    struct mp_reader v;
    enum mp_type t;
    size_t hbytes;
    mp_reader_init(&v, rec.p, rec.n);
    if (mp_peek(&v, &t) != OK || t != MP_MAP) {
        snprintf(why, cap, "records[%" PRIu32 "] must be a map", i);
        return ERR_INVAL;
    }
    r->part_id = SLICE_NULL;
    err_t rc = mp_map_find(rec.p, rec.n, "part_id", &v);
    if (rc == OK && mp_read_str_or_nil(&v, &r->part_id) != OK)
        rc = ERR_INVAL;
    if ((rc != OK && rc != ERR_NOTFOUND) ||
        (r->part_id.p && (r->part_id.n == 0 || r->part_id.n > STREAM_PART_ID_MAX ||
                          memchr(r->part_id.p, '\0', r->part_id.n)))) {
        snprintf(why, cap,
                 "records[%" PRIu32 "].part_id must be nil or a string of 1-%u bytes without NUL",
                 i, STREAM_PART_ID_MAX);
        return ERR_INVAL;
    }
    if (!sb_parse_headers(rec, r, &hbytes)) {
        snprintf(why, cap,
                 "records[%" PRIu32 "].headers must be an array of at most %u [name, value] "
                 "string pairs",
                 i, STREAM_HEADERS_MAX);
        return ERR_INVAL;
    }
    if (mp_map_find(rec.p, rec.n, "body", &v) != OK || mp_peek(&v, &t) != OK ||
        (t == MP_BIN ? mp_read_bin(&v, &r->body) : mp_read_str(&v, &r->body)) != OK) {
        snprintf(why, cap, "records[%" PRIu32 "].body must be bin or str", i);
        return ERR_INVAL;
    }
    r->metered = stream_metered_size(r->nheaders, hbytes, r->body.n);
    if (r->metered > STREAM_RECORD_MAX) {
        snprintf(why, cap, "records[%" PRIu32 "] is %zu bytes (metered); the limit is %u", i,
                 r->metered, STREAM_RECORD_MAX);
        return ERR_TOOBIG;
    }
    return OK;
}

err_t sb_parse_append(struct slice body, struct sb_append *ap, char *why, size_t cap)
{
    struct msg_stream_append m;
    struct mp_reader v;
    uint32_t n;
    memset(ap, 0, sizeof(*ap));
    err_t rc = msg_decode(&msg_stream_append_form, body.p, body.n, &m);
    if (rc != OK)
        return sb_why_body(rc, "stream.append", " and records (an array)", why, cap);
    if ((rc = sb_stream_of(&m.name, &ap->s, why, cap)) != OK)
        return rc;
    if (msg_stream_items(m.records, &v, &n) != OK || n == 0 || n > STREAM_BATCH_MAX) {
        snprintf(why, cap, "records must be an array of 1-%u records", STREAM_BATCH_MAX);
        return ERR_INVAL;
    }
    ap->recs = xcalloc(n, sizeof(*ap->recs));
    ap->seqs = xcalloc(n, sizeof(*ap->seqs));
    ap->dups = xcalloc(n, sizeof(*ap->dups));
    ap->n = n;
    for (uint32_t i = 0; i < n; i++) {
        struct slice rec;
        if (mp_skip(&v, &rec) != OK) {
            snprintf(why, cap, "records[%" PRIu32 "] is malformed", i);
            return ERR_INVAL;
        }
        rc = sb_parse_record(rec, i, &ap->recs[i], why, cap);
        if (rc != OK)
            return rc;
    }
    return OK;
}

void sb_append_fini(struct sb_append *ap)
{
    free(ap->recs);
    free(ap->seqs);
    free(ap->dups);
    ap->recs = NULL;
    ap->seqs = NULL;
    ap->dups = NULL;
    ap->n = 0;
}

/* ---- key names ---- */

/* "tether:<kind>:{env:key}:io<suffix>" into SB_KEY_MAX bytes; the name limits keep it within. */
static size_t sb_key_fmt(char *out, const char *kind, const struct sb_stream *s, const char *suffix)
{
    int w = s->channel[0] ? snprintf(out, SB_KEY_MAX, "tether:%s:{%s:%s}:ch/%s/%s%s", kind, s->env,
                                     s->key, s->channel, s->io, suffix)
                          : snprintf(out, SB_KEY_MAX, "tether:%s:{%s:%s}:%s%s", kind, s->env,
                                     s->key, s->io, suffix);
    return w < 0 ? 0 : (size_t)w < SB_KEY_MAX ? (size_t)w : SB_KEY_MAX - 1;
}

size_t sb_key_stream(const struct sb_stream *s, char *out)
{
    return sb_key_fmt(out, "stream", s, "");
}

size_t sb_key_next(const struct sb_stream *s, char *out)
{
    return sb_key_fmt(out, "stream", s, ":next");
}

size_t sb_key_bytes(const struct sb_stream *s, char *out)
{
    return sb_key_fmt(out, "stream", s, ":bytes");
}

size_t sb_key_followers(const struct sb_stream *s, char *out)
{
    return sb_key_fmt(out, "stream", s, ":followers");
}

size_t sb_key_sealed(const char *env, const char *key, char *out)
{
    int w = snprintf(out, SB_KEY_MAX, "tether:stream:{%s:%s}:sealed", env, key);
    return w < 0 ? 0 : (size_t)w < SB_KEY_MAX ? (size_t)w : SB_KEY_MAX - 1;
}

size_t sb_key_quota(const char *env, char *out)
{
    int w = snprintf(out, SB_KEY_MAX, "tether:quota:{%s}:bytes", env);
    return w < 0 ? 0 : (size_t)w < SB_KEY_MAX ? (size_t)w : SB_KEY_MAX - 1;
}

/*
 * The key's length comes first: keys and part ids are free-form, and without it key "k}:in:x"
 * with part "p" and key "k" with part "x}:in:p" would share a de-dup key. The hash tag (first
 * "{" to the first "}") is still the stream's, so the part key lives in the stream's slot.
 */
size_t sb_key_part_prefix(const struct sb_stream *s, char *out)
{
    int w = s->channel[0]
                ? snprintf(out, SB_KEY_MAX, "tether:part:%zu:{%s:%s}:ch/%s/%s:", strlen(s->key),
                           s->env, s->key, s->channel, s->io)
                : snprintf(out, SB_KEY_MAX, "tether:part:%zu:{%s:%s}:%s:", strlen(s->key), s->env,
                           s->key, s->io);
    return w < 0 ? 0 : (size_t)w < SB_KEY_MAX ? (size_t)w : SB_KEY_MAX - 1;
}

/* ---- entries read back ---- */

bool sb_parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool sb_is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static bool sb_str_is(const redisReply *r, const char *lit)
{
    size_t n = strlen(lit);
    return sb_is_str(r) && r->len == n && memcmp(r->str, lit, n) == 0;
}

err_t sb_entry_parse(const redisReply *e, struct sb_entry *out)
{
    const redisReply *id, *f;
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2)
        return ERR_PROTO;
    id = e->element[0];
    f = e->element[1];
    if (!sb_is_str(id) || !f || f->type != REDIS_REPLY_ARRAY)
        return ERR_PROTO;
    /* seq N is the id "N-1" (0-0 is not a valid id, hence the 1) */
    const char *dash = memchr(id->str, '-', id->len);
    if (!dash || (size_t)(id->str + id->len - dash) != 2 || dash[1] != '1' ||
        !sb_parse_u64(id->str, (size_t)(dash - id->str), &out->seq))
        return ERR_PROTO;
    /* positional: the first two pairs are t and b whatever the headers are named */
    if (f->elements < 4 || f->elements % 2 != 0 || !sb_str_is(f->element[0], "t") ||
        !sb_is_str(f->element[1]) || !sb_str_is(f->element[2], "b") || !sb_is_str(f->element[3]) ||
        !sb_parse_u64(f->element[1]->str, f->element[1]->len, &out->ts))
        return ERR_PROTO;
    for (size_t i = 4; i < f->elements; i++)
        if (!sb_is_str(f->element[i]))
            return ERR_PROTO;
    out->body = (struct slice){f->element[3]->str, f->element[3]->len};
    out->fields = f;
    out->nheaders = (f->elements - 4) / 2;
    return OK;
}

/* msgpack: map header, "seq" + u64, "ts" + u64, "headers" + array header, "body" + bin header */
#define SB_RECORD_OVERHEAD (1 + 4 + 9 + 3 + 9 + 8 + 5 + 5 + 5)
/* per header: fixarray, two str headers */
#define SB_HEADER_OVERHEAD (1 + 5 + 5)

size_t sb_entry_size(const struct sb_entry *e)
{
    size_t n = SB_RECORD_OVERHEAD + e->body.n;
    for (size_t i = 0; i < e->nheaders; i++)
        n += SB_HEADER_OVERHEAD + e->fields->element[4 + 2 * i]->len +
             e->fields->element[5 + 2 * i]->len;
    return n;
}

void sb_entry_put(struct mp_writer *w, const struct sb_entry *e)
{
    mp_put_map(w, 4);
    mp_put_kv_uint(w, "seq", e->seq);
    mp_put_kv_uint(w, "ts", e->ts);
    mp_put_str(w, "headers");
    mp_put_array(w, (uint32_t)e->nheaders);
    for (size_t i = 0; i < e->nheaders; i++) {
        const redisReply *n = e->fields->element[4 + 2 * i], *v = e->fields->element[5 + 2 * i];
        mp_put_array(w, 2);
        mp_put_strn(w, n->str, n->len);
        mp_put_strn(w, v->str, v->len);
    }
    mp_put_str(w, "body");
    mp_put_bin(w, e->body.p, e->body.n);
}

void sb_record_put(struct mp_writer *w, const struct sb_record_in *r, uint64_t seq, uint64_t ts)
{
    mp_put_map(w, 4);
    mp_put_kv_uint(w, "seq", seq);
    mp_put_kv_uint(w, "ts", ts);
    mp_put_str(w, "headers");
    /* validated as an array of [str, str] (sb_parse_headers), so it is copied as it came */
    if (r->nheaders)
        mp_put_raw(w, r->headers.p, r->headers.n);
    else
        mp_put_array(w, 0);
    mp_put_str(w, "body");
    mp_put_bin(w, r->body.p, r->body.n);
}

bool sb_record_trim_point(const struct sb_record_in *r, uint64_t *point)
{
    struct mp_reader hr;
    uint32_t nh, two;
    struct slice name, value;
    if (r->nheaders != 1 || r->body.n != 8)
        return false;
    mp_reader_init(&hr, r->headers.p, r->headers.n);
    if (mp_read_array(&hr, &nh) != OK || nh != 1 || mp_read_array(&hr, &two) != OK || two != 2 ||
        mp_read_str(&hr, &name) != OK || mp_read_str(&hr, &value) != OK || name.n != 0 ||
        !slice_eq(value, "trim"))
        return false;
    const unsigned char *b = (const unsigned char *)r->body.p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    *point = v;
    return true;
}
