/* cmd_run.c: `kdharvest run`: harvest the allocation stacks of one pool tag from one target
 * (kdh_harvest), with a live status line on a terminal, plain periodic lines otherwise, and
 * clean detach on SIGINT/SIGTERM (SIGHUP reopens dbgprint.log). --config runs several targets
 * in this process (cmd_run_config.c). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kdh/cli.h"
#include "kdh/daemon.h"
#include "kdh/harvest.h"
#include "run_status.h"

static const char usage[] =
    "--port SPEC --tag TAG [options]\n"
    "Arms nt!PoolHitTag (or breakpoints, see --mode) for TAG on the target at SPEC, records the\n"
    "stack of every allocation and free with that tag, and writes a run directory (see\n"
    "docs/run-format.md). Ctrl-C detaches cleanly.\n"
    "  --config FILE     run every [target] of an INI file (config/kdharvest.ini) in this process\n"
    "  --port SPEC       /dev/ttyS0, /dev/serial/by-id/..., tcp://host:port or unix:/path\n"
    "  --baud N          serial speed (default 115200)\n"
    "  --tag TAG         pool tag, 1-4 characters\n"
    "  --mode MODE       hittag (default): nt!PoolHitTag, the kernel breaks on every hit;\n"
    "                    specialpool: breakpoints on nt!MmAllocateSpecialPool/MmFreeSpecialPool (the\n"
    "                    target must run special pool for TAG: registry PoolTag + reboot);\n"
    "                    entry: breakpoints on the exported ExAllocatePool*/ExFreePool* with the tag\n"
    "                    filtered on this side; no PDB needed, slow on busy machines\n"
    "  --pair            leak accounting: each captured allocation's block address (a one-shot\n"
    "                    breakpoint on its return) and size (its POOL_HEADER), frees matched to\n"
    "                    them by address, so the report shows outstanding blocks and bytes per stack\n"
    "  --out DIR         run directory (default logs/<target>/<UTC time>); an existing run continues\n"
    "  --target NAME     target name for logs/<target>/ and meta.json (default: from the port)\n"
    "  --symbols PATH    symbol path (srv*cache*url;dir;...), default _NT_SYMBOL_PATH\n"
    "  --symbol NAME=VAL symbol override, e.g. PoolHitTag=nt+0x1234 (repeatable)\n"
    "  --sample N        capture the stack of 1 in N hits, count the others (default 1)\n"
    "  --max-hits N      stop after N hits\n"
    "  --duration S      stop after S seconds\n"
    "  --stack-cap N     after N events of one stack, only count it\n"
    "  --max-stall PCT   disarm for 10 s when the target is stopped more than PCT% of a minute\n"
    "  --summary-interval S\n"
    "                    rewrite summary.txt every S seconds while armed (default 30)\n"
    "  --quiet           no status line\n";

enum {
    OPT_PORT = 256, OPT_BAUD, OPT_TAG, OPT_MODE, OPT_OUT, OPT_TARGET, OPT_SYMBOLS, OPT_SYMBOL, OPT_SAMPLE,
    OPT_MAX_HITS, OPT_DURATION, OPT_CAP, OPT_STALL, OPT_QUIET, OPT_CONFIG, OPT_PAIR, OPT_SUMMARY
};
static const struct option longopts[] = {
    {"port", required_argument, NULL, OPT_PORT},       {"baud", required_argument, NULL, OPT_BAUD},
    {"tag", required_argument, NULL, OPT_TAG},         {"mode", required_argument, NULL, OPT_MODE},
    {"out", required_argument, NULL, OPT_OUT},         {"target", required_argument, NULL, OPT_TARGET},
    {"symbols", required_argument, NULL, OPT_SYMBOLS}, {"symbol", required_argument, NULL, OPT_SYMBOL},
    {"sample", required_argument, NULL, OPT_SAMPLE},   {"max-hits", required_argument, NULL, OPT_MAX_HITS},
    {"duration", required_argument, NULL, OPT_DURATION}, {"stack-cap", required_argument, NULL, OPT_CAP},
    {"max-stall", required_argument, NULL, OPT_STALL}, {"quiet", no_argument, NULL, OPT_QUIET},
    {"config", required_argument, NULL, OPT_CONFIG},   {"pair", no_argument, NULL, OPT_PAIR},
    {"summary-interval", required_argument, NULL, OPT_SUMMARY},
    {0, 0, 0, 0}};

static volatile sig_atomic_t g_stop, g_reopen;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        g_reopen = 1;
    else
        g_stop = 1;
}

typedef struct run_ui {
    int tty;
    int quiet;
    double last_plain;
} run_ui_t;

void kdh_cli_status_text(const kdh_harvest_status_t *s, char *line, size_t len)
{
    snprintf(line, len,
             "%-10s hits %llu (alloc %llu, free %llu)  stacks %llu  %.1f hits/s  %.0f B/s  stall %.1f%%  %.0fs",
             s->state, (unsigned long long)s->hits, (unsigned long long)s->allocs, (unsigned long long)s->frees,
             (unsigned long long)s->unique_stacks, s->hits_per_s, s->bytes_per_s, s->stall_pct, s->elapsed_s);
}

static void on_status(void *ctx, const kdh_harvest_status_t *s)
{
    run_ui_t *ui = ctx;
    if (ui->quiet)
        return;
    char line[256];
    kdh_cli_status_text(s, line, sizeof line);
    if (ui->tty) {
        fprintf(stderr, "\r\033[K%s", line);
        if (strcmp(s->state, "done") == 0)
            fputc('\n', stderr);
    } else if (s->elapsed_s - ui->last_plain >= 10 || strcmp(s->state, "armed") != 0) {
        ui->last_plain = s->elapsed_s;
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static void on_notice(void *ctx, const char *line)
{
    run_ui_t *ui = ctx;
    fprintf(stderr, "%skdharvest: %s\n", ui->tty ? "\r\033[K" : "", line);
}

/* Runs one harvest with the terminal status line and the signal handlers; the caller's options
 * are copied, so no pointer to this frame's ui outlives the call. */
int kdh_cli_run_harvest(const kdh_harvest_opts_t *opts, int quiet, kdh_harvest_result_t *res)
{
    run_ui_t ui = {.tty = isatty(2), .quiet = quiet};
    kdh_harvest_opts_t ho = *opts;
    ho.on_status = on_status;
    ho.on_notice = on_notice;
    ho.ctx = &ui;
    ho.stop = &g_stop;
    ho.reopen = &g_reopen;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    kdh_err_t err = {0};
    int rc = kdh_harvest_run(&ho, res, &err);
    if (ui.tty && !quiet)
        fputc('\n', stderr);
    if (rc != KDH_OK)
        return kdh_cli_fail(&err);
    return KDH_CLI_EXIT_OK;
}

/* "logs/<target>/<YYYYmmddTHHMMSSZ>", target from the port's last path part. */
static void default_out(const char *target, char *out, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, len, "logs/%s/%s", target, stamp);
}

static void target_from_port(const char *port, char *out, size_t len)
{
    const char *p = strrchr(port, '/');
    p = p ? p + 1 : port;
    if (strncmp(p, "tcp:", 4) == 0)
        p += 4;
    snprintf(out, len, "%s", *p ? p : "target");
    for (char *q = out; *q; q++)
        if (*q == ':' || *q == '/' || *q == ' ')
            *q = '_';
}

int kdh_cli_cmd_run(int argc, char **argv)
{
    kdh_cli_opt_t o = {.cmd = "run", .usage = usage, .longopts = longopts};
    kdh_harvest_opts_t ho;
    memset(&ho, 0, sizeof ho);
    static const char *overrides[32];
    const char *target = NULL, *out = NULL, *config = NULL;
    int quiet = 0, c;
    unsigned long long v;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
        switch (c) {
        case OPT_PORT: ho.port = o.arg; break;
        case OPT_BAUD:
            if (kdh_cli_parse_u64("run", "--baud", o.arg, 1, 4000000, &v))
                return KDH_CLI_EXIT_USAGE;
            ho.baud = (unsigned)v;
            break;
        case OPT_TAG: ho.tag = o.arg; break;
        case OPT_MODE:
            if (kdh_harvest_mode_parse(o.arg, &ho.mode) != KDH_OK)
                return kdh_cli_usage_errorf("run", "--mode %s: use " KDH_HARVEST_MODE_NAMES, o.arg);
            break;
        case OPT_OUT: out = o.arg; break;
        case OPT_PAIR: ho.pair = 1; break;
        case OPT_TARGET: target = o.arg; break;
        case OPT_SYMBOLS: ho.symbol_path = o.arg; break;
        case OPT_SYMBOL:
            if (ho.n_overrides >= 32)
                return kdh_cli_usage_errorf("run", "at most 32 --symbol options");
            overrides[ho.n_overrides++] = o.arg;
            break;
        case OPT_SAMPLE:
            if (kdh_cli_parse_u64("run", "--sample", o.arg, 1, 1000000, &v))
                return KDH_CLI_EXIT_USAGE;
            ho.sample = (unsigned)v;
            break;
        case OPT_MAX_HITS:
            if (kdh_cli_parse_u64("run", "--max-hits", o.arg, 1, ~0ull, &v))
                return KDH_CLI_EXIT_USAGE;
            ho.max_hits = v;
            break;
        case OPT_DURATION:
            if (kdh_cli_parse_u64("run", "--duration", o.arg, 1, 100000000, &v))
                return KDH_CLI_EXIT_USAGE;
            ho.duration_s = (double)v;
            break;
        case OPT_CAP:
            if (kdh_cli_parse_u64("run", "--stack-cap", o.arg, 1, ~0ull, &v))
                return KDH_CLI_EXIT_USAGE;
            ho.stack_cap = v;
            break;
        case OPT_STALL:
            if (kdh_cli_parse_u64("run", "--max-stall", o.arg, 1, 100, &v))
                return KDH_CLI_EXIT_USAGE;
            ho.max_stall_pct = (double)v;
            break;
        case OPT_SUMMARY:
            if (kdh_cli_parse_u64("run", "--summary-interval", o.arg, 1, 86400, &v))
                return KDH_CLI_EXIT_USAGE;
            ho.summary_interval_s = (unsigned)v;
            break;
        case OPT_QUIET: quiet = 1; break;
        case OPT_CONFIG: config = o.arg; break;
        default: break;
        }
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code;
    if (o.optind != argc)
        return kdh_cli_usage_errorf("run", "unexpected argument '%s'", argv[o.optind]);
    if (config) {
        if (ho.port || ho.tag)
            return kdh_cli_usage_errorf("run", "--config takes ports and tags from the file; drop --port/--tag");
        return kdh_cli_run_config(config, quiet);
    }
    if (!ho.port)
        return kdh_cli_usage_errorf("run", "--port is required");
    if (!ho.tag)
        return kdh_cli_usage_errorf("run", "--tag is required");
    ho.overrides = overrides;
    char tname[128], odir[512];
    if (!target) {
        target_from_port(ho.port, tname, sizeof tname);
        target = tname;
    }
    if (!out) {
        default_out(target, odir, sizeof odir);
        out = odir;
    }
    ho.target_name = target;
    ho.out_dir = out;
    kdh_harvest_result_t res;
    int rc = kdh_cli_run_harvest(&ho, quiet, &res);
    if (rc == KDH_CLI_EXIT_OK)
        printf("run directory: %s (%llu hits, %llu stacks)\n", res.run_dir, (unsigned long long)res.final.hits,
               (unsigned long long)res.final.unique_stacks);
    return rc;
}
