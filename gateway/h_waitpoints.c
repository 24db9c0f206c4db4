/*
 * h_waitpoints.c - waitpoints and runs that wait on them
 * (docs/waitpoint-registry.md, docs/workers.md):
 *
 *   POST /api/v1/runs/:run/session-streams/wait      §5.10: wait on a session channel
 *   POST /api/v1/waitpoints/tokens                   wait.createToken
 *   GET  /api/v1/waitpoints/tokens                   wait.listTokens
 *   GET  /api/v1/waitpoints/tokens/:waitpoint        wait.retrieveToken
 *   POST /api/v1/waitpoints/tokens/:waitpoint/complete  wait.completeToken
 *   POST /api/v1/waitpoints/tokens/:waitpoint/callback/:hash  a token's url (no credential)
 *   POST /engine/v1/runs/:run/waitpoints/tokens/:waitpoint/wait  block the run on it
 *   POST /engine/v1/runs/:run/wait/duration          wait.for / wait.until
 *   POST /api/v1/runs/:run/suspend                   a worker gives a blocked run back
 *
 * The waitpoints are the waitpoint-registry's (wp.* messages); blocking,
 * suspending and resuming runs the run-manager's (run.suspend). Every
 * route that names a run reads it first (run.get), so a run of another
 * environment is 404 before anything is written. Outputs are never logged.
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "sessref.h"

#define GW_WP_IDEM_MAX 2048
#define GW_WP_TAGS_MAX 10
#define GW_WP_TAG_MAX 128
#define GW_WP_NOT_FOUND "Waitpoint not found"
#define GW_WP_RUN_NOT_FOUND "Run not found"
#define GW_WP_LIST_MAX 100

static const char *const gw_wp_write_super[] = {"write:waitpoints", "write:all", "admin"};
static const char *const gw_wp_read_super[] = {"read:waitpoints", "read:all", "admin"};
static const char *const gw_wp_runs_write_super[] = {"write:runs", "write:all", "admin"};

/* What a route keeps between its bus calls (c->state). */
struct gw_wp_state {
    char kind[16];
    char key[GW_PARAM_MAX];
    char io[4];
    char idem[GW_WP_IDEM_MAX + 1];
    uint64_t idem_ttl_ms;
    uint64_t timeout_at_ms;
    uint64_t from_seq;
    json_t *tags; /* array of strings, owned */
    char worker[132];
    bool has_worker;
};

/* The call's end frees the state with its tags, however the call ended (an invalid timeout
 * after the tags, a missing run, a client gone): only wp.create releases them earlier. */
static void gw_wp_state_free(void *p)
{
    struct gw_wp_state *st = p;
    json_decref(st->tags);
    free(st);
}

static struct gw_wp_state *gw_wp_st(struct gw_call *c)
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
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h,
                    .tm_min = m, .tm_sec = sec};
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
static bool gw_wp_common(struct gw_call *c, json_t *o, const char *timeout_field)
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

static bool gw_wp_str(struct slice m, const char *k, char *out, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    out[0] = '\0';
    return mp_map_find(m.p, m.n, k, &v) == OK && mp_read_str(&v, &s) == OK &&
           slice_copy(s, out, cap) == OK;
}

static uint64_t gw_wp_u64(struct slice m, const char *k)
{
    struct mp_reader v;
    uint64_t u = 0;
    if (mp_map_find(m.p, m.n, k, &v) == OK)
        (void)mp_read_uint(&v, &u);
    return u;
}

static bool gw_wp_bool(struct slice m, const char *k)
{
    struct mp_reader v;
    bool b = false;
    if (mp_map_find(m.p, m.n, k, &v) == OK)
        (void)mp_read_bool(&v, &b);
    return b;
}

static bool gw_wp_field(struct slice m, const char *k, struct slice *out)
{
    struct mp_reader v;
    return mp_map_find(m.p, m.n, k, &v) == OK && mp_skip(&v, out) == OK;
}

static void gw_wp_set_date(json_t *o, const char *k, uint64_t ms)
{
    char buf[32];
    if (!ms)
        return;
    clock_iso8601(ms, buf, sizeof(buf));
    json_object_set_new(o, k, json_string(buf));
}

/* The public status of a token: WAITING while PENDING. */
static const char *gw_wp_status(const char *s)
{
    return strcmp(s, "PENDING") == 0 ? "WAITING" : s;
}

/*
 * The callback hash of a token: HMAC-SHA256 of its friendly id under the environment's
 * current signing key, in lowercase hex (65 bytes with the NUL). false when it cannot be made.
 */
static bool gw_wp_hash(const char *key, const char *id, char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (!key[0] || !HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)id,
                         strlen(id), mac, &n) || n != 32)
        return false;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return true;
}

/*
 * A token's url: its callback, POST <base>/api/v1/waitpoints/tokens/<id>/callback/<hash>,
 * which completes it without a credential (gw_on_token_callback).
 */
static json_t *gw_wp_url(struct gw_call *c, const char *id)
{
    char base[512], url[1024], hash[65];
    gw_public_base(c, base, sizeof(base));
    if (!gw_wp_hash(c->auth.env.signing_key, id, hash))
        return json_null();
    snprintf(url, sizeof(url), "%s/api/v1/waitpoints/tokens/%s/callback/%s", base, id, hash);
    return json_string(url);
}

/* A waitpoint object as the SDK's WaitpointTokenItem (+ output fields when with_output). */
static json_t *gw_wp_token_json(struct gw_call *c, struct slice m, bool with_output)
{
    char id[128], status[32], idem[GW_WP_IDEM_MAX + 1], type[128];
    gw_wp_str(m, "id", id, sizeof(id));
    gw_wp_str(m, "status", status, sizeof(status));
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "url", gw_wp_url(c, id));
    json_object_set_new(o, "status", json_string(gw_wp_status(status)));
    gw_wp_set_date(o, "completedAt", gw_wp_u64(m, "completed_at_ms"));
    gw_wp_set_date(o, "timeoutAt", gw_wp_u64(m, "timeout_at_ms"));
    if (gw_wp_str(m, "idempotency_key", idem, sizeof(idem)))
        json_object_set_new(o, "idempotencyKey", json_string(idem));
    gw_wp_set_date(o, "idempotencyKeyExpiresAt", gw_wp_u64(m, "idempotency_key_expires_at_ms"));
    struct mp_reader v;
    struct slice tags;
    json_t *t = NULL;
    if (mp_map_find(m.p, m.n, "tags", &v) == OK && mp_read_str(&v, &tags) == OK)
        t = json_loadb(tags.p, tags.n, 0, NULL);
    json_object_set_new(o, "tags", json_is_array(t) ? t : (json_decref(t), json_array()));
    gw_wp_set_date(o, "createdAt", gw_wp_u64(m, "created_at_ms"));
    if (with_output) {
        struct slice out;
        if (mp_map_find(m.p, m.n, "output", &v) == OK && mp_read_str(&v, &out) == OK)
            json_object_set_new(o, "output", json_stringn(out.p, out.n));
        if (gw_wp_str(m, "output_type", type, sizeof(type)))
            json_object_set_new(o, "outputType", json_string(type));
        json_object_set_new(o, "outputIsError", json_boolean(gw_wp_bool(m, "output_is_error")));
    }
    return o;
}

/* The registry's errors; true when answered. */
static bool gw_wp_failed(struct gw_call *c, err_t rc, const struct envelope *env, const char *op)
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

static void gw_wp_send(struct gw_call *c, int actor, uint16_t type, struct mp_writer *w,
                       bus_reply_fn cb)
{
    err_t rc = mp_writer_err(w);
    if (rc == OK)
        rc = gw_call_bus(c, (unsigned)actor, type, mp_writer_data(w), mp_writer_len(w), cb);
    mp_writer_fini(w);
    if (rc != OK)
        gw_respond_err(c, rc, msg_name(type));
}

/* wp.create of the state's waitpoint (kind, key/io/from for a session channel). */
static void gw_wp_create(struct gw_call *c, const char *run, bus_reply_fn cb)
{
    struct gw_wp_state *st = gw_wp_st(c);
    struct mp_writer w;
    bool stream = strcmp(st->kind, "SESSION_STREAM") == 0;
    mp_writer_init(&w);
    mp_put_map(&w, 7 + (stream ? 3 : 0));
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "kind", st->kind);
    mp_put_kv_str(&w, "run", run);
    mp_put_kv_str(&w, "idempotency_key", st->idem[0] ? st->idem : NULL);
    mp_put_kv_uint(&w, "idempotency_ttl_ms", st->idem_ttl_ms);
    mp_put_kv_uint(&w, "timeout_at_ms", st->timeout_at_ms);
    mp_put_str(&w, "tags");
    size_t nt = st->tags ? json_array_size(st->tags) : 0;
    mp_put_array(&w, (uint32_t)nt);
    for (size_t i = 0; i < nt; i++)
        mp_put_str(&w, json_string_value(json_array_get(st->tags, i)));
    if (stream) {
        mp_put_kv_str(&w, "key", st->key);
        mp_put_kv_str(&w, "io", st->io);
        mp_put_kv_uint(&w, "from_seq", st->from_seq);
    }
    gw_wp_state_drop(c);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_CREATE, &w, cb);
}

/* run.get of the URL's run: cb runs once it exists in the caller's environment. */
static void gw_wp_run_get(struct gw_call *c, bus_reply_fn cb)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 2);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "run", c->params.run);
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

static bool gw_wp_authorize_run(struct gw_call *c)
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
    struct slice wpo;
    char id[128];
    if (gw_wp_failed(c, rc, env, "wp.create"))
        return;
    if (!gw_wp_field(env->body, "waitpoint", &wpo) || !gw_wp_str(wpo, "id", id, sizeof(id))) {
        gw_respond_err(c, ERR_PROTO, "wp.create");
        return;
    }
    gw_respond_json(c, 200,
                    json_pack("{s:s,s:b}", "waitpointId", id, "isCached",
                              gw_wp_bool(env->body, "is_cached")),
                    0);
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

/* ---- tokens ---- */

static void gw_token_on_created(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice wpo;
    char id[128];
    if (gw_wp_failed(c, rc, env, "wp.create"))
        return;
    if (!gw_wp_field(env->body, "waitpoint", &wpo) || !gw_wp_str(wpo, "id", id, sizeof(id))) {
        gw_respond_err(c, ERR_PROTO, "wp.create");
        return;
    }
    /* the token the SDK hands to whoever completes it: write:waitpoints:<id> for 24 h */
    char scope[160];
    snprintf(scope, sizeof(scope), "write:waitpoints:%s", id);
    const char *scopes[] = {scope};
    char *jwt = gw_jwt_mint(c->auth.env.signing_key, c->auth.env.id, scopes, 1, 86400);
    if (jwt) {
        gw_add_header(c, "x-trigger-jwt", jwt);
        free(jwt);
    }
    json_t *b = json_pack("{s:s,s:b}", "id", id, "isCached", gw_wp_bool(env->body, "is_cached"));
    json_object_set_new(b, "url", gw_wp_url(c, id));
    gw_respond_json(c, 200, b, 0);
}

void gw_on_token_create(struct gw_call *c)
{
    struct gw_wp_state *st = gw_wp_st(c);
    char why[2048];
    struct gw_resource res = {"waitpoints", NULL, 0};
    if (!gw_authorize(&c->auth, "write", &res, 1, gw_wp_write_super, 3, why, sizeof(why))) {
        gw_respond_forbidden(c, why);
        return;
    }
    snprintf(st->kind, sizeof(st->kind), "MANUAL");
    if (!gw_wp_common(c, c->body, "timeout"))
        return;
    gw_wp_create(c, NULL, gw_token_on_created);
}

static bool gw_token_authorize(struct gw_call *c, const char *action)
{
    const char *ids[] = {c->params.waitpoint};
    struct gw_resource res = {"waitpoints", ids, 1};
    char why[2048];
    if (gw_authorize(&c->auth, action, &res, 1,
                     action[0] == 'w' ? gw_wp_write_super : gw_wp_read_super, 3, why,
                     sizeof(why)))
        return true;
    gw_respond_forbidden(c, why);
    return false;
}

static void gw_token_on_get(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice wpo;
    if (gw_wp_failed(c, rc, env, "wp.get"))
        return;
    if (!gw_wp_field(env->body, "waitpoint", &wpo)) {
        gw_respond_err(c, ERR_PROTO, "wp.get");
        return;
    }
    gw_respond_json(c, 200, gw_wp_token_json(c, wpo, true), 0);
}

static void gw_wp_ref_send(struct gw_call *c, uint16_t type, const char *kind, bus_reply_fn cb)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "id", c->params.waitpoint);
    mp_put_kv_str(&w, "kind", kind);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, type, &w, cb);
}

void gw_on_token_get(struct gw_call *c)
{
    if (!gw_token_authorize(c, "read"))
        return;
    gw_wp_ref_send(c, MSG_WP_GET, "MANUAL", gw_token_on_get);
}

static void gw_token_on_completed(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_wp_failed(c, rc, env, "wp.complete"))
        return;
    gw_respond_json(c, 200, json_pack("{s:b}", "success", 1), 0);
}

void gw_on_token_complete(struct gw_call *c)
{
    h2o_req_t *req = c->req;
    size_t n = req && req->entity.base ? req->entity.len : 0;
    json_t *o = NULL, *data = NULL;
    struct mp_writer w;
    if (!gw_token_authorize(c, "write"))
        return;
    if (n) {
        o = json_loadb(req->entity.base, n, JSON_DECODE_ANY, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            gw_respond_error(c, 400, o ? "Expected object, received something else"
                                       : "Invalid JSON", 0);
            return;
        }
        data = json_object_get(o, "data");
    }
    /* the output is the data as JSON text: the SDK parses it back (outputType JSON) */
    char *text = data && !json_is_null(data) ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY)
                                             : NULL;
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "id", c->params.waitpoint);
    mp_put_kv_str(&w, "output", text);
    mp_put_kv_str(&w, "output_type", "application/json");
    free(text);
    json_decref(o);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_COMPLETE, &w, gw_token_on_completed);
}

/* ---- POST /api/v1/waitpoints/tokens/:waitpoint/callback/:hash ---- */

/*
 * A token's url is a capability: whoever holds it completes the token with the request body
 * as its output (any JSON value; a body that is no JSON is {}), once. The route reads no
 * credential: the waitpoint is found by its id alone (wp.get any_env), its environment's
 * signing key recomputes the hash, compared in constant time. 404 for no such token, 401 for
 * a wrong hash, 413 over the route's cap; a token already completed or timed out answers
 * success and changes nothing (write-once).
 */
static void gw_callback_on_completed(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_wp_failed(c, rc, env, "wp.complete"))
        return;
    gw_respond_json(c, 200, json_pack("{s:b}", "success", 1), 0);
}

static void gw_callback_on_env(struct gw_call *c, int status, const char *error)
{
    struct gw_wp_state *st = gw_wp_st(c);
    char hash[65];
    struct mp_writer w;
    if (status == 404) {
        gw_respond_error(c, 404, GW_WP_NOT_FOUND, 0);
        return;
    }
    if (status) {
        if (status == 503)
            gw_add_header(c, "x-should-retry", "true");
        gw_respond_error(c, status, error, 0);
        return;
    }
    if (!gw_wp_hash(c->auth.env.signing_key, c->params.waitpoint, hash) ||
        CRYPTO_memcmp(hash, c->params.hash, 64) != 0) {
        gw_respond_error(c, 401, "Invalid URL, hash doesn't match", GW_NO_RETRY);
        return;
    }
    if (strcmp(st->kind, "PENDING") != 0) {
        gw_respond_json(c, 200, json_pack("{s:b}", "success", 1), 0);
        return;
    }
    h2o_req_t *req = c->req;
    size_t n = req && req->entity.base ? req->entity.len : 0;
    json_t *body = n ? json_loadb(req->entity.base, n, JSON_DECODE_ANY, NULL) : NULL;
    if (!body)
        body = json_object(); /* no JSON: {} (and freed below like a parsed body) */
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(body);
    if (!text) {
        gw_respond_err(c, ERR_NOMEM, "callback output");
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "id", c->params.waitpoint);
    mp_put_kv_str(&w, "output", text);
    mp_put_kv_str(&w, "output_type", "application/json");
    free(text);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_COMPLETE, &w, gw_callback_on_completed);
}

static void gw_callback_on_get(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_wp_state *st = gw_wp_st(c);
    struct slice wpo;
    char env_id[64];
    if (gw_wp_failed(c, rc, env, "wp.get"))
        return;
    if (!gw_wp_field(env->body, "waitpoint", &wpo) ||
        !gw_wp_str(wpo, "env_id", env_id, sizeof(env_id))) {
        gw_respond_err(c, ERR_PROTO, "wp.get");
        return;
    }
    gw_wp_str(wpo, "status", st->kind, sizeof(st->kind)); /* kept: PENDING or not */
    gw_auth_env(c, env_id, gw_callback_on_env);
}

void gw_on_token_callback(struct gw_call *c)
{
    struct mp_writer w;
    const char *h = c->params.hash;
    /* the hash's shape is checked before anything is looked up */
    if (strlen(h) != 64 || strspn(h, "0123456789abcdef") != 64) {
        gw_respond_error(c, 401, "Invalid URL, hash doesn't match", GW_NO_RETRY);
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "id", c->params.waitpoint);
    mp_put_kv_str(&w, "kind", "MANUAL");
    mp_put_kv_bool(&w, "any_env", true);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_GET, &w, gw_callback_on_get);
}

/* The value of ?name= (percent-decoded), or false. */
static bool gw_wp_query(h2o_req_t *req, const char *name, char *out, size_t cap)
{
    if (!req || req->query_at == SIZE_MAX)
        return false;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t o = 0;
            for (const char *v = q + nl + 1; v < e && o + 1 < cap; v++) {
                if (*v == '%' && e - v >= 3 && isxdigit((unsigned char)v[1]) &&
                    isxdigit((unsigned char)v[2])) {
                    char hex[3] = {v[1], v[2], 0};
                    out[o++] = (char)strtol(hex, NULL, 16);
                    v += 2;
                } else {
                    out[o++] = *v == '+' ? ' ' : *v;
                }
            }
            out[o] = '\0';
            return true;
        }
        q = e + 1;
    }
    return false;
}

static void gw_token_on_list(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct mp_reader v;
    uint32_t n;
    if (gw_wp_failed(c, rc, env, "wp.list"))
        return;
    if (mp_map_find(env->body.p, env->body.n, "waitpoints", &v) != OK ||
        mp_read_array(&v, &n) != OK) {
        gw_respond_err(c, ERR_PROTO, "wp.list");
        return;
    }
    json_t *data = json_array(), *last = NULL;
    for (uint32_t i = 0; i < n; i++) {
        struct slice m;
        if (mp_skip(&v, &m) != OK)
            break;
        json_t *item = gw_wp_token_json(c, m, false);
        last = json_object_get(item, "id");
        json_array_append_new(data, item);
    }
    json_t *pag = json_object();
    if (gw_wp_bool(env->body, "more") && last)
        json_object_set(pag, "next", last);
    gw_respond_json(c, 200, json_pack("{s:o,s:o}", "data", data, "pagination", pag), 0);
}

void gw_on_token_list(struct gw_call *c)
{
    char status[128] = "", idem[GW_WP_IDEM_MAX + 1] = "", tags[2048] = "", after[128] = "";
    char limit_s[16] = "";
    long limit = 25;
    struct gw_resource res = {"waitpoints", NULL, 0};
    char why[2048];
    struct mp_writer w;
    if (!gw_authorize(&c->auth, "read", &res, 1, gw_wp_read_super, 3, why, sizeof(why))) {
        gw_respond_forbidden(c, why);
        return;
    }
    if (!gw_wp_query(c->req, "filter%5Bstatus%5D", status, sizeof(status)))
        (void)gw_wp_query(c->req, "filter[status]", status, sizeof(status));
    if (!gw_wp_query(c->req, "filter%5BidempotencyKey%5D", idem, sizeof(idem)))
        (void)gw_wp_query(c->req, "filter[idempotencyKey]", idem, sizeof(idem));
    if (!gw_wp_query(c->req, "filter%5Btags%5D", tags, sizeof(tags)))
        (void)gw_wp_query(c->req, "filter[tags]", tags, sizeof(tags));
    if (!gw_wp_query(c->req, "page%5Bafter%5D", after, sizeof(after)))
        (void)gw_wp_query(c->req, "page[after]", after, sizeof(after));
    if (gw_wp_query(c->req, "page%5Bsize%5D", limit_s, sizeof(limit_s)) ||
        gw_wp_query(c->req, "page[size]", limit_s, sizeof(limit_s))) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*end || limit < 1 || limit > GW_WP_LIST_MAX) {
            gw_respond_error(c, 400, "page[size] must be 1-100", 0);
            return;
        }
    }
    /* statuses as the SDK names them: WAITING is the stored PENDING */
    const char *sts[3];
    unsigned nst = 0;
    char *save = NULL;
    for (char *t = strtok_r(status, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "WAITING") && nst < 3)
            sts[nst++] = "PENDING";
        else if ((!strcmp(t, "COMPLETED") || !strcmp(t, "TIMED_OUT")) && nst < 3)
            sts[nst++] = t;
        else {
            gw_respond_error(c, 400, "filter[status] must be WAITING, COMPLETED or TIMED_OUT", 0);
            return;
        }
    }
    const char *tg[GW_WP_TAGS_MAX];
    unsigned ntg = 0;
    save = NULL;
    for (char *t = strtok_r(tags, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (ntg >= GW_WP_TAGS_MAX || strlen(t) > GW_WP_TAG_MAX) {
            gw_respond_error(c, 400, "filter[tags] must be at most 10 tags", 0);
            return;
        }
        tg[ntg++] = t;
    }
    if (after[0] && strncmp(after, "waitpoint_", 10) != 0) {
        gw_respond_error(c, 400, "page[after] must be a waitpoint id", 0);
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 7);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "kind", "MANUAL");
    mp_put_str(&w, "statuses");
    mp_put_array(&w, nst);
    for (unsigned i = 0; i < nst; i++)
        mp_put_str(&w, sts[i]);
    mp_put_kv_str(&w, "idempotency_key", idem[0] ? idem : NULL);
    mp_put_str(&w, "tags");
    mp_put_array(&w, ntg);
    for (unsigned i = 0; i < ntg; i++)
        mp_put_str(&w, tg[i]);
    mp_put_kv_str(&w, "after", after[0] ? after : NULL);
    mp_put_kv_uint(&w, "limit", (uint64_t)limit);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_LIST, &w, gw_token_on_list);
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
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "id", waitpoint);
    mp_put_kv_str(&w, "run", c->params.run);
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
    struct slice wpo;
    char id[128], until[32];
    if (gw_wp_failed(c, rc, env, "wp.block"))
        return;
    if (!gw_wp_field(env->body, "waitpoint", &wpo) || !gw_wp_str(wpo, "id", id, sizeof(id))) {
        gw_respond_err(c, ERR_PROTO, "wp.block");
        return;
    }
    clock_iso8601(gw_wp_u64(wpo, "timeout_at_ms"), until, sizeof(until));
    gw_respond_json(c, 200, json_pack("{s:s,s:{s:s}}", "waitUntil", until, "waitpoint", "id", id),
                    0);
}

static void gw_dur_on_created(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice wpo;
    char id[128];
    if (gw_wp_failed(c, rc, env, "wp.create"))
        return;
    if (!gw_wp_field(env->body, "waitpoint", &wpo) || !gw_wp_str(wpo, "id", id, sizeof(id))) {
        gw_respond_err(c, ERR_PROTO, "wp.create");
        return;
    }
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

/* ---- POST /api/v1/runs/:run/suspend (docs/workers.md) ---- */

/* A completed waitpoint as a worker resumes with it (the SDK's CompletedWaitpoint). */
json_t *gw_wp_completed_json(struct slice m)
{
    char id[128], kind[32], status[32], type[128];
    struct mp_reader v;
    struct slice out;
    gw_wp_str(m, "id", id, sizeof(id));
    gw_wp_str(m, "kind", kind, sizeof(kind));
    gw_wp_str(m, "status", status, sizeof(status));
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", id, "type",
                          strcmp(kind, "DURATION") == 0 ? "DATETIME" : "MANUAL", "status", status);
    if (mp_map_find(m.p, m.n, "output", &v) == OK && mp_read_str(&v, &out) == OK)
        json_object_set_new(o, "output", json_stringn(out.p, out.n));
    if (gw_wp_str(m, "output_type", type, sizeof(type)))
        json_object_set_new(o, "outputType", json_string(type));
    json_object_set_new(o, "outputIsError", json_boolean(gw_wp_bool(m, "output_is_error")));
    gw_wp_set_date(o, "completedAt", gw_wp_u64(m, "completed_at_ms"));
    return o;
}

/*
 * A hold with waitSeconds keeps the request open until the run has nothing pending, the
 * deadline passes, the client leaves or the gateway stops. Like a waiting dequeue (h_dequeue.c)
 * it listens before its first try: it subscribes to the waitpoint-registry's
 * wp.completed.<env> events and asks run.suspend (hold) again on each one of its environment,
 * and every GW_HOLD_POLL_MS anyway (an event may be lost).
 */
#define GW_HOLD_WAIT_MAX_S 60
#define GW_HOLD_TICK_MS 200
#define GW_HOLD_POLL_MS 2000

struct gw_hold_topic {
    struct gw_hold_topic *next;
    char env_id[64];
    unsigned refs;
};

struct gw_holds {
    h2o_timeout_t tick;      /* GW_HOLD_TICK_MS, for every waiting hold */
    struct bus_sub *sub;     /* the registry's events; NULL: polling only */
    struct gw_hold *waiters; /* holds waiting */
    struct gw_hold_topic *topics;
};

/* A suspend or hold in progress: the call's state (c->state). */
struct gw_hold {
    struct gw_call *c;
    struct gw_hold *prev, *next; /* in gw_holds.waiters while listed */
    bool listed;
    h2o_timeout_entry_t tick;
    bool hold;
    uint64_t deadline_mono; /* 0: answer the first reply */
    uint64_t next_poll_mono;
    uint64_t pending;  /* what the last reply said */
    bool calling;      /* a run.suspend is under way */
    bool wake_pending; /* an event arrived during it: ask again at once */
    char worker[132];
};

static void gw_hold_issue(struct gw_hold *h);
static void gw_holds_on_event(void *arg, const char *topic, const struct envelope *env);

/* The client of a waiting hold has gone (a peek: 0 bytes is its FIN; see h_dequeue.c). */
static bool gw_hold_client_gone(struct gw_call *c)
{
    char b;
    if (!c->req)
        return true;
    h2o_conn_t *conn = c->req->conn;
    h2o_socket_t *sock =
        conn && conn->callbacks->get_socket ? conn->callbacks->get_socket(conn) : NULL;
    if (!sock)
        return false;
    ssize_t n = recv(h2o_socket_get_fd(sock), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static struct gw_holds *gw_holds_get(struct gw *gw)
{
    char urls[BUS_URL_MAX * 8];
    if (gw->holds)
        return gw->holds;
    struct gw_holds *r = xcalloc(1, sizeof(*r));
    h2o_timeout_init(gw->ctx.loop, &r->tick, GW_HOLD_TICK_MS);
    gw_events_urls(gw, "waitpoint-registry", urls, sizeof(urls));
    if (!urls[0] || bus_sub_open(gw->bus, urls, gw_holds_on_event, gw, &r->sub) != OK) {
        LOG_WARN("gw.holds_events", "cannot follow the waitpoint-registry's events; holds poll");
        r->sub = NULL;
    }
    gw->holds = r;
    return r;
}

static void gw_holds_topic_ref(struct gw_holds *r, const char *env_id, int delta)
{
    char topic[96];
    struct gw_hold_topic **pp = &r->topics, *t;
    for (; (t = *pp); pp = &t->next)
        if (strcmp(t->env_id, env_id) == 0)
            break;
    snprintf(topic, sizeof(topic), "wp.completed.%s", env_id);
    if (delta > 0) {
        if (!t) {
            t = xcalloc(1, sizeof(*t));
            snprintf(t->env_id, sizeof(t->env_id), "%s", env_id);
            t->next = r->topics;
            r->topics = t;
            if (r->sub && bus_sub_add(r->sub, topic) != OK)
                LOG_WARN("gw.holds_events", "cannot subscribe to wp.completed of environment %s",
                         env_id);
        }
        t->refs++;
    } else if (t && --t->refs == 0) {
        *pp = t->next;
        if (r->sub)
            (void)bus_sub_remove(r->sub, topic);
        free(t);
    }
}

/* Takes h off every list and timer; the caller then responds. */
static void gw_hold_done(struct gw_hold *h)
{
    struct gw_holds *r = h->c->gw->holds;
    if (h2o_timeout_is_linked(&h->tick))
        h2o_timeout_unlink(&h->tick);
    if (h->listed) {
        if (h->prev)
            h->prev->next = h->next;
        else
            r->waiters = h->next;
        if (h->next)
            h->next->prev = h->prev;
        h->listed = false;
        gw_holds_topic_ref(r, h->c->auth.env.id, -1);
    }
}

static void gw_hold_respond_pending(struct gw_hold *h)
{
    struct gw_call *c = h->c;
    gw_hold_done(h);
    gw_respond_json(c, 200,
                    json_pack("{s:b,s:I,s:[]}", "suspended", 0, "pending", (json_int_t)h->pending,
                              "waitpoints"),
                    0);
}

static void gw_hold_wake(struct gw_hold *h)
{
    if (h->calling) {
        h->wake_pending = true;
        return;
    }
    if (h2o_timeout_is_linked(&h->tick))
        h2o_timeout_unlink(&h->tick);
    gw_hold_issue(h);
}

static void gw_holds_on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct gw *gw = arg;
    struct gw_holds *r = gw->holds;
    const char *env_id = topic + strlen("wp.completed.");
    (void)env;
    if (!r || strncmp(topic, "wp.completed.", strlen("wp.completed.")) != 0)
        return;
    for (struct gw_hold *h = r->waiters, *next; h; h = next) {
        next = h->next; /* waking may finish h */
        if (strcmp(h->c->auth.env.id, env_id) == 0)
            gw_hold_wake(h);
    }
}

static void gw_hold_on_tick(h2o_timeout_entry_t *entry)
{
    struct gw_hold *h = (struct gw_hold *)((char *)entry - offsetof(struct gw_hold, tick));
    struct gw_call *c = h->c;
    uint64_t now = clock_mono_ms();
    if (gw_hold_client_gone(c) || c->gw->stopping || now >= h->deadline_mono) {
        gw_hold_respond_pending(h);
        return;
    }
    if (now >= h->next_poll_mono) {
        gw_hold_issue(h);
        return;
    }
    h2o_timeout_link(c->gw->ctx.loop, &c->gw->holds->tick, &h->tick);
}

static void gw_suspend_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_hold *h = c->state;
    struct mp_reader v;
    uint32_t n = 0;
    h->calling = false;
    if (rc == OK && env && h->listed && !gw_wp_bool(env->body, "suspended") &&
        (h->pending = gw_wp_u64(env->body, "pending")) > 0) {
        /* still waiting: wait on, unless it is time to answer */
        uint64_t now = clock_mono_ms();
        if (gw_hold_client_gone(c) || c->gw->stopping || now >= h->deadline_mono) {
            gw_hold_respond_pending(h);
            return;
        }
        if (h->wake_pending) {
            h->wake_pending = false;
            gw_hold_issue(h);
            return;
        }
        h->next_poll_mono = now + GW_HOLD_POLL_MS;
        h2o_timeout_link(c->gw->ctx.loop, &c->gw->holds->tick, &h->tick);
        return;
    }
    gw_hold_done(h);
    if (rc == ERR_NOTFOUND) {
        gw_respond_error(c, 404, GW_WP_RUN_NOT_FOUND, 0);
        return;
    }
    if (rc == ERR_CONFLICT) {
        gw_respond_error(c, 409, "run is no longer leased to this worker", GW_NO_RETRY);
        return;
    }
    if (rc != OK || !env) {
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, "run.suspend");
        return;
    }
    json_t *wps = json_array();
    if (mp_map_find(env->body.p, env->body.n, "waitpoints", &v) == OK &&
        mp_read_array(&v, &n) == OK) {
        for (uint32_t i = 0; i < n; i++) {
            struct slice m;
            if (mp_skip(&v, &m) != OK)
                break;
            json_array_append_new(wps, gw_wp_completed_json(m));
        }
    }
    gw_respond_json(c, 200,
                    json_pack("{s:b,s:I,s:o}", "suspended", gw_wp_bool(env->body, "suspended"),
                              "pending", (json_int_t)gw_wp_u64(env->body, "pending"),
                              "waitpoints", wps),
                    0);
}

static void gw_hold_issue(struct gw_hold *h)
{
    struct gw_call *c = h->c;
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "run", c->params.run);
    mp_put_kv_str(&w, "worker_id", h->worker[0] ? h->worker : NULL);
    mp_put_kv_bool(&w, "hold", h->hold);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_call(c->gw->actors[GW_ACTOR_RUN_MANAGER], MSG_RUN_SUSPEND, mp_writer_data(&w),
                      mp_writer_len(&w), &c->trace, gw_suspend_on_reply, c);
    mp_writer_fini(&w);
    if (rc != OK) {
        gw_hold_done(h);
        gw_respond_err(c, rc, "run.suspend");
        return;
    }
    h->calling = true;
}

void gw_on_run_suspend(struct gw_call *c)
{
    h2o_req_t *req = c->req;
    size_t n = req && req->entity.base ? req->entity.len : 0;
    json_t *o = NULL, *v;
    long long wait_s = 0;
    if (!gw_wp_authorize_run(c))
        return;
    struct gw_hold *h = xcalloc(1, sizeof(*h));
    h->c = c;
    h->tick.cb = gw_hold_on_tick;
    c->state = h;
    if (n) {
        o = json_loadb(req->entity.base, n, 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            gw_respond_error(c, 400, "Expected a JSON object", 0);
            return;
        }
        v = json_object_get(o, "workerId");
        if (v && !json_is_null(v)) {
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128) {
                json_decref(o);
                gw_respond_error(c, 400, "workerId must be a string of 1-128 characters", 0);
                return;
            }
            snprintf(h->worker, sizeof(h->worker), "%s", json_string_value(v));
        }
        v = json_object_get(o, "hold");
        if (v && !json_is_null(v)) {
            if (!json_is_boolean(v)) {
                json_decref(o);
                gw_respond_error(c, 400, "hold must be a boolean", 0);
                return;
            }
            h->hold = json_is_true(v);
        }
        v = json_object_get(o, "waitSeconds");
        if (v && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > GW_HOLD_WAIT_MAX_S || (!h->hold && json_integer_value(v))) {
                json_decref(o);
                gw_respond_error(c, 400, "waitSeconds must be an integer 0-60, with hold: true",
                                 0);
                return;
            }
            wait_s = json_integer_value(v);
        }
        json_decref(o);
    }
    if (wait_s > 0) {
        /* listen before the first try, so a completion right after it still wakes us */
        struct gw_holds *r = gw_holds_get(c->gw);
        h->deadline_mono = clock_mono_ms() + (uint64_t)wait_s * 1000;
        h->next = r->waiters;
        if (r->waiters)
            r->waiters->prev = h;
        r->waiters = h;
        h->listed = true;
        gw_holds_topic_ref(r, c->auth.env.id, +1);
    }
    gw_hold_issue(h);
}
