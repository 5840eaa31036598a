/* kdh/link.h: the host side of the KD serial link for one target: packet ids, ACK / RESEND /
 * RESET, retransmission with bounded retries, connect (break-in + RESET handshake) and line
 * statistics. Transport-agnostic: bytes go out through a caller-supplied write function and
 * come in through kdh_link_feed(). Rules: kd-protocol.md 1.4-1.6 and 7.
 *
 * Time. The link reads "now" in milliseconds from cfg.now (default: uv_now(cfg.loop)). With a
 * loop it keeps one uv_timer armed at its next deadline and needs nothing else. Without a loop
 * (cfg.loop == NULL, cfg.now required) nothing fires by itself: the owner calls
 * kdh_link_poll() after moving its clock; unit tests drive the link this way, deterministically.
 *
 * Receiving. Every valid data packet is ACKed with id & ~0x800. It is accepted when its id
 * (sync bit masked) is the expected one, or when it carries the sync bit and either nothing has
 * been accepted since connect/RESET or it differs from the last accepted packet (the target
 * re-initialised, e.g. rebooted; a byte-identical copy is a retransmission). Anything else is a
 * duplicate: ACKed and dropped. A damaged data frame (checksum, missing trailer, oversize,
 * truncated by a new leader or by cfg.interbyte_timeout_ms of silence) is answered with RESEND,
 * and so is one whose header was damaged where the checksum does not reach: a type no target
 * sends, or an id other than 0x8080000[01] (sync bit masked). Control packets have no checksum:
 * a RESEND or RESET carrying a packet id is a damaged ACK and is ignored; an ACK whose id is
 * neither packet id while a send waits means the target read a damaged id (or the ACK itself
 * was damaged), so the packet goes again after KDH_LINK_DAMAGED_ACK_WAIT_MS unless the reply
 * comes first. RESET packets from the target are never echoed (that would ping-pong).
 *
 * Sending. One data packet at a time (kdh_link_send() returns KDH_EBUSY otherwise). It is
 * retransmitted on RESEND and when no ACK came within cfg.ack_timeout_ms (plus its own time on
 * the wire at cfg.baud). After cfg.max_retries retransmissions the link sends RESET, waits for
 * the echo (repeating RESET every cfg.reset_interval_ms) and then tries the packet once more
 * with a fresh budget; if that fails too, or the echo does not come within cfg.max_retries
 * RESETs, the send completes with KDH_ETIMEDOUT. A new data packet accepted while an ACK is
 * awaited counts as that ACK (the target only moves on to a new packet after receiving the
 * request; our real ACK was lost): the send completes with KDH_OK before on_packet sees the
 * packet. Duplicates do not count, nor does the first packet after a RESET echo (the target's
 * pending packet sent again, which says nothing about our request; after the link's own RESET
 * resync the request is then still outstanding and the state change is delivered first), nor a
 * packet from a re-initialised target (the send ends with KDH_ECANCELED). A RESET from the
 * target while connected resets both
 * ids and completes an outstanding send with KDH_ECANCELED: the target resends its pending state
 * change, and the layer above restarts from it.
 *
 * Callbacks run inside kdh_link_feed / kdh_link_poll / the timer; they may call kdh_link_send,
 * kdh_link_break and kdh_link_free (freeing is then deferred until the link returns). */
#ifndef KDH_LINK_H
#define KDH_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kdh/common.h"
#include "kdh/wire.h"

typedef struct kdh_link kdh_link_t;

typedef enum kdh_link_event_kind {
    KDH_LINK_EV_CONNECTED = 1, /* a RESET echo arrived: ids are at 0x80800000 on both sides */
    KDH_LINK_EV_RESET_SEEN,    /* the target sent RESET while connected: ids reset */
    KDH_LINK_EV_RESYNC,        /* retries exhausted, the link sent RESET; or the target
                                  re-initialised (sync-bit packet out of sequence) */
    KDH_LINK_EV_LINE_ERROR,    /* wire_kind: GARBAGE, BAD_CHECKSUM, MISSING_TRAILER, OVERSIZE,
                                  TRUNCATED, or BREAKIN (a stray 'b' from the target side) */
    KDH_LINK_EV_SEND_FAILED,   /* a send completed with an error (see message) */
    KDH_LINK_EV_NO_PACKET      /* no valid packet for cfg.silence_ms while one was expected */
} kdh_link_event_kind_t;

typedef struct kdh_link_event {
    kdh_link_event_kind_t kind;
    kdh_wire_event_kind_t wire_kind; /* LINE_ERROR only */
    uint64_t count;                  /* LINE_ERROR: bytes involved */
    const char *message;             /* one line for the user; valid during the callback */
} kdh_link_event_t;

typedef struct kdh_link_stats {
    uint64_t bytes_in, bytes_out;
    uint64_t data_in, data_out;       /* valid data packets received (incl. duplicates) / sent
                                         (incl. retransmissions) */
    uint64_t control_in, control_out;
    uint64_t accepted, duplicates;    /* data packets delivered / dropped as duplicates */
    uint64_t dropped_connecting;      /* data packets ACKed and dropped before the RESET echo */
    uint64_t bad_ids;                 /* data packets with an id other than 0x8080000[01] (+0x800):
                                         answered with RESEND (ACKed before the RESET echo) */
    uint64_t bad_types;               /* data packets of a type no target sends: RESEND */
    uint64_t bad_controls;            /* RESEND / RESET carrying a packet id: damaged ACKs, ignored */
    uint64_t acks_damaged;            /* ACKs with an id outside 0x8080000[01] while a send waits */
    uint64_t resends_sent, resends_received;
    uint64_t retransmits;
    uint64_t resets_sent, resets_received;
    uint64_t checksum_errors, trailer_errors, oversize_errors, truncated;
    uint64_t garbage_bytes;
    uint64_t implicit_acks;           /* sends completed by a reply instead of an ACK */
    uint64_t acks_unmatched;
    uint64_t send_failures;
    uint64_t withdrawn;               /* sends given up by their caller (kdh_link_withdraw) */
    uint64_t write_errors;            /* the write function refused bytes (treated as lost) */
    uint64_t breakins_sent;
    uint64_t probes_sent;             /* RESENDs sent by kdh_link_probe (counted in resends_sent too) */
    int has_valid;                    /* a valid packet has been seen */
    uint64_t last_valid_ms;           /* clock time of the last valid packet */
} kdh_link_stats_t;

/* After an ACK whose id is neither packet id, how long the link waits for the reply that follows
 * a valid request before it retransmits (plus the ACK's time on the wire). */
#define KDH_LINK_DAMAGED_ACK_WAIT_MS 200u

typedef struct kdh_link_cfg {
    uv_loop_t *loop;                  /* optional: timers run on it */
    uint64_t (*now)(void *ctx);       /* optional with a loop: milliseconds */
    /* Required: queue len bytes for the target; return KDH_OK or a KDH_E* code. */
    int (*write)(void *ctx, const uint8_t *buf, size_t len);
    /* A data packet was accepted. payload is valid during the call only. */
    void (*on_packet)(void *ctx, uint16_t type, uint32_t id, const uint8_t *payload, size_t len);
    void (*on_event)(void *ctx, const kdh_link_event_t *ev); /* optional */
    void *ctx;

    unsigned baud;                    /* for wire-time allowance and messages; 0 = unknown */
    unsigned ack_timeout_ms;          /* default 1000 */
    unsigned max_retries;             /* default 5 */
    unsigned reset_interval_ms;       /* default 1000 */
    unsigned interbyte_timeout_ms;    /* default 250 */
    unsigned breakin_settle_ms;       /* pause between 'b' and the first RESET, default 250 */
    unsigned silence_ms;              /* default 5000 */
} kdh_link_cfg_t;

/* Completion of one send: KDH_OK (acknowledged), KDH_ETIMEDOUT, KDH_ECANCELED (target RESET,
 * or the link was freed). */
typedef void (*kdh_link_send_cb)(void *ctx, int status);

typedef enum kdh_link_state {
    KDH_LINK_IDLE = 0,   /* created, connect not called */
    KDH_LINK_CONNECTING, /* sending RESET, waiting for the echo */
    KDH_LINK_CONNECTED
} kdh_link_state_t;

/* Zero-valued cfg timing fields take the defaults above. The cfg struct is copied. */
int kdh_link_new(kdh_link_t **out, const kdh_link_cfg_t *cfg, kdh_err_t *err);
/* Completes an outstanding send with KDH_ECANCELED, stops the timer and frees (with a loop, the
 * memory goes once the loop has run the timer's close). */
void kdh_link_free(kdh_link_t *link);

/* Starts the handshake: optional break-in byte (the target may be running), then RESET every
 * reset_interval_ms until the target echoes it; on the echo, KDH_LINK_EV_CONNECTED, and the
 * target's (re)sent state change arrives through on_packet. Data packets arriving before the
 * echo are ACKed and dropped (the target sends them again after the echo). May be called
 * again at any time to start over. */
int kdh_link_connect(kdh_link_t *link, int breakin, kdh_err_t *err);

/* Writes the break-in byte 'b' now (a running target then stops with a state change). */
int kdh_link_break(kdh_link_t *link, kdh_err_t *err);

/* Sends a RESEND to a target believed to run, when nothing is under way (connected, no send
 * outstanding, no frame half received); returns whether it was sent. A target that is in fact
 * stopped in its debugger loop answers by reporting its stop again; a running one reads the bytes
 * in its break-in poll and discards them (kd-protocol.md §1.8, §2). */
int kdh_link_probe(kdh_link_t *link);

/* Sends one data packet whose payload is part1 followed by part2 (either may be empty), with
 * the next host id. done (optional) is called exactly once, never from inside this call.
 * KDH_EBUSY if a send is outstanding, KDH_EINVAL before connect, KDH_ERANGE if over 4000
 * bytes. In the CONNECTING state the packet waits for the echo. */
int kdh_link_send(kdh_link_t *link, uint16_t type, const uint8_t *part1, size_t len1,
                  const uint8_t *part2, size_t len2, kdh_link_send_cb done, void *done_ctx,
                  kdh_err_t *err);

/* Bytes received from the target, any chunking. */
void kdh_link_feed(kdh_link_t *link, const uint8_t *buf, size_t len);

/* Runs whatever deadline has passed (retransmit, RESET repeat, inter-byte flush, silence) and
 * re-arms the timer. Called by the timer; call it yourself when running without a loop.
 * Returns the next deadline (clock ms), or UINT64_MAX when nothing is pending. */
uint64_t kdh_link_poll(kdh_link_t *link);

kdh_link_state_t kdh_link_state(const kdh_link_t *link);
int kdh_link_send_pending(const kdh_link_t *link);
/* Forgets the outstanding send without completing it, so that no retransmission carries it to
 * the target later. For a request its caller has given up: the target re-reported its stop
 * while the packet waited for its ACK, so the target never took it (a target that takes a
 * Continue runs; one that takes another request answers it). Sent again after a RESET, a
 * Continue the host believes cancelled would run the target behind the host's back. */
void kdh_link_withdraw(kdh_link_t *link);
const kdh_link_stats_t *kdh_link_stats(const kdh_link_t *link);
/* Ids the link will use / expects next (sync bit clear). */
uint32_t kdh_link_tx_id(const kdh_link_t *link);
uint32_t kdh_link_rx_expect(const kdh_link_t *link);

#endif
