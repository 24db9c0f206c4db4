/*
 * setup_job.c - the loop's side of the setup (setup.c, on the insert worker):
 * started once the fence still names our token, retried with backoff, and
 * followed by the replication connection.
 */
#include <stdlib.h>

#include "chr.h"
#include "log.h"
#include "mem.h"

struct chr_setup_job {
    struct chr_job job;
    struct chr *chr;
};

static void chr_setup_run_job(struct chr_job *j, struct chr_worker *w)
{
    struct chr_setup_job *sj = (struct chr_setup_job *)j;
    j->rc = chr_setup_run(sj->chr, w);
}

static void chr_setup_done(struct chr_job *j)
{
    struct chr_setup_job *sj = (struct chr_setup_job *)j;
    struct chr *chr = sj->chr;
    err_t rc = j->rc;
    free(sj);
    chr->setup_running = false;
    if (rc == ERR_CLOSED || loop_stopping(chr->loop))
        return;
    if (rc != OK) {
        backoff_fail(&chr->backoff);
        LOG_WARN("chr.setup_retry", "slot setup failed (%s); retrying in %ums", err_name(rc),
                 chr->backoff.cur_ms);
        (void)loop_timer_add(chr->loop, chr->backoff.cur_ms, chr_setup_timer, chr);
        return;
    }
    chr->setup_done = true;
    backoff_reset(&chr->backoff);
    chr_connect(chr->loop, chr);
}

static const struct chr_job_ops chr_setup_ops = {chr_setup_run_job, chr_setup_done};

static void chr_on_fence_for_setup(struct chr *chr, bool ok, void *arg)
{
    (void)arg;
    if (!ok) {
        chr_fenced(chr);
        return;
    }
    struct chr_setup_job *sj = xcalloc(1, sizeof(*sj));
    sj->job.ops = &chr_setup_ops;
    sj->chr = chr;
    chr->setup_running = true;
    chr_worker_submit(&chr->ins, &sj->job);
}

void chr_setup_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    (void)l;
    if (!chr->setup_running && !loop_stopping(chr->loop))
        chr_fence_check(chr, chr_on_fence_for_setup, NULL);
}
