/* pe_internal.h: helpers shared by the files of kdh_pe: a window of bytes read once (a whole
 * directory) that later reads are served from, so a memory image costs few target reads. */
#ifndef KDH_PE_INTERNAL_H
#define KDH_PE_INTERNAL_H

#include "kdh/pe.h"

/* Largest directory fetched in one piece; bigger ones are read entry by entry. */
#define PE_BLOB_MAX (1u << 20)

typedef struct pe_blob {
    uint32_t rva, len;
    uint8_t *data;
} pe_blob_t;

/* Reads [rva, rva+size) into blob when size <= PE_BLOB_MAX (a failed read leaves it empty, so
 * the later piecewise reads report the precise failure). Returns KDH_ENOMEM only. */
int pe_blob_load(const kdh_pe_t *pe, pe_blob_t *b, uint32_t rva, uint32_t size, kdh_err_t *err);
void pe_blob_free(pe_blob_t *b);
int pe_blob_read(const kdh_pe_t *pe, const pe_blob_t *b, uint32_t rva, void *buf, uint32_t len,
                 kdh_err_t *err);
int pe_blob_string(const kdh_pe_t *pe, const pe_blob_t *b, uint32_t rva, char *out, size_t max,
                   kdh_err_t *err);

/* End (exclusive) of the run of bytes at rva that can be read in one piece: the end of its
 * section or of the headers, and of its 4 KiB page (the next page may be paged out). */
uint64_t pe_run_end(const kdh_pe_t *pe, uint32_t rva);

/* Growable string pool addressed by offsets (pointers are fixed up once it stops growing). */
typedef struct pe_strpool {
    char *data;
    size_t len, cap;
} pe_strpool_t;

int pe_strpool_add(pe_strpool_t *p, const char *s, uint32_t *off, kdh_err_t *err);

#endif
