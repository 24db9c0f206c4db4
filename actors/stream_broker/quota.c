/*
 * quota.c - the environment's quota as the stream-broker sees it: a slot per
 * environment holding what Redis last counted and what this broker holds
 * unsettled, and the settle call that adds an append's or trim's bytes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fnv.h"
#include "log.h"
#include "mem.h"
#include "sb.h"

/*
 * Each environment's bytes are counted in Redis (tether:quota:{env}:bytes, a slot of its
 * own). The broker decides an append locally, without a round trip: what Redis last said
 * (used), plus what its own appends have reserved and not yet settled. A settle's answer
 * is the new total and refreshes used; an entry not refreshed for SB_QUOTA_FRESH_MS is
 * read again first, so other broker instances' bytes are seen within that time.
 */
/* The slot of env, claimed if new; NULL when every slot is busy (then: no local view). */
struct sb_quota *sb_quota_of(struct sb *sb, const char *env)
{
    size_t start = (size_t)(fnv1a(env, strlen(env)) % SB_QUOTA_SLOTS), idle = SIZE_MAX;
    for (size_t i = 0; i < SB_QUOTA_SLOTS; i++) {
        struct sb_quota *q = &sb->quotas[(start + i) % SB_QUOTA_SLOTS];
        if (strcmp(q->env, env) == 0)
            return q;
        if (!q->env[0]) {
            idle = idle == SIZE_MAX ? (start + i) % SB_QUOTA_SLOTS : idle;
            break; /* probing ends at a free slot */
        }
        if (idle == SIZE_MAX && q->refs == 0 && q->held == 0)
            idle = (start + i) % SB_QUOTA_SLOTS;
    }
    if (idle == SIZE_MAX)
        return NULL;
    struct sb_quota *q = &sb->quotas[idle];
    *q = (struct sb_quota){0};
    snprintf(q->env, sizeof(q->env), "%s", env);
    return q;
}

struct sb_settle {
    struct sb *sb;
    struct sb_quota *q;
    int64_t change;
    const char *argv[5];
    size_t lens[5];
    char key[SB_KEY_MAX];
    char arg[24];
    struct sb_eval eval;
};

static void sb_settle_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_settle *st = arg;
    int64_t v;
    if (st->q) {
        st->q->held -= st->change;
        st->q->refs--;
    }
    if (rc == OK && sb_reply_i64(r, &v) && st->q) {
        st->q->used = v;
        st->q->fresh_mono = clock_mono_ms();
    } else if (rc != OK) {
        LOG_WARN("stream.quota_drift",
                 "the stream bytes of environment %s are counted %" PRId64 " bytes off: %s",
                 st->q ? st->q->env : "?", -st->change, err_str(rc));
        if (st->q)
            st->q->fresh_mono = 0; /* read it again before the next decision */
    }
    free(st);
}

/*
 * Adds change (signed) to env's counter without waiting: the bytes stay held locally until
 * Redis has counted them. A failure is logged, not returned (docs/stream-broker.md).
 */
void sb_quota_settle(struct sb *sb, const char *env, int64_t change)
{
    if (change == 0)
        return;
    struct sb_settle *st = xcalloc(1, sizeof(*st));
    st->sb = sb;
    st->change = change;
    st->q = sb_quota_of(sb, env);
    if (st->q) {
        st->q->held += change;
        st->q->refs++;
    }
    st->argv[3] = st->key;
    st->lens[3] = sb_key_quota(env, st->key);
    snprintf(st->arg, sizeof(st->arg), "%" PRId64, change);
    st->argv[4] = st->arg;
    st->lens[4] = strlen(st->arg);
    if (sb_eval_start(sb, &st->eval, &sb->settle, 5, st->argv, st->lens, 1, sb_settle_on_reply,
                      st) != OK)
        sb_settle_on_reply(st, ERR_UNAVAIL, NULL);
}
