/*
 * h_sessions_validate.c - the sessions API's body validation (sessions_int.h):
 * the contract's schemas checked with zod's rules and worded as
 * zod-validation-error words them, for the routes of h_sessions.c. Unknown
 * keys are dropped, as zod does.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "path.h"
#include "sessions_int.h"

char gw_verr[512];

static bool gw_bad(const char *path, const char *what)
{
    snprintf(gw_verr, sizeof(gw_verr), "Validation error: %s at \"%s\"", what, path);
    return false;
}

bool gw_opt_str(json_t *o, const char *k, size_t min, size_t max, const char *path)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return true;
    if (!json_is_string(v))
        return gw_bad(path, "Expected string");
    size_t n = json_string_length(v);
    if (n < min)
        return gw_bad(path, "String must contain at least 1 character(s)");
    if (n > max) {
        char m[96];
        snprintf(m, sizeof(m), "String must contain at most %zu character(s)", max);
        return gw_bad(path, m);
    }
    return true;
}

bool gw_req_str(json_t *o, const char *k, size_t min, size_t max, const char *path)
{
    if (!json_object_get(o, k))
        return gw_bad(path, "Required");
    return gw_opt_str(o, k, min, max, path);
}

static bool gw_opt_int(json_t *o, const char *k, long long min, long long max, const char *path)
{
    json_t *v = json_object_get(o, k);
    long long n;
    if (!v)
        return true;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_real(v)) {
        /* within long long's range the cast tells a whole number; beyond it every double is
         * whole (and out of every range here), and the cast would be undefined (1e300) */
        double d = json_real_value(v);
        bool in_ll = d >= -9223372036854775808.0 && d < 9223372036854775808.0;
        if (in_ll && d != (double)(long long)d)
            return gw_bad(path, "Expected integer, received float");
        n = in_ll ? (long long)d : d < 0 ? LLONG_MIN : LLONG_MAX;
    } else {
        return gw_bad(path, "Expected number");
    }
    if (n < min || n > max) {
        char m[96];
        snprintf(m, sizeof(m), "Number must be between %lld and %lld", min, max);
        return gw_bad(path, m);
    }
    return true;
}

bool gw_str_array(json_t *o, const char *k, size_t max_items, size_t max_len, const char *path)
{
    json_t *v = json_object_get(o, k);
    size_t i;
    json_t *e;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_array(v))
        return gw_bad(path, "Expected array");
    if (json_array_size(v) > max_items) {
        char m[96];
        snprintf(m, sizeof(m), "Array must contain at most %zu element(s)", max_items);
        return gw_bad(path, m);
    }
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e))
            return gw_bad(path, "Expected string");
        if (json_string_length(e) > max_len)
            return gw_bad(path, "String must contain at most 128 character(s)");
    }
    return true;
}

/* Trims an externalId in place in the body; checks its rules. */
bool gw_external_id(json_t *body, bool allow_null)
{
    json_t *v = json_object_get(body, "externalId");
    if (!v)
        return true;
    if (json_is_null(v)) {
        if (allow_null)
            return true;
        json_object_del(body, "externalId");
        return true;
    }
    if (!json_is_string(v))
        return gw_bad("externalId", "Expected string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n < 1 || n > GW_EXTERNAL_ID_MAX)
        return gw_bad("externalId", "String must contain between 1 and 256 character(s)");
    if (n >= 8 && strncmp(s, "session_", 8) == 0)
        return gw_bad("externalId", "externalId must not start with \"session_\"");
    /* an id the URLs of every route can carry back (path.h): a row no URL reaches is useless */
    const char *why = gw_id_problem(s, n);
    if (why) {
        char m[96];
        snprintf(m, sizeof(m), "externalId %s", why);
        return gw_bad("externalId", m);
    }
    json_object_set_new(body, "externalId", json_stringn(s, n));
    return true;
}

static const char *const gw_machines[] = {"micro",     "small-1x", "small-2x", "medium-1x",
                                          "medium-2x", "large-1x", "large-2x"};

/* SessionTriggerConfig (§4.1, the c4.8.3 field set); returns the stripped copy or NULL. */
json_t *gw_trigger_config(json_t *tc)
{
    static const char *const known[] = {"basePayload", "machine",        "queue",
                                        "tags",        "maxAttempts",    "idleTimeoutInSeconds",
                                        "maxDuration", "lockToVersion",  "region",
                                        "concurrency", "concurrencyKey", "externalDeploymentId",
                                        "ttl"};
    if (!tc)
        return gw_bad("triggerConfig", "Required"), NULL;
    if (!json_is_object(tc))
        return gw_bad("triggerConfig", "Expected object"), NULL;
    json_t *base = json_object_get(tc, "basePayload");
    if (!base)
        return gw_bad("triggerConfig.basePayload", "Required"), NULL;
    if (!json_is_object(base))
        return gw_bad("triggerConfig.basePayload", "Expected object"), NULL;
    json_t *m = json_object_get(tc, "machine");
    if (m) {
        bool ok = false;
        for (unsigned i = 0; json_is_string(m) && i < 7; i++)
            ok |= strcmp(json_string_value(m), gw_machines[i]) == 0;
        if (!ok)
            return gw_bad("triggerConfig.machine", "Invalid enum value"), NULL;
    }
    if (!gw_opt_str(tc, "queue", 0, 128, "triggerConfig.queue") ||
        !gw_str_array(tc, "tags", 10, 128, "triggerConfig.tags") ||
        !gw_opt_int(tc, "maxAttempts", 1, 10, "triggerConfig.maxAttempts") ||
        !gw_opt_int(tc, "idleTimeoutInSeconds", 1, 3600, "triggerConfig.idleTimeoutInSeconds") ||
        !gw_opt_int(tc, "maxDuration", 1, 31536000, "triggerConfig.maxDuration") ||
        !gw_opt_str(tc, "lockToVersion", 0, 256, "triggerConfig.lockToVersion") ||
        !gw_opt_str(tc, "region", 0, 256, "triggerConfig.region"))
        return NULL;
    json_t *cc = json_object_get(tc, "concurrency");
    if (cc) {
        size_t i;
        json_t *e;
        if (!json_is_array(cc) || json_array_size(cc) > 2)
            return gw_bad("triggerConfig.concurrency", "Expected at most 2 names"), NULL;
        json_array_foreach(cc, i, e)
        {
            const char *s = json_is_string(e) ? json_string_value(e) : "";
            size_t n = strlen(s);
            bool ok = n >= 1 && n <= 122;
            for (size_t k = 0; ok && k < n; k++)
                ok = isalnum((unsigned char)s[k]) || s[k] == '_' || s[k] == '-';
            if (!ok)
                return gw_bad("triggerConfig.concurrency", "Invalid name"), NULL;
        }
    }
    json_t *ck = json_object_get(tc, "concurrencyKey");
    if (ck && !json_is_string(ck) && !json_is_number(ck))
        return gw_bad("triggerConfig.concurrencyKey", "Expected string or number"), NULL;
    json_t *ed = json_object_get(tc, "externalDeploymentId");
    if (ed && !json_is_null(ed) && (!json_is_string(ed) || json_string_length(ed) > 128))
        return gw_bad("triggerConfig.externalDeploymentId", "Expected string"), NULL;
    json_t *ttl = json_object_get(tc, "ttl");
    if (ttl && !json_is_string(ttl) && !(json_is_integer(ttl) && json_integer_value(ttl) >= 0))
        return gw_bad("triggerConfig.ttl", "Expected string or non-negative integer"), NULL;

    /* keep the known keys only; normalise concurrencyKey and externalDeploymentId */
    json_t *out = json_object();
    for (unsigned i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        json_t *v = json_object_get(tc, known[i]);
        if (v)
            json_object_set(out, known[i], v);
    }
    if (ck && json_is_number(ck)) {
        char buf[64];
        if (json_is_integer(ck))
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(ck));
        else
            snprintf(buf, sizeof(buf), "%.17g", json_real_value(ck));
        json_object_set_new(out, "concurrencyKey", json_string(buf));
    }
    if (ed && (json_is_null(ed) || json_string_length(ed) == 0))
        json_object_del(out, "externalDeploymentId");
    return out;
}

/* expiresAt: anything JS Date coerces - an ISO string or epoch milliseconds. */
bool gw_expires_at(json_t *v, uint64_t *ms)
{
    *ms = 0;
    if (!v || json_is_null(v))
        return true;
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if (d < 0 || d > 8.64e15)
            return gw_bad("expiresAt", "Invalid date");
        *ms = (uint64_t)d;
        return true;
    }
    if (!json_is_string(v))
        return gw_bad("expiresAt", "Invalid date");
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *s = json_string_value(v);
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        rest = strptime(s, "%Y-%m-%d", &tm);
    if (!rest)
        return gw_bad("expiresAt", "Invalid date");
    unsigned frac = 0;
    if (*rest == '.') {
        unsigned digits = 0;
        rest++;
        while (isdigit((unsigned char)*rest)) {
            if (digits < 3)
                frac = frac * 10 + (unsigned)(*rest - '0');
            digits++;
            rest++;
        }
        while (digits < 3)
            frac *= 10, digits++;
    }
    long off = 0;
    if (*rest == '+' || *rest == '-') {
        int hh = 0, mm = 0;
        if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) < 1)
            return gw_bad("expiresAt", "Invalid date");
        off = (hh * 3600L + mm * 60L) * (*rest == '-' ? -1 : 1);
    } else if (*rest != 'Z' && *rest != '\0') {
        return gw_bad("expiresAt", "Invalid date");
    }
    time_t t = timegm(&tm) - off;
    if (t < 0)
        return gw_bad("expiresAt", "Invalid date");
    *ms = (uint64_t)t * 1000 + frac;
    return true;
}
