/* serial.c: moving bytes on an open serial fd (libserialport or termios backend) with one
 * uv_poll_t: read everything readable, write the buffered bytes when the port is writable,
 * and treat POLLERR/POLLHUP, a 0-byte read or EIO as the port going away (KDH_EHANGUP):
 * after an unplug the port stays "readable" with nothing in it, which must not pass for
 * silence. */
#include "transport_int.h"

#include <errno.h>
#include <libserialport.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int kdh__transport_serial_start(struct kdh_transport *t, kdh_err_t *err);

/* Bounds the work done per poll callback so one busy port cannot starve the loop. */
#define MAX_READS_PER_EVENT 16

static void on_poll(uv_poll_t *h, int status, int events);

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
        die(t, KDH_EHANGUP, uv_strerror(status), 0);
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
    } else {
        close(t->u.serial.fd);
    }
}

static void on_closed(uv_handle_t *h)
{
    struct kdh_transport *t = h->data;
    release_fd(t);
    free(t->u.serial.wbuf);
    free(t);
}

static void serial_close(struct kdh_transport *t)
{
    uv_close((uv_handle_t *)&t->u.serial.poll, on_closed);
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
    int r = uv_poll_init(t->loop, &t->u.serial.poll, t->u.serial.fd);
    if (r < 0) {
        release_fd(t);
        free(t->u.serial.wbuf);
        return kdh_err_set(err, KDH_EIO, "%s: cannot watch the port: %s", t->name, uv_strerror(r));
    }
    t->u.serial.poll.data = t;
    t->u.serial.poll_events = UV_READABLE | UV_DISCONNECT;
    r = uv_poll_start(&t->u.serial.poll, t->u.serial.poll_events, on_poll);
    if (r < 0) {
        /* The handle is initialised, so only the loop may release it (on_closed frees t). */
        t->closing = 1;
        t->loop_owned = 1;
        uv_close((uv_handle_t *)&t->u.serial.poll, on_closed);
        return kdh_err_set(err, KDH_EIO, "%s: cannot watch the port: %s", t->name, uv_strerror(r));
    }
    return KDH_OK;
}
