/*
 * pgo.c - pgoutput (proto_version 1) decoding and the ClickHouse row of a session.
 *
 * Pure functions over bytes: no I/O, no allocation except the output jbuf, so
 * tests/unit/actors/clickhouse_replicator/pgo_test.c drives them with crafted
 * messages. Every length comes from the wire and is checked before use.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chr.h"

const char *const chr_col_names[CHR_NCOLS] = {
    [CHR_COL_ID] = "id",
    [CHR_COL_FRIENDLY_ID] = "friendly_id",
    [CHR_COL_EXTERNAL_ID] = "external_id",
    [CHR_COL_TYPE] = "type",
    [CHR_COL_PROJECT_ID] = "project_id",
    [CHR_COL_ENV_ID] = "runtime_environment_id",
    [CHR_COL_ORG_ID] = "organization_id",
    [CHR_COL_ENV_TYPE] = "environment_type",
    [CHR_COL_TASK] = "task_identifier",
    [CHR_COL_TAGS] = "tags",
    [CHR_COL_METADATA] = "metadata",
    [CHR_COL_CLOSED_AT] = "closed_at",
    [CHR_COL_CLOSED_REASON] = "closed_reason",
    [CHR_COL_EXPIRES_AT] = "expires_at",
    [CHR_COL_CREATED_AT] = "created_at",
    [CHR_COL_UPDATED_AT] = "updated_at",
};

struct chr_rd {
    const unsigned char *p, *end;
    bool bad;
};

static uint64_t chr_rd_be(struct chr_rd *r, unsigned bytes)
{
    uint64_t v = 0;
    if (r->bad || (size_t)(r->end - r->p) < bytes) {
        r->bad = true;
        return 0;
    }
    for (unsigned i = 0; i < bytes; i++)
        v = (v << 8) | r->p[i];
    r->p += bytes;
    return v;
}

/* A NUL-terminated string on the wire; NULL (and bad) when it has no NUL. */
static const char *chr_rd_cstr(struct chr_rd *r)
{
    if (r->bad)
        return NULL;
    const unsigned char *z = memchr(r->p, '\0', (size_t)(r->end - r->p));
    if (!z) {
        r->bad = true;
        return NULL;
    }
    const char *s = (const char *)r->p;
    r->p = z + 1;
    return s;
}

static struct chr_rel *chr_pgo_rel(struct chr_pgo *p, uint32_t oid)
{
    for (unsigned i = 0; i < p->nrels; i++)
        if (p->rels[i].oid == oid)
            return &p->rels[i];
    return NULL;
}

/* Reads a TupleData into vals through rel's column map. */
static void chr_rd_tuple(struct chr_rd *r, const struct chr_rel *rel, struct chr_val *vals)
{
    uint16_t n = (uint16_t)chr_rd_be(r, 2);
    memset(vals, 0, sizeof(struct chr_val) * CHR_NCOLS);
    for (uint16_t i = 0; i < n && !r->bad; i++) {
        unsigned char kind = (unsigned char)chr_rd_be(r, 1);
        struct chr_val v = {0};
        if (kind == 'n') {
            v.present = v.null = true;
        } else if (kind == 't' || kind == 'b') {
            uint32_t len = (uint32_t)chr_rd_be(r, 4);
            if (r->bad || (size_t)(r->end - r->p) < len) {
                r->bad = true;
                return;
            }
            v.present = true;
            v.p = (const char *)r->p;
            v.n = len;
            r->p += len;
        } else if (kind != 'u') {
            r->bad = true;
            return;
        }
        if (rel && i < rel->ncols && i < CHR_PGO_MAXCOLS && rel->map[i] >= 0)
            vals[rel->map[i]] = v;
    }
}

err_t chr_pgo_decode(struct chr_pgo *p, const unsigned char *buf, size_t n, struct chr_pgo_msg *m)
{
    struct chr_rd r = {buf, buf + n, false};
    memset(m, 0, sizeof(*m));
    if (n < 1)
        return ERR_PROTO;
    unsigned char tag = (unsigned char)chr_rd_be(&r, 1);
    switch (tag) {
    case 'B':
        m->kind = CHR_PGO_BEGIN;
        m->lsn = chr_rd_be(&r, 8);
        m->ts_us = chr_rd_be(&r, 8);
        (void)chr_rd_be(&r, 4);
        break;
    case 'C':
        m->kind = CHR_PGO_COMMIT;
        (void)chr_rd_be(&r, 1);
        (void)chr_rd_be(&r, 8);     /* commit lsn */
        m->lsn = chr_rd_be(&r, 8);  /* end lsn: the version, and what an ack names */
        m->ts_us = chr_rd_be(&r, 8);
        break;
    case 'R': {
        m->kind = CHR_PGO_RELATION;
        uint32_t oid = (uint32_t)chr_rd_be(&r, 4);
        (void)chr_rd_cstr(&r);
        const char *name = chr_rd_cstr(&r);
        (void)chr_rd_be(&r, 1);
        uint16_t nc = (uint16_t)chr_rd_be(&r, 2);
        if (r.bad || nc > CHR_PGO_MAXCOLS)
            return ERR_PROTO;
        struct chr_rel *rel = chr_pgo_rel(p, oid);
        if (!rel) {
            if (p->nrels == CHR_PGO_MAXREL)
                return ERR_PROTO;
            rel = &p->rels[p->nrels++];
        }
        memset(rel, 0, sizeof(*rel));
        rel->oid = oid;
        snprintf(rel->name, sizeof(rel->name), "%s", name ? name : "");
        rel->ncols = nc;
        for (uint16_t i = 0; i < nc; i++) {
            (void)chr_rd_be(&r, 1);
            const char *col = chr_rd_cstr(&r);
            (void)chr_rd_be(&r, 8); /* type oid, typmod */
            rel->map[i] = -1;
            for (int c = 0; col && c < CHR_NCOLS; c++)
                if (strcmp(col, chr_col_names[c]) == 0)
                    rel->map[i] = (int8_t)c;
        }
        m->relid = oid;
        m->rel = rel;
        break;
    }
    case 'I':
    case 'U':
    case 'D': {
        m->kind = tag == 'I' ? CHR_PGO_INSERT : tag == 'U' ? CHR_PGO_UPDATE : CHR_PGO_DELETE;
        m->relid = (uint32_t)chr_rd_be(&r, 4);
        m->rel = chr_pgo_rel(p, m->relid);
        unsigned char t = (unsigned char)chr_rd_be(&r, 1);
        struct chr_val old[CHR_NCOLS];
        memset(old, 0, sizeof(old));
        if (t == 'K' || t == 'O') {
            chr_rd_tuple(&r, m->rel, tag == 'D' ? m->vals : old);
            if (tag == 'D')
                break;
            t = (unsigned char)chr_rd_be(&r, 1);
        }
        if (tag == 'D' || t != 'N')
            return ERR_PROTO;
        chr_rd_tuple(&r, m->rel, m->vals);
        /* an unchanged TOASTed value is absent from the new row: the old row (REPLICA
         * IDENTITY FULL) has it */
        for (int c = 0; c < CHR_NCOLS; c++)
            if (!m->vals[c].present && old[c].present)
                m->vals[c] = old[c];
        break;
    }
    default:
        m->kind = CHR_PGO_OTHER;
        return OK;
    }
    return r.bad ? ERR_PROTO : OK;
}

static bool chr_digits(const char *s, size_t n, unsigned k, int *out)
{
    int v = 0;
    if (n < k)
        return false;
    for (unsigned i = 0; i < k; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool chr_pg_ts_ms(const char *s, size_t n, uint64_t *ms)
{
    int y, mo, d, h, mi, sec, frac = 0;
    size_t i = 19;
    if (n < 19 || !chr_digits(s, n, 4, &y) || s[4] != '-' || !chr_digits(s + 5, n - 5, 2, &mo) ||
        s[7] != '-' || !chr_digits(s + 8, n - 8, 2, &d) || (s[10] != ' ' && s[10] != 'T') ||
        !chr_digits(s + 11, n - 11, 2, &h) || s[13] != ':' ||
        !chr_digits(s + 14, n - 14, 2, &mi) || s[16] != ':' ||
        !chr_digits(s + 17, n - 17, 2, &sec))
        return false;
    if (i < n && s[i] == '.') {
        int scale = 100;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            frac += (s[i] - '0') * scale;
            scale /= 10;
        }
    }
    /* the replication session runs with TimeZone=UTC: the offset is +00 */
    if (i < n && !((n - i == 3 && memcmp(s + i, "+00", 3) == 0) ||
                   (n - i == 6 && memcmp(s + i, "+00:00", 6) == 0) || (n - i == 1 && s[i] == 'Z')))
        return false;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t < 0)
        return false;
    *ms = (uint64_t)t * 1000u + (uint64_t)frac;
    return true;
}

bool chr_pg_array_json(const char *s, size_t n, struct jbuf *out)
{
    size_t i = 1;
    bool first = true;
    if (n < 2 || s[0] != '{' || s[n - 1] != '}')
        return false;
    jbuf_puts(out, "[");
    while (i < n - 1) {
        struct jbuf el = {0};
        bool quoted = false;
        if (s[i] == '"') {
            quoted = true;
            for (i++; i < n - 1 && s[i] != '"'; i++) {
                if (s[i] == '\\' && i + 1 < n - 1)
                    i++;
                jbuf_put(&el, s + i, 1);
            }
            if (i >= n - 1) {
                jbuf_free(&el);
                return false;
            }
            i++; /* closing quote */
        } else {
            size_t st = i;
            while (i < n - 1 && s[i] != ',')
                i++;
            jbuf_put(&el, s + st, i - st);
        }
        /* an unquoted NULL is SQL NULL: ClickHouse's Array(String) has no place for it */
        if (quoted || el.n != 4 || memcmp(el.p, "NULL", 4) != 0) {
            if (!first)
                jbuf_puts(out, ",");
            jbuf_str(out, el.p ? el.p : "", el.n, 0);
            first = false;
        }
        jbuf_free(&el);
        if (i < n - 1) {
            if (s[i] != ',')
                return false;
            i++;
        }
    }
    jbuf_puts(out, "]");
    return true;
}

static void chr_json_str_or_null(struct jbuf *b, const char *k, const struct chr_val *v)
{
    jbuf_fmt(b, ",\"%s\":", k);
    if (!v->present || v->null)
        jbuf_puts(b, "null");
    else
        jbuf_str(b, v->p, v->n, 0);
}

static void chr_json_str(struct jbuf *b, const char *k, const struct chr_val *v)
{
    jbuf_fmt(b, ",\"%s\":", k);
    jbuf_str(b, v->present && !v->null ? v->p : "", v->present && !v->null ? v->n : 0, 0);
}

/* A nullable timestamp as DateTime seconds; false when the text is not a timestamp. */
static bool chr_json_ts(struct jbuf *b, const char *k, const struct chr_val *v, uint64_t *ms)
{
    *ms = 0;
    jbuf_fmt(b, ",\"%s\":", k);
    if (!v->present || v->null) {
        jbuf_puts(b, "null");
        return true;
    }
    if (!chr_pg_ts_ms(v->p, v->n, ms))
        return false;
    jbuf_fmt(b, "%" PRIu64, *ms / 1000);
    return true;
}

err_t chr_row_json(const struct chr_val *v, uint64_t version, bool deleted, struct jbuf *b)
{
    uint64_t cms = 0, ums = 0, ignore;
    /* the key columns must be there: a row without them cannot be placed */
    static const int required[] = {CHR_COL_ID, CHR_COL_ORG_ID, CHR_COL_PROJECT_ID, CHR_COL_ENV_ID,
                                   CHR_COL_CREATED_AT};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!v[required[i]].present || v[required[i]].null)
            return ERR_INVAL;
    jbuf_puts(b, "{\"organization_id\":");
    jbuf_str(b, v[CHR_COL_ORG_ID].p, v[CHR_COL_ORG_ID].n, 0);
    chr_json_str(b, "project_id", &v[CHR_COL_PROJECT_ID]);
    chr_json_str(b, "environment_id", &v[CHR_COL_ENV_ID]);
    chr_json_str(b, "environment_type", &v[CHR_COL_ENV_TYPE]);
    chr_json_str(b, "session_id", &v[CHR_COL_ID]);
    chr_json_str(b, "friendly_id", &v[CHR_COL_FRIENDLY_ID]);
    chr_json_str_or_null(b, "external_id", &v[CHR_COL_EXTERNAL_ID]);
    chr_json_str(b, "type", &v[CHR_COL_TYPE]);
    chr_json_str(b, "task_identifier", &v[CHR_COL_TASK]);
    jbuf_puts(b, ",\"tags\":");
    const struct chr_val *t = &v[CHR_COL_TAGS];
    if (!t->present || t->null)
        jbuf_puts(b, "[]");
    else if (!chr_pg_array_json(t->p, t->n, b))
        return ERR_INVAL;
    /* stored wrapped, as upstream: {"data": <metadata or null>} */
    const struct chr_val *md = &v[CHR_COL_METADATA];
    struct jbuf w = {0};
    jbuf_puts(&w, "{\"data\":");
    if (md->present && !md->null)
        jbuf_put(&w, md->p, md->n);
    else
        jbuf_puts(&w, "null");
    jbuf_puts(&w, "}");
    jbuf_puts(b, ",\"metadata\":");
    jbuf_str(b, w.p, w.n, 0);
    jbuf_free(&w);
    if (!chr_json_ts(b, "closed_at", &v[CHR_COL_CLOSED_AT], &ignore))
        return ERR_INVAL;
    chr_json_str_or_null(b, "closed_reason", &v[CHR_COL_CLOSED_REASON]);
    if (!chr_json_ts(b, "expires_at", &v[CHR_COL_EXPIRES_AT], &ignore) ||
        !chr_json_ts(b, "created_at", &v[CHR_COL_CREATED_AT], &cms))
        return ERR_INVAL;
    if (v[CHR_COL_UPDATED_AT].present && !v[CHR_COL_UPDATED_AT].null) {
        if (!chr_json_ts(b, "updated_at", &v[CHR_COL_UPDATED_AT], &ums))
            return ERR_INVAL;
    } else {
        ums = cms;
        jbuf_fmt(b, ",\"updated_at\":%" PRIu64, cms / 1000);
    }
    jbuf_fmt(b, ",\"created_at_ms\":%" PRIu64 ",\"updated_at_ms\":%" PRIu64, cms, ums);
    jbuf_fmt(b, ",\"_version\":%" PRIu64 ",\"_is_deleted\":%d}\n", version, deleted ? 1 : 0);
    return b->err;
}

void chr_lsn_fmt(uint64_t lsn, char *buf, size_t cap)
{
    snprintf(buf, cap, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}

bool chr_lsn_parse(const char *s, uint64_t *lsn)
{
    unsigned hi, lo;
    char tail;
    if (!s || sscanf(s, "%X/%X%c", &hi, &lo, &tail) != 2)
        return false;
    *lsn = ((uint64_t)hi << 32) | lo;
    return true;
}
