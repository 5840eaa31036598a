/* test_report.c: the report over run directories written here line by line. Every expected number
 * is worked out by hand in the comments from those lines (not from the code under test). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "kdh/pooltag.h"
#include "kdh/report.h"

static char root[64];
static char run_a[128], run_b[128], not_run[128];

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Run A. Stacks: a1 = LeakDrv (3 frames), b2 = Good (2 frames); sids are written by hand.
 *  seq t     kind  tag   stack size addr
 *  1   1000  alloc Leak  a1    100  0x1000
 *  2   1010  alloc Leak  a1    100  0x2000
 *  3   1020  alloc Leak  b2     50  0x3000
 *  4   1030  free  Leak  -       -  0x3000   pairs with 3
 *  5   1040  alloc Leak  a1    100  0x4000
 *  6   1050  free  Leak  -       -  0x9000   never allocated in the run: unpaired
 *  7   1060  alloc Leak  b2     50  0x5000
 *  8   1070  free  Leak  -       -  -        no address: subtracts one by count
 *  9   1080  hit   Leak  b2
 * 10   1090  alloc Othr  b2     10  0x6000
 * 11   1100  free  Othr  -       -  0x6000   pairs with 10 */
static const char a_events[] =
    "{\"seq\":1,\"t\":1000,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":100,\"addr\":\"0x1000\",\"sid\":\"00000000000000a1\"}\n"
    "{\"seq\":2,\"t\":1010,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":100,\"addr\":\"0x2000\",\"sid\":\"00000000000000a1\"}\n"
    "{\"seq\":3,\"t\":1020,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":50,\"addr\":\"0x3000\",\"sid\":\"00000000000000b2\"}\n"
    "{\"seq\":4,\"t\":1030,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x3000\"}\n"
    "{\"seq\":5,\"t\":1040,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":100,\"addr\":\"0x4000\",\"sid\":\"00000000000000a1\"}\n"
    "{\"seq\":6,\"t\":1050,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x9000\"}\n"
    "{\"seq\":7,\"t\":1060,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":50,\"addr\":\"0x5000\",\"sid\":\"00000000000000b2\"}\n"
    "{\"seq\":8,\"t\":1070,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\"}\n"
    "{\"seq\":9,\"t\":1080,\"boot\":1,\"kind\":\"hit\",\"tag\":\"Leak\",\"sid\":\"00000000000000b2\"}\n"
    "{\"seq\":10,\"t\":1090,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Othr\",\"size\":10,\"addr\":\"0x6000\",\"sid\":\"00000000000000b2\"}\n"
    "{\"seq\":11,\"t\":1100,\"boot\":1,\"kind\":\"free\",\"tag\":\"Othr\",\"addr\":\"0x6000\"}\n";

static const char a_stacks[] =
    "{\"sid\":\"00000000000000a1\",\"frames\":[{\"mod\":\"ntoskrnl.exe/A30A731A4000\",\"rva\":4660,\"sym\":\"nt!ExAllocatePoolWithTag+0x34\"},"
    "{\"mod\":\"LeakDrv.sys/5E2A11004000\",\"rva\":4201},"
    "{\"mod\":\"LeakDrv.sys/5E2A11004000\",\"rva\":8192,\"sym\":\"LeakDrv!DriverEntry+0x10\"}]}\n"
    "{\"sid\":\"00000000000000b2\",\"frames\":[{\"mod\":\"ntoskrnl.exe/A30A731A4000\",\"rva\":4660,\"sym\":\"nt!ExAllocatePoolWithTag+0x34\"},"
    "{\"mod\":\"Good.sys/111111112000\",\"rva\":32,\"sym\":\"Good!Work+0x20\"}]}\n";

static const char a_modules[] =
    "{\"key\":\"ntoskrnl.exe/A30A731A4000\",\"name\":\"nt\",\"file\":\"ntoskrnl.exe\",\"boot\":1}\n"
    "{\"key\":\"LeakDrv.sys/5E2A11004000\",\"name\":\"LeakDrv\",\"file\":\"LeakDrv.sys\",\"boot\":1}\n";

/* Pool samples: Leak rises 1000,1100,1200,1300 one minute apart (slope 100/60 B/s, steady);
 * Othr goes 500,800,400,900 (2 of 3 steps up: not steady). */
static const char a_pool[] =
    "{\"t\":0,\"tag\":\"Leak\",\"pool\":\"nonpaged\",\"allocs\":10,\"frees\":0,\"bytes\":1000}\n"
    "{\"t\":0,\"tag\":\"Othr\",\"pool\":\"paged\",\"allocs\":5,\"frees\":0,\"bytes\":500}\n"
    "{\"t\":60,\"tag\":\"Leak\",\"pool\":\"nonpaged\",\"allocs\":11,\"frees\":0,\"bytes\":1100}\n"
    "{\"t\":60,\"tag\":\"Othr\",\"pool\":\"paged\",\"allocs\":8,\"frees\":0,\"bytes\":800}\n"
    "{\"t\":120,\"tag\":\"Leak\",\"pool\":\"nonpaged\",\"allocs\":12,\"frees\":0,\"bytes\":1200}\n"
    "{\"t\":120,\"tag\":\"Othr\",\"pool\":\"paged\",\"allocs\":8,\"frees\":4,\"bytes\":400}\n"
    "{\"t\":180,\"tag\":\"Leak\",\"pool\":\"nonpaged\",\"allocs\":13,\"frees\":0,\"bytes\":1300}\n"
    "{\"t\":180,\"tag\":\"Othr\",\"pool\":\"paged\",\"allocs\":13,\"frees\":4,\"bytes\":900}\n";

/* Run B (another boot of the same driver): stack a1 again under the same sid.
 *  1  2000 alloc Leak a1 100 0x1000   same address as a live block of run A: must not pair or count as reuse
 *  2  (garbage line)
 *  3  2010 free  Leak -  -   0x2000   allocated in run A, not in B: unpaired */
static const char b_events[] =
    "{\"seq\":1,\"t\":2000,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":100,\"addr\":\"0x1000\",\"sid\":\"00000000000000a1\"}\n"
    "this line is damaged\n"
    "{\"seq\":3,\"t\":2010,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x2000\"}\n";

static int setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/kdh_report_XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(run_a, sizeof run_a, "%s/a", root);
    snprintf(run_b, sizeof run_b, "%s/b", root);
    snprintf(not_run, sizeof not_run, "%s/empty", root);
    mkdir(run_a, 0755);
    mkdir(run_b, 0755);
    mkdir(not_run, 0755);
    write_file(run_a, "meta.json", "{\"schema\":\"kdharvest-run/1\",\"target\":\"srv1\",\"tag\":\"Leak\",\"source\":\"live\"}");
    write_file(run_a, "modules.jsonl", a_modules);
    write_file(run_a, "stacks.jsonl", a_stacks);
    write_file(run_a, "events.jsonl", a_events);
    write_file(run_a, "pool.jsonl", a_pool);
    write_file(run_a, "gaps.jsonl", "{\"t0\":1031,\"t1\":1036.5,\"reason\":\"line-down\"}\n");
    write_file(run_b, "meta.json", "{\"schema\":\"kdharvest-run/1\",\"target\":\"srv1\",\"tag\":\"Leak\",\"source\":\"live\"}");
    write_file(run_b, "stacks.jsonl", a_stacks);
    write_file(run_b, "events.jsonl", b_events);
    return 0;
}

static int teardown(void **state)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static kdh_report_t *load(const kdh_report_opts_t *o, const char *d1, const char *d2)
{
    kdh_report_t *r;
    kdh_err_t err = {0};
    assert_int_equal(kdh_report_new(&r, o, &err), KDH_OK);
    assert_int_equal(kdh_report_add_run(r, d1, &err), KDH_OK);
    if (d2)
        assert_int_equal(kdh_report_add_run(r, d2, &err), KDH_OK);
    return r;
}

static const kdh_report_tag_summary_t *tag_of(const kdh_report_t *r, const char *tag)
{
    static kdh_report_tag_summary_t s;
    for (size_t i = 0; i < kdh_report_tag_count(r); i++) {
        assert_int_equal(kdh_report_tag_get(r, i, &s), KDH_OK);
        if (strcmp(s.tag, tag) == 0)
            return &s;
    }
    fail_msg("tag %s not in report", tag);
    return NULL;
}

static char *render(const kdh_report_t *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kdh_err_t err = {0};
    assert_int_equal(kdh_report_render(r, f, &err), KDH_OK);
    fclose(f);
    return buf;
}

static void test_single_run_numbers(void **state)
{
    kdh_report_opts_t o = {.top = 10};
    kdh_report_t *r = load(&o, run_a, NULL);
    kdh_report_totals_t t;
    kdh_report_totals(r, &t);
    assert_int_equal(t.runs, 1);
    assert_int_equal(t.events, 11);
    assert_int_equal(t.skipped_lines, 0);
    assert_int_equal(t.gaps, 1);
    assert_true(t.gap_seconds == 5.5);

    const kdh_report_tag_summary_t *s = tag_of(r, "Leak");
    assert_int_equal(s->allocs, 5);       /* seq 1,2,3,5,7 */
    assert_int_equal(s->alloc_bytes, 400); /* 100+100+50+100+50 */
    assert_int_equal(s->frees, 3);         /* seq 4,6,8 */
    assert_int_equal(s->hits, 1);
    assert_int_equal(s->paired_frees, 1);
    assert_int_equal(s->unpaired_frees, 1);
    assert_int_equal(s->addrless_frees, 1);
    assert_int_equal(s->outstanding, 3);         /* 5 - 1 paired - 1 by count */
    assert_int_equal(s->outstanding_bytes, 350); /* 400 - 50 (seq 3); seq 8 has no size */
    assert_true(s->first == 1000 && s->last == 1080);
    /* Outstanding bytes after each alloc/free: 100,200,250,200,300,300,350,350 at x=0..70 step 10.
     * Least squares: Sxy = 13750, Sxx = 4200, slope = 3.2738095... */
    assert_float_equal(s->slope, 13750.0 / 4200.0, 1e-9);
    assert_string_equal(s->trend, "steady growth");
    s = tag_of(r, "Othr");
    assert_int_equal(s->allocs, 1);
    assert_int_equal(s->paired_frees, 1);
    assert_int_equal(s->outstanding, 0);
    assert_int_equal(s->outstanding_bytes, 0);

    kdh_report_stack_summary_t st;
    assert_int_equal(kdh_report_stack_get(r, 0xa1, &st), KDH_OK);
    assert_string_equal(st.driver, "LeakDrv");
    assert_int_equal(st.allocs, 3);
    assert_int_equal(st.alloc_bytes, 300);
    assert_int_equal(st.outstanding, 3);
    assert_int_equal(st.outstanding_bytes, 300);
    assert_int_equal(st.nframes, 3);
    assert_string_equal(kdh_report_stack_frame(r, 0xa1, 0), "nt!ExAllocatePoolWithTag+0x34");
    assert_string_equal(kdh_report_stack_frame(r, 0xa1, 1), "LeakDrv+0x1069"); /* 4201 = 0x1069, no symbol */
    assert_string_equal(kdh_report_stack_frame(r, 0xa1, 2), "LeakDrv!DriverEntry+0x10");
    assert_null(kdh_report_stack_frame(r, 0xa1, 3));
    assert_int_equal(kdh_report_stack_get(r, 0xb2, &st), KDH_OK);
    assert_string_equal(st.driver, "Good"); /* no module line: name from the key's file name */
    assert_int_equal(st.allocs, 3);          /* seq 3, 7, 10 */
    assert_int_equal(st.alloc_bytes, 110);
    assert_int_equal(st.frees_paired, 2);    /* seq 4 and 11 */
    assert_int_equal(st.outstanding, 1);
    assert_int_equal(st.outstanding_bytes, 50);
    assert_int_equal(st.hits, 1);

    kdh_report_pool_summary_t p;
    assert_int_equal(kdh_report_pool_count(r), 2);
    assert_int_equal(kdh_report_pool_get(r, 0, &p), KDH_OK);
    assert_string_equal(p.tag, "Leak");
    assert_int_equal(p.first_bytes, 1000);
    assert_int_equal(p.last_bytes, 1300);
    assert_float_equal(p.slope, 100.0 / 60.0, 1e-9);
    assert_int_equal(p.steady_growth, 1);
    assert_int_equal(kdh_report_pool_get(r, 1, &p), KDH_OK);
    assert_string_equal(p.tag, "Othr");
    assert_int_equal(p.peak_bytes, 900);
    assert_float_equal(p.monotonic, 2.0 / 3.0, 1e-9);
    assert_int_equal(p.steady_growth, 0);

    char *text = render(r);
    assert_non_null(strstr(text, "  1. LeakDrv  outstanding 3 (300 bytes)  allocs 3 (300 bytes)\n"));
    assert_non_null(strstr(text, "       nt!ExAllocatePoolWithTag+0x34\n       LeakDrv+0x1069\n       LeakDrv!DriverEntry+0x10\n"));
    assert_non_null(strstr(text, "STEADY GROWTH"));
    /* seq 8 is a free without an address: the stack lists say what that means for them */
    assert_non_null(strstr(text, "Good!Work+0x20\n  (1 free without an address: a stack's outstanding"));
    kdh_report_free(r);
    free(text);
}

static void test_folded_exact(void **state)
{
    kdh_report_opts_t o = {.format = KDH_REPORT_FOLDED};
    kdh_report_t *r = load(&o, run_a, NULL);
    char *text = render(r);
    assert_string_equal(text, "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 50\n"
                              "LeakDrv!DriverEntry+0x10;LeakDrv+0x1069;nt!ExAllocatePoolWithTag+0x34 300\n");
    free(text);
    kdh_report_free(r);
    o.value = KDH_REPORT_VALUE_COUNT;
    r = load(&o, run_a, NULL);
    text = render(r);
    assert_string_equal(text, "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 3\n"
                              "LeakDrv!DriverEntry+0x10;LeakDrv+0x1069;nt!ExAllocatePoolWithTag+0x34 3\n");
    free(text);
    kdh_report_free(r);
    o.value = KDH_REPORT_VALUE_BYTES;
    r = load(&o, run_a, NULL);
    text = render(r);
    assert_string_equal(text, "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 110\n"
                              "LeakDrv!DriverEntry+0x10;LeakDrv+0x1069;nt!ExAllocatePoolWithTag+0x34 300\n");
    free(text);
    kdh_report_free(r);
}

static void test_multi_run_merge(void **state)
{
    kdh_report_opts_t o = {.top = 10};
    kdh_report_t *r = load(&o, run_a, run_b);
    kdh_report_totals_t t;
    kdh_report_totals(r, &t);
    assert_int_equal(t.runs, 2);
    assert_int_equal(t.events, 13);
    assert_int_equal(t.skipped_lines, 1);
    assert_non_null(strstr(kdh_report_skip_note(r, 0), "/b/events.jsonl:2: not JSON"));
    const kdh_report_tag_summary_t *s = tag_of(r, "Leak");
    assert_int_equal(s->allocs, 6);
    assert_int_equal(s->unpaired_frees, 2); /* B's free of 0x2000 is not paired with A's block */
    assert_int_equal(s->reused_addrs, 0);   /* B's 0x1000 is another run's address */
    kdh_report_stack_summary_t st;
    assert_int_equal(kdh_report_stack_get(r, 0xa1, &st), KDH_OK);
    assert_int_equal(st.allocs, 4);
    assert_int_equal(st.outstanding_bytes, 400);
    assert_int_equal(st.nframes, 3);
    kdh_report_free(r);

    /* --min-count 4 counts allocations + hits: in A alone a1 has 3, b2 3 + 1 hit = 4. */
    o.min_count = 4;
    o.format = KDH_REPORT_FOLDED;
    r = load(&o, run_a, NULL);
    char *text = render(r);
    assert_string_equal(text, "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 50\n");
    free(text);
    kdh_report_free(r);
    /* A and B merged: a1 reaches 4 as well. */
    r = load(&o, run_a, run_b);
    text = render(r);
    assert_string_equal(text, "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 50\n"
                              "LeakDrv!DriverEntry+0x10;LeakDrv+0x1069;nt!ExAllocatePoolWithTag+0x34 400\n");
    free(text);
    kdh_report_free(r);
}

static char *diff(kdh_report_format_t fmt)
{
    kdh_report_opts_t o = {.format = fmt};
    kdh_report_t *base = load(&o, run_a, NULL), *cur = load(&o, run_a, run_b);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kdh_err_t err = {0};
    assert_int_equal(kdh_report_render_diff(base, cur, f, &err), KDH_OK);
    fclose(f);
    kdh_report_free(base);
    kdh_report_free(cur);
    return buf;
}

static void test_diff(void **state)
{
    /* a1: 300 outstanding bytes in A, 400 in A+B: + 100. b2: 50 and 50, unchanged. */
    char *text = diff(KDH_REPORT_TEXT);
    assert_non_null(strstr(text, "\n+ 100 (400 - 300)  4 outstanding  LeakDrv  sid 00000000000000a1\n"
                                 "       nt!ExAllocatePoolWithTag+0x34\n"));
    assert_null(strstr(text, "sid 00000000000000b2"));
    assert_non_null(strstr(text, "Drivers\n+ 100 (400 - 300)  LeakDrv\n"));
    free(text);
    text = diff(KDH_REPORT_FOLDED);
    assert_string_equal(text, "LeakDrv!DriverEntry+0x10;LeakDrv+0x1069;nt!ExAllocatePoolWithTag+0x34 300 400\n"
                              "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 50 50\n");
    free(text);
    text = diff(KDH_REPORT_JSON);
    assert_non_null(strstr(text, "\"delta\": 100"));
    free(text);
}

static void test_filters(void **state)
{
    kdh_report_opts_t o = {.tag = "Othr"};
    kdh_report_t *r = load(&o, run_a, NULL);
    assert_int_equal(kdh_report_tag_count(r), 1);
    kdh_report_stack_summary_t st;
    assert_int_equal(kdh_report_stack_get(r, 0xb2, &st), KDH_OK);
    assert_int_equal(st.allocs, 1);
    kdh_report_free(r);
    /* --since 1035 --until 1075: seq 5 (alloc), 6 (unpaired free), 7 (alloc), 8 (count-only free). */
    kdh_report_opts_t w = {.since = 1035, .until = 1075};
    r = load(&w, run_a, NULL);
    const kdh_report_tag_summary_t *s = tag_of(r, "Leak");
    assert_int_equal(s->allocs, 2);
    assert_int_equal(s->frees, 2);
    assert_int_equal(s->unpaired_frees, 1);
    assert_int_equal(s->outstanding, 1);
    assert_int_equal(s->outstanding_bytes, 150);
    kdh_report_free(r);
    /* Both bounds are inclusive: --since 1040 --until 1040 keeps seq 5 alone. */
    kdh_report_opts_t one = {.since = 1040, .until = 1040};
    r = load(&one, run_a, NULL);
    s = tag_of(r, "Leak");
    assert_int_equal(s->allocs, 1);
    assert_int_equal(s->frees, 0);
    assert_int_equal(s->outstanding_bytes, 100);
    assert_int_equal(kdh_report_tag_count(r), 1);
    kdh_report_free(r);
    /* A window after every event: no tags at all, and nothing outstanding. */
    kdh_report_opts_t late = {.since = 5000};
    r = load(&late, run_a, NULL);
    assert_int_equal(kdh_report_tag_count(r), 0);
    kdh_report_free(r);
    /* --min-count 4 also narrows the driver roll-up: in A, a1 (LeakDrv) has 3, b2 (Good) 3 + 1 hit. */
    kdh_report_opts_t mc = {.min_count = 4, .by = KDH_REPORT_BY_DRIVER};
    r = load(&mc, run_a, NULL);
    char *text = render(r);
    assert_non_null(strstr(text, "\nGood "));
    assert_null(strstr(text, "\nLeakDrv "));
    free(text);
    kdh_report_free(r);
}

static void test_owner_json_csv(void **state)
{
    const char pt_text[] = "Leak - LeakDrv.sys - Test leak tag\nOth* - other.sys - Others\n";
    kdh_pooltag_t *pt;
    kdh_err_t err = {0};
    assert_int_equal(kdh_pooltag_parse(&pt, pt_text, sizeof pt_text - 1, &err), KDH_OK);
    kdh_report_opts_t o = {.format = KDH_REPORT_JSON, .pooltag = pt, .top = 1};
    kdh_report_t *r = load(&o, run_a, NULL);
    assert_string_equal(tag_of(r, "Leak")->owner, "LeakDrv.sys - Test leak tag");
    assert_string_equal(tag_of(r, "Othr")->owner, "other.sys - Others");
    char *text = render(r);
    assert_non_null(strstr(text, "\"owner\": \"LeakDrv.sys - Test leak tag\""));
    assert_non_null(strstr(text, "\"sid\": \"00000000000000a1\""));
    assert_null(strstr(text, "\"sid\": \"00000000000000b2\"")); /* --top 1 */
    free(text);
    kdh_report_free(r);
    kdh_report_opts_t c = {.format = KDH_REPORT_CSV, .by = KDH_REPORT_BY_DRIVER};
    r = load(&c, run_a, NULL);
    text = render(r);
    assert_string_equal(text, "driver,stacks,allocs,alloc_bytes,outstanding,outstanding_bytes,ranked_by\n"
                              "LeakDrv,1,3,300,3,300,outstanding_bytes\n"
                              "Good,1,3,110,1,50,outstanding_bytes\n");
    free(text);
    kdh_report_free(r);
    kdh_pooltag_free(pt);
}

static void test_bad_input(void **state)
{
    kdh_report_t *r;
    kdh_err_t err = {0};
    assert_int_equal(kdh_report_new(&r, NULL, &err), KDH_OK);
    assert_int_equal(kdh_report_add_run(r, not_run, &err), KDH_ENOTFOUND);
    assert_non_null(strstr(err.msg, "not a run directory"));
    assert_int_equal(kdh_report_add_run(r, "/nonexistent/run", &err), KDH_ENOTFOUND);
    /* A run whose stacks table is missing still reports its events by stack id. */
    char d[160];
    snprintf(d, sizeof d, "%s/nostacks", root);
    mkdir(d, 0755);
    write_file(d, "events.jsonl", a_events);
    assert_int_equal(kdh_report_add_run(r, d, &err), KDH_OK);
    assert_non_null(strstr(kdh_report_skip_note(r, 0), "stacks.jsonl:0: missing"));
    kdh_report_stack_summary_t st;
    assert_int_equal(kdh_report_stack_get(r, 0xa1, &st), KDH_OK);
    assert_int_equal(st.allocs, 3);
    assert_int_equal(st.nframes, 0);
    kdh_report_totals_t t;
    kdh_report_totals(r, &t);
    assert_int_equal(t.runs, 1);
    kdh_report_free(r);
}

static void series(kdh_report_series_t *s, const int64_t *y, size_t n, double step)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < n; i++)
        kdh_report_series_add(s, 5000 + step * (double)i, y[i]);
}

static void test_trend_rule(void **state)
{
    kdh_report_series_t s;
    int64_t leak[100];
    for (int i = 0; i < 100; i++) /* 100 points over 990 s: buckets are merged, shape kept */
        leak[i] = 64 * i + (i % 2 ? 0 : 32);
    series(&s, leak, 100, 10);
    assert_string_equal(kdh_report_series_trend(&s), "steady growth");
    const int64_t wave[] = {100, 300, 100, 300, 100, 300, 120};
    series(&s, wave, 7, 10);
    assert_string_equal(kdh_report_series_trend(&s), "rises and falls");
    const int64_t flat[] = {1000, 1010, 1000, 1020, 1005};
    series(&s, flat, 5, 10);
    assert_string_equal(kdh_report_series_trend(&s), "flat");
    const int64_t down[] = {400, 300, 200, 100};
    series(&s, down, 4, 10);
    assert_string_equal(kdh_report_series_trend(&s), "shrinking");
    assert_float_equal(kdh_report_series_slope(&s), -10.0, 1e-9);
    series(&s, down, 2, 10);
    assert_string_equal(kdh_report_series_trend(&s), "too short");
    /* Rises then holds after a big release: ends far below its peak. */
    const int64_t spike[] = {100, 200, 300, 400, 500, 600, 150, 160};
    series(&s, spike, 8, 10);
    assert_string_equal(kdh_report_series_trend(&s), "rises and falls");
}

/* Pool samples across a reboot. 'Leak' grows by 1000 bytes every 10 s for 8 samples on boot 1; the
 * target reboots and it grows again from 100 by 100 each sample on boot 2. Joined (boot 2 shifted
 * by 8000 - 100): 1000..8000, 8000, 8100, 8200: every step non-decreasing, growing. Read without the
 * boots the reboot's drop makes the last quarter's floor fall (100 < 7000). 'Bsy0' swings 500/900
 * on boot 1 and 100/500 on boot 2: joined 500 900 ... 900 | 900 1300 900: its floor rises only in
 * the last quarter, not growing. */
static void test_pool_across_reboot(void **state)
{
    (void)state;
    char dir[600], line[200], *pool = NULL;
    size_t plen = 0;
    snprintf(dir, sizeof dir, "%s/reboot", root);
    mkdir(dir, 0755);
    FILE *f = open_memstream(&pool, &plen);
    static const int bsy[] = {500, 900, 500, 900, 500, 900, 500, 900, 100, 500, 100};
    for (int i = 0; i < 11; i++) {
        int boot = i < 8 ? 1 : 2, leak = i < 8 ? 1000 * (i + 1) : 100 * (i - 7);
        snprintf(line, sizeof line, "{\"t\":%d,\"boot\":%d,\"tag\":\"Leak\",\"pool\":\"nonpaged\",\"allocs\":%d,\"frees\":0,\"bytes\":%d}\n",
                 10 * i, boot, leak / 100, leak);
        fputs(line, f);
        snprintf(line, sizeof line, "{\"t\":%d,\"boot\":%d,\"tag\":\"Bsy0\",\"pool\":\"nonpaged\",\"allocs\":%d,\"frees\":%d,\"bytes\":%d}\n",
                 10 * i, boot, 100 * (i + 1), 100 * (i + 1) - bsy[i] / 100, bsy[i]);
        fputs(line, f);
    }
    fclose(f);
    write_file(dir, "meta.json", "{\"schema\":\"kdharvest-run/1\",\"target\":\"srv1\",\"source\":\"live\",\"mode\":\"pool\"}");
    write_file(dir, "pool.jsonl", pool);
    free(pool);
    kdh_report_opts_t o = {.top = 10};
    kdh_report_t *r = load(&o, dir, NULL);
    assert_int_equal(kdh_report_pool_count(r), 2);
    kdh_report_pool_summary_t p;
    int seen = 0;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(kdh_report_pool_get(r, i, &p), KDH_OK);
        assert_int_equal(p.samples, 11);
        assert_int_equal(p.boots, 2);
        if (strcmp(p.tag, "Leak") == 0) {
            seen |= 1;
            assert_int_equal(p.first_bytes, 1000); /* as read */
            assert_int_equal(p.last_bytes, 300);
            assert_int_equal(p.peak_bytes, 8000);
            assert_float_equal(p.monotonic, 1.0, 1e-12);
            assert_true(p.slope > 0);
            assert_int_equal(p.steady_growth, 1);
        } else {
            seen |= 2;
            assert_string_equal(p.tag, "Bsy0");
            assert_int_equal(p.steady_growth, 0);
        }
    }
    assert_int_equal(seen, 3);
    char *text = render(r);
    assert_non_null(strstr(text, "(2 series span reboots"));
    free(text);
    kdh_report_free(r);
    /* json: the joined trend and the boots per series */
    kdh_report_opts_t oj = {.top = 10, .format = KDH_REPORT_JSON};
    r = load(&oj, dir, NULL);
    text = render(r);
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    assert_non_null(doc);
    json_t *pools = json_object_get(doc, "pool");
    assert_int_equal(json_array_size(pools), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(pools, i);
        assert_int_equal(json_integer_value(json_object_get(e, "boots")), 2);
        int leak = strcmp(json_string_value(json_object_get(e, "tag")), "Leak") == 0;
        assert_int_equal(json_is_true(json_object_get(e, "steady_growth")), leak);
    }
    json_decref(doc);
    free(text);
    kdh_report_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_run_numbers), cmocka_unit_test(test_folded_exact),
        cmocka_unit_test(test_multi_run_merge),    cmocka_unit_test(test_diff),
        cmocka_unit_test(test_filters),            cmocka_unit_test(test_owner_json_csv),
        cmocka_unit_test(test_bad_input),          cmocka_unit_test(test_trend_rule),
        cmocka_unit_test(test_pool_across_reboot),
    };
    if (getenv("KDH_KEEP_RUNS")) { /* leave the hand-made runs on disk for manual inspection */
        setup(NULL);
        printf("%s\n", root);
        return 0;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
