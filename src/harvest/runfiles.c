/* runfiles.c: meta.json and summary.txt of a harvest's run directory.
 *
 * The run loop rewrites both periodically (meta.json every 10 s, summary.txt every
 * --summary-interval), and does so in libuv's thread pool: an fsync on a busy disk takes seconds
 * and the summary reads every event of the run so far, and on the loop thread either would hold
 * the stopped target that long (in the daemon, every target). What a write needs from the
 * harvest's live state is taken on the loop thread when its job starts: meta.json's text, and for
 * the summary the store's lines written out and the files' sizes. The worker then does the file
 * I/O and the report and touches nothing the loop thread changes: it opens the run's files by path
 * (the loop thread may close its descriptors meanwhile) and reads them only up to those sizes.
 *
 * What the worker calls keeps no mutable global state: kdh_store_put_meta, kdh_store_sync_files,
 * the report library (kdh_report_*, which formats times with gmtime_r) and the store reader, which
 * parse their own jansson objects (none is shared with the loop thread).
 *
 * At most one job per file is in flight; one that comes due meanwhile starts once it has ended.
 * The writes outside the run loop (at the attach, after a reboot, at the end) stay on the loop
 * thread and first wait for the job in flight, so an older meta.json never replaces a newer one
 * and two writers never share meta.json.tmp or summary.txt.tmp. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harvest_int.h"
#include "kdh/report.h"
#include "kdh/task.h"

#define META_PERIOD_S 10
#define SUMMARY_PERIOD_S 30 /* kdh_harvest_opts_t.summary_interval_s 0 */

static void iso_time(double t, char *out, size_t len)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- meta.json ---- */

/* The harvest's state now, as meta.json describes it. */
static json_t *meta_json(const hv_t *h)
{
    char started[40], hex[32];
    iso_time(h->started, started, sizeof started);
    json_t *m = json_object();
    const char *slash = strrchr(h->dir, '/');
    json_object_set_new(m, "run_id", json_string(slash ? slash + 1 : h->dir));
    json_object_set_new(m, "target", json_string(h->o->target_name ? h->o->target_name : h->o->port));
    json_object_set_new(m, "source", json_string("live"));
    json_object_set_new(m, "tag", json_string(h->tag));
    snprintf(hex, sizeof hex, "0x%08x", h->tag_dword);
    json_object_set_new(m, "tag_dword", json_string(hex));
    json_object_set_new(m, "mode", json_string(kdh_harvest_mode_name(h->o->mode)));
    json_object_set_new(m, "pair", json_boolean(h->o->pair));
    json_object_set_new(m, "started", json_string(started));
    json_t *k = json_object();
    if (h->t && kdh_target_version(h->t)) {
        const kdh_wire_get_version_t *v = kdh_target_version(h->t);
        json_object_set_new(k, "build", json_integer(v->minor_version));
        snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)v->kern_base);
        json_object_set_new(k, "base", json_string(hex));
        json_object_set_new(k, "arch", json_string(kdh_target_pointer_size(h->t) == 8 ? "x64" : "x86"));
    }
    json_object_set_new(k, "boot", json_integer(h->boot));
    snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)h->pht_addr);
    json_object_set_new(k, "pool_hit_tag", json_string(hex));
    json_object_set_new(k, "pool_hit_tag_source", json_string(h->pht_source));
    snprintf(hex, sizeof hex, "0x%08x", h->pht_old);
    json_object_set_new(k, "pool_hit_tag_original", json_string(hex));
    if (h->o->mode == KDH_HARVEST_SPECIALPOOL) {
        snprintf(hex, sizeof hex, "0x%08x", h->special_tag);
        json_object_set_new(k, "special_pool_tag", json_string(hex));
    }
    json_object_set_new(m, "kernel", k);
    json_t *l = json_object();
    json_object_set_new(l, "port", json_string(h->o->port));
    json_object_set_new(l, "baud", json_integer(h->c.baud));
    json_object_set_new(l, "bytes_in", json_integer((json_int_t)hv_conn_bytes(&h->c, 0)));
    json_object_set_new(l, "bytes_out", json_integer((json_int_t)hv_conn_bytes(&h->c, 1)));
    json_object_set_new(l, "requests", json_integer(h->c.kd ? (json_int_t)kdh_kd_stats(h->c.kd)->requests : 0));
    json_object_set_new(l, "quiet_probes",
                        json_integer(h->c.kd ? (json_int_t)kdh_link_stats(kdh_kd_link(h->c.kd))->probes_sent : 0));
    json_object_set_new(m, "link", l);
    json_t *c = json_object();
    json_object_set_new(c, "hits", json_integer((json_int_t)h->hits));
    json_object_set_new(c, "captured", json_integer((json_int_t)h->captured));
    json_object_set_new(c, "counted_only", json_integer((json_int_t)h->counted));
    json_object_set_new(c, "allocs", json_integer((json_int_t)h->allocs));
    json_object_set_new(c, "frees", json_integer((json_int_t)h->frees));
    json_object_set_new(c, "unclassified", json_integer((json_int_t)h->unknown));
    json_object_set_new(c, "capped", json_integer((json_int_t)h->capped));
    json_object_set_new(c, "reboots", json_integer((json_int_t)h->reboots));
    json_object_set_new(c, "hits_reported_again", json_integer((json_int_t)h->restops));
    json_object_set_new(c, "stop_pcs_corrected", json_integer(h->c.kd ? (json_int_t)kdh_kd_stats(h->c.kd)->corrected_pcs : 0));
    json_object_set_new(c, "stop_threads_corrected",
                        json_integer(h->c.kd ? (json_int_t)kdh_kd_stats(h->c.kd)->corrected_threads : 0));
    json_object_set_new(c, "pool_hit_tag_rewrites", json_integer((json_int_t)h->pht_rewrites));
    json_object_set_new(c, "sample", json_integer(h->o->sample > 1 ? h->o->sample : 1));
    if (h->o->pair) {
        const hv_pair_t *p = &h->pair;
        json_t *pc = json_object();
        json_object_set_new(pc, "allocs_with_addr", json_integer((json_int_t)p->allocs_addr));
        json_object_set_new(pc, "allocs_without_addr", json_integer((json_int_t)p->allocs_no_addr));
        json_object_set_new(pc, "allocs_failed", json_integer((json_int_t)p->allocs_failed));
        json_object_set_new(pc, "frees_paired", json_integer((json_int_t)p->frees_paired));
        json_object_set_new(pc, "frees_unmatched", json_integer((json_int_t)p->frees_unmatched));
        json_object_set_new(pc, "frees_without_addr", json_integer((json_int_t)p->frees_no_addr));
        json_object_set_new(pc, "returns_stepped_over", json_integer((json_int_t)p->returns_other));
        json_object_set_new(pc, "live_blocks", json_integer((json_int_t)p->live_n));
        json_object_set_new(c, "pair", pc);
    }
    if (h->o->mode != KDH_HARVEST_HITTAG) {
        json_object_set_new(c, "filtered", json_integer((json_int_t)h->filtered));
        json_object_set_new(c, "nested", json_integer((json_int_t)h->nested));
    }
    json_t *bp = json_object();
    json_object_set_new(bp, "written", json_integer((json_int_t)h->bps.writes));
    json_object_set_new(bp, "restored", json_integer((json_int_t)h->bps.restores));
    json_object_set_new(bp, "taken_out_by_target", json_integer((json_int_t)h->bps.deleted_by_target));
    json_object_set_new(bp, "steps", json_integer((json_int_t)h->bps.steps));
    json_object_set_new(bp, "steps_lost", json_integer((json_int_t)h->bps.lost_steps));
    json_object_set_new(c, "breakpoints", bp);
    json_object_set_new(m, "counters", c);
    return m;
}

/* meta.json's text now (the store's collected lines written first). */
static int meta_text(const hv_t *h, char **text, kdh_err_t *err)
{
    json_t *m = meta_json(h);
    int rc = kdh_store_meta_text(h->st, m, text, err);
    json_decref(m);
    return rc;
}

/* ---- summary.txt ---- */

/* The report of the run's files up to upto, to summary.txt.tmp and renamed over summary.txt; a
 * failure leaves the summary there was. Safe on any thread. */
static void render_summary(const char *dir, const kdh_store_extent_t *upto)
{
    kdh_err_t e;
    memset(&e, 0, sizeof e);
    kdh_report_opts_t ro;
    memset(&ro, 0, sizeof ro);
    ro.format = KDH_REPORT_TEXT;
    ro.value = KDH_REPORT_VALUE_COUNT;
    ro.top = 10;
    kdh_report_t *rep = NULL;
    if (kdh_report_new(&rep, &ro, &e) != KDH_OK)
        return;
    char tmp[640], path[640];
    snprintf(tmp, sizeof tmp, "%s/summary.txt.tmp", dir);
    snprintf(path, sizeof path, "%s/summary.txt", dir);
    FILE *f = NULL;
    if (kdh_report_add_run_extent(rep, dir, upto, &e) == KDH_OK && (f = fopen(tmp, "w")) != NULL) {
        int ok = kdh_report_render(rep, f, &e) == KDH_OK;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, path) != 0)
            unlink(tmp);
    }
    kdh_report_free(rep);
}

/* The summary's file work, on either thread: the run's lines to disk (what kdh_store_sync does,
 * through descriptors of its own), then the summary of them. KDH_OK, or the sync's failure. */
static int summary_files(const char *dir, const kdh_store_extent_t *upto, kdh_err_t *err)
{
    int rc = kdh_store_sync_files(dir, err);
    if (rc == KDH_OK)
        render_summary(dir, upto);
    return rc;
}

/* ---- jobs in the thread pool ---- */

/* Runs the loop until the job's after-callback has run (at once when none is in flight). */
static void job_wait(hv_t *h, const hv_job_t *job)
{
    while (job->busy)
        kdh_task_wait(h->c.loop);
}

/* Hands the job to the thread pool; its after-callback, on the loop thread, ends it. Should the
 * pool refuse it, the job runs here instead. */
static void job_start(hv_t *h, hv_job_t *job, uv_work_cb work, uv_after_work_cb done)
{
    job->h = h;
    job->dir = h->dir; /* fixed for the harvest's life */
    job->rc = KDH_OK;
    kdh_err_clear(&job->err);
    job->req.data = job;
    job->busy = 1;
    if (uv_queue_work(h->c.loop, &job->req, work, done) != 0) {
        work(&job->req);
        done(&job->req, 0);
    }
}

static void meta_work(uv_work_t *req)
{
    hv_job_t *job = req->data;
    job->rc = kdh_store_put_meta(job->dir, job->text, &job->err);
}

/* Its result stays in the job for hv_runfiles_tick, which ends the run when it failed. */
static void meta_done(uv_work_t *req, int status)
{
    hv_job_t *job = req->data;
    (void)status; /* never cancelled */
    free(job->text);
    job->text = NULL;
    job->busy = 0;
}

static int meta_start(hv_t *h, kdh_err_t *err)
{
    hv_job_t *job = &h->files.meta;
    int rc = meta_text(h, &job->text, err);
    if (rc == KDH_OK)
        job_start(h, job, meta_work, meta_done);
    return rc;
}

static void summary_work(uv_work_t *req)
{
    hv_job_t *job = req->data;
    job->rc = summary_files(job->dir, &job->upto, &job->err);
}

/* A failed sync fails the store, as a failed kdh_store_sync would; nothing else is reported. */
static void summary_done(uv_work_t *req, int status)
{
    hv_job_t *job = req->data;
    (void)status; /* never cancelled */
    job->busy = 0;
    if (job->rc != KDH_OK)
        kdh_store_set_failed(job->h->st, &job->err);
}

static void summary_start(hv_t *h)
{
    hv_job_t *job = &h->files.summary;
    kdh_err_t e;
    if (kdh_store_extent(h->st, &job->upto, &e) == KDH_OK) /* else the store failed: no summary */
        job_start(h, job, summary_work, summary_done);
}

/* ---- what the engine calls ---- */

int hv_write_meta(hv_t *h, kdh_err_t *err)
{
    job_wait(h, &h->files.meta);
    char *text;
    int rc = meta_text(h, &text, err);
    if (rc == KDH_OK)
        rc = kdh_store_put_meta(h->dir, text, err);
    free(text);
    return rc;
}

void hv_write_summary(hv_t *h)
{
    job_wait(h, &h->files.summary);
    kdh_err_t e;
    memset(&e, 0, sizeof e);
    kdh_store_extent_t upto;
    if (kdh_store_extent(h->st, &upto, &e) != KDH_OK)
        return;
    if (summary_files(h->dir, &upto, &e) != KDH_OK)
        kdh_store_set_failed(h->st, &e);
}

void hv_runfiles_begin(hv_t *h, double now)
{
    h->files.meta_t = now;
    h->files.summary_t = now;
}

int hv_runfiles_tick(hv_t *h, double now, kdh_err_t *err)
{
    hv_runfiles_t *f = &h->files;
    if (!f->meta.busy && f->meta.rc != KDH_OK) /* as a failed write on the loop thread would */
        return kdh_err_set(err, f->meta.rc, "%s", f->meta.err.msg);
    if (now - f->meta_t >= META_PERIOD_S && !f->meta.busy) {
        f->meta_t = now;
        int rc = meta_start(h, err);
        if (rc != KDH_OK)
            return rc;
    }
    unsigned period = h->o->summary_interval_s ? h->o->summary_interval_s : SUMMARY_PERIOD_S;
    if (now - f->summary_t >= period && !f->summary.busy) {
        f->summary_t = now;
        summary_start(h);
    }
    return KDH_OK;
}

void hv_runfiles_wait(hv_t *h)
{
    job_wait(h, &h->files.meta);
    job_wait(h, &h->files.summary);
}
