/* test_target.c: the target model's steps over hand-built fake target memory: x64 and x86
 * module lists laid out from the offsets in kd-protocol.md 5 (LDR_DATA_TABLE_ENTRY) with minimal
 * PE images carrying CodeView records, KDDEBUGGER_DATA64 validation (3.4), hostile lists (a
 * cycle, a 64 KiB name, a link outside kernel space, 10000 entries), identity keys written out
 * by hand, and the cache's unreadable-range rule. A fake driver answers each KDH_ENOTCACHED
 * from the fake memory, counting fetches, so a step that loops shows up as a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kdh/target.h"

/* ---- fake target memory ---------------------------------------------------------------------- */

#define MAX_REGIONS 64
typedef struct region {
    uint64_t va;
    uint32_t len;
    uint8_t *b;
} region_t;

typedef struct fakemem {
    region_t r[MAX_REGIONS];
    int n;
    int x64;
} fakemem_t;

static uint8_t *fm_add(fakemem_t *m, uint64_t va, uint32_t len)
{
    assert_true(m->n < MAX_REGIONS);
    region_t *r = &m->r[m->n++];
    r->va = va;
    r->len = len;
    r->b = calloc(1, len);
    assert_non_null(r->b);
    return r->b;
}

static void fm_free(fakemem_t *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->r[i].b);
    m->n = 0;
}

static int fm_byte(const fakemem_t *m, uint64_t va, uint8_t *out)
{
    for (int i = 0; i < m->n; i++)
        if (va >= m->r[i].va && va - m->r[i].va < m->r[i].len) {
            *out = m->r[i].b[va - m->r[i].va];
            return 1;
        }
    return 0;
}

static void put_ptr(const fakemem_t *m, uint8_t *p, uint64_t v)
{
    if (m->x64)
        kdh_put_u64(p, v);
    else
        kdh_put_u32(p, (uint32_t)v);
}

/* Runs step to completion, answering misses from m like a target that stops a read at the
 * first unreadable byte. *fetches counts them. */
static int drive(kdh_target_t *t, const fakemem_t *m, int (*step)(kdh_target_t *, kdh_err_t *),
                 unsigned *fetches, kdh_err_t *err)
{
    *fetches = 0;
    for (unsigned round = 0; round < 100000; round++) {
        int rc = step(t, err);
        if (rc != KDH_ENOTCACHED)
            return rc;
        uint64_t va;
        uint32_t len;
        kdh_target_class_t cls;
        kdh_target_need(t, &va, &len, &cls);
        assert_true(len > 0 && len <= KDH_TARGET_FETCH_MAX);
        uint8_t *buf = malloc(len);
        uint32_t got = 0;
        while (got < len && fm_byte(m, va + got, &buf[got]))
            got++;
        assert_int_equal(kdh_target_fill(t, cls, va, buf, got, len, err), KDH_OK);
        free(buf);
        (*fetches)++;
    }
    fail_msg("step did not finish in 100000 rounds");
    return KDH_EINVAL;
}

/* ---- minimal PE image in memory ------------------------------------------------------------- */

/* Headers at 0, one section .rdata at RVA 0x1000 holding the debug directory (0x1000) and an
 * RSDS record (0x1020). Offsets from the PE/COFF specification. */
static void build_pe(fakemem_t *m, uint64_t base, int x64, uint32_t ts, uint32_t size_of_image,
                     const uint8_t guid[16], uint32_t age, const char *pdb)
{
    uint8_t *h = fm_add(m, base, 0x400);
    h[0] = 'M';
    h[1] = 'Z';
    kdh_put_u32(h + 0x3C, 0x80);
    memcpy(h + 0x80, "PE\0\0", 4);
    uint8_t *fh = h + 0x84;
    kdh_put_u16(fh + 0, x64 ? 0x8664 : 0x014C);
    kdh_put_u16(fh + 2, 1);
    kdh_put_u32(fh + 4, ts);
    kdh_put_u16(fh + 16, x64 ? 0xF0 : 0xE0);
    kdh_put_u16(fh + 18, x64 ? 0x22 : 0x2102);
    uint8_t *oh = fh + 20;
    kdh_put_u16(oh + 0, x64 ? 0x20B : 0x10B);
    if (x64)
        kdh_put_u64(oh + 24, base);
    else
        kdh_put_u32(oh + 28, (uint32_t)base);
    kdh_put_u32(oh + 32, 0x1000);          /* SectionAlignment */
    kdh_put_u32(oh + 36, 0x200);           /* FileAlignment */
    kdh_put_u32(oh + 56, size_of_image);
    kdh_put_u32(oh + 60, 0x400);           /* SizeOfHeaders */
    kdh_put_u16(oh + 68, 1);               /* native */
    uint8_t *dd = oh + (x64 ? 112 : 96);
    kdh_put_u32(oh + (x64 ? 108 : 92), 16);
    kdh_put_u32(dd + 6 * 8, 0x1000);       /* debug directory */
    kdh_put_u32(dd + 6 * 8 + 4, 28);
    uint8_t *sh = oh + (x64 ? 0xF0 : 0xE0);
    memcpy(sh, ".rdata", 6);
    kdh_put_u32(sh + 8, 0x100);
    kdh_put_u32(sh + 12, 0x1000);
    kdh_put_u32(sh + 16, 0x200);
    kdh_put_u32(sh + 20, 0x400);
    kdh_put_u32(sh + 36, 0x40000040);
    uint8_t *s = fm_add(m, base + 0x1000, 0x100);
    kdh_put_u32(s + 12, 2);                /* IMAGE_DEBUG_TYPE_CODEVIEW */
    kdh_put_u32(s + 16, (uint32_t)(24 + strlen(pdb) + 1));
    kdh_put_u32(s + 20, 0x1020);
    kdh_put_u32(s + 24, 0x420);
    memcpy(s + 0x20, "RSDS", 4);
    memcpy(s + 0x24, guid, 16);
    kdh_put_u32(s + 0x34, age);
    memcpy(s + 0x38, pdb, strlen(pdb) + 1);
}

/* LDR_DATA_TABLE_ENTRY at entry (x64 0x68 bytes / x86 0x34) with its name right behind it. */
static void build_entry(fakemem_t *m, uint64_t entry, uint64_t flink, uint64_t base, uint32_t size,
                        const char *name, uint16_t name_len_override)
{
    size_t nlen = strlen(name);
    uint32_t esz = m->x64 ? 0x68 : 0x34;
    uint8_t *e = fm_add(m, entry, esz + (uint32_t)(2 * nlen));
    put_ptr(m, e, flink);
    uint64_t nbuf = entry + esz;
    uint16_t len = name_len_override ? name_len_override : (uint16_t)(2 * nlen);
    if (m->x64) {
        kdh_put_u64(e + 0x30, base);
        kdh_put_u32(e + 0x40, size);
        kdh_put_u16(e + 0x58, len);
        kdh_put_u16(e + 0x5A, len);
        kdh_put_u64(e + 0x60, nbuf);
    } else {
        kdh_put_u32(e + 0x18, (uint32_t)base);
        kdh_put_u32(e + 0x20, size);
        kdh_put_u16(e + 0x2C, len);
        kdh_put_u16(e + 0x2E, len);
        kdh_put_u32(e + 0x30, (uint32_t)nbuf);
    }
    for (size_t i = 0; i < nlen; i++)
        kdh_put_u16(e + esz + 2 * i, (uint16_t)name[i]);
}

static const uint8_t k_guid[16] = {0x78, 0x56, 0x34, 0x12, 0xBC, 0x9A, 0xF0, 0xDE,
                                   0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};

typedef struct layout {
    uint64_t head, e[3], base[3], kdbg, list_ptr;
} layout_t;

/* Kernel, HAL and one driver on a list, plus a KDBG block. */
static void build_machine(fakemem_t *m, int x64, layout_t *L)
{
    memset(m, 0, sizeof *m);
    m->x64 = x64;
    uint64_t k = x64 ? 0xFFFFF80000000000ull : 0xFFFFFFFF80000000ull;
    L->base[0] = k + 0x400000;
    L->base[1] = k + 0x800000;
    L->base[2] = k + 0xC00000;
    L->head = k + 0x100000;
    L->e[0] = k + 0x200000;
    L->e[1] = k + 0x200400;
    L->e[2] = k + 0x200800;
    L->kdbg = k + 0x300000;
    L->list_ptr = k + 0x300800;
    uint8_t *h = fm_add(m, L->head, 16);
    put_ptr(m, h, L->e[0]);
    build_entry(m, L->e[0], L->e[1], L->base[0], 0x4000, "ntoskrnl.exe", 0);
    build_entry(m, L->e[1], L->e[2], L->base[1], 0x2000, "hal.dll", 0);
    build_entry(m, L->e[2], L->head, L->base[2], 0x2000, "LeakDrv.sys", 0);
    build_pe(m, L->base[0], x64, 0xA30A731A, 0x4000, k_guid, 1, "ntkrnlmp.pdb");
    build_pe(m, L->base[1], x64, 0x5E2A1100, 0x2000, k_guid, 0x2A, "hal.pdb");
    build_pe(m, L->base[2], x64, 0x11223344, 0x2000, k_guid, 3, "leakdrv.pdb");
    uint8_t *lp = fm_add(m, L->list_ptr, 16);
    put_ptr(m, lp, L->kdbg);
    uint8_t *kb = fm_add(m, L->kdbg, 0x368);
    kdh_put_u32(kb + 0x10, 0x4742444B);
    kdh_put_u32(kb + 0x14, 0x368);
    kdh_put_u64(kb + 0x18, L->base[0]);
    kdh_put_u64(kb + 0x20, L->base[0] + 0x10E0);
    kdh_put_u64(kb + 0x48, L->head);
    kdh_put_u64(kb + 0x1B8, L->base[0] + 0x3008);
    /* the memory manager's variables, at the offsets of the wdbgexts.h field list (kd-protocol.md
     * 3.4 lists PoolTrackTable at 0x1B8 and KiProcessorBlock at 0x218; counting ULONG64 fields
     * from there) */
    kdh_put_u64(kb + 0x100, L->base[0] + 0xE000); /* MmMaximumNonPagedPoolInBytes */
    kdh_put_u64(kb + 0x140, L->base[0] + 0xE008); /* MmSizeOfPagedPoolInBytes */
    kdh_put_u64(kb + 0x148, L->base[0] + 0xE010); /* MmTotalCommitLimit */
    kdh_put_u64(kb + 0x150, L->base[0] + 0xE018); /* MmTotalCommittedPages */
    kdh_put_u64(kb + 0x170, L->base[0] + 0xE020); /* MmPagedPoolCommit */
    kdh_put_u64(kb + 0x250, L->base[0] + 0xE028); /* MmAllocatedNonPagedPool */
    kdh_put_u64(kb + 0x238, L->base[0] + 0xD0E0);
    kdh_put_u16(kb + 0x2B4, 0x8);
}

static kdh_target_t *new_target(const layout_t *L, int x64, uint64_t list_ptr)
{
    kdh_target_t *t = NULL;
    kdh_err_t err;
    assert_int_equal(kdh_target_new(&t, &err), KDH_OK);
    kdh_wire_get_version_t v;
    memset(&v, 0, sizeof v);
    v.machine_type = x64 ? 0x8664 : 0x014C;
    v.minor_version = 19041;
    v.kern_base = L->base[0];
    v.ps_loaded_module_list = L->head;
    v.debugger_data_list = list_ptr;
    assert_int_equal(kdh_target_set_version(t, &v, &err), KDH_OK);
    return t;
}

static void check_machine(int x64)
{
    fakemem_t m;
    layout_t L;
    build_machine(&m, x64, &L);
    kdh_target_t *t = new_target(&L, x64, L.list_ptr);
    kdh_err_t err;
    kdh_err_clear(&err);
    unsigned fetches = 0;
    assert_int_equal(drive(t, &m, kdh_target_step_discover, &fetches, &err), KDH_OK);
    const kdh_target_kdbg_t *k = kdh_target_kdbg(t);
    assert_non_null(k);
    assert_true(k->address == L.kdbg);
    assert_int_equal(k->size, 0x368);
    assert_true(k->breakpoint_with_status == L.base[0] + 0x10E0);
    assert_true(k->mm_special_pool_tag == L.base[0] + 0xD0E0);
    assert_true(k->pool_track_table == L.base[0] + 0x3008);
    assert_true(k->mm_maximum_non_paged_pool_in_bytes == L.base[0] + 0xE000);
    assert_true(k->mm_size_of_paged_pool_in_bytes == L.base[0] + 0xE008);
    assert_true(k->mm_total_commit_limit == L.base[0] + 0xE010);
    assert_true(k->mm_total_committed_pages == L.base[0] + 0xE018);
    assert_true(k->mm_paged_pool_commit == L.base[0] + 0xE020);
    assert_true(k->mm_allocated_non_paged_pool == L.base[0] + 0xE028);
    assert_int_equal(kdh_target_module_count(t), 3);
    assert_false(kdh_target_modules_truncated(t, NULL));
    const kdh_target_module_t *nt = kdh_target_module_at(t, 0);
    assert_true(nt->ok);
    assert_string_equal(nt->name, "nt");
    assert_string_equal(nt->file, "ntoskrnl.exe");
    assert_true(nt->base == L.base[0]);
    /* GUID {12345678-9ABC-DEF0-0102-030405060708}, age 1 */
    assert_string_equal(nt->key, "ntoskrnl.exe/A30A731A4000/123456789ABCDEF001020304050607081");
    assert_string_equal(nt->pdb_name, "ntkrnlmp.pdb");
    const kdh_target_module_t *hal = kdh_target_module_at(t, 1);
    assert_string_equal(hal->name, "hal");
    assert_string_equal(hal->key, "hal.dll/5E2A11002000/123456789ABCDEF001020304050607082A");
    const kdh_target_module_t *drv = kdh_target_module_at(t, 2);
    assert_string_equal(drv->name, "LeakDrv");
    assert_string_equal(drv->key, "LeakDrv.sys/112233442000/123456789ABCDEF001020304050607083");
    /* lookup by address: inside, at the end, between modules */
    assert_ptr_equal(kdh_target_module_by_addr(t, L.base[1] + 0x1FFF), hal);
    assert_ptr_equal(kdh_target_module_by_addr(t, L.base[0]), nt);
    assert_null(kdh_target_module_by_addr(t, L.base[1] + 0x2000));
    assert_null(kdh_target_module_by_addr(t, L.base[0] - 1));
    assert_ptr_equal(kdh_target_module_by_name(t, "leakdrv.sys"), drv);
    /* a second run is served from the caches: nothing more to fetch */
    assert_int_equal(drive(t, &m, kdh_target_step_discover, &fetches, &err), KDH_OK);
    assert_int_equal(fetches, 0);
    kdh_target_free(t);
    fm_free(&m);
}

static void test_x64_walk(void **state)
{
    (void)state;
    check_machine(1);
}

static void test_x86_walk(void **state)
{
    (void)state;
    check_machine(0);
}

static void test_key_format(void **state)
{
    (void)state;
    char out[200];
    /* docs/run-format.md's example, written out by hand */
    static const uint8_t g[16] = {0xC8, 0xED, 0xE7, 0x6E, 0x91, 0xE8, 0xC6, 0xD4,
                                  0x4C, 0x4C, 0x44, 0x20, 0x50, 0x44, 0x42, 0x2E};
    assert_int_equal(kdh_target_module_key("ntoskrnl.exe", 0xA30A731A, 0x4000, g, 1, out, sizeof out), KDH_OK);
    assert_string_equal(out, "ntoskrnl.exe/A30A731A4000/6EE7EDC8E891D4C64C4C44205044422E1");
    assert_int_equal(kdh_target_module_key("LeakDrv.sys", 0x5E2A1100, 0x4000, NULL, 0, out, sizeof out), KDH_OK);
    assert_string_equal(out, "LeakDrv.sys/5E2A11004000");
    assert_int_equal(kdh_target_module_key("x.sys", 0x1, 0xA000, NULL, 0, out, sizeof out), KDH_OK);
    assert_string_equal(out, "x.sys/00000001a000");
    assert_int_not_equal(kdh_target_module_key("ntoskrnl.exe", 1, 1, g, 1, out, 20), KDH_OK);
}

static void test_kdbg_bad(void **state)
{
    (void)state;
    fakemem_t m;
    layout_t L;
    build_machine(&m, 1, &L);
    uint8_t *kb = NULL;
    for (int i = 0; i < m.n; i++)
        if (m.r[i].va == L.kdbg)
            kb = m.r[i].b;
    kdh_err_t err;
    unsigned f;
    /* wrong OwnerTag */
    kdh_put_u32(kb + 0x10, 0x4742444C);
    kdh_target_t *t = new_target(&L, 1, L.list_ptr);
    assert_int_equal(drive(t, &m, kdh_target_step_kdbg, &f, &err), KDH_ECORRUPT);
    assert_non_null(strstr(err.msg, "KDBG"));
    kdh_target_free(t);
    /* absurd Size */
    kdh_put_u32(kb + 0x10, 0x4742444B);
    kdh_put_u32(kb + 0x14, 0x100000);
    t = new_target(&L, 1, L.list_ptr);
    assert_int_equal(drive(t, &m, kdh_target_step_kdbg, &f, &err), KDH_ECORRUPT);
    kdh_target_free(t);
    kdh_put_u32(kb + 0x14, 0x10);
    t = new_target(&L, 1, L.list_ptr);
    assert_int_equal(drive(t, &m, kdh_target_step_kdbg, &f, &err), KDH_ECORRUPT);
    kdh_target_free(t);
    /* DebuggerDataList pointing to unreadable memory, and to user space */
    kdh_put_u32(kb + 0x14, 0x368);
    t = new_target(&L, 1, 0xFFFFF80000FF0000ull);
    assert_int_equal(drive(t, &m, kdh_target_step_kdbg, &f, &err), KDH_ERANGE);
    kdh_target_free(t);
    t = new_target(&L, 1, 0x10000);
    assert_int_equal(drive(t, &m, kdh_target_step_kdbg, &f, &err), KDH_ECORRUPT);
    kdh_target_free(t);
    /* a block shorter than our read: fields past Size are 0, not garbage */
    kdh_put_u32(kb + 0x14, 0x200);
    t = new_target(&L, 1, L.list_ptr);
    assert_int_equal(drive(t, &m, kdh_target_step_kdbg, &f, &err), KDH_OK);
    assert_true(kdh_target_kdbg(t)->mm_special_pool_tag == 0);
    assert_true(kdh_target_kdbg(t)->pool_track_table != 0);
    kdh_target_free(t);
    /* Header.Size 0x250: MmAllocatedNonPagedPool (0x250..0x258) lies past the block's end */
    kdh_put_u32(kb + 0x14, 0x250);
    t = new_target(&L, 1, L.list_ptr);
    assert_int_equal(drive(t, &m, kdh_target_step_kdbg, &f, &err), KDH_OK);
    assert_true(kdh_target_kdbg(t)->mm_allocated_non_paged_pool == 0);
    assert_true(kdh_target_kdbg(t)->mm_paged_pool_commit == L.base[0] + 0xE020);
    kdh_target_free(t);
    /* a field cut by Header.Size is not half read: Size 0x254 still lacks it */
    kdh_put_u32(kb + 0x14, 0x254);
    t = new_target(&L, 1, L.list_ptr);
    assert_int_equal(drive(t, &m, kdh_target_step_kdbg, &f, &err), KDH_OK);
    assert_true(kdh_target_kdbg(t)->mm_allocated_non_paged_pool == 0);
    kdh_target_free(t);
    fm_free(&m);
}

/* Lenient discovery: a DebuggerDataList (or its Flink) that points at an unmapped page costs
 * only the block; the module list is still walked and the reason is kept. */
static void test_lenient_unreadable_kdbg(void **state)
{
    (void)state;
    fakemem_t m;
    layout_t L;
    build_machine(&m, 1, &L);
    kdh_err_t err;
    unsigned f;
    kdh_target_t *t = new_target(&L, 1, 0xFFFFF80000FF0000ull); /* kernel address, nothing mapped */
    assert_int_equal(drive(t, &m, kdh_target_step_discover_lenient, &f, &err), KDH_OK);
    assert_null(kdh_target_kdbg(t));
    assert_non_null(kdh_target_kdbg_error(t));
    assert_non_null(strstr(kdh_target_kdbg_error(t), "DebuggerDataList at 0xfffff80000ff0000 is unreadable"));
    assert_int_equal(kdh_target_module_count(t), 3);
    kdh_target_free(t);
    /* the list entry is readable but its Flink leads to an unmapped block */
    for (int i = 0; i < m.n; i++)
        if (m.r[i].va == L.list_ptr)
            put_ptr(&m, m.r[i].b, 0xFFFFF80000FE0000ull);
    t = new_target(&L, 1, L.list_ptr);
    assert_int_equal(drive(t, &m, kdh_target_step_discover_lenient, &f, &err), KDH_OK);
    assert_null(kdh_target_kdbg(t));
    assert_non_null(strstr(kdh_target_kdbg_error(t), "KDDEBUGGER_DATA64 header"));
    assert_int_equal(kdh_target_module_count(t), 3);
    kdh_target_free(t);
    fm_free(&m);
}

/* A new kernel base is a new boot: the lenient step reads the block again instead of keeping the
 * previous boot's failure. */
static void test_lenient_kdbg_retried_after_reboot(void **state)
{
    (void)state;
    fakemem_t m;
    layout_t L;
    build_machine(&m, 1, &L);
    kdh_err_t err;
    unsigned f;
    kdh_target_t *t = new_target(&L, 1, 0x10000); /* user-space DebuggerDataList: damaged */
    assert_int_equal(drive(t, &m, kdh_target_step_discover_lenient, &f, &err), KDH_OK);
    assert_non_null(kdh_target_kdbg_error(t));
    kdh_wire_get_version_t v = *kdh_target_version(t);
    v.kern_base = L.base[0] + 0x10000000; /* the next boot: another base, a sound block */
    v.debugger_data_list = L.list_ptr;
    assert_int_equal(kdh_target_set_version(t, &v, &err), KDH_OK);
    assert_int_equal(drive(t, &m, kdh_target_step_discover_lenient, &f, &err), KDH_OK);
    assert_null(kdh_target_kdbg_error(t));
    assert_non_null(kdh_target_kdbg(t));
    assert_true(kdh_target_kdbg(t)->address == L.kdbg);
    kdh_target_free(t);
    fm_free(&m);
}

static void test_hostile_cycle_and_names(void **state)
{
    (void)state;
    for (int x64 = 0; x64 <= 1; x64++) {
        fakemem_t m;
        layout_t L;
        build_machine(&m, x64, &L);
        /* entry 2 points back at entry 1 (never at the head); entry 1 claims a 64 KiB name */
        for (int i = 0; i < m.n; i++) {
            if (m.r[i].va == L.e[2])
                put_ptr(&m, m.r[i].b, L.e[1]);
            if (m.r[i].va == L.e[1]) {
                kdh_put_u16(m.r[i].b + (x64 ? 0x58 : 0x2C), 0xFFFE);
                kdh_put_u16(m.r[i].b + (x64 ? 0x5A : 0x2E), 0xFFFE);
            }
        }
        kdh_target_t *t = new_target(&L, x64, L.list_ptr);
        kdh_err_t err;
        unsigned f;
        assert_int_equal(drive(t, &m, kdh_target_step_modules, &f, &err), KDH_OK);
        assert_int_equal(kdh_target_module_count(t), 3);
        const char *why = NULL;
        assert_true(kdh_target_modules_truncated(t, &why));
        assert_non_null(strstr(why, "loops"));
        assert_true(kdh_target_module_at(t, 0)->ok);
        assert_false(kdh_target_module_at(t, 1)->ok);
        assert_non_null(strstr(kdh_target_module_at(t, 1)->error, "BaseDllName length 65534"));
        assert_true(kdh_target_module_at(t, 2)->ok); /* the walk went on */
        assert_true(f < 40);
        kdh_target_free(t);
        fm_free(&m);
    }
}

static void test_hostile_pointer_outside(void **state)
{
    (void)state;
    fakemem_t m;
    layout_t L;
    build_machine(&m, 1, &L);
    for (int i = 0; i < m.n; i++) {
        if (m.r[i].va == L.e[1])
            kdh_put_u64(m.r[i].b, 0x0000000000401000ull); /* user space */
        if (m.r[i].va == L.e[0])
            kdh_put_u64(m.r[i].b + 0x30, 0x1000); /* DllBase in user space */
    }
    kdh_target_t *t = new_target(&L, 1, L.list_ptr);
    kdh_err_t err;
    unsigned f;
    assert_int_equal(drive(t, &m, kdh_target_step_modules, &f, &err), KDH_OK);
    assert_int_equal(kdh_target_module_count(t), 2);
    const char *why;
    assert_true(kdh_target_modules_truncated(t, &why));
    assert_non_null(strstr(why, "outside kernel space"));
    assert_false(kdh_target_module_at(t, 0)->ok);
    assert_non_null(strstr(kdh_target_module_at(t, 0)->error, "DllBase"));
    kdh_target_free(t);
    /* the head's Flink into unmapped kernel memory: the entry is unreadable, the walk ends */
    for (int i = 0; i < m.n; i++)
        if (m.r[i].va == L.head)
            kdh_put_u64(m.r[i].b, 0xFFFFF80000F00000ull);
    t = new_target(&L, 1, L.list_ptr);
    assert_int_equal(drive(t, &m, kdh_target_step_modules, &f, &err), KDH_OK);
    assert_int_equal(kdh_target_module_count(t), 0);
    assert_true(kdh_target_modules_truncated(t, &why));
    assert_non_null(strstr(why, "unreadable"));
    kdh_target_free(t);
    fm_free(&m);
}

static void test_hostile_10000_entries(void **state)
{
    (void)state;
    fakemem_t m;
    memset(&m, 0, sizeof m);
    m.x64 = 1;
    uint64_t head = 0xFFFFF80000100000ull, first = 0xFFFFF80001000000ull;
    put_ptr(&m, fm_add(&m, head, 16), first);
    /* 10000 entries of 0x80 bytes each, all named "a.sys", images nowhere (each gets an error) */
    uint8_t *blk = fm_add(&m, first, 10000u * 0x80);
    for (uint32_t i = 0; i < 10000; i++) {
        uint8_t *e = blk + (size_t)i * 0x80;
        uint64_t va = first + (uint64_t)i * 0x80;
        kdh_put_u64(e, i == 9999 ? head : va + 0x80);
        kdh_put_u64(e + 0x30, 0xFFFFF80100000000ull + (uint64_t)i * 0x10000);
        kdh_put_u32(e + 0x40, 0x1000);
        kdh_put_u16(e + 0x58, 10);
        kdh_put_u16(e + 0x5A, 10);
        kdh_put_u64(e + 0x60, va + 0x68);
        const char *n = "a.sys";
        for (int k = 0; k < 5; k++)
            kdh_put_u16(e + 0x68 + 2 * k, (uint16_t)n[k]);
    }
    layout_t L = {.head = head};
    L.base[0] = 0xFFFFF80000400000ull;
    kdh_target_t *t = new_target(&L, 1, head);
    kdh_err_t err;
    unsigned f;
    assert_int_equal(drive(t, &m, kdh_target_step_modules, &f, &err), KDH_OK);
    assert_int_equal(kdh_target_module_count(t), KDH_TARGET_MAX_MODULES);
    const char *why;
    assert_true(kdh_target_modules_truncated(t, &why));
    assert_non_null(strstr(why, "4096"));
    assert_false(kdh_target_module_at(t, 5)->ok);
    assert_string_equal(kdh_target_module_at(t, 5)->file, "a.sys");
    kdh_target_free(t);
    fm_free(&m);
}

static void test_cache_rules(void **state)
{
    (void)state;
    kdh_target_t *t;
    kdh_err_t err;
    assert_int_equal(kdh_target_new(&t, &err), KDH_OK);
    uint8_t a[16], b[0x200];
    for (int i = 0; i < 16; i++)
        a[i] = (uint8_t)i;
    uint8_t big[0x200];
    memset(big, 0xAB, sizeof big);
    uint64_t va = 0xFFFFF80000001F00ull;
    /* 0x80 of 0x200 bytes came: the target failed at 0x1F80, so the rest of that page
     * (0x1F80..0x2000) is unreadable; the next page (asked, not answered) stays unknown */
    assert_int_equal(kdh_target_fill(t, KDH_TARGET_STOP, va, big, 0x80, 0x200, &err), KDH_OK);
    uint32_t got = 99;
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, va, b, 0x100, &got), KDH_OK);
    assert_int_equal(got, 0x80);
    assert_memory_equal(b, big, 0x80);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, 0xFFFFF80000001FF0ull, b, 4, &got), KDH_OK);
    assert_int_equal(got, 0);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, 0xFFFFF80000002000ull, b, 4, &got), KDH_ENOTCACHED);
    uint64_t nva;
    uint32_t nlen;
    assert_int_equal(kdh_target_read(t, KDH_TARGET_BOOT, 0xFFFFF80000002000ull, b, 4, &got), KDH_ENOTCACHED);
    kdh_target_class_t cls;
    kdh_target_need(t, &nva, &nlen, &cls);
    assert_true(nva == 0xFFFFF80000002000ull && nlen == 4 && cls == KDH_TARGET_BOOT);
    /* adjacent boot fills serve one read across both; a miss names only the missing middle */
    assert_int_equal(kdh_target_fill(t, KDH_TARGET_BOOT, 0xFFFFF80000003000ull, a, 16, 16, &err), KDH_OK);
    assert_int_equal(kdh_target_fill(t, KDH_TARGET_BOOT, 0xFFFFF80000003010ull, a, 16, 16, &err), KDH_OK);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_BOOT, 0xFFFFF80000003008ull, b, 16, &got), KDH_OK);
    assert_int_equal(got, 16);
    assert_memory_equal(b, a + 8, 8);
    assert_memory_equal(b + 8, a, 8);
    assert_int_equal(kdh_target_fill(t, KDH_TARGET_BOOT, 0xFFFFF80000003030ull, a, 16, 16, &err), KDH_OK);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_BOOT, 0xFFFFF80000003000ull, b, 0x40, &got), KDH_ENOTCACHED);
    kdh_target_need(t, &nva, &nlen, &cls);
    assert_true(nva == 0xFFFFF80000003020ull && nlen == 0x10);
    /* a new stop drops the per-stop bytes only */
    kdh_target_sync_stop(t, 5);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, va, b, 4, &got), KDH_ENOTCACHED);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, 0xFFFFF80000003000ull, b, 4, &got), KDH_OK);
    assert_int_equal(got, 4);
    /* bytes said to have come without the bytes: refused (it used to copy from NULL) */
    assert_int_equal(kdh_target_fill(t, KDH_TARGET_STOP, 0xFFFFF80000005000ull, NULL, 8, 8, &err), KDH_EINVAL);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, 0xFFFFF80000005000ull, b, 8, &got), KDH_ENOTCACHED);
    /* nothing came: only the unreadable page is recorded, no bytes are needed */
    assert_int_equal(kdh_target_fill(t, KDH_TARGET_STOP, 0xFFFFF80000005000ull, NULL, 0, 8, &err), KDH_OK);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, 0xFFFFF80000005000ull, b, 8, &got), KDH_OK);
    assert_int_equal(got, 0);
    /* a failed read in the last page of the address space marks up to the end of the request */
    assert_int_equal(kdh_target_fill(t, KDH_TARGET_STOP, 0xFFFFFFFFFFFFFF00ull, big, 0x10, 0x80, &err), KDH_OK);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, 0xFFFFFFFFFFFFFF00ull, b, 0x80, &got), KDH_OK);
    assert_int_equal(got, 0x10);
    assert_int_equal(kdh_target_read(t, KDH_TARGET_STOP, 0xFFFFFFFFFFFFFF80ull, b, 4, &got), KDH_ENOTCACHED);
    kdh_target_free(t);
}

static void test_overrides(void **state)
{
    (void)state;
    fakemem_t m;
    layout_t L;
    build_machine(&m, 1, &L);
    kdh_target_t *t = new_target(&L, 1, L.list_ptr);
    kdh_err_t err;
    unsigned f;
    assert_int_equal(drive(t, &m, kdh_target_step_discover, &f, &err), KDH_OK);
    assert_int_equal(kdh_target_set_symbol_path(t, "", NULL, &err), KDH_OK);
    assert_int_equal(kdh_target_add_override(t, "PoolHitTag=nt+0x1234", &err), KDH_OK);
    assert_int_equal(kdh_target_add_override(t, "hal!HalFoo=0xFFFFF80000801000", &err), KDH_OK);
    assert_int_not_equal(kdh_target_add_override(t, "PoolHitTag", &err), KDH_OK);
    assert_int_not_equal(kdh_target_add_override(t, "X=nt+zz", &err), KDH_OK);
    uint64_t a = 0;
    char src[32];
    assert_int_equal(kdh_target_step_resolve(t, "nt!PoolHitTag", &a, src, sizeof src, &err), KDH_OK);
    assert_true(a == L.base[0] + 0x1234);
    assert_string_equal(src, "--symbol");
    assert_int_equal(kdh_target_step_resolve(t, "hal!HalFoo", &a, src, sizeof src, &err), KDH_OK);
    assert_true(a == 0xFFFFF80000801000ull);
    kdh_target_free(t);
    fm_free(&m);
}

static int resolve_missing(kdh_target_t *t, kdh_err_t *err)
{
    uint64_t a;
    return kdh_target_step_resolve(t, "nt!MmAllocateSpecialPool", &a, NULL, 0, err);
}

static void test_missing_symbol_message(void **state)
{
    (void)state;
    fakemem_t m;
    layout_t L;
    build_machine(&m, 1, &L);
    kdh_target_t *t = new_target(&L, 1, L.list_ptr);
    kdh_err_t err;
    unsigned f;
    assert_int_equal(drive(t, &m, kdh_target_step_discover, &f, &err), KDH_OK);
    assert_int_equal(kdh_target_set_symbol_path(t, "/nonexistent/kdh-symbols", NULL, &err), KDH_OK);
    assert_int_equal(drive(t, &m, resolve_missing, &f, &err), KDH_ENOTFOUND);
    print_message("%s\n", err.msg);
    assert_non_null(strstr(err.msg, "nt!MmAllocateSpecialPool not found: tried ntkrnlmp.pdb"));
    assert_non_null(strstr(err.msg, "exports"));
    assert_non_null(strstr(err.msg, "--symbol MmAllocateSpecialPool=nt+0xRVA"));
    kdh_target_free(t);
    fm_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x64_walk),
        cmocka_unit_test(test_x86_walk),
        cmocka_unit_test(test_key_format),
        cmocka_unit_test(test_kdbg_bad),
        cmocka_unit_test(test_lenient_unreadable_kdbg),
        cmocka_unit_test(test_lenient_kdbg_retried_after_reboot),
        cmocka_unit_test(test_hostile_cycle_and_names),
        cmocka_unit_test(test_hostile_pointer_outside),
        cmocka_unit_test(test_hostile_10000_entries),
        cmocka_unit_test(test_cache_rules),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_missing_symbol_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
