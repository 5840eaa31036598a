/* libFuzzer harness for the KD frame decoder and message parsers. The first byte seeds the
 * chunk sizes; the stream is decoded in those chunks and again one byte at a time, and both
 * event sequences must match. Every packet must satisfy the framing invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/wire.h"

#define MAXEV 4096

typedef struct rec {
    int kind;
    size_t count;
    uint16_t type, byte_count;
    uint32_t id;
    size_t payload_len;
    uint32_t payload_sum;
} rec_t;

static rec_t ev_a[MAXEV], ev_b[MAXEV];

static void check_and_parse(const kdh_wire_event_t *ev)
{
    if (ev->kind != KDH_WIRE_EV_PACKET)
        return;
    const kdh_wire_packet_t *p = &ev->packet;
    if (p->is_control) {
        if (p->payload || p->payload_len)
            abort();
        return;
    }
    if (p->payload_len != p->byte_count || p->byte_count > KDH_WIRE_PACKET_MAX)
        abort();
    if (p->payload_len && kdh_wire_checksum(p->payload, p->payload_len) != p->checksum)
        abort();
    /* Parsers must reject or accept without reading outside the payload (ASan checks). */
    kdh_wire_manip_t m;
    kdh_wire_state_change_t sc;
    kdh_wire_debug_io_t dio;
    kdh_wire_file_io_t fio;
    const uint8_t *data;
    size_t dlen;
    if (kdh_wire_manip_decode(p->payload, p->payload_len, KDH_WIRE_ARCH_AMD64, &m, &data, &dlen,
                              NULL) == KDH_OK && dlen && data[dlen - 1] == 0x5A)
        m.api ^= 1; /* touch the data to prove it is inside the buffer */
    if (kdh_wire_state_change_decode(p->payload, p->payload_len, KDH_WIRE_ARCH_X86, &sc, NULL) ==
            KDH_OK && sc.path_len) {
        volatile uint8_t last = sc.path[sc.path_len - 1];
        (void)last;
    }
    kdh_wire_debug_io_decode(p->payload, p->payload_len, &dio, &data, &dlen, NULL);
    kdh_wire_file_io_decode(p->payload, p->payload_len, &fio, &data, &dlen, NULL);
}

static int run(const uint8_t *buf, size_t len, unsigned seed, int one_byte, rec_t *out)
{
    static kdh_wire_decoder_t d;
    kdh_wire_decoder_init(&d);
    int n = 0;
    size_t off = 0;
    while (off < len) {
        size_t c = one_byte ? 1 : 1 + (seed = seed * 1103515245u + 12345u) % 97u;
        if (c > len - off)
            c = len - off;
        size_t left = c;
        const uint8_t *p = buf + off;
        while (left) {
            kdh_wire_event_t ev;
            size_t k = kdh_wire_decoder_feed(&d, p, left, &ev);
            if (k > left || (ev.kind == KDH_WIRE_EV_NONE && k != left))
                abort();
            if (ev.kind != KDH_WIRE_EV_NONE) {
                if (ev.kind == KDH_WIRE_EV_GARBAGE && ev.count == 0)
                    abort();
                check_and_parse(&ev);
                if (n < MAXEV) {
                    rec_t *r = &out[n];
                    memset(r, 0, sizeof *r);
                    r->kind = ev.kind;
                    r->count = ev.count;
                    r->type = ev.packet.type;
                    r->byte_count = ev.packet.byte_count;
                    r->id = ev.packet.id;
                    r->payload_len = ev.packet.payload_len;
                    if (ev.packet.payload)
                        r->payload_sum = kdh_wire_checksum(ev.packet.payload, ev.packet.payload_len);
                }
                n++;
            }
            p += k;
            left -= k;
        }
        off += c;
    }
    kdh_wire_event_t ev;
    for (int i = 0; kdh_wire_decoder_flush(&d, &ev); i++) {
        if (i > 2)
            abort(); /* at most TRUNCATED then GARBAGE */
        if (n < MAXEV) {
            memset(&out[n], 0, sizeof out[n]);
            out[n].kind = ev.kind;
            out[n].count = ev.count;
            out[n].type = ev.packet.type;
            out[n].byte_count = ev.packet.byte_count;
            out[n].id = ev.packet.id;
        }
        n++;
    }
    if (kdh_wire_decoder_busy(&d))
        abort();
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned seed = data[0];
    int na = run(data + 1, size - 1, seed, 0, ev_a);
    int nb = run(data + 1, size - 1, seed, 1, ev_b);
    if (na != nb)
        abort();
    int m = na < MAXEV ? na : MAXEV;
    if (memcmp(ev_a, ev_b, (size_t)m * sizeof(rec_t)) != 0)
        abort();
    return 0;
}
