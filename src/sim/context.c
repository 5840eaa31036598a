/* context.c: moving registers between Unicorn and the per-CPU records, and presenting them as a
 * Windows CONTEXT (AMD64 0x4D0 bytes, i386 0x2CC bytes; offsets in kd-protocol.md section 4)
 * and as control space (KPCR/KPRCB/KTHREAD addresses, KSPECIAL_REGISTERS). */
#include <string.h>

#include "machine_int.h"

#define CTX64_SIZE 0x4D0u
#define CTX32_SIZE 0x2CCu
#define KSPECIAL32_SIZE 0x54u

static const int k_gpr64[16] = {UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX,
                                UC_X86_REG_RSP, UC_X86_REG_RBP, UC_X86_REG_RSI, UC_X86_REG_RDI,
                                UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_R10, UC_X86_REG_R11,
                                UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15};
static const int k_gpr32[8] = {UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX,
                               UC_X86_REG_ESP, UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI};

void sim_regs_load(sim_machine_t *m, const sim_regs_t *r)
{
    if (m->arch == SIM_ARCH_X64) {
        for (int i = 0; i < 16; i++)
            uc_reg_write(m->uc, k_gpr64[i], &r->gpr[i]);
        uc_reg_write(m->uc, UC_X86_REG_RIP, &r->rip);
        uc_reg_write(m->uc, UC_X86_REG_RFLAGS, &r->rflags);
        for (int i = 0; i < 16; i++)
            uc_reg_write(m->uc, UC_X86_REG_XMM0 + i, r->xmm[i]);
    } else {
        for (int i = 0; i < 8; i++) {
            uint32_t v = (uint32_t)r->gpr[i];
            uc_reg_write(m->uc, k_gpr32[i], &v);
        }
        uint32_t v = (uint32_t)r->rip;
        uc_reg_write(m->uc, UC_X86_REG_EIP, &v);
        v = (uint32_t)r->rflags;
        uc_reg_write(m->uc, UC_X86_REG_EFLAGS, &v);
        for (int i = 0; i < 8; i++)
            uc_reg_write(m->uc, UC_X86_REG_XMM0 + i, r->xmm[i]);
    }
    uint32_t mx = r->mxcsr;
    uc_reg_write(m->uc, UC_X86_REG_MXCSR, &mx);
}

void sim_regs_save(sim_machine_t *m, sim_regs_t *r)
{
    if (m->arch == SIM_ARCH_X64) {
        for (int i = 0; i < 16; i++)
            uc_reg_read(m->uc, k_gpr64[i], &r->gpr[i]);
        uc_reg_read(m->uc, UC_X86_REG_RIP, &r->rip);
        uc_reg_read(m->uc, UC_X86_REG_RFLAGS, &r->rflags);
        for (int i = 0; i < 16; i++)
            uc_reg_read(m->uc, UC_X86_REG_XMM0 + i, r->xmm[i]);
    } else {
        uint32_t v;
        for (int i = 0; i < 8; i++) {
            v = 0;
            uc_reg_read(m->uc, k_gpr32[i], &v);
            r->gpr[i] = v;
        }
        v = 0;
        uc_reg_read(m->uc, UC_X86_REG_EIP, &v);
        r->rip = v;
        v = 0;
        uc_reg_read(m->uc, UC_X86_REG_EFLAGS, &v);
        r->rflags = v;
        for (int i = 0; i < 8; i++)
            uc_reg_read(m->uc, UC_X86_REG_XMM0 + i, r->xmm[i]);
    }
    uint32_t mx = 0;
    uc_reg_read(m->uc, UC_X86_REG_MXCSR, &mx);
    r->mxcsr = mx;
}

size_t sim_machine_context_size(const sim_machine_t *m)
{
    return m->arch == SIM_ARCH_X64 ? CTX64_SIZE : CTX32_SIZE;
}

/* The FXSAVE image (x64 FltSave, x86 ExtendedRegisters): control word, MXCSR, XMM registers. */
static void put_fxsave(uint8_t *fx, const sim_regs_t *r, int nxmm)
{
    kdh_put_u16(fx + 0x00, 0x027f);
    kdh_put_u32(fx + 0x18, r->mxcsr);
    kdh_put_u32(fx + 0x1C, 0xffff);
    for (int i = 0; i < nxmm; i++)
        memcpy(fx + 0xA0 + 16 * i, r->xmm[i], 16);
}

static void build_context(const sim_machine_t *m, const sim_regs_t *r, uint8_t *ctx)
{
    if (m->arch == SIM_ARCH_X64) {
        memset(ctx, 0, CTX64_SIZE);
        kdh_put_u32(ctx + 0x30, 0x10001Fu);  /* CONTEXT_AMD64 | CONTROL|INTEGER|SEGMENTS|FLOATING_POINT|DEBUG */
        kdh_put_u32(ctx + 0x34, r->mxcsr);
        kdh_put_u16(ctx + 0x38, 0x10);
        kdh_put_u16(ctx + 0x3A, 0x2B);
        kdh_put_u16(ctx + 0x3C, 0x2B);
        kdh_put_u16(ctx + 0x3E, 0x53);
        kdh_put_u16(ctx + 0x40, 0x2B);
        kdh_put_u16(ctx + 0x42, 0x18);
        kdh_put_u32(ctx + 0x44, (uint32_t)r->rflags);
        for (int i = 0; i < 16; i++)
            kdh_put_u64(ctx + 0x78 + 8 * i, r->gpr[i]);
        kdh_put_u64(ctx + 0xF8, r->rip);
        put_fxsave(ctx + 0x100, r, 16);
    } else {
        memset(ctx, 0, CTX32_SIZE);
        kdh_put_u32(ctx + 0x00, 0x1003Fu);  /* CONTEXT_i386 | everything */
        kdh_put_u16(ctx + 0x1C, 0x027f);    /* FloatSave.ControlWord */
        kdh_put_u32(ctx + 0x90, 0x30);      /* SegFs */
        kdh_put_u32(ctx + 0x94, 0x23);
        kdh_put_u32(ctx + 0x98, 0x23);
        kdh_put_u32(ctx + 0x9C, (uint32_t)r->gpr[R_DI]);
        kdh_put_u32(ctx + 0xA0, (uint32_t)r->gpr[R_SI]);
        kdh_put_u32(ctx + 0xA4, (uint32_t)r->gpr[R_BX]);
        kdh_put_u32(ctx + 0xA8, (uint32_t)r->gpr[R_DX]);
        kdh_put_u32(ctx + 0xAC, (uint32_t)r->gpr[R_CX]);
        kdh_put_u32(ctx + 0xB0, (uint32_t)r->gpr[R_AX]);
        kdh_put_u32(ctx + 0xB4, (uint32_t)r->gpr[R_BP]);
        kdh_put_u32(ctx + 0xB8, (uint32_t)r->rip);
        kdh_put_u32(ctx + 0xBC, 0x08);
        kdh_put_u32(ctx + 0xC0, (uint32_t)r->rflags);
        kdh_put_u32(ctx + 0xC4, (uint32_t)r->gpr[R_SP]);
        kdh_put_u32(ctx + 0xC8, 0x10);
        put_fxsave(ctx + 0xCC, r, 8);
    }
}

int sim_machine_get_context(sim_machine_t *m, int cpu, uint8_t *ctx, size_t len)
{
    if (!m || !ctx || cpu < 0 || cpu >= m->ncpus || len < sim_machine_context_size(m))
        return KDH_EINVAL;
    build_context(m, &m->cpus[cpu].regs, ctx);
    return KDH_OK;
}

int sim_machine_set_context(sim_machine_t *m, int cpu, const uint8_t *ctx, size_t len)
{
    if (!m || !ctx || cpu < 0 || cpu >= m->ncpus || len < sim_machine_context_size(m))
        return KDH_EINVAL;
    sim_regs_t *r = &m->cpus[cpu].regs;
    uint64_t old_pc = r->rip, old_sp = r->gpr[R_SP];
    if (m->arch == SIM_ARCH_X64) {
        r->mxcsr = kdh_get_u32(ctx + 0x34);
        r->rflags = kdh_get_u32(ctx + 0x44);
        for (int i = 0; i < 16; i++)
            r->gpr[i] = kdh_get_u64(ctx + 0x78 + 8 * i);
        r->rip = kdh_get_u64(ctx + 0xF8);
        for (int i = 0; i < 16; i++)
            memcpy(r->xmm[i], ctx + 0x1A0 + 16 * i, 16);
    } else {
        static const struct {
            int reg;
            unsigned off;
        } map[] = {{R_DI, 0x9C}, {R_SI, 0xA0}, {R_BX, 0xA4}, {R_DX, 0xA8},
                   {R_CX, 0xAC}, {R_AX, 0xB0}, {R_BP, 0xB4}, {R_SP, 0xC4}};
        for (size_t i = 0; i < KDH_ARRAY_LEN(map); i++)
            r->gpr[map[i].reg] = kdh_get_u32(ctx + map[i].off);
        r->rip = kdh_get_u32(ctx + 0xB8);
        r->rflags = kdh_get_u32(ctx + 0xC0);
        r->mxcsr = kdh_get_u32(ctx + 0xCC + 0x18);
        for (int i = 0; i < 8; i++)
            memcpy(r->xmm[i], ctx + 0xCC + 0xA0 + 16 * i, 16);
    }
    /* The debugger emulated a call (a break-in: old PC pushed, PC moved to
     * DbgBreakPointWithStatus): record it like a call so the ground truth keeps the interrupted
     * frame. A breakpoint's int 3 only re-executes when PC still points at it: nothing else. */
    uint64_t top = 0;
    if (r->rip != old_pc && r->gpr[R_SP] < old_sp && old_sp - r->gpr[R_SP] <= 0x100 &&
        sim_mem_get_ptr(m, r->gpr[R_SP], &top) == KDH_OK && top == old_pc)
        sim_shadow_push(m, cpu, old_pc);
    return KDH_OK;
}

/* KSPECIAL_REGISTERS values: protected mode with paging, a made-up CR3 per boot. */
static void special_regs32(const sim_machine_t *m, uint8_t *p)
{
    memset(p, 0, KSPECIAL32_SIZE);
    kdh_put_u32(p + 0x00, 0x80010033u);                       /* Cr0 */
    kdh_put_u32(p + 0x08, 0x00185000u + (uint32_t)(m->boot << 12)); /* Cr3 */
    kdh_put_u32(p + 0x0C, 0x000406f9u);                       /* Cr4 */
}

int sim_machine_read_control(sim_machine_t *m, int cpu, uint64_t selector, void *buf, uint32_t len,
                             uint32_t *done)
{
    if (done)
        *done = 0;
    if (!m || !buf || cpu < 0 || cpu >= m->ncpus)
        return KDH_EINVAL;
    const sim_cpu_t *c = &m->cpus[cpu];
    uint8_t tmp[CTX32_SIZE + KSPECIAL32_SIZE];
    uint32_t avail;
    if (m->arch == SIM_ARCH_X64) {
        memset(tmp, 0, sizeof tmp);
        switch (selector) {
        case 0:
            kdh_put_u64(tmp, c->kpcr);
            avail = 8;
            break;
        case 1:
            kdh_put_u64(tmp, c->kprcb);
            avail = 8;
            break;
        case 2:  /* KSPECIAL_REGISTERS (AMD64): Cr0 Cr2 Cr3 Cr4 KernelDr0..7 ... */
            kdh_put_u64(tmp + 0x00, 0x80050033u);
            kdh_put_u64(tmp + 0x10, 0x1aa000u + (m->boot << 12));
            kdh_put_u64(tmp + 0x18, 0x000406f8u);
            avail = 0xF0;
            break;
        case 3:
            kdh_put_u64(tmp, c->current_thread);
            avail = 8;
            break;
        default:
            return KDH_ERANGE;
        }
        if (len > avail)
            len = avail;
        memcpy(buf, tmp, len);
    } else {
        /* KPROCESSOR_STATE: CONTEXT, then KSPECIAL_REGISTERS; the selector is a byte offset. */
        build_context(m, &c->regs, tmp);
        special_regs32(m, tmp + CTX32_SIZE);
        if (selector >= sizeof tmp)
            return KDH_ERANGE;
        avail = (uint32_t)(sizeof tmp - selector);
        if (len > avail)
            len = avail;
        memcpy(buf, tmp + selector, len);
    }
    if (done)
        *done = len;
    return KDH_OK;
}
