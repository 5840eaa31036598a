/* test_probe.c: `kdharvest probe` and `kdharvest stack` end to end against kdsim on a pty and on
 * TCP, x64 and x86. Ground truth comes from outside the host code: kdsim's own start-up line
 * (build, kernel base, module count), llvm-pdbutil-14's publics and section headers of the
 * fixture PDBs (symbol address = kernel base + section VA + offset), the fixture source
 * (PoolHitTag starts as 0xffffff0f) and kdsim's --status lines (the target is left running) and truth file (no pool break fired). Also the bad cases: no such port, refused
 * TCP, a silent line, unresolvable symbols: one line, exit 1, target left running; and a detach whose
 * Continue the target acknowledged and ignored (kdsim mangle-continue): the target left running.
 * usage: test_probe KDHARVEST KDSIM FIXTURES WORKDIR */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kdsim_spawn.h"

static const char *g_kdh, *g_kdsim, *g_fix, *g_work;
static int g_failures;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fprintf(stderr, "\n");                                                               \
            g_failures++;                                                                        \
        }                                                                                        \
    } while (0)

typedef struct run {
    int code;
    char out[32768];
    char err[4096];
    double secs;
} run_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void slurp(const char *path, char *buf, size_t cap)
{
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
}

/* Runs a shell command line; stdout and stderr go to files, then into r. */
static void run(run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run(run_t *r, const char *fmt, ...)
{
    char cmd[4096], full[8192], o[1024], e[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(o, sizeof o, "%s/out.txt", g_work);
    snprintf(e, sizeof e, "%s/err.txt", g_work);
    snprintf(full, sizeof full, "%s >%s 2>%s", cmd, o, e);
    double t0 = now_s();
    int st = system(full);
    r->secs = now_s() - t0;
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    slurp(o, r->out, sizeof r->out);
    slurp(e, r->err, sizeof r->err);
}

/* ---- llvm-pdbutil ground truth --------------------------------------------------------------- */

typedef struct pdbtruth {
    unsigned long sec_va[32];
    int nsec;
    char text[1 << 20];
} pdbtruth_t;

static pdbtruth_t g_pdb;

static int pdb_load(const char *pdb)
{
    char cmd[4096], path[1024];
    snprintf(path, sizeof path, "%s/pdbutil.txt", g_work);
    snprintf(cmd, sizeof cmd, "llvm-pdbutil-14 dump -publics -section-headers '%s' > '%s' 2>/dev/null", pdb, path);
    if (system(cmd) != 0)
        return -1;
    slurp(path, g_pdb.text, sizeof g_pdb.text);
    g_pdb.nsec = 0;
    for (const char *p = g_pdb.text; (p = strstr(p, " virtual address")) != NULL; p++) {
        const char *q = p;
        while (q > g_pdb.text && q[-1] != ' ')
            q--;
        if (g_pdb.nsec < 31)
            g_pdb.sec_va[++g_pdb.nsec] = strtoul(q, NULL, 16);
    }
    return g_pdb.nsec > 0 ? 0 : -1;
}

/* RVA of public `name` (or `_name` on x86); 0 when absent. */
static unsigned long pdb_rva(const char *name)
{
    /* x64 names as written; x86 cdecl "_Name" and stdcall "_Name@N" */
    char pat[3][128];
    snprintf(pat[0], sizeof pat[0], "`%s`", name);
    snprintf(pat[1], sizeof pat[1], "`_%s`", name);
    snprintf(pat[2], sizeof pat[2], "`_%s@", name);
    for (int k = 0; k < 3; k++) {
        const char *p = strstr(g_pdb.text, pat[k]);
        if (!p)
            continue;
        const char *a = strstr(p, "addr = ");
        if (!a)
            return 0;
        /* "addr = 0003:28784": section and offset, both decimal */
        char *colon;
        unsigned sec = (unsigned)strtoul(a + 7, &colon, 10);
        unsigned long off = *colon == ':' ? strtoul(colon + 1, NULL, 10) : 0;
        if (sec == 0 || (int)sec > g_pdb.nsec)
            return 0;
        return g_pdb.sec_va[sec] + off;
    }
    return 0;
}

/* Address printed for "nt!name" in probe output, 0 when absent; source copied to src. */
static unsigned long long probe_addr(const char *out, const char *name, char *src, size_t srclen)
{
    char pat[128];
    snprintf(pat, sizeof pat, "  nt!%s ", name);
    const char *p = strstr(out, pat);
    if (!p)
        return 0;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (strncmp(p, "0x", 2) != 0)
        return 0;
    char *end;
    unsigned long long v = strtoull(p, &end, 16);
    if (src && srclen) {
        const char *lp = strchr(end, '('), *rp = lp ? strchr(lp, ')') : NULL;
        snprintf(src, srclen, "%.*s", lp && rp ? (int)(rp - lp - 1) : 0, lp ? lp + 1 : "");
    }
    return v;
}

static const char *const k_syms[] = {"PoolHitTag", "MmSpecialPoolTag", "MmAllocateSpecialPool",
                                     "MmFreeSpecialPool", "ExAllocatePoolWithTag", "ExFreePoolWithTag",
                                     "DbgBreakPoint"};

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* After a tool left (its stderr lines start at offset from): kdsim says "running" within 25 s
 * and never "stopped". A DbgPrint nobody reads keeps a target "sending" for its retries (20 x
 * 500 ms plus the packet's own time), then it runs on; a target left stopped, or sending an
 * exception report nobody answers (retried forever), never says "running" again. */
static int sim_left_running(const char *errpath, long from)
{
    static char buf[1 << 20];
    for (int i = 0; i < 250; i++) {
        usleep(100 * 1000);
        slurp(errpath, buf, sizeof buf);
        if ((long)strlen(buf) <= from)
            continue;
        for (char *p = buf + from; (p = strstr(p, "kdsim: ")) != NULL; p++) {
            if (strncmp(p, "kdsim: stopped", 14) == 0)
                return 0;
            if (strncmp(p, "kdsim: running", 14) == 0)
                return 1;
        }
    }
    return 0;
}

static long file_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

typedef struct simcfg {
    const char *arch, *baud;
    const char *faults; /* kdsim --faults, or NULL */
    int tcp;
    char fix[1024], truth[1024], errpath[1024];
} simcfg_t;

/* A fresh kdsim per tool run: kdsim honours a 'b' only while its CPU passes a break-in poll
 * (after a DbgPrint) and not once it has given up on an absent host, so a second tool run on
 * the same kdsim may wait in vain; every run here starts on a just-booted target instead. */
static int sim_up(simcfg_t *c, kdsim_proc_t *sim)
{
    char *argv_tcp[] = {(char *)g_kdsim, "--tcp", "0", "--arch", (char *)c->arch, "--baud", (char *)c->baud,
                        "--seed", "11", "--truth", c->truth, "--status", "--workload", "leak", "--fixtures",
                        c->fix, NULL, NULL, NULL};
    char *argv_pty[] = {(char *)g_kdsim, "--pty", "--arch", (char *)c->arch, "--baud", (char *)c->baud,
                        "--seed", "11", "--truth", c->truth, "--status", "--workload", "leak", "--fixtures",
                        c->fix, NULL, NULL, NULL};
    if (c->faults) { /* the two spare slots before the last NULL of each */
        size_t n = sizeof argv_tcp / sizeof argv_tcp[0], m = sizeof argv_pty / sizeof argv_pty[0];
        argv_tcp[n - 3] = argv_pty[m - 3] = (char *)"--faults";
        argv_tcp[n - 2] = argv_pty[m - 2] = (char *)c->faults;
    }
    static int nrun;
    snprintf(c->errpath, sizeof c->errpath, "%s/kdsim-%s-%s-%d.err", g_work, c->arch, c->tcp ? "tcp" : "pty", ++nrun);
    remove(c->truth);
    if (kdsim_start(sim, c->tcp ? argv_tcp : argv_pty, c->errpath) != 0) {
        CHECK(0, "kdsim did not start");
        kdsim_stop(sim);
        return -1;
    }
    return 0;
}

/* The tools never arm anything: kdsim must have recorded no PoolHitTag break. */
static void sim_down(simcfg_t *c, kdsim_proc_t *sim)
{
    CHECK(kdsim_alive(sim), "kdsim exited");
    kdsim_stop(sim);
    static char tbuf[1 << 20];
    slurp(c->truth, tbuf, sizeof tbuf);
    CHECK(!strstr(tbuf, "\"kind\":\"alloc\"") && !strstr(tbuf, "\"kind\":\"free\""),
          "kdsim recorded pool breaks: %ld lines", file_lines(c->truth));
}

static void one_config(const char *arch, int tcp, const char *baud)
{
    simcfg_t c = {.arch = arch, .baud = baud, .tcp = tcp};
    snprintf(c.fix, sizeof c.fix, "%s/%s", g_fix, arch);
    snprintf(c.truth, sizeof c.truth, "%s/truth-%s-%s.jsonl", g_work, arch, tcp ? "tcp" : "pty");
    snprintf(c.errpath, sizeof c.errpath, "%s/kdsim-%s-%s.err", g_work, arch, tcp ? "tcp" : "pty");
    char pdb[1100];
    snprintf(pdb, sizeof pdb, "%s/ntkrnlmp.pdb", c.fix);
    printf("== %s over %s, %s baud\n", arch, tcp ? "TCP" : "pty", baud);
    CHECK(pdb_load(pdb) == 0, "llvm-pdbutil-14 could not dump %s", pdb);
    const char *fix = c.fix;
    kdsim_proc_t sim;
    run_t r;
    char want[256], src[64];

    /* probe, then the target must go on running */
    if (sim_up(&c, &sim) != 0)
        return;
    run(&r, "env -u _NT_SYMBOL_PATH '%s' probe '%s' --symbols '%s'", g_kdh, sim.port_spec, fix);
    long mark = file_size(c.errpath);
    CHECK(r.code == 0, "probe exit %d: %s", r.code, r.err);
    snprintf(want, sizeof want, "kernel: %s build %u (free), 1 processor, kernel base 0x%llx\n", arch, sim.build,
             sim.kern_base);
    CHECK(strstr(r.out, want) != NULL, "probe output lacks '%s':\n%s", want, r.out);
    snprintf(want, sizeof want, "modules: %d\n", sim.modules);
    CHECK(strstr(r.out, want) != NULL, "probe output lacks '%s'", want);
    snprintf(want, sizeof want, "  nt           0x%016llx ", sim.kern_base);
    CHECK(strstr(r.out, want) != NULL, "probe output lacks the kernel's module line '%s'", want);
    for (size_t i = 0; i < sizeof k_syms / sizeof k_syms[0]; i++) {
        unsigned long rva = pdb_rva(k_syms[i]);
        unsigned long long got = probe_addr(r.out, k_syms[i], src, sizeof src);
        CHECK(rva && got == sim.kern_base + rva, "nt!%s: probe 0x%llx, llvm-pdbutil base+0x%lx", k_syms[i], got, rva);
        CHECK(strcmp(src, "ntkrnlmp.pdb") == 0, "nt!%s came from '%s'", k_syms[i], src);
    }
    CHECK(strstr(r.out, "PoolHitTag value: 0xffffff0f\n") != NULL, "PoolHitTag not as the fixture sets it");
    CHECK(strstr(r.out, "special pool tag: 0x00000000") != NULL, "special pool tag line missing");
    CHECK(strstr(r.out, "target continued; detached") != NULL, "no detach line");
    CHECK(sim_left_running(c.errpath, mark), "kdsim is not running after probe (%s)", c.errpath);
    sim_down(&c, &sim);

    /* probe whose first Continue2, the detach's, the target acknowledges and never acts on: the
     * detach finds the target still in its stop and continues it again (before, it was left
     * stopped with nobody attached) */
    c.faults = "mangle-continue=1";
    if (sim_up(&c, &sim) != 0)
        return;
    run(&r, "env -u _NT_SYMBOL_PATH '%s' probe '%s' --symbols '%s'", g_kdh, sim.port_spec, fix);
    mark = file_size(c.errpath);
    CHECK(r.code == 0, "probe (lost Continue) exit %d: %s", r.code, r.err);
    CHECK(sim_left_running(c.errpath, mark), "kdsim is not running after a probe whose Continue was lost (%s)",
          c.errpath);
    sim_down(&c, &sim);
    c.faults = NULL;

    /* stack: WinDbg k layout; a break-in stops in DbgBreakPoint or DbgBreakPointWithStatus */
    if (sim_up(&c, &sim) != 0)
        return;
    run(&r, "env -u _NT_SYMBOL_PATH '%s' stack '%s' --symbols '%s'", g_kdh, sim.port_spec, fix);
    CHECK(r.code == 0, "stack exit %d: %s", r.code, r.err);
    CHECK(strstr(r.out, strcmp(arch, "x64") == 0 ? " # Child-SP          RetAddr               Call Site\n"
                                                 : " # Child-SP RetAddr  Call Site\n") != NULL,
          "stack header missing:\n%s", r.out);
    const char *f0 = strstr(r.out, "\n00 ");
    const char *sym0 = f0 ? strstr(f0, " nt!DbgBreakPoint") : NULL;
    CHECK(sym0 && sym0 < strchr(f0 + 1, '\n'), "frame 00 is not in nt!DbgBreakPoint*:\n%s", r.out);
    CHECK(strstr(r.out, "KD round trips") != NULL, "no capture cost line");
    sim_down(&c, &sim);

    /* no symbols at all: exports still give the exported routines, PoolHitTag cannot be found */
    if (sim_up(&c, &sim) != 0)
        return;
    run(&r, "env -u _NT_SYMBOL_PATH '%s' probe '%s' --symbols '%s/no-such-dir'", g_kdh, sim.port_spec, g_work);
    CHECK(r.code == 1, "probe without symbols exit %d", r.code);
    CHECK(strstr(r.err, "nt!PoolHitTag not found: tried ntkrnlmp.pdb") != NULL &&
              strstr(r.err, "--symbol PoolHitTag=nt+0xRVA") != NULL,
          "unhelpful message: %s", r.err);
    CHECK(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "more than one error line: %s", r.err);
    unsigned long long ex = probe_addr(r.out, "ExAllocatePoolWithTag", src, sizeof src);
    CHECK(ex == sim.kern_base + pdb_rva("ExAllocatePoolWithTag") && strcmp(src, "exports") == 0,
          "ExAllocatePoolWithTag from exports: 0x%llx (%s)", ex, src);
    sim_down(&c, &sim);

    /* ... and an override settles it */
    if (sim_up(&c, &sim) != 0)
        return;
    run(&r, "env -u _NT_SYMBOL_PATH '%s' probe '%s' --symbols '%s/no-such-dir' --symbol PoolHitTag=nt+0x%lx", g_kdh,
        sim.port_spec, g_work, pdb_rva("PoolHitTag"));
    CHECK(r.code == 0, "probe with --symbol exit %d: %s", r.code, r.err);
    CHECK(probe_addr(r.out, "PoolHitTag", src, sizeof src) == sim.kern_base + pdb_rva("PoolHitTag") &&
              strcmp(src, "--symbol") == 0,
          "override not used");
    CHECK(strstr(r.out, "PoolHitTag value: 0xffffff0f\n") != NULL, "PoolHitTag value differs");
    sim_down(&c, &sim);
}

static void bad_ports(void)
{
    printf("== bad ports\n");
    run_t r;
    run(&r, "'%s' probe /dev/kdh-no-such-port", g_kdh);
    CHECK(r.code == 1 && strncmp(r.err, "kdharvest: ", 11) == 0 && strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
          "no such port: exit %d, '%s'", r.code, r.err);
    run(&r, "'%s' stack tcp://127.0.0.1:1", g_kdh);
    CHECK(r.code == 1 && r.secs < 10, "refused TCP: exit %d after %.1f s, '%s'", r.code, r.secs, r.err);
    run(&r, "'%s' probe", g_kdh);
    CHECK(r.code == 2, "missing PORT: exit %d", r.code);
    /* a line on which nothing ever answers: a pty whose master only listens */
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0, "no pty");
    if (m >= 0) {
        const char *slave = ptsname(m);
        run(&r, "'%s' probe '%s'", g_kdh, slave);
        CHECK(r.code == 1 && strstr(r.err, "no valid packet in 5 s at 115200 baud: check the cable and the "
                                          "target's /BAUDRATE") != NULL && r.secs < 12,
              "silent line: exit %d after %.1f s: %s", r.code, r.secs, r.err);
        close(m);
    }
}

int main(int argc, char **argv)
{
    /* PART 1 or 2 splits the four configurations in two, so that ctest can run the halves side
     * by side (each is mostly waiting on an emulated 115200-baud line); no PART runs them all. */
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s KDHARVEST KDSIM FIXTURES WORKDIR [PART]\n", argv[0]);
        return 2;
    }
    int part = argc == 6 ? atoi(argv[5]) : 0;
    g_kdh = argv[1];
    g_kdsim = argv[2];
    g_fix = argv[3];
    g_work = argv[4];
    char p[2048];
    snprintf(p, sizeof p, "%s/x86/ntkrnlmp.pdb", g_fix);
    if (access(g_kdsim, X_OK) != 0 || access(p, R_OK) != 0 || system("llvm-pdbutil-14 --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: kdsim, fixtures or llvm-pdbutil-14 missing\n");
        return 77;
    }
    mkdir(g_work, 0755);
    if (part != 2) {
        bad_ports();
        one_config("x64", 0, "115200");
        one_config("x86", 1, "0");
    }
    if (part != 1) {
        one_config("x64", 1, "0");
        one_config("x86", 0, "115200");
    }
    if (g_failures) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("all probe/stack checks passed\n");
    return 0;
}
