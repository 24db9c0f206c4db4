/*
 * supervisor - starts the gateway and the actors of one node, restarts them,
 * holds the leader lock and answers tetherctl.
 *
 * Signals: SIGTERM/SIGINT stop every child in reverse dependency order
 * (SIGTERM, then SIGKILL after its grace) and exit 0; a second one kills
 * everything at once. SIGCHLD reaps. Exit codes: 0 clean stop, 100 bad
 * configuration or another supervisor already running on this run dir,
 * 111 could not set up the loop or the bus.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "pmetrics.h"
#include "proc.h"
#include "sv.h"

#define SV_OFF(f) offsetof(struct sv_cfg, f)

static const struct cfg_def sv_cfg_defs[] = {
    {"TETHER_BIN_DIR", CFG_STR, "", 0, 0, SV_OFF(bin_dir),
     "directory of the child binaries; empty means the supervisor's own directory"},
    {"TETHER_SV_MIN_RESTART", CFG_MS, "1s", 0, 600000, SV_OFF(min_restart_ms),
     "least time between two starts of one child"},
    {"TETHER_SV_BACKOFF_MAX", CFG_MS, "30s", 0, 3600000, SV_OFF(backoff_max_ms),
     "longest restart delay of a child that keeps dying before it is stable"},
    {"TETHER_SV_STABLE", CFG_MS, "10s", 0, 3600000, SV_OFF(stable_ms),
     "ready this long and a child's restart backoff starts over"},
    {"TETHER_SV_INTENSITY", CFG_INT, "10", 1, SV_TALLY, SV_OFF(intensity),
     "deaths within TETHER_SV_PERIOD after which a child is marked failed"},
    {"TETHER_SV_PERIOD", CFG_MS, "60s", 100, 86400000, SV_OFF(period_ms),
     "window of the restart-intensity limit"},
    {"TETHER_SV_KILL_AFTER", CFG_MS, "5s", 0, 600000, SV_OFF(kill_after_ms),
     "SIGKILL a stopping child this long after its own TETHER_SHUTDOWN_GRACE"},
    {"TETHER_SV_LEADER_TTL", CFG_MS, "10s", 3000, 600000, SV_OFF(leader_ttl_ms),
     "time to live of the leader lock; renewed every sixth of it, given up after half"},
    {"TETHER_SV_START_TIMEOUT", CFG_MS, "10s", 100, 600000, SV_OFF(start_timeout_ms),
     "a dependency not ready after this long no longer holds back its dependents"},
    {"TETHER_SV_LEADER_KEY", CFG_STR, "{tether:leader}", 0, 0, SV_OFF(leader_key),
     "Redis key of the leader lock (its fencing counter is <key>:fence)"},
    {"TETHER_GATEWAY_PROCS", CFG_INT, "2", 1, 16, SV_OFF(gateway_procs),
     "gateway processes sharing the HTTP port (SO_REUSEPORT)"},
    {"TETHER_SV_CONTROL_URL", CFG_STR, "", 0, 0, SV_OFF(control_url),
     "control socket; empty means ipc://<bus dir>/supervisor.ipc"},
    {"TETHER_NODE_ADDR", CFG_STR, "", 0, 0, SV_OFF(node_addr),
     "address (IP or host name) other nodes reach this node's event sockets at; empty: a node "
     "alone, its event sockets are ipc:// only"},
    {"TETHER_BUS_EVENTS_PORT", CFG_INT, "7480", 1, 65000, SV_OFF(events_port),
     "first TCP port of this node's event sockets when TETHER_NODE_ADDR is set: one per "
     "instance of the session-manager, run-manager, stream-broker and waitpoint-registry, "
     "consecutive"},
    {"TETHER_BUS_LEADER_PORT", CFG_INT, "7479", 1, 65535, SV_OFF(leader_port),
     "TCP port of the leader-only actor's request socket (the clickhouse-replicator's) when "
     "TETHER_NODE_ADDR is set: other nodes' gateways send it their session lists"},
    {"TETHER_SV_NODE_TTL", CFG_MS, "5s", 2000, 600000, SV_OFF(node_ttl_ms),
     "a node whose registry record is not refreshed this long is gone from the cluster view"},
};

static void sv_on_signal(struct loop *l, int signo, void *arg)
{
    struct sv *sv = arg;
    (void)l;
    if (signo == SIGCHLD) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            sv_child_exited(sv, pid, status);
        sv_reconcile(sv);
        return;
    }
    if (signo == SIGTERM || signo == SIGINT) {
        if (sv->stopping) {
            LOG_WARN("sv.fast_stop", "second stop request: killing every child now");
            sv->fast_stop = true;
            sv_kill_all(sv);
        } else {
            LOG_INFO("sv.stopping_all", "stopping every child (%s)",
                     signo == SIGTERM ? "SIGTERM" : "SIGINT");
            sv->stopping = true;
        }
        sv_reconcile(sv);
    }
}

static void sv_on_bus(struct loop *l, int fd, short revents, void *arg)
{
    struct sv *sv = arg;
    (void)l;
    (void)fd;
    (void)revents;
    bus_dispatch(sv->bus);
}

static void sv_leader_timer(struct loop *l, void *arg)
{
    struct sv *sv = arg;
    sv_leader_tick(sv);
    (void)loop_timer_add(l, (uint64_t)sv->sv.leader_ttl_ms / 6, sv_leader_timer, sv);
}

/* The figures /metrics shows of this node's tree (pmetrics.h), refreshed every second. */
static void sv_figures(const struct sv *sv)
{
    for (unsigned i = 0; i < sv->nchildren; i++) {
        const struct sv_child *c = &sv->children[i];
        pm_set(pm_seriesf(PM_SV_CHILD_UP, "child=\"%s\"", c->name), c->state == SV_UP);
        pm_add(pm_seriesf(PM_SV_RESTARTS, "child=\"%s\"", c->name), 0); /* there from the start */
    }
    pm_set(pm_series(PM_SV_LEADER, ""), sv->leader);
    pm_set(pm_series(PM_SV_FENCING_TOKEN, ""), sv->leader ? (int64_t)sv->fencing_token : 0);
}

static void sv_faults_timer(struct loop *l, void *arg)
{
    struct sv *sv = arg;
    sv_figures(sv);
    sv_faults_publish(sv); /* again and again: a restarted process catches up within 1 s */
    sv_taps_publish(sv);   /* and so do the tap listeners' filters, which also expire here */
    sv_cluster_tick(sv);   /* this node in the registry, the registry to this node's processes */
    sv_reconcile(sv);      /* and time-based rules (start timeouts) are seen without an event */
    (void)loop_timer_add(l, 1000, sv_faults_timer, sv);
}

/* The bin directory defaults to where the supervisor itself lives. */
static err_t sv_resolve_bin_dir(struct sv *sv)
{
    char self[PATH_MAX];
    ssize_t n;
    if (sv->sv.bin_dir[0])
        return OK;
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return ERR_INTERNAL;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    free(sv->sv.bin_dir);
    sv->sv.bin_dir = strdup(self);
    return sv->sv.bin_dir ? OK : ERR_NOMEM;
}

static err_t sv_mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return ERR_UNAVAIL;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return ERR_UNAVAIL;
    return OK;
}

/*
 * Directories are made absolute and exported, so every child (whatever its
 * cwd) and tetherctl agree on where the sockets are.
 */
static err_t sv_prepare_dirs(struct sv *sv)
{
    char abs[PATH_MAX];
    if (sv_mkdirs(sv->cfg.run_dir) != OK || !realpath(sv->cfg.run_dir, abs)) {
        LOG_ERROR("sv.run_dir", "cannot use the run directory %s: %s", sv->cfg.run_dir,
                  strerror(errno));
        return ERR_UNAVAIL;
    }
    setenv("TETHER_RUN_DIR", abs, 1);
    if (sv->cfg.bus_dir[0])
        snprintf(sv->bus_dir, sizeof(sv->bus_dir), "%s", sv->cfg.bus_dir);
    else
        snprintf(sv->bus_dir, sizeof(sv->bus_dir), "%s/bus", abs);
    if (sv_mkdirs(sv->bus_dir) != OK || !realpath(sv->bus_dir, abs)) {
        LOG_ERROR("sv.run_dir", "cannot use the bus directory %s: %s", sv->bus_dir,
                  strerror(errno));
        return ERR_UNAVAIL;
    }
    snprintf(sv->bus_dir, sizeof(sv->bus_dir), "%s", abs);
    setenv("TETHER_BUS_DIR", sv->bus_dir, 1);
    return OK;
}

/* s6's supervise/lock: one supervisor per run directory. */
static err_t sv_take_lock(struct sv *sv)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/supervisor.lock", getenv("TETHER_RUN_DIR"));
    sv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (sv->lock_fd < 0 || flock(sv->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        LOG_ERROR("sv.locked", "another supervisor runs on %s (%s)", path, strerror(errno));
        return ERR_EXISTS;
    }
    return OK;
}

static int sv_run(struct sv *sv, int argc, char **argv)
{
    struct cfg_table tables[] = {
        {cfg_common_defs, cfg_common_defs_len, &sv->cfg},
        CFG_TABLE(sv_cfg_defs, &sv->sv),
    };
    enum cfg_action action;
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};

    log_init("supervisor", LOG_LVL_INFO, true);
    if (cfg_load(tables, 2, argc, argv, "supervisor", &action) != OK)
        return EXIT_PERMANENT;
    if (action == CFG_PRINTED)
        return 0;
    if (cfg_common_apply(&sv->cfg, "supervisor") != OK || sv_resolve_bin_dir(sv) != OK)
        return EXIT_PERMANENT;
    if (sv->cfg.node_id[0])
        snprintf(sv->node, sizeof(sv->node), "%s", sv->cfg.node_id);
    else if (gethostname(sv->node, sizeof(sv->node) - 1) != 0)
        snprintf(sv->node, sizeof(sv->node), "node");

    if (sv_prepare_dirs(sv) != OK)
        return EXIT_TEMPORARY;
    (void)pm_open(getenv("TETHER_RUN_DIR"), "supervisor"); /* uncounted without it */
    if (sv_take_lock(sv) != OK)
        return EXIT_PERMANENT;
    if (sv_children_build(sv) != OK)
        return EXIT_PERMANENT;
    sv_cluster_assign_ports(sv);
    sv->started_ms = clock_wall_ms();
    if (loop_init(&sv->loop) != OK || loop_signals(&sv->loop, sigs, 4, sv_on_signal, sv) != OK)
        return EXIT_TEMPORARY;
    if (sv_leader_open(sv) != OK) /* it says why */
        return EXIT_PERMANENT;
    signal(SIGPIPE, SIG_IGN);
    /* the write end stays with us (close-on-exec); children hold the read end as fd 4 */
    if (pipe(sv->parent_pipe) != 0 || fcntl(sv->parent_pipe[1], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(sv->parent_pipe[0], F_SETFD, FD_CLOEXEC) != 0)
        return EXIT_TEMPORARY;

    struct bus_opts bo = {
        .proc = "supervisor",
        .dir = sv->bus_dir,
        .recv_max = (size_t)sv->cfg.bus_recv_max,
        .timeout_ms = (uint32_t)sv->cfg.bus_timeout_ms,
        .inflight = 8,
        .tap = sv->cfg.bus_tap,
        .follow_faults = false,
    };
    if (bus_open(&sv->bus, &bo) != OK || sv_control_open(sv) != OK)
        return EXIT_TEMPORARY;
    if (loop_watch(&sv->loop, bus_fd(sv->bus), POLLIN, sv_on_bus, sv) != OK)
        return EXIT_TEMPORARY;

    LOG_INFO("sv.started", "supervising %u children from %s (bus %s, node %s)", sv->nchildren,
             sv->sv.bin_dir, sv->bus_dir, sv->node);
    sv_leader_timer(&sv->loop, sv);
    sv_faults_timer(&sv->loop, sv);
    sv_reconcile(sv);

    while (!(sv->stopping && sv_all_down(sv)))
        loop_run_once(&sv->loop, 1000);

    /* only now: every leader-only child is gone. The loop runs on until Redis answers (or the
     * command's timeout): the lock then frees at once instead of with its TTL */
    if (sv_leader_release(sv))
        while (sv_leader_busy(sv))
            loop_run_once(&sv->loop, 100);
    if (sv_cluster_leave(sv))
        while (sv_cluster_busy(sv))
            loop_run_once(&sv->loop, 100);
    LOG_INFO("sv.stopped", "every child stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static struct sv sv;
    sv.lock_fd = -1;
    sv.parent_pipe[0] = sv.parent_pipe[1] = -1;
    int code = sv_run(&sv, argc, argv);
    if (code != 0 && sv.nchildren > 0 && !sv_all_down(&sv))
        sv_kill_all(&sv);
    bus_close(sv.bus);
    sv_leader_close(&sv);
    sv_cluster_free(&sv);
    loop_fini(&sv.loop);
    struct cfg_table tables[] = {
        {cfg_common_defs, cfg_common_defs_len, &sv.cfg},
        CFG_TABLE(sv_cfg_defs, &sv.sv),
    };
    cfg_free(tables, 2);
    return code;
}
