/* synth.h: a hand-built x64 "kernel module" for the unwinder tests: code filled with int3,
 * a sorted .pdata, hand-encoded UNWIND_INFO, and a stack region, all in a test memory view. */
#ifndef KDH_TEST_SYNTH_H
#define KDH_TEST_SYNTH_H

#include "memview.h"

#define SB 0xFFFFF80000400000ull   /* module base */
#define SSIZE 0x8000u
#define PDATA_RVA 0x4000u
#define STK 0xFFFFD00000010000ull  /* stack region base */
#define STKLEN 0x4000u

/* UNWIND_CODE slot: CodeOffset, op, info. */
#define UC(off, op, info) ((uint16_t)((off) | (((op) | ((info) << 4)) << 8)))

typedef struct synth {
    mv_t v;
    uint32_t npdata;
} synth_t;

static inline void synth_init(synth_t *s)
{
    memset(s, 0, sizeof *s);
    mv_region_t *img = mv_add(&s->v, SB, SSIZE);
    memset(img->data + 0x1000, 0xCC, 0x2000);
    mv_add(&s->v, STK, STKLEN);
    kdh_unwind_module_t m = {.base = SB, .size = SSIZE, .pdata_rva = PDATA_RVA, .pdata_size = 0,
                             .id = 7};
    s->v.mods[s->v.nmods++] = m;
}

/* Appends a RUNTIME_FUNCTION (callers add them in ascending order). */
static inline void synth_rf(synth_t *s, uint32_t begin, uint32_t end, uint32_t info)
{
    uint8_t *p = mv_ptr(&s->v, SB + PDATA_RVA + 12 * s->npdata++, 12);
    kdh_put_u32(p, begin);
    kdh_put_u32(p + 4, end);
    kdh_put_u32(p + 8, info);
    s->v.mods[0].pdata_size = 12 * s->npdata;
}

/* Writes an UNWIND_INFO: header, the slots as given, even padding, optional parent entry. */
static inline void synth_info(synth_t *s, uint32_t rva, uint8_t ver, uint8_t flags,
                              uint8_t prolog, uint8_t frame, const uint16_t *slots, int n,
                              uint32_t cb, uint32_t ce, uint32_t ci)
{
    uint8_t *p = mv_ptr(&s->v, SB + rva, 4);
    p[0] = (uint8_t)(ver | (flags << 3));
    p[1] = prolog;
    p[2] = (uint8_t)n;
    p[3] = frame;
    for (int i = 0; i < n; i++)
        kdh_put_u16(p + 4 + 2 * i, slots[i]);
    if (flags & 4) {
        uint8_t *c = p + 4 + 2 * ((n + 1) & ~1);
        kdh_put_u32(c, cb);
        kdh_put_u32(c + 4, ce);
        kdh_put_u32(c + 8, ci);
    }
}

#endif
