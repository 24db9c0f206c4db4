/*
 * drain.c - how pending waitpoints complete without a request: the drain
 * (a stream.record event on a channel with waiters), the reconciliation
 * sweep (a drain lost to a crash or a dropped event), the timer (due
 * timeouts and durations), and the run.wake that follows every completion.
 *
 * The drain is a latency path: the stream-broker publishes each appended
 * record on the channel's topic, and this process subscribes to the topics
 * of channels it knows waiters of (registered here, or seen by the sweep).
 * The sweep is the guarantee: every TETHER_WP_SWEEP_INTERVAL it reads the
 * pending session-channel waitpoints from PostgreSQL and each one's channel
 * from its cursor (stream.read), completing those with a record. The timer
 * polls the due-time index every TETHER_WP_TIMER_TICK. All three complete
 * with UPDATE ... WHERE status = 'PENDING', so instances never double-fire.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "msg.h"
#include "msg_raw.h"
#include "msg_run.h"
#include "msg_stream.h"
#include "msg_wp.h"
#include "pmetrics.h"
#include "wp.h"

/* ---- Redis: the §12 registration (env-scoped key) ---- */

static const char wp_register_lua[] =
    "redis.call('SADD', KEYS[1], ARGV[1]) "
    "local pttl = redis.call('PTTL', KEYS[1]) "
    "local ttl = tonumber(ARGV[2]) "
    "if pttl < 0 or ttl > pttl then redis.call('PEXPIRE', KEYS[1], ttl) end "
    "return 1";

static void wp_redis_key(char *out, size_t cap, const char *env, const char *key, const char *io)
{
    snprintf(out, cap, "tr:ssw:%s:%s:%s", env, key, io);
}

static void wp_on_redis(void *arg, err_t rc, const redisReply *reply)
{
    (void)reply;
    /* §12: Redis errors are logged and swallowed (PostgreSQL holds the truth) */
    if (rc != OK)
        LOG_WARN("wp.redis_failed", "a waitpoint cache command failed (%s): %s", (const char *)arg,
                 err_str(rc));
}

void wp_redis_register(struct wp *wp, const char *env, const char *key, const char *io,
                       const char *id, uint64_t ttl_ms)
{
    char k[STREAM_NAME_MAX], ttl[24];
    wp_redis_key(k, sizeof(k), env, key, io);
    snprintf(ttl, sizeof(ttl), "%" PRIu64, ttl_ms ? ttl_ms : 1);
    const char *argv[] = {"EVAL", wp_register_lua, "1", k, id, ttl};
    if (db_redis_async_cmd(wp->redis, 6, argv, NULL, wp_on_redis, "register") != OK)
        LOG_WARN("wp.redis_failed", "could not register a waitpoint in Redis");
}

void wp_redis_remove(struct wp *wp, const char *env, const char *key, const char *io,
                     const char *id)
{
    char k[STREAM_NAME_MAX];
    wp_redis_key(k, sizeof(k), env, key, io);
    const char *argv[] = {"SREM", k, id};
    if (db_redis_async_cmd(wp->redis, 3, argv, NULL, wp_on_redis, "remove") != OK)
        LOG_WARN("wp.redis_failed", "could not remove a waitpoint from Redis");
}

static void wp_redis_drain(struct wp *wp, const char *env, const char *key, const char *io)
{
    char k[STREAM_NAME_MAX];
    wp_redis_key(k, sizeof(k), env, key, io);
    /* the members are not needed: the channel's rows in PostgreSQL name the waiters */
    const char *argv[] = {"DEL", k};
    if (db_redis_async_cmd(wp->redis, 2, argv, NULL, wp_on_redis, "drain") != OK)
        LOG_WARN("wp.redis_failed", "could not drain a waitpoint set in Redis");
}

/* ---- run.wake ---- */

static void wp_on_woken(void *arg, err_t rc, const struct envelope *env)
{
    (void)arg;
    (void)env;
    /* the run-manager's sweep queues any waiting run whose wake is lost */
    if (rc != OK)
        LOG_WARN("wp.wake_failed", "run.wake failed: %s", err_str(rc));
}

void wp_wake(struct wp *wp, const char *const *ids, unsigned n)
{
    struct mp_writer list, w;
    if (n == 0 || !wp->rm)
        return;
    mp_writer_init(&list);
    mp_put_array(&list, n);
    for (unsigned i = 0; i < n; i++)
        mp_put_str(&list, ids[i]);
    struct msg_run_wake m = {{mp_writer_data(&list), mp_writer_len(&list)}};
    mp_writer_init(&w);
    msg_encode(&msg_run_wake_form, &w, &m);
    err_t rc = mp_writer_err(&list);
    if (rc == OK)
        rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_call(wp->rm, MSG_RUN_WAKE, mp_writer_data(&w), mp_writer_len(&w), NULL,
                      wp_on_woken, NULL);
    mp_writer_fini(&w);
    mp_writer_fini(&list);
    if (rc != OK)
        LOG_WARN("wp.wake_failed", "could not send run.wake: %s", err_str(rc));
}

/* One wp.completed.<env> event for ids (internal) of one environment. */
static void wp_publish_completed(struct wp *wp, const char *env, const char *const *ids, unsigned n)
{
    char topic[STREAM_ENV_MAX + 16];
    struct mp_writer arr, w;
    if (!wp->events || n == 0)
        return;
    snprintf(topic, sizeof(topic), "wp.completed.%s", env);
    mp_writer_init(&arr);
    mp_put_array(&arr, n);
    for (unsigned i = 0; i < n; i++) {
        char f[WP_FRIENDLY_MAX];
        snprintf(f, sizeof(f), "waitpoint_%s", ids[i]);
        mp_put_str(&arr, f);
    }
    struct msg_wp_completed m = {msg_raw_of(&arr)};
    mp_writer_init(&w);
    msg_encode(&msg_wp_completed_form, &w, &m);
    msg_raw_done(&arr, &w);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc =
            bus_publish(wp->events, topic, MSG_WP_COMPLETED, mp_writer_data(&w), mp_writer_len(&w));
    if (rc != OK)
        LOG_WARN("wp.publish_failed", "could not publish wp.completed for environment %s: %s", env,
                 err_str(rc));
    mp_writer_fini(&w);
}

void wp_wake_result(struct wp *wp, const PGresult *res, int col, int env_col, const char *env)
{
    const char *ids[WP_WAKE_MAX];
    int n = PQntuples(res);
    for (int i = 0; i < n;) {
        unsigned k = 0;
        for (; i < n && k < WP_WAKE_MAX; i++)
            ids[k++] = PQgetvalue(res, i, col);
        wp_wake(wp, ids, k);
    }
    /* one event per run of rows of one environment */
    for (int i = 0; i < n;) {
        const char *e = env_col >= 0 ? PQgetvalue(res, i, env_col) : env;
        unsigned k = 0;
        for (; i < n && k < WP_WAKE_MAX &&
               (env_col < 0 || strcmp(PQgetvalue(res, i, env_col), e) == 0);
             i++)
            ids[k++] = PQgetvalue(res, i, col);
        wp_publish_completed(wp, e, ids, k);
    }
}

/* ---- topics ---- */

static unsigned wp_topic_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % WP_TOPIC_BUCKETS;
}

static struct wp_topic *wp_topic_find(struct wp *wp, const char *name, struct wp_topic ***link)
{
    struct wp_topic **pp = &wp->topics[wp_topic_hash(name)];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0)
            break;
    }
    if (link)
        *link = pp;
    return *pp;
}

/* ---- follow leases: the broker publishes only followed streams (stream_follow.h) ---- */

static void wp_sweep_tick(struct loop *l, void *arg);

static void wp_follow_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct stream_follow *sf = arg;
    struct wp *wp = sf->owner;
    bool added = false, sweep = false;
    if (rc != OK && rc != ERR_PROTO) /* ERR_PROTO: an older broker, which publishes everything */
        LOG_WARN("wp.follow_failed",
                 "could not take follow leases on %u channels (%s); the sweep covers them", sf->n,
                 err_str(rc));
    for (uint32_t i = 0; rc == OK && i < sf->n && !sweep; i++)
        sweep = stream_follow_added(env, i, &added) == OK && added;
    /* a new lease: what was appended before it was not published, so sweep now rather than at
     * the next interval (one sweep at a time; it reads every pending channel) */
    if (sweep && !wp->sweeping && wp->sweep_timer) {
        loop_timer_cancel(wp->loop, wp->sweep_timer);
        wp->sweep_timer = loop_timer_add(wp->loop, 0, wp_sweep_tick, wp);
    }
    stream_follow_free(sf);
}

static void wp_follow_send(struct wp *wp, struct stream_follow *sf)
{
    if (stream_follow_send(sf, wp->broker, wp->holder, STREAM_FOLLOW_TTL_MS, wp_follow_on_reply) !=
        OK) {
        LOG_WARN("wp.follow_failed", "could not send a follow request for %u channels", sf->n);
        stream_follow_free(sf);
    }
}

static void wp_follow_renew(struct loop *l, void *arg)
{
    struct wp *wp = arg;
    struct stream_follow *sf = NULL;
    for (unsigned b = 0; b < WP_TOPIC_BUCKETS; b++)
        for (struct wp_topic *t = wp->topics[b]; t; t = t->next) {
            if (!sf)
                sf = stream_follow_new(wp);
            if (!stream_follow_add(sf, t->name, t->env, t->key, NULL, t->io)) {
                wp_follow_send(wp, sf);
                sf = stream_follow_new(wp);
                (void)stream_follow_add(sf, t->name, t->env, t->key, NULL, t->io);
            }
        }
    if (sf)
        wp_follow_send(wp, sf);
    wp->renew_timer = loop_timer_add(l, STREAM_FOLLOW_RENEW_MS, wp_follow_renew, wp);
}

void wp_topic_want(struct wp *wp, const char *env, const char *key, const char *io)
{
    char name[STREAM_NAME_MAX];
    struct wp_topic **link;
    if (stream_topic(name, sizeof(name), env, key, NULL, io) != OK)
        return;
    struct wp_topic *t = wp_topic_find(wp, name, &link);
    if (!t) {
        t = xcalloc(1, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s", name);
        snprintf(t->env, sizeof(t->env), "%s", env);
        snprintf(t->key, sizeof(t->key), "%s", key);
        snprintf(t->io, sizeof(t->io), "%s", io);
        *link = t;
        wp->ntopics++;
        if (wp->sub && bus_sub_add(wp->sub, name) != OK)
            LOG_WARN("wp.subscribe_failed",
                     "cannot follow a channel's events; the sweep covers it");
        if (wp->sub) { /* its lease now; renewed with the others, let expire when dropped */
            struct stream_follow *sf = stream_follow_new(wp);
            (void)stream_follow_add(sf, t->name, t->env, t->key, NULL, t->io);
            wp_follow_send(wp, sf);
        }
    }
    t->gen++;
    t->seen = wp->sweep_gen;
}

static void wp_topic_drop(struct wp *wp, struct wp_topic *t)
{
    struct wp_topic **link;
    if (wp_topic_find(wp, t->name, &link) != t)
        return;
    *link = t->next;
    wp->ntopics--;
    if (wp->sub)
        (void)bus_sub_remove(wp->sub, t->name);
    free(t);
}

/* ---- the drain ---- */

struct wp_drain {
    struct wp *wp;
    char name[STREAM_NAME_MAX];
    uint64_t gen;
    const char *path; /* "drain" | "sweep" */
    char env[STREAM_ENV_MAX + 1];
};

static void wp_on_drained(void *arg, err_t rc, const PGresult *res)
{
    struct wp_drain *d = arg;
    struct wp *wp = d->wp;
    if (rc != OK) {
        LOG_WARN("wp.drain_failed", "could not complete a channel's waiters (%s): %s", d->path,
                 err_str(rc));
        free(d);
        return;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        LOG_INFO("wp.completed", "waitpoint_%s completed by the %s", PQgetvalue(res, i, 0),
                 d->path);
    if (strcmp(d->path, "drain") == 0)
        wp->drained += (uint64_t)n;
    else
        wp->swept += (uint64_t)n;
    wp_wake_result(wp, res, 0, -1, d->env);
    /* nobody registered meanwhile: the waiters this process knew of are done */
    struct wp_topic *t = wp_topic_find(wp, d->name, NULL);
    if (t && t->gen == d->gen && strcmp(d->path, "drain") == 0)
        wp_topic_drop(wp, t);
    free(d);
}

/*
 * Completes the pending waiters of a channel whose cursor is at or before seq with body's
 * envelope data. from_min bounds the rows (the sweep completes only those it read for).
 */
static void wp_complete_channel(struct wp *wp, const char *env, const char *key, const char *io,
                                uint64_t seq, uint64_t from_min, struct slice body,
                                const char *path)
{
    char s[24], f[24], name[STREAM_NAME_MAX];
    char *out = wp_envelope_data(body.p, body.n);
    if (!out || stream_topic(name, sizeof(name), env, key, NULL, io) != OK) {
        free(out);
        return;
    }
    snprintf(s, sizeof(s), "%" PRIu64, seq);
    snprintf(f, sizeof(f), "%" PRIu64, from_min);
    struct wp_drain *d = xcalloc(1, sizeof(*d));
    d->wp = wp;
    d->path = path;
    snprintf(d->name, sizeof(d->name), "%s", name);
    snprintf(d->env, sizeof(d->env), "%s", env);
    struct wp_topic *t = wp_topic_find(wp, name, NULL);
    d->gen = t ? t->gen : 0;
    const char *params[] = {env, io, key, s, out, f};
    err_t rc = db_pg_async_exec(
        wp->pg,
        "UPDATE waitpoints SET status = 'COMPLETED', output = $5, completed_at = now()"
        " WHERE runtime_environment_id = $1 AND stream_io = $2 AND stream_key = $3"
        " AND kind = 'SESSION_STREAM' AND status = 'PENDING'"
        " AND from_seq <= $4::bigint AND from_seq >= $6::bigint RETURNING id",
        6, params, wp_on_drained, d);
    free(out);
    if (rc != OK) {
        LOG_WARN("wp.drain_failed", "could not complete a channel's waiters: %s", err_str(rc));
        free(d);
    }
}

static bool wp_record_fields(struct slice rec, uint64_t *seq, struct slice *body)
{
    struct mp_reader r;
    return mp_map_find(rec.p, rec.n, "seq", &r) == OK && mp_read_uint(&r, seq) == OK &&
           mp_map_find(rec.p, rec.n, "body", &r) == OK && mp_read_bin(&r, body) == OK;
}

/* A string of an event as a C string in out (cap bytes); false when it holds a NUL. */
static bool wp_event_str(struct slice s, char *out, size_t cap)
{
    return !memchr(s.p, '\0', s.n) && slice_copy(s, out, cap) == OK;
}

static void wp_on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct wp *wp = arg;
    char e[STREAM_ENV_MAX + 1], key[STREAM_KEY_MAX + 1], io[4];
    struct msg_stream_record ev;
    struct slice body;
    uint64_t seq;
    (void)topic;
    if (env->type != MSG_STREAM_RECORD)
        return;
    if (msg_decode(&msg_stream_record_form, env->body.p, env->body.n, &ev) != OK ||
        !wp_event_str(ev.env, e, sizeof(e)) || !wp_event_str(ev.key, key, sizeof(key)) ||
        !wp_event_str(ev.io, io, sizeof(io)) || !wp_record_fields(ev.record, &seq, &body))
        return;
    wp_redis_drain(wp, e, key, io);
    wp_complete_channel(wp, e, key, io, seq, 0, body, "drain");
}

/* ---- the reconciliation sweep ---- */

struct wp_sweep_read {
    struct wp *wp;
    char env[STREAM_ENV_MAX + 1];
    char key[STREAM_KEY_MAX + 1];
    char io[4];
    uint64_t from;
};

static unsigned wp_sweep_pending; /* reads under way in this sweep */

static void wp_sweep_end(struct wp *wp);

/* The first record of a stream.read reply; false when there is none (or the reply is malformed). */
static bool wp_read_first(const struct envelope *env, struct slice *rec)
{
    struct msg_stream_range m;
    struct mp_reader v;
    uint32_t n;
    return env && msg_decode(&msg_stream_range_form, env->body.p, env->body.n, &m) == OK &&
           msg_stream_items(m.records, &v, &n) == OK && n > 0 && mp_skip(&v, rec) == OK;
}

static void wp_on_sweep_read(void *arg, err_t rc, const struct envelope *env)
{
    struct wp_sweep_read *s = arg;
    struct slice rec, body;
    uint64_t seq;
    if (rc == OK && wp_read_first(env, &rec) && wp_record_fields(rec, &seq, &body))
        wp_complete_channel(s->wp, s->env, s->key, s->io, seq, s->from, body, "sweep");
    else if (rc != OK)
        LOG_DEBUG("wp.sweep_read_failed", "stream.read for the sweep failed: %s", err_str(rc));
    struct wp *wp = s->wp;
    free(s);
    if (--wp_sweep_pending == 0)
        wp_sweep_end(wp);
}

static void wp_on_sweep_rows(void *arg, err_t rc, const PGresult *res)
{
    struct wp *wp = arg;
    struct mp_writer w;
    if (rc != OK) {
        LOG_WARN("wp.sweep_failed", "could not read pending waitpoints: %s", err_str(rc));
        wp_sweep_end(wp);
        return;
    }
    wp->sweep_gen++;
    int n = PQntuples(res);
    wp_sweep_pending = 1; /* held until every read is sent */
    mp_writer_init(&w);
    for (int i = 0; i < n; i++) {
        const char *env = PQgetvalue(res, i, 0), *io = PQgetvalue(res, i, 1),
                   *key = PQgetvalue(res, i, 2);
        uint64_t from = strtoull(PQgetvalue(res, i, 3), NULL, 10);
        if (strlen(env) > STREAM_ENV_MAX || strlen(key) > STREAM_KEY_MAX || strlen(io) > 3)
            continue;
        /* a channel with waiters is followed from now on (waiters of another instance too) */
        wp_topic_want(wp, env, key, io);
        struct wp_sweep_read *s = xcalloc(1, sizeof(*s));
        s->wp = wp;
        snprintf(s->env, sizeof(s->env), "%s", env);
        snprintf(s->key, sizeof(s->key), "%s", key);
        snprintf(s->io, sizeof(s->io), "%s", io);
        s->from = from;
        struct msg_stream_read m = {msg_stream_name_of(env, key, NULL, io), from, 1};
        mp_writer_reset(&w);
        msg_encode(&msg_stream_read_form, &w, &m);
        rc = mp_writer_err(&w);
        if (rc == OK)
            rc = bus_call(wp->broker, MSG_STREAM_READ, mp_writer_data(&w), mp_writer_len(&w), NULL,
                          wp_on_sweep_read, s);
        if (rc != OK) {
            free(s);
            continue;
        }
        wp_sweep_pending++;
    }
    mp_writer_fini(&w);
    /* channels no pending waiter needs any more are let go */
    for (unsigned b = 0; b < WP_TOPIC_BUCKETS; b++) {
        for (struct wp_topic *t = wp->topics[b], *next; t; t = next) {
            next = t->next;
            if (t->seen + 1 < wp->sweep_gen)
                wp_topic_drop(wp, t);
        }
    }
    if (--wp_sweep_pending == 0)
        wp_sweep_end(wp);
}

static void wp_sweep_end(struct wp *wp)
{
    wp->sweeping = false;
    wp->sweep_timer =
        loop_timer_add(wp->loop, (uint64_t)wp->cfg.sweep_interval_ms, wp_sweep_tick, wp);
}

/* tether_waitpoints_pending by kind (pmetrics.h); kinds with none left are set to 0. */
static void wp_on_pending_count(void *arg, err_t rc, const PGresult *res)
{
    static const char *const kinds[] = {"MANUAL", "DURATION", "SESSION_STREAM"};
    int64_t n[sizeof(kinds) / sizeof(kinds[0])] = {0};
    (void)arg;
    if (rc != OK)
        return; /* the figure stays as last counted */
    for (int i = 0; i < PQntuples(res); i++)
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
            if (strcmp(PQgetvalue(res, i, 0), kinds[k]) == 0)
                n[k] = strtoll(PQgetvalue(res, i, 1), NULL, 10);
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        pm_set(pm_seriesf(PM_WAITPOINTS_PENDING, "kind=\"%s\"", kinds[k]), n[k]);
}

static void wp_sweep_tick(struct loop *l, void *arg)
{
    struct wp *wp = arg;
    char lim[16];
    (void)l;
    wp->sweep_timer = 0;
    if (wp->sweeping)
        return;
    wp->sweeping = true;
    snprintf(lim, sizeof(lim), "%lld", wp->cfg.batch);
    const char *params[] = {lim};
    /* one read per (channel, cursor): waiters sharing both share the read */
    err_t rc = db_pg_async_exec(
        wp->pg,
        "SELECT runtime_environment_id, stream_io, stream_key, from_seq FROM waitpoints"
        " WHERE status = 'PENDING' AND kind = 'SESSION_STREAM'"
        " GROUP BY runtime_environment_id, stream_io, stream_key, from_seq"
        " ORDER BY min(created_at) LIMIT $1::integer",
        1, params, wp_on_sweep_rows, wp);
    if (rc != OK) {
        LOG_DEBUG("wp.sweep_failed", "could not read pending waitpoints: %s", err_str(rc));
        wp_sweep_end(wp);
        return;
    }
    (void)db_pg_async_exec(wp->pg,
                           "SELECT kind, count(*) FROM waitpoints WHERE status = 'PENDING'"
                           " GROUP BY kind",
                           0, NULL, wp_on_pending_count, wp);
}

/* ---- the timer: due timeouts and durations ---- */

static void wp_timer_tick(struct loop *l, void *arg);

static void wp_timer_arm(struct wp *wp, uint64_t delay)
{
    wp->tick_timer = loop_timer_add(wp->loop, delay, wp_timer_tick, wp);
}

static void wp_on_fired(void *arg, err_t rc, const PGresult *res)
{
    struct wp *wp = arg;
    wp->firing = false;
    if (rc != OK) {
        LOG_WARN("wp.timer_failed", "could not fire due waitpoints: %s", err_str(rc));
        wp_timer_arm(wp, (uint64_t)wp->cfg.timer_tick_ms);
        return;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        LOG_INFO(strcmp(PQgetvalue(res, i, 1), "TIMED_OUT") == 0 ? "wp.timed_out" : "wp.completed",
                 "waitpoint_%s %s by the timer", PQgetvalue(res, i, 0),
                 strcmp(PQgetvalue(res, i, 1), "TIMED_OUT") == 0 ? "timed out" : "completed");
    wp->fired += (uint64_t)n;
    wp_wake_result(wp, res, 0, 2, NULL);
    /* a full batch: more are due, go again at once */
    wp_timer_arm(wp, n >= wp->cfg.batch ? 0 : (uint64_t)wp->cfg.timer_tick_ms);
}

static void wp_timer_tick(struct loop *l, void *arg)
{
    struct wp *wp = arg;
    char lim[16];
    (void)l;
    wp->tick_timer = 0;
    if (wp->firing)
        return;
    wp->firing = true;
    snprintf(lim, sizeof(lim), "%lld", wp->cfg.batch);
    const char *params[] = {lim};
    /* the output of a timeout is the SDK's timeout error (core: isWaitpointOutputTimeout) */
    err_t rc = db_pg_async_exec(
        wp->pg,
        "UPDATE waitpoints w SET"
        "  status = CASE WHEN w.kind = 'DURATION' THEN 'COMPLETED' ELSE 'TIMED_OUT' END,"
        "  output_is_error = w.kind <> 'DURATION',"
        "  output = CASE WHEN w.kind = 'DURATION' THEN NULL ELSE json_build_object("
        "   'code', 'TRIGGER_WAITPOINT_TIMEOUT', 'message', 'Waitpoint timed out at ' ||"
        "   to_char(w.timeout_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))::text"
        "  END, completed_at = now()"
        " WHERE w.id IN (SELECT id FROM waitpoints WHERE status = 'PENDING'"
        "  AND timeout_at IS NOT NULL AND timeout_at <= now() ORDER BY timeout_at"
        "  LIMIT $1::integer FOR UPDATE SKIP LOCKED) AND w.status = 'PENDING'"
        " RETURNING w.id, w.status, w.runtime_environment_id",
        1, params, wp_on_fired, wp);
    if (rc != OK) {
        wp->firing = false;
        wp_timer_arm(wp, (uint64_t)wp->cfg.timer_tick_ms);
    }
}

/* ---- start ---- */

err_t wp_drain_start(struct wp *wp)
{
    char urls[BUS_URL_MAX * 8];
    bus_actor_events_urls(wp->a->bus, "stream-broker", urls, sizeof(urls));
    if (!urls[0] || bus_sub_open(wp->a->bus, urls, wp_on_event, wp, &wp->sub) != OK) {
        LOG_WARN("wp.events", "cannot follow the stream-broker's events; only the sweep drains");
        wp->sub = NULL;
    }
    if (stream_follow_holder(wp->holder, sizeof(wp->holder), "waitpoint-registry") != OK)
        return ERR_UNAVAIL;
    wp->renew_timer = loop_timer_add(wp->loop, STREAM_FOLLOW_RENEW_MS, wp_follow_renew, wp);
    /* the first sweep at once: it rebuilds the subscriptions of waiters made before a restart */
    wp->sweep_timer = loop_timer_add(wp->loop, 0, wp_sweep_tick, wp);
    wp_timer_arm(wp, 0);
    if (!wp->sweep_timer || !wp->tick_timer)
        return ERR_NOMEM;
    return OK;
}
