/* kdh/report.h: reading one or more run directories into per-tag, per-stack and per-driver totals
 * (stacks merge by module identity + RVA through their sid, never by absolute address), and
 * rendering them as text (WinDbg `k` style frames), JSON, CSV, folded stacks, or a UMDH-style diff.
 * Memory grows with unique stacks and live allocations, never with the number of events. */
#ifndef KDH_REPORT_H
#define KDH_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "kdh/common.h"
#include "kdh/pooltag.h"

typedef enum kdh_report_format {
    KDH_REPORT_TEXT = 0,
    KDH_REPORT_JSON,
    KDH_REPORT_CSV,
    KDH_REPORT_FOLDED,
    KDH_REPORT_HTML /* one self-contained page: tables, flame graph, growth chart */
} kdh_report_format_t;

typedef enum kdh_report_by {
    KDH_REPORT_BY_ALL = 0, /* text: every section */
    KDH_REPORT_BY_STACK,
    KDH_REPORT_BY_DRIVER,
    KDH_REPORT_BY_TAG
} kdh_report_by_t;

typedef enum kdh_report_value {
    KDH_REPORT_VALUE_OUTSTANDING = 0, /* outstanding bytes; outstanding allocations when the events
                                         carry no sizes (kdh_report_sizes_known) */
    KDH_REPORT_VALUE_COUNT,           /* allocations */
    KDH_REPORT_VALUE_BYTES,           /* bytes allocated */
    KDH_REPORT_VALUE_OUT_COUNT        /* outstanding allocations */
} kdh_report_value_t;

typedef struct kdh_report_opts {
    kdh_report_format_t format;
    kdh_report_by_t by;
    kdh_report_value_t value; /* folded output and diff ordering */
    unsigned top;             /* stacks/drivers per list; 0 = all */
    char tag[5];              /* only this tag (space padded) when tag[0] != 0 */
    double since, until;      /* event time window (Unix seconds); 0 = open */
    uint64_t min_count;       /* hide stacks seen fewer times (allocations + hits) */
    const kdh_pooltag_t *pooltag; /* owners per tag; may be NULL */
    /* Re-symbolize frames with mod+rva from the PDBs found along this symbol path, by module
     * identity (file, TimeDateStamp, SizeOfImage, PDB GUID and age); borrowed, may be NULL. */
    struct kdh_symstore *symbols;
} kdh_report_opts_t;

typedef struct kdh_report kdh_report_t;
struct kdh_store_extent; /* kdh/store.h */

int kdh_report_new(kdh_report_t **out, const kdh_report_opts_t *opts, kdh_err_t *err);
void kdh_report_free(kdh_report_t *rep);

/* Streams one run directory into the totals. Damaged lines are counted and remembered (first few,
 * as "file:line: reason"), not fatal. Fails for a directory that is not a run or has an unknown
 * schema (the totals of runs already added stay valid). */
int kdh_report_add_run(kdh_report_t *rep, const char *dir, kdh_err_t *err);
/* The same for a run another thread of this process is writing: its files up to their sizes in upto
 * (kdh_store_extent), so the totals hold whole lines only, and every stack their events name. */
int kdh_report_add_run_extent(kdh_report_t *rep, const char *dir, const struct kdh_store_extent *upto,
                              kdh_err_t *err);

/* Renders in opts->format to out. */
int kdh_report_render(const kdh_report_t *rep, FILE *out, kdh_err_t *err);

/* UMDH-style comparison `+ BYTES (NEW - OLD)` per stack and per driver, sorted by the byte delta
 * of opts->value (text, json or folded "stack old new" as difffolded.pl reads). */
int kdh_report_render_diff(const kdh_report_t *base, const kdh_report_t *cur, FILE *out, kdh_err_t *err);

/* ---- totals, for callers and tests ---- */

typedef struct kdh_report_tag_summary {
    char tag[5];
    const char *owner; /* "binary - description" from pooltag, or NULL */
    uint64_t allocs, frees, hits;
    uint64_t alloc_bytes;
    uint64_t paired_frees;   /* frees matched to an allocation of this run by address */
    uint64_t unpaired_frees; /* frees with an address never allocated in the run (older blocks) */
    uint64_t addrless_frees; /* frees without an address (subtracted by count only) */
    uint64_t reused_addrs;   /* allocations at a live address: the free was missed */
    uint64_t outstanding, outstanding_bytes;
    double first, last;      /* event times */
    /* The trend follows outstanding bytes when sizes are known (kdh_report_sizes_known), else
     * outstanding allocations (by_count = 1): the same measure the stack lists are ranked by. */
    int by_count;
    double slope;            /* least-squares outstanding bytes (or allocations) per second */
    double monotonic;        /* share of the bucketed series' changes that are rises, 0..1 */
    const char *trend;       /* kdh_report_series_trend */
} kdh_report_tag_summary_t;

typedef struct kdh_report_stack_summary {
    uint64_t sid;
    const char *driver; /* first frame outside nt, hal and the allocator */
    uint64_t allocs, alloc_bytes, hits, frees_paired;
    uint64_t outstanding, outstanding_bytes;
    double first, last;
    size_t nframes;
} kdh_report_stack_summary_t;

typedef struct kdh_report_pool_summary {
    char tag[5];
    const char *pool;
    uint64_t samples;
    double first_t, last_t;
    uint64_t first_bytes, last_bytes, peak_bytes;
    double slope, monotonic;
    const char *trend;  /* kdh_report_series_trend over the samples' bytes, joined across reboots */
    int steady_growth;  /* trend is "steady growth" */
    uint64_t boots;     /* boots the samples came from (docs/run-format.md) */
} kdh_report_pool_summary_t;

typedef struct kdh_report_totals {
    unsigned runs;
    uint64_t events, events_used, skipped_lines, gaps;
    uint64_t allocs, allocs_sized; /* allocations used, and how many of them carried a size */
    double gap_seconds;
} kdh_report_totals_t;

void kdh_report_totals(const kdh_report_t *rep, kdh_report_totals_t *t);
/* 1 when the allocations used carried sizes, all but at most one per run plus 1 in 100 (a --pair
 * run's allocation logged at the detach, a big-page block): stacks, drivers and trends then follow
 * outstanding bytes, to which the unsized add nothing; else (a hittag harvest without --pair, a log
 * without sizes, or a mix) they follow outstanding allocations, and every format says so. */
int kdh_report_sizes_known(const kdh_report_t *rep);
/* What KDH_REPORT_VALUE_OUTSTANDING means for this report (OUTSTANDING or OUT_COUNT). */
kdh_report_value_t kdh_report_value_used(const kdh_report_t *rep, kdh_report_value_t v);
/* "outstanding_bytes", "outstanding_count", "allocations" or "allocated_bytes". */
const char *kdh_report_value_name(kdh_report_value_t v);
size_t kdh_report_tag_count(const kdh_report_t *rep);
int kdh_report_tag_get(const kdh_report_t *rep, size_t i, kdh_report_tag_summary_t *s);
/* KDH_ENOTFOUND when the stack is not in the totals. */
int kdh_report_stack_get(const kdh_report_t *rep, uint64_t sid, kdh_report_stack_summary_t *s);
/* Frame i (innermost = 0) of a stack as WinDbg prints it, or NULL. */
const char *kdh_report_stack_frame(const kdh_report_t *rep, uint64_t sid, size_t i);
size_t kdh_report_pool_count(const kdh_report_t *rep);
int kdh_report_pool_get(const kdh_report_t *rep, size_t i, kdh_report_pool_summary_t *s);
/* Skipped-line notes kept ("file:line: reason", first 20). */
size_t kdh_report_skip_count(const kdh_report_t *rep);
const char *kdh_report_skip_note(const kdh_report_t *rep, size_t i);

/* Symbol notes kept with --symbols ("symbols: no PDB for KEY: reason", first 20). */
size_t kdh_report_symbol_note_count(const kdh_report_t *rep);
const char *kdh_report_symbol_note(const kdh_report_t *rep, size_t i);

/* ---- growth rule (pure, documented in trend.c and docs/run-format.md "Report"); the one rule for
 * event series (per tag) and pool usage samples alike ---- */

typedef struct kdh_report_series {
    double t0, width; /* bucket i covers [t0 + i*width, t0 + (i+1)*width) */
    int started;
    unsigned used;    /* buckets filled so far */
    int64_t y[64];    /* value at the end of each bucket */
    /* least squares over every point, x relative to t0 */
    double n, sx, sy, sxx, sxy;
    int64_t first_y, last_y, peak_y, min_y;
} kdh_report_series_t;

void kdh_report_series_add(kdh_report_series_t *s, double t, int64_t y);
double kdh_report_series_slope(const kdh_report_series_t *s);
double kdh_report_series_monotonic(const kdh_report_series_t *s);
const char *kdh_report_series_trend(const kdh_report_series_t *s);

#endif
