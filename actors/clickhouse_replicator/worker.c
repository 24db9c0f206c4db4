/*
 * worker.c - one thread with its own PostgreSQL and ClickHouse connections that runs
 * blocking store calls for the loop (see chr.h).
 *
 * Jobs go in under a mutex; finished ones come back on a second list and an
 * eventfd wakes the loop, which runs their done() callbacks. The loop itself
 * never waits for the thread except in chr_worker_stop().
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "chr.h"
#include "log.h"

static void *chr_worker_main(void *arg)
{
    struct chr_worker *w = arg;
    pthread_mutex_lock(&w->_mu);
    for (;;) {
        while (!w->_in && !w->_stop)
            pthread_cond_wait(&w->_cv, &w->_mu);
        if (w->_stop)
            break;
        struct chr_job *j = w->_in;
        w->_in = j->_next;
        if (!w->_in)
            w->_in_tail = NULL;
        pthread_mutex_unlock(&w->_mu);
        j->rc = OK;
        j->ops->run(j, w);
        pthread_mutex_lock(&w->_mu);
        j->_next = NULL;
        if (w->_out_tail)
            w->_out_tail->_next = j;
        else
            w->_out = j;
        w->_out_tail = j;
        uint64_t one = 1;
        if (write(w->_efd, &one, sizeof(one)) < 0) {
            /* the counter cannot overflow at one write per job; nothing to do */
        }
    }
    pthread_mutex_unlock(&w->_mu);
    return NULL;
}

/* Runs done() of every finished job, on the loop. */
static void chr_worker_drain(struct chr_worker *w)
{
    pthread_mutex_lock(&w->_mu);
    struct chr_job *j = w->_out;
    w->_out = w->_out_tail = NULL;
    pthread_mutex_unlock(&w->_mu);
    while (j) {
        struct chr_job *next = j->_next;
        w->busy--;
        j->ops->done(j);
        j = next;
    }
}

static void chr_worker_on_efd(struct loop *l, int fd, short revents, void *arg)
{
    struct chr_worker *w = arg;
    uint64_t v;
    (void)l;
    (void)revents;
    if (read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: a spurious wake-up */
    }
    chr_worker_drain(w);
}

err_t chr_worker_start(struct chr_worker *w, struct chr *chr, const char *name)
{
    struct actor *a = chr->a;
    w->name = name;
    w->chr = chr;
    w->loop = chr->loop;
    w->_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->_efd < 0)
        return ERR_INTERNAL;
    pthread_mutex_init(&w->_mu, NULL);
    pthread_cond_init(&w->_cv, NULL);
    db_pg_init(&w->pg, a->cfg.pg_url, (unsigned)a->cfg.pg_statement_timeout_ms);
    err_t rc = db_ch_init(&w->ch, a->cfg.ch_url, 10000);
    if (rc != OK)
        return rc;
    rc = loop_watch(w->loop, w->_efd, POLLIN, chr_worker_on_efd, w);
    if (rc != OK)
        return rc;
    if (pthread_create(&w->_th, NULL, chr_worker_main, w) != 0) {
        LOG_ERROR("chr.thread_failed", "could not start the %s thread", name);
        return ERR_INTERNAL;
    }
    w->_started = true;
    return OK;
}

void chr_worker_submit(struct chr_worker *w, struct chr_job *j)
{
    j->_next = NULL;
    w->busy++;
    pthread_mutex_lock(&w->_mu);
    if (w->_in_tail)
        w->_in_tail->_next = j;
    else
        w->_in = j;
    w->_in_tail = j;
    pthread_cond_signal(&w->_cv);
    pthread_mutex_unlock(&w->_mu);
}

void chr_worker_stop(struct chr_worker *w)
{
    if (!w->_started)
        return;
    pthread_mutex_lock(&w->_mu);
    w->_stop = true;
    pthread_cond_signal(&w->_cv);
    pthread_mutex_unlock(&w->_mu);
    pthread_join(w->_th, NULL);
    w->_started = false;
    chr_worker_drain(w);
    /* what never ran is answered too: a list request must get its one reply */
    struct chr_job *j = w->_in;
    w->_in = w->_in_tail = NULL;
    while (j) {
        struct chr_job *next = j->_next;
        w->busy--;
        j->rc = ERR_CLOSED;
        j->ops->done(j);
        j = next;
    }
    loop_unwatch(w->loop, w->_efd);
    close(w->_efd);
    db_pg_fini(&w->pg);
    db_ch_fini(&w->ch);
    pthread_mutex_destroy(&w->_mu);
    pthread_cond_destroy(&w->_cv);
}
