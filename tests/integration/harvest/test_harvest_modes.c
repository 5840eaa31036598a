/* test_harvest_modes.c: `kdharvest run --mode specialpool|entry --pair` against kdsim's ground
 * truth, x64 and x86. kdsim records every allocation and free of the tag as it happens
 * (--truth-ops), so: our events are the truth's operations in order (kind, block address, size),
 * each captured stack is the truth stack's outer part frame for frame (ours starts at the
 * routine's entry, the truth inside the pool tracker), the outstanding bytes per stack of
 * `kdharvest report` equal those the truth's own blocks leave, with the leaking driver first,
 * the target's breaks are our entry and return stops and nothing else, none comes after the
 * detach, and the journal ends with every breakpoint cleared.
 * Entry mode runs without any PDB, and --max-stall disarms it. specialpool on a target whose
 * special pool is not set up for the tag warns with the registry value to set.
 * usage: test_harvest_modes KDSIM KDHARVEST FIXTURES [x64|x86]   (77 when the fixtures are absent) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_sim.h"

static void check_mode(const char *mode)
{
    sim_t s;
    char name[64], dir[512], fx[512];
    snprintf(name, sizeof name, "%s-%s", mode, g_arch);
    snprintf(dir, sizeof dir, "%s/run-%s", g_tmp, name);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    int sp = strcmp(mode, "specialpool") == 0;
    if (sp) {
        hs_sim_start(&s, name, "--truth-ops", "Leak", "--special-pool", "Leak", NULL);
        assert_int_equal(hs_harvest(&s, dir, 1, "--mode", mode, "--pair", "--symbols", fx, "--max-hits", "80", NULL), 0);
    } else { /* no symbols at all: the exports are enough */
        hs_sim_start(&s, name, "--truth-ops", "Leak", NULL);
        assert_int_equal(hs_harvest(&s, dir, 1, "--mode", mode, "--pair", "--max-hits", "80", NULL), 0);
    }
    size_t breaks = hs_count_kind(s.truth, "break");
    usleep(2000000);
    assert_int_equal(hs_count_kind(s.truth, "break"), breaks); /* nothing of ours left in the target */

    json_t *truth = hs_load_lines(s.truth), *t, *e;
    char path[600];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    json_t *events = hs_load_lines(path), *stacks = hs_load_stacks(dir), *ops = json_array();
    size_t i;
    json_array_foreach(truth, i, t) {
        const char *k = hs_str(t, "kind");
        if (strcmp(k, "pool_alloc") == 0 || strcmp(k, "pool_free") == 0)
            json_array_append(ops, t);
    }
    size_t n = json_array_size(events), with_addr = 0;
    assert_true(n >= 80 && n <= json_array_size(ops));
    /* the truth's outstanding bytes per stack from its own blocks and sizes */
    hs_outstanding_t real;
    hs_out_init(&real);
    json_array_foreach(events, i, e) {
        t = json_array_get(ops, i);
        int is_alloc = strcmp(hs_str(e, "kind"), "alloc") == 0;
        assert_string_equal(hs_str(t, "kind"), is_alloc ? "pool_alloc" : "pool_free");
        const char *mine = json_string_value(json_object_get(stacks, hs_str(e, "sid")));
        assert_non_null(mine);
        char ts[4096];
        hs_truth_stack(t, ts, sizeof ts);
        if (!hs_stack_suffix(mine, ts))
            fail_msg("event %zu: stack %s is not the outer part of the truth's %s", i, mine, ts);
        if (!hs_str(e, "addr")) { /* only the last allocation, logged at the detach */
            assert_true(is_alloc && i + 1 == n);
            /* a size it carries (the routine's argument, the requested bytes: the block's header
             * is not read before the return) counts in the report, so the truth counts its block
             * with the requested bytes too */
            if (json_object_get(e, "size")) {
                assert_int_equal(json_integer_value(json_object_get(e, "size")),
                                 json_integer_value(json_object_get(t, "requested")));
                hs_out_alloc(&real, hs_str(t, "block"), mine, json_integer_value(json_object_get(t, "requested")));
            }
            continue;
        }
        with_addr++;
        assert_string_equal(hs_str(e, "addr"), hs_str(t, "block"));
        assert_int_equal(json_integer_value(json_object_get(e, "size")), json_integer_value(json_object_get(t, "size")));
        /* keyed by our stack text, which is the truth stack's outer frames (checked above) */
        if (is_alloc)
            hs_out_alloc(&real, hs_str(t, "block"), mine, json_integer_value(json_object_get(t, "size")));
        else
            hs_out_free(&real, hs_str(t, "block"));
    }
    assert_true(with_addr + 1 >= n);
    /* the report's pairing leaves the truth's bytes per stack, and puts the truth's top first */
    char *first = NULL, *ranked = NULL;
    json_t *rep = hs_report_bytes(dir, &first, &ranked);
    hs_bytes_equal(real.bytes, rep);
    assert_string_equal(ranked, "outstanding_bytes");
    json_int_t best;
    const char *top = hs_out_clear_top(&real, &best);
    assert_true(best > 0);
    assert_non_null(strstr(top, "leakdrv.sys+"));
    assert_non_null(first);
    assert_string_equal(first, top);
    free(first);
    free(ranked);
    json_decref(rep);
    /* every break of the target was one of our stops (an entry, a return) or a break-in */
    json_int_t stops = hs_meta_counter(dir, NULL, "hits") + hs_meta_counter(dir, NULL, "filtered") +
                       hs_meta_counter(dir, NULL, "nested") + hs_meta_counter(dir, "pair", "allocs_with_addr") +
                       hs_meta_counter(dir, "pair", "returns_stepped_over");
    if ((json_int_t)breaks < stops || (json_int_t)breaks > stops + 2)
        fail_msg("%zu breaks in the truth, %lld stops of ours", breaks, (long long)stops);
    if (!sp)
        assert_true(hs_meta_counter(dir, NULL, "filtered") > 0); /* other tags stopped too */
    assert_int_equal(hs_journal_open_bps(dir), 0);
    hs_out_done(&real);
    json_decref(ops);
    json_decref(stacks);
    json_decref(events);
    json_decref(truth);
    hs_sim_stop(&s);
}

static void test_specialpool(void **state)
{
    (void)state;
    check_mode("specialpool");
}

static void test_entry(void **state)
{
    (void)state;
    check_mode("entry");
}

/* Special pool not set up for the tag: one warning naming the registry value and the reboot; the
 * run goes on (and sees nothing). */
static void test_specialpool_off(void **state)
{
    (void)state;
    sim_t s;
    char dir[512], fx[512], path[600], line[1024];
    snprintf(dir, sizeof dir, "%s/run-spoff-%s", g_tmp, g_arch);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    hs_sim_start(&s, "spoff", NULL);
    assert_int_equal(hs_harvest(&s, dir, 1, "--mode", "specialpool", "--symbols", fx, "--duration", "2", NULL), 0);
    snprintf(path, sizeof path, "%s.stderr", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int warned = 0;
    while (fgets(line, sizeof line, f))
        warned += strstr(line, "Memory Management\\PoolTag (REG_DWORD) = 0x6b61654c") != NULL &&
                  strstr(line, "reboot") != NULL;
    fclose(f);
    assert_int_equal(warned, 1);
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    assert_int_equal(hs_count_lines(path), 0);
    hs_sim_stop(&s);
}

/* Entry mode stops the target at every pool call: --max-stall disarms it (a "disarmed" gap), and
 * the detach then leaves no breakpoint behind. */
static void test_entry_stall(void **state)
{
    (void)state;
    sim_t s;
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/run-stall-%s", g_tmp, g_arch);
    hs_sim_start(&s, "stall", "--truth-ops", "Leak", NULL);
    assert_int_equal(hs_harvest(&s, dir, 1, "--mode", "entry", "--max-stall", "20", "--duration", "8", NULL), 0);
    size_t breaks = hs_count_kind(s.truth, "break");
    usleep(1500000);
    assert_int_equal(hs_count_kind(s.truth, "break"), breaks);
    snprintf(path, sizeof path, "%s/gaps.jsonl", dir);
    json_t *gaps = hs_load_lines(path);
    assert_true(json_array_size(gaps) >= 1);
    assert_string_equal(hs_str(json_array_get(gaps, 0), "reason"), "disarmed");
    json_decref(gaps);
    assert_int_equal(hs_journal_open_bps(dir), 0);
    hs_sim_stop(&s);
}

/* The target reboots 3 s into an entry-mode run: every entry stop of both boots is stepped over
 * once, so counters.breakpoints.steps is the truth's breaks of boots 1 and 2 (less the stop being
 * handled at the reboot and the one at the detach); the counters run on across the reboot. */
static void test_entry_reboot(void **state)
{
    (void)state;
    sim_t s;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-reboot-%s", g_tmp, g_arch);
    hs_sim_start(&s, "reboot", "--faults", "reboot=3s", NULL);
    assert_int_equal(hs_harvest(&s, dir, 1, "--mode", "entry", "--duration", "8", NULL), 0);
    json_t *truth = hs_load_lines(s.truth), *t;
    json_int_t breaks[3] = {0, 0, 0};
    size_t i;
    json_array_foreach(truth, i, t) {
        json_int_t b = json_integer_value(json_object_get(t, "boot"));
        if (strcmp(hs_str(t, "kind"), "break") == 0 && b >= 1 && b <= 2)
            breaks[b]++;
    }
    json_decref(truth);
    assert_true(breaks[1] > 10 && breaks[2] > 10);
    json_int_t steps = hs_meta_counter(dir, "breakpoints", "steps");
    json_int_t total = breaks[1] + breaks[2];
    if (steps > total || steps + 3 < total)
        fail_msg("%lld steps; the truth has %lld + %lld breaks", (long long)steps, (long long)breaks[1],
                 (long long)breaks[2]);
    assert_int_equal(hs_journal_open_bps(dir), 0);
    hs_sim_stop(&s);
}

int main(int argc, char **argv)
{
    int rc = hs_init(argc, argv, "kdh-modes-test");
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specialpool),
        cmocka_unit_test(test_entry),
        cmocka_unit_test(test_specialpool_off),
        cmocka_unit_test(test_entry_stall),
        cmocka_unit_test(test_entry_reboot),
    };
    return hs_finish(cmocka_run_group_tests_name(g_arch, tests, NULL, NULL));
}
