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
 *
 * This file holds the run thread and the run's start and end; run.h lists
 * the files that hold its steps.
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
