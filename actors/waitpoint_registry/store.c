/*
 * store.c - the waitpoint object of a row: the columns every statement that
 * answers a waitpoint selects (wp_cols, of table alias w) and their
 * msgpack form (proto/msg.c). The statements themselves sit beside their
 * handlers (h_wait.c, drain.c); all take parameters only.
 */
#include <stdlib.h>
#include <string.h>

#include "wp.h"

#define WP_MS(col) "COALESCE((extract(epoch FROM " col ") * 1000)::bigint, 0)"

const char wp_cols[] =
    "w.friendly_id, w.kind, w.status, w.output, w.output_type, w.output_is_error,"
    " w.idempotency_key, " WP_MS("w.idempotency_key_expires_at") ","
    " array_to_json(w.tags)::text, " WP_MS("w.timeout_at") ", " WP_MS("w.created_at") ","
    " " WP_MS("w.completed_at") ", w.run_id, w.stream_key, w.stream_io, w.from_seq,"
    " w.runtime_environment_id, w.id";

static void wp_put_text(struct mp_writer *w, const char *k, const PGresult *r, int row, int col)
{
    mp_put_str(w, k);
    if (PQgetisnull(r, row, col))
        mp_put_nil(w);
    else
        mp_put_strn(w, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static void wp_put_ms(struct mp_writer *w, const char *k, const PGresult *r, int row, int col)
{
    const char *v = PQgetisnull(r, row, col) ? "0" : PQgetvalue(r, row, col);
    long long ms = strtoll(v, NULL, 10);
    mp_put_kv_uint(w, k, ms > 0 ? (uint64_t)ms : 0);
}

void wp_put_row(struct mp_writer *w, const PGresult *r, int row, int c)
{
    mp_put_map(w, 17);
    wp_put_text(w, "id", r, row, c + 0);
    wp_put_text(w, "kind", r, row, c + 1);
    wp_put_text(w, "status", r, row, c + 2);
    wp_put_text(w, "output", r, row, c + 3);
    wp_put_text(w, "output_type", r, row, c + 4);
    mp_put_kv_bool(w, "output_is_error", strcmp(PQgetvalue(r, row, c + 5), "t") == 0);
    wp_put_text(w, "idempotency_key", r, row, c + 6);
    wp_put_ms(w, "idempotency_key_expires_at_ms", r, row, c + 7);
    wp_put_text(w, "tags", r, row, c + 8);
    wp_put_ms(w, "timeout_at_ms", r, row, c + 9);
    wp_put_ms(w, "created_at_ms", r, row, c + 10);
    wp_put_ms(w, "completed_at_ms", r, row, c + 11);
    wp_put_text(w, "run", r, row, c + 12);
    wp_put_text(w, "key", r, row, c + 13);
    wp_put_text(w, "io", r, row, c + 14);
    mp_put_str(w, "from_seq");
    if (PQgetisnull(r, row, c + 15))
        mp_put_nil(w);
    else
        mp_put_uint(w, strtoull(PQgetvalue(r, row, c + 15), NULL, 10));
    wp_put_text(w, "env_id", r, row, c + 16);
}
