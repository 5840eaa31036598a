/* test_sim_link.c: link behaviour of kdsim's KD target side (src/sim/target.c) against hand-built
 * host packets over the fake machine: ids and the sync bit, ACK/RESEND/RESET, duplicates, bad
 * packets, retry policy, break-in while printing, and noise. Expected values come from
 * kd-protocol.md §1, never from the target code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "fake_machine.h"
#include "host.h"

#define MS 1000000ull

static host_t H;

static int setup_x64(void **state)
{
    host_setup(&H, SIM_ARCH_X64, 1, NULL);
    return 0;
}

static int teardown(void **state)
{
    host_teardown(&H);
    return 0;
}

static uint64_t base(void)
{
    return fake_base(H.m);
}

/* Boot: first packet carries the sync bit, ids alternate, both load-symbols are reported. */
static void test_boot_sync_bit_and_load_symbols(void **state)
{
    host_tick(&H, MS, MS);
    assert_int_equal(H.n, 1);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_STATE_CHANGE64);
    assert_int_equal(H.pkts[0].id, 0x80800800u);
    const uint8_t *p = H.pkts[0].payload;
    const char *path = "\\SystemRoot\\system32\\ntoskrnl.exe";
    assert_int_equal(H.pkts[0].len, 0xF0 + strlen(path) + 1);
    assert_int_equal(kdh_get_u32(p + 0x00), 0x3031);
    assert_int_equal(kdh_get_u32(p + 0x20), strlen(path) + 1);
    assert_true(kdh_get_u64(p + 0x28) == base());
    assert_int_equal(kdh_get_u32(p + 0x38), 0x1234);
    assert_int_equal(kdh_get_u32(p + 0x3C), 0x8000);
    assert_int_equal(p[0x40], 0);
    assert_memory_equal(p + 0xF0, path, strlen(path) + 1);

    /* An ACK with the wrong id is ignored: the packet is sent again after the timeout. */
    host_clear(&H);
    host_control(&H, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800001u);
    assert_int_equal(sim_target_state(H.t), SIM_TARGET_SENDING);
    host_tick(&H, 600 * MS, MS);
    assert_int_equal(H.n, 1);
    assert_int_equal(H.pkts[0].id, 0x80800800u);
    /* ACK with the sync bit masked, as the host must. */
    host_control(&H, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_int_equal(sim_target_state(H.t), SIM_TARGET_STOPPED);
    host_cont2(&H, 0);

    host_clear(&H);
    host_tick(&H, MS, MS);
    assert_int_equal(H.pkts[0].id, 0x80800001u);
    assert_int_equal(kdh_get_u32(H.pkts[0].payload), 0x3031);
    assert_true(kdh_get_u64(H.pkts[0].payload + 0x28) == base() + 0x8000);
    assert_memory_equal(H.pkts[0].payload + 0xF0, "\\SystemRoot\\system32\\hal.dll", 29);
    host_control(&H, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800001u);
    host_cont2(&H, 0);
    /* Running now: prints come as DEBUG_IO with the next id. */
    host_clear(&H);
    host_tick(&H, MS, MS);
    int i = host_find(&H, 0, 0, KDH_WIRE_TYPE_DEBUG_IO);
    assert_true(i >= 0);
    assert_int_equal(H.pkts[i].id, 0x80800000u);
    assert_int_equal(kdh_get_u32(H.pkts[i].payload), 0x3230);
    assert_int_equal(kdh_get_u32(H.pkts[i].payload + 8), 7);
    assert_memory_equal(H.pkts[i].payload + 0x10, "tick 1\n", 7);
}

static void test_resend_reset(void **state)
{
    host_tick(&H, MS, MS);
    assert_int_equal(H.pkts[0].id, 0x80800800u);
    /* RESEND: the same packet again, same id. */
    host_clear(&H);
    host_control(&H, KDH_WIRE_TYPE_RESEND, 0);
    assert_int_equal(H.n, 1);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_STATE_CHANGE64);
    assert_int_equal(H.pkts[0].id, 0x80800800u);
    /* RESET: echo, then the pending state change with id 0x80800000. */
    host_clear(&H);
    host_control(&H, KDH_WIRE_TYPE_RESET, 0);
    assert_int_equal(H.n, 2);
    assert_true(H.pkts[0].is_control);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_RESET);
    assert_int_equal(H.pkts[1].type, KDH_WIRE_TYPE_STATE_CHANGE64);
    assert_int_equal(H.pkts[1].id, 0x80800000u);
    host_control(&H, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    assert_int_equal(sim_target_state(H.t), SIM_TARGET_STOPPED);
    /* RESET while stopped: echo and the stop reported again; the host's ids start over. */
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_GET_VERSION), r;
    const uint8_t *d;
    size_t dl;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    host_clear(&H);
    host_control(&H, KDH_WIRE_TYPE_RESET, 0);
    assert_int_equal(H.n, 2);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_RESET);
    assert_int_equal(H.pkts[1].id, 0x80800000u);
    assert_int_equal(kdh_get_u32(H.pkts[1].payload), 0x3031);
    host_control(&H, KDH_WIRE_TYPE_ACKNOWLEDGE, 0x80800000u);
    H.next_id = 0x80800000u;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(H.pkts[1].id, 0x80800001u);
}

static void test_duplicates_and_lost_ack(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_GET_VERSION), r;
    const uint8_t *d;
    size_t dl;
    uint32_t id = H.next_id;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    /* The same request id again: ACKed and dropped. */
    host_clear(&H);
    host_manip_id(&H, &m, NULL, 0, id);
    assert_int_equal(H.n, 1);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_ACKNOWLEDGE);
    assert_int_equal(H.pkts[0].id, id);
    sim_target_stats_t st;
    sim_target_stats(H.t, &st);
    assert_int_equal(st.rx_duplicates, 1);

    /* A data packet while the target waits for the ACK of its reply: RESEND, and the reply is
     * taken as delivered (the next reply uses the next id). */
    uint32_t tx_before;
    sim_target_ids(H.t, &tx_before, NULL);
    host_clear(&H);
    host_manip_id(&H, &m, NULL, 0, H.next_id);
    assert_int_equal(H.n, 2);
    uint32_t reply_id = H.pkts[1].id;
    assert_int_equal(reply_id, tx_before);
    H.next_id ^= 1;
    host_clear(&H);
    host_manip_id(&H, &m, NULL, 0, H.next_id); /* instead of the ACK */
    assert_int_equal(H.n, 1);
    assert_true(H.pkts[0].is_control);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_RESEND);
    assert_int_equal(sim_target_state(H.t), SIM_TARGET_STOPPED);
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(H.pkts[1].id, reply_id ^ 1);
}

static void test_bad_packets_resend(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    uint8_t hdr[0x38] = {0x46, 0x31}, f[KDH_WIRE_FRAME_MAX];
    int n = kdh_wire_encode_data(f, sizeof f, 2, H.next_id, hdr, sizeof hdr);
    /* wrong checksum */
    f[12] ^= 1;
    host_clear(&H);
    host_raw(&H, f, (size_t)n);
    assert_int_equal(H.n, 1);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_RESEND);
    f[12] ^= 1;
    /* missing trailer */
    f[n - 1] = 0x00;
    host_clear(&H);
    host_raw(&H, f, (size_t)n);
    assert_int_equal(H.n, 1);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_RESEND);
    f[n - 1] = 0xAA;
    /* ByteCount over 4000 */
    uint8_t big[16] = {0x30, 0x30, 0x30, 0x30, 2, 0, 0xA1, 0x0F, 0, 0, 0x80, 0x80};
    host_clear(&H);
    host_raw(&H, big, sizeof big);
    assert_int_equal(H.n, 1);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_RESEND);
    /* a short packet, then silence: RESEND after the byte timeout */
    host_clear(&H);
    host_raw(&H, f, 30);
    assert_int_equal(H.n, 0);
    host_tick(&H, 200 * MS, 0);
    assert_int_equal(H.n, 1);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_RESEND);
    /* the whole packet now goes through */
    host_clear(&H);
    host_raw(&H, f, (size_t)n);
    assert_int_equal(H.n, 2);
    assert_int_equal(H.pkts[1].type, KDH_WIRE_TYPE_STATE_MANIPULATE);
    sim_target_stats_t st;
    sim_target_stats(H.t, &st);
    assert_int_equal(st.rx_bad, 4);
}

/* Prints and load-symbols give up after 20 tries (then ids go back to their initial values);
 * exception reports are retried without end. */
static void test_retry_policy(void **state)
{
    host_tick(&H, MS, MS);
    assert_int_equal(H.n, 1);
    for (int k = 0; k < 40; k++)
        host_tick(&H, 600 * MS, 0);
    int sent = 0;
    for (int i = 0; i < H.n; i++)
        if (!H.pkts[i].is_control && kdh_get_u32(H.pkts[i].payload) == 0x3031 &&
            kdh_get_u64(H.pkts[i].payload + 0x28) == base())
            sent++;
    assert_int_equal(sent, 20);
    /* gave up on the kernel, then on the HAL, then the target runs its workload (prints are
     * skipped while no debugger is present) */
    host_clear(&H);
    host_tick(&H, MS, MS);
    for (int i = 0; i < H.n; i++)
        assert_false(!H.pkts[i].is_control && H.pkts[i].type == KDH_WIRE_TYPE_DEBUG_IO);
    assert_int_equal(sim_target_state(H.t), SIM_TARGET_RUNNING);
    uint32_t tx, rx;
    sim_target_ids(H.t, &tx, &rx);
    assert_int_equal(tx, 0x80800800u);
    assert_int_equal(rx, 0x80800000u);

    /* A break-in now: the exception is retried forever, with the sync bit. */
    uint8_t b = 0x62;
    host_clear(&H);
    host_raw(&H, &b, 1);
    host_tick(&H, MS, MS);
    for (int k = 0; k < 60; k++)
        host_tick(&H, 600 * MS, 0);
    assert_int_equal(H.n, 61);
    for (int i = 0; i < H.n; i++) {
        assert_int_equal(H.pkts[i].type, KDH_WIRE_TYPE_STATE_CHANGE64);
        assert_int_equal(H.pkts[i].id, 0x80800800u);
    }
    assert_int_equal(sim_target_state(H.t), SIM_TARGET_SENDING);
}

/* A 'b' while the target waits for the ACK of a print becomes a break once the print is through,
 * even when the ACK follows right after it; while stopped, a 'b' means nothing. */
static void test_breakin_during_print(void **state)
{
    host_boot(&H);
    H.ack_prints = 0;
    host_clear(&H);
    host_tick(&H, MS, MS);
    int i = host_find(&H, 0, 0, KDH_WIRE_TYPE_DEBUG_IO);
    assert_true(i >= 0);
    uint8_t b = 0x62;
    host_raw(&H, &b, 1);
    host_control(&H, KDH_WIRE_TYPE_ACKNOWLEDGE, H.pkts[i].id);
    assert_int_equal(sim_target_state(H.t), SIM_TARGET_RUNNING);
    host_clear(&H);
    kdh_wire_state_change_t sc;
    host_wait_state_change(&H, 2, &sc);
    assert_true(sc.program_counter == base() + FAKE_BWS);

    /* stopped: 'b', step past the int3, Continue: no break follows, the workload prints again */
    host_raw(&H, &b, 1);
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_GET_CONTEXT), r;
    const uint8_t *d;
    size_t dl;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    uint8_t ctx[0x4D0];
    memcpy(ctx, d, sizeof ctx);
    kdh_put_u64(ctx + 0xF8, base() + FAKE_BWS + 1);
    m = host_req(KDH_WIRE_API_SET_CONTEXT);
    host_request(&H, &m, ctx, sizeof ctx, &r, &d, &dl);
    host_cont2(&H, 0);
    H.ack_prints = 1;
    host_clear(&H);
    host_tick(&H, MS, MS);
    assert_int_equal(host_find(&H, 0, 0, KDH_WIRE_TYPE_STATE_CHANGE64), -1);
    assert_true(host_find(&H, 0, 0, KDH_WIRE_TYPE_DEBUG_IO) >= 0);
}

/* Untrusted host bytes: seeded noise mixed with leaders, oversize and truncated headers and
 * valid requests with random fields. The target must neither crash nor lose its way: afterwards
 * a RESET still brings the echo and a state change. (Run under ASan/UBSan in CI.) */
static void test_random_host_bytes(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    uint64_t x = 0x1234567887654321ull;
    uint8_t buf[512];
    for (int round = 0; round < 3000; round++) {
        size_t n = 0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int kind = (int)(x % 4);
        if (kind == 0) { /* a leader, then noise */
            memset(buf, (x & 8) ? 0x30 : 0x69, 4);
            n = 4;
        } else if (kind == 1) { /* a valid manipulate request with random fields */
            uint8_t hdr[0x38];
            for (size_t i = 0; i < sizeof hdr; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                hdr[i] = (uint8_t)x;
            }
            kdh_put_u32(hdr, 0x3130 + (uint32_t)(x % 0x32));
            if (kdh_get_u32(hdr) == 0x313B || kdh_get_u32(hdr) == 0x3136 || kdh_get_u32(hdr) == 0x313C)
                kdh_put_u32(hdr, 0x3146); /* keep it stopped: no reboot, no continue */
            int m = kdh_wire_encode_data(buf, sizeof buf, 2, H.next_id, hdr, sizeof hdr);
            n = m > 0 ? (size_t)m : 0;
            H.next_id ^= (x >> 20) & 1;
        }
        size_t extra = (size_t)((x >> 32) % 64);
        for (size_t i = 0; i < extra && n < sizeof buf; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[n++] = (uint8_t)x;
        }
        host_clear(&H);
        host_raw(&H, buf, n);
        if (round % 50 == 0)
            host_tick(&H, 200 * MS, 0);
        /* answer whatever the target sends so that it does not wait for ever */
        for (int i = 0; i < H.n; i++)
            if (!H.pkts[i].is_control)
                host_control(&H, KDH_WIRE_TYPE_ACKNOWLEDGE, H.pkts[i].id);
    }
    host_tick(&H, 200 * MS, 0);
    host_clear(&H);
    host_control(&H, KDH_WIRE_TYPE_RESET, 0);
    int echo = host_find(&H, 0, 1, KDH_WIRE_TYPE_RESET);
    assert_true(echo >= 0);
    int sc_i = host_find(&H, echo, 0, KDH_WIRE_TYPE_STATE_CHANGE64);
    assert_true(sc_i >= 0);
    assert_int_equal(H.pkts[sc_i].id, 0x80800000u);
    sim_target_stats_t st;
    sim_target_stats(H.t, &st);
    assert_true(st.rx_bad > 0 && st.rx_packets > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_boot_sync_bit_and_load_symbols, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_resend_reset, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_and_lost_ack, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_bad_packets_resend, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_retry_policy, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_breakin_during_print, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_random_host_bytes, setup_x64, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
