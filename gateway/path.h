/*
 * path.h - a URL path as the gateway reads it: the raw path (as the client
 * sent it, before the query) matched against route patterns, each :param
 * percent-decoded exactly once, and the rule an id must follow to survive
 * that round trip (a session's externalId, the :session and :run values).
 *
 * Pure functions of their arguments (no loop, no bus); any thread may call them.
 */
#ifndef TETHER_GW_PATH_H
#define TETHER_GW_PATH_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Longest externalId, in bytes (the contract's 1-256, counted on the trimmed UTF-8). */
#define GW_EXTERNAL_ID_MAX 256

/*
 * Percent-decodes s[0..n) once into out (cap bytes, NUL-terminated). Every %XX becomes one
 * byte, anything else is copied ('+' stays '+': this is a path, not a query). ERR_INVAL on a
 * bad escape ('%' without two hex digits) or a NUL (%00), ERR_TOOBIG when out is too small;
 * out is then "".
 */
err_t gw_pct_decode(const char *s, size_t n, char *out, size_t cap);

/*
 * Whether the id s[0..n) (decoded bytes) comes back unchanged from a URL segment whatever sits
 * between the SDK's encodeURIComponent and this gateway: NULL when it does, else the rule it
 * breaks, worded to follow the field's name ("must not contain \"/\""). Refused: empty, not
 * UTF-8, control characters (U+0000-U+001F, U+007F-U+009F), '/' and '%' (proxies decode or
 * refuse %2F, and a '%' invites a second decoding), and "." or ".." as the whole id (URL
 * parsers remove such segments). Length is the caller's rule.
 */
const char *gw_id_problem(const char *s, size_t n);

#endif
