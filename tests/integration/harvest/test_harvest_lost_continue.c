/* test_harvest_lost_continue.c: a Continue the target acknowledges but never acts on (kdsim
 * --faults mangle-continue=N damages the packet type of the host's Nth Continue2, which the KD
 * checksum does not cover). The host believes the target runs; the quiet-target check breaks in
 * ten seconds later and the target reports the very stop again. That hit must be logged once:
 * the events equal kdsim's ground truth in number, kind and stack, and meta.json counts the one
 * stop reported again; also when that hit is the run's last and the detach's break-in finds it.
 * x64 and x86.
 * usage: test_harvest_lost_continue KDSIM KDHARVEST FIXTURES [x64|x86]   (77 without fixtures) */
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

/* The longest a stop may wait for the host with the line idle. The harvest's own pauses are
 * tens of milliseconds (symbol loading at attach is the longest); an ignored Continue held the
 * target for 13 s before quiet lines were probed. */
#define HOLD_MAX_MS 3000.0

/* max_hits: the run's --max-hits; 12 ends the run right after the hit whose Continue is lost,
 * so the detach's break-in is what finds that stop again. */
static void lost_continue_case(const char *name, const char *max_hits)
{
    sim_t s;
    /* the 15th Continue2: the attach and the first stops take some, so this is the 12th hit's */
    hs_sim_start(&s, name, "--faults", "mangle-continue=15", NULL);
    char dir[512], fx[512];
    snprintf(dir, sizeof dir, "%s/run-%s-%s", g_tmp, name, g_arch);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--max-hits", max_hits, NULL), 0);

    /* kind and stack of every event against the truth's hits, in order, none missing or twice */
    assert_true(hs_check_events(dir, s.truth) >= (size_t)atoi(max_hits));
    assert_int_equal(hs_meta_counter(dir, NULL, "hits_reported_again"), 1);
    /* and found soon: the target sat stopped, the line idle, for at most a few seconds */
    hs_sim_status_t st;
    hs_sim_status(&s, &st);
    print_message("%s: longest idle stop %.0f ms\n", name, st.host_wait_max_ms);
    assert_true(st.host_wait_max_ms < HOLD_MAX_MS);
    hs_sim_stop(&s);
}

static void test_lost_continue(void **state)
{
    (void)state;
    lost_continue_case("lostcont", "40");
}

/* The same lost Continue as the run's last: the detach breaks in, the target reports the stop
 * again, and the detach must not log it a second time. */
static void test_lost_continue_at_detach(void **state)
{
    (void)state;
    lost_continue_case("lostcont-end", "12");
}

/* The detach's own last Continue lost (the 16th Continue2 with --max-hits 12 ends the run: the
 * detach's break-in finds the 13th hit, logs it, restores the tag and continues; the 17th covers a
 * stop more at the detach): the target must not be left stopped with nobody attached. Before the
 * detach looked for it, kdsim sat in that stop for good. */
static void test_lost_continue_of_detach(void **state)
{
    (void)state;
    const char *cases[] = {"mangle-continue=16", "mangle-continue=17"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sim_t s;
        char name[64], dir[512], fx[512];
        snprintf(name, sizeof name, "lostcont-detach-%zu", i);
        hs_sim_start(&s, name, "--faults", cases[i], NULL);
        hs_sim_status_t before, after;
        hs_sim_status(&s, &before);
        snprintf(dir, sizeof dir, "%s/run-%s-%s", g_tmp, name, g_arch);
        snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
        assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--max-hits", "12", NULL), 0);
        usleep(500000);
        hs_sim_status(&s, &after);
        print_message("%s: target %s after the run\n", cases[i], after.state);
        if (!hs_sim_left_running(&after))
            fail_msg("%s: target %s (sending: %s) after the run", cases[i], after.state, after.pending);
        assert_false(after.machine_failed);
        assert_int_equal(after.pool_hit_tag, before.pool_hit_tag);
        assert_true(hs_check_events(dir, s.truth) >= 12);
        hs_sim_stop(&s);
    }
}

int main(int argc, char **argv)
{
    int rc = hs_init(argc, argv, "kdh-lostcont-test");
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lost_continue),
        cmocka_unit_test(test_lost_continue_at_detach),
        cmocka_unit_test(test_lost_continue_of_detach),
    };
    return hs_finish(cmocka_run_group_tests_name(g_arch, tests, NULL, NULL));
}
