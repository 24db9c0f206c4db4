/*
 * http.c - libcurl glue for http.h. Every transfer is bounded: by size (what
 * is kept in memory), by time (connect, total or low-speed limits) and by the
 * caller's stop predicate, which libcurl's progress callback polls at least
 * about once a second even when nothing moves.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http.h"
#include "jlog.h"

#define HTTP_CONNECT_TIMEOUT_MS 10000L

/* One transfer's state, seen by the callbacks. */
struct http_xfer {
    struct http_client *c;
    const struct http_req *rq;
    struct http_resp *rs;
    size_t cap;     /* of rs->body */
    bool streaming; /* the status is known and 2xx with on_data set */
    bool status_checked;
    bool toobig, nomem, stopped;
};

ea_err_t http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? EA_OK : EA_ERR_NOMEM;
}

void http_global_fini(void)
{
    curl_global_cleanup();
}

ea_err_t http_client_init(struct http_client *c)
{
    c->_h = curl_easy_init();
    return c->_h ? EA_OK : EA_ERR_NOMEM;
}

void http_client_fini(struct http_client *c)
{
    if (c->_h)
        curl_easy_cleanup(c->_h);
    c->_h = NULL;
}

void http_resp_fini(struct http_resp *rs)
{
    free(rs->body);
    rs->body = NULL;
    rs->body_len = 0;
    rs->status = 0;
    rs->err[0] = '\0';
}

static bool http_ok_status(long st)
{
    return st >= 200 && st < 300;
}

/* Keeps n more bytes of body, up to `max`; past it sets toobig (2xx) or drops them (errors). */
static size_t http_keep(struct http_xfer *x, const char *p, size_t n, size_t max, bool strict)
{
    struct http_resp *rs = x->rs;
    if (rs->body_len + n > max) {
        if (strict) {
            x->toobig = true;
            return 0;
        }
        n = max - rs->body_len; /* an error body is only for the log: keep its start */
    }
    if (rs->body_len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 1024;
        while (cap < rs->body_len + n + 1)
            cap *= 2;
        char *np = realloc(rs->body, cap);
        if (!np) {
            x->nomem = true;
            return 0;
        }
        rs->body = np;
        x->cap = cap;
    }
    memcpy(rs->body + rs->body_len, p, n);
    rs->body_len += n;
    rs->body[rs->body_len] = '\0';
    return n;
}

static size_t http_on_write(char *p, size_t size, size_t nmemb, void *arg)
{
    struct http_xfer *x = arg;
    size_t n = size * nmemb;
    if (!x->status_checked) {
        /* the status line has been read before the first body byte arrives */
        long st = 0;
        if (curl_easy_getinfo(x->c->_h, CURLINFO_RESPONSE_CODE, &st) == CURLE_OK)
            x->rs->status = st;
        x->streaming = x->rq->on_data && http_ok_status(x->rs->status);
        x->status_checked = true;
    }
    if (x->streaming) {
        if (x->rq->on_data(x->rq->data_arg, p, n) != 0) {
            x->stopped = true;
            return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
        }
        return n;
    }
    if (http_ok_status(x->rs->status)) {
        if (http_keep(x, p, n, x->rq->max_body, true) != n)
            return 0;
        return n;
    }
    if (http_keep(x, p, n, EA_ERRBODY_MAX, false) == 0 && x->nomem)
        return 0;
    return n; /* the rest of an error body is read and dropped */
}

static size_t http_on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    struct http_xfer *x = arg;
    size_t n = size * nmemb;
    const struct http_req *rq = x->rq;
    /* A new status line starts a new header block (after a 100 Continue, say): forget the last. */
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        for (size_t i = 0; i < rq->nwant; i++)
            rq->want[i].found = rq->want[i].too_long = false;
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return n;
    size_t name_len = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (size_t i = 0; i < rq->nwant; i++) {
        struct http_want *w = &rq->want[i];
        if (strlen(w->name) != name_len || strncasecmp(w->name, p, name_len) != 0)
            continue;
        size_t vlen = (size_t)(end - v);
        w->too_long = vlen >= w->cap;
        w->found = !w->too_long;
        if (w->found) {
            memcpy(w->val, v, vlen);
            w->val[vlen] = '\0';
        }
    }
    return n;
}

static int http_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow)
{
    struct http_xfer *x = arg;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return x->rq->should_abort(x->rq->abort_arg) ? 1 : 0;
}

/* Sets every option of one request; false when libcurl refused one. */
static bool http_setup(struct http_xfer *x, struct curl_slist *hdrs)
{
    CURL *h = x->c->_h;
    const struct http_req *rq = x->rq;
    bool ok = curl_easy_setopt(h, CURLOPT_URL, rq->url) == CURLE_OK &&
              /* signals for DNS timeouts are not thread-safe; threads are what we use */
              curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, HTTP_CONNECT_TIMEOUT_MS) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_USERAGENT, "tether-echo-agent/1") == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_on_write) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_WRITEDATA, x) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->rs->err) == CURLE_OK;
    if (ok && rq->low_speed_s > 0)
        ok = curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, rq->low_speed_s) == CURLE_OK;
    if (ok && rq->nwant > 0)
        ok = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, http_on_header) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_HEADERDATA, x) == CURLE_OK;
    if (ok && rq->should_abort)
        ok = curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, http_on_progress) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_XFERINFODATA, x) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
    if (ok && strcmp(rq->method, "GET") != 0) {
        /* POSTFIELDS with an explicit size sends exactly these bytes, even none (the PUT) */
        ok = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len) ==
                 CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "") == CURLE_OK;
        if (ok && strcmp(rq->method, "POST") != 0)
            ok = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method) == CURLE_OK;
    }
    return ok;
}

/* Builds the request's header list; NULL when out of memory or the credential is too long. */
static struct curl_slist *http_headers(const struct http_req *rq)
{
    struct curl_slist *l = NULL, *t;
    char line[EA_TOKEN_MAX + 64];
    /* without these, libcurl would add a form Content-Type and, for big bodies, Expect: 100 */
    const char *fixed[] = {"Expect:", "Content-Type:"};
    for (size_t i = 0; i < 2; i++) {
        if (i == 1 && rq->content_type)
            continue;
        if (!(t = curl_slist_append(l, fixed[i])))
            goto fail;
        l = t;
    }
    if (rq->content_type) {
        snprintf(line, sizeof(line), "Content-Type: %s", rq->content_type);
        if (!(t = curl_slist_append(l, line)))
            goto fail;
        l = t;
    }
    if (rq->bearer) {
        if (strlen(rq->bearer) > EA_TOKEN_MAX)
            goto fail;
        snprintf(line, sizeof(line), "Authorization: Bearer %s", rq->bearer);
        if (!(t = curl_slist_append(l, line)))
            goto fail;
        l = t;
    }
    for (const char *const *hp = rq->headers; hp && *hp; hp++) {
        if (!(t = curl_slist_append(l, *hp)))
            goto fail;
        l = t;
    }
    return l;
fail:
    curl_slist_free_all(l);
    return NULL;
}

ea_err_t http_do(struct http_client *c, const struct http_req *rq, struct http_resp *rs)
{
    struct http_xfer x = {.c = c, .rq = rq, .rs = rs};
    http_resp_fini(rs);
    if (rq->bearer && strlen(rq->bearer) > EA_TOKEN_MAX)
        return EA_ERR_INVAL;
    struct curl_slist *hdrs = http_headers(rq);
    if (!hdrs)
        return EA_ERR_NOMEM;
    curl_easy_reset(c->_h); /* forget the last request's options, keep its connections */
    if (!http_setup(&x, hdrs)) {
        curl_slist_free_all(hdrs);
        return EA_ERR_INVAL;
    }
    CURLcode cc = curl_easy_perform(c->_h);
    long st = 0;
    if (curl_easy_getinfo(c->_h, CURLINFO_RESPONSE_CODE, &st) == CURLE_OK && st > 0)
        rs->status = st;
    /* the handle keeps pointers to hdrs and x until the next reset: drop them now */
    curl_easy_reset(c->_h);
    curl_slist_free_all(hdrs);

    switch (cc) {
    case CURLE_OK:
        return EA_OK;
    case CURLE_ABORTED_BY_CALLBACK:
        return EA_ERR_ABORTED;
    case CURLE_WRITE_ERROR:
        if (x.stopped)
            return EA_ERR_STOPPED;
        if (x.toobig)
            return EA_ERR_TOOBIG;
        return x.nomem ? EA_ERR_NOMEM : EA_ERR_NET;
    case CURLE_OUT_OF_MEMORY:
        return EA_ERR_NOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return EA_ERR_INVAL;
    default:
        if (!rs->err[0])
            snprintf(rs->err, sizeof(rs->err), "%s", curl_easy_strerror(cc));
        return EA_ERR_NET;
    }
}

bool http_is_transient(ea_err_t rc, long status)
{
    return rc == EA_ERR_NET || (rc == EA_OK && (status >= 500 || status == 429));
}

long http_backoff_ms(unsigned n)
{
    return n >= 6 ? 5000 : (100L << n) > 5000 ? 5000 : 100L << n;
}

bool http_sleep_ms(long ms, http_abort_fn should_abort, void *arg)
{
    while (ms > 0) {
        if (should_abort && should_abort(arg))
            return false;
        long step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};
        /* an early wake (a signal) only shortens this slice; the loop re-checks the flag */
        (void)nanosleep(&ts, NULL);
        ms -= step;
    }
    return !(should_abort && should_abort(arg));
}

ea_err_t http_do_retry(struct http_client *c, const struct http_req *rq, struct http_resp *rs,
                       int attempts, const char *what, const char *run)
{
    ea_err_t rc = EA_ERR_INVAL;
    for (int i = 0; i < attempts; i++) {
        rc = http_do(c, rq, rs);
        if (!http_is_transient(rc, rs->status) || i + 1 == attempts)
            break;
        long pause_ms = http_backoff_ms((unsigned)i);
        if (rc == EA_OK)
            LOG_WARN("http.retry", run, "%s answered %ld, trying again in %ld ms", what, rs->status,
                     pause_ms);
        else
            LOG_WARN("http.retry", run, "%s: %s (%s), trying again in %ld ms", what, ea_err_str(rc),
                     rs->err, pause_ms);
        if (!http_sleep_ms(pause_ms, rq->should_abort, rq->abort_arg))
            return EA_ERR_ABORTED;
    }
    return rc;
}
