/* test_pty.c: the serial transport over a real pseudo-terminal pair, the master playing the
 * cable's far end. Built twice: with the test-only pty shim linked in (KDH_WITH_SHIM), the
 * libserialport backend is exercised; without it, libserialport refuses the pty and the plain
 * termios fallback must take over with a notice. Also: hangup (the end, or reopened by its path),
 * backpressure, busy, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>

#include "transport_test_util.h"
#ifdef KDH_WITH_SHIM
#include "pty_shim.h"
#endif

static uint8_t pattern_byte(size_t i)
{
    return (uint8_t)((i * 7 + 3) % 251);
}

static void expect_backend(kdh_transport_t *t, const recorder_t *r)
{
#ifdef KDH_WITH_SHIM
    assert_int_equal(kdh_transport_kind(t), KDH_TRANSPORT_SERIAL);
    assert_int_equal(r->notices, 0);
    assert_true(kdh_pty_shim_hits() > 0);
#else
    assert_int_equal(kdh_transport_kind(t), KDH_TRANSPORT_TERMIOS);
    assert_int_equal(r->notices, 1);
    assert_non_null(strstr(r->notice, "pseudo-terminal"));
    assert_non_null(strstr(r->notice, "termios"));
#endif
}

static void test_roundtrip_and_settings(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char slave[128];
    int m = open_pty(slave, sizeof slave);
    assert_true(m >= 0);
    /* Stale bytes waiting in the port from before the open must be flushed away. A raw
     * helper fd keeps the slave open (and non-echoing) while they sit in its input queue. */
    int keep = open(slave, O_RDWR | O_NOCTTY | O_NONBLOCK);
    assert_true(keep >= 0);
    struct termios raw;
    assert_int_equal(tcgetattr(keep, &raw), 0);
    cfmakeraw(&raw);
    assert_int_equal(tcsetattr(keep, TCSANOW, &raw), 0);
    assert_int_equal(write_all(m, "stale", 5), 0);
    usleep(20000);

    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    kdh_transport_t *t = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_transport_open(&t, &loop, slave, 57600, &cb, &err), KDH_OK);
    expect_backend(t, &r);
    assert_string_equal(kdh_transport_name(t), slave);
    close(keep);

    /* The line discipline must be raw 8N1 without flow control at the asked speed. */
    int probe = open(slave, O_RDONLY | O_NOCTTY | O_NONBLOCK);
    assert_true(probe >= 0);
    struct termios tio;
    assert_int_equal(tcgetattr(probe, &tio), 0);
    close(probe);
    assert_int_equal(tio.c_cflag & CSIZE, CS8);
    assert_int_equal(tio.c_cflag & (PARENB | CSTOPB | CRTSCTS), 0);
    assert_int_equal(tio.c_iflag & (IXON | IXOFF | ICRNL | ISTRIP), 0);
    assert_int_equal(tio.c_lflag & (ICANON | ECHO | ISIG), 0);
    assert_int_equal(tio.c_oflag & OPOST, 0);
    assert_int_equal(cfgetospeed(&tio), B57600);
    assert_int_equal(cfgetispeed(&tio), B57600);

    /* Host -> target. */
    uint8_t out[300], got[300];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = pattern_byte(i);
    assert_int_equal(kdh_transport_write(t, out, sizeof out, &err), KDH_OK);
    assert_int_equal(read_master(&loop, m, got, sizeof got, 3000), sizeof got);
    assert_memory_equal(got, out, sizeof out);
    assert_int_equal(kdh_transport_bytes_out(t), 300);
    assert_int_equal(kdh_transport_pending(t), 0);

    /* Target -> host, more than one read's worth; "stale" must not show up. */
    static uint8_t big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = pattern_byte(i + 11);
    assert_int_equal(write_all(m, big, sizeof big), 0);
    uint64_t end = uv_hrtime() + 3000000000ull;
    while (r.in_len < sizeof big && uv_hrtime() < end)
        uv_run(&loop, UV_RUN_NOWAIT), usleep(500);
    assert_int_equal(r.in_len, sizeof big);
    assert_memory_equal(r.in, big, sizeof big);
    assert_int_equal(kdh_transport_bytes_in(t), sizeof big);
    assert_int_equal(r.errors, 0);

    kdh_transport_close(t);
    assert_int_equal(finish_loop(&loop), 0);
    close(m);
}

static void test_symlink_is_resolved(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char slave[128];
    int m = open_pty(slave, sizeof slave);
    assert_true(m >= 0);
    char dir[] = "/tmp/kdh-link-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char link[256];
    snprintf(link, sizeof link, "%s/usb-FTDI_FT232R-if00-port0", dir);
    assert_int_equal(symlink(slave, link), 0);

    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    kdh_transport_t *t = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_transport_open(&t, &loop, link, 115200, &cb, &err), KDH_OK);
    assert_string_equal(kdh_transport_name(t), slave);
    expect_backend(t, &r);
    kdh_transport_close(t);
    assert_int_equal(finish_loop(&loop), 0);
    unlink(link);
    rmdir(dir);
    close(m);
}

static void hangup_case(int close_inside_callback)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char slave[128];
    int m = open_pty(slave, sizeof slave);
    assert_true(m >= 0);
    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    kdh_transport_t *t = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_transport_open(&t, &loop, slave, 115200, &cb, &err), KDH_OK);
    if (close_inside_callback)
        r.close_on_error = t;
    /* A little traffic first, then the far end disappears (cable pulled). */
    assert_int_equal(write_all(m, "abc", 3), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    close(m);
    assert_true(run_until(&loop, &r.errors, 3000));
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.error_code, KDH_EHANGUP);
    assert_non_null(strstr(r.error_msg, slave));
    assert_non_null(strstr(r.error_msg, "hung up"));
    if (!close_inside_callback) {
        assert_int_equal(kdh_transport_write(t, "x", 1, &err), KDH_EHANGUP);
        /* Still exactly one report, however long the loop runs on. */
        int never = 0;
        run_until(&loop, &never, 100);
        assert_int_equal(r.errors, 1);
        kdh_transport_close(t);
    }
    assert_int_equal(finish_loop(&loop), 0);
}

static void test_hangup(void **state)
{
    hangup_case(0);
}

static void test_hangup_close_in_callback(void **state)
{
    hangup_case(1);
}

/* A USB adapter unplugged and plugged back: the far end closes (the device node goes away with
 * its by-id link), then a new device appears behind the same link. With reopen_serial the
 * transport reports both in notices, drops what is written meanwhile and carries bytes again
 * both ways on the new device; no error is reported. close_while_out: the owner closes it while
 * it is still waiting for the device, which must free everything (the loop ends empty). */
static void hangup_reopen_case(int close_while_out)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char slave[128];
    int m = open_pty(slave, sizeof slave);
    assert_true(m >= 0);
    char dir[] = "/tmp/kdh-reopen-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char link[256];
    snprintf(link, sizeof link, "%s/usb-FTDI_FT232R-if00-port0", dir);
    assert_int_equal(symlink(slave, link), 0);

    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    cb.reopen_serial = 1;
    kdh_transport_t *t = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_transport_open(&t, &loop, link, 115200, &cb, &err), KDH_OK);
    int base = r.notices; /* the termios fallback's, without the shim */
    assert_int_equal(write_all(m, "abc", 3), 0);
    PUMP_UNTIL(&loop, r.in_len >= 3, 3000);
    assert_int_equal(r.in_len, 3);

    /* unplugged: the node and its link go away */
    close(m);
    unlink(link);
    PUMP_UNTIL(&loop, r.notices > base, 3000);
    assert_int_equal(r.notices, base + 1);
    assert_non_null(strstr(r.notice, "hung up"));
    assert_non_null(strstr(r.notice, link));
    assert_int_equal(kdh_transport_write(t, "lost", 4, &err), KDH_OK);
    int never = 0;
    run_until(&loop, &never, 400); /* a few attempts fail: no such device yet */
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.notices, base + 1);
    if (close_while_out) {
        kdh_transport_close(t);
        assert_int_equal(finish_loop(&loop), 0);
        rmdir(dir);
        return;
    }

    /* plugged back: a new device behind the same link */
    char slave2[128];
    int m2 = open_pty(slave2, sizeof slave2);
    assert_true(m2 >= 0);
    assert_int_equal(symlink(slave2, link), 0);
    PUMP_UNTIL(&loop, r.notices > base + 1, 5000);
    assert_int_equal(r.notices, base + 2);
    assert_non_null(strstr(r.notice, "port is back"));
    assert_non_null(strstr(r.notice, "4 byte(s)"));
    assert_string_equal(kdh_transport_name(t), slave2);
    assert_int_equal(r.errors, 0);

    assert_int_equal(kdh_transport_write(t, "hello", 5, &err), KDH_OK);
    uint8_t got[5];
    assert_int_equal(read_master(&loop, m2, got, sizeof got, 3000), 5);
    assert_memory_equal(got, "hello", 5);
    assert_int_equal(write_all(m2, "xyz", 3), 0);
    PUMP_UNTIL(&loop, r.in_len >= 6, 3000);
    assert_int_equal(r.in_len, 6);
    assert_memory_equal(r.in, "abcxyz", 6);

    kdh_transport_close(t);
    assert_int_equal(finish_loop(&loop), 0);
    close(m2);
    unlink(link);
    rmdir(dir);
}

static void test_hangup_reopen(void **state)
{
    hangup_reopen_case(0);
}

static void test_hangup_close_while_out(void **state)
{
    hangup_reopen_case(1);
}

static void test_backpressure_and_drain(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char slave[128];
    int m = open_pty(slave, sizeof slave);
    assert_true(m >= 0);
    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    kdh_transport_t *t = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_transport_open(&t, &loop, slave, 115200, &cb, &err), KDH_OK);

    static uint8_t out[KDH_TRANSPORT_WRITE_CAP + 1], got[KDH_TRANSPORT_WRITE_CAP];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = pattern_byte(i);
    /* Without the loop running nothing leaves: the buffer takes exactly its capacity. */
    assert_int_equal(kdh_transport_write(t, out, 1000, &err), KDH_OK);
    assert_int_equal(kdh_transport_write(t, out + 1000, KDH_TRANSPORT_WRITE_CAP - 1000, &err), KDH_OK);
    assert_int_equal(kdh_transport_pending(t), KDH_TRANSPORT_WRITE_CAP);
    assert_int_equal(kdh_transport_write(t, out + KDH_TRANSPORT_WRITE_CAP, 1, &err), KDH_EBUSY);
    assert_int_equal(err.code, KDH_EBUSY);
    assert_int_equal(kdh_transport_write(t, out, KDH_TRANSPORT_WRITE_CAP + 1, &err), KDH_ERANGE);
    assert_int_equal(kdh_transport_pending(t), KDH_TRANSPORT_WRITE_CAP);

    assert_int_equal(read_master(&loop, m, got, sizeof got, 5000), sizeof got);
    assert_memory_equal(got, out, sizeof got);
    int never = 0;
    run_until(&loop, &never, 20);
    assert_int_equal(kdh_transport_pending(t), 0);
    assert_int_equal(r.drains, 1);
    assert_int_equal(kdh_transport_write(t, out + KDH_TRANSPORT_WRITE_CAP, 1, &err), KDH_OK);
    assert_int_equal(read_master(&loop, m, got, 1, 2000), 1);
    assert_int_equal(got[0], out[KDH_TRANSPORT_WRITE_CAP]);

    kdh_transport_close(t);
    assert_int_equal(finish_loop(&loop), 0);
    close(m);
}

static void test_busy(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char slave[128];
    int m = open_pty(slave, sizeof slave);
    assert_true(m >= 0);
    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    kdh_transport_t *a = NULL, *b = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_transport_open(&a, &loop, slave, 115200, &cb, &err), KDH_OK);
    assert_int_equal(kdh_transport_open(&b, &loop, slave, 115200, &cb, &err), KDH_EBUSY);
    assert_null(b);
    char want[400];
    snprintf(want, sizeof want, "%s: busy, another program holds it; find it with fuser -v %s", slave, slave);
    assert_string_equal(err.msg, want);
    kdh_transport_close(a);
    assert_int_equal(finish_loop(&loop), 0);
    close(m);
}

static int open_err(const char *spec, unsigned baud, kdh_err_t *err)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    recorder_t *r = calloc(1, sizeof *r);
    kdh_transport_cb_t cb = rec_callbacks(r);
    kdh_transport_t *t = (kdh_transport_t *)1;
    int rc = kdh_transport_open(&t, &loop, spec, baud, &cb, err);
    assert_null(t);
    assert_int_equal(finish_loop(&loop), 0);
    free(r);
    return rc;
}

static void test_errors(void **state)
{
    kdh_err_t err = {0};
    assert_int_equal(open_err("/dev/ttyS9-kdh-absent", 115200, &err), KDH_ENOTFOUND);
    assert_string_equal(err.msg, "/dev/ttyS9-kdh-absent: no such device; list ports with ls /dev/serial/by-id");

    assert_int_equal(open_err("/dev/null", 115200, &err), KDH_EINVAL);
    assert_string_equal(err.msg, "/dev/null: not a serial device (a tty was expected)");

    char file[] = "/tmp/kdh-notatty-XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(open_err(file, 115200, &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "not a serial device"));
    unlink(file);

    char slave[128];
    int m = open_pty(slave, sizeof slave);
    assert_true(m >= 0);
    const unsigned bad[] = {0, 4800, 9599, 14400, 115201, 230400};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(open_err(slave, bad[i], &err), KDH_ERANGE);
        char want[64];
        snprintf(want, sizeof want, "baud %u is not supported", bad[i]);
        assert_non_null(strstr(err.msg, want));
    }
    const unsigned good[] = {9600, 19200, 38400, 57600, 115200};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(kdh_transport_check_baud(good[i], NULL), KDH_OK);
    close(m);
}

/* Permission denied is checked for real: a child drops to user nobody, who may not open a
 * pty slave that belongs to root with mode 0620. */
static void test_permission_denied(void **state)
{
    if (geteuid() != 0)
        skip();
    char slave[128];
    int m = open_pty(slave, sizeof slave);
    assert_true(m >= 0);
    assert_int_equal(chmod(slave, 0600), 0);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(3);
        uv_loop_t loop;
        uv_loop_init(&loop);
        recorder_t *r = calloc(1, sizeof *r);
        kdh_transport_cb_t cb = rec_callbacks(r);
        kdh_transport_t *t = NULL;
        kdh_err_t err = {0};
        int rc = kdh_transport_open(&t, &loop, slave, 115200, &cb, &err);
        if (write(pipefd[1], err.msg, strlen(err.msg)) < 0)
            _exit(4);
        _exit(rc == KDH_EIO ? 0 : 1);
    }
    close(pipefd[1]);
    char msg[300] = {0};
    ssize_t n = read(pipefd[0], msg, sizeof msg - 1);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    close(m);
    assert_true(n > 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char want[300];
    snprintf(want, sizeof want, "%s: permission denied; add your user to the dialout group", slave);
    assert_memory_equal(msg, want, strlen(want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_settings),
        cmocka_unit_test(test_symlink_is_resolved),
        cmocka_unit_test(test_hangup),
        cmocka_unit_test(test_hangup_close_in_callback),
        cmocka_unit_test(test_hangup_reopen),
        cmocka_unit_test(test_hangup_close_while_out),
        cmocka_unit_test(test_backpressure_and_drain),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_permission_denied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
