/* test_sim_machine.c: the simulated machine against facts it did not produce: symbol addresses
 * from llvm-pdbutil's view of the fixture PDBs, image sizes from the PE files on disk, the
 * documented kernel-structure offsets (kd-protocol.md sections 3.4, 4, 5), the stack memory at a
 * stop, and the fixture kernel's own pool tracking table compared with the ground-truth file. */
#include "sim_machine_test.h"

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
        assert_int_equal(size, pe_size_of_image(path));
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
    /* the memory manager's variables (wdbgexts.h order; not exported, so from the PDB alone) */
    static const struct {
        uint32_t off;
        const char *name, *x86;
    } mm[] = {{0x100, "MmMaximumNonPagedPoolInBytes", "_MmMaximumNonPagedPoolInBytes"},
              {0x140, "MmSizeOfPagedPoolInBytes", "_MmSizeOfPagedPoolInBytes"},
              {0x148, "MmTotalCommitLimit", "_MmTotalCommitLimit"},
              {0x150, "MmTotalCommittedPages", "_MmTotalCommittedPages"},
              {0x170, "MmPagedPoolCommit", "_MmPagedPoolCommit"},
              {0x250, "MmAllocatedNonPagedPool", "_MmAllocatedNonPagedPool"},
              {0x110, "MmNonPagedPoolStart", "_MmNonPagedPoolStart"}};
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        uint64_t want = info.kern_base + pdb_public_rva(a, "ntoskrnl.exe", "ntkrnlmp.pdb", sym_name(a, mm[i].name, mm[i].x86));
        if (rd_ptr(m, kdbg + mm[i].off, 8) != want)
            fail_msg("KDDEBUGGER_DATA64+0x%x: not &%s", mm[i].off, mm[i].name);
    }
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
    /* KDDEBUGGER_DATA64 holds the addresses of nt!MmNonPagedPoolStart / End */
    uint64_t pool_lo = rd_ptr(m, rd_ptr(m, kdbg + 0x110, 8), psize), pool_hi = rd_ptr(m, rd_ptr(m, kdbg + 0x118, 8), psize);
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
/* Same seed, same ground truth, byte for byte (times, CPUs, threads, addresses, stacks). */
static void truth_run(sim_arch_t a, uint64_t seed, const char *path)
{
    unlink(path);
    sim_machine_t *m = boot(a, 4, seed, "leak", path);
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    arm_pool_hit_tag(m, a, TAG_LEAK);
    sim_stop_t s;
    for (int k = 0; k < 25; k++) {
        run_until(m, SIM_STOP_BREAKPOINT, &s);
        skip_int3(m, &s, psize);
    }
    sim_machine_destroy(m);
}

static void check_deterministic(sim_arch_t a)
{
    char p[3][256];
    for (int i = 0; i < 3; i++)
        snprintf(p[i], sizeof p[i], "%s/sim_machine_det_%d_%d_%d.jsonl", KDH_BINARY_DIR, (int)a, i, (int)getpid());
    truth_run(a, 42, p[0]);
    truth_run(a, 42, p[1]);
    truth_run(a, 43, p[2]);
    size_t n0 = 0, n1 = 0, n2 = 0;
    uint8_t *b0 = fo_slurp(p[0], &n0), *b1 = fo_slurp(p[1], &n1), *b2 = fo_slurp(p[2], &n2);
    assert_non_null(b0);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_true(n0 > 1000);
    assert_int_equal(n0, n1);
    assert_memory_equal(b0, b1, n0);
    assert_true(n0 != n2 || memcmp(b0, b2, n0) != 0);
    free(b0);
    free(b1);
    free(b2);
    for (int i = 0; i < 3; i++)
        unlink(p[i]);
}

static void test_deterministic_x64(void **state) { (void)state; check_deterministic(SIM_ARCH_X64); }
static void test_deterministic_x86(void **state) { (void)state; check_deterministic(SIM_ARCH_X86); }

int main(void)
{
    int rc = sim_test_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boot_x64),   cmocka_unit_test(test_boot_x86),
        cmocka_unit_test(test_breaks_x64), cmocka_unit_test(test_breaks_x86),
        cmocka_unit_test(test_truth_x64),  cmocka_unit_test(test_truth_x86),
        cmocka_unit_test(test_reboot_x64), cmocka_unit_test(test_reboot_x86),
        cmocka_unit_test(test_deterministic_x64), cmocka_unit_test(test_deterministic_x86),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
