/*
 * h_streams.c - what every route of a session's channels does before its
 * own work (streams_int.h): the call's stream state, the stream's name, the
 * row where the contract makes it optional and its authorization, and the
 * request's headers and query values. The routes are h_realtime.c (append,
 * SSE), h_records.c (/records) and h_s2.c (S2 credentials and endpoint).
 *
 * Every route resolves the URL's session first (session.get). Where the
 * contract makes the row optional (subscribe, records), a URL value that is
 * not a friendly id and has no row addresses the stream of that externalId
 * (it may be empty). Streams are named by (environment, addressing key, io)
 * and served by the stream-broker (proto/stream.h); SSE responses are feeds
 * (feed.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "gw.h"
#include "mem.h"
#include "sessref.h"
#include "streams_int.h"

static void gw_st_free(void *p)
{
    struct gw_stream_state *st = p;
    jbuf_free(&st->acc);
    jbuf_free(&st->rec);
    free(st);
}

struct gw_stream_state *gw_st(struct gw_call *c)
{
    if (!c->state) {
        c->state = xcalloc(1, sizeof(struct gw_stream_state));
        c->state_free = gw_st_free;
    }
    return c->state;
}

static bool gw_is_friendly_session(const char *v)
{
    return strncmp(v, "session_", 8) == 0;
}

/* The addressing key: the row's externalId, else its friendly id; without a row, the URL value. */
static void gw_addressing_key(struct gw_call *c, struct slice s, char *out, size_t cap)
{
    if (s.n && gw_sess_str(s, "external_id", out, cap) && out[0])
        return;
    if (s.n && gw_sess_str(s, "friendly_id", out, cap) && out[0])
        return;
    snprintf(out, cap, "%s", c->params.session);
}

void gw_stream_name(struct gw_call *c, struct slice s)
{
    struct gw_stream_state *st = gw_st(c);
    snprintf(st->feed.env, sizeof(st->feed.env), "%s", c->auth.env.id);
    gw_addressing_key(c, s, st->feed.key, sizeof(st->feed.key));
    snprintf(st->feed.io, sizeof(st->feed.io), "%s", c->params.io);
    /* a route under .../channels/:channel names a side channel's pair (validated by then) */
    snprintf(st->feed.channel, sizeof(st->feed.channel), "%s", c->params.channel);
}

const char *gw_header(h2o_req_t *req, const char *name, size_t *n)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    *n = req->headers.entries[i].value.len;
    return req->headers.entries[i].value.base;
}

/* A plain non-negative decimal (what the contract's ^\d+$ allows); false otherwise. */
bool gw_parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/*
 * The row of a route where the contract makes it optional (subscribe, records, PUT), then the
 * authorization of action on it: a friendly id without a row is 404 with not_found; an
 * externalId without one addresses its own (maybe empty) stream and leaves *s empty. False
 * when the call has been answered.
 */
bool gw_stream_row(struct gw_call *c, err_t rc, const struct envelope *env, struct slice *s,
                   const char *action, const char *not_found)
{
    static const char *const rsuper[] = {"read:sessions", "read:all", "admin"};
    static const char *const wsuper[] = {"write:sessions", "write:all", "admin"};
    *s = SLICE_NULL;
    if (rc == ERR_NOTFOUND && gw_is_friendly_session(c->params.session)) {
        gw_respond_error(c, 404, not_found, GW_NO_RETRY);
        return false;
    }
    if (rc != OK && rc != ERR_NOTFOUND) {
        gw_respond_err(c, rc, "session.get");
        return false;
    }
    if (rc == OK && !gw_reply_session(env, s)) {
        gw_respond_err(c, ERR_PROTO, "session.get");
        return false;
    }
    return gw_session_authorize(c, *s, action, action[0] == 'r' ? rsuper : wsuper, true);
}

/*
 * `.out` is the agent's channel: besides the secret key only a run token
 * (which carries write:runs:<id>) of this very session may write it; a session
 * token a browser holds may not.
 */
bool gw_out_writer_ok(struct gw_call *c, struct slice s)
{
    static const char *const none[] = {NULL};
    bool run_token = false;
    if (strcmp(c->params.io, "out") != 0 || c->auth.kind == GW_AUTH_SECRET)
        return true;
    for (unsigned i = 0; i < c->auth.nscopes; i++)
        if (strncmp(c->auth.scopes[i], "write:runs:", 11) == 0)
            run_token = true;
    if (!run_token) {
        gw_respond_forbidden(c, "writing a session's .out channel needs the secret key or a run "
                                "token of the session");
        return false;
    }
    return gw_session_authorize(c, s, "write", none, true);
}
