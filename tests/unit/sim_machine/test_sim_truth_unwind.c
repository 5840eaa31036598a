/* test_sim_truth_unwind.c: two independent views of the same x64 stacks must agree. The
 * machine's ground truth comes from watching calls and returns; kdh_unwind walks .pdata/.xdata
 * over the stopped machine's memory. For every PoolHitTag break of 'Leak' (plain frames) and
 * 'Frm ' (framedrv: frame pointer from alloca, XMM6/7 saved, a tail jump, a leaf) the frames
 * must match one for one, and the callee-saved registers recovered at the end of the walk must
 * be the values the machine seeded when the thread started. */
#include "sim_machine_test.h"

#include "kdh/unwind.h"

typedef struct view {
    sim_machine_t *m;
    struct {
        uint64_t base;
        uint32_t size, pdata_rva, pdata_size;
    } mods[8];
    int n;
} view_t;

static int view_read(void *ctx, uint64_t va, void *buf, uint32_t len)
{
    view_t *v = ctx;
    uint32_t done = 0;
    sim_machine_read(v->m, va, buf, len, &done);
    return done == len ? KDH_OK : KDH_EIO;
}

static int view_find(void *ctx, uint64_t pc, kdh_unwind_module_t *out)
{
    view_t *v = ctx;
    for (int i = 0; i < v->n; i++) {
        if (pc >= v->mods[i].base && pc - v->mods[i].base < v->mods[i].size) {
            out->base = v->mods[i].base;
            out->size = v->mods[i].size;
            out->pdata_rva = v->mods[i].pdata_rva;
            out->pdata_size = v->mods[i].pdata_size;
            out->id = (uint64_t)i;
            return KDH_OK;
        }
    }
    return KDH_ENOTFOUND;
}

static const char *const k_names[] = {"ntoskrnl.exe", "hal.dll", "leakdrv.sys", "busydrv.sys", "framedrv.sys", "olddrv.sys"};

/* Bases from PsLoadedModuleList (offsets of kd-protocol.md section 5); .pdata directory from
 * the PE file on disk (PE32+ data directory 3). */
static void build_view(view_t *v, sim_machine_t *m)
{
    memset(v, 0, sizeof *v);
    v->m = m;
    sim_info_t info;
    sim_machine_info(m, &info);
    uint64_t head = info.ps_loaded_module_list, e = rd_ptr(m, head, 8);
    for (int i = 0; i < 6 && e != head; i++, e = rd_ptr(m, e, 8)) {
        v->mods[i].base = rd_ptr(m, e + 0x30, 8);
        v->mods[i].size = rd32(m, e + 0x40);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", fixture_dir(SIM_ARCH_X64), k_names[i]);
        size_t n = 0;
        uint8_t *b = fo_slurp(path, &n);
        assert_non_null(b);
        uint32_t pe = fo_le32(b + 0x3C);
        const uint8_t *dirs = b + pe + 24 + 112;
        v->mods[i].pdata_rva = fo_le32(dirs + 3 * 8);
        v->mods[i].pdata_size = fo_le32(dirs + 3 * 8 + 4);
        free(b);
        v->n = i + 1;
    }
    assert_int_equal(v->n, 6);
}

static void check_tag(uint32_t tag, const char *truth)
{
    unlink(truth);
    sim_machine_t *m = boot(SIM_ARCH_X64, 2, 77, "leak", truth);
    arm_pool_hit_tag(m, SIM_ARCH_X64, tag);
    view_t v;
    build_view(&v, m);
    kdh_unwind_env_t env = {.ctx = &v, .read = view_read, .find_module = view_find};
    FILE *tf = NULL;
    char line[16384];
    for (int k = 0; k < 40; k++) {
        sim_stop_t s;
        run_until(m, SIM_STOP_BREAKPOINT, &s);
        uint8_t ctx[0x4D0];
        assert_int_equal(sim_machine_get_context(m, s.cpu, ctx, sizeof ctx), KDH_OK);
        kdh_unwind_regs_t r;
        memset(&r, 0, sizeof r);
        r.pc = fo_le64(ctx + 0xF8);
        r.sp = fo_le64(ctx + 0x98);
        for (int i = 0; i < 16; i++)
            r.gpr[i] = fo_le64(ctx + 0x78 + 8 * i);
        r.gpr_known = 0xffff;
        for (int i = 0; i < 16; i++)
            memcpy(r.xmm[i], ctx + 0x1A0 + 16 * i, 16);
        r.xmm_known = 0xffff;
        kdh_unwind_config_t cfg;
        kdh_unwind_config_default(&cfg, KDH_UNWIND_X64);
        kdh_unwind_t u;
        kdh_err_t err = {0};
        assert_int_equal(kdh_unwind_init(&u, &cfg, &r, &err), KDH_OK);
        int rc = kdh_unwind_run(&u, &env, &err);
        if (rc != KDH_OK)
            fail_msg("unwind: %s", err.msg);

        /* The truth line this stop just wrote is the last line of the file. */
        if (!tf)
            tf = fopen(truth, "r");
        assert_non_null(tf);
        assert_non_null(fgets(line, sizeof line, tf));
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        assert_non_null(j);
        json_t *st = json_object_get(j, "stack");
        if (json_array_size(st) != u.n_frames)
            fail_msg("truth has %zu frames, the unwinder %u (stop %s): %s", json_array_size(st), u.n_frames,
                     kdh_unwind_stop_name(u.stop), line);
        for (uint32_t i = 0; i < u.n_frames; i++) {
            json_t *f = json_array_get(st, i);
            const char *mod = json_string_value(json_object_get(f, "module"));
            assert_non_null(mod);
            assert_string_equal(mod, k_names[u.frames[i].module_id]);
            assert_int_equal((uint32_t)json_integer_value(json_object_get(f, "rva")), u.frames[i].rva);
        }
        /* After the outermost frame: pc 0 (the thread's end) and the seeded registers. */
        assert_true(u.regs.pc == 0);
        json_t *regs = json_object_get(j, "regs");
        static const struct {
            const char *name;
            int reg;
        } cs[] = {{"rbx", KDH_REG_RBX}, {"rbp", KDH_REG_RBP}, {"rsi", KDH_REG_RSI}, {"rdi", KDH_REG_RDI},
                  {"r12", KDH_REG_R12}, {"r13", KDH_REG_R13}, {"r14", KDH_REG_R14}, {"r15", KDH_REG_R15}};
        for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
            uint64_t want = strtoull(json_string_value(json_object_get(regs, cs[i].name)), NULL, 16);
            if (u.regs.gpr[cs[i].reg] != want)
                fail_msg("%s: unwound 0x%llx, seeded 0x%llx", cs[i].name, (unsigned long long)u.regs.gpr[cs[i].reg],
                         (unsigned long long)want);
        }
        for (int x = 6; x < 16; x++) {
            char name[8], got[40];
            snprintf(name, sizeof name, "xmm%d", x);
            snprintf(got, sizeof got, "0x%016llx%016llx", (unsigned long long)fo_le64(u.regs.xmm[x] + 8),
                     (unsigned long long)fo_le64(u.regs.xmm[x]));
            assert_string_equal(got, json_string_value(json_object_get(regs, name)));
        }
        json_decref(j);
        skip_int3(m, &s, 8);
    }
    if (tf)
        fclose(tf);
    sim_machine_destroy(m);
    unlink(truth);
}

static void test_leak_stacks(void **state)
{
    (void)state;
    char truth[256];
    snprintf(truth, sizeof truth, "%s/sim_truth_unwind_leak_%d.jsonl", KDH_BINARY_DIR, (int)getpid());
    check_tag(0x6B61654Cu, truth); /* 'Leak' */
}

static void test_frame_stacks(void **state)
{
    (void)state;
    char truth[256];
    snprintf(truth, sizeof truth, "%s/sim_truth_unwind_frm_%d.jsonl", KDH_BINARY_DIR, (int)getpid());
    check_tag(0x206D7246u, truth); /* 'Frm ' */
}

int main(void)
{
    int rc = sim_test_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leak_stacks),
        cmocka_unit_test(test_frame_stacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
