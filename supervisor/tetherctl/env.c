/*
 * env.c - tetherctl env: runtime environments and their secret keys, by
 * asking the session-manager (env.* messages, proto/msg.c).
 *
 * `create`, `rotate-key` and `bootstrap` print the secret key alone on
 * stdout (create --json: the environment with its key): they are where an
 * operator gets to see a key. `list` and `whois` never print one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "cfg.h"
#include "clock.h"
#include "mp.h"
#include "mpjson.h"
#include "msg.h"
#include "msg_env.h"
#include "msg_raw.h"
#include "proc.h"

#include "ctl.h"

#define CTL_ENV_TIMEOUT_MS 5000

static int ctl_env_usage(void)
{
    fprintf(
        stderr,
        "usage: tetherctl env create --org ORG --project PROJ --type dev|stg|prod|preview "
        "[--json]\n"
        "       tetherctl env create --type preview --parent ENV_ID --branch NAME "
        "[--org ORG --project PROJ] [--json]\n"
        "       tetherctl env rotate-key ENV_ID [--grace DUR]   (default 24h; 0 = revoke now)\n"
        "       tetherctl env bootstrap       (the development key of default/default)\n"
        "       tetherctl env list [--json]\n"
        "       tetherctl env whois KEY|- [--branch NAME] [--json]   (- reads KEY from stdin)\n");
    return EXIT_PERMANENT;
}

/*
 * One request to the session-manager. On failure prints why and returns
 * the exit code: EXIT_TEMPORARY when nothing answered or its store is
 * down (worth retrying), CTL_EXIT_ERR when it refused.
 */
static int ctl_env_call(struct ctl *c, uint16_t type, const struct mp_writer *body,
                        struct bus_msg *reply)
{
    struct bus_peer *sm;
    int rc = ctl_open(c, false);
    if (rc != 0)
        return rc;
    if (bus_peer_open_actor(c->bus, "session-manager", &sm) != OK)
        return EXIT_TEMPORARY;
    if (body && mp_writer_err(body) != OK) {
        fprintf(stderr, "tetherctl: env: could not encode the request\n");
        return EXIT_TEMPORARY;
    }
    err_t e = bus_call_sync(sm, type, body ? mp_writer_data(body) : NULL,
                            body ? mp_writer_len(body) : 0, CTL_ENV_TIMEOUT_MS, reply);
    if (e == OK)
        return 0;
    const struct slice m = reply->env.err_msg;
    if (!m.p && (e == ERR_TIMEOUT || e == ERR_CLOSED || e == ERR_UNAVAIL)) {
        fprintf(stderr,
                "tetherctl: env: the session-manager did not answer (%s); is the tree "
                "running with this TETHER_RUN_DIR?\n",
                err_str(e));
        rc = EXIT_TEMPORARY;
    } else {
        fprintf(stderr, "tetherctl: env: %s: %.*s\n", err_str(e), (int)m.n, m.p ? m.p : "");
        rc = e == ERR_UNAVAIL ? EXIT_TEMPORARY : CTL_EXIT_ERR;
    }
    bus_msg_free(reply);
    return rc;
}

/* s as a C string in buf (cap bytes): "" when absent or too long. */
static const char *ctl_env_str(struct slice s, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (s.p)
        (void)slice_copy(s, buf, cap);
    return buf;
}

/* The env object of a reply {env: {...}} as it stands (raw) and read (o); false when malformed. */
static bool ctl_env_obj(const struct bus_msg *reply, struct slice *raw, struct msg_env_obj *o)
{
    struct msg_env_reply r;
    const struct slice b = reply->env.body;
    if (b.n == 0 || msg_decode(&msg_env_reply_form, b.p, b.n, &r) != OK ||
        msg_decode(&msg_env_obj_form, r.env.p, r.env.n, o) != OK)
        return false;
    *raw = r.env;
    return true;
}

/* Prints the key of the reply's environment, or the whole environment (json). */
static int ctl_env_print_key(struct bus_msg *reply, bool json)
{
    struct slice obj;
    struct msg_env_obj o;
    char key[128], *out;
    size_t n;
    int rc = 0;
    if (!ctl_env_obj(reply, &obj, &o)) {
        fprintf(stderr, "tetherctl: env: malformed reply from the session-manager\n");
        rc = CTL_EXIT_ERR;
    } else if (json) {
        /* unmasked on purpose: this is the one place the operator is given the key */
        if (mp_to_json(obj.p, obj.n, 0, &out, &n) == OK) {
            printf("%s\n", out);
            free(out);
        } else {
            rc = CTL_EXIT_ERR;
        }
    } else if (ctl_env_str(o.api_key, key, sizeof(key))[0]) {
        printf("%s\n", key);
    } else {
        fprintf(stderr, "tetherctl: env: the reply carries no key\n");
        rc = CTL_EXIT_ERR;
    }
    bus_msg_free(reply);
    return rc;
}

static int ctl_env_create(struct ctl *c, int argc, char **argv)
{
    const char *org = NULL, *project = NULL, *type = NULL, *parent = NULL, *branch = NULL;
    bool json = false;
    struct mp_writer w;
    struct bus_msg reply;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (i + 1 < argc && strcmp(argv[i], "--org") == 0)
            org = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--project") == 0)
            project = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--type") == 0)
            type = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--parent") == 0)
            parent = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--branch") == 0)
            branch = argv[++i];
        else
            return ctl_env_usage();
    }
    if (!type || (!parent && (!org || !project)) || (!parent != !branch))
        return ctl_env_usage();
    struct msg_env_create m = {msg_str(org), msg_str(project), msg_str(type), msg_str(parent),
                               msg_str(branch)};
    mp_writer_init(&w);
    msg_encode(&msg_env_create_form, &w, &m);
    rc = ctl_env_call(c, MSG_ENV_CREATE, &w, &reply);
    mp_writer_fini(&w);
    return rc ? rc : ctl_env_print_key(&reply, json);
}

static int ctl_env_rotate(struct ctl *c, int argc, char **argv)
{
    const char *id = NULL;
    long long grace = -1;
    struct mp_writer w;
    struct bus_msg reply;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--grace") == 0) {
            if (!cfg_parse_ms(argv[++i], &grace) || grace < 0)
                return ctl_env_usage();
        } else if (!id && argv[i][0] != '-') {
            id = argv[i];
        } else {
            return ctl_env_usage();
        }
    }
    if (!id)
        return ctl_env_usage();
    struct msg_env_rotate_key m = {.id = msg_str(id)};
    struct mp_writer g;
    mp_writer_init(&g);
    if (grace >= 0) { /* nil: the default */
        mp_put_uint(&g, (uint64_t)grace);
        m.grace_ms = msg_raw_of(&g);
    }
    mp_writer_init(&w);
    msg_encode(&msg_env_rotate_key_form, &w, &m);
    msg_raw_done(&g, &w);
    rc = ctl_env_call(c, MSG_ENV_ROTATE_KEY, &w, &reply);
    mp_writer_fini(&w);
    return rc ? rc : ctl_env_print_key(&reply, false);
}

static int ctl_env_bootstrap(struct ctl *c, int argc)
{
    struct bus_msg reply;
    int rc;
    if (argc != 1)
        return ctl_env_usage();
    if ((rc = ctl_env_call(c, MSG_ENV_BOOTSTRAP, NULL, &reply)) != 0)
        return rc;
    return ctl_env_print_key(&reply, false);
}

/* A reader v of the env objects of an env.list reply, n of them; false when malformed. */
static bool ctl_env_list_open(struct slice body, struct mp_reader *v, uint32_t *n)
{
    struct msg_env_list_reply m;
    return body.n > 0 && msg_decode(&msg_env_list_reply_form, body.p, body.n, &m) == OK &&
           msg_raw_array(m.envs, v, n) == OK;
}

static int ctl_env_list(struct ctl *c, int argc, char **argv)
{
    bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
    struct bus_msg reply;
    struct mp_reader v;
    uint32_t n;
    int rc;
    if (argc > 2 || (argc == 2 && !json))
        return ctl_env_usage();
    if ((rc = ctl_env_call(c, MSG_ENV_LIST, NULL, &reply)) != 0)
        return rc;
    const struct slice body = reply.env.body;
    if (json) {
        ctl_print_json(body); /* masked, though the list carries no key */
        bus_msg_free(&reply);
        return 0;
    }
    if (!ctl_env_list_open(body, &v, &n)) {
        fprintf(stderr, "tetherctl: env: malformed reply from the session-manager\n");
        bus_msg_free(&reply);
        return CTL_EXIT_ERR;
    }
    printf("%-25s %-11s %-16s %-40s %-24s %s\n", "ID", "TYPE", "SLUG", "ORG/PROJECT", "BRANCH",
           "CREATED");
    for (uint32_t i = 0; i < n; i++) {
        struct slice e;
        struct msg_env_obj o;
        char id[64], type[16], slug[72], org[72], proj[72], branch[72], op[160], created[32];
        if (mp_skip(&v, &e) != OK || msg_decode(&msg_env_obj_form, e.p, e.n, &o) != OK)
            break;
        snprintf(op, sizeof(op), "%s/%s", ctl_env_str(o.organization_slug, org, sizeof(org)),
                 ctl_env_str(o.project_slug, proj, sizeof(proj)));
        clock_iso8601(o.created_at_ms, created, sizeof(created));
        ctl_env_str(o.branch_name, branch, sizeof(branch));
        printf("%-25s %-11s %-16s %-40s %-24s %s\n", ctl_env_str(o.id, id, sizeof(id)),
               ctl_env_str(o.type, type, sizeof(type)), ctl_env_str(o.slug, slug, sizeof(slug)), op,
               branch[0] ? branch : "-", created);
    }
    bus_msg_free(&reply);
    return 0;
}

/* Reads one line (the key) from stdin into buf, without its newline. */
static bool ctl_env_read_key(char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, stdin))
        return false;
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] != '\0';
}

static int ctl_env_whois(struct ctl *c, int argc, char **argv)
{
    const char *key = NULL, *branch = NULL;
    bool json = false;
    char keybuf[512];
    struct mp_writer w;
    struct bus_msg reply;
    struct slice obj;
    struct msg_env_obj o;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (i + 1 < argc && strcmp(argv[i], "--branch") == 0)
            branch = argv[++i];
        else if (!key)
            key = argv[i];
        else
            return ctl_env_usage();
    }
    if (!key)
        return ctl_env_usage();
    if (strcmp(key, "-") == 0) { /* keeps the key out of the process list */
        if (!ctl_env_read_key(keybuf, sizeof(keybuf)))
            return ctl_env_usage();
        key = keybuf;
    }
    struct msg_env_resolve_key m = {msg_str(key), msg_str(branch)};
    mp_writer_init(&w);
    msg_encode(&msg_env_resolve_key_form, &w, &m);
    rc = ctl_env_call(c, MSG_ENV_RESOLVE_KEY, &w, &reply);
    mp_writer_fini(&w);
    if (rc)
        return rc;
    if (!ctl_env_obj(&reply, &obj, &o)) {
        fprintf(stderr, "tetherctl: env: malformed reply from the session-manager\n");
        bus_msg_free(&reply);
        return CTL_EXIT_ERR;
    }
    if (json) {
        ctl_print_json(obj); /* masked: api_key and signing_keys show as "****" */
    } else {
        char id[64], type[16], org[72], orgid[64], proj[72], projid[64], branch_name[72],
            parent[64];
        printf("id       %s\n", ctl_env_str(o.id, id, sizeof(id)));
        printf("type     %s\n", ctl_env_str(o.type, type, sizeof(type)));
        printf("org      %s (%s)\n", ctl_env_str(o.organization_slug, org, sizeof(org)),
               ctl_env_str(o.organization_id, orgid, sizeof(orgid)));
        printf("project  %s (%s)\n", ctl_env_str(o.project_slug, proj, sizeof(proj)),
               ctl_env_str(o.project_id, projid, sizeof(projid)));
        if (ctl_env_str(o.branch_name, branch_name, sizeof(branch_name))[0])
            printf("branch   %s (of %s)\n", branch_name,
                   ctl_env_str(o.parent_id, parent, sizeof(parent)));
    }
    bus_msg_free(&reply);
    return 0;
}

int ctl_env(struct ctl *c, int argc, char **argv)
{
    if (argc < 1)
        return ctl_env_usage();
    const char *sub = argv[0];
    if (strcmp(sub, "create") == 0)
        return ctl_env_create(c, argc, argv);
    if (strcmp(sub, "rotate-key") == 0)
        return ctl_env_rotate(c, argc, argv);
    if (strcmp(sub, "bootstrap") == 0)
        return ctl_env_bootstrap(c, argc);
    if (strcmp(sub, "list") == 0)
        return ctl_env_list(c, argc, argv);
    if (strcmp(sub, "whois") == 0)
        return ctl_env_whois(c, argc, argv);
    return ctl_env_usage();
}
