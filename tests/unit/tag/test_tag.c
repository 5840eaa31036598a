/* test_tag.c: tag text to DWORD against values worked out by hand from the ASCII table, and the
 * commands `kdharvest tag` prints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kdh/tag.h"

static void test_dword(void **state)
{
    uint32_t dw = 0;
    kdh_err_t err = {0};
    /* 'D'=0x44 'd'=0x64 'k'=0x6b ' '=0x20, first character in the low byte. */
    assert_int_equal(kdh_tag_to_dword("Ddk ", &dw, &err), KDH_OK);
    assert_int_equal(dw, 0x206b6444);
    assert_int_equal(kdh_tag_to_dword("Ddk", &dw, &err), KDH_OK); /* padded with a space */
    assert_int_equal(dw, 0x206b6444);
    /* 'L'=0x4c 'e'=0x65 'a'=0x61 'k'=0x6b */
    assert_int_equal(kdh_tag_to_dword("Leak", &dw, &err), KDH_OK);
    assert_int_equal(dw, 0x6b61654c);
    assert_int_equal(kdh_tag_to_dword("A", &dw, &err), KDH_OK);
    assert_int_equal(dw, 0x20202041);
    char back[5];
    kdh_tag_from_dword(0x6b61654c, back);
    assert_string_equal(back, "Leak");
    kdh_tag_from_dword(0xffffff0f, back); /* PoolHitTag's idle value is not a tag */
    assert_string_equal(back, "....");
}

static void test_rejects(void **state)
{
    uint32_t dw = 0x12345678;
    kdh_err_t err = {0};
    assert_int_equal(kdh_tag_to_dword("", &dw, &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "empty"));
    assert_int_equal(kdh_tag_to_dword(NULL, &dw, &err), KDH_EINVAL);
    assert_int_equal(kdh_tag_to_dword("Leaks", &dw, &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "at most 4"));
    assert_int_equal(kdh_tag_to_dword("Le\tk", &dw, &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "0x09"));
    assert_int_equal(kdh_tag_to_dword("L\xc3\xa9", &dw, &err), KDH_EINVAL);
    assert_int_equal(kdh_tag_to_dword("   ", &dw, &err), KDH_EINVAL);
    assert_int_equal(dw, 0x12345678); /* untouched on error */
    assert_null(strchr(err.msg, '\n'));
}

static void test_describe(void **state)
{
    char t[5], buf[2048];
    kdh_err_t err = {0};
    assert_int_equal(kdh_tag_normalize("Ddk", t, &err), KDH_OK);
    assert_string_equal(t, "Ddk ");
    int n = kdh_tag_describe(t, "<unknown> - Default for driver allocated memory", buf, sizeof buf);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    assert_non_null(strstr(buf, "0x206b6444"));
    assert_non_null(strstr(buf, "ed nt!PoolHitTag 0x206b6444\n"));
    assert_non_null(strstr(buf, "reg add \"HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Memory "
                                "Management\" /v PoolTag /t REG_DWORD /d 0x206b6444 /f\n"));
    assert_non_null(strstr(buf, "reboot"));
    assert_non_null(strstr(buf, "bp nt!MmAllocateSpecialPool"));
    assert_non_null(strstr(buf, "owner        <unknown> - Default for driver allocated memory\n"));
    n = kdh_tag_describe(t, NULL, buf, sizeof buf);
    assert_null(strstr(buf, "owner"));
    /* A small buffer is never overrun and the full length is still reported. */
    char small[16];
    assert_int_equal(kdh_tag_describe(t, NULL, small, sizeof small), n);
    assert_int_equal(strlen(small), 15);
}

/* 'Leak' is 0x6b61654c; with PROTECTED_POOL (0x80000000) a caller passes 0xeb61654c. */
static void test_match(void **state)
{
    (void)state;
    assert_true(kdh_tag_match(0x6b61654c, 0x6b61654c));
    assert_true(kdh_tag_match(0xeb61654c, 0x6b61654c));
    assert_true(kdh_tag_match(0x6b61654c, 0xeb61654c));
    assert_false(kdh_tag_match(0x6b61654d, 0x6b61654c)); /* 'Meak' */
    assert_false(kdh_tag_match(0x4b61654c, 0x6b61654c)); /* 'LeaK': bit 29, not the high bit */
    assert_false(kdh_tag_match(0, 0x6b61654c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_dword), cmocka_unit_test(test_rejects),
                                       cmocka_unit_test(test_describe), cmocka_unit_test(test_match)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
