/* test_store_lines.c: the store's direct line formatter against jansson (the reference: what the
 * store wrote before, object by object), and buffered writing: the same bytes as unbuffered
 * writing after close, nothing torn and no event without its stack after a kill -9, and a reopen
 * that continues the seq; after a failed write (a file size limit), no event on disk without its
 * stack and every later call refused with the first error. */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "kdh/store.h"
#include "store_int.h"

static char *mktemp_dir(void)
{
    char *d = strdup("/tmp/kdh_lines_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* kdh_store_hex, which every hex text of the store comes from, against printf's %x and %016x. */
static void test_hex_matches_printf(void **state)
{
    (void)state;
    static const uint64_t edges[] = {0, 1, 9, 10, 15, 16, 255, 256, 0xfffffffful, 0x100000000ull,
                                     0x8000000000000000ull, UINT64_MAX};
    for (int i = 0; i < 20000; i++) {
        uint64_t v = i < (int)KDH_ARRAY_LEN(edges) ? edges[i] : next() >> (next() % 64);
        char got[17], want[24];
        size_t n = kdh_store_hex(got, v, 0);
        assert_int_equal(n, (size_t)snprintf(want, sizeof want, "%" PRIx64, v));
        assert_memory_equal(got, want, n);
        n = kdh_store_hex(got, v, 16);
        assert_int_equal(n, 16);
        snprintf(want, sizeof want, "%016" PRIx64, v);
        assert_memory_equal(got, want, 16);
        kdh_store_sid_format(v, got);
        assert_string_equal(got, want);
    }
}

/* The reference: the jansson object dumped with the store's flags. */
static size_t reference(json_t *o, char *buf, size_t cap)
{
    assert_non_null(o);
    size_t n = json_dumpb(o, buf, cap, KDH_STORE_DUMP);
    json_decref(o);
    assert_true(n > 0 && n < cap);
    return n;
}

static const char *const tags[] = {"Leak", "Cc", "a\"b\\", "\xc3\xa9t\xc3\xa9", "ab\x01", "\xff\xfe", "?",
                                   /* the edges of the text written without the escape cache */
                                   "a/b", "x\x7f", " ~}", "\x1f", "Le \x20"};
static const char *const srcs[] = {"kd.log:1", "kd.log:123456789", "dir \"x\"\\y.log:42", "caf\xc3\xa9.log:7",
                                   "no-line", "trailing:", "12345", ":9", "\xff.log:3", "a:b:10",
                                   "tab\there.log:5", "dir/sub/kd~1.log:8", "del\x7f.log:2",
                                   /* a file name longer than the formatter keeps */
                                   "d/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                   "x.log:11"};
static const double times[] = {0, -0.0, 17, 1795478400.125, 1795478400, 0.1, -2.5, 1e300, 1e-7,
                               123456789.123456789, -3, 999999999999999, 1e15, 1e16, 4503599627370497.0};

static void test_event_lines_match_jansson(void **state)
{
    (void)state;
    kdh_store_fmt_t fmt;
    memset(&fmt, 0, sizeof fmt);
    char fast[4096], ref[4096];
    unsigned taken = 0, refused = 0;
    for (int i = 0; i < 20000; i++) {
        kdh_store_event_t ev;
        memset(&ev, 0, sizeof ev);
        uint64_t r = next();
        ev.seq = next() >> (r & 63);
        ev.t = (r >> 6) % 17 == 16 ? NAN : times[(r >> 6) % 15];
        ev.boot = (uint32_t)(next() >> ((r >> 10) & 31));
        ev.cpu = (r >> 15) & 1 ? -1 : (int)((r >> 16) % 4096);
        ev.thread = (r >> 28) & 1 ? next() >> ((r >> 29) & 63) : 0;
        ev.kind = (kdh_store_kind_t)((r >> 35) % 3);
        const char *tg = tags[(r >> 37) % 12];
        memcpy(ev.tag, tg, strlen(tg) + 1);
        ev.has_size = (r >> 40) & 1;
        ev.size = next() >> ((r >> 41) & 63);
        ev.has_addr = (r >> 47) & 1;
        ev.addr = next() >> ((r >> 48) & 63);
        ev.has_sid = (r >> 54) & 1;
        ev.sid = next();
        ev.src = (r >> 55) & 1 ? NULL : srcs[(r >> 56) % 14];
        size_t n = kdh_store_fmt_event(&fmt, &ev, fast, sizeof fast);
        size_t m = reference(kdh_store_event_json(&ev), ref, sizeof ref);
        if (!n) {
            /* handed back only for what jansson itself refuses: invalid UTF-8, a non-finite t */
            int bad_utf8 = (unsigned char)ev.tag[0] == 0xff || (ev.src && strchr(ev.src, '\xff'));
            assert_true(bad_utf8 || isnan(ev.t));
            refused++;
            continue;
        }
        taken++;
        if (n != m || memcmp(fast, ref, n) != 0)
            fail_msg("line %d differs:\n  fast %.*s\n  ref  %.*s", i, (int)n, fast, (int)m, ref);
    }
    assert_true(taken > 10000 && refused > 100);
    /* a line longer than the buffer is handed back, not cut */
    kdh_store_event_t ev = {.seq = 1, .t = 1, .kind = KDH_STORE_ALLOC, .tag = "Leak", .src = "kd.log:1"};
    assert_int_equal(kdh_store_fmt_event(&fmt, &ev, fast, 20), 0);
    kdh_store_fmt_free(&fmt);
}

static void test_pool_lines_match_jansson(void **state)
{
    (void)state;
    kdh_store_fmt_t fmt;
    memset(&fmt, 0, sizeof fmt);
    static const char *const pools[] = {"nonpaged", "paged", "session", "we\"ird", NULL};
    char fast[1024], ref[1024];
    for (int i = 0; i < 5000; i++) {
        kdh_store_pool_t p;
        memset(&p, 0, sizeof p);
        uint64_t r = next();
        p.t = times[r % 15];
        p.boot = (uint32_t)(r >> 8);
        static const int valid[] = {0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11}; /* valid UTF-8 ones */
        const char *tg = tags[valid[(r >> 40) % 11]];
        memcpy(p.tag, tg, strlen(tg) + 1);
        if (i % 3 == 0) /* more distinct tags than the escape cache holds */
            snprintf(p.tag, sizeof p.tag, "%04x", (unsigned)(r >> 20) % 3000);
        p.pool = pools[(r >> 44) % 5];
        p.allocs = next() >> ((r >> 48) & 63);
        p.frees = next() >> ((r >> 54) & 63);
        p.bytes = next();
        size_t n = kdh_store_fmt_pool(&fmt, &p, fast, sizeof fast);
        size_t m = reference(kdh_store_pool_json(&p), ref, sizeof ref);
        assert_true(n > 0);
        if (n != m || memcmp(fast, ref, n) != 0)
            fail_msg("pool line %d differs:\n  fast %.*s\n  ref  %.*s", i, (int)n, fast, (int)m, ref);
    }
    kdh_store_fmt_free(&fmt);
}

/* ---- buffered writing ---- */

#define NSTACKS 50

static void frames_of(int k, kdh_store_frame_t f[2], char sym[2][64])
{
    memset(f, 0, 2 * sizeof *f);
    snprintf(sym[0], 64, "nt!ExAllocatePoolWithTag+0x%x", 0x30 + k);
    snprintf(sym[1], 64, "Drv%d!Fn+0x1%x", k % 7, k);
    f[0].mod = "nt";
    f[0].rva = 0x1000u + (unsigned)k;
    f[0].has_rva = 1;
    f[0].sym = sym[0];
    f[1].mod = "Drv";
    f[1].rva = 0x2000u + (unsigned)k;
    f[1].has_rva = 1;
    f[1].sym = sym[1];
}

/* Writes n events (a new stack every 7th) and a pool sample every 100th. */
static void fill(kdh_store_t *st, int from, int n)
{
    kdh_err_t err = {0};
    for (int i = from; i < from + n; i++) {
        kdh_store_frame_t f[2];
        char sym[2][64];
        frames_of((i / 7) % NSTACKS, f, sym);
        uint64_t sid;
        kdh_store_module_t m = {.key = i % 2 ? "nt" : "Drv", .name = i % 2 ? "nt" : "Drv", .boot = 1};
        assert_int_equal(kdh_store_add_module(st, &m, &err), KDH_OK);
        assert_int_equal(kdh_store_intern_stack(st, f, 2, &sid, &err), KDH_OK);
        kdh_store_event_t ev = {.t = 0, .boot = 1, .cpu = i % 4, .kind = KDH_STORE_ALLOC, .tag = "Leak",
                                .size = (uint64_t)i, .has_size = 1, .sid = sid, .has_sid = 1};
        char src[32];
        snprintf(src, sizeof src, "kd.log:%d", i + 1);
        ev.src = src;
        assert_int_equal(kdh_store_append_event(st, &ev, NULL, &err), KDH_OK);
        if (i % 100 == 0) {
            kdh_store_pool_t p = {.t = i / 100, .boot = 1, .tag = "Leak", .pool = "paged", .allocs = (uint64_t)i,
                                  .bytes = 64};
            assert_int_equal(kdh_store_append_pool(st, &p, &err), KDH_OK);
        }
    }
}

static void test_buffered_same_bytes(void **state)
{
    (void)state;
    char *a = mktemp_dir(), *b = mktemp_dir();
    kdh_store_t *st;
    kdh_err_t err = {0};
    kdh_store_opts_t buffered = {.buffer_bytes = 4096};
    assert_int_equal(kdh_store_open(&st, a, NULL, &err), KDH_OK);
    fill(st, 0, 3000);
    assert_int_equal(kdh_store_close(st, &err), KDH_OK);
    assert_int_equal(kdh_store_open(&st, b, &buffered, &err), KDH_OK);
    fill(st, 0, 3000);
    assert_int_equal(kdh_store_close(st, &err), KDH_OK);
    static const char *const files[] = {"modules.jsonl", "stacks.jsonl", "events.jsonl", "pool.jsonl"};
    for (size_t i = 0; i < 4; i++) {
        size_t na, nb;
        char *ta = slurp(a, files[i], &na), *tb = slurp(b, files[i], &nb);
        assert_true(na > 0);
        assert_int_equal(na, nb);
        assert_memory_equal(ta, tb, na);
        free(ta);
        free(tb);
    }
    rm_rf(a);
    rm_rf(b);
    free(a);
    free(b);
}

/* What a reader of a run saw: the stack ids on disk (an event naming one past SEEN_MAX counts as
 * dangling, so a test with more stacks fails rather than passes), the events naming none of them
 * and the gaps in seq. */
#define SEEN_MAX 256
typedef struct seen {
    uint64_t sids[SEEN_MAX];
    int nsids, events, dangling, gaps;
    uint64_t last_seq;
} seen_t;

static int on_stack(void *ud, uint64_t sid, const kdh_store_frame_t *f, size_t n)
{
    (void)f, (void)n;
    seen_t *s = ud;
    if (s->nsids < SEEN_MAX)
        s->sids[s->nsids++] = sid;
    return 0;
}

static int on_event(void *ud, const kdh_store_event_t *ev)
{
    seen_t *s = ud;
    int found = 0;
    for (int i = 0; i < s->nsids; i++)
        found |= s->sids[i] == ev->sid;
    s->dangling += !found;
    s->gaps += ev->seq != s->last_seq + 1;
    s->last_seq = ev->seq;
    s->events++;
    return 0;
}

/* A writer killed with SIGKILL between flushes: every line on disk is whole, every event's stack is
 * on disk, seq has no gap, and a reopen continues right after the last event written. */
static void test_buffered_kill9(void **state)
{
    (void)state;
    char *dir = mktemp_dir();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kdh_store_t *st;
        kdh_err_t err = {0};
        kdh_store_opts_t o = {.buffer_bytes = 8192};
        if (kdh_store_open(&st, dir, &o, &err) != KDH_OK)
            _exit(3);
        fill(st, 0, 2500); /* several flushes, the last lines still in memory */
        raise(SIGKILL);
        _exit(4);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    seen_t s;
    memset(&s, 0, sizeof s);
    kdh_store_reader_t rd = {.ud = &s, .on_stack = on_stack, .on_event = on_event};
    kdh_store_read_stats_t stats;
    kdh_err_t err = {0};
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_OK);
    assert_int_equal(stats.skipped, 0);
    assert_true(s.events > 1000 && s.events < 2500); /* flushed lines are there, the rest lost */
    assert_int_equal(s.dangling, 0);
    assert_int_equal(s.gaps, 0);

    kdh_store_t *st;
    kdh_store_opts_t o = {.buffer_bytes = 8192};
    assert_int_equal(kdh_store_open(&st, dir, &o, &err), KDH_OK);
    assert_int_equal(kdh_store_info(st)->next_seq, (uint64_t)s.events + 1);
    assert_int_equal(kdh_store_info(st)->repaired, 0);
    fill(st, 2500, 10);
    assert_int_equal(kdh_store_close(st, &err), KDH_OK);
    int before = s.events;
    memset(&s, 0, sizeof s);
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_OK);
    assert_int_equal(s.events, before + 10);
    assert_int_equal(s.gaps, 0);
    assert_int_equal(s.dangling, 0);
    rm_rf(dir);
    free(dir);
}

/* ---- a failed write ---- */

#define FAIL_STACKS 120
#define FAIL_LIMIT 10000 /* bytes: stacks.jsonl reaches it at its third 4 KiB flush */

static struct rlimit saved_fsize;

static int restore_fsize(void **state)
{
    (void)state;
    setrlimit(RLIMIT_FSIZE, &saved_fsize);
    signal(SIGXFSZ, SIG_DFL);
    return 0;
}

/* One event on stack k (its own, with a long symbol so that stacks.jsonl grows fastest). */
static int write_one(kdh_store_t *st, int k, kdh_err_t *err)
{
    char sym[2][64];
    kdh_store_frame_t f[2];
    frames_of(k, f, sym);
    snprintf(sym[1], sizeof sym[1], "Drv!AFunctionWithAVeryLongNameIndeed%04d+0x1%x", k, k);
    uint64_t sid;
    int rc = kdh_store_intern_stack(st, f, 2, &sid, err);
    if (rc != KDH_OK)
        return rc;
    kdh_store_event_t ev = {.boot = 1, .cpu = 0, .kind = KDH_STORE_ALLOC, .tag = "Leak", .sid = sid, .has_sid = 1};
    return kdh_store_append_event(st, &ev, NULL, err);
}

/* stacks.jsonl cannot grow past FAIL_LIMIT (RLIMIT_FSIZE: the write that crosses it is cut short,
 * the next one fails with EFBIG). At the first failure the writer goes on as a caller that takes
 * it for a bad input would: events on the last stacks collected before it (whose lines were in
 * the failed write), then close. On disk, every event names a stack that is there; the failing
 * call and every later one (close too) return KDH_EIO naming stacks.jsonl; a reopen without the
 * limit repairs the torn stack line and continues. */
static void test_buffered_write_failure(void **state)
{
    (void)state;
    char *dir = mktemp_dir();
    kdh_store_t *st;
    kdh_err_t err = {0};
    kdh_store_opts_t o = {.buffer_bytes = 4096};
    assert_int_equal(kdh_store_open(&st, dir, &o, &err), KDH_OK);

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
    struct rlimit lim = saved_fsize;
    lim.rlim_cur = FAIL_LIMIT;
    signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG instead of killing the process */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    int first_fail = -1, refused = 0;
    for (int k = 0; k < FAIL_STACKS && first_fail < 0; k++) {
        kdh_err_t e = {0};
        int rc = write_one(st, k, &e);
        if (rc != KDH_OK) {
            first_fail = k;
            assert_int_equal(rc, KDH_EIO);
            assert_non_null(strstr(e.msg, "stacks.jsonl"));
            assert_null(strchr(e.msg, '\n'));
        }
    }
    assert_true(first_fail > 30); /* two flushes went through before the limit */
    for (int k = first_fail - 10; k < first_fail; k++) { /* known stacks: no stack line, only events */
        kdh_err_t e = {0};
        int rc = write_one(st, k, &e);
        refused += rc != KDH_OK;
        if (rc != KDH_OK)
            assert_non_null(strstr(e.msg, "stacks.jsonl"));
    }
    assert_int_equal(refused, 10);
    kdh_err_t e = {0};
    assert_int_equal(kdh_store_flush(st, &e), KDH_EIO);
    assert_int_equal(kdh_store_close(st, &e), KDH_EIO);
    assert_non_null(strstr(e.msg, "stacks.jsonl"));
    restore_fsize(NULL);

    seen_t s;
    memset(&s, 0, sizeof s);
    kdh_store_reader_t rd = {.ud = &s, .on_stack = on_stack, .on_event = on_event};
    kdh_store_read_stats_t stats;
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_OK);
    assert_true(s.events > 0 && s.events < first_fail);
    assert_true(s.nsids >= s.events && s.nsids < first_fail);
    assert_int_equal(s.dangling, 0);
    assert_int_equal(s.gaps, 0);

    /* continued without the limit: the torn stack line is cut, the seq follows the events on disk */
    assert_int_equal(kdh_store_open(&st, dir, &o, &err), KDH_OK);
    assert_int_equal(kdh_store_info(st)->repaired, 1);
    assert_int_equal(kdh_store_info(st)->next_seq, (uint64_t)s.events + 1);
    for (int k = 0; k < FAIL_STACKS; k++)
        assert_int_equal(write_one(st, k, &err), KDH_OK);
    assert_int_equal(kdh_store_close(st, &err), KDH_OK);
    int before = s.events;
    memset(&s, 0, sizeof s);
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_OK);
    assert_int_equal(s.nsids, FAIL_STACKS);
    assert_int_equal(s.events, before + FAIL_STACKS);
    assert_int_equal(s.dangling, 0);
    assert_int_equal(s.gaps, 0);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_matches_printf),
        cmocka_unit_test(test_event_lines_match_jansson),
        cmocka_unit_test(test_pool_lines_match_jansson),
        cmocka_unit_test(test_buffered_same_bytes),
        cmocka_unit_test(test_buffered_kill9),
        cmocka_unit_test_teardown(test_buffered_write_failure, restore_fsize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
