/* summary.c: the report's totals as the public summaries (per tag, per pool sample series, per
 * stack) and the accessors callers and tests read them through. Internal state: report_int.h. */
#include <stdio.h>
#include <string.h>

#include "report_int.h"

/* ---- summaries ---- */

const char *rep_owner(const kdh_report_t *r, const char tag[5])
{
    char *buf = ((kdh_report_t *)r)->ownerbuf; /* valid until the next call */
    const kdh_pooltag_entry_t *e = r->opts.pooltag ? kdh_pooltag_lookup(r->opts.pooltag, tag) : NULL;
    if (!e)
        return NULL;
    if (e->desc[0])
        snprintf(buf, sizeof r->ownerbuf, "%s - %s", e->binary, e->desc);
    else
        snprintf(buf, sizeof r->ownerbuf, "%s", e->binary);
    return buf;
}

void rep_tag_summary(const kdh_report_t *r, const rtag_t *t, kdh_report_tag_summary_t *s)
{
    memset(s, 0, sizeof *s);
    memcpy(s->tag, t->tag, 5);
    s->owner = rep_owner(r, t->tag);
    s->allocs = t->allocs;
    s->frees = t->frees;
    s->hits = t->hits;
    s->alloc_bytes = t->alloc_bytes;
    s->paired_frees = t->paired;
    s->unpaired_frees = t->unpaired;
    s->addrless_frees = t->addrless;
    s->reused_addrs = t->reused;
    s->outstanding = t->out_count > 0 ? (uint64_t)t->out_count : 0;
    s->outstanding_bytes = t->out_bytes > 0 ? (uint64_t)t->out_bytes : 0;
    s->first = t->first;
    s->last = t->last;
    const kdh_report_series_t *ser = rep_tag_series(r, t);
    s->by_count = ser == &t->series_count;
    s->slope = kdh_report_series_slope(ser);
    s->monotonic = kdh_report_series_monotonic(ser);
    s->trend = kdh_report_series_trend(ser);
}

void rep_pool_summary(const kdh_report_t *r, const rpool_t *p, kdh_report_pool_summary_t *s)
{
    memset(s, 0, sizeof *s);
    memcpy(s->tag, p->tag, 5);
    s->pool = rep_str(r, p->pool);
    s->samples = p->samples;
    s->first_t = p->first_t;
    s->last_t = p->last_t;
    s->first_bytes = p->first_bytes;
    s->last_bytes = p->last_bytes;
    s->peak_bytes = p->peak_bytes;
    s->slope = kdh_report_series_slope(&p->series);
    s->monotonic = kdh_report_series_monotonic(&p->series);
    s->trend = kdh_report_series_trend(&p->series); /* the rule the events' trend follows */
    s->steady_growth = strcmp(s->trend, "steady growth") == 0;
    s->boots = p->boots;
}

void kdh_report_totals(const kdh_report_t *r, kdh_report_totals_t *t)
{
    memset(t, 0, sizeof *t);
    t->runs = r->nruns;
    t->events = r->events;
    t->events_used = r->events_used;
    t->skipped_lines = r->skipped;
    t->gaps = r->gaps;
    t->allocs = r->allocs_used;
    t->allocs_sized = r->allocs_sized;
    t->gap_seconds = r->gap_seconds;
}

size_t kdh_report_tag_count(const kdh_report_t *r)
{
    return r->ntags;
}

int kdh_report_tag_get(const kdh_report_t *r, size_t i, kdh_report_tag_summary_t *s)
{
    if (i >= r->ntags)
        return KDH_ENOTFOUND;
    rep_tag_summary(r, &r->tags[i], s);
    return KDH_OK;
}

int kdh_report_stack_get(const kdh_report_t *r, uint64_t sid, kdh_report_stack_summary_t *s)
{
    uint32_t v = rep_stack_find(r, sid);
    if (v == NONE_IDX)
        return KDH_ENOTFOUND;
    const rstack_t *st = &r->stacks[v];
    memset(s, 0, sizeof *s);
    s->sid = sid;
    s->driver = rep_str(r, st->driver);
    s->allocs = st->allocs;
    s->alloc_bytes = st->alloc_bytes;
    s->hits = st->hits;
    s->frees_paired = st->frees_paired;
    s->outstanding = st->out_count > 0 ? (uint64_t)st->out_count : 0;
    s->outstanding_bytes = st->out_bytes > 0 ? (uint64_t)st->out_bytes : 0;
    s->first = st->first;
    s->last = st->last;
    s->nframes = st->nframes;
    return KDH_OK;
}

const char *kdh_report_stack_frame(const kdh_report_t *r, uint64_t sid, size_t i)
{
    uint32_t v = rep_stack_find(r, sid);
    if (v == NONE_IDX || i >= r->stacks[v].nframes)
        return NULL;
    return rep_str(r, r->stacks[v].frames[i]);
}

size_t kdh_report_pool_count(const kdh_report_t *r)
{
    return r->npools;
}

int kdh_report_pool_get(const kdh_report_t *r, size_t i, kdh_report_pool_summary_t *s)
{
    if (i >= r->npools)
        return KDH_ENOTFOUND;
    rep_pool_summary(r, &r->pools[i], s);
    return KDH_OK;
}

size_t kdh_report_skip_count(const kdh_report_t *r)
{
    return r->skipped;
}

const char *kdh_report_skip_note(const kdh_report_t *r, size_t i)
{
    return i < r->nnotes ? r->notes[i] : NULL;
}
