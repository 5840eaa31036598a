/* cmd_tag.c: `kdharvest tag TAG [--pooltag FILE]`: the tag's DWORD and the commands that arm it on
 * the target (PoolHitTag, special pool), with its owner from a pooltag.txt. */
#include <stdio.h>
#include <stdlib.h>

#include "kdh/cli.h"
#include "kdh/pooltag.h"
#include "kdh/tag.h"

static const char usage[] =
    "TAG [--pooltag FILE]\n"
    "Prints the pool tag's little-endian DWORD (tags shorter than 4 characters are padded with spaces,\n"
    "as Windows displays them), the kd and registry commands that arm it, and its owner.\n"
    "  --pooltag FILE  look the owner up in a pooltag.txt\n";

enum { OPT_POOLTAG = 256 };
static const struct option longopts[] = {{"pooltag", required_argument, NULL, OPT_POOLTAG}, {0, 0, 0, 0}};

int kdh_cli_cmd_tag(int argc, char **argv)
{
    kdh_cli_opt_t o = {.cmd = "tag", .usage = usage, .longopts = longopts};
    const char *pooltag_path = NULL;
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0)
        if (c == OPT_POOLTAG)
            pooltag_path = o.arg;
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code;
    if (argc - o.optind != 1)
        return kdh_cli_usage_errorf("tag", "give exactly one pool tag (quote tags with spaces: 'Ddk ')");
    char tag[5];
    kdh_err_t err = {0};
    if (kdh_tag_normalize(argv[o.optind], tag, &err) != KDH_OK)
        return kdh_cli_usage_errorf("tag", "%s", err.msg);

    char owner[600];
    const char *shown = NULL;
    if (pooltag_path) {
        kdh_pooltag_t *pt = NULL;
        if (kdh_pooltag_load(&pt, pooltag_path, &err) != KDH_OK)
            return kdh_cli_fail(&err);
        const kdh_pooltag_entry_t *e = kdh_pooltag_lookup(pt, tag);
        if (e)
            snprintf(owner, sizeof owner, "%s%s%s (%s:%u, entry '%s')", e->binary, e->desc[0] ? " - " : "", e->desc,
                     pooltag_path, e->line, e->tag);
        else
            snprintf(owner, sizeof owner, "not listed in %s", pooltag_path);
        shown = owner;
        kdh_pooltag_free(pt);
    }
    int n = kdh_tag_describe(tag, shown, NULL, 0);
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        kdh_err_set(&err, KDH_ENOMEM, "out of memory");
        return kdh_cli_fail(&err);
    }
    kdh_tag_describe(tag, shown, buf, (size_t)n + 1);
    fputs(buf, stdout);
    free(buf);
    return KDH_CLI_EXIT_OK;
}
