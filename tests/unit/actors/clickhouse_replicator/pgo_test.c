/*
 * pgo_test.c - the replicator's pure parts (pgo.c): pgoutput messages built byte by byte
 * (Relation, Begin, Insert, Update with an unchanged TOAST column, Delete, Commit,
 * truncated input), PostgreSQL timestamps and text[] literals, and the ClickHouse row.
 * The stream, batches and acks are covered by tests/integration/replicator_test.sh.
 */
#include "../../../../actors/clickhouse_replicator/pgo.c"

#include "t.h"

struct wbuf {
    unsigned char b[2048];
    size_t n;
};

static void w_be(struct wbuf *w, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++)
        w->b[w->n++] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

static void w_str(struct wbuf *w, const char *s)
{
    size_t n = strlen(s) + 1;
    memcpy(w->b + w->n, s, n);
    w->n += n;
}

static void w_text(struct wbuf *w, const char *s)
{
    if (!s) {
        w->b[w->n++] = 'n';
        return;
    }
    if (s[0] == '\x01') { /* unchanged TOAST */
        w->b[w->n++] = 'u';
        return;
    }
    w->b[w->n++] = 't';
    w_be(w, strlen(s), 4);
    memcpy(w->b + w->n, s, strlen(s));
    w->n += strlen(s);
}

/* The sessions columns in table order, plus one the replicator does not read. */
static const char *const cols[] = {"id", "friendly_id", "external_id", "type", "project_id",
                                   "runtime_environment_id", "organization_id", "environment_type",
                                   "task_identifier", "trigger_config", "tags", "metadata",
                                   "closed_at", "closed_reason", "expires_at", "created_at",
                                   "updated_at"};
#define NC (sizeof(cols) / sizeof(cols[0]))

static void w_tuple(struct wbuf *w, const char *const *vals)
{
    w_be(w, NC, 2);
    for (size_t i = 0; i < NC; i++)
        w_text(w, vals[i]);
}

static const char *const row1[NC] = {
    "c1", "session_c1", "ext-1", "chat", "p1", "e1", "o1", "DEVELOPMENT", "echo", "{}",
    "{user:1,\"plan pro\",\"q\\\"x\"}", "{\"k\": 1}", NULL, NULL, "2026-01-02 03:04:05.5+00",
    "2026-01-01 00:00:00.123+00", "2026-01-01 00:00:01+00"};

T_TEST(relation_and_changes)
{
    struct chr_pgo p = {0};
    struct chr_pgo_msg m;
    struct wbuf w = {0};

    w.b[w.n++] = 'R';
    w_be(&w, 16384, 4);
    w_str(&w, "public");
    w_str(&w, "sessions");
    w.b[w.n++] = 'f';
    w_be(&w, NC, 2);
    for (size_t i = 0; i < NC; i++) {
        w.b[w.n++] = i == 0;
        w_str(&w, cols[i]);
        w_be(&w, 25, 4);
        w_be(&w, (uint32_t)-1, 4);
    }
    T_OK(chr_pgo_decode(&p, w.b, w.n, &m));
    T_EQ(m.kind, CHR_PGO_RELATION);
    T_EQ(p.nrels, 1u);
    T_STREQ(p.rels[0].name, "sessions");
    T_EQ(p.rels[0].map[9], -1); /* trigger_config is not replicated */
    T_EQ(p.rels[0].map[10], CHR_COL_TAGS);

    w.n = 0;
    w.b[w.n++] = 'B';
    w_be(&w, 0x100000020ull, 8);
    w_be(&w, 5, 8);
    w_be(&w, 7, 4);
    T_OK(chr_pgo_decode(&p, w.b, w.n, &m));
    T_EQ(m.kind, CHR_PGO_BEGIN);
    T_EQ(m.lsn, 0x100000020ull);

    w.n = 0;
    w.b[w.n++] = 'I';
    w_be(&w, 16384, 4);
    w.b[w.n++] = 'N';
    w_tuple(&w, row1);
    T_OK(chr_pgo_decode(&p, w.b, w.n, &m));
    T_EQ(m.kind, CHR_PGO_INSERT);
    T_ASSERT(m.rel == &p.rels[0]);
    T_ASSERT(m.vals[CHR_COL_ID].present && m.vals[CHR_COL_ID].n == 2);
    T_ASSERT(m.vals[CHR_COL_CLOSED_AT].present && m.vals[CHR_COL_CLOSED_AT].null);

    /* an update whose new row leaves metadata out (unchanged TOAST) takes it from the old row */
    const char *newrow[NC];
    memcpy(newrow, row1, sizeof(newrow));
    newrow[11] = "\x01";
    newrow[13] = "done";
    w.n = 0;
    w.b[w.n++] = 'U';
    w_be(&w, 16384, 4);
    w.b[w.n++] = 'O';
    w_tuple(&w, row1);
    w.b[w.n++] = 'N';
    w_tuple(&w, newrow);
    T_OK(chr_pgo_decode(&p, w.b, w.n, &m));
    T_EQ(m.kind, CHR_PGO_UPDATE);
    T_ASSERT(m.vals[CHR_COL_METADATA].present && m.vals[CHR_COL_METADATA].n == 8);
    T_ASSERT(m.vals[CHR_COL_CLOSED_REASON].n == 4);

    w.n = 0;
    w.b[w.n++] = 'D';
    w_be(&w, 16384, 4);
    w.b[w.n++] = 'O';
    w_tuple(&w, row1);
    T_OK(chr_pgo_decode(&p, w.b, w.n, &m));
    T_EQ(m.kind, CHR_PGO_DELETE);
    T_ASSERT(m.vals[CHR_COL_ORG_ID].present);
    /* every shorter prefix of a message is refused, never read past */
    for (size_t cut = 1; cut < w.n; cut++)
        T_ERR(chr_pgo_decode(&p, w.b, cut, &m), ERR_PROTO);

    w.n = 0;
    w.b[w.n++] = 'C';
    w.b[w.n++] = 0;
    w_be(&w, 0x100000020ull, 8);
    w_be(&w, 0x100000058ull, 8);
    w_be(&w, 9, 8);
    T_OK(chr_pgo_decode(&p, w.b, w.n, &m));
    T_EQ(m.kind, CHR_PGO_COMMIT);
    T_EQ(m.lsn, 0x100000058ull);

    unsigned char trunc[] = {'T', 0, 0, 0, 1};
    T_OK(chr_pgo_decode(&p, trunc, sizeof(trunc), &m));
    T_EQ(m.kind, CHR_PGO_OTHER);
    unsigned char bad_tuple[] = {'I', 0, 0, 0x40, 0, 'N', 0, 1, 'x'};
    T_ERR(chr_pgo_decode(&p, bad_tuple, sizeof(bad_tuple), &m), ERR_PROTO);
}

T_TEST(timestamps)
{
    uint64_t ms = 0;
    T_ASSERT(chr_pg_ts_ms("1970-01-01 00:00:01+00", 22, &ms) && ms == 1000);
    T_ASSERT(chr_pg_ts_ms("2026-01-01 00:00:00.123+00", 26, &ms) && ms == 1767225600123ull);
    T_ASSERT(chr_pg_ts_ms("2026-01-01 00:00:00.5", 21, &ms) && ms == 1767225600500ull);
    T_ASSERT(!chr_pg_ts_ms("2026-01-01 00:00:00+02", 22, &ms));
    T_ASSERT(!chr_pg_ts_ms("2026-13-01 00:00:00", 19, &ms));
    T_ASSERT(!chr_pg_ts_ms("infinity", 8, &ms));
}

T_TEST(arrays)
{
    struct jbuf b = {0};
    const char *lit = "{a,\"b c\",\"q\\\"x\",NULL,\"NULL\"}";
    T_ASSERT(chr_pg_array_json(lit, strlen(lit), &b));
    T_STREQ(b.p, "[\"a\",\"b c\",\"q\\\"x\",\"NULL\"]");
    jbuf_free(&b);
    b = (struct jbuf){0};
    T_ASSERT(chr_pg_array_json("{}", 2, &b));
    T_STREQ(b.p, "[]");
    jbuf_free(&b);
    b = (struct jbuf){0};
    T_ASSERT(!chr_pg_array_json("{\"open", 6, &b));
    jbuf_free(&b);
}

T_TEST(row)
{
    struct chr_pgo p = {0};
    struct chr_rel *rel = &p.rels[0];
    struct chr_val v[CHR_NCOLS];
    struct jbuf b = {0};
    (void)rel;
    memset(v, 0, sizeof(v));
    for (size_t i = 0; i < NC; i++) {
        for (int c = 0; c < CHR_NCOLS; c++) {
            if (strcmp(cols[i], chr_col_names[c]) == 0) {
                v[c].present = true;
                v[c].null = row1[i] == NULL;
                v[c].p = row1[i];
                v[c].n = row1[i] ? strlen(row1[i]) : 0;
            }
        }
    }
    T_OK(chr_row_json(v, 42, false, &b));
    T_ASSERT(strstr(b.p, "\"session_id\":\"c1\""));
    T_ASSERT(strstr(b.p, "\"tags\":[\"user:1\",\"plan pro\",\"q\\\"x\"]"));
    T_ASSERT(strstr(b.p, "\"metadata\":\"{\\\"data\\\":{\\\"k\\\": 1}}\""));
    T_ASSERT(strstr(b.p, "\"closed_at\":null"));
    T_ASSERT(strstr(b.p, "\"expires_at\":1767323045,"));
    T_ASSERT(strstr(b.p, "\"created_at_ms\":1767225600123,\"updated_at_ms\":1767225601000"));
    T_ASSERT(strstr(b.p, "\"_version\":42,\"_is_deleted\":0}\n"));
    jbuf_free(&b);

    b = (struct jbuf){0};
    T_OK(chr_row_json(v, 43, true, &b));
    T_ASSERT(strstr(b.p, "\"_is_deleted\":1"));
    jbuf_free(&b);

    b = (struct jbuf){0};
    v[CHR_COL_CREATED_AT].p = "yesterday";
    v[CHR_COL_CREATED_AT].n = 9;
    T_ERR(chr_row_json(v, 44, false, &b), ERR_INVAL);
    jbuf_free(&b);
    b = (struct jbuf){0};
    v[CHR_COL_CREATED_AT].present = false;
    T_ERR(chr_row_json(v, 44, false, &b), ERR_INVAL);
    jbuf_free(&b);
}

T_TEST(lsn)
{
    char buf[24];
    uint64_t l = 0;
    chr_lsn_fmt(0x16B3748ull | (1ull << 32), buf, sizeof(buf));
    T_STREQ(buf, "1/16B3748");
    T_ASSERT(chr_lsn_parse("1/16B3748", &l) && l == (0x16B3748ull | (1ull << 32)));
    T_ASSERT(!chr_lsn_parse("nope", &l));
}

int main(void)
{
    T_RUN(relation_and_changes);
    T_RUN(timestamps);
    T_RUN(arrays);
    T_RUN(row);
    T_RUN(lsn);
    return T_DONE();
}
