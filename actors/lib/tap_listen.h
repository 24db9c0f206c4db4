/*
 * tap_listen.h - a tap listener's dials: every process's tap socket in the bus directory,
 * each dialled once (tetherctl tap, the console's tap view).
 *
 * Call tap_listen_rescan about every second: processes that started since are dialled, and a
 * process that restarted (its socket file is another) is dialled anew: nng 1.5.2 may give up on
 * a dial whose peer died during the handshake (docs/rationale.md, "Every dial is watched").
 * Sockets of dead processes stay behind as files; dialling them is harmless.
 */
#ifndef TETHER_LIB_TAP_LISTEN_H
#define TETHER_LIB_TAP_LISTEN_H

#include <stdint.h>

#include <nng/nng.h>

#include "bus.h"

#define TAP_LISTEN_MAX 256 /* tap sockets one listener dials */

struct tap_dials {
    unsigned n;
    char url[TAP_LISTEN_MAX][BUS_URL_MAX + 64];
    nng_dialer dialer[TAP_LISTEN_MAX];
    uint64_t file[TAP_LISTEN_MAX][2]; /* the socket file dialled: inode and change time */
};

/* Dials, on s, every <bus_dir>/tap/<name>.ipc not dialled yet (d starts zeroed). */
void tap_listen_rescan(nng_socket s, const char *bus_dir, struct tap_dials *d);

#endif
