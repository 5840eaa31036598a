/* session.c: one target for one-target tools (probe, stack): opens the transport, connects with
 * a break-in, waits for the stop and attaches the model; at the end leaves the target running
 * the way kd-protocol.md 7 asks (nothing armed, a hard-coded int 3 stepped over, Continue2 with
 * Dr7 0) and closes the port only after the Continue has been acknowledged and written out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/task.h"
#include "kdh/transport.h"
#include "target_int.h"

struct kdh_target_session {
    uv_loop_t loop;
    int loop_ok;
    kdh_transport_t *tp;
    kdh_kd_t *kd;
    kdh_target_t *t;
    unsigned baud;
    int tp_dead;
    uv_timer_t rebreak;
    unsigned breaks_sent;
    char tp_error[256];
    int no_packet;
    char no_packet_msg[256];
    int expired;
    uv_timer_t timer;
    int timer_ok;
};

static void on_bytes(void *ctx, const uint8_t *buf, size_t len)
{
    kdh_target_session_t *s = ctx;
    if (s->kd)
        kdh_kd_feed(s->kd, buf, len);
}

static void on_tp_error(void *ctx, int code, const char *message)
{
    kdh_target_session_t *s = ctx;
    (void)code;
    s->tp_dead = 1;
    snprintf(s->tp_error, sizeof s->tp_error, "%s", message ? message : "the port went away");
}

static int kd_write(void *ctx, const uint8_t *buf, size_t len)
{
    kdh_target_session_t *s = ctx;
    if (s->tp_dead)
        return KDH_EHANGUP;
    return kdh_transport_write(s->tp, buf, len, NULL);
}

static void on_link_event(void *ctx, const kdh_link_event_t *ev)
{
    kdh_target_session_t *s = ctx;
    if (ev->kind == KDH_LINK_EV_NO_PACKET && !s->no_packet) {
        s->no_packet = 1;
        snprintf(s->no_packet_msg, sizeof s->no_packet_msg, "%s", ev->message ? ev->message : "no valid packet");
    }
}

static void on_timer(uv_timer_t *h)
{
    kdh_target_session_t *s = h->data;
    s->expired = 1;
}

static void on_rebreak(uv_timer_t *h)
{
    kdh_target_session_t *s = h->data;
    /* A target polls for 'b' only while the line is quiet; our ACKs of its DbgPrint packets can
     * hide a lone 'b'. Ask again while nothing has stopped it. */
    if (s->kd && !kdh_kd_stopped(s->kd) && kdh_link_state(kdh_kd_link(s->kd)) == KDH_LINK_CONNECTED) {
        kdh_kd_break(s->kd, NULL);
        s->breaks_sent++;
    }
}

/* Runs the loop until the target stops, the port dies, no packet came, or timeout_ms passed.
 * rebreak: send 'b' again every 2 s while the target talks but does not stop. */
static int wait_stop_ex(kdh_target_session_t *s, unsigned timeout_ms, int rebreak, kdh_err_t *err)
{
    s->expired = 0;
    s->no_packet = 0;
    uv_timer_start(&s->timer, on_timer, timeout_ms, 0);
    if (rebreak)
        uv_timer_start(&s->rebreak, on_rebreak, 2000, 2000);
    while (!kdh_kd_stopped(s->kd) && !s->tp_dead && !s->expired && !s->no_packet)
        kdh_task_wait(&s->loop);
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->rebreak);
    if (kdh_kd_stopped(s->kd))
        return KDH_OK;
    if (s->tp_dead)
        return kdh_err_set(err, KDH_EHANGUP, "%s", s->tp_error);
    if (s->no_packet || !kdh_link_stats(kdh_kd_link(s->kd))->has_valid)
        return kdh_err_set(err, KDH_ETIMEDOUT, "%s",
                           s->no_packet ? s->no_packet_msg : "no valid packet: check the cable and the target's /BAUDRATE");
    return kdh_err_set(err, KDH_ETIMEDOUT, "the target answered but did not stop within %u ms", timeout_ms);
}

static int wait_stop(kdh_target_session_t *s, unsigned timeout_ms, kdh_err_t *err)
{
    return wait_stop_ex(s, timeout_ms, 0, err);
}

/* Continue2; a stop re-reported meanwhile (RESET, lost ACK) is stepped over and continued. */
static int continue_plain(kdh_target_session_t *s, kdh_err_t *err)
{
    for (unsigned i = 0;; i++) {
        kdh_kd_req_t req;
        memset(&req, 0, sizeof req);
        kdh_kd_continue(s->kd, &req, KDH_WIRE_DBG_CONTINUE, 0, 0, NULL, NULL);
        if (kdh_kd_wait(s->kd, &req) == KDH_OK)
            return KDH_OK;
        if (req.status != KDH_ECANCELED || !kdh_kd_stopped(s->kd) || i >= 8)
            return kdh_err_set(err, req.status, "Continue: %s", req.err.msg);
        int rc = kdh_target_skip_int3(s->t, s->kd, err);
        if (rc != KDH_OK)
            return rc;
    }
}

int kdh_target_session_open(kdh_target_session_t **out, const char *port, unsigned baud,
                            kdh_err_t *err)
{
    *out = NULL;
    kdh_target_session_t *s = calloc(1, sizeof *s);
    if (!s)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory");
    s->baud = baud ? baud : 115200;
    if (uv_loop_init(&s->loop) != 0) {
        free(s);
        return kdh_err_set(err, KDH_EIO, "cannot create an event loop");
    }
    s->loop_ok = 1;
    uv_timer_init(&s->loop, &s->timer);
    s->timer.data = s;
    uv_timer_init(&s->loop, &s->rebreak);
    s->rebreak.data = s;
    s->timer_ok = 1;
    *out = s;
    kdh_transport_cb_t cb = {.ctx = s, .on_bytes = on_bytes, .on_error = on_tp_error};
    int rc = kdh_transport_open(&s->tp, &s->loop, port, s->baud, &cb, err);
    if (rc != KDH_OK)
        return rc;
    kdh_kd_cfg_t kc;
    memset(&kc, 0, sizeof kc);
    kc.link.loop = &s->loop;
    kc.link.write = kd_write;
    kc.link.baud = s->baud;
    kc.link_ctx = s;
    kc.arch = KDH_WIRE_ARCH_AMD64;
    kc.on_link_event = on_link_event;
    kc.ctx = s;
    rc = kdh_kd_new(&s->kd, &kc, err);
    if (rc != KDH_OK)
        return rc;
    rc = kdh_target_new(&s->t, err);
    if (rc != KDH_OK)
        return rc;
    rc = kdh_kd_connect(s->kd, 1, err);
    if (rc != KDH_OK)
        return rc;
    s->breaks_sent = 1;
    rc = wait_stop_ex(s, 15000, 1, err);
    /* Any report is a stop: a booting target's LoadSymbols report waits in the same loop for
     * our requests as an exception does. A 'b' it saw meanwhile is dealt with at detach. */
    if (rc != KDH_OK)
        return rc;
    return kdh_target_attach_sync(s->t, s->kd, err);
}

kdh_kd_t *kdh_target_session_kd(kdh_target_session_t *s) { return s->kd; }
uv_loop_t *kdh_target_session_loop(kdh_target_session_t *s) { return &s->loop; }

int kdh_target_session_wait_stop(kdh_target_session_t *s, unsigned timeout_ms, kdh_err_t *err)
{
    return wait_stop(s, timeout_ms, err);
}
kdh_target_t *kdh_target_session_target(kdh_target_session_t *s) { return s->t; }
int kdh_target_session_stopped(const kdh_target_session_t *s) { return s->kd && kdh_kd_stopped(s->kd); }

int kdh_target_session_switch(kdh_target_session_t *s, unsigned cpu, kdh_err_t *err)
{
    const kdh_wire_state_change_t *sc = kdh_kd_state(s->kd);
    if (!sc)
        return kdh_err_set(err, KDH_EINVAL, "the target is running");
    if (sc->processor == cpu)
        return KDH_OK;
    if (cpu >= sc->number_processors)
        return kdh_err_set(err, KDH_ERANGE, "processor %u does not exist (%u processors)", cpu,
                           sc->number_processors);
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_switch_processor(s->kd, &req, cpu, NULL, NULL);
    if (kdh_kd_wait(s->kd, &req) != KDH_OK)
        return kdh_err_set(err, req.status, "SwitchProcessor %u: %s", cpu, req.err.msg);
    int rc = wait_stop(s, 5000, err);
    if (rc != KDH_OK)
        return rc;
    sc = kdh_kd_state(s->kd);
    if (sc->processor != cpu)
        return kdh_err_set(err, KDH_EPROTO, "asked for processor %u, the target stopped on %u", cpu, sc->processor);
    return KDH_OK;
}

int kdh_target_read_pc(kdh_target_t *t, kdh_kd_t *kd, uint64_t *pc, kdh_err_t *err)
{
    const kdh_wire_state_change_t *sc = kdh_kd_state(kd);
    if (pc)
        *pc = 0;
    if (!sc)
        return kdh_err_set(err, KDH_EINVAL, "reading the program counter: the target is running");
    uint8_t b[8] = {0};
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_get_context_slice(kd, &req, sc->processor, t->psize == 8 ? 0xF8 : 0xB8, b, t->psize, NULL, NULL);
    if (kdh_kd_wait(kd, &req) != KDH_OK)
        return kdh_err_set(err, req.status, "reading the program counter: %s", req.err.msg);
    if (pc)
        *pc = t->psize == 8 ? kdh_get_u64(b) : kdh_sign_extend32(kdh_get_u32(b));
    return KDH_OK;
}

int kdh_target_verify_pc(kdh_target_t *t, kdh_kd_t *kd, kdh_err_t *err)
{
    const kdh_wire_state_change_t *sc = kdh_kd_state(kd);
    if (!sc || sc->new_state != KDH_WIRE_STATE_EXCEPTION || sc->u.exception.code != KDH_WIRE_STATUS_BREAKPOINT)
        return KDH_OK;
    for (unsigned i = 0; i < t->verified_n && i < KDH_ARRAY_LEN(t->verified_pc); i++)
        if (t->verified_pc[i] == sc->program_counter)
            return KDH_OK;
    uint64_t cur;
    int rc = kdh_target_read_pc(t, kd, &cur, err);
    if (rc != KDH_OK)
        return rc;
    if (cur == sc->program_counter + 1)
        return KDH_OK; /* our step over it, reported again: nothing to learn */
    kdh_kd_correct_pc(kd, cur);
    t->verified_pc[t->verified_n++ % KDH_ARRAY_LEN(t->verified_pc)] = cur;
    return KDH_OK;
}

/* Is thread in the verified set? With add, it is put there (the set is emptied when 3/4 full: a
 * thread checked again costs one read). */
static int thread_verified(kdh_target_t *t, uint64_t thread, int add)
{
    const unsigned cap = KDH_ARRAY_LEN(t->verified_thread);
    unsigned first = (unsigned)((thread >> 4) ^ (thread >> 16)) & (cap - 1), i = first;
    for (; t->verified_thread[i]; i = (i + 1) & (cap - 1))
        if (t->verified_thread[i] == thread)
            return 1;
    if (!add || !thread)
        return 0;
    if (t->verified_threads >= cap / 4 * 3) {
        memset(t->verified_thread, 0, sizeof t->verified_thread);
        t->verified_threads = 0;
        i = first;
    }
    t->verified_thread[i] = thread;
    t->verified_threads++;
    return 0;
}

int kdh_target_verify_thread(kdh_target_t *t, kdh_kd_t *kd, kdh_err_t *err)
{
    const kdh_wire_state_change_t *sc = kdh_kd_state(kd);
    if (!sc || t->psize != 8 || t->no_thread_check || sc->new_state != KDH_WIRE_STATE_EXCEPTION ||
        thread_verified(t, sc->thread, 0))
        return KDH_OK;
    uint8_t b[8] = {0};
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_read_control(kd, &req, sc->processor, 3, b, sizeof b, NULL, NULL);
    int rc = kdh_kd_wait(kd, &req);
    if (rc != KDH_OK && req.status != KDH_ETARGET)
        return kdh_err_set(err, req.status, "reading the current thread of processor %u: %s", sc->processor,
                           req.err.msg);
    if (rc != KDH_OK || req.out_len != sizeof b || !kdh_get_u64(b)) {
        t->no_thread_check = 1; /* the target does not tell: reports stand, and it is not asked again */
        return KDH_OK;
    }
    uint64_t cur = kdh_get_u64(b);
    kdh_kd_correct_thread(kd, cur);
    thread_verified(t, cur, 1);
    return KDH_OK;
}

int kdh_target_skip_int3(kdh_target_t *t, kdh_kd_t *kd, kdh_err_t *err)
{
    const kdh_wire_state_change_t *sc = kdh_kd_state(kd);
    if (!sc)
        return kdh_err_set(err, KDH_EINVAL, "the target is running");
    if (t->skipped_serial == kdh_kd_stop_serial(kd))
        return KDH_OK; /* done already for this stop */
    if (sc->new_state != KDH_WIRE_STATE_EXCEPTION || sc->u.exception.code != KDH_WIRE_STATUS_BREAKPOINT ||
        sc->report.instruction_count < 1 || sc->report.instruction_stream[0] != 0xCC)
        return KDH_OK;
    int vrc = kdh_target_verify_pc(t, kd, err);
    if (vrc != KDH_OK)
        return vrc;
    sc = kdh_kd_state(kd);
    uint8_t pc[8];
    uint32_t off = t->psize == 8 ? 0xF8 : 0xB8;
    kdh_kd_req_t req;
    const kdh_link_stats_t *ls = kdh_link_stats(kdh_kd_link(kd));
    uint64_t resets = ls->resets_sent + ls->resets_received;
    if (t->skipped_pc == sc->program_counter && t->skipped_thread == sc->thread &&
        t->skipped_cpu == sc->processor && t->skipped_resets != resets) {
        /* Same place and thread after a RESET: the target may be re-reporting the stop we
         * already stepped over (without a RESET the link drops such a copy as a duplicate),
         * or this is a new hit. Only the context can tell; PC += 2 would be a crash. */
        uint64_t cur;
        if ((vrc = kdh_target_read_pc(t, kd, &cur, err)) != KDH_OK)
            return vrc;
        if (cur != sc->program_counter) {
            t->skipped_serial = kdh_kd_stop_serial(kd);
            return KDH_OK;
        }
    }
    kdh_put_u64(pc, sc->program_counter + 1);
    memset(&req, 0, sizeof req);
    kdh_kd_set_context_slice(kd, &req, sc->processor, off, pc, t->psize, NULL, NULL);
    if (kdh_kd_wait(kd, &req) != KDH_OK)
        return kdh_err_set(err, req.status, "stepping over the int 3 at 0x%llx: %s",
                           (unsigned long long)sc->program_counter, req.err.msg);
    t->skipped_serial = kdh_kd_stop_serial(kd);
    t->skipped_pc = sc->program_counter;
    t->skipped_thread = sc->thread;
    t->skipped_cpu = sc->processor;
    t->skipped_resets = resets;
    return KDH_OK;
}

int kdh_target_session_detach(kdh_target_session_t *s, kdh_err_t *err)
{
    if (!s || !s->kd || !kdh_kd_stopped(s->kd))
        return KDH_OK;
    int rc = kdh_target_skip_int3(s->t, s->kd, err);
    if (rc != KDH_OK)
        return rc;
    rc = continue_plain(s, err);
    if (rc != KDH_OK)
        return rc;
    /* A 'b' that reached the target while it was sending is honoured after the Continue, as
     * one more stop that nobody would answer once we are gone (an exception report retries
     * forever): wait a moment and let such stops go too. So is the stop of a Continue the target
     * acknowledged and never acted on (a damaged type field, which the checksum does not cover):
     * when no stop came by itself, a RESEND has a target still in its stop report it again (a
     * running one discards it). Never while a stop is known or a frame is half in: a target that
     * just stopped would report that stop twice, and the copy would cross our next Continue. */
    for (unsigned i = 0; i < s->breaks_sent + 3; i++) {
        kdh_err_t e;
        if (wait_stop(s, 100, &e) != KDH_OK) {
            kdh_link_probe(kdh_kd_link(s->kd)); /* refused while a frame is half in */
            if (wait_stop(s, 400, &e) != KDH_OK)
                break;
        }
        rc = kdh_target_skip_int3(s->t, s->kd, err);
        if (rc == KDH_OK)
            rc = continue_plain(s, err);
        if (rc != KDH_OK)
            return rc;
    }
    /* the ACK of the target's last packet may still sit in our write buffer */
    s->expired = 0;
    uv_timer_start(&s->timer, on_timer, 2000, 0);
    while (!s->tp_dead && !s->expired && kdh_transport_pending(s->tp) > 0)
        kdh_task_wait(&s->loop);
    uv_timer_stop(&s->timer);
    return KDH_OK;
}

void kdh_target_session_close(kdh_target_session_t *s)
{
    if (!s)
        return;
    if (s->kd)
        kdh_kd_free(s->kd);
    s->kd = NULL;
    if (s->tp)
        kdh_transport_close(s->tp);
    if (s->timer_ok) {
        uv_close((uv_handle_t *)&s->timer, NULL);
        uv_close((uv_handle_t *)&s->rebreak, NULL);
    }
    if (s->loop_ok) {
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
    }
    kdh_target_free(s->t);
    free(s);
}
