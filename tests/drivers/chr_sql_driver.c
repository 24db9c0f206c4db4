/*
 * chr_sql_driver.c - prints the ClickHouse SQL and rows the clickhouse-replicator sends, made by
 * its own code (setup.c's INSERT, pgo.c's JSONEachRow rows, list.c's session.list query), so
 * tests/chdb/ can run exactly that text on a current ClickHouse engine (chDB) as the 18.16
 * server runs it in the integration tests.
 *
 *   chr_sql_driver
 *
 * Output: records "=== KIND NAME" followed by the text, up to the next record:
 *   insert sql     the INSERT ... FORMAT JSONEachRow statement (table sessions_v1)
 *   rows NAME      JSONEachRow lines of the fixture rows (below) at their versions
 *   list NAME      a session.list query (one per filter case)
 * Exit 0, 1 when a piece could not be made.
 */
#include "../../actors/clickhouse_replicator/ack.c"
#include "../../actors/clickhouse_replicator/batch.c"
#include "../../actors/clickhouse_replicator/fault.c"
#include "../../actors/clickhouse_replicator/fence.c"
#include "../../actors/clickhouse_replicator/insert.c"
#include "../../actors/clickhouse_replicator/lag.c"
#include "../../actors/clickhouse_replicator/list.c"
#include "../../actors/clickhouse_replicator/pgo.c"
#include "../../actors/clickhouse_replicator/repl.c"
#include "../../actors/clickhouse_replicator/setup.c"
#include "../../actors/clickhouse_replicator/setup_job.c"
#include "../../actors/clickhouse_replicator/worker.c"

/* The fixture (the same one tests/chdb/queries.test.mjs expects results of), in the org o1,
 * project p1, environment e1. Times are PostgreSQL text (TimeZone UTC). */
struct fx {
    const char *id, *type, *tags, *closed_at, *expires_at, *created_at, *ext;
    uint64_t version;
    bool deleted;
};
static const struct fx fixture[] = {
    /* a: closed chat; an older version (no close) precedes it */
    {"ca", "chat", "{user:1,\"plan pro\"}", NULL, NULL, "2026-01-01 10:00:00.100+00", "ext-a", 100,
     false},
    {"ca", "chat", "{user:1,\"plan pro\"}", "2026-01-02 00:00:00+00", NULL,
     "2026-01-01 10:00:00.100+00", "ext-a", 200, false},
    /* b: active agent, expires far ahead */
    {"cb", "agent", "{user:2}", NULL, "2099-01-01 00:00:00+00", "2026-01-01 11:00:00.200+00", NULL,
     150, false},
    /* c: expired chat */
    {"cc", "chat", "{}", NULL, "2026-01-03 00:00:00+00", "2026-01-01 12:00:00.300+00", "ext-c",
     160, false},
    /* d: active chat, then deleted */
    {"cd", "chat", "{user:1}", NULL, NULL, "2026-01-01 13:00:00.400+00", NULL, 170, false},
    {"cd", "chat", "{user:1}", NULL, NULL, "2026-01-01 13:00:00.400+00", NULL, 180, true},
};

static void fx_set(struct chr_val *v, int col, const char *s)
{
    v[col].present = true;
    v[col].null = s == NULL;
    v[col].p = s ? s : "";
    v[col].n = s ? strlen(s) : 0;
}

static bool print_rows(void)
{
    struct jbuf b = {0};
    char fid[64];
    for (size_t i = 0; i < sizeof(fixture) / sizeof(fixture[0]); i++) {
        const struct fx *f = &fixture[i];
        struct chr_val v[CHR_NCOLS];
        memset(v, 0, sizeof(v));
        snprintf(fid, sizeof(fid), "session_%s", f->id);
        fx_set(v, CHR_COL_ID, f->id);
        fx_set(v, CHR_COL_FRIENDLY_ID, fid);
        fx_set(v, CHR_COL_EXTERNAL_ID, f->ext);
        fx_set(v, CHR_COL_TYPE, f->type);
        fx_set(v, CHR_COL_PROJECT_ID, "p1");
        fx_set(v, CHR_COL_ENV_ID, "e1");
        fx_set(v, CHR_COL_ORG_ID, "o1");
        fx_set(v, CHR_COL_ENV_TYPE, "DEVELOPMENT");
        fx_set(v, CHR_COL_TASK, f->type[0] == 'a' ? "agent-task" : "chat-task");
        fx_set(v, CHR_COL_TAGS, f->tags);
        fx_set(v, CHR_COL_METADATA, "{\"k\": \"it's \\\"quoted\\\"\"}");
        fx_set(v, CHR_COL_CLOSED_AT, f->closed_at);
        fx_set(v, CHR_COL_CLOSED_REASON, f->closed_at ? "done" : NULL);
        fx_set(v, CHR_COL_EXPIRES_AT, f->expires_at);
        fx_set(v, CHR_COL_CREATED_AT, f->created_at);
        fx_set(v, CHR_COL_UPDATED_AT, f->created_at);
        if (chr_row_json(v, f->version, f->deleted, &b) != OK) {
            fprintf(stderr, "chr_sql_driver: fixture row %zu does not convert\n", i);
            jbuf_free(&b);
            return false;
        }
    }
    bool ok = b.err == OK;
    if (ok)
        printf("=== rows fixture\n%.*s", (int)b.n, b.p);
    jbuf_free(&b);
    return ok;
}

static void add(struct chr_strs *s, const char *v)
{
    s->v[s->n++] = xstrdup(v);
}

static bool print_list(const char *name, struct chr_list_job *lj)
{
    static struct chr chr;
    chr.cfg.table = "sessions_v1";
    lj->chr = &chr;
    snprintf(lj->org_id, sizeof(lj->org_id), "o1");
    snprintf(lj->project_id, sizeof(lj->project_id), "p1");
    snprintf(lj->env_id, sizeof(lj->env_id), "e1");
    if (!lj->size)
        lj->size = 20;
    char *sql = chr_list_ch_sql(lj);
    chr_strs_free(&lj->types);
    chr_strs_free(&lj->tags);
    chr_strs_free(&lj->tasks);
    free(lj->external_id);
    if (!sql)
        return false;
    printf("=== list %s\n%s\n", name, sql);
    free(sql);
    return true;
}

int main(void)
{
    char q[512];
    bool ok = chr_ch_insert_sql("sessions_v1", q, sizeof(q));
    if (ok)
        printf("=== insert sql\n%s\n", q);
    ok = ok && print_rows();

    struct chr_list_job lj;
    memset(&lj, 0, sizeof(lj));
    ok = ok && print_list("all", &lj);

    memset(&lj, 0, sizeof(lj));
    add(&lj.types, "chat");
    add(&lj.types, "agent");
    add(&lj.tags, "user:1");
    add(&lj.tags, "user:2");
    add(&lj.tasks, "chat-task");
    add(&lj.tasks, "agent-task");
    lj.statuses = 1 | 2 | 4;
    lj.from_ms = 1767225600000ull; /* 2026-01-01 */
    lj.to_ms = 1767312000000ull;   /* 2026-01-02 */
    ok = ok && print_list("every_filter", &lj);

    memset(&lj, 0, sizeof(lj));
    lj.statuses = 1;
    ok = ok && print_list("active", &lj);
    memset(&lj, 0, sizeof(lj));
    lj.statuses = 2;
    ok = ok && print_list("closed", &lj);
    memset(&lj, 0, sizeof(lj));
    lj.statuses = 4;
    ok = ok && print_list("expired", &lj);

    memset(&lj, 0, sizeof(lj));
    add(&lj.tags, "plan pro");
    ok = ok && print_list("tag_with_space", &lj);

    memset(&lj, 0, sizeof(lj));
    lj.external_id = xstrdup("it's\\odd");
    ok = ok && print_list("external_id_quoted", &lj);

    memset(&lj, 0, sizeof(lj));
    lj.external_id = xstrdup("ext-c");
    ok = ok && print_list("external_id", &lj);

    memset(&lj, 0, sizeof(lj));
    lj.size = 1;
    snprintf(lj.after, sizeof(lj.after), "cc");
    ok = ok && print_list("after_cc_size_1", &lj);

    memset(&lj, 0, sizeof(lj));
    lj.size = 1;
    snprintf(lj.before, sizeof(lj.before), "ca");
    ok = ok && print_list("before_ca_size_1", &lj);

    return ok ? 0 : 1;
}
