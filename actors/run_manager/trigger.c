/*
 * trigger.c - making a run from a session's triggerConfig, and telling
 * waiting workers that a run can be dequeued.
 *
 * The run's payload and options are computed by PostgreSQL from the
 * session row in the INSERT itself (run_store.c), so the triggerConfig
 * used is the one stored at that instant and no JSON library is needed
 * here. Only ttl is read in C: its string forms ("10m") are ours to parse.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "msg.h"
#include "rm.h"

err_t rm_trigger(struct rm *rm, const char *env_id, const struct rm_session *s,
                 const char *prev_run, char *run_id)
{
    long long ttl_s = -1;
    if (s->ttl_json[0] && !rm_ttl_parse(s->ttl_json, &ttl_s)) {
        /* the gateway accepted it, so it is a form we do not know: run without a ttl */
        LOG_DEBUG("run.ttl_ignored", "session %s: triggerConfig.ttl is not a ttl we understand",
                  s->id);
        ttl_s = -1;
    }
    err_t rc = rm_store_run_insert(rm->pg, env_id, s->id, prev_run, ttl_s, run_id);
    if (rc == OK)
        LOG_DEBUG("run.triggered", "run run_%s for session %s%s%s", run_id, s->id,
                  prev_run ? ", continuing " : "", prev_run ? prev_run : "");
    return rc;
}

static void rm_publish_now(struct rm *rm, const char *env_id, const char *task_identifier)
{
    char topic[RM_ID_MAX + 16];
    struct mp_writer w;
    snprintf(topic, sizeof(topic), "run.queued.%s", env_id);
    struct msg_run_queued ev = {msg_str(task_identifier)};
    mp_writer_init(&w);
    msg_encode(&msg_run_queued_form, &w, &ev);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_publish(rm->events, topic, MSG_RUN_QUEUED, mp_writer_data(&w), mp_writer_len(&w));
    /* an event is only a wake-up: workers also poll, so a lost one costs latency, not runs */
    if (rc != OK)
        LOG_WARN("run.publish_failed", "could not publish run.queued for environment %s: %s",
                 env_id, err_str(rc));
    mp_writer_fini(&w);
}

void rm_publish_queued(struct rm *rm, const char *env_id, const char *task_identifier)
{
    if (!rm->events)
        return;
    if (rm->defer_events) {
        for (unsigned i = 0; i < rm->npending; i++)
            if (strcmp(rm->pending[i].env_id, env_id) == 0 &&
                strcmp(rm->pending[i].task, task_identifier) == 0)
                return;
        if (rm->npending < RM_PENDING_MAX) {
            struct rm_pending *p = &rm->pending[rm->npending++];
            snprintf(p->env_id, sizeof(p->env_id), "%s", env_id);
            snprintf(p->task, sizeof(p->task), "%s", task_identifier);
            return;
        }
    }
    rm_publish_now(rm, env_id, task_identifier);
}

void rm_publish_pending(struct rm *rm)
{
    for (unsigned i = 0; i < rm->npending; i++)
        rm_publish_now(rm, rm->pending[i].env_id, rm->pending[i].task);
    rm->npending = 0;
}
