/*
 * append.c - stream.append in Redis: the quota decision (quota.c), the append
 * script's arguments (every record, its de-dup key, its trim point) and its
 * reply taken into the request.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "sb.h"

/* The argv of the append script, and the storage its strings live in. */
struct sb_append_argv {
    const char **argv;
    size_t *lens;
    char (*num)[24];
    char *parts;
    int argc;
};

static void sb_append_argv_fini(struct sb_append_argv *x)
{
    free(x->argv);
    free(x->lens);
    free(x->num);
    free(x->parts);
}

static void sb_arg(struct sb_append_argv *x, const char *p, size_t n)
{
    x->argv[x->argc] = p;
    x->lens[x->argc] = n;
    x->argc++;
}

static void sb_arg_num(struct sb_append_argv *x, unsigned *k, uint64_t v)
{
    int w = snprintf(x->num[*k], sizeof(x->num[*k]), "%" PRIu64, v);
    sb_arg(x, x->num[*k], (size_t)w);
    (*k)++;
}

static void sb_arg_int(struct sb_append_argv *x, unsigned *k, long long v)
{
    int w = snprintf(x->num[*k], sizeof(x->num[*k]), "%lld", v);
    sb_arg(x, x->num[*k], (size_t)w);
    (*k)++;
}

/*
 * Builds the argv (allowed: the growth the quota allows, -1 for any); false if the
 * validated headers no longer read back (cannot happen).
 */
static bool sb_append_argv_build(const struct sb *sb, const struct sb_append *ap, int64_t allowed,
                                 struct sb_stream_keys *keys, struct sb_append_argv *x)
{
    char prefix[SB_KEY_MAX];
    size_t plen = sb_key_part_prefix(&ap->s, prefix), parts_len = 0, total = 3 + 5 + 5;
    unsigned nparts = 0, k = 0;
    for (uint32_t i = 0; i < ap->n; i++) {
        const struct sb_record_in *r = &ap->recs[i];
        total += 4 + 2 * (size_t)r->nheaders;
        if (r->part_id.p) {
            nparts++;
            parts_len += plen + r->part_id.n;
        }
    }
    total += nparts;
    /* bounded by STREAM_BATCH_MAX x (4 + 2 x STREAM_HEADERS_MAX + 1), checked by the parser */
    x->argv = xcalloc(total, sizeof(*x->argv));
    x->lens = xcalloc(total, sizeof(*x->lens));
    x->num = xcalloc(3 * (size_t)ap->n + 5, sizeof(*x->num));
    x->parts = xmalloc(parts_len + 1);
    x->argc = 3; /* sb_eval's */
    sb_arg(x, keys->stream, sb_key_stream(&ap->s, keys->stream));
    sb_arg(x, keys->next, sb_key_next(&ap->s, keys->next));
    sb_arg(x, keys->bytes, sb_key_bytes(&ap->s, keys->bytes));
    sb_arg(x, keys->sealed, sb_key_sealed(ap->s.env, ap->s.key, keys->sealed));
    sb_arg(x, keys->followers, sb_key_followers(&ap->s, keys->followers));
    char *p = x->parts;
    for (uint32_t i = 0; i < ap->n; i++) {
        const struct sb_record_in *r = &ap->recs[i];
        if (!r->part_id.p)
            continue;
        memcpy(p, prefix, plen);
        memcpy(p + plen, r->part_id.p, r->part_id.n);
        sb_arg(x, p, plen + r->part_id.n);
        p += plen + r->part_id.n;
    }
    sb_arg_num(x, &k, ap->n);
    sb_arg_num(x, &k, STREAM_PART_TTL_S);
    sb_arg_int(x, &k, sb->cfg.stream_max_records);
    sb_arg_int(x, &k, sb->cfg.stream_max_bytes);
    sb_arg_int(x, &k, allowed);
    unsigned key_index = 5; /* Lua's KEYS[1..5]: the stream, its two counters, the seal, the
                             * follow leases */
    for (uint32_t i = 0; i < ap->n; i++) {
        const struct sb_record_in *r = &ap->recs[i];
        struct mp_reader hr;
        uint32_t nh, two;
        uint64_t point = 0;
        struct slice name, value;
        if (!sb_record_trim_point(r, &point))
            point = 0;
        sb_arg_num(x, &k, r->part_id.p ? ++key_index : 0);
        sb_arg_num(x, &k, r->nheaders);
        sb_arg_num(x, &k, point);
        sb_arg(x, r->body.p ? r->body.p : "", r->body.n);
        if (!r->nheaders)
            continue;
        mp_reader_init(&hr, r->headers.p, r->headers.n);
        if (mp_read_array(&hr, &nh) != OK || nh != r->nheaders)
            return false;
        for (uint32_t h = 0; h < nh; h++) {
            if (mp_read_array(&hr, &two) != OK || two != 2 || mp_read_str(&hr, &name) != OK ||
                mp_read_str(&hr, &value) != OK)
                return false;
            sb_arg(x, name.p, name.n);
            sb_arg(x, value.p, value.n);
        }
    }
    return (size_t)x->argc == total;
}

/*
 * Takes the append script's reply into ap; *refused is 1 when it wrote nothing for the
 * quota, 2 when the session is sealed (ap->sealed then holds the seal's value).
 */
static err_t sb_append_take(struct sb *sb, const redisReply *r, struct sb_append *ap,
                            uint64_t *refused)
{
    uint64_t followers;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 9 || !sb_reply_u64(r->element[6], refused) ||
        r->element[7]->type != REDIS_REPLY_STRING || !sb_reply_u64(r->element[8], &followers))
        return sb_unexpected(&sb->append, "not {seqs, dups, tail, ts, delta, trimmed, refused, "
                                          "reason, followers}");
    ap->followed = followers > 0;
    if (*refused == 2) {
        snprintf(ap->sealed, sizeof(ap->sealed), "%.*s", (int)r->element[7]->len,
                 r->element[7]->str);
        return OK;
    }
    if (r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != ap->n ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements != ap->n ||
        !sb_reply_u64(r->element[2], &ap->tail) || !sb_reply_u64(r->element[3], &ap->ts) ||
        !sb_reply_i64(r->element[4], &ap->delta) || !sb_reply_u64(r->element[5], &ap->trimmed))
        return sb_unexpected(&sb->append, "not {seqs, dups, tail, ts, delta, trimmed, refused, "
                                          "reason, followers}");
    for (uint32_t i = 0; i < ap->n && !*refused; i++) {
        uint64_t dup;
        if (!sb_reply_u64(r->element[0]->element[i], &ap->seqs[i]) ||
            !sb_reply_u64(r->element[1]->element[i], &dup))
            return sb_unexpected(&sb->append, "a seq or dup flag is not an integer");
        ap->dups[i] = dup != 0;
    }
    return OK;
}

/* An append on its way: the quota read (when needed), then the script. */
struct sb_append_op {
    struct sb *sb;
    struct sb_append *ap;
    sb_store_fn done;
    void *arg;
    struct sb_quota *q; /* NULL when there is no quota, or no room to track it */
    uint64_t need;      /* the batch's metered bytes */
    int64_t reserved;   /* held in q for this append */
    struct sb_stream_keys keys;
    struct sb_append_argv x;
    int nkeys;
    const char *qargv[4];
    size_t qlens[4];
    char qkey[SB_KEY_MAX];
    struct sb_eval eval;
};

static void sb_append_op_end(struct sb_append_op *op, err_t rc)
{
    if (op->q) {
        op->q->held -= op->reserved;
        op->q->refs--;
    }
    sb_append_argv_fini(&op->x);
    op->done(op->arg, rc);
    free(op);
}

static void sb_append_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_append_op *op = arg;
    struct sb_append *ap = op->ap;
    uint64_t refused = 0;
    if (rc != OK) {
        /* the script wrote nothing (refused up front, or failed before its first XADD); a
         * lost answer may hide an append that was made: counted by the next trim or recount.
         * The client closing (the broker stops) is "retry elsewhere": ERR_CLOSED here means
         * a sealed session only. */
        sb_append_op_end(op, rc == ERR_CLOSED ? ERR_UNAVAIL : rc);
        return;
    }
    if ((rc = sb_append_take(op->sb, r, ap, &refused)) != OK) {
        sb_append_op_end(op, rc);
        return;
    }
    if (refused == 2) {
        sb_append_op_end(op, ERR_CLOSED); /* the session is closed: ap->sealed */
        return;
    }
    if (refused) {
        LOG_INFO("stream.quota_refused",
                 "an append of %" PRIu64 " bytes to environment %s (%s) was refused: its "
                 "streams hold %lld bytes at most",
                 op->need, ap->s.env, ap->s.io, op->sb->cfg.env_max_bytes);
        sb_append_op_end(op, ERR_QUOTA);
        return;
    }
    sb_quota_settle(op->sb, ap->s.env, ap->delta); /* holds delta until Redis counted it */
    sb_append_op_end(op, OK);
}

/* The quota decision, then the script. */
static void sb_append_go(struct sb_append_op *op)
{
    struct sb *sb = op->sb;
    int64_t allowed = -1;
    if (op->q) {
        int64_t room = sb->cfg.env_max_bytes - op->q->used - op->q->held;
        if ((int64_t)op->need <= room) {
            op->reserved = (int64_t)op->need;
            op->q->held += op->reserved;
        } else {
            allowed = room > 0 ? room : 0; /* what may still go in: a stream at its limit */
        }
    }
    if (!sb_append_argv_build(sb, op->ap, allowed, &op->keys, &op->x)) {
        LOG_ERROR("stream.store_failed", "stream.append: a validated record no longer parses");
        sb_append_op_end(op, ERR_INTERNAL);
        return;
    }
    if (sb_eval_start(sb, &op->eval, &sb->append, op->x.argc, op->x.argv, op->x.lens, op->nkeys,
                      sb_append_on_reply, op) != OK)
        sb_append_op_end(op, ERR_UNAVAIL);
}

static void sb_append_on_used(void *arg, err_t rc, const redisReply *r)
{
    struct sb_append_op *op = arg;
    int64_t v;
    if (rc != OK) {
        sb_append_op_end(op, rc == ERR_CLOSED ? ERR_UNAVAIL : rc);
        return;
    }
    if (!sb_reply_i64(r, &v)) {
        sb_append_op_end(op, sb_unexpected(&op->sb->used, "not a byte count"));
        return;
    }
    op->q->used = v;
    op->q->fresh_mono = clock_mono_ms();
    sb_append_go(op);
}

err_t sb_store_append(struct sb *sb, struct sb_append *ap, sb_store_fn done, void *arg)
{
    struct sb_append_op *op = xcalloc(1, sizeof(*op));
    op->sb = sb;
    op->ap = ap;
    op->done = done;
    op->arg = arg;
    op->nkeys = 5;
    for (uint32_t i = 0; i < ap->n; i++) {
        op->nkeys += ap->recs[i].part_id.p != NULL;
        op->need += ap->recs[i].metered;
    }
    if (sb->cfg.env_max_bytes > 0 && (op->q = sb_quota_of(sb, ap->s.env)))
        op->q->refs++;
    if (!op->q || (op->q->fresh_mono && clock_mono_ms() - op->q->fresh_mono < SB_QUOTA_FRESH_MS)) {
        /* no quota, or a recent view of it: straight to the script. (With every slot busy
         * the script alone holds the quota, from what its stream can still grow by.) */
        if (!op->q && sb->cfg.env_max_bytes > 0)
            LOG_WARN("stream.quota_untracked", "no room to track environment %s's bytes",
                     ap->s.env);
        sb_append_go(op);
        return OK;
    }
    op->qargv[3] = op->qkey;
    op->qlens[3] = sb_key_quota(ap->s.env, op->qkey);
    if (sb_eval_start(sb, &op->eval, &sb->used, 4, op->qargv, op->qlens, 1, sb_append_on_used,
                      op) != OK) {
        if (op->q)
            op->q->refs--;
        free(op);
        return ERR_UNAVAIL;
    }
    return OK;
}
