/*
 * out.c - a run's .out: the S2-compatible endpoint the server names, the
 * cursor read back from its tail (the last turn-complete), and the replies
 * appended with their turn-complete in one request.
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
ea_err_t run_open_out(struct ea_run *r)
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
ea_err_t run_out_cursor(struct ea_run *r, bool *have, uint64_t *cursor)
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
ea_err_t run_write_turn(struct ea_run *r, uint64_t seq, const char *text, size_t len)
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
