/* fake_machine.h: layout of the fake machine used to test kdsim's KD target side without the
 * emulator. Offsets are from the kernel base (fake_base), which moves by 1 MiB per boot. */
#ifndef KDSIM_FAKE_MACHINE_H
#define KDSIM_FAKE_MACHINE_H

#include <stdio.h>

#include "machine.h"

#define FAKE_SIZE 0x10000u       /* mapped bytes; everything above is unmapped */
#define FAKE_CODE 0x1000u        /* the workload loop */
#define FAKE_LOOP_LEN 0x100u     /* nops (and one print) before F4 jumps back */
#define FAKE_PRINT_AT 0x80u      /* offset of the DbgPrint pseudo-op inside the loop */
#define FAKE_BWS 0x2000u         /* BreakpointWithStatus: CC C3 (x64) / CC C2 04 00 (x86) */
#define FAKE_DDLIST 0x3000u      /* DebuggerDataList head */
#define FAKE_KDBG 0x3100u        /* KDDEBUGGER_DATA64 */
#define FAKE_PSLML 0x4000u       /* PsLoadedModuleList */
#define FAKE_KTHREAD 0x5000u
#define FAKE_STACK_TOP 0xF000u

uint64_t fake_base(const sim_machine_t *m);
uint64_t fake_pc(const sim_machine_t *m, int cpu);
uint64_t fake_sp(const sim_machine_t *m, int cpu);

#endif
