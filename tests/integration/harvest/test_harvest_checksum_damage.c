/* test_harvest_write_check.c: a write of nt!PoolHitTag damaged on the line in a way the KD checksum
 * (a byte sum) cannot see: kdsim --faults mangle-write=N raises the first data byte of the host's
 * Nth memory write by one and lowers the second by one, and the target writes that. The arming
 * write is the 1st (the tag would be "Mdak" instead of "Leak": nothing trapped), the detach's
 * restore the 2nd (the target would keep 0xfffffe10 instead of 0xffffff0f). kdharvest reads every
 * such write back and writes it again; the run traps the tag (events equal kdsim's truth), meta.json
 * counts one rewrite, and kdsim's own status line shows the target running with nt!PoolHitTag back
 * at its value from before the run. x64 and x86.
 * usage: test_harvest_write_check KDSIM KDHARVEST FIXTURES [x64|x86]   (77 without fixtures) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harvest_sim.h"

static void mangled_write_case(const char *name, const char *spec)
{
    sim_t s;
    hs_sim_start(&s, name, "--faults", spec, NULL);
    hs_sim_status_t before, after;
    char dir[512], fx[512];
    hs_sim_status(&s, &before);
    snprintf(dir, sizeof dir, "%s/run-%s-%s", g_tmp, name, g_arch);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    /* --duration ends a run that traps nothing */
    assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--max-hits", "12", "--duration", "8", NULL), 0);
    hs_sim_status(&s, &after);

    assert_string_equal(after.state, "running");
    assert_int_equal(after.pool_hit_tag, before.pool_hit_tag);
    assert_true(hs_check_events(dir, s.truth) >= 12);
    assert_int_equal(hs_meta_counter(dir, NULL, "pool_hit_tag_rewrites"), 1);
    hs_sim_stop(&s);
}

static void test_arming_write_damaged(void **state)
{
    (void)state;
    mangled_write_case("mangle-arm", "mangle-write=1");
}

static void test_restoring_write_damaged(void **state)
{
    (void)state;
    mangled_write_case("mangle-disarm", "mangle-write=2");
}

int main(int argc, char **argv)
{
    int rc = hs_init(argc, argv, "kdh-wcheck-test");
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arming_write_damaged),
        cmocka_unit_test(test_restoring_write_damaged),
    };
    return hs_finish(cmocka_run_group_tests_name(g_arch, tests, NULL, NULL));
}
