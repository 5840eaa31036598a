/* test_symstore_http.c: downloads from real HTTP servers on 127.0.0.1 started by the test:
 * python3 -m http.server serving a store folder (hit, 404), tiny_server.py (dropped connection,
 * HTML with 200, redirect, a slow body), and a closed port (connection refused). After every
 * failure the cache must hold no file at all, temporary ones included. A download inside a
 * daemon task must leave the shared loop to the other tasks while the body trickles in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdh/pe.h"
#include "kdh/symstore.h"
#include "kdh/task.h"
#include "test_symstore.h"

/* A port nobody listens on right now (bound, then released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

static int can_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

typedef struct server {
    pid_t pid;
    int port;
} server_t;

/* Starts python3 with args (NULL-terminated, PORT replaced by the port) and waits until it
 * accepts connections; skips the test without python3. */
static void start(server_t *sv, const char *const *args)
{
    if (!KDH_SS_PYTHON[0])
        skip();
    sv->port = free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", sv->port);
    const char *argv[16];
    int n = 0;
    argv[n++] = KDH_SS_PYTHON;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = strcmp(args[i], "PORT") == 0 ? port : args[i];
    argv[n] = NULL;
    sv->pid = fork();
    assert_true(sv->pid >= 0);
    if (sv->pid == 0) {
        freopen("/dev/null", "w", stderr);
        freopen("/dev/null", "w", stdout);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 200 && !can_connect(sv->port); i++) {
        struct timespec ts = {0, 25 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_true(can_connect(sv->port));
}

static void stop(server_t *sv)
{
    if (sv->pid > 0) {
        kill(sv->pid, SIGTERM);
        waitpid(sv->pid, NULL, 0);
        sv->pid = 0;
    }
}

/* serve/<name>/<ID>/<name> for the fixture PDB and image. */
static void make_served_store(const fixture_t *f, const char *serve)
{
    char p[1024], id[41], iid[17];
    kdh_pe_pdb_id(f->guid, f->age, id);
    kdh_pe_image_id(f->ts, f->size, iid);
    snprintf(p, sizeof p, "%s/fxsyms_x64.pdb/%s/fxsyms_x64.pdb", serve, id);
    copy_file(f->pdb, p);
    snprintf(p, sizeof p, "%s/fxsyms_x64.sys/%s/fxsyms_x64.sys", serve, iid);
    copy_file(f->sys, p);
}

static kdh_symstore_t *store_for(const char *cache, const char *url)
{
    char sp[1024];
    snprintf(sp, sizeof sp, "srv*%s*%s", cache, url);
    kdh_symstore_t *s;
    kdh_err_t err;
    assert_int_equal(kdh_symstore_new(&s, sp, NULL, &err), KDH_OK);
    kdh_symstore_set_timeouts(s, 3000, 20000, 5);
    return s;
}

void test_http_hit_and_404(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], serve[300], cache[300], url[64], got[1024], want[1024], id[41];
    make_tmpdir(dir, sizeof dir);
    snprintf(serve, sizeof serve, "%s/serve", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    make_served_store(&f, serve);
    server_t sv;
    const char *args[] = {"-m", "http.server", "PORT", "--bind", "127.0.0.1", "--directory", serve,
                          NULL};
    start(&sv, args);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", sv.port);
    kdh_symstore_t *s = store_for(cache, url);
    kdh_err_t err;
    int rc = kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age, got, sizeof got, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, KDH_OK);
    kdh_pe_pdb_id(f.guid, f.age, id);
    snprintf(want, sizeof want, "%s/fxsyms_x64.pdb/%s/fxsyms_x64.pdb", cache, id);
    assert_string_equal(got, want);
    assert_true(files_equal(got, f.pdb));
    assert_int_equal(kdh_symstore_find_image(s, "fxsyms_x64.sys", f.ts, f.size, got, sizeof got,
                                             &err), KDH_OK);
    assert_true(files_equal(got, f.sys));
    assert_int_equal(count_files(cache), 2);
    /* Now a cache hit: found again with the server gone. */
    stop(&sv);
    assert_int_equal(kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age, got, sizeof got, &err),
                     KDH_OK);
    kdh_symstore_free(s);
    /* 404: another age. Nothing new in a fresh cache. */
    start(&sv, args);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", sv.port);
    snprintf(cache, sizeof cache, "%s/cache404", dir);
    s = store_for(cache, url);
    assert_int_equal(kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age + 1, got, sizeof got,
                                           &err), KDH_ENOTFOUND);
    assert_int_equal(count_files(cache), 0);
    snprintf(want, sizeof want, "%s/fxsyms_x64.pdb/%s/fxsyms_x64.pdb", cache, id);
    assert_int_equal(kdh_symstore_download(s, "http://127.0.0.1:1/x", want, 1, &err), KDH_EIO);
    assert_int_equal(count_files(cache), 0);
    char u[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/nothing/here.pdb", sv.port);
    snprintf(want, sizeof want, "%s/nothing/X/here.pdb", cache);
    assert_int_equal(kdh_symstore_download(s, u, want, 1, &err), KDH_ENOTFOUND);
    assert_non_null(strstr(err.msg, "404"));
    assert_int_equal(count_files(cache), 0);
    kdh_symstore_free(s);
    stop(&sv);
    rm_rf(dir);
}

void test_http_refused(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], url[64], got[1024];
    make_tmpdir(dir, sizeof dir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", free_port());
    kdh_symstore_t *s = store_for(dir, url);
    kdh_err_t err;
    assert_int_equal(kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age, got, sizeof got, &err),
                     KDH_ENOTFOUND);
    assert_non_null(strstr(err.msg, "cannot connect"));
    assert_int_equal(count_files(dir), 0);
    kdh_symstore_free(s);
    rm_rf(dir);
}

/* Runs one download from tiny_server.py under prefix and returns its result code. */
static int tiny_download(const fixture_t *f, const char *prefix, const char *rel, int want_pdb,
                         kdh_err_t *err, char *dir, size_t dircap)
{
    char serve[300], url[512], dest[512];
    make_tmpdir(dir, dircap);
    snprintf(serve, sizeof serve, "%s/serve", dir);
    make_served_store(f, serve);
    server_t sv;
    const char *args[] = {KDH_SS_TINY_SERVER, "PORT", serve, NULL};
    start(&sv, args);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/%s/%s", sv.port, prefix, rel);
    snprintf(dest, sizeof dest, "%s/cache/%s", dir, rel);
    kdh_symstore_t *s = store_for(dir, "http://unused");
    int rc = kdh_symstore_download(s, url, dest, want_pdb, err);
    kdh_symstore_free(s);
    stop(&sv);
    return rc;
}

static void rel_pdb(const fixture_t *f, char *out, size_t cap)
{
    char id[41];
    kdh_pe_pdb_id(f->guid, f->age, id);
    snprintf(out, cap, "fxsyms_x64.pdb/%s/fxsyms_x64.pdb", id);
}

void test_http_dropped(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], rel[256], cache[300];
    kdh_err_t err;
    rel_pdb(&f, rel, sizeof rel);
    assert_int_equal(tiny_download(&f, "drop", rel, 1, &err, dir, sizeof dir), KDH_EIO);
    assert_non_null(strstr(err.msg, "dropped"));
    snprintf(cache, sizeof cache, "%s/cache", dir);
    assert_int_equal(count_files(cache), 0);
    rm_rf(dir);
}

void test_http_html(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], rel[256], cache[300];
    kdh_err_t err;
    rel_pdb(&f, rel, sizeof rel);
    assert_int_equal(tiny_download(&f, "html", rel, 1, &err, dir, sizeof dir), KDH_ECORRUPT);
    assert_non_null(strstr(err.msg, "<html>"));
    snprintf(cache, sizeof cache, "%s/cache", dir);
    assert_int_equal(count_files(cache), 0);
    rm_rf(dir);
}

void test_http_redirect_and_magic(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], rel[256], dest[600];
    kdh_err_t err;
    rel_pdb(&f, rel, sizeof rel);
    int rc = tiny_download(&f, "redirect", rel, 1, &err, dir, sizeof dir);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, KDH_OK);
    snprintf(dest, sizeof dest, "%s/cache/%s", dir, rel);
    assert_true(files_equal(dest, f.pdb));
    rm_rf(dir);
    /* A PDB where an image was expected is refused too. */
    assert_int_equal(tiny_download(&f, "file", rel, 0, &err, dir, sizeof dir), KDH_ECORRUPT);
    snprintf(dest, sizeof dest, "%s/cache", dir);
    assert_int_equal(count_files(dest), 0);
    rm_rf(dir);
}

/* ---- a download inside a task does not hold the loop ---- */
typedef struct dl_task {
    kdh_symstore_t *s;
    const char *url, *dest;
    int done, rc;
    unsigned ticks;
    kdh_err_t err;
} dl_task_t;

static int download_task(void *arg, kdh_err_t *err)
{
    dl_task_t *d = arg;
    d->rc = kdh_symstore_download(d->s, d->url, d->dest, 1, &d->err);
    d->done = 1;
    (void)err;
    return KDH_OK;
}

static int ticker_task(void *arg, kdh_err_t *err)
{
    dl_task_t *d = arg;
    (void)err;
    while (!d->done) {
        kdh_task_sleep(10);
        d->ticks++;
    }
    return KDH_OK;
}

/* The body comes in 20 pieces over about 1 s; a task ticking every 10 ms meanwhile must tick
 * dozens of times (a download holding the loop lets it tick once or twice). */
void test_http_download_in_task(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], serve[300], url[600], dest[600], rel[256];
    make_tmpdir(dir, sizeof dir);
    snprintf(serve, sizeof serve, "%s/serve", dir);
    make_served_store(&f, serve);
    rel_pdb(&f, rel, sizeof rel);
    server_t sv;
    const char *args[] = {KDH_SS_TINY_SERVER, "PORT", serve, NULL};
    start(&sv, args);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/slow/%s", sv.port, rel);
    snprintf(dest, sizeof dest, "%s/cache/%s", dir, rel);
    dl_task_t d = {.s = store_for(dir, "http://unused"), .url = url, .dest = dest};
    uv_loop_t loop;
    uv_loop_init(&loop);
    kdh_sched_t *sc;
    kdh_err_t err;
    assert_int_equal(kdh_sched_new(&sc, &loop, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(sc, "download", download_task, &d, 0, NULL, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(sc, "ticker", ticker_task, &d, 0, NULL, &err), KDH_OK);
    assert_int_equal(kdh_sched_run(sc), 0);
    kdh_sched_free(sc);
    assert_int_equal(uv_loop_close(&loop), 0);
    kdh_symstore_free(d.s);
    stop(&sv);
    if (d.rc != KDH_OK)
        fail_msg("download: %s", d.err.msg);
    assert_true(files_equal(dest, f.pdb));
    print_message("ticks during a ~1 s download: %u\n", d.ticks);
    assert_true(d.ticks >= 30);
    rm_rf(dir);
}
