/* cmd_selftest.c: `kdharvest selftest-link`: the link end to end over a
 * real pseudo-terminal with no Windows machine: a minimal KD target (selftest_target.c) answers
 * on the pty master; the host side is the real stack (transport on the slave path, the link)
 * and runs N GetVersion / ReadVirtualMemory round trips, checking every answer. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdh/cli.h"
#include "kdh/link.h"
#include "kdh/transport.h"
#include "kdh/wire.h"
#include "selftest.h"

#define SELFTEST_BASE 0xFFFFF80512340000ull

typedef struct selftest {
    uv_loop_t loop;
    uv_timer_t deadline, drain;
    kdh_transport_t *tp;
    kdh_link_t *link;
    kdh_selftest_target_t *target;
    char slave[64];
    unsigned baud, packets;
    unsigned next;          /* index of the request outstanding (or next to send) */
    unsigned ok;            /* round trips verified */
    unsigned versions, reads;
    uint64_t verified_bytes;
    int started;            /* the state change arrived: round trips running */
    int finished;           /* 1 success, -1 failure */
    unsigned line_errors;
    char reason[512];
} selftest_t;

/* Request i: even -> GetVersion, odd -> the (i/2)-th ReadVirtualMemory, whose length steps by
 * 997 modulo 3944 (coprime), so 3944 reads cover every length 1..3944 once. */
static uint32_t read_len(unsigned i)
{
    return 1u + (uint32_t)(((uint64_t)(i / 2) * 997u) % KDH_WIRE_READ_MAX);
}

static uint64_t read_addr(unsigned i)
{
    return SELFTEST_BASE + (uint64_t)i * 0x1001u;
}

static void finish(selftest_t *s, int result, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void stop_all(selftest_t *s)
{
    uv_timer_stop(&s->deadline);
    uv_timer_stop(&s->drain);
    uv_stop(&s->loop);
}

static void finish(selftest_t *s, int result, const char *fmt, ...)
{
    if (s->finished)
        return;
    s->finished = result;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->reason, sizeof s->reason, fmt, ap);
        va_end(ap);
    }
    stop_all(s);
}

/* After the last reply, wait until the host's final ACK has reached the target, so the byte
 * counts of both ends describe the same conversation. */
static void on_drain_tick(uv_timer_t *t)
{
    selftest_t *s = t->data;
    kdh_selftest_target_stats_t ts = kdh_selftest_target_stats(s->target);
    if (kdh_transport_pending(s->tp) == 0 && ts.bytes_in == kdh_transport_bytes_out(s->tp) &&
        ts.bytes_out == kdh_transport_bytes_in(s->tp))
        finish(s, 1, NULL);
}

static void send_next(selftest_t *s);

static void on_sent(void *ctx, int status)
{
    selftest_t *s = ctx;
    if (status != KDH_OK)
        finish(s, -1, "request %u was not acknowledged: %s", s->next + 1, kdh_strerror(status));
}

static void send_next(selftest_t *s)
{
    if (s->next >= s->packets) {
        uv_timer_start(&s->drain, on_drain_tick, 1, 5);
        return;
    }
    kdh_wire_manip_t m;
    memset(&m, 0, sizeof m);
    m.return_status = KDH_WIRE_STATUS_PENDING;
    if (s->next % 2 == 0) {
        m.api = KDH_WIRE_API_GET_VERSION;
    } else {
        m.api = KDH_WIRE_API_READ_VIRTUAL_MEMORY;
        m.u.mem.address = read_addr(s->next);
        m.u.mem.transfer_count = read_len(s->next);
    }
    uint8_t hdr[KDH_WIRE_MANIP_SIZE];
    kdh_wire_manip_encode(&m, KDH_WIRE_ARCH_AMD64, hdr);
    kdh_err_t err = {0};
    if (kdh_link_send(s->link, KDH_WIRE_TYPE_STATE_MANIPULATE, hdr, sizeof hdr, NULL, 0, on_sent, s, &err) != KDH_OK)
        finish(s, -1, "cannot send request %u: %s", s->next + 1, err.msg);
}

static int check_version(selftest_t *s, const kdh_wire_manip_t *m)
{
    const kdh_wire_get_version_t *v = &m->u.version;
    if (v->major_version != KDH_SELFTEST_MAJOR || v->minor_version != KDH_SELFTEST_MINOR ||
        v->machine_type != KDH_WIRE_MACHINE_AMD64 || v->kern_base != KDH_SELFTEST_KERNBASE ||
        v->ps_loaded_module_list != KDH_SELFTEST_MODULE_LIST ||
        v->debugger_data_list != KDH_SELFTEST_DEBUGGER_DATA) {
        finish(s, -1, "request %u: GetVersion answer differs (build %u, machine 0x%04x, KernBase 0x%llx)",
               s->next + 1, v->minor_version, v->machine_type, (unsigned long long)v->kern_base);
        return -1;
    }
    s->versions++;
    return 0;
}

static int check_read(selftest_t *s, const kdh_wire_manip_t *m, const uint8_t *data, size_t len)
{
    uint64_t addr = read_addr(s->next);
    uint32_t want = read_len(s->next);
    if (m->u.mem.address != addr || m->u.mem.actual_count != want || len != want) {
        finish(s, -1, "request %u: read of %u bytes at 0x%llx answered with %u (%zu on the wire)", s->next + 1,
               want, (unsigned long long)addr, m->u.mem.actual_count, len);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (data[i] != kdh_selftest_pattern(addr + i)) {
            finish(s, -1, "request %u: byte at 0x%llx is 0x%02x, expected 0x%02x", s->next + 1,
                   (unsigned long long)addr + i, data[i], kdh_selftest_pattern(addr + i));
            return -1;
        }
    }
    s->reads++;
    s->verified_bytes += len;
    return 0;
}

static void on_packet(void *ctx, uint16_t type, uint32_t id, const uint8_t *payload, size_t len)
{
    selftest_t *s = ctx;
    if (s->finished)
        return;
    if (type == KDH_WIRE_TYPE_STATE_CHANGE64) {
        if (s->started) {
            finish(s, -1, "the target reported a second state change after %u round trips", s->ok);
            return;
        }
        s->started = 1;
        send_next(s);
        return;
    }
    if (type != KDH_WIRE_TYPE_STATE_MANIPULATE || !s->started) {
        finish(s, -1, "unexpected %s packet from the target", kdh_wire_type_name(type));
        return;
    }
    kdh_wire_manip_t m;
    const uint8_t *data = NULL;
    size_t data_len = 0;
    kdh_err_t err = {0};
    if (kdh_wire_manip_decode(payload, len, KDH_WIRE_ARCH_AMD64, &m, &data, &data_len, &err) != KDH_OK) {
        finish(s, -1, "request %u: malformed reply: %s", s->next + 1, err.msg);
        return;
    }
    uint32_t want_api = s->next % 2 == 0 ? KDH_WIRE_API_GET_VERSION : KDH_WIRE_API_READ_VIRTUAL_MEMORY;
    if (m.api != want_api || m.return_status != KDH_WIRE_STATUS_SUCCESS) {
        finish(s, -1, "request %u: reply for API 0x%04x with status 0x%08x (expected API 0x%04x, success)",
               s->next + 1, m.api, m.return_status, want_api);
        return;
    }
    if ((want_api == KDH_WIRE_API_GET_VERSION ? check_version(s, &m) : check_read(s, &m, data, data_len)) < 0)
        return;
    s->ok++;
    s->next++;
    send_next(s);
}

static void on_link_event(void *ctx, const kdh_link_event_t *ev)
{
    selftest_t *s = ctx;
    switch (ev->kind) {
    case KDH_LINK_EV_LINE_ERROR:
    case KDH_LINK_EV_RESYNC:
    case KDH_LINK_EV_RESET_SEEN:
        s->line_errors++;
        break;
    case KDH_LINK_EV_SEND_FAILED:
        finish(s, -1, "%s", ev->message ? ev->message : "a send failed");
        break;
    case KDH_LINK_EV_NO_PACKET:
        finish(s, -1, "%s", ev->message ? ev->message : "the target went silent");
        break;
    default:
        break;
    }
}

static int link_write(void *ctx, const uint8_t *buf, size_t len)
{
    selftest_t *s = ctx;
    return kdh_transport_write(s->tp, buf, len, NULL);
}

static void tp_bytes(void *ctx, const uint8_t *buf, size_t len)
{
    selftest_t *s = ctx;
    if (s->link)
        kdh_link_feed(s->link, buf, len);
}

static void tp_error(void *ctx, int code, const char *msg)
{
    finish(ctx, -1, "%s", msg);
}

static void tp_notice(void *ctx, const char *msg)
{
    fprintf(stderr, "kdharvest: note: %s\n", msg);
}

static void on_deadline(uv_timer_t *t)
{
    selftest_t *s = t->data;
    finish(s, -1, "timed out after %u of %u round trips%s", s->ok, s->packets,
           s->started ? "" : " (no state change from the target: the handshake did not complete)");
}

static const char *kind_name(kdh_transport_kind_t k)
{
    switch (k) {
    case KDH_TRANSPORT_SERIAL: return "libserialport";
    case KDH_TRANSPORT_TERMIOS: return "termios";
    case KDH_TRANSPORT_TCP: return "tcp";
    default: return "unix";
    }
}

static void print_summary(selftest_t *s, double secs)
{
    kdh_selftest_target_stats_t ts = kdh_selftest_target_stats(s->target);
    const kdh_link_stats_t *ls = kdh_link_stats(s->link);
    uint64_t errors = s->line_errors + ls->checksum_errors + ls->trailer_errors + ls->oversize_errors +
                      ls->truncated + ls->resends_sent + ls->resends_received + ls->retransmits +
                      ls->write_errors + ts.bad_packets;
    printf("selftest-link: %s: %u/%u round trips (%u GetVersion, %u ReadVirtualMemory, %llu bytes verified) "
           "over %s (%s) at %u baud; host->target %llu bytes (target counted %llu), "
           "target->host %llu bytes (host counted %llu); errors %llu; %.3f s\n",
           s->finished > 0 ? "ok" : "FAILED", s->ok, s->packets, s->versions, s->reads,
           (unsigned long long)s->verified_bytes, s->slave, kind_name(kdh_transport_kind(s->tp)), s->baud,
           (unsigned long long)kdh_transport_bytes_out(s->tp), (unsigned long long)ts.bytes_in,
           (unsigned long long)ts.bytes_out, (unsigned long long)kdh_transport_bytes_in(s->tp),
           (unsigned long long)errors, secs);
}

/* Runs the whole self-test; returns the process exit code. */
static int run_selftest(unsigned baud, unsigned packets)
{
    selftest_t *s = calloc(1, sizeof *s);
    if (!s) {
        kdh_cli_errorf("selftest-link: out of memory");
        return KDH_CLI_EXIT_FAIL;
    }
    s->baud = baud;
    s->packets = packets;
    uv_loop_init(&s->loop);
    uv_timer_init(&s->loop, &s->deadline);
    uv_timer_init(&s->loop, &s->drain);
    s->deadline.data = s->drain.data = s;
    int rc = KDH_CLI_EXIT_FAIL;
    kdh_err_t err = {0};

    int master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    const char *name = NULL;
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || !(name = ptsname(master))) {
        kdh_cli_errorf("selftest-link: cannot create a pseudo-terminal pair: %m");
        goto out;
    }
    snprintf(s->slave, sizeof s->slave, "%s", name);

    kdh_transport_cb_t cb = {.ctx = s, .on_bytes = tp_bytes, .on_error = tp_error, .on_notice = tp_notice};
    if (kdh_transport_open(&s->tp, &s->loop, s->slave, baud, &cb, &err) != KDH_OK) {
        kdh_cli_errorf("selftest-link: %s", err.msg);
        goto out;
    }
    if (kdh_selftest_target_start(&s->target, &s->loop, master, &err) != KDH_OK) {
        kdh_cli_errorf("%s", err.msg);
        goto out;
    }
    kdh_link_cfg_t lc = {.loop = &s->loop, .write = link_write, .on_packet = on_packet,
                         .on_event = on_link_event, .ctx = s, .baud = baud};
    if (kdh_link_new(&s->link, &lc, &err) != KDH_OK || kdh_link_connect(s->link, 0, &err) != KDH_OK) {
        kdh_cli_errorf("selftest-link: %s", err.msg);
        goto out;
    }
    /* A pty moves megabytes per second, so even many packets take well under this. */
    uv_timer_start(&s->deadline, on_deadline, 10000u + packets * 20u, 0);
    uint64_t t0 = uv_hrtime();
    uv_run(&s->loop, UV_RUN_DEFAULT);
    double secs = (double)(uv_hrtime() - t0) / 1e9;

    kdh_err_t terr = {0};
    if (s->finished > 0 && kdh_selftest_target_failed(s->target, &terr))
        finish(s, -1, "%s", terr.msg); /* cannot happen after a clean drain; kept as a guard */
    print_summary(s, secs);
    if (s->finished > 0) {
        rc = KDH_CLI_EXIT_OK;
    } else {
        kdh_cli_errorf("selftest-link: %s", s->reason[0] ? s->reason : "stopped without a result");
    }

out:
    /* Stop the target before the host closes its end, so it never sees the hangup. */
    if (s->target)
        kdh_selftest_target_stop(s->target);
    if (s->link)
        kdh_link_free(s->link);
    if (s->tp)
        kdh_transport_close(s->tp);
    uv_close((uv_handle_t *)&s->deadline, NULL);
    uv_close((uv_handle_t *)&s->drain, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    if (master >= 0)
        close(master);
    free(s);
    return rc;
}

static int parse_selftest_opts(const char *cmd, const char *usage, int argc, char **argv, unsigned *baud,
                               unsigned *packets, int *exit_code)
{
    static const struct option longopts[] = {
        {"baud", required_argument, NULL, 'b'},
        {"packets", required_argument, NULL, 'n'},
        {0, 0, 0, 0},
    };
    kdh_cli_opt_t o = {.cmd = cmd, .usage = usage, .shortopts = "b:n:", .longopts = longopts};
    unsigned long long v;
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
        if (c == 'b') {
            if ((*exit_code = kdh_cli_parse_u64(cmd, "--baud", o.arg, 0, 10000000, &v)) != 0)
                return -1;
            kdh_err_t err;
            if (kdh_transport_check_baud((unsigned)v, &err) != KDH_OK) {
                *exit_code = kdh_cli_usage_errorf(cmd, "%s", err.msg);
                return -1;
            }
            *baud = (unsigned)v;
        } else if (c == 'n') {
            if ((*exit_code = kdh_cli_parse_u64(cmd, "--packets", o.arg, 1, 100000, &v)) != 0)
                return -1;
            *packets = (unsigned)v;
        }
    }
    if (c == KDH_CLI_OPT_EXIT) {
        *exit_code = o.exit_code;
        return -1;
    }
    if (o.optind < argc) {
        *exit_code = kdh_cli_usage_errorf(cmd, "unexpected argument '%s'", argv[o.optind]);
        return -1;
    }
    return 0;
}

int kdh_cli_cmd_selftest_link(int argc, char **argv)
{
    unsigned baud = 115200, packets = 100;
    int code = 0;
    if (parse_selftest_opts("selftest-link",
                            "[--baud N] [--packets N]\n"
                            "Checks the serial link end to end over a pseudo-terminal pair, no target needed:\n"
                            "a minimal KD target answers on the pty master, kdharvest's own transport and link\n"
                            "drive the slave, and N round trips alternate GetVersion and ReadVirtualMemory\n"
                            "(1..3944 bytes), every answer checked. Prints one summary line; exit 0 when all\n"
                            "round trips were verified.\n"
                            "  -b, --baud N      9600, 19200, 38400, 57600 or 115200 (default 115200)\n"
                            "  -n, --packets N   round trips, 1..100000 (default 100)\n",
                            argc, argv, &baud, &packets, &code) < 0)
        return code;
    return run_selftest(baud, packets);
}
