/*
 * store.c - every Redis call of the stream-broker: one Lua script per
 * request, so each request is atomic and costs one round trip.
 *
 * Scripts are loaded with SCRIPT LOAD on first use and run with EVALSHA;
 * a Redis that forgot them (restart, SCRIPT FLUSH) gets the text again
 * through EVAL, which also caches it. Every script starts with a shebang:
 * Redis then refuses a writing script up front when it is out of memory,
 * rather than failing it half-way, and lets the read-only ones run on a
 * replica. Redis does not roll back a script that fails half-way, so the
 * append script writes nothing until its first XADD has succeeded.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
 * KEYS: stream, next counter, bytes counter, then the de-dup key of each record with a
 * part id. ARGV: record count, de-dup ttl (s), retention max records, max bytes (0: no
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
 * allowed, it answers refused with nothing written. Pass 2 writes, XADD first.
 * Returns {seqs, dups (0|1), next seq, ts, bytes delta, records deleted, refused (0|1)}.
 */
static const char sb_lua_append[] =
    "#!lua\n" SB_LUA_LIB
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
    "  return {seqs, dups, first, ts, delta, 0, 1}\n"
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
    "return {seqs, dups, nxt, ts, delta, total - n, 0}\n";

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
 * KEYS: the environment's counter. ARGV: the batch's bytes, the quota (0: none).
 * Reserves the bytes when they fit (or there is no quota). Returns {bytes reserved (0:
 * none, the batch would not fit), bytes counted before}.
 */
static const char sb_lua_reserve[] =
    "#!lua\n"
    "local used = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local need, quota = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "if quota > 0 and used + need > quota then return {0, used} end\n"
    "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "return {need, used}\n";

/*
 * KEYS: the environment's counter. ARGV: the change (signed). Never below 0.
 * allow-oom: it mostly gives bytes back, and a refund refused by a full Redis would leak.
 */
static const char sb_lua_settle[] = "#!lua flags=allow-oom\n"
                                    "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                                    "if v < 0 then redis.call('SET', KEYS[1], '0') v = 0 end\n"
                                    "return v\n";

void sb_store_init(struct sb *sb, struct db_redis *redis)
{
    sb->redis = redis;
    sb->append = (struct sb_script){.name = "stream.append", .text = sb_lua_append};
    sb->read = (struct sb_script){.name = "stream.read", .text = sb_lua_read};
    sb->peek = (struct sb_script){.name = "stream.peek", .text = sb_lua_peek};
    sb->trim = (struct sb_script){.name = "stream.trim", .text = sb_lua_trim};
    sb->reserve = (struct sb_script){.name = "stream.quota_reserve", .text = sb_lua_reserve};
    sb->settle = (struct sb_script){.name = "stream.quota_settle", .text = sb_lua_settle};
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

/* Turns an error reply into ERR_UNAVAIL or ERR_INTERNAL, logs it once and frees it. */
static err_t sb_err_reply(const struct sb_script *s, redisReply *r)
{
    err_t rc = sb_err_transient(r) ? ERR_UNAVAIL : ERR_INTERNAL;
    if (rc == ERR_UNAVAIL)
        LOG_WARN("stream.store_busy", "%s: Redis cannot serve now: %.200s", s->name, r->str);
    else
        LOG_ERROR("stream.store_failed", "%s: Redis answered an error: %.200s", s->name, r->str);
    freeReplyObject(r);
    return rc;
}

static err_t sb_script_load(struct sb *sb, struct sb_script *s)
{
    const char *argv[] = {"SCRIPT", "LOAD", s->text};
    redisReply *r;
    err_t rc = db_redis_cmd(sb->redis, 3, argv, NULL, &r);
    if (rc == ERR_UNAVAIL)
        return rc;
    if (rc != OK)
        return sb_err_reply(s, r);
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        LOG_ERROR("stream.store_failed", "%s: unexpected reply to SCRIPT LOAD", s->name);
        freeReplyObject(r);
        return ERR_INTERNAL;
    }
    memcpy(s->sha, r->str, 40);
    s->sha[40] = '\0';
    freeReplyObject(r);
    return OK;
}

/*
 * Runs script s with argv[3..argc) as its keys (the first nkeys) and
 * arguments; argv[0..2] and lens[0..2] are the caller's room for the
 * command, script and key count. On OK *out is the reply, not an error.
 */
static err_t sb_eval(struct sb *sb, struct sb_script *s, int argc, const char **argv, size_t *lens,
                     int nkeys, redisReply **out)
{
    char nk[16];
    redisReply *r;
    err_t rc;
    if (!s->sha[0] && (rc = sb_script_load(sb, s)) != OK)
        return rc;
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = s->sha;
    lens[1] = 40;
    argv[2] = nk;
    lens[2] = strlen(nk);
    rc = db_redis_cmd(sb->redis, argc, argv, lens, &r);
    if (rc == ERR_INTERNAL && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        LOG_INFO("stream.script_reload", "%s: Redis forgot the script; sending it again", s->name);
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = s->text;
        lens[1] = strlen(s->text);
        rc = db_redis_cmd(sb->redis, argc, argv, lens, &r);
    }
    if (rc == ERR_UNAVAIL)
        return rc; /* db_redis logged the lost connection */
    if (rc != OK)
        return sb_err_reply(s, r);
    *out = r;
    return OK;
}

static err_t sb_unexpected(const struct sb_script *s, redisReply *r, const char *what)
{
    LOG_ERROR("stream.store_failed", "%s: unexpected reply from Redis: %s", s->name, what);
    freeReplyObject(r);
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

/* ---- the environment's quota counter ---- */

/* Runs a quota script (reserve or settle) on env's counter with two number arguments. */
static err_t sb_eval_quota(struct sb *sb, struct sb_script *sc, const char *env, int nargs,
                           const char args[][24], redisReply **out)
{
    char qkey[SB_KEY_MAX];
    const char *argv[6];
    size_t lens[6];
    argv[3] = qkey;
    lens[3] = sb_key_quota(env, qkey);
    for (int i = 0; i < nargs && i < 2; i++) {
        argv[4 + i] = args[i];
        lens[4 + i] = strlen(args[i]);
    }
    return sb_eval(sb, sc, 4 + (nargs < 2 ? nargs : 2), argv, lens, 1, out);
}

/*
 * Reserves need bytes of env's quota. On OK, *reserved is need (it fit, or there is no
 * quota) or 0, and *allowed is what the append may still grow by: -1 (anything: the
 * reservation covers it) or the room left (0 when the quota is used up).
 */
static err_t sb_quota_reserve(struct sb *sb, const char *env, uint64_t need, uint64_t *reserved,
                              int64_t *allowed)
{
    char args[2][24];
    redisReply *r;
    int64_t got, used;
    snprintf(args[0], sizeof(args[0]), "%" PRIu64, need);
    snprintf(args[1], sizeof(args[1]), "%lld", sb->cfg.env_max_bytes);
    err_t rc = sb_eval_quota(sb, &sb->reserve, env, 2, args, &r);
    if (rc != OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !sb_reply_i64(r->element[0], &got) ||
        !sb_reply_i64(r->element[1], &used) || got < 0)
        return sb_unexpected(&sb->reserve, r, "not {reserved, used}");
    freeReplyObject(r);
    *reserved = (uint64_t)got;
    if (got > 0)
        *allowed = -1;
    else
        *allowed = used < sb->cfg.env_max_bytes ? sb->cfg.env_max_bytes - used : 0;
    return OK;
}

/*
 * Adds change (signed) to env's counter. A failure is logged, not returned: the append
 * or trim it follows is done, and the counter is then off by change (docs/stream-broker.md).
 */
static void sb_quota_settle(struct sb *sb, const char *env, int64_t change)
{
    char args[1][24];
    redisReply *r;
    if (change == 0)
        return;
    snprintf(args[0], sizeof(args[0]), "%" PRId64, change);
    err_t rc = sb_eval_quota(sb, &sb->settle, env, 1, args, &r);
    if (rc == OK)
        freeReplyObject(r);
    else
        LOG_WARN("stream.quota_drift",
                 "the stream bytes of environment %s are counted %" PRId64 " bytes off: %s", env,
                 -change, err_str(rc));
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
    char stream[SB_KEY_MAX], next[SB_KEY_MAX], bytes[SB_KEY_MAX];
};

/*
 * Builds the argv (allowed: the growth the quota allows, -1 for any); false if the
 * validated headers no longer read back (cannot happen).
 */
static bool sb_append_argv_build(const struct sb *sb, const struct sb_append *ap, int64_t allowed,
                                 struct sb_stream_keys *keys, struct sb_append_argv *x)
{
    char prefix[SB_KEY_MAX];
    size_t plen = sb_key_part_prefix(&ap->s, prefix), parts_len = 0, total = 3 + 3 + 5;
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
    unsigned key_index = 3; /* Lua's KEYS[1..3] are the stream and its two counters */
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

/* Takes the append script's reply into ap; *refused when it wrote nothing for the quota. */
static err_t sb_append_take(struct sb *sb, redisReply *r, struct sb_append *ap, bool *refused)
{
    uint64_t flag;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 7 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != ap->n ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements != ap->n ||
        !sb_reply_u64(r->element[2], &ap->tail) || !sb_reply_u64(r->element[3], &ap->ts) ||
        !sb_reply_i64(r->element[4], &ap->delta) || !sb_reply_u64(r->element[5], &ap->trimmed) ||
        !sb_reply_u64(r->element[6], &flag))
        return sb_unexpected(&sb->append, r, "not {seqs, dups, tail, ts, delta, trimmed, refused}");
    *refused = flag != 0;
    for (uint32_t i = 0; i < ap->n && !*refused; i++) {
        uint64_t dup;
        if (!sb_reply_u64(r->element[0]->element[i], &ap->seqs[i]) ||
            !sb_reply_u64(r->element[1]->element[i], &dup))
            return sb_unexpected(&sb->append, r, "a seq or dup flag is not an integer");
        ap->dups[i] = dup != 0;
    }
    freeReplyObject(r);
    return OK;
}

err_t sb_store_append(struct sb *sb, struct sb_append *ap)
{
    struct sb_stream_keys keys;
    struct sb_append_argv x = {0};
    redisReply *r;
    unsigned nparts = 0;
    uint64_t need = 0, reserved = 0;
    int64_t allowed = -1;
    bool refused = false;
    for (uint32_t i = 0; i < ap->n; i++) {
        nparts += ap->recs[i].part_id.p != NULL;
        need += ap->recs[i].metered;
    }
    err_t rc = sb_quota_reserve(sb, ap->s.env, need, &reserved, &allowed);
    if (rc != OK)
        return rc;
    if (!sb_append_argv_build(sb, ap, allowed, &keys, &x)) {
        sb_append_argv_fini(&x);
        sb_quota_settle(sb, ap->s.env, -(int64_t)reserved);
        LOG_ERROR("stream.store_failed", "stream.append: a validated record no longer parses");
        return ERR_INTERNAL;
    }
    rc = sb_eval(sb, &sb->append, x.argc, x.argv, x.lens, 3 + (int)nparts, &r);
    sb_append_argv_fini(&x);
    if (rc != OK) {
        /* the script wrote nothing (refused up front, or failed before its first XADD) */
        sb_quota_settle(sb, ap->s.env, -(int64_t)reserved);
        return rc;
    }
    /* an unexpected reply keeps the reservation: counting too much is the safe side */
    if ((rc = sb_append_take(sb, r, ap, &refused)) != OK)
        return rc;
    if (refused) {
        sb_quota_settle(sb, ap->s.env, -(int64_t)reserved);
        LOG_INFO("stream.quota_refused",
                 "an append of %" PRIu64 " bytes to environment %s (%s) was refused: its "
                 "streams hold %lld bytes at most",
                 need, ap->s.env, ap->s.io, sb->cfg.env_max_bytes);
        return ERR_QUOTA;
    }
    sb_quota_settle(sb, ap->s.env, ap->delta - (int64_t)reserved);
    return OK;
}

/* ---- stream.read, stream.peek ---- */

void sb_range_fini(struct sb_range *rg)
{
    if (rg->reply)
        freeReplyObject(rg->reply);
    free(rg->entries);
    memset(rg, 0, sizeof(*rg));
}

/*
 * Takes a {entries, tail, tail_ts} reply into out: entries parsed, oldest
 * first, as many as fit in budget (the newest ones when newest_first).
 */
static err_t sb_range_take(const struct sb_script *s, redisReply *r, bool newest_first,
                           size_t budget, struct sb_range *out)
{
    const redisReply *list;
    memset(out, 0, sizeof(*out));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || !sb_reply_u64(r->element[1], &out->tail) ||
        !sb_reply_u64(r->element[2], &out->tail_ts))
        return sb_unexpected(s, r, "not {entries, tail, tail_ts}");
    list = r->element[0];
    /* the script asked for at most STREAM_BATCH_MAX entries */
    if (list->elements > STREAM_BATCH_MAX)
        return sb_unexpected(s, r, "more entries than asked for");
    out->entries = list->elements ? xcalloc(list->elements, sizeof(*out->entries)) : NULL;
    size_t used = SB_REPLY_OVERHEAD;
    for (size_t i = 0; i < list->elements; i++) {
        struct sb_entry e;
        if (sb_entry_parse(list->element[i], &e) != OK) {
            free(out->entries);
            out->entries = NULL;
            return sb_unexpected(s, r, "an entry this broker did not write");
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
    out->reply = r;
    return OK;
}

/* Runs sc with the stream's keys (records, next, bytes) and nargs (≤ 3) string arguments. */
static err_t sb_eval_stream(struct sb *sb, struct sb_script *sc, const struct sb_stream *s,
                            int nargs, char args[][32], redisReply **out)
{
    struct sb_stream_keys keys;
    const char *argv[9];
    size_t lens[9];
    argv[3] = keys.stream;
    lens[3] = sb_key_stream(s, keys.stream);
    argv[4] = keys.next;
    lens[4] = sb_key_next(s, keys.next);
    argv[5] = keys.bytes;
    lens[5] = sb_key_bytes(s, keys.bytes);
    for (int i = 0; i < nargs && i < 3; i++) {
        argv[6 + i] = args[i];
        lens[6 + i] = strlen(args[i]);
    }
    return sb_eval(sb, sc, 6 + (nargs < 3 ? nargs : 3), argv, lens, 3, out);
}

err_t sb_store_read(struct sb *sb, const struct sb_stream *s, uint64_t from, uint64_t count,
                    struct sb_range *out)
{
    char args[3][32];
    redisReply *r;
    size_t room = sb->reply_max > SB_REPLY_OVERHEAD ? sb->reply_max - SB_REPLY_OVERHEAD : 0;
    snprintf(args[0], sizeof(args[0]), "%" PRIu64 "-0", from);
    snprintf(args[1], sizeof(args[1]), "%" PRIu64, count);
    snprintf(args[2], sizeof(args[2]), "%zu", room);
    err_t rc = sb_eval_stream(sb, &sb->read, s, 3, args, &r);
    if (rc != OK)
        return rc;
    return sb_range_take(&sb->read, r, false, sb->reply_max, out);
}

err_t sb_store_peek(struct sb *sb, const struct sb_stream *s, uint64_t count,
                    struct sb_range *out)
{
    char args[1][32];
    redisReply *r;
    snprintf(args[0], sizeof(args[0]), "%" PRIu64, count);
    err_t rc = sb_eval_stream(sb, &sb->peek, s, 1, args, &r);
    if (rc != OK)
        return rc;
    return sb_range_take(&sb->peek, r, true, sb->reply_max, out);
}

/* ---- stream.trim ---- */

err_t sb_store_trim(struct sb *sb, const struct sb_stream *s, uint64_t before, uint64_t *tail)
{
    char args[1][32];
    redisReply *r;
    int64_t delta;
    snprintf(args[0], sizeof(args[0]), "%" PRIu64 "-0", before);
    err_t rc = sb_eval_stream(sb, &sb->trim, s, 1, args, &r);
    if (rc != OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !sb_reply_u64(r->element[0], tail) ||
        !sb_reply_i64(r->element[1], &delta))
        return sb_unexpected(&sb->trim, r, "not {tail, delta}");
    freeReplyObject(r);
    sb_quota_settle(sb, s->env, delta);
    return OK;
}
