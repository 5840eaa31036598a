/* kd_int.h: the KD session's state, shared by the session (kd.c) and its typed calls
 * (calls.c). */
#ifndef KDH_KD_INT_H
#define KDH_KD_INT_H

#include "kdh/kd.h"

#define KDH_KD_PENDING 1
/* Line noise is measured over this many received frames; at NOISY_PCT damaged frames or more,
 * memory reads and context sets are verified (see kd_line_noisy in damage.c). */
#define NOISE_WINDOW 64
#define NOISY_PCT 10
#define VERIFY_TRIES 4
#define WRITE_MAX (KDH_WIRE_PACKET_MAX - KDH_WIRE_MANIP_SIZE)
#define CTX_FLAGS_OFF_AMD64 0x30u
#define CTX_FLAGS_OFF_X86 0x00u

struct kdh_kd {
    kdh_kd_cfg_t cfg;
    kdh_link_t *link;
    kdh_kd_stats_t st;

    kdh_kd_req_t *head, *tail;
    int on_wire;        /* head's packet is being sent (link send outstanding) */
    int awaiting_reply; /* head's packet was ACKed; its reply is due by reply_due */
    uint64_t reply_due;

    /* An answer the session owes the target (DbgPrompt reply, declined file open); it goes out
     * before the next request. */
    int owed;
    uint16_t owed_type;
    uint8_t owed_buf[KDH_WIRE_FILE_IO_SIZE];
    size_t owed_len;
    int owed_on_wire;

    int stopped;
    uint64_t stop_serial;
    uint8_t sc_raw[KDH_WIRE_PACKET_MAX];
    size_t sc_len;
    kdh_wire_state_change_t sc;

    int ctx_ex_unsupported;  /* GetContextEx refused: slice full contexts */
    int set_ex_unsupported;  /* SetContextEx refused even after a Get in the same stop */
    uint64_t ctx_got_serial; /* stop in which a context read last succeeded (+1; 0 = none) */
    uint8_t ex_scratch[KDH_WIRE_CONTEXT_AMD64_SIZE];
    int resync_armed;        /* connected, no stop seen yet: a stale reply means "re-report" */
    uint8_t ctx_cache[KDH_WIRE_CONTEXT_AMD64_SIZE];
    int ctx_cache_valid;
    unsigned ctx_cache_cpu;
    uint64_t ctx_cache_serial;

    /* Verified reads: the chunk on the wire is read twice and taken when both copies agree. */
    uint64_t noise_bad, noise_frames; /* link counters at the start of the current window */
    unsigned noise_pct;               /* damaged frames in the last full window, percent */
    int v_active;                     /* the head read's current chunk is being verified */
    int v_have;                       /* its first copy is in v_buf */
    size_t v_len;
    uint32_t v_status;
    unsigned v_tries;
    uint8_t v_buf[KDH_WIRE_READ_MAX];

    uv_timer_t timer;
    int has_timer;
};

/* Puts req at the end of the queue (fields reset) and starts it when the line is free. */
void kd_enqueue(kdh_kd_t *kd, kdh_kd_req_t *req);
/* Bytes of the target's CONTEXT (x86 or AMD64). */
size_t kd_ctx_size(const kdh_kd_t *kd);

/* damage.c. 1 when the last window of received frames had NOISY_PCT damaged ones or more. */
int kd_line_noisy(kdh_kd_t *kd);
/* What in a reply contradicts its request (the head, in its current stage), or NULL. */
const char *kd_reply_damage(const kdh_kd_t *kd, const kdh_kd_req_t *req, const kdh_wire_manip_t *m,
                            size_t dlen);
/* What in a state change cannot be, or NULL. */
const char *kd_stop_damage(const kdh_wire_state_change_t *sc);

#endif
