/* pe_reloc.c: base relocations (walked block by block) and the loader's two steps built on
 * them: laying a file image out at its RVAs, and rebasing the mapped copy. The simulator's
 * loader uses these to place fixture drivers at kernel-style addresses. */
#include "pe_internal.h"

#include <stdlib.h>
#include <string.h>

int kdh_pe_relocs_foreach(const kdh_pe_t *pe, kdh_pe_reloc_cb cb, void *ctx, kdh_err_t *err)
{
    kdh_pe_dir_t d = pe->dirs[KDH_PE_DIR_BASERELOC];
    if (d.rva == 0 || d.size == 0)
        return KDH_OK;
    if (d.size > KDH_PE_MAX_RELOC_BYTES || !kdh_in_bounds(d.rva, d.size, pe->size_of_image))
        return kdh_err_set(err, KDH_ECORRUPT, "PE: relocation directory (RVA 0x%x, 0x%x bytes) "
                           "lies outside the image or is too large", d.rva, d.size);
    uint8_t *buf = malloc(d.size);
    if (!buf)
        return kdh_err_set(err, KDH_ENOMEM, "PE: out of memory for 0x%x bytes of relocations",
                           d.size);
    int rc = kdh_pe_read_rva(pe, d.rva, buf, d.size, err);
    /* Every block advances by at least 8 bytes, so the walk ends within d.size / 8 steps. */
    for (uint32_t at = 0; rc == KDH_OK && d.size - at >= 8;) {
        uint32_t page = kdh_get_u32(buf + at), bsize = kdh_get_u32(buf + at + 4);
        if (bsize < 8 || (bsize & 1) || bsize > d.size - at) {
            rc = kdh_err_set(err, KDH_ECORRUPT, "PE: relocation block at +0x%x has size %u "
                             "(directory holds 0x%x bytes)", at, bsize, d.size);
            break;
        }
        for (uint32_t e = 8; e + 2 <= bsize; e += 2) {
            uint16_t v = kdh_get_u16(buf + at + e);
            int type = v >> 12;
            if (type == KDH_PE_REL_ABSOLUTE)
                continue;
            uint64_t rva = (uint64_t)page + (v & 0xFFF);
            if (rva >= pe->size_of_image) {
                rc = kdh_err_set(err, KDH_ECORRUPT, "PE: relocation at RVA 0x%llx lies outside "
                                 "the image", (unsigned long long)rva);
                break;
            }
            if ((rc = cb(ctx, (uint32_t)rva, type)) != 0)
                break;
        }
        at += bsize;
    }
    free(buf);
    return rc;
}

int kdh_pe_map(const kdh_pe_t *pe, uint8_t *dst, size_t dst_len, kdh_err_t *err)
{
    if (pe->layout != KDH_PE_LAYOUT_FILE)
        return kdh_err_set(err, KDH_EINVAL, "PE: only a file image can be mapped");
    if (dst_len < pe->size_of_image)
        return kdh_err_set(err, KDH_ERANGE, "PE: 0x%zx bytes cannot hold the 0x%x-byte image",
                           dst_len, pe->size_of_image);
    memset(dst, 0, pe->size_of_image);
    uint32_t hdr = pe->size_of_headers < pe->len ? pe->size_of_headers : (uint32_t)pe->len;
    memcpy(dst, pe->buf, hdr);
    for (uint32_t i = 0; i < pe->nsections; i++) {
        const kdh_pe_section_t *s = &pe->sections[i];
        uint32_t n = s->raw_size;
        if (s->vsize && n > s->vsize)
            n = s->vsize; /* raw data is padded to FileAlignment */
        if (n > pe->size_of_image - s->va)
            n = pe->size_of_image - s->va;
        if (n == 0)
            continue;
        if (!kdh_in_bounds(s->raw_off, n, pe->len))
            return kdh_err_set(err, KDH_ECORRUPT, "PE: section %s raw data (0x%x+0x%x) lies past "
                               "the end of the file", s->name, s->raw_off, n);
        memcpy(dst + s->va, pe->buf + s->raw_off, n);
    }
    return KDH_OK;
}

typedef struct reloc_ctx {
    uint8_t *img;
    size_t len;
    uint64_t delta;
    kdh_err_t *err;
} reloc_ctx_t;

static int apply_one(void *vctx, uint32_t rva, int type)
{
    reloc_ctx_t *c = vctx;
    if (type == KDH_PE_REL_DIR64) {
        if (!kdh_in_bounds(rva, 8, c->len))
            return kdh_err_set(c->err, KDH_ECORRUPT, "PE: DIR64 relocation at 0x%x overruns the "
                               "image", rva);
        kdh_put_u64(c->img + rva, kdh_get_u64(c->img + rva) + c->delta);
    } else if (type == KDH_PE_REL_HIGHLOW) {
        if (!kdh_in_bounds(rva, 4, c->len))
            return kdh_err_set(c->err, KDH_ECORRUPT, "PE: HIGHLOW relocation at 0x%x overruns "
                               "the image", rva);
        kdh_put_u32(c->img + rva, kdh_get_u32(c->img + rva) + (uint32_t)c->delta);
    } else {
        return kdh_err_set(c->err, KDH_EUNSUPPORTED, "PE: relocation type %d at RVA 0x%x is not "
                           "supported", type, rva);
    }
    return KDH_OK;
}

int kdh_pe_relocate(const kdh_pe_t *pe, uint8_t *img, size_t img_len, uint64_t new_base,
                    kdh_err_t *err)
{
    if (img_len < pe->size_of_image)
        return kdh_err_set(err, KDH_ERANGE, "PE: mapped image is smaller than SizeOfImage");
    reloc_ctx_t c = {img, pe->size_of_image, new_base - pe->image_base, err};
    int rc = c.delta ? kdh_pe_relocs_foreach(pe, apply_one, &c, err) : KDH_OK;
    if (rc)
        return rc;
    /* Keep the mapped header truthful, as the Windows loader does. The offset comes from the
     * parsed headers: a relocation may have rewritten e_lfanew in the copy. */
    uint64_t at = (uint64_t)pe->nt_offset + 24 + (pe->pe32plus ? 24 : 28);
    if (pe->pe32plus && kdh_in_bounds(at, 8, pe->size_of_headers))
        kdh_put_u64(img + at, new_base);
    else if (!pe->pe32plus && kdh_in_bounds(at, 4, pe->size_of_headers))
        kdh_put_u32(img + at, (uint32_t)new_base);
    return KDH_OK;
}
