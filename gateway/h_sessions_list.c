/*
 * h_sessions_list.c - GET /api/v1/sessions (the contract's §5.2): the sessions list.
 *
 * The query string is validated here (400 "Query Error" with zod-shaped
 * details), comma-separated lists are split (the SDK joins arrays with
 * commas), and session.list goes to the clickhouse-replicator, which reads
 * ClickHouse and merges the rows PostgreSQL changed within the replication
 * lag (docs/clickhouse-replicator.md#the-list). Items are rendered without
 * triggerConfig, with currentRunId in friendly form.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "mp.h"
#include "msg.h"
#include "msg_list.h"
#include "msg_raw.h"
#include "sessions_int.h"
#include "sessref.h"

#define GW_LIST_VALMAX 1024
#define GW_LIST_MAXVALS 32

/* The value of the query parameter name (its key and value percent-decoded), or false. */
static bool gw_list_param(h2o_req_t *req, const char *name, char *out, size_t cap)
{
    if (req->query_at == SIZE_MAX)
        return false;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(e - q));
        const char *ke = eq ? eq : e;
        char key[64];
        size_t kn = 0;
        bool bad = false;
        for (const char *k = q; k < ke; k++) {
            char ch = *k;
            if (ch == '%' && ke - k >= 3 && isxdigit((unsigned char)k[1]) &&
                isxdigit((unsigned char)k[2])) {
                char hex[3] = {k[1], k[2], 0};
                ch = (char)strtol(hex, NULL, 16);
                k += 2;
            } else if (ch == '+') {
                ch = ' ';
            }
            if (kn + 1 >= sizeof(key)) {
                bad = true;
                break;
            }
            key[kn++] = ch;
        }
        key[kn] = '\0';
        if (!bad && strcmp(key, name) == 0) {
            size_t o = 0;
            const char *v = eq ? eq + 1 : e;
            for (; v < e; v++) {
                char ch = *v;
                if (ch == '%' && e - v >= 3 && isxdigit((unsigned char)v[1]) &&
                    isxdigit((unsigned char)v[2])) {
                    char hex[3] = {v[1], v[2], 0};
                    ch = (char)strtol(hex, NULL, 16);
                    v += 2;
                } else if (ch == '+') {
                    ch = ' ';
                }
                if (ch == '\0' || o + 1 >= cap)
                    return false; /* unusable: treated as absent by nobody - see callers */
                out[o++] = ch;
            }
            out[o] = '\0';
            return true;
        }
        q = e + 1;
    }
    return false;
}

static json_t *gw_list_issue(const char *code, const char *message, const char *p0, const char *p1,
                             const char *p2)
{
    json_t *path = json_array();
    json_array_append_new(path, json_string(p0));
    if (p1)
        json_array_append_new(path, json_string(p1));
    if (p2)
        json_array_append_new(path, json_string(p2));
    return json_pack("{s:s,s:s,s:o}", "code", code, "message", message, "path", path);
}

static void gw_list_query_error(struct gw_call *c, json_t *issue)
{
    json_t *details = json_array();
    json_array_append_new(details, issue);
    gw_respond_json(c, 400, json_pack("{s:s,s:o}", "error", "Query Error", "details", details),
                    GW_NO_RETRY);
}

/* Splits v on commas (empty parts dropped) into parts (at most max); returns how many. */
static unsigned gw_list_split(char *v, char **parts, unsigned max)
{
    unsigned n = 0;
    for (char *s = v; s && *s && n < max;) {
        char *comma = strchr(s, ',');
        if (comma)
            *comma = '\0';
        if (*s)
            parts[n++] = s;
        s = comma ? comma + 1 : NULL;
    }
    return n;
}

/* parse-duration's common units: "1d", "2h", "30m", "1h30m", "1.5h", "500ms", "1w", "1y". */
static bool gw_list_duration(const char *s, uint64_t *ms)
{
    double total = 0;
    bool any = false;
    while (*s) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        char *e;
        double v = strtod(s, &e);
        if (e == s || v < 0)
            return false;
        s = e;
        while (*s == ' ')
            s++;
        const char *u = s;
        while (*s && isalpha((unsigned char)*s))
            s++;
        size_t ul = (size_t)(s - u);
        double f;
#define GW_U(str) (ul == strlen(str) && strncmp(u, str, ul) == 0)
        if (GW_U("ms"))
            f = 1;
        else if (ul == 0 || GW_U("s") || GW_U("sec") || GW_U("second") || GW_U("seconds"))
            f = 1000;
        else if (GW_U("m") || GW_U("min") || GW_U("minute") || GW_U("minutes"))
            f = 60e3;
        else if (GW_U("h") || GW_U("hr") || GW_U("hour") || GW_U("hours"))
            f = 3600e3;
        else if (GW_U("d") || GW_U("day") || GW_U("days"))
            f = 86400e3;
        else if (GW_U("w") || GW_U("wk") || GW_U("week") || GW_U("weeks"))
            f = 7 * 86400e3;
        else if (GW_U("y") || GW_U("yr") || GW_U("year") || GW_U("years"))
            f = 365.25 * 86400e3;
        else
            return false;
#undef GW_U
        total += v * f;
        any = true;
    }
    if (!any || !(total <= 1e15)) /* NaN too: strtod reads "nan", and no comparison holds */
        return false;
    *ms = (uint64_t)total;
    return true;
}

/* A cursor: the internal cuid; a friendly id (session_...) is accepted for it too. */
static bool gw_list_cursor(const char *v, char *out, size_t cap)
{
    if (strncmp(v, "session_", 8) == 0)
        v += 8;
    size_t n = strlen(v);
    if (n == 0 || n >= cap)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]))
            return false;
    memcpy(out, v, n + 1);
    return true;
}

static void gw_list_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_session_list_reply r;
    struct mp_reader v;
    uint32_t n = 0;
    if (rc != OK || !env ||
        msg_decode(&msg_session_list_reply_form, env->body.p, env->body.n, &r) != OK ||
        msg_raw_array(r.sessions, &v, &n) != OK) {
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, "session.list");
        return;
    }
    json_t *data = json_array();
    for (uint32_t i = 0; i < n; i++) {
        struct slice s;
        if (mp_skip(&v, &s) != OK) {
            json_decref(data);
            gw_respond_err(c, ERR_PROTO, "session.list");
            return;
        }
        json_array_append_new(data, gw_session_item(s, GW_ITEM_LISTED));
    }
    json_t *pag = json_object();
    if (r.next.n > 0 && r.next.n < 128)
        json_object_set_new(pag, "next", json_stringn(r.next.p, r.next.n));
    if (r.previous.n > 0 && r.previous.n < 128)
        json_object_set_new(pag, "previous", json_stringn(r.previous.p, r.previous.n));
    gw_respond_json(c, 200, json_pack("{s:o,s:o}", "data", data, "pagination", pag), 0);
}

void gw_on_session_list(struct gw_call *c)
{
    h2o_req_t *req = c->req;
    char v[GW_LIST_VALMAX], after[96] = "", before[96] = "";
    char types[GW_LIST_VALMAX] = "", tags[GW_LIST_VALMAX] = "", tasks[GW_LIST_VALMAX] = "";
    char ext[GW_LIST_VALMAX] = "", status[128] = "";
    char *tp[GW_LIST_MAXVALS], *gp[GW_LIST_MAXVALS], *kp[GW_LIST_MAXVALS], *sp[8];
    unsigned ntp = 0, ngp = 0, nkp = 0, nsp = 0, statuses = 0;
    bool has_ext = false;
    uint64_t size = 20, from = 0, to = 0;

    if (gw_list_param(req, "page[size]", v, sizeof(v))) {
        char *e;
        long long s = strtoll(v, &e, 10);
        if (!*v || *e || s < 1 || s > 100) {
            gw_list_query_error(c,
                                gw_list_issue(s > 100 ? "too_big" : "too_small",
                                              s > 100 ? "Number must be less than or equal to 100"
                                                      : "Number must be greater than or equal to 1",
                                              "page", "size", NULL));
            return;
        }
        size = (uint64_t)s;
    }
    bool has_after = gw_list_param(req, "page[after]", v, sizeof(v));
    if (has_after && !gw_list_cursor(v, after, sizeof(after))) {
        gw_list_query_error(c, gw_list_issue("custom", "Invalid cursor", "page", "after", NULL));
        return;
    }
    if (gw_list_param(req, "page[before]", v, sizeof(v))) {
        if (has_after) {
            gw_list_query_error(c, gw_list_issue("custom",
                                                 "Cannot specify both page[after] and page[before]",
                                                 "page[before]", NULL, NULL));
            return;
        }
        if (!gw_list_cursor(v, before, sizeof(before))) {
            gw_list_query_error(c,
                                gw_list_issue("custom", "Invalid cursor", "page", "before", NULL));
            return;
        }
    }
    if (gw_list_param(req, "filter[type]", types, sizeof(types)))
        ntp = gw_list_split(types, tp, GW_LIST_MAXVALS);
    if (gw_list_param(req, "filter[tags]", tags, sizeof(tags)))
        ngp = gw_list_split(tags, gp, GW_LIST_MAXVALS);
    if (gw_list_param(req, "filter[taskIdentifier]", tasks, sizeof(tasks)))
        nkp = gw_list_split(tasks, kp, GW_LIST_MAXVALS);
    has_ext = gw_list_param(req, "filter[externalId]", ext, sizeof(ext)) && ext[0];
    if (has_ext && strlen(ext) > 256) {
        gw_list_query_error(c,
                            gw_list_issue("too_big", "String must contain at most 256 character(s)",
                                          "filter", "externalId", NULL));
        return;
    }
    if (gw_list_param(req, "filter[status]", status, sizeof(status))) {
        nsp = gw_list_split(status, sp, 8);
        for (unsigned i = 0; i < nsp; i++) {
            if (strcmp(sp[i], "ACTIVE") == 0)
                statuses |= 1;
            else if (strcmp(sp[i], "CLOSED") == 0)
                statuses |= 2;
            else if (strcmp(sp[i], "EXPIRED") == 0)
                statuses |= 4;
            else {
                char msg[200];
                snprintf(msg, sizeof(msg),
                         "Invalid enum value. Expected 'ACTIVE' | 'CLOSED' | 'EXPIRED', received "
                         "'%.64s'",
                         sp[i]);
                gw_list_query_error(
                    c, gw_list_issue("invalid_enum_value", msg, "filter", "status", NULL));
                return;
            }
        }
    }
    if (gw_list_param(req, "filter[createdAt][period]", v, sizeof(v)) && v[0]) {
        uint64_t ms;
        if (!gw_list_duration(v, &ms)) {
            gw_list_query_error(
                c, gw_list_issue("custom", "Invalid duration", "filter", "createdAt", "period"));
            return;
        }
        uint64_t now = clock_wall_ms();
        from = ms < now ? now - ms : 1;
    }
    static const char *const bounds[2] = {"from", "to"};
    for (int b = 0; b < 2; b++) {
        char key[40];
        snprintf(key, sizeof(key), "filter[createdAt][%s]", bounds[b]);
        if (!gw_list_param(req, key, v, sizeof(v)))
            continue;
        char *e;
        unsigned long long ms = strtoull(v, &e, 10);
        if (!*v || *e || v[0] == '-') {
            gw_list_query_error(c, gw_list_issue("invalid_type", "Expected number, received nan",
                                                 "filter", "createdAt", bounds[b]));
            return;
        }
        if (ms == 0)
            continue; /* 0 is treated as absent */
        if (b == 0 && ms > from)
            from = ms;
        if (b == 1)
            to = ms;
    }

    /* JWT: read:sessions, read:all, admin, read:tasks or read:tasks:<filter[taskIdentifier]> */
    static const char *const super[] = {"read:sessions", "read:all", "admin"};
    const char *ids[GW_LIST_MAXVALS];
    for (unsigned i = 0; i < nkp; i++)
        ids[i] = kp[i];
    if (nkp == 0)
        ids[0] = "";
    struct gw_resource res = {"tasks", ids, nkp ? nkp : 1};
    char why[2048];
    if (!gw_authorize(&c->auth, "read", &res, 1, super, 3, why, sizeof(why))) {
        gw_respond_forbidden(c, why);
        return;
    }

    struct mp_writer tp_w, gp_w, kp_w, w;
    mp_writer_init(&tp_w);
    msg_raw_put_strs(&tp_w, (const char *const *)tp, ntp);
    mp_writer_init(&gp_w);
    msg_raw_put_strs(&gp_w, (const char *const *)gp, ngp);
    mp_writer_init(&kp_w);
    msg_raw_put_strs(&kp_w, (const char *const *)kp, nkp);
    struct msg_session_list m = {
        .env_id = msg_str(c->auth.env.id),
        .org_id = msg_str(c->auth.env.org_id),
        .project_id = msg_str(c->auth.env.project_id),
        .size = size,
        .after = msg_str(after[0] ? after : NULL),
        .before = msg_str(before[0] ? before : NULL),
        .types = msg_raw_of(&tp_w),
        .tags = msg_raw_of(&gp_w),
        .tasks = msg_raw_of(&kp_w),
        .external_id = msg_str(has_ext ? ext : NULL),
        .statuses = statuses,
        .from_ms = from,
        .to_ms = to,
    };
    mp_writer_init(&w);
    msg_encode(&msg_session_list_form, &w, &m);
    msg_raw_done(&tp_w, &w);
    msg_raw_done(&gp_w, &w);
    msg_raw_done(&kp_w, &w);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_CH_REPLICATOR, MSG_SESSION_LIST, mp_writer_data(&w),
                         mp_writer_len(&w), gw_list_on_reply);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "session.list");
}
