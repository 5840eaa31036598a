/* Synthetic x86 unwind tests: EBP chain with sign-extended kernel addresses, the frame-0
 * prolog check, the sanity checks, and the scan with its CALL-before-return check, over a
 * hand-laid stack. Return addresses follow hand-assembled call instructions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memview.h"

#define B 0xFFFFFFFF80400000ull   /* module at 0x80400000, as KD reports it */
#define ST 0xFFFFFFFF9A000000ull  /* stack region */

static mv_t V;
static kdh_unwind_t U;

static void put32(uint64_t va, uint32_t x)
{
    kdh_put_u32(mv_ptr(&V, va, 4), x);
}

static void build(void)
{
    memset(&V, 0, sizeof V);
    mv_region_t *img = mv_add(&V, B, 0x4000);
    memset(img->data + 0x1000, 0xCC, 0x2000);
    mv_add(&V, ST, 0x2000);
    kdh_unwind_module_t m = {.base = B, .size = 0x4000, .id = 3};
    V.mods[V.nmods++] = m;
    /* call rel32 ending at 0x1205; call [disp32] ending at 0x1305; call eax ending at
     * 0x1402; call [ebp+8] ending at 0x1503; call [eax*4+disp32] ending at 0x1607. */
    const uint8_t c1[] = {0xe8, 0x10, 0, 0, 0};
    mv_put_bytes(&V, B + 0x1200, c1, 5);
    const uint8_t c2[] = {0xff, 0x15, 0, 0x10, 0x40, 0x80};
    mv_put_bytes(&V, B + 0x12FF, c2, 6);
    const uint8_t c3[] = {0xff, 0xd0};
    mv_put_bytes(&V, B + 0x1400, c3, 2);
    const uint8_t c4[] = {0xff, 0x55, 0x08};
    mv_put_bytes(&V, B + 0x1500, c4, 3);
    const uint8_t c5[] = {0xff, 0x14, 0x85, 0, 0x10, 0x40, 0x80};
    mv_put_bytes(&V, B + 0x1600, c5, 7);
    const uint8_t pro[] = {0x8b, 0xff, 0x55, 0x8b, 0xec};  /* mov edi,edi; push ebp; mov ebp,esp */
    mv_put_bytes(&V, B + 0x1800, pro, 5);
}

static kdh_unwind_regs_t seed(uint64_t pc, uint64_t sp, uint64_t ebp, int ebp_known)
{
    kdh_unwind_regs_t r;
    memset(&r, 0, sizeof r);
    r.pc = pc;
    r.sp = sp;
    r.gpr[KDH_REG_RBP] = ebp;
    r.gpr_known = ebp_known ? 0xFF : 0xFF & ~(1u << KDH_REG_RBP);
    return r;
}

static int walk(const kdh_unwind_regs_t *r, uint64_t lo, uint64_t hi)
{
    kdh_unwind_config_t cfg;
    kdh_unwind_config_default(&cfg, KDH_UNWIND_X86);
    cfg.stack_lo = lo;
    cfg.stack_hi = hi;
    kdh_err_t err;
    assert_int_equal(kdh_unwind_init(&U, &cfg, r, &err), KDH_OK);
    kdh_unwind_env_t env = mv_env(&V);
    return kdh_unwind_run(&U, &env, &err);
}

/* The chain of the task: frame 0 -> 0x1205 -> 0x1305, then a return address in user space
 * (0x00401000, below the default boundary) breaks the chain and the scan finds nothing. */
static void chain_stack(void)
{
    put32(ST + 0x120, (uint32_t)(ST + 0x200));
    put32(ST + 0x124, (uint32_t)(B + 0x1205));
    put32(ST + 0x200, (uint32_t)(ST + 0x300));
    put32(ST + 0x204, (uint32_t)(B + 0x1305));
    put32(ST + 0x300, 0);
    put32(ST + 0x304, 0x00401000);
}

static void test_chain(void **state)
{
    (void)state;
    build();
    chain_stack();
    kdh_unwind_regs_t r = seed(B + 0x1100, ST + 0x100, ST + 0x120, 1);
    assert_int_equal(walk(&r, 0, 0), KDH_OK);
    assert_int_equal(U.n_frames, 3);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_NO_CALLER);
    assert_true(U.frames[0].pc == B + 0x1100 && U.frames[0].sp == ST + 0x100);
    assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0);
    assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == ST + 0x128);
    assert_int_equal(U.frames[1].rva, 0x1205);
    assert_true(U.frames[1].module_id == 3);
    assert_true(U.frames[2].pc == B + 0x1305 && U.frames[2].sp == ST + 0x208);
    assert_int_equal(U.frames[2].flags, 0);
    assert_true(U.frames[0].stack_hi == ST + 0x128);
    assert_true(U.frames[1].stack_hi == ST + 0x208);

    /* Stack bounds that exclude the second EBP: the chain stops early and the scan (inside
     * the bounds) finds 0x1305's slot only if it lies in the window: it does not. */
    assert_int_equal(walk(&r, ST, ST + 0x1FF), KDH_OK);
    assert_int_equal(U.n_frames, 2);
    /* Misaligned EBP fails the sanity check; the scan from ESP finds 0x1205 at ST+0x124. */
    r = seed(B + 0x1100, ST + 0x100, ST + 0x122, 1);
    assert_int_equal(walk(&r, 0, 0), KDH_OK);
    assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == ST + 0x128);
    assert_int_equal(U.frames[1].flags, KDH_UNWIND_F_SCAN);
    mv_free(&V);
}

static void test_prolog(void **state)
{
    (void)state;
    build();
    chain_stack();
    /* At `mov edi,edi` / `push ebp`: the return address is at [ESP]; EBP is the caller's. */
    put32(ST + 0x0F0, (uint32_t)(B + 0x1205));
    for (uint32_t at = 0x1800; at <= 0x1802; at += 2) {
        kdh_unwind_regs_t r = seed(B + at, ST + 0x0F0, ST + 0x200, 1);
        assert_int_equal(walk(&r, 0, 0), KDH_OK);
        assert_int_equal(U.n_frames, 3);
        assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == ST + 0xF4);
        assert_true(U.frames[2].pc == B + 0x1305 && U.frames[2].sp == ST + 0x208);
    }
    /* At the int3 of `int3; ret 4` (DbgBreakPointWithStatus): the return address is at [ESP]. */
    const uint8_t brk[] = {0xcc, 0xc2, 0x04, 0x00};
    mv_put_bytes(&V, B + 0x1900, brk, 4);
    kdh_unwind_regs_t rb = seed(B + 0x1900, ST + 0x0F0, ST + 0x200, 1);
    assert_int_equal(walk(&rb, 0, 0), KDH_OK);
    assert_int_equal(U.n_frames, 3);
    assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == ST + 0xF4);
    assert_int_equal(U.frames[1].flags, 0);
    /* At `mov ebp,esp`: the push is done, the return address is at [ESP+4]. */
    put32(ST + 0x0EC, (uint32_t)(ST + 0x200));
    kdh_unwind_regs_t r = seed(B + 0x1803, ST + 0x0EC, ST + 0x200, 1);
    assert_int_equal(walk(&r, 0, 0), KDH_OK);
    assert_int_equal(U.n_frames, 3);
    assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == ST + 0xF4);
    mv_free(&V);
}

/* Scan: non-call words and words pointing outside modules are skipped; each CALL form counts. */
static void test_scan_forms(void **state)
{
    (void)state;
    const uint32_t ras[] = {0x1205, 0x1305, 0x1402, 0x1503, 0x1607};
    for (size_t i = 0; i < KDH_ARRAY_LEN(ras); i++) {
        build();
        kdh_unwind_module_t ghost = {.base = 0xFFFFFFFF81000000ull, .size = 0x1000, .id = 4};
        V.mods[V.nmods++] = ghost;                      /* a module whose code is unreadable */
        put32(ST + 0xFC, 0x81000010);
        const uint8_t sib[] = {0xff, 0x14};             /* call [sib] cut short: no call */
        mv_put_bytes(&V, B + 0x1700, sib, 2);
        put32(ST + 0xF8, (uint32_t)(B + 0x1702));
        put32(ST + 0x100, 0x12345678);                 /* outside every module */
        put32(ST + 0x104, (uint32_t)(B + 0x1210));     /* in the module, no call before */
        put32(ST + 0x108, (uint32_t)(B + ras[i]));
        kdh_unwind_regs_t r = seed(B + 0x1100, ST + 0xF8, 0, 0);
        assert_int_equal(walk(&r, 0, 0), KDH_OK);
        assert_true(U.n_frames >= 2);
        assert_true(U.frames[1].pc == B + ras[i] && U.frames[1].sp == ST + 0x10C);
        assert_int_equal(U.frames[1].flags, KDH_UNWIND_F_SCAN);
        mv_free(&V);
    }
    /* Scan window limit: after frame 0 the scan covers 40 words from ESP (ST+0x128 here);
     * a good return address just beyond is not taken, one just inside is. */
    build();
    put32(ST + 0x120, (uint32_t)(ST + 0x200));
    put32(ST + 0x124, (uint32_t)(B + 0x1205));
    put32(ST + 0x200, 0x10); /* broken chain: EBP below ESP next */
    put32(ST + 0x204, 0x7);
    put32(ST + 0x128 + 4 * 40, (uint32_t)(B + 0x1305));
    kdh_unwind_regs_t r = seed(B + 0x1100, ST + 0x100, ST + 0x120, 1);
    assert_int_equal(walk(&r, 0, 0), KDH_OK);
    assert_int_equal(U.n_frames, 2);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_NO_CALLER);
    put32(ST + 0x128 + 4 * 39, (uint32_t)(B + 0x1305));
    assert_int_equal(walk(&r, 0, 0), KDH_OK);
    assert_true(U.frames[2].pc == B + 0x1305 && U.frames[2].sp == ST + 0x128 + 4 * 40);
    /* ...and the word left just past the window is the next scan's first hit. */
    assert_int_equal(U.n_frames, 4);
    assert_true(U.frames[3].sp == ST + 0x128 + 4 * 41);
    mv_free(&V);
}

/* The not-cached protocol on x86: same frames, and a count of rounds made by hand. */
static void test_lazy(void **state)
{
    (void)state;
    build();
    chain_stack();
    kdh_unwind_regs_t r = seed(B + 0x1100, ST + 0x100, ST + 0x120, 1);
    assert_int_equal(walk(&r, 0, 0), KDH_OK);
    kdh_unwind_frame_t want[8];
    uint32_t n = U.n_frames;
    memcpy(want, U.frames, n * sizeof want[0]);
    mv_make_lazy(&V);
    kdh_unwind_config_t cfg;
    kdh_unwind_config_default(&cfg, KDH_UNWIND_X86);
    kdh_err_t err;
    assert_int_equal(kdh_unwind_init(&U, &cfg, &r, &err), KDH_OK);
    kdh_unwind_env_t env = mv_env(&V);
    int rounds = 0, rc;
    while ((rc = kdh_unwind_run(&U, &env, &err)) == KDH_ENOTCACHED) {
        mv_fill(&V, U.need_va, U.need_len);
        assert_true(++rounds < 100);
    }
    assert_int_equal(rc, KDH_OK);
    /* frame 0: code bytes at EIP, [EBP] pair; frame 1: pair; frame 2: pair, then the scan
     * window (40 words), which holds no candidate, so no code bytes are needed. */
    assert_int_equal(rounds, 5);
    assert_int_equal(U.n_frames, n);
    assert_memory_equal(U.frames, want, n * sizeof want[0]);
    mv_free(&V);
}

/* FRAMEDATA rows served to the unwinder by the test. */
static kdh_unwind_fpo_t FPO[8];
static int NFPO;

static int find_fpo(void *ctx, const kdh_unwind_module_t *m, uint32_t rva, kdh_unwind_fpo_t *out)
{
    (void)ctx;
    (void)m;
    for (int i = 0; i < NFPO; i++)
        if (rva >= FPO[i].rva_start && rva - FPO[i].rva_start < FPO[i].block_size) {
            *out = FPO[i];
            return KDH_OK;
        }
    return KDH_ENOTFOUND;
}

static void fpo_add(uint32_t rva, uint32_t len, uint32_t locals, uint32_t params, uint16_t saved,
                    const char *prog)
{
    kdh_unwind_fpo_t f = {.rva_start = rva, .block_size = len, .locals = locals, .params = params,
                          .saved_regs = saved, .program = prog};
    FPO[NFPO++] = f;
}

static int walk_fpo(const kdh_unwind_regs_t *r)
{
    kdh_unwind_config_t cfg;
    kdh_unwind_config_default(&cfg, KDH_UNWIND_X86);
    kdh_err_t err;
    assert_int_equal(kdh_unwind_init(&U, &cfg, r, &err), KDH_OK);
    kdh_unwind_env_t env = mv_env(&V);
    env.find_fpo = find_fpo;
    return kdh_unwind_run(&U, &env, &err);
}

#define RA_PROG "$T0 .raSearch = $eip $T0 ^ = $esp $T0 4 + ="
#define RA_EBX_PROG RA_PROG " $ebx $T0 4 - ^ ="

/* Frame data: the return slot comes from locals, saved registers and the callee's
 * arguments; saved registers come back; a decoy in the locals is not taken. */
static void test_fpo(void **state)
{
    (void)state;
    build();
    NFPO = 0;
    fpo_add(0x1100, 0x10, 0, 8, 0, RA_PROG);      /* frame 0: takes 8 bytes of arguments */
    fpo_add(0x11F0, 0x20, 8, 0, 4, RA_EBX_PROG);  /* caller: 8 locals, saves ebx */
    uint64_t S = ST + 0x400;
    put32(S, (uint32_t)(B + 0x1205));             /* frame 0's return, into 0x11F0's block */
    put32(S + 4, 7);                              /* the callee's two arguments */
    put32(S + 8, 9);
    put32(S + 12, 0);                             /* locals; the second holds a decoy */
    put32(S + 16, (uint32_t)(B + 0x1305));
    put32(S + 20, 0xEB0);                         /* saved ebx */
    put32(S + 24, (uint32_t)(B + 0x1402));        /* its return */
    kdh_unwind_regs_t r = seed(B + 0x1104, S, 0x1234, 1);
    r.gpr[KDH_REG_RBX] = 0x55;
    assert_int_equal(walk_fpo(&r), KDH_OK);
    assert_true(U.n_frames >= 3);
    /* F_FPO marks each frame unwound by its program: frames 0 and 1, not 2 (no row). */
    assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == S + 4);
    assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0 | KDH_UNWIND_F_FPO);
    assert_int_equal(U.frames[1].flags, KDH_UNWIND_F_FPO);
    assert_true(U.frames[2].pc == B + 0x1402 && U.frames[2].sp == S + 28);
    assert_int_equal(U.frames[2].flags & KDH_UNWIND_F_FPO, 0);
    assert_true(U.frames[1].stack_hi == S + 28);
    kdh_unwind_config_t cfg = U.cfg;
    cfg.max_frames = 2;
    kdh_err_t err;
    assert_int_equal(kdh_unwind_init(&U, &cfg, &r, &err), KDH_OK);
    kdh_unwind_env_t env = mv_env(&V);
    env.find_fpo = find_fpo;
    assert_int_equal(kdh_unwind_run(&U, &env, &err), KDH_OK);
    assert_true(U.regs.gpr[KDH_REG_RBX] == 0xEB0 && (U.regs.gpr_known & (1u << KDH_REG_RBX)));
    assert_true(U.regs.gpr[KDH_REG_RBP] == 0x1234); /* not saved by either: unchanged */

    /* Arguments being pushed for a call (not in the frame data): the search skips words
     * that are not code after a CALL, and takes the first return address after one. */
    mv_free(&V);
    build();
    NFPO = 0;
    fpo_add(0x1100, 0x10, 0, 0, 0, RA_PROG);
    put32(S, 5);
    put32(S + 4, (uint32_t)(B + 0x1210));         /* in the module, no CALL before it */
    put32(S + 8, (uint32_t)(B + 0x1205));
    r = seed(B + 0x1104, S, 0, 0);
    assert_int_equal(walk_fpo(&r), KDH_OK);
    assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == S + 12);

    /* An EBP-based program. */
    mv_free(&V);
    build();
    NFPO = 0;
    fpo_add(0x1100, 0x10, 0, 0, 0, "$T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ = $esp $T0 8 + =");
    put32(S + 0x20, (uint32_t)(ST + 0x800));
    put32(S + 0x24, (uint32_t)(B + 0x1205));
    r = seed(B + 0x1104, S, S + 0x20, 1);
    assert_int_equal(walk_fpo(&r), KDH_OK);
    assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == S + 0x28);
    assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0 | KDH_UNWIND_F_FPO);

    /* Programs that cannot be used fall back to the EBP chain (same answer here). */
    const char *bad[] = {"garbage", "+", "$T0 $foo =", "$T0 .raSearch =", "$eip 1 0 / =",
                         "$esp $T0 ^ =", "5 $eip =", "$T0 $T1 =",
                         "$T0 .raSearch = $eip $T0 ^ = $esp $T0 4 + = = = ="};
    for (size_t i = 0; i < KDH_ARRAY_LEN(bad); i++) {
        FPO[0].program = bad[i];
        assert_int_equal(walk_fpo(&r), KDH_OK);
        assert_true(U.n_frames >= 2);
        assert_true(U.frames[1].pc == B + 0x1205 && U.frames[1].sp == S + 0x28);
        assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0);
    }
    mv_free(&V);
}

/* Frame 0 in an epilog: emulated from the code bytes. Stack by hand: E is the return slot,
 * ebx at E-4 and esi at E-8 for the pop forms, the saved EBP at E-4 for the frame forms. */
static void test_epilog(void **state)
{
    (void)state;
    const struct { uint8_t b[12]; uint32_t n, depth; int frame, pops; } f[] = {
        {{0x83, 0xc4, 0x08, 0x5e, 0x5b, 0xc3}, 6, 16, 0, 2},             /* add esp,8; pops */
        {{0x81, 0xc4, 0x08, 0, 0, 0, 0x5e, 0x5b, 0xc2, 0x08, 0}, 11, 16, 0, 2},
        {{0x5b, 0xc3}, 2, 4, 0, 1},                                       /* pop ebx; ret */
        {{0xc9, 0xc3}, 2, 0x40, 1, 0},                                    /* leave; ret */
        {{0x8b, 0xe5, 0x5d, 0xc3}, 4, 0x40, 1, 0},                        /* mov esp,ebp */
    };
    for (size_t i = 0; i < KDH_ARRAY_LEN(f); i++) {
        build();
        uint64_t E = ST + 0x600;
        put32(E, (uint32_t)(B + 0x1205));
        put32(E - 4, f[i].frame ? (uint32_t)(ST + 0x900) : 0xB0);
        put32(E - 8, 0x50);
        mv_put_bytes(&V, B + 0x1A00, f[i].b, f[i].n);
        kdh_unwind_regs_t r = seed(B + 0x1A00, E - f[i].depth, E - 4, 1);
        r.gpr[KDH_REG_RBX] = 0x1B;
        r.gpr[KDH_REG_RSI] = 0x15;
        kdh_unwind_config_t cfg;
        kdh_unwind_config_default(&cfg, KDH_UNWIND_X86);
        cfg.user_limit = 0;
        cfg.max_frames = 1;
        kdh_err_t err;
        assert_int_equal(kdh_unwind_init(&U, &cfg, &r, &err), KDH_OK);
        kdh_unwind_env_t env = mv_env(&V);
        assert_int_equal(kdh_unwind_run(&U, &env, &err), KDH_OK);
        assert_true(U.regs.pc == B + 0x1205 && U.regs.sp == E + 4);
        if (f[i].frame) {
            assert_true(U.regs.gpr[KDH_REG_RBP] == ST + 0x900);
        } else {
            assert_true(U.regs.gpr[KDH_REG_RBX] == 0xB0);
            assert_true(U.regs.gpr[KDH_REG_RSI] == (f[i].pops == 2 ? 0x50 : 0x15));
            assert_true(U.regs.gpr[KDH_REG_RBP] == E - 4); /* untouched */
        }
        mv_free(&V);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_prolog),
        cmocka_unit_test(test_scan_forms),
        cmocka_unit_test(test_lazy),
        cmocka_unit_test(test_fpo),
        cmocka_unit_test(test_epilog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
