/*
 * scripts.c - the stream-broker's Lua scripts, one per request, so each
 * request is atomic and costs one round trip, and sb_store_init, which
 * gives them to the broker (eval.c runs them).
 *
 * Every script starts with a shebang:
 * Redis then refuses a writing script up front when it is out of memory,
 * rather than failing it half-way, and lets the read-only ones run on a
 * replica. Redis does not roll back a script that fails half-way, so the
 * append script writes nothing until its first XADD has succeeded.
 */
#include <stdlib.h>

#include "mem.h"
#include "sb.h"

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
 * KEYS: stream, next counter, bytes counter, the session's seal, the stream's follow leases,
 * then the de-dup key of each record with a part id. ARGV: record count, de-dup ttl (s), retention
 * max records, max bytes (0: no limit), the growth allowed (-1: any; else the quota's room), then
 * per record: the index of its de-dup key in KEYS (0: none), its header count, its S2 trim point
 * (0: none), its body, its header names and values.
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
 * the quota, 2 for the seal), the seal's reason, unexpired follow leases (0: publish nothing)}.
 */
static const char sb_lua_append[] =
    "#!lua\n" SB_LUA_LIB "local sealed = redis.call('GET', KEYS[4])\n"
    "if sealed then return {{}, {}, 0, 0, 0, 0, 2, sealed, 0} end\n"
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
    "  return {seqs, dups, first, ts, delta, 0, 1, '', 0}\n"
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
    /* after the writes: a lease taken before this script ran sees these records published, one
     * taken after reads them (stream.follow answers added) */
    "return {seqs, dups, nxt, ts, delta, total - n, 0, '', redis.call('ZCOUNT', KEYS[5], ts, "
    "'+inf')}\n";

/*
 * KEYS: the stream's follow leases. ARGV: holder, ttl (ms; 0 ends holder's lease). Drops the
 * expired leases; the key lives as long as its newest lease. Returns 1 when holder's lease is
 * new (it had none unexpired), else 0.
 */
static const char sb_lua_follow[] =
    "#!lua\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)\n"
    "local ttl = tonumber(ARGV[2])\n"
    "if ttl == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) return 0 end\n"
    "local added = redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "return added\n";

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
    "#!lua flags=allow-oom\n" SB_LUA_LIB "local b, known = stream_bytes(KEYS[1], KEYS[3])\n"
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
    sb->follow = (struct sb_script){.name = "stream.follow", .text = sb_lua_follow};
}

/* Every operation in flight has ended (the Redis client is freed first): nothing points here. */
void sb_store_fini(struct sb *sb)
{
    free(sb->quotas);
    sb->quotas = NULL;
}
