/* cmd_pool.c: `kdharvest pool PORT`: live pool usage by tag from nt's pool tracking table, and the
 * !vm-style pool totals the debugger data points at. One sample is one short stop (break in, read
 * the table and totals, continue); with --every the target runs between samples, each sample is
 * appended to pool.jsonl (per tag) and pool_totals.jsonl of a run directory and as a poolmon-like
 * block to poolmon.txt, and at the end (or on SIGINT/SIGTERM) the growth of each tag is printed
 * with the report's own trend rule (kdh_report), so `pool` and `report` never disagree.
 * A target reboot between samples (a new kernel base, or the tracker's counters starting over) is
 * followed: the target is discovered again and the samples carry the new boot number. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "kdh/cli.h"
#include "kdh/pool.h"
#include "kdh/pooltag.h"
#include "kdh/report.h"
#include "kdh/store.h"
#include "kdh/target.h"

static const char pool_usage[] =
    "PORT [--every DUR --duration DUR] [--out DIR] [--sort tag|nonpaged|paged] [--top N]\n"
    "       [--table-size N] [--full-every N] [--pooltag FILE] [--baud N] [--symbols PATH] [--symbol NAME=VALUE]...\n"
    "  PORT               /dev/ttyS0, tcp://host:port or unix:/path\n"
    "  --every DUR        sample every DUR (500ms, 60s, 5m, 1h); the target runs in between\n"
    "  --duration DUR     stop sampling after DUR (default: until SIGINT)\n"
    "  --out DIR          run directory for pool.jsonl and poolmon.txt (default with --every:\n"
    "                     ./pool-YYYYMMDD-HHMMSS)\n"
    "  --sort KEY         order of the !poolused table: tag, nonpaged (default), paged\n"
    "  --top N            rows of the table, and of non-growing tags in the summary (default 20; 0 all)\n"
    "  --table-size N     entries of nt!PoolTrackTable when nt!PoolTrackTableSize has no symbol\n"
    "  --full-every N     read the whole table every Nth sample (default 10); in between only the\n"
    "                     slots in use, so a sample costs few wire bytes (a new tag waits for a full read)\n"
    "  --pooltag FILE     owner descriptions from a pooltag.txt\n"
    "  --baud N           line speed of a serial port (default 115200)\n"
    "  --symbols PATH     symbol path (default: _NT_SYMBOL_PATH); a plain folder works\n"
    "  --symbol NAME=VALUE  address of a symbol: nt+0x1234 (module+RVA) or 0xADDRESS\n";

typedef struct pool_opts {
    const char *port, *out, *pooltag, *symbols;
    const char *overrides[16];
    int noverrides;
    unsigned baud, top, full_every;
    uint64_t every_ms, duration_ms, table_size;
    kdh_pool_sort_t sort;
} pool_opts_t;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* "500ms", "60s", "5m", "8h", or plain seconds. */
static int parse_duration(const char *what, const char *s, uint64_t *ms)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1000;
    if (end && strcmp(end, "ms") == 0)
        mul = 1;
    else if (end && (strcmp(end, "s") == 0 || *end == 0))
        mul = 1000;
    else if (end && strcmp(end, "m") == 0)
        mul = 60000;
    else if (end && strcmp(end, "h") == 0)
        mul = 3600000;
    else
        end = NULL;
    if (!end || end == s || errno || s[0] == '-' || v == 0 || v > 1000ull * 24 * 3600 * 1000 / mul)
        return kdh_cli_usage_errorf("pool", "%s '%s' is not a duration like 500ms, 60s, 5m or 8h", what, s);
    *ms = v * mul;
    return 0;
}

static int parse_opts(int argc, char **argv, pool_opts_t *po)
{
    enum { O_EVERY = 256, O_DURATION, O_OUT, O_SORT, O_TOP, O_TABLE, O_POOLTAG, O_BAUD, O_SYMBOLS, O_SYMBOL, O_FULL };
    static const struct option longopts[] = {
        {"every", required_argument, NULL, O_EVERY},       {"duration", required_argument, NULL, O_DURATION},
        {"out", required_argument, NULL, O_OUT},           {"sort", required_argument, NULL, O_SORT},
        {"top", required_argument, NULL, O_TOP},           {"table-size", required_argument, NULL, O_TABLE},
        {"pooltag", required_argument, NULL, O_POOLTAG},   {"baud", required_argument, NULL, O_BAUD},
        {"symbols", required_argument, NULL, O_SYMBOLS},   {"symbol", required_argument, NULL, O_SYMBOL},
        {"full-every", required_argument, NULL, O_FULL},   {0, 0, 0, 0}};
    kdh_cli_opt_t o = {.cmd = "pool", .usage = pool_usage, .longopts = longopts};
    memset(po, 0, sizeof *po);
    po->baud = 115200;
    po->top = 20;
    po->sort = KDH_POOL_SORT_NONPAGED;
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
        unsigned long long v;
        switch (c) {
        case O_EVERY:
            if (parse_duration("--every", o.arg, &po->every_ms))
                return KDH_CLI_EXIT_USAGE;
            break;
        case O_DURATION:
            if (parse_duration("--duration", o.arg, &po->duration_ms))
                return KDH_CLI_EXIT_USAGE;
            break;
        case O_OUT:
            po->out = o.arg;
            break;
        case O_SORT:
            if (strcmp(o.arg, "tag") == 0)
                po->sort = KDH_POOL_SORT_TAG;
            else if (strcmp(o.arg, "nonpaged") == 0)
                po->sort = KDH_POOL_SORT_NONPAGED;
            else if (strcmp(o.arg, "paged") == 0)
                po->sort = KDH_POOL_SORT_PAGED;
            else
                return kdh_cli_usage_errorf("pool", "--sort '%s' is not tag, nonpaged or paged", o.arg);
            break;
        case O_TOP:
            if (kdh_cli_parse_u64("pool", "--top", o.arg, 0, 1000000, &v))
                return KDH_CLI_EXIT_USAGE;
            po->top = (unsigned)v;
            break;
        case O_TABLE:
            if (kdh_cli_parse_u64("pool", "--table-size", o.arg, 1, KDH_POOL_MAX_ENTRIES, &v))
                return KDH_CLI_EXIT_USAGE;
            po->table_size = v;
            break;
        case O_FULL:
            if (kdh_cli_parse_u64("pool", "--full-every", o.arg, 1, 1000000, &v))
                return KDH_CLI_EXIT_USAGE;
            po->full_every = (unsigned)v;
            break;
        case O_POOLTAG:
            po->pooltag = o.arg;
            break;
        case O_BAUD:
            if (kdh_cli_parse_u64("pool", "--baud", o.arg, 1, 4000000, &v))
                return KDH_CLI_EXIT_USAGE;
            po->baud = (unsigned)v;
            break;
        case O_SYMBOLS:
            po->symbols = o.arg;
            break;
        case O_SYMBOL:
            if (po->noverrides >= (int)KDH_ARRAY_LEN(po->overrides))
                return kdh_cli_usage_errorf("pool", "at most %zu --symbol options", KDH_ARRAY_LEN(po->overrides));
            po->overrides[po->noverrides++] = o.arg;
            break;
        default:
            return KDH_CLI_EXIT_USAGE;
        }
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code == KDH_CLI_EXIT_OK ? -1 : o.exit_code;
    if (o.optind >= argc)
        return kdh_cli_usage_errorf("pool", "missing PORT");
    if (o.optind + 1 < argc)
        return kdh_cli_usage_errorf("pool", "unexpected argument '%s'", argv[o.optind + 1]);
    if (po->duration_ms && !po->every_ms)
        return kdh_cli_usage_errorf("pool", "--duration needs --every");
    po->port = argv[o.optind];
    return 0;
}

static const char *owner_of(void *ctx, const char *tag)
{
    static char buf[300];
    const kdh_pooltag_entry_t *e = ctx ? kdh_pooltag_lookup(ctx, tag) : NULL;
    if (!e)
        return NULL;
    snprintf(buf, sizeof buf, "%s%s%s", e->desc, e->binary[0] ? " , Binary: " : "", e->binary);
    return buf;
}

static int read_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    return kdh_pool_step_read(t, arg, err);
}

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int vm_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    return kdh_pool_step_vm(t, arg, err);
}

typedef struct sampler {
    pool_opts_t *po;
    kdh_target_session_t *s;
    kdh_pool_read_t rd;
    kdh_pool_vm_t vm;
    kdh_pool_table_t prev;  /* previous sample (this boot), for poolmon deltas and reboot checks */
    int have_prev;
    kdh_store_t *st;
    FILE *poolmon, *totals;
    unsigned samples;
    unsigned boot;          /* 1 for the boot sampling started on, +1 per reboot seen */
} sampler_t;

/* One line of pool_totals.jsonl: the totals given at this stop, in Kb (docs/run-format.md). */
static int write_totals(sampler_t *sm, double t, kdh_err_t *err)
{
    json_t *j = json_pack("{s:f, s:I}", "t", t, "boot", (json_int_t)sm->boot);
    for (unsigned f = 0; j && f < KDH_POOL_VM_COUNT; f++)
        if (sm->vm.have[f])
            json_object_set_new(j, kdh_pool_vm_info(f)->key, json_integer((json_int_t)kdh_pool_vm_kb(&sm->vm, f)));
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(16)) : NULL;
    json_decref(j);
    if (!text)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory");
    int bad = fprintf(sm->totals, "%s\n", text) < 0 || fflush(sm->totals) != 0 || fsync(fileno(sm->totals)) != 0;
    free(text);
    if (bad)
        return kdh_err_set(err, KDH_EIO, "cannot write pool_totals.jsonl: %s", strerror(errno));
    return KDH_OK;
}

static int write_sample(sampler_t *sm, double t, kdh_err_t *err)
{
    const kdh_pool_table_t *tab = &sm->rd.tab;
    for (size_t i = 0; i < tab->count; i++) {
        const kdh_pool_row_t *r = &tab->rows[i];
        kdh_store_pool_t p = {.t = t, .boot = sm->boot};
        memcpy(p.tag, r->tag, 5);
        if (r->np_allocs || r->np_frees) {
            p.pool = "nonpaged";
            p.allocs = r->np_allocs;
            p.frees = r->np_frees;
            p.bytes = r->np_bytes;
            int rc = kdh_store_append_pool(sm->st, &p, err);
            if (rc != KDH_OK)
                return rc;
        }
        if (r->p_allocs || r->p_frees) {
            p.pool = "paged";
            p.allocs = r->p_allocs;
            p.frees = r->p_frees;
            p.bytes = r->p_bytes;
            int rc = kdh_store_append_pool(sm->st, &p, err);
            if (rc != KDH_OK)
                return rc;
        }
    }
    if (sm->poolmon) {
        char title[96];
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        size_t n = strftime(title, sizeof title, "System pool information, sample at %Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(title + n, sizeof title - n, ", boot %u", sm->boot);
        kdh_pool_print_poolmon(sm->poolmon, title, tab, sm->have_prev ? &sm->prev : NULL);
        fflush(sm->poolmon);
    }
    int rc = kdh_store_sync(sm->st, err);
    if (rc == KDH_OK && sm->totals)
        rc = write_totals(sm, t, err);
    return rc;
}

/* Keeps this sample for the next one's poolmon deltas and reboot check. */
static int keep_prev(sampler_t *sm, kdh_err_t *err)
{
    const kdh_pool_table_t *tab = &sm->rd.tab;
    kdh_pool_table_free(&sm->prev);
    kdh_pool_table_init(&sm->prev);
    sm->have_prev = 1;
    if (tab->count) {
        sm->prev.rows = malloc(tab->count * sizeof *tab->rows);
        if (!sm->prev.rows)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory");
        memcpy(sm->prev.rows, tab->rows, tab->count * sizeof *tab->rows);
        sm->prev.count = sm->prev.cap = tab->count;
    }
    return KDH_OK;
}

static void new_boot(sampler_t *sm, const char *why)
{
    sm->boot++;
    sm->have_prev = 0;
    kdh_pool_read_restart(&sm->rd);
    printf("the target rebooted (%s): boot %u, sampling goes on\n", why, sm->boot);
}

/* GetVersion at every sample: a new kernel base means the target rebooted since the last one;
 * the model is then discovered again (kdh_target_set_version drops the old boot's modules and
 * caches, so symbols are looked up for the new one). */
static int check_boot(sampler_t *sm, kdh_err_t *err)
{
    kdh_target_t *t = kdh_target_session_target(sm->s);
    kdh_kd_t *kd = kdh_target_session_kd(sm->s);
    kdh_kd_req_t req;
    for (unsigned i = 0;; i++) {
        memset(&req, 0, sizeof req);
        kdh_kd_get_version(kd, &req, NULL, NULL);
        if (kdh_kd_wait(kd, &req) == KDH_OK)
            break;
        if (req.status != KDH_ECANCELED || !kdh_kd_stopped(kd) || i >= 8)
            return kdh_err_set(err, req.status, "GetVersion: %s", req.err.msg);
    }
    uint64_t old = kdh_target_version(t)->kern_base, now = req.m.u.version.kern_base;
    if (now == old)
        return KDH_OK;
    int rc = kdh_target_attach_sync(t, kd, err);
    if (rc != KDH_OK)
        return rc;
    char why[64];
    snprintf(why, sizeof why, "kernel at 0x%llx", (unsigned long long)now);
    new_boot(sm, why);
    return KDH_OK;
}

/* One sample at the current stop. */
static int take_sample(sampler_t *sm, kdh_err_t *err)
{
    kdh_target_t *t = kdh_target_session_target(sm->s);
    kdh_kd_t *kd = kdh_target_session_kd(sm->s);
    kdh_target_sync_stop(t, kdh_kd_stop_serial(kd));
    int rc = sm->samples ? check_boot(sm, err) : KDH_OK;
    if (rc != KDH_OK)
        return rc;
    kdh_target_sync_stop(t, kdh_kd_stop_serial(kd));
    rc = kdh_target_run_sync(t, kd, read_step, &sm->rd, err);
    if (rc == KDH_EBUSY && sm->samples) {
        /* The table this session has read is gone: the target restarted (possibly while this sample
         * was being read) and the new boot has not set its tracker up yet. The next sample sees the
         * new boot (kernel base or counters started over) and reads it. */
        printf("sample skipped (boot %u): %s\n", sm->boot, err->msg);
        kdh_err_clear(err);
        fflush(stdout);
        return KDH_OK;
    }
    if (rc != KDH_OK)
        return rc;
    if (sm->have_prev && kdh_pool_restarted(&sm->prev, &sm->rd.tab)) {
        new_boot(sm, "the pool tracker's counters started over");
        if (!sm->rd.full) /* read through the old boot's slots: read it all again */
            rc = kdh_target_run_sync(t, kd, read_step, &sm->rd, err);
        if (rc != KDH_OK)
            return rc;
    }
    rc = kdh_target_run_sync(t, kd, vm_step, &sm->vm, err);
    if (rc != KDH_OK)
        return rc;
    sm->samples++;
    double when = now_unix();
    if (sm->st) {
        rc = write_sample(sm, when, err);
        if (rc != KDH_OK)
            return rc;
    }
    rc = keep_prev(sm, err);
    if (rc != KDH_OK)
        return rc;
    kdh_pool_row_t sum;
    kdh_pool_totals(&sm->rd.tab, &sum);
    if (sm->po->every_ms) {
        printf("sample %u (boot %u): %zu tags, nonpaged %" PRIu64 " bytes in %" PRIu64 " blocks, paged %" PRIu64
               " bytes in %" PRIu64 " blocks (%" PRIu64 " table bytes read, %s)",
               sm->samples, sm->boot, sm->rd.tab.count, sum.np_bytes, sum.np_allocs - sum.np_frees, sum.p_bytes,
               sum.p_allocs - sum.p_frees, sm->rd.bytes_asked, sm->rd.full ? "whole table" : "slots in use");
        for (unsigned f = 0; f < KDH_POOL_VM_COUNT; f++)
            if (sm->vm.have[f] && (f == KDH_POOL_VM_NONPAGED_USAGE || f == KDH_POOL_VM_PAGED_COMMIT))
                printf("; %s %" PRIu64 " Kb", kdh_pool_vm_info(f)->label, kdh_pool_vm_kb(&sm->vm, f));
        printf("\n");
    }
    fflush(stdout);
    return KDH_OK;
}

/* Lets the target run for ms (the loop keeps answering its packets), then breaks in again. */
static int run_between(sampler_t *sm, uint64_t ms, kdh_err_t *err)
{
    /* the interval counts from the continue, so the detach's wait for stray stops is part of it */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = kdh_target_session_detach(sm->s, err);
    if (rc != KDH_OK)
        return rc;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        uint64_t el = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000 + (uint64_t)((t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (el >= ms || g_stop)
            break;
        uint64_t slice = ms - el < 200 ? ms - el : 200;
        kdh_err_t e;
        kdh_err_clear(&e);
        rc = kdh_target_session_wait_stop(sm->s, (unsigned)slice, &e);
        if (rc == KDH_EHANGUP) {
            *err = e;
            return rc;
        }
        if (rc == KDH_OK) {
            /* a stop nobody asked for (a breakpoint someone else set, a module load): let it go */
            rc = kdh_target_session_detach(sm->s, err);
            if (rc != KDH_OK)
                return rc;
        }
    }
    if (g_stop)
        return KDH_ECANCELED;
    /* Break in; a target that rebooted meanwhile may be stopped already on a report of its new
     * boot that crossed our Continue, and then answers only a fresh connect (break-in + RESET,
     * after which it sends its pending report again), as the harvest engine does. */
    kdh_kd_t *kd = kdh_target_session_kd(sm->s);
    rc = kdh_kd_break(kd, err);
    if (rc != KDH_OK)
        return rc;
    rc = kdh_target_session_wait_stop(sm->s, 3000, err);
    if (rc != KDH_ETIMEDOUT)
        return rc;
    kdh_err_clear(err);
    rc = kdh_kd_connect(kd, 1, err);
    if (rc != KDH_OK)
        return rc;
    rc = kdh_target_session_wait_stop(sm->s, 10000, err);
    if (rc == KDH_ETIMEDOUT)
        return kdh_err_set(err, KDH_ETIMEDOUT, "the target stopped answering (no stop after a break-in and a reconnect)");
    return rc;
}

static int cmp_slope(const void *a, const void *b)
{
    const kdh_report_pool_summary_t *x = a, *y = b;
    if (x->steady_growth != y->steady_growth)
        return y->steady_growth - x->steady_growth;
    if (x->steady_growth)
        return (x->slope < y->slope) - (x->slope > y->slope);
    return (x->peak_bytes < y->peak_bytes) - (x->peak_bytes > y->peak_bytes);
}

/* The growth summary, read back from the run directory through kdh_report, so each tag's trend
 * is the one `kdharvest report` gives (kdh_report_series_trend over the series joined across
 * reboots); only the wording of steady growth is louder here. */
static int print_growth(const char *dir, unsigned top, kdh_err_t *err)
{
    kdh_report_opts_t ro = {.top = 10};
    kdh_report_t *rep = NULL;
    int rc = kdh_report_new(&rep, &ro, err);
    if (rc == KDH_OK)
        rc = kdh_report_add_run(rep, dir, err);
    size_t n = rc == KDH_OK ? kdh_report_pool_count(rep) : 0;
    kdh_report_pool_summary_t *v = n ? calloc(n, sizeof *v) : NULL;
    if (rc == KDH_OK && n && !v)
        rc = kdh_err_set(err, KDH_ENOMEM, "out of memory");
    for (size_t i = 0; rc == KDH_OK && i < n; i++)
        rc = kdh_report_pool_get(rep, i, &v[i]);
    if (rc == KDH_OK) {
        if (v) /* NULL for a run without pool samples, and qsort's array must not be NULL */
            qsort(v, n, sizeof *v, cmp_slope);
        printf("\nGrowth per tag (%s; rule of `kdharvest report`):\n", dir);
        printf("%-6s %-9s %8s %14s %14s %14s %12s  %s\n", "TAG", "POOL", "SAMPLES", "FIRST_BYTES", "PEAK_BYTES",
               "LAST_BYTES", "SLOPE_B/S", "TREND");
        unsigned others = 0;
        for (size_t i = 0; i < n; i++) {
            const kdh_report_pool_summary_t *s = &v[i];
            if (!s->steady_growth && top && others++ >= top)
                break;
            const char *trend = s->steady_growth ? "STEADY GROWTH (leak?)" : s->trend;
            char boots[48] = "";
            if (s->boots > 1)
                snprintf(boots, sizeof boots, " (over %" PRIu64 " boots)", s->boots);
            printf("'%-4s' %-9s %8" PRIu64 " %14" PRIu64 " %14" PRIu64 " %14" PRIu64 " %12.1f  %s%s\n", s->tag, s->pool,
                   s->samples, s->first_bytes, s->peak_bytes, s->last_bytes, s->slope, trend, boots);
        }
    }
    free(v);
    kdh_report_free(rep);
    return rc;
}

static int open_out(sampler_t *sm, char *dirbuf, size_t dirlen, kdh_err_t *err)
{
    const char *dir = sm->po->out;
    if (!dir) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(dirbuf, dirlen, "pool-%Y%m%d-%H%M%S", &tm);
        dir = dirbuf;
    } else {
        snprintf(dirbuf, dirlen, "%s", dir);
    }
    int rc = kdh_store_open(&sm->st, dir, NULL, err);
    if (rc != KDH_OK)
        return rc;
    json_t *meta = json_pack("{s:s, s:s, s:s, s:I, s:I}", "source", "live", "mode", "pool", "target", sm->po->port,
                             "every_ms", (json_int_t)sm->po->every_ms, "duration_ms", (json_int_t)sm->po->duration_ms);
    if (meta) {
        rc = kdh_store_write_meta(sm->st, meta, err);
        json_decref(meta);
        if (rc != KDH_OK)
            return rc;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/poolmon.txt", dir);
    sm->poolmon = fopen(path, "a");
    if (!sm->poolmon)
        return kdh_err_set(err, KDH_EIO, "cannot open %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/pool_totals.jsonl", dir);
    sm->totals = fopen(path, "a");
    if (!sm->totals)
        return kdh_err_set(err, KDH_EIO, "cannot open %s: %s", path, strerror(errno));
    return KDH_OK;
}

static int run_pool(sampler_t *sm, kdh_pooltag_t *pt, char *dir, size_t dirlen, kdh_err_t *err)
{
    pool_opts_t *po = sm->po;
    int rc = kdh_target_session_open(&sm->s, po->port, po->baud, err);
    kdh_target_t *t = sm->s ? kdh_target_session_target(sm->s) : NULL;
    if (rc == KDH_OK)
        rc = kdh_target_set_symbol_path(t, po->symbols, NULL, err);
    for (int i = 0; rc == KDH_OK && i < po->noverrides; i++)
        rc = kdh_target_add_override(t, po->overrides[i], err);
    if (rc == KDH_OK && (po->every_ms || po->out))
        rc = open_out(sm, dir, dirlen, err);
    if (rc != KDH_OK)
        return rc;
    if (po->every_ms)
        printf("sampling pool usage every %.1f s into %s (Ctrl-C ends)\n", (double)po->every_ms / 1000, dir);
    rc = take_sample(sm, err);
    if (rc != KDH_OK)
        return rc;
    if (!po->every_ms) {
        kdh_pool_sort(&sm->rd.tab, po->sort);
        kdh_pool_print_poolused(stdout, &sm->rd.tab, po->sort, po->top, owner_of, pt);
        printf("(nt!PoolTrackTable 0x%llx, %llu entries from %s)\n", (unsigned long long)sm->rd.table_va,
               (unsigned long long)sm->rd.entries, sm->rd.size_source);
        printf("\nPool totals and limits (as !vm shows them, from KDDEBUGGER_DATA64):\n");
        kdh_pool_print_vm(stdout, &sm->vm);
        return KDH_OK;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        uint64_t el = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000 + (uint64_t)((t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (g_stop || (po->duration_ms && el + po->every_ms > po->duration_ms))
            break;
        rc = run_between(sm, po->every_ms, err);
        if (rc == KDH_ECANCELED)
            break;
        if (rc == KDH_OK)
            rc = take_sample(sm, err);
        if (rc != KDH_OK)
            return rc;
    }
    return KDH_OK;
}

int kdh_cli_cmd_pool(int argc, char **argv)
{
    pool_opts_t po;
    int rc = parse_opts(argc, argv, &po);
    if (rc)
        return rc < 0 ? KDH_CLI_EXIT_OK : rc;
    kdh_err_t err;
    kdh_err_clear(&err);
    kdh_pooltag_t *pt = NULL;
    if (po.pooltag && kdh_pooltag_load(&pt, po.pooltag, &err) != KDH_OK)
        return kdh_cli_fail(&err);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sampler_t sm;
    memset(&sm, 0, sizeof sm);
    sm.po = &po;
    sm.boot = 1;
    sm.rd.table_size = po.table_size;
    sm.rd.full_every = po.full_every;
    kdh_pool_table_init(&sm.prev);
    char dir[4096] = "";
    rc = run_pool(&sm, pt, dir, sizeof dir, &err);
    fflush(stdout);
    int code = rc == KDH_OK ? KDH_CLI_EXIT_OK : KDH_CLI_EXIT_FAIL;
    /* leave the target running whatever happened */
    kdh_err_t derr;
    kdh_err_clear(&derr);
    int detach = sm.s ? kdh_target_session_detach(sm.s, &derr) : KDH_OK;
    if (code != KDH_CLI_EXIT_OK)
        kdh_cli_fail(&err);
    if (detach != KDH_OK) {
        kdh_cli_errorf("the target may still be stopped: %s", derr.msg);
        code = KDH_CLI_EXIT_FAIL;
    }
    kdh_target_session_close(sm.s);
    if (sm.poolmon)
        fclose(sm.poolmon);
    if (sm.totals)
        fclose(sm.totals);
    kdh_err_t cerr;
    kdh_err_clear(&cerr);
    if (sm.st && kdh_store_close(sm.st, &cerr) != KDH_OK) {
        kdh_cli_fail(&cerr);
        code = KDH_CLI_EXIT_FAIL;
    }
    if (po.every_ms && sm.samples > 0 && dir[0]) {
        kdh_err_t gerr;
        kdh_err_clear(&gerr);
        if (print_growth(dir, po.top, &gerr) != KDH_OK) {
            kdh_cli_fail(&gerr);
            code = KDH_CLI_EXIT_FAIL;
        }
    }
    if (sm.s && detach == KDH_OK)
        printf("target continued; detached\n");
    kdh_pool_read_free(&sm.rd);
    kdh_pool_table_free(&sm.prev);
    kdh_pooltag_free(pt);
    return code;
}
