/* test_report_measure.c: what the report ranks by and how it tells growth, in every format.
 * - One growth rule for events and pool samples, on series made by hand: a steady leak, a leak
 *   under load, a sawtooth under load, a step, noise, too few points.
 * - Events without sizes (hittag without --pair): every format ranks stacks and drivers by
 *   outstanding allocations, says so, and the trend follows the count.
 * - Events with sizes and addresses: the first stack is the one with most outstanding bytes and
 *   the first driver the one with most outstanding bytes over its stacks, counted by hand below.
 * Every expected value is worked out in the comments from the lines written here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>

#include "kdh/report.h"

static char root[64];
static char run_nosize[128], run_sized[128], run_step[128];

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char meta[] = "{\"schema\":\"kdharvest-run/1\",\"target\":\"t\",\"tag\":\"Leak\",\"source\":\"live\"}";

/* Run "nosize": a hittag harvest that captured addresses but no sizes.
 *  X (sid 11, XDrv): allocs at t 100,110,140,170; frees at 120,150,180 pair with the first three
 *                    -> 4 allocations, 1 outstanding
 *  Y (sid 22, YDrv): allocs at t 130,160,190, never freed -> 3 allocations, 3 outstanding
 * By allocations X leads; by outstanding allocations Y leads (stack and driver).
 * Tag outstanding count after each event: 1,2,1,2,3,2,3,4,3,4 at t = 100..190 (step 10). */
static const char nosize_events[] =
    "{\"seq\":1,\"t\":100,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"addr\":\"0x100\",\"sid\":\"0000000000000011\"}\n"
    "{\"seq\":2,\"t\":110,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"addr\":\"0x200\",\"sid\":\"0000000000000011\"}\n"
    "{\"seq\":3,\"t\":120,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x100\"}\n"
    "{\"seq\":4,\"t\":130,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"addr\":\"0x300\",\"sid\":\"0000000000000022\"}\n"
    "{\"seq\":5,\"t\":140,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"addr\":\"0x400\",\"sid\":\"0000000000000011\"}\n"
    "{\"seq\":6,\"t\":150,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x200\"}\n"
    "{\"seq\":7,\"t\":160,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"addr\":\"0x500\",\"sid\":\"0000000000000022\"}\n"
    "{\"seq\":8,\"t\":170,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"addr\":\"0x600\",\"sid\":\"0000000000000011\"}\n"
    "{\"seq\":9,\"t\":180,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x400\"}\n"
    "{\"seq\":10,\"t\":190,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"addr\":\"0x700\",\"sid\":\"0000000000000022\"}\n";
static const char nosize_stacks[] =
    "{\"sid\":\"0000000000000011\",\"frames\":[{\"sym\":\"nt!ExAllocatePoolWithTag+0x34\"},{\"sym\":\"XDrv!Work+0x10\"}]}\n"
    "{\"sid\":\"0000000000000022\",\"frames\":[{\"sym\":\"nt!ExAllocatePoolWithTag+0x34\"},{\"sym\":\"YDrv!Queue+0x20\"}]}\n";

/* Run "sized": sizes and addresses.
 *  P (sid 31, ADrv): 5 x 10 bytes, never freed        -> 5 allocs,  50 bytes, outstanding 5 /  50 B
 *  Q (sid 32, ADrv): 2 x 100 bytes, the first freed   -> 2 allocs, 200 bytes, outstanding 1 / 100 B
 *  R (sid 33, RDrv): 3 x 40 bytes, never freed        -> 3 allocs, 120 bytes, outstanding 3 / 120 B
 * Outstanding bytes: R 120 > Q 100 > P 50. Allocations: P 5 > R 3 > Q 2. Allocated bytes:
 * Q 200 > R 120 > P 50. Drivers by outstanding bytes: ADrv 50 + 100 = 150 > RDrv 120. */
static const char sized_events[] =
    "{\"seq\":1,\"t\":10,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":10,\"addr\":\"0x1\",\"sid\":\"0000000000000031\"}\n"
    "{\"seq\":2,\"t\":20,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":100,\"addr\":\"0x2\",\"sid\":\"0000000000000032\"}\n"
    "{\"seq\":3,\"t\":30,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":40,\"addr\":\"0x3\",\"sid\":\"0000000000000033\"}\n"
    "{\"seq\":4,\"t\":40,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":10,\"addr\":\"0x4\",\"sid\":\"0000000000000031\"}\n"
    "{\"seq\":5,\"t\":50,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x2\"}\n"
    "{\"seq\":6,\"t\":60,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":10,\"addr\":\"0x5\",\"sid\":\"0000000000000031\"}\n"
    "{\"seq\":7,\"t\":70,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":40,\"addr\":\"0x6\",\"sid\":\"0000000000000033\"}\n"
    "{\"seq\":8,\"t\":80,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":100,\"addr\":\"0x7\",\"sid\":\"0000000000000032\"}\n"
    "{\"seq\":9,\"t\":90,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":10,\"addr\":\"0x8\",\"sid\":\"0000000000000031\"}\n"
    "{\"seq\":10,\"t\":100,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":40,\"addr\":\"0x9\",\"sid\":\"0000000000000033\"}\n"
    "{\"seq\":11,\"t\":110,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":10,\"addr\":\"0xa\",\"sid\":\"0000000000000031\"}\n";
static const char sized_stacks[] =
    "{\"sid\":\"0000000000000031\",\"frames\":[{\"sym\":\"nt!ExAllocatePoolWithTag+0x34\"},{\"sym\":\"ADrv!Small+0x1\"}]}\n"
    "{\"sid\":\"0000000000000032\",\"frames\":[{\"sym\":\"nt!ExAllocatePoolWithTag+0x34\"},{\"sym\":\"ADrv!Big+0x2\"}]}\n"
    "{\"sid\":\"0000000000000033\",\"frames\":[{\"sym\":\"nt!ExAllocatePoolWithTag+0x34\"},{\"sym\":\"RDrv!Mid+0x3\"}]}\n";

/* Run "step": pool samples (and the same shape in events) that hold 1000 bytes for the first
 * half and 2000 for the second: a cache filled once, not a leak. Samples every 10 s, t = 0..150.
 * The old pool rule (rising fit, every step non-decreasing, last > first) called it steady growth. */
static void write_step_run(const char *dir)
{
    char pool[4096], ev[8192];
    size_t pn = 0, en = 0;
    for (int i = 0; i < 16; i++) {
        int bytes = i < 8 ? 1000 : 2000;
        pn += (size_t)snprintf(pool + pn, sizeof pool - pn,
                               "{\"t\":%d,\"tag\":\"Step\",\"pool\":\"nonpaged\",\"allocs\":1,\"frees\":0,\"bytes\":%d}\n",
                               i * 10, bytes);
    }
    /* events: one 1000-byte block at t=0, one more at t=80 (the step), then nothing but a freed
     * 10-byte block every 10 s so the series has points: 1010,1000, ... 2010,2000 */
    int seq = 1;
    en += (size_t)snprintf(ev + en, sizeof ev - en,
                           "{\"seq\":%d,\"t\":0,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Step\",\"size\":1000,\"addr\":\"0xf000\"}\n", seq++);
    for (int i = 1; i < 16; i++) {
        if (i == 8)
            en += (size_t)snprintf(ev + en, sizeof ev - en,
                                   "{\"seq\":%d,\"t\":80,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Step\",\"size\":1000,\"addr\":\"0xe000\"}\n",
                                   seq++);
        en += (size_t)snprintf(ev + en, sizeof ev - en,
                               "{\"seq\":%d,\"t\":%d,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Step\",\"size\":10,\"addr\":\"0x%x\"}\n"
                               "{\"seq\":%d,\"t\":%d.5,\"boot\":1,\"kind\":\"free\",\"tag\":\"Step\",\"addr\":\"0x%x\"}\n",
                               seq, i * 10, i, seq + 1, i * 10, i);
        seq += 2;
    }
    write_file(dir, "meta.json", meta);
    write_file(dir, "stacks.jsonl", "");
    write_file(dir, "events.jsonl", ev);
    write_file(dir, "pool.jsonl", pool);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/kdh_measure_XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(run_nosize, sizeof run_nosize, "%s/nosize", root);
    snprintf(run_sized, sizeof run_sized, "%s/sized", root);
    snprintf(run_step, sizeof run_step, "%s/step", root);
    mkdir(run_nosize, 0755);
    mkdir(run_sized, 0755);
    mkdir(run_step, 0755);
    write_file(run_nosize, "meta.json", meta);
    write_file(run_nosize, "stacks.jsonl", nosize_stacks);
    write_file(run_nosize, "events.jsonl", nosize_events);
    write_file(run_sized, "meta.json", meta);
    write_file(run_sized, "stacks.jsonl", sized_stacks);
    write_file(run_sized, "events.jsonl", sized_events);
    write_step_run(run_step);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
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

static char *render_as(const char *d1, const char *d2, kdh_report_format_t fmt, kdh_report_by_t by, unsigned top)
{
    kdh_report_opts_t o = {.format = fmt, .by = by, .top = top};
    kdh_report_t *r = load(&o, d1, d2);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kdh_err_t err = {0};
    assert_int_equal(kdh_report_render(r, f, &err), KDH_OK);
    fclose(f);
    kdh_report_free(r);
    return buf;
}

static json_t *render_json(const char *d1, const char *d2, kdh_report_by_t by, unsigned top)
{
    char *text = render_as(d1, d2, KDH_REPORT_JSON, by, top);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("report JSON does not parse: %s", je.text);
    free(text);
    return j;
}

static const char *jstr(json_t *o, const char *path1, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(o, path1), i), key));
}

/* ---- the growth rule on series made by hand ---- */

static const char *trend_of(const int64_t *y, size_t n, double step)
{
    static kdh_report_series_t s;
    memset(&s, 0, sizeof s);
    for (size_t i = 0; i < n; i++)
        kdh_report_series_add(&s, 5000 + step * (double)i, y[i]);
    return kdh_report_series_trend(&s);
}

static void test_growth_rule_shapes(void **state)
{
    (void)state;
    int64_t y[200];
    /* A steady leak: +64 per point with a little jitter, 200 points 5 s apart. */
    for (int i = 0; i < 200; i++)
        y[i] = 1000 + 64 * i + (i % 3) * 20;
    assert_string_equal(trend_of(y, 200, 5), "steady growth");
    /* A leak under load: swings of 300 on a floor rising 10 per point (drift 1990 over the run).
     * Half of the bucket steps go down, so a share-of-rises rule calls it load; the floor rises. */
    for (int i = 0; i < 200; i++)
        y[i] = 1000 + 10 * i + (i % 10) * 30;
    assert_string_equal(trend_of(y, 200, 5), "steady growth");
    /* A sawtooth under load: climbs 10 steps of 100, releases everything, again and again. It can
     * end at its peak; its floor never moves. */
    for (int i = 0; i < 200; i++)
        y[i] = 1000 + (i % 10) * 100;
    y[199] = 1900;
    assert_string_equal(trend_of(y, 200, 5), "rises and falls");
    /* A step: flat at 1000, one jump to 3000 a third of the way, flat after (monotonic, ends at its
     * peak, rising fit: the old rule's "steady growth"). */
    for (int i = 0; i < 200; i++)
        y[i] = i < 66 ? 1000 : 3000;
    assert_string_equal(trend_of(y, 200, 5), "rises and falls");
    /* Noise: +-20% around 1000 from a fixed linear congruential sequence. */
    uint32_t x = 12345;
    for (int i = 0; i < 200; i++) {
        x = x * 1103515245u + 12345u;
        y[i] = 800 + (int64_t)((x >> 16) % 401);
    }
    assert_string_not_equal(trend_of(y, 200, 5), "steady growth");
    /* Small noise (within 5% of the peak): flat. */
    for (int i = 0; i < 200; i++)
        y[i] = 1000 + (i * 7) % 40;
    assert_string_equal(trend_of(y, 200, 5), "flat");
    /* Too few points: two, or three within one second (one bucket). */
    const int64_t two[] = {100, 200};
    assert_string_equal(trend_of(two, 2, 10), "too short");
    const int64_t three[] = {100, 200, 300};
    assert_string_equal(trend_of(three, 3, 0.1), "too short");
    /* Shrinking: a release that goes on. */
    for (int i = 0; i < 50; i++)
        y[i] = 5000 - 80 * i;
    assert_string_equal(trend_of(y, 50, 5), "shrinking");
}

/* Pool samples and events follow the same rule: the step run is not growth in either. */
static void test_pool_and_events_share_the_rule(void **state)
{
    (void)state;
    kdh_report_opts_t o = {.top = 10};
    kdh_report_t *r = load(&o, run_step, NULL);
    kdh_report_pool_summary_t p;
    assert_int_equal(kdh_report_pool_count(r), 1);
    assert_int_equal(kdh_report_pool_get(r, 0, &p), KDH_OK);
    assert_int_equal(p.samples, 16);
    assert_int_equal(p.first_bytes, 1000);
    assert_int_equal(p.last_bytes, 2000);
    assert_string_equal(p.trend, "rises and falls");
    assert_int_equal(p.steady_growth, 0);
    kdh_report_tag_summary_t t;
    assert_int_equal(kdh_report_tag_count(r), 1);
    assert_int_equal(kdh_report_tag_get(r, 0, &t), KDH_OK);
    assert_int_equal(t.by_count, 0);
    assert_int_equal(t.outstanding_bytes, 2000);
    assert_string_equal(t.trend, p.trend);
    kdh_report_free(r);
}

/* ---- no sizes: every format ranks by outstanding allocations and says so ---- */

static void test_no_sizes_every_format(void **state)
{
    (void)state;
    kdh_report_opts_t o = {.top = 10};
    kdh_report_t *r = load(&o, run_nosize, NULL);
    assert_int_equal(kdh_report_sizes_known(r), 0);
    kdh_report_totals_t tot;
    kdh_report_totals(r, &tot);
    assert_int_equal(tot.allocs, 7);
    assert_int_equal(tot.allocs_sized, 0);
    kdh_report_tag_summary_t t;
    assert_int_equal(kdh_report_tag_get(r, 0, &t), KDH_OK);
    assert_int_equal(t.by_count, 1);
    assert_int_equal(t.outstanding, 4);
    /* Count series 1,2,1,2,3,2,3,4,3,4 (t 100..190): 46 buckets of 2 s, quarter floors 1,1,2,3,
     * range 3: two rises of 1 > 0.3, none falls, 3 - 1 = 2 >= 1.5 -> growth. On bytes (all 0) it
     * would be "flat". */
    assert_string_equal(t.trend, "steady growth");
    kdh_report_free(r);

    char *text = render_as(run_nosize, NULL, KDH_REPORT_TEXT, KDH_REPORT_BY_ALL, 10);
    assert_non_null(strstr(text, "Tags (trend of outstanding allocations)\n"));
    assert_non_null(strstr(text, "\nTop stacks by outstanding allocations (7 of 7 allocations have no size: ranked by "
                                 "count)\n  1. YDrv  outstanding 3 (0 bytes)  allocs 3 (0 bytes)\n"));
    const char *drv = strstr(text, "\nDrivers by outstanding allocations (");
    assert_non_null(drv);
    drv = strchr(drv + 1, '\n');
    drv = strchr(drv + 1, '\n'); /* past the column heading */
    assert_non_null(drv);
    assert_memory_equal(drv + 1, "YDrv ", 5);
    free(text);

    json_t *j = render_json(run_nosize, NULL, KDH_REPORT_BY_ALL, 10);
    json_t *m = json_object_get(j, "measure");
    assert_string_equal(json_string_value(json_object_get(m, "ranked_by")), "outstanding_count");
    assert_string_equal(json_string_value(json_object_get(m, "trend_of")), "outstanding_count");
    assert_true(json_is_false(json_object_get(m, "sizes_known")));
    assert_string_equal(jstr(j, "stacks", 0, "sid"), "0000000000000022");
    assert_string_equal(jstr(j, "drivers", 0, "driver"), "YDrv");
    assert_string_equal(jstr(j, "tags", 0, "trend"), "steady growth");
    assert_string_equal(jstr(j, "tags", 0, "trend_of"), "outstanding_count");
    json_decref(j);

    text = render_as(run_nosize, NULL, KDH_REPORT_CSV, KDH_REPORT_BY_STACK, 10);
    assert_memory_equal(text, "sid,", 4);
    assert_non_null(strstr(text, ",ranked_by\n0000000000000022,YDrv,3,0,3,0,0,0,"));
    assert_non_null(strstr(text, ",outstanding_count\n"));
    free(text);
    text = render_as(run_nosize, NULL, KDH_REPORT_CSV, KDH_REPORT_BY_DRIVER, 10);
    assert_string_equal(text, "driver,stacks,allocs,alloc_bytes,outstanding,outstanding_bytes,ranked_by\n"
                              "YDrv,1,3,0,3,0,outstanding_count\n"
                              "XDrv,1,4,0,1,0,outstanding_count\n");
    free(text);
    text = render_as(run_nosize, NULL, KDH_REPORT_CSV, KDH_REPORT_BY_TAG, 10);
    assert_non_null(strstr(text, ",trend,slope_per_s,trend_of\nLeak,,7,3,0,0,4,0,"));
    assert_non_null(strstr(text, ",steady growth,"));
    assert_non_null(strstr(text, ",outstanding_count\n"));
    free(text);

    text = render_as(run_nosize, NULL, KDH_REPORT_HTML, KDH_REPORT_BY_ALL, 10);
    assert_non_null(strstr(text, "<h2>Top stacks by outstanding allocations</h2>\n<p>1. <b>YDrv</b> outstanding 3"));
    assert_non_null(strstr(text, "<h2>Drivers by outstanding allocations</h2>"));
    assert_non_null(strstr(text, "<h2>Flame graph of outstanding allocations</h2>"));
    assert_non_null(strstr(text, "<h2>Outstanding allocations over time</h2>"));
    assert_non_null(strstr(text, "7 of 7 allocations have no size"));
    assert_non_null(strstr(text, "\"unit\":\"allocs\""));
    free(text);

    /* folded: outstanding allocations per stack (sorted by text) */
    text = render_as(run_nosize, NULL, KDH_REPORT_FOLDED, KDH_REPORT_BY_ALL, 10);
    assert_string_equal(text, "XDrv!Work+0x10;nt!ExAllocatePoolWithTag+0x34 1\n"
                              "YDrv!Queue+0x20;nt!ExAllocatePoolWithTag+0x34 3\n");
    free(text);
}

/* A run with sizes merged with one without: bytes would leave the second run's blocks out, so
 * the report counts (P 5 + Y 3 outstanding ... P leads with 5). */
static void test_mixed_sizes_count(void **state)
{
    (void)state;
    json_t *j = render_json(run_sized, run_nosize, KDH_REPORT_BY_ALL, 10);
    json_t *m = json_object_get(j, "measure");
    assert_string_equal(json_string_value(json_object_get(m, "ranked_by")), "outstanding_count");
    assert_int_equal(json_integer_value(json_object_get(m, "allocs")), 17);
    assert_int_equal(json_integer_value(json_object_get(m, "allocs_with_size")), 10);
    /* outstanding counts: P 5, R 3, Y 3, Q 1, X 1; R and Y tie at 3 (R has 3 allocs, Y 3: sid 22 < 33) */
    assert_string_equal(jstr(j, "stacks", 0, "sid"), "0000000000000031");
    assert_string_equal(jstr(j, "stacks", 1, "sid"), "0000000000000022");
    assert_string_equal(jstr(j, "stacks", 2, "sid"), "0000000000000033");
    /* drivers: ADrv 5 + 1 = 6, RDrv 3, YDrv 3, XDrv 1 */
    assert_string_equal(jstr(j, "drivers", 0, "driver"), "ADrv");
    json_decref(j);
}

/* A --pair run whose last allocation was logged at the detach without a size: 100 blocks of 100
 * bytes on Q (10000 B outstanding), 120 of 10 bytes on P (1200 B) and one more on P without a
 * size. 1 of 221 unsized still ranks by bytes (Q first; by count P would lead with 121); 5 of 225
 * unsized (more than one per run plus 1 in 100) ranks by count (P first). */
static void write_nearly_sized(const char *dir, int unsized)
{
    static char ev[64 * 1024];
    size_t n = 0;
    int seq = 1;
    for (int i = 0; i < 100; i++, seq++)
        n += (size_t)snprintf(ev + n, sizeof ev - n,
                              "{\"seq\":%d,\"t\":%d,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":100,"
                              "\"addr\":\"0x%x\",\"sid\":\"0000000000000032\"}\n",
                              seq, seq, 0x10000 + i);
    for (int i = 0; i < 120; i++, seq++)
        n += (size_t)snprintf(ev + n, sizeof ev - n,
                              "{\"seq\":%d,\"t\":%d,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":10,"
                              "\"addr\":\"0x%x\",\"sid\":\"0000000000000031\"}\n",
                              seq, seq, 0x20000 + i);
    for (int i = 0; i < unsized; i++, seq++)
        n += (size_t)snprintf(ev + n, sizeof ev - n,
                              "{\"seq\":%d,\"t\":%d,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\","
                              "\"sid\":\"0000000000000031\"}\n",
                              seq, seq);
    mkdir(dir, 0755);
    write_file(dir, "meta.json", meta);
    write_file(dir, "stacks.jsonl", sized_stacks);
    write_file(dir, "events.jsonl", ev);
}

static void test_nearly_all_sized_bytes(void **state)
{
    (void)state;
    char one[160], three[160];
    snprintf(one, sizeof one, "%s/nearly1", root);
    snprintf(three, sizeof three, "%s/nearly5", root);
    write_nearly_sized(one, 1);
    write_nearly_sized(three, 5);
    json_t *j = render_json(one, NULL, KDH_REPORT_BY_ALL, 10);
    json_t *m = json_object_get(j, "measure");
    assert_string_equal(json_string_value(json_object_get(m, "ranked_by")), "outstanding_bytes");
    assert_string_equal(jstr(j, "stacks", 0, "sid"), "0000000000000032");
    json_decref(j);
    char *text = render_as(one, NULL, KDH_REPORT_TEXT, KDH_REPORT_BY_ALL, 10);
    assert_non_null(strstr(text, "Top stacks by outstanding bytes (1 of 221 allocations have no size and add no bytes)"));
    free(text);
    text = render_as(one, NULL, KDH_REPORT_HTML, KDH_REPORT_BY_ALL, 10);
    assert_non_null(strstr(text, "<p class=warn id=measure>1 of 221 allocations have no size and add no bytes.</p>"));
    assert_non_null(strstr(text, "<h2>Top stacks by outstanding bytes</h2>"));
    free(text);
    j = render_json(three, NULL, KDH_REPORT_BY_ALL, 10);
    m = json_object_get(j, "measure");
    assert_string_equal(json_string_value(json_object_get(m, "ranked_by")), "outstanding_count");
    assert_string_equal(jstr(j, "stacks", 0, "sid"), "0000000000000031");
    json_decref(j);
}

/* ---- sizes known: the first stack and driver by outstanding bytes, counted by hand ---- */

static void test_outstanding_bytes_by_hand(void **state)
{
    (void)state;
    kdh_report_opts_t o = {.top = 10};
    kdh_report_t *r = load(&o, run_sized, NULL);
    assert_int_equal(kdh_report_sizes_known(r), 1);
    kdh_report_stack_summary_t s;
    assert_int_equal(kdh_report_stack_get(r, 0x33, &s), KDH_OK);
    assert_int_equal(s.outstanding_bytes, 120);
    assert_int_equal(kdh_report_stack_get(r, 0x32, &s), KDH_OK);
    assert_int_equal(s.outstanding_bytes, 100);
    assert_int_equal(s.alloc_bytes, 200);
    kdh_report_free(r);

    char *text = render_as(run_sized, NULL, KDH_REPORT_TEXT, KDH_REPORT_BY_ALL, 10);
    assert_non_null(strstr(text, "\nTop stacks by outstanding bytes\n  1. RDrv  outstanding 3 (120 bytes)  allocs 3 (120 bytes)\n"));
    assert_non_null(strstr(text, "\nTop stacks by allocation count\n  1. ADrv  outstanding 5 (50 bytes)  allocs 5 (50 bytes)\n"));
    assert_non_null(strstr(text, "\nTop stacks by allocated bytes\n  1. ADrv  outstanding 1 (100 bytes)  allocs 2 (200 bytes)  freed 1\n"));
    const char *drv = strstr(text, "\nDrivers by outstanding bytes (");
    assert_non_null(drv);
    drv = strchr(strchr(drv + 1, '\n') + 1, '\n'); /* past the title and the column heading */
    char name[32];
    unsigned long long stacks, allocs, bytes, out, out_bytes;
    assert_int_equal(sscanf(drv + 1, "%31s %llu %llu %llu %llu %llu", name, &stacks, &allocs, &bytes, &out, &out_bytes), 6);
    assert_string_equal(name, "ADrv");
    assert_true(stacks == 2 && allocs == 7 && bytes == 250 && out == 6 && out_bytes == 150);
    free(text);

    json_t *j = render_json(run_sized, NULL, KDH_REPORT_BY_ALL, 10);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "measure"), "ranked_by")),
                        "outstanding_bytes");
    assert_string_equal(jstr(j, "stacks", 0, "sid"), "0000000000000033");
    assert_string_equal(jstr(j, "stacks", 1, "sid"), "0000000000000032");
    assert_string_equal(jstr(j, "stacks", 2, "sid"), "0000000000000031");
    assert_string_equal(jstr(j, "drivers", 0, "driver"), "ADrv");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(j, "drivers"), 0),
                                                        "outstanding_bytes")),
                     150);
    json_decref(j);

    text = render_as(run_sized, NULL, KDH_REPORT_CSV, KDH_REPORT_BY_STACK, 10);
    assert_non_null(strstr(text, ",ranked_by\n0000000000000033,RDrv,3,120,3,120,0,0,"));
    free(text);
    text = render_as(run_sized, NULL, KDH_REPORT_HTML, KDH_REPORT_BY_ALL, 10);
    assert_non_null(strstr(text, "<h2>Top stacks by outstanding bytes</h2>\n<p>1. <b>RDrv</b> outstanding 3 (120 bytes)"));
    assert_null(strstr(text, "have no size"));
    free(text);
}

/* --top and --by hold in json and csv as in text. */
static void test_top_and_by_every_format(void **state)
{
    (void)state;
    json_t *j = render_json(run_sized, NULL, KDH_REPORT_BY_ALL, 1);
    assert_int_equal(json_array_size(json_object_get(j, "stacks")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "drivers")), 1);
    json_decref(j);
    j = render_json(run_sized, NULL, KDH_REPORT_BY_DRIVER, 10);
    assert_int_equal(json_array_size(json_object_get(j, "stacks")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "drivers")), 2);
    json_decref(j);
    j = render_json(run_sized, NULL, KDH_REPORT_BY_TAG, 10);
    assert_int_equal(json_array_size(json_object_get(j, "stacks")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "drivers")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "tags")), 1);
    json_decref(j);
    char *text = render_as(run_sized, NULL, KDH_REPORT_CSV, KDH_REPORT_BY_DRIVER, 1);
    assert_string_equal(text, "driver,stacks,allocs,alloc_bytes,outstanding,outstanding_bytes,ranked_by\n"
                              "ADrv,2,7,250,6,150,outstanding_bytes\n");
    free(text);
    text = render_as(run_sized, NULL, KDH_REPORT_HTML, KDH_REPORT_BY_DRIVER, 10);
    assert_null(strstr(text, "<h2>Top stacks"));
    assert_non_null(strstr(text, "<h2>Drivers by outstanding bytes</h2>"));
    free(text);
}

/* --diff without sizes compares outstanding allocations: the nosize run against itself read twice
 * (same sids: Y 3 -> 6, X 1 -> 2), text, json and folded. */
static char *diff_as(kdh_report_format_t fmt)
{
    kdh_report_opts_t o = {.format = fmt, .top = 10};
    kdh_report_t *base = load(&o, run_nosize, NULL), *cur = load(&o, run_nosize, run_nosize);
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

static void test_diff_without_sizes(void **state)
{
    (void)state;
    char *text = diff_as(KDH_REPORT_TEXT);
    assert_non_null(strstr(text, "compared by outstanding_count\n"));
    assert_non_null(strstr(text, "largest growth first\n+ 3 (6 - 3)  6 outstanding  YDrv  sid 0000000000000022\n"));
    assert_non_null(strstr(text, "\n+ 1 (2 - 1)  2 outstanding  XDrv  sid 0000000000000011\n"));
    assert_non_null(strstr(text, "\nDrivers\n+ 3 (6 - 3)  YDrv\n+ 1 (2 - 1)  XDrv\n"));
    free(text);
    text = diff_as(KDH_REPORT_JSON);
    assert_non_null(strstr(text, "\"ranked_by\": \"outstanding_count\""));
    assert_non_null(strstr(text, "\"delta\": 3"));
    assert_null(strstr(text, "\"value\"")); /* the measure is named once */
    free(text);
    text = diff_as(KDH_REPORT_FOLDED);
    assert_string_equal(text, "YDrv!Queue+0x20;nt!ExAllocatePoolWithTag+0x34 3 6\n"
                              "XDrv!Work+0x10;nt!ExAllocatePoolWithTag+0x34 1 2\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_growth_rule_shapes),      cmocka_unit_test(test_pool_and_events_share_the_rule),
        cmocka_unit_test(test_no_sizes_every_format),   cmocka_unit_test(test_mixed_sizes_count),
        cmocka_unit_test(test_nearly_all_sized_bytes),
        cmocka_unit_test(test_outstanding_bytes_by_hand), cmocka_unit_test(test_top_and_by_every_format),
        cmocka_unit_test(test_diff_without_sizes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
