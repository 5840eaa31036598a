/* test_harvest_checksum_damage.c: damage on the line that the KD checksum (a byte sum over the
 * payload) cannot see, because two changes cancel in the sum.
 *   - A write of nt!PoolHitTag: kdsim --faults mangle-write=N raises the first data byte of the
 *     host's Nth memory write by one and lowers the second by one, and the target writes that. The
 *     arming write is the 1st (the tag would be "Mdak" instead of "Leak": nothing trapped), the
 *     detach's restore the 2nd (the target would keep 0xfffffe10 instead of 0xffffff0f). kdharvest
 *     reads every such write back and writes it again; meta.json counts one rewrite.
 *   - A stop report's PC: mangle-stop=N clears a bit of the Nth exception report's PC and sets the
 *     same bit in its exception record. Stepping over the int 3 from that PC sent the simulated
 *     kernel into its image header (it faulted at base+4). kdharvest checks the PC of a break at a
 *     new place against the context and corrects it; meta.json counts one correction.
 *   - A stop report's thread (x64): mangle-thread=N does the same to a middle byte of the Nth
 *     report's thread, which then names no thread. kdharvest checks the thread of a stop from a
 *     thread not seen before against the processor's current thread; meta.json counts one.
 * Every case: the run traps the tag (events equal kdsim's truth, threads too), the simulated machine never
 * faults, and kdsim's own status line shows the target running with nt!PoolHitTag back at its value
 * from before the run. x64 and x86.
 * usage: test_harvest_checksum_damage KDSIM KDHARVEST FIXTURES [x64|x86]   (77 without fixtures) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harvest_sim.h"

/* counter: the meta.json counter that must be 1 */
static void damage_case(const char *name, const char *spec, const char *counter)
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

    assert_false(after.machine_failed);
    if (!hs_sim_left_running(&after))
        fail_msg("target %s (sending: %s) after the run", after.state, after.pending);
    assert_int_equal(after.pool_hit_tag, before.pool_hit_tag);
    assert_true(hs_check_events(dir, s.truth) >= 12);
    assert_int_equal(hs_meta_counter(dir, NULL, counter), 1);
    hs_sim_stop(&s);
}

static void test_arming_write_damaged(void **state)
{
    (void)state;
    damage_case("mangle-arm", "mangle-write=1", "pool_hit_tag_rewrites");
}

static void test_restoring_write_damaged(void **state)
{
    (void)state;
    damage_case("mangle-disarm", "mangle-write=2", "pool_hit_tag_rewrites");
}

/* the 5th exception report: a PoolHitTag hit (the first are the attach's break-in and a few hits) */
static void test_stop_pc_damaged(void **state)
{
    (void)state;
    damage_case("mangle-stop", "mangle-stop=5", "stop_pcs_corrected");
}

/* x64 only: the 5th exception report's thread. x86's control space has no thread pointer to check
 * it against, and the event would name the damaged thread (README, reliability). */
static void test_stop_thread_damaged(void **state)
{
    (void)state;
    damage_case("mangle-thread", "mangle-thread=5", "stop_threads_corrected");
}

/* x64: a target that refuses control space reads (kdsim --no-control-space). The thread check
 * gives up and the harvest goes on: exit 0, events equal the truth, nothing counted as corrected,
 * and the target asked once only (kdsim counts the requests).
 * Before, the refusal failed the hit and the run. */
static void test_thread_check_refused(void **state)
{
    (void)state;
    sim_t s;
    hs_sim_start(&s, "noctl", "--no-control-space", NULL);
    char dir[512], fx[512];
    snprintf(dir, sizeof dir, "%s/run-noctl-%s", g_tmp, g_arch);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--max-hits", "12", NULL), 0);
    assert_true(hs_check_events(dir, s.truth) >= 12);
    assert_int_equal(hs_meta_counter(dir, NULL, "stop_threads_corrected"), 0);
    /* asked once, at the first stop, and never again */
    hs_sim_status_t st;
    hs_sim_status(&s, &st);
    assert_int_equal(st.control_reads, 1);
    hs_sim_stop(&s);
}

int main(int argc, char **argv)
{
    int rc = hs_init(argc, argv, "kdh-sumdmg-test");
    if (rc != 0)
        return rc;
    const struct CMUnitTest x64[] = {
        cmocka_unit_test(test_arming_write_damaged),
        cmocka_unit_test(test_restoring_write_damaged),
        cmocka_unit_test(test_stop_pc_damaged),
        cmocka_unit_test(test_stop_thread_damaged),
        cmocka_unit_test(test_thread_check_refused),
    };
    /* the thread cases are not run on x86 (see above), rather than reported as passed */
    const struct CMUnitTest x86[] = {
        cmocka_unit_test(test_arming_write_damaged),
        cmocka_unit_test(test_restoring_write_damaged),
        cmocka_unit_test(test_stop_pc_damaged),
    };
    rc = strcmp(g_arch, "x86") == 0 ? cmocka_run_group_tests_name("x86", x86, NULL, NULL)
                                    : cmocka_run_group_tests_name("x64", x64, NULL, NULL);
    return hs_finish(rc);
}
