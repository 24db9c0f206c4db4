/*
 * db_redis_cluster.c - Redis Cluster mode of the non-blocking client
 * (db_redis_async.h, "Redis Cluster"): the slot map (CLUSTER SLOTS), one
 * plain client per master, routing by the slot of a command's key, MOVED
 * and ASK. It never talks to replicas, runs no MULTI/EXEC across nodes and
 * retries neither TRYAGAIN nor CLUSTERDOWN: those reach the caller as the
 * error replies they are.
 */
#include "db_redis_cluster_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

#define DRC_NO_NODE 0xFFu
/* Each MOVED asks for the map again: at most this often, the MOVED itself fixes its slot. */
#define DRC_REFRESH_MIN_MS 100u

/* Commands the front sends on its own, formatted once. */
static const char drc_cmd_slots[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
static const char drc_cmd_asking[] = "*1\r\n$6\r\nASKING\r\n";

struct drc_node {
    struct db_redis_async *r; /* NULL: a free entry */
    char host[256];
    int port;
    bool mapped; /* serves slots: in the last map, or named by a MOVED since */
};

struct db_redis_cluster {
    struct loop *loop;
    struct db_redis_addr seed; /* also the password every node gets */
    unsigned timeout_ms;
    struct drc_node nodes[DB_REDIS_CLUSTER_NODES_MAX]; /* [0]: the seed, never swept */
    uint8_t slots[DB_REDIS_CLUSTER_SLOTS];             /* node per slot; DRC_NO_NODE: unknown */
    uint8_t next[DB_REDIS_CLUSTER_SLOTS];              /* a map being read */
    bool have_map;
    bool refreshing;  /* a CLUSTER SLOTS is on its way, to refresh_node */
    bool stale;       /* read the map again with the next command */
    bool single;      /* the seed said it is no Cluster: everything goes to it */
    bool warned;      /* a map that could not be read was logged (until one is) */
    bool full_warned; /* the node table's limit was logged */
    bool closing;     /* db_redis_cluster_free() is failing what is pending */
    unsigned refresh_node;
    uint64_t refreshed_mono;
    unsigned npending;
    uint64_t sweep_timer;
};

/* One caller's command: kept (formatted) until answered, for a redirect. */
struct drc_req {
    struct db_redis_cluster *c;
    db_redis_async_fn fn;
    void *arg;
    char *cmd; /* NULL for a command with no key (never redirected) */
    size_t len;
    unsigned node; /* where it went last */
    unsigned redirects;
};

/* ---- pure: slots, keys, redirects ---- */

static uint16_t drc_crc16(const unsigned char *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* Redis's rule: the bytes between the first '{' and the first '}' after it, when not empty. */
static bool drc_tag(const char *key, size_t len, const char **tag, size_t *tag_len)
{
    const char *open = memchr(key, '{', len);
    if (!open)
        return false;
    const char *close = memchr(open + 1, '}', len - (size_t)(open - key) - 1);
    if (!close || close == open + 1)
        return false;
    *tag = open + 1;
    *tag_len = (size_t)(close - open - 1);
    return true;
}

unsigned db_redis_cluster_slot(const char *key, size_t len)
{
    const char *tag;
    size_t tl;
    if (drc_tag(key, len, &tag, &tl)) {
        key = tag;
        len = tl;
    }
    return drc_crc16((const unsigned char *)key, len) & (DB_REDIS_CLUSTER_SLOTS - 1);
}

bool db_redis_key_has_tag(const char *key, size_t len)
{
    const char *tag;
    size_t tl;
    return drc_tag(key, len, &tag, &tl);
}

static size_t drc_arg_len(const char **argv, const size_t *lens, int i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

static bool drc_arg_is(const char **argv, const size_t *lens, int i, const char *name)
{
    size_t n = strlen(name);
    return drc_arg_len(argv, lens, i) == n && strncasecmp(argv[i], name, n) == 0;
}

static bool drc_arg_in(const char **argv, const size_t *lens, int i, const char *const *names,
                       size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (drc_arg_is(argv, lens, i, names[k]))
            return true;
    return false;
}

#define DRC_N(a) (sizeof(a) / sizeof((a)[0]))

int db_redis_cluster_key_index(int argc, const char **argv, const size_t *lens)
{
    static const char *const keyless[] = {
        "PING",      "ECHO",    "INFO",     "SCRIPT",    "CLUSTER", "AUTH",     "SELECT",  "HELLO",
        "CLIENT",    "CONFIG",  "COMMAND",  "FUNCTION",  "DBSIZE",  "FLUSHALL", "FLUSHDB", "TIME",
        "ROLE",      "ASKING",  "READONLY", "READWRITE", "PUBLISH", "WAIT",     "SCAN",    "KEYS",
        "RANDOMKEY", "SLOWLOG", "LATENCY",  "DEBUG",     "MULTI",   "EXEC",     "DISCARD"};
    static const char *const second[] = {"OBJECT", "MEMORY", "XINFO", "XGROUP", "BITOP"};
    static const char *const scripts[] = {"EVAL",       "EVALSHA", "EVAL_RO",
                                          "EVALSHA_RO", "FCALL",   "FCALL_RO"};
    if (argc < 2 || drc_arg_in(argv, lens, 0, keyless, DRC_N(keyless)))
        return -1;
    if (drc_arg_in(argv, lens, 0, second, DRC_N(second)))
        return argc > 2 ? 2 : -1;
    if (drc_arg_in(argv, lens, 0, scripts, DRC_N(scripts))) {
        size_t n = argc > 2 ? drc_arg_len(argv, lens, 2) : 0;
        unsigned long numkeys = 0;
        for (size_t i = 0; i < n && i < 9; i++) {
            if (argv[2][i] < '0' || argv[2][i] > '9')
                return -1;
            numkeys = numkeys * 10 + (unsigned long)(argv[2][i] - '0');
        }
        return n > 0 && numkeys > 0 && argc > 3 ? 3 : -1;
    }
    if (drc_arg_is(argv, lens, 0, "XREAD") || drc_arg_is(argv, lens, 0, "XREADGROUP")) {
        for (int i = 1; i + 1 < argc; i++)
            if (drc_arg_is(argv, lens, i, "STREAMS"))
                return i + 1;
        return -1;
    }
    return 1;
}

/* Parses a decimal of 1..maxd digits from s[*i], moving *i past it. */
static bool drc_parse_dec(const char *s, size_t n, size_t *i, unsigned maxd, unsigned long *v)
{
    unsigned d = 0;
    *v = 0;
    for (; *i < n && s[*i] >= '0' && s[*i] <= '9'; (*i)++) {
        if (++d > maxd)
            return false;
        *v = *v * 10 + (unsigned long)(s[*i] - '0');
    }
    return d > 0;
}

bool db_redis_cluster_redirect_parse(const char *s, size_t n, bool *ask, unsigned *slot, char *host,
                                     size_t host_cap, int *port)
{
    size_t i;
    unsigned long v, p;
    if (n > 6 && memcmp(s, "MOVED ", 6) == 0) {
        *ask = false;
        i = 6;
    } else if (n > 4 && memcmp(s, "ASK ", 4) == 0) {
        *ask = true;
        i = 4;
    } else {
        return false;
    }
    if (!drc_parse_dec(s, n, &i, 5, &v) || v >= DB_REDIS_CLUSTER_SLOTS || i >= n || s[i] != ' ')
        return false;
    i++;
    /* host:port, split at the last ':' (an IPv6 address holds some) */
    const char *colon = NULL;
    for (size_t j = i; j < n; j++)
        if (s[j] == ':')
            colon = s + j;
    if (!colon || (size_t)(colon - (s + i)) >= host_cap)
        return false;
    size_t hl = (size_t)(colon - (s + i)), pi = (size_t)(colon - s) + 1;
    if (!drc_parse_dec(s, n, &pi, 5, &p) || pi != n || p == 0 || p > 65535)
        return false;
    memcpy(host, s + i, hl);
    host[hl] = '\0';
    *slot = (unsigned)v;
    *port = (int)p;
    return true;
}

/* ---- nodes ---- */

static void drc_sweep(struct loop *l, void *arg)
{
    struct db_redis_cluster *c = arg;
    (void)l;
    c->sweep_timer = 0;
    for (unsigned i = 1; i < DB_REDIS_CLUSTER_NODES_MAX; i++) {
        struct drc_node *n = &c->nodes[i];
        if (n->r && !n->mapped && db_redis_async_pending(n->r) == 0 &&
            !(c->refreshing && c->refresh_node == i)) {
            db_redis_async_free(n->r);
            n->r = NULL;
        }
    }
}

/*
 * Nodes serving no slot (a master demoted, removed) are freed from a timer: a reply callback
 * may be running on one of them, and a client is never freed from its own callback.
 */
static void drc_sweep_later(struct db_redis_cluster *c)
{
    if (!c->sweep_timer || !loop_timer_is_pending(c->loop, c->sweep_timer))
        c->sweep_timer = loop_timer_add(c->loop, 0, drc_sweep, c);
}

/* The node at host:port, added if new; -1 when the table is full. */
static int drc_node_get(struct db_redis_cluster *c, const char *host, int port)
{
    int free_at = -1;
    for (unsigned i = 0; i < DB_REDIS_CLUSTER_NODES_MAX; i++) {
        struct drc_node *n = &c->nodes[i];
        if (n->r && n->port == port && strcmp(n->host, host) == 0)
            return (int)i;
        if (!n->r && free_at < 0)
            free_at = (int)i;
    }
    if (strlen(host) >= sizeof(c->nodes[0].host)) {
        LOG_WARN("db.redis_cluster_host",
                 "cannot use a Redis Cluster node whose host name is "
                 "%zu bytes long",
                 strlen(host));
        return -1;
    }
    if (free_at < 0) {
        if (!c->full_warned)
            LOG_WARN("db.redis_cluster_full",
                     "cannot use Redis at %s:%d: a client connects to %u Cluster nodes at most",
                     host, port, DB_REDIS_CLUSTER_NODES_MAX);
        c->full_warned = true;
        drc_sweep_later(c);
        return -1;
    }
    struct drc_node *n = &c->nodes[free_at];
    struct db_redis_addr a = c->seed;
    snprintf(a.host, sizeof(a.host), "%s", host);
    a.port = port;
    n->r = db_redis_async_node_new(c->loop, &a, c->timeout_ms);
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    n->mapped = false;
    return free_at;
}

/* Where a command with no key goes: a master that is up, else any master, else the seed. */
static unsigned drc_home(const struct db_redis_cluster *c)
{
    int mapped = -1;
    for (unsigned i = 0; i < DB_REDIS_CLUSTER_NODES_MAX; i++) {
        const struct drc_node *n = &c->nodes[i];
        if (!n->r || !n->mapped)
            continue;
        if (db_redis_async_up(n->r))
            return i;
        if (mapped < 0)
            mapped = (int)i;
    }
    return mapped >= 0 ? (unsigned)mapped : 0;
}

/* ---- the slot map ---- */

/* Reads a CLUSTER SLOTS reply into c->next and the nodes; false when it is not one. */
static bool drc_map_read(struct db_redis_cluster *c, const redisReply *r, bool *seen,
                         unsigned *covered)
{
    const char *asked = c->nodes[c->refresh_node].host;
    char host[256];
    *covered = 0;
    if (r->type != REDIS_REPLY_ARRAY)
        return false;
    memset(c->next, DRC_NO_NODE, sizeof(c->next));
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
            return false;
        const redisReply *lo = e->element[0], *hi = e->element[1], *m = e->element[2];
        if (lo->type != REDIS_REPLY_INTEGER || hi->type != REDIS_REPLY_INTEGER || lo->integer < 0 ||
            hi->integer < lo->integer || hi->integer >= (long long)DB_REDIS_CLUSTER_SLOTS ||
            m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
            m->element[1]->type != REDIS_REPLY_INTEGER || m->element[1]->integer <= 0 ||
            m->element[1]->integer > 65535)
            return false;
        const redisReply *h = m->element[0];
        /* no endpoint ("", "?" or nil: cluster-preferred-endpoint-type unknown-endpoint):
         * the node that answered */
        if (h->type == REDIS_REPLY_STRING && h->len > 0 && !(h->len == 1 && h->str[0] == '?')) {
            if (h->len >= sizeof(host))
                return false;
            memcpy(host, h->str, h->len);
            host[h->len] = '\0';
        } else if (h->type == REDIS_REPLY_STRING || h->type == REDIS_REPLY_NIL) {
            snprintf(host, sizeof(host), "%s", asked);
        } else {
            return false;
        }
        int n = drc_node_get(c, host, (int)m->element[1]->integer);
        if (n < 0)
            continue; /* those slots stay unknown: sent to any node, whose MOVED then fails */
        seen[n] = true;
        memset(c->next + lo->integer, n, (size_t)(hi->integer - lo->integer + 1));
        *covered += (unsigned)(hi->integer - lo->integer + 1);
    }
    return true;
}

static void drc_refresh_rotate(struct db_redis_cluster *c)
{
    for (unsigned k = 1; k <= DB_REDIS_CLUSTER_NODES_MAX; k++) {
        unsigned i = (c->refresh_node + k) % DB_REDIS_CLUSTER_NODES_MAX;
        if (c->nodes[i].r) {
            c->refresh_node = i;
            return;
        }
    }
}

static void drc_on_slots(void *arg, err_t rc, const redisReply *r)
{
    struct db_redis_cluster *c = arg;
    bool seen[DB_REDIS_CLUSTER_NODES_MAX] = {false};
    unsigned covered = 0, masters = 0;
    const struct drc_node *asked = &c->nodes[c->refresh_node];
    c->refreshing = false;
    if (rc == ERR_CLOSED || c->closing)
        return;
    if (rc == ERR_INTERNAL && strstr(r->str, "cluster support disabled")) {
        LOG_WARN("db.redis_not_cluster",
                 "Redis at %s:%d is not a Redis Cluster: every command goes to it", asked->host,
                 asked->port);
        c->single = true;
        return;
    }
    if (rc != OK || !drc_map_read(c, r, seen, &covered)) {
        if (!c->warned)
            LOG_WARN("db.redis_cluster_slots",
                     "could not read the slot map from Redis at %s:%d: %.200s", asked->host,
                     asked->port,
                     rc == OK             ? "not a CLUSTER SLOTS reply"
                     : rc == ERR_INTERNAL ? r->str
                                          : err_str(rc));
        c->warned = true;
        c->stale = true;
        drc_refresh_rotate(c);
        drc_sweep_later(c); /* nodes a half-read map added */
        return;
    }
    c->warned = false;
    bool changed = !c->have_map || memcmp(c->slots, c->next, sizeof(c->slots)) != 0;
    memcpy(c->slots, c->next, sizeof(c->slots));
    c->have_map = true;
    for (unsigned i = 0; i < DB_REDIS_CLUSTER_NODES_MAX; i++) {
        c->nodes[i].mapped = seen[i];
        masters += seen[i];
    }
    /* a cluster being set up or resharded serves part of the slots: ask again until it is whole */
    if (covered < DB_REDIS_CLUSTER_SLOTS)
        c->stale = true;
    if (changed)
        LOG_INFO("db.redis_cluster_map", "Redis Cluster: %u of %u slots on %u masters", covered,
                 DB_REDIS_CLUSTER_SLOTS, masters);
    drc_sweep_later(c);
}

/* Asks for the map (one request at a time, at most every DRC_REFRESH_MIN_MS). */
static void drc_refresh(struct db_redis_cluster *c)
{
    uint64_t now = clock_mono_ms();
    if (c->refreshing || c->closing || c->single)
        return;
    if (c->refreshed_mono && now - c->refreshed_mono < DRC_REFRESH_MIN_MS) {
        c->stale = true; /* the next command after that asks */
        return;
    }
    unsigned pick = c->refresh_node;
    if (pick >= DB_REDIS_CLUSTER_NODES_MAX || !c->nodes[pick].r)
        pick = 0;
    if (!db_redis_async_up(c->nodes[pick].r))
        for (unsigned i = 0; i < DB_REDIS_CLUSTER_NODES_MAX; i++)
            if (c->nodes[i].r && db_redis_async_up(c->nodes[i].r)) {
                pick = i;
                break;
            }
    c->refreshed_mono = now;
    c->refresh_node = pick;
    if (db_redis_async_node_cmd(c->nodes[pick].r, drc_cmd_slots, sizeof(drc_cmd_slots) - 1,
                                drc_on_slots, c) != OK) {
        c->stale = true;
        drc_refresh_rotate(c);
        return;
    }
    c->refreshing = true;
    c->stale = false;
}

/* ---- commands ---- */

static void drc_on_asking(void *arg, err_t rc, const redisReply *r)
{
    /* the command after it answers for both */
    (void)arg;
    (void)rc;
    (void)r;
}

static void drc_on_other(void *arg, err_t rc, const redisReply *r)
{
    (void)arg;
    if (rc != OK && rc != ERR_CLOSED)
        LOG_WARN("db.redis_cluster_broadcast",
                 "a SCRIPT command did not reach every master: %.200s",
                 rc == ERR_INTERNAL ? r->str : err_str(rc));
}

static void drc_on_reply(void *arg, err_t rc, const redisReply *r);

/* Sends q again, to node n (after ASKING for an ASK). */
static err_t drc_resend(struct db_redis_cluster *c, struct drc_req *q, unsigned n, bool ask)
{
    struct db_redis_async *r = c->nodes[n].r;
    err_t rc;
    if (ask && (rc = db_redis_async_node_cmd(r, drc_cmd_asking, sizeof(drc_cmd_asking) - 1,
                                             drc_on_asking, NULL)) != OK)
        return rc;
    q->node = n;
    return db_redis_async_node_cmd(r, q->cmd, q->len, drc_on_reply, q);
}

static void drc_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct drc_req *q = arg;
    struct db_redis_cluster *c = q->c;
    bool ask;
    unsigned slot;
    char host[256];
    int port;
    if (rc == ERR_INTERNAL && q->cmd && !c->closing &&
        q->redirects < DB_REDIS_CLUSTER_REDIRECTS_MAX &&
        db_redis_cluster_redirect_parse(r->str, r->len, &ask, &slot, host, sizeof(host), &port)) {
        /* an empty host is the node that answered */
        int n = drc_node_get(c, host[0] ? host : c->nodes[q->node].host, port);
        if (n >= 0) {
            LOG_DEBUG("db.redis_redirect", "%s slot %u to %s:%d", ask ? "ASK" : "MOVED", slot,
                      c->nodes[n].host, port);
            q->redirects++;
            if (!ask) {
                /* the slot has moved for good: send its keys there from now on */
                c->slots[slot] = (uint8_t)n;
                c->nodes[n].mapped = true;
                drc_refresh(c);
            }
            if (drc_resend(c, q, (unsigned)n, ask) == OK)
                return;
            rc = ERR_UNAVAIL;
            r = NULL;
        }
    } else if (!c->closing &&
               (rc == ERR_UNAVAIL || rc == ERR_TIMEOUT ||
                (rc == ERR_INTERNAL && r->len >= 11 && memcmp(r->str, "CLUSTERDOWN", 11) == 0))) {
        c->stale = true; /* a master lost may have been replaced: the next command asks */
    }
    c->npending--;
    q->fn(q->arg, rc, r);
    redisFreeCommand(q->cmd);
    free(q);
}

err_t db_redis_cluster_cmd(struct db_redis_cluster *c, int argc, const char **argv,
                           const size_t *lens, db_redis_async_fn fn, void *arg)
{
    char *cmd = NULL;
    if (c->closing)
        return ERR_UNAVAIL;
    int k = db_redis_cluster_key_index(argc, argv, lens);
    int slot = k >= 0 ? (int)db_redis_cluster_slot(argv[k], drc_arg_len(argv, lens, k)) : -1;
    if (!c->have_map || c->stale)
        drc_refresh(c); /* pipelined ahead of this command on the seed's connection */
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0)
        return ERR_NOMEM;
    struct drc_req *q = xcalloc(1, sizeof(*q));
    q->c = c;
    q->fn = fn;
    q->arg = arg;
    q->len = (size_t)len;
    /* an unknown slot goes to any node: its MOVED names the right one */
    q->node = slot >= 0 && c->slots[slot] != DRC_NO_NODE ? c->slots[slot] : drc_home(c);
    if (!c->nodes[q->node].r)
        q->node = drc_home(c); /* can't happen: a slot names a mapped node, never swept */
    err_t rc = db_redis_async_node_cmd(c->nodes[q->node].r, cmd, q->len, drc_on_reply, q);
    if (rc != OK) {
        redisFreeCommand(cmd);
        free(q);
        return rc;
    }
    c->npending++;
    /* a script loaded on one master only would answer NOSCRIPT on the others */
    if (k < 0 && argc >= 2 && drc_arg_is(argv, lens, 0, "SCRIPT") &&
        (drc_arg_is(argv, lens, 1, "LOAD") || drc_arg_is(argv, lens, 1, "FLUSH")))
        for (unsigned i = 0; i < DB_REDIS_CLUSTER_NODES_MAX; i++)
            if (i != q->node && c->nodes[i].r && c->nodes[i].mapped &&
                db_redis_async_node_cmd(c->nodes[i].r, cmd, q->len, drc_on_other, NULL) != OK)
                drc_on_other(NULL, ERR_UNAVAIL, NULL);
    if (slot >= 0)
        q->cmd = cmd;
    else
        redisFreeCommand(cmd);
    return OK;
}

/* ---- life cycle ---- */

struct db_redis_cluster *db_redis_cluster_new(struct loop *l, const struct db_redis_addr *seed,
                                              unsigned timeout_ms)
{
    struct db_redis_cluster *c = xcalloc(1, sizeof(*c));
    c->loop = l;
    c->seed = *seed;
    c->seed.db = 0;
    c->timeout_ms = timeout_ms;
    memset(c->slots, DRC_NO_NODE, sizeof(c->slots));
    c->nodes[0].r = db_redis_async_node_new(l, &c->seed, timeout_ms);
    snprintf(c->nodes[0].host, sizeof(c->nodes[0].host), "%s", seed->host);
    c->nodes[0].port = seed->port;
    return c;
}

void db_redis_cluster_free(struct db_redis_cluster *c)
{
    if (!c)
        return;
    c->closing = true;
    for (unsigned i = 0; i < DB_REDIS_CLUSTER_NODES_MAX; i++) {
        db_redis_async_free(c->nodes[i].r); /* fails what it holds: drc_on_reply, ERR_CLOSED */
        c->nodes[i].r = NULL;
    }
    if (c->sweep_timer)
        loop_timer_cancel(c->loop, c->sweep_timer);
    free(c);
}

bool db_redis_cluster_up(const struct db_redis_cluster *c)
{
    for (unsigned i = 0; i < DB_REDIS_CLUSTER_NODES_MAX; i++)
        if (c->nodes[i].r && db_redis_async_up(c->nodes[i].r))
            return true;
    return false;
}

unsigned db_redis_cluster_pending(const struct db_redis_cluster *c)
{
    return c->npending;
}
