/* test_cli.c: the kdharvest front door, run as the built executable (posix_spawn, exit codes,
 * exact first lines of stdout/stderr) and, for the shared option helpers, in-process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kdh/cli.h"

#define KDHARVEST KDH_BINARY_DIR "/src/cli/kdharvest"

extern char **environ;

typedef struct run {
    int status;   /* exit code, or -1 when killed */
    char out[8192];
    char err[8192];
} run_t;

static void slurp(int fd, char *buf, size_t cap)
{
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
}

/* Runs kdharvest with the given arguments (NULL-terminated), stdout/stderr to temp files. */
static void run_kdharvest(run_t *r, ...)
{
    char *argv[16] = {(char *)"kdharvest"};
    int argc = 1;
    va_list ap;
    va_start(ap, r);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    char outp[] = "/tmp/kdh-cli-out-XXXXXX", errp[] = "/tmp/kdh-cli-err-XXXXXX";
    int ofd = mkstemp(outp), efd = mkstemp(errp);
    assert_true(ofd >= 0 && efd >= 0);
    unlink(outp);
    unlink(errp);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, ofd, 1);
    posix_spawn_file_actions_adddup2(&fa, efd, 2);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, KDHARVEST, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    slurp(ofd, r->out, sizeof r->out);
    slurp(efd, r->err, sizeof r->err);
}

/* Asserts that text starts with the given line (which includes its '\n'). */
static void assert_first_line(const char *text, const char *line)
{
    if (strncmp(text, line, strlen(line)) != 0)
        fail_msg("first line: expected \"%s\", got \"%.*s\"", line, (int)strcspn(text, "\n") + 1, text);
}

/* The usage listing has a line "  <name><spaces><summary>" (the padding follows the longest name). */
static int has_command_line(const char *out, const char *name, const char *summary)
{
    char key[64];
    snprintf(key, sizeof key, "\n  %s ", name);
    for (const char *p = strstr(out, key); p; p = strstr(p + 1, key)) {
        const char *q = p + strlen(key);
        q += strspn(q, " ");
        if (strncmp(q, summary, strlen(summary)) == 0 && q[strlen(summary)] == '\n')
            return 1;
    }
    return 0;
}

static void test_help(void **state)
{
    static run_t r;
    const char *forms[] = {"--help", "-h", "help"};
    for (size_t i = 0; i < 3; i++) {
        run_kdharvest(&r, forms[i], NULL);
        assert_int_equal(r.status, 0);
        assert_first_line(r.out, "usage: kdharvest [--help | --version] <command> [options]\n");
        assert_string_equal(r.err, "");
        /* The listing shows the built-in commands with their one-line summaries. */
        assert_true(has_command_line(r.out, "help", "show the usage of kdharvest or of one command"));
        assert_true(has_command_line(r.out, "version", "print the kdharvest version"));
        assert_true(has_command_line(r.out, "selftest-link",
                                     "check the serial link end to end over a pseudo-terminal (no target needed)"));
        assert_false(has_command_line(r.out, "versio", "print the kdharvest version"));
    }
}

static void test_version(void **state)
{
    static run_t r;
    run_kdharvest(&r, "--version", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "kdharvest " KDH_VERSION "\n");
    assert_string_equal(r.err, "");
    run_kdharvest(&r, "version", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "kdharvest " KDH_VERSION "\n");
}

static void test_no_command(void **state)
{
    static run_t r;
    run_kdharvest(&r, NULL);
    assert_int_equal(r.status, 2);
    assert_first_line(r.err, "kdharvest: no command given\n");
    assert_string_equal(r.out, "");
}

static void test_unknown_command(void **state)
{
    static run_t r;
    run_kdharvest(&r, "frobnicate", "--x", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "kdharvest: unknown command 'frobnicate'\nTry 'kdharvest --help'.\n");
    assert_string_equal(r.out, "");
    run_kdharvest(&r, "help", "frobnicate", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "kdharvest: unknown command 'frobnicate'\nTry 'kdharvest --help'.\n");
}

static void test_bad_options(void **state)
{
    static run_t r;
    run_kdharvest(&r, "--bogus", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err,
                        "kdharvest: unrecognized option '--bogus' (options go after the command)\n"
                        "Try 'kdharvest --help'.\n");
    run_kdharvest(&r, "version", "--bogus", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "kdharvest: unrecognized option '--bogus'\nTry 'kdharvest version --help'.\n");
    run_kdharvest(&r, "version", "-q", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "kdharvest: unrecognized option '-q'\nTry 'kdharvest version --help'.\n");
    run_kdharvest(&r, "version", "extra", NULL);
    assert_int_equal(r.status, 2);
    assert_first_line(r.err, "kdharvest: unexpected argument 'extra'\n");
    assert_string_equal(r.out, "");
}

static void test_help_for_command(void **state)
{
    static run_t r;
    run_kdharvest(&r, "help", "version", NULL);
    assert_int_equal(r.status, 0);
    assert_first_line(r.out, "usage: kdharvest version\n");
    run_kdharvest(&r, "version", "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_first_line(r.out, "usage: kdharvest version\n");
}

/* ---- in-process: the shared option helper ---- */

/* Captures what fn writes on stderr. */
static int capture_stderr(char *buf, size_t cap, int (*fn)(void *), void *arg)
{
    fflush(stderr);
    char path[] = "/tmp/kdh-cli-cap-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    slurp(fd, buf, cap);
    return rc;
}

typedef struct parse_case {
    int argc;
    char *argv[6];
    unsigned long long baud;
    int verbose;
    int operands_at;
} parse_case_t;

static int parse_fake(void *arg)
{
    parse_case_t *pc = arg;
    static const struct option longopts[] = {
        {"baud", required_argument, NULL, 'b'},
        {"verbose", no_argument, NULL, 'v'},
        {0, 0, 0, 0},
    };
    kdh_cli_opt_t o = {.cmd = "fake", .usage = "[--baud N] [-v]\n", .shortopts = "b:v", .longopts = longopts};
    int c;
    while ((c = kdh_cli_opt_next(&o, pc->argc, pc->argv)) > 0) {
        if (c == 'b') {
            int rc = kdh_cli_parse_u64("fake", "--baud", o.arg, 9600, 115200, &pc->baud);
            if (rc)
                return rc;
        } else if (c == 'v') {
            pc->verbose++;
        }
    }
    pc->operands_at = o.optind;
    return c == KDH_CLI_OPT_EXIT ? o.exit_code : 0;
}

static void test_opt_helper(void **state)
{
    char err[1024];
    parse_case_t ok = {.argc = 4, .argv = {"fake", "--baud", "57600", "-v", NULL}};
    assert_int_equal(capture_stderr(err, sizeof err, parse_fake, &ok), 0);
    assert_int_equal(ok.baud, 57600);
    assert_int_equal(ok.verbose, 1);
    assert_int_equal(ok.operands_at, 4);
    assert_string_equal(err, "");

    /* Parsing twice in one process works (getopt state is reset). */
    parse_case_t ok2 = {.argc = 4, .argv = {"fake", "-vb0x2580", "op1", "op2", NULL}};
    assert_int_equal(capture_stderr(err, sizeof err, parse_fake, &ok2), 0);
    assert_int_equal(ok2.baud, 9600);
    assert_int_equal(ok2.verbose, 1);
    assert_int_equal(ok2.operands_at, 2);

    parse_case_t missing = {.argc = 2, .argv = {"fake", "--baud", NULL}};
    assert_int_equal(capture_stderr(err, sizeof err, parse_fake, &missing), 2);
    assert_string_equal(err, "kdharvest: option '--baud' needs a value\nTry 'kdharvest fake --help'.\n");

    parse_case_t missing_short = {.argc = 2, .argv = {"fake", "-b", NULL}};
    assert_int_equal(capture_stderr(err, sizeof err, parse_fake, &missing_short), 2);
    assert_string_equal(err, "kdharvest: option '-b' needs a value\nTry 'kdharvest fake --help'.\n");

    parse_case_t range = {.argc = 3, .argv = {"fake", "--baud", "4800", NULL}};
    assert_int_equal(capture_stderr(err, sizeof err, parse_fake, &range), 2);
    assert_string_equal(err, "kdharvest: --baud: 4800 is outside 9600..115200\nTry 'kdharvest fake --help'.\n");

    const char *not_numbers[] = {"12a", "-1", "", "99999999999999999999", "+5"};
    for (size_t i = 0; i < 5; i++) {
        parse_case_t bad = {.argc = 3, .argv = {"fake", "--baud", (char *)not_numbers[i], NULL}};
        assert_int_equal(capture_stderr(err, sizeof err, parse_fake, &bad), 2);
        char want[128];
        snprintf(want, sizeof want, "kdharvest: --baud: '%s' is not a number\n", not_numbers[i]);
        assert_first_line(err, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_no_command),
        cmocka_unit_test(test_unknown_command),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_help_for_command),
        cmocka_unit_test(test_opt_helper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
