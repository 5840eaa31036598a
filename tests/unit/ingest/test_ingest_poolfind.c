/* test_ingest_poolfind.c: !poolfind output (both layouts of reference/log-formats.md section 6) as
 * snapshots, on transcripts written here: blocks and bytes per tag and pool type added up by hand,
 * free blocks and elisions passed over, one snapshot per command, the block ended by a prompt,
 * by other output or by the end of the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "ingest_collect.h"

/* newer layout, a wildcard search: two tags, two pool types, an elision and the terminating note */
static const char modern[] =
    "1: kd> !poolfind Le*\n"
    "\n"
    "Scanning large pool allocation table for tag 0x2a654c (Le*) (ffffda0fe5b10000 : ffffda0fe5f10000)\n"
    "\n"
    "ffffda0ff9791000 : tag Leak, size    0x1000, Nonpaged pool\n"
    "\n"
    "Searching nonpaged pool (ffffda0000000000 : ffffea0000000000) for tag 0x2a654c (Le*)\n"
    "\n"
    "ffffda001accb5f0 : tag Leak, size     0x140, Nonpaged pool\n"
    "ffffda001accb740 : tag Le  , size      0x20, Nonpaged pool\n"
    "......\n"
    "ffffda001accb890 : tag Leak, size     0x140, Nonpaged pool\n"
    "\n"
    "Searching paged pool (ffffb00000000000 : ffffc00000000000) for tag 0x2a654c (Le*)\n"
    "\n"
    "ffffb0001accb890 : tag Leak, size      0x60, Paged pool\n"
    "\n"
    "...terminating - searched pool to ffffb0000fb7df50\n"
    "1: kd> !poolfind Leak\n"
    "\n"
    "Searching nonpaged pool (ffffda0000000000 : ffffea0000000000) for tag 0x6b61654c (Leak)\n"
    "\n"
    "ffffda001accb5f0 : tag Leak, size     0x140, Nonpaged pool\n"
    "ffffda001accc5f0 : tag Leak, size     0x140, Nonpaged pool\n"
    "some other output\n";

/* older layout: rows under "Searching X pool", free blocks listed too, the file ends in the block */
static const char older[] =
    "kd> !poolfind Leak 0\n"
    "\n"
    "Scanning large pool allocation table for Tag: Leak (827d1000 : 827e9000)\n"
    "\n"
    "Searching NonPaged pool (823b1000 : 82800000) for Tag: Leak\n"
    "\n"
    "826fa130 size:   c0 previous size:   40  (Allocated) Leak\n"
    "82721c00 size:   10 previous size:   30  (Free)      Leak\n"
    "8272b3f0 size:   60 previous size:   30  (Allocated) *Leak (Protected)\n"
    "8272b450 size:   20 previous size:   60  (Allocated) Io\n"
    "\n"
    "Searching Paged pool (e1000000 : e4400000) for Tag: Leak\n"
    "\n"
    "e10000b0 size:   d0 previous size:   20  (Allocated) Leak";

static void test_modern(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, modern, sizeof modern - 1, 29);
    assert_non_null(c);
    assert_int_equal(c->stats.snapshots, 2);
    assert_int_equal(c->nsamples, 4);
    /* first command: Leak nonpaged 0x1000 + 0x140 + 0x140 = 4736; "Le  " 0x20; Leak paged 0x60 */
    assert_string_equal(c->samples[0].tag, "Leak");
    assert_string_equal(c->samples[0].pool, "nonpaged");
    assert_int_equal(c->samples[0].allocs, 3);
    assert_int_equal(c->samples[0].bytes, 4736);
    assert_string_equal(c->samples[1].tag, "Le  ");
    assert_int_equal(c->samples[1].allocs, 1);
    assert_int_equal(c->samples[1].bytes, 0x20);
    assert_string_equal(c->samples[2].tag, "Leak");
    assert_string_equal(c->samples[2].pool, "paged");
    assert_int_equal(c->samples[2].bytes, 0x60);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c->samples[i].snapshot, 1);
    /* second command, ended by other output */
    assert_int_equal(c->samples[3].snapshot, 2);
    assert_int_equal(c->samples[3].allocs, 2);
    assert_int_equal(c->samples[3].bytes, 0x280);
    assert_int_equal(c->stats.skipped, 0);
    assert_int_equal(c->stats.kinds_seen, KDH_INGEST_POOLUSED);
    coll_free(c);
}

static void test_older(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, older, sizeof older - 1, 4096);
    assert_non_null(c);
    assert_int_equal(c->stats.snapshots, 1);
    assert_int_equal(c->nsamples, 3);
    /* Leak nonpaged: 0xc0 + 0x60 (the free 0x10 is not counted); Io 0x20; Leak paged 0xd0 */
    assert_string_equal(c->samples[0].tag, "Leak");
    assert_string_equal(c->samples[0].pool, "nonpaged");
    assert_int_equal(c->samples[0].allocs, 2);
    assert_int_equal(c->samples[0].bytes, 0x120);
    assert_string_equal(c->samples[1].tag, "Io  ");
    assert_int_equal(c->samples[1].bytes, 0x20);
    assert_string_equal(c->samples[2].pool, "paged");
    assert_int_equal(c->samples[2].allocs, 1);
    assert_int_equal(c->samples[2].bytes, 0xd0);
    coll_free(c);
    /* rows without a "Scanning" / "Searching" line before them are not !poolfind output */
    static const char bare[] = "826fa130 size:   c0 previous size:   40  (Allocated) Leak\n";
    c = coll_run(KDH_INGEST_AUTO, NULL, bare, sizeof bare - 1, 4096);
    assert_int_equal(c->nsamples, 0);
    coll_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modern),
        cmocka_unit_test(test_older),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
