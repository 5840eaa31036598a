/* test_unwind_truth.c: the target model's stack capture against kdsim's ground truth. kdsim
 * runs a workload ("leak" unless given) on an unpaced line and writes, for every int 3 stop, the call stack
 * its shadow stack recorded (no unwinding involved). The host arms PoolHitTag with the tag ('Leak' unless given); for
 * each of N breaks captures the stack through the target model's async driver (a context slice,
 * then the unwinder over the caches), steps over the int 3 and continues. The captured frames
 * (module file, RVA) are then compared with the truth file line by line. With a frame range,
 * every true stack must be that deep and every depth in the range must occur.
 * usage: test_unwind_truth KDSIM FIXTURES WORKDIR x64|x86 BREAKS [WORKLOAD TAG MIN-FRAMES MAX-FRAMES] */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/target.h"
#include "kdsim_spawn.h"

#define MAX_FRAMES 64

typedef struct capture {
    uint64_t pc;
    uint32_t n;
    char mod[MAX_FRAMES][128];
    uint32_t rva[MAX_FRAMES];
} capture_t;

typedef struct job_wait {
    int done, status;
} job_wait_t;

static void on_job(kdh_target_job_t *job, int status)
{
    job_wait_t *w = job->user;
    w->done = 1;
    w->status = status;
}

static int stack_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    return kdh_target_step_stack(t, arg, err);
}

static kdh_target_stack_t g_stack;

/* The stack of the current stop through kdh_target_run_async (the daemon's path). */
static int capture(kdh_target_session_t *s, capture_t *c, uint64_t *fetches, kdh_err_t *err)
{
    kdh_target_t *t = kdh_target_session_target(s);
    kdh_kd_t *kd = kdh_target_session_kd(s);
    const kdh_wire_state_change_t *sc = kdh_kd_state(kd);
    uint32_t off, len;
    kdh_target_stack_slice(t, &off, &len);
    uint8_t slice[0x20];
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_get_context_slice(kd, &req, sc->processor, off, slice, len, NULL, NULL);
    if (kdh_kd_wait(kd, &req) != KDH_OK)
        return kdh_err_set(err, req.status, "context slice: %s", req.err.msg);
    int rc = kdh_target_stack_init(t, &g_stack, sc->program_counter, slice, len, err);
    if (rc != KDH_OK)
        return rc;
    kdh_target_job_t job;
    job_wait_t w = {0, 0};
    kdh_target_run_async(&job, t, kd, stack_step, &g_stack, on_job, &w);
    while (!w.done)
        uv_run(kdh_target_session_loop(s), UV_RUN_ONCE);
    if (w.status != KDH_OK)
        return kdh_err_set(err, w.status, "%s", job.err.msg);
    *fetches += job.fetches;
    c->pc = sc->program_counter;
    c->n = g_stack.n_frames < MAX_FRAMES ? g_stack.n_frames : MAX_FRAMES;
    for (uint32_t i = 0; i < c->n; i++) {
        const kdh_target_frame_t *f = &g_stack.frames[i];
        snprintf(c->mod[i], sizeof c->mod[i], "%s", f->module ? f->module->file : "?");
        c->rva[i] = f->rva;
    }
    return KDH_OK;
}

typedef struct resolve_arg {
    uint64_t addr;
    char source[64];
} resolve_arg_t;

static int resolve_hit_tag(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    resolve_arg_t *r = arg;
    return kdh_target_step_resolve(t, "nt!PoolHitTag", &r->addr, r->source, sizeof r->source, err);
}

static int resolve_break_routine(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    resolve_arg_t *r = arg;
    return kdh_target_step_resolve(t, "nt!DbgBreakPoint", &r->addr, r->source, sizeof r->source, err);
}

static int write_u32(kdh_kd_t *kd, uint64_t va, uint32_t v, kdh_err_t *err)
{
    uint8_t b[4];
    kdh_put_u32(b, v);
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_write_virtual(kd, &req, va, b, 4, NULL, NULL);
    if (kdh_kd_wait(kd, &req) != KDH_OK)
        return kdh_err_set(err, req.status, "write 0x%llx: %s", (unsigned long long)va, req.err.msg);
    return KDH_OK;
}

static int read_u32(kdh_kd_t *kd, uint64_t va, uint32_t *v, kdh_err_t *err)
{
    uint8_t b[4];
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_read_virtual(kd, &req, va, b, 4, NULL, NULL);
    if (kdh_kd_wait(kd, &req) != KDH_OK || req.out_len != 4)
        return kdh_err_set(err, KDH_EIO, "read 0x%llx: %s", (unsigned long long)va, req.err.msg);
    *v = kdh_get_u32(b);
    return KDH_OK;
}

static int fail(const char *what, const kdh_err_t *err)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, err ? err->msg : "");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 10) {
        fprintf(stderr, "usage: %s KDSIM FIXTURES WORKDIR x64|x86 BREAKS [WORKLOAD TAG MIN-FRAMES MAX-FRAMES]\n",
                argv[0]);
        return 2;
    }
    const char *kdsim = argv[1], *arch = argv[4];
    unsigned breaks = (unsigned)atoi(argv[5]);
    const char *workload = argc == 10 ? argv[6] : "leak", *tag = argc == 10 ? argv[7] : "Leak";
    unsigned min_frames = argc == 10 ? (unsigned)atoi(argv[8]) : 0;
    unsigned max_frames = argc == 10 ? (unsigned)atoi(argv[9]) : MAX_FRAMES;
    if (strlen(tag) != 4 || max_frames > MAX_FRAMES || min_frames > max_frames) {
        fprintf(stderr, "usage: the tag has 4 characters, frames are 0 <= MIN <= MAX <= %d\n", MAX_FRAMES);
        return 2;
    }
    uint32_t tag_u32 = (uint32_t)(uint8_t)tag[0] | (uint32_t)(uint8_t)tag[1] << 8 |
                       (uint32_t)(uint8_t)tag[2] << 16 | (uint32_t)(uint8_t)tag[3] << 24;
    char fixtures[1024], truth[1024];
    snprintf(fixtures, sizeof fixtures, "%s/%s", argv[2], arch);
    snprintf(truth, sizeof truth, "%s/truth-%s-%s.jsonl", argv[3], workload, arch);
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/ntkrnlmp.pdb", fixtures);
    if (access(kdsim, X_OK) != 0 || access(probe, R_OK) != 0) {
        fprintf(stderr, "SKIP: kdsim or fixtures not built (%s, %s)\n", kdsim, probe);
        return 77;
    }
    remove(truth);
    char *sim_argv[] = {(char *)kdsim, "--tcp", "0", "--baud", "0", "--arch", (char *)arch, "--seed", "7",
                        "--workload", (char *)workload, "--truth", truth, "--fixtures", fixtures, NULL};
    kdsim_proc_t sim;
    if (kdsim_start(&sim, sim_argv, NULL) != 0) {
        fprintf(stderr, "FAIL: kdsim did not start\n");
        kdsim_stop(&sim);
        return 1;
    }
    capture_t *caps = calloc(breaks + 1, sizeof *caps);
    kdh_err_t err;
    kdh_err_clear(&err);
    kdh_target_session_t *s = NULL;
    int rc = kdh_target_session_open(&s, sim.port_spec, 115200, &err);
    if (rc != KDH_OK)
        return fail("connect", &err);
    kdh_target_t *t = kdh_target_session_target(s);
    kdh_kd_t *kd = kdh_target_session_kd(s);
    if (kdh_target_set_symbol_path(t, fixtures, NULL, &err) != KDH_OK)
        return fail("symbol path", &err);
    resolve_arg_t r;
    memset(&r, 0, sizeof r);
    if (kdh_target_run_sync(t, kd, resolve_hit_tag, &r, &err) != KDH_OK)
        return fail("resolve PoolHitTag", &err);
    /* Every PoolHitTag break stops on nt!DbgBreakPoint's int 3; any other stop after arming is
     * a break-in that arrived late (its 'b' crossed the target's first report), and the truth
     * file records those as kind "break", which the comparison skips. */
    resolve_arg_t brk;
    memset(&brk, 0, sizeof brk);
    if (kdh_target_run_sync(t, kd, resolve_break_routine, &brk, &err) != KDH_OK)
        return fail("resolve DbgBreakPoint", &err);
    uint32_t original = 0;
    if (read_u32(kd, r.addr, &original, &err) != KDH_OK)
        return fail("read PoolHitTag", &err);
    /* the break-in's stop is truth line 1; capture it too */
    uint64_t fetches = 0;
    unsigned n = 0, late_breakins = 0;
    if (capture(s, &caps[n++], &fetches, &err) != KDH_OK)
        return fail("capture at break-in", &err);
    /* A 'b' that reached the target while it was still sending its first report is honoured
     * after the next continue, as a second break-in. Let it happen now, unarmed, so that every
     * stop after arming is a PoolHitTag break; if none comes, break in again to arm. */
    if (kdh_target_skip_int3(t, kd, &err) != KDH_OK)
        return fail("skip int 3", &err);
    {
        kdh_kd_req_t req;
        memset(&req, 0, sizeof req);
        kdh_kd_continue(kd, &req, KDH_WIRE_DBG_CONTINUE, 0, 0, NULL, NULL);
        if (kdh_kd_wait(kd, &req) != KDH_OK)
            return fail("continue", &req.err);
        if (kdh_target_session_wait_stop(s, 1000, &err) != KDH_OK) {
            if (kdh_kd_break(kd, &err) != KDH_OK || kdh_target_session_wait_stop(s, 10000, &err) != KDH_OK)
                return fail("break in again", &err);
        }
        if (capture(s, &caps[0], &fetches, &err) != KDH_OK)
            return fail("capture at the second break-in", &err);
    }
    if (write_u32(kd, r.addr, tag_u32, &err) != KDH_OK)
        return fail("arm", &err);
    const kdh_link_stats_t *ls = kdh_link_stats(kdh_kd_link(kd));
    uint64_t bytes0 = ls->bytes_in + ls->bytes_out, req0 = kdh_kd_stats(kd)->requests;
    while (n <= breaks) {
        if (kdh_target_skip_int3(t, kd, &err) != KDH_OK)
            return fail("skip int 3", &err);
        kdh_kd_req_t req;
        memset(&req, 0, sizeof req);
        kdh_kd_continue(kd, &req, KDH_WIRE_DBG_CONTINUE, 0, 0, NULL, NULL);
        if (kdh_kd_wait(kd, &req) != KDH_OK)
            return fail("continue", &req.err);
        if (kdh_target_session_wait_stop(s, 10000, &err) != KDH_OK)
            return fail("wait for a PoolHitTag break", &err);
        if (capture(s, &caps[n], &fetches, &err) != KDH_OK)
            return fail("capture", &err);
        if (caps[n].pc == brk.addr)
            n++;
        else
            late_breakins++;
    }
    uint64_t bytes = ls->bytes_in + ls->bytes_out - bytes0, reqs = kdh_kd_stats(kd)->requests - req0;
    /* disarm and leave it as found */
    if (write_u32(kd, r.addr, original, &err) != KDH_OK)
        return fail("disarm", &err);
    if (kdh_target_session_detach(s, &err) != KDH_OK)
        return fail("detach", &err);
    kdh_target_session_close(s);
    kdsim_stop(&sim);

    /* compare with the ground truth, line i <-> stop i */
    FILE *f = fopen(truth, "r");
    if (!f) {
        fprintf(stderr, "FAIL: no truth file %s\n", truth);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    unsigned compared = 0, mismatches = 0, frames = 0, out_of_range = 0;
    unsigned depth_seen[MAX_FRAMES + 1] = {0};
    /* stop 0 is the break-in (kdsim may record it as kind "break"); every stop after arming
     * must be a PoolHitTag break, kind "alloc" or "free", in the same order */
    for (unsigned i = 1; i < n; i++) {
        json_t *j = NULL;
        for (;;) {
            if (getline(&line, &cap, f) < 0) {
                fprintf(stderr, "FAIL: truth file has fewer pool breaks than the %u captured\n", n - 1);
                return 1;
            }
            json_error_t je;
            j = json_loads(line, 0, &je);
            const char *kind = j ? json_string_value(json_object_get(j, "kind")) : NULL;
            if (!kind || strcmp(kind, "break") != 0)
                break;
            json_decref(j);
        }
        json_t *st = j ? json_object_get(j, "stack") : NULL;
        const char *pcs = j ? json_string_value(json_object_get(j, "pc")) : NULL;
        if (!st || !pcs) {
            fprintf(stderr, "FAIL: truth line %u unreadable\n", i);
            return 1;
        }
        uint64_t tpc = strtoull(pcs, NULL, 16);
        size_t depth = json_array_size(st);
        if (depth < min_frames || depth > max_frames) {
            if (out_of_range++ < 5)
                fprintf(stderr, "truth stack of %zu frames at break %u, outside %u..%u\n", depth, i, min_frames,
                        max_frames);
        } else {
            depth_seen[depth]++;
        }
        int bad = tpc != caps[i].pc || json_array_size(st) != caps[i].n;
        for (size_t k = 0; !bad && k < json_array_size(st); k++) {
            json_t *fr = json_array_get(st, k);
            const char *mod = json_string_value(json_object_get(fr, "module"));
            json_int_t rva = json_integer_value(json_object_get(fr, "rva"));
            if (!mod || strcmp(mod, caps[i].mod[k]) != 0 || (uint32_t)rva != caps[i].rva[k])
                bad = 1;
        }
        if (bad && mismatches < 5) {
            fprintf(stderr, "mismatch at break %u: truth %.600s\n  host pc 0x%llx:", i, line,
                    (unsigned long long)caps[i].pc);
            for (uint32_t k = 0; k < caps[i].n; k++)
                fprintf(stderr, " %s+0x%x", caps[i].mod[k], caps[i].rva[k]);
            fprintf(stderr, "\n");
        }
        mismatches += (unsigned)bad;
        compared++;
        frames += caps[i].n;
        json_decref(j);
    }
    free(line);
    fclose(f);
    printf("%s: %u stops compared with kdsim's ground truth (%u frames), %u mismatches, %u late "
           "break-ins skipped; per PoolHitTag break: %.1f KD requests, %.0f wire bytes, %.1f "
           "memory fetches\n",
           arch, compared, frames, mismatches, late_breakins, (double)reqs / breaks,
           (double)bytes / breaks, (double)fetches / n);
    free(caps);
    unsigned missing = 0;
    if (argc == 10) {
        printf("%s: true stack depths:", arch);
        for (unsigned d = min_frames; d <= max_frames; d++) {
            printf(" %u:%u", d, depth_seen[d]);
            missing += depth_seen[d] == 0;
        }
        printf("\n");
    }
    if (compared < breaks || mismatches || out_of_range || missing) {
        fprintf(stderr, "FAIL: %u mismatches, %u stacks outside %u..%u frames, %u depths never seen\n", mismatches,
                out_of_range, min_frames, max_frames, missing);
        return 1;
    }
    return 0;
}
