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
 * KEYS: stream, next counter, then the de-dup key of each record with a part id.
 * ARGV: record count, de-dup ttl (s), then per record: the index of its de-dup key
 * in KEYS (0: none), its header count, its body, its header names and values.
 * Returns {seqs, dups (0|1), next seq, ts}.
 */
static const char sb_lua_append[] =
    "#!lua\n"
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
    "local seqs, dups, a = {}, {}, 3\n"
    "for i = 1, tonumber(ARGV[1]) do\n"
    "  local k, nh, body = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]\n"
    "  local h = a + 3\n"
    "  a = h + 2 * nh\n"
    "  local old = false\n"
    "  if k > 0 then old = redis.call('GET', KEYS[k]) end\n"
    "  if old then\n"
    "    seqs[i], dups[i] = tonumber(old), 1\n"
    "  else\n"
    "    local cmd = {'XADD', KEYS[1], string.format('%d-1', nxt), 't', tss, 'b', body}\n"
    "    for j = h, a - 1 do cmd[#cmd + 1] = ARGV[j] end\n"
    "    redis.call(unpack(cmd))\n"
    "    if k > 0 then\n"
    "      redis.call('SET', KEYS[k], string.format('%d', nxt), 'EX', ARGV[2])\n"
    "    end\n"
    "    seqs[i], dups[i] = nxt, 0\n"
    "    nxt = nxt + 1\n"
    "  end\n"
    "end\n"
    "if nxt ~= first then redis.call('SET', KEYS[2], string.format('%d', nxt)) end\n"
    "return {seqs, dups, nxt, ts}\n";

/*
 * KEYS: stream, next counter. ARGV: first id, count, byte budget.
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

/* KEYS: stream, next counter. ARGV: count. Returns {entries newest first, next seq, ts}. */
static const char sb_lua_peek[] =
    "#!lua flags=no-writes\n"
    "local recs = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])\n"
    "local tail_ts = '0'\n"
    "if recs[1] then tail_ts = recs[1][2][2] or '0' end\n"
    "return {recs, redis.call('GET', KEYS[2]) or '0', tail_ts}\n";

/* KEYS: stream, next counter. ARGV: the first id kept. Returns the next seq. */
static const char sb_lua_trim[] = "#!lua\n"
                                  "redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])\n"
                                  "return redis.call('GET', KEYS[2]) or '0'\n";

void sb_store_init(struct sb *sb, struct db_redis *redis)
{
    sb->redis = redis;
    sb->append = (struct sb_script){.name = "stream.append", .text = sb_lua_append};
    sb->read = (struct sb_script){.name = "stream.read", .text = sb_lua_read};
    sb->peek = (struct sb_script){.name = "stream.peek", .text = sb_lua_peek};
    sb->trim = (struct sb_script){.name = "stream.trim", .text = sb_lua_trim};
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

/* Builds the argv; false if the validated headers no longer read back (cannot happen). */
static bool sb_append_argv_build(const struct sb_append *ap, char *skey, char *nkey,
                                 struct sb_append_argv *x)
{
    char prefix[SB_KEY_MAX];
    size_t plen = sb_key_part_prefix(&ap->s, prefix), parts_len = 0, total = 3 + 2 + 2;
    unsigned nparts = 0, k = 0;
    for (uint32_t i = 0; i < ap->n; i++) {
        const struct sb_record_in *r = &ap->recs[i];
        total += 3 + 2 * (size_t)r->nheaders;
        if (r->part_id.p) {
            nparts++;
            parts_len += plen + r->part_id.n;
        }
    }
    total += nparts;
    /* bounded by STREAM_BATCH_MAX x (3 + 2 x STREAM_HEADERS_MAX + 1), checked by the parser */
    x->argv = xcalloc(total, sizeof(*x->argv));
    x->lens = xcalloc(total, sizeof(*x->lens));
    x->num = xcalloc(2 * (size_t)ap->n + 2, sizeof(*x->num));
    x->parts = xmalloc(parts_len + 1);
    x->argc = 3; /* sb_eval's */
    sb_arg(x, skey, sb_key_stream(&ap->s, skey));
    sb_arg(x, nkey, sb_key_next(&ap->s, nkey));
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
    unsigned key_index = 2; /* Lua's KEYS[1] and KEYS[2] are the stream and the counter */
    for (uint32_t i = 0; i < ap->n; i++) {
        const struct sb_record_in *r = &ap->recs[i];
        struct mp_reader hr;
        uint32_t nh, two;
        struct slice name, value;
        sb_arg_num(x, &k, r->part_id.p ? ++key_index : 0);
        sb_arg_num(x, &k, r->nheaders);
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

err_t sb_store_append(struct sb *sb, struct sb_append *ap)
{
    char skey[SB_KEY_MAX], nkey[SB_KEY_MAX];
    struct sb_append_argv x = {0};
    redisReply *r;
    unsigned nparts = 0;
    for (uint32_t i = 0; i < ap->n; i++)
        nparts += ap->recs[i].part_id.p != NULL;
    if (!sb_append_argv_build(ap, skey, nkey, &x)) {
        sb_append_argv_fini(&x);
        LOG_ERROR("stream.store_failed", "stream.append: a validated record no longer parses");
        return ERR_INTERNAL;
    }
    err_t rc = sb_eval(sb, &sb->append, x.argc, x.argv, x.lens, 2 + (int)nparts, &r);
    sb_append_argv_fini(&x);
    if (rc != OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != ap->n ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements != ap->n ||
        !sb_reply_u64(r->element[2], &ap->tail) || !sb_reply_u64(r->element[3], &ap->ts))
        return sb_unexpected(&sb->append, r, "not {seqs, dups, tail, ts}");
    for (uint32_t i = 0; i < ap->n; i++) {
        uint64_t dup;
        if (!sb_reply_u64(r->element[0]->element[i], &ap->seqs[i]) ||
            !sb_reply_u64(r->element[1]->element[i], &dup))
            return sb_unexpected(&sb->append, r, "a seq or dup flag is not an integer");
        ap->dups[i] = dup != 0;
    }
    freeReplyObject(r);
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

/* Runs sc with the stream's two keys (stream, counter) and nargs (≤ 3) string arguments. */
static err_t sb_eval_stream(struct sb *sb, struct sb_script *sc, const struct sb_stream *s,
                            int nargs, char args[][32], redisReply **out)
{
    char skey[SB_KEY_MAX], nkey[SB_KEY_MAX];
    const char *argv[8];
    size_t lens[8];
    argv[3] = skey;
    lens[3] = sb_key_stream(s, skey);
    argv[4] = nkey;
    lens[4] = sb_key_next(s, nkey);
    for (int i = 0; i < nargs && i < 3; i++) {
        argv[5 + i] = args[i];
        lens[5 + i] = strlen(args[i]);
    }
    return sb_eval(sb, sc, 5 + (nargs < 3 ? nargs : 3), argv, lens, 2, out);
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
    snprintf(args[0], sizeof(args[0]), "%" PRIu64 "-0", before);
    err_t rc = sb_eval_stream(sb, &sb->trim, s, 1, args, &r);
    if (rc != OK)
        return rc;
    if (!sb_reply_u64(r, tail))
        return sb_unexpected(&sb->trim, r, "not the next seq");
    freeReplyObject(r);
    return OK;
}
