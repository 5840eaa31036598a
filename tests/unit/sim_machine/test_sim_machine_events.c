/* test_sim_machine_events.c: the simulated machine's less common events, each checked against
 * facts from outside the machine: DbgPrint text and workload files, special pool placement and
 * its guard page, a debugger break-in, a debugger breakpoint over already-translated code, and
 * the hostile corruptions. */
#include "sim_machine_test.h"

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

    /* a missing, malformed or out-of-range rate is refused with the line it is on */
    static const struct {
        const char *line;
        int code;
    } bad[] = {
        {"call olddrv.sys OldDrvWork\n", KDH_ECORRUPT},
        {"call olddrv.sys OldDrvWork 5000x\n", KDH_ECORRUPT},
        {"call olddrv.sys OldDrvWork fast\n", KDH_ECORRUPT},
        {"call olddrv.sys OldDrvWork 5000 more\n", KDH_ECORRUPT},
        {"run olddrv.sys OldDrvWork 5000\n", KDH_ECORRUPT},
        {"call olddrv.sys OldDrvWork 0\n", KDH_ERANGE},
        {"call olddrv.sys OldDrvWork 1e999\n", KDH_ERANGE},
        {"call olddrv.sys OldDrvWork nan\n", KDH_ERANGE},
    };
    sim_config_t c = {.arch = a, .seed = 1, .cpus = 1, .fixture_dir = fixture_dir(a), .workload = wl};
    kdh_err_t err = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(wl, "w");
        assert_non_null(f);
        fprintf(f, "# line 1\n%s", bad[i].line);
        fclose(f);
        kdh_err_clear(&err);
        assert_null(sim_machine_create(&c, &err));
        assert_int_equal(err.code, bad[i].code);
        if (bad[i].code == KDH_ECORRUPT)
            assert_non_null(strstr(err.msg, ":2:"));
    }
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
    int rc = sim_test_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_print_x64),  cmocka_unit_test(test_print_x86),
        cmocka_unit_test(test_special_pool_x64), cmocka_unit_test(test_special_pool_x86),
        cmocka_unit_test(test_breakin_x64), cmocka_unit_test(test_breakin_x86),
        cmocka_unit_test(test_patched_bp_x64), cmocka_unit_test(test_patched_bp_x86),
        cmocka_unit_test(test_hostile_x64), cmocka_unit_test(test_hostile_x86),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
