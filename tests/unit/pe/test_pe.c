/* test_pe.c: kdh_pe against llvm-readobj-14 on clang/lld-built fixtures (x64 and x86), for the
 * file layout and for the same image mapped in (fake) target memory; store keys against
 * hand-computed strings; mapping and relocation against the relocated values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_pe.h"

#ifndef KDH_PE_FIXTURE_DIR
#define KDH_PE_FIXTURE_DIR ""
#endif

uint8_t *fx_load(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", KDH_PE_FIXTURE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *b = malloc(1 << 20);
    *len = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

int fake_read(void *ctx, uint64_t va, void *buf, uint32_t len, uint32_t *got)
{
    fake_mem_t *m = ctx;
    m->reads++;
    *got = 0;
    if (m->fail_with)
        return m->fail_with;
    if (va < m->base || va - m->base > m->len) {
        m->outside++;
        return KDH_OK;
    }
    uint64_t off = va - m->base;
    uint32_t n = m->len - off < len ? (uint32_t)(m->len - off) : len;
    if (n < len)
        m->outside++;
    memcpy(buf, m->img + off, n);
    m->bytes += n;
    *got = n;
    return KDH_OK;
}

static char *read_text(const char *name)
{
    size_t n = 0;
    char *t = (char *)fx_load(name, &n);
    if (!t)
        return NULL;
    t[n] = '\0';
    return t;
}

typedef struct reloc_list {
    uint32_t v[256][2];
    uint32_t n;
} reloc_list_t;

static int collect_reloc(void *c, uint32_t rva, int type)
{
    reloc_list_t *rv = c;
    if (rv->n >= 256)
        return KDH_ERANGE;
    rv->v[rv->n][0] = rva;
    rv->v[rv->n][1] = (uint32_t)type;
    rv->n++;
    return 0;
}

/* Prints what kdh_pe sees in the canonical form canon_readobj.py makes of llvm-readobj. */
static void dump(const kdh_pe_t *pe, const char *file, char *out, size_t cap)
{
    size_t n = 0;
#define P(...) (n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__))
    kdh_err_t err;
    P("machine 0x%x\ntimestamp 0x%08x\nsize_of_image 0x%x\nimage_base 0x%llx\n", pe->machine,
      pe->timestamp, pe->size_of_image, (unsigned long long)pe->image_base);
    for (uint32_t i = 0; i < pe->ndirs; i++)
        if (pe->dirs[i].rva || pe->dirs[i].size)
            P("dir %u 0x%x 0x%x\n", i, pe->dirs[i].rva, pe->dirs[i].size);
    for (uint32_t i = 0; i < pe->nsections; i++) {
        const kdh_pe_section_t *s = &pe->sections[i];
        P("section %s va=0x%x vsize=0x%x raw_off=0x%x raw_size=0x%x chr=0x%x\n", s->name, s->va,
          s->vsize, s->raw_off, s->raw_size, s->characteristics);
    }
    if (pe->machine == KDH_PE_MACHINE_AMD64) {
        kdh_pe_runtime_function_t *rf;
        uint32_t nrf;
        assert_int_equal(kdh_pe_pdata(pe, &rf, &nrf, &err), KDH_OK);
        for (uint32_t i = 0; i < nrf; i++)
            P("pdata 0x%x 0x%x 0x%x\n", rf[i].begin, rf[i].end, rf[i].unwind);
        free(rf);
    }
    kdh_pe_imports_t im;
    assert_int_equal(kdh_pe_imports(pe, &im, &err), KDH_OK);
    for (uint32_t i = 0; i < im.count; i++) {
        P("import dll=%s\n", im.dlls[i].dll);
        for (uint32_t j = 0; j < im.dlls[i].count; j++) {
            const kdh_pe_import_fn_t *f = &im.dlls[i].fns[j];
            if (f->name)
                P("import_fn name=%s hint=%u iat=0x%x\n", f->name, f->hint, f->iat_rva);
            else
                P("import_fn ordinal=%u iat=0x%x\n", f->ordinal, f->iat_rva);
        }
    }
    kdh_pe_imports_free(&im);
    kdh_pe_exports_t ex;
    assert_int_equal(kdh_pe_exports(pe, &ex, &err), KDH_OK);
    for (uint32_t i = 0; i < ex.count; i++)
        P("export ord=%u name=%s rva=0x%x\n", ex.v[i].ordinal, ex.v[i].name ? ex.v[i].name : "",
          ex.v[i].rva);
    kdh_pe_exports_free(&ex);
    /* Relocations through the callback. */
    reloc_list_t rv = {{{0}}, 0};
    assert_int_equal(kdh_pe_relocs_foreach(pe, collect_reloc, &rv, &err), KDH_OK);
    for (uint32_t i = 0; i < rv.n; i++)
        P("reloc 0x%x %u\n", rv.v[i][0], rv.v[i][1]);
    kdh_pe_debug_entry_t de[8];
    uint32_t nde = 0;
    assert_int_equal(kdh_pe_debug_entries(pe, de, 8, &nde, &err), KDH_OK);
    for (uint32_t i = 0; i < nde; i++) {
        P("debug type=%u size=0x%x rva=0x%x off=0x%x\n", de[i].type, de[i].size, de[i].rva,
          de[i].file_off);
        if (de[i].type == KDH_PE_DEBUG_CODEVIEW) {
            kdh_pe_codeview_t cv;
            assert_int_equal(kdh_pe_codeview(pe, &cv, &err), KDH_OK);
            P("codeview guid=");
            for (int k = 0; k < 16; k++)
                P("%02X", cv.guid[k]);
            char key[600];
            assert_int_equal(kdh_pe_pdb_key(cv.pdb_name, cv.guid, cv.age, key, sizeof key), KDH_OK);
            P(" age=%u name=%s\npdb_key %s\n", cv.age, cv.path, key);
        }
    }
    char key[600];
    assert_int_equal(kdh_pe_image_key(file, pe->timestamp, pe->size_of_image, key, sizeof key),
                     KDH_OK);
    P("image_key %s\n", key);
#undef P
    assert_true(n < cap);
}

/* Line-by-line comparison so a failure names the first differing line. */
static void compare(const char *what, const char *want, const char *got)
{
    if (strcmp(want, got) == 0)
        return;
    const char *a = want, *b = got;
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        if (la != lb || memcmp(a, b, la) != 0) {
            print_error("%s: llvm-readobj says\n  %.*s\nkdh_pe says\n  %.*s\n", what, (int)la, a,
                        (int)lb, b);
            break;
        }
        a += la + (ea ? 1 : 0);
        b += lb + (eb ? 1 : 0);
    }
    print_error("--- expected ---\n%s--- got ---\n%s", want, got);
    fail();
}

static void check_image(const char *stem)
{
    char dll[128], exp[128];
    snprintf(dll, sizeof dll, "%s.dll", stem);
    snprintf(exp, sizeof exp, "%s.expect", stem);
    size_t len = 0;
    uint8_t *img = fx_load(dll, &len);
    char *want = read_text(exp);
    if (!img || !want)
        skip();
    /* The expected text names the file by its base name; the CodeView path differs per build
     * folder only in fxdrv (full path), which both sides print verbatim. */
    kdh_pe_t pe;
    kdh_err_t err;
    assert_int_equal(kdh_pe_open_buffer(&pe, img, len, &err), KDH_OK);
    static char got[65536];
    dump(&pe, dll, got, sizeof got);
    compare(dll, want, got);

    /* The same image laid out by RVA and read through the callback must look identical. */
    uint8_t *mapped = malloc(pe.size_of_image);
    assert_int_equal(kdh_pe_map(&pe, mapped, pe.size_of_image, &err), KDH_OK);
    fake_mem_t m = {mapped, pe.size_of_image, 0xFFFFF80012340000ull, 0, 0, 0, 0};
    kdh_pe_t pm;
    assert_int_equal(kdh_pe_open_memory(&pm, m.base, fake_read, &m, &err), KDH_OK);
    unsigned header_reads = m.reads;
    assert_true(header_reads <= 4);
    static char got2[65536];
    dump(&pm, dll, got2, sizeof got2);
    compare("memory layout", want, got2);
    assert_int_equal(m.outside, 0);
    free(mapped);
    free(img);
    free(want);
}

static void test_x64_drv(void **state)
{
    (void)state;
    check_image("fxdrv_x64");
}
static void test_x64_krnl(void **state)
{
    (void)state;
    check_image("fxkrnl_x64");
}
static void test_x86_drv(void **state)
{
    (void)state;
    check_image("fxdrv_x86");
}
static void test_x86_krnl(void **state)
{
    (void)state;
    check_image("fxkrnl_x86");
}

/* Facts known from the link line and the sources, not from any tool. */
static void test_known_facts(void **state)
{
    (void)state;
    const char *arch[2] = {"x64", "x86"};
    for (int a = 0; a < 2; a++) {
        char name[64], fwd[64];
        snprintf(name, sizeof name, "fxdrv_%s.dll", arch[a]);
        size_t len;
        uint8_t *img = fx_load(name, &len);
        if (!img)
            skip();
        kdh_pe_t pe;
        kdh_err_t err;
        assert_int_equal(kdh_pe_open_buffer(&pe, img, len, &err), KDH_OK);
        assert_int_equal(pe.machine, a ? KDH_PE_MACHINE_I386 : KDH_PE_MACHINE_AMD64);
        assert_int_equal(pe.pe32plus, a ? 0 : 1);
        kdh_pe_exports_t ex;
        assert_int_equal(kdh_pe_exports(&pe, &ex, &err), KDH_OK);
        assert_string_equal(ex.dll_name, name);
        const kdh_pe_export_t *two = kdh_pe_export_find(&ex, "ExportedTwo");
        const kdh_pe_export_t *f = kdh_pe_export_find(&ex, "FwdFn");
        assert_non_null(two);
        assert_non_null(f);
        snprintf(fwd, sizeof fwd, "fxkrnl_%s.ExAllocatePoolWithTag", arch[a]);
        assert_string_equal(f->forwarder, fwd);
        assert_null(two->forwarder);
        /* Ord5 is the NONAME alias of ExportedTwo. */
        int found = 0;
        for (uint32_t i = 0; i < ex.count; i++)
            if (ex.v[i].ordinal == 5) {
                found = 1;
                assert_null(ex.v[i].name);
                assert_int_equal(ex.v[i].rva, two->rva);
            }
        assert_true(found);
        kdh_pe_exports_free(&ex);
        kdh_pe_imports_t im;
        assert_int_equal(kdh_pe_imports(&pe, &im, &err), KDH_OK);
        snprintf(fwd, sizeof fwd, "FXKRNL_%s.DLL", arch[a]);
        assert_true(kdh_pe_imports_has(&im, fwd, "ExAllocatePoolWithTag"));
        assert_true(kdh_pe_imports_has(&im, NULL, "KeTickCount"));
        assert_false(kdh_pe_imports_has(&im, NULL, "ExFreePool"));
        kdh_pe_imports_free(&im);
        kdh_pe_codeview_t cv;
        assert_int_equal(kdh_pe_codeview(&pe, &cv, &err), KDH_OK);
        snprintf(fwd, sizeof fwd, "fxdrv_%s.pdb", arch[a]);
        assert_string_equal(cv.pdb_name, fwd);
        assert_true(strlen(cv.path) > strlen(fwd)); /* a full path: /pdb: had one */
        assert_non_null(kdh_pe_section_by_name(&pe, ".text"));
        const kdh_pe_section_t *t = kdh_pe_section_by_name(&pe, ".text");
        uint32_t off = 0;
        assert_int_equal(kdh_pe_rva_to_offset(&pe, t->va + 4, 4, &off), KDH_OK);
        assert_int_equal(off, t->raw_off + 4);
        assert_ptr_equal(kdh_pe_section_by_rva(&pe, t->va + 1), t);
        free(img);
    }
}

/* x64 .pdata: every RUNTIME_FUNCTION is found by an RVA inside it and not outside. */
static void test_pdata_find(void **state)
{
    (void)state;
    size_t len;
    uint8_t *img = fx_load("fxdrv_x64.dll", &len);
    if (!img)
        skip();
    kdh_pe_t pe;
    kdh_err_t err;
    assert_int_equal(kdh_pe_open_buffer(&pe, img, len, &err), KDH_OK);
    kdh_pe_runtime_function_t *v;
    uint32_t n;
    assert_int_equal(kdh_pe_pdata(&pe, &v, &n, &err), KDH_OK);
    assert_true(n >= 2); /* helper (300-byte frame) and ExportedOne call; both need unwind data */
    for (uint32_t i = 0; i < n; i++) {
        assert_ptr_equal(kdh_pe_pdata_find(v, n, v[i].begin), &v[i]);
        assert_ptr_equal(kdh_pe_pdata_find(v, n, v[i].end - 1), &v[i]);
    }
    assert_null(kdh_pe_pdata_find(v, n, 0));
    assert_null(kdh_pe_pdata_find(v, n, v[n - 1].end));
    free(v);
    free(img);
}

/* Map + relocate to a kernel address: each relocated slot moves by exactly the delta, and the
 * pointer to PoolHitTag (ptrs[0]) lands inside .data at the new base. */
static void test_relocate(void **state)
{
    (void)state;
    const char *names[2] = {"fxdrv_x64.dll", "fxdrv_x86.dll"};
    for (int a = 0; a < 2; a++) {
        size_t len;
        uint8_t *img = fx_load(names[a], &len);
        if (!img)
            skip();
        kdh_pe_t pe;
        kdh_err_t err;
        assert_int_equal(kdh_pe_open_buffer(&pe, img, len, &err), KDH_OK);
        uint8_t *m1 = malloc(pe.size_of_image), *m2 = malloc(pe.size_of_image);
        assert_int_equal(kdh_pe_map(&pe, m1, pe.size_of_image, &err), KDH_OK);
        memcpy(m2, m1, pe.size_of_image);
        uint64_t nb = a ? 0x80a00000ull : 0xFFFFF80012340000ull;
        assert_int_equal(kdh_pe_relocate(&pe, m2, pe.size_of_image, nb, &err), KDH_OK);
        const kdh_pe_section_t *data = kdh_pe_section_by_name(&pe, ".data");
        assert_non_null(data);
        reloc_list_t rv = {{{0}}, 0};
        assert_int_equal(kdh_pe_relocs_foreach(&pe, collect_reloc, &rv, &err), KDH_OK);
        assert_true(rv.n > 0);
        uint8_t *covered = calloc(1, pe.size_of_image);
        uint32_t w = a ? 4 : 8;
        int in_data = 0;
        for (uint32_t i = 0; i < rv.n; i++) {
            uint32_t at = rv.v[i][0];
            assert_int_equal(rv.v[i][1], a ? KDH_PE_REL_HIGHLOW : KDH_PE_REL_DIR64);
            uint64_t before = a ? kdh_get_u32(m1 + at) : kdh_get_u64(m1 + at);
            uint64_t after = a ? kdh_get_u32(m2 + at) : kdh_get_u64(m2 + at);
            uint64_t delta = nb - pe.image_base;
            if (a)
                assert_int_equal((uint32_t)(after - before), (uint32_t)delta);
            else
                assert_true(after - before == delta);
            /* ptrs[0] = &PoolHitTag: a slot in .data that now points into .data at nb. */
            if (at >= data->va && at < data->va + data->vsize && after >= nb + data->va &&
                after < nb + data->va + data->vsize)
                in_data = 1;
            memset(covered + at, 1, w);
        }
        /* Nothing else moved, except the ImageBase field of the mapped header. */
        uint32_t lfanew = kdh_get_u32(m1 + 0x3C);
        memset(covered + lfanew + 24 + (a ? 28 : 24), 1, w);
        for (uint32_t off = 0; off < pe.size_of_image; off++)
            if (!covered[off])
                assert_int_equal(m1[off], m2[off]);
        free(covered);
        assert_true(in_data);
        kdh_pe_t pm;
        fake_mem_t fm = {m2, pe.size_of_image, nb, 0, 0, 0, 0};
        assert_int_equal(kdh_pe_open_memory(&pm, nb, fake_read, &fm, &err), KDH_OK);
        assert_true(pm.image_base == (a ? (uint32_t)nb : nb));
        free(m1);
        free(m2);
        free(img);
    }
}

static void test_keys(void **state)
{
    (void)state;
    /* Reference values (symbols-unwind.md §2.2, §5.2). */
    const uint8_t guid[16] = {0xC8, 0xED, 0xE7, 0x6E, 0x91, 0xE8, 0xC6, 0xD4,
                              0x4C, 0x4C, 0x44, 0x20, 0x50, 0x44, 0x42, 0x2E};
    char id[41], key[128];
    kdh_pe_pdb_id(guid, 1, id);
    assert_string_equal(id, "6EE7EDC8E891D4C64C4C44205044422E1");
    kdh_pe_pdb_id(guid, 10, id);
    assert_string_equal(id, "6EE7EDC8E891D4C64C4C44205044422EA");
    assert_int_equal(kdh_pe_pdb_key("ntkrnlmp.pdb", guid, 1, key, sizeof key), KDH_OK);
    assert_string_equal(key, "ntkrnlmp.pdb/6EE7EDC8E891D4C64C4C44205044422E1");
    char iid[17];
    kdh_pe_image_id(0xA30A731A, 0x4000, iid);
    assert_string_equal(iid, "A30A731A4000");
    kdh_pe_image_id(0x8F598A9E, 0xB000, iid);
    assert_string_equal(iid, "8F598A9Eb000"); /* %x per the SSQP spec; stores compare blind */
    kdh_pe_image_id(0x1, 0x800, iid);
    assert_string_equal(iid, "00000001800");
    assert_int_equal(kdh_pe_image_key("ntoskrnl.exe", 0xA30A731A, 0x4000, key, sizeof key), KDH_OK);
    assert_string_equal(key, "ntoskrnl.exe/A30A731A4000");
    assert_int_equal(kdh_pe_image_key("ntoskrnl.exe", 0xA30A731A, 0x4000, key, 10), KDH_ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_x64_drv),
        cmocka_unit_test(test_x64_krnl),
        cmocka_unit_test(test_x86_drv),
        cmocka_unit_test(test_x86_krnl),
        cmocka_unit_test(test_known_facts),
        cmocka_unit_test(test_pdata_find),
        cmocka_unit_test(test_relocate),
        cmocka_unit_test(test_corrupt_tiny),
        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_corrupt_exports),
        cmocka_unit_test(test_corrupt_imports),
        cmocka_unit_test(test_corrupt_relocs),
        cmocka_unit_test(test_corrupt_debug),
        cmocka_unit_test(test_corrupt_truncations),
        cmocka_unit_test(test_corrupt_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
