/* opts.c: the option-parsing helper shared by all subcommands: a getopt_long loop that adds
 * -h/--help everywhere and turns every parse problem into the same one-line error plus hint,
 * and a bounded number parser, so that each command file only lists its options. */
#include "kdh/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kdh_cli_print_cmd_usage(const kdh_cli_opt_t *o)
{
    /* a command without usage text prints the bare "usage: kdharvest <cmd>" line */
    const char *u = o->usage ? o->usage : "\n";
    printf("usage: kdharvest %s%s%s", o->cmd, u[0] == '\n' ? "" : " ", u);
    size_t n = strlen(u);
    if (n == 0 || u[n - 1] != '\n')
        putchar('\n');
}

/* Builds the getopt strings once: ':' first so getopt reports a missing argument as ':' and
 * stays silent (we print our own line), then 'h', then the command's short options. */
static int prepare(kdh_cli_opt_t *o)
{
    const char *s = o->shortopts ? o->shortopts : "";
    if (strlen(s) + 3 > sizeof o->short_)
        return -1;
    snprintf(o->short_, sizeof o->short_, ":h%s", s);
    size_t n = 0;
    if (o->longopts)
        for (; o->longopts[n].name; n++)
            if (n >= KDH_CLI_MAX_OPTS)
                return -1;
    if (n)
        memcpy(o->long_, o->longopts, n * sizeof o->long_[0]);
    o->long_[n] = (struct option){"help", no_argument, NULL, 'h'};
    o->long_[n + 1] = (struct option){0, 0, 0, 0};
    return 0;
}

int kdh_cli_opt_next(kdh_cli_opt_t *o, int argc, char **argv)
{
    if (!o->started_) {
        if (prepare(o) < 0) {
            kdh_cli_errorf("%s: too many options declared", o->cmd);
            o->exit_code = KDH_CLI_EXIT_FAIL;
            return KDH_CLI_OPT_EXIT;
        }
        o->started_ = 1;
        optind = 0; /* glibc: 0 re-initialises getopt, needed when kdh_cli_main runs twice */
        opterr = 0;
    }
    int c = getopt_long(argc, argv, o->short_, o->long_, NULL);
    o->optind = optind;
    o->arg = optarg;
    if (c == -1)
        return KDH_CLI_OPT_END;
    if (c == 'h') {
        kdh_cli_print_cmd_usage(o);
        o->exit_code = KDH_CLI_EXIT_OK;
        return KDH_CLI_OPT_EXIT;
    }
    if (c == '?' || c == ':') {
        /* For a long option getopt leaves the offending word at argv[optind-1]; for a short
         * one (possibly inside a cluster such as -xq) only optopt is reliable. */
        const char *word = (optind > 0 && optind <= argc) ? argv[optind - 1] : "";
        char shortbuf[3] = {'-', (char)optopt, 0};
        const char *what = (strncmp(word, "--", 2) == 0 || optopt == 0) ? word : shortbuf;
        if (c == ':')
            o->exit_code = kdh_cli_usage_errorf(o->cmd, "option '%s' needs a value", what);
        else
            o->exit_code = kdh_cli_usage_errorf(o->cmd, "unrecognized option '%s'", what);
        return KDH_CLI_OPT_EXIT;
    }
    return c;
}

int kdh_cli_parse_u64(const char *cmd, const char *what, const char *s, unsigned long long min,
                      unsigned long long max, unsigned long long *out)
{
    char *end = NULL;
    if (!s || !*s || *s == '-' || *s == '+')
        return kdh_cli_usage_errorf(cmd, "%s: '%s' is not a number", what, s ? s : "");
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return kdh_cli_usage_errorf(cmd, "%s: '%s' is not a number", what, s);
    if (v < min || v > max)
        return kdh_cli_usage_errorf(cmd, "%s: %s is outside %llu..%llu", what, s, min, max);
    *out = v;
    return 0;
}
