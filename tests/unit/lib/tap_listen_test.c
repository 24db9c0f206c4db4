/*
 * tap_listen_test.c - a tap listener's dials: each socket file dialled once, and dialled anew
 * when its process restarted, even when nng gave the old dial up (nng 1.5.2 does that when
 * the peer dies during the handshake; closing the dialer leaves it the same way).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include "tap_listen.h"
#include "t.h"

static char dir[PATH_MAX];

/* A tap socket at <dir>/tap/<name>.ipc, as bus_tap_open binds it. */
static int tap_pub(const char *name, nng_socket *pub)
{
    char url[PATH_MAX + 64];
    snprintf(url, sizeof(url), "ipc://%s/tap/%s.ipc", dir, name);
    if (nng_pub0_open(pub) != 0)
        return -1;
    return nng_listen(*pub, url, NULL, 0);
}

/* Whether a message sent on pub reaches sub within about 2 s (a new pipe takes a moment). */
static bool reaches(nng_socket pub, nng_socket sub)
{
    for (int i = 0; i < 40; i++) {
        char *buf;
        size_t n;
        (void)nng_send(pub, "rec", 3, 0);
        if (nng_recv(sub, &buf, &n, NNG_FLAG_ALLOC) == 0) {
            nng_free(buf, n);
            return true;
        }
    }
    return false;
}

T_TEST(a_restarted_process_is_dialled_anew)
{
    static struct tap_dials d;
    nng_socket pub, sub;
    T_OK(tap_pub("b", &pub));
    T_OK(nng_sub0_open(&sub));
    T_OK(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0));
    T_OK(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 50));
    tap_listen_rescan(sub, dir, &d);
    tap_listen_rescan(sub, dir, &d);
    T_EQ(d.n, 1u); /* dialled once */
    T_ASSERT(reaches(pub, sub));
    /* the dial dies as nng 1.5.2 leaves it: no pipe, nobody redialling; then the process
     * restarts, and its socket file is a new one */
    for (unsigned k = 0; k < d.n; k++)
        T_OK(nng_dialer_close(d.dialer[k]));
    nng_close(pub);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/tap/b.ipc", dir);
    (void)unlink(path);
    T_OK(tap_pub("b", &pub));
    T_ASSERT(!reaches(pub, sub));
    tap_listen_rescan(sub, dir, &d);
    T_ASSERT(reaches(pub, sub));
    nng_close(pub);
    nng_close(sub);
}

int main(void)
{
    char tap[PATH_MAX + 8];
    snprintf(dir, sizeof(dir), "/tmp/tether-tap-listen-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(tap, sizeof(tap), "%s/tap", dir);
    if (mkdir(tap, 0755) != 0)
        return 1;
    T_RUN(a_restarted_process_is_dialled_anew);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    (void)system(cmd);
    return T_DONE();
}
