/*
 * tls.h - TLS on the gateway's port, when TETHER_GW_TLS_CERT and TETHER_GW_TLS_KEY name a
 * certificate chain and its key (PEM): every connection then starts with a TLS handshake
 * (openssl, through h2o's socket layer), and ALPN decides what follows it: "h2" goes to the S2
 * append sessions (s2s.h), "http/1.1" or no ALPN to h2o's HTTP/1 behind the framing guard. A
 * client offering both gets http/1.1 (HTTP/2 serves nothing but the append sessions); S2's
 * client offers h2 alone. With
 * neither variable set the port is plain TCP (s2s_accept tells h2c from HTTP/1); setting only one
 * is a configuration error.
 *
 * Loop thread only. The SSL_CTX lives as long as the process.
 */
#ifndef TETHER_GW_TLS_H
#define TETHER_GW_TLS_H

#include <stdbool.h>

#include <h2o.h>

#include "err.h"
#include "s2s.h"

struct gw;

/*
 * Loads the certificate and key when configured: OK (TLS on or off, gw_tls_on says which),
 * ERR_INVAL with the reason logged when only one is set or the files do not load or match.
 */
err_t gw_tls_open(struct gw *gw);
bool gw_tls_on(void);

/* Takes an accepted connection through the handshake, then to s2s or to http1. */
void gw_tls_accept(struct gw *gw, h2o_socket_t *sock, s2s_http1_fn http1);

#endif
