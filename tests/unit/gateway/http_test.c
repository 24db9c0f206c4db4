/*
 * http_test.c - the resume step every bus continuation of a call goes through (gw_call_resume,
 * under gw_call_bus): while the request is there the continuation runs; once h2o has disposed
 * of it (the pool's dispose hook, as when a client leaves mid-call) the continuation never
 * runs and the call is finished there, its state freed by its own destructor. ASan's leak
 * check at exit covers "finished". The pipeline's other parts are stubbed: this file tests
 * http.c's call lifetime only.
 */
#include "../../../gateway/access_log.c"
#include "../../../gateway/errmap.c"
#include "../../../gateway/http.c"

#include "t.h"

/* ---- what http.c needs from the rest of the gateway ---- */

void gw_auth_begin(struct gw_call *c, gw_auth_done_fn done)
{
    done(c, 0, NULL);
}
void gw_auth_clear(struct gw_auth *a)
{
    (void)a;
}
bool gw_hosts_match(const struct gw_hosts *hosts, const char *authority, size_t len)
{
    (void)hosts, (void)authority, (void)len;
    return true;
}
bool gw_params_valid(const struct gw_route *r, const struct gw_params *p, json_t **details)
{
    (void)r, (void)p, (void)details;
    return true;
}
bool gw_route_match(const char *pattern, const char *path, size_t n, struct gw_params *params)
{
    (void)pattern, (void)path, (void)n, (void)params;
    return false;
}
void gw_metrics_request(const struct gw_route *route, enum gw_m_other other, int status,
                        uint64_t started_us)
{
    (void)route, (void)other, (void)status, (void)started_us;
}
enum gw_m_other gw_metrics_other(const char *tmpl)
{
    (void)tmpl;
    return GW_M_UNMATCHED;
}
void gw_metrics_bus(unsigned actor, enum gw_m_bus outcome, uint64_t started_us)
{
    (void)actor, (void)outcome, (void)started_us;
}
void gw_rate_check(struct gw_call *c) /* no limits here: straight on */
{
    gw_after_limits(c);
}
const struct gw_route gw_routes[] = {{GW_GET, "/t", 0, GW_BODY_RAW, GW_AUTH_SECRET, NULL}};
const size_t gw_nroutes = 1;

/* ---- a call as gw_http_on_req makes it, on a request that is only a pool ---- */

static struct gw gw;
static h2o_req_t req;
static int ran, freed;

static struct gw_call *call_new(void)
{
    struct gw_call *c = xcalloc(1, sizeof(*c));
    h2o_mem_init_pool(&req.pool);
    struct gw_call_ref *ref = h2o_mem_alloc_shared(&req.pool, sizeof(*ref), gw_call_ref_dispose);
    ref->call = c;
    c->_ref = ref;
    c->gw = &gw;
    c->req = &req;
    c->route = &gw_routes[0];
    gw.inflight++;
    return c;
}

static void state_free(void *p)
{
    freed++;
    free(p);
}

static void cont(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    (void)env;
    ran++;
    T_EQ(rc, ERR_TIMEOUT);
    T_ASSERT(c->req == &req); /* a continuation always has its request */
}

T_TEST(resume_with_request)
{
    struct gw_call *c = call_new();
    c->state = xmalloc(64);
    c->state_free = state_free;
    ran = freed = 0;
    gw_call_resume(c, cont, ERR_TIMEOUT, NULL);
    T_EQ(ran, 1);
    T_EQ(freed, 0); /* the continuation owns the call now */
    ((struct gw_call_ref *)c->_ref)->call = NULL;
    gw_call_free(c); /* what its gw_respond_* would end with */
    T_EQ(freed, 1);
    T_EQ(gw.inflight, 0u);
    h2o_mem_clear_pool(&req.pool);
}

T_TEST(resume_after_dispose)
{
    struct gw_call *c = call_new();
    c->state = xmalloc(64);
    c->state_free = state_free;
    ran = freed = 0;
    h2o_mem_clear_pool(&req.pool); /* h2o disposes of the request: the client is gone */
    T_ASSERT(c->req == NULL);
    gw_call_resume(c, cont, ERR_TIMEOUT, NULL);
    T_EQ(ran, 0);    /* the continuation never sees the call without its request */
    T_EQ(freed, 1);  /* the state went through its destructor */
    T_EQ(gw.inflight, 0u);
}

T_TEST(state_without_destructor)
{
    struct gw_call *c = call_new();
    c->state = xmalloc(64); /* plain free() at the end */
    h2o_mem_clear_pool(&req.pool);
    gw_call_resume(c, cont, OK, NULL);
    T_EQ(gw.inflight, 0u);
}

T_TEST(bus_actor_checked)
{
    struct gw_call *c = call_new();
    T_ERR(gw_call_bus(c, GW_NPEERS, 0, NULL, 0, cont), ERR_INVAL);
    h2o_mem_clear_pool(&req.pool);
    gw_call_resume(c, cont, OK, NULL);
    T_EQ(gw.inflight, 0u);
}

int main(void)
{
    T_RUN(resume_with_request);
    T_RUN(resume_after_dispose);
    T_RUN(state_without_destructor);
    T_RUN(bus_actor_checked);
    return T_DONE();
}
