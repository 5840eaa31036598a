/* test_pooltag_oom.c: a pooltag.txt larger than the loader's first 64 KiB buffer, read once with
 * memory to spare (every written line must come back) and once with the buffer growth failing
 * (the load must fail with KDH_ENOMEM, not parse the part read so far). realloc is wrapped at
 * link time (-Wl,--wrap=realloc) so the failure is deterministic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kdh/pooltag.h"

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

/* only the next realloc fails (the loader's first buffer growth); later ones, such as the
 * parser's, succeed, so a loader that ignores the failure goes on to parse a truncated file */
static int fail_next_realloc;

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_next_realloc) {
        fail_next_realloc = 0;
        return NULL;
    }
    return __real_realloc(p, n);
}

#define NLINES 4000 /* 4000 lines of 44 bytes: 176000 bytes, so the 64 KiB buffer grows twice */

static char path[64];

static int write_file(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/kdh_pooltag_oom_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f)
        return -1;
    for (int i = 0; i < NLINES; i++) {
        /* a distinct 4-character tag per line: 'T' and three letters */
        fprintf(f, "T%c%c%c - drv%04d.sys - a description padding\n", 'a' + i / 676 % 26,
                'a' + i / 26 % 26, 'a' + i % 26, i);
    }
    return fclose(f) == 0 ? 0 : -1;
}

static int remove_file(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void test_large_file_loads_every_line(void **state)
{
    (void)state;
    kdh_pooltag_t *pt = NULL;
    kdh_err_t err = {0};
    assert_int_equal(kdh_pooltag_load(&pt, path, &err), KDH_OK);
    assert_int_equal(kdh_pooltag_count(pt), NLINES);
    assert_int_equal(kdh_pooltag_malformed(pt), 0);
    /* line 3999 (0-based): 3999/676 = 5 (f), 3999/26 = 153, 153 mod 26 = 23 (x), 3999 mod 26 = 21 (v) */
    const kdh_pooltag_entry_t *e = kdh_pooltag_lookup(pt, "Tfxv");
    assert_non_null(e);
    assert_string_equal(e->binary, "drv3999.sys");
    kdh_pooltag_free(pt);
}

static void test_failed_growth_fails_the_load(void **state)
{
    (void)state;
    kdh_pooltag_t *pt = (kdh_pooltag_t *)&pt; /* must be reset to NULL on failure */
    kdh_err_t err = {0};
    fail_next_realloc = 1;
    int rc = kdh_pooltag_load(&pt, path, &err);
    fail_next_realloc = 0;
    assert_int_equal(rc, KDH_ENOMEM);
    assert_null(pt);
    assert_non_null(strstr(err.msg, "out of memory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_file_loads_every_line),
        cmocka_unit_test(test_failed_growth_fails_the_load),
    };
    return cmocka_run_group_tests(tests, write_file, remove_file);
}
