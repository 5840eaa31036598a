/* render_text.c: the human report. Stacks print like WinDbg `k` (innermost first,
 * `module!symbol+0xoff`, unresolved frames `module+0xRVA`) with the responsible driver in front,
 * because the driver is the first thing a reviewer wants to know. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"

static void print_stack(const kdh_report_t *r, FILE *out, unsigned rank, const rstack_t *s)
{
    char first[40], last[40], sid[17];
    rep_time(s->first, first, sizeof first);
    rep_time(s->last, last, sizeof last);
    kdh_store_sid_format(s->sid, sid);
    fprintf(out, "%3u. %s  outstanding %" PRId64 " (%" PRId64 " bytes)  allocs %" PRIu64 " (%" PRIu64 " bytes)",
            rank, rep_str(r, s->driver), s->out_count > 0 ? s->out_count : 0, s->out_bytes > 0 ? s->out_bytes : 0,
            s->allocs, s->alloc_bytes);
    if (s->frees_paired)
        fprintf(out, "  freed %" PRIu64, s->frees_paired);
    if (s->hits)
        fprintf(out, "  hits %" PRIu64, s->hits);
    fprintf(out, "\n     sid %s  first %s  last %s\n", sid, first, last);
    for (uint32_t i = 0; i < s->nframes; i++)
        fprintf(out, "       %s\n", rep_str(r, s->frames[i]));
    if (!s->known)
        fprintf(out, "       (stack %s is not described in stacks.jsonl)\n", sid);
}

static void stack_list(const kdh_report_t *r, FILE *out, const char *title, kdh_report_value_t v, const char *note)
{
    uint32_t n = 0, *idx = rep_sorted_stacks(r, v, &n), shown = 0;
    v = kdh_report_value_used(r, v);
    fprintf(out, "\n%s\n", title);
    for (uint32_t k = 0; k < n; k++) {
        const rstack_t *s = &r->stacks[idx[k]];
        if (rep_stack_value(s, v) <= 0)
            continue;
        if (r->opts.top && shown >= r->opts.top)
            break;
        print_stack(r, out, ++shown, s);
    }
    if (!shown)
        fprintf(out, "  (none)\n");
    if (note) /* after the entries, so the first line under the title is the first stack */
        fprintf(out, "  (%s)\n", note);
    free(idx);
}

static void tag_table(const kdh_report_t *r, FILE *out)
{
    int bytes = kdh_report_sizes_known(r);
    fprintf(out, "\nTags (trend of outstanding %s)\n%-6s %10s %10s %10s %12s %12s  %-24s %-24s %-16s %14s  %s\n",
            bytes ? "bytes" : "allocations", "TAG", "ALLOCS", "FREES", "OUTSTANDING", "OUT_BYTES", "ALLOC_BYTES",
            "FIRST", "LAST", "TREND", bytes ? "SLOPE_B/S" : "SLOPE_ALLOC/S", "OWNER");
    for (uint32_t i = 0; i < r->ntags; i++) {
        kdh_report_tag_summary_t s;
        char first[40], last[40], tag[8];
        rep_tag_summary(r, &r->tags[i], &s);
        rep_time(s.first, first, sizeof first);
        rep_time(s.last, last, sizeof last);
        snprintf(tag, sizeof tag, "'%s'", s.tag);
        fprintf(out, "%-6s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64
                     "  %-24s %-24s %-16s %14.3f  %s\n",
                tag, s.allocs, s.frees, s.outstanding, s.outstanding_bytes, s.alloc_bytes, first, last, s.trend,
                s.slope, s.owner ? s.owner : "-");
        if (s.hits || s.unpaired_frees || s.addrless_frees || s.reused_addrs)
            fprintf(out,
                    "       pairing: %" PRIu64 " frees matched by address, %" PRIu64 " of blocks older than the run, %" PRIu64
                    " without address (counted only), %" PRIu64 " addresses reused without a free; %" PRIu64
                    " hits of unknown kind\n",
                    s.paired_frees, s.unpaired_frees, s.addrless_frees, s.reused_addrs, s.hits);
    }
    if (!r->ntags)
        fprintf(out, "  (no events)\n");
}

static void driver_table(const kdh_report_t *r, FILE *out)
{
    uint32_t n = 0;
    rdriver_t *d = rep_drivers(r, KDH_REPORT_VALUE_OUTSTANDING, &n);
    fprintf(out,
            "\nDrivers by outstanding %s (first frame outside nt, hal and the allocator)\n%-24s %8s %10s %12s %12s %12s\n",
            kdh_report_sizes_known(r) ? "bytes" : "allocations", "DRIVER", "STACKS", "ALLOCS", "ALLOC_BYTES",
            "OUTSTANDING", "OUT_BYTES");
    for (uint32_t i = 0; i < n && (!r->opts.top || i < r->opts.top); i++)
        fprintf(out, "%-24s %8" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRId64 " %12" PRId64 "\n",
                rep_str(r, d[i].name), d[i].stacks, d[i].allocs, d[i].alloc_bytes, d[i].out_count, d[i].out_bytes);
    if (!n)
        fprintf(out, "  (none)\n");
    free(d);
}

static int cmp_pool(const void *a, const void *b)
{
    const kdh_report_pool_summary_t *x = a, *y = b;
    if (x->steady_growth != y->steady_growth)
        return y->steady_growth - x->steady_growth;
    if (x->last_bytes != y->last_bytes)
        return x->last_bytes > y->last_bytes ? -1 : 1;
    return strcmp(x->tag, y->tag);
}

/* Steadily growing tags first, then by size, with the owner when a pooltag file was given. */
static void pool_table(const kdh_report_t *r, FILE *out)
{
    if (!r->npools)
        return;
    kdh_report_pool_summary_t *ps = malloc(r->npools * sizeof *ps);
    if (!ps)
        return;
    for (uint32_t i = 0; i < r->npools; i++)
        rep_pool_summary(r, &r->pools[i], &ps[i]);
    qsort(ps, r->npools, sizeof *ps, cmp_pool);
    unsigned joined = 0;
    fprintf(out, "\nPool usage samples\n%-6s %-10s %8s %14s %14s %14s %14s  %-15s  %s\n", "TAG", "POOL", "SAMPLES",
            "FIRST_BYTES", "LAST_BYTES", "PEAK_BYTES", "SLOPE_B/S", "TREND", "OWNER");
    for (uint32_t i = 0; i < r->npools; i++) {
        const kdh_report_pool_summary_t *p = &ps[i];
        char tag[8];
        const char *owner = rep_owner(r, p->tag);
        snprintf(tag, sizeof tag, "'%s'", p->tag);
        fprintf(out, "%-6s %-10s %8" PRIu64 " %14" PRIu64 " %14" PRIu64 " %14" PRIu64 " %14.3f  %-15s  %s\n", tag,
                p->pool[0] ? p->pool : "-", p->samples, p->first_bytes, p->last_bytes, p->peak_bytes, p->slope,
                p->steady_growth ? "STEADY GROWTH" : p->trend, owner ? owner : "-");
        joined += p->boots > 1;
    }
    if (joined)
        fprintf(out, "(%u series span reboots: the trend joins each boot to the one before; the bytes are as read)\n",
                joined);
    free(ps);
}

int rep_render_text(const kdh_report_t *r, FILE *out)
{
    fprintf(out, "kdharvest report: %u run%s, %" PRIu64 " events read, %" PRIu64 " used", r->nruns,
            r->nruns == 1 ? "" : "s", r->events, r->events_used);
    if (r->skipped)
        fprintf(out, ", %" PRIu64 " damaged line%s skipped", r->skipped, r->skipped == 1 ? "" : "s");
    fputc('\n', out);
    for (unsigned i = 0; i < r->nruns; i++)
        fprintf(out, "  run %s  target %s  tag %s  source %s  events %" PRIu64 "\n", r->runs[i].dir,
                r->runs[i].target ? r->runs[i].target : "-", r->runs[i].tag ? r->runs[i].tag : "-",
                r->runs[i].source ? r->runs[i].source : "-", r->runs[i].events);
    if (r->gaps)
        fprintf(out, "  gaps: %" PRIu64 " (%.1f s) when hits may have been missed\n", r->gaps, r->gap_seconds);
    tag_table(r, out);
    if (r->opts.by == KDH_REPORT_BY_ALL || r->opts.by == KDH_REPORT_BY_STACK) {
        /* A free without an address lowers its tag's count but belongs to no known allocation. */
        uint64_t addrless = 0;
        for (uint32_t i = 0; i < r->ntags; i++)
            addrless += r->tags[i].addrless;
        char note[200];
        snprintf(note, sizeof note,
                 "%" PRIu64 " free%s without an address: a stack's outstanding is its allocations not matched "
                 "to a free by address",
                 addrless, addrless == 1 ? "" : "s");
        const char *addr_note = addrless ? note : NULL;
        /* Ranked by bytes when sizes are known, saying how many allocations add none; else by count. */
        uint64_t unsized = r->allocs_used - r->allocs_sized;
        char title[160] = "Top stacks by outstanding bytes";
        if (!kdh_report_sizes_known(r))
            snprintf(title, sizeof title,
                     "Top stacks by outstanding allocations (%" PRIu64 " of %" PRIu64
                     " allocations have no size: ranked by count)",
                     unsized, r->allocs_used);
        else if (unsized)
            snprintf(title, sizeof title,
                     "Top stacks by outstanding bytes (%" PRIu64 " of %" PRIu64
                     " allocations have no size and add no bytes)",
                     unsized, r->allocs_used);
        stack_list(r, out, title, KDH_REPORT_VALUE_OUTSTANDING, addr_note);
        stack_list(r, out, "Top stacks by allocation count", KDH_REPORT_VALUE_COUNT, NULL);
        if (r->allocs_sized)
            stack_list(r, out, "Top stacks by allocated bytes", KDH_REPORT_VALUE_BYTES, NULL);
        else
            fprintf(out, "\nTop stacks by allocated bytes\n  (no allocation has a size)\n");
    }
    if (r->opts.by == KDH_REPORT_BY_ALL || r->opts.by == KDH_REPORT_BY_DRIVER)
        driver_table(r, out);
    pool_table(r, out);
    if (r->skipped) {
        fprintf(out, "\nSkipped lines\n");
        for (unsigned i = 0; i < r->nnotes; i++)
            fprintf(out, "  %s\n", r->notes[i]);
        if (r->skipped > r->nnotes)
            fprintf(out, "  ... and %" PRIu64 " more\n", r->skipped - r->nnotes);
    }
    return ferror(out) ? KDH_EIO : KDH_OK;
}
