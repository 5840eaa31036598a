/* main.c: the kdsim executable: parses options, creates the simulated machine and its KD target,
 * serves them on a pty, TCP port or Unix socket, and prints where to connect. A stand-in for a
 * Windows server booted with /debug /debugport=COMn, for tests and demos. */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "machine.h"
#include "serve.h"
#include "target.h"

static const char usage[] =
    "usage: kdsim (--pty | --pty-link PATH | --tcp PORT | --unix PATH) --fixtures DIR [options]\n"
    "Simulated Windows target speaking the kernel debugger serial protocol.\n"
    "  --pty              serve on a new pseudo-terminal; its path is printed\n"
    "  --pty-link PATH    the same, with PATH a symlink kept pointing at the current pty\n"
    "                     (fault hangup replaces the pty, as an unplugged adapter comes back)\n"
    "  --tcp PORT         listen on 127.0.0.1:PORT (0 = any free port)\n"
    "  --unix PATH        listen on a Unix socket\n"
    "  --arch x64|x86     target architecture (default x64)\n"
    "  --baud N           emulated 8N1 line speed (default 115200; 0 = unpaced)\n"
    "  --seed N           seed for load addresses, workload and faults (default 1)\n"
    "  --cpus N           simulated processors, 1..8 (default 1)\n"
    "  --workload W       preset (leak, busy, deep, idle) or workload file (default leak)\n"
    "  --truth FILE       write the ground truth of every break as JSON Lines\n"
    "  --truth-ops TAG    the truth also records every allocation and free of TAG as it happens\n"
    "  --special-pool TAG special pool for TAG ('*' = every tag), as the registry's PoolTag sets it\n"
    "  --faults SPEC      e.g. corrupt=0.001,drop=0.0005,drop-packet=0.01,dup-packet=0.01,\n"
    "                     stall=2s/30s,hangup=5s/20s (pty closed 5 s of every 20),reboot=60s,\n"
    "                     reboot-in-request=N (the Nth host request is lost in a reboot),\n"
    "                     lose-request=N@K (the Nth request after the Kth Continue2 is lost\n"
    "                     with its retransmissions until the host resets the link),\n"
    "                     mangle-continue=N (the Nth Continue2's type damaged: acknowledged\n"
    "                     and ignored), mangle-write=N (the Nth memory write's data damaged\n"
    "                     past its checksum: +1 and -1 on its first two bytes),\n"
    "                     mangle-stop=N (the Nth exception stop report's PC damaged past its\n"
    "                     checksum: a bit cleared there, the same bit set in the record),\n"
    "                     mangle-thread=N (the same done to the Nth report's thread)\n"
    "  --fixtures DIR     folder with ntoskrnl.exe, hal.dll, drivers of the chosen arch\n"
    "  --no-context-ex    answer GetContextEx/SetContextEx with STATUS_UNSUCCESSFUL\n"
    "  --no-control-space answer ReadControlSpace with STATUS_UNSUCCESSFUL\n"
    "  --hostile LIST     corrupt what a debugger reads: ldr-cycle, ldr-wild, name-long,\n"
    "                     name-long-drv, kdbg-tag, kdbg-size, stack-garbage (comma list)\n"
    "  --speed X          simulated time per wall time while running (default 1)\n"
    "  --ack-timeout MS   target's wait for an ACK before sending again (default 500)\n"
    "  --status           print a status line to stderr every second (SIGUSR1: one line now)\n"
    "  --help             this text\n";

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kdsim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see kdsim --help)\n", stderr);
    va_end(ap);
    exit(2);
}

static long long parse_int(const char *opt, const char *v, long long lo, long long hi)
{
    char *e;
    long long n = strtoll(v, &e, 0);
    if (e == v || *e || n < lo || n > hi)
        die_usage("%s: '%s' is not a number in %lld..%lld", opt, v, lo, hi);
    return n;
}

/* Messages from the machine may already name the program. */
static const char *strip_prefix(const char *msg)
{
    return strncmp(msg, "kdsim: ", 7) == 0 ? msg + 7 : msg;
}

typedef struct app {
    uv_loop_t *loop;
    sim_machine_t *m;
    sim_target_t *t;
    sim_serve_t *serve;
    uv_signal_t sigint, sigterm, sigusr1;
    uv_timer_t status;
    int status_lines; /* --status */
    int error_shown;
} app_t;

static void on_signal(uv_signal_t *h, int signum)
{
    app_t *a = h->data;
    sim_serve_close(a->serve);
    a->serve = NULL;
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigusr1, NULL);
    if (!uv_is_closing((uv_handle_t *)&a->status))
        uv_close((uv_handle_t *)&a->status, NULL);
}

static const char *state_name(sim_target_state_t s)
{
    return s == SIM_TARGET_RUNNING ? "running" : s == SIM_TARGET_SENDING ? "sending" : "stopped";
}

static void print_status(app_t *a)
{
    sim_target_stats_t ts;
    sim_serve_stats_t ss;
    sim_info_t info;
    sim_target_stats(a->t, &ts);
    sim_serve_stats(a->serve, &ss);
    sim_machine_info(a->m, &info);
    /* what a debugger left in nt!PoolHitTag: a host that detached cleanly put the original back */
    uint8_t pht[4] = {0};
    uint32_t got = 0;
    if (info.pool_hit_tag)
        sim_machine_read(a->m, info.pool_hit_tag, pht, 4, &got);
    fprintf(stderr,
            "kdsim: %s boot=%llu pool-hit-tag=0x%08x sim=%.3fs host=%s pending=%s stops=%llu prints=%llu breakins=%llu ctl-reads=%llu "
            "rx=%lluB/%llupk bad=%llu dup=%llu tx=%lluB/%llupk retx=%llu resets=%llu bps=%llu "
            "faults(corrupt=%llu drop=%llu pkt-drop=%llu pkt-dup=%llu stalls=%llu hangups=%llu reboots=%llu lost-req=%llu) "
            "wall(run=%.3fms resumes=%llu resume-to-stop=%.3fms host-waits=%llu host-wait=%.3fms host-wait-max=%.3fms)\n",
            state_name(sim_target_state(a->t)), (unsigned long long)info.boot,
            got == 4 ? (unsigned)kdh_get_u32(pht) : 0u,
            (double)sim_machine_now_ns(a->m) / 1e9, ss.connected ? "yes" : "no", sim_target_pending_name(a->t),
            (unsigned long long)ts.stops, (unsigned long long)ts.prints,
            (unsigned long long)ts.breakins, (unsigned long long)ts.control_reads, (unsigned long long)ss.rx_bytes,
            (unsigned long long)ts.rx_packets, (unsigned long long)ts.rx_bad,
            (unsigned long long)ts.rx_duplicates, (unsigned long long)ss.tx_bytes,
            (unsigned long long)ts.tx_packets, (unsigned long long)ts.tx_retransmits,
            (unsigned long long)ts.resets, (unsigned long long)ts.breakpoints, (unsigned long long)ss.faults.corrupted,
            (unsigned long long)ss.faults.dropped_bytes, (unsigned long long)ss.faults.dropped_packets,
            (unsigned long long)ss.faults.duplicated_packets, (unsigned long long)ss.faults.stalls,
            (unsigned long long)ss.faults.hangups, (unsigned long long)ss.faults.reboots,
            (unsigned long long)ss.faults.lost_requests, (double)ss.run_wall_ns / 1e6, (unsigned long long)ss.resumes,
            (double)ss.resume_to_stop_ns / 1e6, (unsigned long long)ss.host_waits, (double)ss.host_wait_ns / 1e6,
            (double)ss.host_wait_max_ns / 1e6);
    fflush(stderr);
}

static void on_status(uv_timer_t *h)
{
    app_t *a = h->data;
    const char *e = sim_serve_error(a->serve);
    if (e && !a->error_shown) {
        fprintf(stderr, "kdsim: the simulated machine failed: %s\n", strip_prefix(e));
        a->error_shown = 1;
    }
    if (a->status_lines)
        print_status(a);
}

/* SIGUSR1: one status line now (a benchmark takes the counters before and after what it measures). */
static void on_usr1(uv_signal_t *h, int signum)
{
    (void)signum;
    app_t *a = h->data;
    if (a->serve)
        print_status(a);
}

/* Modules on PsLoadedModuleList (bounded walk: the list lives in simulated memory). */
static int count_modules(sim_machine_t *m, const sim_info_t *info)
{
    uint64_t head = info->ps_loaded_module_list, e = head;
    uint32_t ps = (uint32_t)info->pointer_size;
    int n = 0;
    for (int i = 0; i < 1024; i++) {
        uint8_t b[8] = {0};
        uint32_t done = 0;
        if (sim_machine_read(m, e, b, ps, &done) != KDH_OK || done != ps)
            return -1;
        e = ps == 8 ? kdh_get_u64(b) : kdh_sign_extend32(kdh_get_u32(b));
        if (e == head)
            return n;
        n++;
    }
    return -1;
}

/* A pool tag of 1 to 4 printable characters as the kernel stores it (little-endian, space padded). */
static uint32_t tag_arg(const char *opt, const char *s)
{
    size_t n = strlen(s);
    if (strcmp(s, "*") == 0)
        return '*'; /* every tag: the kernel compares with the character itself */
    if (n < 1 || n > 4)
        die_usage("%s: '%s' is not a pool tag of 1 to 4 characters", opt, s);
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        unsigned char ch = i < n ? (unsigned char)s[i] : ' ';
        if (ch < 0x20 || ch > 0x7e)
            die_usage("%s: '%s' is not a pool tag of printable characters", opt, s);
        v |= (uint32_t)ch << (8 * i);
    }
    return v;
}

int main(int argc, char **argv)
{
    enum { O_PTY = 256, O_TCP, O_UNIX, O_ARCH, O_BAUD, O_SEED, O_CPUS, O_WORKLOAD, O_TRUTH,
           O_FAULTS, O_FIXTURES, O_NOCTXEX, O_NOCTL, O_SPEED, O_ACK, O_STATUS, O_HELP, O_HOSTILE,
           O_TRUTH_OPS, O_SPECIAL, O_PTY_LINK };
    static const struct option opts[] = {
        {"pty", no_argument, 0, O_PTY},          {"tcp", required_argument, 0, O_TCP},
        {"pty-link", required_argument, 0, O_PTY_LINK},
        {"unix", required_argument, 0, O_UNIX},  {"arch", required_argument, 0, O_ARCH},
        {"baud", required_argument, 0, O_BAUD},  {"seed", required_argument, 0, O_SEED},
        {"cpus", required_argument, 0, O_CPUS},  {"workload", required_argument, 0, O_WORKLOAD},
        {"truth", required_argument, 0, O_TRUTH}, {"faults", required_argument, 0, O_FAULTS},
        {"fixtures", required_argument, 0, O_FIXTURES}, {"no-context-ex", no_argument, 0, O_NOCTXEX},
        {"no-control-space", no_argument, 0, O_NOCTL},
        {"speed", required_argument, 0, O_SPEED}, {"ack-timeout", required_argument, 0, O_ACK},
        {"status", no_argument, 0, O_STATUS},    {"help", no_argument, 0, O_HELP},
        {"hostile", required_argument, 0, O_HOSTILE},
        {"truth-ops", required_argument, 0, O_TRUTH_OPS}, {"special-pool", required_argument, 0, O_SPECIAL},
        {0, 0, 0, 0}};
    sim_config_t cfg = {.arch = SIM_ARCH_X64, .seed = 1, .cpus = 1, .workload = "leak"};
    sim_serve_opts_t so = {.kind = SIM_SERVE_PTY, .baud = 115200, .speed = 1.0};
    sim_target_opts_t to;
    sim_target_opts_default(&to);
    int endpoints = 0, status = 0;

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_PTY: so.kind = SIM_SERVE_PTY; endpoints++; break;
        case O_PTY_LINK: so.kind = SIM_SERVE_PTY; so.path = optarg; endpoints++; break;
        case O_TCP:
            so.kind = SIM_SERVE_TCP;
            so.port = (int)parse_int("--tcp", optarg, 0, 65535);
            endpoints++;
            break;
        case O_UNIX: so.kind = SIM_SERVE_UNIX; so.path = optarg; endpoints++; break;
        case O_ARCH:
            if (strcmp(optarg, "x64") == 0)
                cfg.arch = SIM_ARCH_X64;
            else if (strcmp(optarg, "x86") == 0)
                cfg.arch = SIM_ARCH_X86;
            else
                die_usage("--arch: '%s' is not x64 or x86", optarg);
            break;
        case O_BAUD: so.baud = (uint32_t)parse_int("--baud", optarg, 0, 4000000); break;
        case O_SEED: cfg.seed = (uint64_t)parse_int("--seed", optarg, 0, INT64_MAX); break;
        case O_CPUS: cfg.cpus = (int)parse_int("--cpus", optarg, 1, 8); break;
        case O_WORKLOAD: cfg.workload = optarg; break;
        case O_TRUTH: cfg.truth_path = optarg; break;
        case O_FAULTS: so.faults = optarg; break;
        case O_FIXTURES: cfg.fixture_dir = optarg; break;
        case O_NOCTXEX: to.no_context_ex = 1; break;
        case O_NOCTL: to.no_control_space = 1; break;
        case O_HOSTILE: cfg.hostile = optarg; break;
        case O_TRUTH_OPS: cfg.truth_ops_tag = tag_arg("--truth-ops", optarg); break;
        case O_SPECIAL: cfg.special_pool_tag = tag_arg("--special-pool", optarg); break;
        case O_SPEED: {
            char *e;
            so.speed = strtod(optarg, &e);
            if (e == optarg || *e || !(so.speed > 0 && so.speed <= 1000))
                die_usage("--speed: '%s' is not a number in (0, 1000]", optarg);
            break;
        }
        case O_ACK:
            to.ack_timeout_ns = (uint64_t)parse_int("--ack-timeout", optarg, 1, 60000) * 1000000ull;
            break;
        case O_STATUS: status = 1; break;
        case O_HELP: fputs(usage, stdout); return 0;
        default:
            if (optopt && optopt < 256)
                die_usage("option -%c is unknown", optopt);
            else if (optopt)
                die_usage("option %s needs a value", argv[optind - 1]);
            else
                die_usage("option %s is unknown", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die_usage("unexpected argument '%s'", argv[optind]);
    if (endpoints != 1)
        die_usage("give exactly one of --pty, --pty-link PATH, --tcp PORT, --unix PATH");
    if (!cfg.fixture_dir)
        die_usage("--fixtures DIR is required (the folder holding ntoskrnl.exe and hal.dll)");

    /* A folder with x64/ and x86/ (the fixtures build output) is accepted as well. */
    char archdir[4096];
    snprintf(archdir, sizeof archdir, "%s/ntoskrnl.exe", cfg.fixture_dir);
    if (access(archdir, R_OK) != 0) {
        snprintf(archdir, sizeof archdir, "%s/%s/ntoskrnl.exe", cfg.fixture_dir,
                 cfg.arch == SIM_ARCH_X64 ? "x64" : "x86");
        if (access(archdir, R_OK) == 0) {
            *strrchr(archdir, '/') = 0;
            cfg.fixture_dir = archdir;
        }
    }

    /* Validate the fault spec before the (slow) machine start-up. */
    kdh_err_t err;
    kdh_err_clear(&err);
    sim_faults_t probe;
    if (sim_faults_parse(&probe, so.faults, cfg.seed, &err) != KDH_OK)
        die_usage("%s", err.msg);
    so.seed = cfg.seed;

    app_t a;
    memset(&a, 0, sizeof a);
    a.m = sim_machine_create(&cfg, &err);
    if (!a.m) {
        fprintf(stderr, "kdsim: %s\n", strip_prefix(err.msg));
        return err.code == KDH_EINVAL ? 2 : 1; /* a bad option value found by the machine */
    }
    a.t = sim_target_create(a.m, &to, &err);
    if (!a.t) {
        fprintf(stderr, "kdsim: %s\n", strip_prefix(err.msg));
        sim_machine_destroy(a.m);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    a.loop = uv_default_loop();
    if (sim_serve_start(a.loop, a.t, &so, &a.serve, &err) != KDH_OK) {
        fprintf(stderr, "kdsim: %s\n", strip_prefix(err.msg));
        uv_run(a.loop, UV_RUN_NOWAIT);
        sim_target_destroy(a.t);
        sim_machine_destroy(a.m);
        return 1;
    }

    sim_info_t info;
    sim_machine_info(a.m, &info);
    printf("kdsim: serving on %s\n", sim_serve_address(a.serve));
    char mods[16] = "?"; /* a hostile list may not end */
    int nmods = count_modules(a.m, &info);
    if (nmods >= 0)
        snprintf(mods, sizeof mods, "%d", nmods);
    printf("kdsim: %s build %u, %d cpu%s, kernel base 0x%016llx, %s modules, workload %s, boot %llu, "
           "%u baud\n",
           info.arch == SIM_ARCH_X64 ? "x64" : "x86", info.build, info.cpus, info.cpus == 1 ? "" : "s",
           (unsigned long long)info.kern_base, mods, cfg.workload, (unsigned long long)info.boot, so.baud);
    fflush(stdout);

    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigusr1);
    a.sigint.data = a.sigterm.data = a.sigusr1.data = &a;
    uv_signal_start(&a.sigusr1, on_usr1, SIGUSR1);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_timer_init(a.loop, &a.status);
    a.status.data = &a;
    a.status_lines = status;
    uv_timer_start(&a.status, on_status, 1000, 1000);

    uv_run(a.loop, UV_RUN_DEFAULT);
    uv_loop_close(a.loop);
    sim_target_destroy(a.t);
    sim_machine_destroy(a.m);
    return 0;
}
