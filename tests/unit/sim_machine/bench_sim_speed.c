/* bench_sim_speed.c: how fast the simulated machine runs the "leak" workload, in simulated
 * seconds per wall-clock second, for x64 and x86: once free-running (nothing armed, so no stops)
 * and once with PoolHitTag armed for 'Leak' (a stop per leakdrv allocation, each resumed past its
 * int 3, ground truth written). Not a ctest test: run it by hand.
 *   bench_sim_speed <fixtures-root> [sim-seconds] [truth-prefix]
 * With truth-prefix the armed runs write <prefix>_x64.jsonl / <prefix>_x86.jsonl (seed 42, 4
 * CPUs), so two builds of the machine can be compared byte for byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "machine_int.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static sim_machine_t *boot(const char *root, sim_arch_t a, const char *truth)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", root, a == SIM_ARCH_X64 ? "x64" : "x86");
    sim_config_t c = {.arch = a, .seed = 42, .cpus = 4, .fixture_dir = dir, .workload = "leak", .truth_path = truth};
    kdh_err_t err = {0};
    sim_machine_t *m = sim_machine_create(&c, &err);
    if (!m || sim_machine_reboot(m, &err) != KDH_OK) {
        fprintf(stderr, "boot: %s\n", err.msg);
        exit(1);
    }
    return m;
}

/* Runs sim_s simulated seconds; with armed, moves past every breakpoint. Returns wall seconds
 * and CPU seconds (*cpu_s): on a shared machine the CPU time is the steadier figure. */
static double run(sim_machine_t *m, double sim_s, int armed, unsigned *stops, double *cpu_s)
{
    kdh_err_t err = {0};
    sim_stop_t s;
    uint64_t end = (uint64_t)(sim_s * 1e9);
    *stops = 0;
    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    while (sim_machine_now_ns(m) < end) {
        if (sim_machine_run(m, end - sim_machine_now_ns(m), &s, &err) != KDH_OK) {
            fprintf(stderr, "run: %s\n", err.msg);
            exit(1);
        }
        if (s.kind == SIM_STOP_BREAKPOINT) {
            if (!armed) {
                fprintf(stderr, "unexpected breakpoint at 0x%llx\n", (unsigned long long)s.pc);
                exit(1);
            }
            (*stops)++;
            m->cpus[s.cpu].regs.rip++;  /* past the int 3, as a debugger does with SetContext */
        }
    }
    *cpu_s = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return clock_s(CLOCK_MONOTONIC) - t0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <fixtures-root> [sim-seconds] [truth-prefix]\n", argv[0]);
        return 2;
    }
    double sim_s = argc > 2 ? atof(argv[2]) : 2.0;
    const char *prefix = argc > 3 ? argv[3] : NULL;
    for (int a = 0; a < 2; a++) {
        const char *an = a == SIM_ARCH_X64 ? "x64" : "x86";
        unsigned stops;
        double cpu;
        sim_machine_t *m = boot(argv[1], (sim_arch_t)a, NULL);
        double w = run(m, sim_s, 0, &stops, &cpu);
        printf("%s leak free-running:     %.2f sim s: %7.3f wall s = %6.2f sim s/wall s; %7.3f CPU s = %6.2f sim s/CPU s\n",
               an, sim_s, w, sim_s / w, cpu, sim_s / cpu);
        printf("    %llu instructions, %llu emulator starts, %llu undecoded blocks\n", (unsigned long long)m->stat_insns,
               (unsigned long long)m->stat_starts, (unsigned long long)m->decode_misses);
        sim_machine_destroy(m);

        char truth[600];
        if (prefix) {
            snprintf(truth, sizeof truth, "%s_%s.jsonl", prefix, an);
            unlink(truth);
        }
        m = boot(argv[1], (sim_arch_t)a, prefix ? truth : NULL);
        uint8_t tag[4];
        kdh_put_u32(tag, 0x6B61654Cu); /* 'Leak' */
        uint32_t done = 0;
        sim_machine_write(m, sim_report_addr(m, m->pool_hit_tag), tag, 4, &done);
        w = run(m, sim_s, 1, &stops, &cpu);
        printf("%s leak PoolHitTag armed: %.2f sim s: %7.3f wall s = %6.2f sim s/wall s; %7.3f CPU s = %6.2f sim s/CPU s "
               "(%u stops)\n", an, sim_s, w, sim_s / w, cpu, sim_s / cpu, stops);
        sim_machine_destroy(m);
    }
    return 0;
}
