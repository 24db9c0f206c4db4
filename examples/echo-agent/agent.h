/*
 * agent.h - the echo agent's shared state and its runs.
 *
 * main.c owns one struct ea_agent: configuration, the shutdown flags and the
 * lock runs use to say they ended. run.c executes one dequeued run per
 * thread (plus a heartbeat thread, heartbeat.c): follow the session's .in
 * (follow.c), answer each record on .out (out.c), then complete, fail or
 * abandon the run (end.c).
 */
#ifndef ECHO_AGENT_AGENT_H
#define ECHO_AGENT_AGENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <jansson.h>

#include "ea.h"

struct ea_cfg {
    char url[1024];      /* TETHER_URL, no trailing '/' */
    char key[512];       /* TETHER_SECRET_KEY; never logged */
    char task[257];      /* TETHER_ECHO_TASK */
    int max_runs;        /* TETHER_ECHO_MAX_RUNS, 1..EA_MAX_RUNS_CAP */
    int lease_s;         /* TETHER_ECHO_LEASE_SECONDS: leaseSeconds of dequeue and heartbeats */
    int sleep_s;         /* TETHER_ECHO_SLEEP_SECONDS: an idle run suspends on .in this long at
                            most (0: it completes when idle) */
    char worker_id[129]; /* echo-<hostname>-<pid>: who holds our leases */
};

struct ea_agent {
    struct ea_cfg cfg;
    /* Set by main, read by every run thread. */
    atomic_int stopping; /* shutting down: stop following .in, complete the run */
    atomic_int abandon;  /* the grace is over: stop at once, report nothing */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast (under mu) when a run's thread is about to end */
};

struct ea_run; /* one dequeued run and its threads */

/*
 * Starts the run described by one element of a dequeue answer (`desc` stays
 * the caller's). On EA_OK *out is the running run, to be reaped with
 * ea_run_join(). On error nothing runs, the failure is logged, and the run
 * is left to its lease. Called by main's thread only.
 */
ea_err_t ea_run_start(struct ea_agent *ag, const json_t *desc, struct ea_run **out);

/* True once the run's thread has finished its work (ea_run_join will not wait long). */
bool ea_run_ended(struct ea_run *r);

/* Waits for the run's threads and frees it. */
void ea_run_join(struct ea_run *r);

#endif
