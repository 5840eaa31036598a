/* test_selftest_link.c: runs the built `kdharvest selftest-link` and checks its summary line
 * against byte counts worked out by hand from the wire format (kd-protocol.md 1.2, 3, 7):
 *   host -> target: RESET 16 + ACK of the state change 16 + per round trip (request 16+0x38+1
 *                   = 73, ACK of the reply 16)                      = 32 + 89 N
 *   target -> host: RESET echo 16 + state change 16+0xF4+1 = 261, per GetVersion ACK 16 +
 *                   reply 73, per ReadVirtualMemory ACK 16 + reply 73 + L bytes, where request
 *                   i (odd) reads L = 1 + (997 (i-1)/2 mod 3944) bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KDHARVEST KDH_BINARY_DIR "/src/cli/kdharvest"

extern char **environ;

static int run(char **argv, char *out, size_t outcap, char *err, size_t errcap)
{
    char op[] = "/tmp/kdh-st-out-XXXXXX", ep[] = "/tmp/kdh-st-err-XXXXXX";
    int ofd = mkstemp(op), efd = mkstemp(ep);
    unlink(op);
    unlink(ep);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, ofd, 1);
    posix_spawn_file_actions_adddup2(&fa, efd, 2);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, KDHARVEST, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st;
    waitpid(pid, &st, 0);
    ssize_t n = pread(ofd, out, outcap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    n = pread(efd, err, errcap - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(ofd);
    close(efd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_run(unsigned packets, unsigned baud)
{
    char n[16], b[16];
    snprintf(n, sizeof n, "%u", packets);
    snprintf(b, sizeof b, "%u", baud);
    char *argv[] = {"kdharvest", "selftest-link", "--packets", n, "--baud", b, NULL};
    static char out[4096], err[4096];
    int rc = run(argv, out, sizeof out, err, sizeof err);
    if (rc != 0)
        fail_msg("exit %d\nstdout: %s\nstderr: %s", rc, out, err);

    unsigned ok, total, versions, reads, got_baud;
    unsigned long long verified, h2t, t_in, t2h, h_in, errors;
    char dev[64], backend[32];
    int fields = sscanf(out,
                        "selftest-link: ok: %u/%u round trips (%u GetVersion, %u ReadVirtualMemory, %llu bytes "
                        "verified) over %63s (%31[^)]) at %u baud; host->target %llu bytes (target counted %llu), "
                        "target->host %llu bytes (host counted %llu); errors %llu;",
                        &ok, &total, &versions, &reads, &verified, dev, backend, &got_baud, &h2t, &t_in, &t2h,
                        &h_in, &errors);
    if (fields != 13)
        fail_msg("summary line not recognised (%d fields): %s", fields, out);

    unsigned long long read_bytes = 0;
    for (unsigned i = 1; i < packets; i += 2)
        read_bytes += 1 + (997ull * ((i - 1) / 2)) % 3944;
    unsigned nv = (packets + 1) / 2, nr = packets / 2;
    assert_int_equal(ok, packets);
    assert_int_equal(total, packets);
    assert_int_equal(versions, nv);
    assert_int_equal(reads, nr);
    assert_int_equal(verified, read_bytes);
    assert_int_equal(got_baud, baud);
    assert_memory_equal(dev, "/dev/pts/", 9);
    /* libserialport cannot open ptys (no shim in the real executable): termios, with a note. */
    assert_string_equal(backend, "termios");
    assert_non_null(strstr(err, "kdharvest: note: /dev/pts/"));
    assert_int_equal(h2t, 32ull + 89ull * packets);
    assert_int_equal(t_in, h2t);
    assert_int_equal(t2h, 16ull + 261ull + (16ull + 73ull) * packets + read_bytes);
    assert_int_equal(h_in, t2h);
    assert_int_equal(errors, 0);
}

static void test_default_baud(void **state)
{
    check_run(100, 115200);
}

static void test_small_and_slow(void **state)
{
    check_run(1, 9600);
    check_run(7, 57600);
}

/* 7888 round trips hold 3944 reads: every length 1..3944 once (sum 3944*3945/2), up to the
 * one-packet maximum. */
static void test_all_read_lengths(void **state)
{
    check_run(7888, 115200);
    unsigned long long sum = 0;
    for (unsigned i = 1; i < 7888; i += 2)
        sum += 1 + (997ull * ((i - 1) / 2)) % 3944;
    assert_int_equal(sum, 3944ull * 3945ull / 2);
}

static void test_bad_arguments(void **state)
{
    static char out[4096], err[4096];
    char *a1[] = {"kdharvest", "selftest-link", "--baud", "4800", NULL};
    assert_int_equal(run(a1, out, sizeof out, err, sizeof err), 2);
    assert_string_equal(err, "kdharvest: baud 4800 is not supported; use 9600, 19200, 38400, 57600 or 115200 "
                             "(the target's /BAUDRATE)\nTry 'kdharvest selftest-link --help'.\n");
    char *a2[] = {"kdharvest", "selftest-link", "--packets", "0", NULL};
    assert_int_equal(run(a2, out, sizeof out, err, sizeof err), 2);
    assert_string_equal(err, "kdharvest: --packets: 0 is outside 1..100000\nTry 'kdharvest selftest-link --help'.\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_baud),
        cmocka_unit_test(test_small_and_slow),
        cmocka_unit_test(test_all_read_lengths),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
