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
    unsigned baud;
    void (*on_print)(void *ctx, const char *text, size_t len);
    void *print_ctx;
} hv_conn_t;

/* loop NULL: a private loop, run by the blocking helpers themselves; otherwise the shared loop
 * of the daemon, whose scheduler runs it while this harvest's task waits. */
int hv_conn_open(hv_conn_t *c, uv_loop_t *loop, const char *port, unsigned baud, kdh_err_t *err);
/* Runs the loop until the target is stopped, timeout_ms passed (KDH_ETIMEDOUT with *timed_out
 * set), the port died (KDH_EHANGUP) or the link reported silence while a packet was expected. */
int hv_conn_wait_stop(hv_conn_t *c, unsigned timeout_ms, int *timed_out, kdh_err_t *err);
/* Runs the loop until a stop other than number serial is reported (1), or timeout_ms (0). */
int hv_conn_wait_new_stop(hv_conn_t *c, uint64_t serial, unsigned timeout_ms);
/* One request, blocking; KDH_OK or the request's status with its message in err. */
int hv_conn_call(hv_conn_t *c, kdh_kd_req_t *req, const char *what, kdh_err_t *err);
/* Continue2 DBG_CONTINUE (or status), trace 0, Dr7 0; waits for the ACK. */
int hv_conn_continue(hv_conn_t *c, uint32_t status, kdh_err_t *err);
/* Writes out what the transport still holds (the ACK of the last packet), up to 2 s. */
void hv_conn_drain(hv_conn_t *c);
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

/* Reads dir/journal.jsonl (absent = nothing armed). Damaged lines are ignored. */
void hv_journal_read(const char *dir, hv_journal_state_t *st);
int hv_journal_append(const char *dir, const char *op, uint64_t addr, uint32_t old_value,
                      uint32_t new_value, uint64_t kernel_base, kdh_err_t *err);

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

#endif

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
    double armed_at;         /* monotonic seconds */
    uint64_t pht_addr;       /* &nt!PoolHitTag */
    char pht_source[64];
    uint32_t pht_old;        /* value before arming */
    int armed;
    uint64_t dbgbp;          /* nt!DbgBreakPoint, 0 when unknown */
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
    double last_meta_t;
    int repaired;
    /* link byte counters at the end of the last hit (cost per hit) */
    uint64_t mark_in, mark_out, mark_req;
} hv_t;

double hv_now_mono(void);
double hv_now_wall(void);
/* Handles the current stop as a pool hit: classify, capture (or count), log, step over the
 * int 3 and continue. */
int hv_handle_hit(hv_t *h, kdh_err_t *err);
/* GetContextEx of the PC alone, so that a following SetContextEx is accepted. */
int hv_touch_context(hv_t *h, kdh_err_t *err);
/* Adds a stack id written by an earlier start of the run. */
int hv_sid_known(hv_t *h, uint64_t sid);
void hv_stall_add(hv_t *h, double t0, double t1);
double hv_stall_pct(hv_t *h, double now);
