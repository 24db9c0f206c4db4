/*
 * sessref.h - a session as the gateway's handlers see it: the session object
 * of a session-manager reply (proto/msg.c), looked up by the URL's
 * :session value, and authorized on its ids.
 *
 * Shared by the sessions API (h_sessions.c) and the routes of a session's
 * channels (h_streams.c and its routes). Slices point into a reply or a copy
 * the caller owns.
 */
#ifndef TETHER_GW_SESSREF_H
#define TETHER_GW_SESSREF_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "http.h"
#include "mp.h"

/* A string field of a session object into out; false when absent (out is then ""). */
bool gw_sess_str(struct slice m, const char *k, char *out, size_t cap);
/* An unsigned field; 0 when absent. */
uint64_t gw_sess_u64(struct slice m, const char *k);
/* The session object inside a reply {session: {...}}. */
bool gw_reply_session(const struct envelope *env, struct slice *out);
/*
 * The row of a session.* reply for c: true with *s set; false once c is answered: 404
 * {"error": not_found} (with flags) when there is no such session, else the failure of `what`
 * (the request's name, for the log), a reply without a row being ERR_PROTO.
 */
bool gw_session_reply(struct gw_call *c, err_t rc, const struct envelope *env, struct slice *s,
                      const char *not_found, unsigned flags, const char *what);
/* session.get of the URL's :session value (friendly id or externalId) in the caller's environment. */
err_t gw_session_lookup(struct gw_call *c, bus_reply_fn cb);
/*
 * The same from the process's session cache when it holds a fresh copy (sesscache.h): then
 * cb runs before this returns, and c may be gone after it; else as gw_session_lookup, and
 * the answer is cached on its way back. For routes that read the row's ids and closed or
 * expired state only (appends, subscribes, /records): a close is enforced by the seal.
 */
err_t gw_session_lookup_cached(struct gw_call *c, bus_reply_fn cb);
/*
 * Authorizes `action` on the row's ids (friendly and external) plus, optionally, the URL
 * value; on refusal answers the contract's 403 and returns false. super lists up to three
 * super-scopes; a NULL entry ends it early ({NULL}: none counts).
 */
bool gw_session_authorize(struct gw_call *c, struct slice s, const char *action,
                          const char *const *super, bool with_url);
/*
 * run.ensure for the session object s (its internal id) in the caller's environment: the
 * session's live run, triggered first when it has none. cb gets c as its argument.
 */
err_t gw_run_ensure(struct gw_call *c, struct slice s, const char *reason, bus_reply_fn cb);

#endif
