/*
 * tls.c - TLS and ALPN on the gateway's port (tls.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "gw.h"
#include "log.h"
#include "mem.h"
#include "tls.h"

static SSL_CTX *gw_tls_ctx;

bool gw_tls_on(void)
{
    return gw_tls_ctx != NULL;
}

static void gw_tls_log_error(const char *what, const char *path)
{
    char msg[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, msg, sizeof(msg));
    LOG_ERROR("gw.tls_config", "%s %s: %s", what, path, e ? msg : "unknown error");
}

err_t gw_tls_open(struct gw *gw)
{
    const char *cert = gw->gw.tls_cert, *key = gw->gw.tls_key;
    if (!cert[0] && !key[0])
        return OK;
    if (!cert[0] || !key[0]) {
        LOG_ERROR("gw.tls_config", "TETHER_GW_TLS_CERT and TETHER_GW_TLS_KEY go together: "
                                   "set both, or neither");
        return ERR_INVAL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        gw_tls_log_error("cannot make a TLS context for", cert);
        return ERR_INVAL;
    }
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        gw_tls_log_error("cannot load the certificate chain", cert);
        SSL_CTX_free(ctx);
        return ERR_INVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        gw_tls_log_error("cannot load the key (or it does not match the certificate)", key);
        SSL_CTX_free(ctx);
        return ERR_INVAL;
    }
    /* in this order of preference: HTTP/2 here serves the S2 append sessions only, so a client
     * that can speak both (a browser, curl) gets HTTP/1.1 and the whole API; S2's client offers
     * h2 alone, and gets it */
    static const h2o_iovec_t protocols[] = {
        {H2O_STRLIT("http/1.1")}, {H2O_STRLIT("h2")}, {NULL, 0}};
    h2o_ssl_register_alpn_protocols(ctx, protocols);
    gw_tls_ctx = ctx;
    LOG_INFO("gw.tls", "TLS on, certificate %s, ALPN http/1.1 and h2", cert);
    return OK;
}

static void gw_tls_on_handshake(h2o_socket_t *sock, const char *err)
{
    struct s2s_wait *w = sock->on_close.data;
    struct gw *gw = w->gw;
    s2s_http1_fn http1 = w->http1;
    if (err) {
        LOG_DEBUG("gw.tls_handshake_failed", "TLS handshake failed: %s", err);
        h2o_socket_close(sock);
        return;
    }
    s2s_wait_end(w);
    h2o_iovec_t proto = h2o_socket_ssl_get_selected_protocol(sock);
    if (proto.len == 2 && memcmp(proto.base, "h2", 2) == 0) {
        if (!s2s_serve(gw, sock)) {
            LOG_ERROR("gw.s2s_unavailable", "cannot start an HTTP/2 session (out of memory)");
            h2o_socket_close(sock);
        }
        return;
    }
    http1(gw, sock);
}

void gw_tls_accept(struct gw *gw, h2o_socket_t *sock, s2s_http1_fn http1)
{
    (void)s2s_wait_start(gw, sock, http1); /* the handshake has TETHER_GW_REQ_TIMEOUT */
    h2o_socket_ssl_handshake(sock, gw_tls_ctx, NULL, gw_tls_on_handshake);
}
