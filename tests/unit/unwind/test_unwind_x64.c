/* Synthetic x64 unwind tests: hand-encoded UNWIND_INFO for every operation, epilogs (v1 byte
 * forms, v2 EPILOG codes), partial prologs, machine frames, chains, stop conditions and the
 * not-cached protocol. Every expected value is laid out by hand in the test's fake stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "synth.h"

#define RET_LEAF 0x2000u /* code with no .pdata: leaf functions */
#define SEED_RBX 0x1111ull
#define SEED_RSI 0x2222ull
#define SEED_RBP 0x3333ull
#define SEED_R13 0x4444ull
#define SEED_R12 0x5555ull
#define SEED_R14 0x6666ull

static void build(synth_t *s)
{
    synth_init(s);
    /* F1: push rbp; push r13; sub rsp,0x100; sub rsp,0x18; mov [rsp+20h],rbx;
     * mov [rsp+108h],rsi; movaps [rsp+30h],xmm6; movaps [rsp+40h],xmm7 (FAR) */
    const uint16_t f1[] = {UC(41, 9, 7), 0x40, 0,   UC(32, 8, 6), 3,         UC(27, 5, 6),
                           0x108,        0,    UC(19, 4, 3),      4,         UC(14, 2, 2),
                           UC(10, 1, 0), 0x20, UC(3, 0, 13),      UC(1, 0, 5)};
    synth_info(s, 0x5000, 1, 0, 41, 0, f1, 15, 0, 0, 0);
    synth_rf(s, 0x1000, 0x1100, 0x5000);
    /* F3: push rbx; push r14; sub rsp,28h; epilog at +0x40 */
    const uint16_t f3[] = {UC(7, 2, 4), UC(3, 0, 14), UC(1, 0, 3)};
    synth_info(s, 0x5040, 1, 0, 7, 0, f3, 3, 0, 0, 0);
    synth_rf(s, 0x1100, 0x1180, 0x5040);
    const uint8_t ep3[] = {0x48, 0x83, 0xc4, 0x28, 0x41, 0x5e, 0x5b, 0xc3};
    mv_put_bytes(&s->v, SB + 0x1140, ep3, sizeof ep3);
    /* F4: push rbp; sub rsp,40h; lea rbp,[rsp+20h]; mov [rsp+10h],rbx  (FrameReg RBP, off 2) */
    const uint16_t f4[] = {UC(15, 4, 3), 2, UC(10, 3, 0), UC(5, 2, 7), UC(1, 0, 5)};
    synth_info(s, 0x5060, 1, 0, 15, 0x25, f4, 5, 0, 0, 0);
    synth_rf(s, 0x1180, 0x1200, 0x5060);
    const uint8_t ep4[] = {0x48, 0x8d, 0x65, 0x20, 0x5d, 0xc3};
    mv_put_bytes(&s->v, SB + 0x11C0, ep4, sizeof ep4);
    /* F2: push rbx; sub rsp,2008h as ALLOC_LARGE with the 32-bit unscaled operand */
    const uint16_t f2[] = {UC(12, 1, 1), 0x2008, 0, UC(1, 0, 3)};
    synth_info(s, 0x5080, 1, 0, 12, 0, f2, 4, 0, 0, 0);
    synth_rf(s, 0x1200, 0x1280, 0x5080);
    /* F5 (version 2): push rbx; push r12; sub rsp,20h; epilogs of 8 bytes at the end and
     * 0x40 before the end: add rsp,20h; pop r12; pop rbx; ret (the bytes stay int3). */
    const uint16_t f5[] = {UC(8, 6, 1), UC(0x40, 6, 0), UC(7, 2, 3), UC(3, 0, 12), UC(1, 0, 3)};
    synth_info(s, 0x50A0, 2, 0, 7, 0, f5, 5, 0, 0, 0);
    synth_rf(s, 0x1400, 0x1480, 0x50A0);
    /* F6: machine frame with error code; push rbp; sub rsp,18h.  F6b: machine frame only. */
    const uint16_t f6[] = {UC(5, 2, 2), UC(1, 0, 5), UC(0, 10, 1)};
    synth_info(s, 0x50C0, 1, 0, 5, 0, f6, 3, 0, 0, 0);
    synth_rf(s, 0x1500, 0x1540, 0x50C0);
    const uint16_t f6b[] = {UC(0, 10, 0)};
    synth_info(s, 0x50D0, 1, 0, 0, 0, f6b, 1, 0, 0, 0);
    synth_rf(s, 0x1540, 0x1580, 0x50D0);
    /* F7: push rbx; sub rsp,20h.  F7a: cold fragment, push rsi, chained to F7.
     * F8: push r15, chained to F7a (three levels).  FL: chained to itself. */
    const uint16_t f7[] = {UC(5, 2, 3), UC(1, 0, 3)};
    synth_info(s, 0x50E0, 1, 0, 5, 0, f7, 2, 0, 0, 0);
    synth_rf(s, 0x1600, 0x1680, 0x50E0);
    const uint16_t f7a[] = {UC(1, 0, 6)};
    synth_info(s, 0x5100, 1, 4, 1, 0, f7a, 1, 0x1600, 0x1680, 0x50E0);
    synth_rf(s, 0x1700, 0x1740, 0x5100);
    const uint16_t f8[] = {UC(2, 0, 15)};
    synth_info(s, 0x5120, 1, 4, 2, 0, f8, 1, 0x1700, 0x1740, 0x5100);
    synth_rf(s, 0x1780, 0x17C0, 0x5120);
    synth_info(s, 0x5140, 1, 4, 0, 0, NULL, 0, 0x1800, 0x1840, 0x5140);
    synth_rf(s, 0x1800, 0x1840, 0x5140);
    /* FB: the SPARE op (7) is invalid */
    const uint16_t fb[] = {UC(1, 7, 0)};
    synth_info(s, 0x5160, 1, 0, 1, 0, fb, 1, 0, 0, 0);
    synth_rf(s, 0x1900, 0x1940, 0x5160);
    /* FI: an indirect entry (UnwindData bit 0) naming F7's RUNTIME_FUNCTION (index 7). */
    synth_rf(s, 0x1980, 0x19C0, (PDATA_RVA + 12 * 7) | 1);
}

static kdh_unwind_regs_t seed(uint64_t pc, uint64_t sp)
{
    kdh_unwind_regs_t r;
    memset(&r, 0, sizeof r);
    r.pc = pc;
    r.sp = sp;
    r.gpr[KDH_REG_RBX] = SEED_RBX;
    r.gpr[KDH_REG_RSI] = SEED_RSI;
    r.gpr[KDH_REG_RBP] = SEED_RBP;
    r.gpr[KDH_REG_R13] = SEED_R13;
    r.gpr[KDH_REG_R12] = SEED_R12;
    r.gpr[KDH_REG_R14] = SEED_R14;
    r.gpr_known = 0xFFFF;
    r.xmm_known = 0;
    return r;
}

/* Runs a walk over the synthetic module with a frame limit; returns run()'s code. */
static int walk(synth_t *s, kdh_unwind_t *u, const kdh_unwind_regs_t *r, uint32_t max_frames,
                uint64_t user_limit)
{
    kdh_unwind_config_t cfg;
    kdh_unwind_config_default(&cfg, KDH_UNWIND_X64);
    cfg.max_frames = max_frames;
    cfg.user_limit = user_limit;
    kdh_err_t err;
    assert_int_equal(kdh_unwind_init(u, &cfg, r, &err), KDH_OK);
    kdh_unwind_env_t env = mv_env(&s->v);
    return kdh_unwind_run(u, &env, &err);
}

static kdh_unwind_t U; /* large: keep it off the test's stack */
static kdh_unwind_t U2;

/* Walks again from an empty cache filled only from `need`; the frames and the final state
 * must equal those of the walk just made in U. Returns the number of rounds. */
static int lazy_rounds(synth_t *s, const kdh_unwind_regs_t *r)
{
    mv_make_lazy(&s->v);
    kdh_err_t err;
    assert_int_equal(kdh_unwind_init(&U2, &U.cfg, r, &err), KDH_OK);
    kdh_unwind_env_t env = mv_env(&s->v);
    int rounds = 0, rc;
    while ((rc = kdh_unwind_run(&U2, &env, &err)) == KDH_ENOTCACHED) {
        assert_true(U2.need_len > 0 && U2.need_len <= 4096);
        mv_fill(&s->v, U2.need_va, U2.need_len);
        assert_true(++rounds < 100);
    }
    assert_int_equal(rc, KDH_OK);
    assert_int_equal(U2.n_frames, U.n_frames);
    assert_int_equal(U2.stop, U.stop);
    assert_memory_equal(U2.frames, U.frames, U.n_frames * sizeof U.frames[0]);
    assert_memory_equal(U2.regs.gpr, U.regs.gpr, sizeof U.regs.gpr);
    for (int i = 0; i < s->v.n; i++) {
        free(s->v.r[i].cached);
        s->v.r[i].cached = NULL;
    }
    return rounds;
}

static void test_all_ops_body(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    uint64_t S = STK + 0x100;
    mv_put64(&s.v, S + 0x20, 0xB0B0);
    mv_put64(&s.v, S + 0x108, 0x5151);
    for (int i = 0; i < 16; i++) {
        mv_ptr(&s.v, S + 0x30 + i, 1)[0] = (uint8_t)(0x60 + i);
        mv_ptr(&s.v, S + 0x40 + i, 1)[0] = (uint8_t)(0x70 + i);
    }
    mv_put64(&s.v, S + 0x118, 0xD13);
    mv_put64(&s.v, S + 0x120, 0xB9);
    mv_put64(&s.v, S + 0x128, SB + RET_LEAF + 0x10);
    mv_put64(&s.v, S + 0x130, 0x10);
    kdh_unwind_regs_t r = seed(SB + 0x1050, S);

    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_LIMIT);
    assert_int_equal(U.n_frames, 1);
    assert_true(U.frames[0].pc == SB + 0x1050 && U.frames[0].sp == S);
    assert_int_equal(U.frames[0].rva, 0x1050);
    assert_true(U.frames[0].module_id == 7);
    assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0);
    assert_true(U.frames[0].stack_hi == S + 0x130);
    assert_true(U.regs.pc == SB + RET_LEAF + 0x10);
    assert_true(U.regs.sp == S + 0x130);
    assert_true(U.regs.gpr[KDH_REG_RBX] == 0xB0B0);
    assert_true(U.regs.gpr[KDH_REG_RSI] == 0x5151);
    assert_true(U.regs.gpr[KDH_REG_R13] == 0xD13);
    assert_true(U.regs.gpr[KDH_REG_RBP] == 0xB9);
    assert_true(U.regs.gpr[KDH_REG_R12] == SEED_R12);
    assert_true((U.regs.xmm_known & 0xC0) == 0xC0);
    assert_int_equal(U.regs.xmm[6][0], 0x60);
    assert_int_equal(U.regs.xmm[6][15], 0x6F);
    assert_int_equal(U.regs.xmm[7][3], 0x73);
    assert_false(U.regs.gpr_known & (1u << KDH_REG_RAX)); /* volatile: unknown in the caller */
    assert_true(U.regs.gpr_known & (1u << KDH_REG_R12));

    /* The whole walk: then a leaf frame whose return address is below 4096. */
    assert_int_equal(walk(&s, &U, &r, 64, 0), KDH_OK);
    assert_int_equal(U.n_frames, 2);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_BAD_PC);
    assert_true(U.frames[1].pc == SB + RET_LEAF + 0x10 && U.frames[1].sp == S + 0x130);
    assert_int_equal(U.frames[1].flags, KDH_UNWIND_F_LEAF);
    assert_true(kdh_unwind_stack_end(&U) == S + 0x138);
    mv_free(&s.v);
}

/* Stops at every prolog step of F1: only the codes already executed may be undone. */
static void test_prolog_steps(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    uint64_t E = STK + 0x800, fb = E - 0x128;
    mv_put64(&s.v, E, SB + RET_LEAF + 0x20);
    mv_put64(&s.v, E - 8, 0xB9);
    mv_put64(&s.v, E - 16, 0xD13);
    mv_put64(&s.v, fb + 0x20, 0xB0B0);
    mv_put64(&s.v, fb + 0x108, 0x5151);
    const struct { uint32_t k, depth; } st[] = {{0, 0},      {1, 8},      {3, 16},     {10, 0x110},
                                                {14, 0x128}, {19, 0x128}, {27, 0x128}, {32, 0x128},
                                                {41, 0x128}, {0x50, 0x128}};
    for (size_t i = 0; i < KDH_ARRAY_LEN(st); i++) {
        uint32_t k = st[i].k;
        kdh_unwind_regs_t r = seed(SB + 0x1000 + k, E - st[i].depth);
        assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
        assert_true(U.regs.pc == SB + RET_LEAF + 0x20);
        assert_true(U.regs.sp == E + 8);
        assert_true(U.regs.gpr[KDH_REG_RBP] == (k >= 1 ? 0xB9 : SEED_RBP));
        assert_true(U.regs.gpr[KDH_REG_R13] == (k >= 3 ? 0xD13 : SEED_R13));
        assert_true(U.regs.gpr[KDH_REG_RBX] == (k >= 19 ? 0xB0B0 : SEED_RBX));
        assert_true(U.regs.gpr[KDH_REG_RSI] == (k >= 27 ? 0x5151 : SEED_RSI));
        assert_int_equal(!!(U.regs.xmm_known & (1u << 6)), k >= 32);
        assert_int_equal(!!(U.regs.xmm_known & (1u << 7)), k >= 41);
    }
    mv_free(&s.v);
}

static void test_alloc_large_32(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    uint64_t S = STK + 0x1000;
    mv_put64(&s.v, S + 0x2008, 0xB2);
    mv_put64(&s.v, S + 0x2010, SB + RET_LEAF);
    kdh_unwind_regs_t r = seed(SB + 0x1240, S);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.sp == S + 0x2018);
    assert_true(U.regs.pc == SB + RET_LEAF);
    assert_true(U.regs.gpr[KDH_REG_RBX] == 0xB2);
    mv_free(&s.v);
}

/* F4 in its body after an alloca: RSP is far below FrameBase, which comes from RBP. */
static void test_set_fpreg(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    uint64_t A = STK + 0xA00;
    mv_put64(&s.v, A, SB + RET_LEAF + 0x40);
    mv_put64(&s.v, A - 8, 0xBB);
    mv_put64(&s.v, A - 0x38, 0xB3B3); /* FrameBase (A-0x48) + 0x10 */
    kdh_unwind_regs_t r = seed(SB + 0x11A0, A - 0x200);
    r.gpr[KDH_REG_RBP] = A - 0x28;
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.sp == A + 8);
    assert_true(U.regs.pc == SB + RET_LEAF + 0x40);
    assert_true(U.regs.gpr[KDH_REG_RBP] == 0xBB);
    assert_true(U.regs.gpr[KDH_REG_RBX] == 0xB3B3);

    /* Prolog offset 5: after the allocation, before lea rbp: RBP is still the caller's. */
    r = seed(SB + 0x1185, A - 0x48);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.sp == A + 8 && U.regs.gpr[KDH_REG_RBP] == 0xBB);
    assert_true(U.regs.gpr[KDH_REG_RBX] == SEED_RBX);
    /* Offset 10: lea rbp done, the save not yet. */
    r = seed(SB + 0x118A, A - 0x48);
    r.gpr[KDH_REG_RBP] = A - 0x28;
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.sp == A + 8 && U.regs.gpr[KDH_REG_RBX] == SEED_RBX);

    /* Epilog lea rsp,[rbp+20h] (disp8), then disp32, with RSP still low from the alloca. */
    for (int form = 0; form < 2; form++) {
        if (form == 1) {
            const uint8_t ep[] = {0x48, 0x8d, 0xa5, 0x20, 0, 0, 0, 0x5d, 0xc3};
            mv_put_bytes(&s.v, SB + 0x11C0, ep, sizeof ep);
        }
        r = seed(SB + 0x11C0, A - 0x200);
        r.gpr[KDH_REG_RBP] = A - 0x28;
        assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
        assert_true(U.regs.sp == A + 8 && U.regs.pc == SB + RET_LEAF + 0x40);
        assert_true(U.regs.gpr[KDH_REG_RBP] == 0xBB);
        assert_true(U.regs.gpr[KDH_REG_RBX] == SEED_RBX); /* epilog: no SAVE_NONVOL undone */
        assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0 | KDH_UNWIND_F_EPILOG);
    }

    /* RBP unknown: the walk stops instead of guessing. */
    r = seed(SB + 0x11A0, A - 0x200);
    r.gpr_known &= ~(1u << KDH_REG_RBP);
    assert_int_equal(walk(&s, &U, &r, 8, 0), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_REG_UNKNOWN);
    /* RBP below RSP: the caller's SP would go down. */
    r = seed(SB + 0x11A0, A - 0x200);
    r.gpr[KDH_REG_RBP] = A - 0x300;
    assert_int_equal(walk(&s, &U, &r, 8, 0), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_SP);
    assert_int_equal(U.n_frames, 1);
    mv_free(&s.v);
}

/* F3 epilog (add rsp,28h; pop r14; pop rbx; ret) at each instruction, and its v1 variants. */
static void test_epilog_v1(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    uint64_t E = STK + 0x900;
    mv_put64(&s.v, E, SB + RET_LEAF + 0x30);
    mv_put64(&s.v, E - 8, 0xB1);
    mv_put64(&s.v, E - 16, 0xE14);
    const struct { uint32_t pos, depth; int epi; } st[] = {
        {0x20, 0x38, 0}, {0x40, 0x38, 1}, {0x44, 0x10, 1}, {0x46, 8, 1}, {0x47, 0, 1}};
    for (size_t i = 0; i < KDH_ARRAY_LEN(st); i++) {
        kdh_unwind_regs_t r = seed(SB + 0x1100 + st[i].pos, E - st[i].depth);
        assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
        assert_true(U.regs.sp == E + 8);
        assert_true(U.regs.pc == SB + RET_LEAF + 0x30);
        assert_true(U.regs.gpr[KDH_REG_RBX] == (st[i].pos <= 0x46 ? 0xB1 : SEED_RBX));
        assert_true(U.regs.gpr[KDH_REG_R14] == (st[i].pos <= 0x44 ? 0xE14 : SEED_R14));
        assert_int_equal(!!(U.frames[0].flags & KDH_UNWIND_F_EPILOG), st[i].epi);
    }
    /* Variants, each placed at +0x40 with the stack as before the add, or at the terminator. */
    struct { uint8_t b[16]; uint32_t n, pos, depth; int epi; } v[] = {
        {{0x48, 0x81, 0xc4, 0x28, 0, 0, 0, 0x41, 0x5e, 0x5b, 0xc3}, 11, 0, 0x38, 1},
        {{0xc2, 0x10, 0x00}, 3, 0, 0, 1},                       /* ret 10h */
        {{0xf3, 0xc3}, 2, 0, 0, 1},                             /* rep ret */
        {{0xf2, 0xc3}, 2, 0, 0, 1},                             /* bnd ret */
        {{0x5b, 0xe9, 0xb8, 0x0e, 0, 0}, 6, 0, 8, 1},           /* pop rbx; jmp 0x2000 */
        {{0xeb, 0xbe}, 2, 0, 0, 1},                             /* jmp rel8 to F3's start */
        {{0xff, 0x25, 0, 0, 0, 0}, 6, 0, 0, 1},                 /* jmp [rip] */
        {{0x48, 0xff, 0xe0}, 3, 0, 0, 1},                       /* rex.w jmp rax */
        {{0xeb, 0x07}, 2, 0, 0x38, 0},                          /* jmp inside: not an epilog */
        {{0x41, 0x5e, 0x90, 0xc3}, 4, 0, 0x10, 0},              /* nop breaks the pattern */
    };
    for (size_t i = 0; i < KDH_ARRAY_LEN(v); i++) {
        memset(mv_ptr(&s.v, SB + 0x1140, 0x40), 0xCC, 0x40);
        mv_put_bytes(&s.v, SB + 0x1140, v[i].b, v[i].n);
        kdh_unwind_regs_t r = seed(SB + 0x1140 + v[i].pos, E - v[i].depth);
        assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
        assert_int_equal(!!(U.frames[0].flags & KDH_UNWIND_F_EPILOG), v[i].epi);
        if (v[i].epi || v[i].depth == 0x38) {
            assert_true(U.regs.sp == E + 8);
            assert_true(U.regs.pc == SB + RET_LEAF + 0x30);
        }
        if (v[i].epi && v[i].depth >= 8)
            assert_true(U.regs.gpr[KDH_REG_RBX] == 0xB1);
    }
    mv_free(&s.v);
}

/* A jump out of a function is a tail call only when it leaves the function: a jump from F7
 * into its own cold fragment F7a is body code, a jump from F3 into F1 is a tail call. */
static void test_jump_to_fragment(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    uint64_t R = STK + 0x1800;
    mv_put64(&s.v, R + 0x20, 0xB7);
    mv_put64(&s.v, R + 0x28, SB + RET_LEAF + 0xA0);
    const uint8_t j[] = {0xe9, 0xbb, 0x00, 0x00, 0x00}; /* 0x1640: jmp 0x1700 */
    mv_put_bytes(&s.v, SB + 0x1640, j, sizeof j);
    kdh_unwind_regs_t r = seed(SB + 0x1640, R);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0);
    assert_true(U.regs.sp == R + 0x30 && U.regs.pc == SB + RET_LEAF + 0xA0);
    assert_true(U.regs.gpr[KDH_REG_RBX] == 0xB7);
    const uint8_t j2[] = {0xe9, 0xbb, 0xfe, 0xff, 0xff}; /* 0x1140: jmp 0x1000 (F1) */
    mv_put_bytes(&s.v, SB + 0x1140, j2, sizeof j2);
    mv_put64(&s.v, R, SB + RET_LEAF + 0xB0);
    r = seed(SB + 0x1140, R);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0 | KDH_UNWIND_F_EPILOG);
    assert_true(U.regs.sp == R + 8 && U.regs.pc == SB + RET_LEAF + 0xB0);
    mv_free(&s.v);
}

/* F5 (v2): two epilogs described by EPILOG codes; the code bytes are int3 and never read. */
static void test_epilog_v2(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    uint64_t E = STK + 0xB00;
    mv_put64(&s.v, E, SB + RET_LEAF + 0x50);
    mv_put64(&s.v, E - 8, 0xB5);
    mv_put64(&s.v, E - 16, 0xC12);
    const struct { uint32_t pos, depth; int epi; } st[] = {
        {0x20, 0x30, 0}, {0x78, 0x30, 0}, {0x7C, 0x10, 1}, {0x7E, 8, 1}, {0x7F, 0, 1},
        {0x44, 0x10, 1}, {0x46, 8, 1},    {0x47, 0, 1}};
    for (size_t i = 0; i < KDH_ARRAY_LEN(st); i++) {
        kdh_unwind_regs_t r = seed(SB + 0x1400 + st[i].pos, E - st[i].depth);
        assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
        assert_true(U.regs.sp == E + 8);
        assert_true(U.regs.pc == SB + RET_LEAF + 0x50);
        uint32_t at = st[i].pos >= 0x78 ? st[i].pos - 0x78 : st[i].pos - 0x40;
        assert_true(U.regs.gpr[KDH_REG_RBX] == (st[i].pos < 0x40 || at < 7 ? 0xB5 : SEED_RBX));
        assert_true(U.regs.gpr[KDH_REG_R12] == (st[i].pos < 0x40 || at < 6 ? 0xC12 : SEED_R12));
        assert_int_equal(!!(U.frames[0].flags & KDH_UNWIND_F_EPILOG), st[i].epi);
    }
    mv_free(&s.v);
}

static void test_machine_frames(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    /* F6 (error code): interrupted at F3's `ret`, which must be found by exact-pc lookup and
     * recognised as an epilog. */
    uint64_t T = STK + 0xC00, M = T + 0x20, I = STK + 0x2000;
    mv_put64(&s.v, T + 0x18, 0xBE);
    mv_put64(&s.v, M, 0);             /* error code */
    mv_put64(&s.v, M + 8, SB + 0x1147); /* RIP */
    mv_put64(&s.v, M + 16, 0x10);     /* CS */
    mv_put64(&s.v, M + 24, 0x246);    /* EFLAGS */
    mv_put64(&s.v, M + 32, I);        /* RSP */
    mv_put64(&s.v, I, SB + RET_LEAF + 0x60);
    mv_put64(&s.v, I + 8, 0x10);
    kdh_unwind_regs_t r = seed(SB + 0x1520, T);
    assert_int_equal(walk(&s, &U, &r, 64, 0), KDH_OK);
    assert_int_equal(U.n_frames, 3);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_BAD_PC);
    assert_true(U.frames[1].pc == SB + 0x1147 && U.frames[1].sp == I);
    assert_int_equal(U.frames[1].flags, KDH_UNWIND_F_MACHFRAME | KDH_UNWIND_F_EPILOG);
    assert_true(U.frames[2].pc == SB + RET_LEAF + 0x60 && U.frames[2].sp == I + 8);
    assert_true(U.frames[0].stack_hi == M + 40);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.gpr[KDH_REG_RBP] == 0xBE);
    /* The same walk from an empty cache. The machine frame's RSP is read in the same round
     * as the frame's other slots; counted by hand: .pdata, F6's info, code at pc, F6's stack
     * span; F3's info, code at pc, its return slot; the leaf's return slot. */
    assert_int_equal(walk(&s, &U, &r, 64, 0), KDH_OK);
    assert_int_equal(lazy_rounds(&s, &r), 8);

    /* F6b (no error code): interrupted exactly at F3's first byte. A pc-1 lookup would find
     * F1 and unwind garbage; the exact pc applies no F3 code and pops the return address. */
    uint64_t T2 = STK + 0xD00, I2 = STK + 0x2100;
    mv_put64(&s.v, T2, SB + 0x1100);
    mv_put64(&s.v, T2 + 24, I2);
    mv_put64(&s.v, I2, SB + RET_LEAF + 0x70);
    mv_put64(&s.v, I2 + 8, 0x10);
    r = seed(SB + 0x1550, T2);
    assert_int_equal(walk(&s, &U, &r, 64, 0), KDH_OK);
    assert_int_equal(U.n_frames, 3);
    assert_true(U.frames[1].pc == SB + 0x1100 && U.frames[1].sp == I2);
    assert_int_equal(U.frames[1].flags, KDH_UNWIND_F_MACHFRAME);
    assert_true(U.frames[2].pc == SB + RET_LEAF + 0x70 && U.frames[2].sp == I2 + 8);
    mv_free(&s.v);
}

static void test_chains(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    uint64_t C = STK + 0xE00, C3 = STK + 0xF00;
    mv_put64(&s.v, C, 0x5E);
    mv_put64(&s.v, C + 0x28, 0xB7);
    mv_put64(&s.v, C + 0x30, SB + RET_LEAF + 0x80);
    mv_put64(&s.v, C3, 0xF15);
    mv_put64(&s.v, C3 + 8, 0x5E);
    mv_put64(&s.v, C3 + 0x30, 0xB7);
    mv_put64(&s.v, C3 + 0x38, SB + RET_LEAF + 0x80);
    /* Two levels: the fragment's push rsi, then all of F7's codes. */
    kdh_unwind_regs_t r = seed(SB + 0x1710, C);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.sp == C + 0x38 && U.regs.pc == SB + RET_LEAF + 0x80);
    assert_true(U.regs.gpr[KDH_REG_RSI] == 0x5E && U.regs.gpr[KDH_REG_RBX] == 0xB7);
    /* At the fragment's first byte its own push has not run; the parent's codes all apply. */
    r = seed(SB + 0x1700, C + 8);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.sp == C + 0x38 && U.regs.gpr[KDH_REG_RSI] == SEED_RSI);
    assert_true(U.regs.gpr[KDH_REG_RBX] == 0xB7);
    /* Three levels. */
    r = seed(SB + 0x1790, C3);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.sp == C3 + 0x40 && U.regs.pc == SB + RET_LEAF + 0x80);
    assert_true(U.regs.gpr[KDH_REG_R15] == 0xF15 && U.regs.gpr[KDH_REG_RSI] == 0x5E &&
                U.regs.gpr[KDH_REG_RBX] == 0xB7);
    /* An indirect entry: F7's codes all apply to its fragment. */
    r = seed(SB + 0x1990, C + 8);
    assert_int_equal(walk(&s, &U, &r, 1, 0), KDH_OK);
    assert_true(U.regs.sp == C + 0x38 && U.regs.pc == SB + RET_LEAF + 0x80);
    assert_true(U.regs.gpr[KDH_REG_RBX] == 0xB7);
    /* A chain to itself: corrupt after the chain limit; the frame itself is kept. */
    r = seed(SB + 0x1810, C);
    assert_int_equal(walk(&s, &U, &r, 8, 0), KDH_ECORRUPT);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_ERROR);
    assert_int_equal(U.n_frames, 1);
    assert_true(U.frames[0].pc == SB + 0x1810 && U.frames[0].stack_hi == 0);
    /* Calling again reports the same end without reading. */
    kdh_unwind_env_t env = mv_env(&s.v);
    unsigned calls = s.v.calls;
    assert_int_equal(kdh_unwind_run(&U, &env, NULL), KDH_ECORRUPT);
    assert_int_equal(s.v.calls, calls);
    /* An invalid op. */
    r = seed(SB + 0x1910, C);
    assert_int_equal(walk(&s, &U, &r, 8, 0), KDH_ECORRUPT);
    mv_free(&s.v);
}

static void test_stops(void **state)
{
    (void)state;
    synth_t s;
    build(&s);
    /* Leaf whose caller is in user space (default kernel/user boundary). */
    mv_put64(&s.v, STK + 0x3000, 0x00007FF612340000ull);
    kdh_unwind_regs_t r = seed(SB + RET_LEAF, STK + 0x3000);
    assert_int_equal(walk(&s, &U, &r, 64, 0x8000000000000000ull), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_USER);
    assert_int_equal(U.n_frames, 1);
    assert_int_equal(U.frames[0].flags, KDH_UNWIND_F_FRAME0 | KDH_UNWIND_F_LEAF);
    /* With no boundary the same address is merely outside every module. */
    assert_int_equal(walk(&s, &U, &r, 64, 0), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_NO_MODULE);
    /* Frame limit over an endless run of leaf frames. */
    for (int i = 0; i < 16; i++)
        mv_put64(&s.v, STK + 0x3100 + 8 * i, SB + RET_LEAF + 16 * i);
    r = seed(SB + RET_LEAF, STK + 0x3100);
    assert_int_equal(walk(&s, &U, &r, 5, 0), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_LIMIT);
    assert_int_equal(U.n_frames, 5);
    assert_true(U.frames[4].pc == SB + RET_LEAF + 16 * 3 && U.frames[4].sp == STK + 0x3120);
    /* Not in any module at all. */
    r = seed(0xFFFFF80100000000ull, STK + 0x3000);
    assert_int_equal(walk(&s, &U, &r, 64, 0), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_NO_MODULE);
    assert_int_equal(U.n_frames, 0);
    /* Stack outside every region: unreadable. */
    r = seed(SB + RET_LEAF, STK + 0x10000);
    assert_int_equal(walk(&s, &U, &r, 64, 0), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_UNREADABLE);
    mv_free(&s.v);
}

/* A four-frame stack (F4 alloca -> F1 -> F7a chained -> leaf -> user space), walked once with
 * everything cached and once from an empty cache filled only from `need`. */
static void layout_multi(synth_t *s, uint64_t *sp0, uint64_t *rbp0, uint64_t *end)
{
    build(s);
    uint64_t A = STK + 0x1400, S1 = A + 8, C = S1 + 0x130;
    mv_put64(&s->v, A, SB + 0x1050);
    mv_put64(&s->v, A - 8, 0xBB);
    mv_put64(&s->v, A - 0x38, 0xB3B3);
    mv_put64(&s->v, S1 + 0x20, 0x1B);
    mv_put64(&s->v, S1 + 0x108, 0x1E);
    mv_put64(&s->v, S1 + 0x118, 0x13);
    mv_put64(&s->v, S1 + 0x120, 0x1BB);
    mv_put64(&s->v, S1 + 0x128, SB + 0x1710);
    mv_put64(&s->v, C, 0x5E);
    mv_put64(&s->v, C + 0x28, 0xB7);
    mv_put64(&s->v, C + 0x30, SB + RET_LEAF + 0x90);
    mv_put64(&s->v, C + 0x38, 0x00007FF612340000ull);
    *sp0 = A - 0x200;
    *rbp0 = A - 0x28;
    *end = C + 0x40;
}

static void test_not_cached_protocol(void **state)
{
    (void)state;
    synth_t s;
    uint64_t sp0, rbp0, end;
    layout_multi(&s, &sp0, &rbp0, &end);
    kdh_unwind_regs_t r = seed(SB + 0x11A0, sp0);
    r.gpr[KDH_REG_RBP] = rbp0;
    assert_int_equal(walk(&s, &U, &r, 64, 0x8000000000000000ull), KDH_OK);
    assert_int_equal(U.stop, KDH_UNWIND_STOP_USER);
    assert_int_equal(U.n_frames, 4);
    const uint32_t rvas[] = {0x11A0, 0x1050, 0x1710, RET_LEAF + 0x90};
    for (int i = 0; i < 4; i++)
        assert_int_equal(U.frames[i].rva, rvas[i]);
    assert_true(kdh_unwind_stack_end(&U) == end);

    mv_make_lazy(&s.v);
    kdh_unwind_config_t cfg;
    kdh_unwind_config_default(&cfg, KDH_UNWIND_X64);
    kdh_err_t err;
    assert_int_equal(kdh_unwind_init(&U2, &cfg, &r, &err), KDH_OK);
    uint64_t pva;
    uint32_t plen;
    kdh_unwind_prefetch(&U2, &pva, &plen);
    assert_true(pva == sp0 && plen == 0x600);
    kdh_unwind_env_t env = mv_env(&s.v);
    int rounds = 0, rc;
    while ((rc = kdh_unwind_run(&U2, &env, &err)) == KDH_ENOTCACHED) {
        assert_true(U2.need_len > 0 && U2.need_len <= 4096);
        mv_fill(&s.v, U2.need_va, U2.need_len);
        assert_true(++rounds < 100);
    }
    assert_int_equal(rc, KDH_OK);
    /* Counted by hand: frame 0 needs .pdata (one window), its UNWIND_INFO, the code bytes at
     * pc (epilog check) and one stack span; frame 1 its info and its stack span; frame 2 its
     * info, the parent info and one stack span; frame 3 (leaf) its return slot. */
    assert_int_equal(rounds, 10);
    assert_int_equal(U2.n_frames, U.n_frames);
    assert_int_equal(U2.stop, U.stop);
    assert_memory_equal(U2.frames, U.frames, U.n_frames * sizeof U.frames[0]);
    assert_memory_equal(U2.regs.gpr, U.regs.gpr, sizeof U.regs.gpr);
    mv_free(&s.v);
}

static void test_decode(void **state)
{
    (void)state;
    kdh_unwind_x64_info_t in;
    uint32_t need;
    kdh_err_t err;
    /* v1, 5 slots (ALLOC_LARGE/1 = 3, SAVE_NONVOL_FAR would not fit: use PUSH + MACHFRAME) */
    uint8_t b[64] = {0x01, 0x10, 0x05, 0x00};
    uint16_t sl[] = {UC(16, 1, 1), 0x0001, 0x0002, UC(2, 0, 15), UC(0, 10, 1)};
    for (int i = 0; i < 5; i++)
        kdh_put_u16(b + 4 + 2 * i, sl[i]);
    assert_int_equal(kdh_unwind_x64_decode(b, 3, &in, &need, &err), KDH_ENOTCACHED);
    assert_int_equal(need, 4);
    assert_int_equal(kdh_unwind_x64_decode(b, 4, &in, &need, &err), KDH_ENOTCACHED);
    assert_int_equal(need, 16); /* 4 + 2 * 6 (padded to even) */
    assert_int_equal(kdh_unwind_x64_decode(b, 16, &in, &need, &err), KDH_OK);
    assert_int_equal(in.n_ops, 3);
    assert_int_equal(in.ops[0].value, 0x20001);
    assert_int_equal(in.ops[1].op, KDH_UWOP_PUSH_NONVOL);
    assert_int_equal(in.ops[1].info, 15);
    assert_int_equal(in.ops[2].value, 1);
    /* Chained: need includes the 12-byte parent entry. */
    b[0] = 0x01 | (4 << 3);
    assert_int_equal(kdh_unwind_x64_decode(b, 16, &in, &need, &err), KDH_ENOTCACHED);
    assert_int_equal(need, 28);
    kdh_put_u32(b + 16, 0x1000);
    kdh_put_u32(b + 20, 0x1080);
    kdh_put_u32(b + 24, 0x3000);
    assert_int_equal(kdh_unwind_x64_decode(b, 28, &in, &need, &err), KDH_OK);
    assert_int_equal(in.chain_begin, 0x1000);
    assert_int_equal(in.chain_info, 0x3000);
    /* Invalid encodings. */
    const struct { uint8_t ver; uint16_t slot0; uint8_t count; } bad[] = {
        {1, UC(1, 7, 0), 1},  /* SPARE */
        {1, UC(1, 11, 0), 1}, /* SET_FPREG_LARGE */
        {1, UC(1, 15, 0), 1},
        {1, UC(1, 1, 2), 3},  /* ALLOC_LARGE info 2 */
        {1, UC(1, 6, 0), 1},  /* EPILOG in version 1 */
        {1, UC(1, 10, 2), 1}, /* MACHFRAME info 2 */
        {1, UC(1, 1, 1), 2},  /* ALLOC_LARGE/1 needs 3 slots, only 2 */
        {1, UC(1, 4, 3), 1},  /* SAVE_NONVOL needs 2 */
        {3, UC(1, 0, 3), 1},  /* version 3 */
        {0, UC(1, 0, 3), 1},
    };
    for (size_t i = 0; i < KDH_ARRAY_LEN(bad); i++) {
        uint8_t x[16] = {0};
        x[0] = bad[i].ver;
        x[2] = bad[i].count;
        kdh_put_u16(x + 4, bad[i].slot0);
        assert_int_equal(kdh_unwind_x64_decode(x, sizeof x, &in, &need, &err), KDH_ECORRUPT);
    }
    /* SAVE_*_FAR operands are unscaled, the short forms scaled by 8 and 16. */
    uint8_t f[32] = {0x01, 0, 10, 0};
    uint16_t fs[] = {UC(1, 5, 3), 0x0123, 0, UC(1, 9, 6), 0x0456, 0, UC(1, 4, 3), 3, UC(1, 8, 6), 3};
    for (int i = 0; i < 10; i++)
        kdh_put_u16(f + 4 + 2 * i, fs[i]);
    assert_int_equal(kdh_unwind_x64_decode(f, sizeof f, &in, &need, &err), KDH_OK);
    assert_int_equal(in.ops[0].value, 0x123);
    assert_int_equal(in.ops[1].value, 0x456);
    assert_int_equal(in.ops[2].value, 24);
    assert_int_equal(in.ops[3].value, 48);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),          cmocka_unit_test(test_all_ops_body),
        cmocka_unit_test(test_prolog_steps),    cmocka_unit_test(test_alloc_large_32),
        cmocka_unit_test(test_set_fpreg),       cmocka_unit_test(test_epilog_v1),       cmocka_unit_test(test_jump_to_fragment),
        cmocka_unit_test(test_epilog_v2),       cmocka_unit_test(test_machine_frames),
        cmocka_unit_test(test_chains),          cmocka_unit_test(test_stops),
        cmocka_unit_test(test_not_cached_protocol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
