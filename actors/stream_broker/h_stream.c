/*
 * h_stream.c - stream.append, stream.read, stream.peek, stream.trim,
 * stream.seal and stream.follow, and the stream.record event of every
 * appended record of a followed stream.
 *
 * Each handler decodes and validates the whole request before touching
 * Redis (bad input is answered ERR_INVAL / ERR_TOOBIG with a message saying
 * what is wrong), starts one store call and returns (a call that cannot
 * start is the dispatcher's to answer, actor.h); the reply is sent from the
 * call's completion, so many requests are in flight at once. Events are published
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
#include "msg_stream.h"
#include "sb.h"

/* Answers m, a body of form f; ERR_NOMEM when it (or a part made before, rc) could not be
 * encoded. */
static void sb_reply_msg(struct bus_req *req, err_t rc, const struct msg_form *f, const void *m)
{
    struct mp_writer w;
    mp_writer_init(&w);
    if (rc == OK) {
        msg_encode(f, &w, m);
        rc = mp_writer_err(&w);
    }
    if (rc == OK)
        (void)bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
    mp_writer_fini(&w);
}

/*
 * The arrays of a reply (append's seqs and dups, a range's records) are written here first,
 * and msg_encode copies them into the reply. One writer for the process: the actor runs on
 * one thread and encodes a reply in one go. What it grew to is kept for the next reply, up
 * to SB_SCRATCH_KEEP.
 */
#define SB_SCRATCH_KEEP (1u << 20)
static struct mp_writer sb_scratch_w;
static bool sb_scratch_ready;

/* The scratch writer, empty. */
static struct mp_writer *sb_scratch(void)
{
    if (!sb_scratch_ready || mp_writer_len(&sb_scratch_w) > SB_SCRATCH_KEEP) {
        if (sb_scratch_ready)
            mp_writer_fini(&sb_scratch_w);
        mp_writer_init(&sb_scratch_w);
        sb_scratch_ready = true;
    }
    mp_writer_reset(&sb_scratch_w);
    return &sb_scratch_w;
}

/* What the scratch writer holds. */
static struct slice sb_scratch_data(void)
{
    return (struct slice){mp_writer_data(&sb_scratch_w), mp_writer_len(&sb_scratch_w)};
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
        /* sb_stream_of checked the same limits */
        LOG_ERROR("stream.publish_failed", "no topic for a validated stream name");
        return;
    }
    const struct msg_stream_record ev = {
        .env = msg_str(ap->s.env), .key = msg_str(ap->s.key), .io = msg_str(ap->s.io)};
    mp_writer_init(&w);
    for (uint32_t i = 0; i < ap->n; i++) {
        if (ap->dups[i])
            continue;
        mp_writer_reset(&w);
        msg_stream_record_open(&w, &ev);
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
    struct sb *sb = call->sb;
    struct mp_writer *arr;
    unsigned ndup = 0;
    if (rc != OK) {
        if (rc == ERR_CLOSED)
            (void)bus_reply_err(call->req, ERR_CLOSED, ap->sealed);
        else if (rc == ERR_QUOTA)
            (void)bus_reply_err(call->req, ERR_QUOTA,
                                "the streams of this environment hold their quota of bytes "
                                "(TETHER_SB_ENV_MAX_BYTES); trim a stream to make room");
        else
            actor_reply_err(call->req, rc);
        sb_append_fini(ap);
        free(call);
        return;
    }
    sb_publish_appended(sb, ap);
    /* the arrays, one after the other in the scratch writer */
    arr = sb_scratch();
    mp_put_array(arr, ap->n);
    for (uint32_t i = 0; i < ap->n; i++)
        mp_put_uint(arr, ap->seqs[i]);
    size_t seqs_n = mp_writer_len(arr);
    mp_put_array(arr, ap->n);
    for (uint32_t i = 0; i < ap->n; i++) {
        mp_put_bool(arr, ap->dups[i]);
        ndup += ap->dups[i];
    }
    struct msg_stream_append_reply m = {.tail = ap->tail, .ts = ap->ts};
    if (mp_writer_err(arr) == OK) {
        struct slice both = sb_scratch_data();
        m.seqs = (struct slice){both.p, seqs_n};
        m.dups = (struct slice){both.p + seqs_n, both.n - seqs_n};
    }
    sb_reply_msg(call->req, mp_writer_err(arr), &msg_stream_append_reply_form, &m);
    LOG_DEBUG("stream.appended",
              "%" PRIu32 " records (%u duplicates) on %s/%s, tail %" PRIu64 ", %" PRIu64
              " records trimmed, %+" PRId64 " bytes",
              ap->n, ndup, ap->s.env, ap->s.io, ap->tail, ap->trimmed, ap->delta);
    sb_append_fini(ap);
    free(call);
}

err_t sb_on_stream_append(struct actor *a, struct bus_req *req)
{
    char why[SB_WHY_MAX];
    struct sb_append_call *call = xcalloc(1, sizeof(*call));
    call->sb = sb_of(a);
    call->req = req;
    err_t rc = sb_parse_append(bus_req_env(req)->body, &call->ap, why, sizeof(why));
    if (rc != OK) {
        (void)bus_reply_err(req, rc, why);
        rc = OK; /* answered */
    } else if ((rc = sb_store_append(call->sb, &call->ap, sb_append_done, call)) == OK) {
        return OK; /* sb_append_done replies */
    }
    sb_append_fini(&call->ap);
    free(call);
    return rc;
}

static void sb_range_done(void *arg, err_t rc, const struct sb_range *rg)
{
    struct bus_req *req = arg;
    if (rc != OK) {
        actor_reply_err(req, rc);
        return;
    }
    struct mp_writer *recs = sb_scratch();
    mp_put_array(recs, (uint32_t)rg->n);
    for (size_t i = 0; i < rg->n; i++)
        sb_entry_put(recs, &rg->entries[i]);
    struct msg_stream_range m = {sb_scratch_data(), rg->tail, rg->tail_ts};
    sb_reply_msg(req, mp_writer_err(recs), &msg_stream_range_form, &m);
}

/* stream.read (from, count) and stream.peek (count): the same answer from two scripts. */
static err_t sb_on_range(struct actor *a, struct bus_req *req, bool peek)
{
    struct sb_stream s;
    uint64_t from, count;
    char why[SB_WHY_MAX];
    err_t rc = sb_parse_range(bus_req_env(req)->body, peek, &s, &from, &count, why, sizeof(why));
    if (rc != OK) {
        (void)bus_reply_err(req, rc, why);
        return OK;
    }
    return peek ? sb_store_peek(sb_of(a), &s, count, sb_range_done, req)
                : sb_store_read(sb_of(a), &s, from, count, sb_range_done, req);
}

err_t sb_on_stream_read(struct actor *a, struct bus_req *req)
{
    return sb_on_range(a, req, false);
}

err_t sb_on_stream_peek(struct actor *a, struct bus_req *req)
{
    return sb_on_range(a, req, true);
}

static void sb_trim_done(void *arg, err_t rc, uint64_t tail)
{
    struct bus_req *req = arg;
    if (rc != OK) {
        actor_reply_err(req, rc);
        return;
    }
    struct msg_stream_trim_reply m = {tail};
    sb_reply_msg(req, OK, &msg_stream_trim_reply_form, &m);
}

err_t sb_on_stream_trim(struct actor *a, struct bus_req *req)
{
    struct sb_stream s;
    uint64_t before;
    char why[SB_WHY_MAX];
    err_t rc = sb_parse_trim(bus_req_env(req)->body, &s, &before, why, sizeof(why));
    if (rc != OK) {
        (void)bus_reply_err(req, rc, why);
        return OK;
    }
    rc = sb_store_trim(sb_of(a), &s, before, sb_trim_done, req);
    if (rc == OK)
        LOG_DEBUG("stream.trimming", "records before %" PRIu64 " of %s/%s", before, s.env, s.io);
    return rc;
}

static void sb_seal_done(void *arg, err_t rc)
{
    struct bus_req *req = arg;
    if (rc != OK) {
        actor_reply_err(req, rc);
        return;
    }
    struct msg_stream_seal_reply m = {true};
    sb_reply_msg(req, OK, &msg_stream_seal_reply_form, &m);
}

err_t sb_on_stream_seal(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    struct msg_stream_seal m;
    char e[STREAM_ENV_MAX + 1], k[STREAM_KEY_MAX + 1], r[STREAM_REASON_MAX + 1];
    /* the form bounds the lengths (within the buffers) and requires env and key */
    if (msg_decode(&msg_stream_seal_form, env->body.p, env->body.n, &m) != OK ||
        memchr(m.env.p, '\0', m.env.n) || memchr(m.key.p, '\0', m.key.n) ||
        slice_copy(m.env, e, sizeof(e)) != OK || slice_copy(m.key, k, sizeof(k)) != OK ||
        (m.reason.p && slice_copy(m.reason, r, sizeof(r)) != OK)) {
        (void)bus_reply_err(req, ERR_INVAL, "stream.seal needs env, key and an optional reason");
        return OK;
    }
    return sb_store_seal(sb_of(a), e, k, m.reason.p ? r : NULL, sb_seal_done, req);
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
    if (call->rc != OK) {
        actor_reply_err(call->req, call->rc);
    } else {
        struct mp_writer *added = sb_scratch();
        mp_put_array(added, call->n);
        for (uint32_t i = 0; i < call->n; i++)
            mp_put_bool(added, call->added[i]);
        struct msg_stream_follow_reply m = {sb_scratch_data()};
        sb_reply_msg(call->req, mp_writer_err(added), &msg_stream_follow_reply_form, &m);
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

err_t sb_on_stream_follow(struct actor *a, struct bus_req *req)
{
    struct sb_follow_req f;
    char why[SB_WHY_MAX];
    if (sb_parse_follow(bus_req_env(req)->body, &f, why, sizeof(why)) != OK) {
        (void)bus_reply_err(req, ERR_INVAL, why);
        sb_follow_req_fini(&f);
        return OK;
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
        sb_follow_reply(call); /* answers a failure to start too */
    return OK;
}
