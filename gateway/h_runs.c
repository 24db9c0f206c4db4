/*
 * h_runs.c - the runs and worker API (placeholder: every route answers 501
 * until the run handlers land).
 */
#include "handlers.h"

void gw_on_worker_dequeue(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_run_heartbeat(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_run_complete(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_run_fail(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_run_cancel(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_run_get(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}
