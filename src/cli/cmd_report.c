/* cmd_report.c: `kdharvest report DIR...` and `kdharvest report --diff BASE NEW...`: reads run
 * directories with kdh_report and prints them in the chosen format. A run that cannot be read and
 * every damaged line are named on stderr (text output lists the lines itself) and the rest is
 * still reported; the exit status is non-zero only when nothing at all was readable. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdh/cli.h"
#include "kdh/pooltag.h"
#include "kdh/report.h"
#include "kdh/symstore.h"
#include "kdh/tag.h"

static const char usage[] =
    "[options] DIR...\n"
    "       kdharvest report [options] --diff BASE NEW...\n"
    "Reports one or more run directories (stacks merge by module identity and RVA).\n"
    "  --format F      text (default), json, csv, folded (flame graph input) or html (one\n"
    "                  self-contained page: tables, interactive flame graph, growth chart)\n"
    "  --by B          stack, driver or tag (text, json, html: sections shown besides the\n"
    "                  tag table; csv: rows)\n"
    "  --value V       outstanding (bytes, default; allocations when the events carry no\n"
    "                  sizes), count or bytes: folded values, ordering\n"
    "  --top N         stacks/drivers per list (default 10, 0 = all; folded always lists all)\n"
    "  --tag TAG       only events of this pool tag\n"
    "  --since T       only events at or after T (Unix seconds or 2026-11-21T23:00:00Z)\n"
    "  --until T       only events at or before T\n"
    "  --min-count N   hide stacks seen fewer than N times\n"
    "  --pooltag FILE  owner of each tag from a pooltag.txt\n"
    "  --symbols PATH  re-symbolize frames from PDBs found by module identity along a symbol\n"
    "                  path (srv*cache*url;dir;..., as the daemon; default _NT_SYMBOL_PATH if\n"
    "                  given as an empty string)\n"
    "  --diff BASE     compare BASE with the runs given as operands, UMDH style\n";

enum { OPT_FORMAT = 256, OPT_BY, OPT_VALUE, OPT_TOP, OPT_TAG, OPT_SINCE, OPT_UNTIL, OPT_MIN, OPT_POOLTAG, OPT_DIFF, OPT_SYMBOLS };

static const struct option longopts[] = {
    {"format", required_argument, NULL, OPT_FORMAT}, {"by", required_argument, NULL, OPT_BY},
    {"value", required_argument, NULL, OPT_VALUE},   {"top", required_argument, NULL, OPT_TOP},
    {"tag", required_argument, NULL, OPT_TAG},       {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},   {"min-count", required_argument, NULL, OPT_MIN},
    {"pooltag", required_argument, NULL, OPT_POOLTAG}, {"diff", required_argument, NULL, OPT_DIFF},
    {"symbols", required_argument, NULL, OPT_SYMBOLS},
    {0, 0, 0, 0}};

/* Unix seconds ("1795478400.5") or ISO 8601 UTC ("2026-11-21T23:00:00Z", seconds optional). */
static int parse_time(const char *s, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end != s && *end == '\0' && v >= 0 && isfinite(v)) {
        *out = v;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M", &tm);
    if (!p)
        p = strptime(s, "%Y-%m-%d %H:%M", &tm);
    if (!p)
        return -1;
    double frac = 0;
    if (*p == ':') {
        char *e2;
        double sec = strtod(p + 1, &e2);
        if (e2 == p + 1 || sec < 0 || sec >= 61)
            return -1;
        tm.tm_sec = (int)sec;
        frac = sec - tm.tm_sec;
        p = e2;
    }
    if (*p == 'Z')
        p++;
    if (*p != '\0')
        return -1;
    *out = (double)timegm(&tm) + frac;
    return 0;
}

static int add_runs(kdh_report_t *r, int n, char **dirs)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        kdh_err_t err = {0};
        if (kdh_report_add_run(r, dirs[i], &err) != KDH_OK) {
            kdh_cli_errorf("report: %s", err.msg);
        } else {
            ok++;
        }
    }
    return ok;
}

int kdh_cli_cmd_report(int argc, char **argv)
{
    kdh_cli_opt_t o = {.cmd = "report", .usage = usage, .longopts = longopts};
    kdh_report_opts_t ro = {.top = 10};
    const char *pooltag_path = NULL, *diff_base = NULL, *symbols = NULL;
    unsigned long long n;
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
        switch (c) {
        case OPT_FORMAT:
            if (strcmp(o.arg, "text") == 0)
                ro.format = KDH_REPORT_TEXT;
            else if (strcmp(o.arg, "json") == 0)
                ro.format = KDH_REPORT_JSON;
            else if (strcmp(o.arg, "csv") == 0)
                ro.format = KDH_REPORT_CSV;
            else if (strcmp(o.arg, "folded") == 0)
                ro.format = KDH_REPORT_FOLDED;
            else if (strcmp(o.arg, "html") == 0)
                ro.format = KDH_REPORT_HTML;
            else
                return kdh_cli_usage_errorf("report", "--format must be text, json, csv, folded or html, not '%s'", o.arg);
            break;
        case OPT_BY:
            if (strcmp(o.arg, "stack") == 0)
                ro.by = KDH_REPORT_BY_STACK;
            else if (strcmp(o.arg, "driver") == 0)
                ro.by = KDH_REPORT_BY_DRIVER;
            else if (strcmp(o.arg, "tag") == 0)
                ro.by = KDH_REPORT_BY_TAG;
            else
                return kdh_cli_usage_errorf("report", "--by must be stack, driver or tag, not '%s'", o.arg);
            break;
        case OPT_VALUE:
            if (strcmp(o.arg, "outstanding") == 0)
                ro.value = KDH_REPORT_VALUE_OUTSTANDING;
            else if (strcmp(o.arg, "count") == 0)
                ro.value = KDH_REPORT_VALUE_COUNT;
            else if (strcmp(o.arg, "bytes") == 0)
                ro.value = KDH_REPORT_VALUE_BYTES;
            else
                return kdh_cli_usage_errorf("report", "--value must be outstanding, count or bytes, not '%s'", o.arg);
            break;
        case OPT_TOP:
            if (kdh_cli_parse_u64("report", "--top", o.arg, 0, 1000000000, &n))
                return KDH_CLI_EXIT_USAGE;
            ro.top = (unsigned)n;
            break;
        case OPT_MIN:
            if (kdh_cli_parse_u64("report", "--min-count", o.arg, 0, UINT64_MAX, &n))
                return KDH_CLI_EXIT_USAGE;
            ro.min_count = n;
            break;
        case OPT_TAG: {
            kdh_err_t err = {0};
            if (kdh_tag_normalize(o.arg, ro.tag, &err) != KDH_OK)
                return kdh_cli_usage_errorf("report", "%s", err.msg);
            break;
        }
        case OPT_SINCE:
        case OPT_UNTIL:
            if (parse_time(o.arg, c == OPT_SINCE ? &ro.since : &ro.until) != 0)
                return kdh_cli_usage_errorf("report", "%s '%s' is neither Unix seconds nor YYYY-MM-DDTHH:MM[:SS][Z]",
                                            c == OPT_SINCE ? "--since" : "--until", o.arg);
            break;
        case OPT_POOLTAG:
            pooltag_path = o.arg;
            break;
        case OPT_DIFF:
            diff_base = o.arg;
            break;
        case OPT_SYMBOLS:
            symbols = o.arg;
            break;
        default:
            return kdh_cli_usage_errorf("report", "unexpected option");
        }
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code;
    if (o.optind >= argc)
        return kdh_cli_usage_errorf("report", diff_base ? "--diff BASE needs the NEW run directory after it"
                                                        : "give at least one run directory");
    if (ro.since > 0 && ro.until > 0 && ro.until < ro.since)
        return kdh_cli_usage_errorf("report", "--until is before --since: no event can match");
    if (diff_base && (ro.format == KDH_REPORT_CSV || ro.format == KDH_REPORT_HTML))
        return kdh_cli_usage_errorf("report", "--diff writes text, json or folded");
    if (ro.format == KDH_REPORT_FOLDED && ro.by != KDH_REPORT_BY_ALL && ro.by != KDH_REPORT_BY_STACK)
        return kdh_cli_usage_errorf("report", "--format folded lists stacks; --by driver or tag does not apply");

    kdh_pooltag_t *pt = NULL;
    kdh_err_t err = {0};
    if (pooltag_path) {
        if (kdh_pooltag_load(&pt, pooltag_path, &err) != KDH_OK)
            return kdh_cli_fail(&err);
        if (kdh_pooltag_malformed(pt))
            kdh_cli_errorf("report: %s: %zu unreadable line(s) ignored, first at line %u", pooltag_path,
                           kdh_pooltag_malformed(pt), kdh_pooltag_first_malformed(pt));
        ro.pooltag = pt;
    }
    kdh_symstore_t *store = NULL;
    if (symbols) {
        if (!*symbols)
            symbols = getenv("_NT_SYMBOL_PATH");
        if (!symbols || !*symbols) {
            kdh_pooltag_free(pt);
            return kdh_cli_usage_errorf("report", "--symbols is empty and _NT_SYMBOL_PATH is not set");
        }
        if (kdh_symstore_new(&store, symbols, NULL, &err) != KDH_OK) {
            kdh_pooltag_free(pt);
            return kdh_cli_fail(&err);
        }
        ro.symbols = store;
    }
    kdh_report_t *rep = NULL, *base = NULL;
    int rc = KDH_CLI_EXIT_OK;
    if (kdh_report_new(&rep, &ro, &err) != KDH_OK || (diff_base && kdh_report_new(&base, &ro, &err) != KDH_OK)) {
        rc = kdh_cli_fail(&err);
        goto out;
    }
    int ok = add_runs(rep, argc - o.optind, argv + o.optind);
    if (diff_base && add_runs(base, 1, (char **)&diff_base) == 0) {
        rc = KDH_CLI_EXIT_FAIL;
        goto out;
    }
    if (ok == 0) {
        rc = KDH_CLI_EXIT_FAIL;
        goto out;
    }
    for (kdh_report_t *r = rep; r; r = (r == rep ? base : NULL)) {
        kdh_report_totals_t t;
        kdh_report_totals(r, &t);
        if (t.events == 0 && t.skipped_lines > 0 && kdh_report_pool_count(r) == 0) {
            for (size_t i = 0; kdh_report_skip_note(r, i); i++)
                kdh_cli_errorf("report: skipped %s", kdh_report_skip_note(r, i));
            kdh_cli_errorf("report: nothing readable: every event line is damaged");
            rc = KDH_CLI_EXIT_FAIL;
            goto out;
        }
    }
    if (diff_base)
        c = kdh_report_render_diff(base, rep, stdout, &err);
    else
        c = kdh_report_render(rep, stdout, &err);
    fflush(stdout);
    if (c != KDH_OK) {
        rc = kdh_cli_fail(&err);
        goto out;
    }
    /* Text output lists skipped lines itself; other formats must stay machine-readable. */
    if (ro.format != KDH_REPORT_TEXT || diff_base) {
        for (kdh_report_t *r = rep; r; r = (r == rep ? base : NULL)) {
            for (size_t i = 0; kdh_report_skip_note(r, i); i++)
                kdh_cli_errorf("report: skipped %s", kdh_report_skip_note(r, i));
        }
    }
    /* PDBs that were not found: the frames stay as recorded, and the reader should know why. */
    for (kdh_report_t *r = rep; r; r = (r == rep ? base : NULL)) {
        for (size_t i = 0; kdh_report_symbol_note(r, i); i++)
            kdh_cli_errorf("report: %s", kdh_report_symbol_note(r, i));
    }
    /* Formats without a place for it get the measure on stderr: each side with allocations that
     * have no size is named with its own counts. Values are counts when a side has too few sizes
     * (for a diff, one such side turns both), else bytes that the unsized allocations add nothing to. */
    if (ro.format == KDH_REPORT_FOLDED && ro.value == KDH_REPORT_VALUE_OUTSTANDING) {
        int bytes = kdh_report_sizes_known(rep) && (!base || kdh_report_sizes_known(base));
        for (kdh_report_t *r = rep; r; r = (r == rep ? base : NULL)) {
            kdh_report_totals_t t;
            kdh_report_totals(r, &t);
            const char *side = !base ? "" : r == base ? "base: " : "new: ";
            if (!kdh_report_sizes_known(r))
                kdh_cli_errorf("report: %s%" PRIu64 " of %" PRIu64 " allocations have no size: values are "
                               "outstanding allocations, not bytes", side, t.allocs - t.allocs_sized, t.allocs);
            else if (bytes && t.allocs_sized < t.allocs)
                kdh_cli_errorf("report: %s%" PRIu64 " of %" PRIu64 " allocations have no size and add no bytes", side,
                               t.allocs - t.allocs_sized, t.allocs);
        }
    }
out:
    kdh_report_free(rep);
    kdh_report_free(base);
    kdh_pooltag_free(pt);
    kdh_symstore_free(store);
    return rc;
}
