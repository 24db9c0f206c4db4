/*
 * h_stream.c - stream.append, stream.read, stream.peek, stream.trim,
 * stream.seal and stream.follow, and the stream.record event of every
 * appended record of a followed stream.
 *
 * Each handler validates the whole request before touching Redis (bad
 * input is ERR_INVAL / ERR_TOOBIG with a message saying what is wrong),
 * starts one store call and returns; the reply is sent from the call's
 * completion, so many requests are in flight at once. Events are published
 * before the reply because the records they carry borrow from the request;
 * a lost event costs latency only, since subscribers back-fill with
 * stream.read.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "msg.h"
#include "sb.h"

static void sb_reply_writer(struct bus_req *req, struct mp_writer *w)
{
    if (mp_writer_err(w) == OK)
        (void)bus_reply(req, mp_writer_data(w), mp_writer_len(w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
}

/* eval.c and append.c have logged the cause; this says what the caller may do. */
static void sb_reply_store_err(struct bus_req *req, err_t rc)
{
    if (rc == ERR_UNAVAIL || rc == ERR_TIMEOUT || rc == ERR_CLOSED) /* CLOSED: we are stopping */
        (void)bus_reply_err(req, rc == ERR_CLOSED ? ERR_UNAVAIL : rc,
                            "the stream store (Redis) is unavailable; retry later");
    else if (rc == ERR_QUOTA)
        (void)bus_reply_err(req, ERR_QUOTA,
                            "the streams of this environment hold their quota of bytes "
                            "(TETHER_SB_ENV_MAX_BYTES); trim a stream to make room");
    else
        (void)bus_reply_err(req, ERR_INTERNAL, "unexpected result from the stream store");
}

/*
 * Publishes one stream.record per appended (non-duplicate) record while the stream has a follow
 * lease (nobody follows the rest: their events would only be dropped by every subscriber);
 * failures are only logged.
 */
static void sb_publish_appended(struct sb *sb, const struct sb_append *ap)
{
    char topic[STREAM_NAME_MAX];
    struct mp_writer w;
    unsigned failed = 0;
    err_t last = OK;
    if (!sb->events || !ap->followed)
        return;
    if (stream_topic(topic, sizeof(topic), ap->s.env, ap->s.key, ap->s.channel, ap->s.io) != OK) {
        /* sb_parse_stream checked the same limits */
        LOG_ERROR("stream.publish_failed", "no topic for a validated stream name");
        return;
    }
    mp_writer_init(&w);
    for (uint32_t i = 0; i < ap->n; i++) {
        if (ap->dups[i])
            continue;
        mp_writer_reset(&w);
        mp_put_map(&w, 4);
        mp_put_kv_str(&w, "env", ap->s.env);
        mp_put_kv_str(&w, "key", ap->s.key);
        mp_put_kv_str(&w, "io", ap->s.io);
        mp_put_str(&w, "record");
        sb_record_put(&w, &ap->recs[i], ap->seqs[i], ap->ts);
        err_t rc = mp_writer_err(&w);
        if (rc == OK)
            rc = bus_publish(sb->events, topic, MSG_STREAM_RECORD, mp_writer_data(&w),
                             mp_writer_len(&w));
        if (rc != OK) {
            failed++;
            last = rc;
        }
    }
    mp_writer_fini(&w);
    /* one line per batch: a stuck socket must not turn 1000 records into 1000 lines */
    if (failed)
        LOG_WARN("stream.publish_failed",
                 "could not publish %u stream.record events of environment %s (%s): %s", failed,
                 ap->s.env, ap->s.io, err_str(last));
}

/* An append between its request and its reply. */
struct sb_append_call {
    struct sb *sb;
    struct bus_req *req;
    struct sb_append ap;
};

static void sb_append_done(void *arg, err_t rc)
{
    struct sb_append_call *call = arg;
    struct sb_append *ap = &call->ap;
    struct mp_writer w;
    unsigned ndup = 0;
    if (rc != OK) {
        if (rc == ERR_CLOSED)
            (void)bus_reply_err(call->req, ERR_CLOSED, ap->sealed);
        else
            sb_reply_store_err(call->req, rc);
        sb_append_fini(ap);
        free(call);
        return;
    }
    sb_publish_appended(call->sb, ap);
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    mp_put_str(&w, "seqs");
    mp_put_array(&w, ap->n);
    for (uint32_t i = 0; i < ap->n; i++)
        mp_put_uint(&w, ap->seqs[i]);
    mp_put_str(&w, "dups");
    mp_put_array(&w, ap->n);
    for (uint32_t i = 0; i < ap->n; i++) {
        mp_put_bool(&w, ap->dups[i]);
        ndup += ap->dups[i];
    }
    mp_put_kv_uint(&w, "tail", ap->tail);
    mp_put_kv_uint(&w, "ts", ap->ts);
    sb_reply_writer(call->req, &w);
    mp_writer_fini(&w);
    LOG_DEBUG("stream.appended",
              "%" PRIu32 " records (%u duplicates) on %s/%s, tail %" PRIu64 ", %" PRIu64
              " records trimmed, %+" PRId64 " bytes",
              ap->n, ndup, ap->s.env, ap->s.io, ap->tail, ap->trimmed, ap->delta);
    sb_append_fini(ap);
    free(call);
}

void sb_on_stream_append(struct actor *a, struct bus_req *req)
{
    char why[SB_WHY_MAX];
    struct sb_append_call *call = xcalloc(1, sizeof(*call));
    call->sb = sb_of(a);
    call->req = req;
    err_t rc = sb_parse_append(bus_req_env(req)->body, &call->ap, why, sizeof(why));
    if (rc != OK) {
        (void)bus_reply_err(req, rc, why);
    } else if ((rc = sb_store_append(call->sb, &call->ap, sb_append_done, call)) == OK) {
        return; /* sb_append_done replies */
    } else {
        sb_reply_store_err(req, rc);
    }
    sb_append_fini(&call->ap);
    free(call);
}

static void sb_reply_range(struct bus_req *req, const struct sb_range *rg)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_str(&w, "records");
    mp_put_array(&w, (uint32_t)rg->n);
    for (size_t i = 0; i < rg->n; i++)
        sb_entry_put(&w, &rg->entries[i]);
    mp_put_kv_uint(&w, "tail", rg->tail);
    mp_put_kv_uint(&w, "tail_ts", rg->tail_ts);
    sb_reply_writer(req, &w);
    mp_writer_fini(&w);
}

static void sb_range_done(void *arg, err_t rc, const struct sb_range *rg)
{
    struct bus_req *req = arg;
    if (rc != OK)
        sb_reply_store_err(req, rc);
    else
        sb_reply_range(req, rg);
}

/* stream.read (from, count) and stream.peek (count): the same answer from two scripts. */
static void sb_on_range(struct actor *a, struct bus_req *req, bool peek)
{
    struct slice body = bus_req_env(req)->body;
    struct sb_stream s;
    uint64_t from = 0, count;
    char why[SB_WHY_MAX];
    err_t rc = sb_parse_stream(body, &s, why, sizeof(why));
    if (rc == OK && !peek)
        rc = sb_parse_uint(body, "from", 0, UINT64_MAX, &from, why, sizeof(why));
    if (rc == OK)
        rc = sb_parse_uint(body, "count", 1, peek ? SB_PEEK_MAX : STREAM_BATCH_MAX, &count, why,
                           sizeof(why));
    if (rc != OK) {
        (void)bus_reply_err(req, rc, why);
        return;
    }
    rc = peek ? sb_store_peek(sb_of(a), &s, count, sb_range_done, req)
              : sb_store_read(sb_of(a), &s, from, count, sb_range_done, req);
    if (rc != OK)
        sb_reply_store_err(req, rc);
}

void sb_on_stream_read(struct actor *a, struct bus_req *req)
{
    sb_on_range(a, req, false);
}

void sb_on_stream_peek(struct actor *a, struct bus_req *req)
{
    sb_on_range(a, req, true);
}

static void sb_trim_done(void *arg, err_t rc, uint64_t tail)
{
    struct bus_req *req = arg;
    struct mp_writer w;
    if (rc != OK) {
        sb_reply_store_err(req, rc);
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "tail", tail);
    sb_reply_writer(req, &w);
    mp_writer_fini(&w);
}

void sb_on_stream_trim(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body;
    struct sb_stream s;
    uint64_t before;
    char why[SB_WHY_MAX];
    err_t rc = sb_parse_stream(body, &s, why, sizeof(why));
    if (rc == OK)
        rc = sb_parse_uint(body, "before", 0, UINT64_MAX, &before, why, sizeof(why));
    if (rc != OK) {
        (void)bus_reply_err(req, rc, why);
        return;
    }
    rc = sb_store_trim(sb_of(a), &s, before, sb_trim_done, req);
    if (rc != OK)
        sb_reply_store_err(req, rc);
    else
        LOG_DEBUG("stream.trimming", "records before %" PRIu64 " of %s/%s", before, s.env, s.io);
}

static void sb_seal_done(void *arg, err_t rc)
{
    struct bus_req *req = arg;
    if (rc != OK) {
        sb_reply_store_err(req, rc);
        return;
    }
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_kv_bool(&w, "sealed", true);
    sb_reply_writer(req, &w);
    mp_writer_fini(&w);
}

void sb_on_stream_seal(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body;
    struct mp_reader v;
    struct slice env, key, reason = SLICE_NULL;
    char e[STREAM_ENV_MAX + 1], k[STREAM_KEY_MAX + 1], r[STREAM_REASON_MAX + 1];
    if (mp_map_find(body.p, body.n, "env", &v) != OK || mp_read_str(&v, &env) != OK ||
        slice_copy(env, e, sizeof(e)) != OK || !e[0] || memchr(env.p, '\0', env.n) ||
        mp_map_find(body.p, body.n, "key", &v) != OK || mp_read_str(&v, &key) != OK ||
        slice_copy(key, k, sizeof(k)) != OK || !k[0] || memchr(key.p, '\0', key.n) ||
        (mp_map_find(body.p, body.n, "reason", &v) == OK &&
         (mp_read_str_or_nil(&v, &reason) != OK ||
          (reason.p && slice_copy(reason, r, sizeof(r)) != OK)))) {
        (void)bus_reply_err(req, ERR_INVAL, "stream.seal needs env, key and an optional reason");
        return;
    }
    err_t rc = sb_store_seal(sb_of(a), e, k, reason.p ? r : NULL, sb_seal_done, req);
    if (rc != OK)
        sb_reply_store_err(req, rc);
}

/* ---- stream.follow ---- */

/* A stream.follow between its request and its reply: one lease call per stream. */
struct sb_follow_call {
    struct bus_req *req;
    uint32_t n, pending;
    err_t rc; /* the first failure; the reply waits for every call */
    bool *added;
};

struct sb_follow_one {
    struct sb_follow_call *call;
    uint32_t i;
};

static void sb_follow_reply(struct sb_follow_call *call)
{
    struct mp_writer w;
    if (call->rc != OK) {
        sb_reply_store_err(call->req, call->rc);
    } else {
        mp_writer_init(&w);
        mp_put_map(&w, 1);
        mp_put_str(&w, "added");
        mp_put_array(&w, call->n);
        for (uint32_t i = 0; i < call->n; i++)
            mp_put_bool(&w, call->added[i]);
        sb_reply_writer(call->req, &w);
        mp_writer_fini(&w);
    }
    free(call->added);
    free(call);
}

static void sb_follow_done(void *arg, err_t rc, bool added)
{
    struct sb_follow_one *one = arg;
    struct sb_follow_call *call = one->call;
    if (rc != OK && call->rc == OK)
        call->rc = rc;
    call->added[one->i] = added;
    free(one);
    if (--call->pending == 0)
        sb_follow_reply(call);
}

void sb_on_stream_follow(struct actor *a, struct bus_req *req)
{
    struct sb_follow_req f;
    char why[SB_WHY_MAX];
    if (sb_parse_follow(bus_req_env(req)->body, &f, why, sizeof(why)) != OK) {
        (void)bus_reply_err(req, ERR_INVAL, why);
        sb_follow_req_fini(&f);
        return;
    }
    struct sb_follow_call *call = xcalloc(1, sizeof(*call));
    call->req = req;
    call->n = f.n;
    call->added = xcalloc(f.n, sizeof(*call->added));
    call->pending = 1; /* held until every call is started: a failure to start must not reply */
    for (uint32_t i = 0; i < f.n; i++) {
        struct sb_follow_one *one = xcalloc(1, sizeof(*one));
        one->call = call;
        one->i = i;
        call->pending++;
        err_t rc = sb_store_follow(sb_of(a), &f.names[i], f.holder, (uint32_t)f.ttl_ms,
                                   sb_follow_done, one);
        if (rc != OK) {
            free(one);
            call->pending--;
            if (call->rc == OK)
                call->rc = rc;
            break;
        }
    }
    sb_follow_req_fini(&f);
    if (--call->pending == 0)
        sb_follow_reply(call);
}
