/* kdh/ingest.h: `kdharvest ingest`: turns existing WinDbg/kd transcripts, Driver Verifier output,
 * poolmon screens/snapshots and !poolused/!vm output into run directories. The parsers are pure
 * (text lines in, stacks and pool samples out through a sink); kdh_ingest_run writes a run. */
#ifndef KDH_INGEST_H
#define KDH_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

/* Which recognizers run; bit flags, KDH_INGEST_AUTO = all of them. */
enum {
    KDH_INGEST_KD = 1,        /* k-family stacks, !thread, STACK_TEXT, breaks and prompts */
    KDH_INGEST_VERIFIER = 2,  /* !verifier 3 tables, !verifier 0x80 / 4 logs, kmautofail */
    KDH_INGEST_POOLMON = 4,   /* poolmon screens and -n snapshots */
    KDH_INGEST_POOLUSED = 8,  /* !poolused and !vm pool usage */
    KDH_INGEST_AUTO = 15
};

#define KDH_INGEST_SYM_MAX 512          /* callsite text kept per frame (longer: truncated) */
#define KDH_INGEST_MAX_FRAMES 1024      /* frames kept per stack (more: counted as skipped) */
#define KDH_INGEST_LINE_MAX (1u << 20)  /* longer lines are skipped and counted, never buffered */
/* A stack printed before its file's first "Debug session time:" line takes that line's time when
 * the line comes within this many bytes after it (32 MiB is most of an hour of output at 115200
 * baud: a clock further on says little about when the stack ran, and finding out would read the
 * whole file a second time); otherwise it has no time. */
#define KDH_INGEST_CLOCK_REACH (32u << 20)

/* Callsite forms of the grammar in reference/log-formats.md section 3. */
enum {
    KDH_INGEST_CS_SYMBOL = 1, /* module!symbol[+0xoff] */
    KDH_INGEST_CS_MODOFF = 2, /* module+0xoff (no symbols) */
    KDH_INGEST_CS_ADDR = 3    /* 0x... raw address, no module */
};

/* Frame line layouts (the value kdh_ingest_parse_frame returns), also usable as a mask. */
enum {
    KDH_INGEST_L_X64 = 1,    /* [Child-SP] RetAddr [: args :] callsite (k, kn, kv, !thread) */
    KDH_INGEST_L_X86 = 2,    /* ChildEBP RetAddr [3 args] callsite (k, kn, kb, kv, !thread) */
    KDH_INGEST_L_MEX = 4,    /* !mex.t: N Child-SP Return callsite, 16 hex digits, no backtick */
    KDH_INGEST_L_KC = 8,     /* kc: [NN] callsite (only after kc or a "Call Site" header) */
    KDH_INGEST_L_ADDR = 16,  /* ADDR callsite (!verifier 0x80 / 4, kmautofail) */
    KDH_INGEST_L_ALL = 31
};

typedef struct kdh_ingest_frame {
    char sym[KDH_INGEST_SYM_MAX]; /* the callsite exactly as printed (annotations removed) */
    size_t sym_len;               /* strlen(sym), kept: stack ids and keys hash every frame's text */
    int form;                     /* KDH_INGEST_CS_* */
    size_t mod_len;               /* module name = sym[0..mod_len); 0 for a raw address */
    size_t name_off, name_len;    /* symbol name inside sym (CS_SYMBOL only) */
    uint64_t off;                 /* +0x offset */
    int has_off;
    uint64_t addr;                /* address of the frame's own instruction, when the log shows it */
    int has_addr;
    uint64_t ret;                 /* RetAddr column (k layouts) */
    int has_ret;
    uint32_t args[3];             /* x86 "Args to Child" */
    int nargs;
    int is_inline;
    int truncated;                /* sym was longer than KDH_INGEST_SYM_MAX - 1 */
} kdh_ingest_frame_t;

/* Compiled patterns plus one reused match block: one per thread. */
typedef struct kdh_ingest_patterns kdh_ingest_patterns_t;

int kdh_ingest_patterns_new(kdh_ingest_patterns_t **out, kdh_err_t *err);
void kdh_ingest_patterns_free(kdh_ingest_patterns_t *p);

/* Parses one line (no newline needed) as a frame of one of the layouts in mask. Returns the layout
 * (KDH_INGEST_L_*) or 0 when the line is not a frame line. Pure apart from the match block. */
int kdh_ingest_parse_frame(kdh_ingest_patterns_t *p, const char *line, size_t len, unsigned mask,
                           kdh_ingest_frame_t *out);

/* Parses a bare callsite ("nt!Foo+0x10", "Driver+0x11b1", "0xfffff801`b56d24aa"). 0 or KDH_ECORRUPT. */
int kdh_ingest_parse_callsite(kdh_ingest_patterns_t *p, const char *s, size_t len,
                              kdh_ingest_frame_t *out);

enum { KDH_INGEST_EV_ALLOC = 0, KDH_INGEST_EV_FREE = 1, KDH_INGEST_EV_HIT = 2 };

/* One stack found in the input, with the event it is attributed to. */
typedef struct kdh_ingest_stack {
    const kdh_ingest_frame_t *frames;
    size_t nframes;
    int kind;            /* KDH_INGEST_EV_* */
    int cpu;             /* -1 unknown */
    uint64_t thread;     /* 0 unknown */
    char tag[5];         /* "" unknown; else 4 characters as Windows shows them */
    uint32_t tag_dword;
    uint64_t size;
    int has_size;
    uint64_t addr;       /* block address (pairs a free with its allocation) */
    int has_addr;
    uint64_t line;       /* line of the first frame */
    const char *origin;  /* "k", "kc", "stack_text", "verifier80", "verifier4", "verifier3", "kmautofail" */
    int repeat;          /* the same stack shown again for the same break: not a new hit */
    /* Unix seconds of the last "Debug session time:" before it in the file, or of the file's first
     * one when it comes before any (kdh_ingest_parse_file only: fed text has no look ahead);
     * has_t = 0 when there is none */
    double t;
    int has_t;
} kdh_ingest_stack_t;

/* One pool usage line of one snapshot. No clock: an ingested run orders pool samples by snapshot
 * (docs/run-format.md), since a log's session time is printed once per session, not per snapshot. */
typedef struct kdh_ingest_sample {
    uint64_t snapshot;   /* 1, 2, ... across everything one parser has seen */
    char tag[5];         /* 4 characters, space padded; "*" for the whole pool (!vm) */
    const char *pool;    /* "nonpaged", "paged", "nonpagednx" */
    uint64_t allocs, frees, bytes;
    int has_allocs, has_frees;
    uint64_t line;
    const char *origin;  /* "poolmon", "poolused", "vm", "poolfind" */
} kdh_ingest_sample_t;

/* Callbacks get pointers valid only during the call; a non-zero return stops the parser and is
 * returned by kdh_ingest_parser_feed / _finish (the callback sets *err's message itself).
 * Stacks come in text order except: the records of one !verifier 0x80 output come together,
 * oldest first, and !verifier 3 rows come at the end of the file (a row whose block the 0x80 log
 * showed is not sent: that record carries the row's tag instead). */
typedef struct kdh_ingest_sink {
    void *ud;
    int (*on_stack)(void *ud, const kdh_ingest_stack_t *st, kdh_err_t *err);
    int (*on_sample)(void *ud, const kdh_ingest_sample_t *s, kdh_err_t *err);
} kdh_ingest_sink_t;

#define KDH_INGEST_SKIP_FIRST 5

typedef struct kdh_ingest_stats {
    uint64_t lines;
    uint64_t stacks;     /* stacks found (repeats included) */
    uint64_t frames;
    uint64_t events;     /* stacks that are new hits (repeats excluded) */
    uint64_t snapshots;
    uint64_t samples;
    uint64_t skipped;    /* over-long, binary, or malformed lines inside a recognized block */
    uint64_t skipped_first[KDH_INGEST_SKIP_FIRST];
    unsigned nskipped_first;
    unsigned kinds_seen; /* KDH_INGEST_* recognizers that found something */
} kdh_ingest_stats_t;

typedef struct kdh_ingest_parser kdh_ingest_parser_t;

int kdh_ingest_parser_new(kdh_ingest_parser_t **out, unsigned kinds, const kdh_ingest_sink_t *sink,
                          kdh_err_t *err);
void kdh_ingest_parser_free(kdh_ingest_parser_t *p);

/* Streams bytes of one file in chunks of any size (CRLF or LF, any bytes). */
int kdh_ingest_parser_feed(kdh_ingest_parser_t *p, const char *data, size_t n, kdh_err_t *err);
/* Ends the current file: flushes a pending last line, an open stack or snapshot, resets the line
 * counter and per-file state (snapshot numbering continues, so files form one time series). */
int kdh_ingest_parser_finish(kdh_ingest_parser_t *p, kdh_err_t *err);
/* Counters since the parser was made or kdh_ingest_parser_reset_stats was last called. */
const kdh_ingest_stats_t *kdh_ingest_parser_stats(const kdh_ingest_parser_t *p);
void kdh_ingest_parser_reset_stats(kdh_ingest_parser_t *p);
/* Parses one complete line (no newline) with the next line number. Used by feed. */
int kdh_ingest_parser_line(kdh_ingest_parser_t *p, const char *line, size_t len, kdh_err_t *err);

/* Reads a whole file through a parser in fixed-size chunks (never the whole file in memory). At the
 * first stack before any clock line, a regular file is searched once (in chunks, ahead of the
 * parse) for its first clock line, to give that stack and the others before it their time. */
int kdh_ingest_parse_file(kdh_ingest_parser_t *p, const char *path, kdh_err_t *err);

/* ---- writing a run ---- */

typedef struct kdh_ingest_file_report {
    const char *path;
    kdh_ingest_stats_t stats;
    int error;           /* KDH_OK, or the error reading this file (message in err_msg) */
    char err_msg[256];
} kdh_ingest_file_report_t;

typedef struct kdh_ingest_opts {
    unsigned kinds;            /* KDH_INGEST_* mask, KDH_INGEST_AUTO by default */
    const char *const *files;
    size_t nfiles;
    const char *out_dir;
    /* called after each file; may be NULL */
    void (*on_file)(void *ud, const kdh_ingest_file_report_t *r);
    void *ud;
} kdh_ingest_opts_t;

#define KDH_INGEST_TOP 5

/* A stack and how many hits (events) it had in this ingest, for the summary. */
typedef struct kdh_ingest_top {
    uint64_t sid;
    uint64_t hits;
    int kind;        /* KDH_INGEST_EV_* of its first hit */
    char label[128]; /* the first frame below the pool routines: who allocated */
} kdh_ingest_top_t;

typedef struct kdh_ingest_totals {
    uint64_t stacks, unique_stacks, frames, events, snapshots, samples, skipped;
    unsigned files_failed;
    kdh_ingest_top_t top[KDH_INGEST_TOP]; /* most hit stacks, most first */
    unsigned ntop;
} kdh_ingest_totals_t;

/* Parses every file into the run directory out_dir (created, or continued when it already holds
 * a run). A file that cannot be read is reported through on_file and the others still run. */
int kdh_ingest_run(const kdh_ingest_opts_t *o, kdh_ingest_totals_t *totals, kdh_err_t *err);

/* "auto", "kd", "verifier", "poolmon", "poolused" -> mask; 0 when unknown. */
unsigned kdh_ingest_kind_parse(const char *s);

#endif
