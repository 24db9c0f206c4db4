/*
 * leader.c - the node's leader lock in Redis, with a fencing token.
 *
 * Acquire: one Lua step that, if the key is free, takes the next fencing
 * token (INCR) and sets the key to "<node>:<pid>:<token>" with a TTL. When
 * another node holds it, the step answers the lock's remaining time (as a
 * negative number) and the next try is made just after that, not at the
 * next TTL/6 tick: a dead leader's lock moves within one TTL of its last
 * renewal.
 * Renew every TTL/6 only if the value is still ours. The lock is treated as
 * lost when a renewal says so, or when no renewal has succeeded for half the
 * TTL (Redis unreachable): the leader-only children are then killed at once.
 * Detection comes at the latest TTL/2 + TTL/6 after the last renewal, before
 * the key can expire (TTL >= 3 s is enforced) and another node take over.
 * On a clean stop they are stopped first and the lock released after.
 *
 * Every command goes through the non-blocking client (db_redis_async.h):
 * its answer is an event on the loop, so a hung Redis never delays reaping.
 */
#include "sv.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "db_redis.h"
#include "log.h"

/*
 * If an earlier acquire ran but its reply was lost (a timeout), the key is
 * already ours: adopt it and its token rather than wait out a TTL.
 */
static const char sv_lua_acquire[] =
    "local v = redis.call('get', KEYS[1]) "
    "if not v then "
    "  local t = redis.call('incr', KEYS[2]) "
    "  redis.call('set', KEYS[1], ARGV[1] .. ':' .. t, 'PX', ARGV[2]) "
    "  return t "
    "end "
    "local p = ARGV[1] .. ':' "
    "if string.sub(v, 1, string.len(p)) == p then "
    "  redis.call('pexpire', KEYS[1], ARGV[2]) "
    "  return tonumber(string.sub(v, string.len(p) + 1)) or 0 "
    "end "
    "local left = redis.call('pttl', KEYS[1]) "
    "if left > 0 then return -left end return 0";

static const char sv_lua_renew[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "  return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0";

static const char sv_lua_release[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "  return redis.call('del', KEYS[1]) end return 0";

static bool sv_has_leader_children(const struct sv *sv)
{
    for (unsigned i = 0; i < sv->nchildren; i++)
        if (sv->children[i].spec->leader_only)
            return true;
    return false;
}

/* What the one leader command in flight is doing. */
enum sv_leader_op {
    SV_LEADER_IDLE,
    SV_LEADER_ACQUIRE,
    SV_LEADER_RENEW,
    SV_LEADER_RELEASE,
};

static void sv_leader_answer(void *arg, err_t rc, const redisReply *rep);

/* One try of the acquire just after another node's lock expires (sv_leader_answer). */
static void sv_leader_retry(struct loop *l, void *arg)
{
    struct sv *sv = arg;
    (void)l;
    sv->leader_retry_armed = false;
    if (!sv->leader)
        sv_leader_tick(sv);
}

/*
 * Sends a script with the lock key (and its fence key); its answer arrives in
 * sv_leader_answer on the loop, so reaping and the control socket never wait on Redis.
 */
static err_t sv_leader_eval(struct sv *sv, enum sv_leader_op op, const char *script,
                            const char *arg1)
{
    char fence[300], ttl[32];
    snprintf(fence, sizeof(fence), "%s:fence", sv->sv.leader_key);
    snprintf(ttl, sizeof(ttl), "%lld", sv->sv.leader_ttl_ms);
    const char *argv[] = {"EVAL", script, "2", sv->sv.leader_key, fence, arg1, ttl};
    err_t rc = db_redis_async_cmd(sv->redis, 7, argv, NULL, sv_leader_answer, sv);
    if (rc == OK)
        sv->leader_op = op;
    return rc;
}

static void sv_leader_lost(struct sv *sv, const char *why)
{
    LOG_ERROR("sv.leader_lost", "lost the leader lock (%s); killing leader-only children", why);
    sv->leader = false;
    for (unsigned i = 0; i < sv->nchildren; i++) {
        struct sv_child *c = &sv->children[i];
        if (c->spec->leader_only && c->pid > 0)
            kill(c->pid, SIGKILL); /* no grace: another node may hold the lock soon */
    }
    sv_reconcile(sv);
}

static void sv_leader_answer(void *arg, err_t rc, const redisReply *rep)
{
    struct sv *sv = arg;
    enum sv_leader_op op = sv->leader_op;
    long long v = rc == OK && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    sv->leader_op = SV_LEADER_IDLE;
    if (rc == ERR_INTERNAL)
        LOG_WARN("sv.leader_error", "leader lock script failed: %s", rep->str ? rep->str : "?");
    switch (op) {
    case SV_LEADER_ACQUIRE:
        /* held elsewhere for -v ms more: try again as it expires, if that is before the tick */
        if (rc == OK && v < 0 && -v < sv->sv.leader_ttl_ms / 6 && !sv->leader_retry_armed &&
            !sv->stopping && loop_timer_add(&sv->loop, (uint64_t)(-v) + 5, sv_leader_retry, sv))
            sv->leader_retry_armed = true;
        /* a stop or a loss may have come while the answer was on its way */
        if (rc != OK || v <= 0 || sv->leader || sv->stopping)
            return;
        sv->leader = true;
        sv->fencing_token = (uint64_t)v;
        snprintf(sv->lock_value, sizeof(sv->lock_value), "%s:%lld", sv->lock_owner, v);
        sv->leader_renewed_mono = clock_mono_ms();
        LOG_INFO("sv.leader_acquired", "this node holds the leader lock (fencing token %lld)", v);
        sv_reconcile(sv);
        return;
    case SV_LEADER_RENEW:
        if (!sv->leader)
            return;
        if (rc == OK && v == 1)
            sv->leader_renewed_mono = clock_mono_ms();
        else if (rc == OK)
            sv_leader_lost(sv, "another node holds it");
        /* a failed renewal is judged by time, in sv_leader_tick */
        return;
    case SV_LEADER_RELEASE:
        if (rc == OK)
            LOG_INFO("sv.leader_released", "released the leader lock");
        return;
    case SV_LEADER_IDLE:
        return;
    }
}

err_t sv_leader_open(struct sv *sv)
{
    struct db_redis_addr a;
    /* the lock, its fence and the node registry meet in scripts: one slot in a Redis Cluster */
    if (db_redis_addr_parse(&a, sv->cfg.redis_url) == OK && a.cluster &&
        !db_redis_key_has_tag(sv->sv.leader_key, strlen(sv->sv.leader_key))) {
        LOG_ERROR("cfg.invalid", "TETHER_SV_LEADER_KEY %s holds no {hash tag}, which a Redis "
                  "Cluster URL needs (the default {tether:leader} has one)", sv->sv.leader_key);
        return ERR_INVAL;
    }
    snprintf(sv->lock_owner, sizeof(sv->lock_owner), "%s:%ld", sv->node, (long)getpid());
    /* a renewal must answer well within the TTL's sixth it is sent at */
    unsigned timeout = (unsigned)(sv->sv.leader_ttl_ms / 12);
    err_t rc = db_redis_async_new(&sv->loop, sv->cfg.redis_url, timeout < 250 ? 250 : timeout,
                                  &sv->redis);
    if (rc != OK)
        LOG_ERROR("cfg.invalid",
                  "invalid TETHER_REDIS_URL (redis://[:password@]host:port[/db][?cluster=1])");
    return rc;
}

void sv_leader_close(struct sv *sv)
{
    db_redis_async_free(sv->redis);
    sv->redis = NULL;
}

void sv_leader_tick(struct sv *sv)
{
    uint64_t now = clock_mono_ms();

    if (sv->stopping || !sv_has_leader_children(sv))
        return;
    /* judged on every tick, even while a renewal is still on its way */
    if (sv->leader && now - sv->leader_renewed_mono > (uint64_t)sv->sv.leader_ttl_ms / 2) {
        sv_leader_lost(sv, "Redis unreachable for too long to be sure");
        return;
    }
    if (sv->leader_op != SV_LEADER_IDLE)
        return; /* one at a time: its answer (or its timeout) comes first */
    if (!sv->leader)
        (void)sv_leader_eval(sv, SV_LEADER_ACQUIRE, sv_lua_acquire, sv->lock_owner);
    else
        (void)sv_leader_eval(sv, SV_LEADER_RENEW, sv_lua_renew, sv->lock_value);
}

bool sv_leader_release(struct sv *sv)
{
    if (!sv->leader)
        return false;
    sv->leader = false;
    if (sv->leader_op != SV_LEADER_IDLE)
        return false; /* the lock expires with its TTL */
    return sv_leader_eval(sv, SV_LEADER_RELEASE, sv_lua_release, sv->lock_value) == OK;
}

bool sv_leader_busy(const struct sv *sv)
{
    return sv->leader_op != SV_LEADER_IDLE;
}
