/* fuzz_pe.c: every kdh_pe reader over arbitrary bytes, both as a file image and as an image in
 * target memory served by a callback that also reports short reads at the buffer's end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/pe.h"

typedef struct mem {
    const uint8_t *b;
    size_t n;
    uint64_t base;
} mem_t;

static int mem_read(void *ctx, uint64_t va, void *buf, uint32_t len, uint32_t *got)
{
    const mem_t *m = ctx;
    *got = 0;
    if (va < m->base || va - m->base >= m->n)
        return KDH_OK;
    uint64_t off = va - m->base;
    uint32_t k = m->n - off < len ? (uint32_t)(m->n - off) : len;
    memcpy(buf, m->b + off, k);
    *got = k;
    return KDH_OK;
}

static int count_reloc(void *ctx, uint32_t rva, int type)
{
    (void)rva;
    (void)type;
    (*(unsigned *)ctx)++;
    return 0;
}

static void exercise(const kdh_pe_t *pe)
{
    kdh_err_t err;
    kdh_pe_exports_t ex;
    if (kdh_pe_exports(pe, &ex, &err) == KDH_OK) {
        if (ex.count)
            (void)kdh_pe_export_find(&ex, "ExAllocatePoolWithTag");
        kdh_pe_exports_free(&ex);
    }
    kdh_pe_imports_t im;
    if (kdh_pe_imports(pe, &im, &err) == KDH_OK) {
        (void)kdh_pe_imports_has(&im, NULL, "ExAllocatePoolWithTag");
        kdh_pe_imports_free(&im);
    }
    unsigned n = 0;
    (void)kdh_pe_relocs_foreach(pe, count_reloc, &n, &err);
    kdh_pe_codeview_t cv;
    if (kdh_pe_codeview(pe, &cv, &err) == KDH_OK) {
        char key[1100];
        (void)kdh_pe_pdb_key(cv.pdb_name, cv.guid, cv.age, key, sizeof key);
    }
    kdh_pe_runtime_function_t *rf;
    uint32_t nrf;
    if (kdh_pe_pdata(pe, &rf, &nrf, &err) == KDH_OK) {
        (void)kdh_pe_pdata_find(rf, nrf, 0x1000);
        free(rf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kdh_pe_t pe;
    kdh_err_t err;
    if (kdh_pe_open_buffer(&pe, data, size, &err) == KDH_OK) {
        exercise(&pe);
        /* Map and rebase, as the simulator's loader does, when the image is small. */
        if (pe.size_of_image <= (1u << 22)) {
            uint8_t *img = malloc(pe.size_of_image);
            if (img && kdh_pe_map(&pe, img, pe.size_of_image, &err) == KDH_OK)
                (void)kdh_pe_relocate(&pe, img, pe.size_of_image, 0xFFFFF80000000000ull, &err);
            free(img);
        }
    }
    mem_t m = {data, size, 0xFFFFF80012340000ull};
    if (kdh_pe_open_memory(&pe, m.base, mem_read, &m, &err) == KDH_OK)
        exercise(&pe);
    return 0;
}
