/* classify.c: pure helpers of the per-hit pipeline: telling an allocation from a free by the
 * routine a frame is in, and predicting how much stack the next walk from the same place needs
 * (so the stack is read with one request of exactly that span). */
#include <string.h>
#include <strings.h>

#include "harvest_int.h"

/* Routine names of the pool paths that break on PoolHitTag: the tracker routines (Windows
 * and the fixture kernel), the heap-pool routines of recent builds, and the special pool. */
int hv_classify_name(const char *sym)
{
    const char *bang = strchr(sym, '!');
    const char *name = bang ? bang + 1 : sym;
    if (strcasestr(name, "RemovePoolTracker") || strcasestr(name, "FreeHeapPool") ||
        strcasestr(name, "FreeSpecialPool") || strcasestr(name, "FreePool"))
        return KDH_STORE_FREE;
    if (strcasestr(name, "InsertPoolTracker") || strcasestr(name, "AllocateHeapPool") ||
        strcasestr(name, "AllocateSpecialPool") || strcasestr(name, "AllocatePool"))
        return KDH_STORE_ALLOC;
    return -1;
}

static size_t slot(uint64_t pc, uint64_t sp)
{
    uint64_t h = (pc ^ (sp * 0x9E3779B97F4A7C15ull)) * 0xff51afd7ed558ccdull;
    return (size_t)(h >> 32) % HV_PRED_SLOTS;
}

#define HV_PRED_MAX_SPAN 0x10000u /* a kernel stack is at most a few pages */

uint32_t hv_pred_get(const hv_pred_t *p, uint64_t pc, uint64_t sp, uint64_t thread)
{
    size_t i = slot(pc, sp);
    if (p->pc[i] == pc && p->sp[i] == sp && p->span[i])
        return p->span[i];
    size_t j = slot(thread, 0);
    if (thread && p->thread[j] == thread && p->end[j] > sp && p->end[j] - sp <= HV_PRED_MAX_SPAN)
        return (uint32_t)(p->end[j] - sp);
    return p->last_pc == pc ? p->last_span : 0;
}

void hv_pred_put(hv_pred_t *p, uint64_t pc, uint64_t sp, uint64_t thread, uint32_t span)
{
    if (span == 0 || span > HV_PRED_MAX_SPAN)
        return;
    size_t i = slot(pc, sp);
    p->pc[i] = pc;
    p->sp[i] = sp;
    p->span[i] = span;
    if (thread) {
        size_t j = slot(thread, 0);
        p->thread[j] = thread;
        p->end[j] = sp + span;
    }
    p->last_pc = pc;
    p->last_span = span;
}
