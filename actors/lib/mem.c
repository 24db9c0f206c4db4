/*
 * mem.c - abort-on-exhaustion allocators (see mem.h).
 */
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef TETHER_TEST
static unsigned long mem_countdown;

void mem_fail_after(unsigned long n)
{
    mem_countdown = n;
}

static int mem_should_fail(void)
{
    return mem_countdown > 0 && --mem_countdown == 0;
}
#else
#define mem_should_fail() 0
#endif

/* Cannot use the logger here: it may itself be what failed to allocate. */
static void mem_oom(size_t n)
{
    char line[160];
    int len = snprintf(line, sizeof(line),
                       "{\"lvl\":\"error\",\"event\":\"mem.oom\",\"msg\":\"out of memory "
                       "allocating %zu bytes\"}\n",
                       n);
    if (len > 0)
        (void)!write(2, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = mem_should_fail() ? NULL : malloc(n ? n : 1);
    if (!p)
        mem_oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = mem_should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
    if (!p)
        mem_oom(count * size);
    return p;
}

void *xrealloc(void *old, size_t n)
{
    void *p = mem_should_fail() ? NULL : realloc(old, n ? n : 1);
    if (!p)
        mem_oom(n);
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}
