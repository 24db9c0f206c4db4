/*
 * scope.c - authorization of JWT callers by scope (the contract's §3.3).
 *
 * A scope is "action:type[:id]" and ids may themselves contain ':', so
 * nothing here splits scopes: every check is an exact string comparison of
 * a scope the token holds with one built from the request.
 */
#include <stdio.h>
#include <string.h>

#include "auth.h"

static bool gw_has_scope(const struct gw_auth *a, const char *scope)
{
    for (unsigned i = 0; i < a->nscopes; i++)
        if (strcmp(a->scopes[i], scope) == 0)
            return true;
    return false;
}

static bool gw_has_scope3(const struct gw_auth *a, const char *action, const char *type,
                          const char *id)
{
    char want[GW_PARAM_MAX * 2 + 64];
    if (id)
        snprintf(want, sizeof(want), "%s:%s:%s", action, type, id);
    else
        snprintf(want, sizeof(want), "%s:%s", action, type);
    return gw_has_scope(a, want);
}

bool gw_authorize(const struct gw_auth *a, const char *action, const struct gw_resource *res,
                  unsigned nres, const char *const *super, unsigned nsuper, char *reason,
                  size_t cap)
{
    if (a->kind == GW_AUTH_SECRET)
        return true;
    for (unsigned i = 0; i < nsuper; i++)
        if (gw_has_scope(a, super[i]))
            return true;
    for (unsigned r = 0; r < nres; r++) {
        for (unsigned k = 0; k < res[r].nids; k++) {
            /* an absent value is checked as the text "undefined", as upstream does */
            const char *id = res[r].ids[k] ? res[r].ids[k] : "undefined";
            if (gw_has_scope3(a, action, res[r].type, id) ||
                gw_has_scope3(a, action, res[r].type, NULL))
                return true;
        }
    }
    if (reason && cap) {
        size_t o = (size_t)snprintf(reason, cap,
                                    "Public Access Token is missing required permissions. Token "
                                    "has the following permissions: ");
        for (unsigned i = 0; i < a->nscopes && o < cap; i++)
            o += (size_t)snprintf(reason + o, cap - o, "%s'%s'", i ? ", " : "", a->scopes[i]);
        if (o < cap)
            snprintf(reason + o, cap - o,
                     ". See https://trigger.dev/docs/frontend/overview#authentication for more "
                     "information.");
    }
    return false;
}
