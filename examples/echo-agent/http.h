/*
 * http.h - the few HTTP shapes the echo agent needs, on libcurl's easy API:
 * a request with a bounded answer, a streamed answer (SSE), captured response
 * headers, retries with backoff, and stop flags checked while waiting.
 *
 * One struct http_client per thread: a client is never used by two threads,
 * and a callback of one client's transfer may use another client (the .in
 * subscription's handler writes replies that way). http_global_init() comes
 * first, in main, before any thread starts.
 */
#ifndef ECHO_AGENT_HTTP_H
#define ECHO_AGENT_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "ea.h"

/* A stop predicate: non-zero means "give up now". Called often from the waiting thread. */
typedef int (*http_abort_fn)(void *arg);

struct http_client {
    CURL *_h; /* kept between requests so connections are reused */
};

/* A response header to capture (name matched case-insensitively). */
struct http_want {
    const char *name;
    char *val; /* filled NUL-terminated, whitespace trimmed */
    size_t cap;
    bool found;    /* set by http_do */
    bool too_long; /* the value did not fit in cap: treat as absent */
};

struct http_req {
    const char *method; /* "GET", "POST" or "PUT" */
    const char *url;
    const char *bearer;         /* Authorization: Bearer <bearer>; NULL: no credential */
    const char *content_type;   /* for a body; NULL: no Content-Type at all */
    const char *const *headers; /* more "Name: value" lines, NULL-terminated; may be NULL */
    const char *body;           /* POST/PUT body (may be empty); ignored for GET */
    size_t body_len;
    long timeout_ms;  /* whole exchange; 0: no limit (streams) */
    long low_speed_s; /* > 0: give up after this long with no byte received */
    size_t max_body;  /* a 2xx body kept in memory beyond this is EA_ERR_TOOBIG */
    struct http_want *want;
    size_t nwant;
    http_abort_fn should_abort; /* NULL: never */
    void *abort_arg;
    /* When set, a 2xx body is handed here as it arrives instead of being kept; return 0 to go
     * on, non-zero to end the transfer (http_do then returns EA_ERR_STOPPED). */
    int (*on_data)(void *arg, const char *p, size_t n);
    void *data_arg;
};

struct http_resp {
    long status; /* 0 when no answer came */
    char *body;  /* NUL-terminated, NULL when empty; for a non-2xx answer only its start */
    size_t body_len;
    char err[CURL_ERROR_SIZE]; /* libcurl's reason when there was no answer */
};
#define HTTP_RESP_ZERO ((struct http_resp){.status = 0})

/* Initialises libcurl for every thread; main() calls it before any thread starts. */
ea_err_t http_global_init(void);
void http_global_fini(void);

ea_err_t http_client_init(struct http_client *c);
void http_client_fini(struct http_client *c);

/*
 * Runs one request. EA_OK means an answer came (any status: see rs->status);
 * otherwise EA_ERR_NET (no answer), EA_ERR_ABORTED (should_abort fired),
 * EA_ERR_STOPPED (on_data ended it), EA_ERR_TOOBIG, EA_ERR_NOMEM, EA_ERR_INVAL.
 * rs must be HTTP_RESP_ZERO or finished with http_resp_fini(); the caller
 * frees it with http_resp_fini() whatever the result.
 */
ea_err_t http_do(struct http_client *c, const struct http_req *rq, struct http_resp *rs);

/* True for what is worth trying again: no answer, 5xx, 429. */
bool http_is_transient(ea_err_t rc, long status);

/*
 * http_do() again while http_is_transient(), at most `attempts` times in all,
 * sleeping 100 ms·2^n (at most 5 s) between tries; each retry is logged as
 * event "http.retry" with `what` and `run`. Returns the last try's result.
 */
ea_err_t http_do_retry(struct http_client *c, const struct http_req *rq, struct http_resp *rs,
                       int attempts, const char *what, const char *run);

/* The backoff before try n+1 (n >= 0): 100 ms·2^n, at most 5 s. */
long http_backoff_ms(unsigned n);

/* Sleeps ms, waking every 50 ms to ask should_abort; returns false when it fired. */
bool http_sleep_ms(long ms, http_abort_fn should_abort, void *arg);

void http_resp_fini(struct http_resp *rs);

#endif
