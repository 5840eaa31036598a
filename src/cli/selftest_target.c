/* selftest_target.c: the far end of `kdharvest selftest-link`, a deliberately small KD target on
 * the pty master. It knows only the wire codec: it echoes RESET and reports a state change (the
 * first with the sync bit), ACKs data packets, drops duplicates, asks for RESEND on damaged
 * ones, and answers GetVersion and ReadVirtualMemory (memory = kdh_selftest_pattern). Continue
 * gets an ACK only; other APIs get STATUS_UNSUCCESSFUL. Like a real target it keeps one packet
 * in flight and resends it on RESEND. */
#include "selftest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdh/wire.h"

#define OUT_CAP ((size_t)64 * 1024)

struct kdh_selftest_target {
    uv_loop_t *loop;
    uv_poll_t poll;
    int fd;
    int events;
    int failed;
    kdh_err_t err;
    kdh_wire_decoder_t dec;
    uint32_t current_id;   /* id of our next (or pending) data packet */
    uint32_t remote_id;    /* id expected from the host */
    int pending;           /* a data packet of ours awaits its ACK */
    uint8_t pending_buf[KDH_WIRE_FRAME_MAX];
    size_t pending_len;
    uint8_t out[OUT_CAP];
    size_t out_head, out_tail;
    kdh_selftest_target_stats_t st;
};

static void on_poll(uv_poll_t *h, int status, int events);

static void fail(struct kdh_selftest_target *t, const char *what, int e)
{
    if (t->failed)
        return;
    t->failed = 1;
    kdh_err_set(&t->err, KDH_EIO, "selftest target: %s: %s", what, strerror(e));
    uv_poll_stop(&t->poll);
}

static void rearm(struct kdh_selftest_target *t)
{
    if (t->failed)
        return;
    int ev = UV_READABLE | (t->out_tail > t->out_head ? UV_WRITABLE : 0);
    if (ev != t->events) {
        t->events = ev;
        uv_poll_start(&t->poll, ev, on_poll);
    }
}

static void queue(struct kdh_selftest_target *t, const uint8_t *p, size_t n)
{
    if (t->out_tail + n > OUT_CAP) {
        memmove(t->out, t->out + t->out_head, t->out_tail - t->out_head);
        t->out_tail -= t->out_head;
        t->out_head = 0;
    }
    if (t->out_tail + n > OUT_CAP) {
        /* The host stopped reading for 64 KiB of answers: nothing sensible is left to do. */
        fail(t, "host does not read", ENOBUFS);
        return;
    }
    memcpy(t->out + t->out_tail, p, n);
    t->out_tail += n;
    rearm(t);
}

static void send_control(struct kdh_selftest_target *t, uint16_t type, uint32_t id)
{
    uint8_t b[KDH_WIRE_HEADER_SIZE];
    kdh_wire_encode_control(b, sizeof b, type, id);
    queue(t, b, sizeof b);
}

/* Sends a data packet with the current id and keeps it for RESEND until ACKed. */
static void send_data(struct kdh_selftest_target *t, uint16_t type, const uint8_t *p1, size_t n1,
                      const uint8_t *p2, size_t n2)
{
    int n = kdh_wire_encode_data2(t->pending_buf, sizeof t->pending_buf, type, t->current_id, p1, n1, p2, n2);
    if (n < 0) {
        fail(t, "reply too large", EMSGSIZE);
        return;
    }
    t->pending = 1;
    t->pending_len = (size_t)n;
    queue(t, t->pending_buf, t->pending_len);
}

static void acked(struct kdh_selftest_target *t)
{
    t->pending = 0;
    t->current_id = (t->current_id ^ 1u) & ~KDH_WIRE_SYNC_BIT;
}

static void send_state_change(struct kdh_selftest_target *t)
{
    kdh_wire_state_change_t sc;
    memset(&sc, 0, sizeof sc);
    sc.new_state = KDH_WIRE_STATE_EXCEPTION;
    sc.processor_level = 6;
    sc.number_processors = 1;
    sc.thread = 0xFFFFC00012345080ull;
    sc.program_counter = KDH_SELFTEST_KERNBASE + 0x1000;
    sc.u.exception.code = KDH_WIRE_STATUS_BREAKPOINT;
    sc.u.exception.address = sc.program_counter;
    sc.u.exception.first_chance = 1;
    sc.report.instruction_count = 1;
    sc.report.instruction_stream[0] = 0xCC;
    sc.report.report_flags = KDH_WIRE_REPORT_INCLUDES_SEGS | KDH_WIRE_REPORT_STANDARD_CS;
    sc.report.seg_cs = 0x10;
    uint8_t buf[KDH_WIRE_STATE_CHANGE_SIZE + 4];
    kdh_wire_state_change_encode(&sc, KDH_WIRE_ARCH_AMD64, buf);
    memset(buf + KDH_WIRE_STATE_CHANGE_SIZE, 0, 4); /* trace data, as real targets append */
    buf[KDH_WIRE_STATE_CHANGE_SIZE] = 1;
    send_data(t, KDH_WIRE_TYPE_STATE_CHANGE64, buf, sizeof buf, NULL, 0);
}

static void answer_manipulate(struct kdh_selftest_target *t, const kdh_wire_packet_t *p)
{
    kdh_wire_manip_t m;
    kdh_err_t err;
    if (kdh_wire_manip_decode(p->payload, p->payload_len, KDH_WIRE_ARCH_AMD64, &m, NULL, NULL, &err) != KDH_OK) {
        t->st.bad_packets++;
        return;
    }
    t->st.requests++;
    uint8_t hdr[KDH_WIRE_MANIP_SIZE];
    static uint8_t data[KDH_WIRE_READ_MAX];
    size_t data_len = 0;
    switch (m.api) {
    case KDH_WIRE_API_GET_VERSION:
        memset(&m.u.version, 0, sizeof m.u.version);
        m.u.version.major_version = KDH_SELFTEST_MAJOR;
        m.u.version.minor_version = KDH_SELFTEST_MINOR;
        m.u.version.protocol_version = 6;
        m.u.version.kd_secondary_version = 2;
        m.u.version.flags = KDH_WIRE_VERSION_MP | KDH_WIRE_VERSION_DATA | KDH_WIRE_VERSION_PTR64;
        m.u.version.machine_type = KDH_WIRE_MACHINE_AMD64;
        m.u.version.max_packet_type = KDH_WIRE_TYPE_MAX;
        m.u.version.max_state_change = 3;
        m.u.version.max_manipulate = 0x31;
        m.u.version.kern_base = KDH_SELFTEST_KERNBASE;
        m.u.version.ps_loaded_module_list = KDH_SELFTEST_MODULE_LIST;
        m.u.version.debugger_data_list = KDH_SELFTEST_DEBUGGER_DATA;
        m.return_status = KDH_WIRE_STATUS_SUCCESS;
        break;
    case KDH_WIRE_API_READ_VIRTUAL_MEMORY: {
        uint32_t n = m.u.mem.transfer_count;
        if (n > KDH_WIRE_READ_MAX)
            n = KDH_WIRE_READ_MAX; /* a real target clamps the same way */
        for (uint32_t i = 0; i < n; i++)
            data[i] = kdh_selftest_pattern(m.u.mem.address + i);
        data_len = n;
        m.u.mem.actual_count = n;
        m.return_status = KDH_WIRE_STATUS_SUCCESS;
        break;
    }
    case KDH_WIRE_API_CONTINUE:
    case KDH_WIRE_API_CONTINUE2:
    case KDH_WIRE_API_CLEAR_ALL_INTERNAL_BREAKPOINTS:
        return; /* ACK only */
    default:
        m.return_status = KDH_WIRE_STATUS_UNSUCCESSFUL;
        break;
    }
    kdh_wire_manip_encode(&m, KDH_WIRE_ARCH_AMD64, hdr);
    send_data(t, KDH_WIRE_TYPE_STATE_MANIPULATE, hdr, sizeof hdr, data, data_len);
}

static void on_packet(struct kdh_selftest_target *t, const kdh_wire_packet_t *p)
{
    if (p->is_control) {
        switch (p->type) {
        case KDH_WIRE_TYPE_RESET:
            t->st.resets++;
            t->remote_id = KDH_WIRE_INITIAL_ID;
            /* A fresh target: the state change carries the sync bit (kd-protocol 1.4). */
            t->current_id = KDH_WIRE_INITIAL_ID | KDH_WIRE_SYNC_BIT;
            t->pending = 0;
            send_control(t, KDH_WIRE_TYPE_RESET, 0);
            send_state_change(t);
            break;
        case KDH_WIRE_TYPE_ACKNOWLEDGE:
            if (t->pending && p->id == (t->current_id & ~KDH_WIRE_SYNC_BIT))
                acked(t);
            break;
        case KDH_WIRE_TYPE_RESEND:
            if (t->pending)
                queue(t, t->pending_buf, t->pending_len);
            break;
        default:
            break;
        }
        return;
    }
    send_control(t, KDH_WIRE_TYPE_ACKNOWLEDGE, p->id & ~KDH_WIRE_SYNC_BIT);
    /* A data packet while ours waits for its ACK: the ACK was lost, ours arrived (R, SING). */
    if (t->pending)
        acked(t);
    if ((p->id & ~KDH_WIRE_SYNC_BIT) != t->remote_id) {
        t->st.duplicates++;
        return;
    }
    t->remote_id ^= 1u;
    if (p->type == KDH_WIRE_TYPE_STATE_MANIPULATE)
        answer_manipulate(t, p);
}

static void on_event(struct kdh_selftest_target *t, const kdh_wire_event_t *ev)
{
    switch (ev->kind) {
    case KDH_WIRE_EV_PACKET:
        on_packet(t, &ev->packet);
        break;
    case KDH_WIRE_EV_BAD_CHECKSUM:
    case KDH_WIRE_EV_MISSING_TRAILER:
    case KDH_WIRE_EV_OVERSIZE:
    case KDH_WIRE_EV_TRUNCATED:
        t->st.bad_packets++;
        send_control(t, KDH_WIRE_TYPE_RESEND, 0);
        break;
    default:
        break; /* garbage and break-in bytes: a stopped target ignores them */
    }
}

static void do_read(struct kdh_selftest_target *t)
{
    uint8_t buf[4096];
    for (int round = 0; round < 16 && !t->failed; round++) {
        ssize_t n = read(t->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0 && errno == EIO)
            return; /* the host side is not open (yet or any more): not our failure */
        if (n <= 0) {
            fail(t, "read", n == 0 ? EIO : errno);
            return;
        }
        t->st.bytes_in += (uint64_t)n;
        const uint8_t *p = buf;
        size_t left = (size_t)n;
        while (left && !t->failed) {
            kdh_wire_event_t ev;
            size_t used = kdh_wire_decoder_feed(&t->dec, p, left, &ev);
            p += used;
            left -= used;
            if (ev.kind != KDH_WIRE_EV_NONE)
                on_event(t, &ev);
        }
    }
}

static void do_write(struct kdh_selftest_target *t)
{
    while (t->out_tail > t->out_head) {
        ssize_t n = write(t->fd, t->out + t->out_head, t->out_tail - t->out_head);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            fail(t, "write", n == 0 ? EIO : errno);
            return;
        }
        t->out_head += (size_t)n;
        t->st.bytes_out += (uint64_t)n;
    }
    t->out_head = t->out_tail = 0;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct kdh_selftest_target *t = h->data;
    if (t->failed)
        return;
    if (status < 0) {
        fail(t, "poll", -status);
        return;
    }
    if (events & UV_READABLE)
        do_read(t);
    if (!t->failed && (events & UV_WRITABLE))
        do_write(t);
    rearm(t);
}

int kdh_selftest_target_start(kdh_selftest_target_t **out, uv_loop_t *loop, int master_fd, kdh_err_t *err)
{
    struct kdh_selftest_target *t = calloc(1, sizeof *t);
    if (!t)
        return kdh_err_set(err, KDH_ENOMEM, "selftest target: out of memory");
    t->loop = loop;
    t->fd = master_fd;
    t->current_id = KDH_WIRE_INITIAL_ID | KDH_WIRE_SYNC_BIT;
    t->remote_id = KDH_WIRE_INITIAL_ID;
    kdh_wire_decoder_init(&t->dec);
    int r = uv_poll_init(loop, &t->poll, master_fd);
    if (r < 0) {
        free(t);
        return kdh_err_set(err, KDH_EIO, "selftest target: cannot watch the pty: %s", uv_strerror(r));
    }
    t->poll.data = t;
    t->events = UV_READABLE;
    uv_poll_start(&t->poll, t->events, on_poll);
    *out = t;
    return KDH_OK;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void kdh_selftest_target_stop(kdh_selftest_target_t *t)
{
    if (t)
        uv_close((uv_handle_t *)&t->poll, on_closed);
}

kdh_selftest_target_stats_t kdh_selftest_target_stats(const kdh_selftest_target_t *t)
{
    return t->st;
}

int kdh_selftest_target_failed(const kdh_selftest_target_t *t, kdh_err_t *err)
{
    if (t->failed && err)
        *err = t->err;
    return t->failed;
}
