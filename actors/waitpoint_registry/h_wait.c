/*
 * h_wait.c - the registry's requests besides wp.create (h_create.c):
 * wp.complete, wp.get, wp.list and wp.block, and the replies every
 * handler shares.
 *
 * Each handler decodes and checks its body (proto/msg_wp.h), then runs its
 * statements on the non-blocking pool and replies from the last callback.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ids.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "msg_raw.h"
#include "msg_wp.h"
#include "wp.h"

#define WP_NOT_FOUND "waitpoint not found"

/* the codec's limits (proto/msg_wp.h) are what the registry's buffers take */
_Static_assert(MSG_WP_ENV_MAX == STREAM_ENV_MAX && MSG_WP_ID_MAX + 1 == WP_FRIENDLY_MAX &&
                   MSG_WP_RUN_MAX + 1 == WP_RUN_MAX && MSG_WP_IDEM_MAX == WP_IDEM_MAX &&
                   MSG_WP_OUTPUT_MAX == WP_OUTPUT_MAX && MSG_WP_TAGS_MAX == WP_TAGS_MAX &&
                   MSG_WP_TAG_MAX == WP_TAG_MAX,
               "msg_wp.h and wp.h disagree");

/* ---- fields and replies ---- */

bool wp_cstr(struct slice s, char *buf, size_t cap)
{
    if (!s.p) { /* an optional field: "" */
        buf[0] = '\0';
        return true;
    }
    return msg_cstr(s, buf, cap);
}

bool wp_kind_valid(const char *k)
{
    return !strcmp(k, "MANUAL") || !strcmp(k, "SESSION_STREAM") || !strcmp(k, "DURATION");
}

static bool wp_status_valid(struct slice s)
{
    return slice_eq(s, "PENDING") || slice_eq(s, "COMPLETED") || slice_eq(s, "TIMED_OUT");
}

/* The internal id of a friendly waitpoint id, or false when it is not one. */
static bool wp_ref_parse(const char *ref, char *id)
{
    size_t n = strlen(ref);
    if (n <= 10 || strncmp(ref, "waitpoint_", 10) != 0 || !cuid_valid(ref + 10, n - 10))
        return false;
    memcpy(id, ref + 10, n - 10 + 1);
    return true;
}

/* Replies m with its waitpoint: row 0 of r from column col0. */
void wp_reply_row(struct bus_req *req, const PGresult *r, int col0, struct msg_wp_reply *m)
{
    struct mp_writer row;
    mp_writer_init(&row);
    wp_put_row(&row, r, 0, col0);
    m->waitpoint = msg_raw_of(&row);
    (void)bus_reply_msg(req, &msg_wp_reply_form, m, &row);
    mp_writer_fini(&row);
}

/* ---- wp.complete, wp.get, wp.block: one statement answering a waitpoint ---- */

struct wp_one {
    struct wp *wp;
    struct bus_req *req;
    const char *op;
    bool complete; /* wp.complete: the reply's completed, read from column WP_NCOLS; a wake */
};

static void wp_on_one(void *arg, err_t rc, const PGresult *res)
{
    struct wp_one *o = arg;
    if (rc != OK) {
        actor_reply_store_err(o->req, o->op, rc);
    } else if (PQntuples(res) < 1) {
        (void)bus_reply_err(o->req, ERR_NOTFOUND, WP_NOT_FOUND);
    } else {
        struct msg_wp_reply m = {.completed_given = o->complete};
        m.completed = o->complete && strcmp(PQgetvalue(res, 0, WP_NCOLS), "t") == 0;
        if (m.completed) {
            LOG_INFO("wp.completed", "%s completed", PQgetvalue(res, 0, 0));
            wp_wake_result(o->wp, res, WP_NCOLS - 1, WP_NCOLS - 2, NULL);
        }
        wp_reply_row(o->req, res, 0, &m);
    }
    free(o);
}

/* Runs the statement that answers req with one waitpoint (wp_on_one). */
static err_t wp_one_exec(struct actor *a, struct bus_req *req, const char *op, bool complete,
                         const char *sql, int n, const char *const *params)
{
    struct wp_one *o = xcalloc(1, sizeof(*o));
    o->wp = wp_of(a);
    o->req = req;
    o->op = op;
    o->complete = complete;
    err_t rc = db_pg_async_exec(o->wp->pg, sql, n, params, wp_on_one, o);
    if (rc != OK)
        free(o);
    return rc;
}

/*
 * env_id and id (a friendly waitpoint id) of a request; replies itself and returns false when
 * unusable. any_env: env_id may be absent (env left empty).
 */
static bool wp_ref_args(struct bus_req *req, struct slice env_id, struct slice ref_id, char *env,
                        char *ref, char *id, bool any_env)
{
    if (!wp_cstr(env_id, env, STREAM_ENV_MAX + 1) || (!env[0] && !any_env) ||
        !wp_cstr(ref_id, ref, WP_FRIENDLY_MAX)) {
        (void)bus_reply_err(req, ERR_INVAL, "env_id and id (strings) are required");
        return false;
    }
    if (!wp_ref_parse(ref, id)) {
        (void)bus_reply_err(req, ERR_NOTFOUND, WP_NOT_FOUND);
        return false;
    }
    return true;
}

err_t wp_on_complete(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    char env[STREAM_ENV_MAX + 1], ref[WP_FRIENDLY_MAX], id[WP_ID_MAX], type[128], sql[4096];
    struct msg_wp_complete m;
    err_t rc = msg_decode(&msg_wp_complete_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!wp_ref_args(req, m.env_id, m.id, env, ref, id, false))
        return OK;
    if (m.output.p && memchr(m.output.p, '\0', m.output.n)) {
        (void)bus_reply_err(req, ERR_INVAL, "output must be text of at most 1 MiB");
        return OK;
    }
    if (!wp_cstr(m.output_type, type, sizeof(type))) {
        (void)bus_reply_err(req, ERR_INVAL, "output_type must be a short string");
        return OK;
    }
    char *output = m.output.p ? xstrndup(m.output.p, m.output.n) : NULL;
    const char *params[] = {id, env, output, type[0] ? type : NULL};
    /* write-once: only a PENDING row changes; a second completion reads what the first left */
    snprintf(sql, sizeof(sql),
             "WITH u AS (UPDATE waitpoints w SET status = 'COMPLETED', output = $3,"
             "  output_type = COALESCE($4, 'application/json'), completed_at = now()"
             "  WHERE w.id = $1 AND w.runtime_environment_id = $2 AND w.kind = 'MANUAL'"
             "  AND w.status = 'PENDING' RETURNING w.*)"
             " SELECT %s, true FROM u w"
             " UNION ALL SELECT %s, false FROM waitpoints w WHERE w.id = $1"
             "  AND w.runtime_environment_id = $2 AND w.kind = 'MANUAL'"
             "  AND NOT EXISTS (SELECT 1 FROM u)",
             wp_cols, wp_cols);
    rc = wp_one_exec(a, req, "wp.complete", true, sql, 4, params);
    free(output);
    return rc;
}

err_t wp_on_get(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    char env[STREAM_ENV_MAX + 1], ref[WP_FRIENDLY_MAX], id[WP_ID_MAX], kind[16], sql[2048];
    struct msg_wp_get m;
    err_t rc = msg_decode(&msg_wp_get_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    /* any_env: the gateway's token callback, which knows the waitpoint before its environment */
    if (!wp_ref_args(req, m.env_id, m.id, env, ref, id, m.any_env))
        return OK;
    if (!wp_cstr(m.kind, kind, sizeof(kind)) || (kind[0] && !wp_kind_valid(kind))) {
        (void)bus_reply_err(req, ERR_INVAL, "kind must be MANUAL, SESSION_STREAM or DURATION");
        return OK;
    }
    const char *params[] = {id, env[0] ? env : NULL, kind[0] ? kind : NULL};
    snprintf(sql, sizeof(sql),
             "SELECT %s FROM waitpoints w WHERE w.id = $1"
             " AND ($2::text IS NULL OR w.runtime_environment_id = $2)"
             " AND ($3::text IS NULL OR w.kind = $3)",
             wp_cols);
    return wp_one_exec(a, req, "wp.get", false, sql, 3, params);
}

err_t wp_on_block(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    char env[STREAM_ENV_MAX + 1], ref[WP_FRIENDLY_MAX], id[WP_ID_MAX], run[WP_RUN_MAX], sql[2048];
    struct msg_wp_block m;
    err_t rc = msg_decode(&msg_wp_block_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!wp_ref_args(req, m.env_id, m.id, env, ref, id, false))
        return OK;
    if (!wp_cstr(m.run, run, sizeof(run)) || !run[0]) {
        (void)bus_reply_err(req, ERR_INVAL, "run (a run id) is required");
        return OK;
    }
    const char *params[] = {id, env, run};
    snprintf(sql, sizeof(sql),
             "WITH w AS (SELECT * FROM waitpoints WHERE id = $1 AND runtime_environment_id = $2),"
             " ins AS (INSERT INTO task_run_waitpoints (run_id, waitpoint_id,"
             "  runtime_environment_id) SELECT $3, id, $2 FROM w ON CONFLICT DO NOTHING)"
             " SELECT %s FROM w",
             wp_cols);
    return wp_one_exec(a, req, "wp.block", false, sql, 3, params);
}

/* ---- wp.list ---- */

struct wp_list {
    struct bus_req *req;
    unsigned limit;
};

static void wp_on_listed(void *arg, err_t rc, const PGresult *res)
{
    struct wp_list *l = arg;
    struct mp_writer rows;
    if (rc != OK) {
        actor_reply_store_err(l->req, "wp.list", rc);
        free(l);
        return;
    }
    unsigned n = (unsigned)PQntuples(res);
    struct msg_wp_list_reply m = {.more = n > l->limit};
    if (m.more)
        n = l->limit;
    mp_writer_init(&rows);
    mp_put_array(&rows, n);
    for (unsigned i = 0; i < n; i++)
        wp_put_row(&rows, res, (int)i, 0);
    m.waitpoints = msg_raw_of(&rows);
    (void)bus_reply_msg(l->req, &msg_wp_list_reply_form, &m, &rows);
    mp_writer_fini(&rows);
    free(l);
}

err_t wp_on_list(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    struct msg_wp_list m;
    struct slice statuses[MSG_WP_STATUSES_MAX], tags[WP_TAGS_MAX];
    unsigned nst = 0, ntags = 0;
    char env[STREAM_ENV_MAX + 1], kind[16], idem[WP_IDEM_MAX + 1], after[WP_FRIENDLY_MAX];
    char after_id[WP_ID_MAX] = "", lim[16], sql[4096];
    const char *why = NULL;
    err_t rc = msg_decode(&msg_wp_list_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!wp_cstr(m.env_id, env, sizeof(env)))
        why = "env_id (a string) is required";
    else if (!wp_cstr(m.kind, kind, sizeof(kind)) || !wp_kind_valid(kind))
        why = "kind must be MANUAL, SESSION_STREAM or DURATION";
    else if (msg_raw_strs(m.statuses, statuses, MSG_WP_STATUSES_MAX, 1, MSG_WP_STATUS_MAX, &nst) !=
             OK)
        why = "statuses must be at most 3 of PENDING, COMPLETED, TIMED_OUT";
    else if (!wp_cstr(m.idempotency_key, idem, sizeof(idem)))
        why = "idempotency_key must be a string of at most 2048 bytes";
    else if (msg_raw_strs(m.tags, tags, WP_TAGS_MAX, 1, WP_TAG_MAX, &ntags) != OK)
        why = "tags must be at most 10 strings of 1-128 bytes";
    else if (!wp_cstr(m.after, after, sizeof(after)) ||
             (after[0] && !wp_ref_parse(after, after_id)))
        why = "after must be a waitpoint id";
    else if (m.limit > WP_LIST_MAX)
        why = "limit must be 1-100";
    for (unsigned i = 0; !why && i < nst; i++)
        if (!wp_status_valid(statuses[i]))
            why = "statuses must be at most 3 of PENDING, COMPLETED, TIMED_OUT";
    if (why) {
        (void)bus_reply_err(req, ERR_INVAL, why);
        return OK;
    }
    uint64_t limit = m.limit ? m.limit : 25;
    char *st = wp_pg_array(statuses, nst), *tg = wp_pg_array(tags, ntags);
    if (!st || !tg) {
        free(st);
        free(tg);
        (void)bus_reply_err(req, ERR_INVAL, "tags must not contain NUL");
        return OK;
    }
    snprintf(lim, sizeof(lim), "%" PRIu64, limit + 1);
    const char *params[] = {env, kind, st, idem[0] ? idem : NULL, tg, after_id[0] ? after_id : NULL,
                            lim};
    snprintf(sql, sizeof(sql),
             "SELECT %s FROM waitpoints w WHERE w.runtime_environment_id = $1 AND w.kind = $2"
             " AND (cardinality($3::text[]) = 0 OR w.status = ANY($3::text[]))"
             " AND ($4::text IS NULL OR w.idempotency_key = $4)"
             " AND (cardinality($5::text[]) = 0 OR w.tags && $5::text[])"
             " AND ($6::text IS NULL OR w.id < $6) ORDER BY w.id DESC LIMIT $7::integer",
             wp_cols);
    struct wp_list *l = xcalloc(1, sizeof(*l));
    l->req = req;
    l->limit = (unsigned)limit;
    rc = db_pg_async_exec(wp_of(a)->pg, sql, 7, params, wp_on_listed, l);
    free(st);
    free(tg);
    if (rc != OK)
        free(l);
    return rc;
}
