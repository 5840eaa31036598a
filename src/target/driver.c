/* driver.c: runs a target-model step to completion: each KDH_ENOTCACHED is answered by one
 * ReadVirtualMemory of exactly the missing range, added to the cache the step asked for. Two
 * drivers share the rules: a blocking one for one-target tools (kdh_kd_wait) and a callback one
 * for the daemon's loop. A step that asks for the same range again after it was filled is a bug
 * or a lying target: it ends with KDH_EPROTO instead of looping. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "target_int.h"

#define MAX_ROUNDS 200000u
#define MAX_CANCELS 8u /* re-reported stops (RESET, lost ACK) a run rides out */ /* a hostile 4096-entry list needs about 3 rounds per entry */

/* Next fetch for a step that answered KDH_ENOTCACHED; KDH_EPROTO when it repeats itself. */
static int next_fetch(kdh_target_t *t, uint64_t *va, uint32_t *len, kdh_target_class_t *cls,
                      uint64_t *last_va, uint32_t *last_len, uint32_t *repeats, kdh_err_t *err)
{
    kdh_target_need(t, va, len, cls);
    if (*len == 0)
        return kdh_err_set(err, KDH_EPROTO, "a target-model step answered 'not cached' without a range");
    if (*len > KDH_TARGET_FETCH_MAX)
        *len = KDH_TARGET_FETCH_MAX; /* the step asks for the rest next time */
    if (*va == *last_va && *len == *last_len) {
        if (++*repeats >= 3)
            return kdh_err_set(err, KDH_EPROTO, "target memory 0x%llx (+%u) was fetched but is still missing",
                               (unsigned long long)*va, *len);
    } else {
        *repeats = 0;
    }
    *last_va = *va;
    *last_len = *len;
    return KDH_OK;
}

/* A read the target refused (STATUS_UNSUCCESSFUL) is an unreadable range, not a failure. */
static int take_result(kdh_target_t *t, kdh_kd_req_t *req, kdh_target_class_t cls, uint64_t va,
                       const uint8_t *buf, uint32_t len, kdh_err_t *err)
{
    if (req->status != KDH_OK && req->status != KDH_ETARGET)
        return kdh_err_set(err, req->status, "reading target memory at 0x%llx: %s", (unsigned long long)va,
                           req->err.msg[0] ? req->err.msg : kdh_strerror(req->status));
    uint32_t got = req->out_len < len ? (uint32_t)req->out_len : len;
    return kdh_target_fill(t, cls, va, buf, got, len, err);
}

int kdh_target_run_sync(kdh_target_t *t, kdh_kd_t *kd, kdh_target_step_fn step, void *arg,
                        kdh_err_t *err)
{
    uint64_t last_va = 0;
    uint32_t last_len = 0, repeats = 0, cancels = 0;
    for (uint32_t round = 0; round < MAX_ROUNDS; round++) {
        kdh_target_sync_stop(t, kdh_kd_stop_serial(kd));
        int rc = step(t, arg, err);
        if (rc != KDH_ENOTCACHED)
            return rc;
        uint64_t va;
        uint32_t len;
        kdh_target_class_t cls;
        rc = next_fetch(t, &va, &len, &cls, &last_va, &last_len, &repeats, err);
        if (rc != KDH_OK)
            return rc;
        uint8_t *buf = malloc(len);
        if (!buf)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for a %u-byte read", len);
        kdh_kd_req_t req;
        memset(&req, 0, sizeof req);
        kdh_kd_read_virtual(kd, &req, va, buf, len, NULL, NULL);
        kdh_kd_wait(kd, &req);
        if (req.status == KDH_ECANCELED && kdh_kd_stopped(kd) && cancels++ < MAX_CANCELS) {
            free(buf); /* the target re-reported its stop: ask again in the new one */
            continue;
        }
        rc = take_result(t, &req, cls, va, buf, len, err);
        free(buf);
        if (rc != KDH_OK)
            return rc;
    }
    return kdh_err_set(err, KDH_ERANGE, "a target-model step needed more than %u reads", MAX_ROUNDS);
}

static void job_continue(kdh_target_job_t *job);

static void job_finish(kdh_target_job_t *job, int status)
{
    free(job->buf);
    job->buf = NULL;
    if (job->done)
        job->done(job, status);
}

static void job_read_done(kdh_kd_t *kd, kdh_kd_req_t *req)
{
    (void)kd;
    kdh_target_job_t *job = req->user;
    int rc = take_result(job->t, req, job->cls, job->va, job->buf, job->len, &job->err);
    free(job->buf);
    job->buf = NULL;
    if (rc != KDH_OK) {
        job_finish(job, rc);
        return;
    }
    job_continue(job);
}

static void job_continue(kdh_target_job_t *job)
{
    if (job->fetches >= MAX_ROUNDS) {
        job_finish(job, kdh_err_set(&job->err, KDH_ERANGE, "a target-model step needed more than %u reads",
                                    MAX_ROUNDS));
        return;
    }
    kdh_target_sync_stop(job->t, kdh_kd_stop_serial(job->kd));
    int rc = job->step(job->t, job->arg, &job->err);
    if (rc != KDH_ENOTCACHED) {
        job_finish(job, rc);
        return;
    }
    rc = next_fetch(job->t, &job->va, &job->len, &job->cls, &job->last_va, &job->last_len, &job->repeats,
                    &job->err);
    if (rc != KDH_OK) {
        job_finish(job, rc);
        return;
    }
    job->buf = malloc(job->len);
    if (!job->buf) {
        job_finish(job, kdh_err_set(&job->err, KDH_ENOMEM, "out of memory for a %u-byte read", job->len));
        return;
    }
    job->fetches++;
    kdh_kd_read_virtual(job->kd, &job->req, job->va, job->buf, job->len, job_read_done, job);
}

void kdh_target_run_async(kdh_target_job_t *job, kdh_target_t *t, kdh_kd_t *kd,
                          kdh_target_step_fn step, void *arg, kdh_target_job_cb done, void *user)
{
    memset(job, 0, sizeof *job);
    job->t = t;
    job->kd = kd;
    job->step = step;
    job->arg = arg;
    job->done = done;
    job->user = user;
    job_continue(job);
}

/* ---- one-target helpers ---------------------------------------------------------------------- */

static int discover_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    (void)arg;
    return kdh_target_step_discover(t, err);
}

int kdh_target_attach_sync(kdh_target_t *t, kdh_kd_t *kd, kdh_err_t *err)
{
    kdh_kd_req_t req;
    for (unsigned i = 0;; i++) {
        memset(&req, 0, sizeof req);
        kdh_kd_get_version(kd, &req, NULL, NULL);
        if (kdh_kd_wait(kd, &req) == KDH_OK)
            break;
        if (req.status != KDH_ECANCELED || !kdh_kd_stopped(kd) || i >= MAX_CANCELS)
            return kdh_err_set(err, req.status, "GetVersion: %s", req.err.msg);
    }
    int rc = kdh_target_set_version(t, &req.m.u.version, err);
    if (rc != KDH_OK)
        return rc;
    kdh_kd_set_arch(kd, t->arch);
    return kdh_target_run_sync(t, kd, discover_step, NULL, err);
}

typedef struct resolve_arg {
    const char *name;
    uint64_t addr;
    char source[64];
} resolve_arg_t;

static int resolve_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    resolve_arg_t *a = arg;
    return kdh_target_step_resolve(t, a->name, &a->addr, a->source, sizeof a->source, err);
}

int kdh_target_resolve_sync(kdh_target_t *t, kdh_kd_t *kd, const char *name, uint64_t *addr, char *source,
                            size_t source_len, kdh_err_t *err)
{
    resolve_arg_t a = {.name = name};
    int rc = kdh_target_run_sync(t, kd, resolve_step, &a, err);
    if (rc != KDH_OK)
        return rc;
    *addr = a.addr;
    if (source && source_len)
        snprintf(source, source_len, "%s", a.source);
    return KDH_OK;
}

static int stack_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    return kdh_target_step_stack(t, arg, err);
}

int kdh_target_capture_sync(kdh_target_t *t, kdh_kd_t *kd, kdh_target_stack_t *s, kdh_err_t *err)
{
    const kdh_wire_state_change_t *sc = kdh_kd_state(kd);
    if (!sc)
        return kdh_err_set(err, KDH_EINVAL, "the target is running: no stack to capture");
    uint64_t pc = sc->program_counter;
    unsigned cpu = sc->processor;
    uint32_t off, len;
    kdh_target_stack_slice(t, &off, &len);
    uint8_t slice[0x20];
    kdh_kd_req_t req;
    for (unsigned i = 0;; i++) {
        memset(&req, 0, sizeof req);
        kdh_kd_get_context_slice(kd, &req, cpu, off, slice, len, NULL, NULL);
        if (kdh_kd_wait(kd, &req) == KDH_OK)
            break;
        if (req.status != KDH_ECANCELED || !kdh_kd_stopped(kd) || i >= MAX_CANCELS)
            return kdh_err_set(err, req.status, "registers of processor %u: %s", cpu, req.err.msg);
        sc = kdh_kd_state(kd);
        pc = sc->program_counter;
        cpu = sc->processor;
    }
    if (req.out_len < len)
        return kdh_err_set(err, KDH_EPROTO, "registers of processor %u: %zu of %u bytes", cpu, req.out_len, len);
    int rc = kdh_target_stack_init(t, s, pc, slice, len, err);
    if (rc != KDH_OK)
        return rc;
    return kdh_target_run_sync(t, kd, stack_step, s, err);
}
