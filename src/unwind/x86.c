/* x86.c: one x86 frame the way WinDbg's k does without FPO data: a prolog check at frame 0,
 * then the EBP chain ([EBP] = caller EBP, [EBP+4] = return address) with sanity checks, then
 * a bounded scan for a word that points into a module just after a CALL instruction. */
#include "internal.h"

#include <string.h>

#define MAX_SCAN_WORDS 1024u
#define CHAIN_MAX_GAP 0x100000ull /* without stack bounds, EBP may not be further than this */

static int stack_read(uw_ctx_t *c, uint64_t va, uint8_t *b, uint32_t len)
{
    int rc = uw_read_now(c, va, b, len, 0);
    if (rc == KDH_OK && va + len > c->stack_hi)
        c->stack_hi = va + len;
    return rc;
}

static int in_stack(const kdh_unwind_config_t *cfg, uint64_t va, uint64_t len)
{
    if (!cfg->stack_hi)
        return 1;
    return va >= cfg->stack_lo && va <= cfg->stack_hi && len <= cfg->stack_hi - va;
}

/* 1 when the bytes before ra decode as a CALL that returns to ra: E8 rel32, or FF /2 in its
 * register, [reg], [reg+d8], [reg+d32], [disp32] and SIB forms. */
int uw_x86_call_before(uw_ctx_t *c, const kdh_unwind_module_t *m, uint64_t ra, int *rcp)
{
    uint8_t b[7];
    *rcp = KDH_OK;
    if (ra - m->base < 7)
        return 0;
    int rc = uw_read_now(c, ra - 7, b, 7, 0);
    if (rc == KDH_ENOTCACHED) {
        *rcp = rc;
        return 0;
    }
    if (rc != KDH_OK) { /* unreadable code: not a return address we can vouch for */
        c->stop = KDH_UNWIND_RUNNING;
        return 0;
    }
    if (b[2] == 0xe8)
        return 1;
    for (int len = 2; len <= 7; len++) {
        const uint8_t *p = b + 7 - len;
        if (p[0] != 0xff || ((p[1] >> 3) & 7) != 2)
            continue;
        uint8_t mod = p[1] >> 6, rm = p[1] & 7;
        int want = 2 + (rm == 4 && mod != 3);
        if (mod == 1)
            want += 1;
        else if (mod == 2 || (mod == 0 && rm == 5))
            want += 4;
        if (mod == 0 && rm == 4 && len >= 3 && (p[2] & 7) == 5)
            want += 4; /* SIB with no base: disp32 (the SIB byte exists only when len >= 3) */
        if (want == len)
            return 1;
    }
    return 0;
}

static int scan(uw_ctx_t *c, const kdh_unwind_module_t *m, kdh_unwind_regs_t *r, int frame0)
{
    uint8_t buf[MAX_SCAN_WORDS * 4];
    uint32_t words = c->cfg->scan_words * (frame0 ? 4u : 1u);
    if (words > MAX_SCAN_WORDS)
        words = MAX_SCAN_WORDS;
    uint64_t start = r->sp;
    if (c->cfg->stack_hi) {
        if (!in_stack(c->cfg, start, 4))
            return 0;
        if ((c->cfg->stack_hi - start) / 4 < words)
            words = (uint32_t)((c->cfg->stack_hi - start) / 4);
    }
    int rc;
    /* Without bounds the window may run off the end of the stack: shrink it until readable. */
    for (;;) {
        if (words == 0)
            return 0;
        rc = uw_read_now(c, start, buf, words * 4, 0);
        if (rc == KDH_OK || rc == KDH_ENOTCACHED || c->cfg->stack_hi)
            break;
        c->stop = KDH_UNWIND_RUNNING;
        words /= 2;
    }
    if (rc != KDH_OK)
        return rc;
    for (uint32_t i = 0; i < words; i++) {
        uint64_t cand = kdh_sign_extend32(kdh_get_u32(buf + 4 * i));
        kdh_unwind_module_t cm;
        if (!uw_pc_in_module(c, cand, &cm))
            continue;
        int crc;
        int ok = uw_x86_call_before(c, &cm, cand, &crc);
        if (crc != KDH_OK)
            return crc;
        if (!ok)
            continue;
        r->pc = cand;
        r->sp = start + 4ull * i + 4;
        if (r->sp > c->stack_hi)
            c->stack_hi = r->sp;
        (void)m;
        return 1;
    }
    return 0;
}

static int pop32(uw_ctx_t *c, kdh_unwind_regs_t *r, uint64_t *v)
{
    uint8_t b[4];
    int rc = stack_read(c, r->sp, b, 4);
    if (rc == KDH_OK) {
        *v = kdh_sign_extend32(kdh_get_u32(b));
        r->sp += 4;
    }
    return rc;
}

/* Frame 0 stopped in an epilog: [add esp,imm | mov esp,ebp | leave] pop* (ret | ret imm16).
 * Returns 1 after emulating it, 0 when pc is not in one, <0 on a read that failed. */
static int epilog(uw_ctx_t *c, const kdh_unwind_module_t *m, kdh_unwind_regs_t *r)
{
    uint8_t b[24];
    uint64_t left = m->base + m->size - r->pc;
    uint32_t n = left < sizeof b ? (uint32_t)left : (uint32_t)sizeof b, p = 0;
    memset(b, 0, sizeof b);
    int rc = uw_read_now(c, r->pc, b, n, 0);
    if (rc == KDH_ENOTCACHED)
        return rc;
    if (rc != KDH_OK) {
        c->stop = KDH_UNWIND_RUNNING;
        return 0;
    }
    int kind = 0; /* 1 add esp, 2 mov esp,ebp, 3 leave */
    uint32_t imm = 0;
    if (n >= 3 && b[0] == 0x83 && b[1] == 0xc4) {
        kind = 1, imm = (uint32_t)(int32_t)(int8_t)b[2], p = 3;
    } else if (n >= 6 && b[0] == 0x81 && b[1] == 0xc4) {
        kind = 1, imm = kdh_get_u32(b + 2), p = 6;
    } else if (n >= 2 && ((b[0] == 0x8b && b[1] == 0xe5) || (b[0] == 0x89 && b[1] == 0xec))) {
        kind = 2, p = 2;
    } else if (n >= 1 && b[0] == 0xc9) {
        kind = 3, p = 1;
    }
    int pops[8], npops = 0;
    while (p < n && (b[p] & 0xf8) == 0x58 && b[p] != 0x5c && npops < 8)
        pops[npops++] = b[p++] & 7;
    if (p >= n || !(b[p] == 0xc3 || (b[p] == 0xc2 && p + 3 <= n)))
        return 0;
    if (kind >= 2) {
        if (!(r->gpr_known & (1u << KDH_REG_RBP)))
            return 0;
        r->sp = r->gpr[KDH_REG_RBP];
    } else if (kind == 1) {
        r->sp = kdh_sign_extend32((uint32_t)r->sp + imm);
    }
    if (kind == 3) { /* leave = mov esp,ebp; pop ebp */
        memmove(pops + 1, pops, sizeof pops[0] * (size_t)(npops < 7 ? npops : 7));
        pops[0] = KDH_REG_RBP;
        npops = npops < 8 ? npops + 1 : 8;
    }
    for (int i = 0; i < npops; i++) {
        uint64_t v;
        if ((rc = pop32(c, r, &v)) != KDH_OK)
            return rc;
        r->gpr[pops[i]] = v;
        r->gpr_known |= 1u << pops[i];
    }
    uint64_t ra;
    if ((rc = pop32(c, r, &ra)) != KDH_OK)
        return rc;
    r->pc = ra;
    return 1;
}

int uw_x86_step(uw_ctx_t *c, const kdh_unwind_module_t *m, kdh_unwind_regs_t *r,
                uint32_t flags, uint32_t *caller_flags, uint32_t *how)
{
    uint8_t b[8];
    int rc;
    int frame0 = (flags & KDH_UNWIND_F_FRAME0) != 0;
    kdh_unwind_module_t cm;
    *caller_flags = 0;
    *how = 0;
    c->callee_params = 0;
    if (frame0) {
        /* In an epilog nothing describes the frame any more (frame data covers prologs and
         * bodies): emulate the rest of it from the code bytes. */
        if ((rc = epilog(c, m, r)) < 0)
            return rc;
        if (rc == 1) {
            r->gpr_known &= ~((1u << KDH_REG_RAX) | (1u << KDH_REG_RCX) | (1u << KDH_REG_RDX));
            return KDH_OK;
        }
    }
    if (c->env->find_fpo) {
        /* Frame data first: exact for frame-pointer-omitted code, prologs included. A return
         * address may follow a noreturn call at a function's end, so callers look up pc - 1. */
        kdh_unwind_fpo_t f;
        uint32_t rva = (uint32_t)(r->pc - m->base - (frame0 ? 0 : 1));
        int ok = 0;
        if (c->env->find_fpo(c->env->ctx, m, rva, &f) == KDH_OK && f.program) {
            kdh_unwind_regs_t t = *r;
            if ((rc = uw_x86_fpo(c, &f, &t, &ok)) != KDH_OK)
                return rc;
            if (ok && t.sp > r->sp) {
                *r = t;
                *how = KDH_UNWIND_F_FPO;
                c->callee_params = f.params;
                /* Registers the program did not restore were not touched by the function. */
                r->gpr_known &= ~((1u << KDH_REG_RAX) | (1u << KDH_REG_RCX) | (1u << KDH_REG_RDX));
                return KDH_OK;
            }
        }
    }
    if (frame0) {
        /* Stopped before `push ebp; mov ebp, esp` completed: EBP is still the caller's and the
         * return address is at [ESP] (before the push, or at a ret) or [ESP+4] (after it). */
        uint64_t left = m->base + m->size - r->pc;
        uint32_t n = left < 4 ? (uint32_t)left : 4;
        memset(b, 0, sizeof b);
        rc = uw_read_now(c, r->pc, b, n, 0);
        if (rc == KDH_ENOTCACHED)
            return rc;
        if (rc != KDH_OK) { /* code unreadable: skip the prolog check, the chain may do */
            c->stop = KDH_UNWIND_RUNNING;
            memset(b, 0, sizeof b);
        }
        int k = -1;
        /* int3 then ret: DbgBreakPoint / DbgBreakPointWithStatus, where every break-in stops */
        int brk_ret = b[0] == 0xcc && (b[1] == 0xc3 || b[1] == 0xc2);
        if (b[0] == 0x55 || (b[0] == 0x8b && b[1] == 0xff && b[2] == 0x55) || b[0] == 0xc3 ||
            b[0] == 0xc2 || brk_ret)
            k = 0;
        else if ((b[0] == 0x8b && b[1] == 0xec) || (b[0] == 0x89 && b[1] == 0xe5))
            k = 4;
        if (k >= 0) {
            if ((rc = stack_read(c, r->sp + (uint64_t)k, b, 4)) != KDH_OK)
                return rc;
            uint64_t ra = kdh_sign_extend32(kdh_get_u32(b));
            if (uw_pc_in_module(c, ra, &cm)) {
                r->pc = ra;
                r->sp += (uint64_t)k + 4;
                goto done;
            }
        }
    }
    if (r->gpr_known & (1u << KDH_REG_RBP)) {
        uint64_t ebp = r->gpr[KDH_REG_RBP];
        int sane = ebp >= r->sp && (ebp & 3) == 0 && in_stack(c->cfg, ebp, 8) &&
                   (c->cfg->stack_hi || ebp - r->sp <= CHAIN_MAX_GAP);
        if (sane) {
            if ((rc = stack_read(c, ebp, b, 8)) != KDH_OK)
                return rc;
            uint64_t ra = kdh_sign_extend32(kdh_get_u32(b + 4));
            if (uw_pc_in_module(c, ra, &cm)) {
                r->pc = ra;
                r->sp = ebp + 8;
                r->gpr[KDH_REG_RBP] = kdh_sign_extend32(kdh_get_u32(b));
                goto done;
            }
        }
    }
    rc = scan(c, m, r, frame0);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        c->stop = KDH_UNWIND_STOP_NO_CALLER;
        return UW_STOPPED;
    }
    *caller_flags = KDH_UNWIND_F_SCAN;
done:
    /* Without FPO data EBX/ESI/EDI cannot be restored, and EAX/ECX/EDX are volatile. */
    r->gpr_known &= 1u << KDH_REG_RBP;
    return KDH_OK;
}
