/* fuzz_unwind.c: libFuzzer harness for the unwinder: the x64 UNWIND_INFO decoder on raw
 * bytes, and whole walks (x64 and x86, fully cached or filled through the not-cached
 * protocol, x86 also with FRAMEDATA programs) over a fuzz-provided module image and stack.
 * Input: a 12-byte header, then the image bytes, then the stack bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/unwind.h"

#define IMG_BASE64 0xFFFFF80000000000ull
#define IMG_BASE32 0xFFFFFFFF80000000ull
#define STK_BASE64 0xFFFFD00000000000ull
#define STK_BASE32 0xFFFFFFFF90000000ull

typedef struct fz {
    uint64_t img_va, stk_va;
    const uint8_t *img, *stk;
    uint32_t img_len, stk_len;
    uint8_t *img_cached, *stk_cached; /* NULL: all cached */
    kdh_unwind_module_t mod;
} fz_t;

static int region_read(uint64_t base, const uint8_t *data, const uint8_t *cached, uint32_t len,
                       uint64_t va, void *buf, uint32_t n, int *rc)
{
    if (va < base || va - base > len || n > len - (va - base))
        return 0;
    uint64_t off = va - base;
    if (cached)
        for (uint32_t i = 0; i < n; i++)
            if (!cached[off + i]) {
                *rc = KDH_ENOTCACHED;
                return 1;
            }
    memcpy(buf, data + off, n);
    *rc = KDH_OK;
    return 1;
}

static int fz_read(void *ctx, uint64_t va, void *buf, uint32_t n)
{
    fz_t *f = ctx;
    int rc;
    if (region_read(f->img_va, f->img, f->img_cached, f->img_len, va, buf, n, &rc) ||
        region_read(f->stk_va, f->stk, f->stk_cached, f->stk_len, va, buf, n, &rc))
        return rc;
    return KDH_ENOTFOUND;
}

static int fz_find(void *ctx, uint64_t pc, kdh_unwind_module_t *m)
{
    fz_t *f = ctx;
    if (pc < f->mod.base || pc - f->mod.base >= f->mod.size)
        return KDH_ENOTFOUND;
    *m = f->mod;
    return KDH_OK;
}

/* x86 frame data from the input: sizes from the header, the program from the stack bytes. */
static char PROGRAM[256];
static uint8_t FPO_SIZES[3];

static int fz_fpo(void *ctx, const kdh_unwind_module_t *m, uint32_t rva, kdh_unwind_fpo_t *out)
{
    (void)ctx;
    (void)m;
    kdh_unwind_fpo_t f = {.rva_start = rva & ~0xFu, .block_size = 16, .locals = FPO_SIZES[0],
                          .params = FPO_SIZES[1], .saved_regs = FPO_SIZES[2], .program = PROGRAM};
    *out = f;
    return KDH_OK;
}

static void fill(uint64_t base, uint8_t *cached, uint32_t len, uint64_t va, uint32_t n)
{
    for (uint64_t a = va; a < va + n; a++)
        if (a >= base && a - base < len)
            cached[a - base] = 1;
}

static kdh_unwind_t U;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kdh_unwind_x64_info_t info;
    uint32_t need;
    kdh_unwind_x64_decode(data, (uint32_t)(size > 600 ? 600 : size), &info, &need, NULL);
    if (size < 12)
        return 0;
    uint8_t mode = data[0];
    int x86 = mode & 1, lazy = (mode >> 1) & 1;
    fz_t f = {0};
    uint32_t img_len = kdh_get_u16(data + 1);
    const uint8_t *rest = data + 12;
    size_t rest_len = size - 12;
    if (img_len > rest_len)
        img_len = (uint32_t)rest_len;
    f.img = rest;
    f.img_len = img_len;
    f.stk = rest + img_len;
    f.stk_len = (uint32_t)(rest_len - img_len);
    f.img_va = x86 ? IMG_BASE32 : IMG_BASE64;
    f.stk_va = x86 ? STK_BASE32 : STK_BASE64;
    f.mod.base = f.img_va;
    f.mod.size = img_len ? img_len : 1;
    f.mod.pdata_rva = kdh_get_u16(data + 3);
    f.mod.pdata_size = kdh_get_u16(data + 5);
    f.mod.id = 1;

    kdh_unwind_regs_t r;
    memset(&r, 0, sizeof r);
    r.pc = f.img_va + kdh_get_u16(data + 7);
    r.sp = f.stk_va + (data[9] | ((uint32_t)data[10] << 8));
    for (int i = 0; i < 16; i++)
        r.gpr[i] = f.stk_va + (uint64_t)data[11] * 8 + (uint64_t)i * 16;
    r.gpr_known = 0xFFFF;
    kdh_unwind_config_t cfg;
    kdh_unwind_config_default(&cfg, x86 ? KDH_UNWIND_X86 : KDH_UNWIND_X64);
    cfg.max_frames = 16;
    if (mode & 4) {
        cfg.stack_lo = f.stk_va;
        cfg.stack_hi = f.stk_va + f.stk_len;
    }
    if (kdh_unwind_init(&U, &cfg, &r, NULL) != KDH_OK)
        return 0;
    kdh_unwind_env_t env = {.ctx = &f, .read = fz_read, .find_module = fz_find};
    if (mode & 8) {
        /* Programs: a fixed well-formed one, or the stack's first bytes as text. */
        uint32_t n = f.stk_len < sizeof PROGRAM - 1 ? f.stk_len : (uint32_t)sizeof PROGRAM - 1;
        if (mode & 16) {
            memcpy(PROGRAM, f.stk, n);
            PROGRAM[n] = 0;
        } else {
            strcpy(PROGRAM, "$T0 .raSearch = $eip $T0 ^ = $esp $T0 4 + = $ebx $T0 4 - ^ =");
        }
        FPO_SIZES[0] = data[3];
        FPO_SIZES[1] = data[4];
        FPO_SIZES[2] = data[5];
        env.find_fpo = fz_fpo;
    }
    if (lazy) {
        f.img_cached = calloc(1, f.img_len + 1);
        f.stk_cached = calloc(1, f.stk_len + 1);
    }
    int rounds = 0;
    while (kdh_unwind_run(&U, &env, NULL) == KDH_ENOTCACHED) {
        /* Every need must be non-empty and small, and the walk must progress. */
        if (U.need_len == 0 || U.need_len > 65536 || !lazy || ++rounds > 4096)
            abort();
        fill(f.img_va, f.img_cached, f.img_len, U.need_va, U.need_len);
        fill(f.stk_va, f.stk_cached, f.stk_len, U.need_va, U.need_len);
    }
    if (U.n_frames > cfg.max_frames)
        abort();
    (void)kdh_unwind_stack_end(&U);
    free(f.img_cached);
    free(f.stk_cached);
    return 0;
}
