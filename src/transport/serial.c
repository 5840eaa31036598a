/* serial.c: moving bytes on an open serial fd (libserialport or termios backend) with one
 * uv_poll_t: read everything readable, write the buffered bytes when the port is writable,
 * and treat POLLERR/POLLHUP, a 0-byte read or EIO as the port going away (KDH_EHANGUP):
 * after an unplug the port stays "readable" with nothing in it, which must not pass for
 * silence. With cb.reopen_serial a hangup is a cable pulled, not an end: the transport says so
 * in a notice, drops what is written meanwhile (a line would) and opens the same path again
 * with backoff (100 ms doubling to 2 s) until it is back or the owner closes it. */
#include "transport_int.h"

#include <errno.h>
#include <libserialport.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bounds the work done per poll callback so one busy port cannot starve the loop. */
#define MAX_READS_PER_EVENT 16

static void on_poll(uv_poll_t *h, int status, int events);
static void lose(struct kdh_transport *t, const char *why);

static void update_events(struct kdh_transport *t)
{
    if (t->dead || t->closing)
        return;
    int ev = UV_READABLE | UV_DISCONNECT;
    if (t->u.serial.tail > t->u.serial.head)
        ev |= UV_WRITABLE;
    if (ev != t->u.serial.poll_events) {
        t->u.serial.poll_events = ev;
        uv_poll_start(&t->u.serial.poll, ev, on_poll);
    }
}

static void die(struct kdh_transport *t, int code, const char *fmt_detail, int e)
{
    uv_poll_stop(&t->u.serial.poll);
    t->u.serial.poll_events = 0;
    if (code == KDH_EHANGUP && t->cb.reopen_serial) {
        lose(t, fmt_detail);
        return;
    }
    if (code == KDH_EHANGUP)
        kdh__transport_fail(t, code, "%s: port hung up or unplugged (%s); check the cable or adapter",
                            t->name, fmt_detail);
    else
        kdh__transport_fail(t, code, "%s: %s: %s", t->name, fmt_detail, strerror(e));
}

static int is_hangup_errno(int e)
{
    return e == EIO || e == EPIPE || e == ENXIO || e == ENODEV || e == EBADF;
}

/* Returns 0 when t must not be touched further. */
static int do_read(struct kdh_transport *t)
{
    uint8_t buf[4096];
    for (int i = 0; i < MAX_READS_PER_EVENT; i++) {
        ssize_t n = read(t->u.serial.fd, buf, sizeof buf);
        if (n > 0) {
            if (!kdh__transport_deliver(t, buf, (size_t)n))
                return 0;
            continue;
        }
        if (n == 0) {
            die(t, KDH_EHANGUP, "end of file", 0);
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 1;
        if (is_hangup_errno(errno))
            die(t, KDH_EHANGUP, strerror(errno), errno);
        else
            die(t, KDH_EIO, "read failed", errno);
        return 0;
    }
    return 1;
}

static int do_write(struct kdh_transport *t)
{
    while (t->u.serial.tail > t->u.serial.head) {
        ssize_t n = write(t->u.serial.fd, t->u.serial.wbuf + t->u.serial.head,
                          t->u.serial.tail - t->u.serial.head);
        if (n > 0) {
            t->u.serial.head += (size_t)n;
            t->bytes_out += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        int e = n < 0 ? errno : EIO;
        if (is_hangup_errno(e))
            die(t, KDH_EHANGUP, strerror(e), e);
        else
            die(t, KDH_EIO, "write failed", e);
        return 0;
    }
    t->u.serial.head = t->u.serial.tail = 0;
    kdh__transport_drained(t);
    return !(t->dead || t->closing);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct kdh_transport *t = h->data;
    if (t->dead || t->closing)
        return;
    if (status < 0) {
        /* libuv maps POLLERR to UV_EBADF: the device went away under us. */
        die(t, KDH_EHANGUP, "device error (POLLERR)", 0);
        return;
    }
    if ((events & UV_READABLE) && !do_read(t))
        return;
    if ((events & UV_WRITABLE) && !do_write(t))
        return;
    if (events & UV_DISCONNECT) {
        die(t, KDH_EHANGUP, "hangup", 0);
        return;
    }
    update_events(t);
}

static int serial_write(struct kdh_transport *t, const void *buf, size_t len, kdh_err_t *err)
{
    if (t->re.active) {
        t->re.dropped += len; /* the cable is out: the bytes are lost on the way */
        return KDH_OK;
    }
    size_t used = t->u.serial.tail - t->u.serial.head;
    if (len > KDH_TRANSPORT_WRITE_CAP - used) {
        t->refused = 1;
        return kdh_err_set(err, KDH_EBUSY, "%s: write buffer full (%zu bytes pending)", t->name, used);
    }
    if (t->u.serial.tail + len > KDH_TRANSPORT_WRITE_CAP) {
        memmove(t->u.serial.wbuf, t->u.serial.wbuf + t->u.serial.head, used);
        t->u.serial.head = 0;
        t->u.serial.tail = used;
    }
    memcpy(t->u.serial.wbuf + t->u.serial.tail, buf, len);
    t->u.serial.tail += len;
    /* Sent from the poll callback, never from here, so that write() never calls back into
     * the owner (a hangup found while writing is reported from the loop). */
    update_events(t);
    return KDH_OK;
}

static size_t serial_pending(const struct kdh_transport *t)
{
    return t->u.serial.tail - t->u.serial.head;
}

static void release_fd(struct kdh_transport *t)
{
    if (t->u.serial.port) {
        sp_close(t->u.serial.port);
        sp_free_port(t->u.serial.port);
    } else if (t->u.serial.fd >= 0) {
        close(t->u.serial.fd);
    }
    t->u.serial.port = NULL;
    t->u.serial.fd = -1;
}

/* t is freed once the owner has closed it and neither of its handles is open any more. */
static void maybe_free(struct kdh_transport *t)
{
    if (t->u.serial.poll_open || t->re.timer_open)
        return;
    free(t->u.serial.wbuf);
    free(t);
}

static void schedule_reopen(struct kdh_transport *t);

static void on_poll_closed(uv_handle_t *h)
{
    struct kdh_transport *t = h->data;
    release_fd(t);
    t->u.serial.poll_open = 0;
    if (t->closing)
        maybe_free(t);
    else if (t->re.active && !t->dead)
        schedule_reopen(t); /* the old fd is gone: try the path again */
}

static void on_timer_closed(uv_handle_t *h)
{
    struct kdh_transport *t = h->data;
    t->re.timer_open = 0;
    maybe_free(t);
}

/* Watches the open fd. On failure the handle (when initialised) is closing and the fd is
 * released with it. */
static int start_poll(struct kdh_transport *t, kdh_err_t *err)
{
    int r = uv_poll_init(t->loop, &t->u.serial.poll, t->u.serial.fd);
    if (r < 0) {
        release_fd(t);
        return kdh_err_set(err, KDH_EIO, "%s: cannot watch the port: %s", t->name, uv_strerror(r));
    }
    t->u.serial.poll.data = t;
    t->u.serial.poll_open = 1;
    t->u.serial.poll_events = UV_READABLE | UV_DISCONNECT;
    r = uv_poll_start(&t->u.serial.poll, t->u.serial.poll_events, on_poll);
    if (r < 0) {
        uv_close((uv_handle_t *)&t->u.serial.poll, on_poll_closed);
        return kdh_err_set(err, KDH_EIO, "%s: cannot watch the port: %s", t->name, uv_strerror(r));
    }
    return KDH_OK;
}

static void on_reopen_timer(uv_timer_t *timer)
{
    struct kdh_transport *t = timer->data;
    if (t->closing || t->dead || !t->re.active)
        return;
    t->re.attempts++;
    kdh_err_t e;
    if (kdh__transport_serial_open_fd(t, t->u.serial.path, t->u.serial.baud, 1, &e) != KDH_OK) {
        schedule_reopen(t); /* still unplugged (no such device, busy, ...) */
        return;
    }
    if (start_poll(t, &e) != KDH_OK) {
        if (!t->u.serial.poll_open)
            schedule_reopen(t); /* else the handle's close schedules it */
        return;
    }
    t->re.active = 0;
    kdh__transport_notice(t, "%s: port is back after %u attempt(s); %llu byte(s) written while it was gone were lost",
                          t->name, t->re.attempts, (unsigned long long)t->re.dropped);
    kdh__transport_line(t, 1, NULL);
}

static void schedule_reopen(struct kdh_transport *t)
{
    kdh__transport_retry_schedule(t, on_reopen_timer, "port hung up and cannot be reopened");
}

/* The port hung up (the poll is already stopped): say so once, close the fd, reopen later. */
static void lose(struct kdh_transport *t, const char *why)
{
    if (t->re.active)
        return;
    kdh__transport_retry_begin(t, t->u.serial.tail - t->u.serial.head); /* never reached the line */
    t->u.serial.head = t->u.serial.tail = 0;
    kdh__transport_notice(t, "%s: port hung up or unplugged (%s); reopening %s", t->name, why,
                          t->u.serial.path);
    kdh__transport_line(t, 0, why);
    uv_close((uv_handle_t *)&t->u.serial.poll, on_poll_closed);
}

static void serial_close(struct kdh_transport *t)
{
    kdh__transport_retry_close(t, on_timer_closed);
    if (t->u.serial.poll_open && !uv_is_closing((uv_handle_t *)&t->u.serial.poll))
        uv_close((uv_handle_t *)&t->u.serial.poll, on_poll_closed);
    else
        maybe_free(t);
}

static const kdh_transport_ops_t serial_ops = {serial_write, serial_pending, serial_close};

int kdh__transport_serial_start(struct kdh_transport *t, kdh_err_t *err)
{
    t->ops = &serial_ops;
    t->u.serial.wbuf = malloc(KDH_TRANSPORT_WRITE_CAP);
    if (!t->u.serial.wbuf) {
        release_fd(t);
        return kdh_err_set(err, KDH_ENOMEM, "%s: out of memory", t->name);
    }
    int rc = start_poll(t, err);
    if (rc != KDH_OK && t->u.serial.poll_open) {
        /* The handle is initialised, so only the loop may release it (maybe_free frees t). */
        t->closing = 1;
        t->loop_owned = 1;
    } else if (rc != KDH_OK) {
        free(t->u.serial.wbuf);
        t->u.serial.wbuf = NULL;
    }
    return rc;
}
