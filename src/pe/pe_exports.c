/* pe_exports.c: the export directory (name -> RVA, ordinals, forwarders) and the import
 * directory (DLL names, imported names or ordinals, and the IAT slot of each). The whole
 * directory is fetched once when small, so a memory image costs a handful of reads. */
#include "pe_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NO_NAME UINT32_MAX

void kdh_pe_exports_free(kdh_pe_exports_t *ex)
{
    if (!ex)
        return;
    free(ex->v);
    free(ex->strings);
    memset(ex, 0, sizeof *ex);
}

/* Reads count little-endian entries of width bytes at rva into a malloc'ed array. */
static int read_table(const kdh_pe_t *pe, const pe_blob_t *b, uint32_t rva, uint32_t count,
                      uint32_t width, uint8_t **out, kdh_err_t *err)
{
    *out = NULL;
    if (count == 0)
        return KDH_OK;
    uint8_t *t = malloc((size_t)count * width);
    if (!t)
        return kdh_err_set(err, KDH_ENOMEM, "PE: out of memory for a %u-entry table", count);
    int rc = pe_blob_read(pe, b, rva, t, count * width, err);
    if (rc) {
        free(t);
        return rc;
    }
    *out = t;
    return KDH_OK;
}

int kdh_pe_exports(const kdh_pe_t *pe, kdh_pe_exports_t *out, kdh_err_t *err)
{
    memset(out, 0, sizeof *out);
    kdh_pe_dir_t d = pe->dirs[KDH_PE_DIR_EXPORT];
    if (d.rva == 0 || d.size == 0)
        return KDH_OK; /* no exports */
    if (d.size < 40 || !kdh_in_bounds(d.rva, d.size, pe->size_of_image))
        return kdh_err_set(err, KDH_ECORRUPT, "PE: export directory (RVA 0x%x, 0x%x bytes) lies "
                           "outside the image", d.rva, d.size);
    pe_blob_t blob;
    int rc = pe_blob_load(pe, &blob, d.rva, d.size, err);
    if (rc)
        return rc;
    uint8_t *addr = NULL, *names = NULL, *ords = NULL;
    uint32_t *name_of = NULL, *name_off = NULL;
    pe_strpool_t pool = {0};
    char s[KDH_PE_MAX_NAME];
    uint8_t hdr[40];
    if ((rc = pe_blob_read(pe, &blob, d.rva, hdr, sizeof hdr, err)))
        goto out;
    uint32_t nfun = kdh_get_u32(hdr + 20), nnames = kdh_get_u32(hdr + 24);
    if (nfun > KDH_PE_MAX_EXPORTS || nnames > KDH_PE_MAX_EXPORTS) {
        rc = kdh_err_set(err, KDH_ERANGE, "PE: %u exported functions / %u names (at most %d are "
                         "accepted)", nfun, nnames, KDH_PE_MAX_EXPORTS);
        goto out;
    }
    out->ordinal_base = kdh_get_u32(hdr + 16);
    uint32_t dll_off = NO_NAME;
    if (kdh_get_u32(hdr + 12)) {
        if ((rc = pe_blob_string(pe, &blob, kdh_get_u32(hdr + 12), s, sizeof s, err)) ||
            (rc = pe_strpool_add(&pool, s, &dll_off, err)))
            goto out;
    }
    if ((rc = read_table(pe, &blob, kdh_get_u32(hdr + 28), nfun, 4, &addr, err)) ||
        (rc = read_table(pe, &blob, kdh_get_u32(hdr + 32), nnames, 4, &names, err)) ||
        (rc = read_table(pe, &blob, kdh_get_u32(hdr + 36), nnames, 2, &ords, err)))
        goto out;
    name_of = malloc(sizeof *name_of * (nfun ? nfun : 1));
    name_off = malloc(sizeof *name_off * (nfun ? nfun : 1));
    if (!name_of || !name_off) {
        rc = kdh_err_set(err, KDH_ENOMEM, "PE: out of memory for %u exports", nfun);
        goto out;
    }
    for (uint32_t i = 0; i < nfun; i++)
        name_of[i] = NO_NAME;
    /* The first name that points at a slot names it (aliases are rare in drivers). */
    for (uint32_t j = 0; j < nnames; j++) {
        uint16_t o = kdh_get_u16(ords + 2 * j);
        if (o >= nfun) {
            rc = kdh_err_set(err, KDH_ECORRUPT, "PE: export name %u points at ordinal index %u of "
                             "%u", j, o, nfun);
            goto out;
        }
        if (name_of[o] == NO_NAME)
            name_of[o] = j;
    }
    uint32_t count = 0;
    for (uint32_t i = 0; i < nfun; i++)
        if (kdh_get_u32(addr + 4 * i))
            count++;
    out->v = calloc(count ? count : 1, sizeof *out->v);
    uint32_t *fwd_off = calloc(count ? count : 1, sizeof *fwd_off);
    if (!out->v || !fwd_off) {
        free(fwd_off);
        rc = kdh_err_set(err, KDH_ENOMEM, "PE: out of memory for %u exports", count);
        goto out;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < nfun && rc == KDH_OK; i++) {
        uint32_t rva = kdh_get_u32(addr + 4 * i);
        if (rva == 0)
            continue;
        kdh_pe_export_t *e = &out->v[k];
        e->ordinal = out->ordinal_base + i;
        e->rva = rva;
        name_off[k] = NO_NAME;
        fwd_off[k] = NO_NAME;
        if (name_of[i] != NO_NAME) {
            uint32_t nrva = kdh_get_u32(names + 4 * name_of[i]);
            if ((rc = pe_blob_string(pe, &blob, nrva, s, sizeof s, err)) ||
                (rc = pe_strpool_add(&pool, s, &name_off[k], err)))
                break;
        }
        if (rva >= d.rva && rva - d.rva < d.size) {
            if ((rc = pe_blob_string(pe, &blob, rva, s, sizeof s, err)) ||
                (rc = pe_strpool_add(&pool, s, &fwd_off[k], err)))
                break;
        }
        k++;
    }
    if (rc == KDH_OK) {
        /* The pool no longer grows: turn offsets into pointers. */
        for (uint32_t i = 0; i < count; i++) {
            out->v[i].name = name_off[i] == NO_NAME ? NULL : pool.data + name_off[i];
            out->v[i].forwarder = fwd_off[i] == NO_NAME ? NULL : pool.data + fwd_off[i];
        }
        out->dll_name = dll_off == NO_NAME ? NULL : pool.data + dll_off;
        out->count = count;
        out->strings = pool.data;
        pool.data = NULL;
    }
    free(fwd_off);
out:
    free(addr);
    free(names);
    free(ords);
    free(name_of);
    free(name_off);
    free(pool.data);
    pe_blob_free(&blob);
    if (rc) {
        free(out->v);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

const kdh_pe_export_t *kdh_pe_export_find(const kdh_pe_exports_t *ex, const char *name)
{
    for (uint32_t i = 0; i < ex->count; i++)
        if (ex->v[i].name && strcmp(ex->v[i].name, name) == 0)
            return &ex->v[i];
    return NULL;
}

/* ---- imports ---- */

void kdh_pe_imports_free(kdh_pe_imports_t *im)
{
    if (!im)
        return;
    free(im->dlls);
    free(im->fn_store);
    free(im->strings);
    memset(im, 0, sizeof *im);
}

/* Growable arrays filled with offsets first, pointers fixed up at the end. */
typedef struct imp_build {
    kdh_pe_import_dll_t *dlls;
    uint32_t ndlls;
    uint32_t *dll_name_off, *dll_first;
    kdh_pe_import_fn_t *fns;
    uint32_t *fn_name_off;
    uint32_t nfns, capfns;
    pe_strpool_t pool;
} imp_build_t;

static int add_fn(imp_build_t *b, const kdh_pe_import_fn_t *f, uint32_t name_off, kdh_err_t *err)
{
    if (b->nfns >= KDH_PE_MAX_IMPORTS)
        return kdh_err_set(err, KDH_ERANGE, "PE: more than %d imported functions",
                           KDH_PE_MAX_IMPORTS);
    if (b->nfns == b->capfns) {
        uint32_t cap = b->capfns ? b->capfns * 2 : 64;
        kdh_pe_import_fn_t *n = realloc(b->fns, sizeof *n * cap);
        if (!n)
            return kdh_err_set(err, KDH_ENOMEM, "PE: out of memory for imports");
        b->fns = n;
        uint32_t *o = realloc(b->fn_name_off, sizeof *o * cap);
        if (!o)
            return kdh_err_set(err, KDH_ENOMEM, "PE: out of memory for imports");
        b->fn_name_off = o;
        b->capfns = cap;
    }
    b->fns[b->nfns] = *f;
    b->fn_name_off[b->nfns] = name_off;
    b->nfns++;
    return KDH_OK;
}

/* Walks one lookup table (thunks of 4 or 8 bytes) until its zero terminator. */
static int walk_thunks(const kdh_pe_t *pe, imp_build_t *b, uint32_t ilt, uint32_t iat,
                       kdh_err_t *err)
{
    uint32_t w = pe->pe32plus ? 8 : 4;
    uint8_t chunk[64 * 8];
    uint32_t per = sizeof chunk / w;
    for (uint32_t i = 0;; i += per) {
        uint64_t at = (uint64_t)ilt + (uint64_t)i * w;
        if (at >= pe->size_of_image)
            return kdh_err_set(err, KDH_ECORRUPT, "PE: import lookup table at RVA 0x%x has no "
                               "terminator inside the image", ilt);
        /* Stay inside the section and the page: the bytes past them may not be readable. */
        uint64_t end = pe_run_end(pe, (uint32_t)at);
        uint32_t n = per;
        if (at + (uint64_t)n * w > end)
            n = (uint32_t)((end - at) / w);
        if (n == 0)
            return kdh_err_set(err, KDH_ECORRUPT, "PE: import lookup table at RVA 0x%x runs off "
                               "the image", ilt);
        int rc = kdh_pe_read_rva(pe, (uint32_t)at, chunk, n * w, err);
        if (rc)
            return rc;
        for (uint32_t j = 0; j < n; j++) {
            uint64_t t = w == 8 ? kdh_get_u64(chunk + j * w) : kdh_get_u32(chunk + j * w);
            if (t == 0)
                return KDH_OK;
            kdh_pe_import_fn_t f = {0};
            f.iat_rva = iat + (i + j) * w;
            uint32_t name_off = NO_NAME;
            int by_ord = w == 8 ? (t >> 63) != 0 : (t >> 31) != 0;
            if (by_ord) {
                f.ordinal = (uint16_t)t;
            } else {
                uint32_t hn = (uint32_t)t & 0x7FFFFFFFu;
                uint8_t hint[2];
                char s[KDH_PE_MAX_NAME];
                if ((rc = kdh_pe_read_rva(pe, hn, hint, 2, err)) ||
                    (rc = kdh_pe_read_string(pe, hn + 2, s, sizeof s, err)) ||
                    (rc = pe_strpool_add(&b->pool, s, &name_off, err)))
                    return rc;
                f.hint = kdh_get_u16(hint);
            }
            if ((rc = add_fn(b, &f, name_off, err)))
                return rc;
        }
    }
}

int kdh_pe_imports(const kdh_pe_t *pe, kdh_pe_imports_t *out, kdh_err_t *err)
{
    memset(out, 0, sizeof *out);
    kdh_pe_dir_t d = pe->dirs[KDH_PE_DIR_IMPORT];
    if (d.rva == 0 || d.size == 0)
        return KDH_OK;
    if (!kdh_in_bounds(d.rva, 20, pe->size_of_image))
        return kdh_err_set(err, KDH_ECORRUPT, "PE: import directory RVA 0x%x lies outside the "
                           "image", d.rva);
    imp_build_t b = {0};
    pe_blob_t blob;
    int rc = pe_blob_load(pe, &blob, d.rva, d.size, err);
    if (rc)
        return rc;
    b.dlls = calloc(KDH_PE_MAX_IMPORT_DLLS, sizeof *b.dlls);
    b.dll_name_off = calloc(KDH_PE_MAX_IMPORT_DLLS, sizeof *b.dll_name_off);
    b.dll_first = calloc(KDH_PE_MAX_IMPORT_DLLS, sizeof *b.dll_first);
    if (!b.dlls || !b.dll_name_off || !b.dll_first) {
        rc = kdh_err_set(err, KDH_ENOMEM, "PE: out of memory for imports");
        goto out;
    }
    for (uint32_t i = 0;; i++) {
        uint8_t desc[20];
        if ((rc = pe_blob_read(pe, &blob, d.rva + 20 * i, desc, 20, err)))
            goto out;
        uint32_t ilt = kdh_get_u32(desc), name = kdh_get_u32(desc + 12),
                 iat = kdh_get_u32(desc + 16);
        if (name == 0 && iat == 0 && ilt == 0)
            break;
        if (i >= KDH_PE_MAX_IMPORT_DLLS) {
            rc = kdh_err_set(err, KDH_ERANGE, "PE: more than %d imported DLLs",
                             KDH_PE_MAX_IMPORT_DLLS);
            goto out;
        }
        char s[KDH_PE_MAX_NAME];
        if ((rc = pe_blob_string(pe, &blob, name, s, sizeof s, err)) ||
            (rc = pe_strpool_add(&b.pool, s, &b.dll_name_off[i], err)))
            goto out;
        b.dll_first[i] = b.nfns;
        /* In memory the IAT holds resolved addresses: only the lookup table names imports. */
        uint32_t table = ilt ? ilt : (pe->layout == KDH_PE_LAYOUT_FILE ? iat : 0);
        if (table && (rc = walk_thunks(pe, &b, table, iat, err)))
            goto out;
        b.dlls[i].count = b.nfns - b.dll_first[i];
        b.ndlls = i + 1;
    }
    for (uint32_t i = 0; i < b.nfns; i++)
        b.fns[i].name = b.fn_name_off[i] == NO_NAME ? NULL : b.pool.data + b.fn_name_off[i];
    for (uint32_t i = 0; i < b.ndlls; i++) {
        b.dlls[i].dll = b.pool.data + b.dll_name_off[i];
        b.dlls[i].fns = b.dlls[i].count ? b.fns + b.dll_first[i] : NULL;
    }
    out->count = b.ndlls;
    out->dlls = b.dlls;
    out->fn_store = b.fns;
    out->strings = b.pool.data;
    b.dlls = NULL;
    b.fns = NULL;
    b.pool.data = NULL;
out:
    free(b.dlls);
    free(b.dll_name_off);
    free(b.dll_first);
    free(b.fns);
    free(b.fn_name_off);
    free(b.pool.data);
    pe_blob_free(&blob);
    return rc;
}

int kdh_pe_imports_has(const kdh_pe_imports_t *im, const char *dll, const char *fn)
{
    for (uint32_t i = 0; i < im->count; i++) {
        if (dll && strcasecmp(im->dlls[i].dll, dll) != 0)
            continue;
        for (uint32_t j = 0; j < im->dlls[i].count; j++)
            if (im->dlls[i].fns[j].name && strcmp(im->dlls[i].fns[j].name, fn) == 0)
                return 1;
    }
    return 0;
}
