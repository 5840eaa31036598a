/* model.c: streaming run directories into the report's totals. Each event updates its tag, its
 * stack and (by address) the table of live allocations; nothing per event is kept, so a run of
 * ten million events costs memory only for its unique stacks and its still-live blocks. */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <xxhash.h>

#include "report_int.h"

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *n = realloc(*arr, (size_t)ncap * elem);
    if (!n)
        return -1;
    *arr = n;
    *cap = ncap;
    return 0;
}

const char *rep_str(const kdh_report_t *r, uint32_t i)
{
    return i < r->nstrs ? r->strs[i] : "";
}

/* Interns s; returns its index or NONE_IDX when out of memory. */
static uint32_t intern(kdh_report_t *r, const char *s, size_t len)
{
    uint64_t h = XXH3_64bits(s, len);
    uint64_t *v = kdh_u64map_get(&r->strmap, h);
    if (v && strlen(r->strs[*v]) == len && memcmp(r->strs[*v], s, len) == 0)
        return (uint32_t)*v;
    if (grow((void **)&r->strs, &r->capstrs, r->nstrs + 1, sizeof *r->strs) != 0)
        return NONE_IDX;
    char *c = malloc(len + 1);
    if (!c)
        return NONE_IDX;
    memcpy(c, s, len);
    c[len] = '\0';
    r->strs[r->nstrs] = c;
    if (!v && kdh_u64map_put(&r->strmap, h, r->nstrs, NULL) != 0) {
        free(c);
        return NONE_IDX;
    }
    return r->nstrs++; /* on a hash collision the string is kept but not findable: still correct */
}

static uint32_t intern_z(kdh_report_t *r, const char *s)
{
    return intern(r, s, strlen(s));
}

int kdh_report_new(kdh_report_t **out, const kdh_report_opts_t *opts, kdh_err_t *err)
{
    kdh_report_t *r = calloc(1, sizeof *r);
    if (!r)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory creating a report");
    if (opts)
        r->opts = *opts;
    r->last_tag = NONE_IDX;
    r->last_tb = NONE_IDX;
    *out = r;
    return KDH_OK;
}

void kdh_report_free(kdh_report_t *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->nstrs; i++)
        free(r->strs[i]);
    free(r->strs);
    for (uint32_t i = 0; i < r->nstacks; i++)
        free(r->stacks[i].frames);
    free(r->stacks);
    free(r->tags);
    free(r->pools);
    rep_live_clear(&r->live);
    free(r->tbs);
    free(r->tbhash);
    for (unsigned i = 0; i < r->nruns; i++) {
        free(r->runs[i].dir);
        free(r->runs[i].target);
        free(r->runs[i].tag);
        free(r->runs[i].source);
    }
    free(r->runs);
    kdh_u64map_free(&r->strmap);
    kdh_u64map_free(&r->modnames);
    kdh_u64map_free(&r->modinfomap);
    free(r->modinfo);
    rep_symbols_free(r);
    free(r->stackidx.slots);
    free(r);
}

/* ---- module and frame names ---- */

/* WinDbg's name for a module when the run did not record one: the file name without its
 * extension, and "nt" for every kernel image name. */
static void derive_modname(const char *key, char *out, size_t cap)
{
    size_t n = strcspn(key, "/");
    const char *dot = memchr(key, '.', n);
    if (dot)
        n = (size_t)(dot - key);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, key, n);
    out[n] = '\0';
    if (strncasecmp(out, "ntoskrnl", 8) == 0 || strncasecmp(out, "ntkrnl", 6) == 0 ||
        strncasecmp(out, "ntkrpa", 6) == 0 || strncasecmp(out, "ntkrla", 6) == 0)
        snprintf(out, cap, "nt");
}

static const char *modname(kdh_report_t *r, const char *key, char *buf, size_t cap)
{
    uint64_t *v = kdh_u64map_get(&r->modnames, XXH3_64bits(key, strlen(key)));
    if (v)
        return r->strs[*v];
    derive_modname(key, buf, cap);
    return buf;
}

/* Module part of a printed frame ("LeakDrv!A+0x19", "LeakDrv+0x1069"); NULL for a raw address. */
static int sym_module(const char *sym, char *out, size_t cap)
{
    if (!sym || !sym[0] || (sym[0] == '0' && (sym[1] == 'x' || sym[1] == 'X')) || isdigit((unsigned char)sym[0]))
        return 0;
    size_t n = strcspn(sym, "!+ ");
    if (n == 0 || n >= cap)
        return 0;
    memcpy(out, sym, n);
    out[n] = '\0';
    return 1;
}

/* Kernel, HAL and the pool allocator itself (Driver Verifier's thunks): never "the driver". */
static int is_system_module(const char *m)
{
    static const char *const exact[] = {"nt",      "hal",    "halmacpi", "halacpi",  "halaacpi",
                                        "halapic", "halmps", "halamps",  "verifier", "VerifierExt"};
    static const char *const prefix[] = {"ntoskrnl", "ntkrnl", "ntkrpa", "ntkrla"};
    for (size_t i = 0; i < KDH_ARRAY_LEN(exact); i++)
        if (strcasecmp(m, exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < KDH_ARRAY_LEN(prefix); i++)
        if (strncasecmp(m, prefix[i], strlen(prefix[i])) == 0)
            return 1;
    return 0;
}

static int on_module(void *ud, const kdh_store_module_t *m)
{
    kdh_report_t *r = ud;
    char buf[256];
    const char *name = m->name;
    if (!name || !name[0]) {
        derive_modname(m->key, buf, sizeof buf);
        name = buf;
    }
    uint64_t h = XXH3_64bits(m->key, strlen(m->key));
    uint32_t s = intern_z(r, name);
    if (s == NONE_IDX || kdh_u64map_put(&r->modnames, h, s, NULL) != 0)
        r->oom = 1;
    if ((m->pdb || m->guid) && !kdh_u64map_get(&r->modinfomap, h)) {
        if (grow((void **)&r->modinfo, &r->capmodinfo, r->nmodinfo + 1, sizeof *r->modinfo) != 0 ||
            kdh_u64map_put(&r->modinfomap, h, r->nmodinfo, NULL) != 0) {
            r->oom = 1;
            return 0;
        }
        rep_modinfo_t *mi = &r->modinfo[r->nmodinfo++];
        snprintf(mi->pdb, sizeof mi->pdb, "%s", m->pdb ? m->pdb : "");
        snprintf(mi->guid, sizeof mi->guid, "%s", m->guid ? m->guid : "");
        mi->age = m->age;
    }
    return 0;
}

const rep_modinfo_t *rep_modinfo(const kdh_report_t *r, const char *key)
{
    uint64_t *v = kdh_u64map_get(&r->modinfomap, XXH3_64bits(key, strlen(key)));
    return v ? &r->modinfo[*v] : NULL;
}

static inline size_t stack_slot(uint64_t sid, size_t mask)
{
    return (size_t)kdh_u64map_mix(sid) & mask; /* sids come from files: do not trust them to be hashes */
}

uint32_t rep_stack_find(const kdh_report_t *r, uint64_t sid)
{
    const rep_stackidx_t *t = &r->stackidx;
    if (!t->cap)
        return NONE_IDX;
    size_t mask = t->cap - 1;
    uint32_t check = (uint32_t)(sid >> 32);
    for (size_t i = stack_slot(sid, mask);; i = (i + 1) & mask) {
        uint32_t idx1 = t->slots[2 * i + 1];
        if (idx1 == 0)
            return NONE_IDX;
        if (t->slots[2 * i] == check && r->stacks[idx1 - 1].sid == sid)
            return idx1 - 1;
    }
}

static int stackidx_put(kdh_report_t *r, uint64_t sid, uint32_t idx)
{
    rep_stackidx_t *t = &r->stackidx;
    if ((t->count + 1) * 2 > t->cap) { /* at most half full */
        size_t ncap = t->cap ? t->cap * 2 : 1024;
        uint32_t *ns = calloc(ncap, 2 * sizeof *ns);
        if (!ns)
            return -1;
        for (size_t j = 0; j < t->cap; j++) {
            uint32_t idx1 = t->slots[2 * j + 1];
            if (!idx1)
                continue;
            size_t i = stack_slot(r->stacks[idx1 - 1].sid, ncap - 1);
            while (ns[2 * i + 1])
                i = (i + 1) & (ncap - 1);
            ns[2 * i] = t->slots[2 * j];
            ns[2 * i + 1] = idx1;
        }
        free(t->slots);
        t->slots = ns;
        t->cap = ncap;
    }
    size_t i = stack_slot(sid, t->cap - 1);
    while (t->slots[2 * i + 1])
        i = (i + 1) & (t->cap - 1);
    t->slots[2 * i] = (uint32_t)(sid >> 32);
    t->slots[2 * i + 1] = idx + 1;
    t->count++;
    return 0;
}

_Static_assert(sizeof(rstack_t) == 128 && offsetof(rstack_t, hits) == 64, "rstack_t: hot half in one cache line");

/* The stack array, 64-byte aligned so each entry's hot half is one cache line. */
static int grow_stacks(kdh_report_t *r)
{
    if (r->nstacks < r->capstacks)
        return 0;
    if (r->nstacks >= NONE_IDX - 1)
        return -1;
    uint32_t ncap = r->capstacks ? r->capstacks * 2 : 64;
    rstack_t *n = aligned_alloc(64, (size_t)ncap * sizeof *n);
    if (!n)
        return -1;
    if (r->nstacks)
        memcpy(n, r->stacks, (size_t)r->nstacks * sizeof *n);
    free(r->stacks);
    r->stacks = n;
    r->capstacks = ncap;
    return 0;
}

static uint32_t new_stack(kdh_report_t *r, uint64_t sid)
{
    if (grow_stacks(r) != 0) {
        r->oom = 1;
        return NONE_IDX;
    }
    r->stacks[r->nstacks].sid = sid; /* the index reads it when it grows */
    if (stackidx_put(r, sid, r->nstacks) != 0) {
        r->oom = 1;
        return NONE_IDX;
    }
    rstack_t *s = &r->stacks[r->nstacks];
    memset(s, 0, sizeof *s);
    s->sid = sid;
    s->driver = intern_z(r, "(stack not in stacks.jsonl)");
    return r->nstacks++;
}

static int on_stack(void *ud, uint64_t sid, const kdh_store_frame_t *f, size_t n)
{
    kdh_report_t *r = ud;
    uint32_t idx = rep_stack_find(r, sid);
    if (idx != NONE_IDX) {
        if (r->stacks[idx].known)
            return 0; /* the same stack from another run: identity is the sid */
    } else if ((idx = new_stack(r, sid)) == NONE_IDX) {
        return 0;
    }
    rstack_t *s = &r->stacks[idx];
    s->frames = calloc(n ? n : 1, sizeof *s->frames);
    if (!s->frames) {
        r->oom = 1;
        return 0;
    }
    s->known = 1;
    s->nframes = (uint32_t)n;
    s->driver = NONE_IDX;
    int all_system = n > 0;
    for (size_t i = 0; i < n; i++) {
        char text[1200], modbuf[256]; /* mod may point into modbuf until the end of the iteration */
        const char *mod = NULL;
        if (f[i].mod)
            mod = modname(r, f[i].mod, modbuf, sizeof modbuf);
        else if (sym_module(f[i].sym, modbuf, sizeof modbuf))
            mod = modbuf;
        if (f[i].mod && f[i].has_rva && rep_symbolize(r, f[i].mod, mod, f[i].rva, text, sizeof text))
            ; /* named from the module's PDB (--symbols) */
        else if (f[i].sym && f[i].sym[0])
            snprintf(text, sizeof text, "%s", f[i].sym);
        else if (mod && f[i].has_rva)
            snprintf(text, sizeof text, "%s+0x%" PRIx64, mod, f[i].rva);
        else if (f[i].has_addr)
            snprintf(text, sizeof text, "0x%" PRIx64, f[i].addr);
        else
            snprintf(text, sizeof text, "?");
        s->frames[i] = intern_z(r, text);
        if (s->driver == NONE_IDX && mod && !is_system_module(mod)) {
            s->driver = intern_z(r, mod);
            all_system = 0;
        } else if (!mod) {
            all_system = 0;
        }
    }
    if (s->driver == NONE_IDX)
        s->driver = intern_z(r, n == 0 ? "(empty stack)" : all_system ? "nt" : "(unknown module)");
    return 0;
}

static rtag_t *get_tag(kdh_report_t *r, const char tag[5])
{
    if (r->last_tag != NONE_IDX && memcmp(r->tags[r->last_tag].tag, tag, 4) == 0)
        return &r->tags[r->last_tag];
    for (uint32_t i = 0; i < r->ntags; i++)
        if (memcmp(r->tags[i].tag, tag, 4) == 0) {
            r->last_tag = i;
            return &r->tags[i];
        }
    if (grow((void **)&r->tags, &r->captags, r->ntags + 1, sizeof *r->tags) != 0) {
        r->oom = 1;
        return NULL;
    }
    r->last_tag = r->ntags;
    rtag_t *t = &r->tags[r->ntags++];
    memset(t, 0, sizeof *t);
    memcpy(t->tag, tag, 4);
    return t;
}

static void stack_out(kdh_report_t *r, uint32_t st, int64_t count, int64_t bytes)
{
    if (st == NONE_IDX)
        return;
    r->stacks[st].out_count += count;
    r->stacks[st].out_bytes += bytes;
}

/* Ends a live allocation: its stack and tag no longer count it as outstanding. */
static void retire(kdh_report_t *r, rlive_t *l)
{
    const rep_tb_t *c = &r->tbs[l->tb];
    stack_out(r, l->stack, -1, -(int64_t)c->size);
    rtag_t *t = &r->tags[c->tag];
    t->out_count--;
    t->out_bytes -= (int64_t)c->size;
    rep_live_remove(&r->live, r->tbs, l);
}

static int on_event(void *ud, const kdh_store_event_t *ev)
{
    kdh_report_t *r = ud;
    r->events++;
    r->runs[r->nruns - 1].events++;
    if (r->opts.tag[0] && memcmp(ev->tag, r->opts.tag, 4) != 0)
        return 0;
    if ((r->opts.since > 0 && ev->t < r->opts.since) || (r->opts.until > 0 && ev->t > r->opts.until))
        return 0;
    rtag_t *t = get_tag(r, ev->tag);
    if (!t)
        return 0;
    uint32_t ti = (uint32_t)(t - r->tags);
    r->events_used++;
    if (t->allocs + t->frees + t->hits == 0 || ev->t < t->first)
        t->first = ev->t;
    if (ev->t > t->last)
        t->last = ev->t;
    uint32_t st = NONE_IDX;
    if (ev->has_sid) {
        st = rep_stack_find(r, ev->sid);
        if (st == NONE_IDX)
            st = new_stack(r, ev->sid);
        if (st != NONE_IDX) {
            rstack_t *s = &r->stacks[st];
            if (!s->seen || ev->t < s->first)
                s->first = ev->t;
            s->seen = 1;
            if (ev->t > s->last)
                s->last = ev->t;
        }
    }
    uint64_t size = ev->has_size ? ev->size : 0;
    switch (ev->kind) {
    case KDH_STORE_ALLOC:
        t->allocs++;
        r->allocs_used++;
        r->allocs_sized += ev->has_size;
        t->alloc_bytes += size;
        t->out_count++;
        t->out_bytes += (int64_t)size;
        if (st != NONE_IDX) {
            r->stacks[st].allocs++;
            r->stacks[st].alloc_bytes += size;
        }
        stack_out(r, st, 1, (int64_t)size);
        if (ev->has_addr) {
            rlive_t *slot = rep_live_find(&r->live, r->tbs, ev->addr, ev->boot);
            if (slot) { /* the block at this address was freed without our seeing it */
                t->reused++;
                retire(r, slot);
            }
            rlive_t blk = {ev->addr, st, rep_live_class(r, ti, ev->boot, size)};
            if (blk.tb == NONE_IDX || rep_live_add(&r->live, r->tbs, &blk) != 0)
                r->oom = 1;
        }
        break;
    case KDH_STORE_FREE:
        t->frees++;
        if (ev->has_addr) {
            rlive_t *slot = rep_live_find(&r->live, r->tbs, ev->addr, ev->boot);
            if (slot) {
                t->paired++;
                if (slot->stack != NONE_IDX)
                    r->stacks[slot->stack].frees_paired++;
                retire(r, slot);
            } else {
                t->unpaired++; /* allocated before the run (or before --since) */
            }
        } else {
            t->addrless++;
            t->out_count--;
            t->out_bytes -= (int64_t)size;
        }
        break;
    default:
        t->hits++;
        if (st != NONE_IDX)
            r->stacks[st].hits++;
        break;
    }
    if (ev->kind != KDH_STORE_HIT)
        rep_series_add2(&t->series, &t->series_count, ev->t, t->out_bytes, t->out_count);
    return 0;
}

/* Events arrive here 16 ahead of on_event. Stage 1 prefetches the event's sid-index slot and its
 * live-block slot; stage 2 reads the slot of the event hinted 8 earlier (in cache by now) and
 * prefetches that stack's entry. Every lookup would otherwise wait on a cache miss: the tables are
 * far larger than the caches and touched at random. */
static void on_event_ahead(void *ud, const kdh_store_event_t *ev)
{
    kdh_report_t *r = ud;
    const rep_stackidx_t *t = &r->stackidx;
    if (ev->has_addr)
        rep_live_prefetch(&r->live, ev->addr, ev->boot);
    if (!t->cap)
        return;
    size_t mask = t->cap - 1;
    if (ev->has_sid)
        __builtin_prefetch(&t->slots[2 * stack_slot(ev->sid, mask)]);
    r->ahead_sids[r->ahead_n++ & 15] = ev->has_sid ? ev->sid : 0;
    uint64_t sid = r->ahead_sids[(r->ahead_n - 8) & 15];
    if (!sid || r->ahead_n < 8)
        return;
    size_t i = stack_slot(sid, mask);
    uint32_t check = (uint32_t)(sid >> 32), idx1 = t->slots[2 * i + 1];
    if (idx1 && t->slots[2 * i] == check) /* the first probe only: enough for a hint */
        __builtin_prefetch(&r->stacks[idx1 - 1], 1);
}

static int on_pool(void *ud, const kdh_store_pool_t *p)
{
    kdh_report_t *r = ud;
    if (r->opts.tag[0] && memcmp(p->tag, r->opts.tag, 4) != 0)
        return 0;
    if ((r->opts.since > 0 && p->t < r->opts.since) || (r->opts.until > 0 && p->t > r->opts.until))
        return 0;
    uint32_t pool = intern_z(r, p->pool ? p->pool : "");
    rpool_t *e = NULL;
    for (uint32_t i = 0; i < r->npools; i++)
        if (memcmp(r->pools[i].tag, p->tag, 4) == 0 && r->pools[i].pool == pool)
            e = &r->pools[i];
    if (!e) {
        if (grow((void **)&r->pools, &r->cappools, r->npools + 1, sizeof *r->pools) != 0) {
            r->oom = 1;
            return 0;
        }
        e = &r->pools[r->npools++];
        memset(e, 0, sizeof *e);
        memcpy(e->tag, p->tag, 4);
        e->pool = pool;
        e->first_t = p->t;
        e->first_bytes = p->bytes;
        e->boot = p->boot;
        e->boots = 1;
    } else if (p->boot != e->boot) {
        /* The drop to a new boot's usage is neither growth nor shrink: the new boot's samples
         * continue from the last value of the one before. */
        e->shift = e->joined_last - (p->bytes > INT64_MAX ? INT64_MAX : (int64_t)p->bytes);
        e->boot = p->boot;
        e->boots++;
    }
    e->samples++;
    e->last_t = p->t;
    e->last_bytes = p->bytes;
    if (p->bytes > e->peak_bytes)
        e->peak_bytes = p->bytes;
    e->joined_last = (p->bytes > INT64_MAX ? INT64_MAX : (int64_t)p->bytes) + e->shift;
    kdh_report_series_add(&e->series, p->t, e->joined_last);
    return 0;
}

static int on_gap(void *ud, const kdh_store_gap_t *g)
{
    kdh_report_t *r = ud;
    r->gaps++;
    if (g->t1 > g->t0)
        r->gap_seconds += g->t1 - g->t0;
    return 0;
}

static void on_skip(void *ud, const char *file, uint64_t line, const char *why)
{
    kdh_report_t *r = ud;
    r->skipped++;
    if (r->nnotes < SKIP_NOTES)
        snprintf(r->notes[r->nnotes++], sizeof r->notes[0], "%s/%s:%" PRIu64 ": %s", r->runs[r->nruns - 1].dir,
                 file, line, why);
}

static char *dup_json_str(const json_t *meta, const char *k)
{
    const char *s = json_string_value(json_object_get(meta, k));
    return s ? strdup(s) : NULL;
}

static int on_meta(void *ud, const json_t *meta)
{
    kdh_report_t *r = ud;
    rrun_t *run = &r->runs[r->nruns - 1];
    run->target = dup_json_str(meta, "target");
    run->tag = dup_json_str(meta, "tag");
    run->source = dup_json_str(meta, "source");
    return 0;
}

int kdh_report_add_run(kdh_report_t *r, const char *dir, kdh_err_t *err)
{
    return kdh_report_add_run_extent(r, dir, NULL, err);
}

int kdh_report_add_run_extent(kdh_report_t *r, const char *dir, const kdh_store_extent_t *upto, kdh_err_t *err)
{
    rrun_t *runs = realloc(r->runs, (r->nruns + 1) * sizeof *runs);
    if (!runs)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory adding run %s", dir);
    r->runs = runs;
    memset(&runs[r->nruns], 0, sizeof runs[0]);
    runs[r->nruns].dir = strdup(dir);
    r->nruns++;
    /* Addresses pair only inside one run: blocks still live in the previous run stay counted as
     * outstanding in its stacks and tags, and need no slot any more. */
    rep_live_clear(&r->live);
    kdh_store_reader_t rd = {r, on_meta, on_module, on_stack, on_event, on_pool, on_gap, on_skip};
    int rc = kdh_store_read_extent(dir, &rd, on_event_ahead, upto, NULL, err);
    if (rc != KDH_OK) {
        r->nruns--;
        free(runs[r->nruns].dir);
        free(runs[r->nruns].target);
        free(runs[r->nruns].tag);
        free(runs[r->nruns].source);
        return rc;
    }
    if (r->oom)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory while reading %s", dir);
    return KDH_OK;
}

/* ---- the measure: bytes when (nearly) every allocation has a size, else allocations ----
 * A --pair run ends with an allocation logged at the detach before its return was seen, and a
 * big-page block has no pool header to size it: a handful of unsized allocations must not throw
 * away the bytes of all the others. One per run plus 1 in 100 without a size still rank by bytes
 * (text and HTML say how many add no bytes, folded says it on stderr, JSON gives both counts;
 * CSV has no place for it); more than that (a run without sizes merged in,
 * hittag without --pair) ranks by outstanding count, where every allocation weighs the same. */

int kdh_report_sizes_known(const kdh_report_t *r)
{
    uint64_t unsized = r->allocs_used - r->allocs_sized;
    return r->allocs_sized > 0 && unsized * 100 <= r->allocs_used + 100 * (uint64_t)r->nruns;
}

kdh_report_value_t kdh_report_value_used(const kdh_report_t *r, kdh_report_value_t v)
{
    return v == KDH_REPORT_VALUE_OUTSTANDING && !kdh_report_sizes_known(r) ? KDH_REPORT_VALUE_OUT_COUNT : v;
}

const char *kdh_report_value_name(kdh_report_value_t v)
{
    switch (v) {
    case KDH_REPORT_VALUE_COUNT: return "allocations";
    case KDH_REPORT_VALUE_BYTES: return "allocated_bytes";
    case KDH_REPORT_VALUE_OUT_COUNT: return "outstanding_count";
    default: return "outstanding_bytes";
    }
}

const kdh_report_series_t *rep_tag_series(const kdh_report_t *r, const rtag_t *t)
{
    return kdh_report_sizes_known(r) ? &t->series : &t->series_count;
}

/* ---- orderings ---- */

int64_t rep_stack_value(const rstack_t *s, kdh_report_value_t v)
{
    switch (v) {
    case KDH_REPORT_VALUE_COUNT:
        return (int64_t)s->allocs;
    case KDH_REPORT_VALUE_BYTES:
        return (int64_t)s->alloc_bytes;
    case KDH_REPORT_VALUE_OUT_COUNT:
        return s->out_count > 0 ? s->out_count : 0;
    default:
        return s->out_bytes > 0 ? s->out_bytes : 0;
    }
}

typedef struct sort_ctx {
    const kdh_report_t *r;
    kdh_report_value_t v;
} sort_ctx_t;

static int cmp_stack(const void *a, const void *b, void *arg)
{
    const sort_ctx_t *c = arg;
    const rstack_t *x = &c->r->stacks[*(const uint32_t *)a], *y = &c->r->stacks[*(const uint32_t *)b];
    int64_t vx = rep_stack_value(x, c->v), vy = rep_stack_value(y, c->v);
    if (vx != vy)
        return vx > vy ? -1 : 1;
    /* Ties: more outstanding count, then more allocations, then sid for a stable order. */
    if (x->out_count != y->out_count)
        return x->out_count > y->out_count ? -1 : 1;
    if (x->allocs != y->allocs)
        return x->allocs > y->allocs ? -1 : 1;
    return x->sid < y->sid ? -1 : x->sid > y->sid;
}

uint32_t *rep_sorted_stacks(const kdh_report_t *r, kdh_report_value_t v, uint32_t *n)
{
    uint32_t *idx = malloc((r->nstacks ? r->nstacks : 1) * sizeof *idx), k = 0;
    if (!idx) {
        *n = 0;
        return NULL;
    }
    for (uint32_t i = 0; i < r->nstacks; i++) {
        const rstack_t *s = &r->stacks[i];
        if (s->allocs + s->hits + s->frees_paired == 0)
            continue;
        if (r->opts.min_count && s->allocs + s->hits < r->opts.min_count)
            continue;
        idx[k++] = i;
    }
    sort_ctx_t c = {r, kdh_report_value_used(r, v)};
    qsort_r(idx, k, sizeof *idx, cmp_stack, &c);
    *n = k;
    return idx;
}

int64_t rep_driver_value(const rdriver_t *d, kdh_report_value_t v)
{
    switch (v) {
    case KDH_REPORT_VALUE_COUNT: return (int64_t)d->allocs;
    case KDH_REPORT_VALUE_BYTES: return (int64_t)d->alloc_bytes;
    case KDH_REPORT_VALUE_OUT_COUNT: return d->out_count;
    default: return d->out_bytes;
    }
}

static int cmp_driver(const void *a, const void *b, void *arg)
{
    const sort_ctx_t *c = arg;
    const rdriver_t *x = a, *y = b;
    int64_t vx = rep_driver_value(x, c->v), vy = rep_driver_value(y, c->v);
    if (vx != vy)
        return vx > vy ? -1 : 1;
    /* Ties (no sizes with --value bytes, equal bytes): more outstanding, then more allocations. */
    if (x->out_count != y->out_count)
        return x->out_count > y->out_count ? -1 : 1;
    if (x->allocs != y->allocs)
        return x->allocs > y->allocs ? -1 : 1;
    return strcmp(c->r->strs[x->name], c->r->strs[y->name]);
}

rdriver_t *rep_drivers(const kdh_report_t *r, kdh_report_value_t v, uint32_t *n)
{
    rdriver_t *d = NULL;
    uint32_t nd = 0, cap = 0;
    kdh_u64map_t m = {0};
    for (uint32_t i = 0; i < r->nstacks; i++) {
        const rstack_t *s = &r->stacks[i];
        if (s->allocs + s->hits + s->frees_paired == 0)
            continue;
        if (r->opts.min_count && s->allocs + s->hits < r->opts.min_count)
            continue; /* the roll-up covers the stacks the lists show */
        uint64_t *slot = kdh_u64map_get(&m, s->driver);
        uint32_t k;
        if (slot) {
            k = (uint32_t)*slot;
        } else {
            if (grow((void **)&d, &cap, nd + 1, sizeof *d) != 0 || kdh_u64map_put(&m, s->driver, nd, NULL) != 0)
                break;
            k = nd++;
            memset(&d[k], 0, sizeof d[k]);
            d[k].name = s->driver;
        }
        /* d holds every index the map gives out (an entry is added only after d grew) */
        d[k].stacks++; /* NOLINT(clang-analyzer-core.NullDereference) */
        d[k].allocs += s->allocs;
        d[k].alloc_bytes += s->alloc_bytes;
        d[k].out_count += s->out_count > 0 ? s->out_count : 0;
        d[k].out_bytes += s->out_bytes > 0 ? s->out_bytes : 0;
    }
    kdh_u64map_free(&m);
    sort_ctx_t c = {r, kdh_report_value_used(r, v)};
    if (nd)
        qsort_r(d, nd, sizeof *d, cmp_driver, &c);
    *n = nd;
    return d;
}

void rep_time(double t, char *buf, size_t cap)
{
    if (!(t > 0)) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t s = (time_t)floor(t);
    struct tm tm;
    gmtime_r(&s, &tm);
    int ms = (int)((t - floor(t)) * 1000.0);
    char b[40];
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03dZ", b, ms > 999 ? 999 : ms);
}
