/*
 * run.h - what the files of one run share (run.c, request.c, heartbeat.c,
 * out.c, follow.c, end.c): the run's state and the steps run.c's thread
 * takes. agent.h is what main.c sees of a run.
 *
 * Everything here runs on the run thread unless it says otherwise; the
 * heartbeat thread touches only its own client and the atomics.
 */
#ifndef ECHO_AGENT_RUN_H
#define ECHO_AGENT_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "agent.h"
#include "http.h"
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

/* ---- request.c: the run's requests ---- */

/* CLOCK_MONOTONIC in ms. */
long run_now_ms(void);
/* Sets r->why, the failure's message for the fail route. */
void run_why(struct ea_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* snprintf into a URL buffer of RUN_URL_MAX; EA_ERR_INVAL when it does not fit (never cut). */
ea_err_t run_url(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The bearer of the run's requests: the run token, or the secret key once it was refused. */
const char *run_bearer(struct ea_run *r);
/*
 * Stop predicates (http_abort_fn, arg: the run): io when the run was lost or abandoned, sse
 * also on a shutdown, hb when abandoned or the run thread stops the heartbeat, final only
 * when abandoned.
 */
int run_abort_io(void *arg);
int run_abort_sse(void *arg);
int run_abort_hb(void *arg);
int run_abort_final(void *arg);
/* A POST of the JSON text to url with the run's credential, 10 s, answer ≤ EA_ANSWER_MAX;
 * should_abort as the caller's step needs (request.c). text and url stay the caller's. */
struct http_req run_post_json(struct ea_run *r, const char *url, const char *text,
                              http_abort_fn should_abort);
/*
 * Runs rq up to tries times while the failure is transient. EA_OK means a 2xx answer;
 * anything else sets r->why (unless aborted): EA_ERR_NET for what stayed transient,
 * EA_ERR_HTTP for a 4xx. A run token refused with 401 is replaced by the secret key for good.
 */
ea_err_t run_call(struct ea_run *r, struct http_client *c, struct http_req *rq,
                  struct http_resp *rs, int tries, const char *what);
/* POSTs body (JSON, kept by the caller) to /api/v1/runs/<id>/<verb>, as run_call. */
ea_err_t run_post_route(struct ea_run *r, const char *verb, json_t *body, struct http_resp *rs);

/* ---- heartbeat.c ---- */

/* The heartbeat thread's body (arg: the run): keeps the lease, sets r->lost when it is gone. */
void *run_heartbeat(void *arg);

/* ---- out.c: .out ---- */

/* PUT on .out: fills r->s2_url, r->s2_token and r->s2_basin_hdr (where replies go). */
ea_err_t run_open_out(struct ea_run *r);
/* The .in seq named by the last turn-complete on .out; *have false when there is none. */
ea_err_t run_out_cursor(struct ea_run *r, bool *have, uint64_t *cursor);
/* Appends the reply to .in record seq and its turn-complete in one request, never twice. */
ea_err_t run_write_turn(struct ea_run *r, uint64_t seq, const char *text, size_t len);

/* ---- follow.c: following .in ---- */

/* True for records that carry no message: S2 commands and trigger-control records. */
bool run_is_control(const json_t *headers);
/* sse.h callback (arg: the run): one event of the .in subscription; non-zero ends it. */
int run_on_event(void *arg, const struct sse_event *ev);
/* Follows .in, answering each record, until it was quiet for the idle timeout or the agent
 * stops; an error (r->why set) fails the run. */
ea_err_t run_follow(struct ea_run *r);

/* ---- end.c: the end of a run ---- */

/* .in was idle: a waitpoint on its next record blocks the run on it; false (logged) when
 * that failed, and the run completes as an idle run does. */
bool run_sleep_prepare(struct ea_run *r);
/* Gives the run back (POST /suspend): true when it is WAITING now. */
bool run_suspend(struct ea_run *r);
/* Completes the run; true when the server took it. */
bool run_complete(struct ea_run *r);
/* Fails the run with r->why (with attempts left the server queues it again). */
void run_fail(struct ea_run *r);
/* After the completion: swaps in a continuation run when .in holds unanswered messages. */
void run_hand_over(struct ea_run *r);

#endif
