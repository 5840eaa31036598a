/* Procedure symbols of full PDBs: S_GPROC32 / S_LPROC32 (and their _ID forms) from each
 * module's symbol stream, listed by the DBI ModInfo substream. Public symbols name only what
 * the linker exported or made global; a driver vendor's PDB also describes its static
 * functions here, and debuggers name frames from these records when they have them. */
#include <stdlib.h>
#include <string.h>

#include "pdb_internal.h"

#define DBI_HEADER 64
#define MODINFO_FIXED 64 /* bytes before the module and object names */
#define S_LPROC32 0x110Fu
#define S_GPROC32 0x1110u
#define S_LPROC32_ID 0x1146u
#define S_GPROC32_ID 0x1147u
#define PROCSYM_NAME 35 /* body offset of the name (after pParent..Flags) */

static int is_proc(uint32_t kind)
{
    return kind == S_LPROC32 || kind == S_GPROC32 || kind == S_LPROC32_ID || kind == S_GPROC32_ID;
}

/* Walks one module's records; pass 0 counts procedures and their name bytes, pass 1 fills. */
static int scan_module(kdh_pdb_t *p, const uint8_t *s, uint32_t len, const uint32_t *vas,
                       uint32_t nsec, int fill, uint32_t *count, size_t *names, kdh_err_t *err)
{
    uint32_t pos = 4; /* CV signature */
    while (len - pos >= 4) {
        uint32_t reclen = kdh_get_u16(s + pos), kind = kdh_get_u16(s + pos + 2);
        if (reclen < 2 || reclen > len - pos - 2)
            return kdh_err_set(err, KDH_ECORRUPT, "PDB: module symbol record at +0x%x has "
                               "length %u", pos, reclen);
        const uint8_t *b = s + pos + 4;
        uint32_t blen = reclen - 2;
        if (is_proc(kind) && blen > PROCSYM_NAME && memchr(b + PROCSYM_NAME, 0, blen - PROCSYM_NAME)) {
            uint32_t size = kdh_get_u32(b + 12), off = kdh_get_u32(b + 28);
            uint16_t seg = kdh_get_u16(b + 32);
            const char *name = (const char *)b + PROCSYM_NAME;
            uint64_t rva = seg >= 1 && seg <= nsec ? (uint64_t)vas[seg - 1] + off : UINT64_MAX;
            if (rva <= UINT32_MAX && size > 0) {
                if (*count >= KDH_PDB_MAX_PUBLICS)
                    return kdh_err_set(err, KDH_ERANGE, "PDB: more than %u procedures",
                                       KDH_PDB_MAX_PUBLICS);
                size_t nlen = strlen(name) + 1;
                if (fill) {
                    pdb_proc_t *pr = &p->procs[*count];
                    char *copy = p->proc_names + *names;
                    memcpy(copy, name, nlen);
                    pr->sym.name = copy;
                    pr->sym.rva = (uint32_t)rva;
                    pr->sym.flags = 2; /* function */
                    pr->sym.seg = seg;
                    pr->sym.off = off;
                    pr->size = size;
                }
                (*count)++;
                *names += nlen;
            }
        }
        pos += 2 + reclen;
    }
    return KDH_OK;
}

/* Visits every module symbol stream named by the ModInfo substream. */
static int scan_modules(kdh_pdb_t *p, const uint8_t *mi, uint32_t milen, const uint32_t *vas,
                        uint32_t nsec, int fill, uint32_t *count, size_t *names, kdh_err_t *err)
{
    uint32_t pos = 0;
    *count = 0;
    *names = 0;
    while (milen - pos >= MODINFO_FIXED) {
        uint16_t stream = kdh_get_u16(mi + pos + 34);
        uint32_t symbytes = kdh_get_u32(mi + pos + 36);
        /* Two NUL-terminated names follow the fixed part; entries are 4-byte aligned. */
        uint32_t q = pos + MODINFO_FIXED;
        for (int n = 0; n < 2; n++) {
            const uint8_t *z = q < milen ? memchr(mi + q, 0, milen - q) : NULL;
            if (!z)
                return kdh_err_set(err, KDH_ECORRUPT, "PDB: ModInfo entry at +0x%x has an "
                                   "unterminated name", pos);
            q = (uint32_t)(z - mi) + 1;
        }
        pos = (q + 3) & ~3u;
        if (stream == 0xFFFF || symbytes < 4)
            continue;
        /* Procedures only improve names: a module stream that is missing, short or damaged
         * is passed over, and the publics (which resolve PoolHitTag) still stand. */
        uint8_t *s;
        uint32_t slen;
        if (msf_read_stream(&p->msf, stream, &s, &slen, NULL) != KDH_OK)
            continue;
        if (symbytes > slen)
            symbytes = slen;
        uint32_t before = *count;
        size_t before_names = *names;
        int rc = symbytes >= 4 ? scan_module(p, s, symbytes, vas, nsec, fill, count, names, NULL)
                               : KDH_OK;
        free(s);
        if (rc == KDH_ERANGE)
            return kdh_err_set(err, rc, "PDB: more than %u procedures", KDH_PDB_MAX_PUBLICS);
        if (rc) {
            *count = before; /* drop what the damaged stream had added */
            *names = before_names;
        }
    }
    return KDH_OK;
}

static int cmp_proc(const void *a, const void *b)
{
    const pdb_proc_t *x = a, *y = b;
    return x->sym.rva < y->sym.rva ? -1 : x->sym.rva > y->sym.rva;
}

int pdb_read_procs(kdh_pdb_t *p, const uint32_t *vas, uint32_t nsec, kdh_err_t *err)
{
    /* OMAP'd images (rearranged after linking) ship public-only PDBs; their procedure
     * addresses would need the same mapping, so they are left to the publics. */
    if (p->msf.nstreams < 4 || p->msf.sizes[3] == 0 || !nsec || p->info.has_omap)
        return KDH_OK;
    uint8_t *d;
    uint32_t n;
    int rc = msf_read_stream(&p->msf, 3, &d, &n, err);
    if (rc)
        return rc;
    int32_t milen = n >= DBI_HEADER ? (int32_t)kdh_get_u32(d + 24) : -1;
    if (milen < 0 || (uint32_t)milen > n - DBI_HEADER) {
        free(d);
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: DBI ModInfo substream overruns the stream");
    }
    uint32_t count;
    size_t names;
    rc = scan_modules(p, d + DBI_HEADER, (uint32_t)milen, vas, nsec, 0, &count, &names, err);
    if (!rc && count) {
        p->procs = calloc(count, sizeof *p->procs);
        p->proc_names = malloc(names);
        if (!p->procs || !p->proc_names)
            rc = kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for %u procedures", count);
        else
            rc = scan_modules(p, d + DBI_HEADER, (uint32_t)milen, vas, nsec, 1, &p->nprocs,
                              &names, err);
    }
    free(d);
    if (rc)
        return rc;
    if (p->nprocs) /* a public-only PDB has none (and no array) */
        qsort(p->procs, p->nprocs, sizeof *p->procs, cmp_proc);
    return KDH_OK;
}

const kdh_pdb_public_t *pdb_proc_at(const kdh_pdb_t *p, uint32_t rva)
{
    uint32_t lo = 0, hi = p->nprocs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->procs[mid].sym.rva <= rva)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const pdb_proc_t *pr = &p->procs[lo - 1];
    return rva - pr->sym.rva < pr->size ? &pr->sym : NULL;
}
