/*
 * waitpoints_int.h - what the waitpoint routes share (internal to the
 * gateway): the call's state, the fields every create body has, the readers
 * of waitpoint-registry replies, and the requests more than one route sends.
 *
 * h_waitpoints.c owns all of it; the routes using it are h_waitpoints.c (runs
 * that wait), h_waitpoint_tokens.c (tokens) and h_run_suspend.c (suspend and
 * hold). The state is made by gw_wp_st and freed with the call
 * (c->state_free), its tags included; the readers copy out of the reply.
 */
#ifndef TETHER_GW_WAITPOINTS_INT_H
#define TETHER_GW_WAITPOINTS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "http.h"
#include "mp.h"

#define GW_WP_IDEM_MAX 2048
#define GW_WP_TAGS_MAX 10
#define GW_WP_TAG_MAX 128
#define GW_WP_NOT_FOUND "Waitpoint not found"
#define GW_WP_RUN_NOT_FOUND "Run not found"

/* What a route keeps between its bus calls (c->state). */
struct gw_wp_state {
    char kind[16];
    char key[GW_PARAM_MAX];
    char io[4];
    char idem[GW_WP_IDEM_MAX + 1];
    uint64_t idem_ttl_ms;
    uint64_t timeout_at_ms;
    uint64_t from_seq;
    json_t *tags; /* array of strings, owned */
    char worker[132];
    bool has_worker;
};

/* The call's waitpoint state: made zeroed on first use, freed with the call. */
struct gw_wp_state *gw_wp_st(struct gw_call *c);
/* The fields every create body shares (idempotencyKey, idempotencyKeyTTL, tags, and the
 * timeout when timeout_field) into the state; false when the call was answered. */
bool gw_wp_common(struct gw_call *c, json_t *o, const char *timeout_field);

/* A string field into out; false when absent or too long (out is then ""). */
bool gw_wp_str(struct slice m, const char *k, char *out, size_t cap);
/* An unsigned field; 0 when absent. */
uint64_t gw_wp_u64(struct slice m, const char *k);
/* A boolean field; false when absent. */
bool gw_wp_bool(struct slice m, const char *k);
struct msg_wp_reply;
/* A reply {waitpoint, flags} of the registry (env is OK's) into r, and the waitpoint's id into
 * id (cap bytes) unless id is NULL; false when malformed. */
bool gw_wp_reply(const struct envelope *env, struct msg_wp_reply *r, char *id, size_t cap);
/* o[k] = the time ms as an ISO 8601 string; nothing when ms is 0. */
void gw_wp_set_date(json_t *o, const char *k, uint64_t ms);

/* The registry's errors answered (404, 422, else gw_respond_err); true when answered. */
bool gw_wp_failed(struct gw_call *c, err_t rc, const struct envelope *env, const char *op);
/* wp.create's reply into r and the waitpoint's id (cap bytes); false when a failure or a
 * malformed reply was answered instead (gw_wp_failed, or 500). */
bool gw_wp_created(struct gw_call *c, err_t rc, const struct envelope *env, struct msg_wp_reply *r,
                   char *id, size_t cap);
/* Sends the request w built (and finishes w); on a send failure answers the call. */
void gw_wp_send(struct gw_call *c, int actor, uint16_t type, struct mp_writer *w, bus_reply_fn cb);
/* wp.create of the state's waitpoint for run (NULL: none); the state's tags go with it. */
void gw_wp_create(struct gw_call *c, const char *run, bus_reply_fn cb);
/* write on runs:<the URL's run>; false (403 sent) when the credential may not. */
bool gw_wp_authorize_run(struct gw_call *c);

#endif
