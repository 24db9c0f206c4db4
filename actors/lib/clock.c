/*
 * clock.c - monotonic and wall clocks in milliseconds (and the monotonic one in microseconds).
 */
#include "clock.h"

#include <stdio.h>
#include <time.h>

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t clock_mono_ms(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000000u;
}

uint64_t clock_mono_us(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000u;
}

uint64_t clock_wall_ms(void)
{
    return clock_ns(CLOCK_REALTIME) / 1000000u;
}

void clock_iso8601(uint64_t wall_ms, char *buf, size_t cap)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    if (cap == 0)
        return;
    if (gmtime_r(&secs, &tm) == NULL) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall_ms % 1000));
}
