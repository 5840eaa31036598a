/* test_sim_line.c: kdsim's line emulation on a simulated clock: the token bucket's rate and burst,
 * the byte FIFO, and the fault spec parser and its deterministic effects. Expected numbers are
 * hand-computed (115200 baud 8N1 = 11,520 bytes/s). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "fault.h"
#include "line.h"

#define MS 1000000ull

static void test_bucket_rate(void **state)
{
    assert_int_equal(sim_line_bytes_per_s(115200), 11520);
    sim_bucket_t b;
    uint64_t t = 5 * 1000 * MS;
    sim_bucket_init(&b, 11520, 23, t);
    /* 2 s of 1 ms ticks with jitter (0.5..1.5 ms): 23040 bytes, give or take the burst. */
    size_t sent = 0;
    uint64_t end = t + 2000 * MS;
    int k = 0;
    while (t < end) {
        t += (k++ % 2) ? 1500000 : 500000;
        if (t > end)
            t = end;
        size_t n = sim_bucket_avail(&b, t);
        sim_bucket_consume(&b, n);
        sent += n;
    }
    assert_in_range(sent, 23040 - 1, 23040);
    /* Idle for a second: only the burst (23 bytes) is saved up, not 11520. */
    t += 1000 * MS;
    sim_bucket_idle(&b, t);
    assert_int_equal(sim_bucket_avail(&b, t), 23);
    sim_bucket_consume(&b, 23);
    assert_int_equal(sim_bucket_avail(&b, t), 0);
    /* Busy, and the timer comes 50 ms late: the 576 bytes the line carried meanwhile may go. */
    t += 50 * MS;
    assert_int_equal(sim_bucket_avail(&b, t), 576);
    sim_bucket_consume(&b, 576);
    /* 4017 bytes (a maximal read reply) take 348.7 ms. */
    assert_int_equal(sim_bucket_duration_ns(&b, 4017), 348697916);
    /* rate 0: unpaced */
    sim_bucket_init(&b, 0, 16, 0);
    assert_true(sim_bucket_avail(&b, 0) > 1000000);
}

/* Packets queued together (ACKs and replies) go out back to back: the 1 ms ticks send the 1515
 * bytes of six packets in the 131.5 ms the line needs, whatever the tick phase (no tick's
 * leftover credit is lost where one packet ends). A packet queued after the line fell idle gets
 * only the burst, not the idle time. */
static void test_bucket_back_to_back(void **state)
{
    (void)state;
    for (uint64_t phase = 0; phase < MS; phase += 97000) {
        sim_bucket_t b;
        uint64_t t0 = 7 * 1000 * MS + phase, t = t0;
        sim_bucket_init(&b, 11520, 1, t0 - 500 * MS);
        size_t frames[6] = {16, 89, 16, 73, 16, 1305}, left = 0;
        int next = 0;
        uint64_t done = 0;
        for (;; t += MS) {
            for (;;) {
                if (left == 0 && next < 6) {
                    sim_bucket_idle_since(&b, t, t0); /* all were queued at t0 */
                    left = frames[next++];
                }
                size_t n = sim_bucket_avail(&b, t);
                if (n > left)
                    n = left;
                sim_bucket_consume(&b, n);
                left -= n;
                if (left || next == 6 || n == 0)
                    break;
            }
            if (left == 0 && next == 6) {
                done = t;
                break;
            }
        }
        /* 1515 bytes: 131.5 ms of line time, the first byte at t0; ticks are 1 ms apart */
        assert_in_range(done - t0, 131 * MS, 132 * MS);
    }
    sim_bucket_t b;
    sim_bucket_init(&b, 11520, 1, 0);
    sim_bucket_consume(&b, sim_bucket_avail(&b, 0));
    sim_bucket_idle_since(&b, 1000 * MS, 999 * MS); /* idle 1 s, ready for the last 1 ms */
    assert_int_equal(sim_bucket_avail(&b, 1000 * MS), 1 + 11);
    /* when 100 bytes have come due: of the 12.52 bytes of credit (burst 1 + 1 ms) 12 went, so
     * 99.48 more take 8.64 ms; not a nanosecond earlier */
    sim_bucket_consume(&b, 12);
    uint64_t due = sim_bucket_ready_ns(&b, 100);
    assert_true(due > 1000 * MS);
    assert_int_equal(sim_bucket_avail(&b, due - 1), 99);
    assert_int_equal(sim_bucket_avail(&b, due), 100);
}

static void test_fifo_wraps(void **state)
{
    sim_fifo_t f;
    assert_int_equal(sim_fifo_init(&f, 8), 0);
    const uint8_t in[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(sim_fifo_push(&f, in, 10), 8); /* full after 8 */
    const uint8_t *p;
    assert_int_equal(sim_fifo_peek(&f, &p), 8);
    sim_fifo_pop(&f, 5);
    assert_int_equal(sim_fifo_push(&f, in + 8, 2), 2);
    /* head at 5: 3 contiguous (6,7,8), then the wrapped 9,10 */
    assert_int_equal(sim_fifo_peek(&f, &p), 3);
    assert_int_equal(p[0], 6);
    sim_fifo_pop(&f, 3);
    assert_int_equal(sim_fifo_peek(&f, &p), 2);
    assert_int_equal(p[0], 9);
    assert_int_equal(p[1], 10);
    sim_fifo_pop(&f, 2);
    assert_int_equal(f.len, 0);
    sim_fifo_free(&f);
}

static void test_fault_spec(void **state)
{
    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, NULL, 1, &err), KDH_OK);
    assert_int_equal(sim_faults_parse(&f, "", 1, &err), KDH_OK);
    assert_int_equal(sim_faults_parse(&f, "corrupt=0.001,drop=0.0005,drop-packet=0.01,dup-packet=0.02,"
                                          "stall=250ms/30s,reboot=1.5",
                                      1, &err),
                     KDH_OK);
    assert_true(f.corrupt == 0.001 && f.drop == 0.0005 && f.drop_packet == 0.01 && f.dup_packet == 0.02);
    assert_int_equal(f.stall_ns, 250 * MS);
    assert_int_equal(f.stall_period_ns, 30000 * MS);
    assert_int_equal(f.reboot_at_ns, 1500 * MS);
    assert_int_equal(sim_faults_parse(&f, "mangle-continue=15", 1, &err), KDH_OK);
    assert_int_equal(f.mangle_continue_at, 15);
    assert_int_equal(sim_faults_parse(&f, "hangup=5s/20s,reboot-in-request=400", 1, &err), KDH_OK);
    assert_int_equal(f.hangup_ns, 5000 * MS);
    assert_int_equal(f.hangup_period_ns, 20000 * MS);
    assert_int_equal(f.reboot_request_at, 400);
    assert_int_equal(sim_faults_parse(&f, "lose-request=2@12", 1, &err), KDH_OK);
    assert_true(f.lose_request_at == 2 && f.lose_after_continue == 12);
    assert_int_equal(sim_faults_parse(&f, "lose-request=5", 1, &err), KDH_OK);
    assert_true(f.lose_request_at == 5 && f.lose_after_continue == 0);
    const char *bad[] = {"corrupt", "corrupt=1.5", "corrupt=x", "stall=2s", "stall=3s/2s", "reboot=0",
                         "reboot=5parsecs", "flood=1", "drop=-0.1", "mangle-continue=0", "mangle-continue=",
                         "mangle-continue=3x", "hangup=5s", "hangup=20s/5s", "hangup=0s/5s",
                         "reboot-in-request=0", "reboot-in-request=x", "lose-request=0",
                         "lose-request=", "lose-request=2@", "lose-request=@3", "lose-request=2@3x",
                         "mangle-write=0", "mangle-write=x", "mangle-stop=0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        assert_int_equal(sim_faults_parse(&f, bad[i], 1, &err), KDH_EINVAL);
        assert_non_null(strstr(err.msg, "--faults"));
    }
}

/* A host Continue2 packet (manipulate, API 0x313C) of 0x38 payload bytes. */
static size_t continue2_packet(uint8_t *out, uint32_t api)
{
    memset(out, 0, 16 + 0x38 + 1);
    memset(out, 0x30, 4);
    kdh_put_u16(out + 4, 2);
    kdh_put_u16(out + 6, 0x38);
    kdh_put_u32(out + 8, 0x80800000);
    kdh_put_u32(out + 16, api);
    out[16 + 0x38] = 0xAA;
    return 16 + 0x38 + 1;
}

static void test_fault_mangle_continue(void **state)
{
    (void)state;
    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, "mangle-continue=2", 1, &err), KDH_OK);
    sim_splitter_t sp;
    memset(&sp, 0, sizeof sp);
    static uint8_t pkt[200], out[SIM_SPLIT_OUT_MAX];
    const uint32_t apis[] = {0x3130 /* ReadVirtual */, 0x313C, 0x313C, 0x313C};
    const uint16_t want_type[] = {2, 2, 3, 2};
    for (size_t k = 0; k < 4; k++) {
        size_t n = continue2_packet(pkt, apis[k]), got = 0;
        for (size_t i = 0; i < n; i++)
            got += sim_splitter_byte(&sp, &f, pkt[i], 0, out + got);
        assert_int_equal(got, n);
        assert_int_equal(kdh_get_u16(out + 4), want_type[k]);
        assert_memory_equal(out + 6, pkt + 6, n - 6); /* nothing else changed */
    }
    assert_int_equal(f.st.mangled, 1);
}

/* reboot-in-request=3: the third manipulate request other than Continue2 never reaches the
 * target (the host sees no ACK), and the reboot is due once, right then. */
static void test_fault_reboot_in_request(void **state)
{
    (void)state;
    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, "reboot-in-request=3", 1, &err), KDH_OK);
    sim_splitter_t sp;
    memset(&sp, 0, sizeof sp);
    static uint8_t pkt[200], out[SIM_SPLIT_OUT_MAX];
    const uint32_t apis[] = {0x3130, 0x313C, 0x3132, 0x3130, 0x3130};
    const int passes[] = {1, 1, 1, 0, 1};
    for (size_t k = 0; k < 5; k++) {
        size_t n = continue2_packet(pkt, apis[k]), got = 0;
        for (size_t i = 0; i < n; i++)
            got += sim_splitter_byte(&sp, &f, pkt[i], 0, out + got);
        assert_int_equal(got, passes[k] ? n : 0);
        assert_int_equal(sim_faults_reboot_due(&f, 0), !passes[k]);
    }
    assert_int_equal(f.st.reboots, 1);
}

/* lose-request=2@1: the second request after the first Continue2 is dropped, and so is every
 * retransmission of it (the same bytes), until the host's RESET passes; then the request sent again
 * with the id a RESET gives (0x80800000) gets through, and nothing later is lost. A repeat of the
 * request counted last is a retransmission, not a new request. */
static void test_fault_lose_request(void **state)
{
    (void)state;
    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, "lose-request=2@1", 1, &err), KDH_OK);
    sim_splitter_t sp;
    memset(&sp, 0, sizeof sp);
    static uint8_t pkt[200], out[SIM_SPLIT_OUT_MAX];
    const uint8_t reset[16] = {0x69, 0x69, 0x69, 0x69, 6, 0};
    /* api, id (0 = the RESET control packet), passes */
    const struct {
        uint32_t api, id;
        int passes;
    } seq[] = {
        {0x3130, 0x80800000, 1}, /* before the first Continue2: not counted */
        {0x313C, 0x80800001, 1}, /* the first Continue2 */
        {0x3130, 0x80800000, 1}, /* request 1 */
        {0x3130, 0x80800000, 1}, /* its retransmission: still request 1 */
        {0x3131, 0x80800001, 0}, /* request 2: lost */
        {0x3131, 0x80800001, 0}, /* retransmissions of it: lost */
        {0x3131, 0x80800001, 0},
        {0, 0, 1},               /* the host's RESET */
        {0x3131, 0x80800000, 1}, /* request 2 again after the RESET */
        {0x3131, 0x80800001, 1}, /* later ones pass */
    };
    for (size_t k = 0; k < sizeof seq / sizeof seq[0]; k++) {
        size_t n = 16, got = 0;
        if (seq[k].id) {
            n = continue2_packet(pkt, seq[k].api);
            kdh_put_u32(pkt + 8, seq[k].id);
        } else {
            memcpy(pkt, reset, sizeof reset);
        }
        for (size_t i = 0; i < n; i++)
            got += sim_splitter_byte(&sp, &f, pkt[i], 0, out + got);
        assert_int_equal(got, seq[k].passes ? n : 0);
    }
    assert_int_equal(f.st.lost_requests, 3);
}

/* mangle-write=2: the second WriteVirtualMemory (a read and a Continue2 do not count) gets +1 on
 * its first data byte and -1 on its second; the byte sum over the payload, the KD checksum, is
 * the same. */
static void test_fault_mangle_write(void **state)
{
    (void)state;
    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, "mangle-write=2", 1, &err), KDH_OK);
    sim_splitter_t sp;
    memset(&sp, 0, sizeof sp);
    static uint8_t pkt[200], out[SIM_SPLIT_OUT_MAX];
    const uint32_t apis[] = {0x3131, 0x3130, 0x313C, 0x3131, 0x3131};
    const int damaged[] = {0, 0, 0, 1, 0};
    for (size_t k = 0; k < 5; k++) {
        memset(pkt, 0, sizeof pkt);
        memset(pkt, 0x30, 4);
        kdh_put_u16(pkt + 4, 2);
        kdh_put_u16(pkt + 6, 0x38 + 4);
        kdh_put_u32(pkt + 8, 0x80800000 | (uint32_t)(k & 1));
        kdh_put_u32(pkt + 16, apis[k]);
        const uint8_t data[4] = {0x4c, 0x65, 0x61, 0x6b}; /* "Leak" */
        memcpy(pkt + 16 + 0x38, data, 4);
        uint32_t sum = 0;
        for (size_t i = 16; i < 16 + 0x38 + 4; i++)
            sum += pkt[i];
        kdh_put_u32(pkt + 12, sum);
        pkt[16 + 0x38 + 4] = 0xAA;
        size_t n = 16 + 0x38 + 4 + 1, got = 0;
        for (size_t i = 0; i < n; i++)
            got += sim_splitter_byte(&sp, &f, pkt[i], 0, out + got);
        assert_int_equal(got, n);
        uint32_t sum2 = 0;
        for (size_t i = 16; i < 16 + 0x38 + 4; i++)
            sum2 += out[i];
        assert_int_equal(sum2, sum);
        assert_int_equal(out[16 + 0x38], damaged[k] ? 0x4d : 0x4c);
        assert_int_equal(out[16 + 0x38 + 1], damaged[k] ? 0x64 : 0x65);
        assert_memory_equal(out + 16 + 0x38 + 2, data + 2, 2);
    }
    assert_int_equal(f.st.mangled, 1);
}

#define REPORT_LEN 0xF0 /* payload of the exception reports below */

/* A target packet into pkt (16 + REPORT_LEN + 1 bytes): an exception report (0x3030, type 7)
 * with the given thread and PC, or with manip a manipulate reply (type 2), which faults leave
 * alone. The fault sees it (sim_faults_target_packet); the payload's byte sum, the KD checksum,
 * must be the same after; the copy from before goes to orig. */
static void fault_report(sim_faults_t *f, uint8_t *pkt, uint8_t *orig, int manip, uint64_t thread, uint64_t pc)
{
    memset(pkt, 0, 16 + REPORT_LEN + 1);
    memset(pkt, 0x30, 4);
    kdh_put_u16(pkt + 4, manip ? 2 : 7);
    kdh_put_u16(pkt + 6, REPORT_LEN);
    kdh_put_u32(pkt + 16, 0x3030);
    kdh_put_u64(pkt + 16 + 0x10, thread);
    kdh_put_u64(pkt + 16 + 0x18, pc);
    kdh_put_u32(pkt + 16 + 0x20, 0x80000003u);
    pkt[16 + REPORT_LEN] = 0xAA;
    memcpy(orig, pkt, 16 + REPORT_LEN + 1);
    sim_faults_target_packet(f, pkt, 16 + REPORT_LEN + 1);
    uint32_t s0 = 0, s1 = 0;
    for (size_t i = 16; i < 16 + REPORT_LEN; i++)
        s0 += orig[i], s1 += pkt[i];
    assert_int_equal(s1, s0);
}

/* mangle-stop=2: the second exception report (a resend of the first is not counted) has bit 4
 * of its PC's second byte cleared and bit 4 of ExceptionInformation[14]'s first byte set; the
 * payload's byte sum, the KD checksum, is the same; other packets are left alone. */
static void test_fault_mangle_stop(void **state)
{
    (void)state;
    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, "mangle-stop=2", 1, &err), KDH_OK);
    static uint8_t pkt[16 + REPORT_LEN + 1], orig[sizeof pkt];
    for (int k = 0; k < 4; k++) {
        /* k 0, 1: one report twice; the last: a manipulate reply */
        fault_report(&f, pkt, orig, k == 3, 0, 0xfffff8000f801000ull + (k == 2 ? 0x10 : 0));
        if (k == 2) {
            assert_int_equal(kdh_get_u64(pkt + 16 + 0x18), 0xfffff8000f800010ull);
            assert_int_equal(pkt[16 + 0x20 + 0x20 + 14 * 8], 0x10);
        } else {
            assert_memory_equal(pkt, orig, sizeof pkt);
        }
    }
    assert_int_equal(f.st.mangled, 1);
}

/* mangle-thread=2: the second exception report (a resend of the first is not counted) has bit 4
 * of its thread's third byte cleared (0xffffa000f6d02400 -> 0xffffa000f6c02400, still canonical)
 * and bit 4 of ExceptionInformation[14]'s second byte set; the byte sum is the same; a thread with
 * no bit set in its middle bytes passes the turn to the next report. */
static void test_fault_mangle_thread(void **state)
{
    (void)state;
    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, "mangle-thread=2", 1, &err), KDH_OK);
    static uint8_t pkt[16 + REPORT_LEN + 1], orig[sizeof pkt];
    static const uint64_t threads[5] = {0xffffa000f6d02400ull, 0xffffa000f6d02400ull, 0xffffa00000000000ull,
                                        0xffffa000f6d02400ull, 0xffffa000f6d02400ull};
    for (int k = 0; k < 5; k++) {
        /* k 0, 1: one report twice; the last: a manipulate reply */
        fault_report(&f, pkt, orig, k == 4, threads[k], 0xfffff8000f801000ull + (uint64_t)(k >= 2 ? k : 0));
        if (k == 3) { /* the 2nd report had no bit to take: the 3rd is damaged */
            assert_int_equal(kdh_get_u64(pkt + 16 + 0x10), 0xffffa000f6c02400ull);
            assert_int_equal(pkt[16 + 0x20 + 0x20 + 14 * 8 + 1], 0x10);
        } else {
            assert_memory_equal(pkt, orig, sizeof pkt);
        }
    }
    assert_int_equal(f.st.mangled, 1);
}

static void test_fault_effects_deterministic(void **state)
{
    sim_faults_t a, b;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&a, "corrupt=0.01,drop=0.01", 42, &err), KDH_OK);
    assert_int_equal(sim_faults_parse(&b, "corrupt=0.01,drop=0.01", 42, &err), KDH_OK);
    static uint8_t x[100000], y[100000];
    memset(x, 0x30, sizeof x);
    memset(y, 0x30, sizeof y);
    size_t nx = sim_faults_bytes(&a, x, sizeof x), ny = sim_faults_bytes(&b, y, sizeof y);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    /* 1% of 100000: expect ~1000 each, binomial sd ~31; allow 5 sd. */
    assert_in_range(a.st.dropped_bytes, 845, 1155);
    assert_in_range(a.st.corrupted, 835, 1155);
    assert_int_equal(nx, sizeof x - a.st.dropped_bytes);
    size_t changed = 0;
    for (size_t i = 0; i < nx; i++) {
        if (x[i] != 0x30) {
            changed++;
            assert_int_equal(__builtin_popcount(x[i] ^ 0x30), 1); /* one flipped bit */
        }
    }
    assert_int_equal(changed, a.st.corrupted);
    /* another seed, other faults */
    assert_int_equal(sim_faults_parse(&b, "corrupt=0.01,drop=0.01", 43, &err), KDH_OK);
    memset(y, 0x30, sizeof y);
    ny = sim_faults_bytes(&b, y, sizeof y);
    assert_true(ny != nx || memcmp(x, y, nx) != 0);

    /* packets: 10% dropped, then 10% of the rest duplicated */
    assert_int_equal(sim_faults_parse(&a, "drop-packet=0.1,dup-packet=0.1", 7, &err), KDH_OK);
    int sent = 0, n[3] = {0};
    for (int i = 0; i < 10000; i++) {
        int r = sim_faults_packet(&a);
        n[r]++;
        sent += r;
    }
    assert_in_range(n[SIM_FAULT_DROP], 850, 1150);
    assert_in_range(n[SIM_FAULT_DUP], 750, 1050);
    assert_int_equal(n[SIM_FAULT_DROP], a.st.dropped_packets);
    assert_int_equal(sent, 10000 - n[0] + n[2]);
}

static void test_stall_and_reboot_schedule(void **state)
{
    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, "stall=2s/10s,reboot=15s", 1, &err), KDH_OK);
    /* the last 2 s of every 10 s */
    assert_false(sim_faults_stalled(&f, 7999 * MS));
    assert_true(sim_faults_stalled(&f, 8000 * MS));
    assert_true(sim_faults_stalled(&f, 9999 * MS));
    assert_false(sim_faults_stalled(&f, 10000 * MS));
    assert_true(sim_faults_stalled(&f, 18500 * MS));
    assert_int_equal(f.st.stalls, 2);
    assert_false(sim_faults_reboot_due(&f, 14999 * MS));
    assert_true(sim_faults_reboot_due(&f, 15000 * MS));
    assert_false(sim_faults_reboot_due(&f, 16000 * MS)); /* once */
    assert_int_equal(f.st.reboots, 1);

    /* the pty is unplugged for the last 5 s of every 20 s */
    assert_int_equal(sim_faults_parse(&f, "hangup=5s/20s", 1, &err), KDH_OK);
    assert_false(sim_faults_hung_up(&f, 14999 * MS));
    assert_true(sim_faults_hung_up(&f, 15000 * MS));
    assert_true(sim_faults_hung_up(&f, 19999 * MS));
    assert_false(sim_faults_hung_up(&f, 20000 * MS));
    assert_true(sim_faults_hung_up(&f, 36000 * MS));
    assert_int_equal(f.st.hangups, 2);
}

static size_t split_all(sim_faults_t *f, const uint8_t *in, size_t n, uint8_t *out)
{
    static sim_splitter_t sp;
    static uint8_t tmp[SIM_SPLIT_OUT_MAX];
    memset(&sp, 0, sizeof sp);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = sim_splitter_byte(&sp, f, in[i], 0, tmp);
        memcpy(out + total, tmp, k);
        total += k;
    }
    return total;
}

/* Host stream: noise, 'b', ACK (16 bytes), a 4-byte data packet (21 bytes), "000z". */
static void test_splitter_packets(void **state)
{
    uint8_t in[64], out[256];
    size_t n = 0;
    in[n++] = 0x12;
    in[n++] = 0x62;
    const uint8_t ack[16] = {0x69, 0x69, 0x69, 0x69, 4, 0, 0, 0, 0, 0, 0x80, 0x80, 0, 0, 0, 0};
    memcpy(in + n, ack, 16);
    n += 16;
    const uint8_t data[21] = {0x30, 0x30, 0x30, 0x30, 2, 0, 4, 0, 1, 0, 0x80, 0x80, 10, 0, 0, 0,
                              1, 2, 3, 4, 0xAA};
    memcpy(in + n, data, 21);
    n += 21;
    memcpy(in + n, "000z", 4);
    n += 4;

    sim_faults_t f;
    kdh_err_t err;
    assert_int_equal(sim_faults_parse(&f, "drop-packet=0,dup-packet=0", 1, &err), KDH_OK);
    assert_int_equal(split_all(&f, in, n, out), n);
    assert_memory_equal(out, in, n);

    assert_int_equal(sim_faults_parse(&f, "drop-packet=1", 1, &err), KDH_OK);
    assert_int_equal(split_all(&f, in, n, out), 6);
    assert_memory_equal(out, "\x12\x62" "000z", 6);
    assert_int_equal(f.st.dropped_packets, 2);

    assert_int_equal(sim_faults_parse(&f, "dup-packet=1", 1, &err), KDH_OK);
    assert_int_equal(split_all(&f, in, n, out), n + 16 + 21);
    assert_memory_equal(out + 2, ack, 16);
    assert_memory_equal(out + 18, ack, 16);
    assert_memory_equal(out + 34, data, 21);
    assert_memory_equal(out + 55, data, 21);

    /* a packet cut short is let through after max_ns */
    sim_splitter_t sp;
    memset(&sp, 0, sizeof sp);
    uint8_t tmp[SIM_SPLIT_OUT_MAX];
    for (int i = 0; i < 10; i++)
        assert_int_equal(sim_splitter_byte(&sp, &f, data[i], 1000, tmp), 0);
    assert_int_equal(sim_splitter_expire(&sp, 1000 + 49 * MS, 50 * MS, tmp), 0);
    assert_int_equal(sim_splitter_expire(&sp, 1000 + 50 * MS, 50 * MS, tmp), 10);
    assert_memory_equal(tmp, data, 10);
    /* ByteCount over 4000: passed on as noise, not held */
    const uint8_t big[16] = {0x30, 0x30, 0x30, 0x30, 2, 0, 0xA1, 0x0F};
    size_t k = 0;
    for (int i = 0; i < 16; i++)
        k += sim_splitter_byte(&sp, &f, big[i], 0, tmp + k);
    assert_int_equal(k, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_rate),
        cmocka_unit_test(test_bucket_back_to_back),
        cmocka_unit_test(test_fifo_wraps),
        cmocka_unit_test(test_fault_spec),
        cmocka_unit_test(test_fault_mangle_continue),
        cmocka_unit_test(test_fault_reboot_in_request),
        cmocka_unit_test(test_fault_lose_request),
        cmocka_unit_test(test_fault_mangle_write),
        cmocka_unit_test(test_fault_mangle_stop),
        cmocka_unit_test(test_fault_mangle_thread),
        cmocka_unit_test(test_fault_effects_deterministic),
        cmocka_unit_test(test_stall_and_reboot_schedule),
        cmocka_unit_test(test_splitter_packets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
