/* internal.h: what the unwinder's files share: one frame's read context (which remembers the
 * stack bytes it still needs and how high it read) and the per-architecture step functions. */
#ifndef KDH_UNWIND_INTERNAL_H
#define KDH_UNWIND_INTERNAL_H

#include "kdh/unwind.h"

typedef struct uw_ctx {
    const kdh_unwind_env_t *env;
    const kdh_unwind_config_t *cfg;
    kdh_unwind_t *u;
    kdh_err_t *err;
    /* Stack reads in one x64 frame do not depend on each other's values, so a miss is only
     * recorded (and zeros returned) and the frame goes on: the need is then the whole span. */
    int stack_miss;
    uint64_t miss_lo, miss_hi;
    uint64_t stack_hi;         /* one past the highest stack byte read in this frame */
    int stop;                  /* kdh_unwind_stop_t to end the walk with after this step */
    uint32_t callee_params;    /* x86 out: argument bytes of this frame (FRAMEDATA), else 0 */
} uw_ctx_t;

/* Stack read that defers misses (see above). Returns KDH_OK (possibly zero-filled on a
 * miss) or an "unreadable" code after setting c->stop. */
int uw_read_stack_deferred(uw_ctx_t *c, uint64_t va, void *buf, uint32_t len);

/* Read that stops at once on a miss: KDH_ENOTCACHED with the need set to [va, va+want)
 * (want >= len, for asking a little ahead). Unreadable memory sets c->stop. */
int uw_read_now(uw_ctx_t *c, uint64_t va, void *buf, uint32_t len, uint32_t want);

/* Return code of a step that must end the walk without an error (c->stop set). */
#define UW_STOPPED 1

/* One frame. In: regs of the frame, its module, frame flags. Out: regs of the caller and
 * *caller_flags (F_MACHFRAME / F_SCAN for the next frame), *how (F_LEAF / F_EPILOG). */
int uw_x64_step(uw_ctx_t *c, const kdh_unwind_module_t *m, kdh_unwind_regs_t *r,
                uint32_t flags, uint32_t *caller_flags, uint32_t *how);
int uw_x86_step(uw_ctx_t *c, const kdh_unwind_module_t *m, kdh_unwind_regs_t *r,
                uint32_t flags, uint32_t *caller_flags, uint32_t *how);

/* x86: 1 when the bytes before ra decode as a CALL returning to ra; *rcp gets
 * KDH_ENOTCACHED when the bytes must be fetched first. */
int uw_x86_call_before(uw_ctx_t *c, const kdh_unwind_module_t *m, uint64_t ra, int *rcp);

/* x86: runs a FRAMEDATA program on r. KDH_OK with *ok = 1 when it gave the caller's EIP and
 * ESP (r updated), *ok = 0 when the program cannot be used (the caller falls back to the
 * EBP chain); KDH_ENOTCACHED when bytes are missing. */
int uw_x86_fpo(uw_ctx_t *c, const kdh_unwind_fpo_t *f, kdh_unwind_regs_t *r, int *ok);

/* 1 when pc may be code: not below 4096, not user space, inside a module (m filled). */
int uw_pc_in_module(uw_ctx_t *c, uint64_t pc, kdh_unwind_module_t *m);

#endif
