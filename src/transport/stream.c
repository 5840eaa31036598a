/* stream.c: socket transports on libuv streams: `tcp://host:port` (QEMU -serial tcp:...,server,
 * socat bridges; TCP_NODELAY because KD packets are small and latency-bound) and `unix:/path`
 * (QEMU -serial unix:, VirtualBox host pipes). The peer closing or resetting the connection is
 * reported as KDH_EHANGUP; failing to connect as KDH_EIO with the likely cause. */
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
    uv_read_stop(s);
    if (nread == UV_EOF)
        kdh__transport_fail(t, KDH_EHANGUP, "%s: connection closed by the peer", t->name);
    else if (is_reset((int)nread))
        kdh__transport_fail(t, KDH_EHANGUP, "%s: connection lost (%s)", t->name, uv_strerror((int)nread));
    else
        kdh__transport_fail(t, KDH_EIO, "%s: read failed: %s", t->name, uv_strerror((int)nread));
}

static void on_connect(uv_connect_t *req, int status)
{
    struct kdh_transport *t = req->data;
    if (status == UV_ECANCELED || t->closing || t->dead)
        return;
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
    t->u.stream.connected = 1;
    if (t->kind == KDH_TRANSPORT_TCP)
        uv_tcp_nodelay(&t->u.stream.h.tcp, 1);
    int r = uv_read_start(&t->u.stream.h.stream, on_alloc, on_read);
    if (r < 0) {
        kdh__transport_fail(t, KDH_EIO, "%s: cannot read: %s", t->name, uv_strerror(r));
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
    if (status == UV_ECANCELED || t->closing || t->dead)
        return;
    if (status < 0) {
        uv_read_stop(&t->u.stream.h.stream);
        if (is_reset(status))
            kdh__transport_fail(t, KDH_EHANGUP, "%s: connection lost (%s)", t->name, uv_strerror(status));
        else
            kdh__transport_fail(t, KDH_EIO, "%s: write failed: %s", t->name, uv_strerror(status));
        return;
    }
    t->bytes_out += len;
    if (t->u.stream.queued == 0)
        kdh__transport_drained(t);
}

static int stream_write(struct kdh_transport *t, const void *buf, size_t len, kdh_err_t *err)
{
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

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void stream_close(struct kdh_transport *t)
{
    uv_close((uv_handle_t *)&t->u.stream.h.stream, on_closed);
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
    int r = uv_tcp_init(t->loop, &t->u.stream.h.tcp);
    if (r < 0) {
        freeaddrinfo(ai);
        return kdh_err_set(err, KDH_EIO, "%s: %s", spec, uv_strerror(r));
    }
    t->u.stream.h.tcp.data = t;
    uv_tcp_nodelay(&t->u.stream.h.tcp, 1);
    t->u.stream.connect.data = t;
    r = uv_tcp_connect(&t->u.stream.connect, &t->u.stream.h.tcp, ai->ai_addr, on_connect);
    freeaddrinfo(ai);
    if (r < 0) {
        t->closing = 1;
        t->loop_owned = 1;
        uv_close((uv_handle_t *)&t->u.stream.h.tcp, on_closed);
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
    int r = uv_pipe_init(t->loop, &t->u.stream.h.pipe, 0);
    if (r < 0)
        return kdh_err_set(err, KDH_EIO, "%s: %s", spec, uv_strerror(r));
    t->u.stream.h.pipe.data = t;
    t->u.stream.connect.data = t;
    /* Errors, including a missing socket file, arrive through on_connect. */
    uv_pipe_connect(&t->u.stream.connect, &t->u.stream.h.pipe, path, on_connect);
    return KDH_OK;
}
