/*
 * clock.h - the two clocks: monotonic for timers and durations, wall for
 * anything that crosses processes or nodes (bus deadlines, timestamps).
 */
#ifndef TETHER_LIB_CLOCK_H
#define TETHER_LIB_CLOCK_H

#include <stddef.h>
#include <stdint.h>

uint64_t clock_mono_ms(void);
uint64_t clock_mono_us(void); /* for durations finer than a millisecond (metrics) */
uint64_t clock_wall_ms(void);

/* Formats wall-clock ms as "2026-11-21T16:28:00.123Z" into buf (>= 25 bytes). */
void clock_iso8601(uint64_t wall_ms, char *buf, size_t cap);

#endif
