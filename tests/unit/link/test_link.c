/* Host link behaviour, driven by a fake clock and a scripted target. Each step asserts the
 * exact packets the link wrote, decoded with the wire codec and compared with sequences written
 * out by hand ("RESET 0", "ACK 80800000", "D2 80800001" = data packet of type 2 with that id). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <string.h>

#include "kdh/link.h"

typedef struct h {
    kdh_link_t *link;
    uint64_t now;
    uint8_t out[1 << 16];
    size_t out_len;
    char wire[4096];
    /* packets delivered */
    int npk;
    uint16_t pk_type[64];
    uint32_t pk_id[64];
    size_t pk_len[64];
    /* events */
    int nev;
    kdh_link_event_kind_t ev[64];
    char last_msg[256];
    /* send completions */
    int ndone;
    int done[64];
    int order; /* sequence number for ordering checks */
    int done_at, packet_at;
    int free_in_packet;
} h_t;

static uint64_t fake_now(void *ctx)
{
    return ((h_t *)ctx)->now;
}

static int cap_write(void *ctx, const uint8_t *buf, size_t len)
{
    h_t *h = ctx;
    assert_true(h->out_len + len <= sizeof h->out);
    memcpy(h->out + h->out_len, buf, len);
    h->out_len += len;
    return KDH_OK;
}

static void on_packet(void *ctx, uint16_t type, uint32_t id, const uint8_t *p, size_t len)
{
    h_t *h = ctx;
    assert_true(h->npk < 64);
    h->pk_type[h->npk] = type;
    h->pk_id[h->npk] = id;
    h->pk_len[h->npk] = len;
    h->npk++;
    h->packet_at = ++h->order;
    if (h->free_in_packet) {
        kdh_link_free(h->link);
        h->link = NULL;
    }
}

static void on_event(void *ctx, const kdh_link_event_t *ev)
{
    h_t *h = ctx;
    if (ev->kind == KDH_LINK_EV_LINE_ERROR && ev->wire_kind == KDH_WIRE_EV_GARBAGE)
        return;
    assert_true(h->nev < 64);
    h->ev[h->nev++] = ev->kind;
    snprintf(h->last_msg, sizeof h->last_msg, "%s", ev->message);
}

static void on_done(void *ctx, int status)
{
    h_t *h = ctx;
    h->done[h->ndone++] = status;
    h->done_at = ++h->order;
}

/* What the link wrote since the last call, as "TYPE id" items joined by ", ". */
static const char *wire(h_t *h)
{
    kdh_wire_decoder_t d;
    kdh_wire_decoder_init(&d);
    h->wire[0] = 0;
    size_t off = 0;
    while (off < h->out_len) {
        kdh_wire_event_t ev;
        off += kdh_wire_decoder_feed(&d, h->out + off, h->out_len - off, &ev);
        char item[64] = "";
        if (ev.kind == KDH_WIRE_EV_BREAKIN) {
            snprintf(item, sizeof item, "b");
        } else if (ev.kind == KDH_WIRE_EV_PACKET && ev.packet.is_control) {
            const char *n = ev.packet.type == 4 ? "ACK" : ev.packet.type == 5 ? "RESEND" : "RESET";
            snprintf(item, sizeof item, "%s %x", n, (unsigned)ev.packet.id);
        } else if (ev.kind == KDH_WIRE_EV_PACKET) {
            snprintf(item, sizeof item, "D%u %x", ev.packet.type, (unsigned)ev.packet.id);
        } else if (ev.kind != KDH_WIRE_EV_NONE) {
            snprintf(item, sizeof item, "?%s", kdh_wire_event_name(ev.kind));
        }
        if (item[0]) {
            if (h->wire[0])
                strcat(h->wire, ", ");
            strcat(h->wire, item);
        }
    }
    kdh_wire_event_t ev;
    assert_int_equal(kdh_wire_decoder_flush(&d, &ev), 0); /* the link writes whole packets */
    h->out_len = 0;
    return h->wire;
}

static void setup_h(h_t *h, unsigned baud)
{
    memset(h, 0, sizeof *h);
    h->now = 10000;
    kdh_link_cfg_t cfg = {.now = fake_now, .write = cap_write, .on_packet = on_packet,
                          .on_event = on_event, .ctx = h, .baud = baud};
    assert_int_equal(kdh_link_new(&h->link, &cfg, NULL), KDH_OK);
}

static void advance(h_t *h, uint64_t ms)
{
    h->now += ms;
    kdh_link_poll(h->link);
}

static void tgt_ctl(h_t *h, uint16_t type, uint32_t id)
{
    uint8_t b[16];
    kdh_wire_encode_control(b, sizeof b, type, id);
    kdh_link_feed(h->link, b, sizeof b);
}

static size_t tgt_frame(uint8_t *b, size_t cap, uint16_t type, uint32_t id, uint8_t fill, size_t len)
{
    uint8_t pl[512];
    memset(pl, fill, len);
    int n = kdh_wire_encode_data(b, cap, type, id, pl, len);
    assert_true(n > 0);
    return (size_t)n;
}

static void tgt_data(h_t *h, uint16_t type, uint32_t id, uint8_t fill, size_t len)
{
    uint8_t b[600];
    size_t n = tgt_frame(b, sizeof b, type, id, fill, len);
    kdh_link_feed(h->link, b, n);
}

static int send_req(h_t *h, uint8_t fill)
{
    uint8_t req[0x38];
    memset(req, fill, sizeof req);
    return kdh_link_send(h->link, KDH_WIRE_TYPE_STATE_MANIPULATE, req, sizeof req, NULL, 0,
                         on_done, h, NULL);
}

/* Connect without break-in and take the first state change (id with the sync bit). */
static void connect_plain(h_t *h)
{
    assert_int_equal(kdh_link_connect(h->link, 0, NULL), KDH_OK);
    assert_string_equal(wire(h), "RESET 0");
    tgt_ctl(h, KDH_WIRE_TYPE_RESET, 0);
    assert_int_equal(kdh_link_state(h->link), KDH_LINK_CONNECTED);
    assert_string_equal(wire(h), "");
    tgt_data(h, KDH_WIRE_TYPE_STATE_CHANGE64, 0x80800800u, 0x11, 0xF4);
    assert_string_equal(wire(h), "ACK 80800000");
    assert_int_equal(h->npk, 1);
    assert_int_equal(h->pk_type[0], 7);
    assert_int_equal(h->pk_id[0], 0x80800800u);
    assert_int_equal(h->pk_len[0], 0xF4);
    assert_int_equal(kdh_link_rx_expect(h->link), 0x80800001u);
    assert_int_equal(kdh_link_tx_id(h->link), 0x80800000u);
}

static void teardown_h(h_t *h)
{
    if (h->link)
        kdh_link_free(h->link);
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_connect_plain(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    assert_int_equal(kdh_link_connect(h.link, 0, NULL), KDH_OK);
    assert_string_equal(wire(&h), "RESET 0");
    advance(&h, 999);
    assert_string_equal(wire(&h), "");
    advance(&h, 1);
    assert_string_equal(wire(&h), "RESET 0"); /* about once a second until answered */
    advance(&h, 1000);
    assert_string_equal(wire(&h), "RESET 0");
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0);
    assert_int_equal(h.nev, 1);
    assert_int_equal(h.ev[0], KDH_LINK_EV_CONNECTED);
    advance(&h, 5000);
    assert_string_equal(wire(&h), ""); /* no more RESETs */
    tgt_data(&h, 7, 0x80800800u, 0x22, 0xF0);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 1);
    assert_int_equal(kdh_link_stats(h.link)->resets_sent, 3);
    teardown_h(&h);
}

static void test_connect_breakin(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 115200);
    assert_int_equal(kdh_link_connect(h.link, 1, NULL), KDH_OK);
    assert_string_equal(wire(&h), "b");
    advance(&h, 249);
    assert_string_equal(wire(&h), "");
    /* The running target breaks in and reports before it sees our RESET. */
    tgt_data(&h, 7, 0x80800800u, 0x33, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 0); /* dropped: the target sends it again after the echo */
    advance(&h, 1);
    assert_string_equal(wire(&h), "RESET 0");
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0);
    tgt_data(&h, 7, 0x80800000u, 0x33, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 1);
    assert_int_equal(h.pk_id[0], 0x80800000u);
    const kdh_link_stats_t *st = kdh_link_stats(h.link);
    assert_int_equal(st->dropped_connecting, 1);
    assert_int_equal(st->breakins_sent, 1);
    assert_int_equal(st->accepted, 1);
    /* Break-in on request. */
    assert_int_equal(kdh_link_break(h.link, NULL), KDH_OK);
    assert_string_equal(wire(&h), "b");
    teardown_h(&h);
}

static void test_first_state_change_sync_bit(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    /* A target that never clears the sync bit (VirtualKD) keeps alternating. */
    tgt_data(&h, 3, 0x80800801u, 0x44, 20);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.npk, 2);
    /* Its retransmission (identical bytes) is a duplicate despite the sync bit. */
    tgt_data(&h, 3, 0x80800801u, 0x44, 20);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.npk, 2);
    assert_int_equal(kdh_link_stats(h.link)->duplicates, 1);
    /* Its next packet, 0x80800800 again, is simply the expected id. */
    tgt_data(&h, 7, 0x80800800u, 0x55, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 3);
    assert_int_equal(kdh_link_rx_expect(h.link), 0x80800001u);
    int nev = h.nev;
    /* A re-initialised target (INITIAL|SYNC out of turn, different content): resync. */
    tgt_data(&h, 7, 0x80800800u, 0x56, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 4);
    assert_int_equal(h.nev, nev + 1);
    assert_int_equal(h.ev[h.nev - 1], KDH_LINK_EV_RESYNC);
    assert_int_equal(kdh_link_rx_expect(h.link), 0x80800001u);
    /* Ids other than the two legal ones are dropped whatever the sync bit says; the header is
     * damaged (the checksum covers only the payload), so the target is asked to send it again. */
    tgt_data(&h, 7, 0x60808801u, 0x57, 0xF4);
    assert_string_equal(wire(&h), "RESEND 0");
    assert_int_equal(h.npk, 4);
    assert_int_equal(kdh_link_stats(h.link)->bad_ids, 1);
    assert_int_equal(kdh_link_rx_expect(h.link), 0x80800001u);
    /* ...while a copy of that one is a duplicate. */
    tgt_data(&h, 7, 0x80800800u, 0x56, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 4);
    assert_int_equal(kdh_link_stats(h.link)->duplicates, 2);
    teardown_h(&h);
}

static void test_lost_ack(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    assert_int_equal(send_req(&h, 1), KDH_OK);
    assert_int_equal(send_req(&h, 2), KDH_EBUSY);
    assert_string_equal(wire(&h), "D2 80800000");
    advance(&h, 999);
    assert_string_equal(wire(&h), "");
    advance(&h, 1); /* the target's ACK was lost: same packet, same id */
    assert_string_equal(wire(&h), "D2 80800000");
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_int_equal(h.ndone, 1);
    assert_int_equal(h.done[0], KDH_OK);
    /* The target's reply (its next id after the state change) */
    tgt_data(&h, 2, 0x80800001u, 0x66, 0x38);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.npk, 2);
    /* Next request uses the other id. */
    assert_int_equal(send_req(&h, 3), KDH_OK);
    assert_string_equal(wire(&h), "D2 80800001");
    /* This time the ACK is lost but the reply arrives: it counts as the ACK, and the
     * completion is reported before the reply. */
    tgt_data(&h, 2, 0x80800000u, 0x67, 0x40);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.ndone, 2);
    assert_int_equal(h.done[1], KDH_OK);
    assert_true(h.done_at < h.packet_at);
    assert_int_equal(kdh_link_stats(h.link)->implicit_acks, 1);
    assert_int_equal(kdh_link_stats(h.link)->retransmits, 1);
    /* A late ACK for it is ignored. */
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800001u);
    assert_int_equal(kdh_link_stats(h.link)->acks_unmatched, 1);
    assert_int_equal(kdh_link_tx_id(h.link), 0x80800000u);
    teardown_h(&h);
}

static void test_ack_timeout_counts_wire_time(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 115200);
    connect_plain(&h);
    send_req(&h, 1);
    assert_string_equal(wire(&h), "D2 80800000");
    /* 73 bytes at 115200 baud = 730 bits = 6.34 ms -> 7 ms on top of 1000 ms */
    advance(&h, 1006);
    assert_string_equal(wire(&h), "");
    advance(&h, 1);
    assert_string_equal(wire(&h), "D2 80800000");
    teardown_h(&h);
}

static void test_lost_data_packet(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    /* Our request is lost on the line: nothing comes back, it goes again after 1 s. */
    send_req(&h, 1);
    assert_string_equal(wire(&h), "D2 80800000");
    advance(&h, 1000);
    assert_string_equal(wire(&h), "D2 80800000");
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    /* The target's reply is lost too; the target retransmits it and we see it once. */
    tgt_data(&h, 2, 0x80800001u, 0x70, 0x38);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.npk, 2);
    assert_int_equal(h.done[0], KDH_OK);
    teardown_h(&h);
}

/* Damage the checksum does not cover (control packets have none; a data packet's checksum
 * covers only its payload), as kdsim's line noise produced it at a byte error rate of 1e-4.
 * Each case used to cost a second or more (an ACK timeout, a reply timeout, or a whole
 * resynchronisation after a fake RESET); now the link recovers at once or within 200 ms. */
static void test_ack_damaged_into_reset(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    send_req(&h, 1);
    assert_string_equal(wire(&h), "D2 80800000");
    /* ACK 80800000 with one bit flipped in its type: 4 -> 6 (RESET). A target's RESET has id 0. */
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0x80800000u);
    assert_int_equal(h.ndone, 0); /* not cancelled: the request is still outstanding */
    assert_int_equal(kdh_link_tx_id(h.link), 0x80800000u);
    assert_int_equal(kdh_link_rx_expect(h.link), 0x80800001u);
    assert_int_equal(kdh_link_stats(h.link)->bad_controls, 1);
    int nev = h.nev;
    /* ...and 4 -> 5 (RESEND): no retransmission, which would make the target drop its reply. */
    tgt_ctl(&h, KDH_WIRE_TYPE_RESEND, 0x80800000u);
    assert_string_equal(wire(&h), "");
    assert_int_equal(h.nev, nev);
    /* The reply follows and completes the request as usual. */
    tgt_data(&h, 2, 0x80800001u, 0x21, 0x38);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.ndone, 1);
    assert_int_equal(h.done[0], KDH_OK);
    assert_int_equal(h.npk, 2);
    assert_int_equal(kdh_link_stats(h.link)->bad_controls, 2);
    /* A genuine RESET (id 0) still resets the link. */
    send_req(&h, 2);
    assert_string_equal(wire(&h), "D2 80800001");
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0);
    assert_int_equal(h.ndone, 2);
    assert_int_equal(h.done[1], KDH_ECANCELED);
    assert_int_equal(kdh_link_tx_id(h.link), 0x80800000u);
    teardown_h(&h);
}

static void test_request_id_damaged(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    send_req(&h, 1);
    assert_string_equal(wire(&h), "D2 80800000");
    /* The target read our id as 0x80802000, dropped the packet as a duplicate and ACKed that id. */
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80802000u);
    assert_int_equal(h.ndone, 0);
    advance(&h, KDH_LINK_DAMAGED_ACK_WAIT_MS - 1);
    assert_string_equal(wire(&h), "");
    advance(&h, 1); /* no reply started: the packet goes again, long before the 1 s timeout */
    assert_string_equal(wire(&h), "D2 80800000");
    assert_int_equal(kdh_link_stats(h.link)->acks_damaged, 1);
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_int_equal(h.ndone, 1);
    assert_int_equal(h.done[0], KDH_OK);
    /* When it was the ACK that was damaged, the reply comes within the wait: nothing is resent. */
    send_req(&h, 2);
    assert_string_equal(wire(&h), "D2 80800001");
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0xa0800001u);
    advance(&h, 5);
    tgt_data(&h, 2, 0x80800001u, 0x22, 0x38);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.ndone, 2);
    assert_int_equal(h.done[1], KDH_OK);
    advance(&h, 1000);
    assert_string_equal(wire(&h), "");
    assert_int_equal(kdh_link_stats(h.link)->retransmits, 1);
    teardown_h(&h);
}

static void test_reply_type_damaged(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    send_req(&h, 1);
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_string_equal(wire(&h), "D2 80800000");
    /* The reply's type 2 arrived as 0 (a bit flip in the header, outside the checksum): an ACK
     * would make the target forget a reply nobody read. RESEND gets it again at once. */
    tgt_data(&h, 0, 0x80800001u, 0x23, 0x38);
    assert_string_equal(wire(&h), "RESEND 0");
    assert_int_equal(h.npk, 1);
    assert_int_equal(kdh_link_stats(h.link)->bad_types, 1);
    assert_int_equal(kdh_link_rx_expect(h.link), 0x80800001u);
    tgt_data(&h, 2, 0x80800001u, 0x23, 0x38);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.npk, 2);
    assert_int_equal(h.pk_type[1], 2);
    /* The same for an id outside the two legal ones. */
    send_req(&h, 2);
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800001u);
    assert_string_equal(wire(&h), "D2 80800001");
    tgt_data(&h, 2, 0x90800000u, 0x24, 0x38);
    assert_string_equal(wire(&h), "RESEND 0");
    assert_int_equal(h.npk, 2);
    tgt_data(&h, 2, 0x80800000u, 0x24, 0x38);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 3);
    teardown_h(&h);
}

static void test_duplicated_packet(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    /* The state change again (our ACK was lost): ACKed again, not delivered. */
    tgt_data(&h, 7, 0x80800800u, 0x11, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 1);
    send_req(&h, 1);
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    tgt_data(&h, 2, 0x80800001u, 0x12, 0x38);
    tgt_data(&h, 2, 0x80800001u, 0x12, 0x38);
    assert_string_equal(wire(&h), "D2 80800000, ACK 80800001, ACK 80800001");
    assert_int_equal(h.npk, 2);
    assert_int_equal(kdh_link_stats(h.link)->duplicates, 2);
    teardown_h(&h);
}

static void test_corrupted_byte(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    uint8_t b[600];
    size_t n = tgt_frame(b, sizeof b, 3, 0x80800001u, 0x21, 40);
    b[30] ^= 0x08;
    kdh_link_feed(h.link, b, n);
    assert_string_equal(wire(&h), "RESEND 0");
    assert_int_equal(h.npk, 1);
    assert_int_equal(kdh_link_stats(h.link)->checksum_errors, 1);
    b[30] ^= 0x08; /* the target sends it again, intact */
    kdh_link_feed(h.link, b, n);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.npk, 2);
    /* A packet cut short: silence for the inter-byte timeout flushes it. */
    n = tgt_frame(b, sizeof b, 3, 0x80800000u, 0x22, 40);
    kdh_link_feed(h.link, b, 30);
    advance(&h, 249);
    assert_string_equal(wire(&h), "");
    advance(&h, 1);
    assert_string_equal(wire(&h), "RESEND 0");
    assert_int_equal(kdh_link_stats(h.link)->truncated, 1);
    kdh_link_feed(h.link, b, n);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 3);
    /* Missing trailer and oversize also ask for a resend. */
    n = tgt_frame(b, sizeof b, 3, 0x80800001u, 0x23, 10);
    b[n - 1] = 0x00;
    kdh_link_feed(h.link, b, n);
    const uint8_t ov[] = {0x30, 0x30, 0x30, 0x30, 3, 0, 0xA1, 0x0F, 1, 0, 0x80, 0x80, 0, 0, 0, 0};
    kdh_link_feed(h.link, ov, sizeof ov);
    assert_string_equal(wire(&h), "RESEND 0, RESEND 0");
    assert_int_equal(kdh_link_stats(h.link)->trailer_errors, 1);
    assert_int_equal(kdh_link_stats(h.link)->oversize_errors, 1);
    assert_int_equal(kdh_link_stats(h.link)->garbage_bytes, 1); /* the 0x00 */
    teardown_h(&h);
}

static void test_resend_storm(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    send_req(&h, 1);
    assert_string_equal(wire(&h), "D2 80800000");
    for (int i = 0; i < 5; i++)
        tgt_ctl(&h, KDH_WIRE_TYPE_RESEND, 0);
    assert_string_equal(wire(&h),
                        "D2 80800000, D2 80800000, D2 80800000, D2 80800000, D2 80800000");
    tgt_ctl(&h, KDH_WIRE_TYPE_RESEND, 0); /* budget spent: RESET and resync */
    assert_string_equal(wire(&h), "RESET 0");
    assert_int_equal(kdh_link_state(h.link), KDH_LINK_CONNECTING);
    assert_int_equal(h.ev[h.nev - 1], KDH_LINK_EV_RESYNC);
    assert_int_equal(h.ndone, 0);
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0); /* echo: the packet goes again with id 0 */
    assert_string_equal(wire(&h), "D2 80800000");
    for (int i = 0; i < 6; i++)
        tgt_ctl(&h, KDH_WIRE_TYPE_RESEND, 0);
    assert_string_equal(wire(&h), "D2 80800000, D2 80800000, D2 80800000, D2 80800000, "
                                  "D2 80800000, RESET 0");
    assert_int_equal(h.ndone, 1);
    assert_int_equal(h.done[0], KDH_ETIMEDOUT);
    assert_int_equal(h.ev[h.nev - 1], KDH_LINK_EV_SEND_FAILED);
    assert_non_null(strstr(h.last_msg, "not acknowledged"));
    const kdh_link_stats_t *st = kdh_link_stats(h.link);
    assert_int_equal(st->resends_received, 12);
    assert_int_equal(st->retransmits, 10);
    assert_int_equal(st->send_failures, 1);
    assert_int_equal(kdh_link_state(h.link), KDH_LINK_CONNECTING);
    teardown_h(&h);
}

/* After the link's own RESET, the target first resends its pending state change: that is not
 * an answer to our request, which stays outstanding until the target really acknowledges it. */
static void test_resync_then_state_change_is_not_an_ack(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    send_req(&h, 1);
    for (int i = 0; i < 6; i++)
        advance(&h, 1000); /* ACKs lost: the packet, 5 retransmissions, then RESET */
    assert_string_equal(wire(&h), "D2 80800000, D2 80800000, D2 80800000, D2 80800000, "
                                  "D2 80800000, D2 80800000, RESET 0");
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0);
    assert_string_equal(wire(&h), "D2 80800000");
    /* The target, waiting for the ACK of its state change, sees our data packet: it answers
     * RESEND and takes its own packet as acknowledged (kd-protocol.md 1.5). */
    tgt_data(&h, 7, 0x80800000u, 0x11, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 2);
    assert_int_equal(h.ndone, 0);
    assert_true(kdh_link_send_pending(h.link));
    tgt_ctl(&h, KDH_WIRE_TYPE_RESEND, 0);
    assert_string_equal(wire(&h), "D2 80800000");
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_int_equal(h.ndone, 1);
    assert_int_equal(h.done[0], KDH_OK);
    assert_int_equal(kdh_link_tx_id(h.link), 0x80800001u);
    assert_int_equal(kdh_link_stats(h.link)->implicit_acks, 0);
    teardown_h(&h);
}

/* The same exchange, where the caller gives the request up when the re-reported stop arrives
 * (the KD session does: the request belonged to the stop before). Withdrawn, the packet is not
 * sent again on the target's RESEND, nor after the ACK timeout; no completion comes; the next
 * packet takes the id the withdrawn one had, which the target never accepted. */
static void test_withdraw_after_rereported_stop(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    send_req(&h, 1);
    for (int i = 0; i < 6; i++)
        advance(&h, 1000);
    assert_string_equal(wire(&h), "D2 80800000, D2 80800000, D2 80800000, D2 80800000, "
                                  "D2 80800000, D2 80800000, RESET 0");
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0);
    assert_string_equal(wire(&h), "D2 80800000");
    tgt_data(&h, 7, 0x80800000u, 0x11, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    kdh_link_withdraw(h.link);
    assert_false(kdh_link_send_pending(h.link));
    tgt_ctl(&h, KDH_WIRE_TYPE_RESEND, 0);
    advance(&h, 5000);
    assert_string_equal(wire(&h), "");
    assert_int_equal(h.ndone, 0);
    assert_int_equal(kdh_link_stats(h.link)->withdrawn, 1);
    assert_int_equal(kdh_link_tx_id(h.link), 0x80800000u);
    assert_int_equal(send_req(&h, 2), KDH_OK);
    assert_string_equal(wire(&h), "D2 80800000");
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_int_equal(h.ndone, 1);
    assert_int_equal(h.done[0], KDH_OK);
    kdh_link_withdraw(h.link); /* nothing outstanding: no effect */
    assert_int_equal(kdh_link_stats(h.link)->withdrawn, 1);
    teardown_h(&h);
}

/* kdh_link_probe: a RESEND only between exchanges; the stop a stopped target reports again in
 * answer comes with its next id, a new packet, not a duplicate. */
static void test_probe(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    assert_int_equal(kdh_link_probe(h.link), 0); /* not connected */
    connect_plain(&h);
    send_req(&h, 1); /* a Continue */
    assert_string_equal(wire(&h), "D2 80800000");
    assert_int_equal(kdh_link_probe(h.link), 0); /* the send is outstanding */
    assert_string_equal(wire(&h), "");
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_int_equal(h.ndone, 1);
    assert_int_equal(kdh_link_probe(h.link), 1);
    assert_string_equal(wire(&h), "RESEND 0");
    /* half a frame in: that may be the stop itself */
    uint8_t b[600];
    size_t n = tgt_frame(b, sizeof b, KDH_WIRE_TYPE_STATE_CHANGE64, 0x80800001u, 0x22, 0xF4);
    kdh_link_feed(h.link, b, 10);
    assert_int_equal(kdh_link_probe(h.link), 0);
    kdh_link_feed(h.link, b + 10, n - 10);
    assert_string_equal(wire(&h), "ACK 80800001");
    assert_int_equal(h.npk, 2);
    assert_int_equal(h.pk_type[1], KDH_WIRE_TYPE_STATE_CHANGE64);
    assert_int_equal(kdh_link_stats(h.link)->probes_sent, 1);
    assert_int_equal(kdh_link_stats(h.link)->duplicates, 0);
    teardown_h(&h);
}

static void test_reset_from_target(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    send_req(&h, 1);
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    tgt_data(&h, 2, 0x80800001u, 0x31, 0x38);
    send_req(&h, 2);
    assert_string_equal(wire(&h), "D2 80800000, ACK 80800001, D2 80800001");
    /* Mid-exchange an unasked RESET (a late echo, or a damaged RESEND/ACK: the target's ids
     * may never have been reset): the request is cancelled and the host resynchronises with a
     * RESET of its own at once, instead of waiting for a stop that may not come. */
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0);
    assert_string_equal(wire(&h), "RESET 0");
    assert_int_equal(kdh_link_state(h.link), KDH_LINK_CONNECTING);
    assert_int_equal(h.ndone, 2);
    assert_int_equal(h.done[1], KDH_ECANCELED);
    assert_int_equal(h.ev[h.nev - 2], KDH_LINK_EV_RESET_SEEN);
    assert_int_equal(h.ev[h.nev - 1], KDH_LINK_EV_SEND_FAILED);
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0); /* the echo of ours */
    assert_int_equal(kdh_link_state(h.link), KDH_LINK_CONNECTED);
    assert_int_equal(kdh_link_tx_id(h.link), 0x80800000u);
    assert_int_equal(kdh_link_rx_expect(h.link), 0x80800000u);
    /* ...and the target resends its pending state change with id 0. */
    tgt_data(&h, 7, 0x80800000u, 0x11, 0xF4);
    assert_string_equal(wire(&h), "ACK 80800000");
    assert_int_equal(h.npk, 3);
    send_req(&h, 3);
    assert_string_equal(wire(&h), "D2 80800000");
    advance(&h, 10000); /* no retransmission storm after it is acked */
    tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    wire(&h);
    advance(&h, 10000);
    assert_string_equal(wire(&h), "");
    teardown_h(&h);
}

static void test_id_wrap_many_exchanges(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    connect_plain(&h);
    uint32_t tid = 0x80800001u; /* target's next id after its first state change */
    for (int i = 0; i < 1000; i++) {
        uint32_t hid = 0x80800000u | (uint32_t)(i & 1);
        char want[64];
        snprintf(want, sizeof want, "D2 %x", (unsigned)hid);
        assert_int_equal(send_req(&h, (uint8_t)i), KDH_OK);
        assert_string_equal(wire(&h), want);
        tgt_ctl(&h, KDH_WIRE_TYPE_ACKNOWLEDGE, hid);
        tgt_data(&h, 2, tid, (uint8_t)i, 0x38 + (size_t)(i % 100));
        snprintf(want, sizeof want, "ACK %x", (unsigned)tid);
        assert_string_equal(wire(&h), want);
        tid ^= 1u;
        h.npk = 1; /* keep the small log from overflowing */
        h.ndone = 0;
    }
    const kdh_link_stats_t *st = kdh_link_stats(h.link);
    assert_int_equal(st->accepted, 1001);
    assert_int_equal(st->data_out, 1000);
    assert_int_equal(st->retransmits, 0);
    assert_int_equal(st->duplicates, 0);
    teardown_h(&h);
}

static void test_send_while_connecting_times_out(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 115200);
    assert_int_equal(send_req(&h, 1), KDH_EINVAL); /* before connect */
    kdh_link_connect(h.link, 0, NULL);
    assert_int_equal(send_req(&h, 1), KDH_OK); /* waits for the echo */
    assert_string_equal(wire(&h), "RESET 0");
    for (int i = 0; i < 5; i++)
        advance(&h, 1000);
    assert_string_equal(wire(&h), "RESET 0, RESET 0, RESET 0, RESET 0, RESET 0");
    assert_int_equal(h.ndone, 0);
    advance(&h, 1000); /* five RESETs since the send unanswered: give up on it, keep resetting */
    assert_string_equal(wire(&h), "RESET 0");
    assert_int_equal(h.ndone, 1);
    assert_int_equal(h.done[0], KDH_ETIMEDOUT);
    /* silence diagnostic after 5 s */
    int saw = 0;
    for (int i = 0; i < h.nev; i++)
        saw |= h.ev[i] == KDH_LINK_EV_NO_PACKET;
    assert_true(saw);
    teardown_h(&h);
}

static void test_silence_message(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 115200);
    kdh_link_connect(h.link, 0, NULL);
    advance(&h, 4999);
    assert_int_equal(h.nev, 0);
    advance(&h, 1);
    assert_int_equal(h.nev, 1);
    assert_int_equal(h.ev[0], KDH_LINK_EV_NO_PACKET);
    assert_string_equal(h.last_msg, "no valid packet in 5 s at 115200 baud: check the cable and "
                                    "the target's /BAUDRATE");
    /* Connected and idle (target running): silence is normal. */
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0);
    int before = h.nev;
    advance(&h, 60000);
    assert_int_equal(h.nev, before);
    teardown_h(&h);
}

static void test_free_from_callback(void **state)
{
    (void)state;
    h_t h;
    setup_h(&h, 0);
    kdh_link_connect(h.link, 0, NULL);
    tgt_ctl(&h, KDH_WIRE_TYPE_RESET, 0);
    h.free_in_packet = 1;
    /* Two packets in one feed: the link is freed during the first and must stop there. */
    uint8_t b[1200];
    size_t n = tgt_frame(b, sizeof b, 7, 0x80800000u, 1, 0xF0);
    n += tgt_frame(b + n, sizeof b - n, 7, 0x80800001u, 2, 0xF0);
    kdh_link_feed(h.link, b, n);
    assert_null(h.link);
    assert_int_equal(h.npk, 1);
}

/* The same handshake on a real libuv loop: the RESET repeat comes from the link's timer. */
typedef struct uvh {
    uv_loop_t loop;
    uv_timer_t stop;
    h_t h;
    int resets;
} uvh_t;

static int uv_write_count(void *ctx, const uint8_t *buf, size_t len)
{
    uvh_t *u = ctx;
    if (len == 16 && buf[0] == 0x69 && buf[4] == KDH_WIRE_TYPE_RESET)
        u->resets++;
    return KDH_OK;
}

static void uv_stop_cb(uv_timer_t *t)
{
    uvh_t *u = t->data;
    kdh_link_free(u->h.link);
    uv_close((uv_handle_t *)&u->stop, NULL);
}

static void test_uv_loop_timer(void **state)
{
    (void)state;
    static uvh_t u;
    memset(&u, 0, sizeof u);
    assert_int_equal(uv_loop_init(&u.loop), 0);
    kdh_link_cfg_t cfg = {.loop = &u.loop, .write = uv_write_count, .on_packet = on_packet,
                          .ctx = &u, .reset_interval_ms = 20};
    assert_int_equal(kdh_link_new(&u.h.link, &cfg, NULL), KDH_OK);
    kdh_link_connect(u.h.link, 0, NULL);
    uv_timer_init(&u.loop, &u.stop);
    u.stop.data = &u;
    uv_timer_start(&u.stop, uv_stop_cb, 110, 0);
    uv_run(&u.loop, UV_RUN_DEFAULT); /* ends once the link's timer is closed */
    /* at 0, 20, 40, 60, 80, 100 ms: allow scheduling slack */
    assert_in_range(u.resets, 4, 6);
    assert_int_equal(uv_loop_close(&u.loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_plain),
        cmocka_unit_test(test_connect_breakin),
        cmocka_unit_test(test_first_state_change_sync_bit),
        cmocka_unit_test(test_lost_ack),
        cmocka_unit_test(test_ack_timeout_counts_wire_time),
        cmocka_unit_test(test_lost_data_packet),
        cmocka_unit_test(test_duplicated_packet),
        cmocka_unit_test(test_ack_damaged_into_reset),
        cmocka_unit_test(test_request_id_damaged),
        cmocka_unit_test(test_reply_type_damaged),
        cmocka_unit_test(test_corrupted_byte),
        cmocka_unit_test(test_resend_storm),
        cmocka_unit_test(test_resync_then_state_change_is_not_an_ack),
        cmocka_unit_test(test_withdraw_after_rereported_stop),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_reset_from_target),
        cmocka_unit_test(test_id_wrap_many_exchanges),
        cmocka_unit_test(test_send_while_connecting_times_out),
        cmocka_unit_test(test_silence_message),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test(test_uv_loop_timer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
