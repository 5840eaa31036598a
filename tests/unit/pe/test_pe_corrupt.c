/* test_pe_corrupt.c: hostile and broken images (hand-made headers, fixtures byte-patched at
 * chosen fields, every truncation) must give an error code, never a crash, a hang or a read
 * outside the buffer or the image. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "test_pe.h"

/* Field offsets of a fixture, found from its headers (the values under test are elsewhere). */
typedef struct layout {
    uint8_t *img;
    size_t len;
    uint32_t lfanew, opt, dirs, sects;
    kdh_pe_t pe;
} layout_t;

static int load(layout_t *l, const char *name)
{
    memset(l, 0, sizeof *l);
    l->img = fx_load(name, &l->len);
    if (!l->img)
        return 0;
    kdh_err_t err;
    assert_int_equal(kdh_pe_open_buffer(&l->pe, l->img, l->len, &err), KDH_OK);
    l->lfanew = kdh_get_u32(l->img + 0x3C);
    l->opt = l->lfanew + 24;
    l->dirs = l->opt + (l->pe.pe32plus ? 112 : 96);
    l->sects = l->opt + kdh_get_u16(l->img + l->lfanew + 20);
    return 1;
}

static uint32_t off_of(layout_t *l, uint32_t rva)
{
    uint32_t off = 0;
    assert_int_equal(kdh_pe_rva_to_offset(&l->pe, rva, 1, &off), KDH_OK);
    return off;
}

static int reopen(layout_t *l, kdh_pe_t *pe)
{
    kdh_err_t err;
    int rc = kdh_pe_open_buffer(pe, l->img, l->len, &err);
    if (rc)
        assert_true(err.msg[0] != '\0');
    return rc;
}

void test_corrupt_tiny(void **state)
{
    (void)state;
    kdh_pe_t pe;
    kdh_err_t err;
    uint8_t b[512] = {'M', 'Z'};
    assert_int_equal(kdh_pe_open_buffer(&pe, NULL, 0, &err), KDH_ECORRUPT);
    assert_int_equal(kdh_pe_open_buffer(&pe, b, 10, &err), KDH_ECORRUPT);
    kdh_put_u32(b + 0x3C, 0x40);
    assert_int_equal(kdh_pe_open_buffer(&pe, b, sizeof b, &err), KDH_ECORRUPT); /* no "PE\0\0" */
    memcpy(b + 0x40, "PE\0\0", 4);
    kdh_put_u16(b + 0x40 + 20, 0xF0); /* optional header runs past the 512 bytes */
    assert_int_equal(kdh_pe_open_buffer(&pe, b, sizeof b, &err), KDH_ECORRUPT);
    memset(b, 0, sizeof b);
    assert_int_equal(kdh_pe_open_buffer(&pe, b, sizeof b, &err), KDH_ECORRUPT); /* no MZ */
}

void test_corrupt_headers(void **state)
{
    (void)state;
    layout_t l;
    kdh_pe_t pe;
    if (!load(&l, "fxdrv_x64.dll"))
        skip();
    uint8_t *orig = malloc(l.len);
    memcpy(orig, l.img, l.len);
#define RESTORE() memcpy(l.img, orig, l.len)
    kdh_put_u16(l.img + l.lfanew + 6, 200); /* NumberOfSections */
    assert_int_equal(reopen(&l, &pe), KDH_ERANGE);
    RESTORE();
    kdh_put_u32(l.img + 0x3C, 0xFFFFFFF0); /* e_lfanew */
    assert_int_equal(reopen(&l, &pe), KDH_ECORRUPT);
    RESTORE();
    kdh_put_u16(l.img + l.opt, 0x30B); /* optional header magic */
    assert_int_equal(reopen(&l, &pe), KDH_ECORRUPT);
    RESTORE();
    kdh_put_u32(l.img + l.opt + 56, 0); /* SizeOfImage */
    assert_int_equal(reopen(&l, &pe), KDH_ERANGE);
    RESTORE();
    kdh_put_u32(l.img + l.opt + 56, 0xFFFFFFFF);
    assert_int_equal(reopen(&l, &pe), KDH_ERANGE);
    RESTORE();
    kdh_put_u16(l.img + l.lfanew + 20, 0xFFFF); /* SizeOfOptionalHeader */
    assert_int_equal(reopen(&l, &pe), KDH_ECORRUPT);
    RESTORE();
    kdh_put_u32(l.img + l.sects + 12, 0x7FFFF000); /* first section's VirtualAddress */
    assert_int_equal(reopen(&l, &pe), KDH_ECORRUPT);
    RESTORE();
    kdh_put_u32(l.img + l.opt + 108, 0xFFFFFFFF); /* NumberOfRvaAndSizes: clamped to 16 */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(pe.ndirs, 16);
    RESTORE();
    kdh_put_u32(l.img + l.sects + 20, 0x7FFFFF00); /* .text raw data offset past the file */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    uint8_t b[4];
    kdh_err_t err;
    assert_int_equal(kdh_pe_read_rva(&pe, pe.sections[0].va, b, 4, &err), KDH_ECORRUPT);
    uint8_t *map = malloc(pe.size_of_image);
    assert_int_equal(kdh_pe_map(&pe, map, pe.size_of_image, &err), KDH_ECORRUPT);
    free(map);
#undef RESTORE
    free(orig);
    free(l.img);
}

void test_corrupt_exports(void **state)
{
    (void)state;
    layout_t l;
    kdh_pe_t pe;
    kdh_err_t err;
    kdh_pe_exports_t ex;
    if (!load(&l, "fxdrv_x64.dll"))
        skip();
    uint8_t *orig = malloc(l.len);
    memcpy(orig, l.img, l.len);
    uint32_t ed = off_of(&l, l.pe.dirs[KDH_PE_DIR_EXPORT].rva);
    struct {
        uint32_t at, value;
        int want;
    } cases[] = {
        {l.dirs + 0, 0x7FFFFFF0, KDH_ECORRUPT},  /* directory RVA outside the image */
        {l.dirs + 4, 0xFFFFFFF0, KDH_ECORRUPT},  /* directory size larger than the image */
        {ed + 20, 0x7FFFFFFF, KDH_ERANGE},       /* NumberOfFunctions */
        {ed + 24, 0x10000000, KDH_ERANGE},       /* NumberOfNames */
        {ed + 28, 0x7FFFFFF0, KDH_ECORRUPT},     /* AddressOfFunctions outside */
        {ed + 32, 0xFFFFFFFC, KDH_ECORRUPT},     /* AddressOfNames outside */
        {ed + 12, 0x00FFFFFF, KDH_ECORRUPT},     /* Name RVA outside */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(l.img, orig, l.len);
        kdh_put_u32(l.img + cases[i].at, cases[i].value);
        assert_int_equal(reopen(&l, &pe), KDH_OK);
        assert_int_equal(kdh_pe_exports(&pe, &ex, &err), cases[i].want);
        assert_int_equal(ex.count, 0);
        assert_null(ex.v);
    }
    /* An ordinal index past NumberOfFunctions. */
    memcpy(l.img, orig, l.len);
    uint32_t ords = off_of(&l, kdh_get_u32(l.img + ed + 36));
    kdh_put_u16(l.img + ords, 0xFFFF);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_exports(&pe, &ex, &err), KDH_ECORRUPT);
    /* A name that runs to the end of its section without a NUL. */
    memcpy(l.img, orig, l.len);
    uint32_t names = off_of(&l, kdh_get_u32(l.img + ed + 32));
    const kdh_pe_section_t *rd = kdh_pe_section_by_name(&l.pe, ".rdata");
    kdh_put_u32(l.img + names, rd->va + rd->raw_size - 40);
    memset(l.img + rd->raw_off + rd->raw_size - 40, 'A', 40);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    int rc = kdh_pe_exports(&pe, &ex, &err);
    assert_true(rc == KDH_ECORRUPT || rc == KDH_ERANGE);
    free(orig);
    free(l.img);
}

void test_corrupt_imports(void **state)
{
    (void)state;
    layout_t l;
    kdh_pe_t pe;
    kdh_err_t err;
    kdh_pe_imports_t im;
    if (!load(&l, "fxdrv_x64.dll"))
        skip();
    uint8_t *orig = malloc(l.len);
    memcpy(orig, l.img, l.len);
    uint32_t id = off_of(&l, l.pe.dirs[KDH_PE_DIR_IMPORT].rva);
    uint32_t ilt = off_of(&l, kdh_get_u32(l.img + id));
    /* An ordinal import, patched in: ordinal 7, no name. */
    kdh_put_u64(l.img + ilt, 0x8000000000000007ull);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_imports(&pe, &im, &err), KDH_OK);
    assert_null(im.dlls[0].fns[0].name);
    assert_int_equal(im.dlls[0].fns[0].ordinal, 7);
    kdh_pe_imports_free(&im);
    /* A lookup table without terminator: runs into the end of the section. */
    memcpy(l.img, orig, l.len);
    const kdh_pe_section_t *rd = kdh_pe_section_by_name(&l.pe, ".rdata");
    for (uint32_t o = ilt; o + 8 <= rd->raw_off + rd->raw_size; o += 8)
        kdh_put_u64(l.img + o, 0x8000000000000001ull);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_imports(&pe, &im, &err), KDH_ECORRUPT);
    assert_int_equal(im.count, 0);
    /* DLL name and hint/name RVAs outside the image. */
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + id + 12, 0x7FFFFFFF);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_imports(&pe, &im, &err), KDH_ECORRUPT);
    memcpy(l.img, orig, l.len);
    kdh_put_u64(l.img + ilt, 0x7FFFFFF0);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_imports(&pe, &im, &err), KDH_ECORRUPT);
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + l.dirs + 8, 0xFFFFFFF0); /* directory RVA */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_imports(&pe, &im, &err), KDH_ECORRUPT);
    free(orig);
    free(l.img);
}

static int count_cb(void *ctx, uint32_t rva, int type)
{
    (void)rva;
    (void)type;
    (*(unsigned *)ctx)++;
    return 0;
}

void test_corrupt_relocs(void **state)
{
    (void)state;
    layout_t l;
    kdh_pe_t pe;
    kdh_err_t err;
    unsigned n = 0;
    if (!load(&l, "fxdrv_x86.dll"))
        skip();
    uint8_t *orig = malloc(l.len);
    memcpy(orig, l.img, l.len);
    uint32_t rd = off_of(&l, l.pe.dirs[KDH_PE_DIR_BASERELOC].rva);
    kdh_put_u32(l.img + rd + 4, 0); /* block size 0 would never advance */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_relocs_foreach(&pe, count_cb, &n, &err), KDH_ECORRUPT);
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + rd + 4, 0x10000); /* block larger than the directory */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_relocs_foreach(&pe, count_cb, &n, &err), KDH_ECORRUPT);
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + rd, 0x7FFFF000); /* page RVA outside the image */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_relocs_foreach(&pe, count_cb, &n, &err), KDH_ECORRUPT);
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + l.dirs + 5 * 8 + 4, 0xFFFFFFF0); /* directory size */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_relocs_foreach(&pe, count_cb, &n, &err), KDH_ECORRUPT);
    /* An unknown type fails the relocation, not the walk. */
    memcpy(l.img, orig, l.len);
    kdh_put_u16(l.img + rd + 8, 0x5000);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    uint8_t *map = malloc(pe.size_of_image);
    assert_int_equal(kdh_pe_map(&pe, map, pe.size_of_image, &err), KDH_OK);
    assert_int_equal(kdh_pe_relocate(&pe, map, pe.size_of_image, 0x80000000, &err),
                     KDH_EUNSUPPORTED);
    free(map);
    free(orig);
    free(l.img);
}

void test_corrupt_debug(void **state)
{
    (void)state;
    layout_t l;
    kdh_pe_t pe;
    kdh_err_t err;
    kdh_pe_codeview_t cv;
    if (!load(&l, "fxkrnl_x64.dll"))
        skip();
    uint8_t *orig = malloc(l.len);
    memcpy(orig, l.img, l.len);
    uint32_t dd = off_of(&l, l.pe.dirs[KDH_PE_DIR_DEBUG].rva);
    kdh_put_u32(l.img + l.dirs + 6 * 8 + 4, 28 * 100);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_codeview(&pe, &cv, &err), KDH_ERANGE);
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + dd + 16, 10); /* SizeOfData too small for RSDS */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_codeview(&pe, &cv, &err), KDH_ECORRUPT);
    memcpy(l.img, orig, l.len);
    uint32_t data = off_of(&l, kdh_get_u32(l.img + dd + 20));
    memcpy(l.img + data, "NB10", 4);
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_codeview(&pe, &cv, &err), KDH_EUNSUPPORTED);
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + dd + 16, 24 + 4); /* path cut before its NUL */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_codeview(&pe, &cv, &err), KDH_ECORRUPT);
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + dd + 20, 0x7FFFFFF0); /* data RVA outside */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_codeview(&pe, &cv, &err), KDH_ECORRUPT);
    memcpy(l.img, orig, l.len);
    kdh_put_u32(l.img + l.dirs + 6 * 8, 0); /* no debug directory at all */
    assert_int_equal(reopen(&l, &pe), KDH_OK);
    assert_int_equal(kdh_pe_codeview(&pe, &cv, &err), KDH_ENOTFOUND);
    free(orig);
    free(l.img);
}

/* Every parser over every prefix of the file, each in an exact-size heap copy so a sanitizer
 * build catches any read past the end. */
static void run_all(const uint8_t *b, size_t n)
{
    kdh_pe_t pe;
    kdh_err_t err;
    if (kdh_pe_open_buffer(&pe, b, n, &err) != KDH_OK)
        return;
    kdh_pe_exports_t ex;
    if (kdh_pe_exports(&pe, &ex, &err) == KDH_OK)
        kdh_pe_exports_free(&ex);
    kdh_pe_imports_t im;
    if (kdh_pe_imports(&pe, &im, &err) == KDH_OK)
        kdh_pe_imports_free(&im);
    unsigned cnt = 0;
    (void)kdh_pe_relocs_foreach(&pe, count_cb, &cnt, &err);
    kdh_pe_codeview_t cv;
    (void)kdh_pe_codeview(&pe, &cv, &err);
    kdh_pe_runtime_function_t *rf;
    uint32_t nrf;
    if (kdh_pe_pdata(&pe, &rf, &nrf, &err) == KDH_OK)
        free(rf);
}

void test_corrupt_truncations(void **state)
{
    (void)state;
    layout_t l;
    if (!load(&l, "fxdrv_x64.dll"))
        skip();
    for (size_t n = 0; n <= l.len; n += (n < 0x500 ? 1 : 7)) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, l.img, n);
        run_all(copy, n);
        free(copy);
    }
    /* Headers only: opens, but no directory can be read. */
    kdh_pe_t pe;
    kdh_err_t err;
    kdh_pe_exports_t ex;
    assert_int_equal(kdh_pe_open_buffer(&pe, l.img, l.pe.size_of_headers, &err), KDH_OK);
    assert_int_equal(kdh_pe_exports(&pe, &ex, &err), KDH_ECORRUPT);
    assert_non_null(strstr(err.msg, "past the end of the file"));
    free(l.img);
}

void test_corrupt_memory(void **state)
{
    (void)state;
    layout_t l;
    if (!load(&l, "fxdrv_x64.dll"))
        skip();
    kdh_err_t err;
    uint8_t *map = malloc(l.pe.size_of_image);
    assert_int_equal(kdh_pe_map(&l.pe, map, l.pe.size_of_image, &err), KDH_OK);
    kdh_pe_t pe;
    fake_mem_t m = {map, l.pe.size_of_image, 0xFFFFF80000400000ull, 0, 0, 0, 0};
    /* The caller's "not cached" reaches the caller unchanged, so it can fetch and retry. */
    m.fail_with = KDH_ENOTCACHED;
    assert_int_equal(kdh_pe_open_memory(&pe, m.base, fake_read, &m, &err), KDH_ENOTCACHED);
    m.fail_with = 0;
    /* Only the headers mapped: a short read is reported as unreadable target memory. */
    m.len = l.pe.size_of_headers;
    assert_int_equal(kdh_pe_open_memory(&pe, m.base, fake_read, &m, &err), KDH_OK);
    kdh_pe_exports_t ex;
    assert_int_equal(kdh_pe_exports(&pe, &ex, &err), KDH_ETARGET);
    m.len = l.pe.size_of_image;
    assert_true(m.outside > 0);
    m.outside = 0;
    /* A hostile header in memory. */
    kdh_put_u16(map + l.lfanew + 6, 0xFFFF);
    assert_int_equal(kdh_pe_open_memory(&pe, m.base, fake_read, &m, &err), KDH_ERANGE);
    kdh_put_u16(map + l.lfanew + 6, l.pe.nsections);
    /* Directories that point outside the image are refused before any read. */
    kdh_put_u32(map + l.dirs, 0x7FFFFFF0);
    m.reads = 0;
    assert_int_equal(kdh_pe_open_memory(&pe, m.base, fake_read, &m, &err), KDH_OK);
    unsigned after_open = m.reads;
    assert_int_equal(kdh_pe_exports(&pe, &ex, &err), KDH_ECORRUPT);
    assert_int_equal(m.reads, after_open);
    assert_int_equal(m.outside, 0);
    free(map);
    free(l.img);
}
