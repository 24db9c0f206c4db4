/*
 * msg_forms_test.c - every message of the catalogue has its typed body (proto/msg_forms.h),
 * and every form is well made: a new message without one, or a form with a repeated key,
 * fails here.
 */
#include <stdio.h>
#include <string.h>

#include "msg.h"
#include "msg_forms.h"
#include "t.h"

/* A body the catalogue describes as empty: "{}" or "{} (empty)". */
static int empty_body(const char *prose)
{
    return strncmp(prose, "{}", 2) == 0;
}

static int form_well_made(const struct msg_form *f)
{
    if (!f || !f->name || f->nfields == 0 || f->nfields > 64)
        return 0;
    for (unsigned i = 0; i < f->nfields; i++) {
        const struct msg_field *a = &f->fields[i];
        if (!a->key || !a->key[0])
            return 0;
        for (unsigned j = i + 1; j < f->nfields; j++)
            if (strcmp(a->key, f->fields[j].key) == 0)
                return 0;
    }
    return 1;
}

T_TEST(every_message_typed)
{
    char what[160];
    for (size_t i = 0; i < msg_catalogue_len; i++) {
        const struct msg_def *d = &msg_catalogue[i];
        const struct msg_forms *e = msg_forms_of(d->type);
        snprintf(what, sizeof(what), "%s has an entry in msg_forms", d->name);
        if (!t_check(e != NULL, __FILE__, __LINE__, what))
            continue;
        snprintf(what, sizeof(what), "%s: a request form, unless its body is empty", d->name);
        t_check(e->request != NULL || empty_body(d->request), __FILE__, __LINE__, what);
        if (d->kind == MSG_K_REQUEST) {
            snprintf(what, sizeof(what), "%s: a reply form, or the reason it has none", d->name);
            t_check(e->reply != NULL || e->why_untyped != NULL || empty_body(d->reply), __FILE__,
                    __LINE__, what);
        } else {
            snprintf(what, sizeof(what), "%s: an event has no reply form", d->name);
            t_check(e->reply == NULL, __FILE__, __LINE__, what);
        }
    }
}

T_TEST(every_entry_catalogued_once)
{
    char what[160];
    for (size_t i = 0; i < msg_forms_len; i++) {
        snprintf(what, sizeof(what), "type %u is in the catalogue", msg_forms[i].type);
        t_check(msg_def_find(msg_forms[i].type) != NULL, __FILE__, __LINE__, what);
        unsigned seen = 0;
        for (size_t j = 0; j < msg_forms_len; j++)
            seen += msg_forms[j].type == msg_forms[i].type;
        snprintf(what, sizeof(what), "type %u has one entry", msg_forms[i].type);
        t_check(seen == 1, __FILE__, __LINE__, what);
    }
}

T_TEST(forms_well_made)
{
    char what[160];
    for (size_t i = 0; i < msg_forms_len; i++) {
        const struct msg_form *fs[2] = {msg_forms[i].request, msg_forms[i].reply};
        for (int k = 0; k < 2; k++) {
            if (!fs[k])
                continue;
            snprintf(what, sizeof(what), "%s: 1-64 fields, each key once", fs[k]->name);
            t_check(form_well_made(fs[k]), __FILE__, __LINE__, what);
        }
    }
}

int main(void)
{
    T_RUN(every_message_typed);
    T_RUN(every_entry_catalogued_once);
    T_RUN(forms_well_made);
    return T_DONE();
}
