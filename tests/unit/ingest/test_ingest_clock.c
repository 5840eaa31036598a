/* test_ingest_clock.c: "Debug session time:" lines give the events after them their time; the
 * expected Unix times were computed apart from the parser (Python's calendar.timegm on the UTC
 * time the zone in parentheses implies). Events before any such line have t = 0; pool samples keep
 * their snapshot ordinal; a new file starts without a clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Through a whole ingest: events.jsonl carries the clock; the pool line keeps its ordinal. */
static void test_run_lines(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh_clock_XXXXXX", log[64], out[96];
    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof log, "%s/kd.log", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    FILE *f = fopen(log, "wb");
    assert_non_null(f);
    fwrite(clocked, 1, sizeof clocked - 1, f);
    fclose(f);
    const char *files[] = {log};
    kdh_ingest_opts_t o = {.kinds = KDH_INGEST_AUTO, .files = files, .nfiles = 1, .out_dir = out};
    kdh_ingest_totals_t tot;
    kdh_err_t err = {0, ""};
    assert_int_equal(kdh_ingest_run(&o, &tot, &err), KDH_OK);
    char p[128];
    snprintf(p, sizeof p, "%s/events.jsonl", out);
    FILE *ev = fopen(p, "r");
    assert_non_null(ev);
    char line[1024];
    int n = 0;
    static const double want[6] = {0, 1584436872.345, 1546731430.5, 1640995199, 1436436000, 1436436000};
    while (fgets(line, sizeof line, ev)) {
        json_t *o2 = json_loads(line, 0, NULL);
        assert_non_null(o2);
        assert_true(n < 6);
        assert_true(json_real_value(json_object_get(o2, "t")) == want[n]);
        json_decref(o2);
        n++;
    }
    fclose(ev);
    assert_int_equal(n, 6);
    snprintf(p, sizeof p, "%s/pool.jsonl", out);
    json_t *pool = json_load_file(p, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(pool);
    assert_true(json_real_value(json_object_get(pool, "t")) == 1.0);
    json_decref(pool);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_time),
        cmocka_unit_test(test_run_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
