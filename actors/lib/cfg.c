/*
 * cfg.c - environment configuration tables (see cfg.h).
 */
#include "cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mem.h"

#define CFG_OFF(f) offsetof(struct cfg_common, f)

const struct cfg_def cfg_common_defs[] = {
    {"TETHER_LOG_LEVEL", CFG_STR, "info", 0, 0, CFG_OFF(log_level),
     "log threshold: error, warn, info or debug"},
    {"TETHER_LOG_FORMAT", CFG_STR, "json", 0, 0, CFG_OFF(log_format),
     "json (one JSON object per line) or text (for people at a terminal)"},
    {"TETHER_RUN_DIR", CFG_STR, "./var/run", 0, 0, CFG_OFF(run_dir),
     "directory for bus sockets, tap sockets and the supervisor's lock"},
    {"TETHER_BUS_DIR", CFG_STR, "", 0, 0, CFG_OFF(bus_dir),
     "directory of the ipc:// bus endpoints; empty means <TETHER_RUN_DIR>/bus"},
    {"TETHER_BUS_TIMEOUT", CFG_MS, "5s", 10, 600000, CFG_OFF(bus_timeout_ms),
     "default deadline of a bus request"},
    {"TETHER_BUS_RECV_MAX", CFG_INT, "4194304", 1114112, 268435456, CFG_OFF(bus_recv_max),
     "largest bus message accepted, in bytes (at least 1 MiB + 64 KiB: a 1 MiB batch of records "
     "with its encoding and envelope)"},
    {"TETHER_BUS_INFLIGHT", CFG_INT, "64", 1, 4096, CFG_OFF(bus_inflight),
     "requests one actor instance accepts at once (nng contexts)"},
    {"TETHER_BUS_TAP", CFG_BOOL, "1", 0, 0, CFG_OFF(bus_tap),
     "offer a tap socket mirroring this process's bus traffic (free while nobody listens)"},
    {"TETHER_PG_URL", CFG_SECRET, "postgresql://postgres@127.0.0.1:15432/tether", 0, 0,
     CFG_OFF(pg_url), "PostgreSQL connection URL"},
    {"TETHER_REDIS_URL", CFG_SECRET, "redis://127.0.0.1:16379", 0, 0, CFG_OFF(redis_url),
     "Redis URL (redis://[:password@]host:port[/db]); redis://[:password@]host:port?cluster=1 "
     "names one node of a Redis Cluster (database 0 only): the other masters are learnt from it "
     "and each command goes to its key's slot"},
    {"TETHER_CH_URL", CFG_SECRET, "http://127.0.0.1:18123", 0, 0, CFG_OFF(ch_url),
     "ClickHouse HTTP URL"},
    {"TETHER_SHUTDOWN_GRACE", CFG_MS, "10s", 0, 600000, CFG_OFF(shutdown_grace_ms),
     "how long a process finishes in-flight work after SIGTERM"},
    {"TETHER_NODE_ID", CFG_STR, "", 0, 0, CFG_OFF(node_id),
     "name of this node in leader locks, the cluster registry and logs; empty means the host name"},
    {"TETHER_BUS_EVENTS_LISTEN", CFG_STR, "", 0, 0, CFG_OFF(bus_events_listen),
     "a second endpoint of this process's event socket (tcp://addr:port), for other nodes' "
     "gateways; the supervisor sets it when TETHER_NODE_ADDR is set"},
    {"TETHER_BUS_REQUESTS_LISTEN", CFG_STR, "", 0, 0, CFG_OFF(bus_requests_listen),
     "a second endpoint of this actor's request socket (tcp://addr:port), for other nodes' "
     "gateways; the supervisor sets it for the leader-only actor when TETHER_NODE_ADDR is set"},
    {"TETHER_PG_STATEMENT_TIMEOUT", CFG_MS, "5s", 100, 600000, CFG_OFF(pg_statement_timeout_ms),
     "PostgreSQL statement_timeout of an actor's connection; a statement cut off by it answers "
     "503 with x-should-retry: true"},
    {"TETHER_PG_POOL", CFG_INT, "2", 1, 16, CFG_OFF(pg_pool),
     "non-blocking PostgreSQL connections of an actor (pipelined; each holds up to 32 statements "
     "in flight)"},
};

const size_t cfg_common_defs_len = sizeof(cfg_common_defs) / sizeof(cfg_common_defs[0]);

bool cfg_parse_ms(const char *s, long long *out)
{
    char *end;
    long long mult = 1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v < 0)
        return false;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return false;
    if (v > INT64_MAX / mult)
        return false;
    *out = v * mult;
    return true;
}

static bool cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (unsigned i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Applies one setting; returns false (and logs) when value is invalid. */
static bool cfg_set(const struct cfg_def *d, void *base, const char *value)
{
    char *at = (char *)base + d->offset;
    char *end;
    long long v;

    switch (d->type) {
    case CFG_INT:
        errno = 0;
        v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < d->min || v > d->max) {
            LOG_ERROR("cfg.invalid", "invalid value for %s: \"%s\" (an integer from %lld to %lld)",
                      d->name, value, d->min, d->max);
            return false;
        }
        memcpy(at, &v, sizeof(v));
        return true;
    case CFG_MS:
        if (!cfg_parse_ms(value, &v) || v < d->min || v > d->max) {
            LOG_ERROR("cfg.invalid",
                      "invalid value for %s: \"%s\" (a duration from %lldms to %lldms, "
                      "like 250ms or 3s)",
                      d->name, value, d->min, d->max);
            return false;
        }
        memcpy(at, &v, sizeof(v));
        return true;
    case CFG_BOOL: {
        bool b;
        if (!cfg_parse_bool(value, &b)) {
            LOG_ERROR("cfg.invalid", "invalid value for %s: \"%s\" (1/0, true/false, yes/no)",
                      d->name, value);
            return false;
        }
        memcpy(at, &b, sizeof(b));
        return true;
    }
    case CFG_STR:
    case CFG_SECRET: {
        char *old, *s = xstrdup(value);
        memcpy(&old, at, sizeof(old));
        free(old);
        memcpy(at, &s, sizeof(s));
        return true;
    }
    }
    return false;
}

/* Masks a password in a URL ("scheme://user:secret@host" -> "scheme://user:****@host"). */
static void cfg_mask(const char *v, char *out, size_t cap)
{
    const char *scheme = strstr(v, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    if (!scheme || !at) {
        snprintf(out, cap, "%s", v);
        return;
    }
    const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
    if (!colon) {
        snprintf(out, cap, "%s", v);
        return;
    }
    snprintf(out, cap, "%.*s:****%s", (int)(colon - v), v, at);
}

static void cfg_value_text(const struct cfg_def *d, void *base, char *out, size_t cap)
{
    const char *at = (const char *)base + d->offset;
    long long v;
    bool b;
    char *s;
    switch (d->type) {
    case CFG_INT:
    case CFG_MS:
        memcpy(&v, at, sizeof(v));
        snprintf(out, cap, d->type == CFG_MS ? "%lldms" : "%lld", v);
        return;
    case CFG_BOOL:
        memcpy(&b, at, sizeof(b));
        snprintf(out, cap, "%s", b ? "true" : "false");
        return;
    case CFG_STR:
        memcpy(&s, at, sizeof(s));
        snprintf(out, cap, "%s", s ? s : "");
        return;
    case CFG_SECRET:
        memcpy(&s, at, sizeof(s));
        cfg_mask(s ? s : "", out, cap);
        return;
    }
}

static const char *cfg_type_name(enum cfg_type t)
{
    switch (t) {
    case CFG_INT:
        return "integer";
    case CFG_MS:
        return "duration";
    case CFG_BOOL:
        return "boolean";
    case CFG_STR:
        return "string";
    case CFG_SECRET:
        return "secret";
    }
    return "?";
}

err_t cfg_load(const struct cfg_table *tables, size_t ntables, int argc, char **argv,
               const char *proc, enum cfg_action *action)
{
    bool ok = true, print = false, doc = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--print-config") == 0) {
            print = true;
        } else if (strcmp(argv[i], "--print-config-doc") == 0) {
            doc = true;
        } else {
            LOG_ERROR("cfg.usage", "unknown argument \"%s\" (settings come from TETHER_* "
                                   "environment variables; see --print-config)",
                      argv[i]);
            ok = false;
        }
    }

    for (size_t t = 0; t < ntables; t++) {
        for (size_t i = 0; i < tables[t].n; i++) {
            const struct cfg_def *d = &tables[t].defs[i];
            const char *env = getenv(d->name);
            /* the default must always parse: a table bug, not an operator error */
            if (!cfg_set(d, tables[t].base, d->def ? d->def : ""))
                ok = false;
            if (env && !cfg_set(d, tables[t].base, env))
                ok = false;
        }
    }

    *action = CFG_RUN;
    if (doc) {
        for (size_t t = 0; t < ntables; t++)
            for (size_t i = 0; i < tables[t].n; i++) {
                const struct cfg_def *d = &tables[t].defs[i];
                printf("| `%s` | %s | `%s` | %s |\n", d->name, cfg_type_name(d->type),
                       d->def ? d->def : "", d->desc);
            }
        *action = CFG_PRINTED;
    } else if (print) {
        char val[512];
        for (size_t t = 0; t < ntables; t++)
            for (size_t i = 0; i < tables[t].n; i++) {
                const struct cfg_def *d = &tables[t].defs[i];
                cfg_value_text(d, tables[t].base, val, sizeof(val));
                printf("%s=%s\n", d->name, val);
            }
        *action = CFG_PRINTED;
    }
    (void)proc;
    return ok ? OK : ERR_INVAL;
}

void cfg_free(const struct cfg_table *tables, size_t ntables)
{
    for (size_t t = 0; t < ntables; t++)
        for (size_t i = 0; i < tables[t].n; i++) {
            const struct cfg_def *d = &tables[t].defs[i];
            if (d->type == CFG_STR || d->type == CFG_SECRET) {
                char **at = (char **)((char *)tables[t].base + d->offset);
                free(*at);
                *at = NULL;
            }
        }
}

void cfg_bus_dir(const struct cfg_common *c, char *out, size_t cap)
{
    if (c->bus_dir && c->bus_dir[0])
        snprintf(out, cap, "%s", c->bus_dir);
    else
        snprintf(out, cap, "%s/bus", c->run_dir);
}

err_t cfg_common_apply(const struct cfg_common *c, const char *proc)
{
    enum log_level lvl;
    bool json;
    err_t rc = OK;

    if (!log_level_parse(c->log_level, &lvl)) {
        LOG_ERROR("cfg.invalid", "invalid value for TETHER_LOG_LEVEL: \"%s\"", c->log_level);
        lvl = LOG_LVL_INFO;
        rc = ERR_INVAL;
    }
    if (strcmp(c->log_format, "json") == 0) {
        json = true;
    } else if (strcmp(c->log_format, "text") == 0) {
        json = false;
    } else {
        LOG_ERROR("cfg.invalid", "invalid value for TETHER_LOG_FORMAT: \"%s\" (json or text)",
                  c->log_format);
        json = true;
        rc = ERR_INVAL;
    }
    log_init(proc, lvl, json);
    return rc;
}
