/*
 * sesscache.c - a bounded LRU of session.get answers (see sesscache.h).
 *
 * Chained hash table over (env, ref) with a doubly linked recency list;
 * each entry is one allocation holding its key and the answer's bytes.
 */
#include "sesscache.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mem.h"

struct gw_sc_entry {
    struct gw_sc_entry *chain;      /* next in the bucket */
    struct gw_sc_entry *prev, *next; /* recency: head is the newest */
    uint64_t hash;
    uint64_t stored_mono;
    size_t env_n, ref_n, n;
    char data[]; /* env, ref, body */
};

struct gw_sesscache {
    struct gw_sc_entry **buckets;
    size_t nbuckets;
    struct gw_sc_entry *head, *tail;
    size_t size, max;
    uint64_t ttl_ms;
    uint64_t hits, misses;
};

static uint64_t gw_sc_hash(const char *env, size_t en, const char *ref, size_t rn)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < en; i++)
        h = (h ^ (unsigned char)env[i]) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull; /* no env/ref split can collide with another */
    for (size_t i = 0; i < rn; i++)
        h = (h ^ (unsigned char)ref[i]) * 1099511628211ull;
    return h;
}

struct gw_sesscache *gw_sesscache_new(size_t max, uint64_t ttl_ms)
{
    struct gw_sesscache *sc = xcalloc(1, sizeof(*sc));
    sc->max = max;
    sc->ttl_ms = ttl_ms;
    sc->nbuckets = 16;
    while (sc->nbuckets < max * 2 && sc->nbuckets < ((size_t)1 << 24))
        sc->nbuckets <<= 1;
    sc->buckets = xcalloc(sc->nbuckets, sizeof(*sc->buckets));
    return sc;
}

static void gw_sc_unlink(struct gw_sesscache *sc, struct gw_sc_entry *e)
{
    struct gw_sc_entry **pp = &sc->buckets[e->hash & (sc->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = e->chain;
    if (e->prev)
        e->prev->next = e->next;
    else
        sc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        sc->tail = e->prev;
    sc->size--;
    free(e);
}

void gw_sesscache_free(struct gw_sesscache *sc)
{
    if (!sc)
        return;
    while (sc->head)
        gw_sc_unlink(sc, sc->head);
    free(sc->buckets);
    free(sc);
}

static struct gw_sc_entry *gw_sc_find(struct gw_sesscache *sc, const char *env,
                                      const char *ref, uint64_t *hash)
{
    size_t en = strlen(env), rn = strlen(ref);
    uint64_t h = gw_sc_hash(env, en, ref, rn);
    *hash = h;
    for (struct gw_sc_entry *e = sc->buckets[h & (sc->nbuckets - 1)]; e; e = e->chain)
        if (e->hash == h && e->env_n == en && e->ref_n == rn && memcmp(e->data, env, en) == 0 &&
            memcmp(e->data + en, ref, rn) == 0)
            return e;
    return NULL;
}

bool gw_sesscache_get(struct gw_sesscache *sc, const char *env, const char *ref, void **body,
                      size_t *n)
{
    uint64_t h;
    struct gw_sc_entry *e = gw_sc_find(sc, env, ref, &h);
    if (e && clock_mono_ms() - e->stored_mono >= sc->ttl_ms) {
        gw_sc_unlink(sc, e);
        e = NULL;
    }
    if (!e) {
        sc->misses++;
        return false;
    }
    sc->hits++;
    if (e != sc->head) { /* to the front: the newest use */
        e->prev->next = e->next;
        if (e->next)
            e->next->prev = e->prev;
        else
            sc->tail = e->prev;
        e->prev = NULL;
        e->next = sc->head;
        sc->head->prev = e;
        sc->head = e;
    }
    *body = xmalloc(e->n ? e->n : 1);
    memcpy(*body, e->data + e->env_n + e->ref_n, e->n);
    *n = e->n;
    return true;
}

void gw_sesscache_put(struct gw_sesscache *sc, const char *env, const char *ref,
                      const void *body, size_t n)
{
    uint64_t h;
    if (sc->max == 0)
        return;
    struct gw_sc_entry *old = gw_sc_find(sc, env, ref, &h);
    if (old)
        gw_sc_unlink(sc, old);
    while (sc->size >= sc->max && sc->tail)
        gw_sc_unlink(sc, sc->tail);
    size_t en = strlen(env), rn = strlen(ref);
    struct gw_sc_entry *e = xmalloc(sizeof(*e) + en + rn + n);
    e->hash = h;
    e->stored_mono = clock_mono_ms();
    e->env_n = en;
    e->ref_n = rn;
    e->n = n;
    memcpy(e->data, env, en);
    memcpy(e->data + en, ref, rn);
    memcpy(e->data + en + rn, body, n);
    size_t b = h & (sc->nbuckets - 1);
    e->chain = sc->buckets[b];
    sc->buckets[b] = e;
    e->prev = NULL;
    e->next = sc->head;
    if (sc->head)
        sc->head->prev = e;
    sc->head = e;
    if (!sc->tail)
        sc->tail = e;
    sc->size++;
}

void gw_sesscache_drop(struct gw_sesscache *sc, const char *env, const char *ref)
{
    uint64_t h;
    struct gw_sc_entry *e = gw_sc_find(sc, env, ref, &h);
    if (e)
        gw_sc_unlink(sc, e);
}

size_t gw_sesscache_size(const struct gw_sesscache *sc)
{
    return sc->size;
}

void gw_sesscache_stats(const struct gw_sesscache *sc, uint64_t *hits, uint64_t *misses)
{
    *hits = sc->hits;
    *misses = sc->misses;
}
