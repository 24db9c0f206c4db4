/*
 * cfg.h - configuration from TETHER_* environment variables.
 *
 * Each process describes its settings in tables of struct cfg_def (name,
 * type, default, bounds, where to store it, description), the way Redis
 * does in static_configs[]. cfg_load() reads them all at once and reports
 * every bad value, not just the first. `--print-config` prints the
 * effective values with secrets masked; `--print-config-doc` prints the
 * Markdown rows docs/config.md is built from. Strings stored by cfg_load
 * are owned by the configuration and live until cfg_free().
 */
#ifndef TETHER_LIB_CFG_H
#define TETHER_LIB_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum cfg_type {
    CFG_INT,    /* long long, within [min, max] */
    CFG_MS,     /* duration in ms; accepts "250", "250ms", "3s", "2m" */
    CFG_BOOL,   /* 1/0, true/false, yes/no, on/off */
    CFG_STR,    /* char * */
    CFG_SECRET, /* char *, masked when printed (URLs have their password masked) */
};

struct cfg_def {
    const char *name;  /* environment variable, TETHER_... */
    enum cfg_type type;
    const char *def;   /* default as text; NULL = empty string / 0 */
    long long min, max;/* bounds for CFG_INT and CFG_MS */
    size_t offset;     /* where in the target struct */
    const char *desc;
};

struct cfg_table {
    const struct cfg_def *defs;
    size_t n;
    void *base; /* the struct the offsets point into */
};

#define CFG_TABLE(arr, basep) {(arr), sizeof(arr) / sizeof((arr)[0]), (basep)}

enum cfg_action {
    CFG_RUN,        /* configuration loaded: run */
    CFG_PRINTED,    /* --print-config or --print-config-doc done: exit 0 */
};

/*
 * Loads every table from the environment (argv only for --print-config*).
 * Logs each bad setting and returns ERR_INVAL if any was bad; the caller
 * exits 100 then. Unknown arguments are ERR_INVAL too.
 */
err_t cfg_load(const struct cfg_table *tables, size_t ntables, int argc, char **argv,
               const char *proc, enum cfg_action *action);

/* Frees the strings cfg_load stored. */
void cfg_free(const struct cfg_table *tables, size_t ntables);

/* Parses a duration ("1500", "1500ms", "2s", "1m") into ms; false if malformed. */
bool cfg_parse_ms(const char *s, long long *out);

/*
 * Settings every process shares. Embedded in each process's config struct;
 * cfg_common_table() describes it.
 */
struct cfg_common {
    char *log_level;
    char *log_format;
    char *run_dir;        /* TETHER_RUN_DIR: bus sockets, taps, locks */
    char *bus_dir;        /* TETHER_BUS_DIR: default <run_dir>/bus */
    long long bus_timeout_ms;
    long long bus_recv_max;
    long long bus_inflight;
    bool bus_tap;
    char *pg_url;
    char *redis_url;
    char *ch_url;
    long long shutdown_grace_ms;
    char *node_id;
    char *bus_events_listen; /* TETHER_BUS_EVENTS_LISTEN: tcp:// twin of the event socket */
    char *bus_requests_listen; /* TETHER_BUS_REQUESTS_LISTEN: tcp:// twin of the request socket */
    long long pg_statement_timeout_ms;
    long long pg_pool;
};

extern const struct cfg_def cfg_common_defs[];
extern const size_t cfg_common_defs_len;

/* The bus directory: TETHER_BUS_DIR, or <TETHER_RUN_DIR>/bus when that is empty. */
void cfg_bus_dir(const struct cfg_common *c, char *out, size_t cap);

/* Applies the logging settings of c (level, format) for process proc. */
err_t cfg_common_apply(const struct cfg_common *c, const char *proc);

#endif
