/* kdh/store.h: the run store. Writes run directories (docs/run-format.md) one whole JSON line per
 * write(), so a killed daemon never leaves half a line from a completed call, reopens them to
 * continue after a restart, and streams them back for the report without holding the events. */
#ifndef KDH_STORE_H
#define KDH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

struct json_t; /* jansson's object type, for meta.json */

#define KDH_STORE_SCHEMA "kdharvest-run/1"
#define KDH_STORE_TAG_MAX 8 /* room for a 4-character tag, NUL, and slack */

/* One loaded module, as one line of modules.jsonl. Strings may be NULL (omitted). */
typedef struct kdh_store_module {
    const char *key;  /* identity: "file/TIMESTAMPsize[/GUIDage]" or a bare name for ingested logs */
    const char *name; /* debugger module name ("nt", "LeakDrv") */
    const char *file; /* image file name ("ntoskrnl.exe") */
    uint32_t timestamp, size;
    const char *pdb, *guid;
    uint32_t age;
    uint32_t boot;
    uint64_t base; /* 0 = unknown */
} kdh_store_module_t;

/* One stack frame, innermost first. Identity is (mod, rva); addr and sym are for the record. */
typedef struct kdh_store_frame {
    const char *mod; /* module key, NULL when the frame has no module */
    uint64_t rva;
    int has_rva;
    const char *sym; /* optional: "module!symbol+0xoff", "module+0xoff" or "0x..." */
    uint64_t addr;
    int has_addr;
    int is_inline; /* an inline frame reported by the debugger (no return address of its own) */
} kdh_store_frame_t;

typedef enum kdh_store_kind {
    KDH_STORE_ALLOC = 0,
    KDH_STORE_FREE = 1,
    KDH_STORE_HIT = 2 /* a break whose kind could not be told */
} kdh_store_kind_t;

typedef struct kdh_store_event {
    uint64_t seq; /* set by kdh_store_append_event; filled in by the reader */
    double t;     /* seconds since the Unix epoch */
    uint32_t boot;
    int cpu; /* -1 = unknown */
    uint64_t thread; /* 0 = unknown */
    kdh_store_kind_t kind;
    char tag[KDH_STORE_TAG_MAX]; /* as Windows displays it: 4 characters, space padded */
    uint64_t size;
    int has_size;
    uint64_t addr;
    int has_addr;
    uint64_t sid; /* stack id; has_sid = 0 for a sampled-out or stackless hit */
    int has_sid;
    const char *src; /* ingested events: "file.log:1234"; NULL otherwise */
} kdh_store_event_t;

typedef struct kdh_store_pool {
    double t;
    uint32_t boot;
    char tag[KDH_STORE_TAG_MAX];
    const char *pool; /* "nonpaged", "paged", "session"... */
    uint64_t allocs, frees, bytes;
} kdh_store_pool_t;

typedef struct kdh_store_gap {
    double t0, t1;
    const char *reason; /* "line-down", "disarmed", "daemon-down", ... */
    const char *detail; /* may be NULL */
} kdh_store_gap_t;

/* ---- writer ---- */

typedef struct kdh_store kdh_store_t;

typedef struct kdh_store_opts {
    /* fsync the JSON Lines files after every N lines (1 = every line, 0 = only at
     * kdh_store_sync/kdh_store_close). meta.json is always fsynced before its rename. */
    unsigned fsync_every;
    /* 0: every line is written by its own call, at once (a live harvest). N: whole lines are
     * collected, up to N bytes per file, and written with one write() when a file's buffer is
     * full and at kdh_store_flush / write_meta / sync / close, every file in the order modules,
     * stacks, events, pool, gaps (so no event on disk names a stack that is not). A kill -9 then
     * loses the lines not yet written and can still tear only the last line of a file, which a
     * reopen truncates as usual. For bulk writers (ingest), where one write() per line costs more
     * than the line. */
    size_t buffer_bytes;
} kdh_store_opts_t;

/* What kdh_store_open found in an existing run directory. */
typedef struct kdh_store_info {
    int resumed;         /* 1 when the directory already held a run */
    uint64_t next_seq;   /* seq the next event gets */
    double last_event_t; /* t of the last whole event line (0: none) */
    size_t stacks;       /* unique stacks known */
    size_t modules;      /* module lines known */
    unsigned repaired;   /* torn last lines truncated */
    char repair_note[256]; /* "events.jsonl: truncated a torn last line of 37 bytes at line 1201" */
} kdh_store_info_t;

/* Creates dir (and missing parents) as a new run, or reopens an existing run to continue it:
 * the next seq follows the last whole line of events.jsonl, known stack ids and module keys are
 * loaded so nothing is written twice, and a torn last line of any file is truncated (reported in
 * kdh_store_info). opts may be NULL. */
int kdh_store_open(kdh_store_t **out, const char *dir, const kdh_store_opts_t *opts, kdh_err_t *err);
const kdh_store_info_t *kdh_store_info(const kdh_store_t *st);
const char *kdh_store_dir(const kdh_store_t *st);

/* Appends a module line unless the same (key, boot) was written before. */
int kdh_store_add_module(kdh_store_t *st, const kdh_store_module_t *m, kdh_err_t *err);

/* Computes the stack id (pure; see docs/run-format.md "Stacks"), and writes the stack to
 * stacks.jsonl the first time it is seen in this run. */
int kdh_store_intern_stack(kdh_store_t *st, const kdh_store_frame_t *frames, size_t n, uint64_t *sid,
                           kdh_err_t *err);

/* Appends an event; assigns ev->seq (ignored on input) and returns it in *seq if seq != NULL. */
int kdh_store_append_event(kdh_store_t *st, kdh_store_event_t *ev, uint64_t *seq, kdh_err_t *err);
int kdh_store_append_pool(kdh_store_t *st, const kdh_store_pool_t *p, kdh_err_t *err);
int kdh_store_append_gap(kdh_store_t *st, const kdh_store_gap_t *g, kdh_err_t *err);

/* Replaces meta.json atomically (meta.json.tmp, fsync, rename). The object is written as given
 * plus "schema" (always) and "updated" (now, ISO 8601 UTC, unless present). */
int kdh_store_write_meta(kdh_store_t *st, const struct json_t *meta, kdh_err_t *err);
/* kdh_store_write_meta in two steps, for a caller that writes the file on another thread.
 * meta_text writes the collected lines first (meta describes lines that are on disk) and returns
 * the file's text in *text (malloc'ed; the caller frees it). put_meta writes a text to
 * dir/meta.json as write_meta does; it touches no handle and may run on any thread, but two calls
 * for one directory must not overlap (they share meta.json.tmp). */
int kdh_store_meta_text(kdh_store_t *st, const struct json_t *meta, char **text, kdh_err_t *err);
int kdh_store_put_meta(const char *dir, const char *text, kdh_err_t *err);

/* A failed write or fsync is final for the handle: the lines collected are dropped, and from then
 * on add_module, intern_stack, the appends, write_meta, flush, sync and close write nothing and
 * return KDH_EIO with the first failure's message ("write DIR/stacks.jsonl: No space left on
 * device"), so an event on disk never names a stack whose line was lost. */

/* Writes the lines collected under opts.buffer_bytes (nothing to do without it). */
int kdh_store_flush(kdh_store_t *st, kdh_err_t *err);
/* Flushes, then fsyncs every file. */
int kdh_store_sync(kdh_store_t *st, kdh_err_t *err);
/* Syncs and frees; st may be NULL. Returns the first error of the final sync. */
int kdh_store_close(kdh_store_t *st, kdh_err_t *err);

/* ---- the run synced and read on another thread while a handle writes it ---- */

/* The JSON Lines files' sizes at one moment: modules, stacks, events, pool, gaps (the order in
 * which they are read), taken once every collected line is written. Lines are written whole, and
 * stacks before the events that name them, so a reader that stops at these sizes
 * (kdh_store_read_extent) sees whole lines only and every stack its events name, however much the
 * handle has appended since. */
#define KDH_STORE_JSONL_FILES 5
typedef struct kdh_store_extent {
    uint64_t bytes[KDH_STORE_JSONL_FILES];
} kdh_store_extent_t;
/* Flushes, then the files' sizes into *ext. */
int kdh_store_extent(kdh_store_t *st, kdh_store_extent_t *ext, kdh_err_t *err);
/* fdatasync of the run's JSON Lines files in dir, each opened by its path here instead of through
 * a handle's descriptors, so it is safe on any thread while a handle writes or closes them (a sync
 * through any descriptor of a file writes that file's data). */
int kdh_store_sync_files(const char *dir, kdh_err_t *err);
/* A failure of kdh_store_sync_files on another thread, handed to the handle: it fails from now on
 * as if its own fsync had failed (see above), unless it failed before. */
void kdh_store_set_failed(kdh_store_t *st, const kdh_err_t *e);

/* ---- stack identity (pure) ---- */

/* The canonical text of a stack ("key:rva_hex;key:rva_hex;..."), NUL-terminated, into buf of cap
 * bytes. Returns the full length (as snprintf does), or a negative KDH_E* code. */
int kdh_store_canonical(const kdh_store_frame_t *frames, size_t n, char *buf, size_t cap);
/* XXH3-64 of the canonical text. */
uint64_t kdh_store_stack_id(const kdh_store_frame_t *frames, size_t n);
/* 16 lower-case hex digits + NUL into out[17]; parse accepts exactly that form. */
void kdh_store_sid_format(uint64_t sid, char out[17]);
int kdh_store_sid_parse(const char *s, uint64_t *sid);

/* ---- reader ---- */

/* Callbacks receive pointers valid only during the call. Any may be NULL. A non-zero return
 * from a callback stops the read and is returned by kdh_store_read. Files are read in the order
 * meta.json, modules.jsonl, stacks.jsonl, events.jsonl, pool.jsonl, gaps.jsonl. */
typedef struct kdh_store_reader {
    void *ud;
    int (*on_meta)(void *ud, const struct json_t *meta);
    int (*on_module)(void *ud, const kdh_store_module_t *m);
    int (*on_stack)(void *ud, uint64_t sid, const kdh_store_frame_t *frames, size_t n);
    int (*on_event)(void *ud, const kdh_store_event_t *ev);
    int (*on_pool)(void *ud, const kdh_store_pool_t *p);
    int (*on_gap)(void *ud, const kdh_store_gap_t *g);
    /* A line (or a file: line 0) that was skipped, with the reason. */
    void (*on_skip)(void *ud, const char *file, uint64_t line, const char *why);
} kdh_store_reader_t;

typedef struct kdh_store_read_stats {
    uint64_t lines;   /* lines accepted, all files */
    uint64_t skipped; /* lines skipped (torn, garbage, missing fields, too long) */
    uint64_t events;
    uint64_t stacks;
    int missing_stacks; /* events.jsonl present but stacks.jsonl absent */
} kdh_store_read_stats_t;

/* Streams the run in dir. Errors: KDH_ENOTFOUND when dir is not a run directory (neither
 * meta.json nor events.jsonl), KDH_EUNSUPPORTED for an unknown schema version, KDH_EIO.
 * Damaged lines are skipped and reported through on_skip, never fatal. stats may be NULL. */
int kdh_store_read(const char *dir, const kdh_store_reader_t *rd, kdh_store_read_stats_t *stats,
                   kdh_err_t *err);

/* kdh_store_read, plus a hint: on_event_ahead (may be NULL) receives an event a few events before
 * on_event does (large files only, not necessarily every event), so the consumer can prefetch what
 * it will touch. */
int kdh_store_read_hinted(const char *dir, const kdh_store_reader_t *rd,
                          void (*on_event_ahead)(void *ud, const kdh_store_event_t *ev),
                          kdh_store_read_stats_t *stats, kdh_err_t *err);
/* kdh_store_read_hinted reading each JSON Lines file only up to its size in upto (NULL: to its
 * end), for a run another thread is writing (kdh_store_extent). */
int kdh_store_read_extent(const char *dir, const kdh_store_reader_t *rd,
                          void (*on_event_ahead)(void *ud, const kdh_store_event_t *ev),
                          const kdh_store_extent_t *upto, kdh_store_read_stats_t *stats, kdh_err_t *err);

/* Parses one line of events.jsonl (no newline needed). Pure; used by the reader and fuzzed.
 * ev->src is left NULL (the reader passes it to on_event while the line is alive). */
int kdh_store_parse_event(const char *line, size_t len, kdh_store_event_t *ev, kdh_err_t *err);

#endif
