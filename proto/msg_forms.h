/*
 * msg_forms.h - which typed body (msgcodec.h) each message of the catalogue
 * carries: the link from a MSG_* number to its structs, for the generated
 * protocol page and for a test that keeps every message typed.
 */
#ifndef TETHER_PROTO_MSG_FORMS_H
#define TETHER_PROTO_MSG_FORMS_H

#include <stddef.h>
#include <stdint.h>

#include "msgcodec.h"

struct msg_forms {
    uint16_t type;
    const struct msg_form *request; /* the request's or event's body; NULL: it has none */
    const struct msg_form *reply;   /* the reply's body; NULL: none, or an object not typed */
    const char *why_untyped;        /* for a reply that has a body but no form: why */
};

extern const struct msg_forms msg_forms[];
extern const size_t msg_forms_len;

/* The entry of type, or NULL when it has none. */
const struct msg_forms *msg_forms_of(uint16_t type);

#endif
