/* kdh/unwind.h: x64 (.pdata/.xdata) and x86 (FRAMEDATA programs, EBP chain, bounded scan)
 * stack unwinders.
 * Pure and restartable: memory comes from a caller-supplied view that may answer "not cached";
 * the walk then stops, says exactly which bytes it needs, and resumes from the last completed
 * frame when called again after the caller has fetched them. No I/O, no globals, no allocation. */
#ifndef KDH_UNWIND_H
#define KDH_UNWIND_H

#include <stdint.h>

#include "kdh/common.h"

/* Hard capacity of one walk; kdh_unwind_config_t.max_frames is clamped to it. */
#define KDH_UNWIND_FRAMES_MAX 256
/* Windows' UNWIND_CHAIN_LIMIT: more chained UNWIND_INFO links than this is corrupt data. */
#define KDH_UNWIND_CHAIN_LIMIT 32

typedef enum { KDH_UNWIND_X64 = 0, KDH_UNWIND_X86 = 1 } kdh_unwind_arch_t;

/* General-purpose register numbers, in the x86/x64 encoding order (also UNWIND_CODE order).
 * On x86 only 0..7 are used (EAX..EDI). */
enum {
    KDH_REG_RAX = 0, KDH_REG_RCX, KDH_REG_RDX, KDH_REG_RBX, KDH_REG_RSP, KDH_REG_RBP,
    KDH_REG_RSI, KDH_REG_RDI, KDH_REG_R8, KDH_REG_R9, KDH_REG_R10, KDH_REG_R11,
    KDH_REG_R12, KDH_REG_R13, KDH_REG_R14, KDH_REG_R15
};

/* Register state of one frame. Addresses are 64-bit; x86 values are sign-extended the way
 * KD reports them (0x8xxxxxxx -> 0xFFFFFFFF8xxxxxxx). gpr[KDH_REG_RSP] is ignored: sp rules. */
typedef struct kdh_unwind_regs {
    uint64_t pc;
    uint64_t sp;
    uint64_t gpr[16];
    uint32_t gpr_known;        /* bit i: gpr[i] holds a real value */
    uint8_t xmm[16][16];       /* x64 XMM0..15, low byte first (only XMM6..15 are restored) */
    uint32_t xmm_known;        /* bit i: xmm[i] holds a real value */
} kdh_unwind_regs_t;

/* Memory view. Returns KDH_OK with len bytes in buf, KDH_ENOTCACHED when any of the bytes
 * is not cached (the unwinder then asks for them), or any other KDH_E* code when the memory
 * is known to be unreadable (the walk stops there). */
typedef int (*kdh_unwind_read_fn)(void *ctx, uint64_t va, void *buf, uint32_t len);

/* A loaded module as the unwinder needs it. pdata_* describe the x64 exception directory
 * (data directory 3) as RVA and byte size; 0/0 means "no .pdata" (every function is a leaf). */
typedef struct kdh_unwind_module {
    uint64_t base;
    uint32_t size;
    uint32_t pdata_rva;
    uint32_t pdata_size;
    uint64_t id;               /* opaque module identity chosen by the caller */
} kdh_unwind_module_t;

/* Finds the module containing pc: KDH_OK and *out filled, or KDH_ENOTFOUND (the walk stops). */
typedef int (*kdh_unwind_find_module_fn)(void *ctx, uint64_t pc, kdh_unwind_module_t *out);

/* x86 frame data (PDB New FPO, FRAMEDATA) of the record covering an RVA: the one with the
 * greatest rva_start <= rva inside its block. program is the record's RPN program string,
 * e.g. "$T0 .raSearch = $eip $T0 ^ = $esp $T0 4 + =", valid until run() returns. */
typedef struct kdh_unwind_fpo {
    uint32_t rva_start, block_size;
    uint32_t locals, params, max_stack;  /* bytes */
    uint16_t prolog_size, saved_regs;    /* saved_regs in bytes */
    const char *program;                 /* NULL: none (the walk falls back to the EBP chain) */
} kdh_unwind_fpo_t;

/* Optional (x86): KDH_OK and *out filled, or KDH_ENOTFOUND. */
typedef int (*kdh_unwind_find_fpo_fn)(void *ctx, const kdh_unwind_module_t *m, uint32_t rva,
                                      kdh_unwind_fpo_t *out);

typedef struct kdh_unwind_env {
    void *ctx;
    kdh_unwind_read_fn read;
    kdh_unwind_find_module_fn find_module;
    kdh_unwind_find_fpo_fn find_fpo;     /* optional; x86 only */
} kdh_unwind_env_t;

typedef struct kdh_unwind_config {
    kdh_unwind_arch_t arch;
    uint64_t user_limit;       /* pc below this is user space and ends the walk; 0 = no limit.
                                  kdh_unwind_config_default(): 0x8000000000000000 on x64,
                                  0xFFFFFFFF80000000 on x86 */
    uint32_t max_frames;       /* default 64, at most KDH_UNWIND_FRAMES_MAX */
    uint64_t stack_lo;         /* stack bounds [lo, hi) when known (e.g. KTHREAD StackLimit /
                                  InitialStack); 0/0 = unknown. x86 chain checks and the scan */
    uint64_t stack_hi;         /* use them; x64 only clamps the prefetch hint. */
    uint32_t prefetch_bytes;   /* kdh_unwind_prefetch() guess; default 0x600 */
    uint32_t scan_words;       /* x86 scan window in words; default 40 (frame 0: 4x) */
} kdh_unwind_config_t;

enum {
    KDH_UNWIND_F_FRAME0 = 1u << 0,    /* the stop context itself */
    KDH_UNWIND_F_MACHFRAME = 1u << 1, /* pc came from a PUSH_MACHFRAME (interrupted context) */
    KDH_UNWIND_F_SCAN = 1u << 2,      /* pc came from a stack scan: a guess */
    KDH_UNWIND_F_LEAF = 1u << 3,      /* x64: no RUNTIME_FUNCTION, unwound as a leaf */
    KDH_UNWIND_F_EPILOG = 1u << 4,    /* x64: pc was inside an epilog (emulated forward) */
    KDH_UNWIND_F_FPO = 1u << 5        /* x86: unwound by its FRAMEDATA program */
};

typedef struct kdh_unwind_frame {
    uint64_t pc;               /* absolute */
    uint64_t sp;               /* SP while in this frame (WinDbg's Child-SP) */
    uint64_t module_id;
    uint32_t rva;              /* pc - module base */
    uint32_t flags;            /* KDH_UNWIND_F_*; F_LEAF/F_EPILOG describe how it was unwound */
    uint64_t stack_hi;         /* one past the highest stack byte read to unwind this frame
                                  (0 when the frame could not be unwound) */
} kdh_unwind_frame_t;

typedef enum {
    KDH_UNWIND_RUNNING = 0,
    KDH_UNWIND_STOP_NO_MODULE,     /* pc not in a known module */
    KDH_UNWIND_STOP_BAD_PC,        /* pc < 4096 */
    KDH_UNWIND_STOP_USER,          /* pc below user_limit */
    KDH_UNWIND_STOP_SP,            /* sp did not increase */
    KDH_UNWIND_STOP_LIMIT,         /* max_frames reached */
    KDH_UNWIND_STOP_UNREADABLE,    /* the memory view reported bytes as unreadable */
    KDH_UNWIND_STOP_REG_UNKNOWN,   /* a register the unwind data needs is not known */
    KDH_UNWIND_STOP_NO_CALLER,     /* x86: chain broken and the scan found nothing */
    KDH_UNWIND_STOP_ERROR          /* corrupt unwind data: run() returned the code */
} kdh_unwind_stop_t;

/* Walk state, owned by the caller. Treat as read-only between calls except through the API. */
typedef struct kdh_unwind {
    kdh_unwind_config_t cfg;
    kdh_unwind_regs_t regs;    /* state of frame n_frames (the next frame to unwind) */
    uint32_t next_flags;       /* F_FRAME0 / F_MACHFRAME / F_SCAN for that frame */
    uint32_t n_frames;
    kdh_unwind_stop_t stop;
    int stop_code;             /* KDH_E* run() returned for STOP_ERROR, else KDH_OK */
    uint64_t need_va;          /* valid after run() returned KDH_ENOTCACHED */
    uint32_t need_len;
    uint32_t reads;            /* read callbacks made so far (statistics) */
    uint32_t callee_params;    /* x86: argument bytes of the frame just unwound (FRAMEDATA) */
    kdh_unwind_frame_t frames[KDH_UNWIND_FRAMES_MAX];
} kdh_unwind_t;

/* Defaults for arch: user_limit, max_frames 64, prefetch 0x600, scan 40 words, no bounds. */
void kdh_unwind_config_default(kdh_unwind_config_t *cfg, kdh_unwind_arch_t arch);

/* Starts a walk from the stop context (pc, sp and whatever registers are known). */
int kdh_unwind_init(kdh_unwind_t *u, const kdh_unwind_config_t *cfg,
                    const kdh_unwind_regs_t *regs, kdh_err_t *err);

/* Stack range worth fetching before the first run(): from SP up prefetch_bytes (clamped to
 * stack_hi). Purely a guess: run() still says what it really needs. */
void kdh_unwind_prefetch(const kdh_unwind_t *u, uint64_t *va, uint32_t *len);

/* Continues the walk. Returns:
 *   KDH_OK          walk finished; frames[0..n_frames) and stop tell the result;
 *   KDH_ENOTCACHED  bytes [need_va, need_va+need_len) are missing: fetch them, call again;
 *   KDH_ECORRUPT... walk ended on bad unwind data; frames so far stay valid (stop = ERROR).
 * Calling again after the walk finished returns the same result without reading. */
int kdh_unwind_run(kdh_unwind_t *u, const kdh_unwind_env_t *env, kdh_err_t *err);

/* Highest stack byte (exclusive) any completed frame read: the exact upper end of the
 * "stack span from SP to the last return-address slot". 0 when no frame was unwound. */
uint64_t kdh_unwind_stack_end(const kdh_unwind_t *u);

const char *kdh_unwind_stop_name(kdh_unwind_stop_t stop);

/* ---- x64 UNWIND_INFO decoding (exposed for tests, fuzzing and tools) ---- */

enum {
    KDH_UWOP_PUSH_NONVOL = 0, KDH_UWOP_ALLOC_LARGE = 1, KDH_UWOP_ALLOC_SMALL = 2,
    KDH_UWOP_SET_FPREG = 3, KDH_UWOP_SAVE_NONVOL = 4, KDH_UWOP_SAVE_NONVOL_FAR = 5,
    KDH_UWOP_EPILOG = 6, KDH_UWOP_SPARE = 7, KDH_UWOP_SAVE_XMM128 = 8,
    KDH_UWOP_SAVE_XMM128_FAR = 9, KDH_UWOP_PUSH_MACHFRAME = 10
};

/* One decoded unwind operation. value: allocation size in bytes (ALLOC_*), stack offset in
 * bytes from FrameBase (SAVE_*), error-code flag (PUSH_MACHFRAME), epilog offset (EPILOG). */
typedef struct kdh_unwind_op {
    uint8_t code_offset;
    uint8_t op;
    uint8_t info;
    uint32_t value;
} kdh_unwind_op_t;

typedef struct kdh_unwind_x64_info {
    uint8_t version;           /* 1 or 2 */
    uint8_t flags;             /* UNW_FLAG_*: EHANDLER 1, UHANDLER 2, CHAININFO 4 */
    uint8_t prolog_size;
    uint8_t count_of_codes;    /* UNWIND_CODE slots */
    uint8_t frame_reg;
    uint8_t frame_offset;      /* scaled by 16 when used */
    uint32_t n_ops;
    kdh_unwind_op_t ops[256];
    uint32_t size;             /* bytes of header + codes (+ chained entry) */
    uint32_t chain_begin, chain_end, chain_info;  /* parent RUNTIME_FUNCTION when CHAININFO */
} kdh_unwind_x64_info_t;

/* Decodes UNWIND_INFO from buf. KDH_ENOTCACHED with *need set (bytes needed from buf's start)
 * when len is too short; KDH_ECORRUPT on bad versions, unknown ops or truncated slots. */
int kdh_unwind_x64_decode(const uint8_t *buf, uint32_t len, kdh_unwind_x64_info_t *out,
                          uint32_t *need, kdh_err_t *err);

#endif
