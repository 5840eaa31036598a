/* workload.c: what the simulated machine does between stops. A workload is a list of driver
 * routines, each called at a mean rate in simulated time (intervals jittered from the seed), on
 * a seeded CPU and one of its worker threads, through nt!PspSystemThreadStartup.
 *
 * Presets: "leak" (leakdrv paths A/B and its free path, busydrv, framedrv, olddrv), "busy"
 * (busydrv, framedrv, olddrv: balanced), "deep" (deepdrv: every call allocates or frees 'Deep'
 * 12 to 20 frames down, often enough that a break is always due), "idle" (nothing runs).
 * A driver a workload names that is not in the standard set is loaded from the fixture folder.
 * Workload file (any other name is a path): one routine per line,
 *     call <module> <export> <calls-per-second>
 * e.g. "call leakdrv.sys LeakDrvWorkA 3000"; '#' starts a comment; blank lines are ignored.
 * Each routine is __cdecl ULONG Routine(ULONG_PTR Seed) and receives a seeded argument. */
#include <stdlib.h>
#include <string.h>

#include "machine_int.h"

typedef struct preset_item {
    const char *module, *fn;
    unsigned rate;
} preset_item_t;

static const preset_item_t k_leak[] = {
    {"leakdrv.sys", "LeakDrvWorkA", 3000}, {"leakdrv.sys", "LeakDrvWorkB", 2000},
    {"leakdrv.sys", "LeakDrvFree", 4000},  {"busydrv.sys", "BusyDrvWork", 10000},
    {"framedrv.sys", "FrameDrvWork", 4000}, {"olddrv.sys", "OldDrvWork", 1000},
};
static const preset_item_t k_busy[] = {
    {"busydrv.sys", "BusyDrvWork", 20000},
    {"framedrv.sys", "FrameDrvWork", 5000},
    {"olddrv.sys", "OldDrvWork", 2000},
};
static const preset_item_t k_deep[] = {
    {"deepdrv.sys", "DeepDrvWork", 20000},
};

static int add_item(sim_machine_t *m, const char *module, const char *fn, double rate, kdh_err_t *err)
{
    if (m->nwork >= SIM_MAX_WORK)
        return kdh_err_set(err, KDH_ERANGE, "kdsim: workload has more than %d routines", SIM_MAX_WORK);
    if (!(rate > 0.0 && rate <= 1e8))
        return kdh_err_set(err, KDH_ERANGE, "kdsim: workload rate %g for %s!%s: use 0 < rate <= 1e8 calls/s",
                           rate, module, fn);
    if (strlen(module) >= sizeof m->work[0].module || strlen(fn) >= sizeof m->work[0].export_name)
        return kdh_err_set(err, KDH_ERANGE, "kdsim: workload name %s!%s too long", module, fn);
    sim_work_t *w = &m->work[m->nwork++];
    memset(w, 0, sizeof *w);
    snprintf(w->module, sizeof w->module, "%s", module);
    snprintf(w->export_name, sizeof w->export_name, "%s", fn);
    w->period_ns = (uint64_t)(1e9 / rate);
    if (w->period_ns == 0)
        w->period_ns = 1;
    return KDH_OK;
}

static int parse_file(sim_machine_t *m, const char *path, kdh_err_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return kdh_err_set(err, KDH_EINVAL, "kdsim: workload '%s' is neither a preset (leak, busy, deep, idle) nor a readable file", path);
    char line[512];
    int lineno = 0, rc = KDH_OK;
    while (rc == KDH_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char verb[16], module[64], fn[128], rate_text[32], extra[8];
        int n = sscanf(line, "%15s %63s %127s %31s %7s", verb, module, fn, rate_text, extra);
        if (n <= 0)
            continue;
        char *end = rate_text;
        double rate = n == 4 ? strtod(rate_text, &end) : 0.0;
        if (n != 4 || strcmp(verb, "call") != 0 || end == rate_text || *end != 0)
            rc = kdh_err_set(err, KDH_ECORRUPT, "kdsim: %s:%d: expected 'call <module> <export> <calls-per-second>'",
                             path, lineno);
        else
            rc = add_item(m, module, fn, rate, err);
    }
    fclose(f);
    return rc;
}

static int parse(sim_machine_t *m, kdh_err_t *err)
{
    const preset_item_t *p = NULL;
    size_t n = 0;
    m->nwork = 0;
    if (strcmp(m->workload, "idle") == 0)
        return KDH_OK;
    if (strcmp(m->workload, "leak") == 0) {
        p = k_leak;
        n = KDH_ARRAY_LEN(k_leak);
    } else if (strcmp(m->workload, "busy") == 0) {
        p = k_busy;
        n = KDH_ARRAY_LEN(k_busy);
    } else if (strcmp(m->workload, "deep") == 0) {
        p = k_deep;
        n = KDH_ARRAY_LEN(k_deep);
    } else {
        return parse_file(m, m->workload, err);
    }
    for (size_t i = 0; i < n; i++) {
        int rc = add_item(m, p[i].module, p[i].fn, p[i].rate, err);
        if (rc != KDH_OK)
            return rc;
    }
    return KDH_OK;
}

/* Before boot: parse. After loading images: resolve each routine and draw its first due time. */
int sim_workload_setup(sim_machine_t *m, kdh_err_t *err)
{
    if (m->nimages == 0)
        return parse(m, err);
    for (int i = 0; i < m->nwork; i++) {
        sim_work_t *w = &m->work[i];
        if (sim_image_export(m, w->module, w->export_name, &w->fn) != KDH_OK)
            return kdh_err_set(err, KDH_ENOTFOUND, "kdsim: workload routine %s!%s is not exported by the fixtures",
                               w->module, w->export_name);
        w->next_due = sim_rand(m) % w->period_ns;
    }
    return KDH_OK;
}

int sim_workload_next(sim_machine_t *m, uint64_t deadline)
{
    int best = -1;
    for (int i = 0; i < m->nwork; i++)
        if (m->work[i].next_due < deadline && (best < 0 || m->work[i].next_due < m->work[best].next_due))
            best = i;
    return best;
}

/* Sets up CPU registers so that the routine runs as
 * PspSystemThreadStartup(Routine, Seed) on a worker thread, with a zero return address at the
 * stack's end and seeded callee-saved registers. */
int sim_workload_start(sim_machine_t *m, int wi, kdh_err_t *err)
{
    sim_work_t *w = &m->work[wi];
    if (m->now_ns < w->next_due)
        m->now_ns = w->next_due;
    w->next_due += w->period_ns / 2 + sim_rand(m) % (w->period_ns + 1);  /* mean: one period */

    int c = (int)(sim_rand(m) % (uint64_t)m->ncpus);
    sim_cpu_t *cpu = &m->cpus[c];
    sim_thread_t *t = &cpu->workers[cpu->next_worker];
    cpu->next_worker = (cpu->next_worker + 1) % SIM_THREADS_PER_CPU;
    uint64_t seed_arg = sim_rand(m);

    sim_regs_t *r = &cpu->regs;
    memset(r, 0, sizeof *r);
    r->rflags = 0x202;
    r->mxcsr = 0x1f80;
    r->rip = m->thread_startup;
    memset(&m->seeds, 0, sizeof m->seeds);
    if (m->arch == SIM_ARCH_X64) {
        static const int cs[8] = {R_BX, R_BP, R_SI, R_DI, 12, 13, 14, 15};
        for (int i = 0; i < 8; i++)
            r->gpr[cs[i]] = m->seeds.v[i] = sim_rand(m);
        for (int i = 0; i < 10; i++) {
            m->seeds.xmm_lo[i] = sim_rand(m);
            m->seeds.xmm_hi[i] = sim_rand(m);
            kdh_put_u64(r->xmm[6 + i], m->seeds.xmm_lo[i]);
            kdh_put_u64(r->xmm[6 + i] + 8, m->seeds.xmm_hi[i]);
        }
        r->gpr[R_SP] = t->stack_top - 0x28;  /* return address + 32 bytes of home space */
        r->gpr[R_CX] = w->fn;
        r->gpr[R_DX] = seed_arg;
        if (sim_mem_put_ptr(m, r->gpr[R_SP], 0) != KDH_OK)
            return kdh_err_set(err, KDH_ETARGET, "kdsim: thread stack unmapped");
    } else {
        static const int cs[4] = {R_BX, R_BP, R_SI, R_DI};
        for (int i = 0; i < 4; i++)
            r->gpr[cs[i]] = m->seeds.v[i] = sim_rand(m) & 0xffffffffu;
        seed_arg &= 0xffffffffu;
        r->gpr[R_SP] = t->stack_top - 12;
        if (sim_mem_put_ptr(m, r->gpr[R_SP], 0) != KDH_OK || sim_mem_put_ptr(m, r->gpr[R_SP] + 4, w->fn) != KDH_OK ||
            sim_mem_put_ptr(m, r->gpr[R_SP] + 8, seed_arg) != KDH_OK)
            return kdh_err_set(err, KDH_ETARGET, "kdsim: thread stack unmapped");
    }
    m->active = 1;
    m->active_cpu = c;
    m->active_thread = t;
    cpu->shadow_depth = 0;
    sim_set_current_thread(m, c, t->kthread);
    return KDH_OK;
}
