/*
 * request.c - the requests of one run: URLs, the bearer, the stop
 * predicates, and run_call (retries, a refused run token replaced by the
 * secret key) with its POST to the run's own routes.
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

long run_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail for CLOCK_MONOTONIC */
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void run_why(struct ea_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
}

/* snprintf into a URL buffer; a URL that does not fit is an error, never a cut one. */
ea_err_t run_url(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, RUN_URL_MAX, fmt, ap);
    va_end(ap);
    return n > 0 && n < RUN_URL_MAX ? EA_OK : EA_ERR_INVAL;
}

const char *run_bearer(struct ea_run *r)
{
    return atomic_load(&r->use_key) ? r->ag->cfg.key : r->token;
}

/* Stop predicates for the run's requests (http_abort_fn). */
int run_abort_io(void *arg)
{
    struct ea_run *r = arg;
    return atomic_load(&r->ag->abandon) || atomic_load(&r->lost);
}

int run_abort_sse(void *arg)
{
    struct ea_run *r = arg;
    /* A shutdown ends the wait on .in but never a reply's write: replies are written from
     * inside this stream's callback, where libcurl does not poll this. */
    return run_abort_io(r) || atomic_load(&r->ag->stopping);
}

int run_abort_hb(void *arg)
{
    struct ea_run *r = arg;
    return atomic_load(&r->ag->abandon) || atomic_load(&r->hb_quit);
}

int run_abort_final(void *arg)
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
ea_err_t run_call(struct ea_run *r, struct http_client *c, struct http_req *rq,
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
ea_err_t run_post_route(struct ea_run *r, const char *verb, json_t *body, struct http_resp *rs)
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
        struct http_req rq = run_post_json(r, url, text, run_abort_final);
        rc = run_call(r, &r->api, &rq, rs, RUN_TRIES, verb);
    }
    free(text);
    return rc;
}

struct http_req run_post_json(struct ea_run *r, const char *url, const char *text,
                              http_abort_fn should_abort)
{
    return (struct http_req){.method = "POST",
                             .url = url,
                             .bearer = run_bearer(r),
                             .content_type = "application/json",
                             .body = text,
                             .body_len = strlen(text),
                             .timeout_ms = 10000,
                             .max_body = EA_ANSWER_MAX,
                             .should_abort = should_abort,
                             .abort_arg = r};
}
