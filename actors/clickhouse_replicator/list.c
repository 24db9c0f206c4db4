/*
 * list.c - session.list: ids from ClickHouse (FINAL), merged with the PostgreSQL rows
 * changed within the replication lag, then loaded and re-filtered from PostgreSQL.
 *
 * The request is parsed on the loop and answered from the query worker's
 * thread (its own connections), so a slow list never stalls replication.
 * Order and cursors are on session_id (a cuid: time-ordered), descending;
 * the page is ids[0..size) and one more id tells whether there is more.
 * Read-your-writes: a row committed but not yet in ClickHouse has
 * updated_at within fresh_ms + the current lag, so the PostgreSQL half of
 * the query finds it. When ClickHouse cannot be reached the whole list is
 * answered from PostgreSQL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chr.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg_list.h"
#include "msg_raw.h"

#define CHR_LIST_MAXVALS MSG_SESSION_LIST_VALS_MAX
#define CHR_LIST_VALMAX MSG_SESSION_LIST_VAL_MAX
#define CHR_ID_MAX (MSG_SESSION_LIST_ID_MAX + 1)

struct chr_strs {
    char *v[CHR_LIST_MAXVALS];
    unsigned n;
};

struct chr_list_job {
    struct chr_job job;
    struct chr *chr;
    struct bus_req *req;
    char env_id[64], org_id[64], project_id[64];
    unsigned size;
    char after[CHR_ID_MAX], before[CHR_ID_MAX];
    struct chr_strs types, tags, tasks;
    char *external_id;
    unsigned statuses;
    uint64_t from_ms, to_ms;
    uint64_t fresh_ms; /* 0: ClickHouse is not to be trusted: PostgreSQL answers alone */
    struct mp_writer out;
};

static void chr_strs_free(struct chr_strs *s)
{
    for (unsigned i = 0; i < s->n; i++)
        free(s->v[i]);
    s->n = 0;
}

static bool chr_id_ok(const char *s, size_t n)
{
    if (n == 0 || n >= CHR_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* ---- SQL text ---- */

static void chr_ch_lit(struct jbuf *b, const char *s)
{
    jbuf_puts(b, "'");
    for (; *s; s++) {
        if (*s == '\'' || *s == '\\')
            jbuf_put(b, "\\", 1);
        jbuf_put(b, s, 1);
    }
    jbuf_puts(b, "'");
}

static void chr_ch_list(struct jbuf *b, const struct chr_strs *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        if (i)
            jbuf_puts(b, ",");
        chr_ch_lit(b, s->v[i]);
    }
}

/* A text[] literal for a parameter; NULL (SQL NULL) when empty. */
static char *chr_pg_array(const struct chr_strs *s)
{
    struct jbuf b = {0};
    if (!s->n)
        return NULL;
    jbuf_puts(&b, "{");
    for (unsigned i = 0; i < s->n; i++) {
        if (i)
            jbuf_puts(&b, ",");
        jbuf_puts(&b, "\"");
        for (const char *p = s->v[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                jbuf_put(&b, "\\", 1);
            jbuf_put(&b, p, 1);
        }
        jbuf_puts(&b, "\"");
    }
    jbuf_puts(&b, "}");
    return b.p;
}

static char *chr_list_ch_sql(const struct chr_list_job *lj)
{
    struct jbuf b = {0};
    jbuf_fmt(&b, "SELECT session_id FROM %.64s FINAL WHERE organization_id = ", lj->chr->cfg.table);
    chr_ch_lit(&b, lj->org_id);
    jbuf_puts(&b, " AND project_id = ");
    chr_ch_lit(&b, lj->project_id);
    jbuf_puts(&b, " AND environment_id = ");
    chr_ch_lit(&b, lj->env_id);
    jbuf_puts(&b, " AND _is_deleted = 0");
    if (lj->types.n) {
        jbuf_puts(&b, " AND type IN (");
        chr_ch_list(&b, &lj->types);
        jbuf_puts(&b, ")");
    }
    if (lj->tags.n) {
        jbuf_puts(&b, " AND hasAny(tags, [");
        chr_ch_list(&b, &lj->tags);
        jbuf_puts(&b, "])");
    }
    if (lj->tasks.n) {
        jbuf_puts(&b, " AND task_identifier IN (");
        chr_ch_list(&b, &lj->tasks);
        jbuf_puts(&b, ")");
    }
    if (lj->external_id) {
        jbuf_puts(&b, " AND external_id = ");
        chr_ch_lit(&b, lj->external_id);
    }
    if (lj->statuses) {
        const char *sep = "";
        jbuf_puts(&b, " AND (");
        if (lj->statuses & 1) {
            jbuf_puts(&b, "(isNull(closed_at) AND (isNull(expires_at) OR expires_at > now()))");
            sep = " OR ";
        }
        if (lj->statuses & 2) {
            jbuf_fmt(&b, "%s(isNotNull(closed_at))", sep);
            sep = " OR ";
        }
        if (lj->statuses & 4)
            jbuf_fmt(&b, "%s(isNull(closed_at) AND isNotNull(expires_at) AND expires_at <= now())",
                     sep);
        jbuf_puts(&b, ")");
    }
    if (lj->from_ms)
        jbuf_fmt(&b, " AND created_at_ms >= %" PRIu64, lj->from_ms);
    if (lj->to_ms)
        jbuf_fmt(&b, " AND created_at_ms <= %" PRIu64, lj->to_ms);
    if (lj->after[0]) {
        jbuf_puts(&b, " AND session_id < ");
        chr_ch_lit(&b, lj->after);
    } else if (lj->before[0]) {
        jbuf_puts(&b, " AND session_id > ");
        chr_ch_lit(&b, lj->before);
    }
    jbuf_fmt(&b, " ORDER BY session_id %s LIMIT %u FORMAT TabSeparated",
             lj->before[0] ? "ASC" : "DESC", lj->size + 1);
    if (b.err != OK) {
        jbuf_free(&b);
        return NULL;
    }
    return b.p;
}

#define CHR_PG_FILTER                                                                              \
    "runtime_environment_id = $1"                                                                  \
    " AND ($2::text[] IS NULL OR type = ANY($2::text[]))"                                          \
    " AND ($3::text[] IS NULL OR tags && $3::text[])"                                              \
    " AND ($4::text[] IS NULL OR task_identifier = ANY($4::text[]))"                               \
    " AND ($5::text IS NULL OR external_id = $5::text)"                                            \
    " AND ($6::bigint = 0 OR created_at >= to_timestamp($6::bigint / 1000.0))"                     \
    " AND ($7::bigint = 0 OR created_at <= to_timestamp($7::bigint / 1000.0))"                     \
    " AND ($8::int = 0"                                                                            \
    "  OR (($8::int & 1) <> 0 AND closed_at IS NULL AND (expires_at IS NULL OR expires_at > "      \
    "now()))"                                                                                      \
    "  OR (($8::int & 2) <> 0 AND closed_at IS NOT NULL)"                                          \
    "  OR (($8::int & 4) <> 0 AND closed_at IS NULL AND expires_at <= now()))"

/* The session object's columns, in the session-manager's order (proto/msg.c). */
#define CHR_SESSION_COLS                                                                           \
    "id, friendly_id, external_id, type, task_identifier, trigger_config::text, "                  \
    "array_to_json(tags)::text, metadata::text, b.current_run_id, "                                \
    "COALESCE(b.current_run_version, 0), "                                                         \
    "COALESCE((extract(epoch FROM closed_at) * 1000)::bigint, 0), closed_reason, "                 \
    "COALESCE((extract(epoch FROM expires_at) * 1000)::bigint, 0), "                               \
    "(extract(epoch FROM created_at) * 1000)::bigint, "                                            \
    "(extract(epoch FROM GREATEST(updated_at, b.bound_at)) * 1000)::bigint"

struct chr_ids {
    char (*v)[CHR_ID_MAX];
    size_t n, cap;
};

static void chr_ids_add(struct chr_ids *ids, const char *s, size_t n)
{
    if (!chr_id_ok(s, n))
        return;
    for (size_t i = 0; i < ids->n; i++)
        if (strlen(ids->v[i]) == n && memcmp(ids->v[i], s, n) == 0)
            return;
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? ids->cap * 2 : 64;
        ids->v = xrealloc(ids->v, ids->cap * sizeof(*ids->v));
    }
    memcpy(ids->v[ids->n], s, n);
    ids->v[ids->n][n] = '\0';
    ids->n++;
}

static int chr_id_cmp_desc(const void *a, const void *b)
{
    return strcmp((const char *)b, (const char *)a);
}

static int chr_id_cmp_asc(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void chr_put_col(struct mp_writer *w, const char *k, PGresult *r, int row, int col)
{
    mp_put_str(w, k);
    if (PQgetisnull(r, row, col))
        mp_put_nil(w);
    else
        mp_put_strn(w, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static void chr_put_u64(struct mp_writer *w, const char *k, PGresult *r, int row, int col)
{
    mp_put_kv_uint(w, k, strtoull(PQgetvalue(r, row, col), NULL, 10));
}

static void chr_list_run(struct chr_job *j, struct chr_worker *w)
{
    struct chr_list_job *lj = (struct chr_list_job *)j;
    struct chr_ids ids = {0};
    bool backward = lj->before[0] != '\0';
    bool pg_only = lj->fresh_ms == 0;
    err_t rc = OK;

    if (!pg_only) {
        char *sql = chr_list_ch_sql(lj);
        char *out = NULL;
        size_t out_n = 0;
        rc = sql ? db_ch_query(&w->ch, sql, NULL, 0, &out, &out_n) : ERR_NOMEM;
        free(sql);
        if (rc == OK) {
            for (char *p = out, *end = out + out_n; p < end;) {
                char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
                chr_ids_add(&ids, p, len);
                p += len + 1;
            }
        } else {
            LOG_WARN("chr.list_degraded",
                     "ClickHouse did not answer the list (%s); answering "
                     "from PostgreSQL alone",
                     err_name(rc));
            pg_only = true;
        }
        free(out);
    }

    char *types = chr_pg_array(&lj->types), *tags = chr_pg_array(&lj->tags),
         *tasks = chr_pg_array(&lj->tasks);
    char from[24], to[24], st[8], fresh[24], lim[16];
    snprintf(from, sizeof(from), "%" PRIu64, lj->from_ms);
    snprintf(to, sizeof(to), "%" PRIu64, lj->to_ms);
    snprintf(st, sizeof(st), "%u", lj->statuses);
    snprintf(fresh, sizeof(fresh), "%" PRIu64, pg_only ? 0 : lj->fresh_ms);
    snprintf(lim, sizeof(lim), "%u", lj->size + 1);
    const char *p[12] = {lj->env_id,
                         types,
                         tags,
                         tasks,
                         lj->external_id,
                         from,
                         to,
                         st,
                         fresh,
                         lj->after[0] ? lj->after : NULL,
                         lj->before[0] ? lj->before : NULL,
                         lim};
    PGresult *r = NULL;
    rc = db_pg_exec(&w->pg,
                    backward
                        ? "SELECT id FROM sessions WHERE " CHR_PG_FILTER
                          " AND ($9::bigint = 0 OR updated_at >= now() - $9::bigint * interval '1 "
                          "millisecond') AND ($10::text IS NULL OR id COLLATE \"C\" < $10::text) "
                          "AND ($11::text IS NULL OR id COLLATE \"C\" > $11::text) "
                          "ORDER BY id COLLATE \"C\" ASC LIMIT $12::int"
                        : "SELECT id FROM sessions WHERE " CHR_PG_FILTER
                          " AND ($9::bigint = 0 OR updated_at >= now() - $9::bigint * interval '1 "
                          "millisecond') AND ($10::text IS NULL OR id COLLATE \"C\" < $10::text) "
                          "AND ($11::text IS NULL OR id COLLATE \"C\" > $11::text) "
                          "ORDER BY id COLLATE \"C\" DESC LIMIT $12::int",
                    12, p, &r);
    if (rc == OK) {
        for (int i = 0; i < PQntuples(r); i++)
            chr_ids_add(&ids, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
        PQclear(r);
    }

    /* the merged ids in the query's direction, then the page */
    if (rc == OK && ids.n)
        qsort(ids.v, ids.n, sizeof(*ids.v), backward ? chr_id_cmp_asc : chr_id_cmp_desc);
    bool has_more = ids.n > lj->size;
    size_t n = has_more ? lj->size : ids.n;
    const char *next = NULL, *prev = NULL;
    if (!backward) {
        if (lj->after[0] && n)
            prev = ids.v[0];
        if (has_more)
            next = ids.v[lj->size - 1];
    } else {
        /* shown newest first: ids[n-1] .. ids[0] */
        if (has_more && n)
            prev = ids.v[n - 1];
        if (n)
            next = ids.v[0];
    }

    struct jbuf arr = {0};
    if (rc == OK && n) {
        jbuf_puts(&arr, "{");
        for (size_t i = 0; i < n; i++) {
            if (i)
                jbuf_puts(&arr, ",");
            jbuf_puts(&arr, ids.v[i]);
        }
        jbuf_puts(&arr, "}");
        const char *p2[9] = {lj->env_id, types, tags, tasks, lj->external_id, from, to, st, arr.p};
        rc = db_pg_exec(&w->pg,
                        "SELECT " CHR_SESSION_COLS " FROM sessions LEFT JOIN session_bindings b"
                        " ON b.session_id = id WHERE " CHR_PG_FILTER
                        " AND id = ANY($9::text[]) ORDER BY id COLLATE \"C\" DESC",
                        9, p2, &r);
    }
    if (rc == OK) {
        int nt = n ? PQntuples(r) : 0;
        struct mp_writer sessions;
        mp_writer_init(&sessions);
        mp_put_array(&sessions, (uint32_t)nt);
        for (int i = 0; i < nt; i++) {
            struct mp_writer *o = &sessions;
            mp_put_map(o, 15);
            chr_put_col(o, "id", r, i, 0);
            chr_put_col(o, "friendly_id", r, i, 1);
            chr_put_col(o, "external_id", r, i, 2);
            chr_put_col(o, "type", r, i, 3);
            chr_put_col(o, "task_identifier", r, i, 4);
            chr_put_col(o, "trigger_config", r, i, 5);
            chr_put_col(o, "tags", r, i, 6);
            chr_put_col(o, "metadata", r, i, 7);
            chr_put_col(o, "current_run_id", r, i, 8);
            chr_put_u64(o, "current_run_version", r, i, 9);
            chr_put_u64(o, "closed_at_ms", r, i, 10);
            chr_put_col(o, "closed_reason", r, i, 11);
            chr_put_u64(o, "expires_at_ms", r, i, 12);
            chr_put_u64(o, "created_at_ms", r, i, 13);
            chr_put_u64(o, "updated_at_ms", r, i, 14);
        }
        struct msg_session_list_reply m = {msg_raw_of(&sessions), msg_str(next), msg_str(prev)};
        msg_encode(&msg_session_list_reply_form, &lj->out, &m);
        msg_raw_done(&sessions, &lj->out);
        if (n)
            PQclear(r);
        rc = mp_writer_err(&lj->out);
    }
    jbuf_free(&arr);
    free(types);
    free(tags);
    free(tasks);
    free(ids.v);
    j->rc = rc;
}

static void chr_list_done(struct chr_job *j)
{
    struct chr_list_job *lj = (struct chr_list_job *)j;
    if (j->rc == OK)
        (void)bus_reply(lj->req, mp_writer_data(&lj->out), mp_writer_len(&lj->out));
    else if (j->rc == ERR_CLOSED)
        (void)bus_reply_err(lj->req, ERR_UNAVAIL, "the replicator is stopping; retry later");
    else
        actor_reply_store_err(lj->req, "session list", j->rc);
    mp_writer_fini(&lj->out);
    chr_strs_free(&lj->types);
    chr_strs_free(&lj->tags);
    chr_strs_free(&lj->tasks);
    free(lj->external_id);
    free(lj);
}

static const struct chr_job_ops chr_list_ops = {chr_list_run, chr_list_done};

/* s into out (cap bytes): "" when absent; false when it does not fit. */
static bool chr_copy(struct slice s, char *out, size_t cap)
{
    out[0] = '\0';
    return !s.p || slice_copy(s, out, cap) == OK;
}

/* The strings of raw (an array: absent, none) into out, copied; ERR_INVAL when unusable. */
static err_t chr_strs_take(struct slice raw, struct chr_strs *out)
{
    struct slice v[CHR_LIST_MAXVALS];
    unsigned n;
    err_t rc = msg_raw_strs(raw, v, CHR_LIST_MAXVALS, 0, CHR_LIST_VALMAX, &n);
    for (unsigned i = 0; rc == OK && i < n; i++)
        out->v[out->n++] = xstrndup(v[i].p, v[i].n);
    return rc;
}

err_t chr_on_session_list(struct actor *a, struct bus_req *req)
{
    struct chr *chr = a->state;
    const struct envelope *env = bus_req_env(req);
    struct msg_session_list m;
    err_t rc = msg_decode(&msg_session_list_form, env->body.p, env->body.n, &m);
    if (rc != OK)
        return rc;
    struct chr_list_job *lj = xcalloc(1, sizeof(*lj));
    bool ok = chr_copy(m.env_id, lj->env_id, sizeof(lj->env_id)) &&
              chr_copy(m.org_id, lj->org_id, sizeof(lj->org_id)) &&
              chr_copy(m.project_id, lj->project_id, sizeof(lj->project_id)) &&
              chr_copy(m.after, lj->after, sizeof(lj->after)) &&
              chr_copy(m.before, lj->before, sizeof(lj->before)) &&
              chr_strs_take(m.types, &lj->types) == OK && chr_strs_take(m.tags, &lj->tags) == OK &&
              chr_strs_take(m.tasks, &lj->tasks) == OK;
    lj->size = m.size <= MSG_SESSION_LIST_SIZE_MAX ? (unsigned)m.size : 0;
    lj->statuses = (unsigned)m.statuses & 7u;
    lj->from_ms = m.from_ms;
    lj->to_ms = m.to_ms;
    if (ok && (lj->size < 1 || (lj->after[0] && lj->before[0])))
        ok = false;
    if (!ok) {
        chr_strs_free(&lj->types);
        chr_strs_free(&lj->tags);
        chr_strs_free(&lj->tasks);
        free(lj);
        return ERR_INVAL;
    }
    if (m.external_id.p)
        lj->external_id = xstrndup(m.external_id.p, m.external_id.n);
    lj->job.ops = &chr_list_ops;
    lj->chr = chr;
    lj->req = req;
    /* rows committed within the lag may not be in ClickHouse yet: PostgreSQL supplies them.
     * Without a live stream nothing about ClickHouse's freshness is known: PostgreSQL alone. */
    if (chr->state == CHR_STREAMING && chr_lag_bytes(chr) < (16u << 20))
        lj->fresh_ms = (uint64_t)chr->cfg.fresh_ms + chr_lag_ms(chr);
    else
        lj->fresh_ms = 0;
    mp_writer_init(&lj->out);
    chr_worker_submit(&chr->qry, &lj->job);
    return OK;
}
