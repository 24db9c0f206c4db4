/*
 * db_ch.h - ClickHouse over HTTP (libcurl), one reusable handle.
 *
 * Every request has a timeout; any status other than 200 is an error and
 * its body (ClickHouse's "Code: NN, e.displayText() = ...") is logged once.
 */
#ifndef TETHER_LIB_DB_CH_H
#define TETHER_LIB_DB_CH_H

#include <stdbool.h>
#include <stddef.h>

#include "backoff.h"
#include "err.h"

struct db_ch {
    char *url;
    void *curl; /* CURL * */
    unsigned timeout_ms;
    struct backoff backoff;
    bool up;
    int last_code; /* ClickHouse's "Code: NN" of the last failed query; 0 if none or unknown */
};

err_t db_ch_init(struct db_ch *c, const char *url, unsigned timeout_ms);
void db_ch_fini(struct db_ch *c);

/* GET /ping; OK when ClickHouse answers "Ok.". */
err_t db_ch_ping(struct db_ch *c);
bool db_ch_up(const struct db_ch *c);

/*
 * POSTs query (and optional data appended after it) to ClickHouse. On OK,
 * *out (if not NULL) is the malloc'd response body, *out_n its length. On an
 * error answer, c->last_code is ClickHouse's error code (0 when the body had none).
 */
err_t db_ch_query(struct db_ch *c, const char *query, const char *data, size_t data_n, char **out,
                  size_t *out_n);

#endif
