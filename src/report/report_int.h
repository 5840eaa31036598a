/* report_int.h: the report's in-memory totals, shared by the aggregation (model.c) and the
 * renderers. Internal to kdh_report. */
#ifndef KDH_REPORT_INT_H
#define KDH_REPORT_INT_H

#include <stdint.h>

#include "../store/u64map.h"
#include "kdh/report.h"
#include "kdh/store.h"

#define NONE_IDX UINT32_MAX
#define SKIP_NOTES 20

/* One unique stack. Every event touches the first 64 bytes (one cache line: the array is 64-byte
 * aligned and each entry takes two lines), the rest only on frees, hits and when rendering. */
typedef struct rstack {
    uint64_t sid;
    uint64_t allocs, alloc_bytes;
    int64_t out_count, out_bytes;
    double first, last;
    uint32_t seen;   /* first and last are set */
    uint32_t driver; /* string index */
    /* -- second line -- */
    uint64_t hits, frees_paired;
    uint32_t *frames; /* string indexes, innermost first */
    uint32_t nframes;
    int known; /* described in a stacks.jsonl */
    char pad[32];
} rstack_t;

/* sid -> stack index: open addressing over 8-byte slots (the sid's high half as a check, the index
 * plus one; 0 = empty), so a lookup costs one cache miss in a table a quarter of a u64map's size. */
typedef struct rep_stackidx {
    uint32_t *slots; /* pairs: check, index + 1 */
    size_t cap, count;
} rep_stackidx_t;
uint32_t rep_stack_find(const kdh_report_t *r, uint64_t sid);

typedef struct rtag {
    char tag[5];
    uint64_t allocs, frees, hits, alloc_bytes;
    uint64_t paired, unpaired, addrless, reused;
    int64_t out_count, out_bytes;
    double first, last;
    kdh_report_series_t series;       /* outstanding bytes after each alloc/free */
    kdh_report_series_t series_count; /* outstanding allocations, the trend when sizes are unknown */
} rtag_t;

typedef struct rpool {
    char tag[5];
    uint32_t pool; /* string index */
    uint64_t samples;
    double first_t, last_t;
    uint64_t first_bytes, last_bytes, peak_bytes;
    kdh_report_series_t series; /* bytes per sample: the same growth rule as the events */
    /* Reboots: a new boot starts from an empty pool, so the series follows the bytes joined across
     * boots, each later boot shifted to start where the one before it ended (see on_pool). */
    uint64_t boot, boots;
    int64_t shift, joined_last;
} rpool_t;

/* One (tag, boot, size) combination of live blocks. Pool allocations come in few distinct sizes, so
 * a block refers to its combination by index instead of carrying the three fields. */
typedef struct rep_tb {
    uint64_t size;
    uint32_t tag, boot;
} rep_tb_t;

typedef struct rlive { /* one allocation not yet freed: 16 bytes */
    uint64_t addr;
    uint32_t stack; /* NONE_IDX for an allocation without a stack */
    uint32_t tb;    /* index into tbs; UINT32_MAX marks an empty slot */
} rlive_t;

typedef struct rep_live {
    rlive_t *slots;
    size_t cap, count; /* cap is a power of two or 0 */
} rep_live_t;

/* Index of a (tag, boot, size) combination in r->tbs, NONE_IDX when out of memory. */
uint32_t rep_live_class(kdh_report_t *r, uint32_t tag, uint32_t boot, uint64_t size);

/* live.c. Blocks pair only inside one run: the table is cleared when the next run starts. */
rlive_t *rep_live_find(const rep_live_t *t, const rep_tb_t *tbs, uint64_t addr, uint32_t boot);
int rep_live_add(rep_live_t *t, const rep_tb_t *tbs, const rlive_t *blk);
void rep_live_remove(rep_live_t *t, const rep_tb_t *tbs, const rlive_t *slot);
void rep_live_clear(rep_live_t *t);
void rep_live_prefetch(const rep_live_t *t, uint64_t addr, uint32_t boot);

/* What modules.jsonl says about a module key, for finding its PDB. */
typedef struct rep_modinfo {
    char pdb[128];
    char guid[33];
    uint32_t age;
} rep_modinfo_t;

typedef struct rep_symmod rep_symmod_t;

typedef struct rrun {
    char *dir, *target, *tag, *source;
    uint64_t events;
} rrun_t;

struct kdh_report {
    kdh_report_opts_t opts;
    /* interned strings */
    char **strs;
    uint32_t nstrs, capstrs;
    kdh_u64map_t strmap;
    kdh_u64map_t modnames; /* XXH3(module key) -> string index of its display name */
    kdh_u64map_t modinfomap; /* XXH3(module key) -> modinfo index */
    rep_modinfo_t *modinfo;
    uint32_t nmodinfo, capmodinfo;
    kdh_u64map_t symmap; /* XXH3(module key) -> symmods index */
    rep_symmod_t *symmods;
    uint32_t nsymmods, capsymmods;
    char symnotes[SKIP_NOTES][300];
    unsigned nsymnotes;
    rstack_t *stacks;
    uint32_t nstacks, capstacks;
    rep_stackidx_t stackidx;
    uint64_t ahead_sids[16]; /* sids of hinted events, for the second prefetch stage */
    unsigned ahead_n;
    rtag_t *tags;
    uint32_t ntags, captags;
    rpool_t *pools;
    uint32_t npools, cappools;
    rep_live_t live;
    rep_tb_t *tbs;
    uint32_t ntbs, captbs, last_tb;
    uint32_t *tbhash; /* open addressing over tbs indexes (NONE_IDX = empty), tbhcap slots */
    uint32_t tbhcap;
    uint32_t last_tag; /* index of the tag of the previous event (events come in long runs of one tag) */
    rrun_t *runs;
    unsigned nruns;
    uint64_t events, events_used, skipped, gaps;
    uint64_t allocs_used, allocs_sized; /* decide bytes or counts: kdh_report_sizes_known */
    double gap_seconds;
    char notes[SKIP_NOTES][300];
    unsigned nnotes;
    int oom;
    char ownerbuf[512];
};

const char *rep_str(const kdh_report_t *r, uint32_t i);
const char *rep_owner(const kdh_report_t *r, const char tag[5]);
void rep_tag_summary(const kdh_report_t *r, const rtag_t *t, kdh_report_tag_summary_t *s);
void rep_pool_summary(const kdh_report_t *r, const rpool_t *p, kdh_report_pool_summary_t *s);
/* v as kdh_report_value_used resolved it (never OUTSTANDING for a report without sizes). */
int64_t rep_stack_value(const rstack_t *s, kdh_report_value_t v);
/* trend.c: kdh_report_series_add to two series fed at the same times, the bucket work done once. */
void rep_series_add2(kdh_report_series_t *a, kdh_report_series_t *b, double t, int64_t ya, int64_t yb);
/* The series a tag's trend follows (bytes or allocations, as kdh_report_sizes_known says). */
const kdh_report_series_t *rep_tag_series(const kdh_report_t *r, const rtag_t *t);
/* Indexes of stacks with activity, at least min_count allocations, sorted by value (resolved with
 * kdh_report_value_used; descending, ties by sid). Caller frees. */
uint32_t *rep_sorted_stacks(const kdh_report_t *r, kdh_report_value_t v, uint32_t *n);

/* Per-driver roll-up. */
typedef struct rdriver {
    uint32_t name;
    uint64_t stacks, allocs, alloc_bytes;
    int64_t out_count, out_bytes;
} rdriver_t;
/* Sorted by v (resolved with kdh_report_value_used), largest first. Caller frees. */
rdriver_t *rep_drivers(const kdh_report_t *r, kdh_report_value_t v, uint32_t *n);
int64_t rep_driver_value(const rdriver_t *d, kdh_report_value_t v);

void rep_time(double t, char *buf, size_t cap);

/* symbols.c: with opts.symbols, the frame text "module!symbol+0xoff" (or "module+0xRVA" when the
 * PDB has no symbol before rva) into out; 0 when the module's PDB is not available. */
int rep_symbolize(kdh_report_t *r, const char *key, const char *modname, uint64_t rva, char *out, size_t cap);
void rep_symbols_free(kdh_report_t *r);
int rep_parse_pdb_id(const char *s, size_t n, uint8_t guid[16], uint32_t *age);
const rep_modinfo_t *rep_modinfo(const kdh_report_t *r, const char *key);

int rep_render_text(const kdh_report_t *r, FILE *out);
int rep_render_json(const kdh_report_t *r, FILE *out, kdh_err_t *err);
int rep_render_csv(const kdh_report_t *r, FILE *out);
int rep_render_folded(const kdh_report_t *r, FILE *out);
int rep_render_html(const kdh_report_t *r, FILE *out, kdh_err_t *err);
/* Root-first folded stack text (malloc'd). */
char *rep_folded_text(const kdh_report_t *r, const rstack_t *s);

#endif
