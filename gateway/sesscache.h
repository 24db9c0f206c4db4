/*
 * sesscache.h - the session rows a gateway process has read lately, so an
 * append or a subscribe does not ask the session-manager (and PostgreSQL)
 * every time.
 *
 * Keyed by (environment id, the URL's :session value); each entry holds a
 * copy of a session.get answer body ({session: {...}}). Bounded in entries
 * (least recently used goes first) and in age (ttl_ms). An entry is dropped
 * at once when the session-manager says the row changed (session.changed:
 * close, update), and the TTL bounds a lost event. Nothing here decides
 * whether an append is taken: a close seals the session's streams in the
 * stream-broker before its answer returns (docs/rationale.md), so a stale
 * entry can only make an append to a closed session fail later, in the
 * broker, never succeed.
 *
 * One per gateway process, used on its loop thread only.
 */
#ifndef TETHER_GW_SESSCACHE_H
#define TETHER_GW_SESSCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_sesscache;

/* max 0 makes a cache that keeps nothing (every get misses). */
struct gw_sesscache *gw_sesscache_new(size_t max, uint64_t ttl_ms);
void gw_sesscache_free(struct gw_sesscache *sc);

/*
 * The body cached for (env, ref) and not older than the TTL: a malloc'd copy in *body
 * (the caller frees it), its length in *n. False when there is none.
 */
bool gw_sesscache_get(struct gw_sesscache *sc, const char *env, const char *ref, void **body,
                      size_t *n);

/* Keeps a copy of body for (env, ref), replacing any older one. */
void gw_sesscache_put(struct gw_sesscache *sc, const char *env, const char *ref,
                      const void *body, size_t n);

/* Drops what is cached for (env, ref). */
void gw_sesscache_drop(struct gw_sesscache *sc, const char *env, const char *ref);

/* Entries held, hits and misses since the start (for /healthz). */
size_t gw_sesscache_size(const struct gw_sesscache *sc);
void gw_sesscache_stats(const struct gw_sesscache *sc, uint64_t *hits, uint64_t *misses);

#endif
