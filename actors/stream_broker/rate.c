/*
 * rate.c - rate.take: a token from one environment's bucket for one route
 * group, the gateway's rate limits (docs/gateway.md). The bucket lives in
 * Redis beside the streams, so every gateway of every node draws on the same
 * one; one script call takes a token atomically. The stream-broker runs it
 * because it holds the non-blocking Redis client the gateway's hot path
 * already goes through.
 *
 * Redis key: tether:rate:{env}:<group> = hash {tokens, ts}, expiring once it
 * would be full again. A bucket holds `burst` tokens and gains `per_s` a
 * second; a take of `cost` succeeds when that many are there.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "msg.h"
#include "msg_stream.h"
#include "sb.h"

/*
 * ARGV: burst, per second, cost. Returns {allowed (0|1), tokens left (floor), now (ms),
 * ms until a take of cost could succeed (0 when allowed), ms until the bucket is full}.
 * Time is Redis's (one clock for every gateway).
 */
static const char sb_lua_rate[] =
    "#!lua\n"
    "local burst, per_s, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens, ts = tonumber(b[1]), tonumber(b[2])\n"
    "if not tokens or not ts or ts > now then tokens, ts = burst, now end\n"
    "tokens = math.min(burst, tokens + (now - ts) * per_s / 1000)\n"
    "local allowed, wait = 0, 0\n"
    "if tokens >= cost then\n"
    "  tokens, allowed = tokens - cost, 1\n"
    "else\n"
    "  wait = math.ceil((cost - tokens) * 1000 / per_s)\n"
    "end\n"
    "local full = math.ceil((burst - tokens) * 1000 / per_s)\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))\n"
    "redis.call('PEXPIRE', KEYS[1], full + 1000)\n"
    "return {allowed, math.floor(tokens), now, wait, full}\n";

static struct sb_script sb_rate_script = {.name = "rate.take", .text = sb_lua_rate};

struct sb_rate_op {
    struct bus_req *req;
    struct sb_eval e;
    const char *argv[7];
    size_t lens[7];
    char key[SB_KEY_MAX];
    char args[3][24];
    uint64_t burst;
};

static void sb_rate_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_rate_op *op = arg;
    uint64_t v[5];
    bool ok = rc == OK && r->type == REDIS_REPLY_ARRAY && r->elements == 5;
    for (size_t i = 0; ok && i < 5; i++)
        ok = sb_reply_u64(r->element[i], &v[i]);
    if (!ok) {
        actor_reply_err(op->req,
                        rc == OK ? sb_unexpected(&sb_rate_script, "an array of 5 integers") : rc);
        free(op);
        return;
    }
    struct msg_rate_take_reply m = {
        .allowed = v[0] == 1,
        .limit = op->burst,
        .remaining = v[1],
        /* when the caller may try again (refused), or when the bucket is full again (taken) */
        .reset_ms = v[2] + (v[0] == 1 ? v[4] : v[3]),
        .retry_after_ms = v[3],
    };
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_rate_take_reply_form, &w, &m);
    if (mp_writer_err(&w) == OK)
        (void)bus_reply(op->req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(op->req, ERR_NOMEM, NULL);
    mp_writer_fini(&w);
    free(op);
}

err_t sb_on_rate_take(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    struct msg_rate_take m;
    char why[SB_WHY_MAX];
    /* the form bounds env and group and requires them, burst and per_s */
    bool ok = msg_decode(&msg_rate_take_form, env->body.p, env->body.n, &m) == OK &&
              !memchr(m.env.p, '\0', m.env.n);
    for (size_t i = 0; ok && i < m.group.n; i++)
        ok = m.group.p[i] >= 'a' && m.group.p[i] <= 'z';
    if (!ok) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "rate.take needs env (1-64 bytes), group (1-32 of [a-z]), and burst "
                            "and per_s (integers)");
        return OK;
    }
    uint64_t cost = m.cost_given ? m.cost : 1; /* given as nil: 0, refused */
    if (sb_check_uint("burst", m.burst, 1, MSG_RATE_MAX, why, sizeof(why)) != OK ||
        sb_check_uint("per_s", m.per_s, 1, MSG_RATE_MAX, why, sizeof(why)) != OK ||
        sb_check_uint("cost", cost, 1, m.burst, why, sizeof(why)) != OK) {
        (void)bus_reply_err(req, ERR_INVAL, why);
        return OK;
    }
    struct sb_rate_op *op = xcalloc(1, sizeof(*op));
    op->req = req;
    op->burst = m.burst;
    int kl = snprintf(op->key, sizeof(op->key), "tether:rate:{%.*s}:%.*s", (int)m.env.n, m.env.p,
                      (int)m.group.n, m.group.p);
    snprintf(op->args[0], sizeof(op->args[0]), "%" PRIu64, m.burst);
    snprintf(op->args[1], sizeof(op->args[1]), "%" PRIu64, m.per_s);
    snprintf(op->args[2], sizeof(op->args[2]), "%" PRIu64, cost);
    op->argv[3] = op->key;
    op->lens[3] = (size_t)kl;
    for (int i = 0; i < 3; i++) {
        op->argv[4 + i] = op->args[i];
        op->lens[4 + i] = strlen(op->args[i]);
    }
    err_t rc = sb_eval_start(sb_of(a), &op->e, &sb_rate_script, 7, op->argv, op->lens, 1,
                             sb_rate_on_reply, op);
    if (rc != OK)
        free(op);
    return rc;
}
