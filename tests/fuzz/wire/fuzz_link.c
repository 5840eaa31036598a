/* libFuzzer harness for the host link: the input is a script of target bytes, clock steps,
 * sends, connects and break-ins. Checks that the link never crashes, keeps its ids in the two
 * legal values, completes each send exactly once, and only writes whole, well-formed packets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/link.h"

typedef struct fz {
    kdh_link_t *link;
    uint64_t now;
    kdh_wire_decoder_t out_dec;
    int outstanding;
} fz_t;

static uint64_t fz_now(void *ctx)
{
    return ((fz_t *)ctx)->now;
}

static int fz_write(void *ctx, const uint8_t *buf, size_t len)
{
    fz_t *f = ctx;
    while (len) {
        kdh_wire_event_t ev;
        size_t n = kdh_wire_decoder_feed(&f->out_dec, buf, len, &ev);
        if (ev.kind != KDH_WIRE_EV_NONE && ev.kind != KDH_WIRE_EV_PACKET &&
            ev.kind != KDH_WIRE_EV_BREAKIN)
            abort();
        buf += n;
        len -= n;
    }
    if (kdh_wire_decoder_busy(&f->out_dec))
        abort(); /* every write is a whole packet */
    return (f->now & 0x1F) == 0x1F ? KDH_EIO : KDH_OK; /* sometimes refuse */
}

static void fz_packet(void *ctx, uint16_t type, uint32_t id, const uint8_t *p, size_t len)
{
    if (len > KDH_WIRE_PACKET_MAX || (len && !p))
        abort();
    volatile uint8_t x = len ? p[len - 1] : 0;
    (void)x;
}

static void fz_done(void *ctx, int status)
{
    fz_t *f = ctx;
    if (!f->outstanding)
        abort();
    f->outstanding = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fz_t f;
    memset(&f, 0, sizeof f);
    kdh_wire_decoder_init(&f.out_dec);
    kdh_link_cfg_t cfg = {.now = fz_now, .write = fz_write, .on_packet = fz_packet, .ctx = &f,
                          .baud = (size & 1) ? 115200 : 0};
    if (kdh_link_new(&f.link, &cfg, NULL) != KDH_OK)
        abort();
    size_t i = 0;
    while (i < size) {
        uint8_t op = data[i++];
        switch (op & 7) {
        case 0: case 1: case 2: case 3: {
            size_t n = (size_t)(op >> 3) * 8 + 1;
            if (n > size - i)
                n = size - i;
            kdh_link_feed(f.link, data + i, n);
            i += n;
            break;
        }
        case 4:
            f.now += (uint64_t)(op >> 3) * 97;
            kdh_link_poll(f.link);
            break;
        case 5: {
            uint8_t req[0x38] = {(uint8_t)op};
            int rc = kdh_link_send(f.link, 2, req, sizeof req, NULL, 0, fz_done, &f, NULL);
            if (rc == KDH_OK) {
                if (f.outstanding)
                    abort();
                f.outstanding = 1;
            }
            break;
        }
        case 6:
            kdh_link_connect(f.link, op >> 7, NULL);
            break;
        default:
            kdh_link_break(f.link, NULL);
            break;
        }
        if ((kdh_link_tx_id(f.link) & ~1u) != KDH_WIRE_INITIAL_ID ||
            (kdh_link_rx_expect(f.link) & ~1u) != KDH_WIRE_INITIAL_ID)
            abort();
        if (f.outstanding != kdh_link_send_pending(f.link))
            abort();
    }
    kdh_link_free(f.link);
    if (f.outstanding)
        abort(); /* free must complete the outstanding send */
    return 0;
}
