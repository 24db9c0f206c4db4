/*
 * control.c - the supervisor's control socket (tetherctl's door) and the
 * event socket that carries bus.fault settings to every process.
 */
#include "sv.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "actor.h"
#include "clock.h"
#include "log.h"
#include "mp.h"
#include "msg.h"
#include "msg_raw.h"
#include "msg_sv.h"

static bool sv_fault_is_zero(const struct bus_fault *f)
{
    return f->drop <= 0 && f->dup <= 0 && (f->delay_ms == 0 || f->delay_rate <= 0);
}

const struct bus_fault *sv_fault_for(const struct sv *sv, const struct sv_child *c)
{
    for (unsigned i = 0; i < sv->nfaults; i++) {
        const struct sv_fault *f = &sv->faults[i];
        if ((strcmp(f->target, c->name) == 0 || strcmp(f->target, c->spec->name) == 0) &&
            !sv_fault_is_zero(&f->f))
            return &f->f;
    }
    return NULL;
}

/* The bus.fault body of f: also an element of sv.fault_set's and sv.fault_list's replies. */
static void sv_fault_encode(struct mp_writer *w, const struct sv_fault *f)
{
    struct msg_bus_fault m = {
        .target = msg_str(f->target),
        .drop = f->f.drop,
        .dup = f->f.dup,
        .delay_ms = f->f.delay_ms,
        .delay_rate = f->f.delay_rate,
    };
    msg_encode(&msg_bus_fault_form, w, &m);
}

void sv_faults_publish(struct sv *sv)
{
    struct mp_writer w;
    mp_writer_init(&w);
    for (unsigned i = 0; i < sv->nfaults; i++) {
        mp_writer_reset(&w);
        sv_fault_encode(&w, &sv->faults[i]);
        if (mp_writer_err(&w) == OK)
            (void)bus_publish(sv->events, "bus.fault", MSG_BUS_FAULT, mp_writer_data(&w),
                              mp_writer_len(&w));
    }
    mp_writer_fini(&w);
}

/* Answers req with a reply whose one raw field (of form f, at m) is what w holds. */
static void sv_reply_raw(struct bus_req *req, const struct msg_form *f, struct slice *field,
                         const void *m, const struct mp_writer *w)
{
    *field = msg_raw_of(w);
    (void)bus_reply_msg(req, f, m, w);
}

static bool sv_target_known(struct sv *sv, const char *name)
{
    if (strcmp(name, "supervisor") == 0 || strcmp(name, "tetherctl") == 0)
        return true;
    for (unsigned i = 0; i < sv->nchildren; i++)
        if (strcmp(sv->children[i].name, name) == 0 ||
            strcmp(sv->children[i].spec->name, name) == 0)
            return true;
    return false;
}

static err_t sv_on_health(struct sv *sv, struct bus_req *req)
{
    struct msg_bus_health m = {
        .name = msg_str("supervisor"),
        .state = msg_str(sv->stopping ? "stopping" : "up"),
    };
    (void)bus_reply_msg(req, &msg_sv_health_form, &m, NULL);
    return OK;
}

static err_t sv_on_status(struct sv *sv, struct bus_req *req)
{
    struct mp_writer cw; /* the children */
    uint64_t now = clock_mono_ms();
    mp_writer_init(&cw);
    mp_put_array(&cw, sv->nchildren);
    for (unsigned i = 0; i < sv->nchildren; i++) {
        const struct sv_child *c = &sv->children[i];
        const struct bus_fault *f = sv_fault_for(sv, c);
        char fault[96] = "";
        if (f)
            snprintf(fault, sizeof(fault), "drop=%g dup=%g delay=%ums delay_rate=%g", f->drop,
                     f->dup, f->delay_ms, f->delay_rate);
        struct msg_sv_status_child ch = {
            .name = msg_str(c->name),
            .state = msg_str(sv_state_name(c->state)),
            .pid = c->pid > 0 ? (uint64_t)c->pid : 0,
            .uptime_ms = c->pid > 0 ? now - c->spawned_mono : 0,
            .restarts = c->restarts,
            .leader_only = c->spec->leader_only,
            .ready = c->state == SV_UP,
            .last_exit = msg_str(c->last_exit),
            .fault = msg_str(fault),
        };
        msg_encode(&msg_sv_status_child_form, &cw, &ch);
    }
    struct msg_sv_status_reply m = {
        .node = msg_str(sv->node),
        .leader = sv->leader,
        .fencing_token = sv->leader ? sv->fencing_token : 0,
        /* the registry as last read (cluster.c): {self, leader, nodes}, nil before the first */
        .cluster =
            sv->cluster_body ? (struct slice){sv->cluster_body, sv->cluster_body_n} : SLICE_NULL,
    };
    sv_reply_raw(req, &msg_sv_status_reply_form, &m.children, &m, &cw);
    mp_writer_fini(&cw);
    return OK;
}

static err_t sv_on_fault_set(struct sv *sv, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    struct msg_sv_fault_set m;
    struct sv_fault nf;
    memset(&nf, 0, sizeof(nf));

    err_t rc = msg_decode(&msg_sv_fault_set_form, env->body.p, env->body.n, &m);
    if (rc != OK)
        return rc;
    if (!m.name.p || slice_copy(m.name, nf.target, sizeof(nf.target)) != OK)
        return ERR_INVAL;
    if (!sv_target_known(sv, nf.target)) {
        bus_reply_err(req, ERR_NOTFOUND, "no such process");
        return OK;
    }
    nf.f.drop = m.drop;
    nf.f.dup = m.dup;
    nf.f.delay_rate = m.delay_rate;
    nf.f.delay_ms = m.delay_ms <= MSG_SV_DELAY_MAX ? (uint32_t)m.delay_ms : 0;
    if (!(nf.f.drop >= 0 && nf.f.drop <= 1 && nf.f.dup >= 0 && nf.f.dup <= 1 &&
          nf.f.delay_rate >= 0 && nf.f.delay_rate <= 1)) {
        bus_reply_err(req, ERR_INVAL, "fractions must be between 0 and 1");
        return OK;
    }
    unsigned i;
    for (i = 0; i < sv->nfaults; i++)
        if (strcmp(sv->faults[i].target, nf.target) == 0)
            break;
    if (i == sv->nfaults) {
        if (sv->nfaults == SV_MAX_CHILDREN) {
            bus_reply_err(req, ERR_TOOBIG, "too many fault targets");
            return OK;
        }
        sv->nfaults++;
    }
    sv->faults[i] = nf;
    LOG_INFO("sv.fault_set", "fault for %s: drop=%g dup=%g delay=%ums delay_rate=%g", nf.target,
             nf.f.drop, nf.f.dup, nf.f.delay_ms, nf.f.delay_rate);
    sv_faults_publish(sv);

    struct mp_writer fw;
    struct msg_sv_fault_set_reply r;
    mp_writer_init(&fw);
    sv_fault_encode(&fw, &nf);
    sv_reply_raw(req, &msg_sv_fault_set_reply_form, &r.fault, &r, &fw);
    mp_writer_fini(&fw);
    return OK;
}

static err_t sv_on_fault_list(struct sv *sv, struct bus_req *req)
{
    struct mp_writer fw;
    struct msg_sv_fault_list_reply r;
    mp_writer_init(&fw);
    mp_put_array(&fw, sv->nfaults);
    for (unsigned i = 0; i < sv->nfaults; i++)
        sv_fault_encode(&fw, &sv->faults[i]);
    sv_reply_raw(req, &msg_sv_fault_list_reply_form, &r.faults, &r, &fw);
    mp_writer_fini(&fw);
    return OK;
}

static err_t sv_on_child_cmd(struct sv *sv, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char name[SV_NAME_MAX];
    struct msg_sv_child m;
    struct sv_child *c;

    err_t rc = msg_decode(env->type == MSG_SV_KILL ? &msg_sv_kill_form : &msg_sv_child_form,
                          env->body.p, env->body.n, &m);
    if (rc != OK)
        return rc;
    if (!m.name.p || slice_copy(m.name, name, sizeof(name)) != OK)
        return ERR_INVAL;
    if (sv->stopping) {
        bus_reply_err(req, ERR_CLOSED, "the supervisor is stopping");
        return OK;
    }
    c = sv_child_find(sv, name);
    if (!c) {
        bus_reply_err(req, ERR_NOTFOUND, "no such child");
        return OK;
    }
    LOG_INFO("sv.command", "%s %s (from %s)", msg_name(env->type), c->name, env->sender);
    switch (env->type) {
    case MSG_SV_START:
        sv_child_start(sv, c);
        break;
    case MSG_SV_STOP:
        sv_child_stop(sv, c);
        break;
    case MSG_SV_RESTART:
        sv_child_restart(sv, c);
        break;
    case MSG_SV_KILL: {
        uint64_t sig = m.signal_given ? m.signal : SIGKILL; /* given as nil: 0, refused */
        if (sig < 1 || sig > MSG_SV_SIGNAL_MAX) {
            bus_reply_err(req, ERR_INVAL, "signal must be 1-64");
            return OK;
        }
        if (c->pid <= 0) {
            bus_reply_err(req, ERR_CONFLICT, "not running");
            return OK;
        }
        kill(c->pid, (int)sig);
        break;
    }
    default:
        break;
    }
    struct msg_sv_child_reply r = {msg_str(c->name), msg_str(sv_state_name(c->state))};
    (void)bus_reply_msg(req, &msg_sv_child_reply_form, &r, NULL);
    return OK;
}

/* A handler answers as actor.h says; a code it returns is answered by actor_reply_err. */
static void sv_on_request(struct bus_req *req, void *arg)
{
    struct sv *sv = arg;
    err_t rc;
    switch (bus_req_env(req)->type) {
    case MSG_HEALTH_PING:
        rc = sv_on_health(sv, req);
        break;
    case MSG_SV_STATUS:
        rc = sv_on_status(sv, req);
        break;
    case MSG_SV_START:
    case MSG_SV_STOP:
    case MSG_SV_RESTART:
    case MSG_SV_KILL:
        rc = sv_on_child_cmd(sv, req);
        break;
    case MSG_SV_FAULT_SET:
        rc = sv_on_fault_set(sv, req);
        break;
    case MSG_SV_FAULT_LIST:
        rc = sv_on_fault_list(sv, req);
        break;
    case MSG_SV_TAP_FILTER:
        rc = sv_taps_on_filter(sv, req);
        break;
    default:
        bus_reply_err(req, ERR_PROTO, "unknown message type");
        return;
    }
    if (rc != OK)
        actor_reply_err(req, rc);
}

err_t sv_control_open(struct sv *sv)
{
    char url[BUS_URL_MAX + 64];
    err_t rc;
    if (sv->sv.control_url[0])
        snprintf(url, sizeof(url), "%s", sv->sv.control_url);
    else
        snprintf(url, sizeof(url), "ipc://%s/supervisor.ipc", sv->bus_dir);
    if ((rc = bus_serve(sv->bus, url, sv_on_request, sv, NULL)) != OK)
        return rc;
    bus_supervisor_events_url(sv->bus_dir, url, sizeof(url));
    return bus_pub_open(sv->bus, url, &sv->events);
}
