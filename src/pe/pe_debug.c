/* pe_debug.c: what identifies an image and its symbols: the debug directory with the CodeView
 * RSDS record (PDB name, GUID, age), the symbol-store keys built from them and from the file
 * header, and the x64 exception directory (.pdata) that the unwinder searches. */
#include "pe_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kdh_pe_debug_entries(const kdh_pe_t *pe, kdh_pe_debug_entry_t *out, uint32_t max,
                         uint32_t *count, kdh_err_t *err)
{
    *count = 0;
    kdh_pe_dir_t d = pe->dirs[KDH_PE_DIR_DEBUG];
    if (d.rva == 0 || d.size == 0)
        return KDH_OK;
    uint32_t n = d.size / 28;
    if (n > KDH_PE_MAX_DEBUG_ENTRIES)
        return kdh_err_set(err, KDH_ERANGE, "PE: %u debug directory entries (at most %d are "
                           "accepted)", n, KDH_PE_MAX_DEBUG_ENTRIES);
    uint8_t buf[28 * KDH_PE_MAX_DEBUG_ENTRIES];
    int rc = kdh_pe_read_rva(pe, d.rva, buf, n * 28, err);
    if (rc)
        return rc;
    if (n > max)
        n = max;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = buf + 28 * i;
        kdh_pe_debug_entry_t *e = &out[i];
        e->characteristics = kdh_get_u32(p);
        e->timestamp = kdh_get_u32(p + 4);
        e->major = kdh_get_u16(p + 8);
        e->minor = kdh_get_u16(p + 10);
        e->type = kdh_get_u32(p + 12);
        e->size = kdh_get_u32(p + 16);
        e->rva = kdh_get_u32(p + 20);
        e->file_off = kdh_get_u32(p + 24);
    }
    *count = n;
    return KDH_OK;
}

/* Reads the debug data of one entry: by RVA when mapped, else (files only) by raw offset. */
static int read_debug_data(const kdh_pe_t *pe, const kdh_pe_debug_entry_t *e, uint8_t *buf,
                           uint32_t len, kdh_err_t *err)
{
    if (e->rva)
        return kdh_pe_read_rva(pe, e->rva, buf, len, err);
    if (pe->layout == KDH_PE_LAYOUT_FILE && kdh_in_bounds(e->file_off, len, pe->len)) {
        memcpy(buf, pe->buf + e->file_off, len);
        return KDH_OK;
    }
    return kdh_err_set(err, KDH_ECORRUPT, "PE: CodeView data (file offset 0x%x) is not in the "
                       "image", e->file_off);
}

int kdh_pe_codeview(const kdh_pe_t *pe, kdh_pe_codeview_t *cv, kdh_err_t *err)
{
    kdh_pe_debug_entry_t ents[KDH_PE_MAX_DEBUG_ENTRIES];
    uint32_t n = 0;
    memset(cv, 0, sizeof *cv);
    int rc = kdh_pe_debug_entries(pe, ents, KDH_PE_MAX_DEBUG_ENTRIES, &n, err);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        const kdh_pe_debug_entry_t *e = &ents[i];
        if (e->type != KDH_PE_DEBUG_CODEVIEW)
            continue;
        /* 'RSDS' + GUID + age + path with its NUL; the path is capped like every name. */
        if (e->size < 25)
            return kdh_err_set(err, KDH_ECORRUPT, "PE: CodeView record of %u bytes is too short",
                               e->size);
        uint32_t len = e->size < 24 + KDH_PE_MAX_NAME ? e->size : 24 + KDH_PE_MAX_NAME;
        uint8_t buf[24 + KDH_PE_MAX_NAME];
        if ((rc = read_debug_data(pe, e, buf, len, err)))
            return rc;
        if (memcmp(buf, "RSDS", 4) != 0)
            return kdh_err_set(err, KDH_EUNSUPPORTED, "PE: CodeView record is '%.4s', not RSDS "
                               "(PDB 2.0 images are not supported)", (const char *)buf);
        memcpy(cv->guid, buf + 4, 16);
        cv->age = kdh_get_u32(buf + 20);
        const uint8_t *path = buf + 24;
        const uint8_t *nul = memchr(path, 0, len - 24);
        if (!nul)
            return kdh_err_set(err, KDH_ECORRUPT, "PE: CodeView PDB path is not NUL-terminated "
                               "within %u bytes", len - 24);
        memcpy(cv->path, path, (size_t)(nul - path) + 1);
        const char *base = cv->path;
        for (const char *p = cv->path; *p; p++)
            if (*p == '\\' || *p == '/')
                base = p + 1;
        if (!*base)
            return kdh_err_set(err, KDH_ECORRUPT, "PE: CodeView PDB path '%s' has no file name",
                               cv->path);
        memmove(cv->pdb_name, base, strlen(base) + 1);
        return KDH_OK;
    }
    return kdh_err_set(err, KDH_ENOTFOUND, "PE: the image has no CodeView (RSDS) debug record");
}

int kdh_pe_pdata(const kdh_pe_t *pe, kdh_pe_runtime_function_t **out, uint32_t *count,
                 kdh_err_t *err)
{
    *out = NULL;
    *count = 0;
    if (pe->machine != KDH_PE_MACHINE_AMD64)
        return kdh_err_set(err, KDH_EUNSUPPORTED, "PE: .pdata is read for x64 images only "
                           "(machine 0x%x)", pe->machine);
    kdh_pe_dir_t d = pe->dirs[KDH_PE_DIR_EXCEPTION];
    if (d.rva == 0 || d.size == 0)
        return KDH_OK;
    uint32_t n = d.size / 12;
    if (n > KDH_PE_MAX_PDATA)
        return kdh_err_set(err, KDH_ERANGE, "PE: %u RUNTIME_FUNCTION entries (at most %u are "
                           "accepted)", n, KDH_PE_MAX_PDATA);
    if (n == 0)
        return KDH_OK;
    uint8_t *raw = malloc((size_t)n * 12);
    kdh_pe_runtime_function_t *v = malloc(sizeof *v * n);
    if (!raw || !v) {
        free(raw);
        free(v);
        return kdh_err_set(err, KDH_ENOMEM, "PE: out of memory for %u RUNTIME_FUNCTIONs", n);
    }
    int rc = kdh_pe_read_rva(pe, d.rva, raw, n * 12, err);
    for (uint32_t i = 0; rc == KDH_OK && i < n; i++) {
        v[i].begin = kdh_get_u32(raw + 12 * i);
        v[i].end = kdh_get_u32(raw + 12 * i + 4);
        v[i].unwind = kdh_get_u32(raw + 12 * i + 8);
    }
    free(raw);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *count = n;
    return KDH_OK;
}

const kdh_pe_runtime_function_t *kdh_pe_pdata_find(const kdh_pe_runtime_function_t *v,
                                                   uint32_t count, uint32_t rva)
{
    uint32_t lo = 0, hi = count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (rva < v[mid].begin)
            hi = mid;
        else if (rva >= v[mid].end)
            lo = mid + 1;
        else
            return &v[mid];
    }
    return NULL;
}

void kdh_pe_image_id(uint32_t timestamp, uint32_t size_of_image, char out[17])
{
    snprintf(out, 17, "%08X%x", timestamp, size_of_image);
}

void kdh_pe_pdb_id(const uint8_t guid[16], uint32_t age, char out[41])
{
    int n = snprintf(out, 41, "%08X%04X%04X", kdh_get_u32(guid), kdh_get_u16(guid + 4),
                     kdh_get_u16(guid + 6));
    for (int i = 0; i < 8; i++)
        n += snprintf(out + n, (size_t)(41 - n), "%02X", guid[8 + i]);
    snprintf(out + n, (size_t)(41 - n), "%X", age);
}

int kdh_pe_image_key(const char *file, uint32_t timestamp, uint32_t size_of_image, char *out,
                     size_t out_len)
{
    char id[17];
    kdh_pe_image_id(timestamp, size_of_image, id);
    int n = snprintf(out, out_len, "%s/%s", file, id);
    return n < 0 || (size_t)n >= out_len ? KDH_ERANGE : KDH_OK;
}

int kdh_pe_pdb_key(const char *pdb, const uint8_t guid[16], uint32_t age, char *out,
                   size_t out_len)
{
    char id[41];
    kdh_pe_pdb_id(guid, age, id);
    int n = snprintf(out, out_len, "%s/%s", pdb, id);
    return n < 0 || (size_t)n >= out_len ? KDH_ERANGE : KDH_OK;
}
