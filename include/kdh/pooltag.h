/* kdh/pooltag.h: the pooltag.txt owner table (`TAG - BINARY - DESCRIPTION` lines, `rem` comments),
 * with its quirks: tags shorter than 4 characters or containing spaces, `?` and `*` wildcards,
 * uneven separators, CRLF, and stray malformed lines (counted and skipped). */
#ifndef KDH_POOLTAG_H
#define KDH_POOLTAG_H

#include <stddef.h>

#include "kdh/common.h"

typedef struct kdh_pooltag_entry {
    char tag[5];        /* space padded to 4; may hold '?' (one character) and '*' (the rest) */
    const char *binary; /* "afd.sys", "<unknown>", "nt!arb"; never NULL, may be "" */
    const char *desc;   /* trimmed description; never NULL, may be "" */
    unsigned line;      /* 1-based line in the file */
} kdh_pooltag_entry_t;

typedef struct kdh_pooltag kdh_pooltag_t;

/* Parses the text of a pooltag.txt (any size; the text is copied). */
int kdh_pooltag_parse(kdh_pooltag_t **out, const char *text, size_t len, kdh_err_t *err);
/* Reads and parses a file (at most 64 MiB). */
int kdh_pooltag_load(kdh_pooltag_t **out, const char *path, kdh_err_t *err);
void kdh_pooltag_free(kdh_pooltag_t *pt);

size_t kdh_pooltag_count(const kdh_pooltag_t *pt);
const kdh_pooltag_entry_t *kdh_pooltag_entry(const kdh_pooltag_t *pt, size_t i);
/* Lines that were neither comments, blank, nor entries. */
size_t kdh_pooltag_malformed(const kdh_pooltag_t *pt);
/* Line number of the first malformed line, 0 when none. */
unsigned kdh_pooltag_first_malformed(const kdh_pooltag_t *pt);

/* The owner of a tag (1 to 4 characters, space padded if shorter; case-sensitive): an exact entry
 * wins; otherwise the matching wildcard entry with the most literal characters before its first
 * wildcard (so `Afd?` beats `Af*`), earliest in the file on a tie. NULL when nothing matches. */
const kdh_pooltag_entry_t *kdh_pooltag_lookup(const kdh_pooltag_t *pt, const char *tag);

#endif
