/* live.c: the table of allocations not yet freed, which pairs a free with its allocation by address.
 * It is the only part of the report that grows with the data (4.56 million blocks in the benchmark),
 * so each block is one 16-byte slot of an open-addressing table (linear probing, backward-shift
 * deletion: no tombstones to sweep): its address, its stack, and one index standing for its tag,
 * boot and size, which repeat across blocks. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "report_int.h"

#define EMPTY UINT32_MAX

static inline size_t slot_of(uint64_t addr, uint32_t boot, size_t mask)
{
    /* Addresses are 16-byte aligned and clustered; mix every bit into the low ones. */
    return (size_t)kdh_u64map_mix(addr ^ ((uint64_t)boot * 0x9e3779b97f4a7c15ULL)) & mask;
}

static inline uint32_t class_hash(uint32_t tag, uint32_t boot, uint64_t size)
{
    return (uint32_t)kdh_u64map_mix(size ^ ((uint64_t)tag << 40) ^ ((uint64_t)boot * 0x9e3779b97f4a7c15ULL));
}

/* Invariants the analyzer cannot see: tbs holds ntbs entries (non-NULL once ntbs > 0), last_tb is
 * NONE_IDX or below ntbs, and tbhash has tbhcap slots (non-NULL once tbhcap > 0). */
uint32_t rep_live_class(kdh_report_t *r, uint32_t tag, uint32_t boot, uint64_t size)
{
    const rep_tb_t *last = r->last_tb != NONE_IDX ? &r->tbs[r->last_tb] : NULL;
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): last_tb < ntbs, so tbs is set */
    if (last && last->size == size && last->tag == tag && last->boot == boot)
        return r->last_tb;
    uint32_t h = class_hash(tag, boot, size);
    if (r->tbhcap) {
        for (uint32_t i = h & (r->tbhcap - 1);; i = (i + 1) & (r->tbhcap - 1)) {
            uint32_t k = r->tbhash[i];
            if (k == NONE_IDX)
                break;
            /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): the hash holds indexes < ntbs */
            if (r->tbs[k].size == size && r->tbs[k].tag == tag && r->tbs[k].boot == boot)
                return r->last_tb = k;
        }
    }
    if (r->ntbs >= NONE_IDX / 4)
        return NONE_IDX;
    if (r->ntbs >= r->captbs) {
        uint32_t ncap = r->captbs ? r->captbs * 2 : 64;
        rep_tb_t *n = realloc(r->tbs, ncap * sizeof *n);
        if (!n)
            return NONE_IDX;
        r->tbs = n;
        r->captbs = ncap;
    }
    if ((r->ntbs + 1) * 2 > r->tbhcap) { /* at most half full: rebuild at twice the size */
        uint32_t ncap = r->tbhcap ? r->tbhcap * 2 : 128;
        uint32_t *nh = malloc(ncap * sizeof *nh);
        if (!nh)
            return NONE_IDX;
        memset(nh, 0xff, ncap * sizeof *nh);
        for (uint32_t k = 0; k < r->ntbs; k++) {
            /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference,clang-analyzer-core.CallAndMessage): k < ntbs */
            uint32_t i = class_hash(r->tbs[k].tag, r->tbs[k].boot, r->tbs[k].size) & (ncap - 1);
            while (nh[i] != NONE_IDX)
                i = (i + 1) & (ncap - 1);
            nh[i] = k;
        }
        free(r->tbhash);
        r->tbhash = nh;
        r->tbhcap = ncap;
    }
    uint32_t i = h & (r->tbhcap - 1);
    while (r->tbhash[i] != NONE_IDX)
        i = (i + 1) & (r->tbhcap - 1);
    r->tbhash[i] = r->ntbs;
    r->tbs[r->ntbs] = (rep_tb_t){size, tag, boot}; /* NOLINT(clang-analyzer-core.NullDereference): ntbs < captbs */
    return r->last_tb = r->ntbs++;
}

/* Slots come from mmap so a large table can be backed by transparent huge pages: lookups land at
 * random over up to hundreds of MiB, and with 4 KiB pages nearly every one would also miss the TLB. */
static rlive_t *slots_alloc(size_t n)
{
    size_t bytes = n * sizeof(rlive_t);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= (4u << 20))
        (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: without it the table still works */
#endif
    return p;
}

static void slots_free(rlive_t *s, size_t n)
{
    if (s)
        munmap(s, n * sizeof *s);
}

void rep_live_prefetch(const rep_live_t *t, uint64_t addr, uint32_t boot)
{
    if (t->cap)
        __builtin_prefetch(&t->slots[slot_of(addr, boot, t->cap - 1)], 1);
}

void rep_live_clear(rep_live_t *t)
{
    slots_free(t->slots, t->cap);
    memset(t, 0, sizeof *t);
}

rlive_t *rep_live_find(const rep_live_t *t, const rep_tb_t *tbs, uint64_t addr, uint32_t boot)
{
    if (!t->cap)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = slot_of(addr, boot, mask);; i = (i + 1) & mask) {
        rlive_t *s = &t->slots[i];
        if (s->tb == EMPTY)
            return NULL;
        if (s->addr == addr && tbs[s->tb].boot == boot)
            return s;
    }
}

static int grow(rep_live_t *t, const rep_tb_t *tbs)
{
    size_t ncap = t->cap ? t->cap * 2 : 1024;
    rlive_t *ns = slots_alloc(ncap);
    if (!ns)
        return -1;
    for (size_t i = 0; i < ncap; i++)
        ns[i].tb = EMPTY;
    for (size_t j = 0; j < t->cap; j++) {
        const rlive_t *s = &t->slots[j];
        if (s->tb == EMPTY)
            continue;
        size_t i = slot_of(s->addr, tbs[s->tb].boot, ncap - 1);
        while (ns[i].tb != EMPTY)
            i = (i + 1) & (ncap - 1);
        ns[i] = *s;
    }
    slots_free(t->slots, t->cap);
    t->slots = ns;
    t->cap = ncap;
    return 0;
}

int rep_live_add(rep_live_t *t, const rep_tb_t *tbs, const rlive_t *blk)
{
    /* At most 3/4 full keeps probe runs short, also for the misses of unpaired frees. */
    if ((t->count + 1) * 4 > t->cap * 3 && grow(t, tbs) != 0)
        return -1;
    size_t mask = t->cap - 1, i = slot_of(blk->addr, tbs[blk->tb].boot, mask);
    while (t->slots[i].tb != EMPTY)
        i = (i + 1) & mask;
    t->slots[i] = *blk;
    t->count++;
    return 0;
}

void rep_live_remove(rep_live_t *t, const rep_tb_t *tbs, const rlive_t *s)
{
    size_t mask = t->cap - 1, hole = (size_t)(s - t->slots);
    /* Backward shift: move later members of the probe run into the hole when their home slot allows. */
    for (size_t j = (hole + 1) & mask;; j = (j + 1) & mask) {
        rlive_t *n = &t->slots[j];
        if (n->tb == EMPTY)
            break;
        size_t home = slot_of(n->addr, tbs[n->tb].boot, mask);
        /* n may move to hole when home is not in (hole, j] cyclically. */
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        t->slots[hole] = *n;
        hole = j;
    }
    t->slots[hole].tb = EMPTY;
    t->count--;
}
