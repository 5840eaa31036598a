/* fuzz_pdb.c: kdh_pdb over arbitrary bytes: open, then every lookup the harvester makes. */
#include <stdint.h>
#include <stdlib.h>

#include "kdh/pdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kdh_pdb_t *p;
    kdh_err_t err;
    if (kdh_pdb_open_buffer(&p, data, size, &err) != KDH_OK)
        return 0;
    uint32_t rva, off;
    (void)kdh_pdb_lookup(p, "PoolHitTag", &rva);
    (void)kdh_pdb_lookup(p, "StdFn", &rva);
    uint32_t n = kdh_pdb_count(p);
    for (uint32_t i = 0; i < n && i < 64; i++) {
        const kdh_pdb_public_t *pub = kdh_pdb_public_at(p, i);
        (void)kdh_pdb_find(p, pub->name);
        (void)kdh_pdb_symbolize(p, pub->rva + 1, &off);
    }
    (void)kdh_pdb_symbolize(p, 0x1000, &off);
    const kdh_pdb_info_t *in = kdh_pdb_info(p);
    uint8_t *s;
    uint32_t len;
    if (in->dbg_streams[KDH_PDB_DBG_FRAMEDATA] != 0xFFFF &&
        kdh_pdb_read_stream(p, in->dbg_streams[KDH_PDB_DBG_FRAMEDATA], &s, &len, &err) == KDH_OK)
        free(s);
    kdh_pdb_close(p);
    return 0;
}
