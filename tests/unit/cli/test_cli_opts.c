/* test_cli_opts.c: the shared option loop's -h output, captured from stdout and compared with
 * the exact text, including a command that declares no usage text at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kdh/cli.h"

/* Runs `<cmd> -h` through kdh_cli_opt_next with stdout sent to a temporary file; returns the
 * captured text in out. */
static int help_output(const char *usage, char *out, size_t cap)
{
    kdh_cli_opt_t o = {.cmd = "frob", .usage = usage};
    char a0[] = "frob", a1[] = "-h";
    char *argv[] = {a0, a1, NULL};
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
    int r = kdh_cli_opt_next(&o, 2, argv);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    assert_int_equal(o.exit_code, KDH_CLI_EXIT_OK);
    return r;
}

static void test_help_with_usage(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(help_output("[--baud N]\n  --baud N  line speed\n", out, sizeof out), KDH_CLI_OPT_EXIT);
    assert_string_equal(out, "usage: kdharvest frob [--baud N]\n  --baud N  line speed\n");
    /* usage text without a final newline gets one */
    assert_int_equal(help_output("DIR", out, sizeof out), KDH_CLI_OPT_EXIT);
    assert_string_equal(out, "usage: kdharvest frob DIR\n");
}

static void test_help_without_usage(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(help_output(NULL, out, sizeof out), KDH_CLI_OPT_EXIT);
    assert_string_equal(out, "usage: kdharvest frob\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_with_usage),
        cmocka_unit_test(test_help_without_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
