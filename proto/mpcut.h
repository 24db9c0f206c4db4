/*
 * mpcut.h - a copy of a msgpack object cut for display: what the bus tap publishes.
 *
 * mp_cut writes a copy of the single object in buf[0..n) in which every string longer than
 * max_str bytes keeps its longest prefix of whole UTF-8 sequences within max_str bytes (the
 * rule of mpjson.h's rendering) followed by "…", every bin becomes the map {"$bin": <its
 * length>} and every ext the map {"$ext": true} (but where nesting is at mp_skip's limit, where
 * that map could not open, they stay whole); everything else is copied as it is. So
 * mp_to_json(copy, max_str) renders the same text as mp_to_json(original, max_str), and a
 * 1 MiB record costs a listener a few hundred bytes.
 *
 * Returns OK, ERR_PROTO for input mp_skip refuses (the same depth limit), ERR_INVAL for a
 * max_str outside 1..MP_CUT_STR_MAX, or the writer's error.
 */
#ifndef TETHER_PROTO_MPCUT_H
#define TETHER_PROTO_MPCUT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mp.h"

#define MP_CUT_STR_MAX 4096

err_t mp_cut(const void *buf, size_t n, size_t max_str, struct mp_writer *w);

/*
 * A copy of the array in buf[0..n) with only its element at index cut as mp_cut cuts (nested
 * one level deeper), every other element copied as it is: the bus tap cuts an envelope's body
 * (ENV_BODY_INDEX) this way, in one pass, without decoding and encoding the envelope. An array
 * shorter than index + 1 is copied whole. Same errors as mp_cut; a non-array is ERR_PROTO.
 */
err_t mp_cut_element(const void *buf, size_t n, uint32_t index, size_t max_str,
                     struct mp_writer *w);

#endif
