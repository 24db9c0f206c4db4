/*
 * eval.c - running the stream-broker's scripts (scripts.c) in Redis, and
 * reading their replies.
 *
 * Scripts are loaded with SCRIPT LOAD on first use (the text goes with each
 * call until the sha is known) and run with EVALSHA; a Redis that forgot
 * them (restart, SCRIPT FLUSH) gets the text again through EVAL, which also
 * caches it. Error replies become ERR_UNAVAIL or ERR_INTERNAL, logged once.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "sb.h"

/* Error replies that mean "not now" rather than "wrong": the caller may retry. */
static bool sb_err_transient(const redisReply *r)
{
    static const char *const codes[] = {"LOADING ",    "BUSY ",     "OOM ",        "READONLY ",
                                        "MASTERDOWN ", "TRYAGAIN ", "CLUSTERDOWN "};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (r->len >= strlen(codes[i]) && memcmp(r->str, codes[i], strlen(codes[i])) == 0)
            return true;
    return false;
}

/* Turns an error reply into ERR_UNAVAIL or ERR_INTERNAL and logs it once. */
static err_t sb_err_reply(const struct sb_script *s, const redisReply *r)
{
    err_t rc = sb_err_transient(r) ? ERR_UNAVAIL : ERR_INTERNAL;
    if (rc == ERR_UNAVAIL)
        LOG_WARN("stream.store_busy", "%s: Redis cannot serve now: %.200s", s->name, r->str);
    else
        LOG_ERROR("stream.store_failed", "%s: Redis answered an error: %.200s", s->name, r->str);
    return rc;
}

err_t sb_unexpected(const struct sb_script *s, const char *what)
{
    LOG_ERROR("stream.store_failed", "%s: unexpected reply from Redis: %s", s->name, what);
    return ERR_INTERNAL;
}

bool sb_reply_u64(const redisReply *r, uint64_t *v)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        *v = (uint64_t)r->integer;
        return true;
    }
    return r->type == REDIS_REPLY_STRING && sb_parse_u64(r->str, r->len, v);
}

bool sb_reply_i64(const redisReply *r, int64_t *v)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return false;
    *v = r->integer;
    return true;
}

/* ---- scripts ---- */

static void sb_on_script_loaded(void *arg, err_t rc, const redisReply *r)
{
    struct sb_script *s = arg;
    if (rc == OK && r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy(s->sha, r->str, 40);
        s->sha[40] = '\0';
    }
    s->loading = false;
}

static void sb_eval_on_reply(void *arg, err_t rc, const redisReply *r);

static err_t sb_eval_send(struct sb_eval *e)
{
    struct sb_script *s = e->script;
    bool by_sha = s->sha[0] && !e->resent;
    e->argv[0] = by_sha ? "EVALSHA" : "EVAL";
    e->lens[0] = strlen(e->argv[0]);
    e->argv[1] = by_sha ? s->sha : s->text;
    e->lens[1] = strlen(e->argv[1]);
    e->argv[2] = e->nkeys;
    e->lens[2] = strlen(e->nkeys);
    return db_redis_async_cmd(e->sb->redis, e->argc, e->argv, e->lens, sb_eval_on_reply, e);
}

static void sb_eval_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_eval *e = arg;
    if (rc == ERR_INTERNAL && !e->resent && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0) {
        LOG_INFO("stream.script_reload", "%s: Redis forgot the script; sending it again",
                 e->script->name);
        e->script->sha[0] = '\0';
        e->resent = true;
        if (sb_eval_send(e) == OK)
            return;
        rc = ERR_UNAVAIL;
    } else if (rc == ERR_INTERNAL) {
        rc = sb_err_reply(e->script, r);
    }
    e->done(e->arg, rc, rc == OK ? r : NULL);
}

/*
 * Starts script s with argv[3..argc) as its keys (the first nkeys) and arguments; argv[0..2]
 * and lens[0..2] are room for the command, script and key count, and both arrays must live
 * until done has run. Until Redis has told us the script's sha (SCRIPT LOAD, sent with the
 * first call) the text goes with each call. On an error return done is never called.
 */
err_t sb_eval_start(struct sb *sb, struct sb_eval *e, struct sb_script *s, int argc,
                    const char **argv, size_t *lens, int nkeys, sb_eval_fn done, void *arg)
{
    *e = (struct sb_eval){
        .sb = sb, .script = s, .argc = argc, .argv = argv, .lens = lens, .done = done, .arg = arg};
    snprintf(e->nkeys, sizeof(e->nkeys), "%d", nkeys);
    if (!s->sha[0] && !s->loading) {
        const char *load[] = {"SCRIPT", "LOAD", s->text};
        if (db_redis_async_cmd(sb->redis, 3, load, NULL, sb_on_script_loaded, s) == OK)
            s->loading = true;
    }
    return sb_eval_send(e);
}
