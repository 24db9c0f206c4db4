/*
 * backoff.c - exponential backoff with jitter.
 */
#include "backoff.h"

#include <stdlib.h>

#include "clock.h"

bool backoff_ready(const struct backoff *b)
{
    return clock_mono_ms() >= b->next_mono;
}

void backoff_fail(struct backoff *b)
{
    uint32_t d = b->cur_ms ? b->cur_ms * 2 : b->min_ms;
    if (d > b->max_ms)
        d = b->max_ms;
    b->cur_ms = d;
    /* +-25% so that many processes losing one store do not reconnect in lockstep */
    uint32_t span = d / 2;
    uint32_t jitter = span ? (uint32_t)(rand() % (int)span) : 0;
    b->next_mono = clock_mono_ms() + d - d / 4 + jitter;
}

void backoff_reset(struct backoff *b)
{
    b->cur_ms = 0;
    b->next_mono = 0;
}
