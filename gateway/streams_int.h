/*
 * streams_int.h - what the routes of a session's channels share (internal to
 * the gateway): the call's stream state and the steps every route takes
 * before its own work (the stream's name, the row and its authorization, the
 * request's headers and query values).
 *
 * h_streams.c owns all of it but gw_s2_format (h_s2.c). The routes using it:
 * h_realtime.c (append, SSE subscribe), h_records.c (/records) and h_s2.c
 * (the S2 credentials and the S2-compatible endpoint). Each route makes the
 * state with gw_st and the call frees it (c->state_free); nothing here keeps
 * anything past the call.
 */
#ifndef TETHER_GW_STREAMS_INT_H
#define TETHER_GW_STREAMS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "feed.h"
#include "http.h"
#include "jbuf.h"
#include "stream.h"

/* What a route learned about its stream between bus calls (c->state). */
struct gw_stream_state {
    struct gw_feed_opts feed;
    char part_id[STREAM_PART_ID_MAX + 1];
    struct jbuf acc; /* /records: the answer so far */
    struct jbuf rec; /* append: the record's envelope, built before the session lookup */
    unsigned nrecs;  /* /records: records so far */
    unsigned limit;  /* S2 tail read: records to answer of those peeked (0: all) */
    uint64_t from;
    bool s2;    /* the S2 endpoint's JSON read */
    bool proto; /* the S2 append came (and is answered) as protobuf */
};

/* The call's stream state: made zeroed on first use, freed with the call. */
struct gw_stream_state *gw_st(struct gw_call *c);
/* The stream the call addresses: its environment, the row's addressing key (s may be empty:
 * then the URL value) and the URL's :io, into gw_st(c)->feed. */
void gw_stream_name(struct gw_call *c, struct slice s);
/* A request header's value (not NUL-terminated, *n bytes) or NULL; borrowed from req. */
const char *gw_header(h2o_req_t *req, const char *name, size_t *n);
/* A plain non-negative decimal of at most 19 digits; false otherwise. */
bool gw_parse_u64(const char *s, size_t n, uint64_t *out);
/* The row of a route where it is optional, then the authorization of action on it; false when
 * the call has been answered (see h_streams.c). */
bool gw_stream_row(struct gw_call *c, err_t rc, const struct envelope *env, struct slice *s,
                   const char *action, const char *not_found);
/* Whether the credential may write the URL's channel (.out: the secret key or a run token of
 * the session); false when the call has been answered (403). */
bool gw_out_writer_ok(struct gw_call *c, struct slice s);

/* h_s2.c: the S2-Format header into *f; false after answering 422 for a value S2 does not
 * know. */
bool gw_s2_format(struct gw_call *c, enum gw_rec_format *f);

/*
 * h_s2.c's steps that the S2 append sessions (s2s_stream.c) take too, which have no h2o
 * request.
 *
 * gw_s2_stream_check: the stream "sessions/<key>/<io>" named by an S2 request, allowed by a
 * token minted for exactly that stream (or the secret key): 0 with feed's env, key and io set,
 * else the status (404, 403) with S2's error code and message (static text).
 */
int gw_s2_stream_check(const struct gw_auth *a, const char *name, struct gw_feed_opts *feed,
                       const char **code, const char **message);
/* The batch's own limits: 0, or 422/413 with why (cap bytes) filled. */
struct s2_input;
int gw_s2_input_check(const struct s2_input *in, char *why, size_t cap);
/*
 * The records of a stream.append request for an S2 batch (headers and bodies as they came), the
 * value that follows msg_stream_append_open; with part_prefix, record i has the part id
 * "<part_prefix>:<i>" (stream-broker de-duplicates). ERR_NOMEM when the headers could not be
 * encoded (w's own error is the caller's to check).
 */
err_t gw_s2_put_records(struct mp_writer *w, const struct s2_input *in, const char *part_prefix);
/* The first seq, record count, tail and timestamp of a stream.append reply (the realtime append
 * reads it too); ERR_PROTO when it is malformed or names no record. */
err_t gw_s2_appended(const struct envelope *env, uint64_t *first, uint32_t *n, uint64_t *tail,
                     uint64_t *ts);

#endif
