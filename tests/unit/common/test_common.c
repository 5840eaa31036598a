/* Little-endian helpers, bounds checks and error formatting. Expected bytes written by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kdh/common.h"

static void test_le_roundtrip(void **state)
{
    (void)state;
    uint8_t b[8];
    kdh_put_u32(b, 0x80800001u);
    uint8_t want[4] = {0x01, 0x00, 0x80, 0x80};
    assert_memory_equal(b, want, 4);
    assert_int_equal(kdh_get_u32(b), 0x80800001u);
    kdh_put_u64(b, 0xfffff80012345678ull);
    assert_int_equal(b[0], 0x78);
    assert_int_equal(b[7], 0xff);
    assert_true(kdh_get_u64(b) == 0xfffff80012345678ull);
    kdh_put_u16(b, 0x3146);
    assert_int_equal(b[0], 0x46);
    assert_int_equal(kdh_get_u16(b), 0x3146);
}

static void test_bounds(void **state)
{
    (void)state;
    assert_true(kdh_in_bounds(0, 10, 10));
    assert_false(kdh_in_bounds(1, 10, 10));
    assert_false(kdh_in_bounds(UINT64_MAX, 2, 10));
    assert_false(kdh_in_bounds(2, UINT64_MAX, 10));
    assert_true(kdh_sign_extend32(0x82b2f88cu) == 0xffffffff82b2f88cull);
    assert_true(kdh_sign_extend32(0x00401000u) == 0x401000ull);
}

static void test_err(void **state)
{
    (void)state;
    kdh_err_t e;
    assert_int_equal(kdh_err_set(&e, KDH_ECORRUPT, "bad %s at %d", "header", 12), KDH_ECORRUPT);
    assert_string_equal(e.msg, "bad header at 12");
    assert_int_equal(kdh_err_set(NULL, KDH_EIO, "x"), KDH_EIO);
    assert_string_equal(kdh_strerror(KDH_ETIMEDOUT), "timed out");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_le_roundtrip),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
