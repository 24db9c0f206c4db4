/*
 * console.c - the operator's console (docs/console.md): GET /console serves one page that
 * is compiled into the gateway, and GET /api/v1/console/processes answers the supervisor's
 * sv.status as JSON for its process view.
 *
 * The page holds no data. Everything it shows comes from the API, called with the secret key
 * the operator types into it, so without a valid key it shows nothing; the page itself is the
 * same bytes for everyone and needs no credential.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "http.h"
#include "mpjson.h"
#include "msg.h"

/*
 * The page, gateway/console/index.html, assembled into .rodata: no generator to run and
 * nothing to install, and `make` rebuilds this file when the page changes (the Makefile names
 * the dependency, which -MMD cannot see).
 */
__asm__(".section .rodata\n"
        ".global gw_console_page\n"
        ".hidden gw_console_page\n"
        ".type gw_console_page, @object\n"
        "gw_console_page:\n"
        ".incbin \"gateway/console/index.html\"\n"
        ".global gw_console_page_end\n"
        ".hidden gw_console_page_end\n"
        "gw_console_page_end:\n"
        ".byte 0\n"
        ".previous\n");
extern const char gw_console_page[];
extern const char gw_console_page_end[];

int gw_on_console(struct gw *gw, h2o_req_t *req)
{
    uint64_t started = clock_mono_ms();
    (void)gw;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        static const char body[] = "{\"error\":\"Method not allowed\"}";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
        gw_send_plain(req, 405, body, sizeof(body) - 1, "/console", started, 0);
        return 0;
    }
    /* the page talks to this origin only and is never framed: a key typed into it stays here */
    h2o_add_header_by_str(
        &req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL,
        H2O_STRLIT("default-src 'none'; script-src 'unsafe-inline'; "
                   "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                   "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL,
                          H2O_STRLIT("DENY"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0,
                          NULL, H2O_STRLIT("nosniff"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL,
                          H2O_STRLIT("no-referrer"));
    gw_send_typed(req, 200, "text/html; charset=utf-8", gw_console_page,
                  (size_t)(gw_console_page_end - gw_console_page), "/console", started, 0);
    return 0;
}

err_t gw_console_peer_open(struct gw *gw)
{
    char url[BUS_URL_MAX + 64];
    const char *configured = getenv("TETHER_SV_CONTROL_URL");
    if (configured && configured[0]) {
        snprintf(url, sizeof(url), "%s", configured);
    } else {
        char dir[BUS_URL_MAX];
        cfg_bus_dir(&gw->cfg, dir, sizeof(dir));
        snprintf(url, sizeof(url), "ipc://%s/supervisor.ipc", dir);
    }
    return bus_peer_open(gw->bus, "supervisor", url, &gw->actors[GW_PEER_SUPERVISOR]);
}

static void gw_on_processes_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    char *json;
    size_t n;
    if (rc != OK) {
        gw_respond_err(c, rc, "sv.status");
        return;
    }
    rc = mp_to_json(env->body.p, env->body.n, 1024, &json, &n);
    if (rc != OK) {
        gw_respond_err(c, rc == ERR_NOMEM ? ERR_NOMEM : ERR_INTERNAL, "sv.status reply");
        return;
    }
    gw_respond_bytes(c, 200, GW_CT_JSON, json, n);
    free(json);
}

void gw_on_console_processes(struct gw_call *c)
{
    err_t rc = gw_call_bus(c, GW_PEER_SUPERVISOR, MSG_SV_STATUS, NULL, 0, gw_on_processes_reply);
    if (rc != OK)
        gw_respond_err(c, rc, "sv.status");
}
