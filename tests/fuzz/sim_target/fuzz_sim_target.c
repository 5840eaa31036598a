/* libFuzzer harness for kdsim's KD target side (target*.c) over the fake machine: arbitrary host
 * bytes, cut into fuzz-chosen chunks and mixed with time passing, ACKs and framed packets, must
 * never crash the target, and every packet it queues must be one well-formed KD frame.
 * Input: byte 0 = configuration (bit 0 x86, bits 1-2 extra CPUs, bit 3 no GetContextEx), then
 * operations, each one byte h (op = h >> 5, a = h & 31) and its operands:
 *   0-3  raw bytes: the next op*32+a+1 bytes go to sim_target_input as they are
 *   4    time: a+1 ms pass, the machine may run a*10 us of simulated time
 *   5    ACK the target's last data packet (a & 1: with a wrong id)
 *   6    a data packet framed here: type = a % 12, id = initial id ^ (next byte), payload length
 *        = next 2 bytes (LE, at most 4000), payload = that many bytes
 *   7    a 0x62 break-in byte (a even) or a RESET control packet (a odd) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/wire.h"
#include "target.h"

typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz_t;

static int take(fz_t *f, size_t k, const uint8_t **out)
{
    if (f->n < k)
        return 0;
    *out = f->p;
    f->p += k;
    f->n -= k;
    return 1;
}

static uint64_t g_now;
static uint32_t g_last_id;
static int g_have_last;

/* A queued packet must decode as exactly one KD frame with nothing left over. */
static void check_frame(const uint8_t *data, size_t len)
{
    static kdh_wire_decoder_t d;
    kdh_wire_decoder_init(&d);
    kdh_wire_event_t ev;
    size_t used = 0;
    int packets = 0;
    while (used < len) {
        size_t k = kdh_wire_decoder_feed(&d, data + used, len - used, &ev);
        used += k;
        if (ev.kind == KDH_WIRE_EV_PACKET) {
            packets++;
            if (getenv("FUZZ_SIM_TARGET_STATS"))
                fprintf(stderr, "  target: %s type %u id 0x%x len %zu\n", ev.packet.is_control ? "control" : "data",
                        ev.packet.type, ev.packet.id, ev.packet.payload_len);
            if (!ev.packet.is_control) {
                g_last_id = ev.packet.id;
                g_have_last = 1;
            }
        } else if (ev.kind != KDH_WIRE_EV_NONE) {
            abort();  /* the target framed something a host decoder rejects */
        } else if (k == 0) {
            abort();
        }
    }
    if (packets != 1 || kdh_wire_decoder_busy(&d))
        abort();
}

static void drain(sim_target_t *t)
{
    const uint8_t *data;
    size_t len;
    for (int guard = 0; guard < 1000 && sim_target_peek(t, &data, &len); guard++) {
        check_frame(data, len);
        g_now += 1000;
        sim_target_sent(t, g_now);
    }
}

static void feed(sim_target_t *t, const uint8_t *b, size_t n)
{
    kdh_err_t err;
    g_now += 100;
    sim_target_input(t, g_now, b, n, &err);  /* errors are fine; crashes are not */
    drain(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fz_t f = {data + 1, size - 1};
    sim_config_t cfg = {.arch = (data[0] & 1) ? SIM_ARCH_X86 : SIM_ARCH_X64, .seed = 1, .cpus = 1 + ((data[0] >> 1) & 3)};
    sim_target_opts_t o;
    sim_target_opts_default(&o);
    o.no_context_ex = (data[0] >> 3) & 1;
    kdh_err_t err;
    sim_machine_t *m = sim_machine_create(&cfg, &err);
    if (!m)
        return 0;
    sim_target_t *t = sim_target_create(m, &o, &err);
    if (!t) {
        sim_machine_destroy(m);
        return 0;
    }
    g_now = 1000000000ull;
    g_have_last = 0;
    static uint8_t frame[KDH_WIRE_FRAME_MAX];
    const uint8_t *b;
    for (int ops = 0; ops < 4096 && take(&f, 1, &b); ops++) {
        unsigned op = b[0] >> 5, a = b[0] & 31;
        if (op <= 3) {
            size_t k = op * 32 + a + 1;
            if (k > f.n)
                k = f.n;
            take(&f, k, &b);
            feed(t, b, k);
        } else if (op == 4) {
            g_now += (a + 1) * 1000000ull;
            sim_target_tick(t, g_now, a * 10000ull, &err);
            drain(t);
        } else if (op == 5) {
            if (!g_have_last)
                continue;
            int n = kdh_wire_encode_control(frame, sizeof frame, KDH_WIRE_TYPE_ACKNOWLEDGE, g_last_id ^ (a & 1));
            if (n > 0)
                feed(t, frame, (size_t)n);
        } else if (op == 6) {
            const uint8_t *h;
            if (!take(&f, 3, &h))
                break;
            size_t len = (size_t)h[1] | (size_t)h[2] << 8;
            if (len > KDH_WIRE_PACKET_MAX)
                len = KDH_WIRE_PACKET_MAX;
            if (len > f.n)
                len = f.n;
            const uint8_t *payload = NULL;
            take(&f, len, &payload);
            int n = kdh_wire_encode_data(frame, sizeof frame, (uint16_t)(a % 12), KDH_WIRE_INITIAL_ID ^ h[0], payload, len);
            if (n > 0)
                feed(t, frame, (size_t)n);
        } else if (a % 2 == 0) {
            uint8_t bi = KDH_WIRE_BREAKIN_BYTE;
            feed(t, &bi, 1);
        } else {
            int n = kdh_wire_encode_control(frame, sizeof frame, KDH_WIRE_TYPE_RESET, KDH_WIRE_INITIAL_ID);
            if (n > 0)
                feed(t, frame, (size_t)n);
        }
    }
    if (getenv("FUZZ_SIM_TARGET_STATS")) {  /* to see how far a seed gets */
        sim_target_stats_t st;
        sim_target_stats(t, &st);
        fprintf(stderr, "state %d rx %llu bad %llu dup %llu tx %llu retx %llu stops %llu breakins %llu resets %llu\n",
                (int)sim_target_state(t), (unsigned long long)st.rx_packets, (unsigned long long)st.rx_bad,
                (unsigned long long)st.rx_duplicates, (unsigned long long)st.tx_packets,
                (unsigned long long)st.tx_retransmits, (unsigned long long)st.stops, (unsigned long long)st.breakins,
                (unsigned long long)st.resets);
    }
    sim_target_destroy(t);
    sim_machine_destroy(m);
    return 0;
}
