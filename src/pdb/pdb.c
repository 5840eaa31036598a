/* pdb.c: opens a PDB and reads what symbol lookup needs: the GUID (info stream), the DBI
 * header (age, machine, symbol-record stream, optional debug header), the section headers
 * (and OMAP when the image was rearranged after linking), and every S_PUB32 record. */
#include "pdb_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PUB32 0x110E
#define DBI_HEADER 64

uint32_t kdh_pdb_omap_map(const uint8_t *omap, uint32_t n, uint32_t x)
{
    /* Binary search for the last entry with from <= x. */
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (kdh_get_u32(omap + 8 * (size_t)mid) <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return 0;
    uint32_t from = kdh_get_u32(omap + 8 * (size_t)(lo - 1));
    uint32_t to = kdh_get_u32(omap + 8 * (size_t)(lo - 1) + 4);
    return to == 0 ? 0 : to + (x - from);
}

static int read_info(kdh_pdb_t *p, kdh_err_t *err)
{
    uint8_t *s;
    uint32_t n;
    if (p->msf.nstreams < 2)
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: no PDB info stream");
    int rc = msf_read_stream(&p->msf, 1, &s, &n, err);
    if (rc)
        return rc;
    if (n < 28) {
        free(s);
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: info stream of %u bytes is too short", n);
    }
    p->info.signature = kdh_get_u32(s + 4);
    p->info.info_age = kdh_get_u32(s + 8);
    memcpy(p->info.guid, s + 12, 16);
    p->info.age = p->info.info_age; /* replaced by the DBI age when there is a DBI stream */
    free(s);
    return KDH_OK;
}

/* DBI header and optional debug header; leaves p->symrec_stream = 0xFFFF without DBI. */
static int read_dbi(kdh_pdb_t *p, kdh_err_t *err)
{
    for (int i = 0; i < KDH_PDB_DBG_COUNT; i++)
        p->info.dbg_streams[i] = 0xFFFF;
    p->symrec_stream = 0xFFFF;
    if (p->msf.nstreams < 4 || p->msf.sizes[3] == 0)
        return KDH_OK; /* no DBI: the info-stream age stands */
    uint8_t *d;
    uint32_t n;
    int rc = msf_read_stream(&p->msf, 3, &d, &n, err);
    if (rc)
        return rc;
    if (n < DBI_HEADER || kdh_get_u32(d) != 0xFFFFFFFFu) {
        free(d);
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: DBI stream (%u bytes) has no valid header", n);
    }
    p->info.age = kdh_get_u32(d + 8);
    p->symrec_stream = kdh_get_u16(d + 20);
    p->info.machine = kdh_get_u16(d + 58);
    /* Substreams in order: ModInfo, SectionContribution, SectionMap, FileInfo, TypeServerMap,
     * EC, then the optional debug header. */
    uint64_t at = DBI_HEADER;
    const int offs[] = {24, 28, 32, 36, 40, 52};
    for (size_t i = 0; i < KDH_ARRAY_LEN(offs); i++) {
        int32_t v = (int32_t)kdh_get_u32(d + offs[i]);
        if (v < 0) {
            free(d);
            return kdh_err_set(err, KDH_ECORRUPT, "PDB: DBI substream size %d is negative", v);
        }
        at += (uint32_t)v;
    }
    int32_t dbg = (int32_t)kdh_get_u32(d + 48);
    if (dbg < 0 || at + (uint32_t)dbg > n) {
        free(d);
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: DBI substreams (%llu + %d bytes) overrun the "
                           "%u-byte stream", (unsigned long long)at, dbg, n);
    }
    uint32_t cnt = (uint32_t)dbg / 2;
    for (uint32_t i = 0; i < cnt && i < KDH_PDB_DBG_COUNT; i++)
        p->info.dbg_streams[i] = kdh_get_u16(d + at + (size_t)2 * i);
    free(d);
    return KDH_OK;
}

/* Reads a section-header stream into an array of VirtualAddress values. */
static int read_sections(kdh_pdb_t *p, uint16_t idx, uint32_t **vas, uint32_t *count,
                         kdh_err_t *err)
{
    uint8_t *s;
    uint32_t n;
    *vas = NULL;
    *count = 0;
    int rc = msf_read_stream(&p->msf, idx, &s, &n, err);
    if (rc)
        return rc;
    uint32_t c = n / 40;
    if (c) {
        *vas = malloc(sizeof **vas * c);
        if (!*vas) {
            free(s);
            return kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for section headers");
        }
        for (uint32_t i = 0; i < c; i++)
            (*vas)[i] = kdh_get_u32(s + (size_t)40 * i + 12);
    }
    *count = c;
    free(s);
    return KDH_OK;
}

/* Scans the symbol-record stream; pass 0 counts S_PUB32 records, pass 1 fills p->pubs. */
static int scan_publics(kdh_pdb_t *p, int fill, const uint32_t *vas, uint32_t nsec,
                        const uint8_t *omap, uint32_t nomap, uint32_t *count, kdh_err_t *err)
{
    const uint8_t *s = p->symrec;
    uint32_t len = p->symrec_len, pos = 0, k = 0;
    while (len - pos >= 4) {
        uint32_t reclen = kdh_get_u16(s + pos), kind = kdh_get_u16(s + pos + 2);
        if (reclen == 0 && kind == 0)
            break; /* zero padding at the end */
        if (reclen < 2 || reclen > len - pos - 2)
            return kdh_err_set(err, KDH_ECORRUPT, "PDB: symbol record at +0x%x has length %u "
                               "(stream holds 0x%x bytes)", pos, reclen, len);
        if (kind == S_PUB32) {
            const uint8_t *b = s + pos + 4;
            uint32_t blen = reclen - 2;
            if (blen < 11 || !memchr(b + 10, 0, blen - 10))
                return kdh_err_set(err, KDH_ECORRUPT, "PDB: S_PUB32 record at +0x%x is "
                                   "truncated or its name is not terminated", pos);
            uint16_t seg = kdh_get_u16(b + 8);
            uint32_t off = kdh_get_u32(b + 4);
            /* Absolute or unknown sections have no RVA: not a public we can place. */
            if (seg >= 1 && seg <= nsec) {
                uint64_t rva = (uint64_t)vas[seg - 1] + off;
                if (rva > UINT32_MAX)
                    return kdh_err_set(err, KDH_ECORRUPT, "PDB: public at %04x:%08x lies "
                                       "beyond 4 GiB", seg, off);
                if (omap)
                    rva = kdh_pdb_omap_map(omap, nomap, (uint32_t)rva);
                if (!omap || rva != 0) {
                    if (k >= KDH_PDB_MAX_PUBLICS)
                        return kdh_err_set(err, KDH_ERANGE, "PDB: more than %u publics",
                                           KDH_PDB_MAX_PUBLICS);
                    if (fill) {
                        kdh_pdb_public_t *pub = &p->pubs[k];
                        pub->flags = kdh_get_u32(b);
                        pub->off = off;
                        pub->seg = seg;
                        pub->rva = (uint32_t)rva;
                        pub->name = (const char *)b + 10;
                    }
                    k++;
                }
            }
        }
        pos += 2 + reclen;
    }
    *count = k;
    return KDH_OK;
}

static int read_publics(kdh_pdb_t *p, kdh_err_t *err)
{
    if (p->symrec_stream == 0xFFFF)
        return KDH_OK; /* no DBI: no publics */
    int rc = msf_read_stream(&p->msf, p->symrec_stream, &p->symrec, &p->symrec_len, err);
    if (rc)
        return rc;
    const uint16_t *dbg = p->info.dbg_streams;
    uint32_t *vas = NULL, nsec = 0;
    uint8_t *omap = NULL;
    uint32_t omap_len = 0;
    /* With OMAP, seg:off refers to the original layout, mapped to the final one. */
    if (dbg[KDH_PDB_DBG_ORIG_SECTION_HDR] != 0xFFFF && dbg[KDH_PDB_DBG_OMAP_FROM_SRC] != 0xFFFF) {
        rc = read_sections(p, dbg[KDH_PDB_DBG_ORIG_SECTION_HDR], &vas, &nsec, err);
        if (!rc)
            rc = msf_read_stream(&p->msf, dbg[KDH_PDB_DBG_OMAP_FROM_SRC], &omap, &omap_len, err);
        p->info.has_omap = 1;
    } else if (dbg[KDH_PDB_DBG_SECTION_HDR] != 0xFFFF) {
        rc = read_sections(p, dbg[KDH_PDB_DBG_SECTION_HDR], &vas, &nsec, err);
    } else if (p->symrec_len) {
        rc = kdh_err_set(err, KDH_EUNSUPPORTED, "PDB: no section-header stream, so publics "
                         "cannot be turned into RVAs");
    }
    uint32_t n = 0;
    if (!rc)
        rc = scan_publics(p, 0, vas, nsec, omap, omap_len / 8, &n, err);
    if (!rc && n) {
        p->pubs = calloc(n, sizeof *p->pubs);
        if (!p->pubs)
            rc = kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for %u publics", n);
        else
            rc = scan_publics(p, 1, vas, nsec, omap, omap_len / 8, &p->npubs, err);
    }
    if (!rc)
        rc = pdb_read_procs(p, vas, nsec, err);
    free(vas);
    free(omap);
    return rc;
}

int kdh_pdb_open_buffer(kdh_pdb_t **out, const void *buf, size_t len, kdh_err_t *err)
{
    *out = NULL;
    if (!buf && len)
        return kdh_err_set(err, KDH_EINVAL, "PDB: no buffer");
    if (len > KDH_PDB_MAX_FILE)
        return kdh_err_set(err, KDH_ERANGE, "PDB: %zu bytes is larger than supported", len);
    kdh_pdb_t *p = calloc(1, sizeof *p);
    uint8_t *copy = malloc(len ? len : 1);
    if (!p || !copy) {
        free(p);
        free(copy);
        return kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for a %zu-byte file", len);
    }
    if (len)
        memcpy(copy, buf, len);
    p->file = copy;
    p->file_len = len;
    int rc = msf_open(&p->msf, copy, len, err);
    if (!rc)
        rc = read_info(p, err);
    if (!rc)
        rc = read_dbi(p, err);
    if (!rc)
        rc = read_publics(p, err);
    if (!rc)
        rc = pdb_build_index(p, err);
    if (rc) {
        kdh_pdb_close(p);
        return rc;
    }
    p->info.block_size = p->msf.bs;
    p->info.nstreams = p->msf.nstreams;
    *out = p;
    return KDH_OK;
}

int kdh_pdb_open_file(kdh_pdb_t **out, const char *path, kdh_err_t *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kdh_err_set(err, errno == ENOENT ? KDH_ENOTFOUND : KDH_EIO, "PDB: cannot open %s: "
                           "%s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = KDH_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= KDH_PDB_MAX_FILE) {
                rc = kdh_err_set(err, KDH_ERANGE, "PDB: %s is larger than supported", path);
                break;
            }
            size_t ncap = cap ? cap * 2 : (1u << 20);
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory reading %s", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                rc = kdh_err_set(err, KDH_EIO, "PDB: reading %s failed", path);
            break;
        }
    }
    fclose(f);
    if (!rc) {
        rc = kdh_pdb_open_buffer(out, buf, len, err);
        if (rc && err) {
            /* Name the file: the caller may be trying several. */
            char m[sizeof err->msg];
            memcpy(m, err->msg, sizeof m);
            kdh_err_set(err, rc, "%s: %s", path, m);
        }
    }
    free(buf);
    return rc;
}

void kdh_pdb_close(kdh_pdb_t *p)
{
    if (!p)
        return;
    msf_close(&p->msf);
    free(p->file);
    free(p->symrec);
    free(p->pubs);
    free(p->by_name);
    free(p->undec);
    free(p->undec_pool);
    free(p->procs);
    free(p->proc_names);
    free(p);
}

const kdh_pdb_info_t *kdh_pdb_info(const kdh_pdb_t *p)
{
    return &p->info;
}

int kdh_pdb_read_stream(const kdh_pdb_t *p, uint32_t idx, uint8_t **data, uint32_t *len,
                        kdh_err_t *err)
{
    return msf_read_stream(&p->msf, idx, data, len, err);
}
