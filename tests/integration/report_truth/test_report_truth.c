/* test_report_truth.c: the report of a kdsim harvest against kdsim's ground truth. kdsim runs the
 * "leak" workload (leakdrv.sys leaks tag 'Leak' along two paths of different rates and sizes, and
 * frees part of it) with --truth; `kdharvest run --pair` harvests it (so every allocation carries
 * its size and address and the report ranks by outstanding bytes); then `kdharvest report`
 * (default text, and json) must put first:
 *   - the stack the truth says has most outstanding bytes left (each true free paired with its
 *     allocation by block address), frame for frame (module file + RVA through stacks.jsonl);
 *   - the driver the truth says owns most outstanding bytes over all its stacks (a stack's driver
 *     is its first frame outside the kernel and the HAL).
 * usage: test_report_truth KDSIM KDHARVEST FIXTURES [x64|x86]   (77 when the fixtures are absent) */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_sim.h"

/* The driver of a stack text ("file+rva|..."): its first frame outside the kernel and the HAL. */
static void stack_driver(const char *stack, char *drv, size_t len)
{
    drv[0] = 0;
    for (const char *p = stack; p && *p && !drv[0]; p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL) {
        size_t n = strcspn(p, "+");
        if (strncmp(p, "ntoskrnl", 8) != 0 && strncmp(p, "ntkrnl", 6) != 0 && strncmp(p, "hal", 3) != 0)
            snprintf(drv, len, "%.*s", (int)n, p);
    }
}

static void test_first_stack_and_driver_are_the_truths(void **state)
{
    (void)state;
    char dir[512], fx[512], json_out[512], text_out[512];
    snprintf(dir, sizeof dir, "%s/run", g_tmp);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    snprintf(json_out, sizeof json_out, "%s/report.json", g_tmp);
    snprintf(text_out, sizeof text_out, "%s/report.txt", g_tmp);
    sim_t s;
    hs_sim_start(&s, "report", NULL);
    assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--pair", "--max-hits", "1500", NULL), 0);
    usleep(500000); /* the truth's last lines are flushed at each break; nothing breaks after the detach */
    hs_sim_stop(&s);

    const char *json_argv[] = {g_kdh, "report", "--format", "json", "--top", "3", dir, NULL};
    assert_int_equal(hs_run(json_out, json_argv), 0);
    json_error_t je;
    json_t *rep = json_load_file(json_out, 0, &je);
    if (!rep)
        fail_msg("report json: %s", je.text);
    const char *ranked = hs_str(json_object_get(rep, "measure"), "ranked_by");
    assert_non_null(ranked);
    assert_string_equal(ranked, "outstanding_bytes"); /* every allocation of a --pair run has a size */

    /* the truth: outstanding bytes per true stack, each free paired with its allocation by block */
    json_t *truth = hs_load_truth(s.truth), *t;
    hs_outstanding_t real;
    hs_out_init(&real);
    size_t i;
    json_array_foreach(truth, i, t) {
        const char *kind = hs_str(t, "kind");
        char ts[4096];
        hs_truth_stack(t, ts, sizeof ts);
        if (strcmp(kind, "alloc") == 0)
            hs_out_alloc(&real, hs_str(t, "block"), ts, json_integer_value(json_object_get(t, "size")));
        else if (strcmp(kind, "free") == 0)
            hs_out_free(&real, hs_str(t, "block"));
    }
    assert_true(json_object_size(real.bytes) >= 2); /* the two allocation paths at least */
    json_int_t best;
    const char *top = hs_out_clear_top(&real, &best); /* a clear winner, or the comparison says nothing */
    printf("truth: %zu stacks; most outstanding bytes: %lld\n", json_object_size(real.bytes), (long long)best);
    /* the truth's drivers: outstanding bytes summed over their stacks */
    hs_outstanding_t drivers;
    hs_out_init(&drivers);
    const char *k;
    json_t *v;
    json_object_foreach(real.bytes, k, v) {
        char drv[128];
        stack_driver(k, drv, sizeof drv);
        assert_true(drv[0]);
        json_int_t cur = json_integer_value(json_object_get(drivers.bytes, drv));
        json_object_set_new(drivers.bytes, drv, json_integer(cur + json_integer_value(v)));
    }
    json_int_t dbest;
    const char *tdrv = hs_out_clear_top(&drivers, &dbest);
    printf("truth: %zu drivers; %s has most outstanding bytes: %lld\n", json_object_size(drivers.bytes), tdrv,
           (long long)dbest);

    /* json: first stack, frame for frame (module file + RVA through stacks.jsonl) */
    json_t *stacks = hs_load_stacks(dir);
    const char *sid = hs_str(json_array_get(json_object_get(rep, "stacks"), 0), "sid");
    assert_non_null(sid);
    const char *ours = json_string_value(json_object_get(stacks, sid));
    assert_non_null(ours);
    if (strcmp(ours, top) != 0)
        fail_msg("first stack %s:\n  ours  %s\n  truth %s", sid, ours, top);
    /* json: first driver of the roll-up, named without the file's extension */
    const char *drv = hs_str(json_array_get(json_object_get(rep, "drivers"), 0), "driver");
    assert_non_null(drv);
    if (strlen(drv) >= strlen(tdrv) || strncasecmp(drv, tdrv, strlen(drv)) != 0 || tdrv[strlen(drv)] != '.')
        fail_msg("first driver %s, truth %s", drv, tdrv);

    /* the default (text) report: the first entry of its first stack list is the same sid */
    const char *text_argv[] = {g_kdh, "report", dir, NULL};
    assert_int_equal(hs_run(text_out, text_argv), 0);
    FILE *f = fopen(text_out, "r");
    assert_non_null(f);
    char line[1024], first_sid[32] = "";
    int state_ = 0;
    while (fgets(line, sizeof line, f) && !first_sid[0]) {
        if (state_ == 0 && strncmp(line, "Top stacks by outstanding", 25) == 0)
            state_ = 1;
        else if (state_ == 1 && sscanf(line, "     sid %31s", first_sid) == 1)
            break;
    }
    fclose(f);
    assert_string_equal(first_sid, sid);
    hs_out_done(&drivers);
    hs_out_done(&real);
    json_decref(stacks);
    json_decref(truth);
    json_decref(rep);
}

int main(int argc, char **argv)
{
    int rc = hs_init(argc, argv, "kdh-report-truth");
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_stack_and_driver_are_the_truths),
    };
    return hs_finish(cmocka_run_group_tests_name(g_arch, tests, NULL, NULL));
}
