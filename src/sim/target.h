/* target.h: kdsim's KD target side. Speaks the kdcom serial protocol (packet ids, ACK/RESEND/RESET,
 * retries, break-in, state changes, manipulate APIs) in front of a simulated machine (machine.h).
 * Pure state machine: bytes in, frames out, time passed in by the caller; no I/O, no clock. */
#ifndef KDSIM_TARGET_H
#define KDSIM_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"
#include "machine.h"

typedef enum {
    SIM_TARGET_RUNNING = 0, /* machine runs; only the break-in byte 0x62 is noticed */
    SIM_TARGET_SENDING,     /* a data packet waits for its ACK */
    SIM_TARGET_STOPPED      /* a state change was acknowledged; serving manipulate requests */
} sim_target_state_t;

typedef struct sim_target_opts {
    int no_context_ex;        /* answer GetContextEx/SetContextEx with STATUS_UNSUCCESSFUL */
    int no_control_space;     /* answer ReadControlSpace with STATUS_UNSUCCESSFUL */
    uint64_t ack_timeout_ns;  /* wait for an ACK after the last byte went out (default 500 ms) */
    uint64_t byte_timeout_ns; /* gap that ends a partial packet with a RESEND (100 ms) */
    int retries;              /* attempts for prints and load-symbols before giving up (20) */
} sim_target_opts_t;

typedef struct sim_target_stats {
    uint64_t rx_packets, rx_bad, rx_duplicates, tx_packets, tx_retransmits;
    uint64_t stops, prints, breakins, resets;
    uint64_t breakpoints;     /* entries in the software breakpoint table now */
    uint64_t control_reads;   /* ReadControlSpace requests served (refused ones included) */
} sim_target_stats_t;

typedef struct sim_target sim_target_t;

void sim_target_opts_default(sim_target_opts_t *o);

/* The machine must outlive the target. Boots the machine if it has not booted yet. */
sim_target_t *sim_target_create(sim_machine_t *m, const sim_target_opts_t *o, kdh_err_t *err);
void sim_target_destroy(sim_target_t *t);

/* Bytes that arrived from the host at time now_ns (any monotonic clock, also used by tick). */
int sim_target_input(sim_target_t *t, uint64_t now_ns, const uint8_t *buf, size_t len, kdh_err_t *err);

/* Handles timeouts (retransmissions, partial packets); while running, injects a
 * pending break-in and runs the machine for at most run_budget_ns of simulated time. */
int sim_target_tick(sim_target_t *t, uint64_t now_ns, uint64_t run_budget_ns, kdh_err_t *err);

/* Output is a queue of whole packets (so a line can drop or duplicate packets). peek returns 0
 * when empty. sent() removes the head; sent_done_ns is when its last byte left the line, from
 * which the ACK timeout of a data packet is counted. */
int sim_target_peek(const sim_target_t *t, const uint8_t **data, size_t *len);
/* When the head packet was queued (the target's clock: the now of the input or tick that made it). */
uint64_t sim_target_peek_ready(const sim_target_t *t);
void sim_target_sent(sim_target_t *t, uint64_t sent_done_ns);

/* A new boot (Reboot API or a fault): new load addresses, ids back to their initial values,
 * breakpoint table emptied, boot load-symbols reported again. */
int sim_target_reboot(sim_target_t *t, kdh_err_t *err);

sim_target_state_t sim_target_state(const sim_target_t *t);
/* What a sending target waits to have acknowledged: "print", "load-symbols", "exception" (a stop
 * report), "reply"; "none" when it is not sending. A print or load-symbols is given up after its
 * retries and the target runs on; the others are retried for as long as no host answers. */
const char *sim_target_pending_name(const sim_target_t *t);
void sim_target_stats(const sim_target_t *t, sim_target_stats_t *s);
/* Current send id and expected receive id (for tests and --status). */
void sim_target_ids(const sim_target_t *t, uint32_t *tx_id, uint32_t *rx_expect);

#endif
