/*
 * proc.h - how a process talks to its supervisor.
 *
 * Readiness (s6's notification-fd): when the process is really ready (bus
 * bound, store reachable) it writes "\n" to $TETHER_NOTIFY_FD and closes
 * it. Supervisor death (PostgreSQL's postmaster-death pipe): the supervisor
 * holds the write end of a pipe whose read end is $TETHER_PARENT_FD; EOF
 * on it means the supervisor is gone and the process must exit.
 * Exit codes (s6): 0 clean stop, 100 permanent failure (do not restart),
 * 111 temporary failure (restart with backoff).
 */
#ifndef TETHER_LIB_PROC_H
#define TETHER_LIB_PROC_H

#include <stdbool.h>

#define EXIT_PERMANENT 100
#define EXIT_TEMPORARY 111

/* Tells the supervisor we are ready; a no-op when not supervised or already done. */
void proc_notify_ready(void);

/* The parent-death fd to watch for EOF (POLLIN/POLLHUP), or -1 when not supervised. */
int proc_parent_fd(void);

/* True when fd's readiness means EOF (the supervisor died). Reads what is there. */
bool proc_parent_gone(int fd);

/* Instance number given by the supervisor (TETHER_INSTANCE), 0 by default. */
unsigned proc_instance(void);

/* Name given by the supervisor (TETHER_CHILD_NAME), or fallback. */
const char *proc_child_name(const char *fallback);

#endif
