/* cmd_ingest.c: `kdharvest ingest`: parse existing kd/WinDbg logs, Driver Verifier output,
 * poolmon and !poolused/!vm/!poolfind output into a run directory, and say per file what was found. */
#include <stdio.h>
#include <string.h>

#include "kdh/cli.h"
#include "kdh/ingest.h"

int kdh_cli_cmd_ingest(int argc, char **argv);

static const char usage[] =
    "[--kind auto|kd|verifier|poolmon|poolused] --out DIR FILE...\n"
    "  --kind K   which outputs to look for (default auto: all of them; poolused also takes\n"
    "             !vm and !poolfind output)\n"
    "  --out DIR  run directory to write (created, or continued when it holds a run)\n"
    "Exit status 1 when nothing was found in any file.\n";

static void on_file(void *ud, const kdh_ingest_file_report_t *r)
{
    (void)ud;
    const kdh_ingest_stats_t *s = &r->stats;
    if (r->error) {
        printf("%s: error: %s\n", r->path, r->err_msg);
        return;
    }
    printf("%s: %llu stacks, %llu frames, %llu events, %llu snapshots (%llu pool rows), %llu lines, "
           "%llu skipped",
           r->path, (unsigned long long)s->stacks, (unsigned long long)s->frames, (unsigned long long)s->events,
           (unsigned long long)s->snapshots, (unsigned long long)s->samples, (unsigned long long)s->lines,
           (unsigned long long)s->skipped);
    for (unsigned i = 0; i < s->nskipped_first; i++)
        printf("%s%llu", i ? ", " : " (first at line ", (unsigned long long)s->skipped_first[i]);
    if (s->nskipped_first)
        printf("%s)", s->skipped > s->nskipped_first ? ", ..." : "");
    /* what auto-detection recognized in this file */
    static const char *const names[] = {"kd", "verifier", "poolmon", "poolused/vm/poolfind"};
    const char *sep = "; recognized: ";
    for (unsigned i = 0; i < 4; i++)
        if (s->kinds_seen & (1u << i)) {
            printf("%s%s", sep, names[i]);
            sep = ", ";
        }
    putchar('\n');
}

int kdh_cli_cmd_ingest(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, 'k'}, {"out", required_argument, NULL, 'o'}, {0, 0, 0, 0}};
    kdh_cli_opt_t o = {.cmd = "ingest", .usage = usage, .shortopts = "k:o:", .longopts = longopts};
    unsigned kinds = KDH_INGEST_AUTO;
    const char *out = NULL;
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
        switch (c) {
        case 'k':
            kinds = kdh_ingest_kind_parse(o.arg);
            if (!kinds)
                return kdh_cli_usage_errorf(o.cmd, "--kind: '%s' is not one of auto, kd, verifier, poolmon, poolused",
                                            o.arg);
            break;
        case 'o':
            out = o.arg;
            break;
        default:
            return kdh_cli_usage_errorf(o.cmd, "unexpected option");
        }
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code;
    if (!out)
        return kdh_cli_usage_errorf(o.cmd, "--out DIR is required");
    if (o.optind >= argc)
        return kdh_cli_usage_errorf(o.cmd, "no input files");
    kdh_ingest_opts_t io = {
        .kinds = kinds,
        .files = (const char *const *)(argv + o.optind),
        .nfiles = (size_t)(argc - o.optind),
        .out_dir = out,
        .on_file = on_file,
    };
    kdh_ingest_totals_t t;
    kdh_err_t err = {0, ""};
    int rc = kdh_ingest_run(&io, &t, &err);
    fflush(stdout);
    if (rc)
        return kdh_cli_fail(&err);
    printf("%s: %llu unique stacks, %llu events, %llu snapshots, %llu pool rows from %zu files\n", out,
           (unsigned long long)t.unique_stacks, (unsigned long long)t.events, (unsigned long long)t.snapshots,
           (unsigned long long)t.samples, io.nfiles);
    static const char *const kinds_txt[] = {"alloc", "free", "hit"};
    for (unsigned i = 0; i < t.ntop; i++) {
        char sid[17];
        snprintf(sid, sizeof sid, "%016llx", (unsigned long long)t.top[i].sid);
        printf("  %6llu %-5s  %s  (sid %s)\n", (unsigned long long)t.top[i].hits,
               kinds_txt[t.top[i].kind >= 0 && t.top[i].kind <= 2 ? t.top[i].kind : 2], t.top[i].label, sid);
    }
    if (t.stacks == 0 && t.snapshots == 0) {
        kdh_cli_errorf("ingest: no stacks and no pool snapshots found in %zu file%s%s", io.nfiles,
                       io.nfiles == 1 ? "" : "s", kinds == KDH_INGEST_AUTO ? "" : " (try --kind auto)");
        return KDH_CLI_EXIT_FAIL;
    }
    if (t.files_failed == io.nfiles) {
        kdh_cli_errorf("ingest: no input file could be read");
        return KDH_CLI_EXIT_FAIL;
    }
    return KDH_CLI_EXIT_OK;
}
