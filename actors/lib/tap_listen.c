/*
 * tap_listen.c - a tap listener's dials (tap_listen.h).
 */
#include "tap_listen.h"

#include <glob.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void tap_listen_rescan(nng_socket s, const char *bus_dir, struct tap_dials *d)
{
    char pattern[BUS_URL_MAX + 16];
    glob_t g;
    snprintf(pattern, sizeof(pattern), "%s/tap/*.ipc", bus_dir);
    if (glob(pattern, 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc && d->n < TAP_LISTEN_MAX; i++) {
        char url[BUS_URL_MAX + 64];
        bool known = false;
        snprintf(url, sizeof(url), "ipc://%s", g.gl_pathv[i]);
        for (unsigned k = 0; k < d->n && !known; k++)
            known = strcmp(d->url[k], url) == 0;
        if (!known && nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK) == 0)
            snprintf(d->url[d->n++], sizeof(d->url[0]), "%s", url);
    }
    globfree(&g);
}
