/*
 * h_wait.c - the registry's requests besides wp.create (h_create.c):
 * wp.complete, wp.get, wp.list and wp.block, and the readers of request
 * fields every handler uses.
 *
 * Each handler checks its body, then runs its statements on the
 * non-blocking pool and replies from the last callback.
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
#include "wp.h"

#define WP_NOT_FOUND "waitpoint not found"

/* ---- fields ---- */

static bool wp_find(struct slice body, const char *k, struct mp_reader *v)
{
    enum mp_type t;
    if (mp_map_find(body.p, body.n, k, v) != OK)
        return false;
    return mp_peek(v, &t) == OK && t != MP_NIL;
}

/* A string field copied into buf: "" when absent/nil; false when not a string or too long. */
bool wp_str(struct slice body, const char *k, char *buf, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    buf[0] = '\0';
    if (!wp_find(body, k, &v))
        return true;
    return mp_read_str(&v, &s) == OK && !memchr(s.p, '\0', s.n) && slice_copy(s, buf, cap) == OK;
}

bool wp_uint(struct slice body, const char *k, uint64_t *out)
{
    struct mp_reader v;
    *out = 0;
    if (!wp_find(body, k, &v))
        return true;
    return mp_read_uint(&v, out) == OK;
}

/* An array of strings (absent: none), at most max, each 1..item_max bytes without NUL. */
bool wp_strs(struct slice body, const char *k, struct slice *items, unsigned max,
             size_t item_max, unsigned *n)
{
    struct mp_reader v;
    uint32_t len;
    *n = 0;
    if (!wp_find(body, k, &v))
        return true;
    if (mp_read_array(&v, &len) != OK || len > max)
        return false;
    for (uint32_t i = 0; i < len; i++) {
        if (mp_read_str(&v, &items[i]) != OK || items[i].n == 0 || items[i].n > item_max ||
            memchr(items[i].p, '\0', items[i].n))
            return false;
    }
    *n = len;
    return true;
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

/* Replies {waitpoint: <row 0>, <flag>: value}. */
void wp_reply_row(struct bus_req *req, const PGresult *r, int col0, const char *flag,
                  bool value)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, flag ? 2 : 1);
    mp_put_str(&w, "waitpoint");
    wp_put_row(&w, r, 0, col0);
    if (flag)
        mp_put_kv_bool(&w, flag, value);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        (void)bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(req, rc, "could not encode the reply");
    mp_writer_fini(&w);
}

/* ---- wp.complete, wp.get, wp.block: one statement answering a waitpoint ---- */

struct wp_one {
    struct wp *wp;
    struct bus_req *req;
    const char *op;
    const char *flag; /* the reply's boolean, read from column WP_NCOLS; NULL: none */
    bool wake;        /* completed: tell the run-manager */
};

static void wp_on_one(void *arg, err_t rc, const PGresult *res)
{
    struct wp_one *o = arg;
    if (rc != OK) {
        actor_reply_store_err(o->req, o->op, rc);
    } else if (PQntuples(res) < 1) {
        (void)bus_reply_err(o->req, ERR_NOTFOUND, WP_NOT_FOUND);
    } else {
        bool v = o->flag && strcmp(PQgetvalue(res, 0, WP_NCOLS), "t") == 0;
        if (o->wake && v) {
            LOG_INFO("wp.completed", "%s completed", PQgetvalue(res, 0, 0));
            wp_wake_result(o->wp, res, WP_NCOLS - 1, WP_NCOLS - 2, NULL);
        }
        wp_reply_row(o->req, res, 0, o->flag, v);
    }
    free(o);
}

static void wp_one_exec(struct actor *a, struct bus_req *req, const char *op, const char *flag,
                        const char *sql, int n, const char *const *params)
{
    struct wp_one *o = xcalloc(1, sizeof(*o));
    o->wp = wp_of(a);
    o->req = req;
    o->op = op;
    o->flag = flag;
    o->wake = flag && strcmp(flag, "completed") == 0;
    err_t rc = db_pg_async_exec(o->wp->pg, sql, n, params, wp_on_one, o);
    if (rc != OK) {
        actor_reply_store_err(req, op, rc);
        free(o);
    }
}

/*
 * env_id and id (a friendly waitpoint id); replies itself and returns false when unusable.
 * any_env: env_id may be absent (env left empty).
 */
static bool wp_ref_args(struct bus_req *req, char *env, char *ref, char *id, bool any_env)
{
    struct slice body = bus_req_env(req)->body;
    if (!wp_str(body, "env_id", env, STREAM_ENV_MAX + 1) || (!env[0] && !any_env) ||
        !wp_str(body, "id", ref, WP_FRIENDLY_MAX)) {
        (void)bus_reply_err(req, ERR_INVAL, "env_id and id (strings) are required");
        return false;
    }
    if (!wp_ref_parse(ref, id)) {
        (void)bus_reply_err(req, ERR_NOTFOUND, WP_NOT_FOUND);
        return false;
    }
    return true;
}

void wp_on_complete(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body, out = SLICE_NULL;
    char env[STREAM_ENV_MAX + 1], ref[WP_FRIENDLY_MAX], id[WP_ID_MAX], type[128], sql[4096];
    struct mp_reader v;
    if (!wp_ref_args(req, env, ref, id, false))
        return;
    if (wp_find(body, "output", &v) &&
        (mp_read_str(&v, &out) != OK || out.n > WP_OUTPUT_MAX || memchr(out.p, '\0', out.n))) {
        (void)bus_reply_err(req, ERR_INVAL, "output must be text of at most 1 MiB");
        return;
    }
    if (!wp_str(body, "output_type", type, sizeof(type))) {
        (void)bus_reply_err(req, ERR_INVAL, "output_type must be a short string");
        return;
    }
    char *output = out.p ? xstrndup(out.p, out.n) : NULL;
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
    wp_one_exec(a, req, "wp.complete", "completed", sql, 4, params);
    free(output);
}

void wp_on_get(struct actor *a, struct bus_req *req)
{
    char env[STREAM_ENV_MAX + 1], ref[WP_FRIENDLY_MAX], id[WP_ID_MAX], kind[16], sql[2048];
    struct mp_reader v;
    bool any_env = false;
    /* any_env: the gateway's token callback, which knows the waitpoint before its environment */
    if (wp_find(bus_req_env(req)->body, "any_env", &v))
        (void)mp_read_bool(&v, &any_env);
    if (!wp_ref_args(req, env, ref, id, any_env))
        return;
    if (!wp_str(bus_req_env(req)->body, "kind", kind, sizeof(kind)) ||
        (kind[0] && !wp_kind_valid(kind))) {
        (void)bus_reply_err(req, ERR_INVAL, "kind must be MANUAL, SESSION_STREAM or DURATION");
        return;
    }
    const char *params[] = {id, env[0] ? env : NULL, kind[0] ? kind : NULL};
    snprintf(sql, sizeof(sql),
             "SELECT %s FROM waitpoints w WHERE w.id = $1"
             " AND ($2::text IS NULL OR w.runtime_environment_id = $2)"
             " AND ($3::text IS NULL OR w.kind = $3)",
             wp_cols);
    wp_one_exec(a, req, "wp.get", NULL, sql, 3, params);
}

void wp_on_block(struct actor *a, struct bus_req *req)
{
    char env[STREAM_ENV_MAX + 1], ref[WP_FRIENDLY_MAX], id[WP_ID_MAX], run[WP_RUN_MAX], sql[2048];
    if (!wp_ref_args(req, env, ref, id, false))
        return;
    if (!wp_str(bus_req_env(req)->body, "run", run, sizeof(run)) || !run[0]) {
        (void)bus_reply_err(req, ERR_INVAL, "run (a run id) is required");
        return;
    }
    const char *params[] = {id, env, run};
    snprintf(sql, sizeof(sql),
             "WITH w AS (SELECT * FROM waitpoints WHERE id = $1 AND runtime_environment_id = $2),"
             " ins AS (INSERT INTO task_run_waitpoints (run_id, waitpoint_id,"
             "  runtime_environment_id) SELECT $3, id, $2 FROM w ON CONFLICT DO NOTHING)"
             " SELECT %s FROM w",
             wp_cols);
    wp_one_exec(a, req, "wp.block", NULL, sql, 3, params);
}

/* ---- wp.list ---- */

struct wp_list {
    struct bus_req *req;
    unsigned limit;
};

static void wp_on_listed(void *arg, err_t rc, const PGresult *res)
{
    struct wp_list *l = arg;
    struct mp_writer w;
    if (rc != OK) {
        actor_reply_store_err(l->req, "wp.list", rc);
        free(l);
        return;
    }
    unsigned n = (unsigned)PQntuples(res);
    bool more = n > l->limit;
    if (more)
        n = l->limit;
    mp_writer_init(&w);
    mp_put_map(&w, 2);
    mp_put_str(&w, "waitpoints");
    mp_put_array(&w, n);
    for (unsigned i = 0; i < n; i++)
        wp_put_row(&w, res, (int)i, 0);
    mp_put_kv_bool(&w, "more", more);
    rc = mp_writer_err(&w);
    if (rc == OK)
        (void)bus_reply(l->req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(l->req, rc, "could not encode the reply");
    mp_writer_fini(&w);
    free(l);
}

void wp_on_list(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body;
    struct slice statuses[3], tags[WP_TAGS_MAX];
    unsigned nst = 0, ntags = 0;
    char env[STREAM_ENV_MAX + 1], kind[16], idem[WP_IDEM_MAX + 1], after[WP_FRIENDLY_MAX];
    char after_id[WP_ID_MAX] = "", lim[16], sql[4096];
    uint64_t limit = 0;
    const char *why = NULL;
    if (!wp_str(body, "env_id", env, sizeof(env)) || !env[0])
        why = "env_id (a string) is required";
    else if (!wp_str(body, "kind", kind, sizeof(kind)) || !wp_kind_valid(kind))
        why = "kind must be MANUAL, SESSION_STREAM or DURATION";
    else if (!wp_strs(body, "statuses", statuses, 3, 16, &nst))
        why = "statuses must be at most 3 of PENDING, COMPLETED, TIMED_OUT";
    else if (!wp_str(body, "idempotency_key", idem, sizeof(idem)))
        why = "idempotency_key must be a string of at most 2048 bytes";
    else if (!wp_strs(body, "tags", tags, WP_TAGS_MAX, WP_TAG_MAX, &ntags))
        why = "tags must be at most 10 strings of 1-128 bytes";
    else if (!wp_str(body, "after", after, sizeof(after)) ||
             (after[0] && !wp_ref_parse(after, after_id)))
        why = "after must be a waitpoint id";
    else if (!wp_uint(body, "limit", &limit) || limit > WP_LIST_MAX)
        why = "limit must be 1-100";
    for (unsigned i = 0; !why && i < nst; i++)
        if (!wp_status_valid(statuses[i]))
            why = "statuses must be at most 3 of PENDING, COMPLETED, TIMED_OUT";
    if (why) {
        (void)bus_reply_err(req, ERR_INVAL, why);
        return;
    }
    if (limit == 0)
        limit = 25;
    char *st = wp_pg_array(statuses, nst), *tg = wp_pg_array(tags, ntags);
    if (!st || !tg) {
        free(st);
        free(tg);
        (void)bus_reply_err(req, ERR_INVAL, "tags must not contain NUL");
        return;
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
    err_t rc = db_pg_async_exec(wp_of(a)->pg, sql, 7, params, wp_on_listed, l);
    free(st);
    free(tg);
    if (rc != OK) {
        actor_reply_store_err(req, "wp.list", rc);
        free(l);
    }
}
