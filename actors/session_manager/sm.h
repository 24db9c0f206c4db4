/*
 * sm.h - the session-manager's internal contracts: runtime environments and
 * their secret API keys (this file), sessions later.
 *
 * Layers, one file each:
 *   env.c        bus handlers: decode a request, validate it, call the
 *                store, encode the reply (env.* messages, proto/msg.c);
 *   env_store.c  the SQL (PostgreSQL through db_pg_exec, parameters only);
 *   env_check.c  pure input checks: type names, slugs, branch names, key
 *                shape, constant-time comparison;
 *   env_wire.c   the env object on the wire (msgpack).
 * Everything runs on the actor's single loop thread; store calls block
 * (bounded by statement_timeout). No function here ever logs a secret key:
 * logs name environments by id.
 */
#ifndef TETHER_SM_H
#define TETHER_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "db_pg.h"
#include "err.h"
#include "ids.h"
#include "mp.h"

#define SM_ID_MAX 64                    /* ids are cuids (25 chars); room for foreign ones */
#define SM_SLUG_MAX 65                  /* org/project slugs: 1-64 chars + NUL */
#define SM_BRANCH_MAX 65                /* branch names: 1-64 chars + NUL */
#define SM_TYPE_MAX 16                  /* "DEVELOPMENT" ... */
#define SM_SIGNING_KEYS_MAX 8           /* current key + up to 7 grace-window keys, newest first */
#define SM_LIST_MAX 1000                /* env.list returns at most this many environments */
#define SM_GRACE_MS_DEFAULT 86400000ULL /* a rotated-out key keeps working for 24 h */
#define SM_GRACE_MS_MAX (366ULL * 86400000ULL)

/* One runtime environment as the store returns it. Strings are "" when NULL in SQL. */
struct sm_env {
    char id[SM_ID_MAX];
    char type[SM_TYPE_MAX]; /* DEVELOPMENT | STAGING | PRODUCTION | PREVIEW */
    char slug[SM_BRANCH_MAX];
    char org_id[SM_ID_MAX];
    char org_slug[SM_SLUG_MAX];
    char project_id[SM_ID_MAX];
    char project_slug[SM_SLUG_MAX];
    char parent_id[SM_ID_MAX];       /* "" unless a preview branch */
    char branch_name[SM_BRANCH_MAX]; /* "" unless a preview branch */
    char api_key[API_KEY_MAX];
    /* keys a JWT of this environment may be signed with (the parent's for a branch) */
    char signing_keys[SM_SIGNING_KEYS_MAX][API_KEY_MAX];
    unsigned nsigning_keys;
    uint64_t created_at_ms;
    bool archived;        /* archived_at is set */
    bool project_deleted; /* its project's deleted_at is set */
};

/* ---- blob.c: a session's documents (the chat snapshot), on the non-blocking pool ---- */

/* session.blob_put {env_id, ref, name, content_type, body}: stores (replaces) one document. */
err_t sm_on_blob_put(struct actor *a, struct bus_req *req);
/* session.blob_get {env_id, ref, name}: the document, or ERR_NOTFOUND. */
err_t sm_on_blob_get(struct actor *a, struct bus_req *req);

/*
 * ---- env.c: handlers (registered in main.c's routes) ----
 * Each answers every outcome itself and returns OK: its refusals name the rule broken, and a
 * failure of the environment store says so (tetherctl shows it to the operator).
 */

/* env.resolve_key {key, branch}: the environment a secret key authenticates, or ERR_UNAUTH. */
err_t sm_on_env_resolve_key(struct actor *a, struct bus_req *req);
/* env.get {id}: an environment by id (with its signing keys), or ERR_NOTFOUND. */
err_t sm_on_env_get(struct actor *a, struct bus_req *req);
/* env.create {org, project, type, parent_id, branch}: a new environment with a new key. */
err_t sm_on_env_create(struct actor *a, struct bus_req *req);
/* env.rotate_key {id, grace_ms}: a new key; the old one stays valid for grace_ms. */
err_t sm_on_env_rotate_key(struct actor *a, struct bus_req *req);
/* env.bootstrap {}: the development environment of org/project "default", made if missing. */
err_t sm_on_env_bootstrap(struct actor *a, struct bus_req *req);
/* env.list {}: every live environment, without keys. */
err_t sm_on_env_list(struct actor *a, struct bus_req *req);

/*
 * ---- env_store.c: SQL ----
 * Every function returns OK, the codes it names, ERR_UNAVAIL when the store
 * failed (unreachable, statement timeout, schema missing: db_pg has logged
 * the detail) or randomness was unavailable, or ERR_INTERNAL when a row
 * does not fit the struct (not written by us).
 */

/*
 * Finds the organization with this slug, creating it if missing; race-safe
 * (INSERT ... ON CONFLICT DO NOTHING, then SELECT). Writes its id into
 * org_id (SM_ID_MAX bytes).
 */
err_t sm_store_org_ensure(struct db_pg *pg, const char *slug, char *org_id);

/*
 * Same for a project (slug unique within the organization). ERR_CONFLICT
 * when the project exists but is deleted.
 */
err_t sm_store_project_ensure(struct db_pg *pg, const char *org_id, const char *slug,
                              char *project_id);

/*
 * Inserts a root environment (no parent) of type (long name) and slug with
 * key. ERR_EXISTS when the project already has a root environment of that
 * type. ERR_CONFLICT when the row could not be inserted for another unique
 * reason (the caller retries with a fresh id and key). On OK env_id holds
 * the new id.
 */
err_t sm_store_env_insert_root(struct db_pg *pg, const char *org_id, const char *project_id,
                               const char *type, const char *slug, const char *key, char *env_id);

/*
 * Inserts a preview branch of parent (a root PREVIEW environment, already
 * checked by the caller) named branch, with key. ERR_EXISTS when parent
 * already has that branch; ERR_CONFLICT as above.
 */
err_t sm_store_env_insert_branch(struct db_pg *pg, const struct sm_env *parent, const char *branch,
                                 const char *key, char *env_id);

/*
 * The root environment of type in project (archived or not): ERR_NOTFOUND
 * when there is none.
 */
err_t sm_store_env_find_root(struct db_pg *pg, const char *project_id, const char *type,
                             char *env_id);

/* Loads an environment by id with its signing keys. ERR_NOTFOUND when absent. */
err_t sm_store_env_get(struct db_pg *pg, const char *id, struct sm_env *env);

/*
 * The id of the environment whose current key, or whose revoked key still
 * within its grace window, is key. The lookup goes by SHA-256 (computed by
 * PostgreSQL); the candidate's full key is then compared in constant time.
 * ERR_NOTFOUND when no key matches.
 */
err_t sm_store_env_by_key(struct db_pg *pg, const char *key, char *env_id);

/* The preview branch named branch under parent_id: ERR_NOTFOUND when absent. */
err_t sm_store_env_branch(struct db_pg *pg, const char *parent_id, const char *branch,
                          char *env_id);

/*
 * Replaces the key of environment id with new_key and keeps the old key in
 * revoked_api_keys until now + grace_ms, in one statement (so one
 * transaction). ERR_NOTFOUND when id is absent or archived.
 */
err_t sm_store_env_rotate(struct db_pg *pg, const char *id, const char *new_key, uint64_t grace_ms);

/*
 * Calls fn for each live environment (not archived, project not deleted),
 * oldest first, at most SM_LIST_MAX; env->api_key and signing keys are
 * left empty.
 */
err_t sm_store_env_list(struct db_pg *pg, void (*fn)(void *arg, const struct sm_env *env),
                        void *arg);

/* ---- env_check.c: pure checks ---- */

/*
 * Maps a short type name ("dev", "stg", "prod", "preview") to the stored
 * one ("DEVELOPMENT", ...); NULL for anything else.
 */
const char *sm_env_type_long(const char *short_name);

/* The short name of a stored type ("DEVELOPMENT" -> "dev"); NULL if unknown. */
const char *sm_env_type_short(const char *long_name);

/* True for an organization or project slug: 1-64 chars of [A-Za-z0-9._-]. */
bool sm_slug_valid(const char *s, size_t n);

/* True for a preview branch name: 1-64 chars of [A-Za-z0-9._/-]. */
bool sm_branch_valid(const char *s, size_t n);

/*
 * True when s could be a secret key: starts with "tr_", shorter than
 * API_KEY_MAX, only [A-Za-z0-9_]. Anything else cannot match a stored key,
 * so it is refused without a query (and never reaches SQL or a log).
 */
bool sm_key_shape_ok(const char *s, size_t n);

/* Compares two byte strings in time that depends only on their lengths. */
bool sm_ct_equal(const char *a, size_t an, const char *b, size_t bn);

/* ---- env_wire.c: the env object (see the catalogue comment in proto/msg.c) ---- */

/*
 * Writes env as a msgpack map. with_keys adds api_key and signing_keys
 * (env.list leaves them out). Failures are remembered by the writer.
 */
void sm_env_put(struct mp_writer *w, const struct sm_env *env, bool with_keys);

/* ---- sessions (session.c handlers, session_store.c SQL) ---- */

#define SM_KEY_MAX 1024 /* friendly or external id, type, task identifier (+ NUL) */

/* What session.create inserts; JSON fields are text the gateway validated. */
struct sm_session_new {
    const char *env_id, *org_id, *project_id, *env_type;
    const char *type;
    const char *external_id; /* NULL: none (every create makes a new session) */
    const char *task_identifier;
    const char *trigger_config; /* JSON object */
    const char *tags;           /* JSON array of strings */
    const char *metadata;       /* JSON object, or NULL */
    uint64_t expires_at_ms;     /* 0: never */
};

err_t sm_on_session_create(struct actor *a, struct bus_req *req);
err_t sm_on_session_get(struct actor *a, struct bus_req *req);
err_t sm_on_session_update(struct actor *a, struct bus_req *req);
err_t sm_on_session_close(struct actor *a, struct bus_req *req);

/*
 * Each returns, on OK, a result with zero or one row in the session column
 * order (session_store.c), which the caller PQclear()s. ERR_UNAVAIL when
 * PostgreSQL cannot be reached, ERR_INTERNAL when the statement failed
 * (malformed JSON, for one).
 */
err_t sm_store_session_upsert(struct db_pg *pg, const struct sm_session_new *s, PGresult **res,
                              bool *is_cached);
err_t sm_store_session_get(struct db_pg *pg, const char *env_id, const char *key, PGresult **res);
err_t sm_store_session_update(struct db_pg *pg, const char *env_id, const char *key,
                              const char *tags, bool set_metadata, const char *metadata,
                              PGresult **res);
/* Closes once: an already closed session comes back unchanged (the first close wins). */
err_t sm_store_session_close(struct db_pg *pg, const char *env_id, const char *key,
                             const char *reason, PGresult **res);

/*
 * session.c: the stream-broker peer a close seals through and the events socket
 * session.changed goes out on (ipc://<bus dir>/session-manager.events.<instance>.ipc).
 */
err_t sm_session_init(struct actor *a);

#endif
