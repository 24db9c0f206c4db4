/*
 * routes_test.c - the route table's rules, row by row: each row is well formed; no path is
 * matched by two rows of one method (the table's order must never decide); the rows that read
 * no credential are exactly the capability URLs; a row that takes a body has its cap, unless it
 * is one of the rows whose handler checks its own; and every row's path parameters decode into
 * the fields its handler reads. Adding a row that breaks one of them fails here first.
 */
#include <stdio.h>
#include <string.h>

#include "../../../gateway/http.h"
#include "t.h"

#define ANY (GW_AUTH_SECRET | GW_AUTH_JWT)
/* a TAP comment line: what failed, by name */
#define DIAG(...) (printf("# "), printf(__VA_ARGS__), printf("\n"))

/* A value each :param of the table takes in a sample path. */
static const char *sample_value(const char *name, size_t n)
{
    static const struct {
        const char *name, *value;
    } values[] = {
        {"session", "session_abc123"}, {"io", "out"},      {"channel", "tools"},
        {"run", "run_abc123"},         {"stream", "s_abc"}, {"waitpoint", "waitpoint_abc"},
        {"hash", "0123abcd"},
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        if (strlen(values[i].name) == n && memcmp(values[i].name, name, n) == 0)
            return values[i].value;
    return NULL;
}

/* The pattern with each :param replaced by its sample value; false for a name it does not know. */
static bool sample_path(const char *pattern, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = pattern; *p;) {
        if (*p == ':') {
            const char *name = ++p;
            while (*p && *p != '/')
                p++;
            const char *v = sample_value(name, (size_t)(p - name));
            if (!v)
                return false;
            int w = snprintf(out + o, cap - o, "%s", v);
            if (w < 0 || (size_t)w >= cap - o)
                return false;
            o += (size_t)w;
        } else {
            if (o + 1 >= cap)
                return false;
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return true;
}

static bool is_method(unsigned m)
{
    return m == GW_GET || m == GW_HEAD || m == GW_POST || m == GW_PUT || m == GW_PATCH ||
           m == GW_DELETE;
}

T_TEST(rows_are_well_formed)
{
    unsigned bad = 0;
    for (size_t i = 0; i < gw_nroutes; i++) {
        const struct gw_route *r = &gw_routes[i];
        bool ok = r->pattern && r->pattern[0] == '/' && r->handler && is_method(r->method) &&
                  r->body <= GW_BODY_JSON_PROTO && (r->auth & ~(unsigned)ANY) == 0 &&
                  /* GET and HEAD take no body */
                  !((r->method == GW_GET || r->method == GW_HEAD) && r->body_cap > 0);
        if (!ok) {
            DIAG("malformed row %zu: %s %s", i, gw_method_name(r->method),
                   r->pattern ? r->pattern : "(null)");
            bad++;
        }
    }
    T_EQ(bad, 0u);
    T_ASSERT(gw_nroutes > 40);
}

T_TEST(no_path_matches_two_rows_of_a_method)
{
    unsigned unknown = 0, shared = 0, missed = 0;
    for (size_t i = 0; i < gw_nroutes; i++) {
        char path[512];
        if (!sample_path(gw_routes[i].pattern, path, sizeof(path))) {
            DIAG("row %zu has a parameter this test has no value for: %s", i,
                   gw_routes[i].pattern);
            unknown++;
            continue;
        }
        unsigned hits = 0;
        for (size_t j = 0; j < gw_nroutes; j++) {
            struct gw_params p;
            memset(&p, 0, sizeof(p));
            if (gw_routes[j].method == gw_routes[i].method &&
                gw_route_match(gw_routes[j].pattern, path, strlen(path), &p)) {
                hits++;
                if (j != i) {
                    DIAG("%s %s is matched by row %zu (%s) and row %zu (%s)",
                           gw_method_name(gw_routes[i].method), path, i, gw_routes[i].pattern, j,
                           gw_routes[j].pattern);
                    shared++;
                }
            }
        }
        if (hits == 0)
            missed++;
    }
    T_EQ(unknown, 0u);
    T_EQ(shared, 0u);
    T_EQ(missed, 0u); /* each row matches its own sample */
}

/* Whether r, as "METHOD pattern", is one of list; says why not when it is not. */
static bool row_listed(const struct gw_route *r, const char *const *list, size_t n,
                       const char *why)
{
    char row[256];
    snprintf(row, sizeof(row), "%s %s", gw_method_name(r->method), r->pattern);
    for (size_t k = 0; k < n; k++)
        if (strcmp(row, list[k]) == 0)
            return true;
    DIAG("%s: %s", why, row);
    return false;
}

/* The rows that read no credential: URLs whose signature or hash is the capability. */
T_TEST(rows_without_a_credential_are_the_capability_urls)
{
    static const char *const allowed[] = {
        "PUT /api/v1/sessions/:session/snapshot",
        "GET /api/v1/sessions/:session/snapshot",
        "POST /api/v1/waitpoints/tokens/:waitpoint/callback/:hash",
    };
    unsigned open = 0, unexpected = 0;
    for (size_t i = 0; i < gw_nroutes; i++) {
        const struct gw_route *r = &gw_routes[i];
        if (r->auth != 0)
            continue;
        open++;
        if (!row_listed(r, allowed, sizeof(allowed) / sizeof(allowed[0]), "reads no credential"))
            unexpected++;
    }
    T_EQ(unexpected, 0u);
    T_EQ(open, (unsigned)(sizeof(allowed) / sizeof(allowed[0])));
}

/* A row that may take a body has a cap of its own (below TETHER_GW_MAX_BODY, which bounds every
 * body h2o buffers), but for the ones whose handler checks its own limit (the appends and the S2
 * append: the metered size) and those that read no body. */
T_TEST(bodies_have_one_limit)
{
    static const char *const own_limit[] = {
        /* read no body */
        "POST /api/v1/auth/jwt/claims",
        "PUT /api/v1/sessions/:session/snapshot-url",
        "PUT /realtime/v1/sessions/:session/:io",
        "PUT /realtime/v1/sessions/:session/channels/:channel/:io",
        /* check the metered size themselves */
        "POST /realtime/v1/sessions/:session/:io/append",
        "POST /realtime/v1/sessions/:session/channels/:channel/:io/append",
        "POST /s2/v1/streams/:stream/records",
    };
    unsigned uncapped = 0;
    for (size_t i = 0; i < gw_nroutes; i++) {
        const struct gw_route *r = &gw_routes[i];
        if (r->method == GW_GET || r->method == GW_HEAD || r->body_cap > 0)
            continue;
        if (!row_listed(r, own_limit, sizeof(own_limit) / sizeof(own_limit[0]),
                        "takes a body with no cap"))
            uncapped++;
    }
    T_EQ(uncapped, 0u);
    /* and no route's cap is above what h2o buffers at all (the default of TETHER_GW_MAX_BODY) */
    size_t largest = 0;
    for (size_t i = 0; i < gw_nroutes; i++)
        if (gw_routes[i].body_cap > largest)
            largest = gw_routes[i].body_cap;
    T_ASSERT(largest <= 2097152);
}

/* Each row's parameters land where its handler reads them. */
T_TEST(parameters_decode_into_their_fields)
{
    unsigned wrong = 0;
    for (size_t i = 0; i < gw_nroutes; i++) {
        const char *pat = gw_routes[i].pattern;
        char path[512];
        struct gw_params p;
        memset(&p, 0, sizeof(p));
        if (!sample_path(pat, path, sizeof(path)) ||
            !gw_route_match(pat, path, strlen(path), &p) || p.bad) {
            wrong++;
            continue;
        }
        bool ok = true;
        if (strstr(pat, ":session"))
            ok = ok && strcmp(p.session, "session_abc123") == 0;
        if (strstr(pat, ":stream"))
            ok = ok && strcmp(p.session, "s_abc") == 0; /* the S2 stream shares the field */
        if (strstr(pat, ":io"))
            ok = ok && strcmp(p.io, "out") == 0;
        if (strstr(pat, ":channel"))
            ok = ok && strcmp(p.channel, "tools") == 0;
        if (strstr(pat, ":run"))
            ok = ok && strcmp(p.run, "run_abc123") == 0;
        if (strstr(pat, ":waitpoint"))
            ok = ok && strcmp(p.waitpoint, "waitpoint_abc") == 0;
        if (strstr(pat, ":hash"))
            ok = ok && strcmp(p.hash, "0123abcd") == 0;
        if (!ok) {
            DIAG("parameters of %s did not land in their fields", pat);
            wrong++;
        }
    }
    T_EQ(wrong, 0u);
}

int main(void)
{
    T_RUN(rows_are_well_formed);
    T_RUN(no_path_matches_two_rows_of_a_method);
    T_RUN(rows_without_a_credential_are_the_capability_urls);
    T_RUN(bodies_have_one_limit);
    T_RUN(parameters_decode_into_their_fields);
    return T_DONE();
}
