/*
 * tap_record.h - one record of a tap message, read and shown as a JSON line.
 *
 * A tap message holds one or more records (docs/bus.md#the-tap); tap_record_next reads the
 * next one from a reader over the message. What tetherctl tap prints and what the console's
 * tap view streams are both tap_record_json: one renderer, the same masking (mpjson.h) and
 * the same cut of long strings at 256 bytes.
 *
 * A record's slices point into the message: it lives as long as the message buffer.
 */
#ifndef TETHER_LIB_TAP_RECORD_H
#define TETHER_LIB_TAP_RECORD_H

#include <stdint.h>

#include "bus.h"
#include "envelope.h"
#include "jbuf.h"
#include "mp.h"
#include "tap_filter.h"

struct tap_record {
    uint64_t ts_ms, instance, bytes; /* bytes: the envelope's size on the bus */
    char proc[64], peer[64];         /* "" when the record has none */
    char topic[BUS_TOPIC_MAX + 1];   /* events only, else "" */
    bool has_peer, has_topic;
    struct slice dir;  /* "in" or "out" */
    struct slice envb; /* the envelope as published (maybe cut for display) */
    struct envelope env;
};

/*
 * The next record of the message r reads. OK; ERR_INVAL for a record read whole whose envelope
 * does not decode (skip it and read on); ERR_PROTO when the rest cannot be read.
 */
err_t tap_record_next(struct mp_reader *r, struct tap_record *rec);

/* The record against a listener's filter (tap_filter.h). */
bool tap_record_match(const struct tap_filter *f, const struct tap_record *rec);

/* Appends the record as one JSON object, without a newline (docs/tetherctl.md lists its fields). */
void tap_record_json(const struct tap_record *rec, struct jbuf *out);

#endif
