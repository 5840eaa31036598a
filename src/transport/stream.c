/* stream.c: socket transports on libuv streams: `tcp://host:port` (QEMU -serial tcp:...,server,
 * socat bridges; TCP_NODELAY because KD packets are small and latency-bound) and `unix:/path`
 * (QEMU -serial unix:, VirtualBox host pipes). Failing to connect at first is reported as
 * KDH_EIO with the likely cause. Once connected, the peer closing or resetting the connection
 * (a terminal server or VM restarting) is a cable pulled and put back, not an end: the transport
 * says so in a notice and connects again to the same address with backoff (100 ms doubling to
 * 2 s), for as long as the owner keeps it open. Bytes written meanwhile are dropped, as a line
 * would drop them; the KD link's retransmit and RESET timers recover from that. */
#include "transport_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef struct write_req {
    uv_write_t req;
    struct kdh_transport *t;
    size_t len;
    uint8_t data[];
} write_req_t;

static void on_connect(uv_connect_t *req, int status);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* t is freed once the owner has closed it and neither of its handles is open any more. */
static void maybe_free(struct kdh_transport *t)
{
    if (!t->u.stream.handle_open && !t->re.timer_open)
        free(t);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct kdh_transport *t = h->data;
    t->re.timer_open = 0;
    maybe_free(t);
}

static void schedule_retry(struct kdh_transport *t);

static void on_handle_closed(uv_handle_t *h)
{
    struct kdh_transport *t = h->data;
    t->u.stream.handle_open = 0;
    if (t->closing) {
        maybe_free(t);
        return;
    }
    if (t->dead)
        return; /* the owner closes it */
    schedule_retry(t); /* the connection was lost and its handle is gone: try again */
}

static void close_handle(struct kdh_transport *t)
{
    if (t->u.stream.handle_open && !uv_is_closing((uv_handle_t *)&t->u.stream.h.stream))
        uv_close((uv_handle_t *)&t->u.stream.h.stream, on_handle_closed);
}

/* Initialises the stream handle and starts connecting to the spec's address. */
static int start_connect(struct kdh_transport *t)
{
    int r;
    if (t->kind == KDH_TRANSPORT_TCP) {
        r = uv_tcp_init(t->loop, &t->u.stream.h.tcp);
        if (r < 0)
            return r;
        t->u.stream.h.tcp.data = t;
        t->u.stream.handle_open = 1;
        uv_tcp_nodelay(&t->u.stream.h.tcp, 1);
        t->u.stream.connect.data = t;
        return uv_tcp_connect(&t->u.stream.connect, &t->u.stream.h.tcp,
                              (const struct sockaddr *)&t->u.stream.addr, on_connect);
    }
    r = uv_pipe_init(t->loop, &t->u.stream.h.pipe, 0);
    if (r < 0)
        return r;
    t->u.stream.h.pipe.data = t;
    t->u.stream.handle_open = 1;
    t->u.stream.connect.data = t;
    /* Errors, including a missing socket file, arrive through on_connect. */
    uv_pipe_connect(&t->u.stream.connect, &t->u.stream.h.pipe, t->name + 5, on_connect);
    return 0;
}

static void on_retry(uv_timer_t *timer)
{
    struct kdh_transport *t = timer->data;
    if (t->closing || t->dead)
        return;
    t->re.attempts++;
    int r = start_connect(t);
    if (r < 0) {
        if (t->u.stream.handle_open)
            close_handle(t); /* its close schedules the next attempt */
        else
            schedule_retry(t);
    }
}

static void schedule_retry(struct kdh_transport *t)
{
    kdh__transport_retry_schedule(t, on_retry, "connection lost and cannot retry");
}

/* The established connection went away: say so once and reconnect. */
static void lose(struct kdh_transport *t, const char *why)
{
    if (t->re.active)
        return;
    kdh__transport_retry_begin(t, 0);
    uv_read_stop(&t->u.stream.h.stream);
    kdh__transport_notice(t, "%s: %s; reconnecting", t->name, why);
    kdh__transport_line(t, 0, why);
    close_handle(t);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct kdh_transport *t = h->data;
    buf->base = (char *)t->u.stream.rbuf;
    buf->len = sizeof t->u.stream.rbuf;
}

static int is_reset(int status)
{
    return status == UV_ECONNRESET || status == UV_EPIPE || status == UV_ENOTCONN ||
           status == UV_ECONNABORTED || status == UV_ETIMEDOUT;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct kdh_transport *t = s->data;
    if (t->dead || t->closing)
        return;
    if (nread > 0) {
        kdh__transport_deliver(t, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return; /* EAGAIN inside libuv */
    if (nread == UV_EOF) {
        lose(t, "connection closed by the peer");
    } else if (is_reset((int)nread)) {
        char why[128];
        snprintf(why, sizeof why, "connection lost (%s)", uv_strerror((int)nread));
        lose(t, why);
    } else {
        uv_read_stop(s);
        kdh__transport_fail(t, KDH_EIO, "%s: read failed: %s", t->name, uv_strerror((int)nread));
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct kdh_transport *t = req->data;
    if (status == UV_ECANCELED || t->closing || t->dead)
        return;
    if (status < 0 && t->re.active) {
        close_handle(t); /* its close schedules the next attempt */
        return;
    }
    if (status < 0) {
        const char *hint = t->kind == KDH_TRANSPORT_TCP
                               ? "is the target listening (QEMU -serial tcp:HOST:PORT,server=on,wait=off)?"
                               : "is the target listening (QEMU -serial unix:PATH,server=on,wait=off)?";
        if (status == UV_ECONNREFUSED)
            kdh__transport_fail(t, KDH_EIO, "%s: connection refused; %s", t->name, hint);
        else if (status == UV_ENOENT)
            kdh__transport_fail(t, KDH_EIO, "%s: no such socket; %s", t->name, hint);
        else
            kdh__transport_fail(t, KDH_EIO, "%s: cannot connect: %s", t->name, uv_strerror(status));
        return;
    }
    if (t->kind == KDH_TRANSPORT_TCP)
        uv_tcp_nodelay(&t->u.stream.h.tcp, 1);
    int r = uv_read_start(&t->u.stream.h.stream, on_alloc, on_read);
    if (r < 0) {
        kdh__transport_fail(t, KDH_EIO, "%s: cannot read: %s", t->name, uv_strerror(r));
        return;
    }
    if (t->re.active) {
        t->re.active = 0;
        kdh__transport_notice(t, "%s: reconnected after %u attempt(s); %llu byte(s) written while it was down were lost",
                              t->name, t->re.attempts, (unsigned long long)t->re.dropped);
        kdh__transport_line(t, 1, NULL);
        return;
    }
    if (t->cb.on_connect)
        t->cb.on_connect(t->cb.ctx);
}

static void on_written(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    struct kdh_transport *t = w->t;
    t->u.stream.queued -= w->len;
    size_t len = w->len;
    free(w);
    if (status == UV_ECANCELED || t->closing || t->dead || t->re.active)
        return;
    if (status < 0) {
        if (is_reset(status)) {
            char why[128];
            snprintf(why, sizeof why, "connection lost (%s)", uv_strerror(status));
            lose(t, why);
        } else {
            uv_read_stop(&t->u.stream.h.stream);
            kdh__transport_fail(t, KDH_EIO, "%s: write failed: %s", t->name, uv_strerror(status));
        }
        return;
    }
    t->bytes_out += len;
    if (t->u.stream.queued == 0)
        kdh__transport_drained(t);
}

static int stream_write(struct kdh_transport *t, const void *buf, size_t len, kdh_err_t *err)
{
    if (t->re.active) {
        t->re.dropped += len; /* the cable is out: the bytes are lost on the way */
        return KDH_OK;
    }
    if (len > KDH_TRANSPORT_WRITE_CAP - t->u.stream.queued) {
        t->refused = 1;
        return kdh_err_set(err, KDH_EBUSY, "%s: write buffer full (%zu bytes pending)", t->name,
                           t->u.stream.queued);
    }
    write_req_t *w = malloc(sizeof *w + len);
    if (!w)
        return kdh_err_set(err, KDH_ENOMEM, "%s: out of memory", t->name);
    memcpy(w->data, buf, len);
    w->t = t;
    w->len = len;
    /* libuv queues writes made while the connection is still being set up. */
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int r = uv_write(&w->req, &t->u.stream.h.stream, &b, 1, on_written);
    if (r < 0) {
        free(w);
        return kdh_err_set(err, KDH_EIO, "%s: write failed: %s", t->name, uv_strerror(r));
    }
    t->u.stream.queued += len;
    return KDH_OK;
}

static size_t stream_pending(const struct kdh_transport *t)
{
    return t->u.stream.queued;
}

static void stream_close(struct kdh_transport *t)
{
    kdh__transport_retry_close(t, on_timer_closed);
    if (t->u.stream.handle_open)
        close_handle(t);
    else
        maybe_free(t);
}

static const kdh_transport_ops_t stream_ops = {stream_write, stream_pending, stream_close};

/* Splits "tcp://host:port" or "tcp://[v6addr]:port". */
static int parse_tcp(const char *spec, char *host, size_t hostsz, char *port, size_t portsz, kdh_err_t *err)
{
    const char *p = spec + 6, *colon;
    size_t hl;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close || close[1] != ':')
            goto bad;
        p++;
        hl = (size_t)(close - p);
        colon = close + 1;
    } else {
        colon = strrchr(p, ':');
        if (!colon)
            goto bad;
        hl = (size_t)(colon - p);
    }
    if (hl == 0 || hl >= hostsz)
        goto bad;
    memcpy(host, p, hl);
    host[hl] = '\0';
    const char *ps = colon + 1;
    size_t pl = strlen(ps);
    if (pl == 0 || pl >= portsz || strspn(ps, "0123456789") != pl)
        goto bad;
    unsigned long v = strtoul(ps, NULL, 10);
    if (v == 0 || v > 65535)
        goto bad;
    memcpy(port, ps, pl + 1);
    return KDH_OK;
bad:
    return kdh_err_set(err, KDH_EINVAL, "%s: bad TCP address; write tcp://HOST:PORT (port 1..65535)", spec);
}

int kdh__transport_open_tcp(struct kdh_transport *t, const char *spec, kdh_err_t *err)
{
    char host[256], port[8];
    int rc = parse_tcp(spec, host, sizeof host, port, sizeof port, err);
    if (rc != KDH_OK)
        return rc;
    snprintf(t->name, sizeof t->name, "%s", spec);
    /* Resolved synchronously: this runs once at start-up, and the usual host is a literal
     * address or localhost. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0 || !ai)
        return kdh_err_set(err, KDH_ENOTFOUND, "%s: cannot resolve host '%s': %s", spec, host, gai_strerror(g));
    t->kind = KDH_TRANSPORT_TCP;
    t->ops = &stream_ops;
    if (ai->ai_addrlen > sizeof t->u.stream.addr) {
        freeaddrinfo(ai);
        return kdh_err_set(err, KDH_EINVAL, "%s: address too long", spec);
    }
    memcpy(&t->u.stream.addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    int r = start_connect(t);
    if (r < 0 && !t->u.stream.handle_open)
        return kdh_err_set(err, KDH_EIO, "%s: %s", spec, uv_strerror(r));
    if (r < 0) {
        t->closing = 1;
        t->loop_owned = 1;
        close_handle(t);
        return kdh_err_set(err, KDH_EIO, "%s: cannot connect: %s", spec, uv_strerror(r));
    }
    return KDH_OK;
}

int kdh__transport_open_unix(struct kdh_transport *t, const char *spec, kdh_err_t *err)
{
    const char *path = spec + 5;
    struct sockaddr_un sa;
    if (!path[0])
        return kdh_err_set(err, KDH_EINVAL, "%s: missing socket path; write unix:/path/to/socket", spec);
    if (strlen(path) >= sizeof sa.sun_path)
        return kdh_err_set(err, KDH_EINVAL, "%s: socket path longer than %zu bytes", spec, sizeof sa.sun_path - 1);
    snprintf(t->name, sizeof t->name, "%s", spec);
    t->kind = KDH_TRANSPORT_UNIX;
    t->ops = &stream_ops;
    int r = start_connect(t); /* the path is read back from the name */
    if (r < 0)
        return kdh_err_set(err, KDH_EIO, "%s: %s", spec, uv_strerror(r));
    return KDH_OK;
}
