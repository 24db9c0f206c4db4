/*
 * tetherctl - the operator's tool: talks to the supervisor's control socket
 * and taps bus traffic.
 *
 *   tetherctl status [--json] [--cluster]
 *   tetherctl start|stop|restart NAME
 *   tetherctl kill NAME [SIGNAL]
 *   tetherctl fault NAME drop=0.1 dup=0.05 delay=50ms [delay_rate=0.5] | off
 *   tetherctl faults
 *   tetherctl tap [--actor NAME] [--type TYPE] [--trace ID] [--status S] [--session ID] [--env ID]
 *                 [--count N] [--seconds S] [--rate]   (tap.c)
 *   tetherctl ping ACTOR [--size BYTES] [--count N] [--timeout DUR]
 *   tetherctl proto-doc          (the message catalogue as Markdown: docs/protocol.md)
 *   tetherctl chaos kill|pause|bus|store ...   (chaos.c)
 *
 * Exit codes: 0 done, 1 the supervisor answered with an error, 100 usage,
 * 111 the supervisor could not be reached.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "mp.h"
#include "mpjson.h"
#include "msg.h"
#include "msg_sv.h"
#include "proc.h"

#include "ctl.h"

int ctl_usage(void)
{
    fprintf(stderr,
            "usage: tetherctl status [--json] [--cluster]\n"
            "       tetherctl start|stop|restart NAME\n"
            "       tetherctl kill NAME [SIGNAL]\n"
            "       tetherctl fault NAME drop=F dup=F delay=DUR [delay_rate=F] | off\n"
            "       tetherctl faults\n"
            "       tetherctl tap [--actor NAME] [--type TYPE] [--trace ID] [--status S] "
            "[--session ID] [--env ID] [--count N] [--seconds S] [--rate]\n"
            "       tetherctl ping ACTOR [--size BYTES] [--count N] [--timeout DUR]\n"
            "       tetherctl proto-doc\n"
            "       tetherctl env create --org ORG --project PROJ --type dev|stg|prod|preview\n"
            "       tetherctl env rotate-key ENV_ID | bootstrap | list | whois KEY\n"
            "       tetherctl chaos kill NAME [--every DUR --for DUR] [--signal SIG]\n"
            "       tetherctl chaos pause NAME --for DUR\n"
            "       tetherctl chaos bus NAME drop=F dup=F delay=DUR [delay_rate=F] --for DUR\n"
            "       tetherctl chaos store --pid PID | --pidfile FILE --for DUR "
            "[--name redis|postgres|clickhouse]\n"
            "settings come from TETHER_* variables (TETHER_RUN_DIR, TETHER_BUS_DIR)\n");
    return EXIT_PERMANENT;
}

int ctl_open(struct ctl *c, bool need_supervisor)
{
    char url[BUS_URL_MAX + 64];
    struct bus_opts bo = {
        .proc = "tetherctl",
        .dir = c->bus_dir,
        .recv_max = (size_t)c->cfg.bus_recv_max,
        .timeout_ms = 5000,
        .inflight = 1,
    };
    if (bus_open(&c->bus, &bo) != OK)
        return EXIT_TEMPORARY;
    if (!need_supervisor)
        return 0;
    const char *cu = getenv("TETHER_SV_CONTROL_URL");
    if (cu && *cu)
        snprintf(url, sizeof(url), "%s", cu);
    else
        snprintf(url, sizeof(url), "ipc://%s/supervisor.ipc", c->bus_dir);
    if (bus_peer_open(c->bus, "supervisor", url, &c->sv) != OK)
        return EXIT_TEMPORARY;
    return 0;
}

/* One request to the supervisor; prints the error and maps it to an exit code. */
int ctl_call(struct ctl *c, uint16_t type, struct mp_writer *body, struct bus_msg *reply)
{
    err_t rc = bus_call_sync(c->sv, type, body ? mp_writer_data(body) : NULL,
                             body ? mp_writer_len(body) : 0, 3000, reply);
    if (rc == OK)
        return 0;
    if (rc == ERR_TIMEOUT || rc == ERR_UNAVAIL || rc == ERR_CLOSED) {
        fprintf(stderr, "tetherctl: cannot reach the supervisor at %s/supervisor.ipc: %s\n",
                c->bus_dir, err_str(rc));
        return EXIT_TEMPORARY;
    }
    fprintf(stderr, "tetherctl: %s: %.*s\n", err_str(rc), (int)reply->env.err_msg.n,
            reply->env.err_msg.p ? reply->env.err_msg.p : "");
    bus_msg_free(reply);
    return CTL_EXIT_ERR;
}

void ctl_print_json(struct slice body)
{
    char *json;
    size_t n;
    if (body.n && mp_to_json_masked(body.p, body.n, 0, &json, &n) == OK) {
        printf("%s\n", json);
        free(json);
    } else {
        printf("{}\n");
    }
}

const char *ctl_str(struct slice map, const char *key, char *buf, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    buf[0] = '\0';
    if (mp_map_find(map.p, map.n, key, &v) == OK && mp_read_str(&v, &s) == OK)
        (void)slice_copy(s, buf, cap);
    return buf;
}

uint64_t ctl_uint(struct slice map, const char *key)
{
    struct mp_reader v;
    uint64_t u = 0;
    if (mp_map_find(map.p, map.n, key, &v) == OK)
        (void)mp_read_uint(&v, &u);
    return u;
}

const char *ctl_cstr(struct slice s, char *buf, size_t cap)
{
    if (slice_copy(s, buf, cap) != OK)
        buf[0] = '\0';
    return buf;
}

bool ctl_list(struct slice raw, struct mp_reader *r, uint32_t *n)
{
    if (!raw.p)
        return false;
    mp_reader_init(r, raw.p, raw.n);
    return mp_read_array(r, n) == OK;
}

void ctl_decode(const struct msg_form *f, struct slice body, void *out, size_t size)
{
    if (msg_decode(f, body.p, body.n, out) != OK)
        memset(out, 0, size);
}

/* The event sockets a node's events map ({<actor>: [url]}, keyed by actor name) lists. */
static uint32_t ctl_sockets(struct slice events)
{
    struct mp_reader m;
    uint32_t k, n = 0;
    if (!events.p)
        return 0;
    mp_reader_init(&m, events.p, events.n);
    if (mp_read_map(&m, &k) != OK)
        return 0;
    for (uint32_t j = 0; j < k; j++) {
        struct slice key, val;
        struct mp_reader a;
        uint32_t cnt;
        if (mp_read_str(&m, &key) != OK || mp_skip(&m, &val) != OK)
            break;
        mp_reader_init(&a, val.p, val.n);
        if (mp_read_array(&a, &cnt) == OK)
            n += cnt;
    }
    return n;
}

/*
 * The cluster as this node's supervisor last read the registry: one line a node, the
 * leader marked, and how long ago each was heard from.
 */
static int ctl_status_cluster(struct slice cluster)
{
    struct msg_bus_cluster cl;
    struct mp_reader nodes;
    uint32_t n;
    char self[64], leader[64];
    if (msg_decode(&msg_bus_cluster_form, cluster.p, cluster.n, &cl) != OK ||
        !ctl_list(cl.nodes, &nodes, &n)) {
        fprintf(stderr, "tetherctl: the supervisor has not read the cluster registry yet\n");
        return 1;
    }
    ctl_cstr(cl.self, self, sizeof(self));
    ctl_cstr(cl.leader, leader, sizeof(leader));
    printf("cluster: %" PRIu32 " node%s, leader %s\n", n, n == 1 ? "" : "s",
           leader[0] ? leader : "none");
    printf("%-24s %-20s %-7s %8s %10s %s\n", "NODE", "ADDR", "LEADER", "TOKEN", "SEEN", "EVENTS");
    for (uint32_t i = 0; i < n; i++) {
        struct msg_bus_cluster_node nd;
        struct slice raw;
        char name[64], addr[64], seen[32];
        if (mp_skip(&nodes, &raw) != OK)
            break;
        ctl_decode(&msg_bus_cluster_node_form, raw, &nd, sizeof(nd));
        uint32_t ne = ctl_sockets(nd.events);
        snprintf(seen, sizeof(seen), "%.1fs ago", (double)nd.age_ms / 1000.0);
        ctl_cstr(nd.node, name, sizeof(name));
        printf("%-24s %-20s %-7s %8" PRIu64 " %10s %u socket%s%s\n", name,
               ctl_cstr(nd.addr, addr, sizeof(addr))[0] ? addr : "-", nd.leader ? "yes" : "-",
               nd.fencing_token, seen, ne, ne == 1 ? "" : "s",
               strcmp(name, self) == 0 ? " (this node)" : "");
    }
    return 0;
}

static int ctl_status(struct ctl *c, bool json, bool cluster)
{
    struct bus_msg reply;
    struct msg_sv_status_reply st;
    struct mp_reader v;
    uint32_t n;
    char node[64];
    int rc = ctl_call(c, MSG_SV_STATUS, NULL, &reply);
    if (rc)
        return rc;
    if (json) {
        ctl_print_json(reply.env.body);
        bus_msg_free(&reply);
        return 0;
    }
    ctl_decode(&msg_sv_status_reply_form, reply.env.body, &st, sizeof(st));
    if (cluster) {
        rc = ctl_status_cluster(st.cluster);
        bus_msg_free(&reply);
        return rc;
    }
    printf("node %s, leader: %s", ctl_cstr(st.node, node, sizeof(node)), st.leader ? "yes" : "no");
    if (st.leader)
        printf(" (fencing token %" PRIu64 ")", st.fencing_token);
    printf("\n%-24s %-9s %8s %10s %8s %-7s %-12s %s\n", "NAME", "STATE", "PID", "UPTIME",
           "RESTARTS", "LEADER", "LAST EXIT", "FAULT");
    if (ctl_list(st.children, &v, &n)) {
        for (uint32_t i = 0; i < n; i++) {
            struct msg_sv_status_child ch;
            struct slice raw;
            char name[64], state[16], last[48], fault[96];
            if (mp_skip(&v, &raw) != OK)
                break;
            ctl_decode(&msg_sv_status_child_form, raw, &ch, sizeof(ch));
            char upbuf[32];
            snprintf(upbuf, sizeof(upbuf), "%" PRIu64 ".%01" PRIu64 "s", ch.uptime_ms / 1000,
                     (ch.uptime_ms % 1000) / 100);
            printf("%-24s %-9s %8" PRIu64 " %10s %8" PRIu64 " %-7s %-12s %s\n",
                   ctl_cstr(ch.name, name, sizeof(name)), ctl_cstr(ch.state, state, sizeof(state)),
                   ch.pid, ch.pid ? upbuf : "-", ch.restarts, ch.leader_only ? "only" : "-",
                   ctl_cstr(ch.last_exit, last, sizeof(last))[0] ? last : "-",
                   ctl_cstr(ch.fault, fault, sizeof(fault)));
        }
    }
    bus_msg_free(&reply);
    return 0;
}

static int ctl_child_cmd(struct ctl *c, uint16_t type, const char *name, int sig)
{
    struct mp_writer w;
    struct bus_msg reply;
    struct msg_sv_child m = {msg_str(name), (uint64_t)sig, sig != 0};
    struct msg_sv_child_reply r;
    char state[16];
    int rc;
    mp_writer_init(&w);
    msg_encode(type == MSG_SV_KILL ? &msg_sv_kill_form : &msg_sv_child_form, &w, &m);
    rc = ctl_call(c, type, &w, &reply);
    mp_writer_fini(&w);
    if (rc)
        return rc;
    ctl_decode(&msg_sv_child_reply_form, reply.env.body, &r, sizeof(r));
    printf("%s: %s\n", name, ctl_cstr(r.state, state, sizeof(state)));
    bus_msg_free(&reply);
    return 0;
}

static const struct {
    const char *name;
    int sig;
} ctl_signals[] = {{"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},
                   {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
                   {"USR2", SIGUSR2}, {"SEGV", SIGSEGV}, {"ABRT", SIGABRT}};

int ctl_signal_number(const char *s)
{
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (unsigned i = 0; i < sizeof(ctl_signals) / sizeof(ctl_signals[0]); i++)
        if (strcmp(s, ctl_signals[i].name) == 0)
            return ctl_signals[i].sig;
    char *end;
    long n = strtol(s, &end, 10);
    return *end || n < 1 || n > 64 ? -1 : (int)n;
}

const char *ctl_signal_name(int sig, char *buf, size_t cap)
{
    for (unsigned i = 0; i < sizeof(ctl_signals) / sizeof(ctl_signals[0]); i++)
        if (ctl_signals[i].sig == sig)
            return ctl_signals[i].name;
    snprintf(buf, cap, "%d", sig);
    return buf;
}

int ctl_fault_parse(int argc, char **argv, struct bus_fault *f)
{
    char spec[256] = "";
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(spec);
        snprintf(spec + l, sizeof(spec) - l, "%s%s", i ? " " : "", argv[i]);
    }
    if (bus_fault_parse(spec, f) != OK) {
        fprintf(stderr,
                "tetherctl: bad fault \"%s\" (drop=F dup=F delay=DUR delay_rate=F, "
                "fractions 0-1, or off)\n",
                spec);
        return EXIT_PERMANENT;
    }
    return 0;
}

void ctl_fault_encode(struct mp_writer *w, const char *name, const struct bus_fault *f)
{
    struct msg_sv_fault_set m = {msg_str(name), f->drop, f->dup, f->delay_ms, f->delay_rate};
    msg_encode(&msg_sv_fault_set_form, w, &m);
}

static int ctl_fault(struct ctl *c, const char *name, int argc, char **argv)
{
    struct bus_fault f;
    struct mp_writer w;
    struct bus_msg reply;
    int rc = ctl_fault_parse(argc, argv, &f);
    if (rc)
        return rc;
    mp_writer_init(&w);
    ctl_fault_encode(&w, name, &f);
    rc = ctl_call(c, MSG_SV_FAULT_SET, &w, &reply);
    mp_writer_fini(&w);
    if (rc)
        return rc;
    ctl_print_json(reply.env.body);
    bus_msg_free(&reply);
    return 0;
}

/*
 * bus.echo round trips to one actor with a payload of `size` bytes: proves
 * messages of that size cross the bus, and measures the round trip.
 */
static int ctl_ping(struct ctl *c, const char *actor, long size, long count, long long tmo)
{
    struct bus_peer *p;
    struct mp_writer w;
    char *payload;
    int rc = 0;

    if (size < 0 || size > (long)c->cfg.bus_recv_max || count < 1)
        return ctl_usage();
    if (bus_peer_open_actor(c->bus, actor, &p) != OK)
        return EXIT_TEMPORARY;
    payload = malloc((size_t)size + 1);
    if (!payload)
        return EXIT_TEMPORARY;
    for (long i = 0; i < size; i++)
        payload[i] = (char)('a' + i % 26);
    struct msg_bus_echo echo = {{payload, (size_t)size}};
    mp_writer_init(&w);
    msg_encode(&msg_bus_echo_form, &w, &echo);
    for (long i = 0; i < count && rc == 0; i++) {
        struct bus_msg reply;
        struct msg_bus_echo back;
        uint64_t t0 = clock_mono_ms();
        err_t e = bus_call_sync(p, MSG_BUS_ECHO, mp_writer_data(&w), mp_writer_len(&w),
                                (uint32_t)tmo, &reply);
        if (e != OK) {
            printf("{\"actor\":\"%s\",\"ok\":false,\"error\":\"%s\"}\n", actor, err_name(e));
            bus_msg_free(&reply);
            rc = CTL_EXIT_ERR;
            break;
        }
        bool same =
            msg_decode(&msg_bus_echo_form, reply.env.body.p, reply.env.body.n, &back) == OK &&
            back.data.p && back.data.n == (size_t)size &&
            memcmp(back.data.p, payload, (size_t)size) == 0;
        printf("{\"actor\":\"%s\",\"ok\":%s,\"bytes\":%ld,\"envelope_bytes\":%zu,"
               "\"rtt_ms\":%" PRIu64 ",\"from\":\"%s\",\"attempt\":%u}\n",
               actor, same ? "true" : "false", size, mp_writer_len(&w), clock_mono_ms() - t0,
               reply.env.sender, reply.env.attempt);
        if (!same)
            rc = CTL_EXIT_ERR;
        bus_msg_free(&reply);
    }
    mp_writer_fini(&w);
    free(payload);
    return rc;
}

static int ctl_run(struct ctl *c, int argc, char **argv)
{
    struct cfg_table tables[] = {{cfg_common_defs, cfg_common_defs_len, &c->cfg}};
    enum cfg_action action;
    int rc;

    log_init("tetherctl", LOG_LVL_WARN, false);
    if (cfg_load(tables, 1, 1, argv, "tetherctl", &action) != OK)
        return EXIT_PERMANENT;
    cfg_bus_dir(&c->cfg, c->bus_dir, sizeof(c->bus_dir));
    log_init("tetherctl", LOG_LVL_WARN, false);
    if (argc < 2)
        return ctl_usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "proto-doc") == 0)
        return ctl_proto_doc();

    if (strcmp(cmd, "tap") == 0)
        return ctl_tap(c, argc - 2, argv + 2);

    if (strcmp(cmd, "env") == 0)
        return ctl_env(c, argc - 2, argv + 2);
    /* chaos blocks its signals before the bus starts threads, so it opens the bus itself */
    if (strcmp(cmd, "chaos") == 0)
        return ctl_chaos(c, argc - 2, argv + 2);
    if (strcmp(cmd, "ping") == 0) {
        long size = 0, count = 1;
        long long tmo = 5000;
        if (argc < 3)
            return ctl_usage();
        for (int i = 3; i < argc; i++) {
            if (i + 1 < argc && strcmp(argv[i], "--size") == 0)
                size = strtol(argv[++i], NULL, 10);
            else if (i + 1 < argc && strcmp(argv[i], "--count") == 0)
                count = strtol(argv[++i], NULL, 10);
            else if (i + 1 < argc && strcmp(argv[i], "--timeout") == 0) {
                if (!cfg_parse_ms(argv[++i], &tmo) || tmo < 1 || tmo > 600000)
                    return ctl_usage();
            } else
                return ctl_usage();
        }
        if ((rc = ctl_open(c, false)) != 0)
            return rc;
        return ctl_ping(c, argv[2], size, count, tmo);
    }

    if ((rc = ctl_open(c, true)) != 0)
        return rc;
    if (strcmp(cmd, "status") == 0) {
        bool json = false, cluster = false;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--json") == 0)
                json = true;
            else if (strcmp(argv[i], "--cluster") == 0)
                cluster = true;
            else
                return ctl_usage();
        }
        return ctl_status(c, json, cluster);
    }
    if (strcmp(cmd, "faults") == 0) {
        struct bus_msg reply;
        if ((rc = ctl_call(c, MSG_SV_FAULT_LIST, NULL, &reply)) != 0)
            return rc;
        ctl_print_json(reply.env.body);
        bus_msg_free(&reply);
        return 0;
    }
    if (argc < 3)
        return ctl_usage();
    if (strcmp(cmd, "start") == 0)
        return ctl_child_cmd(c, MSG_SV_START, argv[2], 0);
    if (strcmp(cmd, "stop") == 0)
        return ctl_child_cmd(c, MSG_SV_STOP, argv[2], 0);
    if (strcmp(cmd, "restart") == 0)
        return ctl_child_cmd(c, MSG_SV_RESTART, argv[2], 0);
    if (strcmp(cmd, "kill") == 0) {
        int sig = argc > 3 ? ctl_signal_number(argv[3]) : SIGKILL;
        if (sig < 0)
            return ctl_usage();
        return ctl_child_cmd(c, MSG_SV_KILL, argv[2], sig);
    }
    if (strcmp(cmd, "fault") == 0)
        return ctl_fault(c, argv[2], argc - 3, argv + 3);
    return ctl_usage();
}

int main(int argc, char **argv)
{
    struct ctl c;
    memset(&c, 0, sizeof(c));
    int rc = ctl_run(&c, argc, argv);
    bus_close(c.bus);
    struct cfg_table tables[] = {{cfg_common_defs, cfg_common_defs_len, &c.cfg}};
    cfg_free(tables, 1);
    return rc;
}
