/*
 * store.c - every Redis call of the stream-broker: one Lua script per
 * request, so each request is atomic and costs one round trip.
 *
 * Scripts are loaded with SCRIPT LOAD on first use (the text goes with each
 * call until the sha is known) and run with EVALSHA; a Redis that forgot
 * them (restart, SCRIPT FLUSH) gets the text again through EVAL, which also
 * caches it. Every script starts with a shebang:
 * Redis then refuses a writing script up front when it is out of memory,
 * rather than failing it half-way, and lets the read-only ones run on a
 * replica. Redis does not roll back a script that fails half-way, so the
 * append script writes nothing until its first XADD has succeeded.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "sb.h"

/* Room a reply's own fields (records array, tail, tail_ts) take besides the records. */
#define SB_REPLY_OVERHEAD 64

/*
 * Lua functions the writing scripts share: the metered size of an entry read back
 * ({t, ts, b, body, name, value, ...}: 8 + body + 2 + name + value per header, as
 * stream_metered_size), its seq, and the bytes a stream holds, with what the counter
 * said (0 when it is missing: a stream written before the counter existed is counted
 * once, 16 entries at a time, and its bytes join the environment's counter then).
 */
#define SB_LUA_LIB                                                                                 \
    "local function entry_size(f)\n"                                                               \
    "  local n = 8 + #f[4]\n"                                                                      \
    "  for i = 5, #f - 1, 2 do n = n + 2 + #f[i] + #f[i + 1] end\n"                                \
    "  return n\n"                                                                                 \
    "end\n"                                                                                        \
    "local function entry_seq(e) return tonumber(string.match(e[1], '^%d+')) end\n"                \
    "local function stream_bytes(skey, bkey)\n"                                                    \
    "  local b = redis.call('GET', bkey)\n"                                                        \
    "  if b then return tonumber(b), tonumber(b) end\n"                                            \
    "  local total, start = 0, '-'\n"                                                              \
    "  while true do\n"                                                                            \
    "    local chunk = redis.call('XRANGE', skey, start, '+', 'COUNT', 16)\n"                      \
    "    for _, e in ipairs(chunk) do total = total + entry_size(e[2]) end\n"                      \
    "    if #chunk < 16 then return total, 0 end\n"                                                \
    "    start = '(' .. chunk[#chunk][1]\n"                                                        \
    "  end\n"                                                                                      \
    "end\n"

/*
 * KEYS: stream, next counter, bytes counter, the session's seal, then the de-dup key of
 * each record with a part id. ARGV: record count, de-dup ttl (s), retention max records, max bytes (0: no
 * limit), the growth allowed (-1: any; else the quota's room), then per record: the index
 * of its de-dup key in KEYS (0: none), its header count, its S2 trim point (0: none), its
 * body, its header names and values.
 *
 * Pass 1 only reads: duplicates, seqs, sizes, then what to delete from the oldest end (the
 * batch's trim commands: every seq below the highest point, capped at the tail; retention:
 * while the stream is over a limit, keeping at least its newest record, at most the
 * batch's count + 256 records a call so that lowered limits cost several appends, not one
 * long script). The deleted entries are read oldest first in chunks of 1, 2, 4 ... 16, so
 * a stream at its limit reads one entry per append. If the stream would grow by more than
 * allowed, it answers refused with nothing written. Pass 2 writes, XADD first. A sealed
 * session (closed: stream.seal) takes nothing.
 * Returns {seqs, dups (0|1), next seq, ts, bytes delta, records deleted, refused (0, 1 for
 * the quota, 2 for the seal), the seal's reason}.
 */
static const char sb_lua_append[] =
    "#!lua\n" SB_LUA_LIB
    "local sealed = redis.call('GET', KEYS[4])\n"
    "if sealed then return {{}, {}, 0, 0, 0, 0, 2, sealed} end\n"
    "local t = redis.call('TIME')\n"
    "local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local tss = string.format('%d', ts)\n"
    "local nxt = redis.call('GET', KEYS[2])\n"
    "if nxt then\n"
    "  nxt = tonumber(nxt)\n"
    "elseif redis.call('EXISTS', KEYS[1]) == 1 then\n"
    /* the counter is gone (evicted, deleted by hand) but not the stream: go on after it */
    "  nxt = 0\n"
    "  local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
    "  for i = 1, #info - 1, 2 do\n"
    "    if info[i] == 'last-generated-id' then\n"
    "      nxt = tonumber(string.match(info[i + 1], '^%d+')) + 1\n"
    "    end\n"
    "  end\n"
    "else\n"
    "  nxt = 0\n"
    "end\n"
    "local first = nxt\n"
    "local seqs, dups, adds, seen, a = {}, {}, {}, {}, 6\n"
    "local added, point = 0, 0\n"
    "for i = 1, tonumber(ARGV[1]) do\n"
    "  local k, nh, tp = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "  local body, h = ARGV[a + 3], a + 4\n"
    "  a = h + 2 * nh\n"
    "  local old = false\n"
    "  if k > 0 then old = seen[KEYS[k]] or redis.call('GET', KEYS[k]) end\n"
    "  if old then\n"
    "    seqs[i], dups[i] = tonumber(old), 1\n"
    "  else\n"
    "    local size = 8 + #body\n"
    "    for j = h, a - 2, 2 do size = size + 2 + #ARGV[j] + #ARGV[j + 1] end\n"
    "    adds[#adds + 1] = {nxt, size, k, body, h, a - 1}\n"
    "    if k > 0 then seen[KEYS[k]] = nxt end\n"
    "    if tp > point then point = tp end\n"
    "    seqs[i], dups[i] = nxt, 0\n"
    "    added = added + size\n"
    "    nxt = nxt + 1\n"
    "  end\n"
    "end\n"
    "if point > nxt then point = nxt end\n"
    "local maxr, maxb, allowed = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local b0, known = stream_bytes(KEYS[1], KEYS[3])\n"
    "local n = redis.call('XLEN', KEYS[1]) + #adds\n"
    "local total, b, cut, steps, budget = n, b0 + added, nil, 0, #adds + 256\n"
    "local function over()\n"
    "  return n > 1 and steps < budget and ((maxr > 0 and n > maxr) or (maxb > 0 and b > maxb))\n"
    "end\n"
    "local function drop(seq, size)\n"
    "  if seq < point then\n"
    "  elseif over() then steps = steps + 1\n"
    "  else return false end\n"
    "  n, b, cut = n - 1, b - size, seq + 1\n"
    "  return true\n"
    "end\n"
    "local go, start, ask = point > 0 or over(), '-', 1\n"
    "while go do\n"
    "  local chunk = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ask)\n"
    "  for _, e in ipairs(chunk) do\n"
    "    if not drop(entry_seq(e), entry_size(e[2])) then go = false break end\n"
    "  end\n"
    "  if go and #chunk < ask then\n"
    /* every older entry goes: on into the batch's own records, oldest first */
    "    for _, r in ipairs(adds) do\n"
    "      if not drop(r[1], r[2]) then break end\n"
    "    end\n"
    "    go = false\n"
    "  end\n"
    "  if go then start, ask = '(' .. chunk[#chunk][1], math.min(ask * 2, 16) end\n"
    "end\n"
    "local delta = b - known\n"
    "if allowed >= 0 and added > 0 and delta > allowed then\n"
    "  return {seqs, dups, first, ts, delta, 0, 1, ''}\n"
    "end\n"
    "for _, r in ipairs(adds) do\n"
    "  local cmd = {'XADD', KEYS[1], string.format('%d-1', r[1]), 't', tss, 'b', r[4]}\n"
    "  for j = r[5], r[6] do cmd[#cmd + 1] = ARGV[j] end\n"
    "  redis.call(unpack(cmd))\n"
    "  if r[3] > 0 then\n"
    "    redis.call('SET', KEYS[r[3]], string.format('%d', r[1]), 'EX', ARGV[2])\n"
    "  end\n"
    "end\n"
    "if nxt ~= first then redis.call('SET', KEYS[2], string.format('%d', nxt)) end\n"
    "if cut then redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-0', cut)) end\n"
    "if b ~= known then redis.call('SET', KEYS[3], string.format('%d', b)) end\n"
    "return {seqs, dups, nxt, ts, delta, total - n, 0, ''}\n";

/*
 * KEYS: stream, next counter (, bytes counter: unused). ARGV: first id, count, byte budget.
 * Reads in chunks of 16 so that a large count of large records never
 * materialises more than the budget (plus one chunk) inside Redis.
 * Returns {entries, next seq, ts of the last entry}.
 */
static const char sb_lua_read[] =
    "#!lua flags=no-writes\n"
    "local want, budget = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local out, used, start, full = {}, 0, ARGV[1], false\n"
    "while not full and #out < want do\n"
    "  local ask = math.min(want - #out, 16)\n"
    "  local chunk = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ask)\n"
    "  for _, e in ipairs(chunk) do\n"
    "    local size = 64\n"
    "    for _, f in ipairs(e[2]) do size = size + #f + 8 end\n"
    "    if #out > 0 and used + size > budget then\n"
    "      full = true\n"
    "      break\n"
    "    end\n"
    "    used = used + size\n"
    "    out[#out + 1] = e\n"
    "  end\n"
    "  if #chunk < ask then break end\n"
    "  start = '(' .. chunk[#chunk][1]\n"
    "end\n"
    "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "local tail_ts = '0'\n"
    "if last[1] then tail_ts = last[1][2][2] or '0' end\n"
    "return {out, redis.call('GET', KEYS[2]) or '0', tail_ts}\n";

/* KEYS: stream, next counter (, bytes). ARGV: count. Returns {entries newest first, next, ts}. */
static const char sb_lua_peek[] =
    "#!lua flags=no-writes\n"
    "local recs = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])\n"
    "local tail_ts = '0'\n"
    "if recs[1] then tail_ts = recs[1][2][2] or '0' end\n"
    "return {recs, redis.call('GET', KEYS[2]) or '0', tail_ts}\n";

/*
 * KEYS: stream, next counter, bytes counter. ARGV: the first id kept ("<seq>-0").
 * allow-oom: deleting is how a full Redis gets room back, so it must run then too.
 * Returns {next seq, bytes delta (<= 0)}.
 */
static const char sb_lua_trim[] =
    "#!lua flags=allow-oom\n" SB_LUA_LIB
    "local b, known = stream_bytes(KEYS[1], KEYS[3])\n"
    "if ARGV[1] ~= '0-0' then\n"
    "  local start = '-'\n"
    "  while true do\n"
    "    local chunk = redis.call('XRANGE', KEYS[1], start, '(' .. ARGV[1], 'COUNT', 16)\n"
    "    for _, e in ipairs(chunk) do b = b - entry_size(e[2]) end\n"
    "    if #chunk < 16 then break end\n"
    "    start = '(' .. chunk[#chunk][1]\n"
    "  end\n"
    "  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])\n"
    "end\n"
    "if b ~= known then redis.call('SET', KEYS[3], string.format('%d', b)) end\n"
    "return {redis.call('GET', KEYS[2]) or '0', b - known}\n";

/*
 * KEYS: the environment's counter. ARGV: the change (signed). Never below 0.
 * allow-oom: it mostly gives bytes back, and a refund refused by a full Redis would leak.
 */
static const char sb_lua_settle[] = "#!lua flags=allow-oom\n"
                                    "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                                    "if v < 0 then redis.call('SET', KEYS[1], '0') v = 0 end\n"
                                    "return v\n";

#define SB_QUOTA_FRESH_MS 1000

struct sb_quota {
    char env[STREAM_ENV_MAX + 1]; /* "" = free slot */
    int64_t used;                 /* the counter, as Redis last said */
    int64_t held;                 /* reserved or settling here: not in used yet */
    uint64_t fresh_mono;          /* when used was last read; 0 = never */
    unsigned refs;                /* operations in flight that point here */
};

/* KEYS: the environment's counter. Returns its value (0 when missing). */
static const char sb_lua_used[] = "#!lua flags=no-writes\n"
                                  "return tonumber(redis.call('GET', KEYS[1]) or '0')\n";

void sb_store_init(struct sb *sb, struct db_redis_async *redis)
{
    sb->redis = redis;
    sb->append = (struct sb_script){.name = "stream.append", .text = sb_lua_append};
    sb->read = (struct sb_script){.name = "stream.read", .text = sb_lua_read};
    sb->peek = (struct sb_script){.name = "stream.peek", .text = sb_lua_peek};
    sb->trim = (struct sb_script){.name = "stream.trim", .text = sb_lua_trim};
    sb->used = (struct sb_script){.name = "stream.quota_used", .text = sb_lua_used};
    sb->quotas = xcalloc(SB_QUOTA_SLOTS, sizeof(*sb->quotas));
    sb->settle = (struct sb_script){.name = "stream.quota_settle", .text = sb_lua_settle};
}

/* Every operation in flight has ended (the Redis client is freed first): nothing points here. */
void sb_store_fini(struct sb *sb)
{
    free(sb->quotas);
    sb->quotas = NULL;
}

/* Error replies that mean "not now" rather than "wrong": the caller may retry. */
static bool sb_err_transient(const redisReply *r)
{
    static const char *const codes[] = {"LOADING ", "BUSY ",    "OOM ",       "READONLY ",
                                        "MASTERDOWN ", "TRYAGAIN ", "CLUSTERDOWN "};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (r->len >= strlen(codes[i]) && memcmp(r->str, codes[i], strlen(codes[i])) == 0)
            return true;
    return false;
}

/* Turns an error reply into ERR_UNAVAIL or ERR_INTERNAL and logs it once. */
static err_t sb_err_reply(const struct sb_script *s, const redisReply *r)
{
    err_t rc = sb_err_transient(r) ? ERR_UNAVAIL : ERR_INTERNAL;
    if (rc == ERR_UNAVAIL)
        LOG_WARN("stream.store_busy", "%s: Redis cannot serve now: %.200s", s->name, r->str);
    else
        LOG_ERROR("stream.store_failed", "%s: Redis answered an error: %.200s", s->name, r->str);
    return rc;
}

static err_t sb_unexpected(const struct sb_script *s, const char *what)
{
    LOG_ERROR("stream.store_failed", "%s: unexpected reply from Redis: %s", s->name, what);
    return ERR_INTERNAL;
}

static bool sb_reply_u64(const redisReply *r, uint64_t *v)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        *v = (uint64_t)r->integer;
        return true;
    }
    return r->type == REDIS_REPLY_STRING && sb_parse_u64(r->str, r->len, v);
}

static bool sb_reply_i64(const redisReply *r, int64_t *v)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return false;
    *v = r->integer;
    return true;
}

/* ---- scripts ---- */

static void sb_on_script_loaded(void *arg, err_t rc, const redisReply *r)
{
    struct sb_script *s = arg;
    if (rc == OK && r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy(s->sha, r->str, 40);
        s->sha[40] = '\0';
    }
    s->loading = false;
}

/*
 * One script call in flight: the argv stays with it so that a Redis that forgot the
 * script gets it again (EVAL) without the caller knowing. done runs once with the reply
 * (valid during the call) or the failure.
 */
typedef void (*sb_eval_fn)(void *arg, err_t rc, const redisReply *r);

struct sb_eval {
    struct sb *sb;
    struct sb_script *script;
    int argc;
    const char **argv;
    size_t *lens;
    char nkeys[16];
    bool resent;
    sb_eval_fn done;
    void *arg;
};

static void sb_eval_on_reply(void *arg, err_t rc, const redisReply *r);

static err_t sb_eval_send(struct sb_eval *e)
{
    struct sb_script *s = e->script;
    bool by_sha = s->sha[0] && !e->resent;
    e->argv[0] = by_sha ? "EVALSHA" : "EVAL";
    e->lens[0] = strlen(e->argv[0]);
    e->argv[1] = by_sha ? s->sha : s->text;
    e->lens[1] = strlen(e->argv[1]);
    e->argv[2] = e->nkeys;
    e->lens[2] = strlen(e->nkeys);
    return db_redis_async_cmd(e->sb->redis, e->argc, e->argv, e->lens, sb_eval_on_reply, e);
}

static void sb_eval_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_eval *e = arg;
    if (rc == ERR_INTERNAL && !e->resent && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0) {
        LOG_INFO("stream.script_reload", "%s: Redis forgot the script; sending it again",
                 e->script->name);
        e->script->sha[0] = '\0';
        e->resent = true;
        if (sb_eval_send(e) == OK)
            return;
        rc = ERR_UNAVAIL;
    } else if (rc == ERR_INTERNAL) {
        rc = sb_err_reply(e->script, r);
    }
    e->done(e->arg, rc, rc == OK ? r : NULL);
}

/*
 * Starts script s with argv[3..argc) as its keys (the first nkeys) and arguments; argv[0..2]
 * and lens[0..2] are room for the command, script and key count, and both arrays must live
 * until done has run. Until Redis has told us the script's sha (SCRIPT LOAD, sent with the
 * first call) the text goes with each call. On an error return done is never called.
 */
static err_t sb_eval_start(struct sb *sb, struct sb_eval *e, struct sb_script *s, int argc,
                           const char **argv, size_t *lens, int nkeys, sb_eval_fn done, void *arg)
{
    *e = (struct sb_eval){.sb = sb, .script = s, .argc = argc, .argv = argv, .lens = lens,
                          .done = done, .arg = arg};
    snprintf(e->nkeys, sizeof(e->nkeys), "%d", nkeys);
    if (!s->sha[0] && !s->loading) {
        const char *load[] = {"SCRIPT", "LOAD", s->text};
        if (db_redis_async_cmd(sb->redis, 3, load, NULL, sb_on_script_loaded, s) == OK)
            s->loading = true;
    }
    return sb_eval_send(e);
}

/* ---- the environment's quota ---- */

/*
 * Each environment's bytes are counted in Redis (tether:quota:{env}:bytes, a slot of its
 * own). The broker decides an append locally, without a round trip: what Redis last said
 * (used), plus what its own appends have reserved and not yet settled. A settle's answer
 * is the new total and refreshes used; an entry not refreshed for SB_QUOTA_FRESH_MS is
 * read again first, so other broker instances' bytes are seen within that time.
 */
static uint64_t sb_fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot of env, claimed if new; NULL when every slot is busy (then: no local view). */
static struct sb_quota *sb_quota_of(struct sb *sb, const char *env)
{
    size_t start = (size_t)(sb_fnv(env) % SB_QUOTA_SLOTS), idle = SIZE_MAX;
    for (size_t i = 0; i < SB_QUOTA_SLOTS; i++) {
        struct sb_quota *q = &sb->quotas[(start + i) % SB_QUOTA_SLOTS];
        if (strcmp(q->env, env) == 0)
            return q;
        if (!q->env[0]) {
            idle = idle == SIZE_MAX ? (start + i) % SB_QUOTA_SLOTS : idle;
            break; /* probing ends at a free slot */
        }
        if (idle == SIZE_MAX && q->refs == 0 && q->held == 0)
            idle = (start + i) % SB_QUOTA_SLOTS;
    }
    if (idle == SIZE_MAX)
        return NULL;
    struct sb_quota *q = &sb->quotas[idle];
    *q = (struct sb_quota){0};
    snprintf(q->env, sizeof(q->env), "%s", env);
    return q;
}

struct sb_settle {
    struct sb *sb;
    struct sb_quota *q;
    int64_t change;
    const char *argv[5];
    size_t lens[5];
    char key[SB_KEY_MAX];
    char arg[24];
    struct sb_eval eval;
};

static void sb_settle_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_settle *st = arg;
    int64_t v;
    if (st->q) {
        st->q->held -= st->change;
        st->q->refs--;
    }
    if (rc == OK && sb_reply_i64(r, &v) && st->q) {
        st->q->used = v;
        st->q->fresh_mono = clock_mono_ms();
    } else if (rc != OK) {
        LOG_WARN("stream.quota_drift",
                 "the stream bytes of environment %s are counted %" PRId64 " bytes off: %s",
                 st->q ? st->q->env : "?", -st->change, err_str(rc));
        if (st->q)
            st->q->fresh_mono = 0; /* read it again before the next decision */
    }
    free(st);
}

/*
 * Adds change (signed) to env's counter without waiting: the bytes stay held locally until
 * Redis has counted them. A failure is logged, not returned (docs/stream-broker.md).
 */
static void sb_quota_settle(struct sb *sb, const char *env, int64_t change)
{
    if (change == 0)
        return;
    struct sb_settle *st = xcalloc(1, sizeof(*st));
    st->sb = sb;
    st->change = change;
    st->q = sb_quota_of(sb, env);
    if (st->q) {
        st->q->held += change;
        st->q->refs++;
    }
    st->argv[3] = st->key;
    st->lens[3] = sb_key_quota(env, st->key);
    snprintf(st->arg, sizeof(st->arg), "%" PRId64, change);
    st->argv[4] = st->arg;
    st->lens[4] = strlen(st->arg);
    if (sb_eval_start(sb, &st->eval, &sb->settle, 5, st->argv, st->lens, 1, sb_settle_on_reply,
                      st) != OK)
        sb_settle_on_reply(st, ERR_UNAVAIL, NULL);
}

/* ---- stream.append ---- */

/* The argv of the append script, and the storage its strings live in. */
struct sb_append_argv {
    const char **argv;
    size_t *lens;
    char (*num)[24];
    char *parts;
    int argc;
};

static void sb_append_argv_fini(struct sb_append_argv *x)
{
    free(x->argv);
    free(x->lens);
    free(x->num);
    free(x->parts);
}

static void sb_arg(struct sb_append_argv *x, const char *p, size_t n)
{
    x->argv[x->argc] = p;
    x->lens[x->argc] = n;
    x->argc++;
}

static void sb_arg_num(struct sb_append_argv *x, unsigned *k, uint64_t v)
{
    int w = snprintf(x->num[*k], sizeof(x->num[*k]), "%" PRIu64, v);
    sb_arg(x, x->num[*k], (size_t)w);
    (*k)++;
}

static void sb_arg_int(struct sb_append_argv *x, unsigned *k, long long v)
{
    int w = snprintf(x->num[*k], sizeof(x->num[*k]), "%lld", v);
    sb_arg(x, x->num[*k], (size_t)w);
    (*k)++;
}

/* The keys a script of stream s uses: its records, next counter and bytes counter. */
struct sb_stream_keys {
    char stream[SB_KEY_MAX], next[SB_KEY_MAX], bytes[SB_KEY_MAX], sealed[SB_KEY_MAX];
};

/*
 * Builds the argv (allowed: the growth the quota allows, -1 for any); false if the
 * validated headers no longer read back (cannot happen).
 */
static bool sb_append_argv_build(const struct sb *sb, const struct sb_append *ap, int64_t allowed,
                                 struct sb_stream_keys *keys, struct sb_append_argv *x)
{
    char prefix[SB_KEY_MAX];
    size_t plen = sb_key_part_prefix(&ap->s, prefix), parts_len = 0, total = 3 + 4 + 5;
    unsigned nparts = 0, k = 0;
    for (uint32_t i = 0; i < ap->n; i++) {
        const struct sb_record_in *r = &ap->recs[i];
        total += 4 + 2 * (size_t)r->nheaders;
        if (r->part_id.p) {
            nparts++;
            parts_len += plen + r->part_id.n;
        }
    }
    total += nparts;
    /* bounded by STREAM_BATCH_MAX x (4 + 2 x STREAM_HEADERS_MAX + 1), checked by the parser */
    x->argv = xcalloc(total, sizeof(*x->argv));
    x->lens = xcalloc(total, sizeof(*x->lens));
    x->num = xcalloc(3 * (size_t)ap->n + 5, sizeof(*x->num));
    x->parts = xmalloc(parts_len + 1);
    x->argc = 3; /* sb_eval's */
    sb_arg(x, keys->stream, sb_key_stream(&ap->s, keys->stream));
    sb_arg(x, keys->next, sb_key_next(&ap->s, keys->next));
    sb_arg(x, keys->bytes, sb_key_bytes(&ap->s, keys->bytes));
    sb_arg(x, keys->sealed, sb_key_sealed(ap->s.env, ap->s.key, keys->sealed));
    char *p = x->parts;
    for (uint32_t i = 0; i < ap->n; i++) {
        const struct sb_record_in *r = &ap->recs[i];
        if (!r->part_id.p)
            continue;
        memcpy(p, prefix, plen);
        memcpy(p + plen, r->part_id.p, r->part_id.n);
        sb_arg(x, p, plen + r->part_id.n);
        p += plen + r->part_id.n;
    }
    sb_arg_num(x, &k, ap->n);
    sb_arg_num(x, &k, STREAM_PART_TTL_S);
    sb_arg_int(x, &k, sb->cfg.stream_max_records);
    sb_arg_int(x, &k, sb->cfg.stream_max_bytes);
    sb_arg_int(x, &k, allowed);
    unsigned key_index = 4; /* Lua's KEYS[1..4]: the stream, its two counters, the seal */
    for (uint32_t i = 0; i < ap->n; i++) {
        const struct sb_record_in *r = &ap->recs[i];
        struct mp_reader hr;
        uint32_t nh, two;
        uint64_t point = 0;
        struct slice name, value;
        if (!sb_record_trim_point(r, &point))
            point = 0;
        sb_arg_num(x, &k, r->part_id.p ? ++key_index : 0);
        sb_arg_num(x, &k, r->nheaders);
        sb_arg_num(x, &k, point);
        sb_arg(x, r->body.p ? r->body.p : "", r->body.n);
        if (!r->nheaders)
            continue;
        mp_reader_init(&hr, r->headers.p, r->headers.n);
        if (mp_read_array(&hr, &nh) != OK || nh != r->nheaders)
            return false;
        for (uint32_t h = 0; h < nh; h++) {
            if (mp_read_array(&hr, &two) != OK || two != 2 || mp_read_str(&hr, &name) != OK ||
                mp_read_str(&hr, &value) != OK)
                return false;
            sb_arg(x, name.p, name.n);
            sb_arg(x, value.p, value.n);
        }
    }
    return (size_t)x->argc == total;
}

/*
 * Takes the append script's reply into ap; *refused is 1 when it wrote nothing for the
 * quota, 2 when the session is sealed (ap->sealed then holds the seal's value).
 */
static err_t sb_append_take(struct sb *sb, const redisReply *r, struct sb_append *ap,
                            uint64_t *refused)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 8 || !sb_reply_u64(r->element[6], refused) ||
        r->element[7]->type != REDIS_REPLY_STRING)
        return sb_unexpected(&sb->append, "not {seqs, dups, tail, ts, delta, trimmed, refused, "
                                          "reason}");
    if (*refused == 2) {
        snprintf(ap->sealed, sizeof(ap->sealed), "%.*s",
                 (int)r->element[7]->len, r->element[7]->str);
        return OK;
    }
    if (r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != ap->n ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements != ap->n ||
        !sb_reply_u64(r->element[2], &ap->tail) || !sb_reply_u64(r->element[3], &ap->ts) ||
        !sb_reply_i64(r->element[4], &ap->delta) || !sb_reply_u64(r->element[5], &ap->trimmed))
        return sb_unexpected(&sb->append, "not {seqs, dups, tail, ts, delta, trimmed, refused, "
                                          "reason}");
    for (uint32_t i = 0; i < ap->n && !*refused; i++) {
        uint64_t dup;
        if (!sb_reply_u64(r->element[0]->element[i], &ap->seqs[i]) ||
            !sb_reply_u64(r->element[1]->element[i], &dup))
            return sb_unexpected(&sb->append, "a seq or dup flag is not an integer");
        ap->dups[i] = dup != 0;
    }
    return OK;
}

/* An append on its way: the quota read (when needed), then the script. */
struct sb_append_op {
    struct sb *sb;
    struct sb_append *ap;
    sb_store_fn done;
    void *arg;
    struct sb_quota *q;  /* NULL when there is no quota, or no room to track it */
    uint64_t need;       /* the batch's metered bytes */
    int64_t reserved;    /* held in q for this append */
    struct sb_stream_keys keys;
    struct sb_append_argv x;
    int nkeys;
    const char *qargv[4];
    size_t qlens[4];
    char qkey[SB_KEY_MAX];
    struct sb_eval eval;
};

static void sb_append_op_end(struct sb_append_op *op, err_t rc)
{
    if (op->q) {
        op->q->held -= op->reserved;
        op->q->refs--;
    }
    sb_append_argv_fini(&op->x);
    op->done(op->arg, rc);
    free(op);
}

static void sb_append_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_append_op *op = arg;
    struct sb_append *ap = op->ap;
    uint64_t refused = 0;
    if (rc != OK) {
        /* the script wrote nothing (refused up front, or failed before its first XADD); a
         * lost answer may hide an append that was made: counted by the next trim or recount.
         * The client closing (the broker stops) is "retry elsewhere": ERR_CLOSED here means
         * a sealed session only. */
        sb_append_op_end(op, rc == ERR_CLOSED ? ERR_UNAVAIL : rc);
        return;
    }
    if ((rc = sb_append_take(op->sb, r, ap, &refused)) != OK) {
        sb_append_op_end(op, rc);
        return;
    }
    if (refused == 2) {
        sb_append_op_end(op, ERR_CLOSED); /* the session is closed: ap->sealed */
        return;
    }
    if (refused) {
        LOG_INFO("stream.quota_refused",
                 "an append of %" PRIu64 " bytes to environment %s (%s) was refused: its "
                 "streams hold %lld bytes at most",
                 op->need, ap->s.env, ap->s.io, op->sb->cfg.env_max_bytes);
        sb_append_op_end(op, ERR_QUOTA);
        return;
    }
    sb_quota_settle(op->sb, ap->s.env, ap->delta); /* holds delta until Redis counted it */
    sb_append_op_end(op, OK);
}

/* The quota decision, then the script. */
static void sb_append_go(struct sb_append_op *op)
{
    struct sb *sb = op->sb;
    int64_t allowed = -1;
    if (op->q) {
        int64_t room = sb->cfg.env_max_bytes - op->q->used - op->q->held;
        if ((int64_t)op->need <= room) {
            op->reserved = (int64_t)op->need;
            op->q->held += op->reserved;
        } else {
            allowed = room > 0 ? room : 0; /* what may still go in: a stream at its limit */
        }
    }
    if (!sb_append_argv_build(sb, op->ap, allowed, &op->keys, &op->x)) {
        LOG_ERROR("stream.store_failed", "stream.append: a validated record no longer parses");
        sb_append_op_end(op, ERR_INTERNAL);
        return;
    }
    if (sb_eval_start(sb, &op->eval, &sb->append, op->x.argc, op->x.argv, op->x.lens, op->nkeys,
                      sb_append_on_reply, op) != OK)
        sb_append_op_end(op, ERR_UNAVAIL);
}

static void sb_append_on_used(void *arg, err_t rc, const redisReply *r)
{
    struct sb_append_op *op = arg;
    int64_t v;
    if (rc != OK) {
        sb_append_op_end(op, rc == ERR_CLOSED ? ERR_UNAVAIL : rc);
        return;
    }
    if (!sb_reply_i64(r, &v)) {
        sb_append_op_end(op, sb_unexpected(&op->sb->used, "not a byte count"));
        return;
    }
    op->q->used = v;
    op->q->fresh_mono = clock_mono_ms();
    sb_append_go(op);
}

err_t sb_store_append(struct sb *sb, struct sb_append *ap, sb_store_fn done, void *arg)
{
    struct sb_append_op *op = xcalloc(1, sizeof(*op));
    op->sb = sb;
    op->ap = ap;
    op->done = done;
    op->arg = arg;
    op->nkeys = 4;
    for (uint32_t i = 0; i < ap->n; i++) {
        op->nkeys += ap->recs[i].part_id.p != NULL;
        op->need += ap->recs[i].metered;
    }
    if (sb->cfg.env_max_bytes > 0 && (op->q = sb_quota_of(sb, ap->s.env)))
        op->q->refs++;
    if (!op->q || (op->q->fresh_mono && clock_mono_ms() - op->q->fresh_mono < SB_QUOTA_FRESH_MS)) {
        /* no quota, or a recent view of it: straight to the script. (With every slot busy
         * the script alone holds the quota, from what its stream can still grow by.) */
        if (!op->q && sb->cfg.env_max_bytes > 0)
            LOG_WARN("stream.quota_untracked", "no room to track environment %s's bytes",
                     ap->s.env);
        sb_append_go(op);
        return OK;
    }
    op->qargv[3] = op->qkey;
    op->qlens[3] = sb_key_quota(ap->s.env, op->qkey);
    if (sb_eval_start(sb, &op->eval, &sb->used, 4, op->qargv, op->qlens, 1, sb_append_on_used,
                      op) != OK) {
        if (op->q)
            op->q->refs--;
        free(op);
        return ERR_UNAVAIL;
    }
    return OK;
}

/* ---- stream.read, stream.peek ---- */

void sb_range_fini(struct sb_range *rg)
{
    free(rg->entries);
    memset(rg, 0, sizeof(*rg));
}

/*
 * Takes a {entries, tail, tail_ts} reply into out: entries parsed, oldest
 * first, as many as fit in budget (the newest ones when newest_first).
 */
static err_t sb_range_take(const struct sb_script *s, const redisReply *r, bool newest_first,
                           size_t budget, struct sb_range *out)
{
    const redisReply *list;
    memset(out, 0, sizeof(*out));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || !sb_reply_u64(r->element[1], &out->tail) ||
        !sb_reply_u64(r->element[2], &out->tail_ts))
        return sb_unexpected(s, "not {entries, tail, tail_ts}");
    list = r->element[0];
    /* the script asked for at most STREAM_BATCH_MAX entries */
    if (list->elements > STREAM_BATCH_MAX)
        return sb_unexpected(s, "more entries than asked for");
    out->entries = list->elements ? xcalloc(list->elements, sizeof(*out->entries)) : NULL;
    size_t used = SB_REPLY_OVERHEAD;
    for (size_t i = 0; i < list->elements; i++) {
        struct sb_entry e;
        if (sb_entry_parse(list->element[i], &e) != OK) {
            free(out->entries);
            out->entries = NULL;
            return sb_unexpected(s, "an entry this broker did not write");
        }
        size_t sz = sb_entry_size(&e);
        if (out->n > 0 && used + sz > budget)
            break;
        used += sz;
        out->entries[out->n++] = e;
    }
    if (newest_first)
        for (size_t i = 0; i < out->n / 2; i++) {
            struct sb_entry t = out->entries[i];
            out->entries[i] = out->entries[out->n - 1 - i];
            out->entries[out->n - 1 - i] = t;
        }
    return OK;
}

/* A script of one stream (read, peek, trim) on its way, with its keys and arguments. */
struct sb_stream_op {
    struct sb *sb;
    struct sb_stream s;
    bool peek;
    sb_range_fn range_done;
    sb_trim_fn trim_done;
    void *arg;
    struct sb_stream_keys keys;
    char args[3][32];
    const char *argv[9];
    size_t lens[9];
    struct sb_eval eval;
};

/* Starts sc with the stream's keys (records, next, bytes) and nargs (≤ 3) of op->args. */
static err_t sb_stream_op_start(struct sb_stream_op *op, struct sb_script *sc, int nargs,
                                sb_eval_fn on_reply)
{
    op->argv[3] = op->keys.stream;
    op->lens[3] = sb_key_stream(&op->s, op->keys.stream);
    op->argv[4] = op->keys.next;
    op->lens[4] = sb_key_next(&op->s, op->keys.next);
    op->argv[5] = op->keys.bytes;
    op->lens[5] = sb_key_bytes(&op->s, op->keys.bytes);
    for (int i = 0; i < nargs && i < 3; i++) {
        op->argv[6 + i] = op->args[i];
        op->lens[6 + i] = strlen(op->args[i]);
    }
    return sb_eval_start(op->sb, &op->eval, sc, 6 + (nargs < 3 ? nargs : 3), op->argv, op->lens,
                         3, on_reply, op);
}

static void sb_range_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_stream_op *op = arg;
    struct sb_range rg = {0};
    if (rc == OK)
        rc = sb_range_take(op->peek ? &op->sb->peek : &op->sb->read, r, op->peek,
                           op->sb->reply_max, &rg);
    op->range_done(op->arg, rc, rc == OK ? &rg : NULL);
    sb_range_fini(&rg);
    free(op);
}

static err_t sb_range_start(struct sb *sb, const struct sb_stream *s, bool peek, int nargs,
                            struct sb_stream_op *op, sb_range_fn done, void *arg)
{
    op->sb = sb;
    op->s = *s;
    op->peek = peek;
    op->range_done = done;
    op->arg = arg;
    err_t rc = sb_stream_op_start(op, peek ? &sb->peek : &sb->read, nargs, sb_range_on_reply);
    if (rc != OK)
        free(op);
    return rc;
}

err_t sb_store_read(struct sb *sb, const struct sb_stream *s, uint64_t from, uint64_t count,
                    sb_range_fn done, void *arg)
{
    struct sb_stream_op *op = xcalloc(1, sizeof(*op));
    size_t room = sb->reply_max > SB_REPLY_OVERHEAD ? sb->reply_max - SB_REPLY_OVERHEAD : 0;
    snprintf(op->args[0], sizeof(op->args[0]), "%" PRIu64 "-0", from);
    snprintf(op->args[1], sizeof(op->args[1]), "%" PRIu64, count);
    snprintf(op->args[2], sizeof(op->args[2]), "%zu", room);
    return sb_range_start(sb, s, false, 3, op, done, arg);
}

err_t sb_store_peek(struct sb *sb, const struct sb_stream *s, uint64_t count, sb_range_fn done,
                    void *arg)
{
    struct sb_stream_op *op = xcalloc(1, sizeof(*op));
    snprintf(op->args[0], sizeof(op->args[0]), "%" PRIu64, count);
    return sb_range_start(sb, s, true, 1, op, done, arg);
}

/* ---- stream.trim ---- */

static void sb_trim_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_stream_op *op = arg;
    uint64_t tail = 0;
    int64_t delta = 0;
    if (rc == OK && (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                     !sb_reply_u64(r->element[0], &tail) || !sb_reply_i64(r->element[1], &delta)))
        rc = sb_unexpected(&op->sb->trim, "not {tail, delta}");
    if (rc == OK)
        sb_quota_settle(op->sb, op->s.env, delta);
    op->trim_done(op->arg, rc, tail);
    free(op);
}

err_t sb_store_trim(struct sb *sb, const struct sb_stream *s, uint64_t before, sb_trim_fn done,
                    void *arg)
{
    struct sb_stream_op *op = xcalloc(1, sizeof(*op));
    op->sb = sb;
    op->s = *s;
    op->trim_done = done;
    op->arg = arg;
    snprintf(op->args[0], sizeof(op->args[0]), "%" PRIu64 "-0", before);
    err_t rc = sb_stream_op_start(op, &sb->trim, 1, sb_trim_on_reply);
    if (rc != OK)
        free(op);
    return rc;
}

/* ---- stream.seal ---- */

struct sb_seal_op {
    sb_store_fn done;
    void *arg;
};

static void sb_seal_on_reply(void *arg, err_t rc, const redisReply *r)
{
    struct sb_seal_op *op = arg;
    (void)r;
    op->done(op->arg, rc == ERR_INTERNAL ? ERR_UNAVAIL : rc);
    free(op);
}

err_t sb_store_seal(struct sb *sb, const char *env, const char *key, const char *reason,
                    sb_store_fn done, void *arg)
{
    char k[SB_KEY_MAX];
    size_t kl = sb_key_sealed(env, key, k);
    /* "0": closed with no reason; "1<reason>" (a reason may be empty, and differs from none) */
    char v[STREAM_REASON_MAX + 2];
    int vl = snprintf(v, sizeof(v), "%s%.*s", reason ? "1" : "0", (int)STREAM_REASON_MAX,
                      reason ? reason : "");
    const char *argv[] = {"SET", k, v};
    size_t lens[] = {3, kl, (size_t)(vl < 0 ? 0 : vl < (int)sizeof(v) ? vl : (int)sizeof(v) - 1)};
    struct sb_seal_op *op = xcalloc(1, sizeof(*op));
    op->done = done;
    op->arg = arg;
    err_t rc = db_redis_async_cmd(sb->redis, 3, argv, lens, sb_seal_on_reply, op);
    if (rc != OK)
        free(op);
    return rc;
}
