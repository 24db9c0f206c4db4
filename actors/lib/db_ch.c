/*
 * db_ch.c - ClickHouse HTTP client (see db_ch.h).
 */
#include "db_ch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "pmetrics.h"

#define DB_CH_BODY_MAX (64u << 20)

struct db_ch_body {
    char *p;
    size_t n;
    bool too_big;
};

static size_t db_ch_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct db_ch_body *b = arg;
    size_t n = size * nmemb;
    if (b->n + n > DB_CH_BODY_MAX) {
        b->too_big = true;
        return 0;
    }
    b->p = xrealloc(b->p, b->n + n + 1);
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

err_t db_ch_init(struct db_ch *c, const char *url, unsigned timeout_ms)
{
    memset(c, 0, sizeof(*c));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ERR_INTERNAL;
    c->url = xstrdup(url);
    c->timeout_ms = timeout_ms ? timeout_ms : 5000;
    c->backoff = (struct backoff)BACKOFF_INIT(100, 5000);
    c->curl = curl_easy_init();
    return c->curl ? OK : ERR_NOMEM;
}

void db_ch_fini(struct db_ch *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
    free(c->url);
    c->url = NULL;
}

bool db_ch_up(const struct db_ch *c)
{
    return c->up;
}

static err_t db_ch_request(struct db_ch *c, const char *path, const char *post, size_t post_n,
                           unsigned timeout_ms, struct db_ch_body *body, long *status)
{
    char url[1024];
    CURL *h = c->curl;
    CURLcode cc;
    struct curl_slist *hdr = NULL;

    snprintf(url, sizeof(url), "%s%s", c->url, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 2000 ? timeout_ms : 2000));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, db_ch_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    if (post) {
        hdr = curl_slist_append(hdr, "Expect:");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_n);
    }
    cc = curl_easy_perform(h);
    if (hdr)
        curl_slist_free_all(hdr);
    if (cc != CURLE_OK) {
        if (c->up || c->backoff.cur_ms == 0)
            LOG_WARN("db.ch_unreachable", "could not reach ClickHouse: %s", curl_easy_strerror(cc));
        c->up = false;
        backoff_fail(&c->backoff);
        return ERR_UNAVAIL;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (!c->up)
        LOG_INFO("db.ch_up", "reached ClickHouse");
    c->up = true;
    backoff_reset(&c->backoff);
    return OK;
}

err_t db_ch_ping(struct db_ch *c)
{
    struct db_ch_body body = {0};
    long status = 0;
    err_t rc;
    if (!c->up && !backoff_ready(&c->backoff))
        return ERR_UNAVAIL;
    /* a liveness probe runs on the actor's loop: it must not hold the loop long */
    rc = db_ch_request(c, "/ping", NULL, 0, c->timeout_ms < 1000 ? c->timeout_ms : 1000, &body,
                       &status);
    if (rc == OK && (status != 200 || !body.p || strncmp(body.p, "Ok.", 3) != 0))
        rc = ERR_UNAVAIL;
    free(body.p);
    return rc;
}

err_t db_ch_query(struct db_ch *c, const char *query, const char *data, size_t data_n, char **out,
                  size_t *out_n)
{
    struct db_ch_body body = {0};
    size_t ql = strlen(query);
    char *post = xmalloc(ql + 1 + data_n + 1);
    long status = 0;
    err_t rc;

    memcpy(post, query, ql);
    post[ql] = '\n';
    if (data_n)
        memcpy(post + ql + 1, data, data_n);
    post[ql + 1 + data_n] = '\0';
    uint64_t started_us = clock_mono_us();
    rc = db_ch_request(c, "/", post, ql + 1 + data_n, c->timeout_ms, &body, &status);
    free(post);
    c->last_code = 0;
    if (rc == OK && status != 200 && body.p && strncmp(body.p, "Code: ", 6) == 0)
        c->last_code = atoi(body.p + 6);
    if (rc == OK && (status != 200 || body.too_big)) {
        LOG_WARN("db.ch_query_failed", "ClickHouse answered %ld: %.300s", status,
                 body.p ? body.p : "");
        rc = status >= 500 ? ERR_UNAVAIL : ERR_INTERNAL;
    }
    pm_store_call("clickhouse", started_us, rc);
    if (rc == OK && out) {
        *out = body.p ? body.p : xstrdup("");
        if (out_n)
            *out_n = body.n;
        return OK;
    }
    free(body.p);
    return rc;
}
