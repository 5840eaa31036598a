/* pair.c: leak accounting (--pair). An allocation's block address is what the allocator returns:
 * at a captured allocation hit a one-shot breakpoint goes on the return address into the
 * allocator's caller (the first frame outside the allocation routines), and when the same thread
 * gets there (same stack pointer) RAX/EAX is the block; its size is the BlockSize of the
 * POOL_HEADER in front of it, which is what the kernel's pool tracker counts. The event waits
 * for that return. A free's block address must come from what the target shows at the free hit:
 * the stack words the unwinder already read are matched against the live blocks, and the slot
 * (an offset from the stop's SP, per free site) that held the block every time is then trusted
 * on its own (located once per kernel build, as a debugger extension would be told). A free that
 * matches nothing is counted, never guessed. */
#include <stdlib.h>
#include <string.h>

#include "harvest_int.h"
#include "kdh/tag.h"

/* ---- pure parts ---- */
uint64_t hv_pool_header_size(const uint8_t hdr[8], unsigned pointer_size, uint32_t tag)
{
    uint32_t w = kdh_get_u32(hdr), t = kdh_get_u32(hdr + 4);
    if (!kdh_tag_match(t, tag))
        return 0; /* PROTECTED_POOL aside, the tag must be the one armed */
    uint64_t units, type1;
    if (pointer_size == 8) {
        units = (w >> 16) & 0xffu;   /* PreviousSize:8 PoolIndex:8 BlockSize:8 PoolType:8 */
        type1 = w >> 24;
    } else {
        units = (w >> 16) & 0x1ffu;  /* PreviousSize:9 PoolIndex:7 BlockSize:9 PoolType:7 */
        type1 = w >> 25;
    }
    if (type1 == 0 || units < 2)
        return 0; /* free, or no header there */
    return units * 2 * pointer_size;
}

static size_t live_slot(uint64_t addr, size_t cap)
{
    return (size_t)((addr * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static int live_grow(hv_pair_t *p)
{
    size_t ncap = p->live_cap ? p->live_cap * 2 : 4096;
    uint64_t *na = calloc(ncap, sizeof *na), *ns = calloc(ncap, sizeof *ns);
    if (!na || !ns) {
        free(na);
        free(ns);
        return KDH_ENOMEM;
    }
    for (size_t i = 0; i < p->live_cap; i++) {
        if (p->live_addr[i] <= 1)
            continue;
        size_t j = live_slot(p->live_addr[i], ncap);
        while (na[j])
            j = (j + 1) & (ncap - 1);
        na[j] = p->live_addr[i];
        ns[j] = p->live_size[i];
    }
    free(p->live_addr);
    free(p->live_size);
    p->live_addr = na;
    p->live_size = ns;
    p->live_cap = ncap;
    p->live_used = p->live_n;
    return KDH_OK;
}

int hv_live_put(hv_pair_t *p, uint64_t addr, uint64_t size)
{
    if (addr <= 1)
        return KDH_OK;
    uint64_t old;
    hv_live_get(p, addr, &old, 1); /* a live address allocated again: the old block is gone */
    if ((p->live_used + 1) * 2 > p->live_cap && live_grow(p) != KDH_OK)
        return KDH_ENOMEM;
    size_t j = live_slot(addr, p->live_cap);
    while (p->live_addr[j] > 1)
        j = (j + 1) & (p->live_cap - 1);
    if (p->live_addr[j] == 0)
        p->live_used++;
    p->live_addr[j] = addr;
    p->live_size[j] = size;
    p->live_n++;
    return KDH_OK;
}

int hv_live_get(hv_pair_t *p, uint64_t addr, uint64_t *size, int take)
{
    if (!p->live_cap || addr <= 1)
        return 0;
    size_t j = live_slot(addr, p->live_cap);
    for (size_t k = 0; k < p->live_cap && p->live_addr[j]; k++, j = (j + 1) & (p->live_cap - 1)) {
        if (p->live_addr[j] != addr)
            continue;
        *size = p->live_size[j];
        if (take) {
            p->live_addr[j] = 1; /* deleted: probes go on past it */
            p->live_n--;
        }
        return 1;
    }
    return 0;
}

void hv_pair_free_all(hv_pair_t *p)
{
    free(p->live_addr);
    free(p->live_size);
    p->live_addr = p->live_size = NULL;
    p->live_cap = p->live_n = p->live_used = 0;
}

/* ---- allocations ---- */
int hv_pair_alloc(hv_t *h, const kdh_wire_state_change_t *sc, const kdh_target_stack_t *s,
                  const kdh_store_event_t *ev, kdh_err_t *err)
{
    /* the caller of the outermost allocation routine: frames 1.. are inside the allocator until
     * the first one that is not */
    uint32_t k = 1;
    int inside = 0;
    while (k < s->n_frames && hv_kind_of(h, s->frames[k].pc) == KDH_STORE_ALLOC) {
        inside = 1;
        k++;
    }
    if (h->detaching || !inside || k >= s->n_frames) {
        if (h->pair.again != HV_AGAIN_NO_ADDR) /* (counted once for a hit handled again) */
            h->pair.allocs_no_addr++;
        h->pair.again = HV_AGAIN_NO_ADDR;
        return 0;
    }
    return hv_pair_wait(h, sc, s->frames[k].pc, s->frames[k].sp, ev, err);
}

int hv_pair_wait(hv_t *h, const kdh_wire_state_change_t *sc, uint64_t ret_pc, uint64_t ret_sp,
                 const kdh_store_event_t *ev, kdh_err_t *err)
{
    hv_wait_t *w = NULL;
    for (int i = 0; i < HV_WAIT_MAX; i++) {
        hv_wait_t *o = &h->pair.wait[i];
        if (o->used && o->bp == ret_pc && o->thread == sc->thread && o->sp == ret_sp) {
            o->ev = *ev; /* the same call, its hit handled again: it is awaited already */
            return 1;
        }
    }
    for (int i = 0; i < HV_WAIT_MAX && !w; i++)
        if (!h->pair.wait[i].used)
            w = &h->pair.wait[i];
    if (h->detaching || !w || hv_bp_want(h, ret_pc, err) != KDH_OK) {
        if (h->pair.again != HV_AGAIN_NO_ADDR) /* no room (or leaving): logged without an address */
            h->pair.allocs_no_addr++;
        h->pair.again = HV_AGAIN_NO_ADDR;
        return 0;
    }
    memset(w, 0, sizeof *w);
    w->used = 1;
    w->bp = ret_pc;
    w->thread = sc->thread;
    w->sp = ret_sp;
    w->ev = *ev;
    return 1;
}

int hv_pair_owns_stop(hv_t *h, const kdh_wire_state_change_t *sc)
{
    if (!sc || sc->new_state != KDH_WIRE_STATE_EXCEPTION || sc->u.exception.code != KDH_WIRE_STATUS_BREAKPOINT)
        return 0;
    for (int i = 0; i < HV_WAIT_MAX; i++)
        if (h->pair.wait[i].used && h->pair.wait[i].bp == sc->program_counter)
            return 1;
    return 0;
}

/* The stack pointer after the return: x64 exactly the caller frame's; x86 callees may pop
 * stdcall arguments (ret n), so up to 64 bytes above it. */
static int sp_matches(const hv_t *h, uint64_t want, uint64_t sp)
{
    if (kdh_target_pointer_size(h->t) == 8)
        return sp == want;
    return sp >= want && sp - want <= 64;
}

int hv_pair_on_return(hv_t *h, kdh_err_t *err)
{
    h->restop_check = 0; /* never a hit reported again (harvest_int.h) */
    const kdh_wire_state_change_t *sc = kdh_kd_state(h->c.kd);
    kdh_wire_state_change_t scc = *sc;
    kdh_harvest_hit_cost_t cost;
    memset(&cost, 0, sizeof cost);
    cost.pair_return = 1;
    cost.kind = KDH_STORE_ALLOC;
    hv_bp_note_stop(h, &scc);
    unsigned ps = kdh_target_pointer_size(h->t);
    /* result register and stack pointer in one slice: x64 Rax..Rsp, x86 Eax..Esp */
    uint32_t off = ps == 8 ? 0x78 : 0xB0, len = ps == 8 ? 0x28 : 0x18;
    uint8_t slice[0x28];
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_get_context_slice(h->c.kd, &req, scc.processor, off, slice, len, NULL, NULL);
    int rc = hv_conn_call(&h->c, &req, "reading the allocator's result", err);
    if (rc != KDH_OK)
        return rc;
    uint64_t ret = ps == 8 ? kdh_get_u64(slice) : kdh_sign_extend32(kdh_get_u32(slice));
    uint64_t sp = ps == 8 ? kdh_get_u64(slice + 0x20) : kdh_sign_extend32(kdh_get_u32(slice + 0x14));
    hv_wait_t *w = NULL;
    for (int i = 0; i < HV_WAIT_MAX && !w; i++) {
        hv_wait_t *c = &h->pair.wait[i];
        if (c->used && c->bp == scc.program_counter && c->thread == scc.thread && sp_matches(h, c->sp, sp))
            w = c;
    }
    if (!w) {
        /* another thread (or a deeper call) passing the same return address: step over it */
        h->pair.returns_other++;
        rc = hv_continue(h, KDH_WIRE_DBG_CONTINUE, err);
        hv_cost_report(h, &cost);
        return rc;
    }
    /* The wait ends, the block goes live and the event is written once the Continue is taken: if
     * the target reports this stop again instead (a request cancelled), it is handled again from
     * the same wait. */
    kdh_store_event_t ev = w->ev;
    int still = 0;
    for (int i = 0; i < HV_WAIT_MAX; i++)
        still |= &h->pair.wait[i] != w && h->pair.wait[i].used && h->pair.wait[i].bp == scc.program_counter;
    if (!still && (rc = hv_bp_unwant(h, scc.program_counter, err)) != KDH_OK)
        return rc;
    if (ret != 0) {
        uint64_t size = 0;
        if (h->o->mode != KDH_HARVEST_SPECIALPOOL) { /* special pool blocks have no header in front */
            uint8_t hdr[8];
            uint32_t got;
            /* a header the target does not read out leaves the size the hit knew; any other error
             * is the link's (the stop reported again, a request cancelled): the stop is handled
             * again, from the same wait */
            rc = hv_conn_read(&h->c, ret - 2 * ps, hdr, sizeof hdr, &got, "reading the pool header", err);
            if (rc == KDH_ETARGET) {
                kdh_err_clear(err);
                rc = KDH_OK;
            }
            if (rc != KDH_OK)
                return rc;
            if (got == sizeof hdr)
                size = hv_pool_header_size(hdr, ps, h->tag_dword);
        }
        ev.addr = ret;
        ev.has_addr = 1;
        if (size) { /* else the size the hit knew (special pool: the requested bytes) stays */
            ev.size = size;
            ev.has_size = 1;
        }
    }
    if ((rc = hv_continue(h, KDH_WIRE_DBG_CONTINUE, err)) != KDH_OK)
        return rc;
    w->used = 0;
    if (ret == 0) {
        h->pair.allocs_failed++; /* the allocation failed: nothing to pair */
    } else {
        if (hv_live_put(&h->pair, ret, ev.has_size ? ev.size : 0) != KDH_OK)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for the live block map");
        h->pair.allocs_addr++;
    }
    if ((rc = kdh_store_append_event(h->st, &ev, NULL, err)) != KDH_OK)
        return rc;
    hv_cost_report(h, &cost);
    return KDH_OK;
}

int hv_pair_flush(hv_t *h, kdh_err_t *err)
{
    int rc = KDH_OK;
    for (int i = 0; i < HV_WAIT_MAX; i++) {
        hv_wait_t *w = &h->pair.wait[i];
        if (!w->used)
            continue;
        w->used = 0;
        h->pair.allocs_no_addr++;
        int r = kdh_store_append_event(h->st, &w->ev, NULL, err);
        if (r == KDH_OK && kdh_kd_stopped(h->c.kd))
            r = hv_bp_unwant(h, w->bp, err);
        if (r != KDH_OK && rc == KDH_OK)
            rc = r;
    }
    return rc;
}

/* ---- frees ---- */
static hv_free_site_t *free_site(hv_t *h, uint64_t pc, uint64_t ret)
{
    hv_free_site_t *empty = NULL;
    for (int i = 0; i < HV_SITE_MAX; i++) {
        hv_free_site_t *s = &h->pair.site[i];
        if (s->pc == pc && s->ret == ret)
            return s;
        if (!s->pc && !empty)
            empty = s;
    }
    if (empty) {
        memset(empty, 0, sizeof *empty);
        empty->pc = pc;
        empty->ret = ret;
    }
    return empty;
}

static int stack_word(hv_t *h, uint64_t va, uint64_t *v)
{
    unsigned ps = kdh_target_pointer_size(h->t);
    uint8_t b[8];
    uint32_t got = 0;
    if (kdh_target_read(h->t, KDH_TARGET_STOP, va, b, ps, &got) != KDH_OK || got != ps)
        return 0;
    *v = ps == 8 ? kdh_get_u64(b) : kdh_sign_extend32(kdh_get_u32(b));
    return 1;
}

void hv_pair_paired(hv_t *h, kdh_store_event_t *ev, uint64_t addr)
{
    hv_pair_t *p = &h->pair;
    uint64_t size = 0;
    ev->addr = addr;
    ev->has_addr = 1;
    if ((p->again == HV_AGAIN_PAIRED || p->again == HV_AGAIN_UNMATCHED) && p->again_addr == addr) {
        size = p->again_size; /* the hit handled again: its block was taken the first time */
    } else if (hv_live_get(p, addr, &size, 1)) {
        p->frees_paired++;
        p->again = HV_AGAIN_PAIRED;
    } else {
        p->frees_unmatched++; /* allocated before the run, or its allocation was not seen */
        p->again = HV_AGAIN_UNMATCHED;
    }
    p->again_addr = addr;
    p->again_size = size;
    if (p->again == HV_AGAIN_PAIRED) {
        ev->size = size;
        ev->has_size = size != 0;
    }
}

void hv_pair_free(hv_t *h, const kdh_wire_state_change_t *sc, const kdh_target_stack_t *s, kdh_store_event_t *ev)
{
    unsigned ps = kdh_target_pointer_size(h->t);
    uint64_t sp = s->n_frames ? s->frames[0].sp : 0;
    uint64_t end = kdh_unwind_stack_end(&s->u);
    hv_free_site_t *site = free_site(h, sc->program_counter, s->n_frames > 1 ? s->frames[1].pc : 0);
    uint64_t v;
    if (h->pair.again == HV_AGAIN_NO_ADDR)
        return; /* the hit handled again: no block the first time either (counted then) */
    if (h->pair.again == HV_AGAIN_PAIRED || h->pair.again == HV_AGAIN_UNMATCHED) {
        hv_pair_paired(h, ev, h->pair.again_addr); /* the block the first pass took */
        return;
    }
    if (site && site->locked) {
        if (stack_word(h, sp + site->off[0], &v)) {
            hv_pair_paired(h, ev, v);
        } else {
            h->pair.frees_no_addr++;
            h->pair.again = HV_AGAIN_NO_ADDR;
        }
        return;
    }
    /* every slot holding a live block */
    uint32_t moff[HV_SITE_OFFS];
    uint64_t mval[HV_SITE_OFFS];
    uint32_t nm = 0;
    uint64_t size;
    for (uint64_t va = sp; sp && va + ps <= end && va - sp < 0x10000 && nm < HV_SITE_OFFS; va += ps)
        if (stack_word(h, va, &v) && hv_live_get(&h->pair, v, &size, 0)) {
            moff[nm] = (uint32_t)(va - sp);
            mval[nm++] = v;
        }
    uint64_t chosen = nm ? mval[0] : 0;
    int distinct = nm ? 1 : 0;
    for (uint32_t i = 1; i < nm; i++)
        if (mval[i] != chosen)
            distinct = 2;
    if (distinct > 1 && site && site->n_off) {
        /* several live blocks on the stack: the slot that held the block before decides */
        chosen = 0;
        for (uint32_t i = 0; i < nm && !chosen; i++)
            for (uint32_t k = 0; k < site->n_off && !chosen; k++)
                if (moff[i] == site->off[k])
                    chosen = mval[i];
        distinct = chosen != 0;
    }
    if (distinct != 1) {
        h->pair.frees_no_addr++;
        h->pair.again = HV_AGAIN_NO_ADDR;
        return;
    }
    hv_pair_paired(h, ev, chosen);
    if (!site)
        return;
    /* keep the offsets that held the chosen block this time and every time before */
    if (site->matched == 0 || site->n_off == 0) {
        site->n_off = 0;
        for (uint32_t i = 0; i < nm; i++)
            if (mval[i] == chosen) {
                site->off[site->n_off] = moff[i];
                site->votes[site->n_off++] = 1;
            }
        site->matched = 1;
        return;
    }
    uint32_t kept = 0;
    for (uint32_t k = 0; k < site->n_off; k++) {
        int here = 0;
        for (uint32_t i = 0; i < nm; i++)
            here |= moff[i] == site->off[k] && mval[i] == chosen;
        if (here) {
            site->off[kept] = site->off[k];
            site->votes[kept++] = site->votes[k] + 1;
        }
    }
    site->n_off = kept;
    site->matched = kept ? site->matched + 1 : 0;
    if (kept && site->matched >= HV_LOCK_AFTER) {
        site->n_off = 1; /* the innermost slot that always held the block */
        site->locked = 1;
    }
}

int hv_pair_pending(const hv_t *h)
{
    for (int i = 0; i < HV_WAIT_MAX; i++)
        if (h->pair.wait[i].used)
            return 1;
    return 0;
}
