/* mode_bp.c: the breakpoint arming modes. Instead of PoolHitTag, software breakpoints on the
 * pool routines' entries; at each stop the routine's arguments (argument registers on x64, the
 * stdcall argument slots on x86) give the tag, the size and, for a free, the block, so the tag
 * filter runs on the host:
 *   specialpool: nt!MmAllocateSpecialPool(NumberOfBytes, Tag, PoolType, SpecialPoolType) and
 *                nt!MmFreeSpecialPool(P) (symbols needed); only the special-pool tag goes there,
 *                so the target must have been booted with it (registry PoolTag; checked against
 *                KDDEBUGGER_DATA64.MmSpecialPoolTag with a warning);
 *   entry:       the exported ExAllocatePoolWithTag(PoolType, NumberOfBytes, Tag),
 *                ExAllocatePool2(Flags, NumberOfBytes, Tag), ExAllocatePool(PoolType,
 *                NumberOfBytes) ('None'), ExFreePoolWithTag(P, Tag), ExFreePool(P), found in nt's
 *                export directory (no PDB). Every pool call of every tag stops the target:
 *                non-matching ones are resumed at once, but each still costs a stop, a context
 *                slice, a single step and the breakpoint written again. Calls made from inside nt
 *                (one export calling another) are nested calls of a call already seen and are
 *                resumed uncounted; so allocations nt itself makes are not seen in this mode.
 * A free whose Tag argument is 0 (and ExFreePool) is matched by the live block map, else by the
 * block's POOL_HEADER (one read); a special-pool free by the header at its page start. */
#include <stdlib.h>
#include <string.h>

#include "harvest_int.h"
#include "kdh/tag.h"

enum { R_ALLOC_TAG, R_ALLOC2, R_ALLOC_NONE, R_FREE_TAG, R_FREE, R_SP_ALLOC, R_SP_FREE };

static const struct {
    const char *name;
    int routine, kind, mode;
} k_routines[] = {
    {"nt!MmAllocateSpecialPool", R_SP_ALLOC, KDH_STORE_ALLOC, KDH_HARVEST_SPECIALPOOL},
    {"nt!MmFreeSpecialPool", R_SP_FREE, KDH_STORE_FREE, KDH_HARVEST_SPECIALPOOL},
    {"nt!ExAllocatePoolWithTag", R_ALLOC_TAG, KDH_STORE_ALLOC, KDH_HARVEST_ENTRY},
    {"nt!ExAllocatePool2", R_ALLOC2, KDH_STORE_ALLOC, KDH_HARVEST_ENTRY},
    {"nt!ExAllocatePool", R_ALLOC_NONE, KDH_STORE_ALLOC, KDH_HARVEST_ENTRY},
    {"nt!ExFreePoolWithTag", R_FREE_TAG, KDH_STORE_FREE, KDH_HARVEST_ENTRY},
    {"nt!ExFreePool", R_FREE, KDH_STORE_FREE, KDH_HARVEST_ENTRY},
};

#define TAG_NONE 0x656E6F4Eu /* 'None': what untagged allocations get */

/* A ULONG of target memory (a tag); 0 when it cannot be read. */
static int read_tag(hv_t *h, uint64_t va, uint32_t *tag)
{
    uint8_t b[4];
    uint32_t got;
    if (hv_conn_read(&h->c, va, b, 4, &got, "reading a tag", NULL) != KDH_OK || got != 4)
        return 0;
    *tag = kdh_get_u32(b);
    return 1;
}

/* nt!MmSpecialPoolTag through KDDEBUGGER_DATA64 (its address is there, no symbols needed). */
static void check_special_tag(hv_t *h)
{
    const kdh_target_kdbg_t *kd = kdh_target_kdbg(h->t);
    uint32_t cur;
    if (!kd || !kd->mm_special_pool_tag || !read_tag(h, kd->mm_special_pool_tag, &cur))
        return;
    h->special_tag = cur;
    if (kdh_tag_match(cur, h->tag_dword) || cur == '*')
        return;
    hv_notice(h, "special pool is not on for '%s' on this target (nt!MmSpecialPoolTag = 0x%08x): set "
              "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Memory Management\\PoolTag "
              "(REG_DWORD) = 0x%08x and reboot the target; until then no allocation of the tag reaches "
              "the breakpoints", h->tag, cur, h->tag_dword);
}

int hv_mode_resolve(hv_t *h, kdh_err_t *err)
{
    h->n_entries = 0;
    int allocs = 0, frees = 0;
    char tried[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof k_routines / sizeof k_routines[0]; i++) {
        if (k_routines[i].mode != (int)h->o->mode)
            continue;
        uint64_t addr;
        kdh_err_t e;
        used += (size_t)snprintf(tried + used, used < sizeof tried ? sizeof tried - used : 0, "%s%s",
                                 used ? ", " : "", k_routines[i].name);
        if (kdh_target_resolve_sync(h->t, h->c.kd, k_routines[i].name, &addr, NULL, 0, &e) != KDH_OK)
            continue; /* an older or newer kernel may lack one of them */
        hv_entry_t *en = &h->entries[h->n_entries++];
        en->addr = addr;
        en->routine = k_routines[i].routine;
        en->kind = k_routines[i].kind;
        allocs += en->kind == KDH_STORE_ALLOC;
        frees += en->kind == KDH_STORE_FREE;
    }
    if (!allocs || !frees)
        return kdh_err_set(err, KDH_ENOTFOUND, "--mode %s needs an allocation and a free routine; found %d and %d "
                           "of %s (%s)", kdh_harvest_mode_name(h->o->mode), allocs,
                           frees, tried, h->o->mode == KDH_HARVEST_SPECIALPOOL ?
                           "nt's PDB or --symbol NAME=nt+0xRVA for each" : "nt's export directory");
    if (h->o->mode == KDH_HARVEST_SPECIALPOOL)
        check_special_tag(h);
    return KDH_OK;
}

int hv_mode_arm(hv_t *h, kdh_err_t *err)
{
    for (int i = 0; i < h->n_entries; i++) {
        int rc = hv_bp_want(h, h->entries[i].addr, err);
        if (rc != KDH_OK)
            return rc;
    }
    h->armed = 1;
    return KDH_OK;
}

int hv_mode_disarm(hv_t *h, kdh_err_t *err)
{
    int rc = KDH_OK;
    for (int i = 0; i < h->n_entries; i++) {
        int r = hv_bp_unwant(h, h->entries[i].addr, err);
        if (r != KDH_OK && rc == KDH_OK)
            rc = r;
    }
    h->armed = 0;
    return rc;
}

static const hv_entry_t *entry_at(const hv_t *h, uint64_t pc)
{
    for (int i = 0; i < h->n_entries; i++)
        if (h->entries[i].addr == pc)
            return &h->entries[i];
    return NULL;
}

int hv_mode_owns_stop(hv_t *h, const kdh_wire_state_change_t *sc)
{
    return h->o->mode != KDH_HARVEST_HITTAG && sc && sc->new_state == KDH_WIRE_STATE_EXCEPTION &&
           sc->u.exception.code == KDH_WIRE_STATUS_BREAKPOINT && entry_at(h, sc->program_counter) != NULL;
}

/* Arguments at a routine's entry: x64 RCX, RDX, R8, R9 (and RSP/RBP for the walk) from one slice;
 * x86 EBP..ESP, then [ESP] = return address and the stdcall argument slots in one read. */
typedef struct args {
    uint64_t a[4];
    uint64_t ret;       /* return address (x86 read here; x64 0 until the walk) */
    uint64_t sp;
    uint8_t stack_slice[0x20];
    uint32_t stack_len;
} args_t;

static int read_args(hv_t *h, const kdh_wire_state_change_t *sc, args_t *a, kdh_err_t *err)
{
    unsigned ps = kdh_target_pointer_size(h->t);
    memset(a, 0, sizeof *a);
    uint32_t soff, slen;
    kdh_target_stack_slice(h->t, &soff, &slen);
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    if (ps == 8) {
        uint8_t c[0x48]; /* Rcx 0x80 .. R9 0xC0 */
        kdh_kd_get_context_slice(h->c.kd, &req, sc->processor, 0x80, c, sizeof c, NULL, NULL);
        int rc = hv_conn_call(&h->c, &req, "reading the argument registers", err);
        if (rc != KDH_OK)
            return rc;
        a->a[0] = kdh_get_u64(c + 0x00);
        a->a[1] = kdh_get_u64(c + 0x08);
        a->a[2] = kdh_get_u64(c + 0x38);
        a->a[3] = kdh_get_u64(c + 0x40);
        a->sp = kdh_get_u64(c + 0x18);
        memcpy(a->stack_slice, c + (soff - 0x80), slen);
        a->stack_len = slen;
        return KDH_OK;
    }
    kdh_kd_get_context_slice(h->c.kd, &req, sc->processor, soff, a->stack_slice, slen, NULL, NULL);
    int rc = hv_conn_call(&h->c, &req, "reading the stack registers", err);
    if (rc != KDH_OK)
        return rc;
    a->stack_len = slen;
    a->sp = kdh_sign_extend32(kdh_get_u32(a->stack_slice + 0x10));
    uint8_t w[20];
    uint32_t got;
    if ((rc = hv_conn_read(&h->c, a->sp, w, sizeof w, &got, "reading the arguments", err)) != KDH_OK)
        return rc;
    if (got != sizeof w)
        return kdh_err_set(err, KDH_ETARGET, "arguments at 0x%llx: short read", (unsigned long long)a->sp);
    a->ret = kdh_sign_extend32(kdh_get_u32(w));
    for (int i = 0; i < 4; i++)
        a->a[i] = kdh_get_u32(w + 4 + 4 * i);
    return KDH_OK;
}

/* Tag, size and block of the call; 1 when it is the harvested tag. */
static int filter(hv_t *h, const hv_entry_t *e, const args_t *a, kdh_store_event_t *ev)
{
    unsigned ps = kdh_target_pointer_size(h->t);
    uint64_t x86_flags_hi = ps == 4; /* x86 ExAllocatePool2: Flags is a ULONG64 in two slots */
    uint32_t tag = 0;
    uint64_t size = 0, block = 0, live;
    switch (e->routine) {
    case R_ALLOC_TAG: size = a->a[1]; tag = (uint32_t)a->a[2]; break;
    case R_ALLOC2: size = a->a[1 + x86_flags_hi]; tag = (uint32_t)a->a[2 + x86_flags_hi]; break;
    case R_ALLOC_NONE: size = a->a[1]; tag = TAG_NONE; break;
    case R_SP_ALLOC: size = a->a[0]; tag = (uint32_t)a->a[1]; break;
    case R_FREE_TAG: block = a->a[0]; tag = (uint32_t)a->a[1]; break;
    case R_FREE:
    case R_SP_FREE: block = a->a[0]; break;
    }
    if (ps == 4)
        block = kdh_sign_extend32((uint32_t)block);
    if (e->kind == KDH_STORE_FREE) {
        if (!block)
            return 0; /* freeing NULL does nothing */
        ev->addr = block;
        ev->has_addr = 1;
        if (hv_live_get(&h->pair, block, &live, 0))
            return 1; /* one of the blocks seen allocated with the tag */
        if (tag == 0) {
            /* no tag argument: the block's own header says (special pool: at its page start) */
            uint64_t hdr = e->routine == R_SP_FREE ? (block & ~0xfffull) + 4 : block - 2 * ps + 4;
            if (!read_tag(h, hdr, &tag))
                return 0;
        }
    } else {
        ev->size = size;
        ev->has_size = 1;
    }
    return kdh_tag_match(tag, h->tag_dword);
}

int hv_mode_on_entry(hv_t *h, kdh_err_t *err)
{
    h->restop_check = 0; /* never a hit reported again (harvest_int.h) */
    const kdh_wire_state_change_t *sc0 = kdh_kd_state(h->c.kd);
    kdh_wire_state_change_t scc = *sc0;
    const hv_entry_t *e = entry_at(h, scc.program_counter);
    double t_wall = hv_now_wall(), t0 = hv_now_mono();
    kdh_harvest_hit_cost_t cost;
    memset(&cost, 0, sizeof cost);
    kdh_target_sync_stop(h->t, kdh_kd_stop_serial(h->c.kd));
    args_t a;
    int rc = read_args(h, &scc, &a, err);
    if (rc != KDH_OK)
        return rc;
    kdh_store_event_t ev;
    memset(&ev, 0, sizeof ev);
    int match = filter(h, e, &a, &ev), nested = 0;
    if (match && h->o->mode == KDH_HARVEST_ENTRY) {
        /* a call from inside nt (one export calling another) belongs to the call already seen */
        uint64_t ret = a.ret;
        if (kdh_target_pointer_size(h->t) == 8) {
            /* [RSP] is the return address. A hit to be captured is walked from the same RSP:
             * the span the last walk from here read comes in the same request, and the capture
             * finds it in the stop's cache */
            unsigned n = h->o->sample > 1 ? h->o->sample : 1;
            uint32_t span = h->hits % n == 0 ? hv_pred_get(&h->pred, scc.program_counter, a.sp, scc.thread) : 0;
            uint32_t got = 0;
            uint8_t w[8];
            if ((rc = hv_fetch_stop(h, a.sp, span > 8 ? span : 8, &got, err)) != KDH_OK)
                return rc;
            cost.stack_read += got;
            if (kdh_target_read(h->t, KDH_TARGET_STOP, a.sp, w, 8, &got) == KDH_OK && got == 8)
                ret = kdh_get_u64(w);
        }
        const kdh_target_module_t *m = kdh_target_module_by_addr(h->t, ret);
        const kdh_wire_get_version_t *v = kdh_target_version(h->t);
        nested = m && v && m->base == v->kern_base;
        h->nested += nested;
        match = !nested;
    }
    if (!match) {
        h->filtered += !nested;
        rc = hv_continue(h, KDH_WIRE_DBG_CONTINUE, err);
        hv_stall_add(h, t0, hv_now_mono()); /* the target was stopped for it all the same */
        cost.kind = KDH_STORE_HIT;
        cost.filtered = 1;
        hv_cost_report(h, &cost);
        return rc;
    }
    hv_hit_begin(h, &scc);
    unsigned n = h->o->sample > 1 ? h->o->sample : 1;
    int capture = (h->hits - 1) % n == 0, capped = 0, deferred = 0;
    uint64_t sid = 0;
    ev.t = t_wall;
    ev.boot = h->boot;
    ev.cpu = scc.processor;
    ev.thread = scc.thread;
    ev.kind = (kdh_store_kind_t)e->kind;
    memcpy(ev.tag, h->tag, 5);
    if (capture) {
        kdh_target_stack_t *s = malloc(sizeof *s);
        if (!s)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for a stack walk");
        rc = hv_capture_from_slice(h, &scc, a.stack_slice, a.stack_len, s, &cost, err);
        if (rc == KDH_OK) {
            cost.frames = s->n_frames;
            cost.stack_end = kdh_unwind_stack_end(&s->u);
            rc = hv_log_stack(h, s, &sid, &capped, err);
        }
        ev.has_sid = !capped;
        ev.sid = sid;
        /* the block of an allocation is the routine's result: at its return into the caller */
        if (rc == KDH_OK && h->o->pair && !capped && e->kind == KDH_STORE_ALLOC && s->n_frames > 1)
            deferred = hv_pair_wait(h, &scc, s->frames[1].pc, a.sp + kdh_target_pointer_size(h->t), &ev, err);
        free(s);
        if (rc != KDH_OK)
            return rc;
    }
    if (h->o->pair && e->kind == KDH_STORE_FREE && !capped)
        hv_pair_paired(h, &ev, ev.addr);
    hv_hit_end_t end = {.kind = e->kind, .captured = capture, .capped = capped, .deferred = deferred,
                        .logged_stack = capture, .sid = sid, .t_wall = t_wall, .t0 = t0,
                        .pc = scc.program_counter, .thread = scc.thread};
    return hv_finish_hit(h, &end, &ev, &cost, err);
}
