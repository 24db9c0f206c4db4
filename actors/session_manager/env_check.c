/*
 * env_check.c - pure checks on environment input: type names, slugs,
 * branch names, the shape of a secret key, and a constant-time comparison.
 * No I/O, no allocation; unit-tested on its own.
 */
#include <string.h>

#include "sm.h"

static const struct {
    const char *short_name, *long_name;
} sm_env_types[] = {
    {"dev", "DEVELOPMENT"},
    {"stg", "STAGING"},
    {"prod", "PRODUCTION"},
    {"preview", "PREVIEW"},
};

#define SM_NTYPES (sizeof(sm_env_types) / sizeof(sm_env_types[0]))

const char *sm_env_type_long(const char *short_name)
{
    for (size_t i = 0; i < SM_NTYPES; i++)
        if (strcmp(short_name, sm_env_types[i].short_name) == 0)
            return sm_env_types[i].long_name;
    return NULL;
}

const char *sm_env_type_short(const char *long_name)
{
    for (size_t i = 0; i < SM_NTYPES; i++)
        if (strcmp(long_name, sm_env_types[i].long_name) == 0)
            return sm_env_types[i].short_name;
    return NULL;
}

static bool sm_is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* 1-64 characters, each alphanumeric or in extra. */
static bool sm_name_valid(const char *s, size_t n, const char *extra)
{
    if (!s || n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!sm_is_alnum(s[i]) && (s[i] == '\0' || !strchr(extra, s[i])))
            return false;
    return true;
}

bool sm_slug_valid(const char *s, size_t n)
{
    return sm_name_valid(s, n, "._-");
}

bool sm_branch_valid(const char *s, size_t n)
{
    return sm_name_valid(s, n, "._/-");
}

bool sm_key_shape_ok(const char *s, size_t n)
{
    if (!s || n <= 3 || n >= API_KEY_MAX || memcmp(s, "tr_", 3) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!sm_is_alnum(s[i]) && s[i] != '_')
            return false;
    return true;
}

bool sm_ct_equal(const char *a, size_t an, const char *b, size_t bn)
{
    /* the length is not secret (every key of a type has the same one); the bytes are */
    if (an != bn)
        return false;
    volatile unsigned char acc = 0;
    for (size_t i = 0; i < an; i++)
        acc |= (unsigned char)(a[i] ^ b[i]);
    return acc == 0;
}
