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

bool stream_channel_valid(const char *channel)
{
    size_t n = channel ? strlen(channel) : 0;
    if (n == 0 || n > STREAM_CHANNEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = channel[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

err_t stream_topic(char *out, size_t cap, const char *env, const char *key, const char *channel,
                   const char *io)
{
    size_t el = env ? strlen(env) : 0, kl = key ? strlen(key) : 0;
    if (!el || el > STREAM_ENV_MAX || !kl || kl > STREAM_KEY_MAX || !stream_io_valid(io))
        return ERR_INVAL;
    if (channel && channel[0] && !stream_channel_valid(channel))
        return ERR_INVAL;
    int w = channel && channel[0]
                ? snprintf(out, cap, "stream.%s.ch/%s/%s.%s", env, channel, io, key)
                : snprintf(out, cap, "stream.%s.%s.%s", env, io, key);
    return w < 0 || (size_t)w >= cap ? ERR_TOOBIG : OK;
}

size_t stream_metered_size(size_t nheaders, size_t header_bytes, size_t body_n)
{
    return 8 + 2 * nheaders + header_bytes + body_n;
}
