/*
 * run.c - one dequeued run of the echo task: a thread that answers the
 * session's .in records on .out, and a heartbeat thread that keeps its lease.
 *
 * The cursor lives on .out: each reply is appended together with a
 * turn-complete control record naming the .in record it answers, in one
 * request, so .out always says how far .in has been answered. A run starts
 * by reading that cursor back from the tail of .out and follows .in right
 * after it; a retried append first checks .out, so a reply whose answer was
 * lost is not written twice. A run that ends (idle, shutdown) with .in
 * records still unanswered hands over to a continuation run.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "http.h"
#include "jlog.h"
#include "sse.h"

#define RUN_URL_MAX 4096
#define RUN_TRIES 5 /* per request, for transient failures */
#define RUN_IDLE_DEFAULT_S 60
#define RUN_FOLLOW_GIVEUP_MS 120000L /* .in unreachable this long in a row: fail the run */
#define RUN_SCAN 100                 /* .out records per read while looking for the cursor */

/* Why the .in consumer ended a subscription itself. */
enum run_stop {
    RUN_STOP_NONE,
    RUN_STOP_DONE,    /* data: [DONE]: the server's idle wait passed with nothing new */
    RUN_STOP_RETRY,   /* event: error, or a batch we could not read: subscribe again */
    RUN_STOP_FATAL,   /* r->why says why; the run fails */
    RUN_STOP_ABORTED, /* the run was lost or abandoned while writing */
};

struct ea_run {
    struct ea_agent *ag;
    char *id, *token, *session; /* run id, run token, the session's friendly id */
    char *id_enc, *session_enc; /* URL-encoded for paths */
    int idle_s;                 /* idleTimeoutInSeconds */

    pthread_t thread, hb_thread;
    atomic_int ended;   /* the run thread is done */
    atomic_int lost;    /* heartbeat: the run is not ours any more */
    atomic_int hb_quit; /* the run thread tells the heartbeat to stop */
    atomic_int use_key; /* the run token was refused (they last an hour): use the secret key */
    pthread_mutex_t mu; /* with cv, lets hb_quit wake the heartbeat's sleep */
    pthread_cond_t cv;

    struct http_client api; /* run thread: .out, appends, complete, fail */
    struct http_client sse; /* run thread: the .in subscription */
    struct http_client hb;  /* heartbeat thread */

    /* .out, from the PUT: where and how replies are appended */
    char *s2_url; /* <X-S2-Endpoint>/streams/<enc name>/records */
    char *s2_token;
    char *s2_basin_hdr; /* "S2-Basin: <basin>" */

    /* following .in (run thread only) */
    struct sse_parser parser;
    bool have_seq;
    uint64_t last_seq; /* the last .in record handled: the resume cursor */
    long idle_until;   /* run_now_ms() at which .in will have been quiet for idle_s */
    bool progressed;   /* this subscription delivered a batch or a ping */
    enum run_stop stop;
    unsigned turns; /* replies written by this run */
    bool sleeping;  /* run_work blocked the run on .in's next record: suspend, not complete */
    bool woke_late; /* resumed by a timed-out wait: complete at once */
    char why[512];  /* the failure's message, for the fail route */
};

/* ---- small helpers ---- */

static long run_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail for CLOCK_MONOTONIC */
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_why(struct ea_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run_why(struct ea_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
}

/* snprintf into a URL buffer; a URL that does not fit is an error, never a cut one. */
static ea_err_t run_url(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ea_err_t run_url(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, RUN_URL_MAX, fmt, ap);
    va_end(ap);
    return n > 0 && n < RUN_URL_MAX ? EA_OK : EA_ERR_INVAL;
}

static const char *run_bearer(struct ea_run *r)
{
    return atomic_load(&r->use_key) ? r->ag->cfg.key : r->token;
}

/* Stop predicates for the run's requests (http_abort_fn). */
static int run_abort_io(void *arg)
{
    struct ea_run *r = arg;
    return atomic_load(&r->ag->abandon) || atomic_load(&r->lost);
}

static int run_abort_sse(void *arg)
{
    struct ea_run *r = arg;
    /* A shutdown ends the wait on .in but never a reply's write: replies are written from
     * inside this stream's callback, where libcurl does not poll this. */
    return run_abort_io(r) || atomic_load(&r->ag->stopping);
}

static int run_abort_hb(void *arg)
{
    struct ea_run *r = arg;
    return atomic_load(&r->ag->abandon) || atomic_load(&r->hb_quit);
}

static int run_abort_final(void *arg)
{
    struct ea_run *r = arg;
    return atomic_load(&r->ag->abandon);
}

/*
 * Runs rq (up to `tries` times while the failure is transient) on the run
 * thread. EA_OK means a 2xx answer; anything else sets r->why (unless
 * aborted): EA_ERR_NET for what stayed transient, EA_ERR_HTTP for a 4xx.
 * A run token refused with 401 is replaced by the secret key for good.
 */
static ea_err_t run_call(struct ea_run *r, struct http_client *c, struct http_req *rq,
                         struct http_resp *rs, int tries, const char *what)
{
    ea_err_t rc = http_do_retry(c, rq, rs, tries, what, r->id);
    if (rc == EA_OK && rs->status == 401 && rq->bearer == r->token) {
        LOG_WARN("run.token_rejected", r->id,
                 "%s: the run token was refused (expired?); using the secret key", what);
        atomic_store(&r->use_key, 1);
        rq->bearer = r->ag->cfg.key;
        rc = http_do_retry(c, rq, rs, tries, what, r->id);
    }
    if (rc == EA_ERR_ABORTED)
        return rc;
    if (rc != EA_OK) {
        run_why(r, "%s: %s%s%s", what, ea_err_str(rc), rs->err[0] ? ": " : "", rs->err);
        return rc;
    }
    if (rs->status < 200 || rs->status >= 300) {
        run_why(r, "%s answered %ld: %.200s", what, rs->status, rs->body ? rs->body : "");
        return http_is_transient(EA_OK, rs->status) ? EA_ERR_NET : EA_ERR_HTTP;
    }
    return EA_OK;
}

/* POSTs JSON to one of this run's routes: /api/v1/runs/<id>/<verb>. */
static ea_err_t run_post_route(struct ea_run *r, const char *verb, json_t *body,
                               struct http_resp *rs)
{
    char url[RUN_URL_MAX];
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    ea_err_t rc = EA_ERR_NOMEM;
    if (!text) {
        run_why(r, "%s: out of memory", verb);
    } else if ((rc = run_url(url, "%s/api/v1/runs/%s/%s", r->ag->cfg.url, r->id_enc, verb)) !=
               EA_OK) {
        run_why(r, "run URL too long");
    } else {
        struct http_req rq = {.method = "POST",
                              .url = url,
                              .bearer = run_bearer(r),
                              .content_type = "application/json",
                              .body = text,
                              .body_len = strlen(text),
                              .timeout_ms = 10000,
                              .max_body = EA_ANSWER_MAX,
                              .should_abort = run_abort_final,
                              .abort_arg = r};
        rc = run_call(r, &r->api, &rq, rs, RUN_TRIES, verb);
    }
    free(text);
    return rc;
}

/* ---- heartbeat thread ---- */

/* Sleeps ms or until the run thread says stop; false when it did. */
static bool run_hb_sleep(struct ea_run *r, long ms)
{
    struct timespec until;
    bool go_on;
    (void)clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* Only hb_quit is signalled on cv. An abandon is seen late here, but the run thread sets
     * hb_quit on its way out, within a second of an abandon. */
    (void)pthread_mutex_lock(&r->mu);
    while (!run_abort_hb(r)) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT)
            break;
    }
    go_on = !run_abort_hb(r);
    (void)pthread_mutex_unlock(&r->mu);
    return go_on;
}

/*
 * Keeps the lease: one heartbeat at once (it marks the run EXECUTING), then
 * one every lease/3. A 409 or 404 means the run is not ours any more. Other
 * failures are retried every second until the lease would have run out,
 * after which someone else may hold the run: it counts as lost too.
 * Touches nothing of the run but its own client and the atomics.
 */
static void *run_heartbeat(void *arg)
{
    struct ea_run *r = arg;
    const int lease_s = r->ag->cfg.lease_s;
    long last_ok = run_now_ms();
    char url[RUN_URL_MAX];
    json_t *body =
        json_pack("{s:s,s:i}", "workerId", r->ag->cfg.worker_id, "leaseSeconds", lease_s);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct http_resp rs = HTTP_RESP_ZERO;
    json_decref(body);
    if (!text || run_url(url, "%s/api/v1/runs/%s/heartbeat", r->ag->cfg.url, r->id_enc) != EA_OK) {
        /* without heartbeats the lease runs out and the run is taken back: say so */
        LOG_ERROR("heartbeat.failed", r->id, "cannot build the heartbeat request");
        free(text);
        return NULL;
    }
    for (;;) {
        long pause_ms = lease_s * 1000L / 3;
        struct http_req rq = {.method = "POST",
                              .url = url,
                              .bearer = run_bearer(r),
                              .content_type = "application/json",
                              .body = text,
                              .body_len = strlen(text),
                              .timeout_ms = 10000,
                              .max_body = EA_ANSWER_MAX,
                              .should_abort = run_abort_hb,
                              .abort_arg = r};
        ea_err_t rc = http_do(&r->hb, &rq, &rs);
        if (rc == EA_OK && rs.status == 401 && rq.bearer == r->token) {
            atomic_store(&r->use_key, 1); /* the run token expired: the key is accepted too */
            pause_ms = 0;
        } else if (rc == EA_ERR_ABORTED) {
            break;
        } else if (rc == EA_OK && rs.status >= 200 && rs.status < 300) {
            last_ok = run_now_ms();
        } else if (rc == EA_OK && (rs.status == 409 || rs.status == 404)) {
            LOG_WARN("run.lost", r->id,
                     "heartbeat answered %ld: the run was cancelled, finished or taken back; "
                     "stopping without reporting",
                     rs.status);
            atomic_store(&r->lost, 1);
            break;
        } else if (run_now_ms() - last_ok >= lease_s * 1000L) {
            LOG_WARN("run.lost", r->id,
                     "no heartbeat got through for the whole lease (%d s); stopping without "
                     "reporting",
                     lease_s);
            atomic_store(&r->lost, 1);
            break;
        } else {
            if (rc == EA_OK)
                LOG_WARN("heartbeat.failed", r->id, "heartbeat answered %ld: %.200s", rs.status,
                         rs.body ? rs.body : "");
            else
                LOG_WARN("heartbeat.failed", r->id, "could not send a heartbeat: %s (%s)",
                         ea_err_str(rc), rs.err);
            pause_ms = 1000;
        }
        if (pause_ms > 0 && !run_hb_sleep(r, pause_ms))
            break;
    }
    http_resp_fini(&rs);
    free(text);
    return NULL;
}

/* ---- .out: the S2-compatible endpoint, the cursor, replies ---- */

/* Strips trailing slashes; false when it is not an http(s) URL we can append a path to. */
static bool run_clean_endpoint(char *ep)
{
    size_t n = strlen(ep);
    while (n > 0 && ep[n - 1] == '/')
        ep[--n] = '\0';
    return strncmp(ep, "http://", 7) == 0 || strncmp(ep, "https://", 8) == 0;
}

/*
 * PUT on .out: the server answers where and with which credentials .out is
 * written and read (the S2-compatible endpoint, as the SDK's agents use it).
 */
static ea_err_t run_open_out(struct ea_run *r)
{
    char url[RUN_URL_MAX], ep[1024], token[EA_TOKEN_MAX], name[1024], basin[256];
    struct http_want want[] = {{"X-S2-Endpoint", ep, sizeof(ep), false, false},
                               {"X-S2-Access-Token", token, sizeof(token), false, false},
                               {"X-S2-Stream-Name", name, sizeof(name), false, false},
                               {"X-S2-Basin", basin, sizeof(basin), false, false}};
    struct http_resp rs = HTTP_RESP_ZERO;
    char *name_enc = NULL;
    ea_err_t rc = run_url(url, "%s/realtime/v1/sessions/%s/out", r->ag->cfg.url, r->session_enc);
    if (rc != EA_OK) {
        run_why(r, "session URL too long");
        return rc;
    }
    struct http_req rq = {.method = "PUT",
                          .url = url,
                          .bearer = run_bearer(r),
                          .timeout_ms = 15000,
                          .max_body = EA_ANSWER_MAX,
                          .want = want,
                          .nwant = sizeof(want) / sizeof(want[0]),
                          .should_abort = run_abort_io,
                          .abort_arg = r};
    rc = run_call(r, &r->api, &rq, &rs, RUN_TRIES, "PUT .out");
    for (size_t i = 0; rc == EA_OK && i < rq.nwant; i++) {
        if (!want[i].found || !want[i].val[0]) {
            run_why(r, "PUT .out: no usable %s header in the answer", want[i].name);
            rc = EA_ERR_PROTO;
        }
    }
    if (rc == EA_OK && !run_clean_endpoint(ep)) {
        run_why(r, "PUT .out: X-S2-Endpoint is not an http(s) URL");
        rc = EA_ERR_PROTO;
    }
    if (rc == EA_OK && !(name_enc = curl_easy_escape(r->api._h, name, 0)))
        rc = EA_ERR_NOMEM;
    if (rc == EA_OK) {
        size_t n1 = strlen(ep) + strlen(name_enc) + 32, n2 = strlen(basin) + 16;
        r->s2_url = malloc(n1);
        r->s2_token = strdup(token);
        r->s2_basin_hdr = malloc(n2);
        if (!r->s2_url || !r->s2_token || !r->s2_basin_hdr) {
            rc = EA_ERR_NOMEM;
        } else {
            snprintf(r->s2_url, n1, "%s/streams/%s/records", ep, name_enc);
            snprintf(r->s2_basin_hdr, n2, "S2-Basin: %s", basin);
        }
    }
    if (rc == EA_ERR_NOMEM)
        run_why(r, "PUT .out: out of memory");
    if (name_enc)
        curl_free(name_enc);
    http_resp_fini(&rs);
    return rc;
}

/*
 * Reads .out records [from, from + count) through the S2 endpoint (fewer when
 * the server caps the answer's size). On EA_OK *doc holds the answer, whose
 * "records" is an array, and *tail the stream's next seq.
 */
static ea_err_t run_s2_read(struct ea_run *r, uint64_t from, unsigned count, json_t **doc,
                            uint64_t *tail)
{
    char url[RUN_URL_MAX];
    const char *hdrs[] = {r->s2_basin_hdr, "S2-Format: raw", "Accept: application/json", NULL};
    struct http_resp rs = HTTP_RESP_ZERO;
    ea_err_t rc = run_url(url, "%s?seq_num=%" PRIu64 "&count=%u", r->s2_url, from, count);
    *doc = NULL;
    if (rc != EA_OK) {
        run_why(r, "stream URL too long");
        return rc;
    }
    struct http_req rq = {.method = "GET",
                          .url = url,
                          .bearer = r->s2_token,
                          .headers = hdrs,
                          .timeout_ms = 30000,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = run_abort_io,
                          .abort_arg = r};
    rc = run_call(r, &r->api, &rq, &rs, RUN_TRIES, "reading .out");
    /* JSON_ALLOW_NUL: S2 trim records carry a binary trim point, rendered with \u0000s */
    if (rc == EA_OK &&
        !(*doc = json_loadb(rs.body ? rs.body : "", rs.body_len, JSON_ALLOW_NUL, NULL))) {
        run_why(r, "reading .out: the answer is not JSON");
        rc = EA_ERR_PROTO;
    }
    json_t *tl = json_object_get(json_object_get(*doc, "tail"), "seq_num");
    if (rc == EA_OK && (!json_is_array(json_object_get(*doc, "records")) || !json_is_integer(tl) ||
                        json_integer_value(tl) < 0)) {
        run_why(r, "reading .out: the answer has no records array or no tail");
        rc = EA_ERR_PROTO;
    }
    if (rc == EA_OK && tail)
        *tail = (uint64_t)json_integer_value(tl);
    if (rc != EA_OK) {
        json_decref(*doc);
        *doc = NULL;
    }
    http_resp_fini(&rs);
    return rc;
}

/* The session-in-event-id of a turn-complete control record, or NULL for any other record. */
static const char *run_turn_cursor(const json_t *headers)
{
    const char *cursor = NULL;
    bool turn_complete = false;
    size_t i;
    json_t *h;
    json_array_foreach(headers, i, h)
    {
        const char *n = json_string_value(json_array_get(h, 0));
        const char *v = json_string_value(json_array_get(h, 1));
        if (!n || !v)
            continue;
        if (strcmp(n, "trigger-control") == 0 && strcmp(v, "turn-complete") == 0)
            turn_complete = true;
        else if (strcmp(n, "session-in-event-id") == 0)
            cursor = v;
    }
    return turn_complete ? cursor : NULL;
}

/* A seq number as written in a header: decimal digits only, as Last-Event-ID wants them. */
static bool run_parse_seq(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s || strlen(s) > 19)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

/*
 * The cursor of the LAST turn-complete on .out: the .in record the session
 * was last answered up to, by this run or an earlier one. .out is read from
 * its tail backwards, RUN_SCAN records at a time, so a long .out costs one
 * or two small reads, not a scan from the start; the scan stops at the first
 * trimmed record (a trim removes a prefix: nothing older is left). *have is
 * false when .out holds no turn-complete (a new session): .in is then
 * followed from its start.
 */
static ea_err_t run_out_cursor(struct ea_run *r, bool *have, uint64_t *cursor)
{
    json_t *doc, *rec;
    uint64_t tail, end;
    bool bottom = false;
    size_t i;
    ea_err_t rc = run_s2_read(r, 0, 1, &doc, &tail);
    *have = false;
    if (rc != EA_OK)
        return rc;
    json_decref(doc);
    for (end = tail; end > 0 && !*have && !bottom;) {
        uint64_t start = end > RUN_SCAN ? end - RUN_SCAN : 0, pos = start;
        /* [start, end) may take several reads: an answer is capped in bytes too */
        while (pos < end) {
            uint64_t before = pos;
            if ((rc = run_s2_read(r, pos, (unsigned)(end - pos), &doc, NULL)) != EA_OK)
                return rc;
            json_t *recs = json_object_get(doc, "records");
            json_t *first = json_object_get(json_array_get(recs, 0), "seq_num");
            if (!json_is_integer(first) || json_integer_value(first) != (json_int_t)pos)
                bottom = true; /* the records before `first` were trimmed */
            json_array_foreach(recs, i, rec)
            {
                json_t *sj = json_object_get(rec, "seq_num");
                uint64_t seq, v;
                if (!json_is_integer(sj) || json_integer_value(sj) < 0 ||
                    (seq = (uint64_t)json_integer_value(sj)) >= end || seq < pos)
                    break;
                pos = seq + 1;
                const char *cur = run_turn_cursor(json_object_get(rec, "headers"));
                if (cur && run_parse_seq(cur, &v)) {
                    *have = true; /* records come in order: a later one overrides */
                    *cursor = v;
                } else if (cur) {
                    LOG_WARN("run.bad_cursor", r->id,
                             "ignoring a turn-complete whose session-in-event-id is not a "
                             "number: %.40s",
                             cur);
                }
            }
            json_decref(doc);
            if (pos == before)
                break; /* nothing left in [pos, end) */
        }
        end = start;
    }
    return EA_OK;
}

/* The longest prefix of s (n bytes of valid UTF-8) that fits in max bytes and ends on a character.
 */
static size_t run_utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--; /* s[max] continues a character: cut before that character starts */
    return max;
}

/* The S2 append of a reply to .in record `seq` and the turn-complete naming it; NULL when
 * out of memory. The text is UTF-8: it comes out of a JSON parser. */
static char *run_turn_body(uint64_t seq, const char *text, size_t len, bool *cut)
{
    char id[40], seqs[24];
    size_t keep = run_utf8_cut(text, len, EA_ECHO_TEXT_MAX);
    char *body = NULL, *out = NULL;
    json_t *req = NULL;
    /* The reply's id is derived from what it answers: a reader that dedupes by id (the SDK
     * does) drops a reply written twice. */
    snprintf(id, sizeof(id), "echo-%" PRIu64, seq);
    snprintf(seqs, sizeof(seqs), "%" PRIu64, seq);
    *cut = keep < len;
    /* cut so one reply stays one record (the server caps a record at 1 MiB): a huge message
     * would otherwise fail this run and every run after it at the same record */
    json_t *env =
        json_pack("{s:{s:s,s:s%},s:s}", "data", "type", "echo", "text", text, keep, "id", id);
    if (env && *cut)
        (void)json_object_set_new(json_object_get(env, "data"), "truncated", json_true());
    if (env)
        body = json_dumps(env, JSON_COMPACT);
    if (body)
        req =
            json_pack("{s:[{s:s},{s:[[s,s],[s,s]],s:s}]}", "records", "body", body, "headers",
                      "trigger-control", "turn-complete", "session-in-event-id", seqs, "body", "");
    if (req)
        out = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    free(body);
    json_decref(env);
    return out;
}

/*
 * Appends the reply to .in record `seq` and its turn-complete in one request:
 * the server appends a request's records atomically and in order, so .out
 * never shows a reply without its cursor or a cursor without its reply.
 * Before each retry, .out is read back: an append whose answer was lost but
 * which the server took is not repeated.
 */
static ea_err_t run_write_turn(struct ea_run *r, uint64_t seq, const char *text, size_t len)
{
    bool cut;
    char *req = run_turn_body(seq, text, len, &cut);
    const char *hdrs[] = {r->s2_basin_hdr, "S2-Format: raw", NULL};
    struct http_resp rs = HTTP_RESP_ZERO;
    ea_err_t rc;
    if (!req) {
        run_why(r, "building the reply to .in seq %" PRIu64 ": out of memory", seq);
        return EA_ERR_NOMEM;
    }
    /* S2-Format: raw says bodies and header values are plain strings (not base64) */
    struct http_req rq = {.method = "POST",
                          .url = r->s2_url,
                          .bearer = r->s2_token,
                          .content_type = "application/json",
                          .headers = hdrs,
                          .body = req,
                          .body_len = strlen(req),
                          .timeout_ms = 15000,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = run_abort_io,
                          .abort_arg = r};
    for (unsigned attempt = 0;; attempt++) {
        rc = run_call(r, &r->api, &rq, &rs, 1, "appending to .out");
        if (rc != EA_ERR_NET || attempt + 1 == RUN_TRIES)
            break;
        LOG_WARN("http.retry", r->id, "%s; checking .out, then trying again", r->why);
        if (!http_sleep_ms(http_backoff_ms(attempt), run_abort_io, r)) {
            rc = EA_ERR_ABORTED;
            break;
        }
        bool have;
        uint64_t cur;
        if (run_out_cursor(r, &have, &cur) == EA_OK && have && cur >= seq) {
            LOG_INFO("turn.answered", r->id,
                     ".in seq %" PRIu64 " answered (the lost append landed)", seq);
            r->turns++;
            free(req);
            http_resp_fini(&rs);
            return EA_OK;
        }
    }
    if (rc == EA_OK) {
        json_t *ack = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        json_t *start = json_object_get(json_object_get(ack, "start"), "seq_num");
        r->turns++;
        LOG_INFO("turn.answered", r->id,
                 ".in seq %" PRIu64 " answered at .out seq %" JSON_INTEGER_FORMAT "%s", seq,
                 json_is_integer(start) ? json_integer_value(start) : (json_int_t)-1,
                 cut ? " (text cut)" : "");
        json_decref(ack);
    }
    free(req);
    http_resp_fini(&rs);
    return rc;
}

/* ---- following .in ---- */

/* True for records that carry no message: S2 commands (first header has an empty name) and
 * trigger-control records. */
static bool run_is_control(const json_t *headers)
{
    size_t i;
    json_t *h;
    const char *first = json_string_value(json_array_get(json_array_get(headers, 0), 0));
    if (first && first[0] == '\0')
        return true;
    json_array_foreach(headers, i, h)
    {
        const char *n = json_string_value(json_array_get(h, 0));
        if (n && strcmp(n, "trigger-control") == 0)
            return true;
    }
    return false;
}

/*
 * Answers one message: the body is the envelope {"data": <string|object>, "id": "<partId>"},
 * whose data is echoed (a string as it is, anything else as compact JSON); a body that is
 * not an envelope is echoed as it is, as the SDK's reader shows it as a raw string chunk.
 * An empty text is no message: nothing to answer.
 */
static ea_err_t run_answer(struct ea_run *r, uint64_t seq, const char *body, size_t body_len)
{
    json_t *env = json_loadb(body, body_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    json_t *data = json_object_get(env, "data");
    char *dumped = NULL;
    const char *text = body;
    size_t len = body_len;
    ea_err_t rc = EA_OK;
    if (json_is_string(data)) {
        text = json_string_value(data);
        len = json_string_length(data);
    } else if (data) {
        if (!(dumped = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY))) {
            run_why(r, "echoing .in seq %" PRIu64 ": out of memory", seq);
            rc = EA_ERR_NOMEM;
        }
        text = dumped;
        len = dumped ? strlen(dumped) : 0;
    }
    if (rc == EA_OK && len > 0)
        rc = run_write_turn(r, seq, text, len);
    free(dumped);
    json_decref(env);
    return rc;
}

/*
 * One record of a batch. EA_ERR_PROTO means this record is malformed (it is
 * neither answered nor skipped); any other error comes from writing the reply.
 */
static ea_err_t run_on_record(struct ea_run *r, const json_t *rec)
{
    json_t *seqj = json_object_get(rec, "seq_num");
    if (!json_is_integer(seqj) || json_integer_value(seqj) < 0) {
        run_why(r, ".in: a record without a valid seq_num");
        return EA_ERR_PROTO;
    }
    uint64_t seq = (uint64_t)json_integer_value(seqj);
    if (r->have_seq && seq <= r->last_seq)
        return EA_OK; /* delivered again after a re-subscribe: handled already */
    json_t *bodyj = json_object_get(rec, "body");
    const char *body = json_string_value(bodyj);
    size_t body_len = json_string_length(bodyj);
    ea_err_t rc = EA_OK;
    if (!run_is_control(json_object_get(rec, "headers")) && body && body_len > 0)
        rc = run_answer(r, seq, body, body_len);
    if (rc == EA_OK) {
        r->have_seq = true;
        r->last_seq = seq;
    }
    return rc;
}

static int run_on_batch(struct ea_run *r, const char *data, size_t len)
{
    json_error_t jerr;
    /* JSON_ALLOW_NUL: the body of an S2 trim record is its binary trim point, which the
     * server renders as (lossy) UTF-8, \u0000s included; it is skipped, but must parse */
    json_t *batch = json_loadb(data, len, JSON_ALLOW_NUL, &jerr), *recs, *rec;
    size_t i;
    if (!json_is_array(recs = json_object_get(batch, "records"))) {
        LOG_WARN("run.bad_batch", r->id, "a batch on .in is not {\"records\": [...]}: %s",
                 batch ? "no records array" : jerr.text);
        json_decref(batch);
        r->stop = RUN_STOP_RETRY;
        return 1;
    }
    r->progressed = true;
    if (json_array_size(recs) > 0) /* the server's idle wait restarts after every batch too */
        r->idle_until = run_now_ms() + r->idle_s * 1000L;
    json_array_foreach(recs, i, rec)
    {
        ea_err_t rc = run_on_record(r, rec);
        if (rc == EA_OK)
            continue;
        if (rc == EA_ERR_ABORTED) {
            r->stop = RUN_STOP_ABORTED;
        } else if (rc == EA_ERR_PROTO) {
            /* a malformed record: re-subscribing resumes at it, and gives up if it persists */
            LOG_WARN("run.bad_batch", r->id, "%s", r->why);
            r->stop = RUN_STOP_RETRY;
        } else {
            r->stop = RUN_STOP_FATAL;
        }
        json_decref(batch);
        return 1;
    }
    json_decref(batch);
    return 0;
}

/* sse.h callback: one event of the .in subscription. Non-zero ends the subscription. */
static int run_on_event(void *arg, const struct sse_event *ev)
{
    struct ea_run *r = arg;
    if (strcmp(ev->type, "batch") == 0)
        return run_on_batch(r, ev->data, ev->data_len);
    if (strcmp(ev->type, "ping") == 0) {
        r->progressed = true;
        return 0;
    }
    if (strcmp(ev->type, "error") == 0) {
        LOG_WARN("run.stream_error", r->id, "the .in stream reported an error: %.300s", ev->data);
        r->stop = RUN_STOP_RETRY;
        return 1;
    }
    if (strcmp(ev->type, "message") == 0 && strcmp(ev->data, "[DONE]") == 0) {
        r->stop = RUN_STOP_DONE;
        return 1;
    }
    return 0; /* events of kinds we do not know are not ours to judge */
}

/* http.h on_data: the subscription's bytes, as they arrive. */
static int run_on_sse_bytes(void *arg, const char *p, size_t n)
{
    struct ea_run *r = arg;
    int rc = sse_feed(&r->parser, p, n);
    if (rc == SSE_ERR_TOOBIG || rc == SSE_ERR_NOMEM) {
        run_why(r, ".in: %s",
                rc == SSE_ERR_TOOBIG ? "an SSE event over the agent's cap" : "out of memory");
        r->stop = RUN_STOP_FATAL;
    }
    return rc != 0;
}

/*
 * One subscription to .in after the cursor, waiting at most wait_s at the
 * tail. Returns EA_OK when the server ended it ([DONE]: nothing new for
 * wait_s), EA_ERR_NET when it should be made again, EA_ERR_ABORTED when a
 * stop predicate fired, anything else to fail the run (r->why set).
 */
static ea_err_t run_subscribe(struct ea_run *r, int wait_s)
{
    char url[RUN_URL_MAX], timeout[48], last_id[48];
    const char *hdrs[5] = {"Accept: text/event-stream", "Cache-Control: no-cache", timeout, NULL,
                           NULL};
    struct http_resp rs = HTTP_RESP_ZERO;
    ea_err_t rc = run_url(url, "%s/realtime/v1/sessions/%s/in", r->ag->cfg.url, r->session_enc);
    if (rc != EA_OK) {
        run_why(r, "session URL too long");
        return rc;
    }
    snprintf(timeout, sizeof(timeout), "Timeout-Seconds: %d", wait_s);
    if (r->have_seq) {
        snprintf(last_id, sizeof(last_id), "Last-Event-ID: %" PRIu64, r->last_seq);
        hdrs[3] = last_id;
    }
    struct http_req rq = {.method = "GET",
                          .url = url,
                          .bearer = run_bearer(r),
                          .headers = hdrs,
                          /* pings (every 5-15 s) keep a live stream busy: one silent well past
                           * that is dead */
                          .low_speed_s = 45,
                          .max_body = EA_ERRBODY_MAX,
                          .should_abort = run_abort_sse,
                          .abort_arg = r,
                          .on_data = run_on_sse_bytes,
                          .data_arg = r};
    sse_reset(&r->parser);
    r->stop = RUN_STOP_NONE;
    r->progressed = false;
    rc = http_do(&r->sse, &rq, &rs);
    if (rc == EA_OK && rs.status == 401 && rq.bearer == r->token) {
        atomic_store(&r->use_key, 1); /* the run token expired: subscribe again with the key */
        snprintf(rs.err, sizeof(rs.err), "the run token was refused");
        rc = EA_ERR_NET;
    } else if (rc == EA_ERR_STOPPED) {
        rc = r->stop == RUN_STOP_DONE      ? EA_OK
             : r->stop == RUN_STOP_RETRY   ? EA_ERR_NET
             : r->stop == RUN_STOP_ABORTED ? EA_ERR_ABORTED
                                           : EA_ERR_PROTO; /* r->why says why */
        if (rc == EA_ERR_NET)
            snprintf(rs.err, sizeof(rs.err), "the stream failed");
    } else if (rc == EA_OK && (rs.status < 200 || rs.status >= 300)) {
        if (http_is_transient(rc, rs.status)) {
            snprintf(rs.err, sizeof(rs.err), "answered %ld", rs.status);
            rc = EA_ERR_NET;
        } else {
            run_why(r, "subscribing to .in answered %ld: %.200s", rs.status,
                    rs.body ? rs.body : "");
            rc = EA_ERR_HTTP;
        }
    } else if (rc == EA_OK) {
        snprintf(rs.err, sizeof(rs.err), "the stream ended without [DONE]");
        rc = EA_ERR_NET; /* a body cut short by the connection's close */
    } else if (rc != EA_ERR_NET && rc != EA_ERR_ABORTED) {
        run_why(r, "subscribing to .in: %s", ea_err_str(rc));
    }
    if (rc == EA_ERR_NET) {
        if (r->have_seq)
            LOG_WARN("run.resubscribe", r->id,
                     ".in subscription dropped (%s); resuming after %" PRIu64,
                     rs.err[0] ? rs.err : "no answer", r->last_seq);
        else
            LOG_WARN("run.resubscribe", r->id,
                     ".in subscription dropped (%s); resuming from the start",
                     rs.err[0] ? rs.err : "no answer");
    }
    http_resp_fini(&rs);
    return rc;
}

/*
 * Follows .in until it has been quiet for the idle timeout, or the agent
 * stops. The server's wait is at most 600 s, so a longer idle timeout takes
 * several subscriptions; a dropped one is made again from the cursor with
 * backoff, and one that cannot be made for RUN_FOLLOW_GIVEUP_MS fails the run.
 */
static ea_err_t run_follow(struct ea_run *r)
{
    unsigned fails = 0;
    long first_fail = 0;
    r->idle_until = run_now_ms() + r->idle_s * 1000L;
    for (;;) {
        if (run_abort_io(r))
            return EA_ERR_ABORTED;
        if (atomic_load(&r->ag->stopping)) {
            LOG_INFO("run.stopping", r->id, "the agent is stopping: completing the run");
            return EA_OK;
        }
        long left = r->idle_until - run_now_ms();
        if (left <= 0)
            return EA_OK;
        int wait_s = left > 600000 ? 600 : (int)((left + 999) / 1000);
        ea_err_t rc = run_subscribe(r, wait_s);
        if (rc == EA_OK) {
            fails = 0;
            /* the server's wait and ours end together, give or take the clocks' skew */
            if (r->idle_until - run_now_ms() < 1000)
                return EA_OK;
            continue;
        }
        if (rc == EA_ERR_ABORTED)
            continue; /* the loop's top says whether to stop or to complete */
        if (rc != EA_ERR_NET)
            return rc;
        if (r->progressed)
            fails = 0;
        if (fails++ == 0) {
            first_fail = run_now_ms();
        } else if (run_now_ms() - first_fail > RUN_FOLLOW_GIVEUP_MS) {
            run_why(r, "could not follow .in for %ld s", RUN_FOLLOW_GIVEUP_MS / 1000);
            return EA_ERR_NET;
        }
        (void)http_sleep_ms(http_backoff_ms(fails - 1), run_abort_sse, r);
    }
}

/* ---- sleeping on .in: the session-stream wait, then suspend ---- */

/* POSTs a JSON body (stolen) to url with the secret key; EA_OK with a 2xx answer in *rs. */
static ea_err_t run_post_key(struct ea_run *r, const char *url, json_t *body, const char *what,
                             struct http_resp *rs)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        run_why(r, "%s: out of memory", what);
        return EA_ERR_NOMEM;
    }
    struct http_req rq = {.method = "POST",
                          .url = url,
                          .bearer = r->ag->cfg.key,
                          .content_type = "application/json",
                          .body = text,
                          .body_len = strlen(text),
                          .timeout_ms = 10000,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = run_abort_io,
                          .abort_arg = r};
    ea_err_t rc = run_call(r, &r->api, &rq, rs, RUN_TRIES, what);
    free(text);
    return rc;
}

/*
 * .in was idle: make a waitpoint on its next record (after the cursor) and block the run on
 * it, so that run_main suspends the run instead of completing it. false (logged) when either
 * step failed: the run then completes as an idle run does.
 */
static bool run_sleep_prepare(struct ea_run *r)
{
    char url[RUN_URL_MAX], wp[128];
    struct http_resp rs = HTTP_RESP_ZERO;
    char timeout[24];
    snprintf(timeout, sizeof(timeout), "%ds", r->ag->cfg.sleep_s);
    json_t *body = json_pack("{s:s,s:s,s:s}", "session", r->session, "io", "in", "timeout",
                             timeout);
    if (body && r->have_seq)
        json_object_set_new(body, "lastSeqNum", json_integer((json_int_t)r->last_seq));
    bool ok = false;
    if (run_url(url, "%s/api/v1/runs/%s/session-streams/wait", r->ag->cfg.url, r->id_enc) ==
            EA_OK &&
        run_post_key(r, url, body, "session-stream wait", &rs) == EA_OK) {
        json_t *ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        const char *id = json_string_value(json_object_get(ans, "waitpointId"));
        snprintf(wp, sizeof(wp), "%s", id ? id : "");
        json_decref(ans);
        http_resp_fini(&rs);
        rs = (struct http_resp)HTTP_RESP_ZERO;
        if (wp[0] && strspn(wp, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(wp) &&
            run_url(url, "%s/engine/v1/runs/%s/waitpoints/tokens/%s/wait", r->ag->cfg.url,
                    r->id_enc, wp) == EA_OK &&
            run_post_key(r, url, json_object(), "block on the waitpoint", &rs) == EA_OK)
            ok = true;
    }
    http_resp_fini(&rs);
    if (!ok)
        LOG_WARN("run.sleep_failed", r->id, "could not wait on .in (%s): completing the run",
                 r->why);
    return ok;
}

/*
 * Gives the run back (POST /suspend): true when it is WAITING now. false: a record came
 * meanwhile (nothing pending), or the call failed; the run then completes and hands over.
 */
static bool run_suspend(struct ea_run *r)
{
    struct http_resp rs = HTTP_RESP_ZERO;
    json_t *body = json_pack("{s:s}", "workerId", r->ag->cfg.worker_id);
    bool suspended = false;
    if (run_post_route(r, "suspend", body, &rs) == EA_OK) {
        json_t *ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        suspended = json_is_true(json_object_get(ans, "suspended"));
        json_decref(ans);
    } else {
        LOG_WARN("run.suspend_failed", r->id, "could not suspend the run: %s", r->why);
    }
    json_decref(body);
    http_resp_fini(&rs);
    if (suspended)
        LOG_INFO("run.suspended", r->id,
                 "asleep on .in after %u turn(s): no worker holds it until the next message",
                 r->turns);
    return suspended;
}

/* ---- the end of a run ---- */

static bool run_complete(struct ea_run *r)
{
    struct http_resp rs = HTTP_RESP_ZERO;
    json_t *body = json_pack("{s:s,s:{s:i}}", "workerId", r->ag->cfg.worker_id, "output", "turns",
                             (int)r->turns);
    ea_err_t rc = run_post_route(r, "complete", body, &rs);
    if (rc == EA_OK)
        LOG_INFO("run.completed", r->id, "completed after %u turn(s)", r->turns);
    else if (rc == EA_ERR_HTTP && rs.status == 409)
        LOG_WARN("run.lost", r->id, "complete answered 409: the run was taken back meanwhile");
    else if (rc != EA_ERR_ABORTED && atomic_load(&r->ag->stopping))
        /* the tree may be stopping at the same moment as the agent (make run's Ctrl-C) */
        LOG_WARN("run.complete_failed", r->id,
                 "could not complete the run while stopping: %s; it is left to its lease", r->why);
    else if (rc != EA_ERR_ABORTED)
        LOG_ERROR("run.complete_failed", r->id, "could not complete the run: %s", r->why);
    json_decref(body);
    http_resp_fini(&rs);
    return rc == EA_OK;
}

/* Fails the run with r->why. With attempts left the server queues it again. */
static void run_fail(struct ea_run *r)
{
    struct http_resp rs = HTTP_RESP_ZERO;
    char why[sizeof(r->why)];
    snprintf(why, sizeof(why), "%s", r->why[0] ? r->why : "unknown error");
    json_t *body = json_pack("{s:s,s:{s:s,s:s}}", "workerId", r->ag->cfg.worker_id, "error",
                             "message", why, "name", "EchoAgentError");
    ea_err_t rc = run_post_route(r, "fail", body, &rs);
    if (rc == EA_OK) {
        json_t *ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        LOG_ERROR("run.failed", r->id, "failed after %u turn(s)%s: %s", r->turns,
                  json_is_true(json_object_get(ans, "retrying")) ? ", queued again" : "", why);
        json_decref(ans);
    } else if (rc != EA_ERR_ABORTED) {
        LOG_ERROR("run.failed", r->id, "%s; could not report it: %s", why, r->why);
    }
    json_decref(body);
    http_resp_fini(&rs);
}

/*
 * After the run completed: a message appended while it was still live (in
 * the moment between the idle end and the completion, or during a shutdown)
 * triggered no continuation, since the session had a live run. When .in
 * holds unanswered messages, end-and-continue swaps in a continuation run;
 * if a continuation exists already (the session's run is not this one any
 * more), the server answers swapped: false and nothing changes.
 */
static void run_hand_over(struct ea_run *r)
{
    char url[RUN_URL_MAX], after[48] = "";
    struct http_resp rs = HTTP_RESP_ZERO;
    json_t *doc = NULL, *rec, *body = NULL;
    size_t i, pending = 0;
    if (r->have_seq)
        snprintf(after, sizeof(after), "?afterEventId=%" PRIu64, r->last_seq);
    if (run_url(url, "%s/realtime/v1/sessions/%s/in/records%s", r->ag->cfg.url, r->session_enc,
                after) != EA_OK)
        return;
    struct http_req rq = {.method = "GET",
                          .url = url,
                          .bearer = run_bearer(r),
                          .timeout_ms = 30000,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = run_abort_final,
                          .abort_arg = r};
    ea_err_t rc = run_call(r, &r->api, &rq, &rs, RUN_TRIES, "reading .in");
    if (rc == EA_OK &&
        !(doc = json_loadb(rs.body ? rs.body : "", rs.body_len, JSON_ALLOW_NUL, NULL))) {
        run_why(r, "reading .in: the answer is not JSON");
        rc = EA_ERR_PROTO;
    }
    if (rc != EA_OK) {
        LOG_WARN("run.handover_failed", r->id,
                 "could not check .in for messages left unanswered: %s", r->why);
        http_resp_fini(&rs);
        return;
    }
    http_resp_fini(&rs);
    /* the same messages as the follower answers: /records shows control records with their
     * headers and an empty data, and unwraps the envelope */
    json_array_foreach(json_object_get(doc, "records"), i, rec)
    {
        json_t *data = json_object_get(rec, "data");
        if (!run_is_control(json_object_get(rec, "headers")) && data &&
            !(json_is_string(data) && json_string_length(data) == 0))
            pending++;
    }
    json_decref(doc);
    if (pending == 0)
        return;
    body = json_pack("{s:s,s:s}", "callingRunId", r->id, "reason", "continuation");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text || run_url(url, "%s/api/v1/sessions/%s/end-and-continue", r->ag->cfg.url,
                         r->session_enc) != EA_OK) {
        free(text);
        return;
    }
    struct http_req eq = {.method = "POST",
                          .url = url,
                          .bearer = run_bearer(r),
                          .content_type = "application/json",
                          .body = text,
                          .body_len = strlen(text),
                          .timeout_ms = 15000,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = run_abort_final,
                          .abort_arg = r};
    if (run_call(r, &r->api, &eq, &rs, RUN_TRIES, "end-and-continue") == EA_OK) {
        json_t *ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        const char *next = json_string_value(json_object_get(ans, "runId"));
        if (json_is_true(json_object_get(ans, "swapped")))
            LOG_INFO("run.continued", r->id,
                     "%zu message(s) on .in are unanswered: continuation %s queued", pending,
                     next ? next : "(unknown)");
        else
            LOG_INFO("run.continued", r->id,
                     "%zu message(s) on .in are unanswered; run %s has the session already",
                     pending, next ? next : "(unknown)");
        json_decref(ans);
    } else {
        LOG_WARN("run.handover_failed", r->id,
                 "%zu message(s) on .in are unanswered and no continuation was queued: %s", pending,
                 r->why);
    }
    free(text);
    http_resp_fini(&rs);
}

/* ---- the run thread ---- */

static ea_err_t run_work(struct ea_run *r)
{
    ea_err_t rc;
    if (!r->session) {
        run_why(r, "the run has no sessionId: the echo task only runs for sessions");
        return EA_ERR_PROTO;
    }
    if ((rc = run_open_out(r)) != EA_OK ||
        (rc = run_out_cursor(r, &r->have_seq, &r->last_seq)) != EA_OK)
        return rc;
    if (r->have_seq)
        LOG_INFO("run.cursor", r->id, ".in answered up to seq %" PRIu64 ", resuming after it",
                 r->last_seq);
    else
        LOG_INFO("run.cursor", r->id, "no turn-complete on .out: following .in from the start");
    if (r->woke_late) /* it slept on .in for TETHER_ECHO_SLEEP_SECONDS: its end */
        return EA_OK;
    rc = run_follow(r);
    if (rc == EA_OK && r->ag->cfg.sleep_s > 0 && !atomic_load(&r->ag->stopping))
        r->sleeping = run_sleep_prepare(r);
    return rc;
}

static void *run_main(void *arg)
{
    struct ea_run *r = arg;
    ea_err_t rc;
    int e = pthread_create(&r->hb_thread, NULL, run_heartbeat, r);
    if (e != 0) {
        run_why(r, "could not start the heartbeat thread: %s", strerror(e));
        rc = EA_ERR_NOMEM;
    } else {
        rc = run_work(r);
        /* the heartbeat stops before the outcome is reported: a late one would answer 409 */
        (void)pthread_mutex_lock(&r->mu);
        atomic_store(&r->hb_quit, 1);
        (void)pthread_cond_signal(&r->cv);
        (void)pthread_mutex_unlock(&r->mu);
        (void)pthread_join(r->hb_thread, NULL);
    }
    if (atomic_load(&r->lost)) {
        /* logged by the heartbeat: the run is someone else's now, nothing to report */
    } else if (atomic_load(&r->ag->abandon)) {
        LOG_WARN("run.abandoned", r->id,
                 "shutdown grace over after %u turn(s): the run is left to its lease", r->turns);
    } else if (rc == EA_OK) {
        if (!(r->sleeping && run_suspend(r)) && run_complete(r))
            run_hand_over(r);
    } else {
        run_fail(r);
    }

    (void)pthread_mutex_lock(&r->ag->mu);
    atomic_store(&r->ended, 1);
    (void)pthread_cond_broadcast(&r->ag->cv);
    (void)pthread_mutex_unlock(&r->ag->mu);
    return NULL;
}

/* ---- lifecycle (main thread) ---- */

static void run_free(struct ea_run *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->token);
    free(r->session);
    if (r->id_enc)
        curl_free(r->id_enc);
    if (r->session_enc)
        curl_free(r->session_enc);
    free(r->s2_url);
    free(r->s2_token);
    free(r->s2_basin_hdr);
    sse_fini(&r->parser);
    http_client_fini(&r->api);
    http_client_fini(&r->sse);
    http_client_fini(&r->hb);
    (void)pthread_cond_destroy(&r->cv);
    (void)pthread_mutex_destroy(&r->mu);
    free(r);
}

static char *run_strdup_or_null(const json_t *v)
{
    const char *s = json_string_value(v);
    return s && s[0] ? strdup(s) : NULL;
}

/* idleTimeoutInSeconds: the run's, else its payload's, else 60. */
static int run_idle_seconds(const json_t *desc)
{
    const json_t *v = json_object_get(desc, "idleTimeoutInSeconds");
    if (!json_is_number(v))
        v = json_object_get(json_object_get(desc, "payload"), "idleTimeoutInSeconds");
    double s = json_is_number(v) ? json_number_value(v) : RUN_IDLE_DEFAULT_S;
    return s < 1 ? 1 : s > 86400 ? 86400 : (int)s;
}

/* The locks of a new run; the heartbeat's sleep is measured on the monotonic clock so that
 * wall-clock jumps do not make it skip a beat or spin. */
static bool run_locks_init(struct ea_run *r)
{
    pthread_condattr_t ca;
    int e;
    if (pthread_mutex_init(&r->mu, NULL) != 0)
        return false;
    if (pthread_condattr_init(&ca) != 0) {
        (void)pthread_mutex_destroy(&r->mu);
        return false;
    }
    e = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (e == 0)
        e = pthread_cond_init(&r->cv, &ca);
    (void)pthread_condattr_destroy(&ca);
    if (e != 0)
        (void)pthread_mutex_destroy(&r->mu);
    return e == 0;
}

ea_err_t ea_run_start(struct ea_agent *ag, const json_t *desc, struct ea_run **out)
{
    struct ea_run *r = calloc(1, sizeof(*r));
    sigset_t all, old;
    int e;
    *out = NULL;
    if (!r || !run_locks_init(r)) {
        free(r);
        LOG_ERROR("run.start_failed", json_string_value(json_object_get(desc, "id")),
                  "out of memory; the run is left to its lease");
        return EA_ERR_NOMEM;
    }
    r->ag = ag;
    sse_init(&r->parser, EA_SSE_EVENT_MAX, run_on_event, r);
    r->id = run_strdup_or_null(json_object_get(desc, "id"));
    if (!r->id) {
        LOG_ERROR("run.invalid", NULL, "a dequeued run has no id; ignoring it");
        run_free(r);
        return EA_ERR_PROTO;
    }
    r->token = run_strdup_or_null(json_object_get(desc, "token"));
    r->session = run_strdup_or_null(json_object_get(desc, "sessionId"));
    r->idle_s = run_idle_seconds(desc);
    /* a resume: the run slept on .in (run_sleep_prepare); its waitpoint's output is the
     * record that woke it, which following .in from the cursor reads again */
    const json_t *woke = json_array_get(
        json_object_get(json_object_get(desc, "resume"), "waitpoints"), 0);
    if (woke) {
        const char *data = json_string_value(json_object_get(woke, "output"));
        r->woke_late = json_is_true(json_object_get(woke, "outputIsError"));
        if (r->woke_late)
            LOG_INFO("run.resumed", r->id, "its sleep on .in timed out: completing");
        else
            LOG_INFO("run.resumed", r->id, "woken by a message on .in (%zu bytes)",
                     data ? strlen(data) : 0);
    }
    if (!r->token) /* the routes used here all take the secret key too */
        atomic_store(&r->use_key, 1);
    if (http_client_init(&r->api) != EA_OK || http_client_init(&r->sse) != EA_OK ||
        http_client_init(&r->hb) != EA_OK || !(r->id_enc = curl_easy_escape(r->api._h, r->id, 0)) ||
        (r->session && !(r->session_enc = curl_easy_escape(r->api._h, r->session, 0)))) {
        LOG_ERROR("run.start_failed", r->id, "out of memory; the run is left to its lease");
        run_free(r);
        return EA_ERR_NOMEM;
    }
    LOG_INFO("run.started", r->id,
             "session %s, attempt %" JSON_INTEGER_FORMAT ", idle timeout %d s%s",
             r->session ? r->session : "(none)",
             json_integer_value(json_object_get(desc, "attempt")), r->idle_s,
             json_is_true(json_object_get(json_object_get(desc, "payload"), "continuation"))
                 ? ", continuation"
                 : "");

    /* Signals are main's business: threads start with them blocked (the mask is inherited). */
    (void)sigfillset(&all);
    (void)pthread_sigmask(SIG_BLOCK, &all, &old);
    e = pthread_create(&r->thread, NULL, run_main, r);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        LOG_ERROR("run.start_failed", r->id,
                  "could not start a thread (%s); the run is left to its lease", strerror(e));
        run_free(r);
        return EA_ERR_NOMEM;
    }
    *out = r;
    return EA_OK;
}

bool ea_run_ended(struct ea_run *r)
{
    return atomic_load(&r->ended) != 0;
}

void ea_run_join(struct ea_run *r)
{
    (void)pthread_join(r->thread, NULL);
    run_free(r);
}
