/*
 * leader.c - the node's leader lock in Redis, with a fencing token.
 *
 * Acquire: one Lua step that, if the key is free, takes the next fencing
 * token (INCR) and sets the key to "<node>:<pid>:<token>" with a TTL.
 * Renew every TTL/6 only if the value is still ours. The lock is treated as
 * lost when a renewal says so, or when no renewal has succeeded for half the
 * TTL (Redis unreachable): the leader-only children are then killed at once.
 * Detection comes at the latest TTL/2 + TTL/6 + one Redis timeout after the
 * last renewal, before the key can expire (TTL >= 3 s is enforced) and
 * another node take over. On a clean
 * stop they are stopped first and the lock released after.
 */
#include "sv.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
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
    "end return 0";

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

/* Runs a script with the lock key (and its fence key); *out is its integer reply. */
static err_t sv_leader_eval(struct sv *sv, const char *script, const char *arg1, long long *out)
{
    char fence[300], ttl[32];
    redisReply *r;
    snprintf(fence, sizeof(fence), "%s:fence", sv->sv.leader_key);
    snprintf(ttl, sizeof(ttl), "%lld", sv->sv.leader_ttl_ms);
    const char *argv[] = {"EVAL", script, "2", sv->sv.leader_key, fence, arg1, ttl};
    err_t rc = db_redis_cmd(&sv->redis, 7, argv, NULL, &r);
    if (rc == ERR_INTERNAL) {
        LOG_WARN("sv.leader_error", "leader lock script failed: %s", r->str ? r->str : "?");
        freeReplyObject(r);
        return rc;
    }
    if (rc != OK)
        return rc;
    *out = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return OK;
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

void sv_leader_tick(struct sv *sv)
{
    char owner[96];
    long long v = 0;
    uint64_t now = clock_mono_ms();

    if (sv->stopping || !sv_has_leader_children(sv))
        return;
    if (!sv->leader) {
        snprintf(owner, sizeof(owner), "%s:%ld", sv->node, (long)getpid());
        if (sv_leader_eval(sv, sv_lua_acquire, owner, &v) == OK && v > 0) {
            sv->leader = true;
            sv->fencing_token = (uint64_t)v;
            snprintf(sv->lock_value, sizeof(sv->lock_value), "%s:%lld", owner, v);
            sv->leader_renewed_mono = now;
            LOG_INFO("sv.leader_acquired", "this node holds the leader lock (fencing token %lld)",
                     v);
            sv_reconcile(sv);
        }
        return;
    }
    err_t rc = sv_leader_eval(sv, sv_lua_renew, sv->lock_value, &v);
    if (rc == OK && v == 1) {
        sv->leader_renewed_mono = now;
        return;
    }
    if (rc == OK)
        sv_leader_lost(sv, "another node holds it");
    else if (now - sv->leader_renewed_mono > (uint64_t)sv->sv.leader_ttl_ms / 2)
        sv_leader_lost(sv, "Redis unreachable for too long to be sure");
}

void sv_leader_release(struct sv *sv)
{
    long long v;
    if (!sv->leader)
        return;
    if (sv_leader_eval(sv, sv_lua_release, sv->lock_value, &v) == OK)
        LOG_INFO("sv.leader_released", "released the leader lock");
    sv->leader = false;
}
