/* Host side of the KD serial link: receive rules (ACK, duplicate and sync-bit handling, RESEND
 * on damaged frames), the single outstanding send with its retransmit / RESET budget, and the
 * connect handshake. The rules are summarised in include/kdh/link.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/link.h"

struct kdh_link {
    kdh_link_cfg_t cfg;
    kdh_link_state_t state;
    kdh_wire_decoder_t dec;
    kdh_link_stats_t st;

    uint32_t tx_id;     /* id of the next (or outstanding) host packet */
    uint32_t rx_expect; /* id expected from the target, sync bit clear */
    int accepted_since_reset;
    struct {
        uint16_t type, byte_count;
        uint32_t checksum, id;
    } last; /* last accepted packet, to tell a retransmission from a re-initialised target */

    /* The outstanding send. It is on the wire only while CONNECTED. */
    int tx_pending;
    uint8_t tx_buf[KDH_WIRE_FRAME_MAX];
    size_t tx_len;
    kdh_link_send_cb tx_done;
    void *tx_done_ctx;
    unsigned tx_retries;
    int tx_resynced; /* this packet already cost one RESET */
    unsigned tx_resets_at; /* connect_resets when the packet started waiting for an echo */
    uint64_t ack_due;

    uint64_t reset_due;      /* CONNECTING: next RESET */
    unsigned connect_resets; /* RESETs sent in this CONNECTING phase */
    uint64_t last_rx_ms;     /* time of the last received bytes (inter-byte timeout) */
    uint64_t silence_base;   /* since when a packet has been expected */

    uv_timer_t timer;
    int has_timer;
    int depth; /* nesting of entry points, so that free from a callback is deferred */
    int dead;
    char msg[256];      /* message of the event being emitted */
    char fail_msg[256]; /* why the outstanding send failed */
};

/* ---- small helpers --------------------------------------------------------------------------- */

static uint64_t now_ms(kdh_link_t *l)
{
    return l->cfg.now ? l->cfg.now(l->cfg.ctx) : uv_now(l->cfg.loop);
}

static void emit(kdh_link_t *l, kdh_link_event_kind_t kind, kdh_wire_event_kind_t wk,
                 uint64_t count, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void emit(kdh_link_t *l, kdh_link_event_kind_t kind, kdh_wire_event_kind_t wk,
                 uint64_t count, const char *fmt, ...)
{
    if (!l->cfg.on_event || l->dead)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->msg, sizeof l->msg, fmt, ap);
    va_end(ap);
    kdh_link_event_t ev = {.kind = kind, .wire_kind = wk, .count = count, .message = l->msg};
    l->cfg.on_event(l->cfg.ctx, &ev);
}

static void raw_write(kdh_link_t *l, const uint8_t *buf, size_t len)
{
    /* A refused write is a lost packet as far as the protocol goes; the retransmit and RESET
     * timers recover from it like from line noise. */
    if (l->cfg.write(l->cfg.ctx, buf, len) == KDH_OK)
        l->st.bytes_out += len;
    else
        l->st.write_errors++;
}

static void send_control(kdh_link_t *l, uint16_t type, uint32_t id)
{
    uint8_t b[KDH_WIRE_HEADER_SIZE];
    kdh_wire_encode_control(b, sizeof b, type, id);
    raw_write(l, b, sizeof b);
    l->st.control_out++;
    if (type == KDH_WIRE_TYPE_RESEND)
        l->st.resends_sent++;
    else if (type == KDH_WIRE_TYPE_RESET)
        l->st.resets_sent++;
}

/* Data packet types a target sends (kd-protocol.md 1.3); the others never come from it. */
static int is_target_data_type(uint16_t type)
{
    switch (type) {
    case KDH_WIRE_TYPE_STATE_CHANGE32:
    case KDH_WIRE_TYPE_STATE_MANIPULATE:
    case KDH_WIRE_TYPE_DEBUG_IO:
    case KDH_WIRE_TYPE_STATE_CHANGE64:
    case KDH_WIRE_TYPE_TRACE_IO:
    case KDH_WIRE_TYPE_CONTROL_REQUEST:
    case KDH_WIRE_TYPE_FILE_IO:
        return 1;
    default:
        return 0;
    }
}

/* Milliseconds n bytes take on the line (8N1: 10 bits a byte). */
static uint64_t wire_ms(const kdh_link_t *l, size_t n)
{
    if (!l->cfg.baud)
        return 0;
    return ((uint64_t)n * 10u * 1000u + l->cfg.baud - 1) / l->cfg.baud;
}

static void put_tx(kdh_link_t *l)
{
    /* The id is patched in place: after a RESET the same packet goes out as 0x80800000. The
     * checksum covers only the payload, so it stays valid. */
    kdh_put_u32(l->tx_buf + 8, l->tx_id);
    raw_write(l, l->tx_buf, l->tx_len);
    l->st.data_out++;
    l->ack_due = now_ms(l) + l->cfg.ack_timeout_ms + wire_ms(l, l->tx_len);
}

static void reset_ids(kdh_link_t *l)
{
    l->tx_id = KDH_WIRE_INITIAL_ID;
    l->rx_expect = KDH_WIRE_INITIAL_ID;
    l->accepted_since_reset = 0;
}

static void mark_valid(kdh_link_t *l)
{
    uint64_t t = now_ms(l);
    l->st.has_valid = 1;
    l->st.last_valid_ms = t;
    l->silence_base = t;
}

/* Ends the outstanding send; done may start the next one. */
static void complete_send(kdh_link_t *l, int status)
{
    if (!l->tx_pending)
        return;
    kdh_link_send_cb done = l->tx_done;
    void *ctx = l->tx_done_ctx;
    l->tx_pending = 0;
    l->tx_done = NULL;
    if (status == KDH_OK) {
        l->tx_id ^= 1u;
    } else {
        l->st.send_failures++;
        emit(l, KDH_LINK_EV_SEND_FAILED, KDH_WIRE_EV_NONE, 0, "%s", l->fail_msg);
    }
    if (done)
        done(ctx, status);
}

static void fail_send(kdh_link_t *l, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_send(kdh_link_t *l, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->fail_msg, sizeof l->fail_msg, fmt, ap);
    va_end(ap);
    complete_send(l, status);
}

static void send_reset_now(kdh_link_t *l)
{
    send_control(l, KDH_WIRE_TYPE_RESET, 0);
    l->connect_resets++;
    l->reset_due = now_ms(l) + l->cfg.reset_interval_ms;
}

static void enter_connecting(kdh_link_t *l, int breakin)
{
    uint64_t t = now_ms(l);
    l->state = KDH_LINK_CONNECTING;
    l->connect_resets = 0;
    l->tx_resets_at = 0;
    l->silence_base = t;
    if (breakin) {
        /* A target polls for 'b' and discards other bytes; RESET bytes sent hard behind the
         * 'b' could be eaten by that poll, so the first RESET waits a little. */
        uint8_t b = KDH_WIRE_BREAKIN_BYTE;
        raw_write(l, &b, 1);
        l->st.breakins_sent++;
        l->reset_due = t + l->cfg.breakin_settle_ms;
    } else {
        send_reset_now(l);
    }
}

/* One more attempt for the outstanding packet, or RESET when the budget is spent. */
static void retry_send(kdh_link_t *l, const char *why)
{
    l->tx_retries++;
    if (l->tx_retries <= l->cfg.max_retries) {
        l->st.retransmits++;
        put_tx(l);
        return;
    }
    if (l->tx_resynced) {
        fail_send(l, KDH_ETIMEDOUT,
                  "packet not acknowledged after %u retransmissions and a RESET (%s): check the "
                  "cable and the target's /BAUDRATE",
                  l->cfg.max_retries, why);
        if (!l->dead)
            enter_connecting(l, 0);
        return;
    }
    l->tx_resynced = 1;
    l->tx_retries = 0;
    emit(l, KDH_LINK_EV_RESYNC, KDH_WIRE_EV_NONE, 0,
         "no acknowledgement after %u retransmissions (%s): sending RESET to resynchronise",
         l->cfg.max_retries, why);
    if (!l->dead)
        enter_connecting(l, 0);
}

/* ---- receive --------------------------------------------------------------------------------- */

static void on_data(kdh_link_t *l, const kdh_wire_packet_t *p)
{
    l->st.data_in++;
    uint32_t masked = p->id & ~KDH_WIRE_SYNC_BIT;
    /* The checksum covers the payload only: a damaged type or id in the header passes it. Such
     * a packet is answered like any damaged frame, with RESEND, so that the target sends it
     * again at once; an ACK would either be ignored (wrong id: the target retransmits only
     * after its own timeout) or make it drop a packet nobody read (wrong type). */
    if (!is_target_data_type(p->type)) {
        l->st.bad_types++;
        if (l->state == KDH_LINK_CONNECTED)
            send_control(l, KDH_WIRE_TYPE_RESEND, 0);
        return;
    }
    if (l->state == KDH_LINK_CONNECTED && (masked & ~1u) != KDH_WIRE_INITIAL_ID) {
        /* Ids only ever take two values; anything else is noise that passed the checksum. */
        l->st.bad_ids++;
        mark_valid(l);
        send_control(l, KDH_WIRE_TYPE_RESEND, 0);
        return;
    }
    send_control(l, KDH_WIRE_TYPE_ACKNOWLEDGE, masked);
    mark_valid(l);
    if (l->state != KDH_LINK_CONNECTED) {
        /* Before the echo the target's counters are unknown; it resends after the RESET. */
        l->st.dropped_connecting++;
        return;
    }
    int resync = 0;
    if (masked != l->rx_expect) {
        int same = l->accepted_since_reset && p->type == l->last.type &&
                   p->byte_count == l->last.byte_count && p->checksum == l->last.checksum &&
                   masked == l->last.id;
        if ((p->id & KDH_WIRE_SYNC_BIT) && (!l->accepted_since_reset || !same)) {
            resync = l->accepted_since_reset;
        } else {
            l->st.duplicates++;
            return;
        }
    }
    int first = !l->accepted_since_reset;
    l->rx_expect = masked ^ 1u;
    l->accepted_since_reset = 1;
    l->last.type = p->type;
    l->last.byte_count = p->byte_count;
    l->last.checksum = p->checksum;
    l->last.id = masked;
    l->st.accepted++;
    if (resync) {
        emit(l, KDH_LINK_EV_RESYNC, KDH_WIRE_EV_NONE, 0,
             "target re-initialised its packet ids (%s id 0x%08x with the sync bit)",
             kdh_wire_type_name(p->type), (unsigned)p->id);
        if (l->dead)
            return;
        if (l->tx_pending)
            fail_send(l, KDH_ECANCELED, "target re-initialised while a request was outstanding");
    } else if (l->tx_pending && !first) {
        /* The target moved on, so it received the request: the ACK was lost on the way. Not
         * so for the first packet after a RESET: that is the target's pending packet sent
         * again, whatever became of our request (which stays outstanding). */
        l->st.implicit_acks++;
        complete_send(l, KDH_OK);
    }
    if (!l->dead && l->cfg.on_packet)
        l->cfg.on_packet(l->cfg.ctx, p->type, p->id, p->payload, p->payload_len);
}

static void on_control(kdh_link_t *l, const kdh_wire_packet_t *p)
{
    l->st.control_in++;
    uint32_t masked = p->id & ~KDH_WIRE_SYNC_BIT;
    int packet_id = (masked & ~1u) == KDH_WIRE_INITIAL_ID;
    /* Control packets carry no checksum, so one flipped bit in the type turns an ACK (4) into
     * a RESEND (5) or a RESET (6). Targets send RESEND and RESET with id 0 (some with another
     * constant), never with a packet id, which only ACKs carry: such a packet is a damaged ACK.
     * Obeying it would cost a whole resynchronisation (RESET) or make the target drop the
     * reply it is sending (a retransmitted request counts as the ACK of that reply). */
    if ((p->type == KDH_WIRE_TYPE_RESEND || p->type == KDH_WIRE_TYPE_RESET) && packet_id) {
        l->st.bad_controls++;
        return;
    }
    mark_valid(l);
    switch (p->type) {
    case KDH_WIRE_TYPE_ACKNOWLEDGE:
        if (l->state == KDH_LINK_CONNECTED && l->tx_pending && masked == l->tx_id) {
            complete_send(l, KDH_OK);
        } else if (l->state == KDH_LINK_CONNECTED && l->tx_pending && !packet_id) {
            /* The target acknowledges the id it read: our packet reached it with a damaged id
             * (outside the checksum) and was dropped as a duplicate; or this ACK itself was
             * damaged on the way back. In the second case the reply follows at once, so a
             * short wait tells them apart; then the packet goes again without waiting out the
             * whole ACK timeout. */
            l->st.acks_damaged++;
            uint64_t soon = now_ms(l) + KDH_LINK_DAMAGED_ACK_WAIT_MS + wire_ms(l, KDH_WIRE_HEADER_SIZE);
            if (soon < l->ack_due)
                l->ack_due = soon;
        } else {
            l->st.acks_unmatched++;
        }
        break;
    case KDH_WIRE_TYPE_RESEND:
        l->st.resends_received++;
        if (l->state == KDH_LINK_CONNECTED && l->tx_pending)
            retry_send(l, "target asked for a resend");
        break;
    case KDH_WIRE_TYPE_RESET:
        l->st.resets_received++;
        if (l->state == KDH_LINK_IDLE)
            break;
        /* Each RESET the target sends back means it has just set both its ids to 0x80800000,
         * even a late echo of an earlier RESET, so ours follow every time. */
        reset_ids(l);
        if (l->state == KDH_LINK_CONNECTING) {
            l->state = KDH_LINK_CONNECTED;
            emit(l, KDH_LINK_EV_CONNECTED, KDH_WIRE_EV_NONE, 0,
                 "target answered RESET after %u attempt(s)", l->connect_resets);
            if (!l->dead && l->state == KDH_LINK_CONNECTED && l->tx_pending) {
                l->tx_retries = 0;
                put_tx(l);
            }
        } else {
            emit(l, KDH_LINK_EV_RESET_SEEN, KDH_WIRE_EV_NONE, 0,
                 "target reset the link; resynchronising and expecting its pending state change again");
            if (!l->dead && l->tx_pending)
                fail_send(l, KDH_ECANCELED, "target reset the link while a request was outstanding");
            /* A target sends RESET only to echo ours (kd-protocol.md 1.5): unasked, it is a late
             * echo or a damaged control packet (a RESEND or ACK with a flipped type bit; control
             * packets carry no checksum), and then the target's ids were never reset. A RESET of
             * our own puts both sides at 0x80800000 for sure, and the target answers it with its
             * pending stop at once; waiting for that stop instead costs the caller its break-in
             * timeout. Each unasked RESET costs one RESET, whose echo comes while connecting:
             * no ping-pong. */
            if (!l->dead && l->state == KDH_LINK_CONNECTED)
                enter_connecting(l, 0);
        }
        break;
    default:
        break; /* unknown control types are ignored, as targets do */
    }
}

static void on_wire_event(kdh_link_t *l, const kdh_wire_event_t *ev)
{
    const char *what = NULL;
    switch (ev->kind) {
    case KDH_WIRE_EV_NONE:
        return;
    case KDH_WIRE_EV_PACKET:
        if (ev->packet.is_control)
            on_control(l, &ev->packet);
        else
            on_data(l, &ev->packet);
        return;
    case KDH_WIRE_EV_GARBAGE:
    case KDH_WIRE_EV_BREAKIN:
        l->st.garbage_bytes += ev->count;
        emit(l, KDH_LINK_EV_LINE_ERROR, ev->kind, ev->count, "%zu byte(s) of line noise skipped",
             ev->count);
        return;
    case KDH_WIRE_EV_BAD_CHECKSUM:
        l->st.checksum_errors++;
        what = "checksum mismatch";
        break;
    case KDH_WIRE_EV_MISSING_TRAILER:
        l->st.trailer_errors++;
        what = "missing 0xAA trailer";
        break;
    case KDH_WIRE_EV_OVERSIZE:
        l->st.oversize_errors++;
        what = "byte count over 4000";
        break;
    case KDH_WIRE_EV_TRUNCATED:
        l->st.truncated++;
        what = "truncated packet";
        break;
    }
    emit(l, KDH_LINK_EV_LINE_ERROR, ev->kind, ev->count, "%s: %s packet id 0x%08x, %zu bytes dropped",
         what, kdh_wire_type_name(ev->packet.type), (unsigned)ev->packet.id, ev->count);
    /* Only data frames are worth a RESEND; before the echo the target resends anyway. */
    if (!l->dead && !ev->packet.is_control && l->state == KDH_LINK_CONNECTED)
        send_control(l, KDH_WIRE_TYPE_RESEND, 0);
}

/* ---- timers and entry points ----------------------------------------------------------------- */

static int rx_partial(const kdh_link_t *l)
{
    return kdh_wire_decoder_busy(&l->dec) || l->dec.garbage || l->dec.lead_run;
}

static int expecting(const kdh_link_t *l)
{
    return l->state == KDH_LINK_CONNECTING || (l->state == KDH_LINK_CONNECTED && l->tx_pending);
}

static uint64_t next_deadline(const kdh_link_t *l)
{
    uint64_t d = UINT64_MAX;
    if (l->state == KDH_LINK_CONNECTED && l->tx_pending && l->ack_due < d)
        d = l->ack_due;
    if (l->state == KDH_LINK_CONNECTING && l->reset_due < d)
        d = l->reset_due;
    if (rx_partial(l) && l->last_rx_ms + l->cfg.interbyte_timeout_ms < d)
        d = l->last_rx_ms + l->cfg.interbyte_timeout_ms;
    if (expecting(l) && l->silence_base + l->cfg.silence_ms < d)
        d = l->silence_base + l->cfg.silence_ms;
    return d;
}

static void timer_cb(uv_timer_t *t)
{
    kdh_link_poll((kdh_link_t *)t->data);
}

static void free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void destroy(kdh_link_t *l)
{
    if (l->has_timer) {
        uv_timer_stop(&l->timer);
        uv_close((uv_handle_t *)&l->timer, free_cb);
    } else {
        free(l);
    }
}

static void enter(kdh_link_t *l)
{
    l->depth++;
}

/* Returns 1 when the link is gone. */
static int leave(kdh_link_t *l)
{
    if (--l->depth > 0)
        return l->dead;
    if (l->dead) {
        destroy(l);
        return 1;
    }
    if (l->has_timer) {
        uint64_t d = next_deadline(l), t = now_ms(l);
        if (d == UINT64_MAX)
            uv_timer_stop(&l->timer);
        else
            uv_timer_start(&l->timer, timer_cb, d > t ? d - t : 0, 0);
    }
    return 0;
}

int kdh_link_new(kdh_link_t **out, const kdh_link_cfg_t *cfg, kdh_err_t *err)
{
    *out = NULL;
    if (!cfg || !cfg->write)
        return kdh_err_set(err, KDH_EINVAL, "link needs a write function");
    if (!cfg->loop && !cfg->now)
        return kdh_err_set(err, KDH_EINVAL, "link needs a uv loop or a clock function");
    kdh_link_t *l = calloc(1, sizeof *l);
    if (!l)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory creating the link");
    l->cfg = *cfg;
    if (!l->cfg.ack_timeout_ms)
        l->cfg.ack_timeout_ms = 1000;
    if (!l->cfg.max_retries)
        l->cfg.max_retries = 5;
    if (!l->cfg.reset_interval_ms)
        l->cfg.reset_interval_ms = 1000;
    if (!l->cfg.interbyte_timeout_ms)
        l->cfg.interbyte_timeout_ms = 250;
    if (!l->cfg.breakin_settle_ms)
        l->cfg.breakin_settle_ms = 250;
    if (!l->cfg.silence_ms)
        l->cfg.silence_ms = 5000;
    kdh_wire_decoder_init(&l->dec);
    reset_ids(l);
    if (l->cfg.loop) {
        int rc = uv_timer_init(l->cfg.loop, &l->timer);
        if (rc) {
            free(l);
            return kdh_err_set(err, KDH_EIO, "uv_timer_init: %s", uv_strerror(rc));
        }
        l->timer.data = l;
        l->has_timer = 1;
    }
    *out = l;
    return KDH_OK;
}

void kdh_link_free(kdh_link_t *l)
{
    if (!l || l->dead)
        return;
    enter(l);
    if (l->tx_pending) {
        kdh_link_send_cb done = l->tx_done;
        l->tx_pending = 0;
        if (done)
            done(l->tx_done_ctx, KDH_ECANCELED);
    }
    l->dead = 1;
    leave(l);
}

int kdh_link_connect(kdh_link_t *l, int breakin, kdh_err_t *err)
{
    if (l->dead)
        return kdh_err_set(err, KDH_ECANCELED, "link is closed");
    enter(l);
    enter_connecting(l, breakin);
    leave(l);
    return KDH_OK;
}

int kdh_link_break(kdh_link_t *l, kdh_err_t *err)
{
    if (l->dead)
        return kdh_err_set(err, KDH_ECANCELED, "link is closed");
    uint8_t b = KDH_WIRE_BREAKIN_BYTE;
    raw_write(l, &b, 1);
    l->st.breakins_sent++;
    return KDH_OK;
}

int kdh_link_probe(kdh_link_t *l)
{
    /* Only between exchanges: with a send outstanding the target would take the RESEND for the
     * loss of its own last packet, and a frame half received may be the stop itself. */
    if (l->dead || l->state != KDH_LINK_CONNECTED || l->tx_pending || rx_partial(l))
        return 0;
    enter(l);
    send_control(l, KDH_WIRE_TYPE_RESEND, 0);
    l->st.probes_sent++;
    leave(l);
    return 1;
}

int kdh_link_send(kdh_link_t *l, uint16_t type, const uint8_t *part1, size_t len1,
                  const uint8_t *part2, size_t len2, kdh_link_send_cb done, void *done_ctx,
                  kdh_err_t *err)
{
    if (l->dead)
        return kdh_err_set(err, KDH_ECANCELED, "link is closed");
    if (l->state == KDH_LINK_IDLE)
        return kdh_err_set(err, KDH_EINVAL, "link not connected: call kdh_link_connect first");
    if (l->tx_pending)
        return kdh_err_set(err, KDH_EBUSY, "a packet is already waiting for its acknowledgement");
    int n = kdh_wire_encode_data2(l->tx_buf, sizeof l->tx_buf, type, l->tx_id, part1, len1, part2,
                                  len2);
    if (n < 0)
        return kdh_err_set(err, n, "packet of %zu bytes exceeds the 4000-byte limit", len1 + len2);
    enter(l);
    l->tx_len = (size_t)n;
    l->tx_pending = 1;
    l->tx_done = done;
    l->tx_done_ctx = done_ctx;
    l->tx_retries = 0;
    l->tx_resynced = 0;
    l->tx_resets_at = l->connect_resets;
    l->silence_base = now_ms(l);
    if (l->state == KDH_LINK_CONNECTED)
        put_tx(l);
    leave(l);
    return KDH_OK;
}

void kdh_link_feed(kdh_link_t *l, const uint8_t *buf, size_t len)
{
    if (l->dead || !len)
        return;
    enter(l);
    l->st.bytes_in += len;
    l->last_rx_ms = now_ms(l);
    while (len && !l->dead) {
        kdh_wire_event_t ev;
        size_t n = kdh_wire_decoder_feed(&l->dec, buf, len, &ev);
        buf += n;
        len -= n;
        on_wire_event(l, &ev);
    }
    leave(l);
}

uint64_t kdh_link_poll(kdh_link_t *l)
{
    if (l->dead)
        return UINT64_MAX;
    enter(l);
    uint64_t t = now_ms(l);
    if (l->state == KDH_LINK_CONNECTED && l->tx_pending && t >= l->ack_due) {
        char why[64];
        snprintf(why, sizeof why, "no ACK within %u ms", l->cfg.ack_timeout_ms);
        retry_send(l, why);
    }
    if (!l->dead && l->state == KDH_LINK_CONNECTING && t >= l->reset_due) {
        if (l->tx_pending && l->connect_resets - l->tx_resets_at >= l->cfg.max_retries)
            fail_send(l, KDH_ETIMEDOUT,
                      "target did not answer %u RESETs: check the cable and the target's /BAUDRATE",
                      l->connect_resets - l->tx_resets_at);
        if (!l->dead && l->state == KDH_LINK_CONNECTING)
            send_reset_now(l);
    }
    if (!l->dead && rx_partial(l) && t >= l->last_rx_ms + l->cfg.interbyte_timeout_ms) {
        kdh_wire_event_t ev;
        while (!l->dead && kdh_wire_decoder_flush(&l->dec, &ev))
            on_wire_event(l, &ev);
    }
    if (!l->dead && expecting(l) && t >= l->silence_base + l->cfg.silence_ms) {
        l->silence_base = t;
        if (l->cfg.baud)
            emit(l, KDH_LINK_EV_NO_PACKET, KDH_WIRE_EV_NONE, 0,
                 "no valid packet in %u s at %u baud: check the cable and the target's /BAUDRATE",
                 l->cfg.silence_ms / 1000, l->cfg.baud);
        else
            emit(l, KDH_LINK_EV_NO_PACKET, KDH_WIRE_EV_NONE, 0,
                 "no valid packet in %u s: check the cable, the target's /DEBUG settings and "
                 "/BAUDRATE",
                 l->cfg.silence_ms / 1000);
    }
    uint64_t d = l->dead ? UINT64_MAX : next_deadline(l);
    if (leave(l))
        return UINT64_MAX;
    return d;
}

kdh_link_state_t kdh_link_state(const kdh_link_t *l)
{
    return l->state;
}

void kdh_link_withdraw(kdh_link_t *l)
{
    if (!l || l->dead || !l->tx_pending)
        return;
    enter(l);
    /* No completion: the caller has given the request up already. The id is not advanced:
     * a target that re-reports its stop has not accepted the packet. */
    l->tx_pending = 0;
    l->tx_done = NULL;
    l->tx_done_ctx = NULL;
    l->tx_retries = 0;
    l->tx_resynced = 0;
    l->st.withdrawn++;
    leave(l);
}

int kdh_link_send_pending(const kdh_link_t *l)
{
    return l->tx_pending;
}

const kdh_link_stats_t *kdh_link_stats(const kdh_link_t *l)
{
    return &l->st;
}

uint32_t kdh_link_tx_id(const kdh_link_t *l)
{
    return l->tx_id;
}

uint32_t kdh_link_rx_expect(const kdh_link_t *l)
{
    return l->rx_expect;
}
