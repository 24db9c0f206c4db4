/*
 * stream.c - stream names and sizes (see stream.h).
 */
#include "stream.h"

#include <stdio.h>
#include <string.h>

bool stream_io_valid(const char *io)
{
    return io && (strcmp(io, "in") == 0 || strcmp(io, "out") == 0);
}

err_t stream_topic(char *out, size_t cap, const char *env, const char *key, const char *io)
{
    size_t el = env ? strlen(env) : 0, kl = key ? strlen(key) : 0;
    if (!el || el > STREAM_ENV_MAX || !kl || kl > STREAM_KEY_MAX || !stream_io_valid(io))
        return ERR_INVAL;
    int w = snprintf(out, cap, "stream.%s.%s.%s", env, io, key);
    return w < 0 || (size_t)w >= cap ? ERR_TOOBIG : OK;
}

size_t stream_metered_size(size_t nheaders, size_t header_bytes, size_t body_n)
{
    return 8 + 2 * nheaders + header_bytes + body_n;
}
