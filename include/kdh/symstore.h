/* kdh/symstore.h: finds PDBs (by name, GUID, age) and images (by name, TimeDateStamp,
 * SizeOfImage) along a symbol path in _NT_SYMBOL_PATH syntax: local symbol stores (single or
 * two-tier, case-insensitive on a cache made on Windows), plain directories, and symbol servers
 * over HTTP(S) whose downloads land in a cache through a temporary file and a rename, so a
 * failed download never leaves a partial file. */
#ifndef KDH_SYMSTORE_H
#define KDH_SYMSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

#define KDH_SYMSTORE_MSDL "https://msdl.microsoft.com/download/symbols"
#define KDH_SYMSTORE_MAX_TIERS 8

typedef enum {
    KDH_SYMSTORE_PLAIN = 0, /* a directory searched as dir/symbols/<ext>, dir/<ext>, dir */
    KDH_SYMSTORE_SRV = 1,   /* tiers of stores (local, then HTTP), downloads go to cache */
} kdh_symstore_kind_t;

typedef struct kdh_symstore_elem {
    kdh_symstore_kind_t kind;
    uint32_t ntiers;
    char *tiers[KDH_SYMSTORE_MAX_TIERS]; /* PLAIN: tiers[0] is the directory */
    char *cache;                         /* SRV: where downloads are written (may be NULL) */
} kdh_symstore_elem_t;

typedef struct kdh_symstore kdh_symstore_t;

/* Parses a symbol path: elements separated by ';', each "srv*CACHE*URL", "srv*URL", "srv*",
 * "cache*DIR" or a plain directory (see the README). default_cache (may be NULL) serves "srv*",
 * "srv**URL", "srv*URL" and a bare "cache*". */
int kdh_symstore_new(kdh_symstore_t **out, const char *symbol_path, const char *default_cache,
                     kdh_err_t *err);
void kdh_symstore_free(kdh_symstore_t *s);

uint32_t kdh_symstore_count(const kdh_symstore_t *s);
const kdh_symstore_elem_t *kdh_symstore_elem(const kdh_symstore_t *s, uint32_t i);

/* Network limits (defaults: connect 10 s, whole transfer 300 s, abort below 1 KiB/s for 30 s). */
void kdh_symstore_set_timeouts(kdh_symstore_t *s, long connect_ms, long total_ms,
                               long stall_s);

/* Finds <name>/<id>/<name>, where id is kdh_pe_pdb_id() or kdh_pe_image_id(), and writes the
 * local path of the file to path. Plain directories only yield a file whose identity matches
 * (GUID and age, or TimeDateStamp and SizeOfImage). KDH_ENOTFOUND when no element has it (the
 * message then names the last network failure, if any). */
int kdh_symstore_find_pdb(kdh_symstore_t *s, const char *name, const uint8_t guid[16],
                          uint32_t age, char *path, size_t path_len, kdh_err_t *err);
int kdh_symstore_find_image(kdh_symstore_t *s, const char *name, uint32_t timestamp,
                            uint32_t size_of_image, char *path, size_t path_len, kdh_err_t *err);

/* Downloads url to dest (creating its directories): temp file in dest's folder, magic checked
 * ("MSF" PDB signature when want_pdb, else "MZ"), then renamed. Exposed for tests and tools. */
int kdh_symstore_download(kdh_symstore_t *s, const char *url, const char *dest, int want_pdb,
                          kdh_err_t *err);

#endif
