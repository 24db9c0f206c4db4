/*
 * msg_sv_test.c - the bodies of health.ping, bus.echo, the supervisor's events and its sv.*
 * requests (proto/msg_sv.h): their golden files, and what the handlers rely on of each.
 */
#include <string.h>

#include "msg_golden.h"
#include "msg_sv.h"

/* The bytes the decoded structs of round_trip and one_field borrow from, until the next call. */
static struct mp_writer body;

/* Encodes in with form f, then decodes the bytes into out; returns the decoder's code. */
static err_t round_trip(const struct msg_form *f, const void *in, void *out)
{
    mp_writer_reset(&body);
    msg_encode(f, &body, in);
    return mp_writer_err(&body) == OK
               ? msg_decode(f, mp_writer_data(&body), mp_writer_len(&body), out)
               : ERR_NOMEM;
}

/* The body {key: v} decoded with form f into out; v is the value's msgpack (n bytes). */
static err_t one_field(const struct msg_form *f, const char *key, const void *v, size_t n,
                       void *out)
{
    mp_writer_reset(&body);
    mp_put_map(&body, 1);
    mp_put_str(&body, key);
    mp_put_raw(&body, v, n);
    return msg_decode(f, mp_writer_data(&body), mp_writer_len(&body), out);
}
#define ONE(f, key, lit, out) one_field(f, key, lit, sizeof(lit) - 1, out)

/* The body {key: s} (a str) decoded with form f into out. */
static err_t one_str(const struct msg_form *f, const char *key, const char *s, void *out)
{
    struct mp_writer v;
    mp_writer_init(&v);
    mp_put_str(&v, s);
    err_t rc = one_field(f, key, mp_writer_data(&v), mp_writer_len(&v), out);
    mp_writer_fini(&v);
    return rc;
}

static const char filter_map[] = "\x81\xa4type\xabsession.get"; /* {type: session.get} */
#define FILTER_MAP ((struct slice){filter_map, sizeof(filter_map) - 1})

T_TEST(golden_events)
{
    struct msg_bus_health health = {
        .name = SLICE_LIT("session-manager"),
        .instance = 0,
        .pid = 4242,
        .state = SLICE_LIT("up"),
        .store = SLICE_LIT("ok"),
        .uptime_ms = 1500,
    };
    MSG_GOLDEN(msg_bus_health_form, "health.ping.reply", health);
    struct msg_bus_health sv_health = {.name = SLICE_LIT("supervisor"),
                                       .state = SLICE_LIT("stopping")};
    MSG_GOLDEN(msg_sv_health_form, "health.ping.reply.supervisor", sv_health);

    struct msg_bus_echo echo = {SLICE_LIT("abcdef")};
    MSG_GOLDEN(msg_bus_echo_form, "bus.echo", echo);

    struct msg_bus_fault fault = {SLICE_LIT("stream-broker"), 0.1, 0.05, 50, 0.5};
    MSG_GOLDEN(msg_bus_fault_form, "bus.fault", fault);

    static const char filters[] = "\x91\x81\xa4type\xabsession.get";
    struct msg_bus_tap tap = {{filters, sizeof(filters) - 1}};
    MSG_GOLDEN(msg_bus_tap_form, "bus.tap", tap);

    static const char requests[] = "\x81\xb5"
                                   "clickhouse-replicator"
                                   "\xb3tcp://10.0.0.1:7401";
    static const char events[] = "\x81\xad"
                                 "stream-broker"
                                 "\x91\xb3tcp://10.0.0.1:7501";
    struct msg_bus_cluster_node node = {
        .node = SLICE_LIT("node-a"),
        .addr = SLICE_LIT("10.0.0.1"),
        .leader = true,
        .fencing_token = 7,
        .age_ms = 120,
        .requests = {requests, sizeof(requests) - 1},
        .events = {events, sizeof(events) - 1},
    };
    MSG_GOLDEN(msg_bus_cluster_node_form, "cluster.members.node", node);
    struct mp_writer nodes;
    mp_writer_init(&nodes);
    mp_put_array(&nodes, 2);
    msg_encode(&msg_bus_cluster_node_form, &nodes, &node);
    node = (struct msg_bus_cluster_node){
        .node = SLICE_LIT("node-b"),
        .addr = SLICE_LIT(""),
        .age_ms = 900,
        .requests = SLICE_LIT("\x80"),
        .events = SLICE_LIT("\x80"),
    };
    msg_encode(&msg_bus_cluster_node_form, &nodes, &node);
    struct msg_bus_cluster cluster = {
        SLICE_LIT("node-b"), SLICE_LIT("node-a"), {mp_writer_data(&nodes), mp_writer_len(&nodes)}};
    MSG_GOLDEN(msg_bus_cluster_form, "cluster.members", cluster);
    mp_writer_fini(&nodes);
}

T_TEST(golden_control)
{
    struct msg_sv_status_child child = {
        .name = SLICE_LIT("stream-broker"),
        .state = SLICE_LIT("up"),
        .pid = 4243,
        .uptime_ms = 61000,
        .restarts = 1,
        .leader_only = false,
        .ready = true,
        .last_exit = SLICE_LIT("signal 9"),
        .fault = SLICE_LIT(""),
    };
    MSG_GOLDEN(msg_sv_status_child_form, "sv.status.reply.child", child);
    struct mp_writer children;
    mp_writer_init(&children);
    mp_put_array(&children, 1);
    msg_encode(&msg_sv_status_child_form, &children, &child);
    struct msg_sv_status_reply status = {
        .node = SLICE_LIT("node-a"),
        .leader = true,
        .fencing_token = 7,
        .cluster = SLICE_NULL, /* nil: no view yet */
        .children = {mp_writer_data(&children), mp_writer_len(&children)},
    };
    MSG_GOLDEN(msg_sv_status_reply_form, "sv.status.reply", status);
    mp_writer_fini(&children);

    struct msg_sv_child start = {.name = SLICE_LIT("stream-broker")};
    MSG_GOLDEN(msg_sv_child_form, "sv.start", start);
    struct msg_sv_child kill = {SLICE_LIT("stream-broker"), 15, true};
    MSG_GOLDEN(msg_sv_kill_form, "sv.kill", kill);
    struct msg_sv_child_reply child_reply = {SLICE_LIT("stream-broker"), SLICE_LIT("stopping")};
    MSG_GOLDEN(msg_sv_child_reply_form, "sv.start.reply", child_reply);

    struct msg_sv_fault_set fault_set = {SLICE_LIT("gateway"), 0.1, 0, 50, 1};
    MSG_GOLDEN(msg_sv_fault_set_form, "sv.fault_set", fault_set);
    static const char fault[] = "\x85\xa6target\xa7gateway\xa4"
                                "drop\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a\xa3"
                                "dup\xcb\x00\x00\x00\x00\x00\x00\x00\x00\xa8"
                                "delay_ms\x32\xaa"
                                "delay_rate\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00";
    struct msg_sv_fault_set_reply fault_reply = {{fault, sizeof(fault) - 1}};
    MSG_GOLDEN(msg_sv_fault_set_reply_form, "sv.fault_set.reply", fault_reply);
    char faults[sizeof(fault)] = "\x91";
    memcpy(faults + 1, fault, sizeof(fault) - 1);
    struct msg_sv_fault_list_reply fault_list = {{faults, sizeof(faults)}};
    MSG_GOLDEN(msg_sv_fault_list_reply_form, "sv.fault_list.reply", fault_list);

    struct msg_sv_tap_filter tap = {.id = SLICE_LIT("tetherctl.4242.0badf00d"),
                                    .filter = FILTER_MAP};
    MSG_GOLDEN(msg_sv_tap_filter_form, "sv.tap_filter", tap);
    struct msg_sv_tap_filter tap_cancel = {.id = SLICE_LIT("gateway.0.3"), .cancel = true};
    MSG_GOLDEN(msg_sv_tap_filter_form, "sv.tap_filter.cancel", tap_cancel);
    struct msg_sv_tap_filter_reply tap_reply = {2};
    MSG_GOLDEN(msg_sv_tap_filter_reply_form, "sv.tap_filter.reply", tap_reply);
}

/* the supervisor's health reply reads with an actor's form: what it lacks is empty */
T_TEST(health_of_the_supervisor)
{
    struct msg_bus_health in = {.name = SLICE_LIT("supervisor"), .state = SLICE_LIT("up")}, out;
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_sv_health_form, &w, &in);
    T_OK(msg_decode(&msg_bus_health_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(slice_eq(out.state, "up") && !out.store.p && out.pid == 0 && out.uptime_ms == 0);
    mp_writer_fini(&w);
}

/* sv.kill tells no signal (SIGKILL) from a nil one (refused) from a number */
T_TEST(kill_signal)
{
    struct msg_sv_child in = {.name = SLICE_LIT("x")}, out;
    T_OK(round_trip(&msg_sv_kill_form, &in, &out));
    T_ASSERT(!out.signal_given && slice_eq(out.name, "x"));
    T_OK(ONE(&msg_sv_kill_form, "signal", "\xc0", &out));
    T_ASSERT(out.signal_given && out.signal == 0 && !out.name.p);
    T_OK(ONE(&msg_sv_kill_form, "signal", "\x09", &out));
    T_ASSERT(out.signal_given && out.signal == 9);
    T_ERR(one_str(&msg_sv_kill_form, "signal", "KILL", &out), ERR_INVAL);
    /* a start reads no signal at all */
    T_OK(one_str(&msg_sv_child_form, "signal", "KILL", &out));
}

/* a child's name: absent and empty are told apart (ERR_INVAL and "no such child"); 39 bytes */
T_TEST(child_name)
{
    char name[MSG_SV_NAME_MAX + 2];
    struct msg_sv_child out;
    struct msg_sv_fault_set set;
    T_OK(msg_decode(&msg_sv_child_form, NULL, 0, &out));
    T_ASSERT(!out.name.p);
    T_OK(one_str(&msg_sv_child_form, "name", "", &out));
    T_ASSERT(out.name.p && out.name.n == 0);
    memset(name, 'n', sizeof(name));
    name[MSG_SV_NAME_MAX] = '\0';
    T_OK(one_str(&msg_sv_child_form, "name", name, &out));
    T_OK(one_str(&msg_sv_kill_form, "name", name, &out));
    T_OK(one_str(&msg_sv_fault_set_form, "name", name, &set));
    name[MSG_SV_NAME_MAX] = 'n';
    name[MSG_SV_NAME_MAX + 1] = '\0';
    T_ERR(one_str(&msg_sv_child_form, "name", name, &out), ERR_INVAL);
    T_ERR(one_str(&msg_sv_kill_form, "name", name, &out), ERR_INVAL);
    T_ERR(one_str(&msg_sv_fault_set_form, "name", name, &set), ERR_INVAL);
    T_ERR(ONE(&msg_sv_child_form, "name", "\x01", &out), ERR_INVAL);
}

/* sv.fault_set and bus.fault: fractions may come as integers; bus.fault needs its target */
T_TEST(fault)
{
    struct msg_sv_fault_set set;
    struct msg_bus_fault ev;
    T_OK(ONE(&msg_sv_fault_set_form, "drop", "\x01", &set));
    T_ASSERT(set.drop == 1.0 && set.dup == 0 && set.delay_ms == 0 && !set.name.p);
    T_OK(ONE(&msg_sv_fault_set_form, "delay_ms", "\xce\x00\x0a\xae\x60", &set));
    T_ASSERT(set.delay_ms == 700000); /* past MSG_SV_DELAY_MAX: the handler reads none */
    T_ERR(ONE(&msg_sv_fault_set_form, "delay_ms", "\xff", &set), ERR_INVAL);
    T_ERR(ONE(&msg_bus_fault_form, "drop", "\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00", &ev), ERR_INVAL);
    T_ERR(one_str(&msg_bus_fault_form, "target", "", &ev), ERR_INVAL);
    T_OK(one_str(&msg_bus_fault_form, "target", "gateway", &ev));
    T_ASSERT(slice_eq(ev.target, "gateway") && ev.drop == 0 && ev.delay_rate == 0);
}

/* sv.tap_filter: id of 1 to 63 bytes, cancel a bool written only when set, filter raw */
T_TEST(tap_filter)
{
    char id[MSG_SV_TAP_ID_MAX + 2];
    struct msg_sv_tap_filter in = {.id = SLICE_LIT("l")}, out;
    T_OK(round_trip(&msg_sv_tap_filter_form, &in, &out));
    T_ASSERT(!out.cancel && !out.filter.p);
    T_ERR(msg_decode(&msg_sv_tap_filter_form, NULL, 0, &out), ERR_INVAL);
    T_ERR(one_str(&msg_sv_tap_filter_form, "id", "", &out), ERR_INVAL);
    memset(id, 'i', sizeof(id));
    id[MSG_SV_TAP_ID_MAX] = '\0';
    T_OK(one_str(&msg_sv_tap_filter_form, "id", id, &out));
    id[MSG_SV_TAP_ID_MAX] = 'i';
    id[MSG_SV_TAP_ID_MAX + 1] = '\0';
    T_ERR(one_str(&msg_sv_tap_filter_form, "id", id, &out), ERR_INVAL);
    /* a filter given as nil is kept as it came: the handler's tap_filter_read refuses it */
    in.filter = SLICE_LIT("\xc0");
    T_OK(round_trip(&msg_sv_tap_filter_form, &in, &out));
    T_ASSERT(out.filter.n == 1 && out.filter.p[0] == '\xc0');
    T_ERR(ONE(&msg_sv_tap_filter_form, "cancel", "\x01", &out), ERR_INVAL);
}

/* sv.status: no cluster view yet is nil, kept as it came; bus.echo's data may be a str */
T_TEST(raw_and_bin)
{
    struct msg_sv_status_reply st = {.node = SLICE_LIT("n")}, back;
    T_OK(round_trip(&msg_sv_status_reply_form, &st, &back));
    T_ASSERT(back.cluster.n == 1 && back.cluster.p[0] == '\xc0' && !back.children.p);
    struct msg_bus_echo echo;
    T_OK(one_str(&msg_bus_echo_form, "data", "hi", &echo));
    T_ASSERT(slice_eq(echo.data, "hi"));
}

int main(void)
{
    mp_writer_init(&body);
    T_RUN(golden_events);
    T_RUN(golden_control);
    T_RUN(health_of_the_supervisor);
    T_RUN(kill_signal);
    T_RUN(child_name);
    T_RUN(fault);
    T_RUN(tap_filter);
    T_RUN(raw_and_bin);
    mp_writer_fini(&body);
    return T_DONE();
}
