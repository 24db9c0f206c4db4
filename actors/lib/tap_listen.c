/*
 * tap_listen.c - a tap listener's dials (tap_listen.h).
 */
#include "tap_listen.h"

#include <glob.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Which socket file path is now: its inode and change time; false when it is gone. */
static bool tap_listen_file(const char *path, uint64_t file[2])
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    file[0] = (uint64_t)st.st_ino;
    file[1] = (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec;
    return true;
}

void tap_listen_rescan(nng_socket s, const char *bus_dir, struct tap_dials *d)
{
    char pattern[BUS_URL_MAX + 16];
    glob_t g;
    snprintf(pattern, sizeof(pattern), "%s/tap/*.ipc", bus_dir);
    if (glob(pattern, 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char url[BUS_URL_MAX + 64];
        uint64_t file[2];
        unsigned k = 0;
        if (!tap_listen_file(g.gl_pathv[i], file))
            continue;
        snprintf(url, sizeof(url), "ipc://%s", g.gl_pathv[i]);
        while (k < d->n && strcmp(d->url[k], url) != 0)
            k++;
        if (k < d->n && memcmp(d->file[k], file, sizeof(file)) == 0)
            continue; /* dialled, and the same process's socket */
        if (k == d->n && d->n == TAP_LISTEN_MAX)
            continue;
        if (k < d->n)
            (void)nng_dialer_close(d->dialer[k]);
        if (nng_dial(s, url, &d->dialer[k], NNG_FLAG_NONBLOCK) != 0) {
            if (k < d->n) /* tried again on the next rescan */
                memset(d->file[k], 0, sizeof(d->file[k]));
            continue;
        }
        memcpy(d->file[k], file, sizeof(file));
        if (k == d->n)
            snprintf(d->url[d->n++], sizeof(d->url[0]), "%s", url);
    }
    globfree(&g);
}
