/* cmd_demo.c: `kdharvest demo`: the harvester end to end without a Windows machine. Starts kdsim
 * (the simulated target) on a pseudo-terminal at 115200 emulated baud with the leaking-driver
 * workload, harvests tag 'Leak' for about 20 s with the live status line, then prints the report
 * (the leaking driver's stacks on top). kdsim and its fixture images are found next to this
 * executable's build tree (../sim/kdsim, ../../fixtures), or through --kdsim / --fixtures or the
 * KDH_KDSIM / KDH_FIXTURES environment variables. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdh/cli.h"
#include "kdh/harvest.h"
#include "kdh/report.h"
#include "run_status.h"

static const char usage[] =
    "[--seconds N] [--arch x64|x86] [--out DIR] [--kdsim PATH] [--fixtures DIR]\n"
    "Runs the harvester against kdsim, a simulated Windows target on a pseudo-terminal at 115200\n"
    "baud whose leakdrv.sys leaks pool tag 'Leak', then prints the report of the run.\n"
    "  --seconds N     harvest for N seconds (default 20)\n"
    "  --arch A        x64 (default) or x86 target\n"
    "  --out DIR       run directory (default logs/demo/<UTC time>)\n"
    "  --kdsim PATH    the kdsim executable (default: $KDH_KDSIM, else ../sim/kdsim next to kdharvest)\n"
    "  --fixtures DIR  kdsim's images (default: $KDH_FIXTURES, else ../../fixtures next to kdharvest)\n";

enum { OPT_SECONDS = 256, OPT_ARCH, OPT_OUT, OPT_KDSIM, OPT_FIXTURES };
static const struct option longopts[] = {
    {"seconds", required_argument, NULL, OPT_SECONDS}, {"arch", required_argument, NULL, OPT_ARCH},
    {"out", required_argument, NULL, OPT_OUT},         {"kdsim", required_argument, NULL, OPT_KDSIM},
    {"fixtures", required_argument, NULL, OPT_FIXTURES}, {0, 0, 0, 0}};

/* dir of /proc/self/exe + "/" + rel */
static int beside_exe(const char *rel, char *out, size_t len)
{
    char exe[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = 0;
    int w = snprintf(out, len, "%s/%s", exe, rel);
    return w > 0 && (size_t)w < len ? 0 : -1;
}

/* Starts kdsim and reads "kdsim: serving on PTY" from its stdout. */
static pid_t start_kdsim(const char *kdsim, const char *fixtures, const char *arch, char *pty, size_t pty_len)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        /* without its stdout on the pipe the parent would wait for a line that never comes */
        if (dup2(p[1], 1) < 0)
            _exit(127);
        close(p[0]);
        close(p[1]);
        execl(kdsim, kdsim, "--pty", "--fixtures", fixtures, "--arch", arch, "--baud", "115200", "--workload",
              "leak", (char *)NULL);
        fprintf(stderr, "kdharvest: cannot run %s: %s\n", kdsim, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    FILE *f = fdopen(p[0], "r");
    char line[512];
    pty[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "kdsim: serving on %255s", pty) == 1 && strlen(pty) < pty_len)
            break;
    /* kdsim keeps writing nothing more to stdout; the pipe may close with us */
    if (f)
        fclose(f);
    if (!pty[0]) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

int kdh_cli_cmd_harvest_demo(int argc, char **argv)
{
    kdh_cli_opt_t o = {.cmd = "demo", .usage = usage, .longopts = longopts};
    unsigned long long seconds = 20;
    const char *arch = "x64", *out = NULL, *kdsim = getenv("KDH_KDSIM"), *fixtures = getenv("KDH_FIXTURES");
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
        switch (c) {
        case OPT_SECONDS:
            if (kdh_cli_parse_u64("demo", "--seconds", o.arg, 1, 3600, &seconds))
                return KDH_CLI_EXIT_USAGE;
            break;
        case OPT_ARCH:
            if (strcmp(o.arg, "x64") != 0 && strcmp(o.arg, "x86") != 0)
                return kdh_cli_usage_errorf("demo", "--arch must be x64 or x86");
            arch = o.arg;
            break;
        case OPT_OUT: out = o.arg; break;
        case OPT_KDSIM: kdsim = o.arg; break;
        case OPT_FIXTURES: fixtures = o.arg; break;
        default: break;
        }
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code;
    char kpath[PATH_MAX], fpath[PATH_MAX], fx[PATH_MAX + 8], odir[256];
    if (!kdsim && beside_exe("../sim/kdsim", kpath, sizeof kpath) == 0)
        kdsim = kpath;
    if (!fixtures && beside_exe("../../fixtures", fpath, sizeof fpath) == 0)
        fixtures = fpath;
    if (!kdsim || access(kdsim, X_OK) != 0) {
        kdh_cli_errorf("kdsim not found (%s): build it (make) or give --kdsim PATH", kdsim ? kdsim : "?");
        return KDH_CLI_EXIT_FAIL;
    }
    snprintf(fx, sizeof fx, "%s/%s", fixtures ? fixtures : ".", arch);
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/ntoskrnl.exe", fx);
    if (access(probe, R_OK) != 0) {
        kdh_cli_errorf("kdsim's fixture images not found in %s: build them (make) or give --fixtures DIR", fx);
        return KDH_CLI_EXIT_FAIL;
    }
    if (!out) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(odir, sizeof odir, "logs/demo/%Y%m%dT%H%M%SZ", &tm);
        out = odir;
    }
    char pty[256];
    pid_t pid = start_kdsim(kdsim, fx, arch, pty, sizeof pty);
    if (pid < 0) {
        kdh_cli_errorf("kdsim did not start (%s)", kdsim);
        return KDH_CLI_EXIT_FAIL;
    }
    printf("kdharvest demo: kdsim (simulated Windows %s, leakdrv.sys leaking pool tag 'Leak') on %s at 115200 "
           "baud;\nharvesting for %llu s into %s (Ctrl-C stops early)\n\n",
           arch, pty, seconds, out);
    fflush(stdout);
    kdh_harvest_opts_t ho;
    memset(&ho, 0, sizeof ho);
    ho.port = pty;
    ho.baud = 115200;
    ho.tag = "Leak";
    ho.out_dir = out;
    ho.target_name = "kdsim";
    ho.symbol_path = fx;
    ho.duration_s = (double)seconds;
    kdh_harvest_result_t res;
    int rc = kdh_cli_run_harvest(&ho, 0, &res);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    if (rc != KDH_CLI_EXIT_OK)
        return rc;
    printf("\n%llu hits (%llu allocations, %llu frees), %llu unique stacks, %llu bytes on the wire\n\n",
           (unsigned long long)res.final.hits, (unsigned long long)res.final.allocs,
           (unsigned long long)res.final.frees, (unsigned long long)res.final.unique_stacks,
           (unsigned long long)res.bytes_in + (unsigned long long)res.bytes_out);
    kdh_report_opts_t ro;
    memset(&ro, 0, sizeof ro);
    ro.format = KDH_REPORT_TEXT;
    ro.by = KDH_REPORT_BY_STACK;
    ro.value = KDH_REPORT_VALUE_COUNT;
    ro.top = 5;
    kdh_report_t *rep = NULL;
    kdh_err_t err = {0};
    if (kdh_report_new(&rep, &ro, &err) != KDH_OK || kdh_report_add_run(rep, out, &err) != KDH_OK ||
        kdh_report_render(rep, stdout, &err) != KDH_OK) {
        kdh_report_free(rep);
        return kdh_cli_fail(&err);
    }
    kdh_report_free(rep);
    printf("\nThe run directory %s holds the logs (docs/run-format.md); `kdharvest report %s` shows them again.\n",
           out, out);
    return KDH_CLI_EXIT_OK;
}
