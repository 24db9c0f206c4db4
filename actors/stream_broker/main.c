/*
 * stream-broker - the .in/.out record streams of sessions, in Redis Streams.
 *
 * Messages (proto/msg.c): stream.append, stream.read, stream.peek,
 * stream.trim; every appended record is published as stream.record on the
 * stream's topic (proto/stream.h) from stream-broker.events.<n>.ipc.
 *
 * Redis layout for a stream (env, key, io), T = "{env:key}" (one Cluster
 * slot for all keys of a session):
 *   tether:stream:T:io        the records; seq N is entry id "N-1"; fields
 *                             t <ms>, b <body>, then header name/value pairs
 *   tether:stream:T:io:next   the next seq (records ever appended)
 *   tether:part:T:io:<part>   X-Part-Id de-duplication: the original seq, 300 s
 * An append is one Lua script, so a batch is atomic and a retried part id
 * returns the first attempt's seq without appending.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "proc.h"
#include "stream.h"

struct sb {
    struct bus_pub *events;
    struct db_redis *redis;
};

static struct sb sb_state;

/* KEYS[1] stream, KEYS[2] next counter, KEYS[3] part-key prefix; ARGV: ttl, n, then per
 * record: part id ("" = none), body, header count, names and values. Returns
 * {next, ts_ms, seq1, dup1, seq2, dup2, ...}. */
static const char sb_lua_append[] =
    "local t = redis.call('TIME') "
    "local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local ttl = ARGV[1] local n = tonumber(ARGV[2]) local i = 3 "
    "local out = {0, ts} "
    "for r = 1, n do "
    "  local part = ARGV[i] local body = ARGV[i + 1] local nh = tonumber(ARGV[i + 2]) "
    "  local fields = {'t', tostring(ts), 'b', body} "
    "  for h = 1, nh do "
    "    fields[#fields + 1] = ARGV[i + 2 + h * 2 - 1] fields[#fields + 1] = ARGV[i + 2 + h * 2] "
    "  end "
    "  i = i + 3 + nh * 2 "
    "  local old = false "
    "  if part ~= '' then old = redis.call('GET', KEYS[3] .. part) end "
    "  if old then "
    "    out[#out + 1] = tonumber(old) out[#out + 1] = 1 "
    "  else "
    "    local seq = redis.call('INCR', KEYS[2]) - 1 "
    "    redis.call('XADD', KEYS[1], seq .. '-1', unpack(fields)) "
    "    if part ~= '' then redis.call('SET', KEYS[3] .. part, seq, 'EX', ttl) end "
    "    out[#out + 1] = seq out[#out + 1] = 0 "
    "  end "
    "end "
    "out[1] = tonumber(redis.call('GET', KEYS[2]) or '0') "
    "return out";

/* KEYS[1] stream, KEYS[2] counter; ARGV[1] 'range'|'rev', ARGV[2] from, ARGV[3] count.
 * Returns {next, last entry or {}, entries}: one round trip, one consistent view. */
static const char sb_lua_read[] =
    "local recs "
    "if ARGV[1] == 'range' then "
    "  recs = redis.call('XRANGE', KEYS[1], ARGV[2] .. '-0', '+', 'COUNT', ARGV[3]) "
    "else recs = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[3]) end "
    "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1) "
    "return {tonumber(redis.call('GET', KEYS[2]) or '0'), last, recs}";

/* ---- request fields ---- */

struct sb_stream {
    char env[STREAM_ENV_MAX + 1];
    char key[STREAM_KEY_MAX + 1];
    char io[4];
    char rkey[STREAM_NAME_MAX + 32], nkey[STREAM_NAME_MAX + 40], pkey[STREAM_NAME_MAX + 32];
};

static err_t sb_str(const struct envelope *env, const char *k, char *out, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    if (mp_map_find(env->body.p, env->body.n, k, &v) != OK || mp_read_str(&v, &s) != OK ||
        s.n == 0 || memchr(s.p, '\0', s.n) || slice_copy(s, out, cap) != OK)
        return ERR_INVAL;
    return OK;
}

static err_t sb_uint(const struct envelope *env, const char *k, uint64_t *out)
{
    struct mp_reader v;
    if (mp_map_find(env->body.p, env->body.n, k, &v) != OK || mp_read_uint(&v, out) != OK)
        return ERR_INVAL;
    return OK;
}

static err_t sb_stream_of(const struct envelope *env, struct sb_stream *s)
{
    if (sb_str(env, "env", s->env, sizeof(s->env)) != OK ||
        sb_str(env, "key", s->key, sizeof(s->key)) != OK ||
        sb_str(env, "io", s->io, sizeof(s->io)) != OK || !stream_io_valid(s->io))
        return ERR_INVAL;
    snprintf(s->rkey, sizeof(s->rkey), "tether:stream:{%s:%s}:%s", s->env, s->key, s->io);
    snprintf(s->nkey, sizeof(s->nkey), "tether:stream:{%s:%s}:%s:next", s->env, s->key, s->io);
    snprintf(s->pkey, sizeof(s->pkey), "tether:part:{%s:%s}:%s:", s->env, s->key, s->io);
    return OK;
}

static void sb_reply_w(struct bus_req *req, struct mp_writer *w)
{
    if (mp_writer_err(w) == OK)
        (void)bus_reply(req, mp_writer_data(w), mp_writer_len(w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
}

static void sb_reply_redis_err(struct bus_req *req, const char *op, err_t rc, redisReply *r)
{
    if (rc == ERR_UNAVAIL) {
        (void)bus_reply_err(req, ERR_UNAVAIL, "the stream store (Redis) is unavailable; retry");
        return;
    }
    LOG_ERROR("stream.store_failed", "%s: unexpected reply from Redis: %s", op,
              r && r->type == REDIS_REPLY_ERROR ? r->str : "?");
    (void)bus_reply_err(req, ERR_INTERNAL, "unexpected reply from the stream store");
}

/* Writes one stream entry [id, [t, ts, b, body, name, value, ...]] as a record object. */
static bool sb_put_entry(struct mp_writer *w, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return false;
    const redisReply *f = e->element[1];
    if (f->elements < 4 || f->elements % 2)
        return false;
    for (size_t i = 0; i < f->elements; i++)
        if (f->element[i]->type != REDIS_REPLY_STRING)
            return false;
    mp_put_map(w, 4);
    mp_put_kv_uint(w, "seq", strtoull(e->element[0]->str, NULL, 10));
    mp_put_kv_uint(w, "ts", strtoull(f->element[1]->str, NULL, 10));
    mp_put_str(w, "headers");
    mp_put_array(w, (uint32_t)(f->elements - 4) / 2);
    for (size_t i = 4; i + 1 < f->elements; i += 2) {
        mp_put_array(w, 2);
        mp_put_strn(w, f->element[i]->str, f->element[i]->len);
        mp_put_strn(w, f->element[i + 1]->str, f->element[i + 1]->len);
    }
    mp_put_str(w, "body");
    mp_put_bin(w, f->element[3]->str, f->element[3]->len);
    return true;
}

/* ---- append ---- */

struct sb_rec {
    struct slice part, body;
    struct slice hn[STREAM_HEADERS_MAX], hv[STREAM_HEADERS_MAX];
    uint32_t nh;
};

static err_t sb_parse_records(const struct envelope *env, struct sb_rec **out, uint32_t *nout,
                              const char **why)
{
    struct mp_reader v;
    uint32_t n;
    *why = "records must be an array of 1-1000 records";
    if (mp_map_find(env->body.p, env->body.n, "records", &v) != OK ||
        mp_read_array(&v, &n) != OK || n == 0 || n > STREAM_BATCH_MAX)
        return ERR_INVAL;
    struct sb_rec *recs = xcalloc(n, sizeof(*recs));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nk;
        size_t hbytes = 0;
        struct sb_rec *r = &recs[i];
        *why = "a record is {part_id: str|nil, headers: [[str, str]], body: bin}";
        if (mp_read_map(&v, &nk) != OK)
            goto bad;
        for (uint32_t k = 0; k < nk; k++) {
            struct slice name;
            if (mp_read_str(&v, &name) != OK)
                goto bad;
            if (slice_eq(name, "part_id")) {
                if (mp_read_str_or_nil(&v, &r->part) != OK || r->part.n > STREAM_PART_ID_MAX ||
                    (r->part.p && memchr(r->part.p, '\0', r->part.n)))
                    goto bad;
            } else if (slice_eq(name, "body")) {
                enum mp_type t;
                if (mp_peek(&v, &t) != OK ||
                    (t == MP_STR ? mp_read_str(&v, &r->body) : mp_read_bin(&v, &r->body)) != OK)
                    goto bad;
            } else if (slice_eq(name, "headers")) {
                uint32_t nh, two;
                if (mp_read_array(&v, &nh) != OK || nh > STREAM_HEADERS_MAX)
                    goto bad;
                for (uint32_t h = 0; h < nh; h++) {
                    if (mp_read_array(&v, &two) != OK || two != 2 ||
                        mp_read_str(&v, &r->hn[h]) != OK || mp_read_str(&v, &r->hv[h]) != OK)
                        goto bad;
                    hbytes += r->hn[h].n + r->hv[h].n;
                }
                r->nh = nh;
            } else if (mp_skip(&v, NULL) != OK) {
                goto bad;
            }
        }
        if (stream_metered_size(r->nh, hbytes, r->body.n) > STREAM_RECORD_MAX) {
            free(recs);
            *why = "a record's metered size exceeds 1 MiB";
            return ERR_TOOBIG;
        }
    }
    *out = recs;
    *nout = n;
    return OK;
bad:
    free(recs);
    return ERR_INVAL;
}

static void sb_publish(struct sb *sb, const struct sb_stream *s, const struct sb_rec *r,
                       uint64_t seq, uint64_t ts)
{
    char topic[STREAM_NAME_MAX];
    struct mp_writer w;
    if (!sb->events || stream_topic(topic, sizeof(topic), s->env, s->key, s->io) != OK)
        return;
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    mp_put_kv_str(&w, "env", s->env);
    mp_put_kv_str(&w, "key", s->key);
    mp_put_kv_str(&w, "io", s->io);
    mp_put_str(&w, "record");
    mp_put_map(&w, 4);
    mp_put_kv_uint(&w, "seq", seq);
    mp_put_kv_uint(&w, "ts", ts);
    mp_put_str(&w, "headers");
    mp_put_array(&w, r->nh);
    for (uint32_t h = 0; h < r->nh; h++) {
        mp_put_array(&w, 2);
        mp_put_strn(&w, r->hn[h].p, r->hn[h].n);
        mp_put_strn(&w, r->hv[h].p, r->hv[h].n);
    }
    mp_put_str(&w, "body");
    mp_put_bin(&w, r->body.p, r->body.n);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_publish(sb->events, topic, MSG_STREAM_RECORD, mp_writer_data(&w),
                         mp_writer_len(&w));
    if (rc != OK)
        LOG_WARN("stream.publish_failed", "could not publish a record event: %s", err_str(rc));
    mp_writer_fini(&w);
}

static void sb_on_append(struct actor *a, struct bus_req *req)
{
    struct sb *sb = a->state;
    const struct envelope *env = bus_req_env(req);
    struct sb_stream s;
    struct sb_rec *recs = NULL;
    uint32_t n = 0;
    const char *why;
    char ttl[16], cnt[16];
    err_t rc;
    if (sb_stream_of(env, &s) != OK) {
        (void)bus_reply_err(req, ERR_INVAL, "env, key and io (in|out) are required");
        return;
    }
    if ((rc = sb_parse_records(env, &recs, &n, &why)) != OK) {
        (void)bus_reply_err(req, rc, why);
        return;
    }
    size_t argc = 8 + (size_t)n * 3;
    for (uint32_t i = 0; i < n; i++)
        argc += (size_t)recs[i].nh * 2;
    const char **argv = xcalloc(argc, sizeof(*argv));
    size_t *lens = xcalloc(argc, sizeof(*lens));
    char (*nhs)[8] = xcalloc(n, sizeof(*nhs));
    size_t k = 0;
#define SB_ARG(p_, n_)                                                                             \
    do {                                                                                           \
        argv[k] = (p_);                                                                            \
        lens[k++] = (n_);                                                                          \
    } while (0)
    snprintf(ttl, sizeof(ttl), "%u", STREAM_PART_TTL_S);
    snprintf(cnt, sizeof(cnt), "%" PRIu32, n);
    SB_ARG("EVAL", 4);
    SB_ARG(sb_lua_append, sizeof(sb_lua_append) - 1);
    SB_ARG("3", 1);
    SB_ARG(s.rkey, strlen(s.rkey));
    SB_ARG(s.nkey, strlen(s.nkey));
    SB_ARG(s.pkey, strlen(s.pkey));
    SB_ARG(ttl, strlen(ttl));
    SB_ARG(cnt, strlen(cnt));
    for (uint32_t i = 0; i < n; i++) {
        struct sb_rec *r = &recs[i];
        snprintf(nhs[i], sizeof(nhs[i]), "%" PRIu32, r->nh);
        SB_ARG(r->part.p ? r->part.p : "", r->part.p ? r->part.n : 0);
        SB_ARG(r->body.p ? r->body.p : "", r->body.n);
        SB_ARG(nhs[i], strlen(nhs[i]));
        for (uint32_t h = 0; h < r->nh; h++) {
            SB_ARG(r->hn[h].p, r->hn[h].n);
            SB_ARG(r->hv[h].p, r->hv[h].n);
        }
    }
#undef SB_ARG
    redisReply *rep = NULL;
    rc = db_redis_cmd(sb->redis, (int)k, argv, lens, &rep);
    free(argv);
    free(lens);
    free(nhs);
    if (rc != OK || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 + (size_t)n * 2) {
        sb_reply_redis_err(req, "stream.append", rc == OK ? ERR_PROTO : rc, rep);
        if (rep)
            freeReplyObject(rep);
        free(recs);
        return;
    }
    uint64_t next = (uint64_t)rep->element[0]->integer, ts = (uint64_t)rep->element[1]->integer;
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    mp_put_str(&w, "seqs");
    mp_put_array(&w, n);
    for (uint32_t i = 0; i < n; i++)
        mp_put_uint(&w, (uint64_t)rep->element[2 + i * 2]->integer);
    mp_put_str(&w, "dups");
    mp_put_array(&w, n);
    for (uint32_t i = 0; i < n; i++)
        mp_put_bool(&w, rep->element[3 + i * 2]->integer != 0);
    mp_put_kv_uint(&w, "tail", next);
    mp_put_kv_uint(&w, "ts", ts);
    /* before the reply, which frees the request the records point into; publishing never
     * blocks, and a failed one only delays delivery (feeds back-fill gaps) */
    for (uint32_t i = 0; i < n; i++)
        if (rep->element[3 + i * 2]->integer == 0)
            sb_publish(sb, &s, &recs[i], (uint64_t)rep->element[2 + i * 2]->integer, ts);
    sb_reply_w(req, &w);
    mp_writer_fini(&w);
    freeReplyObject(rep);
    free(recs);
}

/* ---- read, peek, trim ---- */

static void sb_read(struct actor *a, struct bus_req *req, bool peek)
{
    struct sb *sb = a->state;
    const struct envelope *env = bus_req_env(req);
    struct sb_stream s;
    uint64_t from = 0, count = 0;
    char fromb[24], countb[24];
    if (sb_stream_of(env, &s) != OK || sb_uint(env, "count", &count) != OK || count == 0 ||
        count > (peek ? 16 : STREAM_BATCH_MAX) || (!peek && sb_uint(env, "from", &from) != OK)) {
        (void)bus_reply_err(req, ERR_INVAL,
                            peek ? "env, key, io and count (1-16) are required"
                                 : "env, key, io, from and count (1-1000) are required");
        return;
    }
    snprintf(fromb, sizeof(fromb), "%" PRIu64, from);
    snprintf(countb, sizeof(countb), "%" PRIu64, count);
    const char *argv[] = {"EVAL", sb_lua_read, "2", s.rkey, s.nkey, peek ? "rev" : "range",
                          fromb, countb};
    redisReply *rep = NULL;
    err_t rc = db_redis_cmd(sb->redis, 8, argv, NULL, &rep);
    if (rc != OK || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[1]->type != REDIS_REPLY_ARRAY || rep->element[2]->type != REDIS_REPLY_ARRAY) {
        sb_reply_redis_err(req, peek ? "stream.peek" : "stream.read", rc == OK ? ERR_PROTO : rc,
                           rep);
        if (rep)
            freeReplyObject(rep);
        return;
    }
    const redisReply *last = rep->element[1], *recs = rep->element[2];
    uint64_t tail_ts = 0;
    if (last->elements == 1 && last->element[0]->type == REDIS_REPLY_ARRAY &&
        last->element[0]->elements == 2 && last->element[0]->element[1]->type == REDIS_REPLY_ARRAY &&
        last->element[0]->element[1]->elements >= 2)
        tail_ts = strtoull(last->element[0]->element[1]->element[1]->str, NULL, 10);
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_str(&w, "records");
    mp_put_array(&w, (uint32_t)recs->elements);
    for (size_t i = 0; i < recs->elements; i++) {
        /* peek reads newest first; answers are oldest first */
        const redisReply *e = recs->element[peek ? recs->elements - 1 - i : i];
        if (!sb_put_entry(&w, e)) {
            mp_writer_fini(&w);
            freeReplyObject(rep);
            LOG_ERROR("stream.store_failed", "a stream entry has an unexpected shape");
            (void)bus_reply_err(req, ERR_INTERNAL, "unexpected entry in the stream store");
            return;
        }
    }
    mp_put_kv_uint(&w, "tail", (uint64_t)rep->element[0]->integer);
    mp_put_kv_uint(&w, "tail_ts", tail_ts);
    sb_reply_w(req, &w);
    mp_writer_fini(&w);
    freeReplyObject(rep);
}

static void sb_on_read(struct actor *a, struct bus_req *req)
{
    sb_read(a, req, false);
}

static void sb_on_peek(struct actor *a, struct bus_req *req)
{
    sb_read(a, req, true);
}

static void sb_on_trim(struct actor *a, struct bus_req *req)
{
    struct sb *sb = a->state;
    const struct envelope *env = bus_req_env(req);
    struct sb_stream s;
    uint64_t before;
    char minid[32];
    if (sb_stream_of(env, &s) != OK || sb_uint(env, "before", &before) != OK) {
        (void)bus_reply_err(req, ERR_INVAL, "env, key, io and before are required");
        return;
    }
    snprintf(minid, sizeof(minid), "%" PRIu64 "-0", before);
    const char *argv[] = {"XTRIM", s.rkey, "MINID", minid};
    redisReply *rep = NULL;
    err_t rc = db_redis_cmd(sb->redis, 4, argv, NULL, &rep);
    if (rep)
        freeReplyObject(rep);
    if (rc != OK) {
        sb_reply_redis_err(req, "stream.trim", rc, NULL);
        return;
    }
    const char *gargv[] = {"GET", s.nkey};
    rep = NULL;
    rc = db_redis_cmd(sb->redis, 2, gargv, NULL, &rep);
    uint64_t tail = rc == OK && rep->type == REDIS_REPLY_STRING ? strtoull(rep->str, NULL, 10) : 0;
    if (rep)
        freeReplyObject(rep);
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "tail", tail);
    sb_reply_w(req, &w);
    mp_writer_fini(&w);
}

static const struct actor_route sb_routes[] = {
    {.type = MSG_STREAM_APPEND, .fn = sb_on_append},
    {.type = MSG_STREAM_READ, .fn = sb_on_read},
    {.type = MSG_STREAM_PEEK, .fn = sb_on_peek},
    {.type = MSG_STREAM_TRIM, .fn = sb_on_trim},
};

static err_t sb_init(struct actor *a)
{
    struct sb *sb = &sb_state;
    char url[BUS_URL_MAX + 32];
    a->state = sb;
    sb->redis = &a->redis;
    /* beside the request endpoint: ipc://<bus dir>/stream-broker.events.<instance>.ipc */
    if (a->cfg.bus_dir[0])
        snprintf(url, sizeof(url), "ipc://%s/stream-broker.events.%u.ipc", a->cfg.bus_dir,
                 proc_instance());
    else
        snprintf(url, sizeof(url), "ipc://%s/bus/stream-broker.events.%u.ipc", a->cfg.run_dir,
                 proc_instance());
    err_t rc = bus_pub_open(a->bus, url, &sb->events);
    if (rc != OK)
        return rc;
    LOG_INFO("stream.events", "publishing stream.record on %s", url);
    return OK;
}

static const struct actor_spec sb_spec = {
    .name = "stream-broker",
    .stores = ACTOR_STORE_REDIS,
    .routes = sb_routes,
    .nroutes = sizeof(sb_routes) / sizeof(sb_routes[0]),
    .init = sb_init,
};

int main(int argc, char **argv)
{
    return actor_main(&sb_spec, argc, argv);
}
