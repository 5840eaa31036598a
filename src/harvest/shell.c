/* shell.c: the harvest engine's connection: a transport and a KD session on a libuv loop, with
 * blocking helpers (wait for a stop, one request, continue) so the per-hit pipeline reads as a
 * straight sequence of wire steps. The loop is private to the harvest (one-target `kdharvest
 * run`) or the daemon's shared one; every wait is kdh_task_wait(), which on the shared loop
 * lets the other targets' tasks run while this one waits. */
#include <stdio.h>
#include <string.h>

#include "harvest_int.h"
#include "kdh/task.h"

static void on_bytes(void *ctx, const uint8_t *buf, size_t len)
{
    hv_conn_t *c = ctx;
    if (c->kd)
        kdh_kd_feed(c->kd, buf, len);
}

static void on_tp_error(void *ctx, int code, const char *message)
{
    hv_conn_t *c = ctx;
    (void)code;
    c->tp_dead = 1;
    snprintf(c->tp_error, sizeof c->tp_error, "%s", message ? message : "the port went away");
}

static void on_tp_notice(void *ctx, const char *message)
{
    hv_conn_t *c = ctx;
    if (c->on_notice)
        c->on_notice(c->print_ctx, message);
}

static int kd_write(void *ctx, const uint8_t *buf, size_t len)
{
    hv_conn_t *c = ctx;
    if (c->tp_dead)
        return KDH_EHANGUP;
    return kdh_transport_write(c->tp, buf, len, NULL);
}

void hv_conn_link_event(void *ctx, const kdh_link_event_t *ev)
{
    hv_conn_t *c = ctx;
    if (ev->kind == KDH_LINK_EV_RESET_SEEN || ev->kind == KDH_LINK_EV_RESYNC) {
        c->reset_seen = 1;
        c->reset_serial = c->kd ? kdh_kd_stop_serial(c->kd) : 0;
    }
    if (ev->kind == KDH_LINK_EV_NO_PACKET && !c->no_packet) {
        c->no_packet = 1;
        snprintf(c->no_packet_msg, sizeof c->no_packet_msg, "%s", ev->message ? ev->message : "no valid packet");
    }
}

void hv_conn_end_line_gap(hv_conn_t *c)
{
    if (c->line_down_since <= 0)
        return;
    double t0 = c->line_down_since;
    c->line_down_since = 0;
    if (c->on_line_gap)
        c->on_line_gap(c->print_ctx, t0, hv_now_wall(), c->line_down_why);
}

static void on_tp_line(void *ctx, int up, const char *why)
{
    hv_conn_t *c = ctx;
    if (up) {
        hv_conn_end_line_gap(c);
    } else if (c->line_down_since <= 0) {
        c->line_down_since = hv_now_wall();
        snprintf(c->line_down_why, sizeof c->line_down_why, "%s", why ? why : "the line went away");
    }
}

static void on_print(void *ctx, unsigned processor, const char *text, size_t len)
{
    hv_conn_t *c = ctx;
    (void)processor;
    if (c->on_print)
        c->on_print(c->print_ctx, text, len);
}

static void on_timer(uv_timer_t *h)
{
    hv_conn_t *c = h->data;
    c->expired = 1;
}

static void on_timer_closed(uv_handle_t *h)
{
    hv_conn_t *c = h->data;
    c->timer_closed = 1;
}

int hv_conn_open(hv_conn_t *c, uv_loop_t *loop, const char *port, unsigned baud, kdh_err_t *err)
{
    c->baud = baud ? baud : 115200;
    if (loop) {
        c->loop = loop;
    } else {
        if (uv_loop_init(&c->own_loop) != 0)
            return kdh_err_set(err, KDH_EIO, "cannot create an event loop");
        c->loop_ok = 1;
        c->loop = &c->own_loop;
    }
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    c->timer_ok = 1;
    /* A serial port that hangs up is reopened: the link's timers resynchronise afterwards. */
    kdh_transport_cb_t cb = {.ctx = c, .on_bytes = on_bytes, .on_error = on_tp_error,
                             .on_notice = on_tp_notice, .on_line = on_tp_line, .reopen_serial = 1};
    int rc = kdh_transport_open(&c->tp, c->loop, port, c->baud, &cb, err);
    if (rc != KDH_OK)
        return rc;
    kdh_kd_cfg_t kc;
    memset(&kc, 0, sizeof kc);
    kc.link.loop = c->loop;
    kc.link.write = kd_write;
    kc.link.baud = c->baud;
    kc.link_ctx = c;
    kc.arch = KDH_WIRE_ARCH_AMD64;
    kc.on_link_event = hv_conn_link_event;
    kc.on_print = on_print;
    kc.ctx = c;
    return kdh_kd_new(&c->kd, &kc, err);
}

/* A Continue the target acknowledged and never acted on (its packet type damaged: the checksum
 * does not cover the header) leaves the target stopped and silent while the host believes it
 * runs, and nothing on the line would say so. A RESEND makes a target sitting in its debugger
 * loop report its stop again (kd-protocol.md §2); a running target's break-in poll reads the
 * bytes and discards them, as it does every byte but 'b' (§1.8). So while a stop is awaited, a
 * line quiet both ways for HV_PROBE_QUIET_MS gets one RESEND: 16 bytes a second on an idle line.
 * Returns the loop time at which the next probe is due. */
static uint64_t probe_if_quiet(hv_conn_t *c)
{
    uint64_t now = uv_now(c->loop);
    uint64_t bytes = hv_conn_bytes(c, 0) + hv_conn_bytes(c, 1);
    if (bytes != c->quiet_bytes || !c->quiet_since) {
        c->quiet_bytes = bytes;
        c->quiet_since = now;
    } else if (now - c->quiet_since >= HV_PROBE_QUIET_MS && !kdh_kd_stopped(c->kd)) {
        if (kdh_link_probe(kdh_kd_link(c->kd)))
            c->probed = 1;
        c->quiet_bytes = hv_conn_bytes(c, 0) + hv_conn_bytes(c, 1);
        c->quiet_since = now;
    }
    return c->quiet_since + HV_PROBE_QUIET_MS;
}

/* Runs the loop until done(c, arg), the port died, or timeout_ms passed, probing a quiet line
 * meanwhile. The timer only wakes the loop (for the deadline or the next probe). */
static void wait_probing(hv_conn_t *c, unsigned timeout_ms, int (*done)(hv_conn_t *, uint64_t), uint64_t arg)
{
    uv_update_time(c->loop); /* the loop's clock is as old as its last turn */
    uint64_t now = uv_now(c->loop), deadline = now + timeout_ms;
    while (!done(c, arg) && !c->tp_dead && now < deadline) {
        uint64_t next = probe_if_quiet(c);
        if (next > deadline || next <= now)
            next = deadline;
        uv_timer_start(&c->timer, on_timer, next - now, 0);
        kdh_task_wait(c->loop);
        uv_timer_stop(&c->timer);
        now = uv_now(c->loop);
    }
}

static int stopped_or_silent(hv_conn_t *c, uint64_t unused)
{
    (void)unused;
    return kdh_kd_stopped(c->kd) || c->no_packet;
}

static int stop_is_new(hv_conn_t *c, uint64_t serial)
{
    return kdh_kd_stop_serial(c->kd) != serial;
}

int hv_conn_wait_stop(hv_conn_t *c, unsigned timeout_ms, int *timed_out, kdh_err_t *err)
{
    if (timed_out)
        *timed_out = 0;
    c->no_packet = 0;
    wait_probing(c, timeout_ms, stopped_or_silent, 0);
    if (kdh_kd_stopped(c->kd))
        return KDH_OK;
    if (c->tp_dead)
        return kdh_err_set(err, KDH_EHANGUP, "%s", c->tp_error);
    if (c->no_packet)
        return kdh_err_set(err, KDH_ETIMEDOUT, "%s", c->no_packet_msg);
    if (timed_out)
        *timed_out = 1;
    return kdh_err_set(err, KDH_ETIMEDOUT, "the target did not stop within %u ms", timeout_ms);
}

int hv_conn_wait_new_stop(hv_conn_t *c, uint64_t serial, unsigned timeout_ms)
{
    wait_probing(c, timeout_ms, stop_is_new, serial);
    return kdh_kd_stop_serial(c->kd) != serial && kdh_kd_stopped(c->kd);
}

int hv_conn_confirm_running(hv_conn_t *c, uint64_t serial)
{
    /* a moment for a stop on its way, then the probe, then its answer's time on the wire: a state
     * change of up to 0x200 bytes each way at the line's speed, and the same again to spare */
    if (hv_conn_wait_new_stop(c, serial, 100))
        return 1;
    if (kdh_link_probe(kdh_kd_link(c->kd)))
        c->probed = 1;
    unsigned answer_ms = 200 + 2 * (unsigned)(0x200 * 10 * 1000ull / (c->baud ? c->baud : 115200));
    return hv_conn_wait_new_stop(c, serial, answer_ms);
}

int hv_conn_restop(hv_conn_t *c, uint64_t serial, kdh_err_t *err)
{
    int rc = kdh_kd_connect(c->kd, 0, err);
    if (rc != KDH_OK)
        return rc;
    if (hv_conn_wait_new_stop(c, serial, 10000))
        return KDH_OK;
    if (c->tp_dead)
        return kdh_err_set(err, KDH_EHANGUP, "%s", c->tp_error);
    return kdh_err_set(err, KDH_ETIMEDOUT, "the target reported no stop after a single step, nor after a RESET");
}

int hv_conn_probe_stop(hv_conn_t *c, const char *port, kdh_err_t *err)
{
    /* A target that reset the link while stopped reports that stop again and ignores a break-in:
     * waiting for the break-in's stop cost 3 s before the reconnect, with the target held. */
    if (c->reset_seen && kdh_kd_stopped(c->kd) && kdh_kd_stop_serial(c->kd) > c->reset_serial)
        return KDH_OK;
    uint64_t serial = kdh_kd_stop_serial(c->kd);
    int rc = kdh_kd_break(c->kd, err);
    if (rc != KDH_OK)
        return rc;
    if (hv_conn_wait_new_stop(c, serial, 3000))
        return KDH_OK;
    if ((rc = kdh_kd_connect(c->kd, 1, err)) != KDH_OK)
        return rc;
    if (hv_conn_wait_new_stop(c, serial, 10000))
        return KDH_OK;
    if (c->tp_dead)
        return kdh_err_set(err, KDH_EHANGUP, "%s", c->tp_error);
    return kdh_err_set(err, KDH_ETIMEDOUT, "the target on %s stopped answering (no stop after a break-in and a "
                       "reconnect)", port);
}

int hv_conn_call(hv_conn_t *c, kdh_kd_req_t *req, const char *what, kdh_err_t *err)
{
    int rc = kdh_kd_wait(c->kd, req);
    if (rc != KDH_OK)
        return kdh_err_set(err, rc, "%s: %s", what, req->err.msg[0] ? req->err.msg : kdh_strerror(rc));
    return KDH_OK;
}

int hv_conn_read(hv_conn_t *c, uint64_t va, void *buf, uint32_t len, uint32_t *got, const char *what,
                 kdh_err_t *err)
{
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_read_virtual(c->kd, &req, va, buf, len, NULL, NULL);
    int rc = kdh_kd_wait(c->kd, &req);
    *got = rc == KDH_OK ? (uint32_t)(req.out_len < len ? req.out_len : len) : 0;
    if (rc != KDH_OK)
        return kdh_err_set(err, rc, "%s at 0x%llx: %s", what, (unsigned long long)va,
                           req.err.msg[0] ? req.err.msg : kdh_strerror(rc));
    return KDH_OK;
}

int hv_conn_continue(hv_conn_t *c, uint32_t status, kdh_err_t *err)
{
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_continue(c->kd, &req, status, 0, 0, NULL, NULL);
    return hv_conn_call(c, &req, "Continue", err);
}

void hv_conn_drain(hv_conn_t *c)
{
    if (!c->tp)
        return;
    c->expired = 0;
    uv_timer_start(&c->timer, on_timer, 2000, 0);
    while (!c->tp_dead && !c->expired && kdh_transport_pending(c->tp) > 0)
        kdh_task_wait(c->loop);
    uv_timer_stop(&c->timer);
}

uint64_t hv_conn_bytes(const hv_conn_t *c, int out)
{
    if (!c->kd)
        return 0;
    const kdh_link_stats_t *s = kdh_link_stats(kdh_kd_link(c->kd));
    return out ? s->bytes_out : s->bytes_in;
}

void hv_conn_close(hv_conn_t *c)
{
    if (c->kd)
        kdh_kd_free(c->kd);
    c->kd = NULL;
    if (c->tp)
        kdh_transport_close(c->tp);
    c->tp = NULL;
    if (c->timer_ok) {
        c->timer_closed = 0;
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    }
    if (c->loop_ok) {
        uv_run(&c->own_loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->own_loop);
    } else if (c->timer_ok) {
        /* the timer lives in c: on a shared loop, wait for its close before c can be freed
         * (the transport and the session free themselves in their own close callbacks) */
        while (!c->timer_closed)
            kdh_task_wait(c->loop);
    }
    c->timer_ok = 0;
    c->loop_ok = 0;
}
