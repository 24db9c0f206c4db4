/*
 * child_test.c - the supervisor's per-child state machine (supervisor/child.c), state by
 * event, with real processes: each child is a /bin/sh command (TETHER_SV_CMD_<NAME>) that
 * reports ready, exits, exits 100 or ignores SIGTERM, and the test reaps them as main.c does.
 *
 *   down      + deps up        -> starting;  + a dependency not up -> stays down
 *   starting  + ready byte     -> up;        + quick death         -> backoff (exponential)
 *   up        + death after min_restart      -> restarted at once
 *   any       + exit 100       -> failed (no restart);  failed + start -> starting
 *   any       + intensity deaths in period   -> failed
 *   up        + stop           -> stopping -> stopped;  stopped + start -> starting
 *   stopping  + no exit in grace + kill_after -> SIGKILL
 *   leader-only: down without the lock, started with it, stopped when it is lost
 *   supervisor stopping: children stop in reverse table order
 */
#include "../../../supervisor/child.c"

#include "t.h"

/* control.c's fault lookup: no faults here */
const struct bus_fault *sv_fault_for(const struct sv *sv, const struct sv_child *c)
{
    (void)sv;
    (void)c;
    return NULL;
}

static struct sv sv;

static const struct sv_spec specs[] = {
    {"alpha", "alpha", {NULL}, false, false, NULL},
    {"beta", "beta", {"alpha"}, false, false, NULL},
    {"lead", "lead", {NULL}, true, false, NULL},
};

static void set_cmd(const char *name, const char *cmd)
{
    char var[64];
    snprintf(var, sizeof(var), "TETHER_SV_CMD_%s", name);
    for (char *p = var; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    setenv(var, cmd, 1);
}

#define READY "echo >&3; exec sleep 30"

/* One turn of main.c's loop: events, then reaping (SIGCHLD there). */
static void turn(void)
{
    int status;
    pid_t pid;
    loop_run_once(&sv.loop, 10);
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        sv_child_exited(&sv, pid, status);
    sv_reconcile(&sv);
}

static bool wait_state(struct sv_child *c, enum sv_state s, uint64_t max_ms)
{
    uint64_t t0 = clock_mono_ms();
    while (c->state != s && clock_mono_ms() - t0 < max_ms)
        turn();
    return c->state == s;
}

static void settle(uint64_t ms)
{
    uint64_t t0 = clock_mono_ms();
    while (clock_mono_ms() - t0 < ms)
        turn();
}

static struct sv_child *A, *B, *L;

static void setup(void)
{
    sv.sv.min_restart_ms = 100;
    sv.sv.backoff_max_ms = 800;
    sv.sv.stable_ms = 400;
    sv.sv.intensity = 4;
    sv.sv.period_ms = 10000;
    sv.sv.kill_after_ms = 200;
    sv.sv.start_timeout_ms = 5000;
    sv.sv.bin_dir = "/nonexistent";
    sv.cfg.shutdown_grace_ms = 100;
    (void)loop_init(&sv.loop);
    if (pipe(sv.parent_pipe) != 0)
        abort();
    for (unsigned i = 0; i < 3; i++) {
        struct sv_child *c = &sv.children[sv.nchildren++];
        memset(c, 0, sizeof(*c));
        snprintf(c->name, sizeof(c->name), "%s", specs[i].name);
        c->spec = &specs[i];
        c->want_up = true;
        c->notify_fd = -1;
    }
    A = &sv.children[0];
    B = &sv.children[1];
    L = &sv.children[2];
}

T_TEST(start_in_dependency_order)
{
    set_cmd("alpha", "sleep 0.3; echo >&3; exec sleep 30");
    set_cmd("beta", READY);
    set_cmd("lead", READY);
    sv_reconcile(&sv);
    T_EQ(A->state, SV_STARTING);
    T_EQ(B->state, SV_DOWN); /* alpha is not up yet */
    T_EQ(L->state, SV_DOWN); /* leader-only, no lock */
    T_ASSERT(wait_state(A, SV_UP, 3000));
    T_ASSERT(wait_state(B, SV_UP, 3000));
    T_EQ(L->state, SV_DOWN);
}

T_TEST(up_death_restarts_at_once)
{
    settle(150); /* up longer than min_restart */
    pid_t old = B->pid;
    uint64_t t0 = clock_mono_ms();
    kill(B->pid, SIGKILL);
    T_ASSERT(wait_state(B, SV_STARTING, 2000) || B->state == SV_UP);
    T_ASSERT(B->pid != old && B->pid > 0);
    T_ASSERT(clock_mono_ms() - t0 < 100);
    T_EQ(B->restarts, 1u);
    T_STREQ(B->last_exit, "signal 9");
    T_ASSERT(wait_state(B, SV_UP, 2000));
}

T_TEST(quick_deaths_back_off_then_fail)
{
    set_cmd("beta", "exit 1");
    kill(B->pid, SIGKILL);
    T_ASSERT(wait_state(B, SV_BACKOFF, 2000));
    /* each quick death doubles the wait: 100, 200, 400 ms ... */
    uint64_t t0 = clock_mono_ms();
    T_ASSERT(wait_state(B, SV_FAILED, 5000));
    uint64_t took = clock_mono_ms() - t0;
    T_ASSERT(took >= 300); /* 100 + 200 at least, before the 4th death in the period */
    T_ASSERT(B->pid == 0);
    settle(300);
    T_EQ(B->state, SV_FAILED); /* no restart once failed */
    set_cmd("beta", READY);
    sv_child_start(&sv, B);
    T_ASSERT(B->state == SV_STARTING || B->state == SV_BACKOFF);
    T_ASSERT(wait_state(B, SV_UP, 2000));
}

T_TEST(exit_100_is_permanent)
{
    set_cmd("beta", "exit 100");
    kill(B->pid, SIGKILL); /* restarted at once into "exit 100" */
    T_ASSERT(wait_state(B, SV_FAILED, 3000));
    T_STREQ(B->last_exit, "exit 100");
    settle(300);
    T_EQ(B->state, SV_FAILED);
    set_cmd("beta", READY);
    sv_child_start(&sv, B);
    T_ASSERT(wait_state(B, SV_UP, 2000));
}

T_TEST(operator_stop_and_start)
{
    sv_child_stop(&sv, B);
    T_EQ(B->state, SV_STOPPING);
    T_ASSERT(wait_state(B, SV_STOPPED, 2000));
    T_EQ(B->pid, 0);
    settle(200);
    T_EQ(B->state, SV_STOPPED);
    sv_child_stop(&sv, B); /* again: nothing */
    T_EQ(B->state, SV_STOPPED);
    sv_child_start(&sv, B);
    T_ASSERT(wait_state(B, SV_UP, 2000));
}

T_TEST(stopping_child_that_ignores_sigterm_is_killed)
{
    set_cmd("beta", "trap '' TERM; echo >&3; while :; do sleep 0.05; done");
    sv_child_restart(&sv, B);
    T_ASSERT(wait_state(B, SV_UP, 3000));
    uint64_t t0 = clock_mono_ms();
    sv_child_stop(&sv, B);
    T_ASSERT(wait_state(B, SV_STOPPED, 3000));
    uint64_t took = clock_mono_ms() - t0;
    T_ASSERT(took >= 250); /* grace 100 + kill_after 200 */
    T_STREQ(B->last_exit, "signal 9");
    set_cmd("beta", READY);
    sv_child_start(&sv, B);
    T_ASSERT(wait_state(B, SV_UP, 2000));
}

T_TEST(leader_only_follows_the_lock)
{
    sv_reconcile(&sv);
    T_EQ(L->state, SV_DOWN);
    sv.leader = true;
    sv_reconcile(&sv);
    T_ASSERT(wait_state(L, SV_UP, 2000));
    sv.leader = false;
    sv_reconcile(&sv);
    T_EQ(L->state, SV_STOPPING);
    T_ASSERT(wait_state(L, SV_DOWN, 2000)); /* still wanted: down, not stopped */
    settle(200);
    T_EQ(L->state, SV_DOWN);
}

T_TEST(supervisor_stop_in_reverse_order)
{
    sv.stopping = true;
    sv_reconcile(&sv);
    T_EQ(B->state, SV_STOPPING); /* the later one first */
    T_EQ(A->state, SV_UP);
    uint64_t t0 = clock_mono_ms();
    while (!sv_all_down(&sv) && clock_mono_ms() - t0 < 3000)
        turn();
    T_ASSERT(sv_all_down(&sv));
    T_EQ(A->state, SV_DOWN);
    T_EQ(B->state, SV_DOWN);
}

int main(void)
{
    log_init("child-test", LOG_LVL_ERROR, false);
    static const int sigs[] = {SIGCHLD};
    setup();
    (void)loop_signals(&sv.loop, sigs, 1, NULL, NULL); /* reaped in turn() */
    T_RUN(start_in_dependency_order);
    T_RUN(up_death_restarts_at_once);
    T_RUN(quick_deaths_back_off_then_fail);
    T_RUN(exit_100_is_permanent);
    T_RUN(operator_stop_and_start);
    T_RUN(stopping_child_that_ignores_sigterm_is_killed);
    T_RUN(leader_only_follows_the_lock);
    T_RUN(supervisor_stop_in_reverse_order);
    sv_kill_all(&sv);
    return T_DONE();
}
