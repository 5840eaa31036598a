/* machine.c: the simulated machine's life cycle and run loop: boot (map, load, start the fixture
 * kernel, build kernel structures, queue load-symbols), run work items in simulated time until a
 * stop (int 3, single step, DbgPrint), and the interrupt hook that turns Unicorn's view into KD
 * stops. One Unicorn CPU plays every simulated processor in turn; the others stay frozen. */
#include <stdlib.h>
#include <string.h>

#include "machine_int.h"

#define BOOT_MAX_INSNS 10000000ull

uint64_t sim_rand(sim_machine_t *m)
{
    /* splitmix64: deterministic for a seed, good enough for addresses and timing. */
    uint64_t z = (m->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void intr_hook(uc_engine *uc, uint32_t intno, void *user)
{
    sim_machine_t *m = user;
    uint64_t pc = 0;
    uc_reg_read(uc, m->arch == SIM_ARCH_X64 ? UC_X86_REG_RIP : UC_X86_REG_EIP, &pc);
    if (m->arch == SIM_ARCH_X86)
        pc &= 0xffffffffu;
    if (intno == 3) {
        m->intr = SIM_INTR_BREAK;
        m->intr_pc = pc - 1;  /* Unicorn reports the address after the int 3; KD reports the int 3 */
    } else if (intno == 0x2d) {
        m->intr = SIM_INTR_PRINT;
        m->intr_pc = pc;
    } else {
        m->intr = SIM_INTR_FAULT;
        m->intr_pc = pc;
    }
    uc_emu_stop(uc);
}

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

sim_machine_t *sim_machine_create(const sim_config_t *cfg, kdh_err_t *err)
{
    if (!cfg || !cfg->fixture_dir) {
        kdh_err_set(err, KDH_EINVAL, "kdsim: no fixture folder given (it holds ntoskrnl.exe, hal.dll, *.sys)");
        return NULL;
    }
    if (cfg->arch != SIM_ARCH_X64 && cfg->arch != SIM_ARCH_X86) {
        kdh_err_set(err, KDH_EINVAL, "kdsim: unknown architecture %d", (int)cfg->arch);
        return NULL;
    }
    if (cfg->cpus < 1 || cfg->cpus > SIM_MAX_CPUS) {
        kdh_err_set(err, KDH_EINVAL, "kdsim: %d processors asked for; 1..%d are supported", cfg->cpus, SIM_MAX_CPUS);
        return NULL;
    }
    sim_machine_t *m = calloc(1, sizeof *m);
    if (!m) {
        kdh_err_set(err, KDH_ENOMEM, "kdsim: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->fixture_dir = dupstr(cfg->fixture_dir);
    m->workload = dupstr(cfg->workload ? cfg->workload : "idle");
    m->truth_path = dupstr(cfg->truth_path);
    m->hostile = dupstr(cfg->hostile);
    m->arch = cfg->arch;
    m->psize = cfg->arch == SIM_ARCH_X64 ? 8 : 4;
    m->ncpus = cfg->cpus;
    if (!m->fixture_dir || !m->workload || (cfg->truth_path && !m->truth_path) || (cfg->hostile && !m->hostile)) {
        kdh_err_set(err, KDH_ENOMEM, "kdsim: out of memory");
        sim_machine_destroy(m);
        return NULL;
    }
    if (m->truth_path) {
        m->truth = fopen(m->truth_path, "a");
        if (!m->truth) {
            kdh_err_set(err, KDH_EIO, "kdsim: cannot open ground-truth file %s for appending", m->truth_path);
            sim_machine_destroy(m);
            return NULL;
        }
    }
    /* Parse the workload and the hostile list now, so that mistakes show at once. */
    if (sim_hostile_parse(m->hostile, &m->hostile_flags, err) != KDH_OK || sim_workload_setup(m, err) != KDH_OK) {
        sim_machine_destroy(m);
        return NULL;
    }
    return m;
}

static void teardown(sim_machine_t *m)
{
    sim_mem_unmap_all(m);
    if (m->uc) {
        uc_close(m->uc);
        m->uc = NULL;
    }
    sim_free_images(m);
}

void sim_machine_destroy(sim_machine_t *m)
{
    if (!m)
        return;
    teardown(m);
    if (m->truth)
        fclose(m->truth);
    free(m->fixture_dir);
    free(m->workload);
    free(m->truth_path);
    free(m->hostile);
    free(m);
}

static void queue_push(sim_machine_t *m, const sim_stop_t *s)
{
    if (m->qlen < SIM_MAX_QUEUE)
        m->queue[(m->qhead + m->qlen++) % SIM_MAX_QUEUE] = *s;
}

static void queue_load_symbols(sim_machine_t *m, const sim_image_t *im)
{
    sim_stop_t s;
    memset(&s, 0, sizeof s);
    s.kind = SIM_STOP_LOAD_SYMBOLS;
    s.cpu = 0;
    s.thread = m->cpus[0].current_thread;
    s.pc = sim_report_addr(m, m->dbg_break_point);
    s.base = sim_report_addr(m, im->base);
    s.size = im->size;
    s.checksum = im->checksum;
    snprintf(s.path, sizeof s.path, "%s", im->path);
    queue_push(m, &s);
}

/* Runs one routine to its return on a scratch stack (boot-time calls: KiSystemStartup,
 * DriverEntry). Up to two pointer arguments. */
static int call_routine(sim_machine_t *m, uint64_t fn, uint64_t stack_top, uint64_t a0, uint64_t a1,
                        kdh_err_t *err)
{
    sim_regs_t r;
    memset(&r, 0, sizeof r);
    r.rflags = 0x202;
    r.mxcsr = 0x1f80;
    r.rip = fn;
    if (m->arch == SIM_ARCH_X64) {
        r.gpr[R_SP] = stack_top - 0x28;
        r.gpr[R_CX] = a0;
        r.gpr[R_DX] = a1;
        sim_mem_put_ptr(m, r.gpr[R_SP], 0);
    } else {
        r.gpr[R_SP] = stack_top - 12;
        sim_mem_put_ptr(m, r.gpr[R_SP], 0);
        sim_mem_put_ptr(m, r.gpr[R_SP] + 4, a0);
        sim_mem_put_ptr(m, r.gpr[R_SP] + 8, a1);
    }
    sim_regs_load(m, &r);
    m->intr = SIM_INTR_NONE;
    m->running_cpu = 0;
    m->watch_idle = 0;
    m->insns = 0;
    m->insn_limit = BOOT_MAX_INSNS;
    m->have_pending = 0;
    uc_err e = uc_emu_start(m->uc, fn, 0, 0, 0);
    sim_regs_save(m, &r);
    sim_block_flush(m, r.rip);
    m->cpus[0].shadow_depth = 0;
    if (e != UC_ERR_OK || m->intr != SIM_INTR_NONE || r.rip != 0)
        return kdh_err_set(err, KDH_ETARGET, "kdsim: boot routine at 0x%llx did not return (pc 0x%llx, %s)",
                           (unsigned long long)fn, (unsigned long long)r.rip,
                           e != UC_ERR_OK ? uc_strerror(e) : "interrupt or loop");
    return KDH_OK;
}

/* Region bases per architecture; each gets a seeded offset so every boot moves them. */
static int map_regions(sim_machine_t *m, uint64_t *boot_stack_top, kdh_err_t *err)
{
    int x64 = m->arch == SIM_ARCH_X64;
    uint64_t arena = x64 ? 0xffffa00000000000ull + (sim_rand(m) % 0x1000) * 0x100000
                         : 0x84000000ull + (sim_rand(m) % 16) * 0x100000;
    uint64_t pool = x64 ? 0xffffb00000000000ull + (sim_rand(m) % 0x1000) * 0x10000000
                        : 0x86000000ull + (sim_rand(m) % 16) * 0x100000;
    /* Reserved, not committed: only the pages the kernel touches cost host memory. Sized for
     * tens of minutes of the "leak" preset. */
    uint64_t pool_size = x64 ? 256u << 20 : 64u << 20;
    uint64_t special = x64 ? 0xffffc00000000000ull + (sim_rand(m) % 0x1000) * 0x1000000
                           : 0x8c000000ull + (sim_rand(m) % 16) * 0x100000;
    uint64_t stacks = x64 ? 0xffffd00000000000ull + (sim_rand(m) % 0x1000) * 0x1000000
                          : 0x8e000000ull + (sim_rand(m) % 16) * 0x100000;
    int rc = sim_mem_map(m, arena, 1u << 20, err);
    if (rc == KDH_OK)
        rc = sim_mem_map(m, pool, pool_size, err);
    if (rc != KDH_OK)
        return rc;
    m->arena_next = arena;
    m->arena_end = arena + (1u << 20);
    m->pool_start = pool;
    m->pool_end = pool + pool_size;
    /* Special pool: data pages only; the guard page after each stays unmapped, so an overrun
     * faults as on Windows. */
    const int slots = 64;
    for (int i = 0; i < slots && rc == KDH_OK; i++)
        rc = sim_mem_map(m, special + (uint64_t)i * 0x2000, 0x1000, err);
    m->special_start = special;
    m->special_end = special + (uint64_t)slots * 0x2000;
    /* Thread stacks with an unmapped page between them: one boot stack, then per CPU the idle
     * thread and the workers. */
    uint64_t stride = SIM_STACK_SIZE + 0x1000;
    uint64_t next = stacks;
    if (rc == KDH_OK)
        rc = sim_mem_map(m, next, SIM_STACK_SIZE, err);
    *boot_stack_top = next + SIM_STACK_SIZE;
    next += stride;
    for (int c = 0; c < m->ncpus && rc == KDH_OK; c++) {
        sim_cpu_t *cpu = &m->cpus[c];
        sim_thread_t *ts[1 + SIM_THREADS_PER_CPU] = {&cpu->idle};
        for (int w = 0; w < SIM_THREADS_PER_CPU; w++)
            ts[1 + w] = &cpu->workers[w];
        for (int t = 0; t < 1 + SIM_THREADS_PER_CPU && rc == KDH_OK; t++) {
            rc = sim_mem_map(m, next, SIM_STACK_SIZE, err);
            ts[t]->stack_base = next;
            ts[t]->stack_top = next + SIM_STACK_SIZE;
            ts[t]->cpu = c;
            next += stride;
        }
    }
    return rc;
}

static int boot_block_field(sim_machine_t *m, int index, uint64_t *out, kdh_err_t *err)
{
    if (sim_mem_get_ptr(m, m->boot_block + (uint64_t)index * (uint64_t)m->psize, out) != KDH_OK)
        return kdh_err_set(err, KDH_ECORRUPT, "kdsim: nt!KdSimBootBlock field %d unreadable", index);
    return KDH_OK;
}

static int read_boot_block(sim_machine_t *m, kdh_err_t *err)
{
    if (sim_image_export(m, "ntoskrnl.exe", "KdSimBootBlock", &m->boot_block) != KDH_OK)
        return kdh_err_set(err, KDH_ENOTFOUND, "kdsim: ntoskrnl.exe does not export KdSimBootBlock: not the fixture kernel?");
    uint64_t magic;
    int rc = boot_block_field(m, 0, &magic, err);
    if (rc != KDH_OK)
        return rc;
    if ((uint32_t)magic != 0x4d49534bu)
        return kdh_err_set(err, KDH_ECORRUPT, "kdsim: nt!KdSimBootBlock has magic 0x%llx, not 'KSIM'",
                           (unsigned long long)magic);
    struct {
        int index;
        uint64_t *dst;
    } f[] = {{6, &m->pool_hit_tag}, {7, &m->special_pool_tag}, {8, &m->kdbg}, {9, &m->kdbg_list_head},
             {10, &m->ps_loaded_module_list}, {11, &m->pool_track_table}, {12, &m->pool_track_table_size},
             {13, &m->current_pool_op}, {14, &m->dbg_break_point}, {15, &m->idle_loop},
             {16, &m->thread_startup}, {17, &m->system_startup}, {18, &m->break_with_status},
             {22, &m->insert_tracker}, {23, &m->remove_tracker}};
    for (size_t i = 0; i < KDH_ARRAY_LEN(f); i++) {
        rc = boot_block_field(m, f[i].index, f[i].dst, err);
        if (rc != KDH_OK)
            return rc;
        if (!sim_mem_host(m, *f[i].dst, 1))
            return kdh_err_set(err, KDH_ECORRUPT, "kdsim: nt!KdSimBootBlock field %d points outside memory", f[i].index);
    }
    for (int i = 0; i < SIM_MM_VARS; i++) {
        rc = boot_block_field(m, SIM_MM_BOOT_INDEX + i, &m->mm_vars[i], err);
        if (rc != KDH_OK)
            return rc;
        if (!sim_mem_host(m, m->mm_vars[i], m->psize))
            return kdh_err_set(err, KDH_ECORRUPT, "kdsim: nt!KdSimBootBlock field %d (&%s) points outside memory",
                               SIM_MM_BOOT_INDEX + i, sim_mm_vars[i].name);
    }
    return KDH_OK;
}

int sim_machine_reboot(sim_machine_t *m, kdh_err_t *err)
{
    teardown(m);
    m->boot++;
    m->rng = m->cfg.seed * 0x2545f4914f6cdd1dull + m->boot * 0x9e3779b97f4a7c15ull;
    m->now_ns = 0;
    m->active = 0;
    m->qhead = m->qlen = 0;
    memset(m->cpus, 0, sizeof m->cpus);
    sim_block_cache_clear(m);  /* the new boot's code lies at other addresses */
    m->have_pending = 0;
    m->decode_misses = m->stat_insns = m->stat_starts = 0;

    uc_err e = uc_open(UC_ARCH_X86, m->arch == SIM_ARCH_X64 ? UC_MODE_64 : UC_MODE_32, &m->uc);
    if (e != UC_ERR_OK)
        return kdh_err_set(err, KDH_EIO, "kdsim: cannot start the emulator: %s", uc_strerror(e));
    if (uc_hook_add(m->uc, &m->hook_intr, UC_HOOK_INTR, (void *)intr_hook, m, 1, 0) != UC_ERR_OK ||
        uc_hook_add(m->uc, &m->hook_block, UC_HOOK_BLOCK, (void *)sim_block_hook, m, 1, 0) != UC_ERR_OK)
        return kdh_err_set(err, KDH_EIO, "kdsim: cannot install emulator hooks");

    uint64_t boot_stack = 0;
    int rc = sim_load_images(m, err);
    if (rc == KDH_OK)
        rc = read_boot_block(m, err);
    if (rc == KDH_OK)
        rc = map_regions(m, &boot_stack, err);
    if (rc != KDH_OK)
        return rc;
    uint64_t bounds[4] = {m->pool_start, m->pool_end, m->special_start, m->special_end};
    for (int i = 0; i < 4; i++)
        sim_mem_put_ptr(m, m->boot_block + (uint64_t)(1 + i) * (uint64_t)m->psize, bounds[i]);
    rc = call_routine(m, m->system_startup, boot_stack, 0, 0, err);
    for (int i = 2; i < m->nimages && rc == KDH_OK; i++)  /* drivers: DriverEntry(NULL, NULL) */
        rc = call_routine(m, m->images[i].base + m->images[i].entry_rva, boot_stack, 0, 0, err);
    if (rc == KDH_OK)
        rc = sim_build_kernel_structures(m, err);
    /* the special-pool tag comes from the registry at boot (Memory Management\PoolTag) */
    if (rc == KDH_OK && m->cfg.special_pool_tag)
        sim_mem_put_u32(m, m->special_pool_tag, m->cfg.special_pool_tag);
    if (rc == KDH_OK)
        rc = sim_workload_setup(m, err);
    if (rc != KDH_OK)
        return rc;
    sim_hostile_boot(m);
    m->garbage_len = 0;
    m->now_ns = 0;
    if (m->boot > 1) {
        /* The previous system went away: "unload all" (BaseOfDll = -1), then the new boot. */
        sim_stop_t s;
        memset(&s, 0, sizeof s);
        s.kind = SIM_STOP_LOAD_SYMBOLS;
        s.unload = 1;
        s.base = UINT64_MAX;
        s.thread = m->cpus[0].current_thread;
        s.pc = sim_report_addr(m, m->dbg_break_point);
        queue_push(m, &s);
    }
    queue_load_symbols(m, &m->images[0]);
    queue_load_symbols(m, &m->images[1]);
    return KDH_OK;
}

uint64_t sim_machine_now_ns(const sim_machine_t *m)
{
    return m ? m->now_ns : 0;
}

void sim_machine_info(const sim_machine_t *m, sim_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->arch = m->arch;
    info->machine_type = m->arch == SIM_ARCH_X64 ? 0x8664 : 0x014C;
    info->build = 19041;
    info->cpus = m->ncpus;
    info->pointer_size = m->psize;
    info->boot = m->boot;
    if (m->boot == 0 || m->nimages == 0)
        return;
    info->kern_base = sim_report_addr(m, m->images[0].base);
    info->ps_loaded_module_list = sim_report_addr(m, m->ps_loaded_module_list);
    info->debugger_data_list = sim_report_addr(m, m->kdbg_list_head);
    info->pool_hit_tag = sim_report_addr(m, m->pool_hit_tag);
}

int sim_machine_set_trace(sim_machine_t *m, int cpu, int on)
{
    if (!m || cpu < 0 || cpu >= m->ncpus)
        return KDH_EINVAL;
    m->cpus[cpu].trace = on ? 1 : 0;
    return KDH_OK;
}

static void fill_stop(sim_machine_t *m, sim_stop_t *s, sim_stop_kind_t kind, int cpu, uint64_t pc)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->cpu = cpu;
    s->pc = sim_report_addr(m, pc);
    s->thread = sim_report_addr(m, m->cpus[cpu].current_thread);
    if (kind == SIM_STOP_BREAKPOINT)
        s->exception_code = 0x80000003u;
    else if (kind == SIM_STOP_SINGLE_STEP)
        s->exception_code = 0x80000004u;
}

static void read_print(sim_machine_t *m, sim_stop_t *s)
{
    const sim_regs_t *r = &m->cpus[s->cpu].regs;
    uint64_t text = r->gpr[R_CX], len = r->gpr[R_DX] & 0xffffffffu;
    if (len > sizeof s->text - 1)
        len = sizeof s->text - 1;
    uint32_t done = 0;
    sim_machine_read(m, text, s->text, (uint32_t)len, &done);
    s->text[done] = 0;
    s->text_len = done;
}

/* Puts a temporary int 3 after the instruction at pc when it always falls through to there. */
static int step_by_int3(sim_machine_t *m, uint64_t pc, uint64_t *next, uint8_t *orig)
{
    uint8_t code[15], cc = 0xCC;
    uint32_t avail = 0, done = 0;
    sim_insn_kind_t kind;
    int x64 = m->arch == SIM_ARCH_X64;
    if (sim_machine_read(m, pc, code, sizeof code, &avail) != KDH_OK)
        return 0;
    uint32_t len = sim_insn_decode(code, avail, x64, &kind);
    if (len == 0 || !sim_insn_falls_through(code, avail, x64))
        return 0;
    *next = pc + len;
    if (sim_machine_read(m, *next, orig, 1, &done) != KDH_OK || done != 1 || *orig == 0xCC)
        return 0;
    return sim_machine_write(m, *next, &cc, 1, &done) == KDH_OK && done == 1;
}

/* One emulator run on cpu c from its saved registers. Returns KDH_OK with *stopped set when a
 * stop was produced into *stop, or with the item finished / budget used otherwise. */
static int run_cpu(sim_machine_t *m, int c, uint64_t count, sim_stop_t *stop, int *stopped, kdh_err_t *err)
{
    sim_cpu_t *cpu = &m->cpus[c];
    *stopped = 0;
    m->intr = SIM_INTR_NONE;
    m->insns = 0;
    m->running_cpu = c;
    /* A CPU without a work item runs only when the debugger diverted it (a simulated break-in
     * call); it stops again once back in the idle loop. */
    m->watch_idle = !(m->active && m->active_cpu == c) && count > 1;
    m->insn_limit = count;
    m->have_pending = 0;
    sim_regs_load(m, &cpu->regs);
    uint64_t pc0 = cpu->regs.rip;
    uc_err e;
    uint64_t next = 0;
    uint8_t orig = 0;
    if (count == 1 && step_by_int3(m, pc0, &next, &orig)) {
        /* A step of an instruction that always goes on to the next: run up to a temporary int 3
         * there, which keeps the translated code (a debugger steps after each of its own
         * breakpoints, so this is the common case and must stay cheap). */
        uint32_t done = 0;
        m->insn_limit = UINT64_MAX;
        e = uc_emu_start(m->uc, pc0, 0, 0, 0);
        sim_machine_write(m, next, &orig, 1, &done);
        sim_regs_save(m, &cpu->regs);
        m->have_pending = 0; /* the int 3 block is not the machine's */
        if (m->intr == SIM_INTR_BREAK && m->intr_pc == next) {
            m->intr = SIM_INTR_NONE;
            cpu->regs.rip = next;
            m->insns = 1;
        }
    } else if (count == 1) {
        /* A single step stops inside a block: Unicorn's own count does it. Its counting hook
         * reaches only code translated after it was installed, so all translated code goes
         * first (a debugger's step can afford that). */
        uc_ctl_flush_tlb(m->uc);
        m->stepping = 1;
        e = uc_emu_start(m->uc, pc0, 0, 0, 1);
        m->stepping = 0;
        sim_regs_save(m, &cpu->regs);
        sim_step_account(m, pc0, cpu->regs.rip);
    } else {
        e = uc_emu_start(m->uc, pc0, 0, 0, 0);
        sim_regs_save(m, &cpu->regs);
        sim_block_flush(m, cpu->regs.rip);
    }
    m->stat_insns += m->insns;
    m->stat_starts++;
    m->now_ns += m->insns;  /* one simulated nanosecond per instruction */
    if (m->intr == SIM_INTR_BREAK) {
        cpu->regs.rip = m->intr_pc;  /* as Windows does: PC back on the int 3 */
        fill_stop(m, stop, SIM_STOP_BREAKPOINT, c, m->intr_pc);
        *stopped = 1;
        int rc = sim_truth_write(m, stop, err);
        sim_hostile_stop(m, c);  /* after the truth: it records what really is */
        return rc;
    }
    if (m->intr == SIM_INTR_PRINT) {
        fill_stop(m, stop, SIM_STOP_PRINT, c, cpu->regs.rip);
        read_print(m, stop);
        *stopped = 1;
        return KDH_OK;
    }
    if (e != UC_ERR_OK || m->intr == SIM_INTR_FAULT)
        return kdh_err_set(err, KDH_ETARGET, "kdsim: simulated CPU %d faulted at pc 0x%llx: %s", c,
                           (unsigned long long)cpu->regs.rip,
                           e != UC_ERR_OK ? uc_strerror(e) : "unexpected interrupt");
    return KDH_OK;
}

static void finish_item(sim_machine_t *m)
{
    sim_cpu_t *cpu = &m->cpus[m->active_cpu];
    cpu->regs = cpu->idle_regs;
    sim_set_current_thread(m, m->active_cpu, cpu->idle.kthread);
    m->active = 0;
    cpu->shadow_depth = 0;
}

/* A CPU with no work item whose PC the debugger moved out of the idle loop, or -1. */
static int diverted_cpu(const sim_machine_t *m)
{
    for (int c = 0; c < m->ncpus; c++)
        if (!(m->active && m->active_cpu == c) && !sim_in_idle_loop(m, m->cpus[c].regs.rip))
            return c;
    return -1;
}

static int step_one(sim_machine_t *m, int c, sim_stop_t *stop, kdh_err_t *err)
{
    int stopped;
    m->cpus[c].trace = 0;
    int rc = run_cpu(m, c, 1, stop, &stopped, err);
    if (rc != KDH_OK || stopped)
        return rc;
    if (m->active && m->active_cpu == c && m->cpus[c].regs.rip == 0)
        finish_item(m);
    fill_stop(m, stop, SIM_STOP_SINGLE_STEP, c, m->cpus[c].regs.rip);
    return KDH_OK;
}

int sim_machine_run(sim_machine_t *m, uint64_t budget_ns, sim_stop_t *stop, kdh_err_t *err)
{
    if (!m || !stop)
        return kdh_err_set(err, KDH_EINVAL, "kdsim: run without a machine or stop record");
    memset(stop, 0, sizeof *stop);
    if (m->boot == 0 || !m->uc)
        return kdh_err_set(err, KDH_EINVAL, "kdsim: the machine has not booted");
    sim_hostile_resume(m);
    if (m->qlen) {
        *stop = m->queue[m->qhead];
        m->qhead = (m->qhead + 1) % SIM_MAX_QUEUE;
        m->qlen--;
        return KDH_OK;
    }
    for (int c = 0; c < m->ncpus; c++)
        if (m->cpus[c].trace)
            return step_one(m, c, stop, err);
    uint64_t deadline = m->now_ns + budget_ns;
    if (deadline < m->now_ns)
        deadline = UINT64_MAX;
    for (;;) {
        int d = diverted_cpu(m);
        if (d >= 0) {
            int stopped;
            int rc = run_cpu(m, d, SIM_ITEM_MAX_INSNS, stop, &stopped, err);
            if (rc != KDH_OK || stopped)
                return rc;
            if (!sim_in_idle_loop(m, m->cpus[d].regs.rip))
                return kdh_err_set(err, KDH_ETARGET, "kdsim: CPU %d, moved by the debugger to 0x%llx, did not return to the idle loop",
                                   d, (unsigned long long)m->cpus[d].regs.rip);
            m->cpus[d].shadow_depth = 0;
            continue;
        }
        if (!m->active) {
            int w = sim_workload_next(m, deadline);
            if (w < 0) {
                m->now_ns = deadline;
                stop->kind = SIM_STOP_NONE;
                return KDH_OK;
            }
            int rc = sim_workload_start(m, w, err);
            if (rc != KDH_OK)
                return rc;
        }
        int stopped;
        int rc = run_cpu(m, m->active_cpu, SIM_ITEM_MAX_INSNS, stop, &stopped, err);
        if (rc != KDH_OK || stopped)
            return rc;
        if (m->cpus[m->active_cpu].regs.rip != 0)
            return kdh_err_set(err, KDH_ETARGET, "kdsim: a work item ran more than %llu instructions (pc 0x%llx)",
                               SIM_ITEM_MAX_INSNS, (unsigned long long)m->cpus[m->active_cpu].regs.rip);
        finish_item(m);
        if (m->now_ns >= deadline) {
            stop->kind = SIM_STOP_NONE;
            return KDH_OK;
        }
    }
}
