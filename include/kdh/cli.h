/* kdh/cli.h: the kdharvest command line: the subcommand table, the dispatcher, and small shared
 * helpers (option parsing, number parsing, error lines) so each command's file stays short.
 * Exit codes: 0 success, 1 the command failed (reason printed), 2 usage error. */
#ifndef KDH_CLI_H
#define KDH_CLI_H

#include <getopt.h>
#include <stddef.h>

#include "kdh/common.h"

enum {
    KDH_CLI_EXIT_OK = 0,
    KDH_CLI_EXIT_FAIL = 1,
    KDH_CLI_EXIT_USAGE = 2
};

/* A subcommand handler gets argv[0] = the subcommand name and returns the process exit code.
 * `kdharvest help <cmd>` calls it with the single option --help. */
typedef int (*kdh_cli_handler_t)(int argc, char **argv);

typedef struct kdh_cli_command {
    const char *name;      /* as typed: "selftest-link" */
    const char *summary;   /* one line for the usage listing */
    kdh_cli_handler_t handler;
} kdh_cli_command_t;

/* The table lives in src/cli/commands.c. */
extern const kdh_cli_command_t kdh_cli_commands[];
extern const size_t kdh_cli_command_count;

/* Entry point of the kdharvest executable. */
int kdh_cli_main(int argc, char **argv);

/* Looks a subcommand up by exact name; NULL when unknown. */
const kdh_cli_command_t *kdh_cli_find(const char *name);

/* Prints the top-level usage (the command table) to the given stream. */
void kdh_cli_print_usage(void *stream);

/* ---- shared helpers for command files ---- */

/* `kdharvest run --config FILE`: every target of the file in this process (cmd_run_config.c). */
int kdh_cli_run_config(const char *path, int quiet);

/* "kdharvest: <message>\n" on stderr. */
void kdh_cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same line plus "Try 'kdharvest <cmd> --help'." (or 'kdharvest --help' when cmd is NULL);
 * returns KDH_CLI_EXIT_USAGE so that handlers can `return kdh_cli_usage_errorf(...)`. */
int kdh_cli_usage_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints err's message (or its code's text when empty) and returns KDH_CLI_EXIT_FAIL. */
int kdh_cli_fail(const kdh_err_t *err);

/* getopt_long wrapper. Fill cmd, usage, shortopts and longopts, then loop:
 *     int c;
 *     while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) switch (c) { ... }
 *     if (c == KDH_CLI_OPT_EXIT) return o.exit_code;
 * -h/--help is handled for every command (usage printed on stdout, exit_code 0); an unknown
 * option or a missing argument prints one line and a hint (exit_code 2). After the loop,
 * o.optind is the index of the first operand. */
#define KDH_CLI_MAX_OPTS 32
enum { KDH_CLI_OPT_END = 0, KDH_CLI_OPT_EXIT = -1 };

typedef struct kdh_cli_opt {
    const char *cmd;                 /* subcommand name for messages */
    const char *usage;               /* "[--baud N] [--packets N]\n  --baud N  ...\n" */
    const char *shortopts;           /* without -h and without a leading ':' ; may be NULL */
    const struct option *longopts;   /* terminated by a zero entry; may be NULL */
    /* outputs */
    const char *arg;                 /* argument of the option just returned */
    int optind;                      /* first operand after the loop ends */
    int exit_code;                   /* valid when KDH_CLI_OPT_EXIT was returned */
    /* private */
    int started_;
    char short_[96];
    struct option long_[KDH_CLI_MAX_OPTS + 2];
} kdh_cli_opt_t;

int kdh_cli_opt_next(kdh_cli_opt_t *o, int argc, char **argv);

/* Prints the command's usage ("usage: kdharvest <cmd> <usage>") to stdout. */
void kdh_cli_print_cmd_usage(const kdh_cli_opt_t *o);

/* Parses a decimal (or 0x hex) unsigned number in [min, max] for option `what` of command
 * `cmd`; on failure prints a usage error and returns KDH_CLI_EXIT_USAGE, else 0. */
int kdh_cli_parse_u64(const char *cmd, const char *what, const char *s, unsigned long long min,
                      unsigned long long max, unsigned long long *out);

#endif
