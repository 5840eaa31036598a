/* Framing and incremental decoder: packet bytes written out by hand (kd-protocol.md 7), every
 * malformed-frame event, and chunking invariance over a mixed stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <string.h>

#include "kdh/wire.h"

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct rec {
    int kind;
    size_t count;
    int is_control;
    uint16_t type, byte_count;
    uint32_t id, checksum;
    size_t payload_len;
    uint32_t payload_sum;
} rec_t;

#define MAXREC 256

typedef struct log {
    rec_t r[MAXREC];
    int n;
} log_t;

static void record(log_t *lg, const kdh_wire_event_t *ev)
{
    assert_true(lg->n < MAXREC);
    rec_t *r = &lg->r[lg->n++];
    memset(r, 0, sizeof(*r));
    r->kind = ev->kind;
    r->count = ev->count;
    r->is_control = ev->packet.is_control;
    r->type = ev->packet.type;
    r->byte_count = ev->packet.byte_count;
    r->id = ev->packet.id;
    r->checksum = ev->packet.checksum;
    r->payload_len = ev->packet.payload_len;
    if (ev->packet.payload)
        r->payload_sum = kdh_wire_checksum(ev->packet.payload, ev->packet.payload_len);
}

/* Feeds buf in chunks of the given sizes (cycled; 0 = whole buffer), then flushes. */
static void decode_chunked(const uint8_t *buf, size_t len, const size_t *chunks, size_t nchunks,
                           int flush, log_t *lg)
{
    kdh_wire_decoder_t d;
    kdh_wire_decoder_init(&d);
    memset(lg, 0, sizeof(*lg));
    size_t off = 0, ci = 0;
    while (off < len) {
        size_t c = nchunks ? chunks[ci++ % nchunks] : len;
        if (c == 0 || c > len - off)
            c = len - off;
        const uint8_t *p = buf + off;
        size_t left = c;
        while (left) {
            kdh_wire_event_t ev;
            size_t n = kdh_wire_decoder_feed(&d, p, left, &ev);
            assert_true(n <= left);
            if (ev.kind != KDH_WIRE_EV_NONE)
                record(lg, &ev);
            else
                assert_true(n == left); /* no event means all input consumed */
            p += n;
            left -= n;
        }
        off += c;
    }
    if (flush) {
        kdh_wire_event_t ev;
        while (kdh_wire_decoder_flush(&d, &ev))
            record(lg, &ev);
    }
}

static void decode_whole(const uint8_t *buf, size_t len, log_t *lg)
{
    decode_chunked(buf, len, NULL, 0, 1, lg);
}

/* The GetVersion request of kd-protocol.md 7, byte for byte. */
static const uint8_t getversion_pkt[] = {
    0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x00, 0x00, 0x00, 0x80, 0x80, 0x77, 0x00, 0x00, 0x00,
    0x46, 0x31, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0xAA};

/* ---- encoding ---------------------------------------------------------------------------- */

static void test_checksum_vector(void **state)
{
    (void)state;
    /* "KD" 0x4B + 0x44 = 0x8F; + 0xFF*3 = 0x8F + 0x2FD = 0x38C; + 0x01 = 0x38D. */
    const uint8_t v[] = {0x4B, 0x44, 0xFF, 0xFF, 0xFF, 0x01};
    assert_int_equal(kdh_wire_checksum(v, sizeof v), 0x38D);
    assert_int_equal(kdh_wire_checksum(v, 0), 0);
    /* 4000 bytes of 0xFF: 4000 * 255 = 1,020,000 = 0xF9060 (no 16-bit truncation). */
    static uint8_t big[4000];
    memset(big, 0xFF, sizeof big);
    assert_int_equal(kdh_wire_checksum(big, sizeof big), 0xF9060);
}

static void test_getversion_bytes(void **state)
{
    (void)state;
    uint8_t manip[KDH_WIRE_MANIP_SIZE];
    kdh_wire_manip_t m;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_GET_VERSION;
    kdh_wire_manip_encode(&m, KDH_WIRE_ARCH_AMD64, manip);
    uint8_t out[KDH_WIRE_FRAME_MAX];
    int n = kdh_wire_encode_data(out, sizeof out, KDH_WIRE_TYPE_STATE_MANIPULATE,
                                 KDH_WIRE_INITIAL_ID, manip, sizeof manip);
    assert_int_equal(n, (int)sizeof getversion_pkt);
    assert_memory_equal(out, getversion_pkt, sizeof getversion_pkt);
}

/* Headers of the other section-7 requests: checksums 0x358, 0x3A1 and 0x71 come from the
 * reference (computed there with a script), ids as listed. */
static void test_section7_headers(void **state)
{
    (void)state;
    uint8_t manip[KDH_WIRE_MANIP_SIZE], out[KDH_WIRE_FRAME_MAX];
    kdh_wire_manip_t m;

    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_READ_VIRTUAL_MEMORY;
    m.u.mem.address = 0xFFFFF80000000000ull;
    m.u.mem.transfer_count = 0x100;
    kdh_wire_manip_encode(&m, KDH_WIRE_ARCH_AMD64, manip);
    assert_int_equal(kdh_wire_encode_data(out, sizeof out, 2, 0x80800001u, manip, sizeof manip),
                     16 + 0x38 + 1);
    const uint8_t rd[] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x00,
                          0x01, 0x00, 0x80, 0x80, 0x58, 0x03, 0x00, 0x00};
    assert_memory_equal(out, rd, 16);
    /* address at packet offset 0x10, count at 0x18 */
    const uint8_t rd_u[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0xF8, 0xFF, 0xFF, 0x00, 0x01, 0, 0};
    assert_memory_equal(out + 16 + 0x10, rd_u, sizeof rd_u);

    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_WRITE_BREAKPOINT;
    m.u.write_bp.address = 0xFFFFF80000001234ull;
    kdh_wire_manip_encode(&m, KDH_WIRE_ARCH_AMD64, manip);
    kdh_wire_encode_data(out, sizeof out, 2, 0x80800000u, manip, sizeof manip);
    const uint8_t bp[] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x00,
                          0x00, 0x00, 0x80, 0x80, 0xA1, 0x03, 0x00, 0x00};
    assert_memory_equal(out, bp, 16);

    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_CONTINUE2;
    m.u.cont2.status = KDH_WIRE_DBG_CONTINUE;
    m.u.cont2.symbol_start = 1;
    kdh_wire_manip_encode(&m, KDH_WIRE_ARCH_AMD64, manip);
    kdh_wire_encode_data(out, sizeof out, 2, 0x80800001u, manip, sizeof manip);
    const uint8_t c2[] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x00,
                          0x01, 0x00, 0x80, 0x80, 0x71, 0x00, 0x00, 0x00};
    assert_memory_equal(out, c2, 16);
    assert_int_equal(out[16 + 0x10], 0x02);
    assert_int_equal(out[16 + 0x12], 0x01);
    assert_int_equal(out[16 + 0x20], 0x01);
    assert_int_equal(out[16 + 0x38], 0xAA);
}

static void test_control_bytes(void **state)
{
    (void)state;
    uint8_t out[16];
    const uint8_t reset[] = {0x69, 0x69, 0x69, 0x69, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(kdh_wire_encode_control(out, sizeof out, KDH_WIRE_TYPE_RESET, 0), 16);
    assert_memory_equal(out, reset, 16);
    const uint8_t ack[] = {0x69, 0x69, 0x69, 0x69, 0x04, 0, 0, 0, 0, 0, 0x80, 0x80, 0, 0, 0, 0};
    kdh_wire_encode_control(out, sizeof out, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_memory_equal(out, ack, 16);
    assert_int_equal(kdh_wire_encode_control(out, 15, KDH_WIRE_TYPE_RESET, 0), KDH_ERANGE);
}

static void test_encode_limits(void **state)
{
    (void)state;
    static uint8_t payload[4001], out[KDH_WIRE_FRAME_MAX + 8];
    assert_int_equal(kdh_wire_encode_data(out, sizeof out, 2, 0, payload, 4000), 4017);
    assert_int_equal(out[4016], 0xAA);
    assert_int_equal(kdh_wire_encode_data(out, sizeof out, 2, 0, payload, 4001), KDH_ERANGE);
    assert_int_equal(kdh_wire_encode_data2(out, sizeof out, 2, 0, payload, 3000, payload, 1001),
                     KDH_ERANGE);
    assert_int_equal(kdh_wire_encode_data(out, 4016, 2, 0, payload, 4000), KDH_ERANGE);
    /* empty data packet: header + trailer */
    assert_int_equal(kdh_wire_encode_data(out, sizeof out, 3, 5, NULL, 0), 17);
    assert_int_equal(out[16], 0xAA);
}

/* ---- decoding ---------------------------------------------------------------------------- */

static void test_decode_roundtrip(void **state)
{
    (void)state;
    uint8_t stream[2 * KDH_WIRE_FRAME_MAX];
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    size_t len = 0;
    len += (size_t)kdh_wire_encode_data(stream, sizeof stream, KDH_WIRE_TYPE_STATE_CHANGE64,
                                        0x80800800u, payload, sizeof payload);
    len += (size_t)kdh_wire_encode_control(stream + len, sizeof stream - len,
                                           KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800001u);
    len += (size_t)kdh_wire_encode_control(stream + len, sizeof stream - len,
                                           KDH_WIRE_TYPE_RESEND, 0);
    len += (size_t)kdh_wire_encode_control(stream + len, sizeof stream - len,
                                           KDH_WIRE_TYPE_RESET, 0);
    len += (size_t)kdh_wire_encode_data(stream + len, sizeof stream - len, KDH_WIRE_TYPE_DEBUG_IO,
                                        0x80800000u, NULL, 0);
    assert_int_equal(len, 317 + 48 + 17);

    kdh_wire_decoder_t d;
    kdh_wire_decoder_init(&d);
    kdh_wire_event_t ev;
    const uint8_t *p = stream;
    size_t left = len;
    size_t n = kdh_wire_decoder_feed(&d, p, left, &ev);
    assert_int_equal(n, 317);
    assert_int_equal(ev.kind, KDH_WIRE_EV_PACKET);
    assert_false(ev.packet.is_control);
    assert_int_equal(ev.packet.type, 7);
    assert_int_equal(ev.packet.id, 0x80800800u);
    assert_int_equal(ev.packet.payload_len, 300);
    assert_memory_equal(ev.packet.payload, payload, 300);
    p += n, left -= n;
    const uint16_t ctl[] = {4, 5, 6};
    const uint32_t ctl_id[] = {0x80800001u, 0, 0};
    for (int i = 0; i < 3; i++) {
        n = kdh_wire_decoder_feed(&d, p, left, &ev);
        assert_int_equal(n, 16);
        assert_int_equal(ev.kind, KDH_WIRE_EV_PACKET);
        assert_true(ev.packet.is_control);
        assert_int_equal(ev.packet.type, ctl[i]);
        assert_int_equal(ev.packet.id, ctl_id[i]);
        assert_int_equal(ev.packet.payload_len, 0);
        p += n, left -= n;
    }
    n = kdh_wire_decoder_feed(&d, p, left, &ev);
    assert_int_equal(n, 17);
    assert_int_equal(ev.kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(ev.packet.type, 3);
    assert_int_equal(ev.packet.payload_len, 0);
    assert_false(kdh_wire_decoder_busy(&d));
    assert_int_equal(kdh_wire_decoder_flush(&d, &ev), 0);
}

static void test_decode_getversion_reference(void **state)
{
    (void)state;
    log_t lg;
    decode_whole(getversion_pkt, sizeof getversion_pkt, &lg);
    assert_int_equal(lg.n, 1);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(lg.r[0].type, 2);
    assert_int_equal(lg.r[0].id, 0x80800000u);
    assert_int_equal(lg.r[0].payload_len, 0x38);
    assert_int_equal(lg.r[0].payload_sum, 0x77);
}

static void test_bad_checksum(void **state)
{
    (void)state;
    uint8_t s[sizeof getversion_pkt * 2];
    memcpy(s, getversion_pkt, sizeof getversion_pkt);
    memcpy(s + sizeof getversion_pkt, getversion_pkt, sizeof getversion_pkt);
    s[16 + 0x20] ^= 0x01; /* corrupt one payload byte of the first copy */
    log_t lg;
    decode_whole(s, sizeof s, &lg);
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_BAD_CHECKSUM);
    assert_int_equal(lg.r[0].count, 73);
    assert_int_equal(lg.r[0].id, 0x80800000u);
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_PACKET); /* resynchronised */
}

static void test_missing_trailer(void **state)
{
    (void)state;
    /* First copy lacks its 0xAA; the next leader follows at once and must still decode. */
    uint8_t s[sizeof getversion_pkt * 2];
    memcpy(s, getversion_pkt, sizeof getversion_pkt - 1);
    memcpy(s + sizeof getversion_pkt - 1, getversion_pkt, sizeof getversion_pkt);
    size_t len = 2 * sizeof getversion_pkt - 1;
    log_t lg;
    decode_whole(s, len, &lg);
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_MISSING_TRAILER);
    assert_int_equal(lg.r[0].count, 72);
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(lg.r[1].payload_sum, 0x77);

    /* A wrong trailer byte that is not a leader byte becomes one byte of garbage. */
    uint8_t t[sizeof getversion_pkt];
    memcpy(t, getversion_pkt, sizeof t);
    t[sizeof t - 1] = 0x55;
    decode_whole(t, sizeof t, &lg);
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_MISSING_TRAILER);
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_GARBAGE);
    assert_int_equal(lg.r[1].count, 1);
}

static void test_oversize(void **state)
{
    (void)state;
    /* ByteCount 4001 (0x0FA1) */
    uint8_t s[16 + sizeof getversion_pkt] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0xA1, 0x0F,
                                             0x00, 0x00, 0x80, 0x80, 0x00, 0x00, 0x00, 0x00};
    memcpy(s + 16, getversion_pkt, sizeof getversion_pkt);
    log_t lg;
    decode_whole(s, sizeof s, &lg);
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_OVERSIZE);
    assert_int_equal(lg.r[0].byte_count, 4001);
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_PACKET);

    /* 4000 exactly is accepted */
    static uint8_t big[KDH_WIRE_FRAME_MAX], pl[4000];
    memset(pl, 0xFF, sizeof pl);
    assert_int_equal(kdh_wire_encode_data(big, sizeof big, 2, 0x80800000u, pl, 4000), 4017);
    assert_int_equal(kdh_get_u32(big + 12), 0xF9060);
    decode_whole(big, 4017, &lg);
    assert_int_equal(lg.n, 1);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(lg.r[0].payload_len, 4000);
}

static void test_truncated(void **state)
{
    (void)state;
    log_t lg;
    /* Header cut after 6 bytes by a new leader: TRUNCATED (6 bytes), then the full packet. */
    uint8_t s[6 + sizeof getversion_pkt];
    memcpy(s, getversion_pkt, 6);
    memcpy(s + 6, getversion_pkt, sizeof getversion_pkt);
    decode_whole(s, sizeof s, &lg);
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_TRUNCATED);
    assert_int_equal(lg.r[0].count, 6);
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(lg.r[1].payload_sum, 0x77);

    /* Payload cut, then flush (inter-byte timeout). */
    decode_whole(getversion_pkt, 40, &lg);
    assert_int_equal(lg.n, 1);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_TRUNCATED);
    assert_int_equal(lg.r[0].count, 40);
    assert_int_equal(lg.r[0].type, 2);
    assert_int_equal(lg.r[0].byte_count, 0x38);

    /* Without a flush nothing is reported and the decoder is busy. */
    kdh_wire_decoder_t d;
    kdh_wire_decoder_init(&d);
    kdh_wire_event_t ev;
    assert_int_equal(kdh_wire_decoder_feed(&d, getversion_pkt, 40, &ev), 40);
    assert_int_equal(ev.kind, KDH_WIRE_EV_NONE);
    assert_true(kdh_wire_decoder_busy(&d));
    assert_int_equal(kdh_wire_decoder_flush(&d, &ev), 1);
    assert_int_equal(ev.kind, KDH_WIRE_EV_TRUNCATED);
    assert_false(kdh_wire_decoder_busy(&d));
    assert_int_equal(kdh_wire_decoder_flush(&d, &ev), 0);

    /* A control leader inside a data header also cuts it. */
    uint8_t c[8 + 16] = {0x30, 0x30, 0x30, 0x30, 0x07, 0x00, 0xF4, 0x00};
    kdh_wire_encode_control(c + 8, 16, KDH_WIRE_TYPE_RESET, 0);
    decode_whole(c, sizeof c, &lg);
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_TRUNCATED);
    assert_int_equal(lg.r[0].count, 8);
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(lg.r[1].type, KDH_WIRE_TYPE_RESET);
}

static void test_garbage_and_breakin(void **state)
{
    (void)state;
    log_t lg;
    /* "xy00" + 'b' + "000" + RESET(id 0) + "iz" + 'b' + 'b' */
    uint8_t s[64];
    size_t n = 0;
    s[n++] = 'x';
    s[n++] = 'y';
    s[n++] = 0x30;
    s[n++] = 0x30;
    s[n++] = 'b';
    s[n++] = 0x30;
    s[n++] = 0x30;
    s[n++] = 0x30;
    n += (size_t)kdh_wire_encode_control(s + n, sizeof s - n, KDH_WIRE_TYPE_RESET, 0);
    s[n++] = 'i';
    s[n++] = 'z';
    s[n++] = 'b';
    s[n++] = 'b';
    decode_whole(s, n, &lg);
    assert_int_equal(lg.n, 7);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_GARBAGE);
    assert_int_equal(lg.r[0].count, 4); /* x y 0 0 */
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_BREAKIN);
    assert_int_equal(lg.r[2].kind, KDH_WIRE_EV_GARBAGE);
    assert_int_equal(lg.r[2].count, 3); /* 0 0 0 before "iiii" */
    assert_int_equal(lg.r[3].kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(lg.r[3].type, KDH_WIRE_TYPE_RESET);
    assert_int_equal(lg.r[4].kind, KDH_WIRE_EV_GARBAGE);
    assert_int_equal(lg.r[4].count, 2); /* i z */
    assert_int_equal(lg.r[5].kind, KDH_WIRE_EV_BREAKIN);
    assert_int_equal(lg.r[6].kind, KDH_WIRE_EV_BREAKIN); /* each lone 'b' counts */
}

static void test_breakin_pair(void **state)
{
    (void)state;
    log_t lg;
    const uint8_t s[] = {'b', 'b', 0x01};
    decode_whole(s, sizeof s, &lg);
    assert_int_equal(lg.n, 3);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_BREAKIN);
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_BREAKIN);
    assert_int_equal(lg.r[2].kind, KDH_WIRE_EV_GARBAGE); /* reported by the flush */
    assert_int_equal(lg.r[2].count, 1);
}

static void test_leader_slide_and_garbage_cap(void **state)
{
    (void)state;
    log_t lg;
    /* Six 0x30 then the rest of a valid packet: the leader is the last four. */
    uint8_t s[2 + sizeof getversion_pkt];
    s[0] = s[1] = 0x30;
    memcpy(s + 2, getversion_pkt, sizeof getversion_pkt);
    decode_whole(s, sizeof s, &lg);
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(lg.r[0].payload_sum, 0x77);
    assert_int_equal(lg.r[1].kind, KDH_WIRE_EV_GARBAGE); /* the 2 slid bytes, at flush */
    assert_int_equal(lg.r[1].count, 2);

    /* 2500 noise bytes: reported as 1024 + 1024 + 452. */
    static uint8_t noise[2500];
    memset(noise, 0x11, sizeof noise);
    decode_whole(noise, sizeof noise, &lg);
    assert_int_equal(lg.n, 3);
    assert_int_equal(lg.r[0].count, 1024);
    assert_int_equal(lg.r[1].count, 1024);
    assert_int_equal(lg.r[2].count, 452);
}

static void test_payload_may_contain_leaders(void **state)
{
    (void)state;
    uint8_t pl[40], out[128];
    memset(pl, 0x30, 20);
    memset(pl + 20, 0x69, 20);
    int n = kdh_wire_encode_data(out, sizeof out, 2, 0x80800001u, pl, sizeof pl);
    log_t lg;
    decode_whole(out, (size_t)n, &lg);
    assert_int_equal(lg.n, 1);
    assert_int_equal(lg.r[0].kind, KDH_WIRE_EV_PACKET);
    assert_int_equal(lg.r[0].payload_len, 40);
}

/* ---- chunking invariance ------------------------------------------------------------------ */

static size_t build_mixed_stream(uint8_t *s, size_t cap)
{
    size_t n = 0;
    uint8_t pl[1500];
    for (size_t i = 0; i < sizeof pl; i++)
        pl[i] = (uint8_t)((i * 131) ^ (i >> 3));
    pl[10] = pl[11] = pl[12] = pl[13] = 0x30; /* leader-looking bytes inside a payload */
    for (int round = 0; round < 6; round++) {
        s[n++] = (uint8_t)(0x40 + round); /* garbage */
        s[n++] = 0x30;
        s[n++] = 'b';
        n += (size_t)kdh_wire_encode_control(s + n, cap - n, KDH_WIRE_TYPE_ACKNOWLEDGE,
                                             0x80800000u + (uint32_t)round);
        int w = kdh_wire_encode_data(s + n, cap - n, 7, 0x80800000u + (uint32_t)(round & 1), pl,
                                     (size_t)(100 + round * 250));
        assert_true(w > 0);
        if (round == 2)
            s[n + 40] ^= 0xFF; /* bad checksum */
        if (round == 3)
            s[n + (size_t)w - 1] = 0x00; /* missing trailer */
        n += (size_t)w;
        if (round == 4) { /* truncated header, then oversize header */
            memcpy(s + n, getversion_pkt, 9);
            n += 9;
            const uint8_t ov[] = {0x30, 0x30, 0x30, 0x30, 2, 0, 0xFF, 0xFF, 0, 0, 0x80, 0x80, 0, 0, 0, 0};
            memcpy(s + n, ov, sizeof ov);
            n += sizeof ov;
        }
        memcpy(s + n, getversion_pkt, sizeof getversion_pkt);
        n += sizeof getversion_pkt;
    }
    memcpy(s + n, getversion_pkt, 30); /* ends mid-packet */
    n += 30;
    assert_true(n <= cap);
    return n;
}

static void assert_same_log(const log_t *a, const log_t *b)
{
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++)
        assert_memory_equal(&a->r[i], &b->r[i], sizeof(rec_t));
}

static void test_chunking_invariance(void **state)
{
    (void)state;
    static uint8_t s[32768];
    size_t len = build_mixed_stream(s, sizeof s);
    static log_t whole, one, rnd;
    decode_whole(s, len, &whole);
    /* Expected kinds written out by hand for the stream built above. */
    const int K_P = KDH_WIRE_EV_PACKET, K_G = KDH_WIRE_EV_GARBAGE, K_B = KDH_WIRE_EV_BREAKIN;
    const int expect[] = {
        K_G, K_B, K_P, K_P, K_P,                                  /* round 0 */
        K_G, K_B, K_P, K_P, K_P,                                  /* round 1 */
        K_G, K_B, K_P, KDH_WIRE_EV_BAD_CHECKSUM, K_P,             /* round 2 */
        K_G, K_B, K_P, KDH_WIRE_EV_MISSING_TRAILER, K_G, K_P,     /* round 3: the 0x00 is garbage */
        K_G, K_B, K_P, K_P, KDH_WIRE_EV_TRUNCATED, KDH_WIRE_EV_OVERSIZE, K_P, /* round 4 */
        K_G, K_B, K_P, K_P, K_P,                                  /* round 5 */
        KDH_WIRE_EV_TRUNCATED};
    assert_int_equal(whole.n, (int)KDH_ARRAY_LEN(expect));
    for (int i = 0; i < whole.n; i++)
        assert_int_equal(whole.r[i].kind, expect[i]);
    assert_int_equal(whole.r[19].count, 1); /* the byte in place of round 3's trailer */
    assert_int_equal(whole.r[21].count, 2); /* round 4: 0x44, 0x30 before the 'b' */
    assert_int_equal(whole.r[25].count, 9); /* leader + 5 header bytes cut by a new leader */
    assert_int_equal(whole.r[26].byte_count, 0xFFFF);

    const size_t ones[] = {1};
    decode_chunked(s, len, ones, 1, 1, &one);
    assert_same_log(&whole, &one);
    srand(1234);
    for (int trial = 0; trial < 50; trial++) {
        size_t sizes[37];
        for (size_t i = 0; i < KDH_ARRAY_LEN(sizes); i++)
            sizes[i] = 1 + (size_t)rand() % (trial < 25 ? 20 : 5000);
        decode_chunked(s, len, sizes, KDH_ARRAY_LEN(sizes), 1, &rnd);
        assert_same_log(&whole, &rnd);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checksum_vector),
        cmocka_unit_test(test_getversion_bytes),
        cmocka_unit_test(test_section7_headers),
        cmocka_unit_test(test_control_bytes),
        cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_decode_roundtrip),
        cmocka_unit_test(test_decode_getversion_reference),
        cmocka_unit_test(test_bad_checksum),
        cmocka_unit_test(test_missing_trailer),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_garbage_and_breakin),
        cmocka_unit_test(test_breakin_pair),
        cmocka_unit_test(test_leader_slide_and_garbage_cap),
        cmocka_unit_test(test_payload_may_contain_leaders),
        cmocka_unit_test(test_chunking_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
