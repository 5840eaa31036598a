/* hit.c: the per-hit pipeline. One PoolHitTag stop costs, when its stack is captured: the state
 * change, one GetContextEx of the stack registers (x64 RSP+RBP, x86 EBP..ESP), one read of the
 * stack span predicted from the last walk at the same place (the unwinder asks for the rest only
 * if the guess was short), one SetContextEx of RIP/EIP alone to step over the int 3, and
 * Continue2. Unwind data and module headers come from the per-boot cache. A counted-only hit
 * reads the return address word instead of the stack. Symbols are looked up only the first
 * time a stack is seen. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harvest_int.h"

double hv_now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double hv_now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Moves the one-minute window so that its newest bucket is second sec (older ones are cleared). */
static void stall_age(hv_t *h, int64_t sec)
{
    if (sec <= h->stall_sec)
        return;
    for (int64_t s = h->stall_sec + 1; s <= sec && s <= h->stall_sec + 60; s++)
        h->stall[s % 60] = 0;
    h->stall_sec = sec;
}

void hv_stall_add(hv_t *h, double t0, double t1)
{
    /* spread [t0, t1) over whole-second buckets */
    while (t0 < t1) {
        int64_t sec = (int64_t)t0;
        double end = (double)(sec + 1) < t1 ? (double)(sec + 1) : t1;
        stall_age(h, sec);
        if (sec > h->stall_sec - 60)
            h->stall[sec % 60] += end - t0;
        t0 = end;
    }
}

double hv_stall_pct(hv_t *h, double now)
{
    stall_age(h, (int64_t)now);
    double sum = 0;
    for (int i = 0; i < 60; i++)
        sum += h->stall[i];
    double window = now - h->armed_at;
    if (window > 60)
        window = 60;
    if (window < 1)
        window = 1;
    double pct = 100.0 * sum / window;
    return pct > 100 ? 100 : pct;
}

/* ---- sid set ---- */
static uint64_t *sid_slot(hv_sidset_t *s, uint64_t sid, int *fresh)
{
    if (sid == 0)
        sid = 1;
    if (s->n * 2 >= s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 1024;
        uint64_t *ns = calloc(ncap, sizeof *ns), *nc = calloc(ncap, sizeof *nc);
        if (!ns || !nc) {
            free(ns);
            free(nc);
            return NULL;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->sid[i])
                continue;
            size_t j = (size_t)(s->sid[i] * 0x9E3779B97F4A7C15ull >> 17) & (ncap - 1);
            while (ns[j])
                j = (j + 1) & (ncap - 1);
            ns[j] = s->sid[i];
            nc[j] = s->count[i];
        }
        free(s->sid);
        free(s->count);
        s->sid = ns;
        s->count = nc;
        s->cap = ncap;
    }
    size_t j = (size_t)(sid * 0x9E3779B97F4A7C15ull >> 17) & (s->cap - 1);
    while (s->sid[j] && s->sid[j] != sid)
        j = (j + 1) & (s->cap - 1);
    *fresh = s->sid[j] == 0;
    if (*fresh) {
        s->sid[j] = sid;
        s->n++;
    }
    return &s->count[j];
}

int hv_sid_known(hv_t *h, uint64_t sid)
{
    int fresh;
    return sid_slot(&h->sids, sid, &fresh) ? KDH_OK : KDH_ENOMEM;
}

/* ---- classification ---- */
int hv_kind_of(hv_t *h, uint64_t va)
{
    size_t i = (size_t)((va * 0x9E3779B97F4A7C15ull) >> 56) % HV_KIND_SLOTS;
    if (h->kinds.va[i] == va && va)
        return h->kinds.kind[i];
    char sym[320];
    kdh_target_symbolize(h->t, va, sym, sizeof sym);
    int k = hv_classify_name(sym);
    h->kinds.va[i] = va;
    h->kinds.kind[i] = (int8_t)k;
    return k;
}

/* The break is in DbgBreakPoint (its caller says which side) or inlined in the pool routine. */
static int classify(hv_t *h, uint64_t pc, uint64_t ret)
{
    int k = hv_kind_of(h, pc);
    if (k >= 0)
        return k;
    if (ret) {
        k = hv_kind_of(h, ret);
        if (k >= 0)
            return k;
    }
    return KDH_STORE_HIT;
}

/* ---- wire steps ---- */
static int get_slice(hv_t *h, unsigned cpu, uint8_t *slice, uint32_t *off, uint32_t *len, kdh_err_t *err)
{
    kdh_target_stack_slice(h->t, off, len);
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_get_context_slice(h->c.kd, &req, cpu, *off, slice, *len, NULL, NULL);
    int rc = hv_conn_call(&h->c, &req, "reading the stack registers", err);
    if (rc != KDH_OK)
        return rc;
    if (req.out_len < *len)
        return kdh_err_set(err, KDH_EPROTO, "stack registers: %zu of %u bytes", req.out_len, *len);
    return KDH_OK;
}

static uint64_t slice_sp(const hv_t *h, const uint8_t *slice)
{
    if (kdh_target_pointer_size(h->t) == 8)
        return kdh_get_u64(slice);
    return kdh_sign_extend32(kdh_get_u32(slice + 0x10));
}

int hv_fetch_stop(hv_t *h, uint64_t va, uint32_t len, uint32_t *got, kdh_err_t *err)
{
    uint8_t *buf = malloc(len);
    if (!buf)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for a %u-byte read", len);
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_read_virtual(h->c.kd, &req, va, buf, len, NULL, NULL);
    int rc = kdh_kd_wait(h->c.kd, &req);
    if (rc != KDH_OK && rc != KDH_ETARGET) {
        free(buf);
        return kdh_err_set(err, rc, "reading the stack at 0x%llx: %s", (unsigned long long)va, req.err.msg);
    }
    uint32_t n = req.out_len < len ? (uint32_t)req.out_len : len;
    if (got)
        *got = n;
    rc = kdh_target_fill(h->t, KDH_TARGET_STOP, va, buf, n, len, err);
    free(buf);
    return rc;
}

/* 1 when this stop's cache already answers [va, va + len) (bytes, or known unreadable): an
 * entry stop reads the predicted span with its return address. */
static int stop_cached(hv_t *h, uint64_t va, uint32_t len)
{
    uint8_t *buf = malloc(len);
    uint32_t got;
    int hit = buf && kdh_target_read(h->t, KDH_TARGET_STOP, va, buf, len, &got) == KDH_OK;
    free(buf);
    return hit;
}

static int stack_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    return kdh_target_step_stack(t, arg, err);
}

/* The naive strategy the benchmark compares with: full CONTEXT in, 4 KiB of stack, full
 * CONTEXT out with the PC moved. */
static int naive_capture(hv_t *h, const kdh_wire_state_change_t *sc, kdh_target_stack_t *s,
                         kdh_harvest_hit_cost_t *cost, kdh_err_t *err)
{
    uint8_t ctx[0x4D0];
    size_t csz = kdh_kd_context_size(h->c.kd);
    if (csz > sizeof ctx)
        csz = sizeof ctx;
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_get_context(h->c.kd, &req, sc->processor, ctx, csz, NULL, NULL);
    int rc = hv_conn_call(&h->c, &req, "GetContext", err);
    if (rc != KDH_OK)
        return rc;
    uint32_t off, len;
    kdh_target_stack_slice(h->t, &off, &len);
    uint64_t sp = slice_sp(h, ctx + off);
    kdh_target_sync_stop(h->t, kdh_kd_stop_serial(h->c.kd));
    uint32_t got = 0;
    if ((rc = hv_fetch_stop(h, sp, 4096, &got, err)) != KDH_OK)
        return rc;
    cost->stack_read = got;
    cost->sp = sp;
    if ((rc = kdh_target_stack_init(h->t, s, sc->program_counter, ctx + off, len, err)) != KDH_OK)
        return rc;
    if ((rc = kdh_target_run_sync(h->t, h->c.kd, stack_step, s, err)) != KDH_OK)
        return rc;
    uint32_t pco = kdh_target_pointer_size(h->t) == 8 ? 0xF8 : 0xB8;
    if (kdh_target_pointer_size(h->t) == 8)
        kdh_put_u64(ctx + pco, sc->program_counter + 1);
    else
        kdh_put_u32(ctx + pco, (uint32_t)sc->program_counter + 1);
    memset(&req, 0, sizeof req);
    kdh_kd_set_context(h->c.kd, &req, sc->processor, ctx, csz, NULL, NULL);
    return hv_conn_call(&h->c, &req, "SetContext", err);
}

/* Fast capture: slice, predicted span, unwinder for whatever is still missing. */
static int fast_capture(hv_t *h, const kdh_wire_state_change_t *sc, kdh_target_stack_t *s,
                        kdh_harvest_hit_cost_t *cost, kdh_err_t *err)
{
    uint8_t slice[0x20];
    uint32_t off, len;
    int rc = get_slice(h, sc->processor, slice, &off, &len, err);
    if (rc != KDH_OK)
        return rc;
    return hv_capture_from_slice(h, sc, slice, len, s, cost, err);
}

int hv_capture_from_slice(hv_t *h, const kdh_wire_state_change_t *sc, const uint8_t *slice, uint32_t len,
                          kdh_target_stack_t *s, kdh_harvest_hit_cost_t *cost, kdh_err_t *err)
{
    int rc;
    uint64_t sp = slice_sp(h, slice);
    cost->sp = sp;
    kdh_target_sync_stop(h->t, kdh_kd_stop_serial(h->c.kd));
    if ((rc = kdh_target_stack_init(h->t, s, sc->program_counter, slice, len, err)) != KDH_OK)
        return rc;
    uint32_t span = hv_pred_get(&h->pred, sc->program_counter, sp, sc->thread);
    if (span == 0) {
        uint64_t va;
        kdh_unwind_prefetch(&s->u, &va, &span);
    }
    uint32_t got = 0;
    if (span && !stop_cached(h, sp, span) && (rc = hv_fetch_stop(h, sp, span, &got, err)) != KDH_OK)
        return rc;
    cost->stack_read += got;
    /* the walk, fetching what it still misses; the predicted span for next time is everything
     * of the stack it looked at, including the slot where the outermost frame's walk ended */
    uint64_t end = span ? sp + span : sp;
    for (unsigned round = 0;; round++) {
        rc = kdh_target_step_stack(h->t, s, err);
        if (rc != KDH_ENOTCACHED)
            break;
        uint64_t va;
        uint32_t n;
        kdh_target_class_t cls;
        kdh_target_need(h->t, &va, &n, &cls);
        if (round >= 4096 || n == 0 || n > KDH_TARGET_FETCH_MAX)
            return kdh_err_set(err, KDH_EPROTO, "stack walk at 0x%llx did not converge",
                               (unsigned long long)sc->program_counter);
        if (cls == KDH_TARGET_STOP) {
            if ((rc = hv_fetch_stop(h, va, n, &got, err)) != KDH_OK)
                return rc;
            cost->stack_read += got;
            if (va >= sp && va + n > end && va + n - sp <= 0x10000)
                end = va + n;
        } else {
            uint8_t *buf = malloc(n);
            if (!buf)
                return kdh_err_set(err, KDH_ENOMEM, "out of memory for a %u-byte read", n);
            kdh_kd_req_t req;
            memset(&req, 0, sizeof req);
            kdh_kd_read_virtual(h->c.kd, &req, va, buf, n, NULL, NULL);
            int wrc = kdh_kd_wait(h->c.kd, &req);
            if (wrc != KDH_OK && wrc != KDH_ETARGET) {
                free(buf);
                return kdh_err_set(err, wrc, "reading 0x%llx: %s", (unsigned long long)va, req.err.msg);
            }
            rc = kdh_target_fill(h->t, cls, va, buf, req.out_len < n ? (uint32_t)req.out_len : n, n, err);
            free(buf);
            if (rc != KDH_OK)
                return rc;
        }
    }
    if (rc != KDH_OK)
        return rc;
    uint64_t uend = kdh_unwind_stack_end(&s->u);
    if (uend > end)
        end = uend;
    if (end > sp)
        hv_pred_put(&h->pred, sc->program_counter, sp, sc->thread, (uint32_t)(end - sp));
    return kdh_target_skip_int3(h->t, h->c.kd, err);
}

/* Windows refuses Set(Ex)Context unless a Get happened in the same stop (KdpContextSent), and the
 * kd session takes a refused SetContextEx as "no Ex support" for good: read the PC slice first
 * wherever nothing else read the context. */
int hv_touch_context(hv_t *h, uint64_t *pc, kdh_err_t *err)
{
    if (!kdh_kd_state(h->c.kd)) {
        if (pc)
            *pc = 0;
        return KDH_OK;
    }
    return kdh_target_read_pc(h->t, h->c.kd, pc, err);
}

/* Counted only: the return address word classifies the hit when the break is DbgBreakPoint. */
static int count_only(hv_t *h, const kdh_wire_state_change_t *sc, int *kind, kdh_err_t *err)
{
    uint64_t ret = 0;
    int k = hv_kind_of(h, sc->program_counter);
    if (k >= 0) {
        int rc = hv_touch_context(h, NULL, err);
        if (rc != KDH_OK)
            return rc;
    } else {
        uint8_t slice[0x20];
        uint32_t off, len;
        int rc = get_slice(h, sc->processor, slice, &off, &len, err);
        if (rc != KDH_OK)
            return rc;
        uint64_t sp = slice_sp(h, slice);
        uint8_t w[8] = {0};
        unsigned ps = kdh_target_pointer_size(h->t);
        uint32_t got;
        if (hv_conn_read(&h->c, sp, w, ps, &got, "reading the return address", NULL) == KDH_OK && got == ps)
            ret = ps == 8 ? kdh_get_u64(w) : kdh_sign_extend32(kdh_get_u32(w));
    }
    *kind = classify(h, sc->program_counter, ret);
    return kdh_target_skip_int3(h->t, h->c.kd, err);
}

int hv_log_stack(hv_t *h, const kdh_target_stack_t *s, uint64_t *sid, int *capped, kdh_err_t *err)
{
    kdh_store_frame_t fr[KDH_UNWIND_FRAMES_MAX];
    char syms[64][160];
    size_t n = s->n_frames;
    if (n > KDH_UNWIND_FRAMES_MAX)
        n = KDH_UNWIND_FRAMES_MAX;
    memset(fr, 0, n * sizeof fr[0]);
    for (size_t i = 0; i < n; i++) {
        const kdh_target_frame_t *f = &s->frames[i];
        if (f->module) {
            fr[i].mod = f->module->key;
            fr[i].rva = f->rva;
            fr[i].has_rva = 1;
        }
        fr[i].addr = f->pc;
        fr[i].has_addr = 1;
    }
    *sid = kdh_store_stack_id(fr, n);
    int fresh = 0;
    uint64_t *count = sid_slot(&h->sids, *sid, &fresh);
    if (!count)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for the stack set");
    if (fresh) /* first time: symbolize (off the per-hit path from then on) */
        for (size_t i = 0; i < n && i < 64; i++) {
            kdh_target_symbolize(h->t, s->frames[i].pc, syms[i], sizeof syms[i]);
            fr[i].sym = syms[i];
        }
    /* the count grows when the hit ends (hv_finish_hit): a hit handled again after a cancelled
     * request is still one hit of its stack */
    *capped = h->o->stack_cap && *count >= h->o->stack_cap;
    if (*capped)
        return KDH_OK;
    uint64_t got;
    return kdh_store_intern_stack(h->st, fr, n, &got, err);
}

void hv_cost_report(hv_t *h, kdh_harvest_hit_cost_t *cost)
{
    uint64_t in = hv_conn_bytes(&h->c, 0), out = hv_conn_bytes(&h->c, 1);
    const kdh_kd_stats_t *ks = kdh_kd_stats(h->c.kd);
    uint64_t req = ks->requests;
    /* Continue2 packets are counted as requests by the session but get no reply */
    uint32_t conts = 1 + (uint32_t)(h->bps.steps - h->mark_steps);
    cost->bytes_in = in - h->mark_in;
    cost->bytes_out = out - h->mark_out;
    cost->continues = conts;
    cost->requests = (uint32_t)(req - h->mark_req) - conts;
    h->mark_in = in;
    h->mark_out = out;
    h->mark_req = req;
    h->mark_steps = h->bps.steps;
    if (h->o->on_hit)
        h->o->on_hit(h->o->ctx, cost);
}

/* Whether the current stop is the last hit reported again. Every hit we handle leaves the PC
 * one past the int 3 before its Continue; a fresh hit at the same place has the PC on the int 3
 * itself. So the same thread at the same break address with the PC already moved is a stop we
 * have logged, whose Continue was lost. Costs one PC read, and only after a reset or a probe.
 * Not while a hit is open: a link reset cancelled one of its requests, and that request, sent
 * again after the RESET, may have moved the PC all the same; the stop is that hit, not logged
 * yet, whatever the last one logged was. */
static int reported_again(hv_t *h, const kdh_wire_state_change_t *sc, int *again, kdh_err_t *err)
{
    *again = 0;
    if (h->hit_open || sc->thread != h->last_thread || sc->program_counter != h->last_pc)
        return KDH_OK;
    uint64_t cur;
    int rc = hv_touch_context(h, &cur, err);
    if (rc != KDH_OK)
        return rc;
    *again = cur == sc->program_counter + 1;
    return KDH_OK;
}

int hv_handle_hit(hv_t *h, kdh_err_t *err)
{
    const kdh_wire_state_change_t *sc = kdh_kd_state(h->c.kd);
    if (h->restop_check) {
        h->restop_check = 0;
        int again = 0;
        int rc = reported_again(h, sc, &again, err);
        if (rc != KDH_OK)
            return rc;
        if (again) {
            h->restops++;
            return hv_continue(h, KDH_WIRE_DBG_CONTINUE, err);
        }
    }
    double t_wall = hv_now_wall(), t0 = hv_now_mono();
    kdh_harvest_hit_cost_t cost;
    memset(&cost, 0, sizeof cost);
    kdh_wire_state_change_t scc = *sc; /* the state pointer dies when the target runs */
    hv_hit_begin(h, &scc);
    unsigned n = h->o->sample > 1 ? h->o->sample : 1;
    int capture = (h->hits - 1) % n == 0;
    int kind = KDH_STORE_HIT, rc, capped = 0, deferred = 0;
    uint64_t sid = 0;
    kdh_store_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.t = t_wall;
    ev.boot = h->boot;
    ev.cpu = scc.processor;
    ev.thread = scc.thread;
    memcpy(ev.tag, h->tag, 5);
    if (capture) {
        kdh_target_stack_t *s = malloc(sizeof *s);
        if (!s)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for a stack walk");
        rc = h->o->naive ? naive_capture(h, &scc, s, &cost, err) : fast_capture(h, &scc, s, &cost, err);
        if (rc == KDH_OK) {
            cost.frames = s->n_frames;
            cost.stack_end = kdh_unwind_stack_end(&s->u);
            uint64_t ret = s->n_frames > 1 ? s->frames[1].pc : 0;
            kind = classify(h, scc.program_counter, ret);
            rc = hv_log_stack(h, s, &sid, &capped, err);
        }
        ev.kind = (kdh_store_kind_t)kind;
        ev.has_sid = !capped;
        ev.sid = sid;
        /* leak accounting needs the walk (caller frame, stack words) while the stop lasts */
        if (rc == KDH_OK && h->o->pair && !capped && kind == KDH_STORE_FREE)
            hv_pair_free(h, &scc, s, &ev);
        if (rc == KDH_OK && h->o->pair && !capped && kind == KDH_STORE_ALLOC)
            deferred = hv_pair_alloc(h, &scc, s, &ev, err);
        free(s);
        if (rc != KDH_OK)
            return rc;
    } else {
        if ((rc = count_only(h, &scc, &kind, err)) != KDH_OK)
            return rc;
        ev.kind = (kdh_store_kind_t)kind;
    }
    hv_hit_end_t end = {.kind = kind, .captured = capture, .capped = capped, .deferred = deferred,
                        .logged_stack = capture, .sid = sid, .t_wall = t_wall, .t0 = t0,
                        .pc = scc.program_counter, .thread = scc.thread};
    return hv_finish_hit(h, &end, &ev, &cost, err);
}

void hv_hit_begin(hv_t *h, const kdh_wire_state_change_t *sc)
{
    /* the open hit reported again (a request of its handling cancelled) is the same hit:
     * counted once, with the same sampling decision */
    if (!h->hit_open || h->open_thread != sc->thread || h->open_pc != sc->program_counter) {
        h->hits++;
        h->pair.again = HV_AGAIN_NONE;
    }
    h->hit_open = 1;
    h->open_thread = sc->thread;
    h->open_pc = sc->program_counter;
}

int hv_finish_hit(hv_t *h, const hv_hit_end_t *x, kdh_store_event_t *ev, kdh_harvest_hit_cost_t *cost,
                  kdh_err_t *err)
{
    int rc = hv_continue(h, KDH_WIRE_DBG_CONTINUE, err);
    if (rc != KDH_OK)
        return rc;
    h->hit_open = 0;
    if (x->captured)
        h->captured++;
    else
        h->counted++;
    hv_stall_add(h, x->t0, hv_now_mono());
    if (x->kind == KDH_STORE_ALLOC)
        h->allocs++;
    else if (x->kind == KDH_STORE_FREE)
        h->frees++;
    else
        h->unknown++;
    h->last_hit_wall = x->t_wall;
    h->last_hit_mono = x->t0;
    h->last_pc = x->pc;
    h->last_thread = x->thread;
    if (x->logged_stack && !x->capped) {
        int fresh;
        uint64_t *count = sid_slot(&h->sids, x->sid, &fresh);
        if (!count)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for the stack set");
        (*count)++;
    }
    if (x->capped) {
        h->capped++;
    } else if (!x->deferred) { /* a deferred allocation is logged at its return */
        if ((rc = kdh_store_append_event(h->st, ev, NULL, err)) != KDH_OK)
            return rc;
    }
    cost->captured = x->captured;
    cost->kind = x->kind;
    hv_cost_report(h, cost);
    return KDH_OK;
}
