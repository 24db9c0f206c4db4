/*
 * h_waitpoints.c - runs that wait on waitpoints (docs/waitpoint-registry.md,
 * docs/workers.md), and what every waitpoint route shares (waitpoints_int.h):
 *
 *   POST /api/v1/runs/:run/session-streams/wait      §5.10: wait on a session channel
 *   POST /engine/v1/runs/:run/waitpoints/tokens/:waitpoint/wait  block the run on it
 *   POST /engine/v1/runs/:run/wait/duration          wait.for / wait.until
 *
 * The tokens' routes are h_waitpoint_tokens.c's, a worker's suspend and hold
 * h_run_suspend.c's. The waitpoints are the waitpoint-registry's (wp.*
 * messages); blocking, suspending and resuming runs the run-manager's
 * (run.suspend). Every route that names a run reads it first (run.get), so a
 * run of another environment is 404 before anything is written. Outputs are
 * never logged.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "msg_raw.h"
#include "msg_run.h"
#include "msg_wp.h"
#include "sessref.h"
#include "waitpoints_int.h"

static const char *const gw_wp_runs_write_super[] = {"write:runs", "write:all", "admin"};

/* The call's end frees the state with its tags, however the call ended (an invalid timeout
 * after the tags, a missing run, a client gone): only wp.create releases them earlier. */
static void gw_wp_state_free(void *p)
{
    struct gw_wp_state *st = p;
    json_decref(st->tags);
    free(st);
}

struct gw_wp_state *gw_wp_st(struct gw_call *c)
{
    if (!c->state) {
        c->state = xcalloc(1, sizeof(struct gw_wp_state));
        c->state_free = gw_wp_state_free;
    }
    return c->state;
}

static void gw_wp_state_drop(struct gw_call *c)
{
    struct gw_wp_state *st = c->state;
    if (st && st->tags) {
        json_decref(st->tags);
        st->tags = NULL;
    }
}

/* ---- parsing ---- */

/*
 * A natural duration as the SDK's timeouts and idempotencyKeyTTL are written: one or more
 * <n><unit> with units w, d, h, m, s in that order ("30s", "1h30m", "4w"). false otherwise.
 */
static bool gw_wp_duration(const char *s, uint64_t *ms)
{
    static const char units[] = "wdhms";
    static const uint64_t mult[] = {604800000ull, 86400000ull, 3600000ull, 60000ull, 1000ull};
    const char *u = units;
    uint64_t total = 0;
    if (!*s)
        return false;
    while (*s) {
        uint64_t n = 0;
        unsigned digits = 0;
        while (isdigit((unsigned char)*s) && digits < 12)
            n = n * 10 + (uint64_t)(*s++ - '0'), digits++;
        if (digits == 0 || digits >= 12 || !*s)
            return false;
        const char *at = strchr(u, *s);
        if (!at)
            return false;
        /* a term past the cap fails here: 11 digits of weeks would wrap around 2^64 and
         * come out small ("30500568905w" as 9.6 hours) */
        if (n > 10ull * 365 * 86400000ull / mult[at - units])
            return false;
        total += n * mult[at - units];
        u = at + 1;
        s++;
    }
    *ms = total;
    return total <= 10ull * 365 * 86400000ull;
}

/* n decimal digits at s; false at the first other character (a NUL included). */
static bool gw_wp_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* An ISO-8601 UTC date-time ("2026-11-21T16:28:00.123Z", seconds and fraction optional). */
static bool gw_wp_iso(const char *s, uint64_t *ms)
{
    int Y, M, D, h = 0, m = 0, sec = 0, n = 0;
    /* digits where the fields are: %d alone also takes a sign or blanks ("T+6:28", "T-1:-5") */
    if (!gw_wp_digits(s, 4) || s[4] != '-' || !gw_wp_digits(s + 5, 2) || s[7] != '-' ||
        !gw_wp_digits(s + 8, 2) || sscanf(s, "%4d-%2d-%2d%n", &Y, &M, &D, &n) != 3 || n != 10)
        return false;
    s += n;
    unsigned frac = 0, fd = 0;
    if (*s == 'T' || *s == ' ') {
        if (!gw_wp_digits(s + 1, 2) || s[3] != ':' || !gw_wp_digits(s + 4, 2) ||
            sscanf(s + 1, "%2d:%2d%n", &h, &m, &n) != 2 || n != 5)
            return false;
        s += 1 + n;
        if (*s == ':') {
            if (!gw_wp_digits(s + 1, 2) || sscanf(s + 1, "%2d%n", &sec, &n) != 1 || n != 2)
                return false;
            s += 3;
            if (*s == '.') {
                for (s++; isdigit((unsigned char)*s); s++)
                    if (fd++ < 3)
                        frac = frac * 10 + (unsigned)(*s - '0');
                if (fd == 0)
                    return false;
                for (unsigned k = fd; k < 3; k++)
                    frac *= 10;
            }
        }
        if (*s == 'Z')
            s++;
        else if (!strcmp(s, "+00:00"))
            s += 6;
    }
    if (*s || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return false;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t < 0)
        return false;
    *ms = (uint64_t)t * 1000 + frac;
    return true;
}

/* A `timeout` (duration or date) as a due time; 0 when a date is past. false: unparsable. */
static bool gw_wp_timeout(json_t *v, uint64_t *due)
{
    uint64_t ms, now = clock_wall_ms();
    *due = 0;
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    if (gw_wp_duration(s, &ms)) {
        *due = now + ms;
        return true;
    }
    if (gw_wp_iso(s, &ms)) {
        *due = ms > now ? ms : 0; /* §5.10: a past date means no timeout */
        return true;
    }
    return false;
}

/*
 * The fields every create body shares: idempotencyKey, idempotencyKeyTTL, tags and, when
 * timeout_field, the timeout. false when the call was answered (400, or 422 for tags).
 */
bool gw_wp_common(struct gw_call *c, json_t *o, const char *timeout_field)
{
    struct gw_wp_state *st = gw_wp_st(c);
    json_t *v = json_object_get(o, "idempotencyKey");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) > GW_WP_IDEM_MAX) {
            gw_respond_error(c, 400, "idempotencyKey must be a string of 2048 characters or less",
                             0);
            return false;
        }
        snprintf(st->idem, sizeof(st->idem), "%s", json_string_value(v));
    }
    v = json_object_get(o, "idempotencyKeyTTL");
    if (v && !json_is_null(v)) {
        uint64_t ms;
        if (!json_is_string(v)) {
            gw_respond_error(c, 400, "idempotencyKeyTTL must be a string", 0);
            return false;
        }
        /* §5.10: ^\d+[smhd]$, anything else is ignored */
        const char *s = json_string_value(v);
        size_t n = strlen(s);
        if (n >= 2 && strchr("smhd", s[n - 1]) && strspn(s, "0123456789") == n - 1 &&
            gw_wp_duration(s, &ms))
            st->idem_ttl_ms = ms;
    }
    v = json_object_get(o, "tags");
    if (v && !json_is_null(v)) {
        json_t *arr = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
        size_t i;
        json_t *t;
        if (!json_is_array(arr)) {
            json_decref(arr);
            gw_respond_error(c, 400, "tags must be a string or an array of strings", 0);
            return false;
        }
        json_array_foreach(arr, i, t)
        {
            if (!json_is_string(t)) {
                json_decref(arr);
                gw_respond_error(c, 400, "tags must be a string or an array of strings", 0);
                return false;
            }
            if (json_string_length(t) == 0 || json_string_length(t) > GW_WP_TAG_MAX) {
                json_decref(arr);
                gw_respond_error(c, 422, "Tags must be 1-128 characters each", 0);
                return false;
            }
        }
        if (json_array_size(arr) > GW_WP_TAGS_MAX) {
            json_decref(arr);
            gw_respond_error(c, 422, "Runs can only have 10 tags", 0);
            return false;
        }
        st->tags = arr;
    }
    if (timeout_field) {
        v = json_object_get(o, timeout_field);
        if (v && !json_is_null(v) && !gw_wp_timeout(v, &st->timeout_at_ms)) {
            gw_respond_error(c, 400,
                             "timeout must be a duration (30s, 5m, 1h, 2d, 1w) or an ISO date", 0);
            return false;
        }
    }
    return true;
}

/* ---- replies ---- */

bool gw_wp_str(struct slice m, const char *k, char *out, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    out[0] = '\0';
    return mp_map_find(m.p, m.n, k, &v) == OK && mp_read_str(&v, &s) == OK &&
           slice_copy(s, out, cap) == OK;
}

uint64_t gw_wp_u64(struct slice m, const char *k)
{
    struct mp_reader v;
    uint64_t u = 0;
    if (mp_map_find(m.p, m.n, k, &v) == OK)
        (void)mp_read_uint(&v, &u);
    return u;
}

bool gw_wp_bool(struct slice m, const char *k)
{
    struct mp_reader v;
    bool b = false;
    if (mp_map_find(m.p, m.n, k, &v) == OK)
        (void)mp_read_bool(&v, &b);
    return b;
}

bool gw_wp_reply(const struct envelope *env, struct msg_wp_reply *r, char *id, size_t cap)
{
    return msg_decode(&msg_wp_reply_form, env->body.p, env->body.n, r) == OK &&
           (!id || gw_wp_str(r->waitpoint, "id", id, cap));
}

void gw_wp_set_date(json_t *o, const char *k, uint64_t ms)
{
    char buf[32];
    if (!ms)
        return;
    clock_iso8601(ms, buf, sizeof(buf));
    json_object_set_new(o, k, json_string(buf));
}

/* The registry's errors; true when answered. */
bool gw_wp_failed(struct gw_call *c, err_t rc, const struct envelope *env, const char *op)
{
    if (rc == OK && env)
        return false;
    if (rc == ERR_NOTFOUND)
        gw_respond_error(c, 404, GW_WP_NOT_FOUND, 0);
    else if (rc == ERR_INVAL)
        gw_respond_error(c, 422, env && env->err_msg.n ? "Invalid waitpoint request" : "Invalid",
                         0);
    else
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, op);
    return true;
}

bool gw_wp_created(struct gw_call *c, err_t rc, const struct envelope *env, struct msg_wp_reply *r,
                   char *id, size_t cap)
{
    if (gw_wp_failed(c, rc, env, "wp.create"))
        return false;
    if (!gw_wp_reply(env, r, id, cap)) {
        gw_respond_err(c, ERR_PROTO, "wp.create");
        return false;
    }
    return true;
}

void gw_wp_send(struct gw_call *c, int actor, uint16_t type, struct mp_writer *w, bus_reply_fn cb)
{
    err_t rc = mp_writer_err(w);
    if (rc == OK)
        rc = gw_call_bus(c, (unsigned)actor, type, mp_writer_data(w), mp_writer_len(w), cb);
    mp_writer_fini(w);
    if (rc != OK)
        gw_respond_err(c, rc, msg_name(type));
}

/* wp.create of the state's waitpoint (kind, key/io/from for a session channel). */
void gw_wp_create(struct gw_call *c, const char *run, bus_reply_fn cb)
{
    struct gw_wp_state *st = gw_wp_st(c);
    struct mp_writer tags, w;
    bool stream = strcmp(st->kind, "SESSION_STREAM") == 0;
    const char *tg[GW_WP_TAGS_MAX];
    unsigned nt = 0; /* gw_wp_common took at most GW_WP_TAGS_MAX */
    for (; st->tags && nt < json_array_size(st->tags) && nt < GW_WP_TAGS_MAX; nt++)
        tg[nt] = json_string_value(json_array_get(st->tags, nt));
    mp_writer_init(&tags);
    msg_raw_put_strs(&tags, tg, nt);
    struct msg_wp_create m = {
        .env_id = msg_str(c->auth.env.id),
        .kind = msg_str(st->kind),
        .run = msg_str(run),
        .idempotency_key = msg_str(st->idem[0] ? st->idem : NULL),
        .idempotency_ttl_ms = st->idem_ttl_ms,
        .timeout_at_ms = st->timeout_at_ms,
        .tags = msg_raw_of(&tags),
        .key = msg_str(stream ? st->key : NULL),
        .io = msg_str(stream ? st->io : NULL),
        .from_seq = st->from_seq,
        .from_seq_given = stream,
    };
    mp_writer_init(&w);
    msg_encode(&msg_wp_create_form, &w, &m);
    msg_raw_done(&tags, &w);
    gw_wp_state_drop(c);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_CREATE, &w, cb);
}

/* run.get of the URL's run: cb runs once it exists in the caller's environment. */
static void gw_wp_run_get(struct gw_call *c, bus_reply_fn cb)
{
    struct msg_run_ref m = {msg_str(c->auth.env.id), msg_str(c->params.run)};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_run_get_form, &w, &m);
    gw_wp_send(c, GW_ACTOR_RUN_MANAGER, MSG_RUN_GET, &w, cb);
}

static bool gw_wp_run_missing(struct gw_call *c, err_t rc, const struct envelope *env)
{
    if (rc == OK && env)
        return false;
    if (rc == ERR_NOTFOUND)
        gw_respond_error(c, 404, GW_WP_RUN_NOT_FOUND, 0);
    else
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, "run.get");
    return true;
}

bool gw_wp_authorize_run(struct gw_call *c)
{
    const char *ids[] = {c->params.run};
    struct gw_resource res = {"runs", ids, 1};
    char why[2048];
    if (gw_authorize(&c->auth, "write", &res, 1, gw_wp_runs_write_super, 3, why, sizeof(why)))
        return true;
    gw_respond_forbidden(c, why);
    return false;
}

/* ---- POST /api/v1/runs/:run/session-streams/wait (§5.10) ---- */

static void gw_ssw_on_created(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_wp_reply r;
    char id[128];
    if (!gw_wp_created(c, rc, env, &r, id, sizeof(id)))
        return;
    gw_respond_json(c, 200, json_pack("{s:s,s:b}", "waitpointId", id, "isCached", r.is_cached), 0);
}

static void gw_ssw_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_wp_state *st = gw_wp_st(c);
    struct slice s = SLICE_NULL;
    bool friendly = strncmp(c->params.session, "session_", 8) == 0;
    if (rc == ERR_NOTFOUND && friendly) {
        gw_respond_error(c, 404, "Session not found", 0);
        return;
    }
    if (rc != ERR_NOTFOUND && (rc != OK || !gw_reply_session(env, &s))) {
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, "session.get");
        return;
    }
    if (s.n) {
        /* a closed session completes nothing already waiting, but takes no new waits */
        if (gw_sess_u64(s, "closed_at_ms")) {
            gw_respond_error(c, 409, "Cannot wait on a closed session", GW_NO_RETRY);
            return;
        }
        if (!(gw_sess_str(s, "external_id", st->key, sizeof(st->key)) && st->key[0]))
            gw_sess_str(s, "friendly_id", st->key, sizeof(st->key));
    } else {
        snprintf(st->key, sizeof(st->key), "%s", c->params.session); /* an externalId, no row */
    }
    gw_wp_create(c, c->params.run, gw_ssw_on_created);
}

static void gw_ssw_on_run(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_wp_run_missing(c, rc, env))
        return;
    rc = gw_session_lookup(c, gw_ssw_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

void gw_on_session_stream_wait(struct gw_call *c)
{
    struct gw_wp_state *st = gw_wp_st(c);
    json_t *o = c->body, *v;
    snprintf(st->kind, sizeof(st->kind), "SESSION_STREAM");
    v = json_object_get(o, "session");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 512) {
        gw_respond_error(c, 400, "session must be a session id or externalId (1-512 characters)",
                         0);
        return;
    }
    snprintf(c->params.session, sizeof(c->params.session), "%s", json_string_value(v));
    v = json_object_get(o, "io");
    if (!json_is_string(v) ||
        (strcmp(json_string_value(v), "in") != 0 && strcmp(json_string_value(v), "out") != 0)) {
        gw_respond_error(c, 400, "io must be 'in' or 'out'", 0);
        return;
    }
    snprintf(st->io, sizeof(st->io), "%s", json_string_value(v));
    v = json_object_get(o, "lastSeqNum");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > (json_int_t)1 << 53) {
            gw_respond_error(c, 400, "lastSeqNum must be a non-negative integer", 0);
            return;
        }
        st->from_seq = (uint64_t)json_integer_value(v) + 1; /* records strictly after it */
    }
    if (!gw_wp_common(c, o, "timeout"))
        return;
    gw_wp_run_get(c, gw_ssw_on_run);
}

/* ---- POST /engine/v1/runs/:run/waitpoints/tokens/:waitpoint/wait ---- */

static void gw_block_on_blocked(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_wp_failed(c, rc, env, "wp.block"))
        return;
    gw_respond_json(c, 200, json_pack("{s:b}", "success", 1), 0);
}

static void gw_block_send(struct gw_call *c, const char *waitpoint, bus_reply_fn cb)
{
    struct msg_wp_block m = {msg_str(c->auth.env.id), msg_str(waitpoint), msg_str(c->params.run)};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_wp_block_form, &w, &m);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_BLOCK, &w, cb);
}

static void gw_block_on_run(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_wp_run_missing(c, rc, env))
        return;
    gw_block_send(c, c->params.waitpoint, gw_block_on_blocked);
}

void gw_on_run_wait_waitpoint(struct gw_call *c)
{
    if (!gw_wp_authorize_run(c))
        return;
    gw_wp_run_get(c, gw_block_on_run);
}

/* ---- POST /engine/v1/runs/:run/wait/duration ---- */

static void gw_dur_on_blocked(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_wp_reply r;
    char id[128], until[32];
    if (gw_wp_failed(c, rc, env, "wp.block"))
        return;
    if (!gw_wp_reply(env, &r, id, sizeof(id))) {
        gw_respond_err(c, ERR_PROTO, "wp.block");
        return;
    }
    clock_iso8601(gw_wp_u64(r.waitpoint, "timeout_at_ms"), until, sizeof(until));
    gw_respond_json(c, 200, json_pack("{s:s,s:{s:s}}", "waitUntil", until, "waitpoint", "id", id),
                    0);
}

static void gw_dur_on_created(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_wp_reply r;
    char id[128];
    if (!gw_wp_created(c, rc, env, &r, id, sizeof(id)))
        return;
    gw_block_send(c, id, gw_dur_on_blocked);
}

static void gw_dur_on_run(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_wp_run_missing(c, rc, env))
        return;
    gw_wp_create(c, c->params.run, gw_dur_on_created);
}

void gw_on_run_wait_duration(struct gw_call *c)
{
    struct gw_wp_state *st = gw_wp_st(c);
    json_t *v = json_object_get(c->body, "date");
    if (!gw_wp_authorize_run(c))
        return;
    snprintf(st->kind, sizeof(st->kind), "DURATION");
    if (!json_is_string(v) || !gw_wp_iso(json_string_value(v), &st->timeout_at_ms)) {
        gw_respond_error(c, 400, "date must be an ISO date", 0);
        return;
    }
    if (st->timeout_at_ms == 0)
        st->timeout_at_ms = 1; /* the epoch: due at once */
    if (!gw_wp_common(c, c->body, NULL))
        return;
    gw_wp_run_get(c, gw_dur_on_run);
}
