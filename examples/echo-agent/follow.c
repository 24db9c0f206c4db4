/*
 * follow.c - following a run's .in: the SSE subscription from the cursor,
 * each record answered on .out (out.c), control records skipped, and the
 * idle timeout.
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

#include "jlog.h"
#include "run.h"

/* True for records that carry no message: S2 commands (first header has an empty name) and
 * trigger-control records. */
bool run_is_control(const json_t *headers)
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
int run_on_event(void *arg, const struct sse_event *ev)
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
ea_err_t run_follow(struct ea_run *r)
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
