/* pdb_internal.h: the kdh_pdb object shared by the reader (pdb.c) and the lookup tables
 * (pdb_index.c). */
#ifndef KDH_PDB_INTERNAL_H
#define KDH_PDB_INTERNAL_H

#include "kdh/pdb.h"
#include "msf.h"

typedef struct pdb_alias {
    const char *name; /* undecorated x86 name */
    uint32_t pub;     /* index into pubs */
} pdb_alias_t;

typedef struct pdb_proc {
    kdh_pdb_public_t sym; /* name, rva, seg:off of the procedure's first byte */
    uint32_t size;        /* code bytes it covers */
} pdb_proc_t;

struct kdh_pdb {
    uint8_t *file;
    size_t file_len;
    msf_t msf;
    kdh_pdb_info_t info;
    uint16_t symrec_stream;
    uint8_t *symrec; /* the symbol-record stream; public names point into it */
    uint32_t symrec_len;
    kdh_pdb_public_t *pubs; /* sorted by RVA, then name */
    uint32_t npubs;
    uint32_t *by_name; /* indices into pubs, sorted by name */
    pdb_alias_t *undec; /* sorted by name */
    uint32_t nundec;
    char *undec_pool;
    pdb_proc_t *procs; /* module-stream procedures, sorted by RVA */
    uint32_t nprocs;
    char *proc_names;
};

/* Sorts the publics and builds the name and undecorated-name indexes. */
int pdb_build_index(kdh_pdb_t *p, kdh_err_t *err);

/* Reads the procedure records of every module stream (vas: section VirtualAddresses). */
int pdb_read_procs(kdh_pdb_t *p, const uint32_t *vas, uint32_t nsec, kdh_err_t *err);
/* The public with the greatest RVA <= rva, or NULL. */
const kdh_pdb_public_t *pdb_public_below(const kdh_pdb_t *p, uint32_t rva);
/* The procedure whose code covers rva, or NULL. */
const kdh_pdb_public_t *pdb_proc_at(const kdh_pdb_t *p, uint32_t rva);

/* Writes the undecorated form of an x86 name to out (cap >= strlen(name)+1); returns 0 when
 * the name is not decorated (C++ names, plain names). */
int pdb_undecorate(const char *name, char *out);

#endif
