/* sim_machine_test.h: shared helpers of the simulated-machine tests: booting a machine on the
 * fixture images, reading guest memory, running to a kind of stop, and oracles that do not come
 * from the machine (PE headers read by hand, llvm-pdbutil-14 symbol addresses and procedure
 * ranges). Each test program includes it once. */
#ifndef KDSIM_SIM_MACHINE_TEST_H
#define KDSIM_SIM_MACHINE_TEST_H

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

static char g_dir[2][512]; /* fixture folders, set by sim_test_init() */

static inline const char *fixture_dir(sim_arch_t a)
{
    return g_dir[a];
}

/* ---- independent oracles (fixture_oracle.h: PE files read by hand, llvm-pdbutil-14) ------- */

static inline uint32_t le32(const uint8_t *p)
{
    return fo_le32(p);
}

static inline uint64_t le64(const uint8_t *p)
{
    return fo_le64(p);
}

/* SizeOfImage of a fixture file. */
static inline uint32_t pe_size_of_image(const char *path)
{
    uint32_t size = 0;
    if (fo_pe_facts(path, &size, 0, NULL, NULL) != 0)
        fail_msg("cannot read PE headers of %s", path);
    return size;
}

/* RVA of a public symbol according to llvm-pdbutil-14. */
static inline uint32_t pdb_public_rva(sim_arch_t a, const char *image, const char *pdb, const char *sym)
{
    uint32_t rva = 0;
    if (fo_symbol_rva(fixture_dir(a), image, pdb, "-publics", sym, &rva, NULL) != 0)
        fail_msg("symbol %s not found in %s", sym, pdb);
    return rva;
}

static inline const char *sym_name(sim_arch_t a, const char *x64, const char *x86)
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

static inline void load_fn_ranges(sim_arch_t a)
{
    for (size_t i = 0; i < sizeof g_fns / sizeof g_fns[0]; i++)
        if (fo_symbol_rva(fixture_dir(a), g_fns[i].module, g_fns[i].pdb, "-symbols", g_fns[i].name, &g_fns[i].rva,
                          &g_fns[i].size) != 0 || g_fns[i].size == 0)
            fail_msg("procedure %s not in %s", g_fns[i].name, g_fns[i].pdb);
}

/* The function a truth frame lies in: frame 0 must be the int 3 at a function's first byte;
 * outer frames are return addresses, so they may equal the function's end. */
static inline const char *frame_function(const char *module, uint32_t rva, int inner)
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
static inline int match_path(json_t *stack)
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

static inline sim_machine_t *boot(sim_arch_t a, int cpus, uint64_t seed, const char *workload, const char *truth)
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

static inline uint64_t rd_ptr(sim_machine_t *m, uint64_t va, int psize)
{
    uint8_t b[8] = {0};
    uint32_t done = 0;
    assert_int_equal(sim_machine_read(m, va, b, (uint32_t)psize, &done), KDH_OK);
    assert_int_equal(done, (uint32_t)psize);
    return psize == 8 ? le64(b) : (uint64_t)(int64_t)(int32_t)le32(b);
}

static inline uint32_t rd32(sim_machine_t *m, uint64_t va)
{
    uint8_t b[4];
    uint32_t done = 0;
    sim_machine_read(m, va, b, 4, &done);
    assert_int_equal(done, 4);
    return le32(b);
}

static inline void run_until(sim_machine_t *m, sim_stop_kind_t kind, sim_stop_t *s)
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

static inline void skip_int3(sim_machine_t *m, const sim_stop_t *s, int psize)
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

static inline uint64_t arm_pool_hit_tag(sim_machine_t *m, sim_arch_t a, uint32_t tag)
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

/* Fills the fixture folders; returns 0, or 77 (skip) when the fixtures or tools are absent. */
static inline int sim_test_init(void)
{
    snprintf(g_dir[SIM_ARCH_X64], sizeof g_dir[0], "%s/fixtures/x64", KDH_BINARY_DIR);
    snprintf(g_dir[SIM_ARCH_X86], sizeof g_dir[0], "%s/fixtures/x86", KDH_BINARY_DIR);
    char probe[600];
    snprintf(probe, sizeof probe, "%s/ntoskrnl.exe", g_dir[SIM_ARCH_X64]);
    if (access(probe, R_OK) != 0 || system("llvm-pdbutil-14 --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "fixtures or llvm-pdbutil-14 missing: skipped\n");
        return 77;
    }
    return 0;
}

#endif
