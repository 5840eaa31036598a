/* memview.h: test memory views for the unwinder: byte regions with an optional "cached" map,
 * so a test can start empty and fill exactly what the unwinder asks for, plus a module list. */
#ifndef KDH_TEST_MEMVIEW_H
#define KDH_TEST_MEMVIEW_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/unwind.h"

typedef struct mv_region {
    uint64_t va;
    uint32_t len;
    uint8_t *data;
    uint8_t *cached; /* NULL: everything cached */
} mv_region_t;

typedef struct mv {
    mv_region_t r[8];
    int n;
    kdh_unwind_module_t mods[8];
    int nmods;
    unsigned calls;
} mv_t;

static inline mv_region_t *mv_add(mv_t *v, uint64_t va, uint32_t len)
{
    mv_region_t *r = &v->r[v->n++];
    r->va = va;
    r->len = len;
    r->data = calloc(1, len);
    r->cached = NULL;
    return r;
}

static inline void mv_free(mv_t *v)
{
    for (int i = 0; i < v->n; i++) {
        free(v->r[i].data);
        free(v->r[i].cached);
    }
    v->n = 0;
}

/* Makes every region start uncached. */
static inline void mv_make_lazy(mv_t *v)
{
    for (int i = 0; i < v->n; i++)
        v->r[i].cached = calloc(1, v->r[i].len);
}

static inline uint8_t *mv_ptr(mv_t *v, uint64_t va, uint32_t len)
{
    for (int i = 0; i < v->n; i++)
        if (va >= v->r[i].va && va - v->r[i].va <= v->r[i].len && len <= v->r[i].len - (va - v->r[i].va))
            return v->r[i].data + (va - v->r[i].va);
    return NULL;
}

static inline void mv_put64(mv_t *v, uint64_t va, uint64_t x)
{
    kdh_put_u64(mv_ptr(v, va, 8), x);
}

static inline void mv_put_bytes(mv_t *v, uint64_t va, const void *b, uint32_t len)
{
    memcpy(mv_ptr(v, va, len), b, len);
}

/* Marks [va, va+len) cached, clipped to the regions (like a KD read that returns what exists). */
static inline void mv_fill(mv_t *v, uint64_t va, uint32_t len)
{
    for (int i = 0; i < v->n; i++) {
        mv_region_t *r = &v->r[i];
        if (!r->cached)
            continue;
        uint64_t lo = va > r->va ? va : r->va, hi = va + len < r->va + r->len ? va + len : r->va + r->len;
        for (uint64_t a = lo; a < hi; a++)
            r->cached[a - r->va] = 1;
    }
}

static inline int mv_read(void *ctx, uint64_t va, void *buf, uint32_t len)
{
    mv_t *v = ctx;
    v->calls++;
    for (int i = 0; i < v->n; i++) {
        mv_region_t *r = &v->r[i];
        if (va >= r->va && va - r->va <= r->len && len <= r->len - (va - r->va)) {
            if (r->cached)
                for (uint32_t k = 0; k < len; k++)
                    if (!r->cached[va - r->va + k])
                        return KDH_ENOTCACHED;
            memcpy(buf, r->data + (va - r->va), len);
            return KDH_OK;
        }
    }
    return KDH_ENOTFOUND;
}

static inline int mv_find_module(void *ctx, uint64_t pc, kdh_unwind_module_t *out)
{
    mv_t *v = ctx;
    for (int i = 0; i < v->nmods; i++)
        if (pc >= v->mods[i].base && pc - v->mods[i].base < v->mods[i].size) {
            *out = v->mods[i];
            return KDH_OK;
        }
    return KDH_ENOTFOUND;
}

static inline kdh_unwind_env_t mv_env(mv_t *v)
{
    kdh_unwind_env_t e = {.ctx = v, .read = mv_read, .find_module = mv_find_module};
    return e;
}

#endif
