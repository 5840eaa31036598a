/* test_socket.c: the tcp:// and unix: transports against a libuv server in the same loop
 * (loopback): bytes both ways, the peer closing or resetting (a notice and a reconnect, bytes
 * flowing again), connection refused and missing sockets (one-line KDH_EIO), malformed specs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <netinet/in.h>

#include "transport_test_util.h"

typedef struct server {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
    } listen;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
    } client;
    int is_tcp;
    int accepted;
    uint8_t in[4096];
    size_t in_len;
    char buf[4096];
} server_t;

static void srv_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    server_t *s = h->data;
    b->base = s->buf;
    b->len = sizeof s->buf;
}

static void srv_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    server_t *s = st->data;
    if (n > 0 && s->in_len + (size_t)n <= sizeof s->in) {
        memcpy(s->in + s->in_len, b->base, (size_t)n);
        s->in_len += (size_t)n;
    }
}

static void srv_conn(uv_stream_t *l, int status)
{
    server_t *s = l->data;
    assert_int_equal(status, 0);
    if (s->is_tcp)
        uv_tcp_init(l->loop, &s->client.tcp);
    else
        uv_pipe_init(l->loop, &s->client.pipe, 0);
    s->client.stream.data = s;
    assert_int_equal(uv_accept(l, &s->client.stream), 0);
    uv_read_start(&s->client.stream, srv_alloc, srv_read);
    s->accepted = 1;
}

static void srv_write_done(uv_write_t *w, int status)
{
    free(w);
}

static void srv_send(server_t *s, const char *text)
{
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
    assert_int_equal(uv_write(w, &s->client.stream, &b, 1, srv_write_done), 0);
}

/* Exercises one connected transport against server s: both directions, then the server hangs
 * up and the transport must reconnect by itself. */
static void exchange_and_reconnect(uv_loop_t *loop, server_t *s, const char *spec)
{
    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    kdh_transport_t *t = NULL;
    kdh_err_t err = {0};
    /* The baud rate does not matter for sockets. */
    assert_int_equal(kdh_transport_open(&t, loop, spec, 0, &cb, &err), KDH_OK);
    assert_string_equal(kdh_transport_name(t), spec);
    /* Written before the connection is up: must be queued, not lost. */
    assert_int_equal(kdh_transport_write(t, "early:", 6, &err), KDH_OK);
    assert_true(run_until(loop, &r.connected, 3000));
    assert_true(run_until(loop, &s->accepted, 3000));
    assert_int_equal(kdh_transport_write(t, "ping", 4, &err), KDH_OK);
    PUMP_UNTIL(loop, s->in_len >= 10 || r.errors, 3000);
    assert_int_equal(s->in_len, 10);
    assert_memory_equal(s->in, "early:ping", 10);
    assert_int_equal(kdh_transport_bytes_out(t), 10);
    assert_int_equal(kdh_transport_pending(t), 0);

    srv_send(s, "pong");
    PUMP_UNTIL(loop, r.in_len >= 4 || r.errors, 3000);
    assert_int_equal(r.in_len, 4);
    assert_memory_equal(r.in, "pong", 4);
    assert_int_equal(kdh_transport_bytes_in(t), 4);

    /* The peer goes away (a terminal server restarting): a notice, no error, and the
     * transport connects again by itself; bytes flow both ways on the new connection. */
    s->accepted = 0;
    uv_close((uv_handle_t *)&s->client.stream, NULL);
    PUMP_UNTIL(loop, r.notices >= 1 || r.errors, 3000);
    assert_int_equal(r.errors, 0);
    char want[300];
    snprintf(want, sizeof want, "%s: connection closed by the peer; reconnecting", spec);
    assert_string_equal(r.notice, want);
    assert_true(run_until(loop, &s->accepted, 3000));
    PUMP_UNTIL(loop, r.notices >= 2 || r.errors, 3000);
    assert_int_equal(r.errors, 0);
    assert_non_null(strstr(r.notice, ": reconnected after 1 attempt(s)"));
    assert_int_equal(r.connected, 1); /* on_connect is for the first connection only */
    s->in_len = 0;
    assert_int_equal(kdh_transport_write(t, "again", 5, &err), KDH_OK);
    PUMP_UNTIL(loop, s->in_len >= 5 || r.errors, 3000);
    assert_memory_equal(s->in, "again", 5);
    srv_send(s, "back");
    PUMP_UNTIL(loop, r.in_len >= 8 || r.errors, 3000);
    assert_memory_equal(r.in + 4, "back", 4);
    assert_int_equal(r.errors, 0);

    /* Lost again with nobody listening any more: it keeps trying (writes are dropped, not
     * refused) until the owner closes it, which frees everything (the loop must end empty). */
    uv_close((uv_handle_t *)&s->client.stream, NULL);
    uv_close((uv_handle_t *)&s->listen.stream, NULL);
    PUMP_UNTIL(loop, r.notices >= 3 || r.errors, 3000);
    assert_int_equal(r.notices, 3);
    int spin = 0;
    run_until(loop, &spin, 400); /* a few refused attempts */
    assert_int_equal(r.errors, 0);
    assert_int_equal(kdh_transport_write(t, "lost", 4, &err), KDH_OK);
    kdh_transport_close(t);
}

static void test_tcp(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    static server_t s;
    memset(&s, 0, sizeof s);
    s.is_tcp = 1;
    uv_tcp_init(&loop, &s.listen.tcp);
    s.listen.stream.data = &s;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&s.listen.tcp, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen(&s.listen.stream, 1, srv_conn), 0);
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s.listen.tcp, (struct sockaddr *)&bound, &len);
    char spec[64];
    snprintf(spec, sizeof spec, "tcp://127.0.0.1:%u", ntohs(bound.sin_port));
    exchange_and_reconnect(&loop, &s, spec);
    assert_int_equal(finish_loop(&loop), 0);
}

static void test_unix(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    static server_t s;
    memset(&s, 0, sizeof s);
    char dir[] = "/tmp/kdh-sock-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], spec[160];
    snprintf(path, sizeof path, "%s/com1", dir);
    snprintf(spec, sizeof spec, "unix:%s", path);
    uv_pipe_init(&loop, &s.listen.pipe, 0);
    s.listen.stream.data = &s;
    assert_int_equal(uv_pipe_bind(&s.listen.pipe, path), 0);
    assert_int_equal(uv_listen(&s.listen.stream, 1, srv_conn), 0);
    exchange_and_reconnect(&loop, &s, spec);
    assert_int_equal(finish_loop(&loop), 0);
    unlink(path);
    rmdir(dir);
}

/* A port nobody listens on: bind an ephemeral port, note it, close it. */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t l = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &l);
    close(fd);
    return ntohs(sa.sin_port);
}

static void expect_connect_error(const char *spec, const char *want_msg)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    kdh_transport_t *t = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_transport_open(&t, &loop, spec, 115200, &cb, &err), KDH_OK);
    assert_true(run_until(&loop, &r.errors, 3000));
    assert_int_equal(r.error_code, KDH_EIO);
    assert_string_equal(r.error_msg, want_msg);
    assert_int_equal(r.connected, 0);
    kdh_transport_close(t);
    assert_int_equal(finish_loop(&loop), 0);
}

static void test_connect_errors(void **state)
{
    char spec[64], want[256];
    snprintf(spec, sizeof spec, "tcp://127.0.0.1:%u", free_port());
    snprintf(want, sizeof want,
             "%s: connection refused; is the target listening (QEMU -serial tcp:HOST:PORT,server=on,wait=off)?", spec);
    expect_connect_error(spec, want);
    expect_connect_error("unix:/tmp/kdh-no-such-dir/sock",
                         "unix:/tmp/kdh-no-such-dir/sock: no such socket; is the target listening "
                         "(QEMU -serial unix:PATH,server=on,wait=off)?");
}

static void test_close_while_connecting(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    static recorder_t r;
    memset(&r, 0, sizeof r);
    kdh_transport_cb_t cb = rec_callbacks(&r);
    kdh_transport_t *t = NULL;
    char spec[64];
    snprintf(spec, sizeof spec, "tcp://127.0.0.1:%u", free_port());
    assert_int_equal(kdh_transport_open(&t, &loop, spec, 0, &cb, NULL), KDH_OK);
    assert_int_equal(kdh_transport_write(t, "abc", 3, NULL), KDH_OK);
    kdh_transport_close(t);
    assert_int_equal(finish_loop(&loop), 0);
    /* Closing stops every callback, including the refused connect. */
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.connected, 0);
}

static void test_bad_specs(void **state)
{
    static const struct {
        const char *spec;
        int code;
        const char *msg;
    } cases[] = {
        {"", KDH_EINVAL, "empty port; give a device path, tcp://host:port or unix:/path"},
        {"ftp://x:1", KDH_EINVAL, "ftp://x:1: unknown port kind; give a device path, tcp://host:port or unix:/path"},
        {"tcp:127.0.0.1:4555", KDH_EINVAL,
         "tcp:127.0.0.1:4555: unknown port kind; give a device path, tcp://host:port or unix:/path"},
        {"tcp://localhost", KDH_EINVAL, "tcp://localhost: bad TCP address; write tcp://HOST:PORT (port 1..65535)"},
        {"tcp://:4555", KDH_EINVAL, "tcp://:4555: bad TCP address; write tcp://HOST:PORT (port 1..65535)"},
        {"tcp://h:0", KDH_EINVAL, "tcp://h:0: bad TCP address; write tcp://HOST:PORT (port 1..65535)"},
        {"tcp://h:65536", KDH_EINVAL, "tcp://h:65536: bad TCP address; write tcp://HOST:PORT (port 1..65535)"},
        {"tcp://h:45x", KDH_EINVAL, "tcp://h:45x: bad TCP address; write tcp://HOST:PORT (port 1..65535)"},
        {"tcp://[::1:4555", KDH_EINVAL, "tcp://[::1:4555: bad TCP address; write tcp://HOST:PORT (port 1..65535)"},
        {"unix:", KDH_EINVAL, "unix:: missing socket path; write unix:/path/to/socket"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        recorder_t *r = calloc(1, sizeof *r);
        kdh_transport_cb_t cb = rec_callbacks(r);
        kdh_transport_t *t = NULL;
        kdh_err_t err = {0};
        int rc = kdh_transport_open(&t, &loop, cases[i].spec, 115200, &cb, &err);
        assert_int_equal(rc, cases[i].code);
        assert_string_equal(err.msg, cases[i].msg);
        assert_null(t);
        assert_int_equal(finish_loop(&loop), 0);
        free(r);
    }
    /* A unix path longer than sun_path. */
    char longspec[200] = "unix:/tmp/";
    memset(longspec + 10, 'a', 150);
    longspec[160] = '\0';
    uv_loop_t loop;
    uv_loop_init(&loop);
    recorder_t *r = calloc(1, sizeof *r);
    kdh_transport_cb_t cb = rec_callbacks(r);
    kdh_transport_t *t = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_transport_open(&t, &loop, longspec, 0, &cb, &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "socket path longer than 107 bytes"));
    assert_int_equal(finish_loop(&loop), 0);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_close_while_connecting),
        cmocka_unit_test(test_bad_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
