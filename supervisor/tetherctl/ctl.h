/*
 * ctl.h - what tetherctl's command files share: the connection to the bus
 * and the supervisor, and small helpers to print and read reply bodies.
 * Exit codes: 0 done, CTL_EXIT_ERR the other side answered with an error,
 * EXIT_PERMANENT (100) usage, EXIT_TEMPORARY (111) nothing answered.
 */
#ifndef TETHER_CTL_H
#define TETHER_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "cfg.h"
#include "mp.h"
#include "msgcodec.h"

#define CTL_EXIT_ERR 1

struct ctl {
    struct cfg_common cfg;
    char bus_dir[BUS_URL_MAX];
    struct bus *bus;
    struct bus_peer *sv; /* the supervisor's control socket, after ctl_open(c, true) */
};

/* Joins the bus; with need_supervisor also dials the control socket. Returns an exit code. */
int ctl_open(struct ctl *c, bool need_supervisor);

/* Prints the usage text; returns EXIT_PERMANENT. */
int ctl_usage(void);

/* One request to the supervisor; on failure prints why and returns the exit code. */
int ctl_call(struct ctl *c, uint16_t type, struct mp_writer *body, struct bus_msg *reply);

/* Prints a msgpack body as one JSON line (secrets masked). */
void ctl_print_json(struct slice body);

/* Field readers for a msgpack map body; empty/0 when absent. */
const char *ctl_str(struct slice map, const char *key, char *buf, size_t cap);
uint64_t ctl_uint(struct slice map, const char *key);

/* Reads body as form f into out (size bytes); a body that is none reads as empty (all zero). */
void ctl_decode(const struct msg_form *f, struct slice body, void *out, size_t size);
/* raw (a raw field) as an array: *r at the first of its *n elements; false when it is none. */
bool ctl_list(struct slice raw, struct mp_reader *r, uint32_t *n);
/* s as a C string in buf (cap bytes): "" when absent or too long. Returns buf. */
const char *ctl_cstr(struct slice s, char *buf, size_t cap);

/* A signal name (KILL, SIGTERM, ...) or number 1-64; -1 when it is neither. */
int ctl_signal_number(const char *s);
/* The name of sig without "SIG" (KILL), or its number written into buf. */
const char *ctl_signal_name(int sig, char *buf, size_t cap);

/*
 * Parses a fault setting given as argv words (drop=F dup=F delay=DUR
 * delay_rate=F, or off) as `tetherctl fault` does; on a bad setting prints
 * why and returns EXIT_PERMANENT, else 0.
 */
int ctl_fault_parse(int argc, char **argv, struct bus_fault *f);
/* The sv.fault_set body for target name. */
void ctl_fault_encode(struct mp_writer *w, const char *name, const struct bus_fault *f);

/*
 * tetherctl tap [options] (tap.c): argv holds the options. Opens the bus itself (dialling
 * the supervisor only when a filter is given, to register it) and prints until --count
 * messages were shown, --seconds passed, or SIGINT/SIGTERM; returns the exit code.
 */
int ctl_tap(struct ctl *c, int argc, char **argv);

/* tetherctl proto-doc (proto_doc.c): prints docs/protocol.md; returns 0. */
int ctl_proto_doc(void);

/* tetherctl env ...: argv[0] is the subcommand (env.c). */
int ctl_env(struct ctl *c, int argc, char **argv);

/*
 * tetherctl chaos ...: argv[0] is the subcommand (chaos.c). Opens the bus
 * itself (after blocking SIGINT/SIGTERM/SIGHUP, which it takes to undo
 * what it did), so it is called before ctl_open.
 */
int ctl_chaos(struct ctl *c, int argc, char **argv);

#endif
