/*
 * heartbeat.c - a run's heartbeat thread: keeps the run's lease, and says
 * when the run is not ours any more.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jlog.h"
#include "run.h"

/* Sleeps ms or until the run thread says stop; false when it did. */
static bool run_hb_sleep(struct ea_run *r, long ms)
{
    struct timespec until;
    bool go_on;
    (void)clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* Only hb_quit is signalled on cv. An abandon is seen late here, but the run thread sets
     * hb_quit on its way out, within a second of an abandon. */
    (void)pthread_mutex_lock(&r->mu);
    while (!run_abort_hb(r)) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT)
            break;
    }
    go_on = !run_abort_hb(r);
    (void)pthread_mutex_unlock(&r->mu);
    return go_on;
}

/*
 * Keeps the lease: one heartbeat at once (it marks the run EXECUTING), then
 * one every lease/3. A 409 or 404 means the run is not ours any more. Other
 * failures are retried every second until the lease would have run out,
 * after which someone else may hold the run: it counts as lost too.
 * Touches nothing of the run but its own client and the atomics.
 */
void *run_heartbeat(void *arg)
{
    struct ea_run *r = arg;
    const int lease_s = r->ag->cfg.lease_s;
    long last_ok = run_now_ms();
    char url[RUN_URL_MAX];
    json_t *body =
        json_pack("{s:s,s:i}", "workerId", r->ag->cfg.worker_id, "leaseSeconds", lease_s);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct http_resp rs = HTTP_RESP_ZERO;
    json_decref(body);
    if (!text || run_url(url, "%s/api/v1/runs/%s/heartbeat", r->ag->cfg.url, r->id_enc) != EA_OK) {
        /* without heartbeats the lease runs out and the run is taken back: say so */
        LOG_ERROR("heartbeat.failed", r->id, "cannot build the heartbeat request");
        free(text);
        return NULL;
    }
    for (;;) {
        long pause_ms = lease_s * 1000L / 3;
        struct http_req rq = run_post_json(r, url, text, run_abort_hb);
        ea_err_t rc = http_do(&r->hb, &rq, &rs);
        if (rc == EA_OK && rs.status == 401 && rq.bearer == r->token) {
            atomic_store(&r->use_key, 1); /* the run token expired: the key is accepted too */
            pause_ms = 0;
        } else if (rc == EA_ERR_ABORTED) {
            break;
        } else if (rc == EA_OK && rs.status >= 200 && rs.status < 300) {
            last_ok = run_now_ms();
        } else if (rc == EA_OK && (rs.status == 409 || rs.status == 404)) {
            LOG_WARN("run.lost", r->id,
                     "heartbeat answered %ld: the run was cancelled, finished or taken back; "
                     "stopping without reporting",
                     rs.status);
            atomic_store(&r->lost, 1);
            break;
        } else if (run_now_ms() - last_ok >= lease_s * 1000L) {
            LOG_WARN("run.lost", r->id,
                     "no heartbeat got through for the whole lease (%d s); stopping without "
                     "reporting",
                     lease_s);
            atomic_store(&r->lost, 1);
            break;
        } else {
            if (rc == EA_OK)
                LOG_WARN("heartbeat.failed", r->id, "heartbeat answered %ld: %.200s", rs.status,
                         rs.body ? rs.body : "");
            else
                LOG_WARN("heartbeat.failed", r->id, "could not send a heartbeat: %s (%s)",
                         ea_err_str(rc), rs.err);
            pause_ms = 1000;
        }
        if (pause_ms > 0 && !run_hb_sleep(r, pause_ms))
            break;
    }
    http_resp_fini(&rs);
    free(text);
    return NULL;
}
