/* writer.c: kdh_ingest_run: feeds each input file through one parser and writes what it finds
 * into a run directory through kdh_store: modules by bare name, stacks interned (the same sid
 * rule as a live harvest), one event per hit with "src":"file:line", pool samples per snapshot. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "kdh/store.h"

/* Stacks already interned, by the parsed frames that determine their id: a log repeats a few
 * stacks thousands of times, and a repeat then costs one hash and one compare instead of module
 * lookups per frame, the canonical text and its hash. Two slots per key, the one used less recently
 * replaced; a miss just interns again.
 * Measured (callgrind, bench_ingest over a 10 MB log, 3820 stacks): the ingest pass takes 334 M
 * instructions with the cache and 386 M without (12 k per stack saved, 13% of the pass). */
#define SIDC_SLOTS 4096
typedef struct sidc_slot {
    uint64_t hash;
    char *key;
    size_t len;
    uint64_t sid;
    uint64_t used; /* when it last answered: of a key's two slots, the older is replaced */
} sidc_slot_t;

/* Hits per stack id: open addressing, grown at half load. */
typedef struct hitmap {
    kdh_ingest_top_t *slot;
    size_t cap, n;
} hitmap_t;

static kdh_ingest_top_t *hit_slot(hitmap_t *m, uint64_t sid)
{
    size_t i = (size_t)(sid ^ (sid >> 29)) & (m->cap - 1);
    while (m->slot[i].hits && m->slot[i].sid != sid)
        i = (i + 1) & (m->cap - 1);
    return &m->slot[i];
}

static int system_frame(const kdh_ingest_frame_t *f)
{
    static const char *const mods[] = {"nt", "hal", "VerifierExt", "verifier", "kmautofail"};
    for (size_t i = 0; i < KDH_ARRAY_LEN(mods); i++)
        if (f->mod_len == strlen(mods[i]) && strncmp(f->sym, mods[i], f->mod_len) == 0)
            return 1;
    return 0;
}

static int hit_add(hitmap_t *m, uint64_t sid, const kdh_ingest_stack_t *st)
{
    if (2 * (m->n + 1) > m->cap) {
        hitmap_t g = {calloc(m->cap ? m->cap * 2 : 1024, sizeof *m->slot), m->cap ? m->cap * 2 : 1024, 0};
        if (!g.slot)
            return KDH_ENOMEM;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slot[i].hits) {
                *hit_slot(&g, m->slot[i].sid) = m->slot[i];
                g.n++;
            }
        free(m->slot);
        *m = g;
    }
    kdh_ingest_top_t *t = hit_slot(m, sid);
    if (!t->hits) {
        t->sid = sid;
        t->kind = st->kind;
        /* label: the first frame outside the pool routines, the kernel and the verifier shims:
         * the driver that allocated; the top frame when there is none */
        size_t k = 0;
        while (k < st->nframes && (kdh_ingest_pool_routine(&st->frames[k]) >= 0 || system_frame(&st->frames[k])))
            k++;
        if (k == st->nframes)
            k = 0;
        const char *lab = st->nframes ? st->frames[k].sym : "";
        size_t ll = strnlen(lab, sizeof t->label - 1);
        memcpy(t->label, lab, ll); /* cut to the label's room */
        t->label[ll] = 0;
        m->n++;
    }
    t->hits++;
    return KDH_OK;
}

static void hit_top(const hitmap_t *m, kdh_ingest_totals_t *t)
{
    t->ntop = 0;
    for (size_t i = 0; i < m->cap; i++) {
        const kdh_ingest_top_t *e = &m->slot[i];
        if (!e->hits)
            continue;
        unsigned pos = t->ntop;
        while (pos > 0 && (t->top[pos - 1].hits < e->hits ||
                           (t->top[pos - 1].hits == e->hits && t->top[pos - 1].sid > e->sid)))
            pos--;
        if (pos >= KDH_INGEST_TOP)
            continue;
        unsigned last = t->ntop < KDH_INGEST_TOP ? t->ntop : KDH_INGEST_TOP - 1;
        memmove(&t->top[pos + 1], &t->top[pos], (last - pos) * sizeof t->top[0]);
        t->top[pos] = *e;
        if (t->ntop < KDH_INGEST_TOP)
            t->ntop++;
    }
}

typedef struct writer {
    hitmap_t hits;
    kdh_store_t *store;
    const char *file; /* base name of the current input */
    uint64_t tag_votes[8];
    char tags[8][5];
    size_t ntags;
    kdh_store_frame_t *sf;
    char (*modbuf)[KDH_INGEST_SYM_MAX];
    sidc_slot_t *sidc;
    uint64_t sidc_clock;
    char *key; /* the frames' identity text of the current stack */
    size_t key_cap;
    int out_failed; /* writing the run failed (the store, or memory): the run stops */
} writer_t;

/* Everything of the parsed frames the stack id depends on, as one byte string in w->key: per
 * frame its form, module length, offset or address, and the callsite text. */
static int stack_key(writer_t *w, const kdh_ingest_stack_t *st, size_t *len)
{
    size_t need = 0;
    for (size_t i = 0; i < st->nframes; i++)
        need += 1 + sizeof(size_t) + 8 + st->frames[i].sym_len + 1;
    if (need > w->key_cap) {
        char *k = realloc(w->key, need);
        if (!k)
            return KDH_ENOMEM;
        w->key = k;
        w->key_cap = need;
    }
    size_t n = 0;
    for (size_t i = 0; i < st->nframes; i++) {
        const kdh_ingest_frame_t *f = &st->frames[i];
        uint64_t v = f->form == KDH_INGEST_CS_ADDR ? f->addr : f->has_off ? f->off : UINT64_MAX;
        size_t sl = f->sym_len;
        w->key[n++] = (char)f->form;
        memcpy(w->key + n, &f->mod_len, sizeof f->mod_len);
        n += sizeof f->mod_len;
        memcpy(w->key + n, &v, 8);
        n += 8;
        memcpy(w->key + n, f->sym, sl + 1);
        n += sl + 1;
    }
    *len = n;
    return KDH_OK;
}

/* Every frame names its module; the store writes each (name, boot) once. */
static int add_module(writer_t *w, const char *name, kdh_err_t *err)
{
    kdh_store_module_t m;
    memset(&m, 0, sizeof m);
    m.key = name;
    m.name = name;
    m.boot = 1;
    return kdh_store_add_module(w->store, &m, err);
}

static void vote_tag(writer_t *w, const char *tag)
{
    for (size_t i = 0; i < w->ntags; i++)
        if (strcmp(w->tags[i], tag) == 0) {
            w->tag_votes[i]++;
            return;
        }
    if (w->ntags < 8) {
        memcpy(w->tags[w->ntags], tag, 5);
        w->tag_votes[w->ntags++] = 1;
    }
}

/* "file:line" into out (cap > 0), cut to cap - 1 bytes like snprintf: this runs once per event,
 * and printf's format parsing was a visible share of an ingest. */
static void format_src(char *out, size_t cap, const char *file, uint64_t line)
{
    char digits[24];
    size_t nd = 0;
    do {
        digits[sizeof digits - 1 - nd++] = (char)('0' + line % 10);
        line /= 10;
    } while (line);
    size_t k = 0;
    for (const char *c = file; *c && k + 1 < cap; c++)
        out[k++] = *c;
    if (k + 1 < cap)
        out[k++] = ':';
    for (size_t i = 0; i < nd && k + 1 < cap; i++)
        out[k++] = digits[sizeof digits - nd + i];
    out[k] = 0;
}

static int intern(writer_t *w, const kdh_ingest_stack_t *st, uint64_t *sid, kdh_err_t *err);
static int on_event(writer_t *w, const kdh_ingest_stack_t *st, uint64_t sid, kdh_err_t *err);

static int on_stack(void *ud, const kdh_ingest_stack_t *st, kdh_err_t *err)
{
    writer_t *w = ud;
    size_t klen;
    if (stack_key(w, st, &klen))
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for a stack's identity");
    uint64_t kh = XXH3_64bits(w->key, klen), sid;
    /* two places a key may be in: with one, two stacks of a log that took the same slot pushed
     * each other out at every turn (a twentieth of the stacks went through intern again) */
    sidc_slot_t *a = &w->sidc[kh & (SIDC_SLOTS - 1)], *b = &w->sidc[(kh >> 32) & (SIDC_SLOTS - 1)], *slot = NULL;
    if (a->key && a->hash == kh && a->len == klen && memcmp(a->key, w->key, klen) == 0)
        slot = a;
    else if (b->key && b->hash == kh && b->len == klen && memcmp(b->key, w->key, klen) == 0)
        slot = b;
    if (slot) {
        sid = slot->sid;
        slot->used = ++w->sidc_clock;
    } else {
        slot = !a->key ? a : !b->key ? b : a->used <= b->used ? a : b;
        int rc = intern(w, st, &sid, err);
        if (rc)
            return rc;
        free(slot->key);
        slot->key = malloc(klen ? klen : 1);
        if (!slot->key)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for a stack's identity");
        memcpy(slot->key, w->key, klen);
        slot->hash = kh;
        slot->len = klen;
        slot->sid = sid;
        slot->used = ++w->sidc_clock;
    }
    return on_event(w, st, sid, err);
}

/* Modules and the stack into the store (written the first time each is seen). */
static int intern(writer_t *w, const kdh_ingest_stack_t *st, uint64_t *sid, kdh_err_t *err)
{
    int rc;
    for (size_t i = 0; i < st->nframes; i++) {
        const kdh_ingest_frame_t *f = &st->frames[i];
        kdh_store_frame_t *o = &w->sf[i];
        memset(o, 0, sizeof *o);
        /* A raw address keeps no text: its identity is "?:addr", as in a live harvest. */
        o->sym = f->form == KDH_INGEST_CS_ADDR ? NULL : f->sym;
        o->is_inline = f->is_inline;
        if (f->has_addr)
            o->addr = f->addr, o->has_addr = 1;
        if (f->form != KDH_INGEST_CS_ADDR) {
            memcpy(w->modbuf[i], f->sym, f->mod_len);
            w->modbuf[i][f->mod_len] = 0;
            o->mod = w->modbuf[i];
            if ((rc = add_module(w, o->mod, err)))
                return rc;
            if (f->form == KDH_INGEST_CS_MODOFF && f->has_off)
                o->rva = f->off, o->has_rva = 1;
        }
    }
    return kdh_store_intern_stack(w->store, w->sf, st->nframes, sid, err);
}

static int on_event(writer_t *w, const kdh_ingest_stack_t *st, uint64_t sid, kdh_err_t *err)
{
    if (st->repeat)
        return KDH_OK;
    if (hit_add(&w->hits, sid, st))
        return kdh_err_set(err, KDH_ENOMEM, "out of memory counting hits per stack");
    kdh_store_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.t = st->has_t ? st->t : 0; /* 0: the file shows no clock */
    ev.boot = 1;
    ev.cpu = st->cpu;
    ev.thread = st->thread;
    ev.kind = st->kind == KDH_INGEST_EV_ALLOC  ? KDH_STORE_ALLOC
              : st->kind == KDH_INGEST_EV_FREE ? KDH_STORE_FREE
                                               : KDH_STORE_HIT;
    if (st->tag[0]) {
        memcpy(ev.tag, st->tag, 5);
        vote_tag(w, st->tag);
    } else {
        strcpy(ev.tag, "?"); /* the log does not show the tag; the store needs one */
    }
    if (st->has_size)
        ev.size = st->size, ev.has_size = 1;
    if (st->has_addr)
        ev.addr = st->addr, ev.has_addr = 1;
    ev.sid = sid;
    ev.has_sid = 1;
    char src[600];
    format_src(src, sizeof src, w->file, st->line);
    ev.src = src;
    return kdh_store_append_event(w->store, &ev, NULL, err);
}

static int on_sample(void *ud, const kdh_ingest_sample_t *s, kdh_err_t *err)
{
    writer_t *w = ud;
    kdh_store_pool_t p;
    memset(&p, 0, sizeof p);
    /* t is the snapshot's ordinal, which orders the series: a log's clock ("Debug session
     * time:") is printed once per session, not per snapshot, and would give a whole series one t */
    p.t = (double)s->snapshot;
    p.boot = 1;
    size_t tl = strnlen(s->tag, sizeof p.tag - 1);
    memcpy(p.tag, s->tag, tl); /* cut to the store's room */
    p.tag[tl] = 0;
    p.pool = s->pool;
    p.allocs = s->allocs;
    p.frees = s->frees;
    p.bytes = s->bytes;
    return kdh_store_append_pool(w->store, &p, err);
}

/* The parser's sink. A failure here is the run's, never the input's, though both may be
 * KDH_EIO: it is marked so that kdh_ingest_run stops instead of going on with the next file. */
static int sink_stack(void *ud, const kdh_ingest_stack_t *st, kdh_err_t *err)
{
    writer_t *w = ud;
    int rc = on_stack(w, st, err);
    if (rc)
        w->out_failed = 1;
    return rc;
}

static int sink_sample(void *ud, const kdh_ingest_sample_t *s, kdh_err_t *err)
{
    writer_t *w = ud;
    int rc = on_sample(w, s, err);
    if (rc)
        w->out_failed = 1;
    return rc;
}

unsigned kdh_ingest_kind_parse(const char *s)
{
    static const struct {
        const char *name;
        unsigned mask;
    } kinds[] = {{"auto", KDH_INGEST_AUTO},
                 {"kd", KDH_INGEST_KD},
                 {"verifier", KDH_INGEST_VERIFIER},
                 {"poolmon", KDH_INGEST_POOLMON},
                 {"poolused", KDH_INGEST_POOLUSED}};
    for (size_t i = 0; s && i < KDH_ARRAY_LEN(kinds); i++)
        if (strcmp(s, kinds[i].name) == 0)
            return kinds[i].mask;
    return 0;
}

static int write_meta(writer_t *w, const kdh_ingest_opts_t *o, const kdh_ingest_totals_t *t, kdh_err_t *err)
{
    json_t *m = json_object();
    json_t *inputs = json_array();
    json_t *counters = json_object();
    if (!m || !inputs || !counters) {
        json_decref(m);
        json_decref(inputs);
        json_decref(counters);
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for meta.json");
    }
    for (size_t i = 0; i < o->nfiles; i++)
        json_array_append_new(inputs, json_string(o->files[i]));
    const char *base = strrchr(o->out_dir, '/');
    base = (base && base[1]) ? base + 1 : o->out_dir;
    json_object_set_new(m, "run_id", json_string(base));
    json_object_set_new(m, "target", json_string("ingest"));
    json_object_set_new(m, "source", json_string("ingest"));
    json_object_set_new(m, "mode", json_string("ingest"));
    size_t best = 0;
    for (size_t i = 1; i < w->ntags; i++)
        if (w->tag_votes[i] > w->tag_votes[best])
            best = i;
    if (w->ntags) {
        const char *tg = w->tags[best];
        uint32_t dw = (uint32_t)(unsigned char)tg[0] | (uint32_t)(unsigned char)tg[1] << 8 |
                      (uint32_t)(unsigned char)tg[2] << 16 | (uint32_t)(unsigned char)tg[3] << 24;
        char hex[16];
        snprintf(hex, sizeof hex, "0x%08x", dw);
        json_object_set_new(m, "tag", json_string(tg));
        json_object_set_new(m, "tag_dword", json_string(hex));
    }
    json_object_set_new(counters, "stacks", json_integer((json_int_t)t->stacks));
    json_object_set_new(counters, "unique_stacks", json_integer((json_int_t)t->unique_stacks));
    json_object_set_new(counters, "frames", json_integer((json_int_t)t->frames));
    json_object_set_new(counters, "events", json_integer((json_int_t)t->events));
    json_object_set_new(counters, "snapshots", json_integer((json_int_t)t->snapshots));
    json_object_set_new(counters, "pool_samples", json_integer((json_int_t)t->samples));
    json_object_set_new(counters, "skipped_lines", json_integer((json_int_t)t->skipped));
    json_object_set_new(m, "counters", counters);
    json_object_set_new(m, "inputs", inputs);
    int rc = kdh_store_write_meta(w->store, m, err);
    json_decref(m);
    return rc;
}

/* One thread parses and writes. Writing the run is now a small share of an ingest (bench_ingest,
 * 1 GiB: parse only 163 CPU MB/s, full ingest 133; callgrind: on_stack + on_sample are 13% of the
 * instructions per input byte), so a parse | write pipeline on a second core would gain at most
 * that and was not added; the time is in parsing the lines. */
int kdh_ingest_run(const kdh_ingest_opts_t *o, kdh_ingest_totals_t *totals, kdh_err_t *err)
{
    if (!o || !o->out_dir || (!o->files && o->nfiles))
        return kdh_err_set(err, KDH_EINVAL, "ingest needs input files and an output directory");
    kdh_ingest_totals_t t;
    memset(&t, 0, sizeof t);
    writer_t *w = calloc(1, sizeof *w);
    if (!w)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for the ingest writer");
    w->sf = calloc(KDH_INGEST_MAX_FRAMES, sizeof *w->sf);
    w->modbuf = calloc(KDH_INGEST_MAX_FRAMES, sizeof *w->modbuf);
    w->sidc = calloc(SIDC_SLOTS, sizeof *w->sidc);
    kdh_ingest_parser_t *p = NULL;
    int rc = KDH_OK;
    if (!w->sf || !w->modbuf || !w->sidc) {
        rc = kdh_err_set(err, KDH_ENOMEM, "out of memory for the ingest writer");
        goto out;
    }
    /* Lines collected in 1 MiB per file: a write() per line was about a tenth of an ingest's CPU
     * time (perf, 60 MB log). A killed ingest loses only unwritten lines, all of which the log
     * still holds. */
    kdh_store_opts_t sopts = {.fsync_every = 0, .buffer_bytes = 1u << 20};
    if ((rc = kdh_store_open(&w->store, o->out_dir, &sopts, err)))
        goto out;
    size_t stacks_before = kdh_store_info(w->store)->stacks;
    kdh_ingest_sink_t sink = {w, sink_stack, sink_sample};
    if ((rc = kdh_ingest_parser_new(&p, o->kinds ? o->kinds : KDH_INGEST_AUTO, &sink, err)))
        goto out;
    for (size_t i = 0; i < o->nfiles; i++) {
        kdh_ingest_file_report_t r;
        memset(&r, 0, sizeof r);
        r.path = o->files[i];
        const char *slash = strrchr(o->files[i], '/');
        w->file = slash ? slash + 1 : o->files[i];
        kdh_err_t ferr = {0, ""};
        kdh_ingest_parser_reset_stats(p);
        int frc = kdh_ingest_parse_file(p, o->files[i], &ferr);
        r.stats = *kdh_ingest_parser_stats(p);
        if (frc) {
            r.error = frc;
            snprintf(r.err_msg, sizeof r.err_msg, "%s", ferr.msg);
            t.files_failed++;
            /* An input that cannot be opened or read (KDH_EIO from the reader) is reported and
             * skipped; a failure to write the run, or the parser's own (out of memory), stops it. */
            if (w->out_failed || frc != KDH_EIO) {
                if (o->on_file)
                    o->on_file(o->ud, &r);
                rc = kdh_err_set(err, frc, "%s", ferr.msg);
                goto out;
            }
        }
        t.stacks += r.stats.stacks;
        t.frames += r.stats.frames;
        t.events += r.stats.events;
        t.snapshots += r.stats.snapshots;
        t.samples += r.stats.samples;
        t.skipped += r.stats.skipped;
        if (o->on_file)
            o->on_file(o->ud, &r);
    }
    t.unique_stacks = kdh_store_info(w->store)->stacks - stacks_before;
    hit_top(&w->hits, &t);
    if ((rc = write_meta(w, o, &t, err)))
        goto out;
out:
    kdh_ingest_parser_free(p);
    if (w->store) {
        kdh_err_t cerr = {0, ""};
        int crc = kdh_store_close(w->store, &cerr);
        if (!rc && crc)
            rc = kdh_err_set(err, crc, "%s", cerr.msg);
    }
    for (size_t i = 0; w->sidc && i < SIDC_SLOTS; i++)
        free(w->sidc[i].key);
    free(w->sidc);
    free(w->key);
    free(w->sf);
    free(w->modbuf);
    free(w->hits.slot);
    free(w);
    if (totals)
        *totals = t;
    return rc;
}
