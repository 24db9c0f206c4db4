/*
 * cluster.c - this node in the cluster registry, and the registry passed on
 * to the node's processes.
 *
 * Every second one Lua step writes this node's record (a JSON object: its
 * address, whether it leads, and the tcp:// event socket of each of its
 * actor instances) to the hash <leader key>:nodes, stamps it with Redis's
 * own clock in the sorted set <leader key>:seen, drops the nodes not seen
 * for TETHER_SV_NODE_TTL and answers every live record. Redis's clock, not
 * ours, so skew between hosts cannot age a node out. The keys share the
 * leader key's hash tag: one slot, so the step runs on Redis Cluster too.
 *
 * What the step answered is published as cluster.members on the
 * supervisor's event socket (bus_cluster.c dials from it) and kept for
 * sv.status (tetherctl status --cluster). A registry Redis does not answer
 * leaves the last view in place: events only get late, nothing is lost.
 */
#include "sv.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "clock.h"
#include "log.h"
#include "mp.h"
#include "msg.h"
#include "msg_raw.h"
#include "msg_sv.h"
#include "pmetrics.h"

static const char sv_lua_register[] =
    "local t = redis.call('time') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) "
    "redis.call('zadd', KEYS[2], now, ARGV[1]) "
    "local gone = redis.call('zrangebyscore', KEYS[2], '-inf', now - tonumber(ARGV[3])) "
    "for _, n in ipairs(gone) do "
    "  redis.call('hdel', KEYS[1], n) redis.call('zrem', KEYS[2], n) end "
    "local out = {} "
    "local live = redis.call('zrange', KEYS[2], 0, -1, 'withscores') "
    "for i = 1, #live, 2 do "
    "  local v = redis.call('hget', KEYS[1], live[i]) "
    "  if v then out[#out + 1] = live[i] "
    "    out[#out + 1] = tostring(now - tonumber(live[i + 1])) out[#out + 1] = v end "
    "end return out";

static const char sv_lua_leave[] =
    "redis.call('hdel', KEYS[1], ARGV[1]) return redis.call('zrem', KEYS[2], ARGV[1])";

bool sv_has_events(const struct sv_child *c)
{
    return c->events_port != 0;
}

static const char *sv_json_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* This node's record: what other nodes need to reach it, and what operators read. */
static char *sv_cluster_record(const struct sv *sv)
{
    json_t *o = json_object(), *ev = json_object(), *rq = json_object();
    char url[BUS_URL_MAX];
    if (!o || !ev || !rq) {
        json_decref(o);
        json_decref(ev);
        json_decref(rq);
        return NULL;
    }
    for (unsigned i = 0; i < sv->nchildren; i++) {
        const struct sv_child *c = &sv->children[i];
        if (c->requests_port) {
            snprintf(url, sizeof(url), "tcp://%s:%u", sv->sv.node_addr, c->requests_port);
            (void)json_object_set_new(rq, c->spec->name, json_string(url));
        }
        if (!sv_has_events(c))
            continue;
        json_t *list = json_object_get(ev, c->spec->name);
        if (!list) {
            list = json_array();
            (void)json_object_set_new(ev, c->spec->name, list);
        }
        snprintf(url, sizeof(url), "tcp://%s:%u", sv->sv.node_addr, c->events_port);
        (void)json_array_append_new(list, json_string(url));
    }
    (void)json_object_set_new(o, "node", json_string(sv->node));
    (void)json_object_set_new(o, "addr", json_string(sv->sv.node_addr));
    (void)json_object_set_new(o, "pid", json_integer((json_int_t)getpid()));
    (void)json_object_set_new(o, "started_ms", json_integer((json_int_t)sv->started_ms));
    (void)json_object_set_new(o, "leader", json_boolean(sv->leader));
    (void)json_object_set_new(o, "fencing_token",
                              json_integer(sv->leader ? (json_int_t)sv->fencing_token : 0));
    (void)json_object_set_new(o, "events", ev);
    (void)json_object_set_new(o, "requests", rq);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/*
 * One node of the answer (msg_bus_cluster_node) into w; scratch holds its maps keyed by actor
 * name, requests and events. False when out of memory.
 */
static bool sv_cluster_put_node(struct mp_writer *w, struct mp_writer *scratch, const char *node,
                                uint64_t age, json_t *rec)
{
    json_t *ev = json_object_get(rec, "events"), *rq = json_object_get(rec, "requests");
    const char *actor;
    json_t *urls;
    mp_writer_reset(scratch);
    mp_put_map(scratch, json_is_object(rq) ? (uint32_t)json_object_size(rq) : 0);
    if (json_is_object(rq))
        json_object_foreach(rq, actor, urls)
        {
            mp_put_str(scratch, actor);
            mp_put_str(scratch, json_is_string(urls) ? json_string_value(urls) : "");
        }
    size_t rq_n = mp_writer_len(scratch);
    mp_put_map(scratch, json_is_object(ev) ? (uint32_t)json_object_size(ev) : 0);
    if (json_is_object(ev))
        json_object_foreach(ev, actor, urls)
        {
            size_t i, n = json_is_array(urls) ? json_array_size(urls) : 0;
            json_t *u;
            mp_put_str(scratch, actor);
            mp_put_array(scratch, (uint32_t)n);
            json_array_foreach(urls, i, u)
            {
                const char *s = json_string_value(u);
                mp_put_str(scratch, s ? s : "");
            }
        }
    if (mp_writer_err(scratch) != OK)
        return false;
    const char *maps = mp_writer_data(scratch);
    json_int_t ft = json_integer_value(json_object_get(rec, "fencing_token"));
    struct msg_bus_cluster_node nd = {
        .node = msg_str(node),
        .addr = msg_str(sv_json_str(rec, "addr")),
        .leader = json_is_true(json_object_get(rec, "leader")),
        .fencing_token = ft > 0 ? (uint64_t)ft : 0,
        .age_ms = age,
        .requests = {maps, rq_n},
        .events = {maps + rq_n, mp_writer_len(scratch) - rq_n},
    };
    msg_encode(&msg_bus_cluster_node_form, w, &nd);
    return true;
}

/*
 * The step's answer, [node, age_ms, record]*, as the cluster.members body. The leader is the
 * node whose record says so with the highest token: during a failover the deposed one may
 * still say so for up to a second.
 */
static void sv_cluster_view(struct sv *sv, const redisReply *rep)
{
    struct mp_writer w, nodes_w, list_w, scratch;
    char leader[64] = "";
    uint64_t best = 0;
    size_t n = rep->elements / 3;
    unsigned nodes = 0;
    bool ok = true;

    mp_writer_init(&nodes_w);
    mp_writer_init(&scratch);
    for (size_t i = 0; i < n && nodes < SV_CLUSTER_NODES && ok; i++) {
        const redisReply *name = rep->element[3 * i], *age = rep->element[3 * i + 1],
                         *val = rep->element[3 * i + 2];
        json_error_t jerr;
        json_t *rec;
        if (name->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING ||
            age->type != REDIS_REPLY_STRING)
            continue;
        rec = json_loadb(val->str, val->len, 0, &jerr);
        if (!json_is_object(rec)) {
            json_decref(rec);
            rec = json_object(); /* still listed: it is alive, whatever it wrote */
        }
        uint64_t a = strtoull(age->str, NULL, 10);
        ok = sv_cluster_put_node(&nodes_w, &scratch, name->str, a, rec);
        json_int_t ft = json_integer_value(json_object_get(rec, "fencing_token"));
        if (json_is_true(json_object_get(rec, "leader")) && ft > 0 && (uint64_t)ft > best) {
            best = (uint64_t)ft;
            snprintf(leader, sizeof(leader), "%s", name->str);
        }
        json_decref(rec);
        nodes++;
    }
    mp_writer_fini(&scratch);
    /* the array of the nodes written: how many is known only now */
    mp_writer_init(&list_w);
    mp_put_array(&list_w, nodes);
    mp_put_raw(&list_w, mp_writer_data(&nodes_w), mp_writer_len(&nodes_w));
    ok = ok && mp_writer_err(&nodes_w) == OK;
    mp_writer_fini(&nodes_w);
    struct msg_bus_cluster m = {msg_str(sv->node), msg_str(leader), msg_raw_of(&list_w)};
    mp_writer_init(&w);
    msg_encode(&msg_bus_cluster_form, &w, &m);
    if (!ok || mp_writer_err(&list_w) != OK || mp_writer_err(&w) != OK) {
        mp_writer_fini(&list_w);
        mp_writer_fini(&w);
        return;
    }
    mp_writer_fini(&list_w);
    free(sv->cluster_body);
    sv->cluster_body = malloc(mp_writer_len(&w));
    if (sv->cluster_body) {
        memcpy(sv->cluster_body, mp_writer_data(&w), mp_writer_len(&w));
        sv->cluster_body_n = mp_writer_len(&w);
    }
    sv->cluster_nodes = nodes;
    snprintf(sv->cluster_leader, sizeof(sv->cluster_leader), "%s", leader);
    (void)bus_publish(sv->events, "cluster.members", MSG_CLUSTER_MEMBERS, mp_writer_data(&w),
                      mp_writer_len(&w));
    mp_writer_fini(&w);
    pm_set(pm_series(PM_CLUSTER_NODES, ""), nodes);
}

static void sv_cluster_answer(void *arg, err_t rc, const redisReply *rep)
{
    struct sv *sv = arg;
    sv->cluster_busy = false;
    if (rc != OK || rep->type != REDIS_REPLY_ARRAY) {
        if (!sv->cluster_warned)
            LOG_WARN("sv.cluster_unreachable",
                     "cannot reach the cluster registry (%s); "
                     "keeping the last view",
                     rc == ERR_INTERNAL && rep ? rep->str : err_name(rc));
        sv->cluster_warned = true;
        return;
    }
    if (sv->cluster_warned)
        LOG_INFO("sv.cluster_reachable", "the cluster registry answers again");
    sv->cluster_warned = false;
    sv_cluster_view(sv, rep);
}

static err_t sv_cluster_eval(struct sv *sv, const char *script, const char *arg2,
                             db_redis_async_fn fn)
{
    char nodes[300], seen[300], ttl[32];
    snprintf(nodes, sizeof(nodes), "%s:nodes", sv->sv.leader_key);
    snprintf(seen, sizeof(seen), "%s:seen", sv->sv.leader_key);
    snprintf(ttl, sizeof(ttl), "%lld", sv->sv.node_ttl_ms);
    const char *argv[] = {"EVAL", script, "2", nodes, seen, sv->node, arg2, ttl};
    return db_redis_async_cmd(sv->redis, 8, argv, NULL, fn, sv);
}

void sv_cluster_tick(struct sv *sv)
{
    if (sv->cluster_busy || sv->stopping)
        return;
    char *rec = sv_cluster_record(sv);
    if (!rec)
        return;
    if (sv_cluster_eval(sv, sv_lua_register, rec, sv_cluster_answer) == OK)
        sv->cluster_busy = true;
    free(rec);
}

static void sv_cluster_left(void *arg, err_t rc, const redisReply *rep)
{
    struct sv *sv = arg;
    (void)rep;
    sv->cluster_busy = false;
    if (rc == OK)
        LOG_INFO("sv.cluster_left", "removed this node from the cluster registry");
}

bool sv_cluster_leave(struct sv *sv)
{
    if (sv->cluster_busy)
        return true; /* the register in flight answers first; the record then ages out */
    if (sv_cluster_eval(sv, sv_lua_leave, "", sv_cluster_left) != OK)
        return false;
    sv->cluster_busy = true;
    return true;
}

bool sv_cluster_busy(const struct sv *sv)
{
    return sv->cluster_busy;
}

void sv_cluster_free(struct sv *sv)
{
    free(sv->cluster_body);
    sv->cluster_body = NULL;
}

void sv_cluster_assign_ports(struct sv *sv)
{
    unsigned next = 0;
    for (unsigned i = 0; i < sv->nchildren; i++) {
        struct sv_child *c = &sv->children[i];
        c->events_port = 0;
        c->requests_port = 0;
        if (sv->sv.node_addr[0] && c->spec->leader_only)
            c->requests_port = (unsigned)sv->sv.leader_port;
        if (!sv->sv.node_addr[0] || !c->spec->events)
            continue;
        c->events_port = (unsigned)sv->sv.events_port + next++;
    }
}
