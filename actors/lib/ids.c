/*
 * ids.c - cuids and secret keys (see ids.h).
 */
#include "ids.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "clock.h"

static const char ids_b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
static const char ids_b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

err_t random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return ERR_UNAVAIL;
        }
        p += got;
        n -= (size_t)got;
    }
    return OK;
}

/* Writes v in base 36, right-aligned and zero-padded (truncated on the left) to width. */
static void ids_b36_pad(unsigned long long v, char *out, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = ids_b36[v % 36];
        v /= 36;
    }
}

err_t cuid_new(char *out)
{
    static atomic_uint counter;
    unsigned char rnd[8];
    unsigned long long r = 0;
    if (random_bytes(rnd, sizeof(rnd)) != OK)
        return ERR_UNAVAIL;
    for (int i = 0; i < 8; i++)
        r = (r << 8) | rnd[i];

    out[0] = 'c';
    ids_b36_pad(clock_wall_ms(), out + 1, 8);
    ids_b36_pad(atomic_fetch_add(&counter, 1) % (36u * 36 * 36 * 36), out + 9, 4);
    ids_b36_pad((unsigned long long)getpid() % (36u * 36 * 36 * 36), out + 13, 4);
    ids_b36_pad(r % 2821109907456ULL /* 36^8 */, out + 17, 8);
    out[CUID_LEN] = '\0';
    return OK;
}

bool cuid_valid(const char *s, size_t n)
{
    if (n != CUID_LEN || s[0] != 'c')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z')))
            return false;
    return true;
}

err_t api_key_new(const char *env_short, char *out)
{
    size_t o;
    if (strcmp(env_short, "dev") && strcmp(env_short, "stg") && strcmp(env_short, "prod") &&
        strcmp(env_short, "preview"))
        return ERR_INVAL;
    o = (size_t)snprintf(out, API_KEY_MAX, "tr_%s_", env_short);
    while (o < strlen("tr__") + strlen(env_short) + API_KEY_RANDOM_LEN) {
        unsigned char b[32];
        if (random_bytes(b, sizeof(b)) != OK)
            return ERR_UNAVAIL;
        for (size_t i = 0; i < sizeof(b) && o < strlen("tr__") + strlen(env_short) +
                                                       API_KEY_RANDOM_LEN; i++)
            if (b[i] < 248) /* 248 = 4 * 62: rejecting the rest keeps the draw uniform */
                out[o++] = ids_b62[b[i] % 62];
    }
    out[o] = '\0';
    return OK;
}
