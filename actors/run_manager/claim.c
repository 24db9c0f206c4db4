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

#define RM_REASON_MAX 32
#define RM_BAD_REASON "reason must be initial, continuation, upgrade or manual"

/* env_id and session_id, which the decoder checked, as C strings; false for a NUL inside. */
static bool rm_claim_ids(struct slice env, struct slice session, char *env_id, char *session_id)
{
    return msg_cstr(env, env_id, RM_ID_MAX) && msg_cstr(session, session_id, RM_ID_MAX);
}

/* reason as a C string, one of the session_runs reasons; false otherwise (absent too). */
static bool rm_claim_reason(struct slice s, char *reason)
{
    return msg_cstr(s, reason, RM_REASON_MAX) && rm_reason_valid(reason);
}

/* The fields both messages share as C strings; false when unusable, having answered ERR_INVAL. */
static bool rm_claim_args(struct bus_req *req, struct slice env, struct slice session,
                          struct slice reason_s, char *env_id, char *session_id, char *reason)
{
    if (!rm_claim_ids(env, session, env_id, session_id)) { /* a NUL inside */
        (void)bus_reply_err(req, ERR_INVAL, "env_id and session_id (strings) are required");
        return false;
    }
    if (!rm_claim_reason(reason_s, reason)) {
        (void)bus_reply_err(req, ERR_INVAL, RM_BAD_REASON);
        return false;
    }
    return true;
}

static void rm_claim_reply(struct bus_req *req, bool swap, err_t rc, const char *why,
                           const struct rm_claim *c)
{
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
        actor_reply_store_err(req, swap ? "run.swap" : "run.ensure", rc);
        return;
    }
    if (swap) {
        struct msg_run_swap_reply r = {msg_str(c->run_id), c->triggered};
        (void)bus_reply_msg(req, &msg_run_swap_reply_form, &r, NULL);
    } else {
        struct msg_run_ensure_reply r = {msg_str(c->run_id), c->triggered};
        (void)bus_reply_msg(req, &msg_run_ensure_reply_form, &r, NULL);
    }
}

err_t rm_on_run_ensure(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], session_id[RM_ID_MAX], reason[RM_REASON_MAX];
    struct msg_run_ensure m;
    struct rm_claim c;
    err_t rc = msg_decode(&msg_run_ensure_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!rm_claim_args(req, m.env_id, m.session_id, m.reason, env_id, session_id, reason))
        return OK;
    rc = rm_ensure(rm_of(a), env_id, session_id, reason, &c);
    const char *why = rc == ERR_CONFLICT ? c.why : NULL;
    /* the session had a live run: nothing was written, so no answer is worth keeping (a re-send
     * reads again), and the transaction rolls back instead of committing: the common case of
     * an .in append costs a read, not a write */
    if (rc == OK && !c.triggered)
        actor_once_nothing_done(a);
    rm_claim_reply(req, false, rc, why, &c);
    return OK;
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
        rm_claim_reply(f->req, false, OK, NULL, &c);
    } else /* no live run, no such session or a failed read: the once way answers each */
        actor_once_serve(f->a, f->req);
    free(f);
}

bool rm_fast_run_ensure(struct actor *a, struct bus_req *req)
{
    /* nearly every .in append asks this of a session whose run is alive: one read on the
     * non-blocking pool answers it, with many in flight, where the once way costs a
     * transaction around the same read on the blocking connection */
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], session_id[RM_ID_MAX], reason[RM_REASON_MAX];
    struct msg_run_ensure m;
    if (!a->pga || msg_decode(&msg_run_ensure_form, e->body.p, e->body.n, &m) != OK ||
        !rm_claim_ids(m.env_id, m.session_id, env_id, session_id) ||
        !rm_claim_reason(m.reason, reason))
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

err_t rm_on_run_swap(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], session_id[RM_ID_MAX], reason[RM_REASON_MAX], calling[RM_RUN_MAX];
    const char *why = NULL;
    struct msg_run_swap m;
    struct rm_claim c;
    err_t rc = msg_decode(&msg_run_swap_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!rm_claim_args(req, m.env_id, m.session_id, m.reason, env_id, session_id, reason))
        return OK;
    /* too long to be a run id: the same answer as any unknown id (absent is one: "") */
    if (!msg_cstr(m.calling_run_id, calling, sizeof(calling)) && m.calling_run_id.p) {
        (void)bus_reply_err(req, ERR_NOTFOUND, RM_NO_CALLING_RUN);
        return OK;
    }
    rc = rm_swap(rm_of(a), env_id, session_id, calling, reason, &c, &why);
    rm_claim_reply(req, true, rc, why, &c);
    return OK;
}
