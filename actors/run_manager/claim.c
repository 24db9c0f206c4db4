/*
 * claim.c - run.ensure and run.swap: which run a session is bound to.
 *
 * api contract §11.2 (ensureRunForSession) and §11.3 (swapSessionRun),
 * step for step: read the session, probe the current run, trigger a new
 * run FIRST, then claim it with one conditional UPDATE on
 * current_run_version; the loser cancels its own run. Nothing is locked
 * across the trigger and the claim, so concurrent callers (other
 * instances, other gateways) race only in that UPDATE, and a run-manager
 * that dies in between leaves a queued run no session points at, which
 * dequeue never hands out and the orphan sweep cancels. Closed or expired
 * sessions are the gateway's business: they are not checked here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "rm.h"

#define RM_LOST_WHY "lost session-run claim race"
#define RM_NO_CALLING_RUN "callingRunId not found in this environment"

/* After a won claim: the audit row (best effort, as upstream), the wake-up for workers, and
 * the answer (the new run, triggered). */
static void rm_claim_won(struct rm *rm, const char *env_id, const struct rm_session *s,
                         const char *run_id, const char *reason, struct rm_claim *out)
{
    err_t rc = rm_store_session_run_add(rm->pg, s->id, run_id, reason);
    if (rc != OK)
        LOG_WARN("run.audit_failed", "session %s: could not record run_%s in session_runs: %s",
                 s->id, run_id, err_str(rc));
    LOG_INFO("run.claimed", "session %s now runs run_%s (%s, version %lld)", s->id, run_id, reason,
             (long long)s->version + 1);
    rm_publish_queued(rm, env_id, s->task_identifier);
    snprintf(out->run_id, sizeof(out->run_id), "run_%s", run_id);
    out->triggered = true;
}

/* After a lost claim: our run must never execute. */
static void rm_claim_lost(struct rm *rm, const struct rm_session *s, const char *run_id,
                          int attempt)
{
    err_t rc = rm_store_run_cancel_id(rm->pg, run_id, RM_LOST_WHY);
    if (rc != OK)
        LOG_WARN("run.cancel_failed",
                 "could not cancel run_%s after a lost claim: %s (the orphan sweep will)", run_id,
                 err_str(rc));
    LOG_INFO("run.claim_lost", "session %s: claim %d lost to a concurrent caller; run_%s canceled",
             s->id, attempt, run_id);
}

/*
 * The session-channel rule where the session's row is read: a closed or expired session gets
 * no new run, whichever gateway asks and however old its copy of the row (the gateway checks
 * its copy first, for the answer's shape; this is the check that holds).
 */
static const char *rm_session_ended(const struct rm_session *s)
{
    if (s->closed)
        return "the session is closed";
    if (s->expired)
        return "the session has expired";
    return NULL;
}

static void rm_claim_existing(const struct rm_session *s, struct rm_claim *out)
{
    snprintf(out->run_id, sizeof(out->run_id), "run_%s", s->current_run_id);
    out->triggered = false;
}

err_t rm_ensure(struct rm *rm, const char *env_id, const char *session_id, const char *reason,
                struct rm_claim *out)
{
    struct rm_session s;
    char run_id[RM_ID_MAX], prev[RM_RUN_MAX];
    bool won;
    out->why = NULL;
    err_t rc = rm_store_session_read(rm->pg, env_id, session_id, &s);
    if (rc != OK)
        return rc;
    if (s.current_run_id[0] && s.current_alive) {
        rm_claim_existing(&s, out);
        return OK;
    }
    for (int attempt = 1; attempt <= RM_CLAIM_ATTEMPTS; attempt++) {
        if ((out->why = rm_session_ended(&s)))
            return ERR_CONFLICT;
        if (!s.base_payload_ok)
            return ERR_INVAL;
        /* a dead previous run makes this a continuation (payload rule of §11.2) */
        if (s.current_run_id[0])
            snprintf(prev, sizeof(prev), "run_%s", s.current_run_id);
        rc = rm_trigger(rm, env_id, &s, s.current_run_id[0] ? prev : NULL, run_id);
        if (rc != OK)
            return rc;
        /* if this fails the claim's fate is unknown: claimed, the run is the session's; not,
         * the orphan sweep cancels it. The caller retries either way and sees which. */
        rc = rm_store_session_claim(rm->pg, s.id, run_id, s.version, NULL, &won);
        if (rc != OK)
            return rc;
        if (won) {
            rm_claim_won(rm, env_id, &s, run_id, reason, out);
            return OK;
        }
        rm_claim_lost(rm, &s, run_id, attempt);
        /* the winner's row, from the writer (the only store we have) */
        rc = rm_store_session_read(rm->pg, env_id, session_id, &s);
        if (rc != OK)
            return rc;
        if (s.current_run_id[0] && s.current_alive) {
            rm_claim_existing(&s, out);
            return OK;
        }
    }
    LOG_WARN("run.claim_exhausted", "session %s: %d claims lost, and no live run to return",
             session_id, RM_CLAIM_ATTEMPTS);
    return ERR_CONFLICT;
}

err_t rm_swap(struct rm *rm, const char *env_id, const char *session_id, const char *calling_run,
              const char *reason, struct rm_claim *out, const char **why)
{
    struct rm_session s;
    char calling_id[RM_ID_MAX], run_id[RM_ID_MAX];
    struct slice ref = {calling_run, strlen(calling_run)};
    bool won;
    err_t rc;

    *why = NULL;
    /* not a run id of ours: no run of this environment can have it */
    rc = rm_run_ref_parse(ref, calling_id)
             ? rm_store_run_lookup(rm->pg, env_id, calling_run, calling_id)
             : ERR_NOTFOUND;
    if (rc == ERR_NOTFOUND)
        *why = RM_NO_CALLING_RUN;
    if (rc != OK)
        return rc;
    rc = rm_store_session_read(rm->pg, env_id, session_id, &s);
    if (rc == ERR_NOTFOUND)
        *why = "session not found";
    if (rc != OK)
        return rc;
    if ((*why = rm_session_ended(&s)))
        return ERR_CONFLICT;
    if (!s.base_payload_ok)
        return ERR_INVAL;
    /* §11.3 always triggers first, even when calling_run is no longer current */
    rc = rm_trigger(rm, env_id, &s, calling_run, run_id);
    if (rc != OK)
        return rc;
    rc = rm_store_session_claim(rm->pg, s.id, run_id, s.version, calling_id, &won);
    if (rc != OK)
        return rc;
    if (won) {
        rm_claim_won(rm, env_id, &s, run_id, reason, out);
        return OK;
    }
    rm_claim_lost(rm, &s, run_id, 1);
    rc = rm_store_session_read(rm->pg, env_id, session_id, &s);
    if (rc != OK)
        return rc;
    if (s.current_run_id[0])
        snprintf(out->run_id, sizeof(out->run_id), "run_%s", s.current_run_id);
    else
        snprintf(out->run_id, sizeof(out->run_id), "%s", calling_run);
    out->triggered = false;
    return OK;
}

/* ---- handlers ---- */

/* Reads env_id, session_id and reason, shared by both messages; replies itself on failure. */
static bool rm_claim_args(struct bus_req *req, char *env_id, char *session_id, char *reason,
                          size_t reason_cap)
{
    struct slice body = bus_req_env(req)->body;
    if (rm_field_str(body, "env_id", env_id, RM_ID_MAX, NULL) != OK || !env_id[0] ||
        rm_field_str(body, "session_id", session_id, RM_ID_MAX, NULL) != OK || !session_id[0]) {
        (void)bus_reply_err(req, ERR_INVAL, "env_id and session_id (strings) are required");
        return false;
    }
    if (rm_field_str(body, "reason", reason, reason_cap, NULL) != OK || !rm_reason_valid(reason)) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "reason must be initial, continuation, upgrade or manual");
        return false;
    }
    return true;
}

static void rm_claim_reply(struct bus_req *req, const char *op, err_t rc, const char *why,
                           const struct rm_claim *c, const char *flag)
{
    struct mp_writer w;
    switch (rc) {
    case OK:
        break;
    case ERR_NOTFOUND:
        (void)bus_reply_err(req, ERR_NOTFOUND, why ? why : "session not found");
        return;
    case ERR_INVAL:
        (void)bus_reply_err(req, ERR_INVAL, "triggerConfig.basePayload must be an object");
        return;
    case ERR_CONFLICT:
        (void)bus_reply_err(req, ERR_CONFLICT,
                            why ? why
                                : "could not claim a run for the session: every claim was lost "
                                  "to concurrent callers; retry");
        return;
    default:
        rm_reply_store_err(req, op, rc);
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 2);
    mp_put_kv_str(&w, "run_id", c->run_id);
    mp_put_kv_bool(&w, flag, c->triggered);
    rm_reply_writer(req, &w);
    mp_writer_fini(&w);
}

void rm_on_run_ensure(struct actor *a, struct bus_req *req)
{
    char env_id[RM_ID_MAX], session_id[RM_ID_MAX], reason[32];
    struct rm_claim c;
    if (!rm_claim_args(req, env_id, session_id, reason, sizeof(reason)))
        return;
    err_t rc = rm_ensure(rm_of(a), env_id, session_id, reason, &c);
    const char *why = rc == ERR_CONFLICT ? c.why : NULL;
    /* the session had a live run: nothing was written, so no answer is worth keeping (a re-send
     * reads again), and the transaction rolls back instead of committing: the common case of
     * an .in append costs a read, not a write */
    if (rc == OK && !c.triggered)
        actor_once_nothing_done(a);
    rm_claim_reply(req, "run.ensure", rc, why, &c, "triggered");
}

/* A run.ensure the fast way, between its request and the session read's answer. */
struct rm_fast_ensure {
    struct actor *a;
    struct bus_req *req;
};

static void rm_fast_ensure_read(void *arg, err_t rc, const PGresult *res)
{
    struct rm_fast_ensure *f = arg;
    struct rm_session s;
    struct rm_claim c;
    if (rc == ERR_CLOSED) /* the actor is stopping: the caller re-sends to the next instance */
        (void)bus_reply_err(f->req, ERR_UNAVAIL, "the run-manager is stopping; retry");
    else if (rc == OK && rm_store_session_of(res, &s) == OK && s.current_run_id[0] &&
             s.current_alive) {
        rm_claim_existing(&s, &c);
        rm_claim_reply(f->req, "run.ensure", OK, NULL, &c, "triggered");
    } else /* no live run, no such session or a failed read: the once way answers each */
        actor_once_serve(f->a, f->req);
    free(f);
}

bool rm_fast_run_ensure(struct actor *a, struct bus_req *req)
{
    /* nearly every .in append asks this of a session whose run is alive: one read on the
     * non-blocking pool answers it, with many in flight, where the once way costs a
     * transaction around the same read on the blocking connection */
    char env_id[RM_ID_MAX], session_id[RM_ID_MAX], reason[32];
    struct slice body = bus_req_env(req)->body;
    if (!a->pga || rm_field_str(body, "env_id", env_id, sizeof(env_id), NULL) != OK || !env_id[0] ||
        rm_field_str(body, "session_id", session_id, sizeof(session_id), NULL) != OK ||
        !session_id[0] || rm_field_str(body, "reason", reason, sizeof(reason), NULL) != OK ||
        !rm_reason_valid(reason))
        return false; /* the once way answers the error */
    struct rm_fast_ensure *f = xcalloc(1, sizeof(*f));
    f->a = a;
    f->req = req;
    if (rm_store_session_read_async(a->pga, env_id, session_id, rm_fast_ensure_read, f) != OK) {
        free(f); /* no pool connection yet: the once way, on the blocking one */
        return false;
    }
    return true;
}

void rm_on_run_swap(struct actor *a, struct bus_req *req)
{
    char env_id[RM_ID_MAX], session_id[RM_ID_MAX], reason[32], calling[RM_RUN_MAX];
    const char *why = NULL;
    struct rm_claim c;
    if (!rm_claim_args(req, env_id, session_id, reason, sizeof(reason)))
        return;
    /* too long to be a run id: the same answer as any unknown id */
    if (rm_field_str(bus_req_env(req)->body, "calling_run_id", calling, sizeof(calling), NULL) !=
        OK) {
        (void)bus_reply_err(req, ERR_NOTFOUND, RM_NO_CALLING_RUN);
        return;
    }
    err_t rc = rm_swap(rm_of(a), env_id, session_id, calling, reason, &c, &why);
    rm_claim_reply(req, "run.swap", rc, why, &c, "swapped");
}
