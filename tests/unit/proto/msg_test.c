/*
 * msg_test.c - tests the message catalogue (proto/msg.h) and the error code
 * names (proto/err.h): uniqueness, lookups both ways, the unknown cases and
 * the wire-stable numbering.
 */
#include "err.h"
#include "msg.h"
#include "t.h"

T_TEST(catalogue_well_formed)
{
    int bad = 0;

    T_ASSERT(msg_catalogue_len > 0);
    for (size_t i = 0; i < msg_catalogue_len; i++) {
        const struct msg_def *d = &msg_catalogue[i];
        if (d->type == 0)
            bad++, printf("# entry %zu: type 0 is reserved for 'unknown'\n", i);
        if (!d->name || !d->name[0] || !strchr(d->name, '.') || strcmp(d->name, "unknown") == 0)
            bad++, printf("# entry %zu: name must be \"area.verb\"\n", i);
        if (!d->handler || !d->handler[0] || !d->request || !d->reply)
            bad++, printf("# entry %zu (%s): NULL or empty description\n", i, d->name);
        else if ((d->kind == MSG_K_EVENT) != (d->reply[0] == '\0'))
            bad++, printf("# entry %zu (%s): reply must be \"\" exactly for events\n", i, d->name);
        if (d->kind != MSG_K_REQUEST && d->kind != MSG_K_EVENT)
            bad++, printf("# entry %zu: bad kind\n", i);
        /* 64-127 belong to the supervisor */
        if (d->type >= 64 && d->type <= 127 && strncmp(d->handler, "supervisor", 10) != 0)
            bad++, printf("# entry %zu (%s): 64-127 is the supervisor's range\n", i, d->name);
    }
    T_EQ(bad, 0);
}

T_TEST(catalogue_unique)
{
    int dup_types = 0, dup_names = 0;

    for (size_t i = 0; i < msg_catalogue_len; i++) {
        for (size_t j = i + 1; j < msg_catalogue_len; j++) {
            if (msg_catalogue[i].type == msg_catalogue[j].type)
                dup_types++, printf("# type %u twice\n", msg_catalogue[i].type);
            if (strcmp(msg_catalogue[i].name, msg_catalogue[j].name) == 0)
                dup_names++, printf("# name %s twice\n", msg_catalogue[i].name);
        }
    }
    T_EQ(dup_types, 0);
    T_EQ(dup_names, 0);
}

T_TEST(lookups)
{
    int bad = 0;

    for (size_t i = 0; i < msg_catalogue_len; i++) {
        const struct msg_def *d = &msg_catalogue[i];
        if (msg_def_find(d->type) != d)
            bad++, printf("# msg_def_find(%u)\n", d->type);
        if (strcmp(msg_name(d->type), d->name) != 0)
            bad++, printf("# msg_name(%u)\n", d->type);
        if (msg_type_by_name(d->name) != d->type)
            bad++, printf("# msg_type_by_name(%s)\n", d->name);
        if (msg_type_by_name(msg_name(d->type)) != d->type)
            bad++, printf("# round trip %u\n", d->type);
    }
    T_EQ(bad, 0);

    /* the numbers in msg.h that are on the wire */
    T_EQ(msg_type_by_name("health.ping"), MSG_HEALTH_PING);
    T_EQ(MSG_HEALTH_PING, 1);
    T_EQ(msg_type_by_name("bus.echo"), MSG_BUS_ECHO);
    T_EQ(MSG_BUS_ECHO, 2);
    T_EQ(msg_type_by_name("bus.fault"), MSG_BUS_FAULT);
    T_EQ(msg_def_find(MSG_BUS_FAULT)->kind, MSG_K_EVENT);
    T_EQ(msg_type_by_name("sv.status"), MSG_SV_STATUS);
    T_EQ(MSG_SV_STATUS, 64);
    T_EQ(msg_type_by_name("sv.fault_list"), MSG_SV_FAULT_LIST);
    /* every enumerator of msg.h is catalogued */
    static const uint16_t declared[] = {
        MSG_HEALTH_PING, MSG_BUS_ECHO,   MSG_BUS_FAULT,    MSG_SV_STATUS,
        MSG_SV_START,    MSG_SV_STOP,    MSG_SV_RESTART,   MSG_SV_KILL,
        MSG_SV_FAULT_SET, MSG_SV_FAULT_LIST,
    };
    int missing = 0;
    for (size_t i = 0; i < sizeof(declared) / sizeof(declared[0]); i++)
        if (msg_def_find(declared[i]) == NULL)
            missing++, printf("# type %u not catalogued\n", declared[i]);
    T_EQ(missing, 0);
}

T_TEST(unknown_types)
{
    size_t found = 0;
    int bad = 0;

    T_ASSERT(msg_def_find(0) == NULL);
    T_STREQ(msg_name(0), "unknown");
    T_STREQ(msg_name(UINT16_MAX), "unknown");
    /* every uncatalogued number says "unknown" */
    for (uint32_t t = 0; t <= UINT16_MAX; t++) {
        if (msg_def_find((uint16_t)t))
            found++;
        else if (strcmp(msg_name((uint16_t)t), "unknown") != 0)
            bad++;
    }
    T_EQ(found, msg_catalogue_len);
    T_EQ(bad, 0);

    T_EQ(msg_type_by_name("unknown"), 0);
    T_EQ(msg_type_by_name(""), 0);
    T_EQ(msg_type_by_name("health"), 0);
    T_EQ(msg_type_by_name("health.ping "), 0);
    T_EQ(msg_type_by_name("health.pin"), 0);
    T_EQ(msg_type_by_name("HEALTH.PING"), 0);
}

T_TEST(err_names)
{
    static const struct {
        err_t code;
        int num;
        const char *name;
    } stable[] = {
        {OK, 0, "OK"},
        {ERR_NOMEM, 1, "ERR_NOMEM"},
        {ERR_INVAL, 2, "ERR_INVAL"},
        {ERR_TIMEOUT, 3, "ERR_TIMEOUT"},
        {ERR_CLOSED, 4, "ERR_CLOSED"},
        {ERR_PROTO, 5, "ERR_PROTO"},
        {ERR_NOTFOUND, 6, "ERR_NOTFOUND"},
        {ERR_CONFLICT, 7, "ERR_CONFLICT"},
        {ERR_UNAVAIL, 8, "ERR_UNAVAIL"},
        {ERR_INTERNAL, 9, "ERR_INTERNAL"},
        {ERR_TOOBIG, 10, "ERR_TOOBIG"},
        {ERR_DENIED, 11, "ERR_DENIED"},
        {ERR_UNAUTH, 12, "ERR_UNAUTH"},
        {ERR_EXISTS, 13, "ERR_EXISTS"},
        {ERR_QUOTA, 14, "ERR_QUOTA"},
    };
    int bad = 0;

    /* codes travel on the bus: never renumbered */
    for (size_t i = 0; i < sizeof(stable) / sizeof(stable[0]); i++) {
        if ((int)stable[i].code != stable[i].num || strcmp(err_name(stable[i].code), stable[i].name) != 0)
            bad++, printf("# %s is not %d\n", stable[i].name, stable[i].num);
    }
    T_EQ(bad, 0);
    T_ASSERT(ERR_MAX_CODE >= 14);

    bad = 0;
    for (int c = 0; c <= ERR_MAX_CODE; c++) {
        const char *n = err_name((err_t)c), *s = err_str((err_t)c);
        if (!n || !s || !n[0] || !s[0])
            bad++, printf("# code %d: NULL or empty\n", c);
        else if (strcmp(n, "ERR_UNKNOWN") == 0 || strcmp(s, "unknown error") == 0)
            bad++, printf("# code %d: has no entry\n", c);
        else if (c > 0 && strncmp(n, "ERR_", 4) != 0)
            bad++, printf("# code %d: name %s\n", c, n);
        for (int d = 0; d < c && n && s; d++) {
            if (strcmp(n, err_name((err_t)d)) == 0)
                bad++, printf("# codes %d and %d share the name %s\n", d, c, n);
            if (strcmp(s, err_str((err_t)d)) == 0)
                bad++, printf("# codes %d and %d share the text %s\n", d, c, s);
        }
    }
    T_EQ(bad, 0);
    T_STREQ(err_str(OK), "success");
    T_STREQ(err_str(ERR_TIMEOUT), "timed out");
}

T_TEST(err_unknown)
{
    T_STREQ(err_str((err_t)(ERR_MAX_CODE + 1)), "unknown error");
    T_STREQ(err_name((err_t)(ERR_MAX_CODE + 1)), "ERR_UNKNOWN");
    T_STREQ(err_str((err_t)1000), "unknown error");
    T_STREQ(err_name((err_t)65535), "ERR_UNKNOWN");
    T_STREQ(err_str((err_t)-1), "unknown error");
    T_STREQ(err_name((err_t)-1), "ERR_UNKNOWN");
}

int main(void)
{
    T_RUN(catalogue_well_formed);
    T_RUN(catalogue_unique);
    T_RUN(lookups);
    T_RUN(unknown_types);
    T_RUN(err_names);
    T_RUN(err_unknown);
    return T_DONE();
}
