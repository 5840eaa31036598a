/* test_pdb.c: kdh_pdb against llvm-pdbutil-14 on clang/lld-built PDBs (x64, x86 with decorated
 * names, and the x86 PDB re-blocked at 512 B / 1 KiB / 32 KiB), name and address lookups,
 * agreement with the image's RSDS record, and OMAP mapping on a hand-made table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/pdb.h"
#include "kdh/pe.h"
#include "test_pdb.h"

#ifndef KDH_PDB_FIXTURE_DIR
#define KDH_PDB_FIXTURE_DIR ""
#endif

uint8_t *fx_read(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", KDH_PDB_FIXTURE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

static void dump(const kdh_pdb_t *p, char *out, size_t cap)
{
    size_t n = 0;
    const kdh_pdb_info_t *in = kdh_pdb_info(p);
    char id[41];
    kdh_pe_pdb_id(in->guid, in->age, id);
    n += (size_t)snprintf(out + n, cap - n, "key %s\n", id);
    for (uint32_t i = 0; i < kdh_pdb_count(p); i++) {
        const kdh_pdb_public_t *pub = kdh_pdb_public_at(p, i);
        n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "public %x %u:%u flags=%u %s\n",
                              pub->rva, pub->seg, pub->off, pub->flags, pub->name);
    }
    assert_true(n < cap);
    assert_null(kdh_pdb_public_at(p, kdh_pdb_count(p)));
}

static void check(const char *pdbname, const char *expname, uint32_t want_bs)
{
    size_t len, elen;
    uint8_t *b = fx_read(pdbname, &len);
    char *want = (char *)fx_read(expname, &elen);
    if (!b || !want)
        skip();
    kdh_pdb_t *p;
    kdh_err_t err;
    int rc = kdh_pdb_open_buffer(&p, b, len, &err);
    if (rc)
        print_error("%s: %s\n", pdbname, err.msg);
    assert_int_equal(rc, KDH_OK);
    assert_int_equal(kdh_pdb_info(p)->block_size, want_bs);
    static char got[65536];
    dump(p, got, sizeof got);
    if (strcmp(want, got) != 0) {
        print_error("%s\n--- llvm-pdbutil ---\n%s--- kdh_pdb ---\n%s", pdbname, want, got);
        fail();
    }
    uint32_t lines = 0;
    for (const char *c = want; (c = strstr(c, "\npublic ")) != NULL; c++)
        lines++;
    assert_int_equal(kdh_pdb_count(p), lines);
    assert_true(lines >= 7);
    kdh_pdb_close(p);
    free(b);
    free(want);
}

static void test_x64(void **state)
{
    (void)state;
    check("fxsyms_x64.pdb", "fxsyms_x64.expect", 4096);
}
static void test_x86(void **state)
{
    (void)state;
    check("fxsyms_x86.pdb", "fxsyms_x86.expect", 4096);
}
static void test_reblocked_1k(void **state)
{
    (void)state;
    check("r1024.pdb", "r1024.expect", 1024);
}
static void test_reblocked_32k(void **state)
{
    (void)state;
    check("r32k.pdb", "fxsyms_x86.expect", 32768);
}
/* Only info, DBI, symbol records and section headers left; every other stream is nil. */
static void test_reblocked_minimal(void **state)
{
    (void)state;
    check("rmin.pdb", "fxsyms_x86.expect", 512);
}

/* Rearranged after linking: RVAs go through OMAP_FROM_SRC; an eliminated range drops StdFn. */
static void test_omap_pdb(void **state)
{
    (void)state;
    check("romap.pdb", "romap.expect", 4096);
    size_t len;
    uint8_t *b = fx_read("romap.pdb", &len);
    kdh_pdb_t *p;
    kdh_err_t err;
    assert_int_equal(kdh_pdb_open_buffer(&p, b, len, &err), KDH_OK);
    assert_true(kdh_pdb_info(p)->has_omap);
    uint32_t rva;
    assert_int_equal(kdh_pdb_lookup(p, "StdFn", &rva), KDH_ENOTFOUND);
    assert_int_equal(kdh_pdb_lookup(p, "CdeclFn", &rva), KDH_OK);
    kdh_pdb_close(p);
    free(b);
}

/* 20000 extra nil streams: the directory's block list needs two block-map blocks at 512 B. */
static void test_reblocked_512_multimap(void **state)
{
    (void)state;
    check("r512.pdb", "fxsyms_x86.expect", 512);
    size_t len;
    uint8_t *b = fx_read("r512.pdb", &len);
    uint32_t dir_bytes = kdh_get_u32(b + 44);
    uint32_t dir_blocks = (dir_bytes + 511) / 512;
    assert_true(dir_blocks > 512 / 4); /* really more than one block-map block */
    kdh_pdb_t *p;
    kdh_err_t err;
    assert_int_equal(kdh_pdb_open_buffer(&p, b, len, &err), KDH_OK);
    assert_true(kdh_pdb_info(p)->nstreams > 20000);
    uint8_t *s;
    uint32_t slen;
    assert_int_equal(kdh_pdb_read_stream(p, kdh_pdb_info(p)->nstreams - 1, &s, &slen, &err), KDH_OK);
    assert_int_equal(slen, 0); /* a nil stream */
    assert_null(s);
    assert_int_equal(kdh_pdb_read_stream(p, kdh_pdb_info(p)->nstreams, &s, &slen, &err),
                     KDH_ECORRUPT);
    kdh_pdb_close(p);
    free(b);
}

/* The expected RVA of a public, from llvm-pdbutil's text. */
static uint32_t expected_rva(const char *expect, const char *name)
{
    char pat[128];
    snprintf(pat, sizeof pat, " %s\n", name);
    const char *hit = strstr(expect, pat);
    assert_non_null(hit);
    while (hit > expect && hit[-1] != '\n')
        hit--;
    unsigned rva = 0;
    assert_int_equal(sscanf(hit, "public %x", &rva), 1);
    return rva;
}

static void test_lookup(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        size_t len, elen;
        uint8_t *b = fx_read(a ? "fxsyms_x86.pdb" : "fxsyms_x64.pdb", &len);
        char *exp = (char *)fx_read(a ? "fxsyms_x86.expect" : "fxsyms_x64.expect", &elen);
        if (!b || !exp)
            skip();
        kdh_pdb_t *p;
        kdh_err_t err;
        assert_int_equal(kdh_pdb_open_buffer(&p, b, len, &err), KDH_OK);
        free(b); /* the reader keeps its own copy */
        assert_int_equal(kdh_pdb_info(p)->machine, a ? 0x14C : 0x8664);
        uint32_t rva = 0;
        const char *plain[] = {"PoolHitTag", "MmSpecialPoolTag", "MmAllocateSpecialPool",
                               "KiSystemStartup", "CdeclFn", "StdFn", "FastFn"};
        const char *x86[] = {"_PoolHitTag", "_MmSpecialPoolTag", "_MmAllocateSpecialPool",
                             "_KiSystemStartup", "_CdeclFn", "_StdFn@8", "@FastFn@8"};
        for (size_t i = 0; i < KDH_ARRAY_LEN(plain); i++) {
            assert_int_equal(kdh_pdb_lookup(p, plain[i], &rva), KDH_OK);
            assert_int_equal(rva, expected_rva(exp, a ? x86[i] : plain[i]));
            if (a) { /* the decorated name works too */
                assert_int_equal(kdh_pdb_lookup(p, x86[i], &rva), KDH_OK);
                assert_int_equal(rva, expected_rva(exp, x86[i]));
            }
        }
        assert_int_equal(kdh_pdb_lookup(p, "internal_helper", &rva), KDH_ENOTFOUND);
        assert_int_equal(kdh_pdb_lookup(p, "PoolHitTa", &rva), KDH_ENOTFOUND);
        assert_int_equal(kdh_pdb_lookup(p, "", &rva), KDH_ENOTFOUND);
        if (!a) /* x64 names are not undecorated */
            assert_int_equal(kdh_pdb_lookup(p, "_PoolHitTag", &rva), KDH_ENOTFOUND);
        kdh_pdb_close(p);
        free(exp);
    }
}

static void test_symbolize(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = fx_read("fxsyms_x64.pdb", &len);
    if (!b)
        skip();
    kdh_pdb_t *p;
    kdh_err_t err;
    assert_int_equal(kdh_pdb_open_buffer(&p, b, len, &err), KDH_OK);
    uint32_t n = kdh_pdb_count(p), off = 99;
    const kdh_pdb_public_t *first = kdh_pdb_public_at(p, 0);
    assert_null(kdh_pdb_symbolize(p, first->rva - 1, &off));
    for (uint32_t i = 0; i < n; i++) {
        const kdh_pdb_public_t *pub = kdh_pdb_public_at(p, i);
        if (i && kdh_pdb_public_at(p, i - 1)->rva == pub->rva)
            continue; /* an alias at the same RVA: the first by name answers */
        /* A function may be named by its procedure record (same start, same name on x64)
         * rather than the public itself. */
        const kdh_pdb_public_t *got = kdh_pdb_symbolize(p, pub->rva, &off);
        assert_non_null(got);
        assert_int_equal(got->rva, pub->rva);
        assert_int_equal(off, 0);
        const kdh_pdb_public_t *next = kdh_pdb_public_at(p, i + 1);
        if (next && next->rva > pub->rva + 1 && got == pub) {
            assert_ptr_equal(kdh_pdb_symbolize(p, next->rva - 1, &off), pub);
            assert_int_equal(off, next->rva - 1 - pub->rva);
        }
    }
    /* MmAllocateSpecialPool+4 is inside the function. */
    uint32_t rva;
    assert_int_equal(kdh_pdb_lookup(p, "MmAllocateSpecialPool", &rva), KDH_OK);
    assert_string_equal(kdh_pdb_symbolize(p, rva + 4, &off)->name, "MmAllocateSpecialPool");
    assert_int_equal(off, 4);
    kdh_pdb_close(p);
    free(b);
}

/* The image's RSDS record and the PDB agree on GUID and (DBI) age: the store key is shared. */
static void test_matches_image(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        size_t plen, ilen;
        uint8_t *pb = fx_read(a ? "fxsyms_x86.pdb" : "fxsyms_x64.pdb", &plen);
        uint8_t *ib = fx_read(a ? "fxsyms_x86.sys" : "fxsyms_x64.sys", &ilen);
        if (!pb || !ib)
            skip();
        kdh_pdb_t *p;
        kdh_err_t err;
        kdh_pe_t pe;
        kdh_pe_codeview_t cv;
        assert_int_equal(kdh_pdb_open_buffer(&p, pb, plen, &err), KDH_OK);
        assert_int_equal(kdh_pe_open_buffer(&pe, ib, ilen, &err), KDH_OK);
        assert_int_equal(kdh_pe_codeview(&pe, &cv, &err), KDH_OK);
        assert_memory_equal(cv.guid, kdh_pdb_info(p)->guid, 16);
        assert_int_equal(cv.age, kdh_pdb_info(p)->age);
        assert_string_equal(cv.pdb_name, a ? "fxsyms_x86.pdb" : "fxsyms_x64.pdb");
        /* Every function public lies inside the image's .text. */
        const kdh_pe_section_t *text = kdh_pe_section_by_name(&pe, ".text");
        for (uint32_t i = 0; i < kdh_pdb_count(p); i++) {
            const kdh_pdb_public_t *pub = kdh_pdb_public_at(p, i);
            if (pub->flags & 2)
                assert_ptr_equal(kdh_pe_section_by_rva(&pe, pub->rva), text);
        }
        kdh_pdb_close(p);
        free(pb);
        free(ib);
    }
}

static void test_open_file(void **state)
{
    (void)state;
    char path[1024];
    kdh_pdb_t *p;
    kdh_err_t err;
    snprintf(path, sizeof path, "%s/fxsyms_x64.pdb", KDH_PDB_FIXTURE_DIR);
    FILE *f = fopen(path, "rb");
    if (!f)
        skip();
    fclose(f);
    assert_int_equal(kdh_pdb_open_file(&p, path, &err), KDH_OK);
    assert_true(kdh_pdb_count(p) > 0);
    kdh_pdb_close(p);
    snprintf(path, sizeof path, "%s/fxsyms_x64.sys", KDH_PDB_FIXTURE_DIR);
    assert_int_equal(kdh_pdb_open_file(&p, path, &err), KDH_ECORRUPT);
    assert_non_null(strstr(err.msg, "fxsyms_x64.sys"));
    assert_null(p);
    assert_int_equal(kdh_pdb_open_file(&p, "/nonexistent/x.pdb", &err), KDH_ENOTFOUND);
}

static void test_omap(void **state)
{
    (void)state;
    /* from -> to: [0x1000 -> 0x5000), [0x1100 -> 0 (eliminated)), [0x1200 -> 0x2000). */
    uint8_t t[24];
    const uint32_t v[6] = {0x1000, 0x5000, 0x1100, 0, 0x1200, 0x2000};
    for (int i = 0; i < 6; i++)
        kdh_put_u32(t + 4 * i, v[i]);
    assert_int_equal(kdh_pdb_omap_map(t, 3, 0x0FFF), 0);
    assert_int_equal(kdh_pdb_omap_map(t, 3, 0x1000), 0x5000);
    assert_int_equal(kdh_pdb_omap_map(t, 3, 0x10FF), 0x50FF);
    assert_int_equal(kdh_pdb_omap_map(t, 3, 0x1100), 0);
    assert_int_equal(kdh_pdb_omap_map(t, 3, 0x11FF), 0);
    assert_int_equal(kdh_pdb_omap_map(t, 3, 0x1234), 0x2034);
    assert_int_equal(kdh_pdb_omap_map(t, 0, 0x1234), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x64),
        cmocka_unit_test(test_x86),
        cmocka_unit_test(test_reblocked_1k),
        cmocka_unit_test(test_reblocked_32k),
        cmocka_unit_test(test_reblocked_512_multimap),
        cmocka_unit_test(test_reblocked_minimal),
        cmocka_unit_test(test_omap_pdb),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_symbolize),
        cmocka_unit_test(test_matches_image),
        cmocka_unit_test(test_open_file),
        cmocka_unit_test(test_omap),
        cmocka_unit_test(test_corrupt_superblock),
        cmocka_unit_test(test_corrupt_directory),
        cmocka_unit_test(test_corrupt_streams),
        cmocka_unit_test(test_corrupt_truncated),
        cmocka_unit_test(test_corrupt_no_dbi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
