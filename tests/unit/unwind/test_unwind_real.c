/* Real-code unwind tests: fixtures built by clang-14 + lld-link-14 at build time run under
 * Unicorn from a sentinel return address with seeded callee-saved registers. Stopped at the
 * int3 the frames must name the known call chain (names from llvm-pdbutil's publics), and
 * stopped at every executed instruction (prologs, epilogs, bodies) the unwind must reach the
 * sentinel with RSP/ESP and every callee-saved register equal to the seeds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <unicorn/unicorn.h>

#include "kdh/unwind.h"
#include "peload.h"

#define STACK_LO 0x00800000ull
#define STACK_LEN 0x10000u
#define SENTINEL64 0x5EE0001000ull
#define SENTINEL32 0x0BEE0010ull

typedef struct fpo_row {
    kdh_unwind_fpo_t f;
    char program[400];
} fpo_row_t;

typedef struct emu {
    uc_engine *uc;
    int is64;
    fpo_row_t *fpo; /* x86 FRAMEDATA rows from llvm-pdbutil, or NULL */
    int nfpo;
    pe_img_t pe;
    pub_t pubs[64];
    int npubs;
    uint64_t sp_entry, sentinel;
    long insn_count, stop_at_insn;
    int int3_count, stop_at_int3;
    int stopped; /* 0 ran to the sentinel, 1 instruction stop, 2 int3 */
    uint64_t stop_addr;
} emu_t;

static const int X64_REGS[16] = {UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX,
                                 UC_X86_REG_RSP, UC_X86_REG_RBP, UC_X86_REG_RSI, UC_X86_REG_RDI,
                                 UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_R10, UC_X86_REG_R11,
                                 UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15};
static const int X86_REGS[8] = {UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX,
                                UC_X86_REG_ESP, UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI};

static uint64_t seed_gpr(int i)
{
    return 0x5EED000000000000ull | ((uint64_t)i << 40) | (0x1000u * (unsigned)i + 0x10u);
}
static uint32_t seed_gpr32(int i)
{
    return 0x0BAD0000u | (0x110u * (unsigned)i) | 0xC000000u; /* far from the stack */
}

static void hook_code(uc_engine *uc, uint64_t addr, uint32_t size, void *user)
{
    emu_t *e = user;
    (void)size;
    if (++e->insn_count == e->stop_at_insn) {
        e->stopped = 1;
        e->stop_addr = addr;
        uc_emu_stop(uc);
    }
}

static void hook_intr(uc_engine *uc, uint32_t intno, void *user)
{
    emu_t *e = user;
    if (intno == 3 && ++e->int3_count == e->stop_at_int3) {
        e->stopped = 2;
        uc_emu_stop(uc);
    }
}

static int emu_open(emu_t *e, const char *dll, const char *pubs, int is64)
{
    memset(e, 0, sizeof *e);
    if (pe_load(dll, &e->pe) != 0)
        return -1;
    e->npubs = pubs_load(pubs, &e->pe, e->pubs, 64);
    assert_true(e->npubs > 5);
    e->is64 = is64;
    assert_int_equal(e->pe.is64, is64);
    assert_int_equal(uc_open(UC_ARCH_X86, is64 ? UC_MODE_64 : UC_MODE_32, &e->uc), UC_ERR_OK);
    uint32_t sz = (e->pe.size + 0xFFF) & ~0xFFFu;
    assert_int_equal(uc_mem_map(e->uc, e->pe.base, sz, UC_PROT_ALL), UC_ERR_OK);
    assert_int_equal(uc_mem_write(e->uc, e->pe.base, e->pe.mem, e->pe.size), UC_ERR_OK);
    assert_int_equal(uc_mem_map(e->uc, STACK_LO, STACK_LEN, UC_PROT_ALL), UC_ERR_OK);
    uc_hook h1, h2;
    assert_int_equal(uc_hook_add(e->uc, &h1, UC_HOOK_CODE, (void *)hook_code, e, 1, 0), UC_ERR_OK);
    assert_int_equal(uc_hook_add(e->uc, &h2, UC_HOOK_INTR, (void *)hook_intr, e, 1, 0), UC_ERR_OK);
    e->sentinel = is64 ? SENTINEL64 : SENTINEL32;
    if (!is64) {
        /* The x86 sentinel is a return address in a "caller" module, after a real CALL, as
         * a return address found by a search must be. */
        const uint8_t call[5] = {0xe8, 0, 0, 0, 0};
        assert_int_equal(uc_mem_map(e->uc, e->sentinel & ~0xFFFull, 0x1000, UC_PROT_ALL), UC_ERR_OK);
        assert_int_equal(uc_mem_write(e->uc, e->sentinel - 5, call, 5), UC_ERR_OK);
    }
    e->sp_entry = STACK_LO + STACK_LEN - 0x408; /* 16-byte aligned before the call */
    return 0;
}

static void emu_close(emu_t *e)
{
    uc_close(e->uc);
    free(e->pe.mem);
}

/* Runs entry from scratch until the sentinel, the n-th instruction or the n-th int3. */
static void emu_run(emu_t *e, const char *entry, long stop_at_insn, int stop_at_int3)
{
    static uint8_t zero[STACK_LEN];
    uc_mem_write(e->uc, STACK_LO, zero, STACK_LEN);
    e->insn_count = 0;
    e->int3_count = 0;
    e->stop_at_insn = stop_at_insn;
    e->stop_at_int3 = stop_at_int3;
    e->stopped = 0;
    uint64_t start = e->pe.base + pubs_rva(e->pubs, e->npubs, entry);
    assert_true(start != e->pe.base);
    if (e->is64) {
        uint8_t b[8];
        kdh_put_u64(b, e->sentinel);
        uc_mem_write(e->uc, e->sp_entry, b, 8);
        for (int i = 0; i < 16; i++) {
            uint64_t v = i == KDH_REG_RSP ? e->sp_entry : seed_gpr(i);
            uc_reg_write(e->uc, X64_REGS[i], &v);
        }
        for (int i = 0; i < 16; i++) {
            uint8_t x[16];
            for (int k = 0; k < 16; k++)
                x[k] = (uint8_t)(0xA0 + i + k * 3);
            uc_reg_write(e->uc, UC_X86_REG_XMM0 + i, x);
        }
    } else {
        uint8_t b[4];
        kdh_put_u32(b, (uint32_t)e->sentinel);
        uc_mem_write(e->uc, e->sp_entry, b, 4);
        for (int i = 0; i < 8; i++) {
            uint32_t v = i == KDH_REG_RSP ? (uint32_t)e->sp_entry : seed_gpr32(i);
            uc_reg_write(e->uc, X86_REGS[i], &v);
        }
    }
    uc_err err = uc_emu_start(e->uc, start, e->sentinel, 0, 0);
    assert_int_equal(err, UC_ERR_OK);
}

static int v_read(void *ctx, uint64_t va, void *buf, uint32_t len)
{
    emu_t *e = ctx;
    return uc_mem_read(e->uc, va, buf, len) == UC_ERR_OK ? KDH_OK : KDH_ENOTFOUND;
}

static int v_find(void *ctx, uint64_t pc, kdh_unwind_module_t *m)
{
    emu_t *e = ctx;
    if (pc >= e->pe.base && pc - e->pe.base < e->pe.size) {
        kdh_unwind_module_t mm = {.base = e->pe.base, .size = e->pe.size,
                                  .pdata_rva = e->pe.pdata_rva, .pdata_size = e->pe.pdata_size,
                                  .id = 1};
        *m = mm;
        return KDH_OK;
    }
    /* x86: the sentinel lies in a "caller" module so that the EBP chain accepts it. */
    if (!e->is64 && pc >= (e->sentinel & ~0xFFFull) && pc < (e->sentinel & ~0xFFFull) + 0x1000) {
        kdh_unwind_module_t mm = {.base = e->sentinel & ~0xFFFull, .size = 0x1000, .id = 2};
        *m = mm;
        return KDH_OK;
    }
    return KDH_ENOTFOUND;
}

/* FRAMEDATA from `llvm-pdbutil dump -fpo`: "RVA | Code | Locals | Params | Stack | Prolog |
 * Saved Regs | SEH | C++EH | Start | Program" rows, numbers in hex (RVA) and decimal. */
static int fpo_load(emu_t *e, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static fpo_row_t rows[256];
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < 256) {
        unsigned rva, code, locals, params, stack, prolog, saved;
        if (sscanf(line, "%x | %u | %u | %u | %u | %u | %u |", &rva, &code, &locals, &params,
                   &stack, &prolog, &saved) != 7)
            continue;
        char *prog = line;
        for (int bars = 0; bars < 10 && prog; bars++) {
            prog = strchr(prog, '|');
            if (prog)
                prog++;
        }
        if (!prog)
            continue;
        while (*prog == ' ')
            prog++;
        prog[strcspn(prog, "\r\n")] = 0;
        fpo_row_t *r = &rows[n++];
        snprintf(r->program, sizeof r->program, "%s", prog);
        kdh_unwind_fpo_t fd = {.rva_start = rva, .block_size = code, .locals = locals,
                               .params = params, .max_stack = stack,
                               .prolog_size = (uint16_t)prolog, .saved_regs = (uint16_t)saved,
                               .program = r->program};
        r->f = fd;
    }
    fclose(f);
    e->fpo = rows;
    e->nfpo = n;
    return n;
}

static int v_fpo(void *ctx, const kdh_unwind_module_t *m, uint32_t rva, kdh_unwind_fpo_t *out)
{
    emu_t *e = ctx;
    const fpo_row_t *best = NULL;
    if (m->id != 1)
        return KDH_ENOTFOUND;
    for (int i = 0; i < e->nfpo; i++) {
        const kdh_unwind_fpo_t *f = &e->fpo[i].f;
        if (f->rva_start <= rva && rva - f->rva_start < f->block_size &&
            (!best || f->rva_start > best->f.rva_start))
            best = &e->fpo[i];
    }
    if (!best)
        return KDH_ENOTFOUND;
    *out = best->f;
    return KDH_OK;
}

static kdh_unwind_t U;

/* Captures the stopped context and unwinds it. */
static int unwind_now(emu_t *e)
{
    kdh_unwind_regs_t r;
    memset(&r, 0, sizeof r);
    if (e->is64) {
        for (int i = 0; i < 16; i++)
            uc_reg_read(e->uc, X64_REGS[i], &r.gpr[i]);
        uc_reg_read(e->uc, UC_X86_REG_RIP, &r.pc);
        for (int i = 0; i < 16; i++)
            uc_reg_read(e->uc, UC_X86_REG_XMM0 + i, r.xmm[i]);
        r.gpr_known = 0xFFFF;
        r.xmm_known = 0xFFFF;
    } else {
        for (int i = 0; i < 8; i++) {
            uint32_t v = 0;
            uc_reg_read(e->uc, X86_REGS[i], &v);
            r.gpr[i] = kdh_sign_extend32(v);
        }
        uint32_t eip = 0;
        uc_reg_read(e->uc, UC_X86_REG_EIP, &eip);
        r.pc = eip;
        r.gpr_known = 0xFF;
    }
    r.sp = r.gpr[KDH_REG_RSP];
    if (e->stopped == 2)
        r.pc -= 1; /* KD reports the address of the int3 itself */
    kdh_unwind_config_t cfg;
    kdh_unwind_config_default(&cfg, e->is64 ? KDH_UNWIND_X64 : KDH_UNWIND_X86);
    cfg.user_limit = 0;
    kdh_err_t err;
    assert_int_equal(kdh_unwind_init(&U, &cfg, &r, &err), KDH_OK);
    kdh_unwind_env_t env = {.ctx = e, .read = v_read, .find_module = v_find,
                            .find_fpo = e->fpo ? v_fpo : NULL};
    return kdh_unwind_run(&U, &env, &err);
}

/* The unwind reached the sentinel with the seeded callee-saved state. */
static void check_sentinel(emu_t *e, uint64_t where)
{
    if (U.regs.pc != e->sentinel || U.regs.sp != e->sp_entry + (e->is64 ? 8 : 4)) {
        fail_msg("stop at 0x%llx (%s+0x%x): unwind ended at pc 0x%llx sp 0x%llx after %u frames "
                 "(%s)", (unsigned long long)where,
                 pubs_at(e->pubs, e->npubs, (uint32_t)(where - e->pe.base)),
                 (unsigned)(where - e->pe.base - pubs_rva(e->pubs, e->npubs,
                                pubs_at(e->pubs, e->npubs, (uint32_t)(where - e->pe.base)))),
                 (unsigned long long)U.regs.pc, (unsigned long long)U.regs.sp, U.n_frames,
                 kdh_unwind_stop_name(U.stop));
    }
    if (e->is64) {
        const int nv[] = {KDH_REG_RBX, KDH_REG_RBP, KDH_REG_RSI, KDH_REG_RDI,
                          KDH_REG_R12, KDH_REG_R13, KDH_REG_R14, KDH_REG_R15};
        for (size_t i = 0; i < KDH_ARRAY_LEN(nv); i++) {
            if (!(U.regs.gpr_known & (1u << nv[i])) || U.regs.gpr[nv[i]] != seed_gpr(nv[i]))
                fail_msg("stop at 0x%llx: register %d = 0x%llx, seeded 0x%llx",
                         (unsigned long long)where, nv[i], (unsigned long long)U.regs.gpr[nv[i]],
                         (unsigned long long)seed_gpr(nv[i]));
        }
        for (int i = 6; i < 16; i++) {
            assert_true(U.regs.xmm_known & (1u << i));
            for (int k = 0; k < 16; k++)
                if (U.regs.xmm[i][k] != (uint8_t)(0xA0 + i + k * 3))
                    fail_msg("stop at 0x%llx: xmm%d byte %d differs", (unsigned long long)where,
                             i, k);
        }
    } else {
        assert_true(U.regs.gpr[KDH_REG_RBP] == kdh_sign_extend32(seed_gpr32(KDH_REG_RBP)));
        /* With frame data every callee-saved register is restored. */
        const int nv[] = {KDH_REG_RBX, KDH_REG_RSI, KDH_REG_RDI};
        for (size_t i = 0; e->fpo && i < KDH_ARRAY_LEN(nv); i++)
            if (!(U.regs.gpr_known & (1u << nv[i])) ||
                U.regs.gpr[nv[i]] != kdh_sign_extend32(seed_gpr32(nv[i])))
                fail_msg("stop at 0x%llx: register %d = 0x%llx, seeded 0x%x",
                         (unsigned long long)where, nv[i], (unsigned long long)U.regs.gpr[nv[i]],
                         seed_gpr32(nv[i]));
    }
}

static void check_chain(emu_t *e, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        assert_true(U.n_frames > (uint32_t)i);
        const char *got = pubs_at(e->pubs, e->npubs, U.frames[i].rva);
        if (strcmp(got, names[i]) != 0)
            fail_msg("frame %d: %s+rva 0x%x, expected %s", i, got, U.frames[i].rva, names[i]);
    }
}

static int in_range(emu_t *e, uint64_t a, const char *lo, const char *hi)
{
    uint32_t l = pubs_rva(e->pubs, e->npubs, lo), h = pubs_rva(e->pubs, e->npubs, hi);
    return a >= e->pe.base + l && a < e->pe.base + h;
}

/* Stops at every instruction the run executes and checks the unwind reaches the sentinel. */
static void every_instruction(emu_t *e, const char *entry, int *epilogs, int *prologs)
{
    emu_run(e, entry, -1, 0);
    assert_int_equal(e->stopped, 0);
    long total = e->insn_count;
    assert_true(total > 20 && total < 20000);
    long checked = 0;
    for (long k = 1; k <= total; k++) {
        emu_run(e, entry, k, 0);
        assert_int_equal(e->stopped, 1);
        uint64_t pc = 0;
        uc_reg_read(e->uc, e->is64 ? UC_X86_REG_RIP : UC_X86_REG_EIP, &pc);
        if (!e->is64)
            pc &= 0xFFFFFFFFu;
        assert_true(pc == e->stop_addr); /* stopped before the instruction ran */
        /* The hand-made machine frame and hand-made iretq are not described by any unwind
         * data (a CPU does them atomically), so no unwinder can stop inside them. */
        if (e->is64 && (in_range(e, pc, "mf_build", "resume") || in_range(e, pc, "trap_exit", "trap_end")))
            continue;
        int rc = unwind_now(e);
        assert_int_equal(rc, KDH_OK);
        check_sentinel(e, pc);
        checked++;
        if (U.frames[0].flags & KDH_UNWIND_F_EPILOG)
            ++*epilogs;
        if (e->is64 && U.n_frames > 0) {
            /* Count stops inside a prolog: past the first byte but before the body. */
            uint32_t rva = U.frames[0].rva;
            const uint8_t *pd = e->pe.mem + e->pe.pdata_rva;
            for (uint32_t i = 0; i + 12 <= e->pe.pdata_size; i += 12) {
                uint32_t b = kdh_get_u32(pd + i), info = kdh_get_u32(pd + i + 8);
                if (rva > b && rva < b + e->pe.mem[info + 1])
                    ++*prologs;
            }
        }
    }
    print_message("%s: %ld instructions executed, %ld stops unwound to the sentinel\n", entry,
                  total, checked);
}

static const char *fixture(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", UNWIND_FIXTURE_DIR, name);
    return buf;
}

static void test_x64(void **state)
{
    (void)state;
    char d[512], p[512];
    emu_t e;
    if (emu_open(&e, fixture(d, sizeof d, "rich64.dll"), fixture(p, sizeof p, "rich64.publics"), 1)) {
        skip();
        return;
    }
    /* Entry -> (tail call) xmmfn -> framed (alloca) -> pushes -> bottom: int3 */
    emu_run(&e, "Entry", -1, 1);
    assert_int_equal(e.stopped, 2);
    assert_int_equal(unwind_now(&e), KDH_OK);
    const char *chain[] = {"bottom", "pushes", "framed", "xmmfn"};
    check_chain(&e, chain, 4);
    assert_int_equal(U.n_frames, 4);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_NO_MODULE);
    assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0 | KDH_UNWIND_F_LEAF);
    check_sentinel(&e, U.frames[0].pc);
    assert_true(kdh_unwind_stack_end(&U) == e.sp_entry + 8);

    /* Entry2 -> mf_caller -> interrupted_fn =machine frame=> trap_entry -> bottom */
    emu_run(&e, "Entry2", -1, 1);
    assert_int_equal(e.stopped, 2);
    assert_int_equal(unwind_now(&e), KDH_OK);
    const char *chain2[] = {"bottom", "trap_entry", "resume", "mf_caller", "Entry2"};
    check_chain(&e, chain2, 5);
    assert_int_equal(U.n_frames, 5);
    assert_int_equal(U.frames[2].flags, KDH_UNWIND_F_MACHFRAME | KDH_UNWIND_F_EPILOG);
    check_sentinel(&e, U.frames[0].pc);
    /* Entry2 -> mf_caller -> chained_fn =jmp=> chained_cold (chained info) -> bottom */
    emu_run(&e, "Entry2", -1, 2);
    assert_int_equal(e.stopped, 2);
    assert_int_equal(unwind_now(&e), KDH_OK);
    const char *chain3[] = {"bottom", "chained_cold", "mf_caller", "Entry2"};
    check_chain(&e, chain3, 4);
    assert_int_equal(U.n_frames, 4);
    check_sentinel(&e, U.frames[0].pc);

    int epilogs = 0, prologs = 0;
    every_instruction(&e, "Entry", &epilogs, &prologs);
    every_instruction(&e, "Entry2", &epilogs, &prologs);
    /* The runs went through every prolog and epilog of the chain. */
    print_message("x64: %d stops in epilogs, %d in prologs\n", epilogs, prologs);
    assert_true(epilogs >= 20);
    assert_true(prologs >= 15);
    emu_close(&e);
}

static void test_x86(void **state)
{
    (void)state;
    char d[512], p[512];
    emu_t e;
    if (emu_open(&e, fixture(d, sizeof d, "rich32.dll"), fixture(p, sizeof p, "rich32.publics"), 0)) {
        skip();
        return;
    }
    emu_run(&e, "_Entry", -1, 1);
    assert_int_equal(e.stopped, 2);
    assert_int_equal(unwind_now(&e), KDH_OK);
    const char *chain[] = {"_bottom", "_pushes", "_middle", "_top", "_Entry"};
    check_chain(&e, chain, 5);
    assert_int_equal(U.n_frames, 6); /* + the sentinel's frame */
    assert_true(U.frames[5].pc == e.sentinel);
    for (int i = 0; i < 6; i++)
        assert_false(U.frames[i].flags & KDH_UNWIND_F_SCAN);
    check_sentinel(&e, U.frames[0].pc);
    int epilogs = 0, prologs = 0;
    every_instruction(&e, "_Entry", &epilogs, &prologs);
    emu_close(&e);
}

/* Frame-pointer-omitted x86 code unwound with the PDB's FRAMEDATA programs. */
static void test_x86_fpo(void **state)
{
    (void)state;
    char d[512], p[512], q[512];
    emu_t e;
    if (emu_open(&e, fixture(d, sizeof d, "rich32fpo.dll"), fixture(p, sizeof p, "rich32fpo.publics"), 0)) {
        skip();
        return;
    }
    assert_true(fpo_load(&e, fixture(q, sizeof q, "rich32fpo.fpo")) > 8);
    emu_run(&e, "_Entry", -1, 1);
    assert_int_equal(e.stopped, 2);
    assert_int_equal(unwind_now(&e), KDH_OK);
    const char *chain[] = {"_bottom", "_pushes", "_middle", "_top", "_Entry"};
    check_chain(&e, chain, 5);
    assert_int_equal(U.n_frames, 6);
    for (int i = 0; i < 5; i++)
        assert_true(U.frames[i].flags & KDH_UNWIND_F_FPO);
    check_sentinel(&e, U.frames[0].pc);
    int epilogs = 0, prologs = 0;
    every_instruction(&e, "_Entry", &epilogs, &prologs);
    emu_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x64),
        cmocka_unit_test(test_x86),
        cmocka_unit_test(test_x86_fpo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
