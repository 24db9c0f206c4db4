/*
 * repl.c - the logical replication stream, the batches and the acknowledgements.
 *
 * The replication connection is libpq in non-blocking mode, watched by the
 * loop: PQconnectPoll, then START_REPLICATION, then PQgetCopyData(async)
 * on every readable event; standby status updates go out with
 * PQputCopyData + PQflush (POLLOUT while libpq still holds bytes).
 * Rows of a transaction are held until its Commit, then join the pending
 * batch; one batch at a time is inserted (on the insert worker). The rule:
 * an LSN is acknowledged only once ClickHouse accepted every row up to it
 * (safe_lsn), and only after the fence still names our token.
 */
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chr.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "pmetrics.h"

#define CHR_PG_EPOCH_MS 946684800000ull /* 2000-01-01 in unix ms */

static void chr_on_conn(struct loop *l, int fd, short revents, void *arg);
static void chr_drain_timer(struct loop *l, void *arg);
static void chr_flush(struct chr *chr);
static void chr_ack_maybe(struct chr *chr, bool force);
static void chr_insert_attempt(struct chr *chr);

/* ---- batches ---- */

void chr_batch_clear(struct chr_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->rows[i].json);
    if (b->_hash && b->n)
        memset(b->_hash, 0, b->_hcap * sizeof(*b->_hash));
    b->n = 0;
    b->oldest_commit_us = 0;
}

static void chr_batch_fini(struct chr_batch *b)
{
    chr_batch_clear(b);
    free(b->rows);
    free(b->_hash);
    b->rows = NULL;
    b->_hash = NULL;
    b->cap = b->_hcap = 0;
}

static size_t chr_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

/* The slot of sid in b's hash: where it is, or the empty one where it would go. */
static size_t chr_batch_slot(const struct chr_batch *b, const char *sid)
{
    size_t mask = b->_hcap - 1, i = chr_hash(sid) & mask;
    while (b->_hash[i] && strcmp(b->rows[b->_hash[i] - 1].session_id, sid) != 0)
        i = (i + 1) & mask;
    return i;
}

static void chr_batch_rehash(struct chr_batch *b, size_t hcap)
{
    free(b->_hash);
    b->_hcap = hcap;
    b->_hash = xcalloc(hcap, sizeof(*b->_hash));
    for (size_t i = 0; i < b->n; i++)
        b->_hash[chr_batch_slot(b, b->rows[i].session_id)] = (uint32_t)(i + 1);
}

void chr_batch_add(struct chr_batch *b, const char *sid, uint64_t lsn, char *json, size_t n)
{
    if (b->_hcap < 2 * (b->n + 1))
        chr_batch_rehash(b, b->_hcap ? b->_hcap * 2 : 128);
    /* the latest change of a row wins within a batch: one row per session per insert */
    size_t slot = chr_batch_slot(b, sid);
    if (b->_hash[slot]) {
        struct chr_row *r = &b->rows[b->_hash[slot] - 1];
        free(r->json);
        r->json = json;
        r->n = n;
        r->lsn = lsn;
        return;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->rows = xrealloc(b->rows, b->cap * sizeof(*b->rows));
    }
    struct chr_row *r = &b->rows[b->n];
    snprintf(r->session_id, sizeof(r->session_id), "%s", sid);
    r->lsn = lsn;
    r->json = json;
    r->n = n;
    b->n++;
    b->_hash[slot] = (uint32_t)b->n;
}

/* ---- lag ---- */

uint64_t chr_lag_bytes(const struct chr *chr)
{
    return chr->server_end_lsn > chr->acked_lsn ? chr->server_end_lsn - chr->acked_lsn : 0;
}

uint64_t chr_lag_ms(const struct chr *chr)
{
    uint64_t oldest = chr->inflight.n ? chr->inflight.oldest_commit_us : 0;
    if (!oldest && chr->pending.n)
        oldest = chr->pending.oldest_commit_us;
    if (!oldest)
        return 0;
    uint64_t at = oldest / 1000 + CHR_PG_EPOCH_MS, now = clock_wall_ms();
    return now > at ? now - at : 0;
}

/* ---- fault injection (tests) ---- */

void chr_fault_point(struct chr *chr, const char *what)
{
    char buf[64];
    if (!chr->cfg.fault_file || !chr->cfg.fault_file[0])
        return;
    FILE *f = fopen(chr->cfg.fault_file, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (strcmp(buf, what) != 0)
        return;
    (void)unlink(chr->cfg.fault_file);
    LOG_WARN("chr.fault", "fault injection: SIGKILL %s", what);
    raise(SIGKILL);
}

bool chr_fault_refuses(const struct chr *chr, const char *data, size_t n)
{
    static const char pfx[] = "refuse_row ";
    char buf[128];
    if (!chr->cfg.fault_file || !chr->cfg.fault_file[0])
        return false;
    FILE *f = fopen(chr->cfg.fault_file, "r");
    if (!f)
        return false;
    size_t got = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[got] = '\0';
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
        buf[--got] = '\0';
    if (got <= sizeof(pfx) - 1 || memcmp(buf, pfx, sizeof(pfx) - 1) != 0)
        return false;
    const char *marker = buf + sizeof(pfx) - 1;
    return memmem(data, n, marker, strlen(marker)) != NULL;
}

/* ---- the connection ---- */

PGconn *chr_repl_connect(struct chr *chr, bool nonblocking)
{
    const char *keys[] = {"dbname", "replication", "options", "connect_timeout",
                          "application_name", NULL};
    const char *vals[] = {chr->a->cfg.pg_url, "database", "-c TimeZone=UTC -c DateStyle=ISO", "5",
                          "tether-clickhouse-replicator", NULL};
    PGconn *c = nonblocking ? PQconnectStartParams(keys, vals, 1) : PQconnectdbParams(keys, vals, 1);
    if (!c)
        return NULL;
    if (PQstatus(c) == CONNECTION_BAD) {
        LOG_WARN("chr.pg_unreachable", "replication connection failed: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void chr_watch(struct chr *chr, short ev)
{
    int fd = chr->conn ? PQsocket(chr->conn) : -1;
    if (chr->watched_fd >= 0 && (chr->watched_fd != fd || chr->watched_ev != ev)) {
        loop_unwatch(chr->loop, chr->watched_fd);
        chr->watched_fd = -1;
    }
    if (chr->watched_fd < 0 && fd >= 0 && ev) {
        if (loop_watch(chr->loop, fd, ev, chr_on_conn, chr) == OK) {
            chr->watched_fd = fd;
            chr->watched_ev = ev;
        }
    }
}

static void chr_connect(struct loop *l, void *arg);
static void chr_setup_timer(struct loop *l, void *arg);

static void chr_conn_drop(struct chr *chr, const char *why)
{
    /* START_REPLICATION refused (a slot lost or dropped): the setup checks it again first */
    if (chr->state == CHR_STARTING)
        chr->setup_done = false;
    if (chr->conn) {
        LOG_WARN("chr.stream_lost", "replication stream: %s: %s", why,
                 PQerrorMessage(chr->conn));
        chr_watch(chr, 0);
        PQfinish(chr->conn);
        chr->conn = NULL;
    }
    chr->state = CHR_IDLE;
    /* PostgreSQL sends again everything after the slot's confirmed position: what was only
     * received is dropped; the batch in flight finishes and may still be acknowledged */
    chr->in_txn = false;
    chr_batch_clear(&chr->txn);
    chr_batch_clear(&chr->pending);
    backoff_fail(&chr->backoff);
    if (!chr->reconnect_timer || !loop_timer_is_pending(chr->loop, chr->reconnect_timer))
        chr->reconnect_timer = loop_timer_add(chr->loop, chr->backoff.cur_ms, chr_connect, chr);
}

static void chr_connect(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    (void)l;
    chr->reconnect_timer = 0;
    if (chr->state != CHR_IDLE || chr->fenced || loop_stopping(chr->loop))
        return;
    if (!chr->setup_done) {
        chr_setup_timer(l, chr);
        return;
    }
    chr->conn = chr_repl_connect(chr, true);
    if (!chr->conn) {
        chr_conn_drop(chr, "connect");
        return;
    }
    chr->state = CHR_CONNECTING;
    chr->pgo.nrels = 0; /* Relation messages are sent again on every connection */
    chr_watch(chr, POLLOUT);
}

static void chr_start_streaming(struct chr *chr)
{
    char cmd[512];
    /* 0/0: from the slot's confirmed_flush_lsn, i.e. right after the last acknowledgement */
    snprintf(cmd, sizeof(cmd),
             "START_REPLICATION SLOT \"%s\" LOGICAL 0/0 (proto_version '1', publication_names "
             "'\"%s\"')",
             chr->cfg.slot, chr->cfg.publication);
    if (PQsetnonblocking(chr->conn, 1) != 0 || !PQsendQuery(chr->conn, cmd)) {
        chr_conn_drop(chr, "START_REPLICATION");
        return;
    }
    chr->state = CHR_STARTING;
    chr_watch(chr, PQflush(chr->conn) == 1 ? (POLLIN | POLLOUT) : POLLIN);
}

/* ---- decoding ---- */

static void chr_on_change(struct chr *chr, const struct chr_pgo_msg *m)
{
    if (!m->rel || strcmp(m->rel->name, "sessions") != 0)
        return;
    const struct chr_val *id = &m->vals[CHR_COL_ID];
    char sid[64];
    if (!id->present || id->null || id->n >= sizeof(sid)) {
        LOG_ERROR("chr.row_skipped", "a change without a usable session id in the txn at %" PRIX64,
                  chr->txn.up_to_lsn);
        chr->rows_skipped++;
        return;
    }
    memcpy(sid, id->p, id->n);
    sid[id->n] = '\0';
    struct jbuf b = {0};
    /* _version: the transaction's commit LSN (Begin's final_lsn), equal for all its rows */
    if (chr_row_json(m->vals, chr->txn.up_to_lsn, m->kind == CHR_PGO_DELETE, &b) != OK) {
        char lsn[24];
        chr_lsn_fmt(chr->txn.up_to_lsn, lsn, sizeof(lsn));
        LOG_ERROR("chr.row_skipped", "session %s at LSN %s cannot be converted; skipped", sid,
                  lsn);
        chr->rows_skipped++;
        jbuf_free(&b);
        return;
    }
    chr_batch_add(&chr->txn, sid, chr->txn.up_to_lsn, b.p, b.n);
}

static void chr_flush_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    (void)l;
    chr->flush_timer = 0;
    chr_flush(chr);
}

static void chr_on_commit(struct chr *chr, uint64_t end_lsn, uint64_t ts_us)
{
    chr->in_txn = false;
    if (chr->txn.n && !chr->pending.n)
        chr->pending.oldest_commit_us = ts_us;
    for (size_t i = 0; i < chr->txn.n; i++) {
        struct chr_row *r = &chr->txn.rows[i];
        chr_batch_add(&chr->pending, r->session_id, r->lsn, r->json, r->n);
        r->json = NULL;
    }
    chr_batch_clear(&chr->txn);
    chr->pending.up_to_lsn = end_lsn;
    if (chr->pending.n == 0) {
        /* nothing of ours in it: once nothing older waits, it is safe as it is */
        if (!chr->insert_busy && end_lsn > chr->safe_lsn)
            chr->safe_lsn = end_lsn;
        return;
    }
    if ((long long)chr->pending.n >= chr->cfg.batch_rows)
        chr_flush(chr);
    else if (!chr->flush_timer)
        chr->flush_timer =
            loop_timer_add(chr->loop, (uint64_t)chr->cfg.flush_ms, chr_flush_timer, chr);
}

static uint64_t chr_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void chr_on_copy(struct chr *chr, const unsigned char *buf, size_t n)
{
    if (n >= 25 && buf[0] == 'w') {
        uint64_t start = chr_be64(buf + 1), end = chr_be64(buf + 9);
        struct chr_pgo_msg m;
        if (end > chr->server_end_lsn)
            chr->server_end_lsn = end;
        if (start > chr->received_lsn)
            chr->received_lsn = start;
        if (chr_pgo_decode(&chr->pgo, buf + 25, n - 25, &m) != OK) {
            LOG_ERROR("chr.decode_failed", "a pgoutput message of %zu bytes could not be decoded",
                      n - 25);
            chr_conn_drop(chr, "decode");
            return;
        }
        switch (m.kind) {
        case CHR_PGO_BEGIN:
            chr->in_txn = true;
            chr_batch_clear(&chr->txn);
            chr->txn.up_to_lsn = m.lsn;
            break;
        case CHR_PGO_COMMIT:
            chr_on_commit(chr, m.lsn, m.ts_us);
            break;
        case CHR_PGO_INSERT:
        case CHR_PGO_UPDATE:
        case CHR_PGO_DELETE:
            chr_on_change(chr, &m);
            break;
        default:
            break;
        }
    } else if (n >= 18 && buf[0] == 'k') {
        uint64_t end = chr_be64(buf + 1);
        if (end > chr->server_end_lsn)
            chr->server_end_lsn = end;
        /* between transactions, with nothing waiting, everything sent so far is safe */
        if (!chr->in_txn && !chr->pending.n && !chr->insert_busy && end > chr->safe_lsn)
            chr->safe_lsn = end;
        if (buf[17])
            chr->reply_requested = true;
        chr_ack_maybe(chr, buf[17] != 0);
    }
}

static void chr_on_conn(struct loop *l, int fd, short revents, void *arg)
{
    struct chr *chr = arg;
    (void)l;
    (void)fd;
    switch (chr->state) {
    case CHR_CONNECTING: {
        PostgresPollingStatusType st = PQconnectPoll(chr->conn);
        if (st == PGRES_POLLING_READING)
            chr_watch(chr, POLLIN);
        else if (st == PGRES_POLLING_WRITING)
            chr_watch(chr, POLLOUT);
        else if (st == PGRES_POLLING_OK)
            chr_start_streaming(chr);
        else
            chr_conn_drop(chr, "connect");
        return;
    }
    case CHR_STARTING:
        if ((revents & POLLOUT) && PQflush(chr->conn) == 0)
            chr_watch(chr, POLLIN);
        if (!PQconsumeInput(chr->conn)) {
            chr_conn_drop(chr, "START_REPLICATION");
            return;
        }
        if (PQisBusy(chr->conn))
            return;
        {
            PGresult *r = PQgetResult(chr->conn);
            bool ok = r && PQresultStatus(r) == PGRES_COPY_BOTH;
            if (r)
                PQclear(r);
            if (!ok) {
                chr_conn_drop(chr, "START_REPLICATION");
                return;
            }
        }
        chr->state = CHR_STREAMING;
        backoff_reset(&chr->backoff);
        LOG_INFO("chr.streaming", "streaming slot %s (publication %s)", chr->cfg.slot,
                 chr->cfg.publication);
        break; /* data may already be buffered */
    case CHR_STREAMING:
        break;
    default:
        return;
    }
    if ((revents & POLLOUT) && PQflush(chr->conn) == 0)
        chr_watch(chr, POLLIN);
    if (!PQconsumeInput(chr->conn)) {
        chr_conn_drop(chr, "read");
        return;
    }
    /* bounded work per wake-up so a burst cannot starve the bus */
    for (int i = 0; i < 4096 && chr->conn && chr->state == CHR_STREAMING; i++) {
        char *buf = NULL;
        int n = PQgetCopyData(chr->conn, &buf, 1);
        if (n == 0)
            return;
        if (n < 0) {
            chr_conn_drop(chr, n == -1 ? "the server ended the stream" : "read");
            return;
        }
        chr_on_copy(chr, (const unsigned char *)buf, (size_t)n);
        PQfreemem(buf);
    }
    /* more may be buffered without the socket becoming readable again */
    if (chr->conn && chr->state == CHR_STREAMING)
        (void)loop_timer_add(chr->loop, 0, chr_drain_timer, chr);
}

static void chr_drain_timer(struct loop *l, void *arg)
{
    chr_on_conn(l, -1, 0, arg);
}

/* ---- acknowledgements ---- */

static void chr_fenced(struct chr *chr)
{
    LOG_ERROR("chr.fenced", "the fence moved past token %" PRIu64
              ": another node leads; no more inserts or acknowledgements",
              chr->fence_token);
    chr->fenced = true;
    loop_stop(chr->loop);
}

static void chr_send_status(struct chr *chr)
{
    unsigned char m[34];
    uint64_t lsn = chr->safe_lsn;
    uint64_t now_us = (clock_wall_ms() - CHR_PG_EPOCH_MS) * 1000;
    if (!chr->conn || chr->state != CHR_STREAMING)
        return;
    m[0] = 'r';
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 8; i++)
            m[1 + k * 8 + i] = (unsigned char)(lsn >> (56 - 8 * i));
    for (int i = 0; i < 8; i++)
        m[25 + i] = (unsigned char)(now_us >> (56 - 8 * i));
    m[33] = 0;
    if (PQputCopyData(chr->conn, (const char *)m, sizeof(m)) != 1) {
        chr_conn_drop(chr, "status update");
        return;
    }
    int f = PQflush(chr->conn);
    if (f < 0) {
        chr_conn_drop(chr, "status update");
        return;
    }
    if (f == 1)
        chr_watch(chr, POLLIN | POLLOUT);
    if (lsn > chr->acked_lsn)
        chr->acked_lsn = lsn;
    chr->reply_requested = false;
    chr->last_status_mono = clock_mono_ms();
}

static void chr_on_fence_for_ack(struct chr *chr, bool ok, void *arg)
{
    (void)arg;
    chr->ack_busy = false;
    if (!ok) {
        chr_fenced(chr);
        return;
    }
    chr_send_status(chr);
}

static void chr_ack_maybe(struct chr *chr, bool force)
{
    if (chr->ack_busy || chr->fenced || chr->state != CHR_STREAMING)
        return;
    bool due = clock_mono_ms() - chr->last_status_mono >= (uint64_t)chr->cfg.status_ms;
    if (!(chr->safe_lsn > chr->acked_lsn || force || chr->reply_requested || due))
        return;
    chr->ack_busy = true;
    chr_fence_check(chr, chr_on_fence_for_ack, NULL);
}

static void chr_status_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    chr_ack_maybe(chr, false);
    chr->status_timer = loop_timer_add(l, (uint64_t)chr->cfg.status_ms, chr_status_timer, chr);
}

/* ---- inserts ---- */

struct chr_ins_job {
    struct chr_job job;
    struct chr *chr;
    bool split;
    size_t start;   /* split: first row still to insert */
    size_t next;    /* split: rows before this are done (inserted or skipped) */
    bool *skipped;  /* split: per row */
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
        if (chr->pending.n &&
            ((long long)chr->pending.n >= chr->cfg.batch_rows ||
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
        LOG_WARN("chr.insert_failed", "insert of %zu rows failed (%s), try %u; backing off",
                 b->n, err_name(rc), chr->insert_failures_run);
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

static void chr_flush(struct chr *chr)
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

/* ---- setup, lag, start and stop ---- */

struct chr_setup_job {
    struct chr_job job;
    struct chr *chr;
};

static void chr_setup_run_job(struct chr_job *j, struct chr_worker *w)
{
    struct chr_setup_job *sj = (struct chr_setup_job *)j;
    j->rc = chr_setup_run(sj->chr, w);
}

static void chr_setup_timer(struct loop *l, void *arg);

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

static void chr_setup_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    (void)l;
    if (!chr->setup_running && !loop_stopping(chr->loop))
        chr_fence_check(chr, chr_on_fence_for_setup, NULL);
}

/* Slot health from pg_replication_slots (on the query worker). */
struct chr_slot_job {
    struct chr_job job;
    struct chr *chr;
    char wal_status[24];
    char keep[24];
    long long retained;
};

static void chr_slot_run(struct chr_job *j, struct chr_worker *w)
{
    struct chr_slot_job *sj = (struct chr_slot_job *)j;
    const char *p[] = {sj->chr->cfg.slot};
    PGresult *r = NULL;
    j->rc = db_pg_exec(&w->pg,
                       "SELECT COALESCE(wal_status, ''), current_setting('max_slot_wal_keep_size'), "
                       "COALESCE(pg_current_wal_lsn() - restart_lsn, 0)::bigint "
                       "FROM pg_replication_slots WHERE slot_name = $1",
                       1, p, &r);
    if (j->rc != OK)
        return;
    if (PQntuples(r) == 1) {
        snprintf(sj->wal_status, sizeof(sj->wal_status), "%s", PQgetvalue(r, 0, 0));
        snprintf(sj->keep, sizeof(sj->keep), "%s", PQgetvalue(r, 0, 1));
        sj->retained = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    } else {
        j->rc = ERR_NOTFOUND;
    }
    PQclear(r);
}

static void chr_slot_done(struct chr_job *j)
{
    struct chr_slot_job *sj = (struct chr_slot_job *)j;
    struct chr *chr = sj->chr;
    if (j->rc == OK) {
        if (strcmp(sj->keep, "-1") == 0 && !chr->warned_keep) {
            LOG_WARN("chr.wal_unbounded",
                     "max_slot_wal_keep_size is -1: a stalled slot retains WAL without limit");
            chr->warned_keep = true;
        }
        if (strcmp(sj->wal_status, "unreserved") == 0 || strcmp(sj->wal_status, "lost") == 0 ||
            sj->retained > chr->cfg.lag_warn_bytes)
            LOG_WARN("chr.slot_behind",
                     "slot %s retains %lld bytes of WAL (wal_status %s, max_slot_wal_keep_size "
                     "%s)",
                     chr->cfg.slot, sj->retained, sj->wal_status, sj->keep);
    }
    free(sj);
}

static const struct chr_job_ops chr_slot_ops = {chr_slot_run, chr_slot_done};

static void chr_lag_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    uint64_t bytes = chr_lag_bytes(chr), ms = chr_lag_ms(chr);
    LOG_INFO("chr.lag",
             "behind by %" PRIu64 " bytes, %" PRIu64 " ms; rows inserted %" PRIu64
             ", skipped %" PRIu64 ", batches %" PRIu64 ", failed inserts %" PRIu64,
             bytes, ms, chr->rows_inserted, chr->rows_skipped, chr->batches,
             chr->insert_failures);
    if (bytes > (uint64_t)chr->cfg.lag_warn_bytes)
        LOG_WARN("chr.slot_behind", "the slot is %" PRIu64 " bytes behind the server's WAL end",
                 bytes);
    if (chr->setup_done && chr->qry.busy < 4) {
        struct chr_slot_job *sj = xcalloc(1, sizeof(*sj));
        sj->job.ops = &chr_slot_ops;
        sj->chr = chr;
        chr_worker_submit(&chr->qry, &sj->job);
    }
    chr->lag_timer = loop_timer_add(l, (uint64_t)chr->cfg.lag_log_ms, chr_lag_timer, chr);
}

/* The lag as /metrics shows it (pmetrics.h), every second: cheap, from what is in memory. */
static void chr_figures_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    pm_set(pm_series(PM_REPL_LAG, ""), (int64_t)chr_lag_ms(chr));
    pm_set(pm_series(PM_REPL_LAG_BYTES, ""), (int64_t)chr_lag_bytes(chr));
    chr->figures_timer = loop_timer_add(l, 1000, chr_figures_timer, chr);
}

void chr_repl_start(struct chr *chr)
{
    chr->watched_fd = -1;
    chr->backoff = (struct backoff)BACKOFF_INIT(100, 5000);
    chr->ins_backoff = (struct backoff)BACKOFF_INIT(100, (uint32_t)chr->cfg.backoff_max_ms);
    chr->last_status_mono = clock_mono_ms();
    chr_setup_timer(chr->loop, chr);
    chr->status_timer =
        loop_timer_add(chr->loop, (uint64_t)chr->cfg.status_ms, chr_status_timer, chr);
    chr->lag_timer = loop_timer_add(chr->loop, (uint64_t)chr->cfg.lag_log_ms, chr_lag_timer, chr);
    chr_figures_timer(chr->loop, chr);
}

void chr_repl_stop(struct chr *chr)
{
    if (chr->conn) {
        chr_watch(chr, 0);
        PQfinish(chr->conn);
        chr->conn = NULL;
    }
    chr_batch_fini(&chr->txn);
    chr_batch_fini(&chr->pending);
    chr_batch_fini(&chr->inflight);
}
