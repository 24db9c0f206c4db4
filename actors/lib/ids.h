/*
 * ids.h - identifiers: cuids and secret API keys.
 *
 * A cuid (v1 layout) is 25 characters of [0-9a-z]: "c", the time in ms
 * (base 36, 8 chars), a per-process counter (4), a host/process
 * fingerprint (4) and 8 random characters. Sessions, runs and environments
 * use it as their internal id ("session_" + cuid is the friendly form).
 * Secret keys are "tr_<env>_" + 20 characters of [0-9A-Za-z], drawn from
 * the kernel CSPRNG without modulo bias.
 */
#ifndef TETHER_LIB_IDS_H
#define TETHER_LIB_IDS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define CUID_LEN 25
#define API_KEY_RANDOM_LEN 20
#define API_KEY_MAX 40

/* Writes a new cuid and a NUL into out (at least CUID_LEN + 1 bytes). Thread-safe. */
err_t cuid_new(char *out);

/* True when s (n bytes) has the shape of a cuid. */
bool cuid_valid(const char *s, size_t n);

/*
 * Writes a new secret key for an environment type ("dev", "stg", "prod",
 * "preview") into out (API_KEY_MAX bytes). ERR_INVAL for another type,
 * ERR_UNAVAIL if the kernel has no randomness to give.
 */
err_t api_key_new(const char *env_short, char *out);

/* Fills buf with n bytes from the kernel CSPRNG. */
err_t random_bytes(void *buf, size_t n);

#endif
