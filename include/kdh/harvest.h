/* kdh/harvest.h: the harvest engine for one target: attach over a port, arm nt!PoolHitTag (or
 * breakpoints on the pool routines) for one pool tag, capture each hit's allocation stack with the fewest bytes on the wire (a small
 * CONTEXT slice, one read of the predicted stack span, a RIP/EIP-only PC move, Continue2), and
 * stream deduplicated stacks and events to a run directory through kdh_store. Detaches cleanly
 * (PoolHitTag restored, target continued) and keeps a journal so a crash can be repaired. */
#ifndef KDH_HARVEST_H
#define KDH_HARVEST_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

typedef enum kdh_harvest_mode {
    KDH_HARVEST_HITTAG = 0,      /* nt!PoolHitTag = tag; the kernel's own int 3 reports every hit */
    KDH_HARVEST_SPECIALPOOL = 1, /* breakpoints on nt!MmAllocateSpecialPool / MmFreeSpecialPool (the
                                    target must run special pool for the tag: registry PoolTag) */
    KDH_HARVEST_ENTRY = 2        /* breakpoints on the exported ExAllocatePool* / ExFreePool* entries,
                                    the tag filtered on the host from the arguments; no PDB needed,
                                    slow on busy machines (every pool call of any tag stops) */
} kdh_harvest_mode_t;

/* "hittag", "specialpool" or "entry" to the mode: KDH_OK, or KDH_EINVAL (*mode unchanged). */
int kdh_harvest_mode_parse(const char *name, kdh_harvest_mode_t *mode);
/* The mode's name as kdh_harvest_mode_parse takes it (and meta.json "mode" shows it). */
const char *kdh_harvest_mode_name(kdh_harvest_mode_t mode);
#define KDH_HARVEST_MODE_NAMES "hittag, specialpool or entry"

/* Live figures for a status line (kdh_harvest_opts_t.on_status). */
typedef struct kdh_harvest_status {
    const char *state;        /* "connecting", "attaching", "armed", "detaching", "done" */
    uint64_t hits;            /* pool hits seen (captured + counted only) */
    uint64_t captured;        /* hits whose stack was read */
    uint64_t allocs, frees;   /* classified hits */
    uint64_t unique_stacks;   /* stacks of this run (including ones from before a restart) */
    double hits_per_s;        /* over the last status period */
    double bytes_per_s;       /* link bytes both directions over the last status period */
    double stall_pct;         /* share of the last minute the target was stopped by us */
    double elapsed_s;
} kdh_harvest_status_t;

/* Per-hit wire cost, for the benchmark and tests (kdh_harvest_opts_t.on_hit). */
typedef struct kdh_harvest_hit_cost {
    int captured;             /* 1: stack read; 0: counted only */
    int kind;                 /* KDH_STORE_ALLOC / FREE / HIT */
    uint64_t bytes_in, bytes_out; /* link bytes from the state change to the Continue's ACK */
    uint32_t requests;        /* manipulate requests answered by a reply (round trips) */
    uint32_t continues;       /* Continue2 packets (acknowledged, no reply) */
    uint32_t frames;
    uint64_t sp;              /* stack pointer at the hit */
    uint64_t stack_end;       /* one past the last return-address slot read by the unwinder */
    uint32_t stack_read;      /* stack bytes actually read from the target */
    int pair_return;          /* --pair: the stop at an allocation's return (not a pool hit) */
    int filtered;             /* specialpool/entry: a breakpoint stop of another tag, resumed */
} kdh_harvest_hit_cost_t;

typedef struct kdh_harvest_opts {
    const char *port;         /* kdh_transport spec: /dev/ttyS0, tcp://h:p, unix:/path */
    unsigned baud;            /* 0 = 115200 */
    const char *tag;          /* pool tag text ("Leak") */
    kdh_harvest_mode_t mode;
    int pair;                 /* leak accounting: block address and size of every captured
                                 allocation (a one-shot breakpoint on its return), frees matched
                                 to them by address */
    const char *out_dir;      /* run directory; created or continued */
    const char *target_name;  /* for meta.json ("target") */
    const char *symbol_path;  /* NULL: _NT_SYMBOL_PATH */
    const char *const *overrides; /* "NAME=nt+0x1234" (kdh_target_add_override), n_overrides */
    size_t n_overrides;
    unsigned sample;          /* capture 1 in N hits (others counted); 0 or 1 = every hit */
    uint64_t max_hits;        /* stop after this many hits; 0 = no limit */
    double duration_s;        /* stop after this long armed; 0 = no limit */
    uint64_t stack_cap;       /* per stack: after this many logged events, identical stacks are
                                 only counted (meta.json counters.capped); 0 = no cap */
    double max_stall_pct;     /* stopped more than this share of the last minute: disarm,
                                 log a gap, re-arm 10 s later; 0 = never */
    unsigned status_ms;       /* on_status period; 0 = 1000 */
    unsigned summary_interval_s; /* summary.txt rewritten this often while armed; 0 = 30 */
    unsigned connect_timeout_ms; /* 0 = 15000 */
    /* The libuv loop to run on: NULL = a private loop for this harvest; the daemon passes its
     * one shared loop and runs each target's kdh_harvest_run as a task (kdh/task.h) on it. */
    struct uv_loop_s *loop;
    volatile sig_atomic_t *stop; /* set non-zero (from a signal handler) to detach and return */
    volatile sig_atomic_t *reopen; /* set non-zero to reopen dbgprint.log (SIGHUP) */
    void (*on_status)(void *ctx, const kdh_harvest_status_t *st);
    void (*on_hit)(void *ctx, const kdh_harvest_hit_cost_t *cost);
    void (*on_notice)(void *ctx, const char *line); /* one-line warnings (repairs, gaps) */
    void *ctx;
    /* bench only: read the full CONTEXT, a fixed 4 KiB of stack, and write the full CONTEXT
     * back per hit (the naive strategy the fast path is measured against) */
    int naive;
} kdh_harvest_opts_t;

typedef struct kdh_harvest_result {
    kdh_harvest_status_t final;
    uint64_t bytes_in, bytes_out;
    uint64_t requests;
    int repaired;             /* the journal showed a target left armed; PoolHitTag restored */
    char run_dir[512];
} kdh_harvest_result_t;

/* Runs one harvest until opts->stop, max_hits or duration, then detaches. Errors (port, silent
 * target, bad tag, unresolvable PoolHitTag, unwritable directory) come back as KDH_E* with one
 * actionable line in err; the target is then left running and unarmed whenever it could be
 * reached. result may be NULL. */
int kdh_harvest_run(const kdh_harvest_opts_t *opts, kdh_harvest_result_t *result, kdh_err_t *err);

#endif
