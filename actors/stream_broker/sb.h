/*
 * sb.h - the stream-broker's internal contracts: the record streams of a
 * session's channels (.in, .out) in Redis Streams.
 *
 * Layers, one file each:
 *   main.c     the actor: routes, the events socket;
 *   h_stream.c stream.append/read/peek/trim handlers and stream.record events;
 *   scripts.c  the Lua scripts (one per request) and sb_store_init;
 *   eval.c     running a script (EVALSHA, EVAL when Redis forgot it), reading replies;
 *   quota.c    the environment's quota: this broker's view, settling the counter;
 *   append.c   stream.append's Redis call;
 *   store.c    stream.read, stream.peek, stream.trim and stream.seal's Redis calls;
 *   wire.c     pure: request validation, Redis key names, entry parsing,
 *              record encoding.
 * Everything runs on the actor's single loop thread, and nothing blocks it:
 * Redis calls go through the non-blocking client (db_redis_async.h), many in
 * flight at once, and a handler replies from the call's completion. Several
 * broker instances may run at once: every request is one script, atomic in
 * Redis, so nothing is held between calls. Record bodies and headers are never logged.
 *
 * Redis data model, for a stream (env, key, io) with T = "{env:key}" (a
 * Cluster hash tag: every key of one session lives in one slot):
 *   tether:stream:T:io           the records; seq N is entry id "N-1",
 *                                (a side channel's: io is "ch/<channel>/<io>" in every key
 *                                of the stream, in the same slot; the seal is the session's);
 *                                fields t <ms>, b <body>, then one pair per header;
 *   tether:stream:T:io:next      the next seq (records ever appended);
 *   tether:stream:T:io:bytes     the metered bytes of the records the stream holds;
 *   tether:stream:T:io:followers  the stream's follow leases: holder -> expiry (Redis ms);
 *                                its records are published only while one is unexpired;
 *   tether:part:<len>:T:io:<part_id>  a part id's original seq, for STREAM_PART_TTL_S
 *                                (len: the key's byte length, so no two keys' part ids meet);
 * and for an environment, in a slot of its own (hash tag "{env}"):
 *   tether:quota:{env}:bytes     the metered bytes of all its streams (the quota's counter).
 * A stream keeps its newest records within the retention limits (cfg.stream_max_records,
 * cfg.stream_max_bytes): the append script trims the oldest ones. The environment's counter
 * cannot be updated in that script (another slot), so an append costs up to three calls:
 * reserve the batch's bytes against the quota, append (and trim), settle the difference.
 */
#ifndef TETHER_SB_H
#define TETHER_SB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis.h>

#include "actor.h"
#include "db_redis_async.h"
#include "err.h"
#include "mp.h"
#include "msg_stream.h"
#include "stream.h"

/* Room for any Redis key of a stream: prefix, tag, io, suffix or part id. */
#define SB_KEY_MAX (64u + STREAM_ENV_MAX + STREAM_KEY_MAX + STREAM_CHANNEL_MAX + STREAM_PART_ID_MAX)
/* Records one stream.peek returns at most. */
#define SB_PEEK_MAX 16u
/* Room for a validation message sent back with ERR_INVAL / ERR_TOOBIG. */
#define SB_WHY_MAX 160

/* A stream's name, validated (sb_stream_of): NUL-free, non-empty, within limits. */
struct sb_stream {
    char env[STREAM_ENV_MAX + 1];
    char key[STREAM_KEY_MAX + 1];
    char channel[STREAM_CHANNEL_MAX + 1]; /* "": the session's own pair; else a side channel */
    char io[4];                           /* "in" | "out" */
};

/* One record of a stream.append request; slices borrow from the request body. */
struct sb_record_in {
    struct slice part_id; /* SLICE_NULL: none (no de-duplication) */
    struct slice body;
    struct slice headers; /* raw msgpack array of [str, str]; empty when none */
    uint32_t nheaders;
    size_t metered; /* stream_metered_size of the record */
};

/* A parsed stream.append: the request (sb_parse_append) and, after the store, its outcome. */
struct sb_append {
    struct sb_stream s;
    uint32_t n;                         /* 1..STREAM_BATCH_MAX */
    struct sb_record_in *recs;          /* n of them */
    uint64_t *seqs;                     /* per record: its seq (a duplicate's is the original's) */
    bool *dups;                         /* per record: a part id seen within STREAM_PART_TTL_S */
    uint64_t tail;                      /* the next seq after the append */
    uint64_t ts;                        /* ms timestamp given to every record of the batch */
    uint64_t trimmed;                   /* records deleted by trim commands and retention */
    int64_t delta;                      /* change of the stream's bytes (appended - trimmed) */
    char sealed[STREAM_REASON_MAX + 2]; /* ERR_CLOSED: the seal, "0" or "1<reason>" */
    bool followed;                      /* some follow lease was unexpired: publish the records */
};

/* One stream entry as read back (sb_entry_parse); borrows from the redisReply. */
struct sb_entry {
    uint64_t seq;
    uint64_t ts;
    struct slice body;
    const redisReply *fields; /* t, ts, b, body, then nheaders name/value pairs */
    size_t nheaders;
};

/* A Lua script run with EVALSHA (EVAL when Redis forgot it). */
struct sb_script {
    const char *name; /* for logs */
    const char *text;
    char sha[41]; /* "" until SCRIPT LOAD answered */
    bool loading; /* a SCRIPT LOAD is on its way */
};

/* Environments whose quota a broker tracks at once (quota.c). */
#define SB_QUOTA_SLOTS 1024
/* A quota's view older than this is read again before an append decides on it. */
#define SB_QUOTA_FRESH_MS 1000

/* One environment's quota as this broker sees it (quota.c). */
struct sb_quota {
    char env[STREAM_ENV_MAX + 1]; /* "" = free slot */
    int64_t used;                 /* the counter, as Redis last said */
    int64_t held;                 /* reserved or settling here: not in used yet */
    uint64_t fresh_mono;          /* when used was last read; 0 = never */
    unsigned refs;                /* operations in flight that point here */
};

/* The stream-broker's own settings (docs/config.md); 0 means no limit. */
struct sb_cfg {
    long long stream_max_records; /* TETHER_SB_STREAM_MAX_RECORDS */
    long long stream_max_bytes;   /* TETHER_SB_STREAM_MAX_BYTES */
    long long env_max_bytes;      /* TETHER_SB_ENV_MAX_BYTES */
};

/* The process's state (actor.state). */
struct sb {
    struct sb_cfg cfg;
    struct db_redis_async *redis;
    struct bus_pub *events; /* NULL: nothing is published (tests) */
    size_t reply_max;       /* bytes a reply body may take (what a receiver accepts) */
    struct sb_script append, read, peek, trim, used, settle, follow;
    struct sb_quota *quotas; /* SB_QUOTA_SLOTS of them */
};

/* The records a read or peek found, oldest first; valid only during its callback. */
struct sb_range {
    struct sb_entry *entries; /* n of them, borrowing from the Redis reply */
    size_t n;
    uint64_t tail;    /* the next seq */
    uint64_t tail_ts; /* ms of the last record, 0 when none */
};

/* ---- main.c ---- */

struct sb *sb_of(struct actor *a);

/* ---- h_stream.c: handlers ---- */

/* The handlers of actor.h's contract: they answer a request's own faults themselves (with what
 * is wrong), return a store call's failure to start, and answer from the call's completion. */
err_t sb_on_stream_append(struct actor *a, struct bus_req *req);
err_t sb_on_stream_read(struct actor *a, struct bus_req *req);
err_t sb_on_stream_peek(struct actor *a, struct bus_req *req);
err_t sb_on_stream_trim(struct actor *a, struct bus_req *req);
err_t sb_on_stream_seal(struct actor *a, struct bus_req *req);
err_t sb_on_stream_follow(struct actor *a, struct bus_req *req);
/* rate.c: rate.take, a token of an environment's bucket for a route group (the gateway's limits) */
err_t sb_on_rate_take(struct actor *a, struct bus_req *req);

/* ---- scripts.c, append.c, store.c: Redis ----
 * Every call is asynchronous: it returns OK and later runs its callback once, on the loop,
 * with OK, ERR_UNAVAIL (Redis unreachable, loading, out of memory or read-only: retry
 * later; logged as a warning), ERR_TIMEOUT (no answer in time: the write may or may not
 * have been made, a retry with the same part ids is safe) or ERR_INTERNAL (an unexpected
 * reply or script error; logged as an error). On an error return the callback never runs.
 */

typedef void (*sb_store_fn)(void *arg, err_t rc);
/* rg (NULL unless rc is OK) is valid only during the call. */
typedef void (*sb_range_fn)(void *arg, err_t rc, const struct sb_range *rg);
typedef void (*sb_trim_fn)(void *arg, err_t rc, uint64_t tail);

/* Sets up the scripts of sb (their texts; loaded into Redis on first use) and its quotas. */
void sb_store_init(struct sb *sb, struct db_redis_async *redis);
void sb_store_fini(struct sb *sb);

/*
 * Appends ap's records in one script (all or none), filling ap->seqs,
 * ap->dups, ap->tail, ap->ts, ap->trimmed and ap->delta before done runs;
 * ap (and the request body its slices borrow from) must live until then.
 * A record whose part id is remembered is not appended: its seq is the
 * stored one and its dup flag is set. The same script applies the batch's
 * S2 trim commands and the stream's retention limits. ERR_QUOTA, with
 * nothing written, when the append would take the environment past
 * cfg.env_max_bytes (decided here from the last count Redis gave plus what
 * this broker holds unsettled: no extra round trip).
 */
err_t sb_store_append(struct sb *sb, struct sb_append *ap, sb_store_fn done, void *arg);

/*
 * Up to count records with seq >= from, oldest first, cut short so that
 * they fit in sb->reply_max (at least one record is always returned when
 * there is one).
 */
err_t sb_store_read(struct sb *sb, const struct sb_stream *s, uint64_t from, uint64_t count,
                    sb_range_fn done, void *arg);
/* The last count (1..SB_PEEK_MAX) records, oldest first (newest kept when cut short). */
err_t sb_store_peek(struct sb *sb, const struct sb_stream *s, uint64_t count, sb_range_fn done,
                    void *arg);
void sb_range_fini(struct sb_range *r);

/*
 * Deletes the records with seq < before; done gets the next seq. Runs also
 * when Redis is out of memory (a trim is how room is made).
 */
err_t sb_store_trim(struct sb *sb, const struct sb_stream *s, uint64_t before, sb_trim_fn done,
                    void *arg);

/*
 * Seals the session (env, key): every later append to either of its streams is refused with
 * ERR_CLOSED (nothing written; the error's message is the seal: "0" closed without a reason,
 * "1<reason>" with one, NULL reason = none). Idempotent; a seal is never lifted.
 */
err_t sb_store_seal(struct sb *sb, const char *env, const char *key, const char *reason,
                    sb_store_fn done, void *arg);

/*
 * Sets holder's lease on stream s for ttl_ms (0: ends it); done gets OK with *added true
 * when the lease is new (none, or expired), which done may read only during the call.
 */
typedef void (*sb_follow_fn)(void *arg, err_t rc, bool added);
err_t sb_store_follow(struct sb *sb, const struct sb_stream *s, struct slice holder,
                      uint32_t ttl_ms, sb_follow_fn done, void *arg);

/* ---- eval.c, quota.c: what the Redis calls share ---- */

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

/*
 * Starts script s with argv[3..argc) as its keys (the first nkeys) and arguments; argv[0..2]
 * and lens[0..2] are room for the command, script and key count, and both arrays (and e)
 * must live until done has run. An error reply reaches done as ERR_UNAVAIL (Redis cannot
 * serve now) or ERR_INTERNAL, logged. On an error return done is never called.
 */
err_t sb_eval_start(struct sb *sb, struct sb_eval *e, struct sb_script *s, int argc,
                    const char **argv, size_t *lens, int nkeys, sb_eval_fn done, void *arg);

/* Logs that script s got a reply it does not expect (what: what it expected); ERR_INTERNAL. */
err_t sb_unexpected(const struct sb_script *s, const char *what);
/* A reply's non-negative integer (an integer, or a decimal string); false otherwise. */
bool sb_reply_u64(const redisReply *r, uint64_t *v);
/* A reply's integer (an integer reply only); false otherwise. */
bool sb_reply_i64(const redisReply *r, int64_t *v);

/* The keys a script of stream s uses: its records, next counter and bytes counter. */
struct sb_stream_keys {
    char stream[SB_KEY_MAX], next[SB_KEY_MAX], bytes[SB_KEY_MAX], sealed[SB_KEY_MAX];
    char followers[SB_KEY_MAX];
};

/* The slot of env, claimed if new; NULL when every slot is busy (then: no local view). */
struct sb_quota *sb_quota_of(struct sb *sb, const char *env);
/*
 * Adds change (signed) to env's counter without waiting: the bytes stay held locally until
 * Redis has counted them. A failure is logged, not returned (docs/stream-broker.md).
 */
void sb_quota_settle(struct sb *sb, const char *env, int64_t change);

/* ---- wire.c: pure ---- */

/*
 * Each request is decoded once (proto/msg_stream.h: the forms bound every length and require
 * what the request needs) and then checked; a failure is ERR_INVAL (or ERR_TOOBIG) with a
 * message in why (cap bytes) saying what is wrong, which the handler answers.
 */

/*
 * Checks a decoded stream name into s: env, key and io without NUL (their lengths are the
 * form's), io "in" or "out", channel nil or a valid side channel's name.
 */
err_t sb_stream_of(const struct msg_stream_name *n, struct sb_stream *s, char *why, size_t cap);

/* ERR_INVAL (why set) unless min <= v <= max; key names the field in the message. */
err_t sb_check_uint(const char *key, uint64_t v, uint64_t min, uint64_t max, char *why, size_t cap);

/* A stream.read (from, count 1..STREAM_BATCH_MAX) or stream.peek (count 1..SB_PEEK_MAX; *from
 * 0) body. */
err_t sb_parse_range(struct slice body, bool peek, struct sb_stream *s, uint64_t *from,
                     uint64_t *count, char *why, size_t cap);

/* A stream.trim body. */
err_t sb_parse_trim(struct slice body, struct sb_stream *s, uint64_t *before, char *why,
                    size_t cap);

/*
 * Parses a whole stream.append body into ap (its name, then records:
 * 1..STREAM_BATCH_MAX maps {part_id: str|nil, headers: [[str, str]]|nil,
 * body: bin|str}). ERR_INVAL or ERR_TOOBIG (a record's metered size over
 * STREAM_RECORD_MAX) with why set. ap's arrays are allocated once the
 * record count is checked; sb_append_fini frees them whatever the result.
 */
err_t sb_parse_append(struct slice body, struct sb_append *ap, char *why, size_t cap);
void sb_append_fini(struct sb_append *ap);

/* A parsed stream.follow: holder borrows from the request body; names is allocated. */
struct sb_follow_req {
    struct slice holder;     /* 1..STREAM_FOLLOW_HOLDER_MAX bytes, no NUL */
    uint64_t ttl_ms;         /* 0..10 x STREAM_FOLLOW_TTL_MS; 0 ends the leases */
    uint32_t n;              /* 1..STREAM_FOLLOW_BATCH_MAX */
    struct sb_stream *names; /* n of them */
};

/*
 * Parses a whole stream.follow body: every name is checked before anything is allocated past
 * the count. ERR_INVAL with why set (a bad name: "streams[i]: ..."); sb_follow_req_fini frees
 * whatever the result.
 */
err_t sb_parse_follow(struct slice body, struct sb_follow_req *f, char *why, size_t cap);
void sb_follow_req_fini(struct sb_follow_req *f);

/* Key names (see the data model above); out holds SB_KEY_MAX bytes. Return the length. */
size_t sb_key_stream(const struct sb_stream *s, char *out);
size_t sb_key_next(const struct sb_stream *s, char *out);
/* The seal of a session, one for both its streams (same hash tag):
 * "tether:stream:{env:key}:sealed". */
size_t sb_key_sealed(const char *env, const char *key, char *out);
size_t sb_key_bytes(const struct sb_stream *s, char *out);
size_t sb_key_followers(const struct sb_stream *s, char *out);
/* The environment's quota counter (its own slot: hash tag {env}). */
size_t sb_key_quota(const char *env, char *out);
/* The de-dup key without its part id: append the part id to get the key. */
size_t sb_key_part_prefix(const struct sb_stream *s, char *out);

/* Parses a plain decimal (no sign, no spaces, no overflow); false otherwise. */
bool sb_parse_u64(const char *p, size_t n, uint64_t *out);

/*
 * Parses one stream entry ([id, [t, ts, b, body, name, value, ...]]) as
 * XRANGE returns it. ERR_PROTO when it is not one this broker writes (id
 * not "<seq>-1", fields not starting with t and b, an odd field count).
 */
err_t sb_entry_parse(const redisReply *e, struct sb_entry *out);

/* An upper bound of what sb_entry_put writes for e. */
size_t sb_entry_size(const struct sb_entry *e);

/* Writes e as a record object {seq, ts, headers: [[name, value]], body: bin}. */
void sb_entry_put(struct mp_writer *w, const struct sb_entry *e);

/*
 * S2's trim command: one header with an empty name and the value "trim", and an 8-byte
 * big-endian body, the first seq to keep. True (and *point) when r is one.
 */
bool sb_record_trim_point(const struct sb_record_in *r, uint64_t *point);

/* Writes an appended record as a record object (headers copied as they came). */
void sb_record_put(struct mp_writer *w, const struct sb_record_in *r, uint64_t seq, uint64_t ts);

#endif
