/* test_pair_unit.c: leak accounting's pure parts against hand-worked values: POOL_HEADER sizes in
 * the public x64 and x86 layouts, the live block map (insert, lookup, take, growth past thousands
 * of blocks, an address reused), and the journal's breakpoint records (set, cleared, another
 * kernel, damaged lines). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_int.h"

#define TAG_LEAK 0x6B61654Cu /* 'Leak' */

static void put32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static void test_header(void **state)
{
    (void)state;
    uint8_t h[8];
    /* x64: PreviousSize 3, PoolIndex 0, BlockSize 5 (80 bytes), PoolType 1+1 (paged) */
    put32(h, 0x02050003u);
    put32(h + 4, TAG_LEAK);
    assert_int_equal(hv_pool_header_size(h, 8, TAG_LEAK), 80);
    /* the PROTECTED_POOL bit on the stored tag does not matter */
    put32(h + 4, TAG_LEAK | 0x80000000u);
    assert_int_equal(hv_pool_header_size(h, 8, TAG_LEAK), 80);
    /* another tag, a free block (PoolType 0), no header (BlockSize < 2) */
    put32(h + 4, 0x656E6F4Eu);
    assert_int_equal(hv_pool_header_size(h, 8, TAG_LEAK), 0);
    put32(h + 4, TAG_LEAK);
    put32(h, 0x00050003u);
    assert_int_equal(hv_pool_header_size(h, 8, TAG_LEAK), 0);
    put32(h, 0x01010000u);
    assert_int_equal(hv_pool_header_size(h, 8, TAG_LEAK), 0);
    /* x86: PreviousSize:9 PoolIndex:7 BlockSize:9 PoolType:7; BlockSize 0x105 = 261 units of 8 */
    put32(h, (0x105u << 16) | (2u << 25) | 0x7u);
    assert_int_equal(hv_pool_header_size(h, 4, TAG_LEAK), 261 * 8);
    /* the same word read as x64 is BlockSize 5, PoolType 5 */
    assert_int_equal(hv_pool_header_size(h, 8, TAG_LEAK), 80);
}

static void test_live(void **state)
{
    (void)state;
    hv_pair_t *p = calloc(1, sizeof *p);
    uint64_t size = 0;
    assert_int_equal(hv_live_get(p, 0xffffb090e0000250ull, &size, 0), 0);
    for (uint64_t i = 0; i < 20000; i++)
        assert_int_equal(hv_live_put(p, 0xffffb090e0000000ull + i * 0x40, 64 + (i % 7) * 16), KDH_OK);
    assert_int_equal(p->live_n, 20000);
    assert_int_equal(hv_live_get(p, 0xffffb090e0000000ull + 1234 * 0x40, &size, 0), 1);
    assert_int_equal(size, 64 + (1234 % 7) * 16);
    /* every other block freed, then looked up */
    for (uint64_t i = 0; i < 20000; i += 2)
        assert_int_equal(hv_live_get(p, 0xffffb090e0000000ull + i * 0x40, &size, 1), 1);
    assert_int_equal(p->live_n, 10000);
    assert_int_equal(hv_live_get(p, 0xffffb090e0000000ull + 2 * 0x40, &size, 0), 0);
    assert_int_equal(hv_live_get(p, 0xffffb090e0000000ull + 3 * 0x40, &size, 0), 1);
    /* an address allocated again while live: one block, the new size */
    assert_int_equal(hv_live_put(p, 0xffffb090e0000000ull + 3 * 0x40, 4000), KDH_OK);
    assert_int_equal(p->live_n, 10000);
    assert_int_equal(hv_live_get(p, 0xffffb090e0000000ull + 3 * 0x40, &size, 1), 1);
    assert_int_equal(size, 4000);
    assert_int_equal(hv_live_get(p, 0xffffb090e0000000ull + 3 * 0x40, &size, 1), 0);
    hv_pair_free_all(p);
    free(p);
}

static void test_journal_bps(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh-pair-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    kdh_err_t err;
    const uint64_t kb = 0xfffff8000f800000ull, kb2 = 0xfffff80010000000ull;
    assert_int_equal(hv_journal_bp(dir, "bp_set", 0xfffff8000f8d1259ull, 1, kb, 1, &err), KDH_OK);
    assert_int_equal(hv_journal_bp(dir, "bp_set", 0xfffff8000f8d10a8ull, 2, kb, 0, &err), KDH_OK);
    assert_int_equal(hv_journal_bp(dir, "bp_clear", 0xfffff8000f8d1259ull, 1, kb, 0, &err), KDH_OK);
    assert_int_equal(hv_journal_bp(dir, "bp_set", 0xfffff8001008a000ull, 1, kb2, 1, &err), KDH_OK);
    /* a torn line and a PoolHitTag record are not breakpoints */
    assert_int_equal(hv_journal_append(dir, "arm", 0xfffff8000f803000ull, 0xffffff0f, TAG_LEAK, kb, &err), KDH_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("{\"t\":1,\"op\":\"bp_clear\",\"what\":\"breakpoint\",\"addr\":\"0xff", f);
    fclose(f);
    hv_journal_bps_t b;
    hv_journal_read(dir, NULL, &b);
    assert_int_equal(b.n, 2);
    int seen = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (b.kernel_base[i] == kb) {
            assert_int_equal(b.handle[i], 2);
            assert_true(b.addr[i] == 0xfffff8000f8d10a8ull);
            seen |= 1;
        } else {
            assert_true(b.kernel_base[i] == kb2);
            assert_int_equal(b.handle[i], 1);
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    hv_journal_state_t js;
    hv_journal_read(dir, &js, NULL);
    assert_int_equal(js.armed, 1);
    /* both in one pass: the same as each alone */
    hv_journal_state_t js2;
    hv_journal_bps_t b2;
    hv_journal_read(dir, &js2, &b2);
    assert_memory_equal(&js2, &js, sizeof js);
    assert_memory_equal(&b2, &b, sizeof b);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_live),
        cmocka_unit_test(test_journal_bps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
