/* kdh/pdb.h: public symbols of a PDB (MSF 7.0): name -> RVA and RVA -> nearest preceding name,
 * for resolving non-exported kernel symbols (nt!PoolHitTag) and symbolizing stacks offline.
 * Reads the MSF container, the PDB info stream (GUID), the DBI header (age, symbol-record
 * stream, optional debug header with section headers and OMAP), the S_PUB32 records, and the
 * procedure records of the module streams (full PDBs) for naming addresses.
 * Every block number, size and count is checked; malformed files give KDH_ECORRUPT. */
#ifndef KDH_PDB_H
#define KDH_PDB_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

#define KDH_PDB_MAX_FILE (4ull << 30)   /* larger files are refused (KDH_ERANGE) */
#define KDH_PDB_MAX_STREAMS 0x100000u
#define KDH_PDB_MAX_PUBLICS 0x400000u

/* Indices of the DBI optional debug header (0xFFFF in the file = absent). */
enum {
    KDH_PDB_DBG_FPO = 0,
    KDH_PDB_DBG_OMAP_TO_SRC = 3,
    KDH_PDB_DBG_OMAP_FROM_SRC = 4,
    KDH_PDB_DBG_SECTION_HDR = 5,
    KDH_PDB_DBG_XDATA = 7,
    KDH_PDB_DBG_PDATA = 8,
    KDH_PDB_DBG_FRAMEDATA = 9,
    KDH_PDB_DBG_ORIG_SECTION_HDR = 10,
    KDH_PDB_DBG_COUNT = 11,
};

typedef struct kdh_pdb kdh_pdb_t;

typedef struct kdh_pdb_info {
    uint8_t guid[16];    /* as stored (Data1..3 little-endian), same form as kdh_pe_codeview_t */
    uint32_t age;        /* the DBI age: the one symbol stores and RSDS records use */
    uint32_t info_age;   /* the PDB info stream's age (tools such as pdbstr bump it) */
    uint32_t signature;
    uint16_t machine;    /* 0x8664, 0x14C, or 0 without a DBI stream */
    uint32_t block_size;
    uint32_t nstreams;
    int has_omap;        /* addresses were mapped through OMAP_FROM_SRC */
    uint16_t dbg_streams[KDH_PDB_DBG_COUNT]; /* stream per debug-header slot, 0xFFFF = none */
} kdh_pdb_info_t;

typedef struct kdh_pdb_public {
    const char *name;    /* as recorded (x86: decorated, e.g. "_PoolHitTag", "@FastFn@8") */
    uint32_t rva;
    uint32_t flags;      /* bit0 code, bit1 function, bit2 managed, bit3 MSIL */
    uint16_t seg;        /* 1-based section */
    uint32_t off;        /* offset in the section */
} kdh_pdb_public_t;

/* Parses a PDB held in buf (copied: buf may be freed afterwards). */
int kdh_pdb_open_buffer(kdh_pdb_t **out, const void *buf, size_t len, kdh_err_t *err);
int kdh_pdb_open_file(kdh_pdb_t **out, const char *path, kdh_err_t *err);
void kdh_pdb_close(kdh_pdb_t *pdb);

const kdh_pdb_info_t *kdh_pdb_info(const kdh_pdb_t *pdb);

/* name -> RVA. Exact match first; on x86 PDBs also the undecorated form, so "PoolHitTag"
 * finds "_PoolHitTag" and "StdFn" finds "_StdFn@8". KDH_ENOTFOUND when absent. */
int kdh_pdb_lookup(const kdh_pdb_t *pdb, const char *name, uint32_t *rva);
/* The same, returning the record. */
const kdh_pdb_public_t *kdh_pdb_find(const kdh_pdb_t *pdb, const char *name);

/* RVA -> the symbol naming it, and rva minus its RVA: the procedure record (S_GPROC32 /
 * S_LPROC32 of a full PDB's module streams, static functions included) whose code covers rva,
 * else the public with the greatest RVA <= rva. NULL when neither exists. Procedure names are
 * undecorated, as WinDbg prints them. */
const kdh_pdb_public_t *kdh_pdb_symbolize(const kdh_pdb_t *pdb, uint32_t rva, uint32_t *offset);

/* Publics sorted by RVA (then name): index 0 .. count-1. */
uint32_t kdh_pdb_count(const kdh_pdb_t *pdb);
const kdh_pdb_public_t *kdh_pdb_public_at(const kdh_pdb_t *pdb, uint32_t i);

/* A copy of stream idx (for FPO/FRAMEDATA, xdata/pdata copies...); free(*data). A nil
 * stream gives len 0. */
int kdh_pdb_read_stream(const kdh_pdb_t *pdb, uint32_t idx, uint8_t **data, uint32_t *len,
                        kdh_err_t *err);

/* Maps an address through an OMAP table ({u32 from, u32 to} pairs sorted by from), as the
 * DBI OMAP_FROM_SRC stream holds: the last entry with from <= x gives to + (x - from), and
 * to == 0 means the code was eliminated (result 0). Exposed for tests and offline tools. */
uint32_t kdh_pdb_omap_map(const uint8_t *omap, uint32_t nentries, uint32_t x);

#endif
