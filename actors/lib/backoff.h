/*
 * backoff.h - exponential backoff with jitter for reconnecting to stores.
 */
#ifndef TETHER_LIB_BACKOFF_H
#define TETHER_LIB_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

struct backoff {
    uint32_t min_ms, max_ms, cur_ms;
    uint64_t next_mono; /* no attempt before this */
};

#define BACKOFF_INIT(min, max) {(min), (max), 0, 0}

/* True when an attempt may be made now. */
bool backoff_ready(const struct backoff *b);
/* Records a failure: the next attempt waits min..max, doubling, with +-25% jitter. */
void backoff_fail(struct backoff *b);
/* Records a success: the next failure starts from min again. */
void backoff_reset(struct backoff *b);

#endif
