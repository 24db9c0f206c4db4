/*
 * fnv.h - FNV-1a, 64 bits: the one hash of the tree for keys that are not adversarial (request
 * bodies of one sender, statement texts, metric layouts, environment ids).
 */
#ifndef TETHER_PROTO_FNV_H
#define TETHER_PROTO_FNV_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A_SEED UINT64_C(14695981039346656037)

/* h with n more bytes of p hashed in; start from FNV1A_SEED. */
static inline uint64_t fnv1a_add(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * UINT64_C(1099511628211);
    return h;
}

static inline uint64_t fnv1a(const void *p, size_t n)
{
    return fnv1a_add(FNV1A_SEED, p, n);
}

#endif
