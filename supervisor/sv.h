/*
 * sv.h - the supervisor's state: the children it runs, the restart policy,
 * the leader lock and the control socket.
 *
 * The supervisor keeps no business state (like PostgreSQL's postmaster): it
 * forks children from a table, watches them, restarts them, and answers
 * operators. Everything runs on one poll loop; signals and child
 * readiness arrive as fd events.
 */
#ifndef TETHER_SV_H
#define TETHER_SV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "bus.h"
#include "tap_filter.h"
#include "cfg.h"
#include "db_redis_async.h"
#include "loop.h"
#include "msg_sv.h"

#define SV_MAX_CHILDREN 32
#define SV_MAX_DEPS 6
#define SV_NAME_MAX (MSG_SV_NAME_MAX + 1)
#define SV_TALLY 32 /* deaths remembered for the intensity limit */

/* What a child is doing. */
enum sv_state {
    SV_DOWN,     /* not running; waiting for its dependencies, the leader lock or a start */
    SV_STARTING, /* spawned, not yet ready (s6 'u') */
    SV_UP,       /* reported ready (s6 'U') */
    SV_BACKOFF,  /* died; waiting out the restart delay */
    SV_STOPPING, /* sent SIGTERM; waiting for it to exit (SIGKILL after the grace) */
    SV_STOPPED,  /* stopped by an operator; stays down until started */
    SV_FAILED,   /* exit 100, or too many deaths: given up on until started */
};

/* One row of the children table (children.c). */
struct sv_spec {
    const char *name;              /* base name, also the actor's bus name */
    const char *bin;               /* binary in the bin directory */
    const char *deps[SV_MAX_DEPS]; /* base names that must be up first */
    bool leader_only;              /* runs only while this node holds the leader lock */
    bool events;                   /* publishes events (actor_events_open) */
    const char *instances_env;     /* variable giving the instance count, or NULL for 1 */
};

struct sv_child {
    char name[SV_NAME_MAX]; /* "gateway.1" or "run-manager" */
    const struct sv_spec *spec;
    unsigned instance;
    enum sv_state state;
    bool want_up; /* operator intent: false after stop */
    pid_t pid;
    int notify_fd; /* read end of the readiness pipe, -1 if none */
    uint64_t spawned_mono, ready_mono;
    uint64_t last_spawn_mono;
    uint64_t timer;            /* backoff or kill timer id */
    unsigned restarts;         /* unexpected deaths followed by a restart */
    unsigned consecutive;      /* deaths without a stable run in between */
    uint64_t deaths[SV_TALLY]; /* ring of death times, for the intensity limit */
    unsigned ndeaths;
    char last_exit[48];     /* "exit 1", "signal 9" */
    unsigned events_port;   /* its tcp:// event socket on a clustered node, or 0 */
    unsigned requests_port; /* leader-only: its tcp:// request socket there, or 0 */
};

struct sv_fault {
    char target[SV_NAME_MAX];
    struct bus_fault f;
};

struct sv_cfg {
    char *bin_dir;
    long long min_restart_ms; /* s6: at least this between two spawns */
    long long backoff_max_ms;
    long long stable_ms;     /* ready this long resets the backoff */
    long long intensity;     /* this many deaths ... */
    long long period_ms;     /* ... within this window: failed */
    long long kill_after_ms; /* SIGKILL this long after SIGTERM beyond the child's grace */
    long long leader_ttl_ms;
    long long start_timeout_ms;
    char *leader_key;
    long long gateway_procs;
    char *control_url;
    char *node_addr;       /* TETHER_NODE_ADDR: "" for a node alone */
    long long events_port; /* TETHER_BUS_EVENTS_PORT: the first event socket's */
    long long leader_port; /* TETHER_BUS_LEADER_PORT: the leader-only actor's */
    long long node_ttl_ms; /* TETHER_SV_NODE_TTL: unheard this long, a node is gone */
};

#define SV_CLUSTER_NODES 32

struct sv {
    struct cfg_common cfg;
    struct sv_cfg sv;
    struct loop loop;
    struct bus *bus;
    struct bus_pub *events;
    char bus_dir[BUS_URL_MAX];
    char node[64];

    struct sv_child children[SV_MAX_CHILDREN];
    unsigned nchildren;
    int parent_pipe[2]; /* children hold [0]; EOF there means we died */

    struct sv_fault faults[SV_MAX_CHILDREN];
    unsigned nfaults;

    /* tap listeners that registered a filter (taps.c) */
    struct sv_tap {
        char id[MSG_SV_TAP_ID_MAX + 1];
        uint64_t until_mono;
        struct tap_filter f;
    } taps[TAP_FILTERS_MAX];
    unsigned ntaps;

    /* leader lock */
    struct db_redis_async *redis; /* the lock's own connection; never blocks the loop */
    int leader_op;                /* enum sv_leader_op in flight (leader.c), 0 = none */
    char lock_owner[96];          /* "<node>:<pid>" */
    bool leader;
    uint64_t fencing_token;
    char lock_value[128];
    uint64_t leader_renewed_mono;
    bool leader_retry_armed; /* a try at another node's lock expiry is scheduled */

    /* the cluster registry (cluster.c) */
    uint64_t started_ms; /* wall clock, for the record */
    bool cluster_busy;   /* a registry step awaits its answer */
    bool cluster_warned;
    void *cluster_body; /* the last cluster.members body, for sv.status */
    size_t cluster_body_n;
    unsigned cluster_nodes;
    char cluster_leader[64];

    bool stopping;  /* SIGTERM received: stop everything, then exit */
    bool fast_stop; /* a second SIGTERM: SIGKILL at once */
    int lock_fd;
};

/* children.c */
extern const struct sv_spec sv_specs[];
extern const unsigned sv_nspecs;
err_t sv_children_build(struct sv *sv);
struct sv_child *sv_child_find(struct sv *sv, const char *name);

/* child.c: the state machine */
const char *sv_state_name(enum sv_state s);
void sv_reconcile(struct sv *sv); /* moves every child toward what it should be */
void sv_child_exited(struct sv *sv, pid_t pid, int status);
void sv_child_start(struct sv *sv, struct sv_child *c); /* operator: start (clears FAILED) */
void sv_child_stop(struct sv *sv, struct sv_child *c);  /* operator: stop, stay down */
void sv_child_restart(struct sv *sv, struct sv_child *c);
bool sv_all_down(const struct sv *sv);
void sv_kill_all(struct sv *sv); /* SIGKILL everything still alive */

/* leader.c */
err_t sv_leader_open(struct sv *sv); /* after the loop exists; connects lazily */
void sv_leader_close(struct sv *sv);
void sv_leader_tick(struct sv *sv); /* acquire or renew; stops leader children on loss */
/* Sends the release if the lock is ours; true when an answer is to come (sv_leader_busy). */
bool sv_leader_release(struct sv *sv);
bool sv_leader_busy(const struct sv *sv); /* a leader command awaits its answer */

/* cluster.c */
void sv_cluster_assign_ports(struct sv *sv);  /* after sv_children_build */
bool sv_has_events(const struct sv_child *c); /* has a tcp:// event socket */
void sv_cluster_tick(struct sv *sv);          /* every second: register, read, publish */
bool sv_cluster_leave(struct sv *sv);         /* on a clean stop; true: an answer is to come */
bool sv_cluster_busy(const struct sv *sv);
void sv_cluster_free(struct sv *sv);

/* control.c */
err_t sv_control_open(struct sv *sv);
void sv_faults_publish(struct sv *sv);
const struct bus_fault *sv_fault_for(const struct sv *sv, const struct sv_child *c);

/* taps.c: the tap listeners' filters. sv.tap_filter (a handler as actor.h's), and bus.tap
 * published (and applied to the supervisor's own tap) after each change and every second, once
 * the stale ones are gone. */
err_t sv_taps_on_filter(struct sv *sv, struct bus_req *req);
void sv_taps_publish(struct sv *sv);

#endif
