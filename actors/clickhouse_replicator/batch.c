/*
 * batch.c - a batch of rows on its way to ClickHouse: one row per session
 * (the latest change wins), found through an open-addressing hash of the
 * session ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chr.h"
#include "mem.h"

void chr_batch_clear(struct chr_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->rows[i].json);
    if (b->_hash && b->n)
        memset(b->_hash, 0, b->_hcap * sizeof(*b->_hash));
    b->n = 0;
    b->oldest_commit_us = 0;
}

void chr_batch_fini(struct chr_batch *b)
{
    chr_batch_clear(b);
    free(b->rows);
    free(b->_hash);
    b->rows = NULL;
    b->_hash = NULL;
    b->cap = b->_hcap = 0;
}

static size_t chr_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

/* The slot of sid in b's hash: where it is, or the empty one where it would go. */
static size_t chr_batch_slot(const struct chr_batch *b, const char *sid)
{
    size_t mask = b->_hcap - 1, i = chr_hash(sid) & mask;
    while (b->_hash[i] && strcmp(b->rows[b->_hash[i] - 1].session_id, sid) != 0)
        i = (i + 1) & mask;
    return i;
}

static void chr_batch_rehash(struct chr_batch *b, size_t hcap)
{
    free(b->_hash);
    b->_hcap = hcap;
    b->_hash = xcalloc(hcap, sizeof(*b->_hash));
    for (size_t i = 0; i < b->n; i++)
        b->_hash[chr_batch_slot(b, b->rows[i].session_id)] = (uint32_t)(i + 1);
}

void chr_batch_add(struct chr_batch *b, const char *sid, uint64_t lsn, char *json, size_t n)
{
    if (b->_hcap < 2 * (b->n + 1))
        chr_batch_rehash(b, b->_hcap ? b->_hcap * 2 : 128);
    /* the latest change of a row wins within a batch: one row per session per insert */
    size_t slot = chr_batch_slot(b, sid);
    if (b->_hash[slot]) {
        struct chr_row *r = &b->rows[b->_hash[slot] - 1];
        free(r->json);
        r->json = json;
        r->n = n;
        r->lsn = lsn;
        return;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->rows = xrealloc(b->rows, b->cap * sizeof(*b->rows));
    }
    struct chr_row *r = &b->rows[b->n];
    snprintf(r->session_id, sizeof(r->session_id), "%s", sid);
    r->lsn = lsn;
    r->json = json;
    r->n = n;
    b->n++;
    b->_hash[slot] = (uint32_t)b->n;
}
