/*
 * mem.h - allocation that never returns NULL.
 *
 * On exhaustion these log one line and abort(): the supervisor restarts the
 * process, which is safer than limping on. Sizes that come from the wire
 * must be checked against a limit before they reach these functions.
 * Test builds (-DTETHER_TEST) can make the Nth allocation fail to exercise
 * the abort path; see mem_fail_after().
 */
#ifndef TETHER_LIB_MEM_H
#define TETHER_LIB_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#ifdef TETHER_TEST
/* The allocation after n more succeed fails (and aborts); 0 turns it off. */
void mem_fail_after(unsigned long n);
#endif

#endif
