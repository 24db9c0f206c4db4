/*
 * repl.c - the logical replication stream: the connection, the decoding of
 * what it sends, and the replication's start and stop.
 *
 * The replication connection is libpq in non-blocking mode, watched by the
 * loop: PQconnectPoll, then START_REPLICATION, then PQgetCopyData(async)
 * on every readable event; standby status updates (ack.c) go out with
 * PQputCopyData + PQflush (POLLOUT while libpq still holds bytes).
 * Rows of a transaction are held until its Commit, then join the pending
 * batch (batch.c); one batch at a time is inserted (insert.c, on the insert
 * worker). The rule: an LSN is acknowledged only once ClickHouse accepted
 * every row up to it (safe_lsn), and only after the fence still names our
 * token.
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "chr.h"
#include "clock.h"
#include "log.h"

static void chr_on_conn(struct loop *l, int fd, short revents, void *arg);
static void chr_drain_timer(struct loop *l, void *arg);

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

void chr_watch(struct chr *chr, short ev)
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

void chr_conn_drop(struct chr *chr, const char *why)
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

void chr_connect(struct loop *l, void *arg)
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
