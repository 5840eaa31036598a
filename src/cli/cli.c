/* cli.c: the kdharvest dispatcher: top-level options (--help, --version), lookup of the
 * subcommand in the table, the built-in help/version commands and the shared error lines.
 * Output convention: requested output (usage, version) on stdout, problems on stderr. */
#include "kdh/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifndef KDH_VERSION
#define KDH_VERSION "0.0.0"
#endif

void kdh_cli_errorf(const char *fmt, ...)
{
    va_list ap;
    fputs("kdharvest: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int kdh_cli_usage_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("kdharvest: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (cmd)
        fprintf(stderr, "Try 'kdharvest %s --help'.\n", cmd);
    else
        fputs("Try 'kdharvest --help'.\n", stderr);
    return KDH_CLI_EXIT_USAGE;
}

int kdh_cli_fail(const kdh_err_t *err)
{
    if (err && err->msg[0])
        kdh_cli_errorf("%s", err->msg);
    else
        kdh_cli_errorf("%s", kdh_strerror(err ? err->code : KDH_EIO));
    return KDH_CLI_EXIT_FAIL;
}

const kdh_cli_command_t *kdh_cli_find(const char *name)
{
    for (size_t i = 0; i < kdh_cli_command_count; i++)
        if (strcmp(kdh_cli_commands[i].name, name) == 0)
            return &kdh_cli_commands[i];
    return NULL;
}

void kdh_cli_print_usage(void *stream)
{
    FILE *f = stream;
    size_t width = 0;
    for (size_t i = 0; i < kdh_cli_command_count; i++) {
        size_t n = strlen(kdh_cli_commands[i].name);
        if (n > width)
            width = n;
    }
    fputs("usage: kdharvest [--help | --version] <command> [options]\n"
          "Harvests pool-allocation stacks from a Windows target over the kernel-debugger serial link.\n"
          "\ncommands:\n", f);
    for (size_t i = 0; i < kdh_cli_command_count; i++)
        fprintf(f, "  %-*s  %s\n", (int)width, kdh_cli_commands[i].name, kdh_cli_commands[i].summary);
    fputs("\nRun 'kdharvest help <command>' for the options of one command.\n", f);
}

static int print_version(void)
{
    printf("kdharvest %s\n", KDH_VERSION);
    return KDH_CLI_EXIT_OK;
}

int kdh_cli_cmd_version(int argc, char **argv)
{
    kdh_cli_opt_t o = {.cmd = "version", .usage = "\nPrints the kdharvest version.\n"};
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code;
    if (o.optind < argc)
        return kdh_cli_usage_errorf("version", "unexpected argument '%s'", argv[o.optind]);
    return print_version();
}

int kdh_cli_cmd_help(int argc, char **argv)
{
    kdh_cli_opt_t o = {.cmd = "help", .usage = "[<command>]\nShows the usage of kdharvest or of one command.\n"};
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code;
    if (o.optind >= argc) {
        kdh_cli_print_usage(stdout);
        return KDH_CLI_EXIT_OK;
    }
    if (argc - o.optind > 1)
        return kdh_cli_usage_errorf("help", "help takes one command name, got %d", argc - o.optind);
    const kdh_cli_command_t *cmd = kdh_cli_find(argv[o.optind]);
    if (!cmd)
        return kdh_cli_usage_errorf(NULL, "unknown command '%s'", argv[o.optind]);
    char name[64], opt[] = "--help";
    snprintf(name, sizeof name, "%s", cmd->name);
    char *sub_argv[] = {name, opt, NULL};
    return cmd->handler(2, sub_argv);
}

int kdh_cli_main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("kdharvest: no command given\n", stderr);
        kdh_cli_print_usage(stderr);
        return KDH_CLI_EXIT_USAGE;
    }
    const char *first = argv[1];
    if (strcmp(first, "-h") == 0 || strcmp(first, "--help") == 0) {
        kdh_cli_print_usage(stdout);
        return KDH_CLI_EXIT_OK;
    }
    if (strcmp(first, "-V") == 0 || strcmp(first, "--version") == 0)
        return print_version();
    if (first[0] == '-')
        return kdh_cli_usage_errorf(NULL, "unrecognized option '%s' (options go after the command)", first);
    const kdh_cli_command_t *cmd = kdh_cli_find(first);
    if (!cmd)
        return kdh_cli_usage_errorf(NULL, "unknown command '%s'", first);
    int rc = cmd->handler(argc - 1, argv + 1);
    fflush(stdout);
    return rc;
}
