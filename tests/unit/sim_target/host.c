/* host.c: the hand-driven KD host of the target-side tests (see host.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "host.h"

void host_setup(host_t *h, sim_arch_t arch, int cpus, const sim_target_opts_t *o)
{
    memset(h, 0, sizeof *h);
    sim_config_t cfg = {.arch = arch, .seed = 1, .cpus = cpus};
    kdh_err_t err;
    h->m = sim_machine_create(&cfg, &err);
    assert_non_null(h->m);
    h->t = sim_target_create(h->m, o, &err);
    assert_non_null(h->t);
    h->arch = arch == SIM_ARCH_X64 ? KDH_WIRE_ARCH_AMD64 : KDH_WIRE_ARCH_X86;
    h->next_id = KDH_WIRE_INITIAL_ID;
    h->now = 1000000000ull;
    h->ack_prints = 1;
    kdh_wire_decoder_init(&h->dec);
}

void host_teardown(host_t *h)
{
    sim_target_destroy(h->t);
    sim_machine_destroy(h->m);
}

void host_clear(host_t *h)
{
    h->n = 0;
}

static void collect(host_t *h, const kdh_wire_event_t *ev)
{
    if (ev->kind != KDH_WIRE_EV_PACKET) {
        h->bad++;
        return;
    }
    assert_true(h->n < HOST_MAX_PKTS);
    host_pkt_t *p = &h->pkts[h->n++];
    p->is_control = ev->packet.is_control;
    p->type = ev->packet.type;
    p->id = ev->packet.id;
    p->len = ev->packet.payload_len;
    if (p->len)
        memcpy(p->payload, ev->packet.payload, p->len);
}

void host_pump(host_t *h)
{
    const uint8_t *d;
    size_t len;
    int first = h->n;
    while (sim_target_peek(h->t, &d, &len)) {
        uint8_t copy[KDH_WIRE_FRAME_MAX];
        memcpy(copy, d, len);
        sim_target_sent(h->t, h->now);
        const uint8_t *p = copy;
        while (len) {
            kdh_wire_event_t ev;
            size_t used = kdh_wire_decoder_feed(&h->dec, p, len, &ev);
            p += used;
            len -= used;
            if (ev.kind != KDH_WIRE_EV_NONE)
                collect(h, &ev);
        }
    }
    int last = h->n; /* an ACK below pumps again; those packets are handled there */
    for (int i = first; i < last; i++) {
        if (!h->pkts[i].is_control && h->pkts[i].type == KDH_WIRE_TYPE_DEBUG_IO) {
            h->prints++;
            if (h->ack_prints)
                host_control(h, KDH_WIRE_TYPE_ACKNOWLEDGE, h->pkts[i].id & ~KDH_WIRE_SYNC_BIT);
        }
    }
}

void host_tick(host_t *h, uint64_t dt_ns, uint64_t budget_ns)
{
    h->now += dt_ns;
    kdh_err_t err;
    assert_int_equal(sim_target_tick(h->t, h->now, budget_ns, &err), KDH_OK);
    host_pump(h);
}

void host_raw(host_t *h, const uint8_t *b, size_t n)
{
    kdh_err_t err;
    assert_int_equal(sim_target_input(h->t, h->now, b, n, &err), KDH_OK);
    host_pump(h);
}

void host_control(host_t *h, uint16_t type, uint32_t id)
{
    uint8_t b[16];
    assert_int_equal(kdh_wire_encode_control(b, sizeof b, type, id), 16);
    host_raw(h, b, 16);
}

void host_manip_id(host_t *h, const kdh_wire_manip_t *m, const uint8_t *data, size_t dlen, uint32_t id)
{
    uint8_t hdr[KDH_WIRE_MANIP_SIZE], frame[KDH_WIRE_FRAME_MAX];
    kdh_wire_manip_encode(m, h->arch, hdr);
    int n = kdh_wire_encode_data2(frame, sizeof frame, KDH_WIRE_TYPE_STATE_MANIPULATE, id, hdr,
                                  sizeof hdr, data, dlen);
    assert_true(n > 0);
    host_raw(h, frame, (size_t)n);
}

int host_find(const host_t *h, int from, int is_control, uint16_t type)
{
    for (int i = from; i < h->n; i++)
        if (h->pkts[i].is_control == is_control && h->pkts[i].type == type)
            return i;
    return -1;
}

const host_pkt_t *host_request(host_t *h, const kdh_wire_manip_t *m, const uint8_t *data, size_t dlen,
                               kdh_wire_manip_t *r, const uint8_t **rdata, size_t *rdlen)
{
    host_clear(h);
    uint32_t id = h->next_id;
    host_manip_id(h, m, data, dlen, id);
    h->next_id ^= 1;
    assert_int_equal(h->n, 2);
    assert_true(h->pkts[0].is_control);
    assert_int_equal(h->pkts[0].type, KDH_WIRE_TYPE_ACKNOWLEDGE);
    assert_int_equal(h->pkts[0].id, id);
    const host_pkt_t *p = &h->pkts[1];
    assert_false(p->is_control);
    assert_int_equal(p->type, KDH_WIRE_TYPE_STATE_MANIPULATE);
    kdh_err_t err;
    assert_int_equal(kdh_wire_manip_decode(p->payload, p->len, h->arch, r, rdata, rdlen, &err), KDH_OK);
    assert_int_equal(r->api, m->api);
    host_control(h, KDH_WIRE_TYPE_ACKNOWLEDGE, p->id & ~KDH_WIRE_SYNC_BIT);
    assert_int_equal(sim_target_state(h->t), SIM_TARGET_STOPPED);
    return p;
}

void host_no_reply(host_t *h, const kdh_wire_manip_t *m)
{
    host_clear(h);
    uint32_t id = h->next_id;
    host_manip_id(h, m, NULL, 0, id);
    h->next_id ^= 1;
    assert_true(h->n >= 1);
    assert_true(h->pkts[0].is_control);
    assert_int_equal(h->pkts[0].type, KDH_WIRE_TYPE_ACKNOWLEDGE);
    assert_int_equal(h->pkts[0].id, id);
}

const host_pkt_t *host_wait_state_change(host_t *h, int max_ticks, kdh_wire_state_change_t *sc)
{
    int i;
    for (int k = 0; (i = host_find(h, 0, 0, KDH_WIRE_TYPE_STATE_CHANGE64)) < 0 && k < max_ticks; k++)
        host_tick(h, 1000000, 1000000);
    assert_true(i >= 0);
    const host_pkt_t *p = &h->pkts[i];
    kdh_err_t err;
    assert_int_equal(kdh_wire_state_change_decode(p->payload, p->len, h->arch, sc, &err), KDH_OK);
    host_control(h, KDH_WIRE_TYPE_ACKNOWLEDGE, p->id & ~KDH_WIRE_SYNC_BIT);
    assert_int_equal(sim_target_state(h->t), SIM_TARGET_STOPPED);
    return p;
}

void host_boot(host_t *h)
{
    for (int k = 0; k < 2; k++) {
        kdh_wire_state_change_t sc;
        host_clear(h);
        host_wait_state_change(h, 10, &sc);
        assert_int_equal(sc.new_state, KDH_WIRE_STATE_LOAD_SYMBOLS);
        kdh_wire_manip_t c = {.api = KDH_WIRE_API_CONTINUE2};
        c.u.cont2.status = KDH_WIRE_DBG_CONTINUE;
        host_no_reply(h, &c);
    }
    assert_int_equal(sim_target_state(h->t), SIM_TARGET_RUNNING);
}

void host_break(host_t *h, kdh_wire_state_change_t *sc)
{
    host_clear(h);
    uint8_t b = KDH_WIRE_BREAKIN_BYTE;
    host_raw(h, &b, 1);
    host_wait_state_change(h, 5, sc);
}

kdh_wire_manip_t host_req(uint32_t api)
{
    kdh_wire_manip_t m;
    memset(&m, 0, sizeof m);
    m.api = api;
    m.return_status = KDH_WIRE_STATUS_PENDING;
    return m;
}

void host_cont2(host_t *h, uint32_t trace)
{
    kdh_wire_manip_t c = host_req(KDH_WIRE_API_CONTINUE2);
    c.u.cont2.status = KDH_WIRE_DBG_CONTINUE;
    c.u.cont2.trace_flag = trace;
    c.u.cont2.symbol_start = 1;
    host_no_reply(h, &c);
    assert_int_equal(sim_target_state(h->t), SIM_TARGET_RUNNING);
}
