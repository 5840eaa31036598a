/* test_selftest_target.c: the selftest's KD responder checked against hand-written wire bytes
 * (kd-protocol.md 1.5 and the walkthrough in 7): RESET echo, first state change with the sync
 * bit, ACKs, GetVersion and ReadVirtualMemory replies, duplicates dropped, RESEND on damage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "../../../src/cli/selftest.h"

typedef struct fixture {
    uv_loop_t loop;
    int master, slave;
    kdh_selftest_target_t *t;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    f->master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
    assert_true(f->master >= 0);
    assert_int_equal(grantpt(f->master), 0);
    assert_int_equal(unlockpt(f->master), 0);
    f->slave = open(ptsname(f->master), O_RDWR | O_NOCTTY | O_NONBLOCK);
    assert_true(f->slave >= 0);
    struct termios tio;
    tcgetattr(f->slave, &tio);
    cfmakeraw(&tio);
    tcsetattr(f->slave, TCSANOW, &tio);
    kdh_err_t err;
    assert_int_equal(kdh_selftest_target_start(&f->t, &f->loop, f->master, &err), KDH_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kdh_selftest_target_stop(f->t);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->slave);
    close(f->master);
    free(f);
    return 0;
}

static void host_send(fixture_t *f, const uint8_t *p, size_t n)
{
    assert_int_equal(write(f->slave, p, n), (ssize_t)n);
}

/* Runs the responder and collects exactly n bytes of its output (or fails after 2 s). */
static void host_expect_len(fixture_t *f, uint8_t *buf, size_t n)
{
    size_t got = 0;
    uint64_t end = uv_hrtime() + 2000000000ull;
    while (got < n && uv_hrtime() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        ssize_t r = read(f->slave, buf + got, n - got);
        if (r > 0)
            got += (size_t)r;
        else
            usleep(500);
    }
    assert_int_equal(got, n);
}

/* Nothing more arrives within 50 ms. */
static void host_expect_silence(fixture_t *f)
{
    uint64_t end = uv_hrtime() + 50000000ull;
    uint8_t b;
    while (uv_hrtime() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        assert_int_equal(read(f->slave, &b, 1), -1);
        usleep(500);
    }
}

static const uint8_t RESET_ID0[16] = {0x69, 0x69, 0x69, 0x69, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t RESEND_ID0[16] = {0x69, 0x69, 0x69, 0x69, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static void ack_bytes(uint8_t out[16], uint32_t id)
{
    const uint8_t a[16] = {0x69, 0x69, 0x69, 0x69, 0x04, 0, 0, 0,
                           (uint8_t)id, (uint8_t)(id >> 8), (uint8_t)(id >> 16), (uint8_t)(id >> 24), 0, 0, 0, 0};
    memcpy(out, a, 16);
}

/* GetVersion request of kd-protocol.md 7 with the given id low byte: 0x38 payload bytes, sum 0x77. */
static void get_version_request(uint8_t out[16 + 0x38 + 1], uint8_t id_low)
{
    memset(out, 0, 16 + 0x38 + 1);
    const uint8_t h[16] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x00, id_low, 0x00, 0x80, 0x80, 0x77, 0, 0, 0};
    memcpy(out, h, 16);
    out[16] = 0x46;
    out[17] = 0x31;
    out[16 + 0x38] = 0xAA;
}

/* Brings the responder through RESET and the (sync) state change, as a host would. */
static void do_reset(fixture_t *f)
{
    host_send(f, RESET_ID0, 16);
    uint8_t got[16 + 0xF4 + 1];
    host_expect_len(f, got, 16);
    assert_memory_equal(got, RESET_ID0, 16);
    host_expect_len(f, got, sizeof got);
    /* Data leader, type 7, ByteCount 0xF4, id 0x80800800 (INITIAL | SYNC). */
    const uint8_t h[12] = {0x30, 0x30, 0x30, 0x30, 0x07, 0x00, 0xF4, 0x00, 0x00, 0x08, 0x80, 0x80};
    assert_memory_equal(got, h, 12);
    uint32_t sum = 0;
    for (size_t i = 16; i < 16 + 0xF4; i++)
        sum += got[i];
    assert_int_equal(got[12] | got[13] << 8 | got[14] << 16 | (uint32_t)got[15] << 24, sum);
    assert_int_equal(got[16 + 0xF4], 0xAA);
    /* NewState 0x3030 (exception), code 0x80000003 @0x20. */
    assert_int_equal(got[16 + 0], 0x30);
    assert_int_equal(got[16 + 1], 0x30);
    const uint8_t bp[4] = {0x03, 0x00, 0x00, 0x80};
    assert_memory_equal(got + 16 + 0x20, bp, 4);
    uint8_t ack[16];
    ack_bytes(ack, 0x80800000u); /* the host ACKs with the sync bit cleared */
    host_send(f, ack, 16);
}

static void test_reset_and_get_version(void **state)
{
    fixture_t *f = *state;
    do_reset(f);
    uint8_t req[16 + 0x38 + 1];
    get_version_request(req, 0x00);
    host_send(f, req, sizeof req);

    uint8_t got[16 + 16 + 0x38 + 1];
    host_expect_len(f, got, sizeof got);
    uint8_t ack[16];
    ack_bytes(ack, 0x80800000u);
    assert_memory_equal(got, ack, 16);
    /* Reply: type 2, 0x38 bytes, id 0x80800001 (the target's id after its first ACKed packet). */
    const uint8_t h[12] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x00, 0x01, 0x00, 0x80, 0x80};
    assert_memory_equal(got + 16, h, 12);
    const uint8_t *p = got + 32;
    const uint8_t api_status[12] = {0x46, 0x31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(p, api_status, 12);
    /* DBGKD_GET_VERSION64 at 0x10: major 0x000F, minor 19041 = 0x4A61, protocol 6, secondary 2,
     * flags MP|DATA|PTR64 = 7, machine 0x8664, 12, 3, 0x31, 0. */
    const uint8_t ver[14] = {0x0F, 0x00, 0x61, 0x4A, 0x06, 0x02, 0x07, 0x00, 0x64, 0x86, 0x0C, 0x03, 0x31, 0x00};
    assert_memory_equal(p + 0x10, ver, sizeof ver);
    const uint8_t kern[8] = {0x00, 0x00, 0x34, 0x12, 0x05, 0xF8, 0xFF, 0xFF};
    assert_memory_equal(p + 0x20, kern, 8);
    assert_int_equal(got[sizeof got - 1], 0xAA);

    /* The same request again (host missed our ACK): ACKed, not answered twice. */
    host_send(f, req, sizeof req);
    host_expect_len(f, got, 16);
    assert_memory_equal(got, ack, 16);
    host_expect_silence(f);
    kdh_selftest_target_stats_t st = kdh_selftest_target_stats(f->t);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.resets, 1);
}

static void test_read_memory_and_resend(void **state)
{
    fixture_t *f = *state;
    do_reset(f);
    /* ReadVirtualMemory 0x3130, address 0xFFFFF80000000000, count 0x100: sum 0x358 as in 7. */
    uint8_t req[16 + 0x38 + 1];
    memset(req, 0, sizeof req);
    const uint8_t h[16] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x00, 0x00, 0x00, 0x80, 0x80, 0x58, 0x03, 0, 0};
    memcpy(req, h, 16);
    req[16] = 0x30;
    req[17] = 0x31;
    const uint8_t addr[8] = {0, 0, 0, 0, 0x00, 0xF8, 0xFF, 0xFF};
    memcpy(req + 16 + 0x10, addr, 8);
    req[16 + 0x19] = 0x01; /* TransferCount 0x100 */
    req[16 + 0x38] = 0xAA;

    /* First a damaged copy (one payload byte changed, checksum kept): RESEND, no ACK. */
    uint8_t bad[sizeof req];
    memcpy(bad, req, sizeof req);
    bad[16 + 0x30] = 0x01;
    host_send(f, bad, sizeof bad);
    uint8_t got[16 + 16 + 0x38 + 0x100 + 1];
    host_expect_len(f, got, 16);
    assert_memory_equal(got, RESEND_ID0, 16);

    host_send(f, req, sizeof req);
    host_expect_len(f, got, sizeof got);
    const uint8_t rh[8] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x01}; /* ByteCount 0x138 */
    assert_memory_equal(got + 16, rh, 8);
    const uint8_t *p = got + 32;
    assert_int_equal(p[0x1C] | p[0x1D] << 8, 0x100); /* ActualBytesRead */
    for (unsigned i = 0; i < 0x100; i++)
        assert_int_equal(p[0x38 + i], kdh_selftest_pattern(0xFFFFF80000000000ull + i));

    /* The host asks for the reply again: the same bytes come back. */
    host_send(f, RESEND_ID0, 16);
    uint8_t again[16 + 0x38 + 0x100 + 1];
    host_expect_len(f, again, sizeof again);
    assert_memory_equal(again, got + 16, sizeof again);
    assert_int_equal(kdh_selftest_target_stats(f->t).bad_packets, 1);
}

static void test_pattern_is_what_it_says(void **state)
{
    /* Hand-computed: a = 0x10 -> 0x10*7 + 0 + 0 + 0x11 = 0x81; a = 0x100 -> 0x700 + 3 + 0x11 -> 0x14. */
    assert_int_equal(kdh_selftest_pattern(0x10), 0x81);
    assert_int_equal(kdh_selftest_pattern(0x100), 0x14);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reset_and_get_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_memory_and_resend, setup, teardown),
        cmocka_unit_test(test_pattern_is_what_it_says),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
