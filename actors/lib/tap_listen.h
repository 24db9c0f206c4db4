/*
 * tap_listen.h - a tap listener's dials: every process's tap socket in the bus directory,
 * each dialled once (tetherctl tap, the console's tap view).
 *
 * Call tap_listen_rescan about every second: processes that started since are dialled; a
 * dialled socket of a process that restarts is redialled by nng itself. Sockets of dead
 * processes stay behind as files; dialling them is harmless.
 */
#ifndef TETHER_LIB_TAP_LISTEN_H
#define TETHER_LIB_TAP_LISTEN_H

#include <nng/nng.h>

#include "bus.h"

#define TAP_LISTEN_MAX 256 /* tap sockets one listener dials */

struct tap_dials {
    unsigned n;
    char url[TAP_LISTEN_MAX][BUS_URL_MAX + 64];
};

/* Dials, on s, every <bus_dir>/tap/<name>.ipc not dialled yet (d starts zeroed). */
void tap_listen_rescan(nng_socket s, const char *bus_dir, struct tap_dials *d);

#endif
