/* machine.h: the simulated Windows machine behind kdsim. It loads the fixture kernel, HAL and
 * drivers (real clang/lld x64 or x86 code) into Unicorn at kernel-style addresses, keeps the
 * kernel structures a debugger reads (PsLoadedModuleList, KDDEBUGGER_DATA64, pool tracking),
 * runs a deterministic workload in simulated time, and stops on int3 / single step / DbgPrint /
 * load-symbols. It knows nothing of the KD protocol: target.c speaks KD in front of it.
 *
 * Contract: while a stop is pending every simulated CPU is frozen; sim_machine_run() resumes
 * from the current registers (an int3 that was not skipped by moving PC executes again, as on a
 * real target). All addresses are 64-bit; on x86 they are sign-extended like KD reports them. */
#ifndef KDSIM_MACHINE_H
#define KDSIM_MACHINE_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

typedef enum { SIM_ARCH_X64 = 0, SIM_ARCH_X86 = 1 } sim_arch_t;

typedef struct sim_config {
    sim_arch_t arch;
    uint64_t seed;            /* load addresses, workload choices, timing: all derived from it */
    int cpus;                 /* 1..8 simulated processors */
    const char *fixture_dir;  /* folder holding ntoskrnl.exe, hal.dll, *.sys (+ .pdb) of arch */
    const char *workload;     /* preset name ("leak", "busy", "idle") or a workload file */
    const char *truth_path;   /* JSON Lines ground truth of every break; NULL for none */
    const char *hostile;      /* NULL, or a comma list of corruptions to serve (reliability tests) */
    uint32_t special_pool_tag; /* nt!MmSpecialPoolTag at every boot (the registry's PoolTag); 0 none */
    uint32_t truth_ops_tag;   /* non-zero: the truth also records every allocation and free of this
                                 tag as it happens, stopped or not ("pool_alloc" / "pool_free") */
} sim_config_t;

typedef enum {
    SIM_STOP_NONE = 0,        /* the time budget ran out; nothing to report */
    SIM_STOP_BREAKPOINT,      /* an int3 executed (hard-coded, PoolHitTag, or a patched 0xCC) */
    SIM_STOP_SINGLE_STEP,     /* one instruction done with the trace flag set */
    SIM_STOP_PRINT,           /* DbgPrint: text/text_len; the target continues after reporting */
    SIM_STOP_LOAD_SYMBOLS,    /* module load (boot) or unload; the target continues after it */
} sim_stop_kind_t;

typedef struct sim_stop {
    sim_stop_kind_t kind;
    int cpu;
    uint64_t pc;              /* breakpoint: address of the int3 itself */
    uint64_t thread;          /* the simulated KTHREAD address of the running thread */
    uint32_t exception_code;  /* 0x80000003 breakpoint, 0x80000004 single step */
    /* SIM_STOP_PRINT */
    char text[512];
    size_t text_len;
    /* SIM_STOP_LOAD_SYMBOLS */
    uint64_t base;            /* (uint64_t)-1 with unload=1: "system going away" (reboot) */
    uint32_t size, checksum;
    int unload;
    char path[260];
} sim_stop_t;

typedef struct sim_info {
    sim_arch_t arch;
    uint16_t machine_type;    /* 0x8664 or 0x014C */
    uint16_t build;           /* MinorVersion reported by GetVersion */
    int cpus;
    int pointer_size;         /* 8 or 4 */
    uint64_t kern_base;
    uint64_t ps_loaded_module_list;  /* address of the list head (nt!PsLoadedModuleList) */
    uint64_t debugger_data_list;     /* address of the list whose Flink is KDDEBUGGER_DATA64 */
    uint64_t boot;                   /* 1 for the first boot, +1 per reboot */
    uint64_t pool_hit_tag;           /* address of nt!PoolHitTag */
} sim_info_t;

typedef struct sim_machine sim_machine_t;

sim_machine_t *sim_machine_create(const sim_config_t *cfg, kdh_err_t *err);
void sim_machine_destroy(sim_machine_t *m);

/* (Re)boots: new seed-derived load addresses, fresh pool, workload restarted, boot counter +1.
 * Queues LOAD_SYMBOLS stops for the kernel and the HAL, which run() reports first. */
int sim_machine_reboot(sim_machine_t *m, kdh_err_t *err);

/* Runs the workload for at most budget_ns of simulated time. Returns KDH_OK with
 * stop->kind == SIM_STOP_NONE when the budget ran out, or with the stop that happened. */
int sim_machine_run(sim_machine_t *m, uint64_t budget_ns, sim_stop_t *stop, kdh_err_t *err);

/* Simulated nanoseconds since this boot. */
uint64_t sim_machine_now_ns(const sim_machine_t *m);

void sim_machine_info(const sim_machine_t *m, sim_info_t *info);

/* Virtual memory access. Partial at the first unmapped page: *done tells how many bytes. */
int sim_machine_read(sim_machine_t *m, uint64_t va, void *buf, uint32_t len, uint32_t *done);
int sim_machine_write(sim_machine_t *m, uint64_t va, const void *buf, uint32_t len, uint32_t *done);

/* Registers as a Windows CONTEXT (AMD64 0x4D0 bytes or i386 0x2CC bytes, layout as in
 * kd-protocol.md section 4). set_context takes the same layout and applies the registers. */
size_t sim_machine_context_size(const sim_machine_t *m);
int sim_machine_get_context(sim_machine_t *m, int cpu, uint8_t *ctx, size_t len);
int sim_machine_set_context(sim_machine_t *m, int cpu, const uint8_t *ctx, size_t len);

/* Arms single-stepping of one instruction on cpu for the next run(). */
int sim_machine_set_trace(sim_machine_t *m, int cpu, int on);

/* ReadControlSpace. x64 selectors: 0 KPCR address, 1 KPRCB address, 2 KSPECIAL_REGISTERS,
 * 3 current KTHREAD address. x86: offset into KPROCESSOR_STATE. */
int sim_machine_read_control(sim_machine_t *m, int cpu, uint64_t selector, void *buf, uint32_t len,
                             uint32_t *done);

#endif
