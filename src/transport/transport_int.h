/* transport_int.h: the transport object shared by the spec dispatcher (transport.c), the
 * serial backends (serial.c, serial_open.c) and the socket backends (stream.c). */
#ifndef KDH_TRANSPORT_INT_H
#define KDH_TRANSPORT_INT_H

#include <limits.h>
#include <sys/socket.h>

#include "kdh/transport.h"

struct sp_port;
struct kdh_transport;

typedef struct kdh_transport_ops {
    int (*write)(struct kdh_transport *t, const void *buf, size_t len, kdh_err_t *err);
    size_t (*pending)(const struct kdh_transport *t);
    void (*close)(struct kdh_transport *t);
} kdh_transport_ops_t;

/* Coming back after the line went away: a socket reconnects, a serial port with
 * cb.reopen_serial is opened again; both wait 100 ms doubling to 2 s between attempts. */
typedef struct kdh__retry {
    int active;          /* lost; the handle is closing or an attempt is scheduled */
    unsigned attempts;   /* attempts since the loss */
    unsigned backoff_ms; /* wait before the next attempt */
    uint64_t dropped;    /* bytes written while the line was gone */
    uv_timer_t timer;
    int timer_open;
} kdh__retry_t;

struct kdh_transport {
    uv_loop_t *loop;
    const kdh_transport_ops_t *ops;
    kdh_transport_kind_t kind;
    kdh_transport_cb_t cb;
    int dead;       /* an error was reported: no more callbacks, writes refused */
    int closing;    /* kdh_transport_close() was called */
    int loop_owned; /* a failed open left a handle closing; the loop frees t */
    int refused;    /* a write was refused as full since the buffer last drained */
    uint64_t bytes_in, bytes_out;
    char name[PATH_MAX + 16];
    kdh__retry_t re;
    union {
        struct {
            struct sp_port *port;  /* NULL for the termios backend */
            int fd;
            uv_poll_t poll;
            int poll_events;
            uint8_t *wbuf;         /* KDH_TRANSPORT_WRITE_CAP bytes; [head, tail) pending */
            size_t head, tail;
            /* Reopening after a hangup (cb.reopen_serial): the path as given (a symlink such as
             * /dev/serial/by-id/... may point elsewhere when the adapter comes back). */
            char path[PATH_MAX];
            unsigned baud;
            int poll_open;         /* the poll handle is initialised and not yet closed */
        } serial;
        struct {
            union {
                uv_tcp_t tcp;
                uv_pipe_t pipe;
                uv_stream_t stream;
            } h;
            uv_connect_t connect;
            size_t queued;         /* bytes in uv_write requests not yet completed */
            int handle_open;       /* the stream handle is initialised and not yet closed */
            struct sockaddr_storage addr; /* TCP: the resolved address, for reconnecting */
            uint8_t rbuf[16384];
        } stream;
    } u;
};

/* Reports an error once (unless closing) and marks the transport dead. */
void kdh__transport_fail(struct kdh_transport *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kdh__transport_notice(struct kdh_transport *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Tells the owner the line went away (up 0, why) or is back (up 1): on_line, unless closing. */
void kdh__transport_line(struct kdh_transport *t, int up, const char *why);
/* Hands bytes to on_bytes; returns 0 when the caller must stop touching t's I/O (the owner
 * closed it or it died inside the callback). */
int kdh__transport_deliver(struct kdh_transport *t, const uint8_t *buf, size_t len);
void kdh__transport_drained(struct kdh_transport *t);
/* The line went away: attempts start over at the first backoff; dropped counts the bytes lost
 * with it. */
void kdh__transport_retry_begin(struct kdh_transport *t, uint64_t dropped);
/* Runs cb after the current backoff and doubles it; fails t (on_error, KDH_EHANGUP, with
 * what_failed) when the timer cannot be made. */
void kdh__transport_retry_schedule(struct kdh_transport *t, uv_timer_cb cb, const char *what_failed);
/* The owner closes t: the retry timer, when there is one, closes with closed_cb. */
void kdh__transport_retry_close(struct kdh_transport *t, uv_close_cb closed_cb);

int kdh__transport_open_serial(struct kdh_transport *t, const char *path, unsigned baud, kdh_err_t *err);
/* Resolves path and opens the device (libserialport, else termios) into t->u.serial.fd/port;
 * quiet: no notice about the backend (a reopen). */
int kdh__transport_serial_open_fd(struct kdh_transport *t, const char *path, unsigned baud, int quiet,
                                  kdh_err_t *err);
int kdh__transport_serial_start(struct kdh_transport *t, kdh_err_t *err);
int kdh__transport_open_tcp(struct kdh_transport *t, const char *spec, kdh_err_t *err);
int kdh__transport_open_unix(struct kdh_transport *t, const char *spec, kdh_err_t *err);

#endif
