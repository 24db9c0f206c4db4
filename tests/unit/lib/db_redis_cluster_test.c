/*
 * db_redis_cluster_test.c - Redis Cluster mode of the non-blocking client: hash slots (checked
 * against CLUSTER KEYSLOT), the key a command is routed by, MOVED/ASK parsing, the ?cluster=1
 * URL; then against a real 3-master cluster (tests/lib/redis-cluster.sh): keys spread over
 * every master, each callback once, SCRIPT LOAD on every master, an ASK while a slot migrates,
 * a MOVED once it has moved (and the map updated by it), a stopped master failing only its own
 * slots and coming back, a plain URL to a node (MOVED not followed), ERR_CLOSED for what is
 * pending at free; and ?cluster=1 naming a Redis that is no Cluster.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "db_redis.h"
#include "db_redis_async.h"
#include "db_redis_cluster_int.h"
#include "log.h"
#include "redis_server.h"
#include "t.h"

static struct loop loop;
static char dir[64], url[128];
static int ports[3];

/* ---- pure ---- */

T_TEST(slots)
{
    T_EQ(db_redis_cluster_slot("123456789", 9), 0x31C3u); /* CRC16/XMODEM check value */
    T_EQ(db_redis_cluster_slot("foo", 3), 12182u);
    T_EQ(db_redis_cluster_slot("{user1000}.following", 20), db_redis_cluster_slot("user1000", 8));
    T_EQ(db_redis_cluster_slot("{user1000}.followers", 20), db_redis_cluster_slot("user1000", 8));
    T_EQ(db_redis_cluster_slot("foo{}{bar}", 10), db_redis_cluster_slot("foo{}{bar}", 10));
    T_NE(db_redis_cluster_slot("foo{}{bar}", 10), db_redis_cluster_slot("bar", 3));
    T_EQ(db_redis_cluster_slot("foo{{bar}}zap", 13), db_redis_cluster_slot("{bar", 4));
    T_EQ(db_redis_cluster_slot("foo{bar}{zap}", 13), db_redis_cluster_slot("bar", 3));
    T_EQ(db_redis_cluster_slot("no{tag", 6), db_redis_cluster_slot("no{tag", 6));
    /* the stream-broker's keys of one session share one slot */
    T_EQ(db_redis_cluster_slot("tether:stream:{e1:chat-1}:in", 28),
         db_redis_cluster_slot("tether:part:6:{e1:chat-1}:in:p1", 31));
}

T_TEST(key_index)
{
    const char *get[] = {"GET", "k"};
    const char *evalsha[] = {"evalsha", "sha", "2", "k1", "k2", "a"};
    const char *eval0[] = {"EVAL", "return 1", "0"};
    const char *xread[] = {"XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0"};
    const char *xinfo[] = {"XINFO", "STREAM", "s"};
    const char *ping[] = {"PING"};
    const char *load[] = {"SCRIPT", "LOAD", "return 1"};
    const char *pub[] = {"PUBLISH", "ch", "m"};
    const size_t lens[] = {3, 1};
    T_EQ(db_redis_cluster_key_index(2, get, NULL), 1);
    T_EQ(db_redis_cluster_key_index(2, get, lens), 1);
    T_EQ(db_redis_cluster_key_index(6, evalsha, NULL), 3);
    T_EQ(db_redis_cluster_key_index(3, eval0, NULL), -1);
    T_EQ(db_redis_cluster_key_index(8, xread, NULL), 4);
    T_EQ(db_redis_cluster_key_index(3, xinfo, NULL), 2);
    T_EQ(db_redis_cluster_key_index(1, ping, NULL), -1);
    T_EQ(db_redis_cluster_key_index(3, load, NULL), -1);
    T_EQ(db_redis_cluster_key_index(3, pub, NULL), -1);
    const char *evalx[] = {"EVAL", "return 1", "x", "k"};
    const char *xread_nostreams[] = {"XREAD", "COUNT", "1"};
    const char *bin[] = {"SET", "a\0b", "v"};
    const size_t binl[] = {3, 3, 1};
    const char *xgroup[] = {"XGROUP", "CREATE", "s", "g", "$"};
    T_EQ(db_redis_cluster_key_index(4, evalx, NULL), -1);
    T_EQ(db_redis_cluster_key_index(3, xread_nostreams, NULL), -1);
    T_EQ(db_redis_cluster_key_index(3, bin, binl), 1);
    T_EQ(db_redis_cluster_key_index(5, xgroup, NULL), 2);
    /* a key's bytes past a NUL count */
    T_NE(db_redis_cluster_slot("a\0b", 3), db_redis_cluster_slot("a", 1));
}

T_TEST(hash_tags)
{
    T_ASSERT(db_redis_key_has_tag("{tether:leader}", 15));
    T_ASSERT(db_redis_key_has_tag("x{a}y", 5));
    T_ASSERT(!db_redis_key_has_tag("tether:leader", 13));
    T_ASSERT(!db_redis_key_has_tag("x{}y{a}", 7)); /* the first '{' decides: an empty tag */
    T_ASSERT(!db_redis_key_has_tag("x}{a", 4));
    T_ASSERT(!db_redis_key_has_tag("{abc", 4));
    T_ASSERT(!db_redis_key_has_tag("{a}", 2)); /* len bounds the search */
}

T_TEST(redirects)
{
    bool ask;
    unsigned slot;
    char host[256];
    int port;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    T_ASSERT(db_redis_cluster_redirect_parse(m, strlen(m), &ask, &slot, host, sizeof(host), &port));
    T_ASSERT(!ask && slot == 3999 && port == 6381);
    T_STREQ(host, "127.0.0.1");
    const char *a = "ASK 16383 :7000";
    T_ASSERT(db_redis_cluster_redirect_parse(a, strlen(a), &ask, &slot, host, sizeof(host), &port));
    T_ASSERT(ask && slot == 16383 && port == 7000 && host[0] == '\0');
    const char *v6 = "MOVED 1 ::1:7001";
    T_ASSERT(
        db_redis_cluster_redirect_parse(v6, strlen(v6), &ask, &slot, host, sizeof(host), &port));
    T_STREQ(host, "::1");
    const char *bad[] = {"MOVED 16384 h:1", "MOVED 1 h", "MOVED 1 h:0",  "MOVED 1 h:65536",
                         "MOVED x h:1",     "ERR MOVED", "MOVED 1 h:1 ", "ASK  1 h:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        T_ASSERT(!db_redis_cluster_redirect_parse(bad[i], strlen(bad[i]), &ask, &slot, host,
                                                  sizeof(host), &port));
}

T_TEST(urls)
{
    struct db_redis_addr a;
    T_OK(db_redis_addr_parse(&a, "redis://127.0.0.1:7000?cluster=1"));
    T_ASSERT(a.cluster && a.port == 7000 && a.db == 0);
    T_STREQ(a.host, "127.0.0.1");
    T_OK(db_redis_addr_parse(&a, "redis://:p?w@h:7000?cluster=1"));
    T_ASSERT(a.cluster && a.port == 7000);
    T_STREQ(a.password, "p?w");
    T_OK(db_redis_addr_parse(&a, "redis://h:7000/3?cluster=0"));
    T_ASSERT(!a.cluster && a.db == 3);
    T_OK(db_redis_addr_parse(&a, "redis://h:7000/3"));
    T_ASSERT(!a.cluster && a.db == 3 && a.port == 7000);
    T_ERR(db_redis_addr_parse(&a, "redis://h:7000?cluster=yes"), ERR_INVAL);
    T_ERR(db_redis_addr_parse(&a, "redis://h:7000?clustr=1"), ERR_INVAL);
    T_ERR(db_redis_addr_parse(&a, "redis://h:7000/2?cluster=1"), ERR_INVAL);
}

/* ---- against a real cluster ---- */

struct answers {
    unsigned n, ok, internal, timeout, unavail, closed;
    unsigned values_ok; /* GET answers matching what was set */
    char last[64];
};

static void on_answer(void *arg, err_t rc, const redisReply *rep)
{
    struct answers *a = arg;
    a->n++;
    if (rc == OK) {
        a->ok++;
        if (rep->type == REDIS_REPLY_STRING)
            snprintf(a->last, sizeof(a->last), "%.*s", (int)rep->len, rep->str);
    } else if (rc == ERR_INTERNAL) {
        a->internal++;
        snprintf(a->last, sizeof(a->last), "%.*s", (int)rep->len, rep->str);
    } else if (rc == ERR_TIMEOUT) {
        a->timeout++;
    } else if (rc == ERR_UNAVAIL) {
        a->unavail++;
    } else if (rc == ERR_CLOSED) {
        a->closed++;
    }
}

/* A GET whose answer is checked against the value set: "v<i>" for key "k:<i>". */
struct get_check {
    struct answers *a;
    unsigned i;
};

static void on_get(void *arg, err_t rc, const redisReply *rep)
{
    struct get_check *g = arg;
    char want[32];
    snprintf(want, sizeof(want), "v%u", g->i);
    on_answer(g->a, rc, rep);
    if (rc == OK && rep->type == REDIS_REPLY_STRING && strlen(want) == rep->len &&
        memcmp(rep->str, want, rep->len) == 0)
        g->a->values_ok++;
}

static void pump(const struct answers *a, unsigned want, uint64_t max_ms)
{
    uint64_t t0 = clock_mono_ms();
    while (a->n < want && clock_mono_ms() - t0 < max_ms)
        loop_run_once(&loop, 20);
}

/* A blocking command on node i (0..2); the reply into out (NUL-terminated) when a string. */
static err_t node_cmd(int i, int argc, const char **argv, char *out, size_t cap, long long *integer)
{
    struct db_redis s;
    char u[64];
    redisReply *rep = NULL;
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", ports[i]);
    if (db_redis_init(&s, u, 2000) != OK)
        return ERR_INVAL;
    err_t rc = db_redis_cmd(&s, argc, argv, NULL, &rep);
    if (rc == OK || rc == ERR_INTERNAL) {
        if (out && rep->str)
            snprintf(out, cap, "%.*s", (int)rep->len, rep->str);
        if (integer)
            *integer = rep->integer;
        freeReplyObject(rep);
    }
    db_redis_fini(&s);
    return rc;
}

/* The index of the node serving key (its GET is no MOVED), -1 if none. */
static int owner_of(const char *key)
{
    const char *get[] = {"GET", key};
    for (int i = 0; i < 3; i++)
        if (node_cmd(i, 2, get, NULL, 0, NULL) == OK)
            return i;
    return -1;
}

/* The count of an "errorstat_<code>:count=N" or "cmdstat_<cmd>:calls=N" line of INFO. */
static long long info_count(int i, const char *section, const char *prefix)
{
    const char *argv[] = {"INFO", section};
    char buf[8192];
    if (node_cmd(i, 2, argv, buf, sizeof(buf), NULL) != OK)
        return -1;
    const char *p = strstr(buf, prefix);
    if (!p)
        return 0;
    p = strchr(p, '=');
    return p ? atoll(p + 1) : -1;
}

T_TEST(keys_on_every_master)
{
    struct db_redis_async *r;
    struct answers a = {0};
    static struct get_check gets[300];
    char keys[300][16], vals[300][16];
    T_OK(db_redis_async_new(&loop, url, 2000, &r));
    unsigned sent = 0;
    for (unsigned i = 0; i < 300; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k:%u", i);
        snprintf(vals[i], sizeof(vals[i]), "v%u", i);
        const char *set[] = {"SET", keys[i], vals[i]};
        sent += db_redis_async_cmd(r, 3, set, NULL, on_answer, &a) == OK;
    }
    T_EQ(sent, 300u);
    T_EQ(a.n, 0u); /* never answered from inside cmd */
    pump(&a, 300, 5000);
    T_EQ(a.n, 300u);
    T_EQ(a.ok, 300u); /* the first ones went to the seed before the map came: MOVED, followed */
    T_EQ(db_redis_async_pending(r), 0u);
    T_ASSERT(db_redis_async_up(r));
    unsigned on[3] = {0};
    for (unsigned i = 0; i < 300; i += 10) {
        int o = owner_of(keys[i]);
        if (o >= 0)
            on[o]++;
    }
    T_ASSERT(on[0] > 0 && on[1] > 0 && on[2] > 0);

    a = (struct answers){0};
    sent = 0;
    for (unsigned i = 0; i < 300; i++) {
        const char *get[] = {"GET", keys[i]};
        gets[i] = (struct get_check){&a, i};
        sent += db_redis_async_cmd(r, 2, get, NULL, on_get, &gets[i]) == OK;
    }
    T_EQ(sent, 300u);
    T_EQ(db_redis_async_pending(r), 300u);
    pump(&a, 300, 5000);
    T_EQ(a.n, 300u);
    T_EQ(a.values_ok, 300u);

    /* our slots are Redis's */
    unsigned same = 0;
    for (unsigned i = 0; i < 300; i += 7) {
        const char *ks[] = {"CLUSTER", "KEYSLOT", keys[i]};
        long long slot = -1;
        if (node_cmd(0, 3, ks, NULL, 0, &slot) == OK &&
            slot == (long long)db_redis_cluster_slot(keys[i], strlen(keys[i])))
            same++;
    }
    T_EQ(same, 43u);
    const char *tag[] = {"CLUSTER", "KEYSLOT", "tether:stream:{env_1:chat-x}:in"};
    long long slot = -1;
    T_OK(node_cmd(1, 3, tag, NULL, 0, &slot));
    T_EQ(slot, (long long)db_redis_cluster_slot("env_1:chat-x", 12));

    /* keyless commands go to any node */
    const char *ping[] = {"PING"};
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 1, ping, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);
    db_redis_async_free(r);
}

T_TEST(script_on_every_master)
{
    struct db_redis_async *r;
    struct answers a = {0};
    char keys[60][16];
    T_OK(db_redis_async_new(&loop, url, 2000, &r));
    const char *flush[] = {"SCRIPT", "FLUSH"};
    T_OK(db_redis_async_cmd(r, 2, flush, NULL, on_answer, &a)); /* the map is read meanwhile */
    pump(&a, 1, 2000);
    const char *flush_again[] = {"SCRIPT", "FLUSH"};
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 2, flush_again, NULL, on_answer, &a)); /* now to every master */
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);
    const char *load[] = {"SCRIPT", "LOAD", "return KEYS[1]"};
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 3, load, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);
    char sha[64];
    snprintf(sha, sizeof(sha), "%s", a.last);
    T_EQ(strlen(sha), 40u);
    loop_run_once(&loop, 50); /* the other masters' answers */
    a = (struct answers){0};
    unsigned sent = 0;
    for (unsigned i = 0; i < 60; i++) {
        snprintf(keys[i], sizeof(keys[i]), "s:%u", i);
        const char *ev[] = {"EVALSHA", sha, "1", keys[i]};
        sent += db_redis_async_cmd(r, 4, ev, NULL, on_answer, &a) == OK;
    }
    T_EQ(sent, 60u);
    pump(&a, 60, 5000);
    T_EQ(a.ok, 60u); /* no NOSCRIPT: every master has it */
    T_EQ(a.internal, 0u);
    db_redis_async_free(r);
}

T_TEST(ask_then_moved)
{
    struct db_redis_async *r;
    struct answers a = {0};
    char ids[3][64], pb[16], slots[16], got[64];
    const char *key = "mv:{tagged}:1";
    for (int i = 0; i < 3; i++) {
        const char *myid[] = {"CLUSTER", "MYID"};
        T_OK(node_cmd(i, 2, myid, ids[i], sizeof(ids[i]), NULL));
    }
    T_OK(db_redis_async_new(&loop, url, 2000, &r));
    const char *set[] = {"SET", key, "before"};
    T_OK(db_redis_async_cmd(r, 3, set, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);
    int src = owner_of(key), dst = (src + 1) % 3;
    T_ASSERT(src >= 0);
    if (src < 0) {
        db_redis_async_free(r);
        return;
    }
    snprintf(slots, sizeof(slots), "%u", db_redis_cluster_slot(key, strlen(key)));
    snprintf(pb, sizeof(pb), "%d", ports[dst]);

    /* migrating: the key is on the target already, the source answers ASK */
    const char *imp[] = {"CLUSTER", "SETSLOT", slots, "IMPORTING", ids[src]};
    const char *mig[] = {"CLUSTER", "SETSLOT", slots, "MIGRATING", ids[dst]};
    const char *move[] = {"MIGRATE", "127.0.0.1", pb, "", "0", "5000", "KEYS", key};
    T_OK(node_cmd(dst, 5, imp, NULL, 0, NULL));
    T_OK(node_cmd(src, 5, mig, NULL, 0, NULL));
    T_OK(node_cmd(src, 8, move, NULL, 0, NULL));
    long long asking0 = info_count(dst, "commandstats", "cmdstat_asking:");
    const char *get[] = {"GET", key};
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 2, get, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);
    T_STREQ(a.last, "before");
    T_EQ(info_count(dst, "commandstats", "cmdstat_asking:"), asking0 + 1);

    /* moved: the source answers MOVED once, then the map sends the key to the target */
    const char *node[] = {"CLUSTER", "SETSLOT", slots, "NODE", ids[dst]};
    for (int i = 0; i < 3; i++)
        T_OK(node_cmd((dst + i) % 3, 5, node, NULL, 0, NULL));
    long long moved0 = info_count(src, "errorstats", "errorstat_MOVED:");
    const char *set2[] = {"SET", key, "after"};
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 3, set2, NULL, on_answer, &a));
    T_OK(db_redis_async_cmd(r, 2, get, NULL, on_answer, &a));
    pump(&a, 2, 2000);
    T_EQ(a.ok, 2u);
    T_STREQ(a.last, "after");
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 2, get, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_STREQ(a.last, "after");
    long long moved = info_count(src, "errorstats", "errorstat_MOVED:") - moved0;
    T_ASSERT(moved >= 1 && moved <= 2); /* the SET and the GET pipelined behind it, not after */
    T_OK(node_cmd(dst, 2, get, got, sizeof(got), NULL));
    T_STREQ(got, "after");
    db_redis_async_free(r);
}

T_TEST(free_fails_pending)
{
    struct db_redis_async *r;
    struct answers a = {0};
    const char *b1[] = {"BLPOP", "blk:{a}", "5"};
    const char *b2[] = {"BLPOP", "blk:{b}", "5"};
    const char *b3[] = {"BLPOP", "blk:{c}", "5"};
    const char *ping[] = {"PING"};
    T_OK(db_redis_async_new(&loop, url, 10000, &r));
    T_OK(db_redis_async_cmd(r, 1, ping, NULL, on_answer, &a));
    pump(&a, 1, 2000); /* with the map, the three go to their masters */
    loop_run_once(&loop, 50);
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 3, b1, NULL, on_answer, &a));
    T_OK(db_redis_async_cmd(r, 3, b2, NULL, on_answer, &a));
    T_OK(db_redis_async_cmd(r, 3, b3, NULL, on_answer, &a));
    loop_run_once(&loop, 50);
    T_EQ(db_redis_async_pending(r), 3u);
    db_redis_async_free(r);
    T_EQ(a.n, 3u);
    T_EQ(a.closed, 3u);
}

/* The pid of node i, from the file tests/lib/redis-cluster.sh keeps; -1 if unknown. */
static pid_t node_pid(int i)
{
    char f[160];
    long pid = -1;
    snprintf(f, sizeof(f), "%s/c/%d.pid", dir, ports[i]);
    FILE *fp = fopen(f, "r");
    if (!fp)
        return -1;
    if (fscanf(fp, "%ld", &pid) != 1)
        pid = -1;
    fclose(fp);
    return (pid_t)pid;
}

/* One key served by each master ("k:<n>", set by keys_on_every_master). */
static bool key_per_master(char on[3][16])
{
    memset(on, 0, 3 * sizeof(on[0]));
    for (unsigned i = 0; i < 300 && (!on[0][0] || !on[1][0] || !on[2][0]); i++) {
        char k[16];
        snprintf(k, sizeof(k), "k:%u", i);
        int o = owner_of(k);
        if (o >= 0 && !on[o][0])
            snprintf(on[o], sizeof(on[o]), "%s", k);
    }
    return on[0][0] && on[1][0] && on[2][0];
}

T_TEST(stopped_master_fails_alone)
{
    struct db_redis_async *r;
    struct answers others = {0}, victim = {0};
    char on[3][16];
    const int v = 1; /* not the seed: the map must come from the others */
    pid_t pid = node_pid(v);
    T_ASSERT(key_per_master(on));
    T_ASSERT(pid > 0);
    if (pid <= 0 || !on[0][0] || !on[1][0] || !on[2][0])
        return;
    T_OK(db_redis_async_new(&loop, url, 500, &r));
    for (int i = 0; i < 3; i++) {
        const char *get[] = {"GET", on[i]};
        T_OK(db_redis_async_cmd(r, 2, get, NULL, on_answer, &others));
    }
    pump(&others, 3, 3000);
    T_EQ(others.ok, 3u); /* a connection to each master */

    /* stopped for about a second, well within the nodes' cluster-node-timeout (5 s): the
     * others go on serving (no failover, no CLUSTERDOWN) */
    T_OK(kill(pid, SIGSTOP));
    others = (struct answers){0};
    const char *getv[] = {"GET", on[v]}, *get0[] = {"GET", on[0]}, *get2[] = {"GET", on[2]};
    T_OK(db_redis_async_cmd(r, 2, getv, NULL, on_answer, &victim));
    T_OK(db_redis_async_cmd(r, 2, get0, NULL, on_answer, &others));
    T_OK(db_redis_async_cmd(r, 2, get2, NULL, on_answer, &others));
    pump(&others, 2, 2000);
    T_EQ(others.ok, 2u);
    T_EQ(victim.n, 0u); /* the other masters answered while this one holds its command */
    pump(&victim, 1, 3000);
    T_EQ(victim.timeout, 1u);
    T_EQ(db_redis_async_pending(r), 0u);
    T_ASSERT(db_redis_async_up(r));

    T_OK(kill(pid, SIGCONT));
    victim = (struct answers){0};
    uint64_t t0 = clock_mono_ms();
    while (victim.ok == 0 && clock_mono_ms() - t0 < 8000) {
        if (db_redis_async_cmd(r, 2, getv, NULL, on_answer, &victim) == OK)
            pump(&victim, victim.n + 1, 2000);
        else
            loop_run_once(&loop, 50); /* refused under the node's backoff */
    }
    T_EQ(victim.ok, 1u); /* reconnected */
    db_redis_async_free(r);
}

T_TEST(plain_url_no_follow)
{
    struct db_redis_async *r;
    struct answers a = {0};
    char on[3][16], u[64];
    T_ASSERT(key_per_master(on));
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", ports[0]);
    T_OK(db_redis_async_new(&loop, u, 2000, &r));
    const char *mine[] = {"GET", on[0]}, *theirs[] = {"GET", on[1]};
    T_OK(db_redis_async_cmd(r, 2, mine, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 2, theirs, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.internal, 1u);
    T_ASSERT(strncmp(a.last, "MOVED ", 6) == 0);
    db_redis_async_free(r);
}

/* ?cluster=1 naming a Redis that is no Cluster: everything goes to it. */
T_TEST(not_a_cluster)
{
    char u[64];
    int port = 23000 + (int)(getpid() % 9000);
    pid_t pid = test_redis_start(port);
    T_ASSERT(pid > 0);
    if (pid <= 0)
        return;

    struct db_redis_async *r;
    struct answers a = {0};
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d?cluster=1", port);
    T_OK(db_redis_async_new(&loop, u, 2000, &r));
    unsigned sent = 0;
    for (unsigned i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k:%u", i);
        const char *set[] = {"SET", k, "v"};
        sent += db_redis_async_cmd(r, 3, set, NULL, on_answer, &a) == OK;
    }
    T_EQ(sent, 20u);
    pump(&a, 20, 3000);
    T_EQ(a.ok, 20u);
    a = (struct answers){0};
    const char *get[] = {"GET", "k:7"};
    T_OK(db_redis_async_cmd(r, 2, get, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);
    T_STREQ(a.last, "v");
    db_redis_async_free(r);
    test_redis_stop(pid);
}

/* Starts the cluster with tests/lib/redis-cluster.sh; false (and why) when it cannot. */
static bool cluster_start(void)
{
    const char *script = "tests/lib/redis-cluster.sh";
    char cmd[256], env[128];
    if (access(script, X_OK) != 0) {
        printf("# %s not found (run from the repository's root): no live cluster tests\n", script);
        return false;
    }
    snprintf(dir, sizeof(dir), "/tmp/tether-rc.XXXXXX");
    if (!mkdtemp(dir))
        return false;
    /* this process owns it: a crash or a timeout's kill stops it too */
    snprintf(cmd, sizeof(cmd), "%s start %s/c %ld >/dev/null", script, dir, (long)getpid());
    if (system(cmd) != 0)
        return false;
    snprintf(env, sizeof(env), "%s/c/cluster.env", dir);
    FILE *f = fopen(env, "r");
    if (!f)
        return false;
    int n = fscanf(f, "RC_PORTS='%d %d %d'", &ports[0], &ports[1], &ports[2]);
    fclose(f);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d?cluster=1", ports[0]);
    return n == 3;
}

static void cluster_stop(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tests/lib/redis-cluster.sh stop %s/c", dir);
    (void)system(cmd);
    (void)rmdir(dir);
}

int main(void)
{
    log_init("db-redis-cluster-test", LOG_LVL_DEBUG, false);
    signal(SIGPIPE, SIG_IGN);
    T_RUN(slots);
    T_RUN(key_index);
    T_RUN(redirects);
    T_RUN(urls);
    T_RUN(hash_tags);
    if (loop_init(&loop) != OK)
        return 1;
    bool live = cluster_start();
    T_ASSERT(live);
    if (live) {
        T_RUN(keys_on_every_master);
        T_RUN(script_on_every_master);
        T_RUN(ask_then_moved);
        T_RUN(stopped_master_fails_alone);
        T_RUN(plain_url_no_follow);
        T_RUN(free_fails_pending);
    }
    if (dir[0])
        cluster_stop();
    T_RUN(not_a_cluster);
    loop_fini(&loop);
    return T_DONE();
}
