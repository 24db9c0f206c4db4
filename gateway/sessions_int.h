/*
 * sessions_int.h - the sessions API's body validation (h_sessions_validate.c),
 * as the routes of h_sessions.c use it, and the SessionItem that h_sessions.c
 * and the list (h_sessions_list.c) answer with; internal to the gateway.
 *
 * Each check follows zod's rule for its field and, on failure, writes the
 * message zod-validation-error would give into gw_verr and returns false
 * (NULL for gw_trigger_config); the caller answers 400 with gw_verr. The
 * message holds until the next failing check (the gateway's loop is one
 * thread). path is the field's name as the message shows it.
 */
#ifndef TETHER_GW_SESSIONS_INT_H
#define TETHER_GW_SESSIONS_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp.h"

/* The message of the last check that failed. */
extern char gw_verr[512];

/* o[k], when present, is a string of min-max characters. */
bool gw_opt_str(json_t *o, const char *k, size_t min, size_t max, const char *path);
/* o[k] is present and a string of min-max characters. */
bool gw_req_str(json_t *o, const char *k, size_t min, size_t max, const char *path);
/* o[k], when present and not null, is an array of at most max_items strings of at most max_len
 * characters. */
bool gw_str_array(json_t *o, const char *k, size_t max_items, size_t max_len, const char *path);
/* body's externalId, trimmed in place; a null one is kept when allow_null, else dropped. */
bool gw_external_id(json_t *body, bool allow_null);
/* SessionTriggerConfig (§4.1): a new copy with the known keys only (the caller releases it),
 * or NULL. */
json_t *gw_trigger_config(json_t *tc);
/* expiresAt (an ISO string or epoch milliseconds) into *ms; 0 when absent or null. */
bool gw_expires_at(json_t *v, uint64_t *ms);

enum gw_item_form {
    GW_ITEM_FULL,   /* a session's own answers: with triggerConfig, metadata as stored */
    GW_ITEM_LISTED, /* a list's item: no triggerConfig, metadata an object or null */
};
/* The contract's SessionItem (§4.2) of a session object m (sessref.h): currentRunId in friendly
 * form; a new object the caller owns. */
json_t *gw_session_item(struct slice m, enum gw_item_form form);

#endif
