/*
 * insert.c - the inserts: the pending batch becomes the one in flight and is
 * inserted on the insert worker once the fence still names our token, retried
 * with backoff, and split into single rows when ClickHouse keeps refusing it
 * as bad data (a row refused max_tries times is skipped).
 */
#include <stdlib.h>

#include "chr.h"
#include "log.h"
#include "mem.h"

static void chr_insert_attempt(struct chr *chr);

struct chr_ins_job {
    struct chr_job job;
    struct chr *chr;
    bool split;
    size_t start;  /* split: first row still to insert */
    size_t next;   /* split: rows before this are done (inserted or skipped) */
    bool *skipped; /* split: per row */
};

static void chr_ins_run(struct chr_job *j, struct chr_worker *w)
{
    struct chr_ins_job *ij = (struct chr_ins_job *)j;
    struct chr_batch *b = &ij->chr->inflight;
    if (!ij->split) {
        struct jbuf all = {0};
        for (size_t i = 0; i < b->n; i++)
            jbuf_put(&all, b->rows[i].json, b->rows[i].n);
        j->rc = all.err != OK ? all.err : chr_ch_insert(ij->chr, &w->ch, all.p, all.n);
        jbuf_free(&all);
        return;
    }
    /* one row at a time: a row ClickHouse refuses max_tries times is skipped, never retried
     * forever; a store that is unreachable stops the pass (the loop retries later) */
    j->rc = OK;
    for (ij->next = ij->start; ij->next < b->n; ij->next++) {
        err_t rc = ERR_INVAL;
        for (long long t = 0; t < ij->chr->cfg.max_tries && rc == ERR_INVAL; t++)
            rc = chr_ch_insert(ij->chr, &w->ch, b->rows[ij->next].json, b->rows[ij->next].n);
        if (rc == ERR_INVAL)
            ij->skipped[ij->next] = true;
        else if (rc != OK) {
            j->rc = rc;
            return;
        }
    }
}

static void chr_retry_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    (void)l;
    chr->retry_timer = 0;
    chr_insert_attempt(chr);
}

static void chr_ins_done(struct chr_job *j)
{
    struct chr_ins_job *ij = (struct chr_ins_job *)j;
    struct chr *chr = ij->chr;
    struct chr_batch *b = &chr->inflight;
    err_t rc = j->rc;
    if (rc == ERR_CLOSED || loop_stopping(chr->loop)) {
        free(ij->skipped);
        free(ij);
        return;
    }
    if (ij->split) {
        for (size_t i = ij->start; i < ij->next && i < b->n; i++) {
            if (!ij->skipped[i])
                continue;
            char lsn[24];
            chr_lsn_fmt(b->rows[i].lsn, lsn, sizeof(lsn));
            LOG_ERROR("chr.row_skipped",
                      "ClickHouse refused session %s at LSN %s %lld times; skipped",
                      b->rows[i].session_id, lsn, chr->cfg.max_tries);
            chr->rows_skipped++;
        }
        chr->split_next = ij->next;
    }
    free(ij->skipped);
    free(ij);
    if (rc == OK) {
        chr_fault_point(chr, "after_insert");
        chr->rows_inserted += b->n;
        chr->batches++;
        if (b->up_to_lsn > chr->safe_lsn)
            chr->safe_lsn = b->up_to_lsn;
        /* commits with no rows of ours that arrived meanwhile are covered too */
        if (!chr->pending.n && !chr->in_txn && chr->pending.up_to_lsn > chr->safe_lsn)
            chr->safe_lsn = chr->pending.up_to_lsn;
        if (chr->insert_failures_run)
            LOG_INFO("chr.insert_recovered", "ClickHouse accepted the batch after %u failed tries",
                     chr->insert_failures_run);
        chr->insert_failures_run = 0;
        chr_batch_clear(b);
        chr->insert_busy = false;
        chr->split = false;
        backoff_reset(&chr->ins_backoff);
        chr_ack_maybe(chr, false);
        if (chr->pending.n && ((long long)chr->pending.n >= chr->cfg.batch_rows ||
                               !loop_timer_is_pending(chr->loop, chr->flush_timer)))
            chr_flush(chr);
        return;
    }
    chr->insert_failures++;
    chr->tries++;
    if (rc == ERR_INVAL && !chr->split && (long long)chr->tries >= chr->cfg.max_tries) {
        LOG_WARN("chr.batch_refused",
                 "ClickHouse refused a batch of %zu rows %u times as bad data; inserting them one "
                 "by one to find the bad ones",
                 b->n, chr->tries);
        chr->split = true;
        chr->split_next = 0;
    } else if (chr->insert_failures_run++ == 0 || chr->insert_failures_run % 10 == 0) {
        LOG_WARN("chr.insert_failed", "insert of %zu rows failed (%s), try %u; backing off", b->n,
                 err_name(rc), chr->insert_failures_run);
    }
    backoff_fail(&chr->ins_backoff);
    chr->retry_timer = loop_timer_add(chr->loop, chr->ins_backoff.cur_ms, chr_retry_timer, chr);
}

static const struct chr_job_ops chr_ins_ops = {chr_ins_run, chr_ins_done};

static void chr_on_fence_for_insert(struct chr *chr, bool ok, void *arg)
{
    (void)arg;
    if (!ok) {
        chr_fenced(chr);
        return;
    }
    chr_fault_point(chr, "before_insert");
    struct chr_ins_job *ij = xcalloc(1, sizeof(*ij));
    ij->job.ops = &chr_ins_ops;
    ij->chr = chr;
    ij->split = chr->split;
    ij->start = chr->split ? chr->split_next : 0;
    ij->skipped = xcalloc(chr->inflight.n + 1, sizeof(bool));
    chr_worker_submit(&chr->ins, &ij->job);
}

static void chr_insert_attempt(struct chr *chr)
{
    if (chr->fenced || loop_stopping(chr->loop))
        return;
    chr_fence_check(chr, chr_on_fence_for_insert, NULL);
}

void chr_flush(struct chr *chr)
{
    if (chr->insert_busy || chr->fenced || chr->pending.n == 0)
        return;
    if (chr->flush_timer) {
        loop_timer_cancel(chr->loop, chr->flush_timer);
        chr->flush_timer = 0;
    }
    /* pending becomes the batch in flight; new commits gather in a fresh pending */
    struct chr_batch t = chr->inflight;
    chr->inflight = chr->pending;
    chr->pending = t;
    chr_batch_clear(&chr->pending);
    chr->pending.oldest_commit_us = 0;
    chr->pending.up_to_lsn = chr->inflight.up_to_lsn;
    chr->insert_busy = true;
    chr->tries = 0;
    chr->split = false;
    chr_insert_attempt(chr);
}
