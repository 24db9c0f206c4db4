/*
 * fence.c - the fencing check before every insert and acknowledgement, and
 * what a failed one does (chr_fenced).
 *
 * The supervisor that holds the leader lock INCRs <lock key>:fence when it
 * takes the lock and passes the new value as TETHER_FENCING_TOKEN. If the
 * counter in Redis is now above our token, another node took the lock
 * after us: we must neither insert nor acknowledge again. The GET goes
 * through the non-blocking Redis client; when Redis does not answer the
 * check is retried (nothing is written meanwhile), never assumed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chr.h"
#include "log.h"
#include "mem.h"

#define CHR_FENCE_RETRY_MS 200

struct chr_fence_req {
    struct chr *chr;
    chr_fence_fn fn;
    void *arg;
};

static void chr_fence_send(struct chr_fence_req *fr);

static void chr_fence_retry(struct loop *l, void *arg)
{
    struct chr_fence_req *fr = arg;
    (void)l;
    chr_fence_send(fr);
}

static void chr_fence_later(struct chr_fence_req *fr)
{
    if (loop_stopping(fr->chr->loop) ||
        loop_timer_add(fr->chr->loop, CHR_FENCE_RETRY_MS, chr_fence_retry, fr) == 0)
        free(fr); /* stopping: nothing more is written, the caller's work is abandoned */
}

static void chr_fence_on_reply(void *arg, err_t rc, const redisReply *reply)
{
    struct chr_fence_req *fr = arg;
    struct chr *chr = fr->chr;
    if (rc == ERR_CLOSED) {
        free(fr);
        return;
    }
    if (rc != OK || !reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_INTEGER)) {
        if (!chr->fence_warned) {
            LOG_WARN("chr.fence_unknown", "cannot read %s (%s); holding writes until it answers",
                     chr->fence_key, err_name(rc != OK ? rc : ERR_PROTO));
            chr->fence_warned = true;
        }
        chr_fence_later(fr);
        return;
    }
    chr->fence_warned = false;
    uint64_t fence = reply->type == REDIS_REPLY_INTEGER ? (uint64_t)reply->integer
                                                        : strtoull(reply->str, NULL, 10);
    bool ok = fence <= chr->fence_token;
    chr_fence_fn fn = fr->fn;
    void *fa = fr->arg;
    free(fr);
    fn(chr, ok, fa);
}

static void chr_fence_send(struct chr_fence_req *fr)
{
    const char *argv[] = {"GET", fr->chr->fence_key};
    if (db_redis_async_cmd(fr->chr->redis, 2, argv, NULL, chr_fence_on_reply, fr) != OK)
        chr_fence_later(fr);
}

void chr_fence_check(struct chr *chr, chr_fence_fn fn, void *arg)
{
    if (!chr->fence_token || !chr->redis) {
        fn(chr, true, arg);
        return;
    }
    struct chr_fence_req *fr = xcalloc(1, sizeof(*fr));
    fr->chr = chr;
    fr->fn = fn;
    fr->arg = arg;
    chr_fence_send(fr);
}

void chr_fenced(struct chr *chr)
{
    LOG_ERROR("chr.fenced", "the fence moved past token %" PRIu64
              ": another node leads; no more inserts or acknowledgements",
              chr->fence_token);
    chr->fenced = true;
    loop_stop(chr->loop);
}
