/* test_pool.c: the pool tracking table parser over hand-built x64 and x86 entries (offsets from
 * the POOL_TRACKER_TABLE layout written out byte by byte), merging of per-processor copies, the
 * !poolused orders, bounds on hostile sizes, and the printed table compared with text typed by
 * hand (column ends 15/28/39/52 as log-formats.md 5 gives for the Win10 layout). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kdh/pool.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* x64 entry: Key @0, NPA @4, NPF @8, NPB u64 @0x10, PA @0x18, PF @0x1C, PB u64 @0x20. */
static void x64_entry(uint8_t *e, uint32_t key, uint32_t npa, uint32_t npf, uint64_t npb, uint32_t pa,
                      uint32_t pf, uint64_t pb)
{
    memset(e, 0, 0x28);
    put32(e, key);
    put32(e + 4, npa);
    put32(e + 8, npf);
    put32(e + 0x10, (uint32_t)npb);
    put32(e + 0x14, (uint32_t)(npb >> 32));
    put32(e + 0x18, pa);
    put32(e + 0x1C, pf);
    put32(e + 0x20, (uint32_t)pb);
    put32(e + 0x24, (uint32_t)(pb >> 32));
}

static void test_x64(void **state)
{
    (void)state;
    uint8_t buf[4 * 0x28];
    x64_entry(buf, 0x6B61654C, 10, 4, 6 * 96, 0, 0, 0);                 /* 'Leak' */
    x64_entry(buf + 0x28, 0, 7, 7, 7, 7, 7, 7);                          /* empty: skipped */
    x64_entry(buf + 0x50, 0x80000000u | 0x31797342, 0, 0, 0, 5, 2, 3 * 64); /* protected 'Bsy1' */
    x64_entry(buf + 0x78, 0x20656C46, 1, 0, 0x100000000ull + 32, 0, 0, 0); /* 'Fle ': bytes > 4 GiB */
    kdh_pool_table_t tab;
    kdh_pool_table_init(&tab);
    kdh_err_t err = {0};
    assert_int_equal(kdh_pool_parse(&tab, buf, sizeof buf, 8, 4, &err), KDH_OK);
    assert_int_equal(tab.count, 3);
    assert_int_equal(tab.entries_read, 4);
    const kdh_pool_row_t *r = kdh_pool_find(&tab, 0x6B61654C);
    assert_non_null(r);
    assert_string_equal(r->tag, "Leak");
    assert_int_equal(r->np_allocs, 10);
    assert_int_equal(r->np_frees, 4);
    assert_int_equal(r->np_bytes, 576);
    r = kdh_pool_find(&tab, 0x31797342);
    assert_non_null(r);
    assert_int_equal(r->key, 0x31797342);
    assert_string_equal(r->tag, "Bsy1");
    assert_int_equal(r->p_allocs, 5);
    assert_int_equal(r->p_frees, 2);
    assert_int_equal(r->p_bytes, 192);
    r = kdh_pool_find(&tab, 0x20656C46);
    assert_non_null(r);
    assert_true(r->np_bytes == 0x100000020ull);
    assert_null(kdh_pool_find(&tab, 0x12345678));
    kdh_pool_row_t sum;
    kdh_pool_totals(&tab, &sum);
    assert_int_equal(sum.np_allocs, 11);
    assert_true(sum.np_bytes == 576 + 0x100000020ull);
    assert_int_equal(sum.p_bytes, 192);
    kdh_pool_table_free(&tab);
}

static void test_x86_and_merge(void **state)
{
    (void)state;
    /* x86 entry: 7 u32 fields, 0x1C bytes. */
    uint8_t a[2 * 0x1C], b[0x1C];
    memset(a, 0, sizeof a);
    put32(a, 0x6B61654C);
    put32(a + 4, 3);
    put32(a + 8, 1);
    put32(a + 0xC, 2 * 48);
    put32(a + 0x1C, 0x656E6F4E); /* 'None' */
    put32(a + 0x1C + 0x10, 9);
    put32(a + 0x1C + 0x14, 9);
    put32(a + 0x1C + 0x18, 0);
    memset(b, 0, sizeof b);
    put32(b, 0x6B61654C); /* the same tag in a second (per-processor) table */
    put32(b + 4, 2);
    put32(b + 0xC, 2 * 48);
    put32(b + 0x18, 0xFFFFFFF0u); /* paged bytes as a u32: no sign extension on x86 */
    kdh_pool_table_t tab;
    kdh_pool_table_init(&tab);
    kdh_err_t err = {0};
    assert_int_equal(kdh_pool_parse(&tab, a, sizeof a, 4, 2, &err), KDH_OK);
    assert_int_equal(kdh_pool_parse(&tab, b, sizeof b, 4, 1, &err), KDH_OK);
    assert_int_equal(tab.count, 2);
    const kdh_pool_row_t *r = kdh_pool_find(&tab, 0x6B61654C);
    assert_int_equal(r->np_allocs, 5);
    assert_int_equal(r->np_frees, 1);
    assert_int_equal(r->np_bytes, 192);
    assert_true(r->p_bytes == 0xFFFFFFF0ull);
    r = kdh_pool_find(&tab, 0x656E6F4E);
    assert_string_equal(r->tag, "None");
    assert_int_equal(r->p_allocs, 9);
    assert_int_equal(r->p_frees, 9);
    kdh_pool_table_free(&tab);
}

static void test_bounds(void **state)
{
    (void)state;
    uint8_t buf[0x28 * 2];
    memset(buf, 0x41, sizeof buf);
    kdh_pool_table_t tab;
    kdh_pool_table_init(&tab);
    kdh_err_t err = {0};
    /* 3 entries claimed, 2 present */
    assert_int_equal(kdh_pool_parse(&tab, buf, sizeof buf, 8, 3, &err), KDH_ERANGE);
    assert_non_null(strstr(err.msg, "fewer than 3"));
    assert_int_equal(kdh_pool_parse(&tab, buf, sizeof buf, 8, (uint64_t)KDH_POOL_MAX_ENTRIES + 1, &err),
                     KDH_ERANGE);
    assert_non_null(strstr(err.msg, "PoolTrackTableSize"));
    assert_int_equal(kdh_pool_parse(&tab, buf, sizeof buf, 2, 1, &err), KDH_EINVAL);
    assert_int_equal(kdh_pool_parse(&tab, NULL, 0, 8, 1, &err), KDH_ERANGE);
    /* A hostile table repeating one key gives one row with the sums. */
    assert_int_equal(kdh_pool_parse(&tab, buf, sizeof buf, 8, 2, &err), KDH_OK);
    assert_int_equal(tab.count, 1);
    assert_string_equal(tab.rows[0].tag, "AAAA");
    assert_int_equal(tab.rows[0].np_allocs, 2ull * 0x41414141u);
    assert_int_equal(kdh_pool_entry_size(8), 0x28);
    assert_int_equal(kdh_pool_entry_size(4), 0x1C);
    assert_int_equal(kdh_pool_entry_size(5), 0);
    kdh_pool_table_free(&tab);
}

static const char *owner_of(void *ctx, const char *tag)
{
    (void)ctx;
    return strcmp(tag, "Leak") == 0 ? "leakdrv.sys - test leak" : NULL;
}

static void test_sort_and_print(void **state)
{
    (void)state;
    uint8_t buf[3 * 0x28];
    x64_entry(buf, 0x6B61654C, 10, 4, 600, 0, 0, 0);           /* Leak np 600 */
    x64_entry(buf + 0x28, 0x30797342, 100, 99, 80, 2, 1, 900); /* Bsy0 np 80, p 900 */
    x64_entry(buf + 0x50, 0x656E6F4E, 5, 0, 1000, 0, 0, 0);   /* None np 1000 */
    kdh_pool_table_t tab;
    kdh_pool_table_init(&tab);
    kdh_err_t err = {0};
    assert_int_equal(kdh_pool_parse(&tab, buf, sizeof buf, 8, 3, &err), KDH_OK);
    kdh_pool_sort(&tab, KDH_POOL_SORT_NONPAGED);
    assert_string_equal(tab.rows[0].tag, "None");
    assert_string_equal(tab.rows[1].tag, "Leak");
    assert_string_equal(tab.rows[2].tag, "Bsy0");
    kdh_pool_sort(&tab, KDH_POOL_SORT_PAGED);
    assert_string_equal(tab.rows[0].tag, "Bsy0");
    assert_string_equal(tab.rows[1].tag, "Leak"); /* 0 = 0: by tag */
    kdh_pool_sort(&tab, KDH_POOL_SORT_TAG);
    assert_string_equal(tab.rows[0].tag, "Bsy0");
    assert_string_equal(tab.rows[2].tag, "None");

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    kdh_pool_sort(&tab, KDH_POOL_SORT_NONPAGED);
    assert_int_equal(kdh_pool_print_poolused(f, &tab, KDH_POOL_SORT_NONPAGED, 2, owner_of, NULL), KDH_OK);
    fclose(f);
    /* typed by hand: Allocs = allocs - frees; the top 2 rows; TOTAL over every row */
    const char *want = "   Sorting by NonPaged Pool Consumed\n"
                       "\n"
                       "               NonPaged                  Paged\n"
                       " Tag     Allocs         Used     Allocs         Used\n"
                       "\n"
                       " None         5         1000          0            0\tUNKNOWN pooltag 'None', please update pooltag.txt\n"
                       " Leak         6          600          0            0\tleakdrv.sys - test leak\n"
                       "\n"
                       " TOTAL       12         1680          1          900\n";
    assert_string_equal(text, want);
    free(text);

    text = NULL;
    f = open_memstream(&text, &len);
    kdh_pool_table_t prev;
    kdh_pool_table_init(&prev);
    uint8_t p1[0x28];
    x64_entry(p1, 0x6B61654C, 8, 4, 400, 0, 0, 0);
    assert_int_equal(kdh_pool_parse(&prev, p1, sizeof p1, 8, 1, &err), KDH_OK);
    kdh_pool_sort(&tab, KDH_POOL_SORT_TAG);
    assert_int_equal(kdh_pool_print_poolmon(f, "sample 2", &tab, &prev), KDH_OK);
    fclose(f);
    /* Bsy0 has a Nonp and a Paged row; deltas against prev (Bsy0, None new: from 0) */
    assert_non_null(strstr(text, " Bsy0 Nonp         100 (  100)         99 (   99)          1           80 (     80)        80\n"));
    assert_non_null(strstr(text, " Bsy0 Paged          2 (    2)          1 (    1)          1          900 (    900)       900\n"));
    assert_non_null(strstr(text, " Leak Nonp          10 (    2)          4 (    0)          6          600 (    200)       100\n"));
    assert_null(strstr(text, " Leak Paged"));
    free(text);
    kdh_pool_table_free(&prev);
    kdh_pool_table_free(&tab);
}

/* Units: the ...InBytes values are bytes, the rest pages of 4 KiB; printed as !vm does (pages, Kb). */
static void test_vm_print(void **state)
{
    (void)state;
    kdh_pool_vm_t vm;
    memset(&vm, 0, sizeof vm);
    vm.have[KDH_POOL_VM_NONPAGED_USAGE] = 1;
    vm.value[KDH_POOL_VM_NONPAGED_USAGE] = 3;          /* pages: 12 Kb */
    vm.have[KDH_POOL_VM_NONPAGED_MAX] = 1;
    vm.value[KDH_POOL_VM_NONPAGED_MAX] = 16u << 20;    /* bytes: 4096 pages, 16384 Kb */
    vm.have[KDH_POOL_VM_COMMIT_LIMIT] = 1;
    vm.value[KDH_POOL_VM_COMMIT_LIMIT] = 4096;         /* pages: 16384 Kb */
    assert_int_equal(kdh_pool_vm_kb(&vm, KDH_POOL_VM_NONPAGED_USAGE), 12);
    assert_int_equal(kdh_pool_vm_pages(&vm, KDH_POOL_VM_NONPAGED_MAX), 4096);
    assert_int_equal(kdh_pool_vm_kb(&vm, KDH_POOL_VM_NONPAGED_MAX), 16384);
    assert_string_equal(kdh_pool_vm_info(KDH_POOL_VM_COMMIT_LIMIT)->key, "commit_limit_kb");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(kdh_pool_print_vm(f, &vm), KDH_OK);
    fclose(f);
    assert_string_equal(text, "\tNonPagedPool Usage:           3 (          12 Kb)\n"
                              "\tNonPagedPool Max:          4096 (       16384 Kb)\n"
                              "\tCommit limit:              4096 (       16384 Kb)\n");
    free(text);
    memset(&vm, 0, sizeof vm);
    f = open_memstream(&text, &len);
    assert_int_equal(kdh_pool_print_vm(f, &vm), KDH_OK);
    fclose(f);
    assert_string_equal(text, "\t(the debugger data gives no pool totals)\n");
    free(text);
}

/* Reboot detection from the counters alone: most tags in common going down is a new kernel; one
 * tag wrapping its 32-bit counter is not, nor is a table with a single tag in common. */
static void test_restarted(void **state)
{
    (void)state;
    uint8_t b[3 * 0x28];
    kdh_err_t err = {0};
    kdh_pool_table_t before, after;
    kdh_pool_table_init(&before);
    kdh_pool_table_init(&after);
    x64_entry(b, 0x6B61654C, 100, 40, 600, 10, 5, 50);        /* Leak */
    x64_entry(b + 0x28, 0x30797342, 5000, 5000, 0, 0, 0, 0);  /* Bsy0 */
    x64_entry(b + 0x50, 0x656E6F4E, 0xFFFFFF00u, 0xFFFFFF00u, 0, 0, 0, 0); /* None, about to wrap */
    assert_int_equal(kdh_pool_parse(&before, b, sizeof b, 8, 3, &err), KDH_OK);
    /* the same kernel later: None wrapped, the others grew */
    x64_entry(b, 0x6B61654C, 120, 50, 700, 10, 5, 50);
    x64_entry(b + 0x28, 0x30797342, 6000, 6000, 0, 0, 0, 0);
    x64_entry(b + 0x50, 0x656E6F4E, 0x10, 0x10, 0, 0, 0, 0);
    assert_int_equal(kdh_pool_parse(&after, b, sizeof b, 8, 3, &err), KDH_OK);
    assert_int_equal(kdh_pool_restarted(&before, &after), 0);
    /* a new kernel: every counter small again */
    kdh_pool_table_free(&after);
    x64_entry(b, 0x6B61654C, 3, 1, 20, 0, 0, 0);
    x64_entry(b + 0x28, 0x30797342, 40, 40, 0, 0, 0, 0);
    x64_entry(b + 0x50, 0x656E6F4E, 2, 2, 0, 0, 0, 0);
    assert_int_equal(kdh_pool_parse(&after, b, sizeof b, 8, 3, &err), KDH_OK);
    assert_int_equal(kdh_pool_restarted(&before, &after), 1);
    /* only one tag in common: no verdict from one counter */
    kdh_pool_table_free(&after);
    x64_entry(b, 0x6B61654C, 3, 1, 20, 0, 0, 0);
    assert_int_equal(kdh_pool_parse(&after, b, 0x28, 8, 1, &err), KDH_OK);
    assert_int_equal(kdh_pool_restarted(&before, &after), 0);
    kdh_pool_table_free(&after);
    kdh_pool_table_free(&before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x64),
        cmocka_unit_test(test_x86_and_merge),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_sort_and_print),
        cmocka_unit_test(test_vm_print),
        cmocka_unit_test(test_restarted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
