/*
 * check.c - the run-manager's pure functions: run statuses (liveness and
 * the public names), triggerConfig.ttl, friendly ids, session-run reasons
 * and PostgreSQL array literals. No I/O; tests/unit/actors/run_manager
 * includes this file.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "rm.h"

/* §11.1: a run in one of these is dead; every other status is alive. */
static const char *const rm_final[] = {
    "CANCELED",
    "INTERRUPTED",
    "COMPLETED_SUCCESSFULLY",
    "COMPLETED_WITH_ERRORS",
    "SYSTEM_FAILURE",
    "CRASHED",
    "EXPIRED",
    "TIMED_OUT",
};

bool rm_status_is_final(const char *status)
{
    for (size_t i = 0; i < sizeof(rm_final) / sizeof(rm_final[0]); i++)
        if (strcmp(status, rm_final[i]) == 0)
            return true;
    return false;
}

/* Internal status -> the SDK's RunStatus (what runs.retrieve accepts). */
static const struct {
    const char *internal, *public;
} rm_public[] = {
    {"PENDING", "QUEUED"},
    {"DEQUEUED", "EXECUTING"},
    {"EXECUTING", "EXECUTING"},
    {"RETRYING_AFTER_FAILURE", "REATTEMPTING"},
    {"COMPLETED_SUCCESSFULLY", "COMPLETED"},
    {"COMPLETED_WITH_ERRORS", "FAILED"},
    {"CANCELED", "CANCELED"},
    {"CRASHED", "CRASHED"},
    {"SYSTEM_FAILURE", "SYSTEM_FAILURE"},
    {"EXPIRED", "EXPIRED"},
    {"TIMED_OUT", "TIMED_OUT"},
    /* statuses the schema allows but this run-manager does not enter yet */
    {"DELAYED", "DELAYED"},
    {"PENDING_VERSION", "PENDING_VERSION"},
    {"WAITING_FOR_DEPLOY", "PENDING_VERSION"},
    {"WAITING_TO_RESUME", "WAITING"},
    {"PAUSED", "WAITING"},
    {"INTERRUPTED", "CANCELED"},
};

const char *rm_status_public(const char *status)
{
    for (size_t i = 0; i < sizeof(rm_public) / sizeof(rm_public[0]); i++)
        if (strcmp(status, rm_public[i].internal) == 0)
            return rm_public[i].public;
    return status;
}

#define RM_TTL_MAX_S (366LL * 86400)

/* Digits then an optional unit, the whole of s[0..n). */
static bool rm_ttl_text(const char *s, size_t n, long long *seconds)
{
    long long v = 0, mul = 1;
    size_t i = 0;
    if (n > 0) {
        switch (s[n - 1]) {
        case 's':
            n--;
            break;
        case 'm':
            mul = 60;
            n--;
            break;
        case 'h':
            mul = 3600;
            n--;
            break;
        case 'd':
            mul = 86400;
            n--;
            break;
        default:
            break;
        }
    }
    if (n == 0 || n > 12)
        return false;
    for (; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    v *= mul;
    if (v <= 0 || v > RM_TTL_MAX_S)
        return false;
    *seconds = v;
    return true;
}

bool rm_ttl_parse(const char *json, long long *seconds)
{
    size_t n = json ? strlen(json) : 0;
    if (n >= 2 && json[0] == '"' && json[n - 1] == '"')
        return rm_ttl_text(json + 1, n - 2, seconds); /* a JSON string: no escapes can be valid */
    /* a JSON number: only a plain non-negative integer counts */
    return rm_ttl_text(json, n, seconds) && isdigit((unsigned char)json[n - 1]);
}

bool rm_run_ref_parse(struct slice s, char *id)
{
    if (!s.p || s.n != 4 + CUID_LEN || memcmp(s.p, "run_", 4) != 0 || !cuid_valid(s.p + 4, s.n - 4))
        return false;
    memcpy(id, s.p + 4, s.n - 4);
    id[s.n - 4] = '\0';
    return true;
}

bool rm_reason_valid(const char *reason)
{
    return strcmp(reason, "initial") == 0 || strcmp(reason, "continuation") == 0 ||
           strcmp(reason, "upgrade") == 0 || strcmp(reason, "manual") == 0;
}

bool rm_pg_array(const struct slice *items, unsigned n, char *out, size_t cap)
{
    size_t o = 0;
#define RM_PUT(ch)                                                                                 \
    do {                                                                                           \
        if (o + 1 >= cap)                                                                          \
            return false;                                                                          \
        out[o++] = (ch);                                                                           \
    } while (0)
    RM_PUT('{');
    for (unsigned i = 0; i < n; i++) {
        if (i)
            RM_PUT(',');
        RM_PUT('"');
        for (size_t k = 0; k < items[i].n; k++) {
            char ch = items[i].p[k];
            if (ch == '\0')
                return false;
            if (ch == '"' || ch == '\\')
                RM_PUT('\\');
            RM_PUT(ch);
        }
        RM_PUT('"');
    }
    RM_PUT('}');
#undef RM_PUT
    out[o] = '\0';
    return true;
}
