/* msf.h: the MSF 7.0 container under a PDB: superblock, stream directory (whose block list may
 * span several block-map blocks) and streams gathered from their scattered blocks. */
#ifndef KDH_PDB_MSF_H
#define KDH_PDB_MSF_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

#define MSF_NIL_SIZE 0xFFFFFFFFu

typedef struct msf {
    const uint8_t *buf;
    size_t len;
    uint32_t bs, nblocks;
    uint32_t nstreams;
    uint32_t *sizes;     /* nil streams recorded as 0 */
    uint32_t *first;     /* index in blocks[] of each stream's first block number */
    uint32_t *blocks;    /* every stream's block numbers, one stream after another */
} msf_t;

int msf_open(msf_t *m, const uint8_t *buf, size_t len, kdh_err_t *err);
void msf_close(msf_t *m);
/* Copies stream idx into a malloc'ed buffer (a nil/empty stream gives NULL and 0). */
int msf_read_stream(const msf_t *m, uint32_t idx, uint8_t **data, uint32_t *len, kdh_err_t *err);

#endif
