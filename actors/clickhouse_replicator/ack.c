/*
 * ack.c - the acknowledgements: standby status updates to PostgreSQL naming
 * safe_lsn (everything up to it is in ClickHouse), sent only after the fence
 * still names our token, when there is something new, when the server asks,
 * or every status_ms.
 */
#include <poll.h>

#include "chr.h"
#include "clock.h"

static void chr_send_status(struct chr *chr)
{
    unsigned char m[34];
    uint64_t lsn = chr->safe_lsn;
    uint64_t now_us = (clock_wall_ms() - CHR_PG_EPOCH_MS) * 1000;
    if (!chr->conn || chr->state != CHR_STREAMING)
        return;
    m[0] = 'r';
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 8; i++)
            m[1 + k * 8 + i] = (unsigned char)(lsn >> (56 - 8 * i));
    for (int i = 0; i < 8; i++)
        m[25 + i] = (unsigned char)(now_us >> (56 - 8 * i));
    m[33] = 0;
    if (PQputCopyData(chr->conn, (const char *)m, sizeof(m)) != 1) {
        chr_conn_drop(chr, "status update");
        return;
    }
    int f = PQflush(chr->conn);
    if (f < 0) {
        chr_conn_drop(chr, "status update");
        return;
    }
    if (f == 1)
        chr_watch(chr, POLLIN | POLLOUT);
    if (lsn > chr->acked_lsn)
        chr->acked_lsn = lsn;
    chr->reply_requested = false;
    chr->last_status_mono = clock_mono_ms();
}

static void chr_on_fence_for_ack(struct chr *chr, bool ok, void *arg)
{
    (void)arg;
    chr->ack_busy = false;
    if (!ok) {
        chr_fenced(chr);
        return;
    }
    chr_send_status(chr);
}

void chr_ack_maybe(struct chr *chr, bool force)
{
    if (chr->ack_busy || chr->fenced || chr->state != CHR_STREAMING)
        return;
    bool due = clock_mono_ms() - chr->last_status_mono >= (uint64_t)chr->cfg.status_ms;
    if (!(chr->safe_lsn > chr->acked_lsn || force || chr->reply_requested || due))
        return;
    chr->ack_busy = true;
    chr_fence_check(chr, chr_on_fence_for_ack, NULL);
}

void chr_status_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    chr_ack_maybe(chr, false);
    chr->status_timer = loop_timer_add(l, (uint64_t)chr->cfg.status_ms, chr_status_timer, chr);
}
