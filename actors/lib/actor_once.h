/*
 * actor_once.h - requests handled once: the store of first answers behind
 * the actor's once routes (actor.c; docs/bus.md, "Requests handled once").
 *
 * A request is named by its envelope's (origin, req_id), which a re-send
 * keeps. actor.c opens a transaction and claims the key in it
 * (actor_once_claim), runs the handler inside that transaction, and keeps
 * its answer as it commits (actor_once_save_commit): the effect and the
 * answer are committed together or not at all. Each end is one round trip
 * to PostgreSQL with its statement (db_pg_begin_exec, db_pg_exec_commit).
 * A second arrival finds the key taken and gets the first answer back.
 * Table bus_replies (sql/postgres/0005). Every function runs on the
 * actor's loop thread and returns OK, ERR_UNAVAIL
 * (PostgreSQL unreachable) or ERR_INTERNAL (a statement failed; db_pg has
 * logged it), unless it says otherwise.
 */
#ifndef TETHER_LIB_ACTOR_ONCE_H
#define TETHER_LIB_ACTOR_ONCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db_pg.h"
#include "envelope.h"
#include "err.h"

#define ACTOR_ONCE_KEY_LEN 32 /* hex digits of origin and req_id */
#define ACTOR_ONCE_SWEEP_BATCH 1000

/* What names one request and what must match on a second arrival. */
struct actor_once_key {
    char key[ACTOR_ONCE_KEY_LEN + 1]; /* origin then req_id, 16 hex digits each (a uuid) */
    uint16_t type;
    uint64_t body_hash;  /* FNV-1a 64 of the request body */
    uint64_t expires_ms; /* wall clock: max(deadline, now) + keep */
};

/* True when env can be handled once: a request with an origin (older senders have none). */
bool actor_once_applies(const struct envelope *env);

/* Fills k from env; keep_ms is TETHER_BUS_REPLY_KEEP, now_ms the wall clock. */
void actor_once_key_of(const struct envelope *env, uint64_t keep_ms, uint64_t now_ms,
                       struct actor_once_key *k);

/* A first answer found by actor_once_claim; free with actor_once_prev_free. */
struct actor_once_prev {
    unsigned char *body; /* raw msgpack (PQfreemem), NULL when the answer had no body */
    size_t n;
    bool same; /* type and body hash match: the same request */
};
void actor_once_prev_free(struct actor_once_prev *p);

/*
 * Opens a transaction and takes k for this request in it. *first = true when
 * it was free (go on: handle, then save and commit); false when another arrival
 * of the request committed first, then *prev holds its answer. The transaction
 * is open whatever it returns, unless PostgreSQL is gone: end it with
 * db_pg_rollback when not going on. Waits while another transaction holds
 * the key (it commits: second arrival; it rolls back: first). ERR_NOTFOUND
 * when the key was taken and is gone again (swept): the caller answers
 * ERR_UNAVAIL.
 */
err_t actor_once_claim(struct db_pg *pg, const struct actor_once_key *k, bool *first,
                       struct actor_once_prev *prev);

/* Keeps the answer body (n bytes, may be 0) for k in the transaction of actor_once_claim and
 * commits it. OK only when committed; otherwise the transaction may still be open (aborted):
 * db_pg_rollback ends it. */
err_t actor_once_save_commit(struct db_pg *pg, const struct actor_once_key *k, const void *body,
                             size_t n);

/* Deletes up to ACTOR_ONCE_SWEEP_BATCH expired rows (outside a transaction); *n deleted. */
err_t actor_once_sweep(struct db_pg *pg, unsigned *n);

#endif
