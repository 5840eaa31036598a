/* test_owner.c: the tag search over small PE images built byte by byte here (x64 PE32+ and x86
 * PE32: headers, a code, a data and an import section), with the expected hits, RVAs and
 * instruction forms worked out by hand from the encodings written below; the memory layout
 * through a read callback that first answers "not cached". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kdh/owner.h"

#define IMG_SIZE 0xA00 /* file: headers 0x400, .text 0x400, .rdata 0x600, .idata 0x800 */

static void p16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void p32(uint8_t *p, uint32_t v)
{
    p16(p, (uint16_t)v);
    p16(p + 2, (uint16_t)(v >> 16));
}

static void section(uint8_t *sh, const char *name, uint32_t va, uint32_t raw, uint32_t chars)
{
    memcpy(sh, name, strlen(name));
    p32(sh + 8, 0x200);  /* VirtualSize */
    p32(sh + 12, va);
    p32(sh + 16, 0x200); /* SizeOfRawData */
    p32(sh + 20, raw);
    p32(sh + 36, chars);
}

/* A file image: .text (0x1000, raw 0x400) = code, .rdata (0x2000, raw 0x600) = data,
 * .idata (0x3000, raw 0x800) importing `import` from ntoskrnl.exe. */
static uint8_t *build(int x64, const uint8_t *code, size_t code_len, const uint8_t *data, size_t data_len,
                      const char *import)
{
    uint8_t *b = calloc(1, IMG_SIZE);
    b[0] = 'M';
    b[1] = 'Z';
    p32(b + 0x3C, 0x80);
    uint8_t *nt = b + 0x80;
    memcpy(nt, "PE\0\0", 4);
    uint8_t *fh = nt + 4;
    p16(fh, x64 ? 0x8664 : 0x014C);
    p16(fh + 2, 3);
    uint16_t opt_size = x64 ? 240 : 224;
    p16(fh + 16, opt_size);
    p16(fh + 18, 0x0022);
    uint8_t *oh = fh + 20;
    p16(oh, x64 ? 0x20B : 0x10B);
    p32(oh + 16, 0x1000); /* entry */
    p32(oh + 20, 0x1000);
    if (x64)
        p32(oh + 24, 0x10000);
    else
        p32(oh + 28, 0x10000);
    p32(oh + 32, 0x1000); /* SectionAlignment */
    p32(oh + 36, 0x200);  /* FileAlignment */
    p16(oh + 40, 10);
    p16(oh + 48, 10);
    p32(oh + 56, 0x4000); /* SizeOfImage */
    p32(oh + 60, 0x400);  /* SizeOfHeaders */
    p16(oh + 68, 1);      /* native */
    uint8_t *dirs = oh + (x64 ? 112 : 96);
    p32(oh + (x64 ? 108 : 92), 16);
    p32(dirs + 8, 0x3000); /* import directory */
    p32(dirs + 12, 40);
    uint8_t *sh = oh + opt_size;
    section(sh, ".text", 0x1000, 0x400, 0x60000020);
    section(sh + 40, ".rdata", 0x2000, 0x600, 0x40000040);
    section(sh + 80, ".idata", 0x3000, 0x800, 0xC0000040);
    memcpy(b + 0x400, code, code_len);
    memcpy(b + 0x600, data, data_len);
    /* imports: descriptor at 0x3000 (null one after it), ILT 0x3040, IAT 0x3060, hint/name 0x3080,
     * DLL name 0x30A0 */
    uint8_t *id = b + 0x800;
    p32(id, 0x3040);
    p32(id + 12, 0x30A0);
    p32(id + 16, 0x3060);
    p32(id + 0x40, 0x3080);
    p32(id + 0x60, 0x3080);
    memcpy(id + 0x82, import, strlen(import));
    memcpy(id + 0xA0, "ntoskrnl.exe", 12);
    return b;
}

#define LEAK 0x6B61654Cu /* 'Leak' */
#define NONE 0x656E6F4Eu /* 'None' */

/* x64 code, offsets in .text (RVA 0x1000 + offset):
 *  0: 41 B8 'Leak'          mov r8d, imm32          -> hit 0x1002, insn 0x1000
 *  6: C7 44 24 28 'Leak'    mov dword [rsp+28h]     -> hit 0x100A, insn 0x1006
 * 14: 81 F9 'Leak'          cmp ecx, imm32          -> hit 0x1010, insn 0x100E
 * 20: 90 'Leak'             nop, then no form       -> hit 0x1015 (code)
 * 25: 48 C7 C0 'Leak'       mov rax, simm32         -> hit 0x101C, insn 0x1019 */
static const uint8_t k_code64[] = {0x41, 0xB8, 'L', 'e', 'a', 'k', 0xC7, 0x44, 0x24, 0x28, 'L', 'e', 'a', 'k',
                                   0x81, 0xF9, 'L', 'e', 'a', 'k', 0x90, 'L', 'e', 'a', 'k',
                                   0x48, 0xC7, 0xC0, 'L', 'e', 'a', 'k', 0xC3};
static const uint8_t k_data[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'L', 'e', 'a', 'k', 0};

static void test_x64_hits(void **state)
{
    (void)state;
    uint8_t *img = build(1, k_code64, sizeof k_code64, k_data, sizeof k_data, "ExAllocatePoolWithTag");
    kdh_pe_t pe;
    kdh_err_t err = {0};
    assert_int_equal(kdh_pe_open_buffer(&pe, img, IMG_SIZE, &err), KDH_OK);
    kdh_owner_result_t res;
    kdh_owner_result_init(&res);
    /* data first in the search order of a second image, so sorting is what ranks code first */
    assert_int_equal(kdh_owner_scan_image(&pe, "b.sys", LEAK, &res, &err), KDH_OK);
    assert_int_equal(kdh_owner_scan_image(&pe, "a.sys", LEAK, &res, &err), KDH_OK);
    assert_int_equal(res.count, 12);
    kdh_owner_sort(&res);
    static const struct {
        const char *mod;
        uint32_t rva, insn;
        kdh_owner_kind_t kind;
        const char *section, *form;
    } want[] = {
        {"a.sys", 0x1002, 0x1000, KDH_OWNER_IMM, ".text", "mov r8d, imm32"},
        {"a.sys", 0x100A, 0x1006, KDH_OWNER_IMM, ".text", "mov dword [mem], imm32"},
        {"a.sys", 0x1010, 0x100E, KDH_OWNER_IMM, ".text", "cmp r32, imm32"},
        {"a.sys", 0x101C, 0x1019, KDH_OWNER_IMM, ".text", "mov r64, imm32"},
        {"b.sys", 0x1002, 0x1000, KDH_OWNER_IMM, ".text", "mov r8d, imm32"},
    };
    for (size_t i = 0; i < KDH_ARRAY_LEN(want); i++) {
        assert_string_equal(res.hits[i].module, want[i].mod);
        assert_int_equal(res.hits[i].rva, want[i].rva);
        assert_int_equal(res.hits[i].insn_rva, want[i].insn);
        assert_int_equal(res.hits[i].kind, want[i].kind);
        assert_string_equal(res.hits[i].section, want[i].section);
        assert_string_equal(res.hits[i].form, want[i].form);
    }
    /* then the code hit without a form (a.sys, b.sys), then data */
    assert_int_equal(res.hits[8].kind, KDH_OWNER_CODE);
    assert_int_equal(res.hits[8].rva, 0x1015);
    assert_string_equal(res.hits[8].module, "a.sys");
    assert_int_equal(res.hits[10].kind, KDH_OWNER_DATA);
    assert_int_equal(res.hits[10].rva, 0x2010);
    assert_string_equal(res.hits[10].section, ".rdata");
    const char *mods[4];
    assert_int_equal(kdh_owner_modules(&res, mods, 4), 2);
    assert_string_equal(mods[0], "a.sys");
    assert_string_equal(mods[1], "b.sys");
    /* 'None' is not in the image and ExAllocatePoolWithTag is the tagged form: nothing */
    kdh_owner_result_free(&res);
    assert_int_equal(kdh_owner_scan_image(&pe, "a.sys", NONE, &res, &err), KDH_OK);
    assert_int_equal(res.count, 0);
    kdh_owner_result_free(&res);
    free(img);
}

static void test_x86_forms_and_none(void **state)
{
    (void)state;
    /* x86: 0: 68 'Leak' push imm32 (hit 0x1001); 5: B9 'Leak' mov ecx (hit 0x1006);
     * 10: 41 B8 'Leak': 0x41 is `inc ecx` on x86, so the form is mov eax, insn at 0x100B (hit 0x100C);
     * 16: 81 7D 08 'Leak' cmp dword [ebp+8] (hit 0x1013, insn 0x1010) */
    static const uint8_t code[] = {0x68, 'L', 'e', 'a', 'k', 0xB9, 'L', 'e', 'a', 'k', 0x41, 0xB8, 'L', 'e', 'a', 'k',
                                   0x81, 0x7D, 0x08, 'L', 'e', 'a', 'k', 0xC3};
    uint8_t *img = build(0, code, sizeof code, k_data, 4, "ExAllocatePool");
    kdh_pe_t pe;
    kdh_err_t err = {0};
    assert_int_equal(kdh_pe_open_buffer(&pe, img, IMG_SIZE, &err), KDH_OK);
    kdh_owner_result_t res;
    kdh_owner_result_init(&res);
    assert_int_equal(kdh_owner_scan_image(&pe, "old.sys", LEAK, &res, &err), KDH_OK);
    kdh_owner_sort(&res);
    assert_int_equal(res.count, 4);
    assert_string_equal(res.hits[0].form, "push imm32");
    assert_int_equal(res.hits[0].rva, 0x1001);
    assert_string_equal(res.hits[1].form, "mov ecx, imm32");
    assert_string_equal(res.hits[2].form, "mov eax, imm32");
    assert_int_equal(res.hits[2].insn_rva, 0x100B);
    assert_string_equal(res.hits[3].form, "cmp dword [mem], imm32");
    assert_int_equal(res.hits[3].insn_rva, 0x1010);
    kdh_owner_result_free(&res);
    /* 'None': the untagged import, at its IAT slot 0x3060 */
    assert_int_equal(kdh_owner_scan_image(&pe, "old.sys", NONE, &res, &err), KDH_OK);
    assert_int_equal(res.count, 1);
    assert_int_equal(res.hits[0].kind, KDH_OWNER_IMPORT);
    assert_int_equal(res.hits[0].rva, 0x3060);
    assert_string_equal(res.hits[0].section, ".idata");
    assert_string_equal(res.hits[0].form, "ntoskrnl.exe!ExAllocatePool");
    kdh_owner_result_free(&res);
    free(img);
}

static void test_decode_bounds(void **state)
{
    (void)state;
    static const uint8_t c[] = {0xB8, 1, 2, 3, 4};
    size_t off = 99;
    char form[48];
    assert_int_equal(kdh_owner_imm_form(c, sizeof c, 1, 0, &off, form, sizeof form), 1);
    assert_int_equal(off, 0);
    assert_int_equal(kdh_owner_imm_form(c, sizeof c, 0, 0, &off, form, sizeof form), 0); /* nothing before */
    assert_int_equal(kdh_owner_imm_form(c, sizeof c, 2, 0, &off, form, sizeof form), 0); /* imm runs off */
    assert_int_equal(kdh_owner_imm_form(c, 4, 1, 0, &off, form, sizeof form), 0);
    /* x64 movabs: 49 BA imm64 = mov r10, imm64 */
    static const uint8_t m[] = {0x49, 0xBA, 1, 2, 3, 4, 0, 0, 0, 0};
    assert_int_equal(kdh_owner_imm_form(m, sizeof m, 2, 1, &off, form, sizeof form), 1);
    assert_string_equal(form, "mov r10, imm64 (low half)");
    /* RIP-relative: C7 05 disp32 imm32 = mov dword [rip+disp], imm32 */
    static const uint8_t r[] = {0xC7, 0x05, 0x10, 0, 0, 0, 1, 2, 3, 4};
    assert_int_equal(kdh_owner_imm_form(r, sizeof r, 6, 1, &off, form, sizeof form), 1);
    assert_string_equal(form, "mov dword [mem], imm32");
    assert_int_equal(off, 0);
}

/* Memory layout: the mapped image read through a callback that answers "not cached" for the
 * first read of .text, as the target model does before a fetch. */
typedef struct mem {
    const uint8_t *img;
    int misses_left;
} mem_t;

static int mem_read(void *ctx, uint64_t va, void *buf, uint32_t len, uint32_t *got)
{
    mem_t *m = ctx;
    uint64_t rva = va - 0x10000;
    if (rva == 0x1000 && m->misses_left > 0) {
        m->misses_left--;
        return KDH_ENOTCACHED;
    }
    if (rva >= 0x4000) {
        *got = 0;
        return KDH_OK;
    }
    uint32_t n = rva + len > 0x4000 ? (uint32_t)(0x4000 - rva) : len;
    memcpy(buf, m->img + rva, n);
    *got = n;
    return KDH_OK;
}

static void test_memory_layout(void **state)
{
    (void)state;
    uint8_t *img = build(1, k_code64, sizeof k_code64, k_data, sizeof k_data, "ExAllocatePool");
    kdh_pe_t file;
    kdh_err_t err = {0};
    assert_int_equal(kdh_pe_open_buffer(&file, img, IMG_SIZE, &err), KDH_OK);
    uint8_t *mapped = calloc(1, 0x4000);
    assert_int_equal(kdh_pe_map(&file, mapped, 0x4000, &err), KDH_OK);
    mem_t m = {mapped, 1};
    kdh_pe_t pe;
    assert_int_equal(kdh_pe_open_memory(&pe, 0x10000, mem_read, &m, &err), KDH_OK);
    kdh_owner_result_t res;
    kdh_owner_result_init(&res);
    assert_int_equal(kdh_owner_scan_image(&pe, "mem.sys", LEAK, &res, &err), KDH_ENOTCACHED);
    assert_int_equal(res.count, 0);
    assert_int_equal(kdh_owner_scan_image(&pe, "mem.sys", LEAK, &res, &err), KDH_OK);
    assert_int_equal(res.count, 6);
    kdh_owner_sort(&res);
    assert_int_equal(res.hits[0].rva, 0x1002);
    assert_int_equal(res.hits[5].kind, KDH_OWNER_DATA);
    kdh_owner_result_free(&res);
    free(mapped);
    free(img);
}

/* Damaged images (bytes flipped in the headers, the section table and the import data; every
 * truncation of the headers) give an error or a bounded result, never a crash: run under ASan in
 * the sanitizer build. */
static void test_hostile(void **state)
{
    (void)state;
    uint8_t *good = build(1, k_code64, sizeof k_code64, k_data, sizeof k_data, "ExAllocatePool");
    uint8_t *img = malloc(IMG_SIZE);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    unsigned opened = 0;
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(img, good, IMG_SIZE);
        int flips = 1 + iter % 6;
        for (int f = 0; f < flips; f++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* half the flips in the headers, the rest in the import section */
            size_t at = (f & 1) ? 0x800 + (size_t)(x % 0x100) : (size_t)((x >> 8) % 0x200);
            img[at] = (uint8_t)(x >> 32);
        }
        size_t len = iter % 10 == 9 ? (size_t)(x % IMG_SIZE) : IMG_SIZE;
        kdh_pe_t pe;
        kdh_err_t err = {0};
        if (kdh_pe_open_buffer(&pe, img, len, &err) != KDH_OK)
            continue;
        opened++;
        kdh_owner_result_t res;
        kdh_owner_result_init(&res);
        int rc = kdh_owner_scan_image(&pe, "bad.sys", NONE, &res, &err);
        assert_true(rc == KDH_OK || rc < 0);
        assert_true(res.count <= KDH_OWNER_MAX_HITS);
        rc = kdh_owner_scan_image(&pe, "bad.sys", LEAK, &res, &err);
        assert_true(rc == KDH_OK || rc < 0);
        kdh_owner_sort(&res);
        kdh_owner_result_free(&res);
    }
    assert_true(opened > 100); /* the mutations left many images parseable, so the scan ran */
    free(img);
    free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x64_hits),
        cmocka_unit_test(test_x86_forms_and_none),
        cmocka_unit_test(test_decode_bounds),
        cmocka_unit_test(test_memory_layout),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
