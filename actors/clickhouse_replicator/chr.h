/*
 * chr.h - the clickhouse-replicator's state and the contracts between its files.
 *
 * main.c names the routes and settings; repl.c runs the logical replication
 * stream on the loop (non-blocking libpq); batch.c holds rows until they are
 * inserted (insert.c) and ack.c acknowledges them; lag.c logs and measures
 * the lag; setup_job.c schedules the setup; fault.c is the tests' fault
 * injection;
 * pgo.c decodes pgoutput and builds ClickHouse rows (pure, unit-tested);
 * worker.c runs blocking store calls on threads and hands results back
 * through an eventfd; setup.c creates the slot and backfills (on a worker);
 * fence.c checks the fencing token; list.c answers session.list.
 * Everything except a job's run() runs on the actor's loop thread.
 */
#ifndef TETHER_CHR_H
#define TETHER_CHR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "actor.h"
#include "db_ch.h"
#include "db_pg.h"
#include "db_redis_async.h"
#include "jbuf.h"
#include "loop.h"

/* ---- settings (TETHER_CHR_*) ---- */
struct chr_cfg {
    char *slot;
    char *publication;
    char *table;
    long long batch_rows;
    long long flush_ms;
    long long max_tries;
    long long backoff_max_ms;
    long long status_ms;
    long long lag_warn_bytes;
    long long lag_log_ms;
    long long fresh_ms;
    long long backfill_rows;
    char *fence_key;
    char *fault_file;
};

/* ---- pgoutput (pgo.c) ---- */

/* The sessions columns the replicator reads, by name (pgo.c chr_col_names). */
enum chr_col {
    CHR_COL_ID,
    CHR_COL_FRIENDLY_ID,
    CHR_COL_EXTERNAL_ID,
    CHR_COL_TYPE,
    CHR_COL_PROJECT_ID,
    CHR_COL_ENV_ID,
    CHR_COL_ORG_ID,
    CHR_COL_ENV_TYPE,
    CHR_COL_TASK,
    CHR_COL_TAGS,
    CHR_COL_METADATA,
    CHR_COL_CLOSED_AT,
    CHR_COL_CLOSED_REASON,
    CHR_COL_EXPIRES_AT,
    CHR_COL_CREATED_AT,
    CHR_COL_UPDATED_AT,
    CHR_NCOLS,
};
extern const char *const chr_col_names[CHR_NCOLS];

/* One column's text value; borrowed from the message or result it came from. */
struct chr_val {
    bool present; /* the tuple carried it (not 'u' unchanged-TOAST, not missing) */
    bool null;
    const char *p;
    size_t n;
};

#define CHR_PGO_MAXCOLS 64
#define CHR_PGO_MAXREL 8

/* A relation (table) as the last 'R' message described it. */
struct chr_rel {
    uint32_t oid;
    char name[64];
    uint16_t ncols;
    int8_t map[CHR_PGO_MAXCOLS]; /* column i of the tuple -> enum chr_col, or -1 */
};

enum chr_pgo_kind {
    CHR_PGO_BEGIN,
    CHR_PGO_COMMIT,
    CHR_PGO_RELATION,
    CHR_PGO_INSERT,
    CHR_PGO_UPDATE,
    CHR_PGO_DELETE,
    CHR_PGO_OTHER, /* truncate, type, origin, message: nothing to replicate */
};

struct chr_pgo_msg {
    enum chr_pgo_kind kind;
    uint64_t lsn;   /* begin: final lsn; commit: end lsn */
    uint64_t ts_us; /* begin/commit: microseconds since 2000-01-01 */
    uint32_t relid;
    const struct chr_rel *rel;      /* insert/update/delete: its relation, NULL if unknown */
    struct chr_val vals[CHR_NCOLS]; /* the new row (insert/update) or the old row (delete) */
};

struct chr_pgo {
    struct chr_rel rels[CHR_PGO_MAXREL];
    unsigned nrels;
};

/*
 * Decodes one pgoutput message (proto_version 1) of n bytes into *m; a Relation updates p's
 * cache. Values of m borrow buf. ERR_PROTO on a truncated or malformed message.
 */
err_t chr_pgo_decode(struct chr_pgo *p, const unsigned char *buf, size_t n, struct chr_pgo_msg *m);

/* PostgreSQL's text timestamp ("2024-04-01 12:34:56.789+00", TimeZone UTC) as epoch ms. */
bool chr_pg_ts_ms(const char *s, size_t n, uint64_t *ms);
/* Appends a text[] literal ("{a,\"b c\"}") as a JSON array of strings; false if malformed. */
bool chr_pg_array_json(const char *s, size_t n, struct jbuf *out);

/*
 * Appends the ClickHouse JSONEachRow line (with '\n') of the row vals at version, marked
 * deleted or not. ERR_INVAL when a value cannot be converted (the row is bad).
 */
err_t chr_row_json(const struct chr_val *vals, uint64_t version, bool deleted, struct jbuf *out);

/* "X/Y" of an LSN into buf (>= 20 bytes). */
void chr_lsn_fmt(uint64_t lsn, char *buf, size_t cap);
bool chr_lsn_parse(const char *s, uint64_t *lsn);

/* ---- worker threads (worker.c) ---- */

struct chr_worker;
struct chr_job;

/* run: on the worker thread, may block (bounded by the store timeouts). done: on the loop. */
struct chr_job_ops {
    void (*run)(struct chr_job *j, struct chr_worker *w);
    void (*done)(struct chr_job *j);
};

struct chr_job {
    const struct chr_job_ops *ops;
    err_t rc; /* ERR_CLOSED when the worker stopped before running it */
    void *arg;
    struct chr_job *_next;
};

struct chr_worker {
    const char *name;
    struct loop *loop;
    struct db_pg pg; /* the thread's own connections */
    struct db_ch ch;
    struct chr *chr;
    pthread_t _th;
    pthread_mutex_t _mu;
    pthread_cond_t _cv;
    struct chr_job *_in, *_in_tail, *_out, *_out_tail;
    int _efd;
    bool _stop, _started;
    unsigned busy; /* jobs submitted and not yet done */
};

err_t chr_worker_start(struct chr_worker *w, struct chr *chr, const char *name);
/* Queues j; its done() runs later on the loop, exactly once. */
void chr_worker_submit(struct chr_worker *w, struct chr_job *j);
/* Waits for the running job, then runs done() of the queued ones with ERR_CLOSED. */
void chr_worker_stop(struct chr_worker *w);

/* ---- the replicator ---- */

enum chr_conn_state {
    CHR_IDLE,       /* waiting for setup or a reconnect timer */
    CHR_CONNECTING, /* PQconnectPoll */
    CHR_STARTING,   /* START_REPLICATION sent */
    CHR_STREAMING,
};

/* A row waiting for ClickHouse. */
struct chr_row {
    char session_id[64];
    uint64_t lsn;
    char *json;
    size_t n;
};

struct chr_batch {
    struct chr_row *rows;
    size_t n, cap;
    uint32_t *_hash;           /* open addressing: row index + 1 by session id, 0 = empty */
    size_t _hcap;              /* a power of two, at least twice n */
    uint64_t up_to_lsn;        /* commit end lsn of the last transaction in it */
    uint64_t oldest_commit_us; /* commit time of its first transaction (for lag) */
};

struct chr {
    struct chr_cfg cfg;
    struct actor *a;
    struct loop *loop;
    struct chr_worker ins; /* inserts and the slot setup */
    struct chr_worker qry; /* session.list and slot status */
    struct db_redis_async *redis;
    uint64_t fence_token; /* 0 = not under a supervisor: no fencing */
    char fence_key[300];
    bool fenced; /* lost the fence: stop writing */
    bool fence_warned;

    /* replication connection */
    enum chr_conn_state state;
    PGconn *conn;
    int watched_fd;
    short watched_ev;
    struct backoff backoff;
    uint64_t reconnect_timer;
    bool setup_done, setup_running;
    struct chr_pgo pgo;

    /* the transaction being received */
    bool in_txn;
    struct chr_batch txn;

    /* batches */
    struct chr_batch pending;
    struct chr_batch inflight;
    bool insert_busy;             /* a fence check or an insert of inflight is under way */
    unsigned tries;               /* attempts of inflight so far */
    bool split;                   /* inflight failed as bad data max_tries times: rows one by one */
    size_t split_next;            /* split: rows of inflight before this one are done */
    unsigned insert_failures_run; /* failed tries of the batch in flight */
    bool warned_keep;
    struct backoff ins_backoff;
    uint64_t flush_timer, retry_timer, status_timer, lag_timer, figures_timer;

    /* positions */
    uint64_t received_lsn;   /* end of the last XLogData or keepalive walEnd seen */
    uint64_t server_end_lsn; /* server's WAL end from the last message */
    uint64_t acked_lsn;      /* confirmed to PostgreSQL */
    uint64_t safe_lsn;       /* everything up to here is in ClickHouse */
    bool ack_busy;
    bool reply_requested;
    uint64_t last_status_mono;
    uint64_t last_lag_warn_mono;

    /* counters (logged by chr.lag) */
    uint64_t rows_inserted, rows_skipped, batches, insert_failures;
};

/* PostgreSQL's epoch, 2000-01-01, in unix ms (its timestamps count from there). */
#define CHR_PG_EPOCH_MS 946684800000ull

/* repl.c */
void chr_repl_start(struct chr *chr);
void chr_repl_stop(struct chr *chr);

/* A replication=database connection (TimeZone UTC); started non-blocking or made blocking. */
PGconn *chr_repl_connect(struct chr *chr, bool nonblocking);
/* Watches the replication connection's socket for ev (POLLIN/POLLOUT; 0: not at all). */
void chr_watch(struct chr *chr, short ev);
/*
 * Drops the replication connection (why: for the log): what was only received is dropped,
 * the batch in flight finishes, and a reconnect is scheduled after the backoff.
 */
void chr_conn_drop(struct chr *chr, const char *why);
/* A loop timer: connects (or runs the setup first while it is not done); arg is the chr. */
void chr_connect(struct loop *l, void *arg);

/* lag.c: lag in bytes and seconds, for logs and session.list's read-your-writes window. */
uint64_t chr_lag_bytes(const struct chr *chr);
uint64_t chr_lag_ms(const struct chr *chr);
/* Loop timers (arg: the chr) that re-arm themselves: chr.lag every lag_log_ms with the
 * slot's health, and the lag on /metrics every second. */
void chr_lag_timer(struct loop *l, void *arg);
void chr_figures_timer(struct loop *l, void *arg);

/* ack.c: sends a status update naming safe_lsn (after a fence check) when it moved, force is
 * set, the server asked, or status_ms passed; at most one on its way. */
void chr_ack_maybe(struct chr *chr, bool force);
/* A loop timer (arg: the chr) that re-arms itself every status_ms: chr_ack_maybe. */
void chr_status_timer(struct loop *l, void *arg);

/* insert.c: makes the pending batch the one in flight and inserts it, unless one is in flight
 * already (it flushes again when done), the replicator is fenced, or nothing is pending. */
void chr_flush(struct chr *chr);

/* setup_job.c: a loop timer (arg: the chr): runs the setup (setup.c) on the insert worker
 * after a fence check, unless it runs already; connects once it succeeded, else retries. */
void chr_setup_timer(struct loop *l, void *arg);

/* setup.c: on the insert worker: publication, slot (+ backfill when new). */
err_t chr_setup_run(struct chr *chr, struct chr_worker *w);
/* The INSERT ... FORMAT JSONEachRow statement for table into q; false if it does not fit. */
bool chr_ch_insert_sql(const char *table, char *q, size_t cap);
/* Inserts JSONEachRow data into the table; ERR_INVAL for bad data, ERR_UNAVAIL otherwise. */
err_t chr_ch_insert(struct chr *chr, struct db_ch *ch, const char *data, size_t n);

/* fence.c: fn(chr, ok) once: ok = the fence still holds our token (or no fencing). */
typedef void (*chr_fence_fn)(struct chr *chr, bool ok, void *arg);
void chr_fence_check(struct chr *chr, chr_fence_fn fn, void *arg);
/* A fence check failed: another node leads. Logs it, sets chr->fenced and stops the loop. */
void chr_fenced(struct chr *chr);

/* fault.c: test hook: if TETHER_CHR_FAULT_FILE holds `what`, removes it and SIGKILLs the
 * process. */
void chr_fault_point(struct chr *chr, const char *what);
/* Test hook: true if TETHER_CHR_FAULT_FILE holds "refuse_row MARKER" and data[0..n) contains
 * MARKER (the file stays: every try is refused). Thread-safe (reads only the file). */
bool chr_fault_refuses(const struct chr *chr, const char *data, size_t n);

/* list.c: session.list (proto/msg_list.h), answered from the query worker */
err_t chr_on_session_list(struct actor *a, struct bus_req *req);

/* batch.c */
void chr_batch_clear(struct chr_batch *b);
/* Clears b and frees its storage (it may be used again, empty). */
void chr_batch_fini(struct chr_batch *b);
void chr_batch_add(struct chr_batch *b, const char *sid, uint64_t lsn, char *json, size_t n);

#endif
