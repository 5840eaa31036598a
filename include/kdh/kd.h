/* kdh/kd.h: typed KD calls over one link. A session knows whether the target is stopped, sends
 * one manipulate request at a time and matches its reply, splits large memory transfers into
 * packets, falls back from GetContextEx/SetContextEx to full Get/SetContext on targets that lack
 * them, answers the target's own prompts (DbgPrompt, .kdfiles) so it never waits on us, and hands
 * state changes and DbgPrint text to its owner.
 *
 * Requests are caller-owned structs (no allocation per call): fill one with a kdh_kd_* helper,
 * it is queued, and done() runs exactly once with req->status set:
 *   KDH_OK          the target answered with STATUS_SUCCESS (reads: see out_len for partial reads)
 *   KDH_ETARGET     the target answered with a failure status (req->nt_status)
 *   KDH_ETIMEDOUT   no ACK (after the link's retries), or no reply within reply_timeout_ms
 *                   after the request was sent 1 + reply_retries times
 *   KDH_ECANCELED   the target reset or re-sent its state change; the stop it belonged to is gone
 *   KDH_EINVAL      the target was running (only continue/break make sense then)
 * req->err carries a one-line message for every failure. */
#ifndef KDH_KD_H
#define KDH_KD_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"
#include "kdh/link.h"
#include "kdh/wire.h"

typedef struct kdh_kd kdh_kd_t;
typedef struct kdh_kd_req kdh_kd_req_t;
typedef void (*kdh_kd_done_cb)(kdh_kd_t *kd, kdh_kd_req_t *req);

enum kdh_kd_op {
    KDH_KD_OP_PLAIN = 0,     /* one manipulate request, reply expected */
    KDH_KD_OP_NO_REPLY,      /* Continue, Continue2, SwitchProcessor, ... : done on the ACK */
    KDH_KD_OP_READ_VIRTUAL,  /* split into KDH_WIRE_READ_MAX chunks */
    KDH_KD_OP_WRITE_VIRTUAL, /* split into chunks */
    KDH_KD_OP_GET_CONTEXT_EX,
    KDH_KD_OP_SET_CONTEXT_EX
};

struct kdh_kd_req {
    /* ---- set by the kdh_kd_* helpers ---- */
    int op;
    kdh_wire_manip_t m;          /* request header; on completion, the last reply header */
    const uint8_t *data;         /* request data (memory to write, CONTEXT to set) */
    size_t data_len;
    uint8_t *out;                /* reply data destination (memory read, CONTEXT) */
    size_t out_cap;
    uint64_t address;            /* READ/WRITE_VIRTUAL: start; *_CONTEXT_EX: offset */
    kdh_kd_done_cb done;
    void *user;
    /* ---- results ---- */
    int status;
    uint32_t nt_status;
    size_t out_len;              /* bytes placed in out (reads: stops at the first short chunk) */
    kdh_err_t err;
    /* ---- internal ---- */
    kdh_kd_req_t *next;
    size_t cursor;               /* bytes done so far (split transfers) */
    size_t chunk;                /* bytes asked in the chunk on the wire */
    int stage;                   /* fallback stage of the context ops */
    unsigned retries;            /* times the current packet was asked again for want of a reply */
    int verify;                  /* a context set read back (noisy line) */
    unsigned verify_tries;       /* sets whose read-back differed */
    int acked;
};

typedef struct kdh_kd_stats {
    uint64_t requests;           /* manipulate packets sent (each is one round trip) */
    uint64_t replies;
    uint64_t stray_replies;      /* replies matching no request (late, after a timeout) */
    uint64_t state_changes;
    uint64_t prints;
    uint64_t context_ex_fallbacks;
    uint64_t stale_reply_resyncs; /* RESETs sent again because a stale reply came first */
    uint64_t reply_retries;       /* requests asked again after their reply did not come */
    uint64_t damaged_replies;     /* replies whose echoed fields contradict the request (asked again) */
    uint64_t verified_reads;      /* memory read chunks asked twice on a noisy line */
    uint64_t read_mismatches;     /* ...whose two copies differed (asked again) */
    uint64_t verified_sets;       /* context sets read back on a noisy line */
    uint64_t set_mismatches;      /* ...that read back other bytes than were set (set again) */
    uint64_t damaged_stops;       /* state changes with impossible fields (the stop asked again) */
    uint64_t corrected_pcs;       /* stop reports whose PC disagreed with the context (kdh_kd_correct_pc) */
    uint64_t corrected_threads;   /* ...whose thread disagreed with the processor's (kdh_kd_correct_thread) */
} kdh_kd_stats_t;

typedef struct kdh_kd_cfg {
    /* write, loop or now, ctx-free timing fields: see kdh/link.h. on_packet, on_event and ctx
     * of this struct are ignored (the session takes them). */
    kdh_link_cfg_t link;
    void *link_ctx;              /* ctx passed to link.write / link.now */
    kdh_wire_arch_t arch;        /* best guess until kdh_kd_set_arch() (after GetVersion) */
    unsigned reply_timeout_ms;   /* after the ACK; default 1 s + the largest reply's wire time at
                                    link.baud (1.35 s at 115200) */
    unsigned reply_retries;      /* the request is sent again this many times; default 3 */

    void (*on_state_change)(void *ctx, const kdh_wire_state_change_t *sc);
    void (*on_print)(void *ctx, unsigned processor, const char *text, size_t len);
    void (*on_link_event)(void *ctx, const kdh_link_event_t *ev);
    void *ctx;
} kdh_kd_cfg_t;

int kdh_kd_new(kdh_kd_t **out, const kdh_kd_cfg_t *cfg, kdh_err_t *err);
/* Fails every queued request with KDH_ECANCELED, then frees the session and its link. */
void kdh_kd_free(kdh_kd_t *kd);

kdh_link_t *kdh_kd_link(kdh_kd_t *kd);
/* Connect handshake (optional break-in first); the target's state change follows. */
int kdh_kd_connect(kdh_kd_t *kd, int breakin, kdh_err_t *err);
int kdh_kd_break(kdh_kd_t *kd, kdh_err_t *err);
/* Bytes from the transport. */
void kdh_kd_feed(kdh_kd_t *kd, const uint8_t *buf, size_t len);
/* Without a loop: run due deadlines (link retransmits, reply timeouts). */
void kdh_kd_poll(kdh_kd_t *kd);

/* Layout of Continue2 and of the state change's control report. The last state change is
 * decoded again with the new layout. */
void kdh_kd_set_arch(kdh_kd_t *kd, kdh_wire_arch_t arch);
kdh_wire_arch_t kdh_kd_arch(const kdh_kd_t *kd);
int kdh_kd_stopped(const kdh_kd_t *kd);
/* Counts stops; per-stop caches compare it to know they are stale. */
uint64_t kdh_kd_stop_serial(const kdh_kd_t *kd);
/* The state change of the current stop (NULL while running). Its pointers stay valid until the
 * target runs again. */
const kdh_wire_state_change_t *kdh_kd_state(const kdh_kd_t *kd);
/* Replaces the current stop's program counter with the one its context holds, for a stop report
 * whose PC field was damaged in a way the byte-sum checksum cannot see (the caller read the
 * context). Counted in stats.corrected_pcs. No effect while the target runs. */
void kdh_kd_correct_pc(kdh_kd_t *kd, uint64_t pc);
/* The same for the stop's thread, read from the processor's control space (x64). Counted in
 * stats.corrected_threads. */
void kdh_kd_correct_thread(kdh_kd_t *kd, uint64_t thread);
const kdh_kd_stats_t *kdh_kd_stats(const kdh_kd_t *kd);
/* 1 once the target answered GetContextEx with a failure (the session then uses full
 * Get/SetContext and slices them). */
int kdh_kd_context_ex_unsupported(const kdh_kd_t *kd);
size_t kdh_kd_context_size(const kdh_kd_t *kd);

/* ---- requests: each fills req and queues it ---- */
void kdh_kd_get_version(kdh_kd_t *kd, kdh_kd_req_t *req, kdh_kd_done_cb done, void *user);
/* Reply in req->m.u.version. */
void kdh_kd_read_virtual(kdh_kd_t *kd, kdh_kd_req_t *req, uint64_t va, void *buf, size_t len,
                         kdh_kd_done_cb done, void *user);
void kdh_kd_write_virtual(kdh_kd_t *kd, kdh_kd_req_t *req, uint64_t va, const void *buf,
                          size_t len, kdh_kd_done_cb done, void *user);
/* Full CONTEXT of processor (0x4D0 / 0x2CC bytes into buf). */
void kdh_kd_get_context(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor, void *buf,
                        size_t cap, kdh_kd_done_cb done, void *user);
void kdh_kd_set_context(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor, const void *ctx,
                        size_t len, kdh_kd_done_cb done, void *user);
/* CONTEXT bytes [offset, offset+len) of processor: GetContextEx, or a sliced GetContext on
 * targets without it (one full read per stop, then served from the session's copy). */
void kdh_kd_get_context_slice(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor,
                              uint32_t offset, void *buf, size_t len, kdh_kd_done_cb done,
                              void *user);
/* Writes CONTEXT bytes [offset, offset+len): SetContextEx (after a GetContextEx of the slice
 * when the target refuses to set what was not read in this stop), or GetContext + patch +
 * SetContext on targets without the Ex calls. */
void kdh_kd_set_context_slice(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor,
                              uint32_t offset, const void *buf, size_t len, kdh_kd_done_cb done,
                              void *user);
void kdh_kd_read_control(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor, uint64_t selector,
                         void *buf, size_t len, kdh_kd_done_cb done, void *user);
/* Handle in req->m.u.write_bp.handle (0 means the target refused). */
void kdh_kd_write_breakpoint(kdh_kd_t *kd, kdh_kd_req_t *req, uint64_t va, kdh_kd_done_cb done,
                             void *user);
void kdh_kd_restore_breakpoint(kdh_kd_t *kd, kdh_kd_req_t *req, uint32_t handle,
                               kdh_kd_done_cb done, void *user);
/* Continue2 (no reply; done on the ACK). trace: single-step one instruction. */
void kdh_kd_continue(kdh_kd_t *kd, kdh_kd_req_t *req, uint32_t status, int trace, uint64_t dr7,
                     kdh_kd_done_cb done, void *user);
void kdh_kd_switch_processor(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor,
                             kdh_kd_done_cb done, void *user);
void kdh_kd_clear_internal_breakpoints(kdh_kd_t *kd, kdh_kd_req_t *req, kdh_kd_done_cb done,
                                       void *user);

/* Blocking wait: runs until req is done and returns req->status. Needs cfg.link.loop. Each wait
 * step is kdh_task_wait(): a one-target tool runs the loop itself; inside a task of the
 * daemon's scheduler the task yields and the other targets go on meanwhile. */
int kdh_kd_wait(kdh_kd_t *kd, kdh_kd_req_t *req);

#endif
