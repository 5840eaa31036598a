/* kstructs.c: the kernel structures a debugger reads, built in guest memory at boot with the
 * offsets of kd-protocol.md: PsLoadedModuleList as LDR_DATA_TABLE_ENTRY records (section 5),
 * KDDEBUGGER_DATA64 at nt!KdDebuggerDataBlock reachable from KdpDebuggerDataListHead (section
 * 3.4), and per-CPU KPCR/KPRCB stubs with simulated KTHREADs.
 *
 * Layouts written here (x64 / x86):
 *   LDR_DATA_TABLE_ENTRY: InLoadOrderLinks 0/0, InMemoryOrderLinks 0x10/0x08 and
 *     InInitializationOrderLinks 0x20/0x10 (self-linked), DllBase 0x30/0x18, EntryPoint 0x38/0x1C,
 *     SizeOfImage 0x40/0x20, FullDllName 0x48/0x24, BaseDllName 0x58/0x2C, Flags 0x68/0x34,
 *     LoadCount 0x6C/0x38, TimeDateStamp 0x80/0x44. UNICODE_STRING buffers are UTF-16LE.
 *   KPCR: Self 0x18/0x1C, CurrentPrcb 0x20/0x20, Prcb at 0x180/0x120.
 *   KPRCB: CurrentThread 0x08/0x04, NextThread 0x10/0x08, IdleThread 0x18/0x0C, Number u32 0x24/0x10.
 *   KTHREAD (stub): Header.Type = 6 at 0, InitialStack 0x28/0x18, StackLimit 0x30/0x1C,
 *     StackBase 0x38/0x190, cpu number u32 at 0x240/0x134 (informational).
 * x86 pointers inside KDDEBUGGER_DATA64 are sign-extended 64-bit values, as on Windows. */
#include <string.h>

#include "machine_int.h"

#define KDBG_SIZE 0x368u

static uint64_t put_unicode(sim_machine_t *m, uint64_t us, const char *s)
{
    size_t n = strlen(s);
    uint64_t buf = sim_arena_alloc(m, 2 * n + 2, 8);
    if (!buf)
        return 0;
    uint8_t *p = sim_mem_host(m, buf, 2 * n + 2);
    for (size_t i = 0; i <= n; i++)
        kdh_put_u16(p + 2 * i, (uint16_t)(unsigned char)s[i]);
    sim_mem_put_u16(m, us, (uint16_t)(2 * n));
    sim_mem_put_u16(m, us + 2, (uint16_t)(2 * n + 2));
    sim_mem_put_ptr(m, us + (m->psize == 8 ? 8 : 4), buf);
    return buf;
}

static int build_module_list(sim_machine_t *m, kdh_err_t *err)
{
    int x64 = m->psize == 8;
    uint64_t head = m->ps_loaded_module_list, prev = head;
    for (int i = 0; i < m->nimages; i++) {
        const sim_image_t *im = &m->images[i];
        uint64_t e = sim_arena_alloc(m, x64 ? 0x120 : 0x80, 16);
        if (!e)
            return kdh_err_set(err, KDH_ENOMEM, "kdsim: kernel structure arena full");
        for (int k = 1; k <= 2; k++) {  /* InMemoryOrder / InInitializationOrder: self-linked */
            uint64_t l = e + (uint64_t)k * 2 * m->psize;
            sim_mem_put_ptr(m, l, l);
            sim_mem_put_ptr(m, l + m->psize, l);
        }
        sim_mem_put_ptr(m, e + (x64 ? 0x30 : 0x18), im->base);
        sim_mem_put_ptr(m, e + (x64 ? 0x38 : 0x1C), im->base + im->entry_rva);
        sim_mem_put_u32(m, e + (x64 ? 0x40 : 0x20), im->size);
        if (!put_unicode(m, e + (x64 ? 0x48 : 0x24), im->path) || !put_unicode(m, e + (x64 ? 0x58 : 0x2C), im->name))
            return kdh_err_set(err, KDH_ENOMEM, "kdsim: kernel structure arena full");
        sim_mem_put_u32(m, e + (x64 ? 0x68 : 0x34), 0x00004004u);
        sim_mem_put_u16(m, e + (x64 ? 0x6C : 0x38), 1);
        sim_mem_put_u32(m, e + (x64 ? 0x80 : 0x44), im->timestamp);
        /* Append: prev.Flink = e; e.Blink = prev; e.Flink = head; head.Blink = e. */
        sim_mem_put_ptr(m, prev, e);
        sim_mem_put_ptr(m, e + m->psize, prev);
        sim_mem_put_ptr(m, e, head);
        sim_mem_put_ptr(m, head + m->psize, e);
        prev = e;
    }
    return KDH_OK;
}

static void kdbg_put(sim_machine_t *m, uint32_t off, uint64_t v)
{
    uint8_t *p = sim_mem_host(m, m->kdbg + off, 8);
    if (p)
        kdh_put_u64(p, sim_report_addr(m, v));
}

const sim_mm_var_t sim_mm_vars[SIM_MM_VARS] = {
    {"MmMaximumNonPagedPoolInBytes", 0x100, 1}, {"MmSizeOfPagedPoolInBytes", 0x140, 1},
    {"MmTotalCommitLimit", 0x148, 1},           {"MmTotalCommittedPages", 0x150, 1},
    {"MmPagedPoolCommit", 0x170, 1},            {"MmAllocatedNonPagedPool", 0x250, 1},
    {"MmNonPagedPoolStart", 0x110, 0},          {"MmNonPagedPoolEnd", 0x118, 0},
    {"MmPagedPoolStart", 0x120, 0},             {"MmPagedPoolEnd", 0x128, 0},
};

static int build_kdbg(sim_machine_t *m, uint64_t processor_block, kdh_err_t *err)
{
    uint8_t *p = sim_mem_host(m, m->kdbg, KDBG_SIZE);
    if (!p)
        return kdh_err_set(err, KDH_ECORRUPT, "kdsim: nt!KdDebuggerDataBlock is not %u bytes", KDBG_SIZE);
    memset(p, 0, KDBG_SIZE);
    int x64 = m->psize == 8;
    kdbg_put(m, 0x00, m->kdbg_list_head);  /* Header.List: a one-element list */
    kdbg_put(m, 0x08, m->kdbg_list_head);
    kdh_put_u32(p + 0x10, 0x4742444Bu);  /* 'KDBG' */
    kdh_put_u32(p + 0x14, KDBG_SIZE);
    kdbg_put(m, 0x18, m->images[0].base);
    kdbg_put(m, 0x20, m->break_with_status);
    kdbg_put(m, 0x48, m->ps_loaded_module_list);
    kdbg_put(m, 0x1B8, m->pool_track_table);
    kdh_put_u64(p + 0x1C8, x64 ? 0x7ffffffeffffull : kdh_sign_extend32(0x7ffeffffu));
    kdh_put_u64(p + 0x1D0, x64 ? 0xffff800000000000ull : kdh_sign_extend32(0x80000000u));
    kdbg_put(m, 0x218, processor_block);
    kdbg_put(m, 0x238, m->special_pool_tag);
    kdh_put_u16(p + 0x2B4, x64 ? 0x08 : 0x04);  /* OffsetPrcbCurrentThread */
    /* The memory manager's pool range and counters: addresses of nt's variables, as wdbgexts.h
     * lists them (the range: one pool region serves both kinds). */
    for (size_t i = 0; i < SIM_MM_VARS; i++)
        kdbg_put(m, sim_mm_vars[i].kdbg_offset, m->mm_vars[i]);
    /* KdpDebuggerDataListHead (native LIST_ENTRY) -> the block. */
    sim_mem_put_ptr(m, m->kdbg_list_head, m->kdbg);
    sim_mem_put_ptr(m, m->kdbg_list_head + m->psize, m->kdbg);
    return KDH_OK;
}

static uint64_t new_kthread(sim_machine_t *m, const sim_thread_t *t)
{
    int x64 = m->psize == 8;
    uint64_t k = sim_arena_alloc(m, x64 ? 0x400 : 0x200, 64);
    if (!k)
        return 0;
    uint8_t *p = sim_mem_host(m, k, 1);
    p[0] = 6;  /* ThreadObject */
    sim_mem_put_ptr(m, k + (x64 ? 0x28 : 0x18), t->stack_top);
    sim_mem_put_ptr(m, k + (x64 ? 0x30 : 0x1C), t->stack_base);
    sim_mem_put_ptr(m, k + (x64 ? 0x38 : 0x190), t->stack_top);
    sim_mem_put_u32(m, k + (x64 ? 0x240 : 0x134), (uint32_t)t->cpu);
    return k;
}

void sim_set_current_thread(sim_machine_t *m, int cpu, uint64_t kthread)
{
    m->cpus[cpu].current_thread = kthread;
    sim_mem_put_ptr(m, m->cpus[cpu].kprcb + (m->psize == 8 ? 0x08 : 0x04), kthread);
}

static int build_cpus(sim_machine_t *m, uint64_t *processor_block, kdh_err_t *err)
{
    int x64 = m->psize == 8;
    uint64_t pb = sim_arena_alloc(m, (size_t)m->psize * SIM_MAX_CPUS, 16);
    if (!pb)
        return kdh_err_set(err, KDH_ENOMEM, "kdsim: kernel structure arena full");
    for (int c = 0; c < m->ncpus; c++) {
        sim_cpu_t *cpu = &m->cpus[c];
        uint64_t kpcr = sim_arena_alloc(m, x64 ? 0x1000 : 0x800, 0x1000);
        if (!kpcr)
            return kdh_err_set(err, KDH_ENOMEM, "kdsim: kernel structure arena full");
        cpu->kpcr = kpcr;
        cpu->kprcb = kpcr + (x64 ? 0x180 : 0x120);
        sim_mem_put_ptr(m, kpcr + (x64 ? 0x18 : 0x1C), kpcr);
        sim_mem_put_ptr(m, kpcr + 0x20, cpu->kprcb);
        sim_mem_put_u32(m, cpu->kprcb + (x64 ? 0x24 : 0x10), (uint32_t)c);
        sim_mem_put_ptr(m, pb + (uint64_t)c * m->psize, cpu->kprcb);
        cpu->idle.kthread = new_kthread(m, &cpu->idle);
        for (int w = 0; w < SIM_THREADS_PER_CPU; w++)
            cpu->workers[w].kthread = new_kthread(m, &cpu->workers[w]);
        if (!cpu->idle.kthread || !cpu->workers[SIM_THREADS_PER_CPU - 1].kthread)
            return kdh_err_set(err, KDH_ENOMEM, "kdsim: kernel structure arena full");
        sim_mem_put_ptr(m, cpu->kprcb + (x64 ? 0x18 : 0x0C), cpu->idle.kthread);
        sim_set_current_thread(m, c, cpu->idle.kthread);

        /* The idle thread sits in nt!KiIdleLoop on its own stack. */
        sim_regs_t *r = &cpu->idle_regs;
        memset(r, 0, sizeof *r);
        r->rip = m->idle_loop;
        r->gpr[R_SP] = cpu->idle.stack_top - (x64 ? 0x28 : 0x10);
        r->rflags = 0x202;
        r->mxcsr = 0x1f80;
        cpu->regs = *r;
    }
    *processor_block = pb;
    return KDH_OK;
}

int sim_build_kernel_structures(sim_machine_t *m, kdh_err_t *err)
{
    uint64_t pb = 0;
    int rc = build_module_list(m, err);
    if (rc == KDH_OK)
        rc = build_cpus(m, &pb, err);
    if (rc == KDH_OK)
        rc = build_kdbg(m, pb, err);
    return rc;
}
