/*
 * proc.c - readiness notification and supervisor-death detection.
 */
#include "proc.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int proc_env_fd(const char *name)
{
    const char *v = getenv(name);
    char *end;
    long fd;
    if (!v || !*v)
        return -1;
    errno = 0;
    fd = strtol(v, &end, 10);
    if (errno || *end || fd < 3 || fd > 1024)
        return -1;
    return (int)fd;
}

void proc_notify_ready(void)
{
    static bool done;
    int fd;
    if (done)
        return;
    done = true;
    fd = proc_env_fd("TETHER_NOTIFY_FD");
    if (fd < 0)
        return;
    (void)!write(fd, "\n", 1);
    close(fd);
}

int proc_parent_fd(void)
{
    return proc_env_fd("TETHER_PARENT_FD");
}

bool proc_parent_gone(int fd)
{
    char buf[64];
    ssize_t n = read(fd, buf, sizeof(buf));
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

unsigned proc_instance(void)
{
    const char *v = getenv("TETHER_INSTANCE");
    char *end;
    unsigned long n;
    if (!v || !*v)
        return 0;
    n = strtoul(v, &end, 10);
    return *end || n > 1000 ? 0 : (unsigned)n;
}

const char *proc_child_name(const char *fallback)
{
    const char *v = getenv("TETHER_CHILD_NAME");
    return v && *v ? v : fallback;
}
