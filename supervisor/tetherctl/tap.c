/*
 * tap.c - tetherctl tap: every bus message the processes copy to their tap
 * sockets, printed as JSON lines (or counted per type with --rate), filtered
 * by the options; the filter is registered with the supervisor so that the
 * processes keep the rest off their taps.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/supplemental/util/platform.h>

#include "bus.h"
#include "clock.h"
#include "msg.h"
#include "proc.h"
#include "tap_filter.h"
#include "tap_listen.h"
#include "tap_record.h"

#include "ctl.h"

struct tap_opts {
    struct tap_filter want; /* registered with the supervisor, and applied here again */
    long count;
    double seconds;
    bool rate;
};

static volatile sig_atomic_t ctl_interrupted;

static void ctl_on_sigint(int sig)
{
    (void)sig;
    ctl_interrupted = 1;
}

struct tap_rate {
    char type[48];
    unsigned long n;
};

/* Reads the next record of a tap message (a batch of them, bus.md) and prints it (or counts
 * it): 1 shown, 0 filtered out or unreadable, -1 the rest of the message cannot be read. */
static int tap_handle(struct mp_reader *r, const struct tap_opts *f, struct tap_rate *rates,
                      unsigned *nrates)
{
    static struct tap_record rec; /* a topic's worth of bytes: not on the stack */
    err_t rc = tap_record_next(r, &rec);
    if (rc == ERR_PROTO)
        return -1;
    if (rc != OK || !tap_record_match(&f->want, &rec))
        return 0;

    if (f->rate) {
        const char *tname = msg_name(rec.env.type);
        for (unsigned i = 0; i < *nrates; i++)
            if (strcmp(rates[i].type, tname) == 0) {
                rates[i].n++;
                return 1;
            }
        if (*nrates < 64) {
            snprintf(rates[*nrates].type, sizeof(rates[0].type), "%s", tname);
            rates[(*nrates)++].n = 1;
        }
        return 1;
    }
    struct jbuf line = {0};
    tap_record_json(&rec, &line);
    if (line.err == OK)
        printf("%.*s\n", (int)line.n, line.p);
    fflush(stdout);
    jbuf_free(&line);
    return 1;
}

/*
 * Tells the supervisor what this listener wants (sv.tap_filter), so that every process keeps
 * the rest off its tap before copying it; renewed every second, cancelled at the end. Without
 * a supervisor (a bench's bus) nothing is narrowed and the filter applies here only.
 */
static void tap_register(struct ctl *c, const char *id, const struct tap_filter *want, bool cancel)
{
    struct mp_writer w;
    struct bus_msg reply;
    mp_writer_init(&w);
    if (c->sv && tap_filter_request_put(&w, id, want, cancel) == OK &&
        bus_call_sync(c->sv, MSG_SV_TAP_FILTER, mp_writer_data(&w), mp_writer_len(&w), 200,
                      &reply) == OK)
        bus_msg_free(&reply);
    mp_writer_fini(&w);
}

static int tap_run(struct ctl *c, const struct tap_opts *f)
{
    nng_socket s;
    static struct tap_dials dials; /* 85 KiB: not on the stack */
    unsigned nrates = 0;
    struct tap_rate rates[64];
    long printed = 0;
    uint64_t start = clock_mono_ms(), last_scan = 0, last_rate = start;
    int rv;
    char id[64];
    snprintf(id, sizeof(id), "tetherctl.%d.%08x", (int)getpid(), nng_random());

    if ((rv = nng_sub0_open(&s)) != 0) {
        fprintf(stderr, "tetherctl: cannot open a socket: %s\n", nng_strerror(rv));
        return EXIT_TEMPORARY;
    }
    (void)nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, (size_t)c->cfg.bus_recv_max * 2);
    (void)nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    (void)nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 200);
    (void)nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 50);
    signal(SIGINT, ctl_on_sigint);
    signal(SIGTERM, ctl_on_sigint);

    while (!ctl_interrupted) {
        uint64_t now = clock_mono_ms();
        if (f->seconds > 0 && now - start >= (uint64_t)(f->seconds * 1000))
            break;
        if (now - last_scan >= 1000) {
            tap_listen_rescan(s, c->bus_dir, &dials);
            if (!tap_filter_empty(&f->want))
                tap_register(c, id, &f->want, false);
            last_scan = now;
        }
        if (f->rate && now - last_rate >= 1000) {
            double secs = (double)(now - last_rate) / 1000.0;
            printf("{\"window_s\":%.2f,\"rates\":{", secs);
            for (unsigned i = 0; i < nrates; i++)
                printf("%s\"%s\":%.1f", i ? "," : "", rates[i].type, (double)rates[i].n / secs);
            printf("}}\n");
            fflush(stdout);
            nrates = 0;
            last_rate = now;
        }
        char *buf;
        size_t n;
        rv = nng_recv(s, &buf, &n, NNG_FLAG_ALLOC);
        if (rv == NNG_ETIMEDOUT)
            continue;
        if (rv != 0)
            break;
        struct mp_reader r;
        int shown = 0;
        mp_reader_init(&r, buf, n);
        while (mp_reader_left(&r) > 0 && (f->count <= 0 || printed < f->count) &&
               (shown = tap_handle(&r, f, rates, &nrates)) >= 0)
            if (shown && !f->rate)
                printed++;
        nng_free(buf, n);
        if (f->count > 0 && printed >= f->count)
            break;
    }
    if (!tap_filter_empty(&f->want))
        tap_register(c, id, &f->want, true);
    /* The socket is left for the exit to close: nng 1.5's nng_close of a SUB socket that is
     * still taking messages at full rate hangs now and then in its reaper (tests/bench). */
    return 0;
}

int ctl_tap(struct ctl *c, int argc, char **argv)
{
    int rc;
    struct tap_opts f = {0};
    for (int i = 0; i < argc; i++) {
        const char *name = strncmp(argv[i], "--", 2) == 0 ? argv[i] + 2 : "";
        if (tap_filter_room(name) > 0) {
            if (i + 1 >= argc || tap_filter_set(&f.want, name, argv[i + 1]) != OK) {
                fprintf(stderr, "tetherctl: %s needs a value of 1 to %zu bytes\n", argv[i],
                        tap_filter_room(name));
                return EXIT_PERMANENT;
            }
            i++;
        } else if (strcmp(argv[i], "--rate") == 0)
            f.rate = true;
        else if (i + 1 < argc && strcmp(argv[i], "--count") == 0)
            f.count = strtol(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0)
            f.seconds = strtod(argv[++i], NULL);
        else
            return ctl_usage();
    }
    if ((rc = ctl_open(c, !tap_filter_empty(&f.want))) != 0)
        return rc;
    return tap_run(c, &f);
}
