/* pe_image.c: PE headers and the byte source behind every other kdh_pe reader. A file image
 * maps an RVA to a raw offset through the section table; a memory image reads base + RVA
 * through the caller's callback. Both are bounded by SizeOfImage once the headers are known. */
#include "pe_internal.h"

#include <stdlib.h>
#include <string.h>

/* Before SizeOfImage is known, header reads of a memory image stay inside this window. */
#define PE_HEADER_WINDOW 0x1000u

static int src_read_file(const kdh_pe_t *pe, uint32_t rva, uint8_t *buf, uint32_t len,
                         kdh_err_t *err)
{
    /* Headers: RVA == file offset. */
    if (rva < pe->size_of_headers || pe->nsections == 0) {
        if (!kdh_in_bounds(rva, len, pe->len))
            return kdh_err_set(err, KDH_ECORRUPT,
                               "PE: header bytes 0x%x+0x%x lie past the end of the %zu-byte file",
                               rva, len, pe->len);
        if (!kdh_in_bounds(rva, len, pe->nsections ? pe->size_of_headers : pe->len))
            return kdh_err_set(err, KDH_ECORRUPT, "PE: read 0x%x+0x%x crosses the headers' end",
                               rva, len);
        memcpy(buf, pe->buf + rva, len);
        return KDH_OK;
    }
    const kdh_pe_section_t *s = kdh_pe_section_by_rva(pe, rva);
    if (!s)
        return kdh_err_set(err, KDH_ECORRUPT, "PE: RVA 0x%x is in no section", rva);
    uint32_t in = rva - s->va;
    uint32_t span = s->vsize > s->raw_size ? s->vsize : s->raw_size;
    if (!kdh_in_bounds(in, len, span))
        return kdh_err_set(err, KDH_ECORRUPT, "PE: RVA 0x%x+0x%x runs past the end of section %s",
                           rva, len, s->name);
    /* Bytes past SizeOfRawData are zero-fill (bss); bytes inside must be in the file. */
    uint32_t from_file = 0;
    if (in < s->raw_size)
        from_file = s->raw_size - in < len ? s->raw_size - in : len;
    if (from_file) {
        uint64_t off = (uint64_t)s->raw_off + in;
        if (!kdh_in_bounds(off, from_file, pe->len))
            return kdh_err_set(err, KDH_ECORRUPT,
                               "PE: section %s raw data (0x%llx+0x%x) lies past the end of the "
                               "file (truncated image?)",
                               s->name, (unsigned long long)off, from_file);
        memcpy(buf, pe->buf + off, from_file);
    }
    memset(buf + from_file, 0, len - from_file);
    return KDH_OK;
}

static int src_read_memory(const kdh_pe_t *pe, uint32_t rva, uint8_t *buf, uint32_t len,
                           kdh_err_t *err)
{
    uint32_t got = 0;
    int rc = pe->read(pe->read_ctx, pe->base + rva, buf, len, &got);
    if (rc < 0)
        return kdh_err_set(err, rc, "PE: reading 0x%x bytes of the image at 0x%llx+0x%x failed (%s)",
                           len, (unsigned long long)pe->base, rva, kdh_strerror(rc));
    if (got < len)
        return kdh_err_set(err, KDH_ETARGET,
                           "PE: target memory 0x%llx+0x%x is unreadable (%u of %u bytes; paged "
                           "out or discarded?)",
                           (unsigned long long)pe->base, rva, got, len);
    return KDH_OK;
}

int kdh_pe_read_rva(const kdh_pe_t *pe, uint32_t rva, void *buf, uint32_t len, kdh_err_t *err)
{
    if (len == 0)
        return KDH_OK;
    if (!kdh_in_bounds(rva, len, pe->size_of_image))
        return kdh_err_set(err, KDH_ECORRUPT, "PE: RVA 0x%x+0x%x lies outside the 0x%x-byte image",
                           rva, len, pe->size_of_image);
    if (pe->layout == KDH_PE_LAYOUT_FILE)
        return src_read_file(pe, rva, buf, len, err);
    return src_read_memory(pe, rva, buf, len, err);
}

int kdh_pe_read_string(const kdh_pe_t *pe, uint32_t rva, char *out, size_t max, kdh_err_t *err)
{
    if (max == 0 || max > KDH_PE_MAX_NAME)
        return kdh_err_set(err, KDH_EINVAL, "PE: string buffer size %zu not in 1..%d", max,
                           KDH_PE_MAX_NAME);
    /* Read in small pieces so a name near the image's (or a page's) end needs no bytes past it. */
    size_t have = 0;
    while (have < max) {
        uint32_t chunk = 64;
        if (chunk > max - have)
            chunk = (uint32_t)(max - have);
        uint64_t at = (uint64_t)rva + have;
        if (at >= pe->size_of_image)
            return kdh_err_set(err, KDH_ECORRUPT, "PE: string at RVA 0x%x runs off the 0x%x-byte "
                               "image", rva, pe->size_of_image);
        uint64_t end = pe_run_end(pe, (uint32_t)at);
        if (at + chunk > end)
            chunk = (uint32_t)(end - at);
        int rc = kdh_pe_read_rva(pe, (uint32_t)at, out + have, chunk, err);
        if (rc)
            return rc;
        void *nul = memchr(out + have, 0, chunk);
        if (nul)
            return KDH_OK;
        have += chunk;
    }
    out[max - 1] = '\0';
    return kdh_err_set(err, KDH_ERANGE, "PE: string at RVA 0x%x is not terminated within %zu bytes",
                       rva, max);
}

uint64_t pe_run_end(const kdh_pe_t *pe, uint32_t rva)
{
    uint64_t end = pe->size_of_image;
    if (rva < pe->size_of_headers)
        end = pe->size_of_headers;
    else {
        const kdh_pe_section_t *s = kdh_pe_section_by_rva(pe, rva);
        if (s)
            end = (uint64_t)s->va + (s->vsize > s->raw_size ? s->vsize : s->raw_size);
    }
    uint64_t page_end = ((uint64_t)rva | 0xFFFu) + 1;
    if (end > page_end)
        end = page_end;
    if (end > pe->size_of_image)
        end = pe->size_of_image;
    return end;
}

int kdh_pe_rva_to_offset(const kdh_pe_t *pe, uint32_t rva, uint32_t len, uint32_t *off)
{
    if (pe->layout != KDH_PE_LAYOUT_FILE)
        return KDH_EINVAL;
    if (kdh_in_bounds(rva, len, pe->size_of_headers) && kdh_in_bounds(rva, len, pe->len)) {
        *off = rva;
        return KDH_OK;
    }
    const kdh_pe_section_t *s = kdh_pe_section_by_rva(pe, rva);
    if (!s)
        return KDH_ENOTFOUND;
    uint32_t in = rva - s->va;
    if (!kdh_in_bounds(in, len, s->raw_size))
        return KDH_ENOTFOUND;
    uint64_t o = (uint64_t)s->raw_off + in;
    if (!kdh_in_bounds(o, len, pe->len))
        return KDH_ENOTFOUND;
    *off = (uint32_t)o;
    return KDH_OK;
}

const kdh_pe_section_t *kdh_pe_section_by_rva(const kdh_pe_t *pe, uint32_t rva)
{
    for (uint32_t i = 0; i < pe->nsections; i++) {
        const kdh_pe_section_t *s = &pe->sections[i];
        uint32_t span = s->vsize ? s->vsize : s->raw_size;
        if (rva >= s->va && rva - s->va < span)
            return s;
    }
    return NULL;
}

const kdh_pe_section_t *kdh_pe_section_by_name(const kdh_pe_t *pe, const char *name)
{
    for (uint32_t i = 0; i < pe->nsections; i++)
        if (strcmp(pe->sections[i].name, name) == 0)
            return &pe->sections[i];
    return NULL;
}

/* Parses DOS header, NT headers and the section table through kdh_pe_read_rva. */
static int parse_headers(kdh_pe_t *pe, kdh_err_t *err)
{
    uint8_t dos[64];
    int rc = kdh_pe_read_rva(pe, 0, dos, sizeof dos, err);
    if (rc)
        return rc;
    if (dos[0] != 'M' || dos[1] != 'Z')
        return kdh_err_set(err, KDH_ECORRUPT, "PE: no MZ signature at the start of the image");
    uint32_t lfanew = kdh_get_u32(dos + 0x3C);
    if (lfanew < 0x40 || lfanew > PE_HEADER_WINDOW - 24 || (lfanew & 3))
        return kdh_err_set(err, KDH_ECORRUPT, "PE: e_lfanew 0x%x is not a plausible header offset",
                           lfanew);
    uint8_t nt[24];
    pe->nt_offset = lfanew;
    if ((rc = kdh_pe_read_rva(pe, lfanew, nt, sizeof nt, err)))
        return rc;
    if (memcmp(nt, "PE\0\0", 4) != 0)
        return kdh_err_set(err, KDH_ECORRUPT, "PE: no PE signature at e_lfanew 0x%x", lfanew);
    pe->machine = kdh_get_u16(nt + 4);
    uint32_t nsec = kdh_get_u16(nt + 6);
    pe->timestamp = kdh_get_u32(nt + 8);
    uint32_t optsize = kdh_get_u16(nt + 20);
    pe->characteristics = kdh_get_u16(nt + 22);
    if (nsec > KDH_PE_MAX_SECTIONS)
        return kdh_err_set(err, KDH_ERANGE, "PE: %u sections (at most %d are accepted)", nsec,
                           KDH_PE_MAX_SECTIONS);
    uint8_t opt[240];
    if (optsize < 96)
        return kdh_err_set(err, KDH_ECORRUPT, "PE: optional header of %u bytes is too small",
                           optsize);
    uint32_t optread = optsize < sizeof opt ? optsize : (uint32_t)sizeof opt;
    if ((rc = kdh_pe_read_rva(pe, lfanew + 24, opt, optread, err)))
        return rc;
    uint16_t magic = kdh_get_u16(opt);
    uint32_t dirs_at, ndirs;
    if (magic == 0x10B) {
        pe->pe32plus = 0;
        pe->image_base = kdh_get_u32(opt + 28);
        ndirs = kdh_get_u32(opt + 92);
        dirs_at = 96;
    } else if (magic == 0x20B) {
        pe->pe32plus = 1;
        if (optsize < 112)
            return kdh_err_set(err, KDH_ECORRUPT, "PE32+: optional header of %u bytes is too small",
                               optsize);
        pe->image_base = kdh_get_u64(opt + 24);
        ndirs = kdh_get_u32(opt + 108);
        dirs_at = 112;
    } else {
        return kdh_err_set(err, KDH_ECORRUPT, "PE: optional header magic 0x%x is neither PE32 nor "
                           "PE32+", magic);
    }
    pe->entry_rva = kdh_get_u32(opt + 16);
    pe->size_of_image = kdh_get_u32(opt + 56);
    pe->size_of_headers = kdh_get_u32(opt + 60);
    pe->checksum = kdh_get_u32(opt + 64);
    pe->subsystem = kdh_get_u16(opt + 68);
    pe->dll_characteristics = kdh_get_u16(opt + 70);
    if (ndirs > KDH_PE_DIR_COUNT)
        ndirs = KDH_PE_DIR_COUNT; /* the loader ignores the excess too */
    if (dirs_at + ndirs * 8 > optread)
        return kdh_err_set(err, KDH_ECORRUPT, "PE: %u data directories do not fit the %u-byte "
                           "optional header", ndirs, optsize);
    pe->ndirs = ndirs;
    memset(pe->dirs, 0, sizeof pe->dirs);
    for (uint32_t i = 0; i < ndirs; i++) {
        pe->dirs[i].rva = kdh_get_u32(opt + dirs_at + 8 * i);
        pe->dirs[i].size = kdh_get_u32(opt + dirs_at + 8 * i + 4);
    }
    if (pe->size_of_image == 0 || pe->size_of_image > KDH_PE_MAX_IMAGE)
        return kdh_err_set(err, KDH_ERANGE, "PE: SizeOfImage 0x%x is not in 1..0x%x",
                           pe->size_of_image, KDH_PE_MAX_IMAGE);
    uint32_t sec_at = lfanew + 24 + optsize;
    uint64_t sec_end = (uint64_t)sec_at + 40ull * nsec;
    if (pe->size_of_headers < sec_end || pe->size_of_headers > pe->size_of_image)
        return kdh_err_set(err, KDH_ECORRUPT, "PE: SizeOfHeaders 0x%x does not cover the section "
                           "table (ends at 0x%llx) or exceeds SizeOfImage",
                           pe->size_of_headers, (unsigned long long)sec_end);
    /* zeroed so no path can parse stale stack bytes as a section header */
    uint8_t sh[40 * KDH_PE_MAX_SECTIONS] = {0};
    if (nsec && (rc = kdh_pe_read_rva(pe, sec_at, sh, 40 * nsec, err)))
        return rc;
    for (uint32_t i = 0; i < nsec; i++) {
        const uint8_t *p = sh + 40 * i;
        kdh_pe_section_t *s = &pe->sections[i];
        memcpy(s->name, p, 8);
        s->name[8] = '\0';
        s->vsize = kdh_get_u32(p + 8);
        s->va = kdh_get_u32(p + 12);
        s->raw_size = kdh_get_u32(p + 16);
        s->raw_off = kdh_get_u32(p + 20);
        s->characteristics = kdh_get_u32(p + 36);
        uint32_t span = s->vsize ? s->vsize : s->raw_size;
        if (!kdh_in_bounds(s->va, span, pe->size_of_image))
            return kdh_err_set(err, KDH_ECORRUPT, "PE: section %s (RVA 0x%x, 0x%x bytes) lies "
                               "outside SizeOfImage 0x%x", s->name, s->va, span, pe->size_of_image);
    }
    pe->nsections = nsec;
    return KDH_OK;
}

static void pe_reset(kdh_pe_t *pe)
{
    memset(pe, 0, sizeof *pe);
}

int kdh_pe_open_buffer(kdh_pe_t *pe, const void *buf, size_t len, kdh_err_t *err)
{
    if (!pe || (!buf && len))
        return kdh_err_set(err, KDH_EINVAL, "PE: no image buffer");
    pe_reset(pe);
    pe->layout = KDH_PE_LAYOUT_FILE;
    pe->buf = buf;
    pe->len = len;
    /* Until the headers are parsed, reads are confined to the header window of the file. */
    pe->size_of_image = len < PE_HEADER_WINDOW ? (uint32_t)len : PE_HEADER_WINDOW;
    pe->size_of_headers = pe->size_of_image;
    int rc = parse_headers(pe, err);
    if (rc) {
        pe_reset(pe);
        return rc;
    }
    return KDH_OK;
}

int kdh_pe_open_memory(kdh_pe_t *pe, uint64_t base, kdh_pe_read_fn read, void *ctx,
                       kdh_err_t *err)
{
    if (!pe || !read)
        return kdh_err_set(err, KDH_EINVAL, "PE: no memory read callback");
    pe_reset(pe);
    pe->layout = KDH_PE_LAYOUT_MEMORY;
    pe->read = read;
    pe->read_ctx = ctx;
    pe->base = base;
    pe->size_of_image = PE_HEADER_WINDOW;
    pe->size_of_headers = PE_HEADER_WINDOW;
    int rc = parse_headers(pe, err);
    if (rc) {
        pe_reset(pe);
        return rc;
    }
    return KDH_OK;
}

/* ---- shared helpers (pe_internal.h) ---- */

int pe_blob_load(const kdh_pe_t *pe, pe_blob_t *b, uint32_t rva, uint32_t size, kdh_err_t *err)
{
    memset(b, 0, sizeof *b);
    if (size == 0 || size > PE_BLOB_MAX || !kdh_in_bounds(rva, size, pe->size_of_image))
        return KDH_OK;
    b->data = malloc(size);
    if (!b->data)
        return kdh_err_set(err, KDH_ENOMEM, "PE: out of memory reading a 0x%x-byte directory", size);
    if (kdh_pe_read_rva(pe, rva, b->data, size, NULL) != KDH_OK) {
        free(b->data);
        b->data = NULL;
        return KDH_OK;
    }
    b->rva = rva;
    b->len = size;
    return KDH_OK;
}

void pe_blob_free(pe_blob_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

int pe_blob_read(const kdh_pe_t *pe, const pe_blob_t *b, uint32_t rva, void *buf, uint32_t len,
                 kdh_err_t *err)
{
    if (b->data && rva >= b->rva && kdh_in_bounds(rva - b->rva, len, b->len)) {
        memcpy(buf, b->data + (rva - b->rva), len);
        return KDH_OK;
    }
    return kdh_pe_read_rva(pe, rva, buf, len, err);
}

int pe_blob_string(const kdh_pe_t *pe, const pe_blob_t *b, uint32_t rva, char *out, size_t max,
                   kdh_err_t *err)
{
    if (b->data && rva >= b->rva && rva - b->rva < b->len) {
        const uint8_t *p = b->data + (rva - b->rva);
        size_t avail = b->len - (rva - b->rva);
        const uint8_t *nul = memchr(p, 0, avail < max ? avail : max);
        if (nul) {
            memcpy(out, p, (size_t)(nul - p) + 1);
            return KDH_OK;
        }
    }
    return kdh_pe_read_string(pe, rva, out, max, err);
}

int pe_strpool_add(pe_strpool_t *p, const char *s, uint32_t *off, kdh_err_t *err)
{
    size_t n = strlen(s) + 1;
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4096;
        while (cap < p->len + n)
            cap *= 2;
        char *d = realloc(p->data, cap);
        if (!d)
            return kdh_err_set(err, KDH_ENOMEM, "PE: out of memory storing names");
        p->data = d;
        p->cap = cap;
    }
    memcpy(p->data + p->len, s, n);
    *off = (uint32_t)p->len;
    p->len += n;
    return KDH_OK;
}
