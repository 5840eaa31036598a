/* kdh/tag.h: pool tags. A tag is four characters stored in a little-endian DWORD ('Ddk ' is
 * 0x206b6444: 'D' in the low byte); shorter tags are padded with spaces on the right, the way
 * Windows displays them ("Cc" is "Cc  "). Used for nt!PoolHitTag, the special-pool registry value,
 * and every tag the report prints. */
#ifndef KDH_TAG_H
#define KDH_TAG_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

/* Validates a tag as typed (1 to 4 printable ASCII characters, not all spaces) and writes it
 * space padded to 4 characters plus NUL into out. Returns KDH_EINVAL with a one-line message. */
int kdh_tag_normalize(const char *text, char out[5], kdh_err_t *err);

/* The DWORD of a normalized 4-character tag (first character in the low byte). */
uint32_t kdh_tag_dword(const char tag[4]);

/* 1 when the tag DWORD a pool routine got (or a POOL_HEADER holds) is tag: equal but for the
 * high bit, PROTECTED_POOL (0x80000000), which the kernel strips before comparing with
 * nt!PoolHitTag and which callers may set on a tag they pass. */
int kdh_tag_match(uint32_t seen, uint32_t tag);

/* kdh_tag_normalize followed by kdh_tag_dword. */
int kdh_tag_to_dword(const char *text, uint32_t *dword, kdh_err_t *err);

/* The 4 characters of a DWORD (non-printable bytes become '.') plus NUL. */
void kdh_tag_from_dword(uint32_t dword, char out[5]);

/* The advice `kdharvest tag` prints: DWORD, kd commands, special-pool registry command, and the
 * owner line when owner is not NULL. Writes at most cap bytes (NUL-terminated); returns the full
 * length as snprintf does. tag must be normalized. */
int kdh_tag_describe(const char tag[4], const char *owner, char *buf, size_t cap);

#endif
