/* target_int.h: state shared by the files of the KD target side: the link (target.c: framing, ids,
 * ACK/RESEND/RESET, retries, break-in) and the kernel-debugger half (target_api.c: state
 * changes, prints, manipulate APIs, breakpoint table). Not a public header. */
#ifndef KDSIM_TARGET_INT_H
#define KDSIM_TARGET_INT_H

#include "target.h"

#define KD_LEADER_DATA 0x30u
#define KD_LEADER_CTRL 0x69u
#define KD_BREAKIN 0x62u
#define KD_TRAILER 0xAAu
#define KD_MAX_PAYLOAD 4000u
#define KD_HDR 16u
#define KD_INITIAL_ID 0x80800000u
#define KD_SYNC_ID 0x00000800u

#define KD_TYPE_STATE_MANIPULATE 2u
#define KD_TYPE_DEBUG_IO 3u
#define KD_TYPE_ACK 4u
#define KD_TYPE_RESEND 5u
#define KD_TYPE_RESET 6u
#define KD_TYPE_STATE_CHANGE64 7u

#define KD_MANIP_HDR 0x38u
#define KD_MAX_TRANSFER (KD_MAX_PAYLOAD - KD_MANIP_HDR) /* 3944 */
#define KD_BP_MAX 32
#define KD_STATUS_SUCCESS 0u
#define KD_STATUS_UNSUCCESSFUL 0xC0000001u

#define SIM_TARGET_QUEUE 8

/* What the pending data packet is: decides retry policy and the state after its ACK. */
enum { PEND_NONE = 0, PEND_EXCEPTION, PEND_LOADSYM, PEND_PRINT, PEND_REPLY };

enum { RX_LEADER = 0, RX_HEADER, RX_PAYLOAD, RX_TRAILER };

typedef struct sim_frame {
    uint8_t bytes[KD_HDR + KD_MAX_PAYLOAD + 1];
    size_t len;
    int is_pending; /* the pending data packet: its ACK timer starts when it has gone out */
    uint64_t ready_ns; /* when it was queued */
    uint32_t gen;
} sim_frame_t;

typedef struct sim_bp {
    int used;
    uint64_t addr;
    uint8_t orig;
} sim_bp_t;

struct sim_target {
    sim_machine_t *m;
    sim_target_opts_t o;
    sim_info_t info;
    size_t ctx_size;
    uint64_t bws; /* KDDEBUGGER_DATA64.BreakpointWithStatus of this boot; 0 if unknown */
    sim_target_state_t state;
    uint64_t now;

    uint32_t tx_id, rx_expect;
    int not_present; /* gave up on a print/load-symbols: skip those until the host speaks */

    /* receive framer */
    int rx_phase;
    uint8_t lead_byte;
    int lead_count;
    uint8_t rx_hdr[KD_HDR];
    size_t rx_hdr_len;
    uint8_t rx_buf[KD_MAX_PAYLOAD];
    size_t rx_len, rx_need;
    uint64_t rx_deadline; /* inter-byte timeout of a partial packet or leader */
    int break_pending;

    /* the data packet waiting for an ACK */
    int pend_kind;
    uint16_t pend_type;
    uint8_t pend_payload[KD_MAX_PAYLOAD];
    size_t pend_len;
    int pend_retries;
    int pend_queued;  /* a copy sits in the output queue: its timer starts when sent */
    uint64_t ack_deadline;

    /* the current stop (state change payload kept for re-reports on RESEND/RESET) */
    int stop_kind; /* PEND_EXCEPTION or PEND_LOADSYM; PEND_NONE while running */
    int stop_cpu;
    uint8_t stop_payload[KD_MAX_PAYLOAD];
    size_t stop_len;
    int context_sent;

    sim_bp_t bp[KD_BP_MAX];

    sim_frame_t q[SIM_TARGET_QUEUE];
    int q_head, q_count;

    uint8_t reply[KD_MAX_PAYLOAD]; /* the manipulate reply being built */
    uint32_t pend_gen;             /* tells the live copy of the pending packet from stale ones */
    sim_target_stats_t st;
};

/* target.c: the link, used by target_api.c */
void sim_link_send(sim_target_t *t, int kind, uint16_t type, const uint8_t *payload, size_t len);

/* target_api.c */
void sim_kd_refresh_boot(sim_target_t *t);
/* Builds and sends the report of a machine stop; returns 1 if something was sent. */
int sim_kd_report_stop(sim_target_t *t, const sim_stop_t *stop);
/* Serves one accepted STATE_MANIPULATE request. */
void sim_kd_manipulate(sim_target_t *t, const uint8_t *p, size_t len);
/* Turns a pending break-in into a DbgBreakPointWithStatus call on CPU 0. */
void sim_kd_inject_breakin(sim_target_t *t);
void sim_kd_report_exception(sim_target_t *t, int cpu, uint64_t thread, uint64_t pc, uint32_t code);
void sim_kd_clear_breakpoints(sim_target_t *t);

#endif
