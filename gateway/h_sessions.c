/*
 * h_sessions.c - the sessions API (placeholder: every route answers 501
 * until the session handlers land).
 */
#include "handlers.h"

void gw_on_session_create(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_session_get(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_session_update(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_session_close(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}

void gw_on_session_end_and_continue(struct gw_call *c)
{
    gw_respond_error(c, 501, "Not implemented yet", 0);
}
