/* fault.h: deterministic fault injection on kdsim's emulated serial line. A spec such as
 *   "corrupt=0.001,drop=0.0005,drop-packet=0.01,dup-packet=0.01,stall=2s/30s,reboot=60s"
 * with a seed gives the same faults for the same traffic: byte corruption and byte loss, lost and
 * duplicated packets (both directions), periodic stalls of the whole line (duration every
 * period, bytes held back, not lost), periodic hangups of a pty (hangup=DUR/PERIOD: the pty is
 * closed for DUR at the end of every period, as a USB serial adapter unplugged and plugged back;
 * bytes the target sends meanwhile are lost), one target reboot at a time since start, one
 * reboot on the Nth host request (reboot-in-request=N: the request is lost with the old boot,
 * never acknowledged), one host Continue2 whose packet type is damaged (acknowledged by the
 * target and ignored), and one host request lost with every retransmission of it until the host
 * resets the link (lose-request=N@K: the Nth manipulate request after the host's Kth Continue2,
 * as a burst of noise on a long request would; the target then reports its stop again), one host
 * memory write whose data is damaged in a way its checksum cannot see (mangle-write=N), and one
 * target stop report whose PC or thread is damaged that way (mangle-stop=N, mangle-thread=N). */
#ifndef KDSIM_FAULT_H
#define KDSIM_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

#define SIM_SPLIT_FRAME_MAX (16 + 4000 + 1) /* the largest packet the splitter holds */

typedef struct sim_fault_stats {
    uint64_t corrupted, dropped_bytes, dropped_packets, duplicated_packets, stalls, reboots, mangled, hangups;
    uint64_t lost_requests; /* copies of the lose-request packet dropped */
} sim_fault_stats_t;

typedef struct sim_faults {
    double corrupt, drop, drop_packet, dup_packet; /* probabilities per byte / per packet */
    uint64_t stall_ns, stall_period_ns;
    uint64_t hangup_ns, hangup_period_ns;
    int in_hangup;
    uint64_t reboot_at_ns; /* 0 = never */
    /* reboot-in-request=N: the Nth host manipulate request (Continue2 not counted) reboots the
     * target instead of reaching it. 0 = never. */
    uint64_t reboot_request_at, requests_seen;
    int reboot_request_due;
    /* mangle-continue=N: the host's Nth Continue2 gets one bit flipped in its packet type, which
     * the checksum does not cover; the target then acknowledges it and ignores it. 0 = never. */
    uint64_t mangle_continue_at, continues_seen;
    /* lose-request=N@K: the Nth manipulate request (Continue2 counted, retransmissions not) after
     * the Kth Continue2 is dropped, and so is every copy of it, until the host sends RESET.
     * 0 = never. */
    uint64_t lose_request_at, lose_after_continue, lose_continues, lose_requests;
    uint64_t lose_last_hash; /* the last request counted: a retransmission is not a new one */
    int lose_active, lose_done;
    uint8_t lose_pkt[SIM_SPLIT_FRAME_MAX];
    size_t lose_len;
    /* mangle-write=N: the host's Nth WriteVirtualMemory gets its first data byte raised by one and
     * its second lowered by one, which the payload checksum (a byte sum) does not see; the
     * target writes the damaged bytes. 0 = never. */
    uint64_t mangle_write_at, writes_seen;
    /* mangle-stop=N: the Nth exception stop report the target sends has bit 4 of its PC's second
     * byte cleared and bit 4 of a byte of its exception record set: the byte sum is the same. */
    uint64_t mangle_stop_at, stops_seen, stop_last_hash;
    /* mangle-thread=N: the Nth exception stop report has a bit of a middle byte of its thread
     * cleared and the same bit of another byte of its exception record set. */
    uint64_t mangle_thread_at, threads_seen;
    int reboot_done;
    int in_stall;
    uint64_t rng;
    sim_fault_stats_t st;
} sim_faults_t;

enum { SIM_FAULT_SEND = 1, SIM_FAULT_DROP = 0, SIM_FAULT_DUP = 2 };

/* spec may be NULL or "" (no faults). KDH_EINVAL with a message naming the bad item. */
int sim_faults_parse(sim_faults_t *f, const char *spec, uint64_t seed, kdh_err_t *err);
/* A whole target packet about to go out (buf is a copy): mangle-stop, mangle-thread. */
void sim_faults_target_packet(sim_faults_t *f, uint8_t *buf, size_t len);
/* Whether a fault acts on whole host packets (the host's bytes then go through a splitter). */
int sim_faults_host_packets(const sim_faults_t *f);
/* Whether to send a target packet: SIM_FAULT_SEND, _DROP, or _DUP (send it twice). */
int sim_faults_packet(sim_faults_t *f);
/* Corrupts (one random bit) and drops bytes in place; returns the new length. */
size_t sim_faults_bytes(sim_faults_t *f, uint8_t *buf, size_t len);
/* 1 while the line is stalled, at since_start_ns after the line came up. */
int sim_faults_stalled(sim_faults_t *f, uint64_t since_start_ns);
/* 1 while the pty is unplugged, at since_start_ns after the line came up. */
int sim_faults_hung_up(sim_faults_t *f, uint64_t since_start_ns);
/* 1 exactly once, when the reboot time has come or the request that reboots has been dropped. */
int sim_faults_reboot_due(sim_faults_t *f, uint64_t since_start_ns);

/* Finds whole packets in the host's byte stream so that they can be dropped or duplicated:
 * bytes outside packets pass at once, a packet's bytes are held until it is complete. */
typedef struct sim_splitter {
    uint8_t buf[SIM_SPLIT_FRAME_MAX];
    size_t len, need;
    uint64_t since_ns;
} sim_splitter_t;
#define SIM_SPLIT_OUT_MAX (2 * SIM_SPLIT_FRAME_MAX + 1)

/* Takes one byte at now_ns; writes what may go on into out (SIM_SPLIT_OUT_MAX bytes) and returns
 * its length. */
size_t sim_splitter_byte(sim_splitter_t *sp, sim_faults_t *f, uint8_t b, uint64_t now_ns, uint8_t *out);
/* A packet that stays incomplete for max_ns is let through as it is (the receiver's inter-byte
 * timeout deals with it). Returns the bytes written to out. */
size_t sim_splitter_expire(sim_splitter_t *sp, uint64_t now_ns, uint64_t max_ns, uint8_t *out);

#endif
