/* target.c: the link half of kdsim's KD target, as kdcom behaves (kd-protocol.md §1.4-1.8):
 * leader detection, packet ids with the sync bit, ACK/RESEND/RESET, retransmission (forever for
 * exceptions and replies, 20 tries for prints and load-symbols), break-in polling while running. */
#include "target_int.h"

#include <stdlib.h>
#include <string.h>

void sim_target_opts_default(sim_target_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->ack_timeout_ns = 500000000ull;
    o->byte_timeout_ns = 100000000ull;
    o->retries = 20;
}

static void queue_frame(sim_target_t *t, uint16_t leader, uint16_t type, uint32_t id,
                        const uint8_t *payload, size_t len, int is_pending)
{
    if (t->q_count == SIM_TARGET_QUEUE) {
        /* A host flooding RESENDs can outrun the line; the oldest copy is the least useful. */
        t->q_head = (t->q_head + 1) % SIM_TARGET_QUEUE;
        t->q_count--;
    }
    sim_frame_t *f = &t->q[(t->q_head + t->q_count) % SIM_TARGET_QUEUE];
    t->q_count++;
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += payload[i];
    memset(f->bytes, leader, 4);
    kdh_put_u16(f->bytes + 4, type);
    kdh_put_u16(f->bytes + 6, (uint16_t)len);
    kdh_put_u32(f->bytes + 8, id);
    kdh_put_u32(f->bytes + 12, leader == KD_LEADER_DATA ? sum : 0);
    f->len = KD_HDR;
    if (leader == KD_LEADER_DATA) {
        memcpy(f->bytes + KD_HDR, payload, len);
        f->bytes[KD_HDR + len] = KD_TRAILER;
        f->len = KD_HDR + len + 1;
    }
    f->is_pending = is_pending;
    f->gen = t->pend_gen;
    f->ready_ns = t->now;
}

static void send_control(sim_target_t *t, uint16_t type, uint32_t id)
{
    queue_frame(t, KD_LEADER_CTRL, type, id, NULL, 0, 0);
}

/* (Re)transmits the pending packet with the current id; a copy still queued is enough. */
static void transmit_pending(sim_target_t *t, int is_retry)
{
    if (t->pend_queued)
        return;
    t->pend_gen++;
    queue_frame(t, KD_LEADER_DATA, t->pend_type, t->tx_id, t->pend_payload, t->pend_len, 1);
    t->pend_queued = 1;
    t->ack_deadline = 0;
    t->st.tx_packets++;
    if (is_retry)
        t->st.tx_retransmits++;
}

void sim_link_send(sim_target_t *t, int kind, uint16_t type, const uint8_t *payload, size_t len)
{
    if (len > KD_MAX_PAYLOAD)
        len = KD_MAX_PAYLOAD;
    t->pend_kind = kind;
    t->pend_type = type;
    memcpy(t->pend_payload, payload, len);
    t->pend_len = len;
    t->pend_retries = t->o.retries;
    t->pend_queued = 0;
    t->state = SIM_TARGET_SENDING;
    transmit_pending(t, 0);
}

/* The pending packet is done (ACKed, or assumed ACKed): next id, next state. */
static void pending_acked(sim_target_t *t)
{
    t->tx_id = (t->tx_id ^ 1u) & ~KD_SYNC_ID;
    int kind = t->pend_kind;
    t->pend_kind = PEND_NONE;
    t->pend_queued = 0;
    t->ack_deadline = 0;
    if (kind == PEND_PRINT)
        t->state = SIM_TARGET_RUNNING;
    else
        t->state = SIM_TARGET_STOPPED;
}

/* Prints and load-symbols give up (no debugger present); the target runs on. */
static void pending_give_up(sim_target_t *t)
{
    t->not_present = 1;
    t->tx_id = KD_INITIAL_ID | KD_SYNC_ID;
    t->rx_expect = KD_INITIAL_ID;
    t->pend_kind = PEND_NONE;
    t->pend_queued = 0;
    t->ack_deadline = 0;
    t->stop_kind = PEND_NONE;
    t->state = SIM_TARGET_RUNNING;
}

static void drop_queue(sim_target_t *t)
{
    t->q_head = 0;
    t->q_count = 0;
    t->pend_queued = 0;
}

/* RESEND/RESET while stopped: report the stop again (kdapi KdpSendWaitContinue). */
static void rereport_stop(sim_target_t *t)
{
    if (t->stop_kind != PEND_NONE)
        sim_link_send(t, t->stop_kind, KD_TYPE_STATE_CHANGE64, t->stop_payload, t->stop_len);
}

static void on_control(sim_target_t *t, uint16_t type, uint32_t id)
{
    switch (type) {
    case KD_TYPE_ACK:
        if (t->state == SIM_TARGET_SENDING && id == (t->tx_id & ~KD_SYNC_ID))
            pending_acked(t);
        break; /* unmatched ACKs are ignored */
    case KD_TYPE_RESEND:
        if (t->state == SIM_TARGET_SENDING) {
            t->st.tx_retransmits++;
            transmit_pending(t, 0);
        } else if (t->state == SIM_TARGET_STOPPED) {
            rereport_stop(t);
        }
        break;
    case KD_TYPE_RESET:
        t->st.resets++;
        t->tx_id = KD_INITIAL_ID;
        t->rx_expect = KD_INITIAL_ID;
        /* Stale copies with old ids would confuse the host's resync ("resync bounce"). */
        drop_queue(t);
        send_control(t, KD_TYPE_RESET, 0);
        if (t->state == SIM_TARGET_SENDING)
            transmit_pending(t, 1);
        else if (t->state == SIM_TARGET_STOPPED)
            rereport_stop(t);
        break;
    default:
        break; /* unknown control types are ignored */
    }
}

static void on_data(sim_target_t *t, uint16_t type, uint32_t id, const uint8_t *p, size_t len)
{
    if (t->state == SIM_TARGET_SENDING) {
        /* Our ACK must have been lost: ask for this packet again, take ours as delivered. */
        send_control(t, KD_TYPE_RESEND, 0);
        pending_acked(t);
        return;
    }
    if (type == KD_TYPE_STATE_MANIPULATE && len < KD_MANIP_HDR) {
        t->st.rx_bad++;
        send_control(t, KD_TYPE_RESEND, 0);
        return;
    }
    send_control(t, KD_TYPE_ACK, id);
    if (id != t->rx_expect) {
        t->st.rx_duplicates++;
        return;
    }
    t->rx_expect ^= 1u;
    if (type == KD_TYPE_STATE_MANIPULATE)
        sim_kd_manipulate(t, p, len);
    /* Other types (a prompt answer, file I/O) have no use here: accepted and ignored. */
}

static void rx_reset(sim_target_t *t)
{
    t->rx_phase = RX_LEADER;
    t->lead_count = 0;
    t->rx_hdr_len = 0;
    t->rx_len = 0;
    t->rx_deadline = 0;
}

static void rx_bad(sim_target_t *t)
{
    t->st.rx_bad++;
    send_control(t, KD_TYPE_RESEND, 0);
    rx_reset(t);
}

static void rx_packet_done(sim_target_t *t)
{
    uint8_t leader = t->rx_hdr[0];
    uint16_t type = kdh_get_u16(t->rx_hdr + 4);
    uint32_t id = kdh_get_u32(t->rx_hdr + 8);
    size_t len = t->rx_len;
    rx_reset(t);
    t->not_present = 0;
    t->st.rx_packets++;
    if (leader == KD_LEADER_CTRL)
        on_control(t, type, id);
    else
        on_data(t, type, id, t->rx_buf, len);
}

static void rx_byte(sim_target_t *t, uint8_t b)
{
    if (t->state == SIM_TARGET_RUNNING) {
        /* KdPollBreakIn reads one byte at a time; only 'b' counts, the rest is discarded
         * (with any packet that was half received when the target resumed). */
        if (t->rx_phase != RX_LEADER || t->lead_count)
            rx_reset(t);
        if (b == KD_BREAKIN) {
            t->break_pending = 1;
            t->st.breakins++;
        }
        return;
    }
    t->rx_deadline = t->now + t->o.byte_timeout_ns;
    switch (t->rx_phase) {
    case RX_LEADER:
        if (b == KD_LEADER_DATA || b == KD_LEADER_CTRL) {
            if (t->lead_count > 0 && b == t->lead_byte) {
                t->lead_count++;
            } else {
                t->lead_byte = b;
                t->lead_count = 1;
            }
            if (t->lead_count == 4) {
                memset(t->rx_hdr, b, 4);
                t->rx_hdr_len = 4;
                t->rx_phase = RX_HEADER;
            }
        } else {
            t->lead_count = 0;
            t->rx_deadline = 0;
            /* kdcom remembers a 'b' seen while it waits for an ACK (KdpControlCPending) and
             * breaks once the print or load-symbols is through; a host that believes the target
             * runs sends it, whatever follows. Stopped, or reporting a stop, it means nothing. */
            if (b == KD_BREAKIN && t->state == SIM_TARGET_SENDING &&
                (t->pend_kind == PEND_PRINT || t->pend_kind == PEND_LOADSYM) && !t->break_pending) {
                t->break_pending = 1;
                t->st.breakins++;
            }
        }
        break;
    case RX_HEADER:
        t->rx_hdr[t->rx_hdr_len++] = b;
        if (t->rx_hdr_len < KD_HDR)
            break;
        if (t->rx_hdr[0] == KD_LEADER_CTRL) {
            rx_packet_done(t);
            break;
        }
        t->rx_need = kdh_get_u16(t->rx_hdr + 6);
        if (t->rx_need > KD_MAX_PAYLOAD) {
            rx_bad(t);
            break;
        }
        t->rx_len = 0;
        t->rx_phase = t->rx_need ? RX_PAYLOAD : RX_TRAILER;
        break;
    case RX_PAYLOAD:
        t->rx_buf[t->rx_len++] = b;
        if (t->rx_len == t->rx_need)
            t->rx_phase = RX_TRAILER;
        break;
    case RX_TRAILER: {
        uint32_t sum = 0;
        for (size_t i = 0; i < t->rx_len; i++)
            sum += t->rx_buf[i];
        if (b != KD_TRAILER || sum != kdh_get_u32(t->rx_hdr + 12))
            rx_bad(t);
        else
            rx_packet_done(t);
        break;
    }
    }
}

int sim_target_input(sim_target_t *t, uint64_t now_ns, const uint8_t *buf, size_t len, kdh_err_t *err)
{
    if (!t || (!buf && len))
        return kdh_err_set(err, KDH_EINVAL, "sim_target_input: no target or buffer");
    t->now = now_ns;
    for (size_t i = 0; i < len; i++)
        rx_byte(t, buf[i]);
    return KDH_OK;
}

static void check_timeouts(sim_target_t *t)
{
    if (t->rx_deadline && t->now >= t->rx_deadline) {
        if (t->rx_phase != RX_LEADER && t->state != SIM_TARGET_RUNNING)
            rx_bad(t); /* short read: the host sends it again */
        rx_reset(t);
    }
    if (t->state == SIM_TARGET_SENDING && t->ack_deadline && t->now >= t->ack_deadline) {
        t->ack_deadline = 0;
        if (t->pend_kind == PEND_PRINT || t->pend_kind == PEND_LOADSYM) {
            if (--t->pend_retries <= 0) {
                pending_give_up(t);
                return;
            }
        }
        transmit_pending(t, 1);
    }
}

int sim_target_tick(sim_target_t *t, uint64_t now_ns, uint64_t run_budget_ns, kdh_err_t *err)
{
    if (!t)
        return kdh_err_set(err, KDH_EINVAL, "sim_target_tick: no target");
    t->now = now_ns;
    check_timeouts(t);
    if (t->state != SIM_TARGET_RUNNING)
        return KDH_OK;
    if (t->break_pending) {
        t->break_pending = 0;
        sim_kd_inject_breakin(t);
    }
    uint64_t left = run_budget_ns;
    /* Prints and load-symbols the host is absent for do not stop the machine: keep running. */
    for (int guard = 0; guard < 64 && t->state == SIM_TARGET_RUNNING && left > 0; guard++) {
        uint64_t before = sim_machine_now_ns(t->m);
        sim_stop_t stop;
        int rc = sim_machine_run(t->m, left, &stop, err);
        if (rc != KDH_OK)
            return rc;
        uint64_t used = sim_machine_now_ns(t->m) - before;
        left = used >= left ? 0 : left - used;
        if (stop.kind == SIM_STOP_NONE)
            break;
        sim_kd_report_stop(t, &stop);
    }
    return KDH_OK;
}

int sim_target_peek(const sim_target_t *t, const uint8_t **data, size_t *len)
{
    if (!t || t->q_count == 0)
        return 0;
    const sim_frame_t *f = &t->q[t->q_head];
    *data = f->bytes;
    *len = f->len;
    return 1;
}

uint64_t sim_target_peek_ready(const sim_target_t *t)
{
    return t && t->q_count ? t->q[t->q_head].ready_ns : 0;
}

void sim_target_sent(sim_target_t *t, uint64_t sent_done_ns)
{
    if (!t || t->q_count == 0)
        return;
    sim_frame_t *f = &t->q[t->q_head];
    if (f->is_pending && f->gen == t->pend_gen && t->pend_queued && t->state == SIM_TARGET_SENDING) {
        t->pend_queued = 0;
        t->ack_deadline = sent_done_ns + t->o.ack_timeout_ns;
    }
    t->q_head = (t->q_head + 1) % SIM_TARGET_QUEUE;
    t->q_count--;
}

/* The output queue is kept: an ACK for the Reboot request must still go out. */
static void reset_link(sim_target_t *t)
{
    t->tx_id = KD_INITIAL_ID | KD_SYNC_ID;
    t->rx_expect = KD_INITIAL_ID;
    t->pend_kind = PEND_NONE;
    t->stop_kind = PEND_NONE;
    t->ack_deadline = 0;
    t->break_pending = 0;
    t->context_sent = 0;
    t->not_present = 0;
    t->pend_queued = 0;
    t->pend_gen++;
    rx_reset(t);
    t->state = SIM_TARGET_RUNNING;
}

int sim_target_reboot(sim_target_t *t, kdh_err_t *err)
{
    /* The new kernel image has its own (empty) breakpoint table; memory is reloaded anyway. */
    memset(t->bp, 0, sizeof t->bp);
    reset_link(t);
    int rc = sim_machine_reboot(t->m, err);
    if (rc != KDH_OK)
        return rc;
    sim_kd_refresh_boot(t);
    return KDH_OK;
}

sim_target_t *sim_target_create(sim_machine_t *m, const sim_target_opts_t *o, kdh_err_t *err)
{
    if (!m) {
        kdh_err_set(err, KDH_EINVAL, "sim_target_create: no machine");
        return NULL;
    }
    sim_target_t *t = calloc(1, sizeof *t);
    if (!t) {
        kdh_err_set(err, KDH_ENOMEM, "sim_target_create: out of memory");
        return NULL;
    }
    t->m = m;
    if (o)
        t->o = *o;
    else
        sim_target_opts_default(&t->o);
    if (t->o.retries <= 0)
        t->o.retries = 20;
    reset_link(t);
    sim_machine_info(m, &t->info);
    if (t->info.boot == 0 && sim_machine_reboot(m, err) != KDH_OK) {
        free(t);
        return NULL;
    }
    sim_kd_refresh_boot(t);
    return t;
}

void sim_target_destroy(sim_target_t *t)
{
    free(t);
}

sim_target_state_t sim_target_state(const sim_target_t *t)
{
    return t->state;
}

const char *sim_target_pending_name(const sim_target_t *t)
{
    if (t->state != SIM_TARGET_SENDING)
        return "none";
    switch (t->pend_kind) {
    case PEND_PRINT: return "print";
    case PEND_LOADSYM: return "load-symbols";
    case PEND_EXCEPTION: return "exception";
    case PEND_REPLY: return "reply";
    default: return "none";
    }
}

void sim_target_stats(const sim_target_t *t, sim_target_stats_t *s)
{
    *s = t->st;
    s->breakpoints = 0;
    for (int i = 0; i < KD_BP_MAX; i++)
        s->breakpoints += t->bp[i].used != 0;
}

void sim_target_ids(const sim_target_t *t, uint32_t *tx_id, uint32_t *rx_expect)
{
    if (tx_id)
        *tx_id = t->tx_id;
    if (rx_expect)
        *rx_expect = t->rx_expect;
}
