/*
 * control.c - the supervisor's control socket (tetherctl's door) and the
 * event socket that carries bus.fault settings to every process.
 */
#include "sv.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mp.h"
#include "msg.h"

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

static void sv_fault_encode(struct mp_writer *w, const struct sv_fault *f)
{
    mp_put_map(w, 5);
    mp_put_kv_str(w, "target", f->target);
    mp_put_str(w, "drop");
    mp_put_double(w, f->f.drop);
    mp_put_str(w, "dup");
    mp_put_double(w, f->f.dup);
    mp_put_kv_uint(w, "delay_ms", f->f.delay_ms);
    mp_put_str(w, "delay_rate");
    mp_put_double(w, f->f.delay_rate);
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

/* Reads the "name" field of a request body into out. */
static err_t sv_body_name(const struct envelope *env, char *out, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    if (env->body.n == 0 || mp_map_find(env->body.p, env->body.n, "name", &v) != OK ||
        mp_read_str(&v, &s) != OK || slice_copy(s, out, cap) != OK)
        return ERR_INVAL;
    return OK;
}

static void sv_reply_child(struct bus_req *req, const struct sv_child *c)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 2);
    mp_put_kv_str(&w, "name", c->name);
    mp_put_kv_str(&w, "state", sv_state_name(c->state));
    bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    mp_writer_fini(&w);
}

static void sv_on_status(struct sv *sv, struct bus_req *req)
{
    struct mp_writer w;
    uint64_t now = clock_mono_ms();
    mp_writer_init(&w);
    mp_put_map(&w, 5);
    mp_put_kv_str(&w, "node", sv->node);
    mp_put_kv_bool(&w, "leader", sv->leader);
    mp_put_kv_uint(&w, "fencing_token", sv->leader ? sv->fencing_token : 0);
    /* the registry as last read (cluster.c): {self, leader, nodes}, nil before the first */
    mp_put_str(&w, "cluster");
    if (sv->cluster_body)
        mp_put_raw(&w, sv->cluster_body, sv->cluster_body_n);
    else
        mp_put_nil(&w);
    mp_put_str(&w, "children");
    mp_put_array(&w, sv->nchildren);
    for (unsigned i = 0; i < sv->nchildren; i++) {
        const struct sv_child *c = &sv->children[i];
        const struct bus_fault *f = sv_fault_for(sv, c);
        char fault[96] = "";
        if (f)
            snprintf(fault, sizeof(fault), "drop=%g dup=%g delay=%ums delay_rate=%g", f->drop,
                     f->dup, f->delay_ms, f->delay_rate);
        mp_put_map(&w, 9);
        mp_put_kv_str(&w, "name", c->name);
        mp_put_kv_str(&w, "state", sv_state_name(c->state));
        mp_put_kv_uint(&w, "pid", c->pid > 0 ? (uint64_t)c->pid : 0);
        mp_put_kv_uint(&w, "uptime_ms", c->pid > 0 ? now - c->spawned_mono : 0);
        mp_put_kv_uint(&w, "restarts", c->restarts);
        mp_put_kv_bool(&w, "leader_only", c->spec->leader_only);
        mp_put_kv_bool(&w, "ready", c->state == SV_UP);
        mp_put_kv_str(&w, "last_exit", c->last_exit);
        mp_put_kv_str(&w, "fault", fault);
    }
    if (mp_writer_err(&w) == OK)
        bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        bus_reply_err(req, ERR_NOMEM, NULL);
    mp_writer_fini(&w);
}

static void sv_on_fault_set(struct sv *sv, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char name[SV_NAME_MAX];
    struct sv_fault nf;
    memset(&nf, 0, sizeof(nf));
    struct mp_reader v;
    uint64_t u;

    if (sv_body_name(env, name, sizeof(name)) != OK) {
        bus_reply_err(req, ERR_INVAL, "missing name");
        return;
    }
    if (!sv_target_known(sv, name)) {
        bus_reply_err(req, ERR_NOTFOUND, "no such process");
        return;
    }
    snprintf(nf.target, sizeof(nf.target), "%s", name);
    if (mp_map_find(env->body.p, env->body.n, "drop", &v) == OK)
        (void)mp_read_float(&v, &nf.f.drop);
    if (mp_map_find(env->body.p, env->body.n, "dup", &v) == OK)
        (void)mp_read_float(&v, &nf.f.dup);
    if (mp_map_find(env->body.p, env->body.n, "delay_rate", &v) == OK)
        (void)mp_read_float(&v, &nf.f.delay_rate);
    if (mp_map_find(env->body.p, env->body.n, "delay_ms", &v) == OK && mp_read_uint(&v, &u) == OK &&
        u <= 600000)
        nf.f.delay_ms = (uint32_t)u;
    if (!(nf.f.drop >= 0 && nf.f.drop <= 1 && nf.f.dup >= 0 && nf.f.dup <= 1 &&
          nf.f.delay_rate >= 0 && nf.f.delay_rate <= 1)) {
        bus_reply_err(req, ERR_INVAL, "fractions must be between 0 and 1");
        return;
    }
    unsigned i;
    for (i = 0; i < sv->nfaults; i++)
        if (strcmp(sv->faults[i].target, name) == 0)
            break;
    if (i == sv->nfaults) {
        if (sv->nfaults == SV_MAX_CHILDREN) {
            bus_reply_err(req, ERR_TOOBIG, "too many fault targets");
            return;
        }
        sv->nfaults++;
    }
    sv->faults[i] = nf;
    LOG_INFO("sv.fault_set", "fault for %s: drop=%g dup=%g delay=%ums delay_rate=%g", name,
             nf.f.drop, nf.f.dup, nf.f.delay_ms, nf.f.delay_rate);
    sv_faults_publish(sv);

    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_str(&w, "fault");
    sv_fault_encode(&w, &nf);
    bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    mp_writer_fini(&w);
}

static void sv_on_fault_list(struct sv *sv, struct bus_req *req)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_str(&w, "faults");
    mp_put_array(&w, sv->nfaults);
    for (unsigned i = 0; i < sv->nfaults; i++)
        sv_fault_encode(&w, &sv->faults[i]);
    bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    mp_writer_fini(&w);
}

static void sv_on_child_cmd(struct sv *sv, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char name[SV_NAME_MAX];
    struct sv_child *c;

    if (sv_body_name(env, name, sizeof(name)) != OK) {
        bus_reply_err(req, ERR_INVAL, "missing name");
        return;
    }
    if (sv->stopping) {
        bus_reply_err(req, ERR_CLOSED, "the supervisor is stopping");
        return;
    }
    c = sv_child_find(sv, name);
    if (!c) {
        bus_reply_err(req, ERR_NOTFOUND, "no such child");
        return;
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
        struct mp_reader v;
        uint64_t sig = SIGKILL;
        if (mp_map_find(env->body.p, env->body.n, "signal", &v) == OK &&
            (mp_read_uint(&v, &sig) != OK || sig < 1 || sig > 64)) {
            bus_reply_err(req, ERR_INVAL, "signal must be 1-64");
            return;
        }
        if (c->pid <= 0) {
            bus_reply_err(req, ERR_CONFLICT, "not running");
            return;
        }
        kill(c->pid, (int)sig);
        break;
    }
    default:
        break;
    }
    sv_reply_child(req, c);
}

static void sv_on_request(struct bus_req *req, void *arg)
{
    struct sv *sv = arg;
    switch (bus_req_env(req)->type) {
    case MSG_HEALTH_PING: {
        struct mp_writer w;
        mp_writer_init(&w);
        mp_put_map(&w, 2);
        mp_put_kv_str(&w, "name", "supervisor");
        mp_put_kv_str(&w, "state", sv->stopping ? "stopping" : "up");
        bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
        mp_writer_fini(&w);
        return;
    }
    case MSG_SV_STATUS:
        sv_on_status(sv, req);
        return;
    case MSG_SV_START:
    case MSG_SV_STOP:
    case MSG_SV_RESTART:
    case MSG_SV_KILL:
        sv_on_child_cmd(sv, req);
        return;
    case MSG_SV_FAULT_SET:
        sv_on_fault_set(sv, req);
        return;
    case MSG_SV_FAULT_LIST:
        sv_on_fault_list(sv, req);
        return;
    case MSG_SV_TAP_FILTER:
        sv_taps_on_filter(sv, req);
        return;
    default:
        bus_reply_err(req, ERR_PROTO, "unknown message type");
    }
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
