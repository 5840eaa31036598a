/* test_ingest_clock.c: "Debug session time:" lines give the events after them their time; the
 * expected Unix times were computed apart from the parser (Python's calendar.timegm on the UTC
 * time the zone in parentheses implies). In a file, events before the first such line take its
 * time (text fed without a file has no look ahead: no time) when it comes within the look-ahead's
 * reach; t = 0 only for a file without one;
 * pool samples keep their snapshot ordinal; a new file starts without a clock. The look ahead
 * finds a clock line cut by its reads at any place, and its memory does not grow with the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "ingest_collect.h"

#define STACK(cpu)                                                                   \
    cpu ": kd> k\n"                                                                  \
        " # Child-SP          RetAddr               Call Site\n"                     \
        "00 ffffc001`00001000 fffff805`12345678     nt!KeBugCheckEx\n"               \
        "01 ffffc001`00001100 00000000`00000000     LeakDrv!LeakPathA+0x19\n"

static const char clocked[] =
    STACK("0")
    "Debug session time: Tue Mar 17 10:21:12.345 2020 (UTC + 1:00)\n"
    STACK("0")
    "Debug session time: Sat Jan  5 15:37:10.5 2019 (UTC - 8:00)\n"
    STACK("1")
    "Debug session time: Fri Dec 31 23:59:59 2021\n"
    STACK("2")
    "Debug session time: Thu Jul  9 12:00:00.000 2015 (GMT+2)\n"
    STACK("3")
    "Debug session time: Thu Foo  9 12:00:00.000 2015 (GMT+2)\n" /* not a month: ignored */
    STACK("4")
    " Tag  Type     Allocs         Frees    Diff   Bytes    Per Alloc\n"
    "\n"
    " Leak Nonp       6394      4056      2338 163418368      69896\n";

static void test_session_time(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, clocked, sizeof clocked - 1, 50);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 6);
    static const double want[6] = {0, 1584436872.345, 1546731430.5, 1640995199, 1436436000, 1436436000};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c->stacks[i].st.has_t, i > 0);
        if (c->stacks[i].st.t != want[i])
            fail_msg("stack %d: t %.3f, expected %.3f", i, c->stacks[i].st.t, want[i]);
    }
    assert_int_equal(c->nsamples, 1);
    coll_free(c);
}

#define LATE_STACKS 1500 /* about 300 KB of stacks before the clock: past the first read chunks */
#define LATE_T 1793626501.25 /* Mon Nov  2 08:05:01.25 2026 (UTC - 5:30) */
#define WIDE_T 1614520800.0  /* Sun Feb 28 23:00:00 2021 (GMT+9) */

static void write_log(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

/* Through a whole ingest: events.jsonl carries the clock, events before a file's first clock line
 * take its time, a file without one gives 0; the pool line keeps its ordinal. */
static void test_run_lines(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh_clock_XXXXXX", log[64], late[64], wide[64], none[64], out[96];
    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof log, "%s/kd.log", dir);
    snprintf(late, sizeof late, "%s/late.log", dir);
    snprintf(wide, sizeof wide, "%s/wide.log", dir);
    snprintf(none, sizeof none, "%s/none.log", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    write_log(log, clocked, sizeof clocked - 1);

    /* many stacks, a clock line that names no real day (not a clock), the clock, one more stack */
    FILE *f = fopen(late, "wb");
    assert_non_null(f);
    for (int i = 0; i < LATE_STACKS; i++)
        fputs(STACK("0"), f);
    fputs("Debug session time: Sat Jan 45 10:00:00 2019\n"
          "Debug session time: Mon Nov  2 08:05:01.25 2026 (UTC - 5:30)\n" STACK("1"), f);
    fclose(f);

    /* UTF-16LE with a BOM (.logopen /u): a stack, the clock, a stack */
    static const char wide_text[] = STACK("0") "Debug session time: Sun Feb 28 23:00:00 2021 (GMT+9)\n" STACK("0");
    char wbuf[2 * sizeof wide_text + 2];
    size_t wn = 0;
    wbuf[wn++] = (char)0xff;
    wbuf[wn++] = (char)0xfe;
    for (size_t i = 0; i + 1 < sizeof wide_text; i++) {
        wbuf[wn++] = wide_text[i];
        wbuf[wn++] = 0;
    }
    write_log(wide, wbuf, wn);

    static const char none_text[] = STACK("0") STACK("1");
    write_log(none, none_text, sizeof none_text - 1);

    const char *files[] = {log, late, wide, none};
    kdh_ingest_opts_t o = {.kinds = KDH_INGEST_AUTO, .files = files, .nfiles = 4, .out_dir = out};
    kdh_ingest_totals_t tot;
    kdh_err_t err = {0, ""};
    assert_int_equal(kdh_ingest_run(&o, &tot, &err), KDH_OK);

    enum { NWANT = 6 + LATE_STACKS + 1 + 2 + 2 };
    static double want[NWANT];
    static const double first[6] = {1584436872.345, 1584436872.345, 1546731430.5, 1640995199, 1436436000,
                                    1436436000};
    int k = 0;
    for (int i = 0; i < 6; i++)
        want[k++] = first[i];
    for (int i = 0; i <= LATE_STACKS; i++)
        want[k++] = LATE_T;
    want[k++] = WIDE_T;
    want[k++] = WIDE_T;
    want[k++] = 0;
    want[k++] = 0;
    assert_int_equal(k, NWANT);

    char p[128];
    snprintf(p, sizeof p, "%s/events.jsonl", out);
    FILE *ev = fopen(p, "r");
    assert_non_null(ev);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, ev)) {
        json_t *o2 = json_loads(line, 0, NULL);
        assert_non_null(o2);
        assert_true(n < NWANT);
        double t = json_number_value(json_object_get(o2, "t"));
        if (t != want[n])
            fail_msg("event %d (%s): t %.3f, expected %.3f", n + 1,
                     json_string_value(json_object_get(o2, "src")), t, want[n]);
        json_decref(o2);
        n++;
    }
    fclose(ev);
    assert_int_equal(n, NWANT);
    snprintf(p, sizeof p, "%s/pool.jsonl", out);
    json_t *pool = json_load_file(p, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(pool);
    assert_true(json_real_value(json_object_get(pool, "t")) == 1.0);
    json_decref(pool);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Writes text to path as is, or as UTF-16LE with a BOM (.logopen /u). */
static void write_as(const char *path, const char *text, size_t n, int utf16)
{
    if (!utf16) {
        write_log(path, text, n);
        return;
    }
    char *w = malloc(2 * n + 2);
    assert_non_null(w);
    w[0] = (char)0xff;
    w[1] = (char)0xfe;
    for (size_t i = 0; i < n; i++) {
        w[2 + 2 * i] = text[i];
        w[3 + 2 * i] = 0;
    }
    write_log(path, w, 2 * n + 2);
    free(w);
}

/* A stack, lines of x up to byte at, the clock line (after bad, a line the parser does not take
 * for a clock, when given), a stack: the first stack must take the clock's time. */
static void far_clock(const char *path, size_t at, const char *bad, size_t bad_len, int utf16)
{
    static const char stack[] = STACK("0");
    static const char clock[] = "Debug session time: Mon Nov  2 08:05:01.25 2026 (UTC - 5:30)\n";
    char *t = malloc(140000 + bad_len);
    assert_non_null(t);
    size_t n = sizeof stack - 1;
    memcpy(t, stack, n);
    while (n < at) {
        size_t l = at - n > 100 ? 80 : at - n - 1;
        memset(t + n, 'x', l);
        n += l;
        t[n++] = '\n';
    }
    assert_int_equal(n, at);
    memcpy(t + n, bad, bad_len);
    n += bad_len;
    memcpy(t + n, clock, sizeof clock - 1);
    n += sizeof clock - 1;
    memcpy(t + n, stack, sizeof stack - 1);
    n += sizeof stack - 1;
    write_as(path, t, n, utf16);
    free(t);
    coll_t *c = coll_run(KDH_INGEST_AUTO, path, NULL, 0, 0);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 2);
    if (!c->stacks[0].st.has_t || c->stacks[0].st.t != LATE_T)
        fail_msg("clock line at byte %zu (utf16 %d, bad line %zu bytes): first stack t %.3f (has_t %d), expected %.3f",
                 at, utf16, bad_len, c->stacks[0].st.t, c->stacks[0].st.has_t, LATE_T);
    coll_free(c);
}

/* A clock line far into the file, starting at every offset around the ends of the first two
 * 64 KiB reads of the look-ahead (so that the line is cut at every place), in plain text and in
 * UTF-16 (whose reads end at other characters: the 2-byte BOM, 2 bytes a character); then after
 * a clock line the parser skips as over-long, and one with a NUL byte (line noise). */
static void test_far_clock(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh_clock_XXXXXX", path[64], cmd[96];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/far.log", dir);
    int tried = 0;
    for (int utf16 = 0; utf16 <= 1; utf16++)
        for (size_t base = 65536; base <= 131072; base += 65536) {
            size_t end = utf16 ? (base - 2) / 2 : base; /* the character the read ends before */
            for (size_t at = end - 70; at <= end + 2; at++, tried++)
                far_clock(path, at, "", 0, utf16);
        }
    assert_int_equal(tried, 292);

    static const char head[] = "Debug session time: Tue Mar 17 10:21:12.345 2020 (UTC + 1:00) ";
    size_t long_len = KDH_INGEST_LINE_MAX + 10;
    char *longline = malloc(long_len);
    assert_non_null(longline);
    memcpy(longline, head, sizeof head - 1);
    memset(longline + sizeof head - 1, 'y', long_len - sizeof head);
    longline[long_len - 1] = '\n';
    far_clock(path, 1000, longline, long_len, 0);
    far_clock(path, 1000, longline, long_len, 1);
    free(longline);
    static const char nul_line[] = "Debug session time: Tue Mar 17 10:21:12.345 2020\0\n";
    far_clock(path, 70000, nul_line, sizeof nul_line - 1, 0);
    far_clock(path, 70000, nul_line, sizeof nul_line - 1, 1);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A stack, x lines up to byte at, the clock line, a stack. */
static coll_t *clock_at(const char *path, size_t at)
{
    static const char clock[] = "Debug session time: Mon Nov  2 08:05:01.25 2026 (UTC - 5:30)\n";
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(STACK("0"), f);
    static char line[81];
    memset(line, 'x', 80);
    line[80] = '\n';
    size_t n = sizeof STACK("0") - 1;
    for (; n + sizeof line <= at; n += sizeof line)
        assert_int_equal(fwrite(line, 1, sizeof line, f), sizeof line);
    if (n < at) {
        fprintf(f, "%.*s\n", (int)(at - n - 1), line);
        n = at;
    }
    fputs(clock, f);
    fputs(STACK("1"), f);
    assert_int_equal(fclose(f), 0);
    return coll_run(KDH_INGEST_AUTO, path, NULL, 0, 0);
}

/* The look-ahead reaches KDH_INGEST_CLOCK_REACH bytes past the parse's reading position (64 KiB
 * at most past the stack): a clock just inside gives the first stack its time, one past the
 * reach leaves it without; the stack after the clock line has it either way. */
static void test_clock_reach(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh_clock_XXXXXX", path[64], cmd[96];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/reach.log", dir);
    for (int beyond = 0; beyond <= 1; beyond++) {
        size_t at = beyond ? KDH_INGEST_CLOCK_REACH + 70000 : KDH_INGEST_CLOCK_REACH - 1000;
        coll_t *c = clock_at(path, at);
        assert_non_null(c);
        assert_int_equal(c->nstacks, 2);
        assert_int_equal(c->stacks[0].st.has_t, !beyond);
        if (!beyond && c->stacks[0].st.t != LATE_T)
            fail_msg("clock at byte %zu: first stack t %.3f, expected %.3f", at, c->stacks[0].st.t, LATE_T);
        assert_true(c->stacks[1].st.has_t);
        assert_true(c->stacks[1].st.t == LATE_T);
        coll_free(c);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Looking ahead through a large file without a clock line (all of it is searched) leaves the
 * process's peak memory where it was: the search reads in chunks and maps nothing. */
static void test_look_ahead_memory(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh_clock_XXXXXX", path[64], cmd[96];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/big.log", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(STACK("0"), f);
    static char filler[1 << 16];
    for (size_t i = 0; i < sizeof filler; i++)
        filler[i] = (i % 64 == 63) ? '\n' : 'a' + (char)(i % 26);
    for (int i = 0; i < 768; i++) /* 48 MiB */
        assert_int_equal(fwrite(filler, 1, sizeof filler, f), sizeof filler);
    fputs(STACK("1"), f);
    fclose(f);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    coll_t *c = coll_run(KDH_INGEST_AUTO, path, NULL, 0, 0);
    getrusage(RUSAGE_SELF, &after);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 2);
    assert_false(c->stacks[0].st.has_t);
    coll_free(c);
    long grew_kib = after.ru_maxrss - before.ru_maxrss;
    if (grew_kib > 8192)
        fail_msg("peak memory grew by %ld KiB over a 48 MiB file", grew_kib);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A log read from a named pipe whose writer has already closed it when the parser meets the
 * stack (it is emitted at the end of the input): no look-ahead there, and nothing waits for the
 * pipe to be opened again (which would block with no writer). The parse runs in a child that an
 * alarm ends, so a hang fails the test instead of stalling it. */
static void test_fifo_no_wait(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh_clock_XXXXXX", path[64], cmd[96];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/pipe.log", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        FILE *f = fopen(path, "w");
        _exit(f && fputs(STACK("0"), f) >= 0 && fclose(f) == 0 ? 0 : 3);
    }
    pid_t reader = fork();
    assert_true(reader >= 0);
    if (reader == 0) {
        alarm(10);
        coll_t *c = coll_run(KDH_INGEST_AUTO, path, NULL, 0, 0);
        /* a stack before any clock, and a pipe cannot be searched ahead: no time */
        _exit(c && c->nstacks == 1 && !c->stacks[0].st.has_t ? 0 : 4);
    }
    int ws, rs;
    assert_int_equal(waitpid(writer, &ws, 0), writer);
    assert_int_equal(waitpid(reader, &rs, 0), reader);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    if (!WIFEXITED(rs) || WEXITSTATUS(rs) != 0)
        fail_msg("parse of a named pipe: %s %d", WIFEXITED(rs) ? "exit" : "signal",
                 WIFEXITED(rs) ? WEXITSTATUS(rs) : WTERMSIG(rs));
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_look_ahead_memory),
        cmocka_unit_test(test_session_time),
        cmocka_unit_test(test_run_lines),
        cmocka_unit_test(test_far_clock),
        cmocka_unit_test(test_clock_reach),
        cmocka_unit_test(test_fifo_no_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
