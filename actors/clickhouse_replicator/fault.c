/*
 * fault.c - the replicator's fault injection for tests: TETHER_CHR_FAULT_FILE
 * names a point to SIGKILL the process at, or a marker of rows ClickHouse is
 * made to refuse.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "chr.h"
#include "log.h"

void chr_fault_point(struct chr *chr, const char *what)
{
    char buf[64];
    if (!chr->cfg.fault_file || !chr->cfg.fault_file[0])
        return;
    FILE *f = fopen(chr->cfg.fault_file, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (strcmp(buf, what) != 0)
        return;
    (void)unlink(chr->cfg.fault_file);
    LOG_WARN("chr.fault", "fault injection: SIGKILL %s", what);
    raise(SIGKILL);
}

bool chr_fault_refuses(const struct chr *chr, const char *data, size_t n)
{
    static const char pfx[] = "refuse_row ";
    char buf[128];
    if (!chr->cfg.fault_file || !chr->cfg.fault_file[0])
        return false;
    FILE *f = fopen(chr->cfg.fault_file, "r");
    if (!f)
        return false;
    size_t got = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[got] = '\0';
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
        buf[--got] = '\0';
    if (got <= sizeof(pfx) - 1 || memcmp(buf, pfx, sizeof(pfx) - 1) != 0)
        return false;
    const char *marker = buf + sizeof(pfx) - 1;
    return memmem(data, n, marker, strlen(marker)) != NULL;
}
