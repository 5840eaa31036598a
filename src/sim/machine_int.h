/* machine_int.h: private state of the simulated machine shared by machine.c (run loop, stops),
 * memory.c (host-backed guest memory), loader.c (PE images), kstructs.c (kernel structures a
 * debugger reads), workload.c (scheduler), context.c (CONTEXT layouts) and truth.c (shadow
 * call stack and the ground-truth JSON lines). */
#ifndef KDSIM_MACHINE_INT_H
#define KDSIM_MACHINE_INT_H

#include <stdio.h>
#include <unicorn/unicorn.h>

#include "kdh/pe.h"
#include "machine.h"

#define SIM_MAX_REGIONS 200
#define SIM_MAX_IMAGES 8
#define SIM_MAX_CPUS 8
#define SIM_THREADS_PER_CPU 2
#define SIM_MAX_WORK 32
#define SIM_MAX_QUEUE 8
#define SIM_SHADOW_MAX 512
#define SIM_STACK_SIZE 0x10000
#define SIM_ITEM_MAX_INSNS 20000000ull /* a workload routine that runs longer is a fixture bug */

typedef struct sim_region {
    uint64_t va;
    size_t size;
    uint8_t *host;
} sim_region_t;

typedef struct sim_image {
    char name[32];   /* BaseDllName, e.g. "ntoskrnl.exe" */
    char path[128];  /* FullDllName / load-symbols path */
    uint64_t base;
    uint32_t size, checksum, timestamp, entry_rva;
    uint8_t *file;   /* file bytes, kept for the export table */
    size_t file_len;
    kdh_pe_t pe;
    kdh_pe_exports_t exports;
    int have_exports;
} sim_image_t;

/* Registers of one simulated CPU, kept outside Unicorn while another CPU runs. x64: gpr in
 * Unicorn order rax rcx rdx rbx rsp rbp rsi rdi r8..r15; x86 uses the first eight. */
typedef struct sim_regs {
    uint64_t gpr[16];
    uint64_t rip, rflags;
    uint8_t xmm[16][16];
    uint32_t mxcsr;
} sim_regs_t;

enum { R_AX, R_CX, R_DX, R_BX, R_SP, R_BP, R_SI, R_DI };

typedef struct sim_thread {
    uint64_t kthread;
    uint64_t stack_base, stack_top;
    int cpu;
} sim_thread_t;

typedef struct sim_shadow_frame {
    uint64_t ret;  /* return address pushed by the call */
} sim_shadow_frame_t;

/* What ends a block of code, as far as the shadow call stack cares. */
typedef enum { SIM_INSN_OTHER = 0, SIM_INSN_CALL, SIM_INSN_RET } sim_insn_kind_t;

/* A translated block as the block hook sees it, decoded once and cached by start address. */
typedef struct sim_block {
    uint64_t addr;
    uint64_t last_end;   /* address after the block's last instruction (a call's return address) */
    uint32_t size;       /* bytes, as Unicorn reports them; 0 = empty cache slot */
    uint32_t ninsns;
    uint8_t kind;        /* sim_insn_kind_t of the last instruction */
} sim_block_t;

#define SIM_BLOCK_CACHE 4096  /* power of two; the fixtures have a few hundred blocks */

typedef struct sim_cpu {
    sim_regs_t regs;        /* current registers (the idle loop or the running work item) */
    sim_regs_t idle_regs;   /* the idle loop's registers, restored when an item ends */
    uint64_t kpcr, kprcb;
    sim_thread_t idle;
    sim_thread_t workers[SIM_THREADS_PER_CPU];
    int next_worker;
    uint64_t current_thread;
    int trace;
    /* calls made on this CPU and not yet returned (truth.c), innermost last */
    sim_shadow_frame_t shadow[SIM_SHADOW_MAX];
    int shadow_depth;
} sim_cpu_t;

typedef struct sim_work {
    char module[32];
    char export_name[64];
    uint64_t fn;            /* resolved at boot */
    uint64_t period_ns;     /* mean interval between calls */
    uint64_t next_due;
} sim_work_t;

/* The seeded callee-saved registers of the running item (what an unwinder must recover at the
 * outermost frame). */
typedef struct sim_seed_regs {
    uint64_t v[8];  /* x64: rbx rbp rsi rdi r12 r13 r14 r15; x86: ebx ebp esi edi */
    uint64_t xmm_lo[10], xmm_hi[10]; /* x64: xmm6..xmm15 */
} sim_seed_regs_t;

enum {
    SIM_HOSTILE_LDR_CYCLE = 1u << 0,
    SIM_HOSTILE_LDR_WILD = 1u << 1,
    SIM_HOSTILE_NAME_LONG = 1u << 2,
    SIM_HOSTILE_KDBG_TAG = 1u << 3,
    SIM_HOSTILE_KDBG_SIZE = 1u << 4,
    SIM_HOSTILE_STACK_GARBAGE = 1u << 5,
    SIM_HOSTILE_DRV_NAME_LONG = 1u << 6,
};

enum { SIM_INTR_NONE = 0, SIM_INTR_BREAK, SIM_INTR_PRINT, SIM_INTR_FAULT };

#define SIM_MM_VARS 10       /* memory manager variables (sim_mm_vars) */
#define SIM_MM_BOOT_INDEX 24 /* nt!KdSimBootBlock field of the first one's address */

struct sim_machine {
    sim_config_t cfg;
    char *fixture_dir, *workload, *truth_path, *hostile;
    sim_arch_t arch;
    int psize;
    uc_engine *uc;
    uc_hook hook_block, hook_intr;

    sim_region_t regions[SIM_MAX_REGIONS];
    int nregions;
    int last_region;  /* lookup cache */

    sim_image_t images[SIM_MAX_IMAGES];
    int nimages;

    /* nt addresses found through nt!KdSimBootBlock */
    uint64_t boot_block, pool_hit_tag, special_pool_tag, kdbg, kdbg_list_head, ps_loaded_module_list;
    uint64_t pool_track_table, pool_track_table_size, current_pool_op, dbg_break_point;
    uint64_t idle_loop, thread_startup, system_startup, break_with_status;
    uint64_t insert_tracker, remove_tracker; /* nt!ExpInsertPoolTracker / ExpRemovePoolTracker */
    uint64_t mm_vars[SIM_MM_VARS];           /* nt's memory manager variables, as sim_mm_vars */
    uint64_t pool_start, pool_end, special_start, special_end;
    uint64_t arena_next, arena_end;  /* bump allocator for machine-built kernel structures */

    sim_cpu_t cpus[SIM_MAX_CPUS];
    int ncpus;

    sim_work_t work[SIM_MAX_WORK];
    int nwork;

    uint64_t rng;
    uint64_t boot;
    uint64_t now_ns;
    uint64_t insns;       /* instructions executed in the current uc_emu_start */
    uint64_t insn_limit;  /* the block hook stops the emulator once this many have run */

    /* truth.c: the block that started last and has not been accounted yet (its instructions
     * are counted, and its closing call or ret applied, when the next block starts or the
     * emulator stops) */
    sim_block_t pending;
    int have_pending;
    int stepping;            /* one instruction under Unicorn's own count: the hook stands aside */
    uint64_t decode_misses;  /* blocks the length decoder could not walk (counts then approximate) */
    uint64_t stat_insns, stat_starts;  /* totals since boot: instructions, uc_emu_start calls */
    sim_block_t blocks[SIM_BLOCK_CACHE];

    /* the work item in flight (it may be stopped) */
    int active, active_cpu;
    sim_thread_t *active_thread;
    sim_seed_regs_t seeds;
    int running_cpu;   /* whose registers Unicorn holds during uc_emu_start */
    int watch_idle;    /* stop when the running CPU is back in nt!KiIdleLoop */

    /* interrupt seen by the hook during the last uc_emu_start */
    int intr;
    uint64_t intr_pc;

    sim_stop_t queue[SIM_MAX_QUEUE];
    int qhead, qlen;

    FILE *truth;
    uint64_t truth_seq;

    /* hostile.c */
    unsigned hostile_flags;
    uint64_t garbage_va;
    uint8_t garbage_saved[8];
    int garbage_len;
};

/* memory.c */
int sim_mem_map(sim_machine_t *m, uint64_t va, size_t size, kdh_err_t *err);
uint8_t *sim_mem_host(sim_machine_t *m, uint64_t va, size_t len);
void sim_mem_unmap_all(sim_machine_t *m);
uint64_t sim_mem_canon(const sim_machine_t *m, uint64_t va);
int sim_mem_get_ptr(sim_machine_t *m, uint64_t va, uint64_t *out);
int sim_mem_put_ptr(sim_machine_t *m, uint64_t va, uint64_t v);
int sim_mem_put_u32(sim_machine_t *m, uint64_t va, uint32_t v);
int sim_mem_put_u16(sim_machine_t *m, uint64_t va, uint16_t v);
uint64_t sim_arena_alloc(sim_machine_t *m, size_t size, size_t align);
uint64_t sim_report_addr(const sim_machine_t *m, uint64_t va);

/* loader.c */
int sim_load_images(sim_machine_t *m, kdh_err_t *err);
void sim_free_images(sim_machine_t *m);
const sim_image_t *sim_image_by_name(const sim_machine_t *m, const char *name);
const sim_image_t *sim_image_by_addr(const sim_machine_t *m, uint64_t va);
int sim_image_export(const sim_machine_t *m, const char *module, const char *name, uint64_t *va);

/* kstructs.c */
int sim_build_kernel_structures(sim_machine_t *m, kdh_err_t *err);
void sim_set_current_thread(sim_machine_t *m, int cpu, uint64_t kthread);

/* context.c */
void sim_regs_load(sim_machine_t *m, const sim_regs_t *r);
void sim_regs_save(sim_machine_t *m, sim_regs_t *r);

/* workload.c */
int sim_workload_setup(sim_machine_t *m, kdh_err_t *err);
int sim_workload_next(sim_machine_t *m, uint64_t deadline);
int sim_workload_start(sim_machine_t *m, int w, kdh_err_t *err);
uint64_t sim_rand(sim_machine_t *m);

/* hostile.c */
int sim_hostile_parse(const char *list, unsigned *flags, kdh_err_t *err);
void sim_hostile_boot(sim_machine_t *m);
void sim_hostile_stop(sim_machine_t *m, int cpu);
void sim_hostile_resume(sim_machine_t *m);

/* decode.c: length of the instruction at p (0 when unknown or past avail) and its kind */
uint32_t sim_insn_decode(const uint8_t *p, uint32_t avail, int x64, sim_insn_kind_t *kind);
int sim_insn_falls_through(const uint8_t *p, uint32_t avail, int x64);

/* kstructs.c: nt's memory manager variables that KDDEBUGGER_DATA64 points at (their addresses:
 * nt!KdSimBootBlock fields SIM_MM_BOOT_INDEX.., in this order) */
typedef struct sim_mm_var {
    const char *name;       /* nt's variable and the truth file's key */
    uint32_t kdbg_offset;   /* KDDEBUGGER_DATA64 field holding its address */
    int counter;            /* 1: a pool counter the truth records; 0: an address (pool range) */
} sim_mm_var_t;
extern const sim_mm_var_t sim_mm_vars[SIM_MM_VARS];

/* truth.c */
void sim_block_hook(uc_engine *uc, uint64_t address, uint32_t size, void *user);
void sim_block_flush(sim_machine_t *m, uint64_t next_pc);
void sim_block_cache_clear(sim_machine_t *m);
void sim_step_account(sim_machine_t *m, uint64_t pc, uint64_t next_pc);
void sim_shadow_push(sim_machine_t *m, int cpu, uint64_t ret);
int sim_in_idle_loop(const sim_machine_t *m, uint64_t pc);
int sim_truth_write(sim_machine_t *m, const sim_stop_t *stop, kdh_err_t *err);
/* At the entry of the pool tracker routines (cfg.truth_ops_tag): one pool_alloc / pool_free line. */
void sim_truth_pool_op(sim_machine_t *m, uint64_t pc);

#endif
