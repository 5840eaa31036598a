/* test_sim_machine.c: the simulated machine against facts it did not produce: symbol addresses
 * from llvm-pdbutil's view of the fixture PDBs, image sizes from the PE files on disk, the
 * documented kernel-structure offsets (kd-protocol.md sections 3.4, 4, 5), the stack memory at a
 * stop, and the fixture kernel's own pool tracking table compared with the ground-truth file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "fixture_oracle.h"
#include "machine.h"

#define TAG_LEAK 0x6B61654Cu

static char g_dir[2][512];

static const char *fixture_dir(sim_arch_t a)
{
    return g_dir[a];
}

/* ---- independent oracles ---------------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* SizeOfImage and the VirtualAddress of section `sec` (1-based), read from the file by hand. */
static void pe_facts(const char *path, uint32_t *size_of_image, int sec, uint32_t *sec_va)
{
    size_t n;
    uint8_t *b = slurp(path, &n);
    assert_non_null(b);
    uint32_t pe = le32(b + 0x3C);
    uint16_t nsec = (uint16_t)(b[pe + 6] | b[pe + 7] << 8);
    uint16_t optsz = (uint16_t)(b[pe + 20] | b[pe + 21] << 8);
    const uint8_t *opt = b + pe + 24;
    if (size_of_image)
        *size_of_image = le32(opt + 56);
    if (sec_va) {
        assert_true(sec >= 1 && sec <= nsec);
        *sec_va = le32(opt + optsz + 40 * (sec - 1) + 12);
    }
    free(b);
}

/* RVA of a public symbol according to llvm-pdbutil-14 (seg:off, both decimal, + the section's RVA). */
static uint32_t pdb_public_rva(sim_arch_t a, const char *image, const char *pdb, const char *sym)
{
    char cmd[1200], line[512], want[128];
    snprintf(cmd, sizeof cmd, "llvm-pdbutil-14 dump -publics '%s/%s'", fixture_dir(a), pdb);
    snprintf(want, sizeof want, "`%s`", sym);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    unsigned seg = 0, off = 0;
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        if (strstr(line, want)) {
            if (fgets(line, sizeof line, p)) {
                const char *q = strstr(line, "addr = ");
                if (q && sscanf(q, "addr = %u:%u", &seg, &off) == 2)
                    found = 1;
            }
            break;
        }
    }
    pclose(p);
    if (!found)
        fail_msg("symbol %s not found in %s", sym, pdb);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fixture_dir(a), image);
    uint32_t va = 0;
    pe_facts(path, NULL, (int)seg, &va);
    return va + off;
}

static const char *sym_name(sim_arch_t a, const char *x64, const char *x86)
{
    return a == SIM_ARCH_X64 ? x64 : x86;
}

/* Procedure ranges from `llvm-pdbutil dump -symbols` (static functions included). */
typedef struct fn_range {
    const char *module, *pdb, *name;
    uint32_t rva, size;
} fn_range_t;

static fn_range_t g_fns[] = {
    {"ntoskrnl.exe", "ntkrnlmp.pdb", "DbgBreakPoint", 0, 0},
    {"ntoskrnl.exe", "ntkrnlmp.pdb", "ExpInsertPoolTracker", 0, 0},
    {"ntoskrnl.exe", "ntkrnlmp.pdb", "ExpRemovePoolTracker", 0, 0},
    {"ntoskrnl.exe", "ntkrnlmp.pdb", "ExAllocatePoolWithTag", 0, 0},
    {"ntoskrnl.exe", "ntkrnlmp.pdb", "ExAllocatePool2", 0, 0},
    {"ntoskrnl.exe", "ntkrnlmp.pdb", "ExFreePoolWithTag", 0, 0},
    {"ntoskrnl.exe", "ntkrnlmp.pdb", "MmAllocateSpecialPool", 0, 0},
    {"ntoskrnl.exe", "ntkrnlmp.pdb", "PspSystemThreadStartup", 0, 0},
    {"leakdrv.sys", "leakdrv.pdb", "LeakDrvWorkA", 0, 0},
    {"leakdrv.sys", "leakdrv.pdb", "LeakpHandleRequest", 0, 0},
    {"leakdrv.sys", "leakdrv.pdb", "LeakpBuildContext", 0, 0},
    {"leakdrv.sys", "leakdrv.pdb", "LeakpAllocateContext", 0, 0},
    {"leakdrv.sys", "leakdrv.pdb", "LeakDrvWorkB", 0, 0},
    {"leakdrv.sys", "leakdrv.pdb", "LeakpQueueItem", 0, 0},
    {"leakdrv.sys", "leakdrv.pdb", "LeakDrvFree", 0, 0},
    {"leakdrv.sys", "leakdrv.pdb", "LeakpRetire", 0, 0},
};

static void load_fn_ranges(sim_arch_t a)
{
    for (size_t i = 0; i < sizeof g_fns / sizeof g_fns[0]; i++)
        if (fo_symbol_rva(fixture_dir(a), g_fns[i].module, g_fns[i].pdb, "-symbols", g_fns[i].name, &g_fns[i].rva,
                          &g_fns[i].size) != 0 || g_fns[i].size == 0)
            fail_msg("procedure %s not in %s", g_fns[i].name, g_fns[i].pdb);
}

/* The function a truth frame lies in: frame 0 must be the int 3 at a function's first byte;
 * outer frames are return addresses, so they may equal the function's end. */
static const char *frame_function(const char *module, uint32_t rva, int inner)
{
    for (size_t i = 0; i < sizeof g_fns / sizeof g_fns[0]; i++) {
        const fn_range_t *f = &g_fns[i];
        if (strcmp(f->module, module) != 0)
            continue;
        if (inner ? rva == f->rva : (rva > f->rva && rva <= f->rva + f->size))
            return f->name;
    }
    return "?";
}

static const char *const k_path_a[] = {"DbgBreakPoint", "ExpInsertPoolTracker", "ExAllocatePoolWithTag",
                                       "LeakpAllocateContext", "LeakpBuildContext", "LeakpHandleRequest",
                                       "LeakDrvWorkA", "PspSystemThreadStartup", NULL};
static const char *const k_path_b[] = {"DbgBreakPoint", "ExpInsertPoolTracker", "ExAllocatePoolWithTag",
                                       "ExAllocatePool2", "LeakpQueueItem", "LeakDrvWorkB",
                                       "PspSystemThreadStartup", NULL};
static const char *const k_path_free[] = {"DbgBreakPoint", "ExpRemovePoolTracker", "ExFreePoolWithTag",
                                          "LeakpRetire", "LeakDrvFree", "PspSystemThreadStartup", NULL};

/* 0 path A, 1 path B, 2 free; fails unless the stack is exactly one of them. */
static int match_path(json_t *stack)
{
    const char *const *paths[3] = {k_path_a, k_path_b, k_path_free};
    for (int p = 0; p < 3; p++) {
        size_t n = 0;
        while (paths[p][n])
            n++;
        if (json_array_size(stack) != n)
            continue;
        size_t k = 0;
        for (; k < n; k++) {
            json_t *f = json_array_get(stack, k);
            const char *mod = json_string_value(json_object_get(f, "module"));
            if (!mod || strcmp(frame_function(mod, (uint32_t)json_integer_value(json_object_get(f, "rva")), k == 0),
                               paths[p][k]) != 0)
                break;
        }
        if (k == n)
            return p;
    }
    char *text = json_dumps(stack, JSON_COMPACT);
    fail_msg("truth stack matches no leakdrv path: %s", text);
    return -1;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static sim_machine_t *boot(sim_arch_t a, int cpus, uint64_t seed, const char *workload, const char *truth)
{
    sim_config_t c = {.arch = a, .seed = seed, .cpus = cpus, .fixture_dir = fixture_dir(a),
                      .workload = workload, .truth_path = truth};
    kdh_err_t err = {0};
    sim_machine_t *m = sim_machine_create(&c, &err);
    if (!m)
        fail_msg("create: %s", err.msg);
    if (sim_machine_reboot(m, &err) != KDH_OK)
        fail_msg("reboot: %s", err.msg);
    return m;
}

static uint64_t rd_ptr(sim_machine_t *m, uint64_t va, int psize)
{
    uint8_t b[8] = {0};
    uint32_t done = 0;
    assert_int_equal(sim_machine_read(m, va, b, (uint32_t)psize, &done), KDH_OK);
    assert_int_equal(done, (uint32_t)psize);
    return psize == 8 ? le64(b) : (uint64_t)(int64_t)(int32_t)le32(b);
}

static uint32_t rd32(sim_machine_t *m, uint64_t va)
{
    uint8_t b[4];
    uint32_t done = 0;
    sim_machine_read(m, va, b, 4, &done);
    assert_int_equal(done, 4);
    return le32(b);
}

static void run_until(sim_machine_t *m, sim_stop_kind_t kind, sim_stop_t *s)
{
    kdh_err_t err = {0};
    for (int i = 0; i < 2000; i++) {
        if (sim_machine_run(m, 10 * 1000 * 1000, s, &err) != KDH_OK)
            fail_msg("run: %s", err.msg);
        if (s->kind == kind)
            return;
    }
    fail_msg("no stop of kind %d", (int)kind);
}

static void skip_int3(sim_machine_t *m, const sim_stop_t *s, int psize)
{
    uint8_t ctx[0x4D0];
    size_t n = sim_machine_context_size(m);
    assert_int_equal(sim_machine_get_context(m, s->cpu, ctx, n), KDH_OK);
    size_t ip = psize == 8 ? 0xF8 : 0xB8;
    uint64_t pc = psize == 8 ? le64(ctx + ip) : (uint64_t)(int64_t)(int32_t)le32(ctx + ip);
    assert_true(pc == s->pc);
    pc += 1;
    for (int i = 0; i < psize; i++)
        ctx[ip + (size_t)i] = (uint8_t)(pc >> (8 * i));
    assert_int_equal(sim_machine_set_context(m, s->cpu, ctx, n), KDH_OK);
}

static uint64_t arm_pool_hit_tag(sim_machine_t *m, sim_arch_t a, uint32_t tag)
{
    sim_info_t info;
    sim_machine_info(m, &info);
    uint64_t va = info.kern_base + pdb_public_rva(a, "ntoskrnl.exe", "ntkrnlmp.pdb", sym_name(a, "PoolHitTag", "_PoolHitTag"));
    uint8_t b[4] = {(uint8_t)tag, (uint8_t)(tag >> 8), (uint8_t)(tag >> 16), (uint8_t)(tag >> 24)};
    uint32_t done = 0;
    assert_int_equal(sim_machine_write(m, va, b, 4, &done), KDH_OK);
    assert_int_equal(done, 4);
    return va;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void check_boot_structures(sim_arch_t a)
{
    sim_machine_t *m = boot(a, 2, 7, "leak", NULL);
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    sim_info_t info;
    sim_machine_info(m, &info);
    assert_int_equal(info.boot, 1);
    assert_int_equal(info.pointer_size, psize);
    assert_int_equal(info.machine_type, a == SIM_ARCH_X64 ? 0x8664 : 0x14C);
    if (a == SIM_ARCH_X64)
        assert_true((info.kern_base >> 40) == 0xfffff8);
    else
        assert_true((info.kern_base >> 28) == 0xffffffff8ull);

    /* Boot reports load-symbols for nt then hal. */
    sim_stop_t s;
    kdh_err_t err = {0};
    assert_int_equal(sim_machine_run(m, 1000, &s, &err), KDH_OK);
    assert_int_equal(s.kind, SIM_STOP_LOAD_SYMBOLS);
    assert_true(s.base == info.kern_base);
    assert_non_null(strstr(s.path, "ntoskrnl.exe"));
    assert_int_equal(sim_machine_run(m, 1000, &s, &err), KDH_OK);
    assert_int_equal(s.kind, SIM_STOP_LOAD_SYMBOLS);
    assert_non_null(strstr(s.path, "hal.dll"));
    uint64_t hal_base = s.base;

    /* PsLoadedModuleList with the kd-protocol.md section 5 offsets. */
    static const char *const names[] = {"ntoskrnl.exe", "hal.dll", "leakdrv.sys", "busydrv.sys", "framedrv.sys", "olddrv.sys"};
    uint32_t o_base = psize == 8 ? 0x30 : 0x18, o_size = psize == 8 ? 0x40 : 0x20, o_name = psize == 8 ? 0x58 : 0x2C;
    uint64_t head = info.ps_loaded_module_list, e = rd_ptr(m, head, psize);
    int n = 0;
    while (e != head && n < 16) {
        assert_true(n < 6);
        uint64_t base = rd_ptr(m, e + o_base, psize);
        uint32_t size = rd32(m, e + o_size);
        uint8_t us[16];
        uint32_t done;
        sim_machine_read(m, e + o_name, us, 16, &done);
        uint16_t len = (uint16_t)(us[0] | us[1] << 8);
        uint64_t buf = psize == 8 ? le64(us + 8) : (uint64_t)(int64_t)(int32_t)le32(us + 4);
        char wide[128] = {0}, name[64] = {0};
        assert_true(len < sizeof wide);
        sim_machine_read(m, buf, wide, len, &done);
        assert_int_equal(done, len);
        for (int i = 0; i < len / 2; i++)
            name[i] = wide[2 * i];
        assert_string_equal(name, names[n]);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", fixture_dir(a), names[n]);
        uint32_t want_size;
        pe_facts(path, &want_size, 0, NULL);
        assert_int_equal(size, want_size);
        uint8_t mz[2];
        sim_machine_read(m, base, mz, 2, &done);
        assert_memory_equal(mz, "MZ", 2);
        if (n == 0)
            assert_true(base == info.kern_base);
        if (n == 1)
            assert_true(base == hal_base);
        /* Blink of the next entry points back here. */
        uint64_t next = rd_ptr(m, e, psize);
        assert_true(rd_ptr(m, next + psize, psize) == e);
        e = next;
        n++;
    }
    assert_int_equal(n, 6);

    /* KDDEBUGGER_DATA64 through the DebuggerDataList (section 3.4 offsets). */
    uint64_t kdbg = rd_ptr(m, info.debugger_data_list, psize);
    assert_int_equal(rd32(m, kdbg + 0x10), 0x4742444B);
    assert_true(rd32(m, kdbg + 0x14) >= 0x340);
    assert_true(rd_ptr(m, kdbg + 0x18, 8) == info.kern_base);
    assert_true(rd_ptr(m, kdbg + 0x48, 8) == info.ps_loaded_module_list);
    uint64_t bws = rd_ptr(m, kdbg + 0x20, 8);
    uint8_t cc = 0;
    uint32_t done;
    sim_machine_read(m, bws, &cc, 1, &done);
    assert_int_equal(cc, 0xCC);
    uint64_t want_spt = info.kern_base + pdb_public_rva(a, "ntoskrnl.exe", "ntkrnlmp.pdb", sym_name(a, "MmSpecialPoolTag", "_MmSpecialPoolTag"));
    assert_true(rd_ptr(m, kdbg + 0x238, 8) == want_spt);
    uint64_t want_ptt = info.kern_base + pdb_public_rva(a, "ntoskrnl.exe", "ntkrnlmp.pdb", sym_name(a, "PoolTrackTable", "_PoolTrackTable"));
    assert_true(rd_ptr(m, kdbg + 0x1B8, 8) == want_ptt);
    uint16_t off_cur = (uint16_t)(rd32(m, kdbg + 0x2B4) & 0xffff);
    assert_int_equal(off_cur, psize == 8 ? 8 : 4);

    /* KPRCB.CurrentThread (via KiProcessorBlock and OffsetPrcbCurrentThread) = control space. */
    uint64_t pb = rd_ptr(m, kdbg + 0x218, 8);
    for (int c = 0; c < 2; c++) {
        uint64_t prcb = rd_ptr(m, pb + (uint64_t)c * psize, psize);
        uint64_t cur = rd_ptr(m, prcb + off_cur, psize);
        assert_true(cur != 0);
        if (a == SIM_ARCH_X64) {
            uint8_t b[8];
            assert_int_equal(sim_machine_read_control(m, c, 3, b, 8, &done), KDH_OK);
            assert_true(le64(b) == cur);
            assert_int_equal(sim_machine_read_control(m, c, 1, b, 8, &done), KDH_OK);
            assert_true(le64(b) == prcb);
        }
    }
    sim_machine_destroy(m);
}

static void test_boot_x64(void **state) { (void)state; check_boot_structures(SIM_ARCH_X64); }
static void test_boot_x86(void **state) { (void)state; check_boot_structures(SIM_ARCH_X86); }

/* PoolHitTag breaks: pc on nt's int 3, re-execution without a PC move, single step after. */
static void check_breaks(sim_arch_t a)
{
    sim_machine_t *m = boot(a, 2, 11, "leak", NULL);
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    sim_info_t info;
    sim_machine_info(m, &info);
    arm_pool_hit_tag(m, a, TAG_LEAK);
    uint64_t dbp = info.kern_base + pdb_public_rva(a, "ntoskrnl.exe", "ntkrnlmp.pdb", sym_name(a, "DbgBreakPoint", "_DbgBreakPoint@0"));
    sim_stop_t s, s2;
    run_until(m, SIM_STOP_BREAKPOINT, &s);
    assert_true(s.pc == dbp);
    assert_int_equal(s.exception_code, 0x80000003u);
    uint8_t cc = 0;
    uint32_t done;
    sim_machine_read(m, s.pc, &cc, 1, &done);
    assert_int_equal(cc, 0xCC);

    /* Not skipping the int 3: the same break again at the same time and place. */
    uint64_t t0 = sim_machine_now_ns(m);
    run_until(m, SIM_STOP_BREAKPOINT, &s2);
    assert_true(s2.pc == s.pc);
    assert_int_equal(s2.cpu, s.cpu);
    assert_true(sim_machine_now_ns(m) - t0 < 10);

    /* Return address on the stack (read from memory) = where a single step after the skipped
     * int 3 (the ret) lands. */
    uint8_t ctx[0x4D0];
    sim_machine_get_context(m, s.cpu, ctx, sim_machine_context_size(m));
    uint64_t sp = psize == 8 ? le64(ctx + 0x98) : le32(ctx + 0xC4);
    uint64_t ret = rd_ptr(m, sp, psize);
    skip_int3(m, &s, psize);
    assert_int_equal(sim_machine_set_trace(m, s.cpu, 1), KDH_OK);
    kdh_err_t err = {0};
    assert_int_equal(sim_machine_run(m, 1000000, &s2, &err), KDH_OK);
    assert_int_equal(s2.kind, SIM_STOP_SINGLE_STEP);
    assert_int_equal(s2.exception_code, 0x80000004u);
    assert_true(s2.pc == ret);
    assert_true(ret > info.kern_base && ret < dbp + 0x100000);

    /* And it keeps running to the next break. */
    run_until(m, SIM_STOP_BREAKPOINT, &s2);
    assert_true(s2.pc == dbp);
    sim_machine_destroy(m);
}

static void test_breaks_x64(void **state) { (void)state; check_breaks(SIM_ARCH_X64); }
static void test_breaks_x86(void **state) { (void)state; check_breaks(SIM_ARCH_X86); }

/* Pool tracker counts for 'Leak' (read from guest memory at nt!PoolTrackTable) = truth lines. */
static void check_truth_counts(sim_arch_t a)
{
    char truth[256];
    snprintf(truth, sizeof truth, "%s/sim_machine_truth_%d_%d.jsonl", KDH_BINARY_DIR, (int)a, (int)getpid());
    unlink(truth);
    sim_machine_t *m = boot(a, 3, 5, "leak", truth);
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    sim_info_t info;
    sim_machine_info(m, &info);
    arm_pool_hit_tag(m, a, TAG_LEAK);
    uint64_t dbp = info.kern_base + pdb_public_rva(a, "ntoskrnl.exe", "ntkrnlmp.pdb", sym_name(a, "DbgBreakPoint", "_DbgBreakPoint@0"));
    /* Stop at the 60th break and read the tracker there: Windows (and the fixture kernel) checks
     * PoolHitTag before updating the table, so the table lacks exactly the operation in hand. */
    sim_stop_t s;
    for (int breaks = 0; breaks < 60; breaks++) {
        if (breaks)
            skip_int3(m, &s, psize);
        run_until(m, SIM_STOP_BREAKPOINT, &s);
        assert_true(s.pc == dbp);
    }
    uint32_t done;
    /* Tracker entry for 'Leak', by scanning the table (layout in ntoskrnl.c). */
    uint64_t kdbg = rd_ptr(m, info.debugger_data_list, psize);
    uint64_t ptt_var = rd_ptr(m, kdbg + 0x1B8, 8);
    uint64_t table = rd_ptr(m, ptt_var, psize);
    uint64_t size_va = info.kern_base + pdb_public_rva(a, "ntoskrnl.exe", "ntkrnlmp.pdb", sym_name(a, "PoolTrackTableSize", "_PoolTrackTableSize"));
    uint64_t entries = rd_ptr(m, size_va, psize);
    assert_int_equal(entries, 1024);
    uint32_t esz = psize == 8 ? 0x28 : 0x1C;
    uint32_t allocs = 0, frees = 0;
    int found = 0;
    for (uint64_t i = 0; i < entries; i++) {
        uint8_t e[0x28];
        sim_machine_read(m, table + i * esz, e, esz, &done);
        assert_int_equal(done, esz);
        if (le32(e) != TAG_LEAK)
            continue;
        found = 1;
        uint32_t p_allocs = le32(e + (psize == 8 ? 0x18 : 0x10)), p_frees = le32(e + (psize == 8 ? 0x1C : 0x14));
        allocs = le32(e + 4) + p_allocs;
        frees = le32(e + 8) + p_frees;
        assert_true(p_allocs > 0);  /* path B allocates paged */
    }
    assert_true(found);
    uint64_t pool_lo = rd_ptr(m, kdbg + 0x110, 8), pool_hi = rd_ptr(m, kdbg + 0x118, 8);
    load_fn_ranges(a);
    sim_machine_destroy(m);

    FILE *f = fopen(truth, "r");
    assert_non_null(f);
    char line[8192];
    uint32_t t_alloc = 0, t_free = 0;
    int saw_a = 0, saw_b = 0, saw_free = 0, last_alloc = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        assert_non_null(j);
        const char *kind = json_string_value(json_object_get(j, "kind"));
        assert_non_null(kind);
        assert_string_equal(json_string_value(json_object_get(j, "tag")), "Leak");
        json_t *st = json_object_get(j, "stack");
        int path = match_path(st);
        last_alloc = strcmp(kind, "alloc") == 0;
        assert_int_equal(last_alloc, path != 2);
        if (last_alloc)
            t_alloc++;
        else
            t_free++;
        saw_a |= path == 0;
        saw_b |= path == 1;
        saw_free |= path == 2;
        /* Block addresses lie in the pool the kernel was given (KDDEBUGGER_DATA64 bounds). */
        uint64_t block = strtoull(json_string_value(json_object_get(j, "block")), NULL, 16);
        assert_true(block >= pool_lo && block < pool_hi);
        json_decref(j);
    }
    fclose(f);
    unlink(truth);
    assert_int_equal(t_alloc + t_free, 60);
    assert_int_equal(t_alloc, allocs + (last_alloc ? 1 : 0));
    assert_int_equal(t_free, frees + (last_alloc ? 0 : 1));
    assert_true(saw_a && saw_b && saw_free);
}

static void test_truth_x64(void **state) { (void)state; check_truth_counts(SIM_ARCH_X64); }
static void test_truth_x86(void **state) { (void)state; check_truth_counts(SIM_ARCH_X86); }

static void check_reboot(sim_arch_t a)
{
    sim_machine_t *m = boot(a, 1, 99, "busy", NULL);
    sim_info_t i1, i2;
    sim_machine_info(m, &i1);
    sim_stop_t s;
    kdh_err_t err = {0};
    for (int k = 0; k < 5; k++)
        assert_int_equal(sim_machine_run(m, 1000000, &s, &err), KDH_OK);
    assert_true(sim_machine_now_ns(m) > 0);
    assert_int_equal(sim_machine_reboot(m, &err), KDH_OK);
    sim_machine_info(m, &i2);
    assert_int_equal(i2.boot, 2);
    assert_true(i2.kern_base != i1.kern_base);
    assert_true(i2.ps_loaded_module_list != i1.ps_loaded_module_list);
    assert_true(sim_machine_now_ns(m) == 0);
    assert_int_equal(sim_machine_run(m, 1000, &s, &err), KDH_OK);
    assert_int_equal(s.kind, SIM_STOP_LOAD_SYMBOLS);
    assert_int_equal(s.unload, 1);
    assert_true(s.base == UINT64_MAX);
    assert_int_equal(sim_machine_run(m, 1000, &s, &err), KDH_OK);
    assert_true(s.base == i2.kern_base);
    sim_machine_destroy(m);

    /* Same seed, same machine. */
    sim_machine_t *m2 = boot(a, 1, 99, "busy", NULL);
    sim_info_t i3;
    sim_machine_info(m2, &i3);
    assert_true(i3.kern_base == i1.kern_base);
    sim_machine_destroy(m2);
}

static void test_reboot_x64(void **state) { (void)state; check_reboot(SIM_ARCH_X64); }
static void test_reboot_x86(void **state) { (void)state; check_reboot(SIM_ARCH_X86); }

/* DbgPrint from olddrv (every 64th call) through a workload file; a bad file is refused. */
static void check_print(sim_arch_t a)
{
    char wl[256];
    snprintf(wl, sizeof wl, "%s/sim_machine_wl_%d_%d.txt", KDH_BINARY_DIR, (int)a, (int)getpid());
    FILE *f = fopen(wl, "w");
    assert_non_null(f);
    fprintf(f, "# only olddrv\n\ncall olddrv.sys OldDrvWork 5000   # calls per second\n");
    fclose(f);
    sim_machine_t *m = boot(a, 1, 3, wl, NULL);
    sim_stop_t s;
    run_until(m, SIM_STOP_PRINT, &s);
    assert_int_equal(s.text_len, strlen(s.text));
    assert_true(strncmp(s.text, "olddrv: call 1 seed ", 20) == 0);
    assert_int_equal(s.text[s.text_len - 1], '\n');
    run_until(m, SIM_STOP_PRINT, &s);
    assert_true(strncmp(s.text, "olddrv: call 65 seed ", 21) == 0);
    sim_machine_destroy(m);

    f = fopen(wl, "w");
    assert_non_null(f);
    fprintf(f, "call olddrv.sys OldDrvWork\n");
    fclose(f);
    sim_config_t c = {.arch = a, .seed = 1, .cpus = 1, .fixture_dir = fixture_dir(a), .workload = wl};
    kdh_err_t err = {0};
    assert_null(sim_machine_create(&c, &err));
    assert_int_equal(err.code, KDH_ECORRUPT);
    assert_non_null(strstr(err.msg, ":1:"));
    unlink(wl);
    c.workload = "no-such-preset-or-file";
    assert_null(sim_machine_create(&c, &err));
    assert_int_equal(err.code, KDH_EINVAL);
}

static void test_print_x64(void **state) { (void)state; check_print(SIM_ARCH_X64); }
static void test_print_x86(void **state) { (void)state; check_print(SIM_ARCH_X86); }

/* MmSpecialPoolTag = 'Leak': the block sits at the end of a special-pool page, the stack runs
 * through MmAllocateSpecialPool, and the guard page after it is not mapped. */
static void check_special_pool(sim_arch_t a)
{
    char truth[256];
    snprintf(truth, sizeof truth, "%s/sim_machine_sp_%d_%d.jsonl", KDH_BINARY_DIR, (int)a, (int)getpid());
    unlink(truth);
    sim_machine_t *m = boot(a, 1, 21, "leak", truth);
    sim_info_t info;
    sim_machine_info(m, &info);
    uint32_t spt = 0;
    assert_int_equal(fo_symbol_rva(fixture_dir(a), "ntoskrnl.exe", "ntkrnlmp.pdb", "-publics",
                                   sym_name(a, "MmSpecialPoolTag", "_MmSpecialPoolTag"), &spt, NULL), 0);
    uint8_t tag[4] = {'L', 'e', 'a', 'k'};
    uint32_t done;
    sim_machine_write(m, info.kern_base + spt, tag, 4, &done);
    arm_pool_hit_tag(m, a, TAG_LEAK);
    sim_stop_t s;
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    run_until(m, SIM_STOP_BREAKPOINT, &s);
    sim_machine_destroy(m);

    load_fn_ranges(a);
    FILE *f = fopen(truth, "r");
    assert_non_null(f);
    char line[8192];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    unlink(truth);
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    assert_non_null(j);
    json_t *st = json_object_get(j, "stack");
    json_t *f2 = json_array_get(st, 2);
    assert_string_equal(frame_function(json_string_value(json_object_get(f2, "module")),
                                       (uint32_t)json_integer_value(json_object_get(f2, "rva")), 0),
                        "MmAllocateSpecialPool");
    uint64_t block = strtoull(json_string_value(json_object_get(j, "block")), NULL, 16);
    uint64_t req = (uint64_t)json_integer_value(json_object_get(j, "requested"));
    uint64_t page_end = (block | 0xfff) + 1;
    assert_true(block + req <= page_end && page_end - (block + req) < (uint64_t)(2 * psize));
    json_decref(j);

    /* The guard page: a fresh boot with the same seed repeats the same block. */
    m = boot(a, 1, 21, "leak", NULL);
    sim_machine_write(m, info.kern_base + spt, tag, 4, &done);
    arm_pool_hit_tag(m, a, TAG_LEAK);
    run_until(m, SIM_STOP_BREAKPOINT, &s);
    uint8_t b[2];
    assert_int_equal(sim_machine_read(m, page_end - 1, b, 2, &done), KDH_OK);
    assert_int_equal(done, 1);
    sim_machine_destroy(m);
}

static void test_special_pool_x64(void **state) { (void)state; check_special_pool(SIM_ARCH_X64); }
static void test_special_pool_x86(void **state) { (void)state; check_special_pool(SIM_ARCH_X86); }

/* A break-in as kdsim's KD side injects it: CPU 0 (idle between work items) "calls"
 * DbgBreakPointWithStatus; the stop is there, the truth keeps the interrupted idle-loop frame,
 * and after the debugger skips the int 3 the CPU returns to its idle loop and work goes on. */
static void check_breakin(sim_arch_t a)
{
    char truth[256];
    snprintf(truth, sizeof truth, "%s/sim_machine_bi_%d_%d.jsonl", KDH_BINARY_DIR, (int)a, (int)getpid());
    unlink(truth);
    sim_machine_t *m = boot(a, 2, 8, "leak", truth);
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    sim_info_t info;
    sim_machine_info(m, &info);
    sim_stop_t s;
    kdh_err_t err = {0};
    do
        assert_int_equal(sim_machine_run(m, 100000, &s, &err), KDH_OK);
    while (s.kind != SIM_STOP_NONE);

    uint32_t idle = 0, bws = 0, done;
    assert_int_equal(fo_symbol_rva(fixture_dir(a), "ntoskrnl.exe", "ntkrnlmp.pdb", "-symbols", "KiIdleLoop", &idle, NULL), 0);
    assert_int_equal(fo_symbol_rva(fixture_dir(a), "ntoskrnl.exe", "ntkrnlmp.pdb", "-symbols", "DbgBreakPointWithStatus", &bws, NULL), 0);
    uint8_t ctx[0x4D0];
    size_t n = sim_machine_context_size(m);
    assert_int_equal(sim_machine_get_context(m, 0, ctx, n), KDH_OK);
    size_t ip = psize == 8 ? 0xF8 : 0xB8, spo = psize == 8 ? 0x98 : 0xC4;
    uint64_t pc = psize == 8 ? le64(ctx + ip) : (uint64_t)(int64_t)(int32_t)le32(ctx + ip);
    uint64_t sp = psize == 8 ? le64(ctx + spo) : (uint64_t)(int64_t)(int32_t)le32(ctx + spo);
    assert_true(pc == info.kern_base + idle);
    uint8_t frame[8] = {0};
    for (int i = 0; i < psize; i++)
        frame[i] = (uint8_t)(pc >> (8 * i));
    if (psize == 4)
        frame[4] = 1;  /* DBG_STATUS_CONTROL_C argument */
    uint64_t nsp = sp - 8;
    assert_int_equal(sim_machine_write(m, nsp, frame, 8, &done), KDH_OK);
    uint64_t target = info.kern_base + bws;
    for (int i = 0; i < psize; i++) {
        ctx[ip + (size_t)i] = (uint8_t)(target >> (8 * i));
        ctx[spo + (size_t)i] = (uint8_t)(nsp >> (8 * i));
    }
    assert_int_equal(sim_machine_set_context(m, 0, ctx, n), KDH_OK);
    assert_int_equal(sim_machine_run(m, 100000, &s, &err), KDH_OK);
    assert_int_equal(s.kind, SIM_STOP_BREAKPOINT);
    assert_int_equal(s.cpu, 0);
    assert_true(s.pc == target);
    skip_int3(m, &s, psize);
    for (int k = 0; k < 20; k++) {
        if (sim_machine_run(m, 1000000, &s, &err) != KDH_OK)
            fail_msg("run: %s", err.msg);
        assert_int_not_equal(s.kind, SIM_STOP_BREAKPOINT);
    }
    assert_true(sim_machine_now_ns(m) > 10000000);
    sim_machine_destroy(m);

    FILE *f = fopen(truth, "r");
    assert_non_null(f);
    char line[8192];
    assert_non_null(fgets(line, sizeof line, f));
    assert_null(fgets(line + 4096, 4096, f));
    fclose(f);
    unlink(truth);
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "break");
    json_t *st = json_object_get(j, "stack");
    assert_int_equal(json_array_size(st), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(st, 0), "rva")), bws);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(st, 1), "rva")), idle);
    json_decref(j);
}

static void test_breakin_x64(void **state) { (void)state; check_breakin(SIM_ARCH_X64); }
static void test_breakin_x86(void **state) { (void)state; check_breakin(SIM_ARCH_X86); }

/* A debugger breakpoint (0xCC written over code that already ran, so Unicorn's translation of
 * it must be dropped), then the usual restore / single step / continue. */
static void check_patched_breakpoint(sim_arch_t a)
{
    sim_machine_t *m = boot(a, 2, 4, "leak", NULL);
    sim_stop_t s;
    kdh_err_t err = {0};
    for (int k = 0; k < 5; k++)
        assert_int_equal(sim_machine_run(m, 1000000, &s, &err), KDH_OK);
    uint32_t rva = 0, done;
    assert_int_equal(fo_symbol_rva(fixture_dir(a), "leakdrv.sys", "leakdrv.pdb", "-publics",
                                   sym_name(a, "LeakDrvWorkA", "_LeakDrvWorkA"), &rva, NULL), 0);
    /* leakdrv's base from PsLoadedModuleList (third entry). */
    sim_info_t info;
    sim_machine_info(m, &info);
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    uint64_t e = rd_ptr(m, rd_ptr(m, rd_ptr(m, info.ps_loaded_module_list, psize), psize), psize);
    uint64_t addr = rd_ptr(m, e + (psize == 8 ? 0x30 : 0x18), psize) + rva;
    uint8_t orig = 0, cc = 0xCC;
    assert_int_equal(sim_machine_read(m, addr, &orig, 1, &done), KDH_OK);
    assert_int_not_equal(orig, 0xCC);
    assert_int_equal(sim_machine_write(m, addr, &cc, 1, &done), KDH_OK);
    run_until(m, SIM_STOP_BREAKPOINT, &s);
    assert_true(s.pc == addr);
    assert_int_equal(sim_machine_write(m, addr, &orig, 1, &done), KDH_OK);
    assert_int_equal(sim_machine_set_trace(m, s.cpu, 1), KDH_OK);
    assert_int_equal(sim_machine_run(m, 1000000, &s, &err), KDH_OK);
    assert_int_equal(s.kind, SIM_STOP_SINGLE_STEP);
    assert_true(s.pc > addr && s.pc < addr + 16);
    for (int k = 0; k < 10; k++) {
        assert_int_equal(sim_machine_run(m, 1000000, &s, &err), KDH_OK);
        assert_int_not_equal(s.kind, SIM_STOP_BREAKPOINT);
    }
    sim_machine_destroy(m);
}

static void test_patched_bp_x64(void **state) { (void)state; check_patched_breakpoint(SIM_ARCH_X64); }
static void test_patched_bp_x86(void **state) { (void)state; check_patched_breakpoint(SIM_ARCH_X86); }

/* Hostile corruptions lie to the debugger without breaking the workload. */
static void check_hostile(sim_arch_t a)
{
    sim_config_t c = {.arch = a, .seed = 2, .cpus = 1, .fixture_dir = fixture_dir(a), .workload = "leak",
                      .hostile = "ldr-cycle,kdbg-tag,stack-garbage"};
    kdh_err_t err = {0};
    sim_machine_t *m = sim_machine_create(&c, &err);
    assert_non_null(m);
    assert_int_equal(sim_machine_reboot(m, &err), KDH_OK);
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    sim_info_t info;
    sim_machine_info(m, &info);
    uint64_t head = info.ps_loaded_module_list, first = rd_ptr(m, head, psize), e = first;
    for (int i = 0; i < 6; i++) {
        assert_true(e != head);
        e = rd_ptr(m, e, psize);
    }
    assert_true(e == first);  /* the walk never comes back to the head */
    uint64_t kdbg = rd_ptr(m, info.debugger_data_list, psize);
    assert_int_equal(rd32(m, kdbg + 0x10), 0x5842444B);

    arm_pool_hit_tag(m, a, TAG_LEAK);
    sim_stop_t s;
    for (int k = 0; k < 3; k++) {
        run_until(m, SIM_STOP_BREAKPOINT, &s);
        uint8_t ctx[0x4D0];
        sim_machine_get_context(m, s.cpu, ctx, sim_machine_context_size(m));
        uint64_t sp = psize == 8 ? le64(ctx + 0x98) : le32(ctx + 0xC4);
        uint64_t ret = rd_ptr(m, sp, psize);
        assert_true(ret == (psize == 8 ? 0x4141414141414141ull : 0x41414141ull));
        skip_int3(m, &s, psize);
    }
    sim_machine_destroy(m);

    c.hostile = "ldr-cycle,bogus";
    assert_null(sim_machine_create(&c, &err));
    assert_int_equal(err.code, KDH_EINVAL);
    assert_non_null(strstr(err.msg, "bogus"));
}

static void test_hostile_x64(void **state) { (void)state; check_hostile(SIM_ARCH_X64); }
static void test_hostile_x86(void **state) { (void)state; check_hostile(SIM_ARCH_X86); }

int main(void)
{
    snprintf(g_dir[SIM_ARCH_X64], sizeof g_dir[0], "%s/fixtures/x64", KDH_BINARY_DIR);
    snprintf(g_dir[SIM_ARCH_X86], sizeof g_dir[0], "%s/fixtures/x86", KDH_BINARY_DIR);
    char probe[600];
    snprintf(probe, sizeof probe, "%s/ntoskrnl.exe", g_dir[SIM_ARCH_X64]);
    if (access(probe, R_OK) != 0 || system("llvm-pdbutil-14 --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "fixtures or llvm-pdbutil-14 missing: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boot_x64),   cmocka_unit_test(test_boot_x86),
        cmocka_unit_test(test_breaks_x64), cmocka_unit_test(test_breaks_x86),
        cmocka_unit_test(test_truth_x64),  cmocka_unit_test(test_truth_x86),
        cmocka_unit_test(test_reboot_x64), cmocka_unit_test(test_reboot_x86),
        cmocka_unit_test(test_print_x64),  cmocka_unit_test(test_print_x86),
        cmocka_unit_test(test_special_pool_x64), cmocka_unit_test(test_special_pool_x86),
        cmocka_unit_test(test_breakin_x64), cmocka_unit_test(test_breakin_x86),
        cmocka_unit_test(test_patched_bp_x64), cmocka_unit_test(test_patched_bp_x86),
        cmocka_unit_test(test_hostile_x64), cmocka_unit_test(test_hostile_x86),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
