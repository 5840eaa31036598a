/* bench_ingest.c: ingest throughput. Builds a kd log of the requested size in the build folder by
 * concatenating the shared samples of debugger output with varied offsets and CPU numbers (so
 * stacks do not all deduplicate into one), then reports MB/s of the parser alone, of a full
 * ingest into a run directory (a library call in this process, then the `kdharvest ingest`
 * command, a child process as grep is), and of `grep -c` for two frame-line patterns over the
 * same file, with the ratios (CPU MB/s of ours over grep's) and peak RSS. Each figure is the
 * median of ROUNDS rounds, the measurements taken in turn in each round (the machine is shared).
 * A second log of the same size also holds the poolmon screens (poolmon runs on the target's
 * console, so a kd log never shows them; they make the run's pool.jsonl four times longer) and is
 * reported on lines that start with "mixed".
 * usage: bench_ingest [BYTES [ROUNDS]]   (default 1 GiB, 1 round; exit 77 without the samples) */
#include <dirent.h>
#include <stddef.h>
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

static int build_log(const char *out, size_t want, int with_poolmon)
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
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt") || strncmp(e->d_name, "pooltag", 7) == 0 ||
            (!with_poolmon && strncmp(e->d_name, "poolmon", 7) == 0))
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

typedef struct figures {
    double parse_wall, parse_cpu, run_wall, run_cpu, cmd_wall, cmd_cpu, grep_wall[2], grep_cpu[2];
    int cmd_exit;
    unsigned long long grep_lines[2];
    int grep_exit[2];
} figures_t;

static double child_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* Two patterns: what a user types to pull the stacks out of a log (headers and module!symbol+0x
 * lines), and a stricter one anchored on the frame number and first address column. */
static const char *const pats[2] = {"Child-SP|ChildEBP|!.*\\+0x", "^ *[0-9a-f]{2} [0-9a-f]{8}"};

/* One round over log: the parser alone, a full ingest into run, then grep -c twice. */
static int one_round(const char *dir, const char *log, const char *run, figures_t *fg, kdh_ingest_stats_t *st,
                     kdh_ingest_totals_t *tot)
{
    char cmd[2600];
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
    fg->parse_wall = now() - t0, fg->parse_cpu = cpu() - c0;
    *st = *kdh_ingest_parser_stats(p);
    kdh_ingest_parser_free(p);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
    if (system(cmd) != 0)
        return 1;
    const char *files[] = {log};
    kdh_ingest_opts_t o = {.kinds = KDH_INGEST_AUTO, .files = files, .nfiles = 1, .out_dir = run};
    t0 = now();
    c0 = cpu();
    if (kdh_ingest_run(&o, tot, &err)) {
        fprintf(stderr, "ingest: %s\n", err.msg);
        return 1;
    }
    fg->run_wall = now() - t0, fg->run_cpu = cpu() - c0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
    if (system(cmd) != 0)
        return 1;

    /* the same ingest as a user runs it: the command, a child process as grep is */
    snprintf(cmd, sizeof cmd, "'%s' ingest --out '%s' '%s' > /dev/null", KDH_CLI, run, log);
    double cc0 = child_cpu();
    t0 = now();
    fg->cmd_exit = system(cmd);
    fg->cmd_wall = now() - t0;
    fg->cmd_cpu = child_cpu() - cc0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
    if (system(cmd) != 0)
        return 1;

    /* The count goes to a file: GNU grep stops at the first match when its output is /dev/null.
     * LC_ALL=C is grep's fastest mode. */
    for (int k = 0; k < 2; k++) {
        char cnt[1300];
        snprintf(cnt, sizeof cnt, "%s/grep-count", dir);
        snprintf(cmd, sizeof cmd, "LC_ALL=C grep -c -E '%s' '%s' > '%s'", pats[k], log, cnt);
        double cg0 = child_cpu();
        t0 = now();
        fg->grep_exit[k] = system(cmd);
        fg->grep_wall[k] = now() - t0;
        fg->grep_cpu[k] = child_cpu() - cg0;
        fg->grep_lines[k] = 0;
        FILE *cf = fopen(cnt, "r");
        if (cf) {
            if (fscanf(cf, "%llu", &fg->grep_lines[k]) != 1)
                fg->grep_lines[k] = 0;
            fclose(cf);
        }
        remove(cnt);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of field (a double at byte offset off) over n rounds. */
static double median(const figures_t *f, int n, size_t off)
{
    double v[64];
    for (int i = 0; i < n; i++)
        v[i] = *(const double *)((const char *)&f[i] + off);
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MED(field) median(fg, rounds, offsetof(figures_t, field))

/* Every round over log, then its figures on lines that start with prefix; 0 when the ingest
 * found what the parser found. */
static int measure(const char *dir, const char *log, const char *run, const char *prefix, const char *what,
                   int rounds)
{
    figures_t fg[64];
    kdh_ingest_stats_t st;
    kdh_ingest_totals_t tot;
    memset(&st, 0, sizeof st);
    memset(&tot, 0, sizeof tot);
    for (int r = 0; r < rounds; r++)
        if (one_round(dir, log, run, &fg[r], &st, &tot))
            return 1;
    struct stat sb;
    stat(log, &sb);
    double mb = (double)sb.st_size / 1e6;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%sinput           %.1f MB, %llu lines: %s\n", prefix, mb, (unsigned long long)st.lines, what);
    printf("%sfound           %llu stacks, %llu frames, %llu events, %llu snapshots, %llu skipped lines\n", prefix,
           (unsigned long long)st.stacks, (unsigned long long)st.frames, (unsigned long long)st.events,
           (unsigned long long)st.snapshots, (unsigned long long)st.skipped);
    printf("%s                 wall MB/s   CPU MB/s   (medians of %d round%s)\n", prefix, rounds, rounds > 1 ? "s" : "");
    printf("%sparse only      %9.1f  %9.1f   (%.2f s wall)\n", prefix, mb / MED(parse_wall), mb / MED(parse_cpu),
           MED(parse_wall));
    printf("%singest to run   %9.1f  %9.1f   (%.2f s wall, %llu unique stacks)\n", prefix, mb / MED(run_wall),
           mb / MED(run_cpu), MED(run_wall), (unsigned long long)tot.unique_stacks);
    printf("%skdharvest ingest%9.1f  %9.1f   (%.2f s wall, the command, exit %d)\n", prefix, mb / MED(cmd_wall),
           mb / MED(cmd_cpu), MED(cmd_wall), fg[0].cmd_exit);
    double gw[2] = {MED(grep_wall[0]), MED(grep_wall[1])}, gc[2] = {MED(grep_cpu[0]), MED(grep_cpu[1])};
    for (int k = 0; k < 2; k++)
        printf("%sgrep -c #%d      %9.1f  %9.1f   (%.2f s wall, %llu matching lines, exit %d)\n", prefix, k + 1,
               mb / gw[k], gc[k] > 0 ? mb / gc[k] : 0.0, gw[k], fg[0].grep_lines[k], fg[0].grep_exit[k]);
    for (int k = 0; k < 2; k++)
        printf("%sgrep #%d         LC_ALL=C grep -c -E '%s'\n", prefix, k + 1, pats[k]);
    /* the target: ingest at least half of grep's throughput on the same file (CPU, load-independent).
     * Each ratio is the median of the rounds' own ratios: a round's measurements follow each other
     * within seconds, so a slow spell of the shared machine weighs on both sides of a ratio. */
    for (int k = 0; k < 2; k++) {
        figures_t r[64];
        for (int i = 0; i < rounds; i++) {
            double g = fg[i].grep_cpu[k];
            r[i].parse_cpu = g / fg[i].parse_cpu;
            r[i].run_cpu = g / fg[i].run_cpu;
            r[i].cmd_cpu = g / fg[i].cmd_cpu;
        }
        printf("%sratio to grep #%d  parse %.2f  ingest %.2f  command %.2f  (CPU MB/s over grep's CPU MB/s)\n",
               prefix, k + 1, median(r, rounds, offsetof(figures_t, parse_cpu)),
               median(r, rounds, offsetof(figures_t, run_cpu)), median(r, rounds, offsetof(figures_t, cmd_cpu)));
    }
    /* (a child's ru_maxrss starts from the forked copy of this process, so grep's is not shown) */
    printf("%speak RSS        ingest %ld KiB\n", prefix, ru.ru_maxrss);
    fflush(stdout);
    return st.stacks > 0 && tot.events == st.events && fg[0].cmd_exit == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    size_t want = argc > 1 ? strtoull(argv[1], NULL, 0) : (1ull << 30);
    int rounds = argc > 2 ? atoi(argv[2]) : 1;
    if (rounds < 1 || rounds > 64) {
        fprintf(stderr, "rounds must be 1 to 64\n");
        return 2;
    }
    char dir[1024], log[1200], mixed[1200], run[1200];
    snprintf(dir, sizeof dir, "%s/bench-ingest", KDH_BINARY_DIR);
    mkdir(dir, 0755);
    snprintf(log, sizeof log, "%s/debugger-%zu.log", dir, want);
    snprintf(mixed, sizeof mixed, "%s/mixed-%zu.log", dir, want);
    snprintf(run, sizeof run, "%s/run-%zu", dir, want);
    int rc = build_log(log, want, 0);
    if (rc == 0)
        rc = build_log(mixed, want, 1);
    if (rc) {
        fprintf(stderr, rc == 77 ? "samples absent: skipped\n" : "cannot build %s\n", log);
        return rc;
    }
    rc = measure(dir, log, run, "", "debugger output (every sample but poolmon's)", rounds);
    printf("\n");
    return measure(dir, mixed, run, "mixed ", "with the poolmon screens", rounds) || rc;
}
