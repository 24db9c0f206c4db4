/*
 * h_create.c - wp.create: tokens, session-channel waits and durations.
 *
 * The handler decodes and checks its body (proto/msg_wp.h), then runs its
 * statements on the non-blocking pool and replies from the last callback.
 * A session-channel wait, when not cached, also registers the waitpoint in
 * Redis (§12), subscribes to the channel's events and race-checks the
 * channel from from_seq (§5.10) before it answers: a record that landed
 * before the wait completes it at once.
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
#include "msg_stream.h"
#include "msg_wp.h"
#include "wp.h"

struct wp_create {
    struct wp *wp;
    struct bus_req *req;
    char id[WP_ID_MAX];
    char env[STREAM_ENV_MAX + 1];
    char kind[16];
    char run[WP_RUN_MAX];
    char key[STREAM_KEY_MAX + 1];
    char io[4];
    char idem[WP_IDEM_MAX + 1];
    char from_seq[24], timeout_at[24], idem_ttl[24];
    uint64_t timeout_at_ms, from;
    char *tags; /* array literal */
    unsigned attempts;
    bool cached;
    PGresult *row; /* the waitpoint as inserted or found (copied: results die with callbacks) */
};

static void wp_create_free(struct wp_create *c)
{
    if (c->row)
        PQclear(c->row);
    free(c->tags);
    free(c);
}

static void wp_create_fail(struct wp_create *c, err_t rc)
{
    actor_reply_store_err(c->req, "wp.create", rc);
    wp_create_free(c);
}

static void wp_create_reply(struct wp_create *c)
{
    struct msg_wp_reply m = {.is_cached = c->cached, .is_cached_given = true};
    wp_reply_row(c->req, c->row, 0, &m);
    wp_create_free(c);
}

static void wp_create_insert(struct wp_create *c);

static void wp_on_racecheck_done(void *arg, err_t rc, const PGresult *res)
{
    struct wp_create *c = arg;
    if (rc == OK && PQntuples(res) == 1) {
        LOG_INFO("wp.completed", "waitpoint_%s completed by the race-check", c->id);
        wp_redis_remove(c->wp, c->env, c->key, c->io, c->id);
        PGresult *copy = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
        if (copy) {
            PQclear(c->row);
            c->row = copy;
        }
        wp_wake_result(c->wp, res, WP_NCOLS - 1, WP_NCOLS - 2, NULL);
    } else if (rc != OK) {
        LOG_WARN("wp.racecheck_failed", "could not complete waitpoint_%s: %s", c->id, err_str(rc));
    }
    wp_create_reply(c);
}

/* The race-check's read: a record at or after from_seq completes the waitpoint now. */
static void wp_on_racecheck_read(void *arg, err_t rc, const struct envelope *env)
{
    struct wp_create *c = arg;
    struct msg_stream_range m;
    struct mp_reader v, r;
    uint32_t n = 0;
    struct slice body = SLICE_NULL;
    uint64_t seq = 0;
    if (rc != OK || !env) {
        /* §5.10: race-check errors are logged, not surfaced; the sweep tries again */
        LOG_WARN("wp.racecheck_failed", "could not read the channel of waitpoint_%s: %s", c->id,
                 err_str(rc));
        wp_create_reply(c);
        return;
    }
    if (msg_decode(&msg_stream_range_form, env->body.p, env->body.n, &m) != OK ||
        msg_stream_items(m.records, &v, &n) != OK || n == 0) {
        wp_create_reply(c);
        return;
    }
    struct slice rec;
    if (mp_skip(&v, &rec) != OK || mp_map_find(rec.p, rec.n, "body", &r) != OK ||
        mp_read_bin(&r, &body) != OK || mp_map_find(rec.p, rec.n, "seq", &r) != OK ||
        mp_read_uint(&r, &seq) != OK) {
        LOG_WARN("wp.racecheck_failed", "a malformed stream.read reply for waitpoint_%s", c->id);
        wp_create_reply(c);
        return;
    }
    char *out = wp_envelope_data(body.p, body.n);
    if (!out) {
        wp_create_reply(c);
        return;
    }
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "UPDATE waitpoints w SET status = 'COMPLETED', output = $2, completed_at = now()"
             " WHERE w.id = $1 AND w.status = 'PENDING' RETURNING %s",
             wp_cols);
    const char *params[] = {c->id, out};
    rc = db_pg_async_exec(c->wp->pg, sql, 2, params, wp_on_racecheck_done, c);
    free(out);
    if (rc != OK) {
        LOG_WARN("wp.racecheck_failed", "could not complete waitpoint_%s: %s", c->id, err_str(rc));
        wp_create_reply(c);
    }
}

static void wp_create_racecheck(struct wp_create *c)
{
    struct mp_writer w;
    uint64_t ttl = WP_REDIS_DEFAULT_TTL_MS, now = clock_wall_ms();
    if (c->timeout_at_ms > now)
        ttl = c->timeout_at_ms - now;
    wp_redis_register(c->wp, c->env, c->key, c->io, c->id, ttl);
    /* subscribed before the read: a record is either read now or published to us later */
    wp_topic_want(c->wp, c->env, c->key, c->io);
    struct msg_stream_read m = {msg_stream_name_of(c->env, c->key, NULL, c->io), c->from, 1};
    mp_writer_init(&w);
    msg_encode(&msg_stream_read_form, &w, &m);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_call(c->wp->broker, MSG_STREAM_READ, mp_writer_data(&w), mp_writer_len(&w), NULL,
                      wp_on_racecheck_read, c);
    mp_writer_fini(&w);
    if (rc != OK) {
        LOG_WARN("wp.racecheck_failed", "could not read the channel of waitpoint_%s: %s", c->id,
                 err_str(rc));
        wp_create_reply(c);
    }
}

static void wp_on_inserted(void *arg, err_t rc, const PGresult *res)
{
    struct wp_create *c = arg;
    if (rc != OK) {
        wp_create_fail(c, rc);
        return;
    }
    if (PQntuples(res) != 1) {
        /* the key's row was committed after this statement's snapshot: read it again */
        if (++c->attempts < 3) {
            wp_create_insert(c);
            return;
        }
        (void)bus_reply_err(c->req, ERR_CONFLICT, "idempotency key in use; retry");
        wp_create_free(c);
        return;
    }
    c->cached = strcmp(PQgetvalue(res, 0, WP_NCOLS), "t") == 0;
    c->row = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    if (!c->row) {
        wp_create_fail(c, ERR_NOMEM);
        return;
    }
    if (!c->cached)
        LOG_INFO("wp.created", "waitpoint_%s (%s) created", c->id, c->kind);
    if (!c->cached && strcmp(c->kind, "SESSION_STREAM") == 0) {
        wp_create_racecheck(c);
        return;
    }
    wp_create_reply(c);
}

static void wp_create_insert(struct wp_create *c)
{
    char sql[4096];
    bool stream = strcmp(c->kind, "SESSION_STREAM") == 0;
    const char *params[] = {
        c->id,
        c->env,
        c->kind,
        c->idem[0] ? c->idem : NULL,
        c->idem_ttl,
        c->tags,
        c->timeout_at,
        c->run[0] ? c->run : NULL,
        stream ? c->key : NULL,
        stream ? c->io : NULL,
        stream ? c->from_seq : NULL,
    };
    snprintf(sql, sizeof(sql),
             "WITH ins AS (INSERT INTO waitpoints AS w (id, friendly_id, runtime_environment_id,"
             "  kind, idempotency_key, idempotency_key_expires_at, tags, timeout_at, run_id,"
             "  stream_key, stream_io, from_seq)"
             " VALUES ($1, 'waitpoint_' || $1, $2, $3, $4,"
             "  CASE WHEN $4::text IS NOT NULL AND $5::bigint > 0"
             "   THEN now() + make_interval(secs => $5::bigint / 1000.0) END,"
             "  $6::text[], CASE WHEN $7::bigint > 0 THEN to_timestamp($7::bigint / 1000.0) END,"
             "  $8, $9, $10, $11::bigint)"
             " ON CONFLICT (runtime_environment_id, idempotency_key)"
             "  WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING w.*)"
             " SELECT %s, false FROM ins w"
             " UNION ALL SELECT %s, true FROM waitpoints w WHERE w.runtime_environment_id = $2"
             "  AND w.idempotency_key = $4 AND NOT EXISTS (SELECT 1 FROM ins)",
             wp_cols, wp_cols);
    err_t rc = db_pg_async_exec(c->wp->pg, sql, 11, params, wp_on_inserted, c);
    if (rc != OK)
        wp_create_fail(c, rc);
}

/* An expired idempotency key names nothing: it is cleared, and the create makes a new one. */
static void wp_on_idem_cleared(void *arg, err_t rc, const PGresult *res)
{
    struct wp_create *c = arg;
    (void)res;
    if (rc != OK) {
        wp_create_fail(c, rc);
        return;
    }
    wp_create_insert(c);
}

err_t wp_on_create(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    struct msg_wp_create m;
    struct slice tags[WP_TAGS_MAX];
    unsigned ntags = 0;
    err_t rc = msg_decode(&msg_wp_create_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    struct wp_create *c = xcalloc(1, sizeof(*c));
    c->wp = wp_of(a);
    c->req = req;
    c->timeout_at_ms = m.timeout_at_ms;
    c->from = m.from_seq;
    const char *why = NULL;
    if (!wp_cstr(m.env_id, c->env, sizeof(c->env)))
        why = "env_id (a string) is required";
    else if (!wp_cstr(m.kind, c->kind, sizeof(c->kind)) || !wp_kind_valid(c->kind))
        why = "kind must be MANUAL, SESSION_STREAM or DURATION";
    else if (!wp_cstr(m.run, c->run, sizeof(c->run)))
        why = "run must be a run id";
    else if (!wp_cstr(m.idempotency_key, c->idem, sizeof(c->idem)))
        why = "idempotency_key must be a string of at most 2048 bytes";
    else if (m.idempotency_ttl_ms > (1ull << 50))
        why = "idempotency_ttl_ms must be an unsigned integer";
    else if (c->timeout_at_ms > (1ull << 50))
        why = "timeout_at_ms must be an unsigned integer";
    else if (msg_raw_strs(m.tags, tags, WP_TAGS_MAX, 1, WP_TAG_MAX, &ntags) != OK)
        why = "tags must be at most 10 strings of 1-128 bytes";
    else if (!(c->tags = wp_pg_array(tags, ntags)))
        why = "tags must not contain NUL";
    if (!why && strcmp(c->kind, "SESSION_STREAM") == 0) {
        if (!wp_cstr(m.key, c->key, sizeof(c->key)) || !c->key[0] ||
            !wp_cstr(m.io, c->io, sizeof(c->io)) || !stream_io_valid(c->io))
            why = "key (1-1024 bytes) and io (in|out) are required";
        else if (c->from > (1ull << 62))
            why = "from_seq must be an unsigned integer";
    }
    if (!why && strcmp(c->kind, "DURATION") == 0 && c->timeout_at_ms == 0)
        why = "a DURATION waitpoint needs timeout_at_ms";
    if (why) {
        (void)bus_reply_err(req, ERR_INVAL, why);
        wp_create_free(c);
        return OK;
    }
    if (cuid_new(c->id) != OK) {
        (void)bus_reply_err(req, ERR_INTERNAL, "could not make an id");
        wp_create_free(c);
        return OK;
    }
    snprintf(c->from_seq, sizeof(c->from_seq), "%" PRIu64, c->from);
    snprintf(c->timeout_at, sizeof(c->timeout_at), "%" PRIu64, c->timeout_at_ms);
    snprintf(c->idem_ttl, sizeof(c->idem_ttl), "%" PRIu64, m.idempotency_ttl_ms);
    if (!c->idem[0]) {
        wp_create_insert(c);
        return OK;
    }
    const char *params[] = {c->env, c->idem};
    rc = db_pg_async_exec(c->wp->pg,
                          "UPDATE waitpoints SET idempotency_key = NULL"
                          " WHERE runtime_environment_id = $1 AND idempotency_key = $2"
                          " AND idempotency_key_expires_at <= now()",
                          2, params, wp_on_idem_cleared, c);
    if (rc != OK)
        wp_create_free(c);
    return rc;
}
