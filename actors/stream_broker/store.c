/*
 * store.c - the stream-broker's Redis calls of one stream besides the append
 * (append.c): stream.read and stream.peek (the records cut to what a reply
 * may hold), stream.trim and stream.seal.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "sb.h"

/* Room a reply's own fields (records array, tail, tail_ts) take besides the records. */
#define SB_REPLY_OVERHEAD 64

/* ---- stream.read, stream.peek ---- */

void sb_range_fini(struct sb_range *rg)
{
    free(rg->entries);
    memset(rg, 0, sizeof(*rg));
}

/*
 * Takes a {entries, tail, tail_ts} reply into out: entries parsed, oldest
 * first, as many as fit in budget (the newest ones when newest_first).
 */
static err_t sb_range_take(const struct sb_script *s, const redisReply *r, bool newest_first,
                           size_t budget, struct sb_range *out)
{
    const redisReply *list;
    memset(out, 0, sizeof(*out));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || !sb_reply_u64(r->element[1], &out->tail) ||
        !sb_reply_u64(r->element[2], &out->tail_ts))
        return sb_unexpected(s, "not {entries, tail, tail_ts}");
    list = r->element[0];
    /* the script asked for at most STREAM_BATCH_MAX entries */
    if (list->elements > STREAM_BATCH_MAX)
        return sb_unexpected(s, "more entries than asked for");
    out->entries = list->elements ? xcalloc(list->elements, sizeof(*out->entries)) : NULL;
    size_t used = SB_REPLY_OVERHEAD;
    for (size_t i = 0; i < list->elements; i++) {
        struct sb_entry e;
        if (sb_entry_parse(list->element[i], &e) != OK) {
            free(out->entries);
            out->entries = NULL;
            return sb_unexpected(s, "an entry this broker did not write");
        }
        size_t sz = sb_entry_size(&e);
        if (out->n > 0 && used + sz > budget)
            break;
        used += sz;
        out->entries[out->n++] = e;
    }
    if (newest_first)
        for (size_t i = 0; i < out->n / 2; i++) {
            struct sb_entry t = out->entries[i];
            out->entries[i] = out->entries[out->n - 1 - i];
            out->entries[out->n - 1 - i] = t;
        }
    return OK;
}

/* A script of one stream (read, peek, trim) on its way, with its keys and arguments. */
struct sb_stream_op {
    struct sb *sb;
    struct sb_stream s;
    bool peek;
    sb_range_fn range_done;
    sb_trim_fn trim_done;
    void *arg;
    struct sb_stream_keys keys;
    char args[3][32];
    const char *argv[9];
    size_t lens[9];
    struct sb_eval eval;
};

/* Starts sc with the stream's keys (records, next, bytes) and nargs (≤ 3) of op->args. */
static err_t sb_stream_op_start(struct sb_stream_op *op, struct sb_script *sc, int nargs,
                                sb_eval_fn on_reply)
{
    op->argv[3] = op->keys.stream;
    op->lens[3] = sb_key_stream(&op->s, op->keys.stream);
    op->argv[4] = op->keys.next;
    op->lens[4] = sb_key_next(&op->s, op->keys.next);
    op->argv[5] = op->keys.bytes;
    op->lens[5] = sb_key_bytes(&op->s, op->keys.bytes);
    for (int i = 0; i < nargs && i < 3; i++) {
        op->argv[6 + i] = op->args[i];
        op->lens[6 + i] = strlen(op->args[i]);
    }
    return sb_eval_start(op->sb, &op->eval, sc, 6 + (nargs < 3 ? nargs : 3), op->argv, op->lens, 3,
                         on_reply, op);
}

static void sb_range_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_stream_op *op = arg;
    struct sb_range rg = {0};
    if (rc == OK)
        rc = sb_range_take(op->peek ? &op->sb->peek : &op->sb->read, r, op->peek, op->sb->reply_max,
                           &rg);
    op->range_done(op->arg, rc, rc == OK ? &rg : NULL);
    sb_range_fini(&rg);
    free(op);
}

static err_t sb_range_start(struct sb *sb, const struct sb_stream *s, bool peek, int nargs,
                            struct sb_stream_op *op, sb_range_fn done, void *arg)
{
    op->sb = sb;
    op->s = *s;
    op->peek = peek;
    op->range_done = done;
    op->arg = arg;
    err_t rc = sb_stream_op_start(op, peek ? &sb->peek : &sb->read, nargs, sb_range_on_reply);
    if (rc != OK)
        free(op);
    return rc;
}

err_t sb_store_read(struct sb *sb, const struct sb_stream *s, uint64_t from, uint64_t count,
                    sb_range_fn done, void *arg)
{
    struct sb_stream_op *op = xcalloc(1, sizeof(*op));
    size_t room = sb->reply_max > SB_REPLY_OVERHEAD ? sb->reply_max - SB_REPLY_OVERHEAD : 0;
    snprintf(op->args[0], sizeof(op->args[0]), "%" PRIu64 "-0", from);
    snprintf(op->args[1], sizeof(op->args[1]), "%" PRIu64, count);
    snprintf(op->args[2], sizeof(op->args[2]), "%zu", room);
    return sb_range_start(sb, s, false, 3, op, done, arg);
}

err_t sb_store_peek(struct sb *sb, const struct sb_stream *s, uint64_t count, sb_range_fn done,
                    void *arg)
{
    struct sb_stream_op *op = xcalloc(1, sizeof(*op));
    snprintf(op->args[0], sizeof(op->args[0]), "%" PRIu64, count);
    return sb_range_start(sb, s, true, 1, op, done, arg);
}

/* ---- stream.trim ---- */

static void sb_trim_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_stream_op *op = arg;
    uint64_t tail = 0;
    int64_t delta = 0;
    if (rc == OK && (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                     !sb_reply_u64(r->element[0], &tail) || !sb_reply_i64(r->element[1], &delta)))
        rc = sb_unexpected(&op->sb->trim, "not {tail, delta}");
    if (rc == OK)
        sb_quota_settle(op->sb, op->s.env, delta);
    op->trim_done(op->arg, rc, tail);
    free(op);
}

err_t sb_store_trim(struct sb *sb, const struct sb_stream *s, uint64_t before, sb_trim_fn done,
                    void *arg)
{
    struct sb_stream_op *op = xcalloc(1, sizeof(*op));
    op->sb = sb;
    op->s = *s;
    op->trim_done = done;
    op->arg = arg;
    snprintf(op->args[0], sizeof(op->args[0]), "%" PRIu64 "-0", before);
    err_t rc = sb_stream_op_start(op, &sb->trim, 1, sb_trim_on_reply);
    if (rc != OK)
        free(op);
    return rc;
}

/* ---- stream.seal ---- */

struct sb_seal_op {
    sb_store_fn done;
    void *arg;
};

static void sb_seal_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_seal_op *op = arg;
    (void)r;
    op->done(op->arg, rc == ERR_INTERNAL ? ERR_UNAVAIL : rc);
    free(op);
}

err_t sb_store_seal(struct sb *sb, const char *env, const char *key, const char *reason,
                    sb_store_fn done, void *arg)
{
    char k[SB_KEY_MAX];
    size_t kl = sb_key_sealed(env, key, k);
    /* "0": closed with no reason; "1<reason>" (a reason may be empty, and differs from none) */
    char v[STREAM_REASON_MAX + 2];
    int vl = snprintf(v, sizeof(v), "%s%.*s", reason ? "1" : "0", (int)STREAM_REASON_MAX,
                      reason ? reason : "");
    const char *argv[] = {"SET", k, v};
    size_t lens[] = {3, kl, (size_t)(vl < 0 ? 0 : vl < (int)sizeof(v) ? vl : (int)sizeof(v) - 1)};
    struct sb_seal_op *op = xcalloc(1, sizeof(*op));
    op->done = done;
    op->arg = arg;
    err_t rc = db_redis_async_cmd(sb->redis, 3, argv, lens, sb_seal_on_reply, op);
    if (rc != OK)
        free(op);
    return rc;
}

/* ---- stream.follow ---- */

struct sb_follow_op {
    struct sb_eval eval;
    const char *argv[6];
    size_t lens[6];
    char key[SB_KEY_MAX];
    char ttl[16];
    sb_follow_fn done;
    void *arg;
};

static void sb_follow_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_follow_op *op = arg;
    uint64_t added = 0;
    if (rc == OK && !sb_reply_u64(r, &added))
        rc = sb_unexpected(&op->eval.sb->follow, "not 0 or 1");
    op->done(op->arg, rc == ERR_CLOSED ? ERR_UNAVAIL : rc, added != 0);
    free(op);
}

err_t sb_store_follow(struct sb *sb, const struct sb_stream *s, struct slice holder,
                      uint32_t ttl_ms, sb_follow_fn done, void *arg)
{
    struct sb_follow_op *op = xcalloc(1, sizeof(*op));
    op->done = done;
    op->arg = arg;
    op->argv[3] = op->key;
    op->lens[3] = sb_key_followers(s, op->key);
    op->argv[4] = holder.p;
    op->lens[4] = holder.n;
    int w = snprintf(op->ttl, sizeof(op->ttl), "%" PRIu32, ttl_ms);
    op->argv[5] = op->ttl;
    op->lens[5] = (size_t)(w > 0 ? w : 0);
    err_t rc =
        sb_eval_start(sb, &op->eval, &sb->follow, 6, op->argv, op->lens, 1, sb_follow_on_reply, op);
    if (rc != OK)
        free(op);
    return rc;
}
