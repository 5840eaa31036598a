/* transport.c: the transport front door: picks the backend from the spec string, validates
 * the baud rate, and holds the callback plumbing every backend shares (report an error once,
 * stop delivering after close). */
#include "transport_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned supported_bauds[] = {9600, 19200, 38400, 57600, 115200};

int kdh_transport_check_baud(unsigned baud, kdh_err_t *err)
{
    for (size_t i = 0; i < KDH_ARRAY_LEN(supported_bauds); i++)
        if (supported_bauds[i] == baud)
            return KDH_OK;
    return kdh_err_set(err, KDH_ERANGE,
                       "baud %u is not supported; use 9600, 19200, 38400, 57600 or 115200 "
                       "(the target's /BAUDRATE)", baud);
}

void kdh__transport_fail(struct kdh_transport *t, int code, const char *fmt, ...)
{
    if (t->dead || t->closing)
        return;
    t->dead = 1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (t->cb.on_error)
        t->cb.on_error(t->cb.ctx, code, msg);
}

void kdh__transport_notice(struct kdh_transport *t, const char *fmt, ...)
{
    if (!t->cb.on_notice || t->closing)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    t->cb.on_notice(t->cb.ctx, msg);
}

void kdh__transport_line(struct kdh_transport *t, int up, const char *why)
{
    if (t->cb.on_line && !t->closing)
        t->cb.on_line(t->cb.ctx, up, why);
}

#define RETRY_FIRST_MS 100u
#define RETRY_MAX_MS 2000u

void kdh__transport_retry_begin(struct kdh_transport *t, uint64_t dropped)
{
    t->re.active = 1;
    t->re.attempts = 0;
    t->re.backoff_ms = RETRY_FIRST_MS;
    t->re.dropped = dropped;
}

void kdh__transport_retry_schedule(struct kdh_transport *t, uv_timer_cb cb, const char *what_failed)
{
    if (!t->re.timer_open) {
        if (uv_timer_init(t->loop, &t->re.timer) < 0) {
            kdh__transport_fail(t, KDH_EHANGUP, "%s: %s", t->name, what_failed);
            return;
        }
        t->re.timer.data = t;
        t->re.timer_open = 1;
    }
    unsigned wait = t->re.backoff_ms;
    t->re.backoff_ms = wait * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : wait * 2;
    uv_timer_start(&t->re.timer, cb, wait, 0);
}

void kdh__transport_retry_close(struct kdh_transport *t, uv_close_cb closed_cb)
{
    if (t->re.timer_open && !uv_is_closing((uv_handle_t *)&t->re.timer)) {
        uv_timer_stop(&t->re.timer);
        uv_close((uv_handle_t *)&t->re.timer, closed_cb);
    }
}

int kdh__transport_deliver(struct kdh_transport *t, const uint8_t *buf, size_t len)
{
    if (t->dead || t->closing)
        return 0;
    t->bytes_in += len;
    if (t->cb.on_bytes)
        t->cb.on_bytes(t->cb.ctx, buf, len);
    return !(t->dead || t->closing);
}

void kdh__transport_drained(struct kdh_transport *t)
{
    if (!t->refused || t->dead || t->closing)
        return;
    t->refused = 0;
    if (t->cb.on_drain)
        t->cb.on_drain(t->cb.ctx);
}

int kdh_transport_open(kdh_transport_t **out, uv_loop_t *loop, const char *spec, unsigned baud,
                       const kdh_transport_cb_t *cb, kdh_err_t *err)
{
    if (!out || !loop || !spec || !cb)
        return kdh_err_set(err, KDH_EINVAL, "transport: missing argument");
    *out = NULL;
    if (!spec[0])
        return kdh_err_set(err, KDH_EINVAL,
                           "empty port; give a device path, tcp://host:port or unix:/path");
    struct kdh_transport *t = calloc(1, sizeof *t);
    if (!t)
        return kdh_err_set(err, KDH_ENOMEM, "transport: out of memory");
    t->loop = loop;
    t->cb = *cb;
    int rc;
    if (strncmp(spec, "tcp://", 6) == 0) {
        rc = kdh__transport_open_tcp(t, spec, err);
    } else if (strncmp(spec, "unix:", 5) == 0) {
        rc = kdh__transport_open_unix(t, spec, err);
    } else if (strstr(spec, "://") || strncmp(spec, "tcp:", 4) == 0) {
        rc = kdh_err_set(err, KDH_EINVAL,
                         "%s: unknown port kind; give a device path, tcp://host:port or unix:/path",
                         spec);
    } else {
        rc = kdh__transport_open_serial(t, spec, baud, err);
    }
    if (rc != KDH_OK) {
        /* Backends clean up their own half-opened state before failing; only when a uv
         * handle was already initialised does its close callback free the object. */
        if (!t->loop_owned)
            free(t);
        return rc;
    }
    *out = t;
    return KDH_OK;
}

int kdh_transport_write(kdh_transport_t *t, const void *buf, size_t len, kdh_err_t *err)
{
    if (t->closing)
        return kdh_err_set(err, KDH_EINVAL, "%s: write after close", t->name);
    if (t->dead)
        return kdh_err_set(err, KDH_EHANGUP, "%s: the port is gone", t->name);
    if (len == 0)
        return KDH_OK;
    if (len > KDH_TRANSPORT_WRITE_CAP)
        return kdh_err_set(err, KDH_ERANGE, "%s: %zu bytes exceed the %u-byte write buffer", t->name, len,
                           KDH_TRANSPORT_WRITE_CAP);
    return t->ops->write(t, buf, len, err);
}

size_t kdh_transport_pending(const kdh_transport_t *t)
{
    return t->ops->pending(t);
}

void kdh_transport_close(kdh_transport_t *t)
{
    if (!t || t->closing)
        return;
    t->closing = 1;
    t->ops->close(t);
}

kdh_transport_kind_t kdh_transport_kind(const kdh_transport_t *t)
{
    return t->kind;
}

const char *kdh_transport_name(const kdh_transport_t *t)
{
    return t->name;
}

uint64_t kdh_transport_bytes_in(const kdh_transport_t *t)
{
    return t->bytes_in;
}

uint64_t kdh_transport_bytes_out(const kdh_transport_t *t)
{
    return t->bytes_out;
}
