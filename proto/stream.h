/*
 * stream.h - how a session channel's record stream is named, and its limits.
 *
 * Shared by the stream-broker (which owns the Redis keys and publishes on
 * the topic) and the gateway (which subscribes to the topic of every stream
 * one of its clients reads). Every name is a pure function of (environment
 * id, addressing key, channel, io), so all gateway and broker instances agree
 * on it. The channel is empty for the session's own .in/.out pair, else the
 * name of one of its named side channels, which have a pair each.
 */
#ifndef TETHER_PROTO_STREAM_H
#define TETHER_PROTO_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* A record's metered size (8 + 2 per header + header bytes + body) is capped here. */
#define STREAM_RECORD_MAX (1024u * 1024u)
/* Records per stream.append, and per stream.read. */
#define STREAM_BATCH_MAX 1000u
/* Headers per record, and the length of one part id. */
#define STREAM_HEADERS_MAX 64u
#define STREAM_PART_ID_MAX 256u
/* How long an X-Part-Id is remembered for de-duplication. */
#define STREAM_PART_TTL_S 300u
/* Longest close reason a session's seal keeps. */
#define STREAM_REASON_MAX 256u
/* Longest environment id and addressing key a stream name accepts. */
#define STREAM_ENV_MAX 64u
#define STREAM_KEY_MAX 1024u
/* Longest name of a named side channel. */
#define STREAM_CHANNEL_MAX 128u
/*
 * Follow leases (stream.follow): a stream's records are published as stream.record events only
 * while some process holds an unexpired lease on it. Holders renew every STREAM_FOLLOW_RENEW_MS
 * for STREAM_FOLLOW_TTL_MS; one request names at most STREAM_FOLLOW_BATCH_MAX streams.
 */
#define STREAM_FOLLOW_TTL_MS 30000u
#define STREAM_FOLLOW_RENEW_MS 10000u
#define STREAM_FOLLOW_BATCH_MAX 256u
#define STREAM_FOLLOW_HOLDER_MAX 96u
/* Room for any name below. */
#define STREAM_NAME_MAX (STREAM_ENV_MAX + STREAM_KEY_MAX + STREAM_CHANNEL_MAX + 64u)

/* "in" or "out". */
bool stream_io_valid(const char *io);

/* A side channel's name: 1-128 of [A-Za-z0-9._-] (the SDK's rule). */
bool stream_channel_valid(const char *channel);

/*
 * The event topic of a stream: "stream.<env>.<io>.<key>" for the session's own pair,
 * "stream.<env>.ch/<channel>/<io>.<key>" for a side channel's (the key last: it may hold dots;
 * a channel holds no "/", and no own topic begins "ch/", so none is another's prefix). channel
 * NULL or "": the session's own. ERR_INVAL when env or key is empty, too long or holds a NUL,
 * io is not valid or the channel is not.
 */
err_t stream_topic(char *out, size_t cap, const char *env, const char *key, const char *channel,
                   const char *io);

/* The metered size of a record (what STREAM_RECORD_MAX bounds). */
size_t stream_metered_size(size_t nheaders, size_t header_bytes, size_t body_n);

#endif
