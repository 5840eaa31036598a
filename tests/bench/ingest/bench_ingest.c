/* bench_ingest.c: ingest throughput. Builds a kd log of the requested size in the build folder by
 * concatenating the shared samples with varied offsets and CPU numbers (so stacks do not all
 * deduplicate into one), then reports MB/s of the parser alone, of a full `ingest` into a run
 * directory, and of `grep -c` for two frame-line patterns over the same file, with the ratios
 * (CPU MB/s of ours over grep's) and peak RSS.
 * usage: bench_ingest [BYTES]   (default 1 GiB; exit 77 when the samples are absent) */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "kdh/ingest.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process: the machine may be shared, wall time is noisy. */
static double cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Copy `round` of a sample: every third round shifts the last digit of each "+0x" offset, and
 * "N: kd>" prompts get the round's CPU, so the log has many distinct stacks and CPUs. */
static void vary(char *b, size_t n, unsigned round)
{
    for (size_t i = 0; i + 4 < n; i++) {
        if (round % 3 == 1 && b[i] == '+' && b[i + 1] == '0' && b[i + 2] == 'x') {
            size_t j = i + 3;
            while (j < n && hexval(b[j]) >= 0)
                j++;
            if (j > i + 3)
                b[j - 1] = "0123456789abcdef"[(hexval(b[j - 1]) + round) & 15];
        } else if (b[i] >= '0' && b[i] <= '9' && b[i + 1] == ':' && b[i + 2] == ' ' && b[i + 3] == 'k') {
            b[i] = (char)('0' + round % 8);
        }
    }
}

static int build_log(const char *out, size_t want)
{
    struct stat sb;
    if (stat(out, &sb) == 0 && (size_t)sb.st_size >= want)
        return 0; /* made by an earlier run */
    DIR *d = opendir(KDH_SAMPLES_DIR);
    if (!d)
        return 77;
    char *bufs[128];
    size_t lens[128], nb = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nb < 128) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt") || strncmp(e->d_name, "pooltag", 7) == 0)
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", KDH_SAMPLES_DIR, e->d_name);
        if ((bufs[nb] = slurp(p, &lens[nb])))
            nb++;
    }
    closedir(d);
    if (!nb)
        return 77;
    FILE *f = fopen(out, "wb");
    if (!f)
        return 1;
    size_t done = 0;
    for (unsigned round = 0; done < want; round++)
        for (size_t i = 0; i < nb && done < want; i++) {
            char *c = malloc(lens[i]);
            memcpy(c, bufs[i], lens[i]);
            vary(c, lens[i], round);
            fwrite(c, 1, lens[i], f);
            done += lens[i];
            free(c);
        }
    for (size_t i = 0; i < nb; i++)
        free(bufs[i]);
    return fclose(f) == 0 ? 0 : 1;
}

static int count_stack(void *ud, const kdh_ingest_stack_t *st, kdh_err_t *err)
{
    (void)st, (void)err;
    ++*(unsigned long long *)ud;
    return 0;
}

int main(int argc, char **argv)
{
    size_t want = argc > 1 ? strtoull(argv[1], NULL, 0) : (1ull << 30);
    char dir[1024], log[1200], run[1200], cmd[2600];
    snprintf(dir, sizeof dir, "%s/bench-ingest", KDH_BINARY_DIR);
    mkdir(dir, 0755);
    snprintf(log, sizeof log, "%s/kd-%zu.log", dir, want);
    snprintf(run, sizeof run, "%s/run-%zu", dir, want);
    int rc = build_log(log, want);
    if (rc) {
        fprintf(stderr, rc == 77 ? "samples absent: skipped\n" : "cannot build %s\n", log);
        return rc;
    }
    struct stat sb;
    stat(log, &sb);
    double mb = (double)sb.st_size / 1e6;

    /* 1. the parser alone */
    unsigned long long stacks = 0;
    kdh_ingest_sink_t sink = {&stacks, count_stack, NULL};
    kdh_ingest_parser_t *p;
    kdh_err_t err = {0, ""};
    if (kdh_ingest_parser_new(&p, KDH_INGEST_AUTO, &sink, &err))
        return 1;
    double t0 = now(), c0 = cpu();
    if (kdh_ingest_parse_file(p, log, &err)) {
        fprintf(stderr, "parse: %s\n", err.msg);
        return 1;
    }
    double t_parse = now() - t0, c_parse = cpu() - c0;
    kdh_ingest_stats_t st = *kdh_ingest_parser_stats(p);
    kdh_ingest_parser_free(p);

    /* 2. a full ingest into a run directory */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
    if (system(cmd) != 0)
        return 1;
    const char *files[] = {log};
    kdh_ingest_opts_t o = {.kinds = KDH_INGEST_AUTO, .files = files, .nfiles = 1, .out_dir = run};
    kdh_ingest_totals_t tot;
    t0 = now();
    c0 = cpu();
    if (kdh_ingest_run(&o, &tot, &err)) {
        fprintf(stderr, "ingest: %s\n", err.msg);
        return 1;
    }
    double t_run = now() - t0, c_run = cpu() - c0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long self_rss = ru.ru_maxrss;

    /* 3. grep -c over the same file, for scale. The count goes to a file: GNU grep stops at the
     * first match when its output is /dev/null. LC_ALL=C is grep's fastest mode. Two patterns:
     * what a user types to pull the stacks out of a log (headers and module!symbol+0x lines),
     * and a stricter one anchored on the frame number and first address column. */
    static const char *const pats[2] = {"Child-SP|ChildEBP|!.*\\+0x", "^ *[0-9a-f]{2} [0-9a-f]{8}"};
    double t_grep[2], c_grep[2];
    unsigned long long grep_lines[2];
    int g[2];
    for (int k = 0; k < 2; k++) {
        char cnt[1300];
        snprintf(cnt, sizeof cnt, "%s/grep-count", dir);
        snprintf(cmd, sizeof cmd, "LC_ALL=C grep -c -E '%s' '%s' > '%s'", pats[k], log, cnt);
        getrusage(RUSAGE_CHILDREN, &ru);
        double cg0 = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                     (double)ru.ru_stime.tv_usec / 1e6;
        t0 = now();
        g[k] = system(cmd);
        t_grep[k] = now() - t0;
        getrusage(RUSAGE_CHILDREN, &ru);
        c_grep[k] = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                    (double)ru.ru_stime.tv_usec / 1e6 - cg0;
        grep_lines[k] = 0;
        FILE *cf = fopen(cnt, "r");
        if (cf) {
            if (fscanf(cf, "%llu", &grep_lines[k]) != 1)
                grep_lines[k] = 0;
            fclose(cf);
        }
        remove(cnt);
    }

    printf("input           %.1f MB, %llu lines\n", mb, (unsigned long long)st.lines);
    printf("found           %llu stacks, %llu frames, %llu events, %llu snapshots, %llu skipped lines\n",
           (unsigned long long)st.stacks, (unsigned long long)st.frames, (unsigned long long)st.events,
           (unsigned long long)st.snapshots, (unsigned long long)st.skipped);
    printf("                 wall MB/s   CPU MB/s\n");
    printf("parse only      %9.1f  %9.1f   (%.2f s wall)\n", mb / t_parse, mb / c_parse, t_parse);
    printf("ingest to run   %9.1f  %9.1f   (%.2f s wall, %llu unique stacks)\n", mb / t_run, mb / c_run, t_run,
           (unsigned long long)tot.unique_stacks);
    for (int k = 0; k < 2; k++)
        printf("grep -c #%d      %9.1f  %9.1f   (%.2f s wall, %llu matching lines, exit %d)\n", k + 1,
               mb / t_grep[k], c_grep[k] > 0 ? mb / c_grep[k] : 0.0, t_grep[k], grep_lines[k], g[k]);
    for (int k = 0; k < 2; k++)
        printf("grep #%d         LC_ALL=C grep -c -E '%s'\n", k + 1, pats[k]);
    /* the target: ingest at least half of grep's throughput on the same file (CPU, load-independent) */
    for (int k = 0; k < 2; k++)
        if (c_grep[k] > 0)
            printf("ratio to grep #%d  parse %.2f  ingest %.2f  (CPU MB/s over grep's CPU MB/s)\n", k + 1,
                   c_grep[k] / c_parse, c_grep[k] / c_run);
    /* (a child's ru_maxrss starts from the forked copy of this process, so grep's is not shown) */
    printf("peak RSS        ingest %ld KiB\n", self_rss);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
    if (system(cmd) != 0)
        return 1;
    return st.stacks > 0 && tot.events == st.events ? 0 : 1;
}
