/* harvest_int.h: private state of the harvest engine, shared by its files (the connection shell,
 * the journal, the per-hit pipeline and the run loop). */
#ifndef KDH_HARVEST_INT_H
#define KDH_HARVEST_INT_H

#include <stdio.h>
#include <uv.h>

#include "kdh/harvest.h"
#include "kdh/kd.h"
#include "kdh/store.h"
#include "kdh/target.h"
#include "kdh/transport.h"

/* ---- connection shell (shell.c): transport + kd session on the caller's loop or a private one ---- */
typedef struct hv_conn {
    uv_loop_t own_loop;     /* used when the harvest options name no loop */
    uv_loop_t *loop;
    int loop_ok;            /* own_loop initialised */
    uv_timer_t timer;
    int timer_ok, expired, timer_closed;
    kdh_transport_t *tp;
    kdh_kd_t *kd;
    int tp_dead;
    char tp_error[256];
    int no_packet;
    char no_packet_msg[256];
    int reset_seen;         /* the target reset the link (rebooted?): check the boot at the next stop */
    uint64_t reset_serial;  /* the stop serial when the link was last reset */
    /* quiet-line probe (shell.c): bytes both ways and loop time when they last changed or the
     * last probe went; probed: a probe went since the run's loop last looked */
    uint64_t quiet_bytes, quiet_since;
    int probed;
    unsigned baud;
    void (*on_print)(void *ctx, const char *text, size_t len);
    void (*on_notice)(void *ctx, const char *line); /* the port hung up, is back, ... */
    /* the line was down from t0 to t1 (wall clock; why: the transport's words), called when it is
     * back, or by hv_conn_end_line_gap while it is still down */
    void (*on_line_gap)(void *ctx, double t0, double t1, const char *why);
    double line_down_since; /* wall clock; 0 while the line is up */
    char line_down_why[160];
    void *print_ctx;
} hv_conn_t;

/* loop NULL: a private loop, run by the blocking helpers themselves; otherwise the shared loop
 * of the daemon, whose scheduler runs it while this harvest's task waits. */
int hv_conn_open(hv_conn_t *c, uv_loop_t *loop, const char *port, unsigned baud, kdh_err_t *err);
/* Runs the loop until the target is stopped, timeout_ms passed (KDH_ETIMEDOUT with *timed_out
 * set), the port died (KDH_EHANGUP) or the link reported silence while a packet was expected.
 * Both waits probe a line quiet for HV_PROBE_QUIET_MS while the target is believed to run
 * (shell.c): a target still stopped then reports its stop again. */
#define HV_PROBE_QUIET_MS 1000
int hv_conn_wait_stop(hv_conn_t *c, unsigned timeout_ms, int *timed_out, kdh_err_t *err);
/* Runs the loop until a stop other than number serial is reported (1), or timeout_ms (0). */
int hv_conn_wait_new_stop(hv_conn_t *c, uint64_t serial, unsigned timeout_ms);
/* After a Continue, whether the target really runs: 1 when a stop other than serial comes within
 * a moment (a RESEND, probed set, has a target still stopped report its stop again), 0 when
 * the line stays quiet. About 0.3 s at 115200 baud. */
int hv_conn_confirm_running(hv_conn_t *c, uint64_t serial);
/* A stop that did not come: a RESET has the target report the stop it is in again (the one
 * numbered serial, when a Continue was acknowledged and ignored). KDH_OK once a new stop is
 * reported, else KDH_ETIMEDOUT after 10 s (KDH_EHANGUP when the port died). */
int hv_conn_restop(hv_conn_t *c, uint64_t serial, kdh_err_t *err);
/* Stops the target for a look: a break-in; a target that rebooted may answer only a fresh
 * connect (break-in + RESET), so that comes next. KDH_OK once a new stop is reported, or at once
 * when the stop the session holds was reported after the link's last reset (the target is in it).
 * port: for the message when nothing answers. */
int hv_conn_probe_stop(hv_conn_t *c, const char *port, kdh_err_t *err);
/* The link's events (kdh_kd_cfg_t.on_link_event, ctx c): a RESET notes reset_seen and the stop
 * serial at that moment. */
void hv_conn_link_event(void *ctx, const kdh_link_event_t *ev);
/* One request, blocking; KDH_OK or the request's status with its message in err. */
int hv_conn_call(hv_conn_t *c, kdh_kd_req_t *req, const char *what, kdh_err_t *err);
/* One ReadVirtualMemory of len bytes at va, blocking: KDH_OK with *got bytes read (fewer when
 * the target read less), or the request's status with "what at 0x...: why" in err (may be NULL)
 * and *got 0. */
int hv_conn_read(hv_conn_t *c, uint64_t va, void *buf, uint32_t len, uint32_t *got, const char *what,
                 kdh_err_t *err);
/* Continue2 DBG_CONTINUE (or status), trace 0, Dr7 0; waits for the ACK. */
int hv_conn_continue(hv_conn_t *c, uint32_t status, kdh_err_t *err);
/* Writes out what the transport still holds (the ACK of the last packet), up to 2 s. */
void hv_conn_drain(hv_conn_t *c);
/* A line still down: its gap ends now (on_line_gap); nothing when it is up. */
void hv_conn_end_line_gap(hv_conn_t *c);
/* Closes the port and the session; returns once c's own handles are closed (c may be freed). */
void hv_conn_close(hv_conn_t *c);
uint64_t hv_conn_bytes(const hv_conn_t *c, int out);

/* ---- journal (journal.c): journal.jsonl in the run directory ---- */
typedef struct hv_journal_state {
    int armed;              /* the last record armed something not disarmed since */
    uint64_t addr;          /* &PoolHitTag at that time */
    uint32_t old_value;     /* value before arming */
    uint64_t kernel_base;
} hv_journal_state_t;

int hv_journal_append(const char *dir, const char *op, uint64_t addr, uint32_t old_value,
                      uint32_t new_value, uint64_t kernel_base, kdh_err_t *err);

/* Breakpoint records (bp_set / bp_clear lines): handles set on this kernel and not cleared. */
#define HV_JOURNAL_BPS 64
typedef struct hv_journal_bps {
    size_t n;
    uint64_t addr[HV_JOURNAL_BPS];
    uint32_t handle[HV_JOURNAL_BPS];
    uint64_t kernel_base[HV_JOURNAL_BPS];
} hv_journal_bps_t;
/* Reads dir/journal.jsonl in one pass into st (PoolHitTag arming) and bps (open breakpoint
 * records); either may be NULL. Absent = nothing armed. Damaged lines are ignored. */
void hv_journal_read(const char *dir, hv_journal_state_t *st, hv_journal_bps_t *bps);
/* durable: fsync before returning. A set is written, durably, right after WriteBreakPoint
 * answered with its handle; a lost clear only costs a refused RestoreBreakPoint at the next
 * start. */
int hv_journal_bp(const char *dir, const char *op, uint64_t addr, uint32_t handle, uint64_t kernel_base,
                  int durable, kdh_err_t *err);

/* ---- pure helpers (classify.c) ---- */
/* Alloc/free from a routine name ("nt!ExpInsertPoolTracker+0x1c"): KDH_STORE_ALLOC,
 * KDH_STORE_FREE, or -1 when the name says neither. */
int hv_classify_name(const char *sym);

/* Span predictor: (pc, sp) -> bytes of stack the last walk from there read; failing that, the
 * thread's last walk end (a thread's outermost frame does not move), then the last span. */
#define HV_PRED_SLOTS 1024
typedef struct hv_pred {
    uint64_t pc[HV_PRED_SLOTS], sp[HV_PRED_SLOTS];
    uint32_t span[HV_PRED_SLOTS];
    uint64_t thread[HV_PRED_SLOTS], end[HV_PRED_SLOTS];
    uint64_t last_pc;
    uint32_t last_span;
} hv_pred_t;
uint32_t hv_pred_get(const hv_pred_t *p, uint64_t pc, uint64_t sp, uint64_t thread);
void hv_pred_put(hv_pred_t *p, uint64_t pc, uint64_t sp, uint64_t thread, uint32_t span);

/* ---- software breakpoints (breakpoints.c) ---- */
#define HV_BP_MAX 32 /* the target's table holds 32 (KD_BREAKPOINT_MAX) */
typedef struct hv_bp {
    uint64_t addr;
    uint32_t handle;   /* the target's handle while the int 3 is in place; 0 = not in the target */
    int wanted;        /* 1: must be in place whenever the target runs */
} hv_bp_t;
#define HV_BP_HANDLES 64 /* handles the journal state below follows (the target's table is 32) */
typedef struct hv_bps {
    hv_bp_t bp[HV_BP_MAX];
    uint64_t writes, restores, steps, deleted_by_target;
    uint64_t lost_steps;     /* trace Continues the target acknowledged and ignored, sent again */
    /* the stop (kdh_kd_stop_serial) whose dropped int 3s were last noted: a stop is noted once,
     * since breakpoints written after it are in the target even when they lie in its range */
    uint64_t noted_serial;
    /* the journal's view: handle h was last recorded set at jaddr[h] and not cleared. The target
     * drops its int 3s at every stop without telling; writing the same handle at the same address
     * again then needs no new record (a breakpoint re-inserted after each stop costs no disk) */
    uint8_t jopen[HV_BP_HANDLES];
    uint64_t jaddr[HV_BP_HANDLES];
} hv_bps_t;

/* ---- leak accounting (pair.c) ---- */
/* An allocation whose block address comes from its return: the event waits for the one-shot
 * breakpoint at the return address into the allocator's caller. */
#define HV_WAIT_MAX 64
typedef struct hv_wait {
    int used;
    uint64_t bp;             /* return address */
    uint64_t thread, sp;     /* the thread that must reach it, with this stack pointer */
    kdh_store_event_t ev;    /* the allocation's event, written at the return */
} hv_wait_t;

/* Where a free's block address sits, learnt per free site (the break PC and its return address)
 * as a stack slot at a fixed offset from the stop's SP. */
#define HV_SITE_MAX 16
#define HV_SITE_OFFS 32
typedef struct hv_free_site {
    uint64_t pc, ret;
    uint32_t matched;                 /* frees whose block was found among the live blocks */
    uint32_t off[HV_SITE_OFFS];       /* candidate offsets and how often each held the block */
    uint32_t votes[HV_SITE_OFFS];
    uint32_t n_off;
    int locked;                       /* 1: off[0] is the block's slot */
} hv_free_site_t;

#define HV_LOCK_AFTER 4 /* consistent matches before a free site's slot is trusted alone */

typedef struct hv_pair {
    uint64_t *live_addr, *live_size; /* open addressing; 0 empty, 1 deleted */
    size_t live_cap, live_n, live_used;
    hv_wait_t wait[HV_WAIT_MAX];
    hv_free_site_t site[HV_SITE_MAX];
    /* counters (meta.json counters.pair) */
    uint64_t allocs_addr, allocs_no_addr, allocs_failed, frees_paired, frees_unmatched, frees_no_addr,
        returns_other;
    /* What the open hit's pairing did, for the hit handled again after a cancelled request (its
     * block already taken from the live set, its return already awaited): done again, it would
     * find nothing or wait twice. hv_hit_begin clears it for a new hit. */
    int again;                   /* HV_AGAIN_* */
    uint64_t again_addr, again_size;
} hv_pair_t;
enum { HV_AGAIN_NONE = 0, HV_AGAIN_NO_ADDR, HV_AGAIN_PAIRED, HV_AGAIN_UNMATCHED };

/* Pure parts (pair.c), unit-tested. */
/* POOL_HEADER's first two ULONGs (public layout, kd `!pool`): block bytes, header included, and
 * the tag; 0 when the header is not a live block of tag (free, wrong tag, or no header there:
 * big-page and special-pool blocks, segment-heap kernels). */
uint64_t hv_pool_header_size(const uint8_t hdr[8], unsigned pointer_size, uint32_t tag);
int hv_live_put(hv_pair_t *p, uint64_t addr, uint64_t size);
/* 1 and *size when addr is live (removed when take) */
int hv_live_get(hv_pair_t *p, uint64_t addr, uint64_t *size, int take);
void hv_pair_free_all(hv_pair_t *p);

/* ---- breakpoint modes (mode_bp.c) ---- */
#define HV_ENTRIES_MAX 8
typedef struct hv_entry {
    uint64_t addr;
    int routine;             /* argument layout (mode_bp.c) */
    int kind;                /* KDH_STORE_ALLOC / FREE */
} hv_entry_t;

/* ---- meta.json and summary.txt (runfiles.c) ---- */
/* A write of meta.json or summary.txt in libuv's thread pool. The loop thread fills it and starts
 * it; the worker reads dir, text and upto and writes rc and err, nothing else; the after-callback,
 * on the loop thread again, ends it (busy 0). */
typedef struct hv_job {
    uv_work_t req;
    struct hv *h;
    int busy;                /* queued or running: its after-callback has not run yet */
    const char *dir;         /* the run directory */
    char *text;              /* meta.json: the file's text, the job's own */
    kdh_store_extent_t upto; /* summary.txt: the run's files as they stood at the job's start */
    int rc;                  /* the worker's result, and its message */
    kdh_err_t err;
} hv_job_t;

typedef struct hv_runfiles {
    hv_job_t meta, summary;
    double meta_t, summary_t; /* monotonic seconds at each one's last start (or the loop's) */
} hv_runfiles_t;

/* ---- the engine (engine.c, hit.c) ---- */
typedef struct hv_sidset {
    uint64_t *sid;        /* 0 = empty slot (a real sid of 0 is stored as 1: only the count matters) */
    uint64_t *count;      /* events logged for that stack */
    size_t cap, n;
} hv_sidset_t;

/* Classified addresses (return addresses and PCs), per boot. */
#define HV_KIND_SLOTS 256
typedef struct hv_kindcache {
    uint64_t va[HV_KIND_SLOTS];
    int8_t kind[HV_KIND_SLOTS]; /* KDH_STORE_ALLOC/FREE, -1 neither, and 0 slot empty uses va 0 */
} hv_kindcache_t;

typedef struct hv {
    const kdh_harvest_opts_t *o;
    hv_conn_t c;
    kdh_target_t *t;
    kdh_store_t *st;
    char dir[512];
    char tag[5];
    uint32_t tag_dword;
    uint32_t boot;
    double started;          /* Unix seconds */
    double prev_end;         /* a continued run: when the run before last wrote anything (0: new run) */
    double armed_at;         /* monotonic seconds */
    uint64_t pht_addr;       /* &nt!PoolHitTag */
    char pht_source[64];
    uint32_t pht_old;        /* value before arming */
    int armed;
    uint64_t dbgbp;          /* nt!DbgBreakPoint, 0 when unknown */
    uint64_t bpws;           /* nt!DbgBreakPointWithStatus when KDDEBUGGER_DATA64 was unusable */
    hv_pred_t pred;
    hv_sidset_t sids;
    hv_kindcache_t kinds;
    size_t stacks_before;    /* unique stacks of the run before this start */
    FILE *dbgprint;
    /* counters */
    uint64_t hits, captured, counted, allocs, frees, unknown, capped, errors, reboots;
    double last_probe_wall;  /* Unix time of the last look at a quiet target */
    double last_hit_wall;    /* Unix time of the last hit, for the gap a reboot leaves */
    /* stall accounting: stopped seconds per wall second, last 60 s */
    double stall[60];
    int64_t stall_sec;
    /* status period */
    double last_status_t;
    uint64_t last_status_hits, last_status_bytes;
    hv_runfiles_t files;     /* meta.json and summary.txt jobs (runfiles.c) */
    int repaired;
    hv_bps_t bps;
    hv_pair_t pair;
    int detaching;           /* no new breakpoints: allocations are logged without an address */
    hv_entry_t entries[HV_ENTRIES_MAX]; /* specialpool / entry modes: the watched routines */
    int n_entries;
    uint32_t special_tag;    /* nt!MmSpecialPoolTag as read at arming (specialpool mode) */
    uint64_t filtered;       /* breakpoint stops of other tags, resumed at once */
    uint64_t nested;         /* entry mode: calls from inside nt, part of a call already seen */
    double last_hit_mono;
    /* A stop that arrives after a link reset or a look at a quiet target may be the last hit
     * reported again: a Continue the target acknowledged but never acted on (a damaged type
     * field, which the checksum does not cover) leaves it stopped where we already were. Only
     * that first stop is checked: whichever handler takes it clears the flag (a PoolHitTag hit
     * after checking; an entry or return stop at once, since a breakpoint of ours is stepped
     * over before its Continue, so a lost Continue leaves the target at the step's stop). */
    int restop_check;
    int boot_suspect; /* a request was refused around a new stop: check the boot at the next stop */
    uint64_t last_pc, last_thread; /* the last pool hit handled */
    /* a pool hit whose handling began and whose Continue was not acknowledged yet */
    int hit_open;
    uint64_t open_pc, open_thread;
    uint64_t restops;              /* hits seen again and continued without a second event */
    uint64_t pht_rewrites;         /* PoolHitTag writes read back wrong and written again */
    /* link byte counters at the end of the last hit (cost per hit) */
    uint64_t mark_in, mark_out, mark_req, mark_steps;
} hv_t;

/* meta.json and summary.txt (runfiles.c). */
/* Written now, on the loop thread, once the job writing the same file (if one is in flight) has
 * ended: at the attach, after a reboot and at the end. A meta.json failure is the caller's error;
 * a summary's failure is not reported, but a failed sync of the run's files fails the store. */
int hv_write_meta(hv_t *h, kdh_err_t *err);
void hv_write_summary(hv_t *h);
/* The run loop's periodic writes, in the thread pool: hv_runfiles_begin at the loop's start, then
 * hv_runfiles_tick at every turn starts meta.json every 10 s and summary.txt every
 * opts.summary_interval_s, each when due and its last job has ended. Returns the error of a
 * meta.json job that failed (it ends the run), else KDH_OK. */
void hv_runfiles_begin(hv_t *h, double now);
int hv_runfiles_tick(hv_t *h, double now, kdh_err_t *err);
/* Waits for the jobs in flight: before the harvest's loop or memory goes. */
void hv_runfiles_wait(hv_t *h);

double hv_now_mono(void);
double hv_now_wall(void);
/* Handles the current stop as a pool hit: classify, capture (or count), log, step over the
 * int 3 and continue. Its PC has been checked already (engine.c, verify_stop). */
int hv_handle_hit(hv_t *h, kdh_err_t *err);
/* The start every handled hit shares: counts it, unless it is the open hit (one whose handling
 * a link reset cancelled) reported again, and opens it until hv_finish_hit's Continue. */
void hv_hit_begin(hv_t *h, const kdh_wire_state_change_t *sc);
/* The end every handled hit shares (PoolHitTag and entry stops): continue the target, count the
 * hit captured or counted only, close it, log its event unless capped or deferred to its return,
 * report its cost. */
typedef struct hv_hit_end {
    int kind;              /* KDH_STORE_ALLOC / FREE / HIT */
    int captured, capped, deferred;
    int logged_stack;      /* sid is the captured stack's (hv_log_stack): counted for --stack-cap */
    uint64_t sid;
    double t_wall, t0;     /* when the stop was taken up (wall, monotonic) */
    uint64_t pc, thread;   /* the stop's, for the reported-again check */
} hv_hit_end_t;
int hv_finish_hit(hv_t *h, const hv_hit_end_t *x, kdh_store_event_t *ev, kdh_harvest_hit_cost_t *cost,
                  kdh_err_t *err);
/* One ReadVirtualMemory of len bytes at va into the per-stop cache (*got bytes arrived; the
 * target's refusal is a short read, not an error). */
int hv_fetch_stop(hv_t *h, uint64_t va, uint32_t len, uint32_t *got, kdh_err_t *err);
/* The stack walk of the current stop from its stack-register slice (kdh_target_stack_slice's
 * bytes, already read): the predicted span in one read, the unwinder for the rest. */
int hv_capture_from_slice(hv_t *h, const kdh_wire_state_change_t *sc, const uint8_t *slice, uint32_t len,
                          kdh_target_stack_t *s, kdh_harvest_hit_cost_t *cost, kdh_err_t *err);
/* Alloc/free of the routine holding va (hv_classify_name of its symbol), remembered per boot in
 * h->kinds so that a frame is symbolized once, not at every hit. */
int hv_kind_of(hv_t *h, uint64_t va);
/* Logs a captured stack (interned; symbolized the first time): its id, or *capped when the
 * per-stack cap was reached. The stack's count grows when the hit ends (hv_finish_hit). */
int hv_log_stack(hv_t *h, const kdh_target_stack_t *s, uint64_t *sid, int *capped, kdh_err_t *err);
/* GetContextEx of the PC alone, so that a following SetContextEx is accepted; *pc (may be NULL)
 * receives it. */
int hv_touch_context(hv_t *h, uint64_t *pc, kdh_err_t *err);
/* Adds a stack id written by an earlier start of the run. */
int hv_sid_known(hv_t *h, uint64_t sid);
void hv_stall_add(hv_t *h, double t0, double t1);
void hv_cost_report(hv_t *h, kdh_harvest_hit_cost_t *cost);

/* Breakpoints (breakpoints.c). */
/* Wants an int 3 at addr from the next continue on (KDH_ERANGE when the table is full).
 * Its bp_set record is written and fsynced before the harvest goes on, so that it survives a
 * killed process and a crash of the host itself; for a return breakpoint (--pair) that is a
 * disk flush per captured allocation. */
int hv_bp_want(hv_t *h, uint64_t addr, kdh_err_t *err);
/* No longer wanted: RestoreBreakPoint when it is in place. */
int hv_bp_unwant(hv_t *h, uint64_t addr, kdh_err_t *err);
/* Index of a wanted breakpoint at pc, or -1. */
int hv_bp_find(const hv_t *h, uint64_t pc);
/* At every stop: the target took out its breakpoints in the reported instruction range. Once per
 * stop: a second call for the same stop changes nothing. */
void hv_bp_note_stop(hv_t *h, const kdh_wire_state_change_t *sc);
/* Continue: steps over a wanted breakpoint at the stop's PC (trace flag, then re-insert), puts
 * every wanted breakpoint in place and sends Continue2. When the step ends in another kind of
 * stop, that stop is left for the run loop (the target stays stopped); the continue that ends its
 * handling puts the breakpoints back. */
int hv_continue(hv_t *h, uint32_t status, kdh_err_t *err);
/* The target rebooted: its breakpoints died with the old kernel. Forgets them and their open
 * journal records (a later start closes those of an earlier kernel); the counters run on across
 * boots, as the per-hit cost marks and meta.json counters need. */
void hv_bp_forget_all(hv_t *h);
/* Every breakpoint out of the target (detach). */
int hv_bp_clear_all(hv_t *h, kdh_err_t *err);
/* At start: breakpoints a crashed run left in this kernel (jb: the journal's open records) are
 * restored by their handles. Returns
 * how many the target still held (taken out now), or a KDH_E* code. */
int hv_bp_repair(hv_t *h, const hv_journal_bps_t *jb, kdh_err_t *err);

/* Leak accounting (pair.c). */
/* A captured allocation: wait for its return (1: the event is deferred) or 0 (log it now). */
int hv_pair_alloc(hv_t *h, const kdh_wire_state_change_t *sc, const kdh_target_stack_t *s,
                  const kdh_store_event_t *ev, kdh_err_t *err);
/* The allocation's event waits for the thread to return to ret_pc with SP ret_sp (one-shot
 * breakpoint); 1 when deferred, 0 when it must be logged now without an address. */
int hv_pair_wait(hv_t *h, const kdh_wire_state_change_t *sc, uint64_t ret_pc, uint64_t ret_sp,
                 const kdh_store_event_t *ev, kdh_err_t *err);
/* A captured free: the block address when it can be located (ev->addr/size filled). */
void hv_pair_free(hv_t *h, const kdh_wire_state_change_t *sc, const kdh_target_stack_t *s,
                  kdh_store_event_t *ev);
/* A free of block addr: its event gets the address, and the size when addr was live (taken out
 * of the live map; counted as paired, else as unmatched). */
void hv_pair_paired(hv_t *h, kdh_store_event_t *ev, uint64_t addr);
/* 1 when the current stop is at one of the return breakpoints. */
int hv_pair_owns_stop(hv_t *h, const kdh_wire_state_change_t *sc);
/* Handles that stop: the waiting thread's allocation gets its address and size and is logged;
 * another thread is stepped over. Continues the target. */
int hv_pair_on_return(hv_t *h, kdh_err_t *err);
/* Allocations still waiting (detach): logged without an address; their breakpoints dropped. */
int hv_pair_flush(hv_t *h, kdh_err_t *err);
int hv_pair_pending(const hv_t *h);

/* Breakpoint modes (mode_bp.c). */
/* Finds the mode's routines (PDB, --symbol, or nt's exports); specialpool warns when the target's
 * MmSpecialPoolTag is not the tag. */
int hv_mode_resolve(hv_t *h, kdh_err_t *err);
int hv_mode_arm(hv_t *h, kdh_err_t *err);
int hv_mode_disarm(hv_t *h, kdh_err_t *err);
int hv_mode_owns_stop(hv_t *h, const kdh_wire_state_change_t *sc);
/* A stop at a routine's entry: tag filter from the arguments; a match is captured (or counted)
 * and logged like a PoolHitTag hit; the target is continued either way. */
int hv_mode_on_entry(hv_t *h, kdh_err_t *err);
void hv_notice(hv_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double hv_stall_pct(hv_t *h, double now);

#endif
