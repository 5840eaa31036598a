/* fake_machine.c: a tiny stand-in for kdsim's machine (machine.h) so the KD target side is tested
 * on its own. One mapped 64 KiB "kernel" with a toy instruction set run on CPU 0:
 *   90 nop (1 us) | CC int3 (stops, PC stays) | C3 ret | C2 iw ret n | F4 jump to loop start |
 *   EE DbgPrint "tick N\n". Layout (offsets from the kernel base) is in fake_machine.h. */
#include "fake_machine.h"

#include <stdlib.h>
#include <string.h>

struct sim_machine {
    sim_arch_t arch;
    int cpus;
    uint64_t boot;
    uint64_t now;
    uint8_t mem[FAKE_SIZE];
    uint8_t ctx[8][0x4D0];
    int trace[8];
    int queued_loadsyms;
    int prints;
};

static int x64(const sim_machine_t *m)
{
    return m->arch == SIM_ARCH_X64;
}

uint64_t fake_base(const sim_machine_t *m)
{
    uint64_t b = x64(m) ? 0xFFFFF80000000000ull : 0xFFFFFFFF80000000ull;
    return b + (m->boot - 1) * 0x100000ull;
}

static void put_ptr(sim_machine_t *m, uint64_t off, uint64_t v)
{
    if (x64(m))
        kdh_put_u64(m->mem + off, v);
    else
        kdh_put_u32(m->mem + off, (uint32_t)v);
}

uint64_t fake_pc(const sim_machine_t *m, int cpu)
{
    return x64(m) ? kdh_get_u64(m->ctx[cpu] + 0xF8) : kdh_sign_extend32(kdh_get_u32(m->ctx[cpu] + 0xB8));
}

static void set_pc(sim_machine_t *m, int cpu, uint64_t pc)
{
    if (x64(m))
        kdh_put_u64(m->ctx[cpu] + 0xF8, pc);
    else
        kdh_put_u32(m->ctx[cpu] + 0xB8, (uint32_t)pc);
}

uint64_t fake_sp(const sim_machine_t *m, int cpu)
{
    return x64(m) ? kdh_get_u64(m->ctx[cpu] + 0x98) : kdh_sign_extend32(kdh_get_u32(m->ctx[cpu] + 0xC4));
}

static void set_sp(sim_machine_t *m, int cpu, uint64_t sp)
{
    if (x64(m))
        kdh_put_u64(m->ctx[cpu] + 0x98, sp);
    else
        kdh_put_u32(m->ctx[cpu] + 0xC4, (uint32_t)sp);
}

static void boot(sim_machine_t *m)
{
    m->boot++;
    m->now = 0;
    memset(m->mem, 0, sizeof m->mem);
    memset(m->ctx, 0, sizeof m->ctx);
    memset(m->trace, 0, sizeof m->trace);
    uint64_t b = fake_base(m);
    m->mem[0] = 'M';
    m->mem[1] = 'Z';
    memset(m->mem + FAKE_CODE, 0x90, FAKE_LOOP_LEN);
    m->mem[FAKE_CODE + FAKE_PRINT_AT] = 0xEE;
    m->mem[FAKE_CODE + FAKE_LOOP_LEN] = 0xF4;
    m->mem[FAKE_BWS] = 0xCC;
    if (x64(m)) {
        m->mem[FAKE_BWS + 1] = 0xC3;
    } else {
        m->mem[FAKE_BWS + 1] = 0xC2; /* ret 4, as the stdcall DbgBreakPointWithStatus */
        kdh_put_u16(m->mem + FAKE_BWS + 2, 4);
    }
    put_ptr(m, FAKE_PSLML, b + FAKE_PSLML); /* an empty module list */
    put_ptr(m, FAKE_PSLML + (x64(m) ? 8 : 4), b + FAKE_PSLML);
    put_ptr(m, FAKE_DDLIST, b + FAKE_KDBG);
    put_ptr(m, FAKE_DDLIST + (x64(m) ? 8 : 4), b + FAKE_KDBG);
    kdh_put_u64(m->mem + FAKE_KDBG, b + FAKE_DDLIST);
    memcpy(m->mem + FAKE_KDBG + 0x10, "KDBG", 4);
    kdh_put_u32(m->mem + FAKE_KDBG + 0x14, 0x340);
    kdh_put_u64(m->mem + FAKE_KDBG + 0x18, b);
    kdh_put_u64(m->mem + FAKE_KDBG + 0x20, b + FAKE_BWS);
    for (int c = 0; c < m->cpus; c++) {
        uint8_t *x = m->ctx[c];
        if (x64(m)) {
            kdh_put_u32(x + 0x30, 0x10001F);
            kdh_put_u16(x + 0x38, 0x10);
            kdh_put_u16(x + 0x3A, 0x2B);
            kdh_put_u16(x + 0x3C, 0x2B);
            kdh_put_u16(x + 0x3E, 0x53);
            kdh_put_u32(x + 0x44, 0x202);
            kdh_put_u64(x + 0x78, 0x1111 * (uint64_t)(c + 1)); /* Rax: tells CPUs apart */
        } else {
            kdh_put_u32(x + 0x00, 0x1003F);
            kdh_put_u32(x + 0x90, 0x30);
            kdh_put_u32(x + 0x94, 0x23);
            kdh_put_u32(x + 0x98, 0x23);
            kdh_put_u32(x + 0xB0, 0x1111 * (uint32_t)(c + 1));
            kdh_put_u32(x + 0xBC, 0x08);
            kdh_put_u32(x + 0xC0, 0x202);
        }
        set_pc(m, c, b + FAKE_CODE + (uint64_t)c * 8);
        set_sp(m, c, b + FAKE_STACK_TOP - (uint64_t)c * 0x1000);
    }
    m->queued_loadsyms = 2;
}

sim_machine_t *sim_machine_create(const sim_config_t *cfg, kdh_err_t *err)
{
    sim_machine_t *m = calloc(1, sizeof *m);
    if (!m) {
        kdh_err_set(err, KDH_ENOMEM, "fake machine: out of memory");
        return NULL;
    }
    m->arch = cfg->arch;
    m->cpus = cfg->cpus < 1 ? 1 : cfg->cpus > 8 ? 8 : cfg->cpus;
    return m; /* not booted: the target boots it */
}

void sim_machine_destroy(sim_machine_t *m)
{
    free(m);
}

int sim_machine_reboot(sim_machine_t *m, kdh_err_t *err)
{
    boot(m);
    return KDH_OK;
}

uint64_t sim_machine_now_ns(const sim_machine_t *m)
{
    return m->now;
}

void sim_machine_info(const sim_machine_t *m, sim_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->arch = m->arch;
    info->machine_type = x64(m) ? 0x8664 : 0x014C;
    info->build = 19041;
    info->cpus = m->cpus;
    info->pointer_size = x64(m) ? 8 : 4;
    info->boot = m->boot;
    if (m->boot) {
        info->kern_base = fake_base(m);
        info->ps_loaded_module_list = fake_base(m) + FAKE_PSLML;
        info->debugger_data_list = fake_base(m) + FAKE_DDLIST;
    }
}

/* Bytes of [va, va+len) inside the mapped kernel. */
static uint32_t mapped(const sim_machine_t *m, uint64_t va, uint32_t len)
{
    uint64_t b = fake_base(m);
    if (va < b || va - b >= FAKE_SIZE)
        return 0;
    uint64_t left = FAKE_SIZE - (va - b);
    return len < left ? len : (uint32_t)left;
}

int sim_machine_read(sim_machine_t *m, uint64_t va, void *buf, uint32_t len, uint32_t *done)
{
    uint32_t n = mapped(m, va, len);
    if (n)
        memcpy(buf, m->mem + (va - fake_base(m)), n);
    *done = n;
    return n == len ? KDH_OK : KDH_ENOTFOUND;
}

int sim_machine_write(sim_machine_t *m, uint64_t va, const void *buf, uint32_t len, uint32_t *done)
{
    uint32_t n = mapped(m, va, len);
    if (n)
        memcpy(m->mem + (va - fake_base(m)), buf, n);
    *done = n;
    return n == len ? KDH_OK : KDH_ENOTFOUND;
}

size_t sim_machine_context_size(const sim_machine_t *m)
{
    return x64(m) ? 0x4D0 : 0x2CC;
}

int sim_machine_get_context(sim_machine_t *m, int cpu, uint8_t *ctx, size_t len)
{
    if (cpu < 0 || cpu >= m->cpus || len < sim_machine_context_size(m))
        return KDH_EINVAL;
    memcpy(ctx, m->ctx[cpu], sim_machine_context_size(m));
    return KDH_OK;
}

int sim_machine_set_context(sim_machine_t *m, int cpu, const uint8_t *ctx, size_t len)
{
    if (cpu < 0 || cpu >= m->cpus || len < sim_machine_context_size(m))
        return KDH_EINVAL;
    memcpy(m->ctx[cpu], ctx, sim_machine_context_size(m));
    return KDH_OK;
}

int sim_machine_set_trace(sim_machine_t *m, int cpu, int on)
{
    if (cpu < 0 || cpu >= m->cpus)
        return KDH_EINVAL;
    m->trace[cpu] = on;
    return KDH_OK;
}

int sim_machine_read_control(sim_machine_t *m, int cpu, uint64_t selector, void *buf, uint32_t len,
                             uint32_t *done)
{
    uint8_t v[8];
    if (cpu < 0 || cpu >= m->cpus || selector > 3) {
        *done = 0;
        return KDH_EINVAL;
    }
    kdh_put_u64(v, fake_base(m) + FAKE_KTHREAD + (uint64_t)cpu * 0x100 + selector * 0x10);
    uint32_t n = len < 8 ? len : 8;
    memcpy(buf, v, n);
    *done = n;
    return KDH_OK;
}

static uint64_t pop(sim_machine_t *m, uint32_t extra)
{
    uint64_t sp = fake_sp(m, 0);
    uint8_t b[8] = {0};
    uint32_t d;
    int w = x64(m) ? 8 : 4;
    sim_machine_read(m, sp, b, (uint32_t)w, &d);
    set_sp(m, 0, sp + (uint64_t)w + extra);
    return x64(m) ? kdh_get_u64(b) : kdh_sign_extend32(kdh_get_u32(b));
}

static void fill_stop(sim_machine_t *m, sim_stop_t *s, sim_stop_kind_t kind)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->cpu = 0;
    s->pc = fake_pc(m, 0);
    s->thread = fake_base(m) + FAKE_KTHREAD + 0x30;
}

int sim_machine_run(sim_machine_t *m, uint64_t budget_ns, sim_stop_t *stop, kdh_err_t *err)
{
    uint64_t b = fake_base(m);
    if (m->queued_loadsyms > 0) {
        int kernel = m->queued_loadsyms == 2;
        m->queued_loadsyms--;
        fill_stop(m, stop, SIM_STOP_LOAD_SYMBOLS);
        stop->base = kernel ? b : b + 0x8000;
        stop->size = kernel ? 0x8000 : 0x4000;
        stop->checksum = kernel ? 0x1234 : 0x5678;
        strcpy(stop->path, kernel ? "\\SystemRoot\\system32\\ntoskrnl.exe" : "\\SystemRoot\\system32\\hal.dll");
        return KDH_OK;
    }
    uint64_t end = m->now + budget_ns;
    int step = m->trace[0];
    m->trace[0] = 0;
    while (m->now < end || step) {
        uint64_t pc = fake_pc(m, 0);
        uint8_t op = 0;
        uint32_t d = 0;
        sim_machine_read(m, pc, &op, 1, &d);
        if (d == 0)
            return kdh_err_set(err, KDH_EIO, "fake machine: PC 0x%llx unmapped", (unsigned long long)pc);
        if (op == 0xCC) {
            fill_stop(m, stop, SIM_STOP_BREAKPOINT);
            stop->exception_code = 0x80000003u;
            return KDH_OK;
        }
        m->now += 1000;
        if (op == 0x90) {
            set_pc(m, 0, pc + 1);
        } else if (op == 0xC3) {
            set_pc(m, 0, pop(m, 0));
        } else if (op == 0xC2) {
            uint8_t n[2];
            sim_machine_read(m, pc + 1, n, 2, &d);
            set_pc(m, 0, pop(m, kdh_get_u16(n)));
        } else if (op == 0xF4) {
            set_pc(m, 0, b + FAKE_CODE);
        } else if (op == 0xEE) {
            set_pc(m, 0, pc + 1);
            fill_stop(m, stop, SIM_STOP_PRINT);
            stop->text_len = (size_t)snprintf(stop->text, sizeof stop->text, "tick %d\n", ++m->prints);
            return KDH_OK;
        } else {
            return kdh_err_set(err, KDH_EIO, "fake machine: bad opcode %02x", op);
        }
        if (step) {
            fill_stop(m, stop, SIM_STOP_SINGLE_STEP);
            stop->exception_code = 0x80000004u;
            return KDH_OK;
        }
    }
    memset(stop, 0, sizeof *stop);
    stop->kind = SIM_STOP_NONE;
    return KDH_OK;
}
