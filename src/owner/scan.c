/* scan.c: the tag search over one PE image (file or target memory) and the ranking of hits:
 * section by section through kdh_pe_read_rva, each hit classified as immediate operand, other
 * code or data; plus, for 'None', the images importing nt's untagged allocators. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/owner.h"

#define SCN_CNT_CODE 0x00000020u
#define SCN_MEM_EXECUTE 0x20000000u
#define TAG_NONE 0x656E6F4Eu /* 'None': nt's tag for ExAllocatePool without a tag */

/* The untagged forms; nt passes 'None' for them (ExAllocatePoolWithQuota likewise). */
static const char *const k_untagged[] = {"ExAllocatePool", "ExAllocatePoolWithQuota"};

void kdh_owner_result_init(kdh_owner_result_t *res)
{
    memset(res, 0, sizeof *res);
}

void kdh_owner_result_free(kdh_owner_result_t *res)
{
    if (!res)
        return;
    free(res->hits);
    memset(res, 0, sizeof *res);
}

const char *kdh_owner_kind_name(kdh_owner_kind_t kind)
{
    switch (kind) {
    case KDH_OWNER_IMM: return "immediate";
    case KDH_OWNER_CODE: return "code";
    case KDH_OWNER_DATA: return "data";
    case KDH_OWNER_IMPORT: return "import";
    }
    return "?";
}

static kdh_owner_hit_t *add_hit(kdh_owner_result_t *res, const char *module, kdh_err_t *err)
{
    if (res->count >= KDH_OWNER_MAX_HITS) {
        res->dropped++;
        return NULL;
    }
    if (res->count == res->cap) {
        size_t cap = res->cap ? res->cap * 2 : 16;
        kdh_owner_hit_t *v = realloc(res->hits, cap * sizeof *v);
        if (!v) {
            kdh_err_set(err, KDH_ENOMEM, "out of memory for %zu tag hits", cap);
            return NULL;
        }
        res->hits = v;
        res->cap = cap;
    }
    kdh_owner_hit_t *h = &res->hits[res->count++];
    memset(h, 0, sizeof *h);
    snprintf(h->module, sizeof h->module, "%s", module ? module : "?");
    return h;
}

int kdh_owner_untagged_imports(const kdh_pe_t *pe, const char *module, kdh_owner_result_t *res, kdh_err_t *err)
{
    kdh_pe_imports_t im;
    int rc = kdh_pe_imports(pe, &im, err);
    if (rc != KDH_OK)
        return rc;
    for (uint32_t d = 0; d < im.count && rc == KDH_OK; d++) {
        const kdh_pe_import_dll_t *dll = &im.dlls[d];
        for (uint32_t f = 0; f < dll->count && rc == KDH_OK; f++) {
            const kdh_pe_import_fn_t *fn = &dll->fns[f];
            for (size_t k = 0; fn->name && k < KDH_ARRAY_LEN(k_untagged); k++) {
                if (strcmp(fn->name, k_untagged[k]) != 0)
                    continue;
                kdh_owner_hit_t *h = add_hit(res, module, err);
                if (!h) {
                    if (res->count < KDH_OWNER_MAX_HITS)
                        rc = KDH_ENOMEM;
                    break;
                }
                h->kind = KDH_OWNER_IMPORT;
                h->rva = fn->iat_rva;
                const kdh_pe_section_t *s = kdh_pe_section_by_rva(pe, fn->iat_rva);
                snprintf(h->section, sizeof h->section, "%s", s ? s->name : "");
                snprintf(h->form, sizeof h->form, "%.24s!%.20s", dll->dll ? dll->dll : "?", fn->name);
            }
        }
    }
    kdh_pe_imports_free(&im);
    return rc;
}

static int scan_section(const kdh_pe_t *pe, const kdh_pe_section_t *sec, const char *module, uint32_t tag,
                        kdh_owner_result_t *res, kdh_err_t *err)
{
    uint32_t size = sec->vsize ? sec->vsize : sec->raw_size;
    if (pe->layout == KDH_PE_LAYOUT_FILE && sec->raw_size < size)
        size = sec->raw_size; /* the rest is zero-filled bss: it cannot hold a tag */
    if (size > KDH_OWNER_MAX_SECTION)
        size = KDH_OWNER_MAX_SECTION;
    if (size < 4)
        return KDH_OK;
    uint8_t *buf = malloc(size);
    if (!buf)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for section %s of %s (%u bytes)", sec->name, module, size);
    kdh_err_t e;
    kdh_err_clear(&e);
    int rc = kdh_pe_read_rva(pe, sec->va, buf, size, &e);
    if (rc != KDH_OK) {
        free(buf);
        if (rc == KDH_ENOTCACHED || rc == KDH_ENOMEM) {
            *err = e;
            return rc;
        }
        res->unreadable++; /* e.g. a discarded INIT section of a loaded driver */
        return KDH_OK;
    }
    int code = (sec->characteristics & (SCN_CNT_CODE | SCN_MEM_EXECUTE)) != 0;
    int x64 = pe->machine == KDH_PE_MACHINE_AMD64;
    uint8_t needle[4];
    kdh_put_u32(needle, tag);
    for (uint32_t i = 0; i + 4 <= size; i++) {
        const uint8_t *p = memchr(buf + i, needle[0], size - 3 - i);
        if (!p)
            break;
        i = (uint32_t)(p - buf);
        if (memcmp(p, needle, 4) != 0)
            continue;
        kdh_owner_hit_t *h = add_hit(res, module, err);
        if (!h) {
            if (res->count >= KDH_OWNER_MAX_HITS)
                continue;
            free(buf);
            return KDH_ENOMEM;
        }
        snprintf(h->section, sizeof h->section, "%s", sec->name);
        h->rva = sec->va + i;
        size_t insn = 0;
        if (!code)
            h->kind = KDH_OWNER_DATA;
        else if (kdh_owner_imm_form(buf, size, i, x64, &insn, h->form, sizeof h->form)) {
            h->kind = KDH_OWNER_IMM;
            h->insn_rva = sec->va + (uint32_t)insn;
        } else
            h->kind = KDH_OWNER_CODE;
    }
    free(buf);
    return KDH_OK;
}

int kdh_owner_scan_image(const kdh_pe_t *pe, const char *module, uint32_t tag, kdh_owner_result_t *res,
                         kdh_err_t *err)
{
    size_t before = res->count, dropped = res->dropped, unreadable = res->unreadable;
    int rc = KDH_OK;
    for (uint32_t i = 0; i < pe->nsections && rc == KDH_OK; i++)
        rc = scan_section(pe, &pe->sections[i], module, tag, res, err);
    if (rc == KDH_OK && tag == TAG_NONE) {
        kdh_err_t e;
        kdh_err_clear(&e);
        rc = kdh_owner_untagged_imports(pe, module, res, &e);
        if (rc == KDH_ENOTCACHED || rc == KDH_ENOMEM)
            *err = e;
        else
            rc = KDH_OK; /* a damaged import table: the byte search still stands */
    }
    if (rc != KDH_OK) {
        /* undo this image's hits, so the caller's re-run after a fetch does not count them twice */
        res->count = before;
        res->dropped = dropped;
        res->unreadable = unreadable;
    }
    return rc;
}

/* An import of an untagged allocator outranks an immediate: for 'None' the immediate is nt's own
 * allocator passing the tag, while the importers are the drivers that asked for untagged pool. */
static int kind_rank(kdh_owner_kind_t k)
{
    return k == KDH_OWNER_IMPORT ? 0 : k == KDH_OWNER_IMM ? 1 : k == KDH_OWNER_CODE ? 2 : 3;
}

static int cmp_hit(const void *a, const void *b)
{
    const kdh_owner_hit_t *x = a, *y = b;
    int c = kind_rank(x->kind) - kind_rank(y->kind);
    if (c)
        return c;
    c = strcmp(x->module, y->module);
    if (c)
        return c;
    return (x->rva > y->rva) - (x->rva < y->rva);
}

void kdh_owner_sort(kdh_owner_result_t *res)
{
    if (res->count > 1)
        qsort(res->hits, res->count, sizeof *res->hits, cmp_hit);
}

size_t kdh_owner_modules(const kdh_owner_result_t *res, const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < res->count && n < max; i++) {
        size_t j = 0;
        while (j < n && strcmp(names[j], res->hits[i].module) != 0)
            j++;
        if (j == n)
            names[n++] = res->hits[i].module;
    }
    return n;
}
