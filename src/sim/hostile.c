/* hostile.c: deliberate corruptions of what a debugger reads, for the host's reliability tests
 * (sim_config_t.hostile, a comma list). The workload itself keeps running correctly: only the
 * structures a debugger walks, or the stack while stopped, lie.
 *   ldr-cycle      the last PsLoadedModuleList entry links back to the first, not to the head
 *   ldr-wild       the second entry's Flink points at unmapped memory
 *   name-long      nt's BaseDllName claims 0xFFFE bytes
 *   name-long-drv  the same for the fourth entry (busydrv.sys, a driver off the leak stacks)
 *   kdbg-tag       KDDEBUGGER_DATA64.Header.OwnerTag is 'KDBX'
 *   kdbg-size      KDDEBUGGER_DATA64.Header.Size is 8
 *   stack-garbage  at every breakpoint stop the return address at [SP] reads 0x4141...; the real
 *                  bytes are put back before the machine runs again */
#include <string.h>

#include "machine_int.h"

static const struct {
    const char *name;
    unsigned flag;
} k_hostile[] = {
    {"ldr-cycle", SIM_HOSTILE_LDR_CYCLE}, {"ldr-wild", SIM_HOSTILE_LDR_WILD},
    {"name-long", SIM_HOSTILE_NAME_LONG}, {"kdbg-tag", SIM_HOSTILE_KDBG_TAG},
    {"kdbg-size", SIM_HOSTILE_KDBG_SIZE}, {"stack-garbage", SIM_HOSTILE_STACK_GARBAGE},
    {"name-long-drv", SIM_HOSTILE_DRV_NAME_LONG},
};

int sim_hostile_parse(const char *list, unsigned *flags, kdh_err_t *err)
{
    *flags = 0;
    if (!list)
        return KDH_OK;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t i = 0;
        for (; i < KDH_ARRAY_LEN(k_hostile); i++)
            if (strlen(k_hostile[i].name) == n && strncmp(k_hostile[i].name, p, n) == 0)
                break;
        if (n && i == KDH_ARRAY_LEN(k_hostile))
            return kdh_err_set(err, KDH_EINVAL,
                               "kdsim: unknown hostile option '%.*s' (ldr-cycle, ldr-wild, name-long, name-long-drv, kdbg-tag, kdbg-size, stack-garbage)",
                               (int)n, p);
        if (n)
            *flags |= k_hostile[i].flag;
        p += n;
        if (*p == ',')
            p++;
    }
    return KDH_OK;
}

void sim_hostile_boot(sim_machine_t *m)
{
    unsigned f = m->hostile_flags;
    int x64 = m->psize == 8;
    uint64_t first = 0, second = 0, third = 0, fourth = 0, last = 0;
    sim_mem_get_ptr(m, m->ps_loaded_module_list, &first);
    sim_mem_get_ptr(m, first, &second);
    if (second)
        sim_mem_get_ptr(m, second, &third);
    if (third)
        sim_mem_get_ptr(m, third, &fourth);
    sim_mem_get_ptr(m, m->ps_loaded_module_list + m->psize, &last);
    if ((f & SIM_HOSTILE_LDR_CYCLE) && last && first)
        sim_mem_put_ptr(m, last, first);
    if ((f & SIM_HOSTILE_LDR_WILD) && second)
        sim_mem_put_ptr(m, second, x64 ? 0xffff900000000000ull : 0x90000000ull);
    if ((f & SIM_HOSTILE_NAME_LONG) && first) {
        uint64_t us = first + (x64 ? 0x58 : 0x2C);
        sim_mem_put_u16(m, us, 0xFFFE);
        sim_mem_put_u16(m, us + 2, 0xFFFE);
    }
    if ((f & SIM_HOSTILE_DRV_NAME_LONG) && fourth && fourth != m->ps_loaded_module_list) {
        uint64_t us = fourth + (x64 ? 0x58 : 0x2C);
        sim_mem_put_u16(m, us, 0xFFFE);
        sim_mem_put_u16(m, us + 2, 0xFFFE);
    }
    if (f & SIM_HOSTILE_KDBG_TAG)
        sim_mem_put_u32(m, m->kdbg + 0x10, 0x5842444Bu);
    if (f & SIM_HOSTILE_KDBG_SIZE)
        sim_mem_put_u32(m, m->kdbg + 0x14, 8);
}

void sim_hostile_stop(sim_machine_t *m, int cpu)
{
    if (!(m->hostile_flags & SIM_HOSTILE_STACK_GARBAGE) || m->garbage_len)
        return;
    uint64_t sp = m->cpus[cpu].regs.gpr[R_SP];
    uint8_t *p = sim_mem_host(m, sp, (size_t)m->psize);
    if (!p)
        return;
    memcpy(m->garbage_saved, p, (size_t)m->psize);
    memset(p, 0x41, (size_t)m->psize);
    m->garbage_va = sp;
    m->garbage_len = m->psize;
}

void sim_hostile_resume(sim_machine_t *m)
{
    if (!m->garbage_len)
        return;
    uint8_t *p = sim_mem_host(m, m->garbage_va, (size_t)m->garbage_len);
    if (p)
        memcpy(p, m->garbage_saved, (size_t)m->garbage_len);
    m->garbage_len = 0;
}
