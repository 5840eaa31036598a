/* KD session against a target played by the test: every reply is built here from literal
 * fields with the wire encoder, and every request the session writes is decoded and checked
 * field by field. The clock is fake, so timeouts are exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kdh/kd.h"

typedef struct fake {
    uint8_t out[1 << 16]; /* bytes the host wrote */
    size_t out_len, out_pos;
    uint64_t now;
    uint32_t tgt_id;
    kdh_kd_t *kd;
    int done_calls;
    int stops;
    char print[128];
} fake_t;

static int fake_write(void *ctx, const uint8_t *b, size_t n)
{
    fake_t *f = ctx;
    assert_true(f->out_len + n <= sizeof f->out);
    memcpy(f->out + f->out_len, b, n);
    f->out_len += n;
    return KDH_OK;
}

static uint64_t fake_now(void *ctx) { return ((fake_t *)ctx)->now; }

static void on_sc(void *ctx, const kdh_wire_state_change_t *sc)
{
    (void)sc;
    ((fake_t *)ctx)->stops++;
}

static void on_print(void *ctx, unsigned cpu, const char *text, size_t len)
{
    fake_t *f = ctx;
    (void)cpu;
    snprintf(f->print, sizeof f->print, "%.*s", (int)len, text);
}

/* Next packet the host wrote (data or control); 0 when none. payload copied into buf. */
static int host_packet(fake_t *f, kdh_wire_packet_t *pkt, uint8_t *buf)
{
    kdh_wire_decoder_t d;
    kdh_wire_decoder_init(&d);
    while (f->out_pos < f->out_len) {
        kdh_wire_event_t ev;
        size_t n = kdh_wire_decoder_feed(&d, f->out + f->out_pos, f->out_len - f->out_pos, &ev);
        f->out_pos += n;
        if (ev.kind == KDH_WIRE_EV_PACKET) {
            *pkt = ev.packet;
            if (pkt->payload_len)
                memcpy(buf, pkt->payload, pkt->payload_len);
            pkt->payload = buf;
            return 1;
        }
        assert_int_equal(ev.kind, KDH_WIRE_EV_NONE);
    }
    return 0;
}

/* Next host data packet, asserting that it is a manipulate request; returns its header. */
static kdh_wire_manip_t host_request(fake_t *f, const uint8_t **data, size_t *dlen)
{
    static uint8_t buf[KDH_WIRE_FRAME_MAX];
    kdh_wire_packet_t p;
    for (;;) {
        assert_true(host_packet(f, &p, buf));
        if (!p.is_control)
            break;
    }
    assert_int_equal(p.type, KDH_WIRE_TYPE_STATE_MANIPULATE);
    kdh_wire_manip_t m;
    assert_int_equal(kdh_wire_manip_decode(p.payload, p.payload_len, KDH_WIRE_ARCH_AMD64, &m,
                                           data, dlen, NULL), KDH_OK);
    /* ACK it as the target does (id as sent). */
    uint8_t ack[16];
    kdh_wire_encode_control(ack, sizeof ack, KDH_WIRE_TYPE_ACKNOWLEDGE, p.id & ~KDH_WIRE_SYNC_BIT);
    kdh_kd_feed(f->kd, ack, sizeof ack);
    return m;
}

static int host_wrote_nothing_more(fake_t *f)
{
    kdh_wire_packet_t p;
    uint8_t buf[KDH_WIRE_FRAME_MAX];
    while (host_packet(f, &p, buf))
        if (!p.is_control)
            return 0;
    return 1;
}

static void target_send(fake_t *f, uint16_t type, const uint8_t *a, size_t alen, const uint8_t *b,
                        size_t blen)
{
    uint8_t frame[KDH_WIRE_FRAME_MAX];
    int n = kdh_wire_encode_data2(frame, sizeof frame, type, f->tgt_id, a, alen, b, blen);
    assert_true(n > 0);
    f->tgt_id ^= 1;
    kdh_kd_feed(f->kd, frame, (size_t)n);
}

static void reply(fake_t *f, kdh_wire_manip_t m, uint32_t status, const uint8_t *data, size_t len)
{
    uint8_t hdr[KDH_WIRE_MANIP_SIZE];
    m.return_status = status;
    kdh_wire_manip_encode(&m, KDH_WIRE_ARCH_AMD64, hdr);
    target_send(f, KDH_WIRE_TYPE_STATE_MANIPULATE, hdr, sizeof hdr, data, len);
}

static void stop_target(fake_t *f)
{
    kdh_wire_state_change_t sc;
    memset(&sc, 0, sizeof sc);
    sc.new_state = KDH_WIRE_STATE_EXCEPTION;
    sc.number_processors = 1;
    sc.program_counter = 0xfffff80000001000ull;
    sc.u.exception.code = KDH_WIRE_STATUS_BREAKPOINT;
    sc.u.exception.first_chance = 1;
    uint8_t buf[KDH_WIRE_STATE_CHANGE_SIZE + 4] = {0};
    kdh_wire_state_change_encode(&sc, KDH_WIRE_ARCH_AMD64, buf);
    target_send(f, KDH_WIRE_TYPE_STATE_CHANGE64, buf, sizeof buf, NULL, 0);
}

static int setup(void **state)
{
    static fake_t f;
    memset(&f, 0, sizeof f);
    kdh_kd_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.link.write = fake_write;
    cfg.link.now = fake_now;
    cfg.link_ctx = &f;
    cfg.arch = KDH_WIRE_ARCH_AMD64;
    cfg.on_state_change = on_sc;
    cfg.on_print = on_print;
    cfg.ctx = &f;
    assert_int_equal(kdh_kd_new(&f.kd, &cfg, NULL), KDH_OK);
    /* Handshake: host RESET, target echo, then the target's state change with id 0x80800000. */
    assert_int_equal(kdh_kd_connect(f.kd, 0, NULL), KDH_OK);
    kdh_wire_packet_t p;
    uint8_t buf[64];
    assert_true(host_packet(&f, &p, buf));
    assert_int_equal(p.type, KDH_WIRE_TYPE_RESET);
    uint8_t echo[16];
    kdh_wire_encode_control(echo, sizeof echo, KDH_WIRE_TYPE_RESET, 0);
    kdh_kd_feed(f.kd, echo, sizeof echo);
    f.tgt_id = KDH_WIRE_INITIAL_ID;
    stop_target(&f);
    assert_int_equal(f.stops, 1);
    assert_true(kdh_kd_stopped(f.kd));
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fake_t *f = *state;
    kdh_kd_free(f->kd);
    return 0;
}

static void count_done(kdh_kd_t *kd, kdh_kd_req_t *req)
{
    (void)kd;
    ((fake_t *)req->user)->done_calls++;
}

static void test_get_version(void **state)
{
    fake_t *f = *state;
    kdh_kd_req_t req;
    kdh_kd_get_version(f->kd, &req, count_done, f);
    const uint8_t *d;
    size_t dl;
    kdh_wire_manip_t m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3146);
    assert_int_equal(dl, 0);
    assert_int_equal(f->done_calls, 0);
    m.u.version.machine_type = 0x8664;
    m.u.version.minor_version = 19041;
    m.u.version.kern_base = 0xfffff80512340000ull;
    reply(f, m, 0, NULL, 0);
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(req.status, KDH_OK);
    assert_int_equal(req.m.u.version.minor_version, 19041);
    assert_true(req.m.u.version.kern_base == 0xfffff80512340000ull);
    assert_int_equal(kdh_kd_stats(f->kd)->requests, 1);
}

static void test_read_split_and_partial(void **state)
{
    fake_t *f = *state;
    static uint8_t buf[10000];
    kdh_kd_req_t req;
    memset(buf, 0xEE, sizeof buf);
    kdh_kd_read_virtual(f->kd, &req, 0x1000, buf, sizeof buf, count_done, f);
    /* 10000 = 3944 + 3944 + 2112; the second chunk comes back short (2000 bytes). */
    static const uint32_t want_len[] = {3944, 3944};
    static const uint64_t want_addr[] = {0x1000, 0x1000 + 3944};
    static uint8_t data[3944];
    for (int i = 0; i < 2; i++) {
        const uint8_t *d;
        size_t dl;
        kdh_wire_manip_t m = host_request(f, &d, &dl);
        assert_int_equal(m.api, 0x3130);
        assert_true(m.u.mem.address == want_addr[i]);
        assert_int_equal(m.u.mem.transfer_count, want_len[i]);
        uint32_t give = i == 0 ? 3944 : 2000;
        memset(data, 0x10 + i, give);
        m.u.mem.actual_count = give;
        reply(f, m, i == 0 ? 0 : KDH_WIRE_STATUS_UNSUCCESSFUL /* stopped at an unmapped page */, data, give);
    }
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(req.status, KDH_OK);
    assert_int_equal(req.out_len, 3944 + 2000);
    assert_int_equal(buf[0], 0x10);
    assert_int_equal(buf[3944 + 1999], 0x11);
    assert_int_equal(buf[3944 + 2000], 0xEE);
    assert_true(host_wrote_nothing_more(f)); /* no third chunk after a short one */
}

static void test_context_ex_fallback(void **state)
{
    fake_t *f = *state;
    uint8_t rsp_rbp[16];
    kdh_kd_req_t req;
    kdh_kd_get_context_slice(f->kd, &req, 0, 0x98, rsp_rbp, sizeof rsp_rbp, count_done, f);
    const uint8_t *d;
    size_t dl;
    kdh_wire_manip_t m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x315F);
    assert_int_equal(m.u.context_ex.offset, 0x98);
    assert_int_equal(m.u.context_ex.byte_count, 16);
    reply(f, m, KDH_WIRE_STATUS_UNSUCCESSFUL, NULL, 0);
    /* Fallback: a full GetContext, sliced. */
    m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3132);
    static uint8_t ctx[0x4D0];
    for (size_t i = 0; i < sizeof ctx; i++)
        ctx[i] = (uint8_t)i;
    kdh_put_u32(ctx + 0x30, 0x10000B);
    reply(f, m, 0, ctx, sizeof ctx);
    assert_int_equal(req.status, KDH_OK);
    assert_memory_equal(rsp_rbp, ctx + 0x98, 16);
    assert_true(kdh_kd_context_ex_unsupported(f->kd));

    /* Same stop: a second slice is served from the copy, nothing on the wire. */
    uint8_t rip[8];
    kdh_kd_get_context_slice(f->kd, &req, 0, 0xF8, rip, 8, count_done, f);
    assert_int_equal(req.status, KDH_OK);
    assert_memory_equal(rip, ctx + 0xF8, 8);
    assert_true(host_wrote_nothing_more(f));

    /* Set RIP: a full SetContext of the copy with RIP patched (GetContext already done). */
    uint8_t newrip[8];
    kdh_put_u64(newrip, 0xfffff80000001001ull);
    kdh_kd_set_context_slice(f->kd, &req, 0, 0xF8, newrip, 8, count_done, f);
    m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3133);
    assert_int_equal(m.u.set_context.context_flags, 0x10000B);
    assert_int_equal(dl, 0x4D0);
    assert_true(kdh_get_u64(d + 0xF8) == 0xfffff80000001001ull);
    assert_memory_equal(d + 0x98, ctx + 0x98, 16);
    reply(f, m, 0, NULL, 0);
    assert_int_equal(req.status, KDH_OK);
    kdh_kd_get_context_slice(f->kd, &req, 0, 0xF8, rip, 8, count_done, f);
    assert_true(kdh_get_u64(rip) == 0xfffff80000001001ull); /* the copy follows a taken set */

    /* A refused SetContext leaves the session's copy as the target has it. */
    uint8_t badrip[8];
    kdh_put_u64(badrip, 0xdead);
    kdh_kd_set_context_slice(f->kd, &req, 0, 0xF8, badrip, 8, count_done, f);
    m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3133);
    reply(f, m, KDH_WIRE_STATUS_UNSUCCESSFUL, NULL, 0);
    assert_int_equal(req.status, KDH_ETARGET);
    kdh_kd_get_context_slice(f->kd, &req, 0, 0xF8, rip, 8, count_done, f);
    assert_int_equal(req.status, KDH_OK);
    assert_true(kdh_get_u64(rip) == 0xfffff80000001001ull);
    assert_true(host_wrote_nothing_more(f));
}

static void test_context_ex_supported(void **state)
{
    fake_t *f = *state;
    uint8_t newrip[8];
    kdh_put_u64(newrip, 0x1234);
    kdh_kd_req_t req;
    kdh_kd_set_context_slice(f->kd, &req, 0, 0xF8, newrip, 8, count_done, f);
    const uint8_t *d;
    size_t dl;
    kdh_wire_manip_t m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3160);
    assert_int_equal(m.u.context_ex.offset, 0xF8);
    assert_int_equal(m.u.context_ex.byte_count, 8);
    assert_int_equal(dl, 8);
    assert_memory_equal(d, newrip, 8);
    m.u.context_ex.bytes_copied = 8;
    reply(f, m, 0, NULL, 0);
    assert_int_equal(req.status, KDH_OK);
    assert_false(kdh_kd_context_ex_unsupported(f->kd));
}

static void test_continue_then_running(void **state)
{
    fake_t *f = *state;
    kdh_kd_req_t req, req2;
    kdh_kd_continue(f->kd, &req, KDH_WIRE_DBG_CONTINUE, 0, 0, count_done, f);
    const uint8_t *d;
    size_t dl;
    kdh_wire_manip_t m = host_request(f, &d, &dl); /* ACKed inside host_request */
    assert_int_equal(m.api, 0x313C);
    assert_int_equal(m.u.cont2.status, 0x00010002);
    assert_int_equal(m.u.cont2.trace_flag, 0);
    assert_int_equal(req.status, KDH_OK);
    assert_false(kdh_kd_stopped(f->kd));
    /* A request while running is refused at once. */
    kdh_kd_get_version(f->kd, &req2, count_done, f);
    assert_int_equal(req2.status, KDH_EINVAL);
    assert_true(host_wrote_nothing_more(f));
    /* The next hit stops it again. */
    stop_target(f);
    assert_int_equal(f->stops, 2);
    assert_true(kdh_kd_stopped(f->kd));
}

/* A Continue whose copies are all lost: the link resets, the target reports its stop again and
 * the Continue is cancelled. The target then asks for a resend (it saw the Continue sent once
 * more after the RESET while it was still reporting its stop): the session must not send the
 * cancelled Continue, or the target would run while the caller holds a stop. */
static void test_cancelled_continue_not_sent_again(void **state)
{
    fake_t *f = *state;
    kdh_kd_req_t req;
    kdh_kd_continue(f->kd, &req, KDH_WIRE_DBG_CONTINUE, 0, 0, count_done, f);
    kdh_wire_packet_t p;
    uint8_t buf[KDH_WIRE_FRAME_MAX];
    int data = 0, resets = 0;
    for (int i = 0; i < 7; i++) { /* the Continue and 5 retransmissions, then RESET; no ACK */
        while (host_packet(f, &p, buf)) {
            data += !p.is_control;
            resets += p.is_control && p.type == KDH_WIRE_TYPE_RESET;
        }
        f->now += 1100;
        kdh_kd_poll(f->kd);
    }
    assert_int_equal(data, 6);
    assert_int_equal(resets, 1);
    uint8_t echo[16];
    kdh_wire_encode_control(echo, sizeof echo, KDH_WIRE_TYPE_RESET, 0);
    kdh_kd_feed(f->kd, echo, sizeof echo);
    do /* the Continue once more, with the id a RESET gives (after any RESET repeated meanwhile) */
        assert_true(host_packet(f, &p, buf));
    while (p.is_control);
    assert_int_equal(p.id, KDH_WIRE_INITIAL_ID);
    f->tgt_id = KDH_WIRE_INITIAL_ID;
    stop_target(f); /* the stop reported again */
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(req.status, KDH_ECANCELED);
    assert_true(kdh_kd_stopped(f->kd));
    uint8_t resend[16];
    kdh_wire_encode_control(resend, sizeof resend, KDH_WIRE_TYPE_RESEND, 0);
    kdh_kd_feed(f->kd, resend, sizeof resend);
    f->now += 5000;
    kdh_kd_poll(f->kd);
    assert_true(host_wrote_nothing_more(f));
    assert_true(kdh_kd_stopped(f->kd));
}

static void test_reply_timeout_and_stray(void **state)
{
    fake_t *f = *state;
    kdh_kd_req_t req;
    kdh_kd_get_version(f->kd, &req, count_done, f);
    const uint8_t *d;
    size_t dl;
    kdh_wire_manip_t m = host_request(f, &d, &dl);
    /* Default at 115200 baud (the link's default): 1000 ms + 4017 bytes at 10 bits a byte =
     * 1348 ms for the reply, then the request is asked again, 3 times. */
    for (int attempt = 0; attempt < 3; attempt++) {
        f->now += 1347;
        kdh_kd_poll(f->kd);
        assert_true(host_wrote_nothing_more(f));
        f->now += 1;
        kdh_kd_poll(f->kd);
        assert_int_equal(f->done_calls, 0);
        m = host_request(f, &d, &dl); /* the same request, as a new packet */
        assert_int_equal(m.api, 0x3146);
    }
    f->now += 1348;
    kdh_kd_poll(f->kd);
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(req.status, KDH_ETIMEDOUT);
    assert_int_equal(kdh_kd_stats(f->kd)->reply_retries, 3);
    assert_true(host_wrote_nothing_more(f));
    reply(f, m, 0, NULL, 0); /* late */
    assert_int_equal(kdh_kd_stats(f->kd)->stray_replies, 1);
}

static void test_lost_reply_asked_again(void **state)
{
    fake_t *f = *state;
    uint8_t buf[64];
    kdh_kd_req_t req;
    kdh_kd_read_virtual(f->kd, &req, 0x2000, buf, sizeof buf, count_done, f);
    const uint8_t *d;
    size_t dl;
    kdh_wire_manip_t m = host_request(f, &d, &dl);
    assert_true(m.u.mem.address == 0x2000);
    /* The target believes its reply was delivered (it took a retransmitted request for a lost
     * ACK): nothing comes. The session asks again. */
    f->now += 1348;
    kdh_kd_poll(f->kd);
    m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3130);
    assert_true(m.u.mem.address == 0x2000);
    assert_int_equal(m.u.mem.transfer_count, 64);
    uint8_t data[64];
    memset(data, 0x5A, sizeof data);
    m.u.mem.actual_count = 64;
    reply(f, m, 0, data, 64);
    assert_int_equal(req.status, KDH_OK);
    assert_int_equal(req.out_len, 64);
    assert_memory_equal(buf, data, 64);
}

/* Replies that contradict their request: an echoed address, transfer count or context offset
 * changed, more bytes read than asked, or data of another length than the count read. The KD
 * checksum is a byte sum, so two errors that cancel pass it; the session must not take such a
 * reply but ask again (the target already had its ACK and will not resend), and give up with
 * KDH_ECORRUPT after the reply retries. */
static void test_damaged_reply_asked_again(void **state)
{
    fake_t *f = *state;
    uint8_t buf[64], data[64];
    memset(data, 0x5A, sizeof data);
    kdh_kd_req_t req;
    kdh_kd_read_virtual(f->kd, &req, 0x2000, buf, sizeof buf, count_done, f);
    const uint8_t *d;
    size_t dl;
    kdh_wire_manip_t m = host_request(f, &d, &dl);
    kdh_wire_manip_t bad = m;
    bad.u.mem.address = 0x2100; /* +1 in one byte of the address, -1 in one of the data */
    bad.u.mem.actual_count = 64;
    reply(f, bad, 0, data, 64);
    bad = host_request(f, &d, &dl); /* asked again at once */
    assert_true(bad.u.mem.address == 0x2000);
    assert_int_equal(f->done_calls, 0);
    bad.u.mem.actual_count = 65; /* more than asked */
    reply(f, bad, 0, data, 64);
    bad = host_request(f, &d, &dl);
    bad.u.mem.actual_count = 64; /* says 64, carries 60 */
    reply(f, bad, 0, data, 60);
    m = host_request(f, &d, &dl);
    assert_int_equal(kdh_kd_stats(f->kd)->damaged_replies, 3);
    assert_int_equal(f->done_calls, 0);
    m.u.mem.actual_count = 64;
    reply(f, m, 0, data, 64);
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(req.status, KDH_OK);
    assert_memory_equal(buf, data, 64);

    /* A context slice whose offset changed, every time: given up after the reply retries. */
    uint8_t rip[8];
    kdh_kd_get_context_slice(f->kd, &req, 0, 0xF8, rip, sizeof rip, count_done, f);
    for (int i = 0; i < 4; i++) {
        m = host_request(f, &d, &dl);
        assert_int_equal(m.api, 0x315F);
        assert_int_equal(m.u.context_ex.offset, 0xF8);
        m.u.context_ex.offset = 0xF0;
        m.u.context_ex.bytes_copied = 8;
        reply(f, m, 0, data, 8);
    }
    assert_int_equal(f->done_calls, 2);
    assert_int_equal(req.status, KDH_ECORRUPT);
    assert_non_null(strstr(req.err.msg, "context offset"));
    assert_int_equal(kdh_kd_stats(f->kd)->damaged_replies, 7);
    assert_true(host_wrote_nothing_more(f));
}

/* A frame that fails the checksum (one payload byte changed after encoding), as line noise. */
static void target_send_damaged(fake_t *f)
{
    uint8_t frame[64], payload[16] = {1, 2, 3};
    int n = kdh_wire_encode_data2(frame, sizeof frame, KDH_WIRE_TYPE_DEBUG_IO, f->tgt_id, payload,
                                  sizeof payload, NULL, 0);
    assert_true(n > 0);
    frame[20] ^= 0x10;
    kdh_kd_feed(f->kd, frame, (size_t)n);
}

/* On a clean line a read goes once. On a line that damages one frame in ten or more, two errors
 * that cancel in the byte-sum checksum become likely, and nothing in a read's data can show
 * them: each chunk is asked twice and taken only when both copies agree; copies that keep
 * disagreeing fail the read (KDH_ECORRUPT). */
static void test_noisy_line_reads_verified(void **state)
{
    fake_t *f = *state;
    uint8_t buf[64], a[64], b[64];
    memset(a, 0x11, sizeof a);
    memcpy(b, a, sizeof b);
    b[17] = 0x13; /* +2 here ... */
    b[40] = 0x0F; /* ... -2 here: the same byte sum */
    kdh_kd_req_t req;
    const uint8_t *d;
    size_t dl;
    for (int i = 0; i < 70; i++)
        target_send_damaged(f);
    kdh_kd_read_virtual(f->kd, &req, 0x3000, buf, sizeof buf, count_done, f);
    kdh_wire_manip_t m = host_request(f, &d, &dl);
    m.u.mem.actual_count = 64;
    reply(f, m, 0, b, 64); /* damaged, yet it passes every check a reply can get */
    m = host_request(f, &d, &dl);
    assert_true(m.u.mem.address == 0x3000);
    m.u.mem.actual_count = 64;
    reply(f, m, 0, a, 64); /* differs from the first copy: asked again */
    m = host_request(f, &d, &dl);
    m.u.mem.actual_count = 64;
    assert_int_equal(f->done_calls, 0);
    reply(f, m, 0, a, 64); /* two copies agree */
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(req.status, KDH_OK);
    assert_memory_equal(buf, a, 64);
    assert_int_equal(kdh_kd_stats(f->kd)->verified_reads, 1);
    assert_int_equal(kdh_kd_stats(f->kd)->read_mismatches, 1);

    /* registers are read the same way: a damaged RSP would send the stack walk astray */
    uint8_t rsp[8], rsp_bad[8], rsp_ok[8];
    kdh_put_u64(rsp_ok, 0xffffb00000001000ull);
    kdh_put_u64(rsp_bad, 0xffffb00000001100ull);
    kdh_kd_get_context_slice(f->kd, &req, 0, 0x98, rsp, sizeof rsp, count_done, f);
    const uint8_t *copies[] = {rsp_bad, rsp_ok, rsp_ok};
    for (int i = 0; i < 3; i++) {
        m = host_request(f, &d, &dl);
        assert_int_equal(m.api, 0x315F);
        assert_int_equal(m.u.context_ex.offset, 0x98);
        m.u.context_ex.bytes_copied = 8;
        assert_int_equal(f->done_calls, 1);
        reply(f, m, 0, copies[i], 8);
    }
    assert_int_equal(f->done_calls, 2);
    assert_int_equal(req.status, KDH_OK);
    assert_memory_equal(rsp, rsp_ok, 8);
    assert_int_equal(kdh_kd_stats(f->kd)->verified_reads, 2);
    assert_int_equal(kdh_kd_stats(f->kd)->read_mismatches, 2);

    /* copies that never agree */
    kdh_kd_read_virtual(f->kd, &req, 0x4000, buf, sizeof buf, count_done, f);
    for (int i = 0; i < 5; i++) {
        m = host_request(f, &d, &dl);
        m.u.mem.actual_count = 64;
        b[0] = (uint8_t)i;
        reply(f, m, 0, b, 64);
    }
    assert_int_equal(f->done_calls, 3);
    assert_int_equal(req.status, KDH_ECORRUPT);
    assert_non_null(strstr(req.err.msg, "disagreed"));
    assert_true(host_wrote_nothing_more(f));
}

/* A context set on a noisy line is read back, and set again when the target holds other bytes
 * (a request damaged by two errors that cancel in its checksum is taken by the target). */
static void test_noisy_line_set_read_back(void **state)
{
    fake_t *f = *state;
    for (int i = 0; i < 70; i++)
        target_send_damaged(f);
    uint8_t newrip[8], damaged[8];
    kdh_put_u64(newrip, 0xfffff80000001001ull);
    kdh_put_u64(damaged, 0xfffff80000001101ull);
    kdh_kd_req_t req;
    const uint8_t *d;
    size_t dl;
    kdh_kd_set_context_slice(f->kd, &req, 0, 0xF8, newrip, 8, count_done, f);
    for (int round = 0; round < 2; round++) {
        kdh_wire_manip_t m = host_request(f, &d, &dl);
        assert_int_equal(m.api, 0x3160);
        assert_memory_equal(d, newrip, 8);
        m.u.context_ex.bytes_copied = 8;
        reply(f, m, 0, NULL, 0);
        m = host_request(f, &d, &dl); /* read back */
        assert_int_equal(m.api, 0x315F);
        assert_int_equal(m.u.context_ex.offset, 0xF8);
        assert_int_equal(m.u.context_ex.byte_count, 8);
        m.u.context_ex.bytes_copied = 8;
        assert_int_equal(f->done_calls, 0);
        reply(f, m, 0, round == 0 ? damaged : newrip, 8);
    }
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(req.status, KDH_OK);
    assert_int_equal(kdh_kd_stats(f->kd)->verified_sets, 1);
    assert_int_equal(kdh_kd_stats(f->kd)->set_mismatches, 1);
    assert_true(host_wrote_nothing_more(f));
}

/* A state change with impossible fields (current processor 3 of 1) is not taken: the session
 * sends RESET so that the target reports its stop again, and takes that report. */
static void test_damaged_stop_asked_again(void **state)
{
    fake_t *f = *state;
    kdh_kd_req_t req;
    kdh_kd_continue(f->kd, &req, KDH_WIRE_DBG_CONTINUE, 0, 0, count_done, f);
    const uint8_t *d;
    size_t dl;
    host_request(f, &d, &dl);
    assert_false(kdh_kd_stopped(f->kd));
    kdh_wire_state_change_t sc;
    memset(&sc, 0, sizeof sc);
    sc.new_state = KDH_WIRE_STATE_EXCEPTION;
    sc.number_processors = 1;
    sc.processor = 3;
    sc.program_counter = 0xfffff80000001000ull;
    sc.u.exception.code = KDH_WIRE_STATUS_BREAKPOINT;
    uint8_t buf[KDH_WIRE_STATE_CHANGE_SIZE + 4] = {0};
    kdh_wire_state_change_encode(&sc, KDH_WIRE_ARCH_AMD64, buf);
    target_send(f, KDH_WIRE_TYPE_STATE_CHANGE64, buf, sizeof buf, NULL, 0);
    assert_false(kdh_kd_stopped(f->kd));
    assert_int_equal(f->stops, 1);
    assert_int_equal(kdh_kd_stats(f->kd)->damaged_stops, 1);
    kdh_wire_packet_t p;
    uint8_t pb[64];
    int reset = 0;
    while (host_packet(f, &p, pb))
        reset |= p.is_control && p.type == KDH_WIRE_TYPE_RESET;
    assert_true(reset);
    uint8_t echo[16];
    kdh_wire_encode_control(echo, sizeof echo, KDH_WIRE_TYPE_RESET, 0);
    kdh_kd_feed(f->kd, echo, sizeof echo);
    f->tgt_id = KDH_WIRE_INITIAL_ID;
    stop_target(f); /* the same stop, reported again intact */
    assert_true(kdh_kd_stopped(f->kd));
    assert_int_equal(f->stops, 2);
}

static void test_clean_line_reads_once(void **state)
{
    fake_t *f = *state;
    uint8_t buf[64], a[64];
    memset(a, 0x22, sizeof a);
    kdh_kd_req_t req;
    const uint8_t *d;
    size_t dl;
    for (int i = 0; i < 3; i++) /* 3 damaged frames of 70: under one in ten */
        target_send_damaged(f);
    for (int i = 0; i < 70; i++) {
        kdh_kd_read_virtual(f->kd, &req, 0x5000, buf, sizeof buf, count_done, f);
        kdh_wire_manip_t m = host_request(f, &d, &dl);
        m.u.mem.actual_count = 64;
        reply(f, m, 0, a, 64);
        assert_int_equal(req.status, KDH_OK);
    }
    assert_int_equal(kdh_kd_stats(f->kd)->verified_reads, 0);
    assert_true(host_wrote_nothing_more(f));
}

static void test_print_prompt_fileio(void **state)
{
    fake_t *f = *state;
    kdh_wire_debug_io_t io = {.api = KDH_WIRE_API_PRINT_STRING, .length = 5};
    uint8_t hdr[KDH_WIRE_DEBUG_IO_SIZE];
    kdh_wire_debug_io_encode(&io, hdr);
    target_send(f, KDH_WIRE_TYPE_DEBUG_IO, hdr, sizeof hdr, (const uint8_t *)"hello", 5);
    assert_string_equal(f->print, "hello");

    io.api = KDH_WIRE_API_GET_STRING;
    io.length = 2;
    kdh_wire_debug_io_encode(&io, hdr);
    target_send(f, KDH_WIRE_TYPE_DEBUG_IO, hdr, sizeof hdr, (const uint8_t *)"> ", 2);
    kdh_wire_packet_t p;
    uint8_t buf[KDH_WIRE_FRAME_MAX];
    do
        assert_true(host_packet(f, &p, buf));
    while (p.is_control);
    assert_int_equal(p.type, KDH_WIRE_TYPE_DEBUG_IO);
    assert_int_equal(kdh_get_u32(p.payload), 0x3231);
    assert_int_equal(kdh_get_u32(p.payload + 0xC), 0); /* empty answer */
    uint8_t ack[16];
    kdh_wire_encode_control(ack, sizeof ack, KDH_WIRE_TYPE_ACKNOWLEDGE, p.id);
    kdh_kd_feed(f->kd, ack, sizeof ack);

    uint8_t fio[KDH_WIRE_FILE_IO_SIZE] = {0};
    kdh_put_u32(fio, 0x3430);
    target_send(f, KDH_WIRE_TYPE_FILE_IO, fio, sizeof fio, NULL, 0);
    do
        assert_true(host_packet(f, &p, buf));
    while (p.is_control);
    assert_int_equal(p.type, KDH_WIRE_TYPE_FILE_IO);
    assert_int_equal(kdh_get_u32(p.payload + 4), 0xC000000F);
}

static void test_slice_bounds(void **state)
{
    fake_t *f = *state;
    uint8_t b[16];
    kdh_kd_req_t req;
    kdh_kd_get_context_slice(f->kd, &req, 0, 0x4C8, b, 16, count_done, f);
    assert_int_equal(req.status, KDH_EINVAL);
    assert_true(host_wrote_nothing_more(f));
}


static void test_set_ex_needs_read_first(void **state)
{
    fake_t *f = *state;
    uint8_t newrip[8];
    kdh_put_u64(newrip, 0xfffff80000001001ull);
    kdh_kd_req_t req;
    kdh_kd_set_context_slice(f->kd, &req, 0, 0xF8, newrip, 8, count_done, f);
    const uint8_t *d;
    size_t dl;
    kdh_wire_manip_t m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3160);
    reply(f, m, KDH_WIRE_STATUS_UNSUCCESSFUL, NULL, 0); /* nothing was read in this stop */
    /* The session reads the slice (satisfying the target), then sets it again. */
    m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x315F);
    assert_int_equal(m.u.context_ex.offset, 0xF8);
    assert_int_equal(m.u.context_ex.byte_count, 8);
    uint8_t oldrip[8];
    kdh_put_u64(oldrip, 0xfffff80000001000ull);
    m.u.context_ex.bytes_copied = 8;
    reply(f, m, 0, oldrip, 8);
    m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3160);
    assert_memory_equal(d, newrip, 8);
    reply(f, m, 0, NULL, 0);
    assert_int_equal(req.status, KDH_OK);
    assert_false(kdh_kd_context_ex_unsupported(f->kd));
    assert_true(host_wrote_nothing_more(f));
    /* The next stop: a set after a read goes straight through. */
    uint8_t sl[16];
    kdh_kd_get_context_slice(f->kd, &req, 0, 0x98, sl, 16, count_done, f);
    m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x315F);
    m.u.context_ex.bytes_copied = 16;
    reply(f, m, 0, sl, 16);
    kdh_kd_set_context_slice(f->kd, &req, 0, 0xF8, newrip, 8, count_done, f);
    m = host_request(f, &d, &dl);
    assert_int_equal(m.api, 0x3160);
    /* Answer it: a request still queued when the test returns would be failed by the teardown
     * through a req that no longer exists. */
    reply(f, m, 0, NULL, 0);
    assert_int_equal(req.status, KDH_OK);
}

static void test_stale_reply_after_reset(void **state)
{
    (void)state;
    static fake_t g;
    memset(&g, 0, sizeof g);
    kdh_kd_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.link.write = fake_write;
    cfg.link.now = fake_now;
    cfg.link_ctx = &g;
    cfg.on_state_change = on_sc;
    cfg.ctx = &g;
    assert_int_equal(kdh_kd_new(&g.kd, &cfg, NULL), KDH_OK);
    assert_int_equal(kdh_kd_connect(g.kd, 0, NULL), KDH_OK);
    kdh_wire_packet_t p;
    uint8_t buf[KDH_WIRE_FRAME_MAX];
    assert_true(host_packet(&g, &p, buf));
    assert_int_equal(p.type, KDH_WIRE_TYPE_RESET);
    uint8_t echo[16];
    kdh_wire_encode_control(echo, sizeof echo, KDH_WIRE_TYPE_RESET, 0);
    kdh_kd_feed(g.kd, echo, sizeof echo);
    /* The target's previous host vanished before ACKing a ReadVirtualMemory reply: the target
     * sends that reply again instead of a state change. */
    g.tgt_id = KDH_WIRE_INITIAL_ID;
    kdh_wire_manip_t m;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_READ_VIRTUAL_MEMORY;
    reply(&g, m, 0, NULL, 0);
    assert_int_equal(g.stops, 0);
    /* The session answers with another RESET; the target then reports its stop again. */
    int saw_reset = 0;
    while (host_packet(&g, &p, buf))
        saw_reset |= p.is_control && p.type == KDH_WIRE_TYPE_RESET;
    assert_true(saw_reset);
    kdh_kd_feed(g.kd, echo, sizeof echo);
    g.tgt_id = KDH_WIRE_INITIAL_ID;
    stop_target(&g);
    assert_int_equal(g.stops, 1);
    assert_true(kdh_kd_stopped(g.kd));
    assert_int_equal(kdh_kd_stats(g.kd)->stale_reply_resyncs, 1);
    kdh_kd_free(g.kd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_continue_not_sent_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_split_and_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_ex_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_ex_supported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continue_then_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_timeout_and_stray, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_prompt_fileio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slice_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_ex_needs_read_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_reply_asked_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_reply_asked_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noisy_line_reads_verified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noisy_line_set_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_stop_asked_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_line_reads_once, setup, teardown),
        cmocka_unit_test(test_stale_reply_after_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
