/* kdh/transport.h: bytes in, bytes out to one target, whatever carries them: a serial port
 * (libserialport, or plain termios for pseudo-terminals), a TCP client (QEMU -serial tcp:,
 * socat bridges) or an AF_UNIX stream socket. Every transport lives on one uv_loop_t. */
#ifndef KDH_TRANSPORT_H
#define KDH_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kdh/common.h"

typedef struct kdh_transport kdh_transport_t;

typedef enum kdh_transport_kind {
    KDH_TRANSPORT_SERIAL = 1,   /* through libserialport */
    KDH_TRANSPORT_TERMIOS = 2,  /* tty driven with plain termios (pseudo-terminals) */
    KDH_TRANSPORT_TCP = 3,
    KDH_TRANSPORT_UNIX = 4
} kdh_transport_kind_t;

/* Bytes the write buffer holds at most; kdh_transport_write() refuses more (backpressure). */
#define KDH_TRANSPORT_WRITE_CAP (64u * 1024u)

/* Callbacks run on the loop thread. After on_error the transport is dead (no more callbacks,
 * writes fail); the owner then calls kdh_transport_close(). Any callback may call close. */
typedef struct kdh_transport_cb {
    void *ctx;
    void (*on_bytes)(void *ctx, const uint8_t *buf, size_t len);
    /* code: KDH_EHANGUP when the serial port was unplugged / hung up (see reopen_serial); KDH_EIO (or another
     * KDH_E*) when the first connect or an OS call failed. A socket transport whose established
     * connection is closed or reset by the peer does not end: it reports that through
     * on_notice, drops what is written meanwhile and reconnects with backoff (100 ms .. 2 s)
     * until it is closed, then says so in another notice. */
    void (*on_error)(void *ctx, int code, const char *message);
    /* Optional. One-line informational messages (e.g. the termios fallback was taken); may be
     * called from inside kdh_transport_open(). */
    void (*on_notice)(void *ctx, const char *message);
    /* Optional. Socket transports: the connection is up (writes made before are queued and
     * go out now). Serial transports are connected when open returns and never call it. */
    void (*on_connect)(void *ctx);
    /* Optional. A line that goes away and comes back without ending the transport (a serial port
     * reopened after a hangup, see reopen_serial; a socket reconnected): up 0 when it is lost,
     * with why (the same words as the notice), and 1 when it is back (why NULL). Whatever the
     * target said meanwhile was not heard. */
    void (*on_line)(void *ctx, int up, const char *why);
    /* Optional. The write buffer became empty after a write had been refused as full. */
    void (*on_drain)(void *ctx);
    /* Serial ports: 0 = a hangup ends the transport (on_error, KDH_EHANGUP), right for a one-shot
     * command; 1 = a hangup is a cable pulled (USB adapter unplugged, the pty's far end closed):
     * it is reported through on_notice, writes are dropped meanwhile, and the path as given is
     * opened again with backoff (100 ms .. 2 s) until it is back (another notice) or closed. */
    int reopen_serial;
} kdh_transport_cb_t;

/* Opens `spec`:
 *   /dev/ttyUSB0, /dev/serial/by-id/...  serial port (symlinks resolved), 8N1, no flow control;
 *                                        baud must be 9600, 19200, 38400, 57600 or 115200
 *   tcp://host:port, tcp://[::1]:port    TCP client (TCP_NODELAY); baud is ignored
 *   unix:/path/to/socket                 AF_UNIX stream client; baud is ignored
 * Errors found at once (bad spec, no such device, permission, busy, bad baud) are returned
 * here with a one-line message in err; connection failures of sockets arrive through
 * on_error. The callbacks struct is copied. */
int kdh_transport_open(kdh_transport_t **out, uv_loop_t *loop, const char *spec, unsigned baud,
                       const kdh_transport_cb_t *cb, kdh_err_t *err);

/* Queues len bytes (copied) and sends them as the port/socket accepts them; never calls back
 * from inside. Returns KDH_OK, KDH_EBUSY when the buffer cannot take all of them now (nothing
 * queued; wait for on_drain), KDH_ERANGE when len exceeds KDH_TRANSPORT_WRITE_CAP, or
 * KDH_EHANGUP once the transport is dead. */
int kdh_transport_write(kdh_transport_t *t, const void *buf, size_t len, kdh_err_t *err);

/* Bytes accepted by write but not yet handed to the OS. */
size_t kdh_transport_pending(const kdh_transport_t *t);

/* Stops all callbacks at once and releases everything once the loop has run the closes. */
void kdh_transport_close(kdh_transport_t *t);

kdh_transport_kind_t kdh_transport_kind(const kdh_transport_t *t);
/* The resolved device path or the spec, for messages. */
const char *kdh_transport_name(const kdh_transport_t *t);
/* Byte counters since open. */
uint64_t kdh_transport_bytes_in(const kdh_transport_t *t);
uint64_t kdh_transport_bytes_out(const kdh_transport_t *t);

/* 0 when baud is one of the supported rates, else KDH_ERANGE with a message. */
int kdh_transport_check_baud(unsigned baud, kdh_err_t *err);

#endif
