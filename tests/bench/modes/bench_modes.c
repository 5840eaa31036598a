/* bench_modes.c: wire cost of the arming modes and of leak accounting against kdsim at 115200
 * emulated baud (x64, the leak workload with its background drivers), each phase on the same
 * simulated target for the same time, hittag without --pair as the baseline measured in the same
 * run. Per phase: captured hits per second; per captured hit the median bytes on the wire (both
 * directions), round trips (requests answered by a reply) and Continue2 packets; with --pair, the
 * same for the stop at an allocation's return; in the breakpoint modes, the same for a stop of
 * another tag that is only resumed (filtered).
 * usage: bench_modes KDSIM FIXTURES-X64-DIR SECONDS   (77 when kdsim is absent) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kdh/harvest.h"
#include "kdh/store.h"

#define MAXH 200000
#define WARMUP 10

typedef struct phase {
    const char *name;
    kdh_harvest_mode_t mode;
    int pair, special;
    kdh_harvest_hit_cost_t *v;
    size_t n;
} phase_t;

static void on_hit(void *ctx, const kdh_harvest_hit_cost_t *c)
{
    phase_t *p = ctx;
    if (p->n < MAXH)
        p->v[p->n++] = *c;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median bytes, round trips and continues of the records of one class (0 hit, 1 return, 2 filtered). */
typedef struct stat {
    size_t n;
    uint64_t bytes, rt, cont;
} stat_t;

static void med(const phase_t *p, int cls, stat_t *s)
{
    uint64_t *b = calloc(p->n + 1, 8), *r = calloc(p->n + 1, 8), *c = calloc(p->n + 1, 8);
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < p->n; i++) {
        const kdh_harvest_hit_cost_t *h = &p->v[i];
        int k = h->pair_return ? 1 : h->filtered ? 2 : 0;
        if (k != cls || (k == 0 && !h->captured) || i < WARMUP) /* the first stops warm the caches */
            continue;
        b[s->n] = h->bytes_in + h->bytes_out;
        r[s->n] = h->requests;
        c[s->n++] = h->continues;
    }
    if (s->n) {
        qsort(b, s->n, 8, cmp_u64);
        qsort(r, s->n, 8, cmp_u64);
        qsort(c, s->n, 8, cmp_u64);
        s->bytes = b[s->n / 2];
        s->rt = r[s->n / 2];
        s->cont = c[s->n / 2];
    }
    free(b);
    free(r);
    free(c);
}

static pid_t start_kdsim(const char *kdsim, const char *fx, int special, char *pty, size_t len)
{
    int pp[2];
    if (pipe(pp) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pp[1], 1);
        close(pp[0]);
        if (special)
            execl(kdsim, kdsim, "--pty", "--fixtures", fx, "--baud", "115200", "--workload", "leak", "--special-pool",
                  "Leak", (char *)NULL);
        else
            execl(kdsim, kdsim, "--pty", "--fixtures", fx, "--baud", "115200", "--workload", "leak", (char *)NULL);
        _exit(127);
    }
    close(pp[1]);
    FILE *f = fdopen(pp[0], "r");
    char line[512];
    pty[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "kdsim: serving on %255s", pty) == 1)
            break;
    (void)len;
    return pty[0] ? pid : -1;
}

static int run_phase(const char *pty, const char *fx, phase_t *p, double seconds)
{
    char dir[] = "/tmp/kdh-bench-modes-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    kdh_harvest_opts_t o;
    memset(&o, 0, sizeof o);
    o.port = pty;
    o.baud = 115200;
    o.tag = "Leak";
    o.mode = p->mode;
    o.pair = p->pair;
    o.out_dir = dir;
    o.symbol_path = p->mode == KDH_HARVEST_ENTRY ? "" : fx; /* entry mode needs no PDB */
    o.duration_s = seconds;
    o.on_hit = on_hit;
    o.ctx = p;
    kdh_err_t err = {0};
    int rc = kdh_harvest_run(&o, NULL, &err);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0 && rc == KDH_OK)
        rc = -1;
    if (rc != KDH_OK)
        fprintf(stderr, "bench_modes: %s: %s\n", p->name, err.msg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    const char *kdsim = argv[1], *fx = argv[2];
    double seconds = atof(argv[3]);
    char probe[600];
    snprintf(probe, sizeof probe, "%s/ntoskrnl.exe", fx);
    if (access(kdsim, X_OK) != 0 || access(probe, R_OK) != 0)
        return 77;
    phase_t ph[] = {
        {.name = "hittag (baseline)", .mode = KDH_HARVEST_HITTAG},
        {.name = "hittag --pair", .mode = KDH_HARVEST_HITTAG, .pair = 1},
        {.name = "specialpool --pair", .mode = KDH_HARVEST_SPECIALPOOL, .pair = 1, .special = 1},
        {.name = "entry", .mode = KDH_HARVEST_ENTRY},
        {.name = "entry --pair", .mode = KDH_HARVEST_ENTRY, .pair = 1},
    };
    const int np = (int)(sizeof ph / sizeof ph[0]);
    char pty[2][256];
    pid_t pid[2];
    pid[0] = start_kdsim(kdsim, fx, 0, pty[0], sizeof pty[0]);
    pid[1] = start_kdsim(kdsim, fx, 1, pty[1], sizeof pty[1]);
    if (pid[0] < 0 || pid[1] < 0) {
        fprintf(stderr, "bench_modes: kdsim did not start\n");
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < np && rc == 0; i++) {
        ph[i].v = calloc(MAXH, sizeof *ph[i].v);
        rc = run_phase(pty[ph[i].special], fx, &ph[i], seconds);
    }
    for (int k = 0; k < 2; k++) {
        kill(pid[k], SIGTERM);
        waitpid(pid[k], NULL, 0);
    }
    printf("kdharvest run modes, kdsim x64 at 115200 baud, leak workload, %.0f s per phase\n", seconds);
    printf("%-20s %8s | %-24s | %-24s | %-24s\n", "phase", "capt/s", "captured hit: B rt cont",
           "return stop: B rt cont", "filtered stop: B rt cont");
    double base = 0;
    for (int i = 0; i < np; i++) {
        stat_t s[3];
        size_t captured = 0;
        for (size_t k = 0; k < ph[i].n; k++)
            captured += ph[i].v[k].captured && !ph[i].v[k].pair_return && !ph[i].v[k].filtered;
        for (int c = 0; c < 3; c++)
            med(&ph[i], c, &s[c]);
        double rate = seconds > 0 ? captured / seconds : 0;
        if (i == 0)
            base = rate;
        char col[3][64];
        for (int c = 0; c < 3; c++) {
            if (s[c].n)
                snprintf(col[c], sizeof col[c], "%5llu %2llu %2llu (n=%zu)", (unsigned long long)s[c].bytes,
                         (unsigned long long)s[c].rt, (unsigned long long)s[c].cont, s[c].n);
            else
                snprintf(col[c], sizeof col[c], "-");
        }
        printf("%-20s %8.1f | %-24s | %-24s | %-24s  (%.2fx baseline rate)\n", ph[i].name, rate, col[0], col[1],
               col[2], base > 0 ? rate / base : 0);
        free(ph[i].v);
    }
    return rc == 0 ? 0 : 1;
}
