/* serve.c: kdsim's line on libuv (see serve.h): pty / TCP / Unix socket endpoints, per-direction
 * token buckets, fault injection, and the 1 ms tick that moves bytes and runs the target. A pty
 * can be unplugged and plugged back (fault hangup): it is closed, which hangs up the host's side,
 * and a new one is opened later; --pty-link keeps one path pointing at the current one. */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <unistd.h>

#include "line.h"

#define FIFO_CAP (64 * 1024)
#define TICK_MS 1
#define MAX_SLICE_NS 20000000ull

struct sim_serve {
    uv_loop_t *loop;
    sim_target_t *t;
    sim_serve_opts_t o;
    uv_timer_t timer;
    /* A one-shot wake-up at the exact time the bytes waiting in a FIFO have all come due, so the
     * end of a packet is not rounded up to the next 1 ms tick (timerfd: libuv timers count ms). */
    int wake_fd;
    uv_poll_t wake;
    int open_handles;
    int closing;

    /* pty; the poll handle is allocated per pty (a closed handle is freed by handle_closed) */
    int master_fd, slave_fd;
    uv_poll_t *poll;
    char pty_name[128];
    /* TCP / Unix */
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } listener;
    uv_stream_t *client;
    uv_handle_t *endpoint; /* the poll or listener handle, once initialised */

    sim_bucket_t brx, btx;
    sim_fifo_t rx, tx;
    sim_faults_t faults;
    uint64_t start_ns, last_ns;
    char addr[300];
    char rbuf[4096];
    uint8_t copy[4100]; /* a packet on its way into the transmit FIFO */
    sim_splitter_t split; /* host packets, for packet faults in the host-to-target direction */
    uint8_t split_out[SIM_SPLIT_OUT_MAX];
    sim_serve_stats_t st;
    uint64_t resumed_at;   /* when the target last went from stopped to running; 0 = not since */
    uint64_t waiting_since; /* when the line fell idle with the target stopped; 0 = not waiting */
    kdh_err_t error;
};

static void handle_closed(uv_handle_t *h)
{
    sim_serve_t *s = h->data;
    if (h != (uv_handle_t *)&s->timer && h != (uv_handle_t *)&s->listener && h != (uv_handle_t *)&s->wake)
        free(h); /* a client stream or a pty's poll handle */
    if (--s->open_handles == 0) {
        sim_fifo_free(&s->rx);
        sim_fifo_free(&s->tx);
        free(s);
    }
}

static void close_handle(sim_serve_t *s, uv_handle_t *h)
{
    h->data = s;
    uv_close(h, handle_closed);
}

static void service(sim_serve_t *s);
static void hangup_fault(sim_serve_t *s, uint64_t since);
static void schedule_wake(sim_serve_t *s, uint64_t now);

static void rx_queue(sim_serve_t *s, const uint8_t *p, size_t n)
{
    size_t in = sim_fifo_push(&s->rx, p, n);
    s->st.rx_overruns += n - in; /* a UART overrun loses them too */
}

/* Host bytes enter the receive FIFO after the line's faults; the tick paces them in. */
static void line_received(sim_serve_t *s, uint8_t *p, size_t n)
{
    uint64_t now = uv_hrtime();
    if (s->waiting_since) {
        uint64_t waited = now - s->waiting_since;
        s->st.host_wait_ns += waited;
        s->st.host_waits++;
        if (waited > s->st.host_wait_max_ns)
            s->st.host_wait_max_ns = waited;
        s->waiting_since = 0;
    }
    n = sim_faults_bytes(&s->faults, p, n);
    if (s->rx.len == 0)
        sim_bucket_idle(&s->brx, now);
    if (sim_faults_host_packets(&s->faults)) {
        for (size_t i = 0; i < n; i++) {
            size_t k = sim_splitter_byte(&s->split, &s->faults, p[i], now, s->split_out);
            rx_queue(s, s->split_out, k);
        }
    } else {
        rx_queue(s, p, n);
    }
    /* Serve at once rather than at the next tick: the turnaround of a real target is short. */
    service(s);
}

static void on_pty_readable(uv_poll_t *h, int status, int events)
{
    sim_serve_t *s = h->data;
    for (;;) {
        ssize_t n = read(s->master_fd, s->rbuf, sizeof s->rbuf);
        if (n <= 0)
            break; /* EAGAIN: drained; we hold the slave open, so no hang-up */
        line_received(s, (uint8_t *)s->rbuf, (size_t)n);
    }
}

static void drop_client(sim_serve_t *s)
{
    if (!s->client)
        return;
    uv_handle_t *c = (uv_handle_t *)s->client;
    s->client = NULL;
    s->st.connected = 0;
    s->open_handles++;
    close_handle(s, c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sim_serve_t *s = h->data;
    buf->base = s->rbuf;
    buf->len = sizeof s->rbuf;
}

static void on_client_read(uv_stream_t *c, ssize_t n, const uv_buf_t *buf)
{
    sim_serve_t *s = c->data;
    if (n > 0)
        line_received(s, (uint8_t *)buf->base, (size_t)n);
    else if (n < 0 && c == s->client)
        drop_client(s); /* the host went away: the line is unplugged until the next one */
}

static void on_connection(uv_stream_t *server, int status)
{
    sim_serve_t *s = server->data;
    if (status < 0)
        return;
    uv_stream_t *c;
    if (s->o.kind == SIM_SERVE_TCP) {
        uv_tcp_t *tcp = malloc(sizeof *tcp);
        if (!tcp)
            return;
        uv_tcp_init(s->loop, tcp);
        c = (uv_stream_t *)tcp;
    } else {
        uv_pipe_t *pipe = malloc(sizeof *pipe);
        if (!pipe)
            return;
        uv_pipe_init(s->loop, pipe, 0);
        c = (uv_stream_t *)pipe;
    }
    c->data = s;
    if (uv_accept(server, c) != 0 || s->client) {
        /* one host at a time, like one cable */
        s->open_handles++;
        close_handle(s, (uv_handle_t *)c);
        return;
    }
    if (s->o.kind == SIM_SERVE_TCP)
        uv_tcp_nodelay((uv_tcp_t *)c, 1);
    s->client = c;
    s->st.connected = 1;
    uv_read_start(c, on_alloc, on_client_read);
}

/* Writes up to n bytes to the host; returns how many the line took. */
static size_t line_write(sim_serve_t *s, const uint8_t *p, size_t n)
{
    if (s->o.kind == SIM_SERVE_PTY && s->master_fd < 0) {
        s->st.tx_unheard += n; /* unplugged */
        return n;
    }
    if (s->o.kind == SIM_SERVE_PTY) {
        ssize_t w = write(s->master_fd, p, n);
        return w > 0 ? (size_t)w : 0;
    }
    if (!s->client) {
        s->st.tx_unheard += n; /* nobody on the other end of the cable */
        return n;
    }
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int w = uv_try_write(s->client, &b, 1);
    return w > 0 ? (size_t)w : 0;
}

/* Takes the target's next packet when the transmit FIFO is empty, applying packet faults. */
static void take_frame(sim_serve_t *s, uint64_t now)
{
    const uint8_t *d;
    size_t len;
    if (s->tx.len || !sim_target_peek(s->t, &d, &len))
        return;
    /* A packet queued while the one before was still going out follows it without a gap (the
     * leftover credit of this tick is line time after that one's last byte); only time the
     * line really had nothing to send is not made up for. */
    uint64_t ready = sim_target_peek_ready(s->t);
    sim_bucket_idle_since(&s->btx, now, ready && ready < now ? ready : now);
    int copies = sim_faults_packet(&s->faults);
    for (int i = 0; i < copies && len <= sizeof s->copy; i++) {
        memcpy(s->copy, d, len);
        sim_faults_target_packet(&s->faults, s->copy, len);
        size_t n = sim_faults_bytes(&s->faults, s->copy, len);
        sim_fifo_push(&s->tx, s->copy, n);
    }
    /* the ACK timer starts when the last byte would have left the line */
    sim_target_sent(s->t, now + sim_bucket_duration_ns(&s->btx, s->tx.len));
}

static void move_bytes(sim_serve_t *s, uint64_t now)
{
    kdh_err_t err;
    size_t avail = sim_bucket_avail(&s->brx, now);
    while (avail > 0 && s->rx.len > 0) {
        const uint8_t *p;
        size_t n = sim_fifo_peek(&s->rx, &p);
        if (n > avail)
            n = avail;
        sim_target_input(s->t, now, p, n, &err);
        sim_fifo_pop(&s->rx, n);
        sim_bucket_consume(&s->brx, n);
        s->st.rx_bytes += n;
        avail -= n;
    }
}

static void send_bytes(sim_serve_t *s, uint64_t now)
{
    for (;;) {
        take_frame(s, now);
        if (s->tx.len == 0)
            break;
        size_t avail = sim_bucket_avail(&s->btx, now);
        if (avail == 0)
            break;
        const uint8_t *p;
        size_t n = sim_fifo_peek(&s->tx, &p);
        if (n > avail)
            n = avail;
        size_t w = line_write(s, p, n);
        if (w == 0)
            break; /* pty buffer full: the host is not reading; retry next tick */
        sim_fifo_pop(&s->tx, w);
        sim_bucket_consume(&s->btx, w);
        s->st.tx_bytes += w;
    }
}

/* The first failure of the machine is kept for the program to report (library code does not
 * print); the line keeps serving so a host sees a target that no longer runs. */
static void note_error(sim_serve_t *s, int rc, const kdh_err_t *err)
{
    if (rc != KDH_OK && s->error.code == KDH_OK)
        s->error = *err;
}

/* Moves bytes both ways, runs the target; from the timer and whenever host bytes arrive. */
static void service(sim_serve_t *s)
{
    uint64_t now = uv_hrtime();
    uint64_t since = now - s->start_ns;
    kdh_err_t err;
    hangup_fault(s, since);
    if (sim_faults_reboot_due(&s->faults, since))
        note_error(s, sim_target_reboot(s->t, &err), &err);
    int stalled = sim_faults_stalled(&s->faults, since);
    /* a host packet held for packet faults that never completes goes on as it is */
    size_t k = sim_splitter_expire(&s->split, now, 50000000ull, s->split_out);
    if (k) {
        if (s->rx.len == 0)
            sim_bucket_idle(&s->brx, now);
        rx_queue(s, s->split_out, k);
    }
    if (stalled) {
        /* a quiet line carries nothing, and nothing is made up for afterwards */
        sim_bucket_idle(&s->brx, now);
        sim_bucket_idle(&s->btx, now);
    } else {
        int was_running = sim_target_state(s->t) == SIM_TARGET_RUNNING;
        move_bytes(s, now);
        if (!was_running && sim_target_state(s->t) == SIM_TARGET_RUNNING)
            s->resumed_at = now;
    }
    uint64_t dt = now - s->last_ns;
    s->last_ns = now;
    if (dt > MAX_SLICE_NS)
        dt = MAX_SLICE_NS;
    int running = sim_target_state(s->t) == SIM_TARGET_RUNNING;
    note_error(s, sim_target_tick(s->t, now, (uint64_t)((double)dt * s->o.speed), &err), &err);
    if (running) {
        uint64_t after = uv_hrtime();
        s->st.run_wall_ns += after - now;
        if (sim_target_state(s->t) != SIM_TARGET_RUNNING && s->resumed_at) {
            s->st.resume_to_stop_ns += after - s->resumed_at;
            s->st.resumes++;
            s->resumed_at = 0;
        }
    }
    if (!stalled) {
        send_bytes(s, now);
        schedule_wake(s, now);
    }
    const uint8_t *d;
    size_t len;
    if (!s->waiting_since && sim_target_state(s->t) != SIM_TARGET_RUNNING && s->tx.len == 0 && s->rx.len == 0 &&
        !sim_target_peek(s->t, &d, &len))
        s->waiting_since = now;
}

static void on_tick(uv_timer_t *h)
{
    service(h->data);
}

static void on_wake(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    sim_serve_t *s = h->data;
    uint64_t expirations;
    if (read(s->wake_fd, &expirations, sizeof expirations) < 0)
        return; /* EAGAIN: already served */
    service(s);
}

/* Arms the wake-up for when everything queued in either direction may have crossed the line,
 * when that is before the next tick. */
static void schedule_wake(sim_serve_t *s, uint64_t now)
{
    if (s->wake_fd < 0)
        return;
    uint64_t due = UINT64_MAX;
    if (s->tx.len)
        due = sim_bucket_ready_ns(&s->btx, s->tx.len);
    if (s->rx.len) {
        uint64_t r = sim_bucket_ready_ns(&s->brx, s->rx.len);
        if (r < due)
            due = r;
    }
    if (due <= now || due >= now + TICK_MS * 1000000ull)
        return;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(due / 1000000000ull);
    its.it_value.tv_nsec = (long)(due % 1000000000ull);
    timerfd_settime(s->wake_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Points the link path at the current pty (atomically: a new symlink renamed over the old). */
static int update_link(sim_serve_t *s, kdh_err_t *err)
{
    if (!s->o.path)
        return KDH_OK;
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.%d.new", s->o.path, (int)getpid());
    unlink(tmp);
    if (symlink(s->pty_name, tmp) != 0 || rename(tmp, s->o.path) != 0) {
        int e = errno;
        unlink(tmp);
        return kdh_err_set(err, KDH_EIO, "--pty-link %s: %s", s->o.path, strerror(e));
    }
    return KDH_OK;
}

static int start_pty(sim_serve_t *s, kdh_err_t *err)
{
    s->master_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (s->master_fd < 0)
        return kdh_err_set(err, KDH_EIO, "posix_openpt: %s", strerror(errno));
    char *name = s->pty_name;
    if (grantpt(s->master_fd) || unlockpt(s->master_fd) || ptsname_r(s->master_fd, name, sizeof s->pty_name))
        return kdh_err_set(err, KDH_EIO, "pty setup: %s", strerror(errno));
    /* Holding the slave open keeps the master from hanging up between host sessions. */
    s->slave_fd = open(name, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (s->slave_fd < 0)
        return kdh_err_set(err, KDH_EIO, "open %s: %s", name, strerror(errno));
    struct termios tio;
    if (tcgetattr(s->slave_fd, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(s->slave_fd, TCSANOW, &tio);
    }
    fcntl(s->master_fd, F_SETFL, fcntl(s->master_fd, F_GETFL) | O_NONBLOCK);
    snprintf(s->addr, sizeof s->addr, "%s", s->o.path ? s->o.path : name);
    s->poll = malloc(sizeof *s->poll);
    if (!s->poll)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory");
    if (uv_poll_init(s->loop, s->poll, s->master_fd) != 0) {
        free(s->poll);
        s->poll = NULL;
        return kdh_err_set(err, KDH_EIO, "uv_poll_init on the pty failed");
    }
    s->poll->data = s;
    s->open_handles++;
    s->endpoint = (uv_handle_t *)s->poll;
    s->st.connected = 1;
    uv_poll_start(s->poll, UV_READABLE, on_pty_readable);
    return update_link(s, err);
}

/* Unplugs the pty: the host's side hangs up (reads fail with EIO), the link path goes away
 * with the device node, and what the target sends meanwhile is lost. */
static void stop_pty(sim_serve_t *s)
{
    if (s->poll) {
        uv_poll_stop(s->poll); /* stopped before its fd is closed */
        close_handle(s, (uv_handle_t *)s->poll);
        s->poll = NULL;
    }
    if (s->o.path && s->endpoint)
        unlink(s->o.path);
    s->endpoint = NULL;
    if (s->master_fd >= 0)
        close(s->master_fd);
    if (s->slave_fd >= 0)
        close(s->slave_fd);
    s->master_fd = s->slave_fd = -1;
    s->st.connected = 0;
}

/* The hangup fault: unplugged while it lasts, a new pty once it is over. */
static void hangup_fault(sim_serve_t *s, uint64_t since)
{
    if (s->o.kind != SIM_SERVE_PTY)
        return;
    int hung = sim_faults_hung_up(&s->faults, since);
    if (hung && s->master_fd >= 0) {
        stop_pty(s);
    } else if (!hung && s->master_fd < 0) {
        kdh_err_t err;
        int rc = start_pty(s, &err);
        if (rc != KDH_OK)
            stop_pty(s); /* tried again at the next tick */
        note_error(s, rc, &err);
    }
}

static int start_stream(sim_serve_t *s, kdh_err_t *err)
{
    int rc;
    uv_stream_t *l = (uv_stream_t *)&s->listener;
    if (s->o.kind == SIM_SERVE_TCP) {
        struct sockaddr_in sa;
        if (s->o.port < 0 || s->o.port > 65535)
            return kdh_err_set(err, KDH_EINVAL, "--tcp: port %d out of range 0..65535", s->o.port);
        uv_ip4_addr("127.0.0.1", s->o.port, &sa);
        uv_tcp_init(s->loop, &s->listener.tcp);
        s->open_handles++;
        s->endpoint = (uv_handle_t *)&s->listener;
        rc = uv_tcp_bind(&s->listener.tcp, (const struct sockaddr *)&sa, 0);
    } else {
        struct stat sb;
        if (stat(s->o.path, &sb) == 0 && S_ISSOCK(sb.st_mode))
            unlink(s->o.path); /* a socket left by an earlier run */
        uv_pipe_init(s->loop, &s->listener.pipe, 0);
        s->open_handles++;
        s->endpoint = (uv_handle_t *)&s->listener;
        rc = uv_pipe_bind(&s->listener.pipe, s->o.path);
    }
    l->data = s;
    if (rc == 0)
        rc = uv_listen(l, 4, on_connection);
    if (rc != 0) {
        if (s->o.kind == SIM_SERVE_TCP)
            return kdh_err_set(err, KDH_EIO, "listen on 127.0.0.1:%d: %s", s->o.port, uv_strerror(rc));
        return kdh_err_set(err, KDH_EIO, "listen on %s: %s", s->o.path, uv_strerror(rc));
    }
    if (s->o.kind == SIM_SERVE_TCP) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        uv_tcp_getsockname(&s->listener.tcp, (struct sockaddr *)&ss, &len);
        snprintf(s->addr, sizeof s->addr, "tcp:127.0.0.1:%d",
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    } else {
        snprintf(s->addr, sizeof s->addr, "unix:%s", s->o.path);
    }
    return KDH_OK;
}

int sim_serve_start(uv_loop_t *loop, sim_target_t *t, const sim_serve_opts_t *o, sim_serve_t **out,
                    kdh_err_t *err)
{
    *out = NULL;
    if (o->kind == SIM_SERVE_UNIX && (!o->path || !*o->path))
        return kdh_err_set(err, KDH_EINVAL, "--unix needs a socket path");
    sim_serve_t *s = calloc(1, sizeof *s);
    if (!s)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory");
    s->loop = loop;
    s->t = t;
    s->o = *o;
    s->master_fd = s->slave_fd = -1;
    s->wake_fd = -1;
    if (s->o.speed <= 0)
        s->o.speed = 1.0;
    int rc = sim_faults_parse(&s->faults, o->faults, o->seed, err);
    if (rc == KDH_OK && s->faults.hangup_period_ns && o->kind != SIM_SERVE_PTY)
        rc = kdh_err_set(err, KDH_EINVAL, "--faults hangup needs --pty (a socket host sees a closed connection "
                         "when kdsim exits)");
    if (rc == KDH_OK && (sim_fifo_init(&s->rx, FIFO_CAP) || sim_fifo_init(&s->tx, FIFO_CAP)))
        rc = kdh_err_set(err, KDH_ENOMEM, "out of memory");
    if (rc != KDH_OK) {
        sim_fifo_free(&s->rx);
        sim_fifo_free(&s->tx);
        free(s);
        return rc;
    }
    uint64_t now = uv_hrtime();
    uint64_t rate = o->baud ? sim_line_bytes_per_s(o->baud) : 0;
    /* A line never sends faster than its rate: after idle time only the byte being shifted
     * out is ready at once; timer jitter is absorbed by the uncapped credit while busy. */
    uint32_t burst = 1;
    sim_bucket_init(&s->brx, rate, burst, now);
    sim_bucket_init(&s->btx, rate, burst, now);
    s->start_ns = s->last_ns = now;

    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->open_handles = 1;
    rc = o->kind == SIM_SERVE_PTY ? start_pty(s, err) : start_stream(s, err);
    if (rc != KDH_OK) {
        sim_serve_close(s);
        return rc;
    }
    uv_timer_start(&s->timer, on_tick, TICK_MS, TICK_MS);
    /* uv_hrtime is CLOCK_MONOTONIC; without a timerfd the 1 ms tick alone paces the line */
    s->wake_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->wake_fd >= 0 && uv_poll_init(loop, &s->wake, s->wake_fd) == 0) {
        s->wake.data = s;
        s->open_handles++;
        uv_poll_start(&s->wake, UV_READABLE, on_wake);
    } else if (s->wake_fd >= 0) {
        close(s->wake_fd);
        s->wake_fd = -1;
    }
    *out = s;
    return KDH_OK;
}

const char *sim_serve_address(const sim_serve_t *s)
{
    return s->addr;
}

void sim_serve_stats(const sim_serve_t *s, sim_serve_stats_t *st)
{
    *st = s->st;
    st->faults = s->faults.st;
    /* a wait still going on counts too: a host that never answers held the stop all along */
    uint64_t now = uv_hrtime();
    if (s->waiting_since && now - s->waiting_since > st->host_wait_max_ns)
        st->host_wait_max_ns = now - s->waiting_since;
}

const char *sim_serve_error(const sim_serve_t *s)
{
    return s->error.code != KDH_OK ? s->error.msg : NULL;
}

void sim_serve_close(sim_serve_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    uv_timer_stop(&s->timer);
    drop_client(s);
    if (s->o.kind == SIM_SERVE_PTY)
        stop_pty(s);
    if (s->o.kind == SIM_SERVE_UNIX && s->endpoint)
        unlink(s->o.path);
    uv_handle_t *endpoint = s->endpoint;
    s->endpoint = NULL;
    if (endpoint)
        close_handle(s, endpoint);
    if (s->wake_fd >= 0) {
        uv_poll_stop(&s->wake); /* stopped before its fd is closed */
        close(s->wake_fd);
        s->wake_fd = -1;
        close_handle(s, (uv_handle_t *)&s->wake);
    }
    close_handle(s, (uv_handle_t *)&s->timer); /* the last close frees s */
}
