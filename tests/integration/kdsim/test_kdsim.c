/* test_kdsim.c: starts a kdsim executable and talks to it like a host over a pty, TCP and a Unix
 * socket: 'b' + RESET -> RESET echo + state change, then GetVersion, then timed 3944-byte reads
 * whose bytes per second (both directions, 8N1) must be within 2% of 115200/10 = 11520.
 * usage: test_kdsim KDSIM FIXTURES-DIR [fake]   (exit 77 when kdsim or its fixtures are absent) */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "kdh/wire.h"

static const char *g_exe, *g_fixtures;
static int g_fake;

typedef struct child {
    pid_t pid;
    FILE *out;
    char addr[256];
    char status_line[512];
} child_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs kdsim with args; returns its exit code (for option errors), or -1 if it keeps running
 * (then c is filled from its first two stdout lines). */
static int start(child_t *c, const char *const *args, char *err_out, size_t err_cap)
{
    int out[2], errp[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(errp), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(errp[1], 2);
        close(out[0]);
        close(errp[0]);
        const char *argv[32];
        int n = 0;
        argv[n++] = g_exe;
        for (int i = 0; args[i] && n < 31; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(g_exe, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    close(errp[1]);
    memset(c, 0, sizeof *c);
    c->pid = pid;
    c->out = fdopen(out[0], "r");
    /* Raw reads (not stdio) so that poll() sees every byte of the first two lines. */
    char text[1024];
    size_t len = 0;
    double end = now_s() + 30;
    int eof = 0;
    while (!eof && now_s() < end) {
        char *nl = memchr(text, '\n', len);
        if (nl && memchr(nl + 1, '\n', len - (size_t)(nl + 1 - text)))
            break;
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t n = read(out[0], text + len, sizeof text - 1 - len);
        if (n <= 0)
            eof = 1;
        else
            len += (size_t)n;
    }
    text[len] = 0;
    if (eof || !strstr(text, "serving on ")) {
        int st;
        waitpid(pid, &st, 0);
        ssize_t n = read(errp[0], err_out, err_cap - 1);
        err_out[n > 0 ? n : 0] = 0;
        close(errp[0]);
        fclose(c->out);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    }
    close(errp[0]);
    const char *k = strstr(text, "serving on ") + 11;
    snprintf(c->addr, sizeof c->addr, "%.*s", (int)strcspn(k, "\n"), k);
    const char *second = strchr(text, '\n') + 1;
    snprintf(c->status_line, sizeof c->status_line, "%.*s", (int)strcspn(second, "\n"), second);
    return -1;
}

static void stop(child_t *c)
{
    kill(c->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 50; i++) {
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            fclose(c->out);
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 0);
            return;
        }
        usleep(100000);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    fclose(c->out);
    fail_msg("kdsim did not exit on SIGTERM");
}

/* ---- a tiny host ---------------------------------------------------------------------------- */

typedef struct line {
    int fd;
    kdh_wire_decoder_t dec;
    uint8_t pending[8192];
    size_t plen, poff;
    uint64_t rx_bytes, tx_bytes;
} line_t;

static void line_write(line_t *l, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(l->fd, b, n);
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = l->fd, .events = POLLOUT};
            poll(&pf, 1, 100);
            continue;
        }
        assert_true(w > 0);
        b += w;
        n -= (size_t)w;
        l->tx_bytes += (uint64_t)w;
    }
}

static void send_control(line_t *l, uint16_t type, uint32_t id)
{
    uint8_t b[16];
    kdh_wire_encode_control(b, sizeof b, type, id);
    line_write(l, b, 16);
}

static void send_manip(line_t *l, const kdh_wire_manip_t *m, uint32_t id)
{
    uint8_t hdr[KDH_WIRE_MANIP_SIZE], f[KDH_WIRE_FRAME_MAX];
    kdh_wire_manip_encode(m, KDH_WIRE_ARCH_AMD64, hdr);
    int n = kdh_wire_encode_data(f, sizeof f, KDH_WIRE_TYPE_STATE_MANIPULATE, id, hdr, sizeof hdr);
    assert_true(n > 0);
    line_write(l, f, (size_t)n);
}

/* Next packet (copied into *pkt / buf), or 0 on timeout. Decoder errors are skipped. */
static int next_packet(line_t *l, double timeout, kdh_wire_packet_t *pkt, uint8_t *buf)
{
    double end = now_s() + timeout;
    for (;;) {
        while (l->poff < l->plen) {
            kdh_wire_event_t ev;
            size_t n = kdh_wire_decoder_feed(&l->dec, l->pending + l->poff, l->plen - l->poff, &ev);
            l->poff += n;
            if (ev.kind == KDH_WIRE_EV_PACKET) {
                *pkt = ev.packet;
                if (ev.packet.payload_len)
                    memcpy(buf, ev.packet.payload, ev.packet.payload_len);
                pkt->payload = buf;
                return 1;
            }
        }
        double left = end - now_s();
        if (left <= 0)
            return 0;
        struct pollfd pf = {.fd = l->fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        ssize_t n = read(l->fd, l->pending, sizeof l->pending);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN)
                continue;
            return 0;
        }
        l->rx_bytes += (uint64_t)n;
        l->plen = (size_t)n;
        l->poff = 0;
    }
}

static int open_line(const char *addr)
{
    if (addr[0] == '/') {
        int fd = open(addr, O_RDWR | O_NOCTTY | O_NONBLOCK);
        assert_true(fd >= 0);
        struct termios t;
        tcgetattr(fd, &t);
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
        return fd;
    }
    if (strncmp(addr, "tcp:", 4) == 0) {
        const char *port = strrchr(addr, ':');
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port + 1))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
    }
    assert_true(strncmp(addr, "unix:", 5) == 0);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    size_t plen = strlen(addr + 5);
    assert_true(plen < sizeof su.sun_path);
    memcpy(su.sun_path, addr + 5, plen + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&su, sizeof su), 0);
    return fd;
}

static uint8_t g_buf[KDH_WIRE_FRAME_MAX];

/* 'b', RESET -> RESET echo, then a state change (ACKed). Returns the next host id. */
static void sync_with_target(line_t *l)
{
    uint8_t b = KDH_WIRE_BREAKIN_BYTE;
    kdh_wire_packet_t p;
    int echoed = 0, stopped = 0;
    for (int attempt = 0; attempt < 10 && !stopped; attempt++) {
        line_write(l, &b, 1);
        usleep(200000);
        send_control(l, KDH_WIRE_TYPE_RESET, 0);
        double end = now_s() + 2.0;
        while (!stopped && now_s() < end && next_packet(l, end - now_s(), &p, g_buf)) {
            if (p.is_control && p.type == KDH_WIRE_TYPE_RESET)
                echoed = 1;
            else if (!p.is_control)
                send_control(l, KDH_WIRE_TYPE_ACKNOWLEDGE, p.id & ~KDH_WIRE_SYNC_BIT);
            if (!p.is_control && echoed && p.type == KDH_WIRE_TYPE_STATE_CHANGE64) {
                assert_int_equal(p.id, KDH_WIRE_INITIAL_ID); /* ids restart after RESET */
                assert_true(p.payload_len >= KDH_WIRE_STATE_CHANGE_SIZE);
                stopped = 1;
            }
        }
    }
    assert_true(echoed);
    assert_true(stopped);
}

static void request(line_t *l, const kdh_wire_manip_t *m, uint32_t id, kdh_wire_manip_t *r,
                    size_t *dlen)
{
    send_manip(l, m, id);
    kdh_wire_packet_t p;
    int acked = 0;
    while (next_packet(l, 10, &p, g_buf)) {
        if (p.is_control && p.type == KDH_WIRE_TYPE_ACKNOWLEDGE && p.id == id) {
            acked = 1;
            continue;
        }
        if (!p.is_control && p.type == KDH_WIRE_TYPE_STATE_MANIPULATE) {
            send_control(l, KDH_WIRE_TYPE_ACKNOWLEDGE, p.id);
            const uint8_t *d;
            kdh_err_t err;
            assert_int_equal(kdh_wire_manip_decode(p.payload, p.payload_len, KDH_WIRE_ARCH_AMD64, r, &d,
                                                   dlen, &err), KDH_OK);
            assert_true(acked);
            return;
        }
    }
    fail_msg("no reply to API 0x%x", m->api);
}

static void exchange(const char *mode, int measure, int x86)
{
    char sock[128] = "", errbuf[512];
    snprintf(sock, sizeof sock, "/tmp/kdsim-test-%d.sock", (int)getpid());
    const char *args[16] = {mode, NULL};
    int n = 1;
    if (strcmp(mode, "--tcp") == 0)
        args[n++] = "0";
    if (strcmp(mode, "--unix") == 0)
        args[n++] = sock;
    args[n++] = "--fixtures";
    args[n++] = g_fixtures;
    args[n++] = "--baud";
    args[n++] = "115200";
    if (x86) {
        args[n++] = "--arch";
        args[n++] = "x86";
    }
    args[n] = NULL;
    child_t c;
    assert_int_equal(start(&c, args, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(c.status_line, x86 ? "x86" : "x64"));
    assert_non_null(strstr(c.status_line, "kernel base 0x"));

    line_t l;
    memset(&l, 0, sizeof l);
    kdh_wire_decoder_init(&l.dec);
    l.fd = open_line(c.addr);
    sync_with_target(&l);

    kdh_wire_manip_t m, r;
    size_t dlen;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_GET_VERSION;
    m.return_status = KDH_WIRE_STATUS_PENDING;
    request(&l, &m, 0x80800000u, &r, &dlen);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(r.u.version.machine_type, x86 ? 0x014C : 0x8664);
    assert_int_equal(r.u.version.protocol_version, 6);
    assert_true(r.u.version.kern_base >> 63);
    if (g_fake)
        assert_true(r.u.version.kern_base == (x86 ? 0xFFFFFFFF80000000ull : 0xFFFFF80000000000ull));
    uint64_t kb = r.u.version.kern_base;

    if (measure) {
        /* 8 maximal reads back to back; every byte either way costs 10 bit times at 115200.
         * The machine is shared, so a burst of load may slow one measurement: up to 3 tries,
         * and a line that is systematically off fails all of them. */
        uint32_t id = 0x80800001u;
        double rate = 0;
        for (int attempt = 0; attempt < 3; attempt++) {
            uint64_t rx0 = l.rx_bytes, tx0 = l.tx_bytes;
            double t0 = now_s();
            for (int i = 0; i < 8; i++, id ^= 1) {
                memset(&m, 0, sizeof m);
                m.api = KDH_WIRE_API_READ_VIRTUAL_MEMORY;
                m.u.mem.address = kb;
                m.u.mem.transfer_count = KDH_WIRE_READ_MAX;
                request(&l, &m, id, &r, &dlen);
                assert_int_equal(dlen, KDH_WIRE_READ_MAX);
            }
            double dt = now_s() - t0;
            rate = (double)((l.rx_bytes - rx0) + (l.tx_bytes - tx0)) / dt;
            print_message("line rate %.0f bytes/s over %.3f s (expected 11520)\n", rate, dt);
            if (rate > 11520 * 0.98 && rate < 11520 * 1.02)
                break;
        }
        assert_true(rate > 11520 * 0.98 && rate < 11520 * 1.02);
    }
    close(l.fd);
    stop(&c);
}

static void test_pty(void **state)
{
    exchange("--pty", 0, 0);
}

static void test_x86_tcp(void **state)
{
    exchange("--tcp", 0, 1);
}

static void test_tcp_and_baud(void **state)
{
    exchange("--tcp", 1, 0);
}

static void test_unix(void **state)
{
    exchange("--unix", 0, 0);
}

/* Waits for a state change, ACKing whatever else comes (prints); decodes it into sc. */
static void wait_state_change(line_t *l, double timeout, kdh_wire_state_change_t *sc)
{
    kdh_wire_packet_t p;
    double end = now_s() + timeout;
    while (now_s() < end && next_packet(l, end - now_s(), &p, g_buf)) {
        if (p.is_control)
            continue;
        send_control(l, KDH_WIRE_TYPE_ACKNOWLEDGE, p.id & ~KDH_WIRE_SYNC_BIT);
        if (p.type == KDH_WIRE_TYPE_STATE_CHANGE64) {
            kdh_err_t err;
            assert_int_equal(kdh_wire_state_change_decode(p.payload, p.payload_len, KDH_WIRE_ARCH_AMD64,
                                                          sc, &err), KDH_OK);
            return;
        }
    }
    fail_msg("no state change within %.0f s", timeout);
}

static void continue2(line_t *l, uint32_t *id, uint32_t trace)
{
    kdh_wire_manip_t m;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_CONTINUE2;
    m.u.cont2.status = KDH_WIRE_DBG_CONTINUE;
    m.u.cont2.trace_flag = trace;
    m.u.cont2.symbol_start = 1;
    send_manip(l, &m, *id);
    *id ^= 1;
}

static uint64_t read_u64(line_t *l, uint32_t *id, uint64_t va)
{
    kdh_wire_manip_t m, r;
    size_t dlen;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_READ_VIRTUAL_MEMORY;
    m.u.mem.address = va;
    m.u.mem.transfer_count = 8;
    request(l, &m, *id, &r, &dlen);
    *id ^= 1;
    assert_int_equal(dlen, 8);
    return kdh_get_u64(g_buf + KDH_WIRE_MANIP_SIZE);
}

/* x64 break-in on the running workload: the stop is at KDDEBUGGER_DATA64.BreakpointWithStatus,
 * [RSP] holds the interrupted PC, and stepping past the int3 returns there. */
static void test_breakin_step(void **state)
{
    const char *args[] = {"--tcp", "0", "--fixtures", g_fixtures, "--baud", "0", NULL};
    char errbuf[512];
    child_t c;
    assert_int_equal(start(&c, args, errbuf, sizeof errbuf), -1);
    line_t l;
    memset(&l, 0, sizeof l);
    kdh_wire_decoder_init(&l.dec);
    l.fd = open_line(c.addr);
    sync_with_target(&l); /* stopped at the kernel's load-symbols */
    uint32_t id = 0x80800000u;
    kdh_wire_manip_t m, r;
    size_t dlen;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_GET_VERSION;
    request(&l, &m, id, &r, &dlen);
    id ^= 1;
    uint64_t kdbg = read_u64(&l, &id, r.u.version.debugger_data_list);
    uint64_t bws = read_u64(&l, &id, kdbg + 0x20);

    kdh_wire_state_change_t sc;
    continue2(&l, &id, 0);
    wait_state_change(&l, 10, &sc); /* the HAL's load-symbols */
    assert_int_equal(sc.new_state, KDH_WIRE_STATE_LOAD_SYMBOLS);
    continue2(&l, &id, 0);
    usleep(300000);
    uint8_t b = KDH_WIRE_BREAKIN_BYTE;
    line_write(&l, &b, 1);
    wait_state_change(&l, 10, &sc);
    assert_int_equal(sc.new_state, KDH_WIRE_STATE_EXCEPTION);
    assert_int_equal(sc.u.exception.code, 0x80000003u);
    assert_true(sc.program_counter == bws);
    assert_int_equal(sc.report.instruction_stream[0], 0xCC);

    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_GET_CONTEXT;
    request(&l, &m, id, &r, &dlen);
    id ^= 1;
    assert_int_equal(dlen, 0x4D0);
    uint8_t ctx[0x4D0];
    memcpy(ctx, g_buf + KDH_WIRE_MANIP_SIZE, sizeof ctx);
    assert_true(kdh_get_u64(ctx + 0xF8) == bws);
    uint64_t ret = read_u64(&l, &id, kdh_get_u64(ctx + 0x98));
    kdh_put_u64(ctx + 0xF8, bws + 1);
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_SET_CONTEXT;
    m.u.set_context.context_flags = 0x10001F;
    uint8_t hdr[KDH_WIRE_MANIP_SIZE], f[KDH_WIRE_FRAME_MAX];
    kdh_wire_manip_encode(&m, KDH_WIRE_ARCH_AMD64, hdr);
    int n = kdh_wire_encode_data2(f, sizeof f, KDH_WIRE_TYPE_STATE_MANIPULATE, id, hdr, sizeof hdr, ctx,
                                  sizeof ctx);
    line_write(&l, f, (size_t)n);
    kdh_wire_packet_t p;
    int replied = 0;
    while (!replied && next_packet(&l, 10, &p, g_buf)) {
        if (!p.is_control && p.type == KDH_WIRE_TYPE_STATE_MANIPULATE) {
            send_control(&l, KDH_WIRE_TYPE_ACKNOWLEDGE, p.id);
            assert_int_equal(kdh_get_u32(p.payload + 8), 0); /* STATUS_SUCCESS */
            replied = 1;
        }
    }
    assert_true(replied);
    id ^= 1;
    continue2(&l, &id, 1);
    wait_state_change(&l, 10, &sc);
    assert_int_equal(sc.u.exception.code, 0x80000004u);
    assert_true(sc.program_counter == ret); /* the `ret` went back to the interrupted code */
    continue2(&l, &id, 0);
    close(l.fd);
    stop(&c);
}

/* --faults reboot=2s while the host holds the target stopped: the new boot announces itself
 * with the sync bit, and after a RESET the kernel is found at its new load address. */
static void test_reboot_fault(void **state)
{
    const char *args[] = {"--tcp", "0", "--fixtures", g_fixtures, "--baud", "0", "--faults", "reboot=2s",
                          NULL};
    char errbuf[512];
    child_t c;
    assert_int_equal(start(&c, args, errbuf, sizeof errbuf), -1);
    line_t l;
    memset(&l, 0, sizeof l);
    kdh_wire_decoder_init(&l.dec);
    l.fd = open_line(c.addr);
    sync_with_target(&l);
    kdh_wire_manip_t m, r;
    size_t dlen;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_GET_VERSION;
    request(&l, &m, 0x80800000u, &r, &dlen);
    uint64_t old_base = r.u.version.kern_base;

    kdh_wire_packet_t p;
    int synced = 0;
    double end = now_s() + 10;
    while (!synced && now_s() < end && next_packet(&l, end - now_s(), &p, g_buf)) {
        if (p.is_control)
            continue;
        send_control(&l, KDH_WIRE_TYPE_ACKNOWLEDGE, p.id & ~KDH_WIRE_SYNC_BIT);
        if (p.type == KDH_WIRE_TYPE_STATE_CHANGE64) {
            assert_int_equal(p.id, KDH_WIRE_INITIAL_ID | KDH_WIRE_SYNC_BIT);
            assert_int_equal(kdh_get_u32(p.payload), KDH_WIRE_STATE_LOAD_SYMBOLS);
            synced = 1;
        }
    }
    assert_true(synced);
    sync_with_target(&l);
    request(&l, &m, 0x80800000u, &r, &dlen);
    assert_true(r.u.version.kern_base != old_base);
    close(l.fd);
    stop(&c);
}

static void expect_usage_error(const char *const *args, const char *needle)
{
    child_t c;
    char err[512] = "";
    assert_int_equal(start(&c, args, err, sizeof err), 2);
    assert_non_null(strstr(err, needle));
    assert_non_null(strstr(err, "kdsim: "));
    assert_int_equal(strchr(err, '\n') - err, (long)strlen(err) - 1); /* one line */
}

static void test_bad_options(void **state)
{
    const char *a1[] = {"--pty", "--cpus", "9", "--fixtures", g_fixtures, NULL};
    expect_usage_error(a1, "--cpus");
    const char *a2[] = {"--fixtures", g_fixtures, NULL};
    expect_usage_error(a2, "--pty");
    const char *a3[] = {"--pty", "--arch", "arm", "--fixtures", g_fixtures, NULL};
    expect_usage_error(a3, "--arch");
    const char *a4[] = {"--tcp", "1", "--pty", "--fixtures", g_fixtures, NULL};
    expect_usage_error(a4, "exactly one");
    const char *a5[] = {"--pty", "--faults", "corrupt=2", "--fixtures", g_fixtures, NULL};
    expect_usage_error(a5, "corrupt");
    const char *a6[] = {"--pty", "--bogus", NULL};
    expect_usage_error(a6, "--bogus");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_kdsim KDSIM FIXTURES-DIR [fake]\n");
        return 2;
    }
    g_exe = argv[1];
    g_fixtures = argv[2];
    g_fake = argc > 3 && strcmp(argv[3], "fake") == 0;
    if (access(g_exe, X_OK) != 0) {
        printf("skipped: %s is not built yet (needs the simulated machine)\n", g_exe);
        return 77;
    }
    const char *archs[2] = {"x64", "x86"};
    for (int i = 0; i < 2 && !g_fake; i++) {
        char k[1024];
        snprintf(k, sizeof k, "%s/%s/ntoskrnl.exe", g_fixtures, archs[i]);
        if (access(k, R_OK) != 0) {
            printf("skipped: fixture %s is missing (build target 'fixtures')\n", k);
            return 77;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_pty),
        cmocka_unit_test(test_tcp_and_baud),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_x86_tcp),
        cmocka_unit_test(test_reboot_fault),
        cmocka_unit_test(test_breakin_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
