/*
 * setup.c - the publication, the slot and the initial backfill; the ClickHouse insert.
 *
 * Runs on the insert worker's thread (blocking libpq and curl, each call
 * bounded). A new slot is created with EXPORT_SNAPSHOT, and the rows that
 * exist at its consistent point are copied under that snapshot with
 * _version = the consistent point, so every later change (a higher commit
 * LSN) wins over them. clickhouse_replicator_slots records that the copy
 * finished (the record is deleted before a slot is made, so it only ever
 * speaks for the slot that exists); a slot without that record (a crash
 * mid-backfill) is dropped and made again, so a copy is never half done.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chr.h"
#include "log.h"

/* ClickHouse error codes that mean "this data cannot be inserted", not "try later". */
static bool chr_code_is_bad_data(int code)
{
    static const int codes[] = {6,   26,  27,  32,  33,  38,  41,  53,  69,
                                70,  72,  117, 130, 131, 321, 349, 1001};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i] == code)
            return true;
    return false;
}

bool chr_ch_insert_sql(const char *table, char *q, size_t cap)
{
    int n = snprintf(q, cap,
                     "INSERT INTO %s (organization_id, project_id, environment_id, "
                     "environment_type, session_id, friendly_id, external_id, type, "
                     "task_identifier, tags, metadata, closed_at, closed_reason, expires_at, "
                     "created_at, updated_at, created_at_ms, updated_at_ms, _version, _is_deleted) "
                     "FORMAT JSONEachRow",
                     table);
    return n > 0 && (size_t)n < cap;
}

err_t chr_ch_insert(struct chr *chr, struct db_ch *ch, const char *data, size_t n)
{
    char q[512];
    if (!chr_ch_insert_sql(chr->cfg.table, q, sizeof(q)))
        return ERR_INVAL;
    err_t rc;
    if (chr_fault_refuses(chr, data, n)) {
        /* tests only: the rows plus a line ClickHouse itself refuses (an unknown column) */
        static const char bad[] = "{\"tether_fault_unknown_column\":1}\n";
        struct jbuf b = {0};
        jbuf_put(&b, data, n);
        jbuf_put(&b, bad, sizeof(bad) - 1);
        err_t berr = b.err;
        rc = berr != OK ? berr : db_ch_query(ch, q, b.p, b.n, NULL, NULL);
        jbuf_free(&b);
        if (berr != OK)
            return berr;
    } else {
        rc = db_ch_query(ch, q, data, n, NULL, NULL);
    }
    if (rc == OK)
        return OK;
    return chr_code_is_bad_data(ch->last_code) ? ERR_INVAL : ERR_UNAVAIL;
}

#define CHR_BACKFILL_COLS                                                                          \
    "id, friendly_id, external_id, type, project_id, runtime_environment_id, organization_id, "    \
    "environment_type, task_identifier, tags::text, metadata::text, "                              \
    "to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), closed_reason, "           \
    "to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), "                         \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), "                         \
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"

static err_t chr_exec(struct db_pg *pg, const char *sql, int np, const char *const *params,
                      PGresult **out)
{
    PGresult *r = NULL;
    err_t rc = db_pg_exec(pg, sql, np, params, &r);
    if (rc != OK)
        return rc;
    if (out)
        *out = r;
    else
        PQclear(r);
    return OK;
}

/* Inserts rows of a backfill chunk; a bad row is logged and skipped (never retried forever). */
static err_t chr_backfill_chunk(struct chr *chr, struct chr_worker *w, PGresult *r,
                                uint64_t version, size_t *copied)
{
    struct jbuf b = {0};
    int nt = PQntuples(r);
    for (int i = 0; i < nt; i++) {
        struct chr_val v[CHR_NCOLS];
        for (int c = 0; c < CHR_NCOLS; c++) {
            v[c].present = true;
            v[c].null = PQgetisnull(r, i, c);
            v[c].p = PQgetvalue(r, i, c);
            v[c].n = (size_t)PQgetlength(r, i, c);
        }
        size_t before = b.n;
        if (chr_row_json(v, version, false, &b) != OK) {
            b.n = before;
            LOG_ERROR("chr.row_skipped", "backfill: session %s cannot be converted; skipped",
                      PQgetvalue(r, i, CHR_COL_ID));
            continue;
        }
    }
    err_t rc = b.err;
    for (unsigned t = 0; rc == OK && b.n > 0; t++) {
        rc = chr_ch_insert(chr, &w->ch, b.p, b.n);
        if (rc == OK || t + 1 >= 3)
            break;
    }
    if (rc == ERR_INVAL) {
        /* a row ClickHouse refuses: find it by inserting one at a time */
        char *line = b.p, *end = b.p + b.n;
        rc = OK;
        while (line < end && rc == OK) {
            char *nl = memchr(line, '\n', (size_t)(end - line));
            size_t len = nl ? (size_t)(nl - line) + 1 : (size_t)(end - line);
            rc = chr_ch_insert(chr, &w->ch, line, len);
            if (rc == ERR_INVAL) {
                LOG_ERROR("chr.row_skipped", "backfill: ClickHouse refused a row: %.200s", line);
                rc = OK;
            }
            line += len;
        }
    }
    if (rc == OK)
        *copied += (size_t)nt;
    jbuf_free(&b);
    return rc;
}

/* Copies every row visible in the snapshot, in chunks of backfill_rows. */
static err_t chr_backfill(struct chr *chr, struct chr_worker *w, const char *snapshot,
                          uint64_t version)
{
    char sql[512], fetch[64];
    size_t copied = 0;
    err_t rc = chr_exec(&w->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL, NULL);
    if (rc != OK)
        return rc;
    snprintf(sql, sizeof(sql), "SET TRANSACTION SNAPSHOT '%s'", snapshot);
    if (strchr(snapshot, '\'') == NULL)
        rc = chr_exec(&w->pg, sql, 0, NULL, NULL);
    else
        rc = ERR_PROTO;
    if (rc == OK)
        rc = chr_exec(&w->pg,
                      "DECLARE chr_backfill NO SCROLL CURSOR FOR SELECT " CHR_BACKFILL_COLS
                      " FROM sessions",
                      0, NULL, NULL);
    snprintf(fetch, sizeof(fetch), "FETCH %lld FROM chr_backfill", chr->cfg.backfill_rows);
    while (rc == OK) {
        PGresult *r = NULL;
        rc = chr_exec(&w->pg, fetch, 0, NULL, &r);
        if (rc != OK)
            break;
        int nt = PQntuples(r);
        if (nt > 0)
            rc = chr_backfill_chunk(chr, w, r, version, &copied);
        PQclear(r);
        if (rc == OK && nt > 0)
            chr_fault_point(chr, "mid_backfill");
        if (nt == 0)
            break;
    }
    (void)chr_exec(&w->pg, rc == OK ? "COMMIT" : "ROLLBACK", 0, NULL, NULL);
    if (rc == OK)
        LOG_INFO("chr.backfilled", "copied %zu existing sessions into ClickHouse", copied);
    return rc;
}

err_t chr_setup_run(struct chr *chr, struct chr_worker *w)
{
    const char *slot = chr->cfg.slot, *pub = chr->cfg.publication;
    PGresult *r = NULL;
    err_t rc;

    /* the publication: made by sql/postgres/0006, or here for a custom name */
    const char *p1[] = {pub};
    rc = chr_exec(&w->pg, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, p1, &r);
    if (rc != OK)
        return rc;
    bool have_pub = PQntuples(r) > 0;
    PQclear(r);
    if (!have_pub) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "CREATE PUBLICATION \"%s\" FOR TABLE sessions WITH (publish = 'insert, update, "
                 "delete')",
                 pub);
        if (strchr(pub, '"') || (rc = chr_exec(&w->pg, sql, 0, NULL, NULL)) != OK) {
            LOG_ERROR("chr.setup_failed", "could not create publication %s", pub);
            return rc != OK ? rc : ERR_INVAL;
        }
        LOG_INFO("chr.publication_created", "created publication %s", pub);
    }

    const char *p2[] = {slot};
    rc = chr_exec(&w->pg,
                  "SELECT s.database = current_database(), s.active, st.slot_name IS NOT NULL, "
                  "COALESCE(s.wal_status, '') FROM pg_replication_slots s "
                  "LEFT JOIN clickhouse_replicator_slots st ON st.slot_name = s.slot_name "
                  "WHERE s.slot_name = $1",
                  1, p2, &r);
    if (rc != OK)
        return rc;
    bool exists = PQntuples(r) > 0;
    bool same_db = exists && PQgetvalue(r, 0, 0)[0] == 't';
    bool backfilled = exists && PQgetvalue(r, 0, 2)[0] == 't';
    bool lost = exists && strcmp(PQgetvalue(r, 0, 3), "lost") == 0;
    PQclear(r);
    if (lost) {
        /* max_slot_wal_keep_size was exceeded: the WAL it needed is gone; only a new slot
         * with a new backfill can make ClickHouse whole again */
        LOG_ERROR("chr.slot_lost", "slot %s lost WAL it needed (max_slot_wal_keep_size); "
                  "recreating it with a new backfill", slot);
        backfilled = false;
    }
    if (exists && !same_db) {
        LOG_ERROR("chr.setup_failed",
                  "replication slot %s belongs to another database (set TETHER_CHR_SLOT)", slot);
        return ERR_CONFLICT;
    }
    if (exists && backfilled)
        return OK;
    if (exists) {
        LOG_WARN("chr.slot_recreated",
                 "slot %s exists but its backfill never finished; dropping and recreating it",
                 slot);
        rc = chr_exec(&w->pg, "SELECT pg_drop_replication_slot($1)", 1, p2, NULL);
        if (rc != OK)
            return rc;
    }

    /* A record left by an earlier slot of this name (dropped by hand, or lost) must not vouch
     * for the new one: forgotten before the slot is made, it is written again only once this
     * slot's copy finished. Otherwise a crash mid-copy leaves a half-copied slot that looks done. */
    rc = chr_exec(&w->pg, "DELETE FROM clickhouse_replicator_slots WHERE slot_name = $1", 1, p2,
                  NULL);
    if (rc != OK)
        return rc;

    PGconn *rconn = chr_repl_connect(chr, false);
    if (!rconn)
        return ERR_UNAVAIL;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput EXPORT_SNAPSHOT",
             slot);
    r = strchr(slot, '"') ? NULL : PQexec(rconn, cmd);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        LOG_ERROR("chr.setup_failed", "could not create slot %s: %s", slot,
                  PQerrorMessage(rconn));
        if (r)
            PQclear(r);
        PQfinish(rconn);
        return ERR_UNAVAIL;
    }
    uint64_t consistent = 0;
    (void)chr_lsn_parse(PQgetvalue(r, 0, 1), &consistent);
    char snapshot[128];
    snprintf(snapshot, sizeof(snapshot), "%s", PQgetvalue(r, 0, 2));
    LOG_INFO("chr.slot_created", "created slot %s at %s; backfilling under snapshot %s", slot,
             PQgetvalue(r, 0, 1), snapshot);
    PQclear(r);
    /* the snapshot lives while rconn stays idle: copy now, then let it go */
    rc = chr_backfill(chr, w, snapshot, consistent);
    PQfinish(rconn);
    if (rc != OK)
        return rc;
    char lsn[24];
    chr_lsn_fmt(consistent, lsn, sizeof(lsn));
    const char *p3[] = {slot, lsn};
    return chr_exec(&w->pg,
                    "INSERT INTO clickhouse_replicator_slots (slot_name, backfilled_lsn) "
                    "VALUES ($1, $2::pg_lsn) ON CONFLICT (slot_name) DO UPDATE SET "
                    "backfilled_lsn = EXCLUDED.backfilled_lsn, backfilled_at = now()",
                    2, p3, NULL);
}
