/* transport_test_util.h: shared pieces of the transport tests: a pty pair whose master plays
 * the far end of the cable, a recorder for the transport callbacks, and a loop runner with a
 * deadline so a broken transport fails the test instead of hanging it. */
#ifndef KDH_TRANSPORT_TEST_UTIL_H
#define KDH_TRANSPORT_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "kdh/transport.h"

typedef struct recorder {
    uint8_t in[256 * 1024];
    size_t in_len;
    int error_code;
    char error_msg[512];
    int errors;
    char notice[512];
    int notices;
    int connected;
    int drains;
    kdh_transport_t *close_on_error; /* closes this transport from inside on_error */
} recorder_t;

static inline void rec_bytes(void *ctx, const uint8_t *buf, size_t len)
{
    recorder_t *r = ctx;
    size_t room = sizeof r->in - r->in_len;
    if (len > room)
        len = room;
    memcpy(r->in + r->in_len, buf, len);
    r->in_len += len;
}

static inline void rec_error(void *ctx, int code, const char *msg)
{
    recorder_t *r = ctx;
    r->errors++;
    r->error_code = code;
    snprintf(r->error_msg, sizeof r->error_msg, "%s", msg);
    if (r->close_on_error) {
        kdh_transport_close(r->close_on_error);
        r->close_on_error = NULL;
    }
}

static inline void rec_notice(void *ctx, const char *msg)
{
    recorder_t *r = ctx;
    r->notices++;
    snprintf(r->notice, sizeof r->notice, "%s", msg);
}

static inline void rec_connect(void *ctx)
{
    ((recorder_t *)ctx)->connected++;
}

static inline void rec_drain(void *ctx)
{
    ((recorder_t *)ctx)->drains++;
}

static inline kdh_transport_cb_t rec_callbacks(recorder_t *r)
{
    kdh_transport_cb_t cb = {.ctx = r, .on_bytes = rec_bytes, .on_error = rec_error, .on_notice = rec_notice,
                             .on_connect = rec_connect, .on_drain = rec_drain};
    return cb;
}

static inline void deadline_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop until *flag becomes true (returns 1) or ms elapse (returns 0). */
static inline int run_until(uv_loop_t *loop, const volatile int *flag, unsigned ms)
{
    int expired = 0;
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    timer.data = &expired;
    /* Repeating: a deadline that fires in the same loop pass as the transport's last timer would
     * otherwise leave uv_run(ONCE) waiting for I/O with no timer at all. */
    uv_timer_start(&timer, deadline_cb, ms, ms ? ms : 1);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag ? 1 : 0;
}

/* Runs the loop in short slices until cond holds or ms elapse. */
#define PUMP_UNTIL(loop, cond, ms)                                          \
    do {                                                                    \
        uint64_t end_ = uv_hrtime() + (uint64_t)(ms) * 1000000u;            \
        int never_ = 0;                                                     \
        while (!(cond) && uv_hrtime() < end_)                               \
            run_until((loop), &never_, 5);                                  \
    } while (0)

/* Drains every closing handle, then checks nothing was left open. */
static inline int finish_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop);
}

/* Opens a pty pair; the master is non-blocking and stays with the test. */
static inline int open_pty(char *slave, size_t slavesz)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0)
        return -1;
    const char *name = ptsname(m);
    if (!name)
        return -1;
    snprintf(slave, slavesz, "%s", name);
    return m;
}

/* Reads from the non-blocking master until `want` bytes arrived or the loop deadline passes;
 * the loop keeps running so the transport can flush. */
static inline size_t read_master(uv_loop_t *loop, int master, uint8_t *buf, size_t want, unsigned ms)
{
    size_t got = 0;
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (got < want && uv_hrtime() < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t n = read(master, buf + got, want - got);
        if (n > 0)
            got += (size_t)n;
        else
            usleep(1000);
    }
    return got;
}

static inline int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            usleep(1000);
            continue;
        }
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

#endif
