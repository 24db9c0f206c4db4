/*
 * chaos.c - tetherctl chaos: one fault at a time on one target, for chaos
 * tests. kill and pause signal a supervisor child through sv.kill, bus sets
 * a fault through sv.fault_set, store stops a process the supervisor does
 * not own (a store) by its pid. Every action is one JSON line on stdout.
 *
 * What pause, bus and store do is undone after --for, and at once on
 * SIGINT/SIGTERM/SIGHUP: those are blocked before the bus starts its threads
 * and taken with sigtimedwait, so one arriving at any moment (even during
 * the request that stops the target) is seen and the undo still runs.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "bus.h"
#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "mp.h"
#include "msg.h"
#include "msg_sv.h"
#include "proc.h"

#include "ctl.h"

#define CHAOS_EVERY_MIN_MS 100
#define CHAOS_FOR_MAX_MS 3600000LL
#define CHAOS_CALL_MS 3000
#define CHAOS_SLICE_MS 100 /* longest sleep between two looks at the signal flag */
#define CHAOS_CLEAR_TRIES 3

/* Set when SIGINT/SIGTERM/SIGHUP arrived; the only state a signal touches. */
static volatile sig_atomic_t chaos_stopping;

static void chaos_on_signal(int sig)
{
    (void)sig;
    chaos_stopping = 1;
}

/*
 * Blocks SIGINT/SIGTERM/SIGHUP (threads started later inherit the mask, so
 * none of them can take the signal) and installs a flag handler as well, in
 * case a library thread unblocks them: the wait loop looks at the flag too.
 * Returns 0 or an errno value.
 */
static int chaos_signals_block(sigset_t *set)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = chaos_on_signal;
    if (sigemptyset(&sa.sa_mask) != 0 || sigemptyset(set) != 0)
        return errno;
    for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaddset(set, sigs[i]) != 0 || sigaction(sigs[i], &sa, NULL) != 0)
            return errno;
    return pthread_sigmask(SIG_BLOCK, set, NULL);
}

/*
 * Sleeps until the monotonic clock reaches deadline_ms; true (at once) when
 * one of the signals in set arrives or had arrived meanwhile.
 */
static bool chaos_wait_until(const sigset_t *set, uint64_t deadline_ms)
{
    for (;;) {
        if (chaos_stopping)
            return true;
        uint64_t now = clock_mono_ms();
        if (now >= deadline_ms)
            return false;
        uint64_t left = deadline_ms - now;
        if (left > CHAOS_SLICE_MS)
            left = CHAOS_SLICE_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
        /* EAGAIN: the slice ended; EINTR: another signal; both mean look again */
        if (sigtimedwait(set, NULL, &ts) > 0)
            chaos_stopping = 1;
    }
}

/* True when a signal is already pending: the operator gave up before anything was done. */
static bool chaos_interrupted(const sigset_t *set)
{
    struct timespec zero = {0, 0};
    if (!chaos_stopping && sigtimedwait(set, NULL, &zero) > 0)
        chaos_stopping = 1;
    return chaos_stopping;
}

/* ---- output: one JSON line per action, flushed at once for a test's history ---- */

static void chaos_line_begin(const char *chaos, const char *target, const char *phase)
{
    char esc[256];
    (void)log_json_escape(target, strlen(target), esc, sizeof(esc));
    printf("{\"ts_ms\":%" PRIu64 ",\"mono_ms\":%" PRIu64 ",\"chaos\":\"%s\",\"target\":\"%s\"",
           clock_wall_ms(), clock_mono_ms(), chaos, esc);
    if (phase)
        printf(",\"phase\":\"%s\"", phase);
}

/* Ends the line: ok, or the error (with its err_t name when it came from the supervisor). */
static void chaos_line_end(bool ok, const char *error, const char *code)
{
    if (ok) {
        printf(",\"ok\":true}\n");
    } else {
        char esc[512];
        (void)log_json_escape(error, strlen(error), esc, sizeof(esc));
        printf(",\"ok\":false,\"error\":\"%s\"", esc);
        if (code)
            printf(",\"code\":\"%s\"", code);
        printf("}\n");
    }
    (void)fflush(stdout);
}

static void chaos_line_interrupted(bool interrupted)
{
    if (interrupted)
        printf(",\"interrupted\":true");
}

/* ---- the supervisor ---- */

static bool chaos_unreachable(err_t e)
{
    return e == ERR_TIMEOUT || e == ERR_UNAVAIL || e == ERR_CLOSED;
}

/* The exit code for a supervisor call's outcome, as ctl_call maps it. */
static int chaos_exit_code(err_t e)
{
    if (e == OK)
        return 0;
    return chaos_unreachable(e) ? EXIT_TEMPORARY : CTL_EXIT_ERR;
}

/*
 * One request to the supervisor. On OK *reply holds the reply (the caller
 * frees it); on an error the reply is freed and msg says why. Unlike
 * ctl_call it hands back the err_t: a kill that finds the child not
 * running (ERR_CONFLICT) is not an error here.
 */
static err_t chaos_call(struct ctl *c, uint16_t type, const struct mp_writer *w,
                        struct bus_msg *reply, char *msg, size_t cap)
{
    memset(reply, 0, sizeof(*reply));
    if (w && mp_writer_err(w) != OK) {
        snprintf(msg, cap, "could not encode the request");
        return ERR_NOMEM;
    }
    err_t e = bus_call_sync(c->sv, type, w ? mp_writer_data(w) : NULL, w ? mp_writer_len(w) : 0,
                            CHAOS_CALL_MS, reply);
    if (e == OK)
        return OK;
    const struct slice m = reply->env.err_msg;
    if (m.p && m.n)
        snprintf(msg, cap, "%.*s", (int)m.n, m.p);
    else
        snprintf(msg, cap, "%s", err_str(e));
    if (chaos_unreachable(e) && !m.p)
        fprintf(stderr, "tetherctl: cannot reach the supervisor at %s/supervisor.ipc: %s\n",
                c->bus_dir, err_str(e));
    bus_msg_free(reply);
    return e;
}

/* sv.kill sig to child name; prints the action's line. */
static err_t chaos_sv_signal(struct ctl *c, const char *chaos, const char *name, int sig,
                             const char *phase, pid_t pid, bool interrupted)
{
    struct mp_writer w;
    struct bus_msg reply;
    char msg[256], sigbuf[16];
    struct msg_sv_child m = {msg_str(name), (uint64_t)sig, true};
    mp_writer_init(&w);
    msg_encode(&msg_sv_kill_form, &w, &m);
    err_t e = chaos_call(c, MSG_SV_KILL, &w, &reply, msg, sizeof(msg));
    mp_writer_fini(&w);
    bus_msg_free(&reply);
    chaos_line_begin(chaos, name, phase);
    printf(",\"signal\":\"%s\"", ctl_signal_name(sig, sigbuf, sizeof(sigbuf)));
    if (pid > 0)
        printf(",\"pid\":%ld", (long)pid);
    chaos_line_interrupted(interrupted);
    chaos_line_end(e == OK, msg, e == OK ? NULL : err_name(e));
    return e;
}

/*
 * The pid the supervisor reports for child name (0 when it runs none), so
 * that pause can still continue the child itself if the supervisor stops
 * answering while the child is stopped: a stopped child cannot notice its
 * supervisor's death, and would stay stopped as an orphan.
 */
static err_t chaos_child_pid(struct ctl *c, const char *name, pid_t *pid, char *msg, size_t cap)
{
    struct bus_msg reply;
    struct msg_sv_status_reply st;
    struct mp_reader v;
    uint32_t n;
    *pid = 0;
    err_t e = chaos_call(c, MSG_SV_STATUS, NULL, &reply, msg, cap);
    if (e != OK)
        return e;
    ctl_decode(&msg_sv_status_reply_form, reply.env.body, &st, sizeof(st));
    if (ctl_list(st.children, &v, &n)) {
        for (uint32_t i = 0; i < n; i++) {
            struct msg_sv_status_child ch;
            struct slice raw;
            if (mp_skip(&v, &raw) != OK)
                break;
            ctl_decode(&msg_sv_status_child_form, raw, &ch, sizeof(ch));
            if (slice_eq(ch.name, name)) {
                *pid = (pid_t)ch.pid;
                break;
            }
        }
    }
    bus_msg_free(&reply);
    return OK;
}

static err_t chaos_fault_set(struct ctl *c, const char *name, const struct bus_fault *f,
                             const char *phase, int attempt, bool interrupted)
{
    struct mp_writer w;
    struct bus_msg reply;
    char msg[256];
    mp_writer_init(&w);
    ctl_fault_encode(&w, name, f);
    err_t e = chaos_call(c, MSG_SV_FAULT_SET, &w, &reply, msg, sizeof(msg));
    mp_writer_fini(&w);
    bus_msg_free(&reply);
    chaos_line_begin("bus", name, phase);
    printf(",\"drop\":%g,\"dup\":%g,\"delay_ms\":%" PRIu32 ",\"delay_rate\":%g", f->drop, f->dup,
           f->delay_ms, f->delay_rate);
    if (attempt > 1)
        printf(",\"attempt\":%d", attempt);
    chaos_line_interrupted(interrupted);
    chaos_line_end(e == OK, msg, e == OK ? NULL : err_name(e));
    return e;
}

/* ---- the actions ---- */

/* kill once, or at t0, t0+every, ... while before t0+for (ticks do not drift with call time). */
static int chaos_kill(struct ctl *c, const sigset_t *set, const char *name, int sig,
                      long long every, long long dur)
{
    uint64_t t0 = clock_mono_ms();
    for (uint64_t k = 1;; k++) {
        if (chaos_interrupted(set))
            return 0;
        err_t e = chaos_sv_signal(c, "kill", name, sig, NULL, 0, false);
        /* not running (restarting, backoff): reported, and the next tick may find it up */
        if (e != OK && e != ERR_CONFLICT)
            return chaos_exit_code(e);
        if (every == 0)
            return 0;
        uint64_t next = t0 + k * (uint64_t)every;
        if (next >= t0 + (uint64_t)dur)
            return 0;
        if (chaos_wait_until(set, next))
            return 0; /* nothing to undo */
    }
}

/* The child is continued by the supervisor, or, when it does not answer, by its pid. */
static int chaos_pause_undo(struct ctl *c, const char *name, pid_t pid, bool interrupted)
{
    err_t e = chaos_sv_signal(c, "pause", name, SIGCONT, "cont", pid, interrupted);
    if (e == OK || e == ERR_CONFLICT) /* not running: it died meanwhile, nothing is stopped */
        return 0;
    if (!chaos_unreachable(e) || pid <= 0)
        return chaos_exit_code(e);
    int ok = kill(pid, SIGCONT) == 0;
    int err = errno;
    chaos_line_begin("pause", name, "cont");
    printf(",\"signal\":\"CONT\",\"pid\":%ld,\"via\":\"pid\"", (long)pid);
    chaos_line_interrupted(interrupted);
    chaos_line_end(ok, ok ? "" : strerror(err), NULL);
    return ok || err == ESRCH ? 0 : EXIT_TEMPORARY;
}

static int chaos_pause(struct ctl *c, const sigset_t *set, const char *name, long long dur)
{
    char msg[256];
    pid_t pid;
    if (chaos_interrupted(set))
        return 0;
    err_t e = chaos_child_pid(c, name, &pid, msg, sizeof(msg));
    if (e != OK) {
        chaos_line_begin("pause", name, "stop");
        printf(",\"signal\":\"STOP\"");
        chaos_line_end(false, msg, err_name(e));
        return chaos_exit_code(e);
    }
    e = chaos_sv_signal(c, "pause", name, SIGSTOP, "stop", pid, false);
    if (e != OK) {
        /* a request that timed out may still have stopped the child: continue it to be sure */
        if (chaos_unreachable(e) && pid > 0)
            (void)chaos_pause_undo(c, name, pid, false);
        return chaos_exit_code(e);
    }
    bool interrupted = chaos_wait_until(set, clock_mono_ms() + (uint64_t)dur);
    return chaos_pause_undo(c, name, pid, interrupted);
}

/*
 * The fault is cleared (all zeros, as `tetherctl fault NAME off`), not set
 * back to what it was before; retried while the supervisor does not answer,
 * since the actors keep applying the fault until it says otherwise.
 */
static int chaos_bus_clear(struct ctl *c, const char *name, bool interrupted, int tries)
{
    const struct bus_fault off = {0};
    err_t e = OK;
    for (int attempt = 1; attempt <= tries; attempt++) {
        e = chaos_fault_set(c, name, &off, "clear", attempt, interrupted);
        if (!chaos_unreachable(e))
            break;
    }
    return chaos_exit_code(e);
}

static int chaos_bus(struct ctl *c, const sigset_t *set, const char *name,
                     const struct bus_fault *f, long long dur)
{
    if (chaos_interrupted(set))
        return 0;
    err_t e = chaos_fault_set(c, name, f, "set", 1, false);
    if (e != OK) {
        /* a request that timed out may still have set the fault: clear it to be sure (once:
           most likely nothing listens at all) */
        if (chaos_unreachable(e))
            (void)chaos_bus_clear(c, name, false, 1);
        return chaos_exit_code(e);
    }
    bool interrupted = chaos_wait_until(set, clock_mono_ms() + (uint64_t)dur);
    return chaos_bus_clear(c, name, interrupted, CHAOS_CLEAR_TRIES);
}

/* The pid on the first line of a pidfile (with or without a newline); false when there is none. */
static bool chaos_pidfile_read(const char *path, long *pid, char *msg, size_t cap)
{
    char line[64];
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(msg, cap, "could not open %s: %s", path, strerror(errno));
        return false;
    }
    char *got = fgets(line, sizeof(line), fp);
    if (fclose(fp) != 0 || !got) {
        snprintf(msg, cap, "%s is empty", path);
        return false;
    }
    char *end;
    errno = 0;
    long v = strtol(line, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
        end++;
    if (errno != 0 || end == line || *end != '\0') {
        snprintf(msg, cap, "%s does not start with a pid", path);
        return false;
    }
    *pid = v;
    return true;
}

/* The process is alive when signal 0 reaches it and /proc does not show it a zombie. */
static bool chaos_pid_alive(pid_t pid, char *msg, size_t cap)
{
    char path[64], buf[256];
    if (kill(pid, 0) != 0) {
        snprintf(msg, cap, "%s", errno == ESRCH ? "no such process" : strerror(errno));
        return false;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return true; /* no /proc: signal 0 is all there is to go on */
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    (void)fclose(fp);
    buf[n] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')' */
    const char *rp = strrchr(buf, ')');
    if (rp && rp[1] == ' ' && rp[2] == 'Z') {
        snprintf(msg, cap, "process %ld is a zombie", (long)pid);
        return false;
    }
    return true;
}

static void chaos_store_line(const char *target, pid_t pid, const char *phase, const char *sig,
                             bool interrupted, bool ok, const char *error)
{
    chaos_line_begin("store", target, phase);
    if (sig)
        printf(",\"signal\":\"%s\"", sig);
    if (pid > 0)
        printf(",\"pid\":%ld", (long)pid);
    chaos_line_interrupted(interrupted);
    chaos_line_end(ok, error, NULL);
}

/* pid has been checked (> 1) by the caller. */
static int chaos_store(const sigset_t *set, const char *target, pid_t pid, long long dur)
{
    char msg[256];
    if (chaos_interrupted(set))
        return 0;
    if (!chaos_pid_alive(pid, msg, sizeof(msg))) {
        chaos_store_line(target, pid, "stop", "STOP", false, false, msg);
        return CTL_EXIT_ERR;
    }
    if (kill(pid, SIGSTOP) != 0) {
        chaos_store_line(target, pid, "stop", "STOP", false, false, strerror(errno));
        return CTL_EXIT_ERR;
    }
    chaos_store_line(target, pid, "stop", "STOP", false, true, "");
    bool interrupted = chaos_wait_until(set, clock_mono_ms() + (uint64_t)dur);
    if (kill(pid, SIGCONT) != 0) {
        int err = errno;
        chaos_store_line(target, pid, "cont", "CONT", interrupted, false,
                         err == ESRCH ? "no such process" : strerror(err));
        /* it died while stopped: nothing is left stopped */
        return err == ESRCH ? 0 : CTL_EXIT_ERR;
    }
    chaos_store_line(target, pid, "cont", "CONT", interrupted, true, "");
    return 0;
}

/* ---- arguments ---- */

static int chaos_usage(const char *why)
{
    if (why)
        fprintf(stderr, "tetherctl: chaos: %s\n", why);
    fprintf(stderr,
            "usage: tetherctl chaos kill NAME [--every DUR --for DUR] [--signal SIG]\n"
            "       tetherctl chaos pause NAME --for DUR\n"
            "       tetherctl chaos bus NAME drop=F dup=F delay=DUR [delay_rate=F] --for DUR\n"
            "       tetherctl chaos store --pid PID | --pidfile FILE --for DUR "
            "[--name redis|postgres|clickhouse]\n"
            "--every at least %dms, --for at most 1h; one JSON line per action on stdout\n",
            CHAOS_EVERY_MIN_MS);
    return EXIT_PERMANENT;
}

struct chaos_args {
    const char *name; /* the first word that is not an option */
    char *words[8];   /* bus: the fault setting's words */
    int nwords;
    long long every, dur; /* ms; 0 = not given */
    int sig;
    const char *pid, *pidfile, *store_name;
};

/* Reads argv (after the subcommand); returns 0 or the usage exit code. */
static int chaos_args_parse(int argc, char **argv, bool words_ok, struct chaos_args *a)
{
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strncmp(o, "--", 2) != 0) {
            if (!a->name)
                a->name = o;
            else if (words_ok && a->nwords < (int)(sizeof(a->words) / sizeof(a->words[0])))
                a->words[a->nwords++] = argv[i];
            else
                return chaos_usage("too many arguments");
            continue;
        }
        if (!v)
            return chaos_usage("an option is missing its value");
        i++;
        if (strcmp(o, "--every") == 0 || strcmp(o, "--for") == 0) {
            long long ms;
            bool every = o[2] == 'e';
            if (!cfg_parse_ms(v, &ms) || ms < 1)
                return chaos_usage("a duration is like 500ms, 2s or 1m");
            if (ms > CHAOS_FOR_MAX_MS)
                return chaos_usage("a duration is at most 1h");
            if (every && ms < CHAOS_EVERY_MIN_MS)
                return chaos_usage("--every must be at least 100ms");
            *(every ? &a->every : &a->dur) = ms;
        } else if (strcmp(o, "--signal") == 0) {
            if ((a->sig = ctl_signal_number(v)) < 0)
                return chaos_usage("unknown signal");
        } else if (strcmp(o, "--pid") == 0) {
            a->pid = v;
        } else if (strcmp(o, "--pidfile") == 0) {
            a->pidfile = v;
        } else if (strcmp(o, "--name") == 0) {
            a->store_name = v;
        } else {
            return chaos_usage("unknown option");
        }
    }
    return 0;
}

/* Which options each subcommand takes; anything else given is a usage error. */
static int chaos_args_check(const char *sub, const struct chaos_args *a)
{
    bool kill = strcmp(sub, "kill") == 0, store = strcmp(sub, "store") == 0;
    if (!store && !a->name)
        return chaos_usage("missing NAME");
    if (store && a->name)
        return chaos_usage("store takes no NAME (--pid or --pidfile)");
    if (!kill && (a->every || a->sig))
        return chaos_usage("--every and --signal are for kill");
    if (!store && (a->pid || a->pidfile || a->store_name))
        return chaos_usage("--pid, --pidfile and --name are for store");
    if (kill && (a->every != 0) != (a->dur != 0))
        return chaos_usage("--every and --for go together");
    if (!kill && !a->dur)
        return chaos_usage("missing --for");
    return 0;
}

int ctl_chaos(struct ctl *c, int argc, char **argv)
{
    struct chaos_args a;
    struct bus_fault f;
    sigset_t set;
    pid_t pid = 0;
    int rc;

    memset(&a, 0, sizeof(a));
    memset(&f, 0, sizeof(f));
    if (argc < 1)
        return chaos_usage(NULL);
    const char *sub = argv[0];
    if (strcmp(sub, "kill") != 0 && strcmp(sub, "pause") != 0 && strcmp(sub, "bus") != 0 &&
        strcmp(sub, "store") != 0)
        return chaos_usage("unknown subcommand");
    if ((rc = chaos_args_parse(argc - 1, argv + 1, strcmp(sub, "bus") == 0, &a)) != 0 ||
        (rc = chaos_args_check(sub, &a)) != 0)
        return rc;

    if (strcmp(sub, "bus") == 0) {
        if (a.nwords == 0)
            return chaos_usage("missing the fault (drop=F dup=F delay=DUR delay_rate=F)");
        if ((rc = ctl_fault_parse(a.nwords, a.words, &f)) != 0)
            return rc;
        if (f.drop == 0 && f.dup == 0 && (f.delay_ms == 0 || f.delay_rate == 0))
            return chaos_usage("the fault does nothing (all zero)");
    }
    if (strcmp(sub, "store") == 0) {
        long v;
        char msg[256];
        if ((a.pid != NULL) == (a.pidfile != NULL))
            return chaos_usage("store takes one of --pid and --pidfile");
        if (a.store_name && strcmp(a.store_name, "redis") != 0 &&
            strcmp(a.store_name, "postgres") != 0 && strcmp(a.store_name, "clickhouse") != 0)
            return chaos_usage("--name is redis, postgres or clickhouse");
        const char *target = a.store_name ? a.store_name : "store";
        if (a.pid) {
            char *end;
            errno = 0;
            v = strtol(a.pid, &end, 10);
            if (errno != 0 || end == a.pid || *end != '\0')
                return chaos_usage("--pid is a number");
        } else if (!chaos_pidfile_read(a.pidfile, &v, msg, sizeof(msg))) {
            chaos_store_line(target, 0, "stop", "STOP", false, false, msg);
            return CTL_EXIT_ERR;
        }
        /* pid 1 is init; 0 and negatives would signal process groups */
        if (v <= 1 || v > INT32_MAX)
            return chaos_usage("refusing to stop pid <= 1");
        pid = (pid_t)v;
        if ((rc = chaos_signals_block(&set)) != 0) {
            fprintf(stderr, "tetherctl: chaos: could not block signals: %s\n", strerror(rc));
            return EXIT_TEMPORARY;
        }
        return chaos_store(&set, target, pid, a.dur);
    }

    if ((rc = chaos_signals_block(&set)) != 0) {
        fprintf(stderr, "tetherctl: chaos: could not block signals: %s\n", strerror(rc));
        return EXIT_TEMPORARY;
    }
    if ((rc = ctl_open(c, true)) != 0)
        return rc;
    if (strcmp(sub, "kill") == 0)
        return chaos_kill(c, &set, a.name, a.sig ? a.sig : SIGKILL, a.every, a.dur);
    if (strcmp(sub, "pause") == 0)
        return chaos_pause(c, &set, a.name, a.dur);
    return chaos_bus(c, &set, a.name, &f, a.dur);
}
