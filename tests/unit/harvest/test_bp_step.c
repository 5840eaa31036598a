/* test_bp_step.c: the harvest's breakpoint bookkeeping (breakpoints.c), and the look at a target
 * after a link reset (shell.c), against a target played by the test on the session's own loop.
 * The target keeps a breakpoint table as kd-protocol.md 3.2 says a Windows target does:
 * WriteBreakPoint of an address already in it is refused, and before reporting a stop it takes
 * out its breakpoints in [PC, PC + InstructionCount - 1]. Each test scripts the stops the target reports after each Continue2 and checks the target's table
 * (what really is in its memory) afterwards. It also keeps the stopped processor's context (GetContextEx,
 * SetContextEx), can ignore a Continue2 it acknowledged, and answers a RESEND in a stop by reporting
 * that stop again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_int.h"
#include "kdh/wire.h"

#define KBASE 0xfffff8000f800000ull
#define ADDR_A (KBASE + 0x1000) /* two wanted breakpoints within one stop's 16-byte range */
#define ADDR_B (KBASE + 0x1008)
#define FAR_PC (KBASE + 0x5000)
#define TABLE 32

typedef struct fake {
    uv_loop_t loop;
    uv_idle_t idle;
    kdh_kd_t *kd;
    kdh_wire_decoder_t dec;
    uint8_t in[1 << 16]; /* host bytes not yet looked at */
    size_t in_len;
    uint32_t tgt_id;
    uint64_t bp[TABLE]; /* the target's table: address per handle - 1, 0 = free */
    unsigned refused;   /* WriteBreakPoint refused: the address already held one */
    kdh_wire_state_change_t script[8];
    int n_script, next; /* stops to report: the first after the connect, then one per Continue2 */
    int running;        /* a Continue2 found no scripted stop left */
    unsigned host_resets; /* RESET packets from the host */
    /* the context of the stopped processor (GetContextEx / SetContextEx read and write it), and
     * a Continue2 the target acknowledges and never acts on (its number, 1-based; 0: none) */
    uint8_t ctx[0x4d0];
    unsigned continues, ignore_continue;
    int last_reported; /* f->script index of the stop the target is in; -1 before the first */
    unsigned host_resends; /* RESEND packets from the host */
} fake_t;

typedef struct fixture {
    fake_t f;
    hv_t *h;
    char dir[64];
} fixture_t;

static void target_send(fake_t *f, uint16_t type, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    uint8_t frame[KDH_WIRE_FRAME_MAX];
    int n = kdh_wire_encode_data2(frame, sizeof frame, type, f->tgt_id, a, alen, b, blen);
    assert_true(n > 0);
    f->tgt_id ^= 1;
    kdh_kd_feed(f->kd, frame, (size_t)n);
}

/* The next scripted stop, reported as a Windows target does: its breakpoints in the reported
 * instruction range are taken out first. */
static void report_stop(fake_t *f)
{
    if (f->next >= f->n_script) {
        f->running = 1;
        return;
    }
    f->last_reported = f->next;
    const kdh_wire_state_change_t *sc = &f->script[f->next++];
    kdh_put_u64(f->ctx + 0xF8, sc->program_counter); /* x64 CONTEXT.Rip */
    for (int i = 0; i < TABLE; i++)
        if (f->bp[i] && f->bp[i] >= sc->program_counter &&
            f->bp[i] <= sc->program_counter + sc->report.instruction_count - 1)
            f->bp[i] = 0;
    uint8_t buf[KDH_WIRE_STATE_CHANGE_SIZE + 4] = {0};
    kdh_wire_state_change_encode(sc, KDH_WIRE_ARCH_AMD64, buf);
    target_send(f, KDH_WIRE_TYPE_STATE_CHANGE64, buf, sizeof buf, NULL, 0);
}

static void reply_data(fake_t *f, kdh_wire_manip_t *m, uint32_t status, const uint8_t *data, size_t len)
{
    uint8_t hdr[KDH_WIRE_MANIP_SIZE];
    m->return_status = status;
    kdh_wire_manip_encode(m, KDH_WIRE_ARCH_AMD64, hdr);
    target_send(f, KDH_WIRE_TYPE_STATE_MANIPULATE, hdr, sizeof hdr, data, len);
}

static void reply(fake_t *f, kdh_wire_manip_t *m, uint32_t status)
{
    reply_data(f, m, status, NULL, 0);
}

/* A RESEND while the target sits in its debugger loop: it reports the stop it is in again
 * (kd-protocol.md 2), with its next packet id. */
static void rereport_stop(fake_t *f)
{
    if (f->running || f->last_reported < 0)
        return;
    uint8_t buf[KDH_WIRE_STATE_CHANGE_SIZE + 4] = {0};
    kdh_wire_state_change_encode(&f->script[f->last_reported], KDH_WIRE_ARCH_AMD64, buf);
    target_send(f, KDH_WIRE_TYPE_STATE_CHANGE64, buf, sizeof buf, NULL, 0);
}

static void on_request(fake_t *f, const kdh_wire_packet_t *p)
{
    kdh_wire_manip_t m;
    const uint8_t *data = NULL;
    size_t dlen = 0;
    assert_int_equal(kdh_wire_manip_decode(p->payload, p->payload_len, KDH_WIRE_ARCH_AMD64, &m, &data, &dlen, NULL),
                     KDH_OK);
    uint8_t ack[16];
    kdh_wire_encode_control(ack, sizeof ack, KDH_WIRE_TYPE_ACKNOWLEDGE, p->id & ~KDH_WIRE_SYNC_BIT);
    kdh_kd_feed(f->kd, ack, sizeof ack);
    switch (m.api) {
    case KDH_WIRE_API_WRITE_BREAKPOINT: {
        int slot = -1;
        for (int i = 0; i < TABLE; i++) {
            if (f->bp[i] == m.u.write_bp.address) {
                f->refused++;
                m.u.write_bp.handle = 0;
                reply(f, &m, 0xC0000001u);
                return;
            }
            if (!f->bp[i] && slot < 0)
                slot = i;
        }
        assert_true(slot >= 0);
        f->bp[slot] = m.u.write_bp.address;
        m.u.write_bp.handle = (uint32_t)slot + 1;
        reply(f, &m, 0);
        return;
    }
    case KDH_WIRE_API_RESTORE_BREAKPOINT: {
        uint32_t hd = m.u.restore_bp.handle;
        int ok = hd >= 1 && hd <= TABLE && f->bp[hd - 1];
        if (ok)
            f->bp[hd - 1] = 0;
        reply(f, &m, ok ? 0 : 0xC0000001u);
        return;
    }
    case KDH_WIRE_API_GET_CONTEXT_EX: {
        uint32_t off = m.u.context_ex.offset, n = m.u.context_ex.byte_count;
        assert_true(off <= sizeof f->ctx && n <= sizeof f->ctx - off);
        m.u.context_ex.bytes_copied = n;
        reply_data(f, &m, 0, f->ctx + off, n);
        return;
    }
    case KDH_WIRE_API_SET_CONTEXT_EX: {
        uint32_t off = m.u.context_ex.offset, n = m.u.context_ex.byte_count;
        assert_true(off <= sizeof f->ctx && n <= sizeof f->ctx - off && n <= dlen);
        memcpy(f->ctx + off, data, n);
        m.u.context_ex.bytes_copied = n;
        reply(f, &m, 0);
        return;
    }
    case KDH_WIRE_API_CONTINUE2:
        if (++f->continues == f->ignore_continue)
            return; /* acknowledged above, and never acted on (its type damaged on the way) */
        report_stop(f); /* the ACK above ended the Continue2; the target runs into the next stop */
        return;
    default:
        fail_msg("unexpected request 0x%x", m.api);
    }
}

/* Everything the host wrote since the last pass, as the target reads it. */
static void on_idle(uv_idle_t *idle)
{
    fake_t *f = idle->data;
    uv_idle_stop(idle);
    static uint8_t buf[sizeof f->in];
    size_t len = f->in_len, off = 0;
    memcpy(buf, f->in, len);
    f->in_len = 0;
    while (off < len) {
        kdh_wire_event_t ev;
        off += kdh_wire_decoder_feed(&f->dec, buf + off, len - off, &ev);
        if (ev.kind != KDH_WIRE_EV_PACKET)
            continue;
        const kdh_wire_packet_t *p = &ev.packet;
        if (p->type == KDH_WIRE_TYPE_RESET) {
            f->host_resets++;
            uint8_t echo[16];
            kdh_wire_encode_control(echo, sizeof echo, KDH_WIRE_TYPE_RESET, 0);
            kdh_kd_feed(f->kd, echo, sizeof echo);
            f->tgt_id = KDH_WIRE_INITIAL_ID;
            report_stop(f);
        } else if (p->type == KDH_WIRE_TYPE_RESEND && p->is_control) {
            f->host_resends++;
            rereport_stop(f);
        } else if (p->type == KDH_WIRE_TYPE_STATE_MANIPULATE) {
            on_request(f, p);
        }
        /* the host's ACKs of our packets need nothing */
    }
}

static int fake_write_start(void *ctx, const uint8_t *b, size_t n)
{
    fake_t *f = ctx;
    assert_true(f->in_len + n <= sizeof f->in);
    memcpy(f->in + f->in_len, b, n);
    f->in_len += n;
    uv_idle_start(&f->idle, on_idle);
    return KDH_OK;
}

static kdh_wire_state_change_t breakpoint_stop(uint64_t pc, unsigned cpu)
{
    kdh_wire_state_change_t sc;
    memset(&sc, 0, sizeof sc);
    sc.new_state = KDH_WIRE_STATE_EXCEPTION;
    sc.number_processors = 2;
    sc.processor = (uint16_t)cpu;
    sc.program_counter = pc;
    sc.u.exception.code = KDH_WIRE_STATUS_BREAKPOINT;
    sc.u.exception.address = pc;
    sc.u.exception.first_chance = 1;
    sc.report.instruction_count = 16;
    return sc;
}

static kdh_wire_state_change_t step_stop(uint64_t pc, unsigned cpu)
{
    kdh_wire_state_change_t sc = breakpoint_stop(pc, cpu);
    sc.u.exception.code = KDH_WIRE_STATUS_SINGLE_STEP;
    return sc;
}

static int setup(void **state)
{
    fixture_t *x = calloc(1, sizeof *x);
    assert_non_null(x);
    fake_t *f = &x->f;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_idle_init(&f->loop, &f->idle);
    f->idle.data = f;
    kdh_wire_decoder_init(&f->dec);
    f->last_reported = -1;
    hv_t *h = calloc(1, sizeof *h);
    assert_non_null(h);
    x->h = h;
    snprintf(x->dir, sizeof x->dir, "/tmp/kdh-bpstep-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    snprintf(h->dir, sizeof h->dir, "%s", x->dir);
    kdh_kd_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.link.loop = &f->loop;
    cfg.link.write = fake_write_start;
    cfg.link_ctx = f;
    cfg.arch = KDH_WIRE_ARCH_AMD64;
    cfg.on_link_event = hv_conn_link_event;
    cfg.ctx = &h->c;
    assert_int_equal(kdh_kd_new(&f->kd, &cfg, NULL), KDH_OK);
    h->c.kd = f->kd;
    h->c.loop = &f->loop;
    uv_timer_init(&f->loop, &h->c.timer);
    h->c.timer.data = &h->c;
    h->c.timer_ok = 1;
    assert_int_equal(kdh_target_new(&h->t, NULL), KDH_OK);
    kdh_wire_get_version_t v;
    memset(&v, 0, sizeof v);
    v.machine_type = 0x8664;
    v.minor_version = 19041;
    v.kern_base = KBASE;
    assert_int_equal(kdh_target_set_version(h->t, &v, NULL), KDH_OK);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *x = *state;
    hv_conn_close(&x->h->c); /* frees the session, closes the timer on the test's loop */
    uv_close((uv_handle_t *)&x->f.idle, NULL);
    uv_run(&x->f.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->f.loop), 0);
    kdh_target_free(x->h->t);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", x->dir);
    assert_int_equal(system(cmd), 0);
    free(x->h);
    free(x);
    return 0;
}

static int table_count(const fake_t *f, uint64_t addr)
{
    int n = 0;
    for (int i = 0; i < TABLE; i++)
        n += f->bp[i] == addr;
    return n;
}

/* Connects, wants A and B, continues from a stop far from both, and stops at A (whose range
 * takes both out of the target). */
static void stopped_at_a(fixture_t *x)
{
    hv_t *h = x->h;
    assert_int_equal(kdh_kd_connect(h->c.kd, 0, NULL), KDH_OK);
    assert_int_equal(hv_conn_wait_stop(&h->c, 2000, NULL, NULL), KDH_OK);
    assert_int_equal(hv_bp_want(h, ADDR_A, NULL), KDH_OK);
    assert_int_equal(hv_bp_want(h, ADDR_B, NULL), KDH_OK);
    kdh_err_t err;
    assert_int_equal(hv_continue(h, KDH_WIRE_DBG_CONTINUE, &err), KDH_OK);
    assert_int_equal(hv_conn_wait_stop(&h->c, 2000, NULL, NULL), KDH_OK);
    assert_int_equal(table_count(&x->f, ADDR_A) + table_count(&x->f, ADDR_B), 0);
}

/* The step over A ends in another CPU's breakpoint at B (its range takes B out). That stop is
 * the run loop's: its handler continues, which steps over B and puts both back exactly once. */
static void test_step_ends_in_other_stop(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->f;
    f->script[f->n_script++] = breakpoint_stop(FAR_PC, 0);
    f->script[f->n_script++] = breakpoint_stop(ADDR_A, 0);
    f->script[f->n_script++] = breakpoint_stop(ADDR_B, 1); /* instead of the step's stop */
    f->script[f->n_script++] = step_stop(ADDR_B + 3, 1);
    stopped_at_a(x);
    hv_t *h = x->h;
    kdh_err_t err;
    memset(&err, 0, sizeof err);
    assert_int_equal(hv_continue(h, KDH_WIRE_DBG_CONTINUE, &err), KDH_OK);
    assert_true(kdh_kd_stopped(h->c.kd)); /* left for the run loop */
    assert_int_equal(f->next, 3);
    /* the handler of the stop at B */
    int rc = hv_continue(h, KDH_WIRE_DBG_CONTINUE, &err);
    if (rc != KDH_OK)
        fail_msg("continue from the stop at B: %s", err.msg);
    assert_int_equal(f->refused, 0);
    assert_true(f->running);
    assert_int_equal(table_count(f, ADDR_A), 1);
    assert_int_equal(table_count(f, ADDR_B), 1);
    for (int i = 0; i < 2; i++) {
        const hv_bp_t *b = &h->bps.bp[hv_bp_find(h, i ? ADDR_B : ADDR_A)];
        assert_true(b->handle >= 1 && b->handle <= TABLE);
        assert_true(f->bp[b->handle - 1] == b->addr);
    }
}

/* The same stop at B, then a detach instead of a continue: no int 3 stays in the target. */
static void test_clear_after_other_stop(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->f;
    f->script[f->n_script++] = breakpoint_stop(FAR_PC, 0);
    f->script[f->n_script++] = breakpoint_stop(ADDR_A, 0);
    f->script[f->n_script++] = breakpoint_stop(ADDR_B, 1);
    stopped_at_a(x);
    hv_t *h = x->h;
    kdh_err_t err;
    assert_int_equal(hv_continue(h, KDH_WIRE_DBG_CONTINUE, &err), KDH_OK);
    assert_int_equal(hv_bp_clear_all(h, &err), KDH_OK);
    assert_int_equal(table_count(f, ADDR_A), 0);
    assert_int_equal(table_count(f, ADDR_B), 0);
}

/* The target resets the link while stopped (noise) and reports its stop again. The session then
 * holds the target's current stop, so a look at the target (the run loop's after a reset, the
 * detach's) sends nothing: a stopped target ignores a break-in, and waiting for the break-in's
 * stop held the target 3 s before the reconnect that the third scripted stop would answer. */
static void test_probe_after_reset_in_stop(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->f;
    hv_t *h = x->h;
    f->script[f->n_script++] = breakpoint_stop(FAR_PC, 0);
    f->script[f->n_script++] = breakpoint_stop(FAR_PC, 0); /* the same stop, reported again */
    f->script[f->n_script++] = breakpoint_stop(FAR_PC, 0); /* for a reconnect, if one came */
    assert_int_equal(kdh_kd_connect(h->c.kd, 0, NULL), KDH_OK);
    assert_int_equal(hv_conn_wait_stop(&h->c, 2000, NULL, NULL), KDH_OK);
    uint64_t serial = kdh_kd_stop_serial(h->c.kd);
    /* an unasked RESET from the target: the host answers it, the target reports its stop again */
    uint8_t rst[16];
    kdh_wire_encode_control(rst, sizeof rst, KDH_WIRE_TYPE_RESET, 0);
    kdh_kd_feed(f->kd, rst, sizeof rst);
    assert_true(hv_conn_wait_new_stop(&h->c, serial, 2000));
    assert_true(h->c.reset_seen);
    assert_int_equal(f->next, 2);
    unsigned resets = f->host_resets;
    kdh_err_t err;
    memset(&err, 0, sizeof err);
    int rc = hv_conn_probe_stop(&h->c, "test", &err);
    if (rc != KDH_OK)
        fail_msg("probe: %s", err.msg);
    assert_int_equal(f->host_resets, resets); /* no reconnect */
    assert_int_equal(f->next, 2);
    assert_true(kdh_kd_stopped(h->c.kd));
}

/* A Continue after an int 3 was stepped over (PC + 1), acknowledged and ignored: the target sits in
 * the same stop. hv_conn_confirm_running's probe has the target report that stop again; stepped
 * over again, the PC stays just past the int 3 (it is set from the report, not moved), and once
 * continued for real the target runs and the probe's line stays quiet. */
static void test_lost_continue_after_step_over(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->f;
    hv_t *h = x->h;
    kdh_wire_state_change_t sc = breakpoint_stop(FAR_PC, 0);
    sc.report.instruction_stream[0] = 0xCC; /* a hard-coded int 3 (DbgBreakPoint, a break-in) */
    f->script[f->n_script++] = sc;
    f->ignore_continue = 1;
    assert_int_equal(kdh_kd_connect(h->c.kd, 0, NULL), KDH_OK);
    assert_int_equal(hv_conn_wait_stop(&h->c, 2000, NULL, NULL), KDH_OK);
    kdh_err_t err;
    memset(&err, 0, sizeof err);
    assert_int_equal(kdh_target_skip_int3(h->t, h->c.kd, &err), KDH_OK);
    assert_int_equal(kdh_get_u64(f->ctx + 0xF8), FAR_PC + 1);
    assert_int_equal(hv_conn_continue(&h->c, KDH_WIRE_DBG_CONTINUE, &err), KDH_OK);
    uint64_t serial = kdh_kd_stop_serial(h->c.kd);
    assert_true(hv_conn_confirm_running(&h->c, serial)); /* still stopped: reported again */
    assert_int_equal(f->host_resends, 1);
    assert_true(h->c.probed);
    assert_int_equal(kdh_target_skip_int3(h->t, h->c.kd, &err), KDH_OK);
    assert_int_equal(kdh_get_u64(f->ctx + 0xF8), FAR_PC + 1);
    /* continued again, the target runs: the line stays quiet */
    assert_int_equal(hv_conn_continue(&h->c, KDH_WIRE_DBG_CONTINUE, &err), KDH_OK);
    assert_false(hv_conn_confirm_running(&h->c, kdh_kd_stop_serial(h->c.kd)));
    assert_true(f->running);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_step_ends_in_other_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear_after_other_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_after_reset_in_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_continue_after_step_over, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
