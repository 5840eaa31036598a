/* cmd_owner.c: `kdharvest owner TAG`: which driver uses a pool tag. Offline (--scan DIR) it walks a
 * folder of .sys/.dll/.exe files like `findstr /s`, parsing each PE; live (PORT) it reads every
 * loaded module's image from target memory through the target model, then continues the target.
 * Both rank immediate operands in code first (kdh_owner) and can add the pooltag.txt owner. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "kdh/cli.h"
#include "kdh/owner.h"
#include "kdh/pooltag.h"
#include "kdh/tag.h"
#include "kdh/target.h"

#define SCAN_MAX_DEPTH 16
#define SCAN_MAX_FILES 100000
#define SCAN_MAX_FILE (256u << 20)

static const char owner_usage[] =
    "TAG (--scan DIR | PORT) [--pooltag FILE] [--module NAME] [--hits N] [--max-bytes N] [--baud N]\n"
    "  TAG            1 to 4 characters, as Windows shows the tag ('None' also lists the\n"
    "                 importers of the untagged ExAllocatePool)\n"
    "  --scan DIR     search the .sys/.dll/.exe files under DIR (recursively) instead of a target\n"
    "  PORT           /dev/ttyS0, tcp://host:port or unix:/path: search the loaded modules' images\n"
    "  --pooltag FILE also print the owner listed in a pooltag.txt\n"
    "  --module NAME  live: search this module only (repeatable; default every loaded module)\n"
    "  --hits N       hits listed (default 20; 0 = all)\n"
    "  --max-bytes N  live: stop reading images after N bytes from the target (default 32 MiB,\n"
    "                 about 50 minutes at 115200 baud); use --module to search the rest\n"
    "  --baud N       line speed of a serial port (default 115200)\n";

typedef struct owner_opts {
    const char *scan, *port, *pooltag;
    const char *modules[16];
    int nmodules;
    unsigned baud, hits;
    unsigned long long max_bytes;
    char tag[5];
    uint32_t dword;
} owner_opts_t;

static int parse_opts(int argc, char **argv, owner_opts_t *oo)
{
    enum { O_SCAN = 256, O_POOLTAG, O_MODULE, O_HITS, O_BAUD, O_MAXB };
    static const struct option longopts[] = {
        {"scan", required_argument, NULL, O_SCAN},     {"pooltag", required_argument, NULL, O_POOLTAG},
        {"module", required_argument, NULL, O_MODULE}, {"hits", required_argument, NULL, O_HITS},
        {"baud", required_argument, NULL, O_BAUD},     {"max-bytes", required_argument, NULL, O_MAXB},
        {0, 0, 0, 0}};
    kdh_cli_opt_t o = {.cmd = "owner", .usage = owner_usage, .longopts = longopts};
    memset(oo, 0, sizeof *oo);
    oo->baud = 115200;
    oo->hits = 20;
    oo->max_bytes = 32ull << 20;
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
        unsigned long long v;
        switch (c) {
        case O_SCAN: oo->scan = o.arg; break;
        case O_POOLTAG: oo->pooltag = o.arg; break;
        case O_MODULE:
            if (oo->nmodules >= (int)KDH_ARRAY_LEN(oo->modules))
                return kdh_cli_usage_errorf("owner", "at most %zu --module options", KDH_ARRAY_LEN(oo->modules));
            oo->modules[oo->nmodules++] = o.arg;
            break;
        case O_HITS:
            if (kdh_cli_parse_u64("owner", "--hits", o.arg, 0, 1000000, &v))
                return KDH_CLI_EXIT_USAGE;
            oo->hits = (unsigned)v;
            break;
        case O_MAXB:
            if (kdh_cli_parse_u64("owner", "--max-bytes", o.arg, 4096, 1ull << 40, &v))
                return KDH_CLI_EXIT_USAGE;
            oo->max_bytes = v;
            break;
        case O_BAUD:
            if (kdh_cli_parse_u64("owner", "--baud", o.arg, 1, 4000000, &v))
                return KDH_CLI_EXIT_USAGE;
            oo->baud = (unsigned)v;
            break;
        default:
            return KDH_CLI_EXIT_USAGE;
        }
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code == KDH_CLI_EXIT_OK ? -1 : o.exit_code;
    int left = argc - o.optind;
    if (left < 1)
        return kdh_cli_usage_errorf("owner", "missing TAG");
    kdh_err_t err;
    kdh_err_clear(&err);
    if (kdh_tag_normalize(argv[o.optind], oo->tag, &err) != KDH_OK)
        return kdh_cli_usage_errorf("owner", "%s", err.msg);
    oo->dword = kdh_tag_dword(oo->tag);
    if (oo->scan && left > 1)
        return kdh_cli_usage_errorf("owner", "give either --scan DIR or PORT, not both");
    if (!oo->scan && left < 2)
        return kdh_cli_usage_errorf("owner", "missing PORT (or --scan DIR)");
    if (left > 2)
        return kdh_cli_usage_errorf("owner", "unexpected argument '%s'", argv[o.optind + 2]);
    if (!oo->scan)
        oo->port = argv[o.optind + 1];
    return 0;
}

/* ---- offline: a folder of images ---- */

typedef struct walk {
    const owner_opts_t *oo;
    kdh_owner_result_t *res;
    const char *root;
    unsigned files, images, skipped;
} walk_t;

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".sys") == 0 || strcasecmp(dot, ".dll") == 0 || strcasecmp(dot, ".exe") == 0);
}

static void scan_file(walk_t *w, const char *path, const char *rel, off_t size)
{
    if (size <= 0 || (uint64_t)size > SCAN_MAX_FILE) {
        fprintf(stderr, "kdharvest: skipped %s: %lld bytes (limit %u MiB)\n", rel, (long long)size, SCAN_MAX_FILE >> 20);
        w->skipped++;
        return;
    }
    FILE *f = fopen(path, "rb");
    uint8_t *buf = f ? malloc((size_t)size) : NULL;
    size_t got = buf ? fread(buf, 1, (size_t)size, f) : 0;
    if (f)
        fclose(f);
    if (!buf || got != (size_t)size) {
        fprintf(stderr, "kdharvest: skipped %s: cannot read it (%s)\n", rel, buf ? "short read" : strerror(errno));
        free(buf);
        w->skipped++;
        return;
    }
    kdh_pe_t pe;
    kdh_err_t err;
    kdh_err_clear(&err);
    int rc = kdh_pe_open_buffer(&pe, buf, got, &err);
    if (rc == KDH_OK)
        rc = kdh_owner_scan_image(&pe, rel, w->oo->dword, w->res, &err);
    if (rc != KDH_OK) {
        fprintf(stderr, "kdharvest: skipped %s: %s\n", rel, err.msg[0] ? err.msg : kdh_strerror(rc));
        w->skipped++;
    } else {
        w->images++;
    }
    free(buf);
}

/* Recursion depth is bounded by SCAN_MAX_DEPTH and symbolic links are not followed. */
static void walk_dir(walk_t *w, const char *dir, int depth) /* NOLINT(misc-no-recursion) */
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "kdharvest: cannot read folder %s: %s\n", dir, strerror(errno));
        w->skipped++;
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && w->files < SCAN_MAX_FILES) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (lstat(path, &st) != 0 || S_ISLNK(st.st_mode))
            continue; /* symbolic links are not followed: no loops, no escaping the folder */
        if (S_ISDIR(st.st_mode)) {
            if (depth < SCAN_MAX_DEPTH)
                walk_dir(w, path, depth + 1);
            continue;
        }
        if (!S_ISREG(st.st_mode) || !has_image_ext(e->d_name))
            continue;
        w->files++;
        const char *rel = path + strlen(w->root);
        while (*rel == '/')
            rel++;
        scan_file(w, path, rel, st.st_size);
    }
    closedir(d);
}

/* ---- live: the loaded modules ---- */

typedef struct img_view {
    kdh_target_t *t;
    uint64_t base;
    uint32_t size;
} img_view_t;

/* Reads stay inside the image the module list describes; image bytes are per boot. */
static int img_read(void *ctx, uint64_t va, void *buf, uint32_t len, uint32_t *got)
{
    img_view_t *v = ctx;
    *got = 0;
    if (va < v->base || va - v->base >= v->size)
        return KDH_OK;
    if (!kdh_in_bounds(va - v->base, len, v->size))
        len = (uint32_t)(v->size - (va - v->base));
    return kdh_target_read(v->t, KDH_TARGET_BOOT, va, buf, len, got);
}

typedef struct scan_arg {
    const kdh_target_module_t *m;
    uint32_t tag;
    kdh_owner_result_t *res;
} scan_arg_t;

static int scan_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    scan_arg_t *a = arg;
    img_view_t v = {t, a->m->base, a->m->size};
    kdh_pe_t pe;
    int rc = kdh_pe_open_memory(&pe, a->m->base, img_read, &v, err);
    if (rc != KDH_OK)
        return rc;
    return kdh_owner_scan_image(&pe, a->m->file, a->tag, a->res, err);
}

static int wanted(const owner_opts_t *oo, const kdh_target_module_t *m)
{
    if (!oo->nmodules)
        return 1;
    for (int i = 0; i < oo->nmodules; i++)
        if (strcasecmp(oo->modules[i], m->name) == 0 || strcasecmp(oo->modules[i], m->file) == 0)
            return 1;
    return 0;
}

static int scan_live(const owner_opts_t *oo, kdh_owner_result_t *res, kdh_target_session_t **sp, kdh_err_t *err)
{
    int rc = kdh_target_session_open(sp, oo->port, oo->baud, err);
    if (rc != KDH_OK)
        return rc;
    kdh_target_t *t = kdh_target_session_target(*sp);
    kdh_kd_t *kd = kdh_target_session_kd(*sp);
    size_t n = kdh_target_module_count(t), searched = 0;
    const kdh_link_stats_t *ls = kdh_link_stats(kdh_kd_link(kd));
    for (size_t i = 0; i < n; i++) {
        const kdh_target_module_t *m = kdh_target_module_at(t, i);
        if (!wanted(oo, m))
            continue;
        if (ls->bytes_in >= oo->max_bytes) {
            fprintf(stderr, "kdharvest: stopped before %s: %llu bytes read (--max-bytes); search the rest with --module\n",
                    m->file, (unsigned long long)ls->bytes_in);
            break;
        }
        if (!m->ok) {
            fprintf(stderr, "kdharvest: skipped %s: %s\n", m->file, m->error);
            continue;
        }
        scan_arg_t a = {m, oo->dword, res};
        kdh_err_t e;
        kdh_err_clear(&e);
        rc = kdh_target_run_sync(t, kd, scan_step, &a, &e);
        if (rc == KDH_EHANGUP || rc == KDH_ETIMEDOUT) {
            *err = e;
            return rc;
        }
        if (rc != KDH_OK)
            fprintf(stderr, "kdharvest: skipped %s: %s\n", m->file, e.msg[0] ? e.msg : kdh_strerror(rc));
        else
            searched++;
    }
    printf("searched %zu of %zu loaded modules (%llu bytes read from the target)\n", searched, n,
           (unsigned long long)ls->bytes_in);
    return KDH_OK;
}

/* ---- output ---- */

static void print_result(const owner_opts_t *oo, kdh_owner_result_t *res, kdh_pooltag_t *pt)
{
    kdh_owner_sort(res);
    printf("tag '%s' = 0x%08X (bytes %02X %02X %02X %02X)\n", oo->tag, oo->dword, oo->dword & 0xFF,
           (oo->dword >> 8) & 0xFF, (oo->dword >> 16) & 0xFF, oo->dword >> 24);
    if (pt) {
        const kdh_pooltag_entry_t *e = kdh_pooltag_lookup(pt, oo->tag);
        if (e)
            printf("pooltag.txt: %s%s%s\n", e->binary, e->desc[0] ? " - " : "", e->desc);
        else
            printf("pooltag.txt: not listed\n");
    }
    const char *mods[64];
    size_t nm = kdh_owner_modules(res, mods, KDH_ARRAY_LEN(mods));
    if (!nm) {
        printf("no module holds the tag's bytes%s\n", oo->dword == 0x656E6F4Eu ? " nor imports ExAllocatePool" : "");
        return;
    }
    printf("owners, most likely first:\n");
    for (size_t i = 0; i < nm; i++) {
        unsigned k[4] = {0, 0, 0, 0};
        for (size_t j = 0; j < res->count; j++)
            if (strcmp(res->hits[j].module, mods[i]) == 0)
                k[res->hits[j].kind]++;
        printf("  %zu. %-24s %u immediate, %u other code, %u data%s\n", i + 1, mods[i], k[KDH_OWNER_IMM],
               k[KDH_OWNER_CODE], k[KDH_OWNER_DATA], k[KDH_OWNER_IMPORT] ? ", imports untagged ExAllocatePool" : "");
    }
    printf("hits:\n");
    size_t shown = oo->hits && oo->hits < res->count ? oo->hits : res->count;
    for (size_t i = 0; i < shown; i++) {
        const kdh_owner_hit_t *h = &res->hits[i];
        printf("  %-24s %-8s 0x%08x %-9s", h->module, h->section, h->rva, kdh_owner_kind_name(h->kind));
        if (h->kind == KDH_OWNER_IMM)
            printf(" %s (instruction at 0x%08x)", h->form, h->insn_rva);
        else if (h->kind == KDH_OWNER_IMPORT)
            printf(" %s (IAT slot; nt tags these allocations 'None')", h->form);
        printf("\n");
    }
    if (shown < res->count)
        printf("  ... %zu more (--hits 0 lists all)\n", res->count - shown);
    if (res->dropped)
        printf("  %zu hits beyond %d were not kept\n", res->dropped, KDH_OWNER_MAX_HITS);
    if (res->unreadable)
        printf("  %zu section%s could not be read (discarded INIT sections of loaded drivers, for one)\n",
               res->unreadable, res->unreadable == 1 ? "" : "s");
}

int kdh_cli_cmd_owner(int argc, char **argv)
{
    owner_opts_t oo;
    int rc = parse_opts(argc, argv, &oo);
    if (rc)
        return rc < 0 ? KDH_CLI_EXIT_OK : rc;
    kdh_err_t err;
    kdh_err_clear(&err);
    kdh_pooltag_t *pt = NULL;
    if (oo.pooltag && kdh_pooltag_load(&pt, oo.pooltag, &err) != KDH_OK)
        return kdh_cli_fail(&err);
    kdh_owner_result_t res;
    kdh_owner_result_init(&res);
    int code = KDH_CLI_EXIT_OK;
    if (oo.scan) {
        struct stat st;
        if (stat(oo.scan, &st) != 0 || !S_ISDIR(st.st_mode)) {
            kdh_pooltag_free(pt);
            return kdh_cli_usage_errorf("owner", "--scan %s is not a folder", oo.scan);
        }
        walk_t w = {&oo, &res, oo.scan, 0, 0, 0};
        walk_dir(&w, oo.scan, 0);
        printf("searched %u image%s under %s (%u skipped)\n", w.images, w.images == 1 ? "" : "s", oo.scan, w.skipped);
        print_result(&oo, &res, pt);
    } else {
        kdh_target_session_t *s = NULL;
        rc = scan_live(&oo, &res, &s, &err);
        if (rc == KDH_OK)
            print_result(&oo, &res, pt);
        fflush(stdout);
        kdh_err_t derr;
        kdh_err_clear(&derr);
        int detach = s ? kdh_target_session_detach(s, &derr) : KDH_OK;
        if (rc != KDH_OK) {
            kdh_cli_fail(&err);
            code = KDH_CLI_EXIT_FAIL;
        }
        if (detach != KDH_OK) {
            kdh_cli_errorf("the target may still be stopped: %s", derr.msg);
            code = KDH_CLI_EXIT_FAIL;
        } else if (s) {
            printf("target continued; detached\n");
        }
        kdh_target_session_close(s);
    }
    kdh_owner_result_free(&res);
    kdh_pooltag_free(pt);
    return code;
}
