/* test_ingest_tables.c: the lines outside a table block that start or split pool snapshots, each
 * alone between outputs that would otherwise be one snapshot (counted by hand): the parser only
 * hands lines with these first letters to the table code (kdh_ingest_table_start). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest_collect.h"

/* Two !vm outputs with no prompt between them, one per pool: only their "*** Virtual Memory
 * Usage ***" line tells that the second is a new output (a pool seen again would also). */
static const char vm_twice[] = "kd> !vm 1\n"
                               "\n"
                               "*** Virtual Memory Usage ***\n"
                               "      NonPagedPool Usage:    877   (    3508 Kb)\n"
                               "      Committed pages:     21949   (   87796 Kb)\n"
                               "*** Virtual Memory Usage ***\n"
                               "      PagedPool Usage:      1597   (    6388 Kb)\n";

static void test_vm_heading(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, vm_twice, sizeof vm_twice - 1, 1 << 16);
    assert_non_null(c);
    assert_int_equal(c->nsamples, 2);
    assert_string_equal(c->samples[0].pool, "nonpaged");
    assert_int_equal(c->samples[0].bytes, 3508 * 1024);
    assert_string_equal(c->samples[1].pool, "paged");
    assert_int_equal(c->samples[1].bytes, 6388 * 1024);
    assert_int_equal(c->samples[0].snapshot + 1, c->samples[1].snapshot);
    assert_int_equal(c->stats.snapshots, 2);
    coll_free(c);
}

/* Without the heading the two pools are one snapshot: the case above is decided by that line. */
static void test_vm_one_output(void **state)
{
    (void)state;
    static const char once[] = "kd> !vm 1\n"
                               "*** Virtual Memory Usage ***\n"
                               "      NonPagedPool Usage:    877   (    3508 Kb)\n"
                               "      PagedPool Usage:      1597   (    6388 Kb)\n";
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, once, sizeof once - 1, 1 << 16);
    assert_non_null(c);
    assert_int_equal(c->nsamples, 2);
    assert_int_equal(c->samples[0].snapshot, c->samples[1].snapshot);
    assert_int_equal(c->stats.snapshots, 1);
    coll_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vm_heading),
        cmocka_unit_test(test_vm_one_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
