/* engine.c: one harvest from attach to detach: open the run, connect and discover the target,
 * repair what a crashed run left armed (journal), resolve and arm nt!PoolHitTag, serve stops
 * until told to stop, then disarm, continue the target and write the final meta.json and
 * summary. Every exit path after the target was reached leaves it running and unarmed. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harvest_int.h"
#include "kdh/tag.h"

/* ---- DbgPrint text ---- */
static void open_dbgprint(hv_t *h)
{
    char path[640];
    snprintf(path, sizeof path, "%s/dbgprint.log", h->dir);
    if (h->dbgprint)
        fclose(h->dbgprint);
    h->dbgprint = fopen(path, "a");
}

static void on_print(void *ctx, const char *text, size_t len)
{
    hv_t *h = ctx;
    if (!h->dbgprint)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[40];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    /* one timestamped line per line of text; control bytes other than tab become '?' */
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n')
            j++;
        if (j > i) {
            fprintf(h->dbgprint, "%s.%03ldZ ", stamp, ts.tv_nsec / 1000000);
            for (size_t k = i; k < j; k++) {
                unsigned char ch = (unsigned char)text[k];
                fputc(ch < 0x20 && ch != '\t' ? '?' : ch, h->dbgprint);
            }
            fputc('\n', h->dbgprint);
        }
        i = j + 1;
    }
    fflush(h->dbgprint);
}

/* ---- status ---- */
static void status(hv_t *h, const char *state, int force)
{
    double now = hv_now_mono();
    unsigned period = h->o->status_ms ? h->o->status_ms : 1000;
    if (!force && now - h->last_status_t < period / 1000.0)
        return;
    kdh_harvest_status_t s;
    memset(&s, 0, sizeof s);
    double dt = now - h->last_status_t;
    uint64_t bytes = hv_conn_bytes(&h->c, 0) + hv_conn_bytes(&h->c, 1);
    s.state = state;
    s.hits = h->hits;
    s.captured = h->captured;
    s.allocs = h->allocs;
    s.frees = h->frees;
    s.unique_stacks = h->sids.n;
    s.hits_per_s = dt > 0 ? (double)(h->hits - h->last_status_hits) / dt : 0;
    s.bytes_per_s = dt > 0 ? (double)(bytes - h->last_status_bytes) / dt : 0;
    s.stall_pct = h->armed_at > 0 ? hv_stall_pct(h, now) : 0;
    s.elapsed_s = h->armed_at > 0 ? now - h->armed_at : 0;
    h->last_status_t = now;
    h->last_status_hits = h->hits;
    h->last_status_bytes = bytes;
    if (h->o->on_status)
        h->o->on_status(h->o->ctx, &s);
}

void hv_notice(hv_t *h, const char *fmt, ...)
{
    if (!h->o->on_notice)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    h->o->on_notice(h->o->ctx, line);
}

/* ---- target steps ---- */
/* Every module's .pdata in one read each, so no hit ever waits for a function-table search. */
static int pdata_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    (void)arg;
    (void)err;
    static uint8_t buf[KDH_TARGET_FETCH_MAX];
    for (size_t i = 0; i < kdh_target_module_count(t); i++) {
        const kdh_target_module_t *m = kdh_target_module_at(t, i);
        if (!m->ok || !m->pdata_size || m->pdata_size > sizeof buf)
            continue;
        uint32_t got;
        int rc = kdh_target_read(t, KDH_TARGET_BOOT, m->base + m->pdata_rva, buf, m->pdata_size, &got);
        if (rc != KDH_OK)
            return rc;
    }
    return KDH_OK;
}

static int read_u32(hv_t *h, uint64_t va, uint32_t *val, kdh_err_t *err)
{
    uint8_t b[4];
    uint32_t got;
    int rc = hv_conn_read(&h->c, va, b, 4, &got, "reading nt!PoolHitTag", err);
    if (rc != KDH_OK)
        return rc;
    if (got != 4)
        return kdh_err_set(err, KDH_ETARGET, "reading nt!PoolHitTag at 0x%llx: short read", (unsigned long long)va);
    *val = kdh_get_u32(b);
    return KDH_OK;
}

/* Every write of nt!PoolHitTag is read back. The KD checksum is a byte sum, so two damaged data
 * bytes that cancel pass it and the target writes them: a damaged arming value traps another tag
 * (or none), a damaged restore leaves the target armed for a tag nobody asked for. It costs one
 * read at each arm and disarm, never per hit. */
static int write_u32(hv_t *h, uint64_t va, uint32_t val, kdh_err_t *err)
{
    for (int attempt = 1;; attempt++) {
        uint8_t b[4];
        kdh_put_u32(b, val);
        kdh_kd_req_t req;
        memset(&req, 0, sizeof req);
        kdh_kd_write_virtual(h->c.kd, &req, va, b, 4, NULL, NULL);
        int rc = kdh_kd_wait(h->c.kd, &req);
        if (rc != KDH_OK)
            return kdh_err_set(err, rc, "writing nt!PoolHitTag at 0x%llx: %s", (unsigned long long)va,
                               req.err.msg[0] ? req.err.msg : kdh_strerror(rc));
        uint32_t back;
        if ((rc = read_u32(h, va, &back, err)) != KDH_OK)
            return rc;
        if (back == val)
            return KDH_OK;
        if (attempt == 3)
            return kdh_err_set(err, KDH_ETARGET, "nt!PoolHitTag at 0x%llx still reads 0x%08x after 3 writes of 0x%08x",
                               (unsigned long long)va, back, val);
        h->pht_rewrites++;
        hv_notice(h, "nt!PoolHitTag read back 0x%08x after a write of 0x%08x (damage the checksum missed): "
                  "writing it again", back, val);
    }
}

static int discover_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    (void)arg;
    return kdh_target_step_discover_lenient(t, err); /* a damaged debugger data block is logged below */
}

/* GetVersion of the stopped target: its kernel base tells one boot from the next. */
static int get_version(hv_t *h, kdh_wire_get_version_t *v, kdh_err_t *err)
{
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_get_version(h->c.kd, &req, NULL, NULL);
    int rc = hv_conn_call(&h->c, &req, "GetVersion", err);
    if (rc == KDH_OK)
        *v = req.m.u.version;
    return rc;
}

static int attach_target(hv_t *h, kdh_err_t *err);
static int arm_pht(hv_t *h, kdh_err_t *err);
static int attach_arm(hv_t *h, uint64_t prev_base, kdh_err_t *err);
static int arm(hv_t *h, kdh_err_t *err);

/* Connect and stop the target. */
static int attach(hv_t *h, kdh_err_t *err)
{
    int rc = hv_conn_open(&h->c, h->o->loop, h->o->port, h->o->baud, err);
    if (rc != KDH_OK)
        return rc;
    status(h, "connecting", 1);
    if ((rc = kdh_kd_connect(h->c.kd, 1, err)) != KDH_OK)
        return rc;
    unsigned to = h->o->connect_timeout_ms ? h->o->connect_timeout_ms : 15000;
    rc = hv_conn_wait_stop(&h->c, to, NULL, err);
    if (rc != KDH_OK) {
        const kdh_link_stats_t *ls = kdh_link_stats(kdh_kd_link(h->c.kd));
        if (rc == KDH_ETIMEDOUT && !ls->has_valid && ls->bytes_in > 0)
            return kdh_err_set(err, rc, "only garbage from %s (%llu bytes, no valid packet) at %u baud: the "
                               "target's /BAUDRATE is probably different (try 115200, 57600, 38400, 19200)",
                               h->o->port, (unsigned long long)ls->bytes_in, h->c.baud);
        if (rc == KDH_ETIMEDOUT && !ls->has_valid)
            return kdh_err_set(err, rc, "the target on %s is silent (nothing in %u ms at %u baud): check the cable, "
                               "that it booted with /DEBUG /DEBUGPORT, and its /BAUDRATE",
                               h->o->port, to, h->c.baud);
        return rc;
    }
    status(h, "attaching", 1);
    return KDH_OK;
}

/* A model of the target from scratch, for a new boot: the old one's modules, breakpoints,
 * waiting returns and caches died with it. */
static int fresh_model(hv_t *h, kdh_err_t *err)
{
    kdh_target_free(h->t);
    h->t = NULL;
    int rc = kdh_target_new(&h->t, err);
    if (rc != KDH_OK)
        return rc;
    hv_bp_forget_all(h);
    h->armed = 0;
    return KDH_OK;
}

/* attach_target and arm, again at the stop the target reports after resetting the link in the
 * middle of them (a reboot while attaching or arming, a burst of noise): the new stop is the one to
 * read, the model rebuilt from its GetVersion. A reboot can also answer a request the old boot was
 * asked (the old kernel's addresses: a discovery that finds no module, a PoolHitTag read that
 * fails), so any failure after a reset is retried; and a success with a reset or a new stop
 * inside it (the target is never continued here) is kept only when the kernel is still the one
 * the model was built from. prev_base: the kernel a continued run ended with (0: none); another
 * one now is the run's next boot. */
static int attach_arm(hv_t *h, uint64_t prev_base, kdh_err_t *err)
{
    for (unsigned i = 0;; i++) {
        uint64_t serial = kdh_kd_stop_serial(h->c.kd);
        int seen = h->c.reset_seen;
        h->c.reset_seen = 0;
        int rc = attach_target(h, err);
        if (rc == KDH_OK) {
            uint64_t kbase = kdh_target_version(h->t)->kern_base;
            if (prev_base && prev_base != kbase)
                h->boot++;
            prev_base = 0;
            rc = arm(h, err);
        }
        int reset = h->c.reset_seen;
        h->c.reset_seen |= seen; /* the run's loop still looks at the boot after a reset */
        if (rc == KDH_OK && (reset || kdh_kd_stop_serial(h->c.kd) != serial)) {
            kdh_wire_get_version_t v;
            rc = get_version(h, &v, err);
            if (rc == KDH_OK && v.kern_base != kdh_target_version(h->t)->kern_base)
                rc = kdh_err_set(err, KDH_ECANCELED, "the target rebooted while it was armed (kernel now at 0x%llx)",
                                 (unsigned long long)v.kern_base);
        }
        if (rc == KDH_OK || i >= 3 || rc == KDH_EHANGUP || rc == KDH_ETIMEDOUT)
            return rc;
        /* a reboot's reset is not always seen on the link (the new boot's first packet id may be
         * the one expected next), but its first stop report always comes */
        if (rc != KDH_ECANCELED && !reset && kdh_kd_stop_serial(h->c.kd) == serial &&
            !hv_conn_wait_new_stop(&h->c, serial, 1000))
            return rc;
        hv_notice(h, "%s; attaching again", err->msg);
        kdh_err_clear(err);
        if ((rc = fresh_model(h, err)) != KDH_OK)
            return rc;
        if (!hv_conn_wait_new_stop(&h->c, serial, 5000) &&
            (rc = hv_conn_probe_stop(&h->c, h->o->port, err)) != KDH_OK)
            return rc;
    }
}

/* GetVersion, discovery and symbols of the stopped target (also after a reboot). */
static int attach_target(hv_t *h, kdh_err_t *err)
{
    kdh_wire_get_version_t v;
    int rc = get_version(h, &v, err);
    if (rc != KDH_OK)
        return rc;
    if ((rc = kdh_target_set_version(h->t, &v, err)) != KDH_OK)
        return rc;
    kdh_kd_set_arch(h->c.kd, kdh_target_arch(h->t));
    if ((rc = kdh_target_run_sync(h->t, h->c.kd, discover_step, NULL, err)) !=
        KDH_OK)
        return rc;
    if (kdh_target_kdbg_error(h->t))
        hv_notice(h, "going on without KDDEBUGGER_DATA64: %s", kdh_target_kdbg_error(h->t));
    for (size_t i = 0; i < kdh_target_module_count(h->t); i++) {
        const kdh_target_module_t *m = kdh_target_module_at(h->t, i);
        if (m->error[0])
            hv_notice(h, "module %s at 0x%llx %s: %s", m->name, (unsigned long long)m->base,
                      m->ok ? "kept" : "skipped (its frames stay addresses)", m->error);
    }
    if ((rc = kdh_target_set_symbol_path(h->t, h->o->symbol_path, NULL, err)) != KDH_OK)
        return rc;
    for (size_t i = 0; i < h->o->n_overrides; i++)
        if ((rc = kdh_target_add_override(h->t, h->o->overrides[i], err)) != KDH_OK)
            return rc;
    kdh_err_t ignore;
    for (size_t i = 0; i < kdh_target_module_count(h->t); i++)
        kdh_target_load_symbols(h->t, i, &ignore); /* a missing PDB only costs symbol names */
    return KDH_OK;
}

static int record_modules(hv_t *h, kdh_err_t *err)
{
    for (size_t i = 0; i < kdh_target_module_count(h->t); i++) {
        const kdh_target_module_t *m = kdh_target_module_at(h->t, i);
        if (!m->ok)
            continue;
        char guid[40] = "";
        if (m->has_pdb)
            for (int k = 0; k < 16; k++) {
                /* GUID text as the symbol store writes it: Data1..3 little-endian, then bytes */
                static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
                snprintf(guid + 2 * k, 3, "%02X", m->guid[order[k]]);
            }
        kdh_store_module_t sm = {.key = m->key, .name = m->name, .file = m->file, .timestamp = m->timestamp,
                                 .size = m->size_of_image, .pdb = m->has_pdb ? m->pdb_name : NULL,
                                 .guid = m->has_pdb ? guid : NULL, .age = m->age, .boot = h->boot,
                                 .base = m->base};
        int rc = kdh_store_add_module(h->st, &sm, err);
        if (rc != KDH_OK)
            return rc;
    }
    return KDH_OK;
}

/* Resolve PoolHitTag, repair a crashed run, remember the original value, arm. */
static int arm(hv_t *h, kdh_err_t *err)
{
    int hittag = h->o->mode == KDH_HARVEST_HITTAG;
    int rc;
    kdh_err_t ignore;
    uint32_t cur = 0;
    if (hittag) {
        if ((rc = kdh_target_resolve_sync(h->t, h->c.kd, "nt!PoolHitTag", &h->pht_addr, h->pht_source,
                                          sizeof h->pht_source, err)) != KDH_OK)
            return rc;
        if ((rc = read_u32(h, h->pht_addr, &cur, err)) != KDH_OK)
            return rc;
        h->pht_old = cur;
    }
    uint64_t va;
    if (kdh_target_resolve_sync(h->t, h->c.kd, "nt!DbgBreakPoint", &va, NULL, 0, &ignore) == KDH_OK)
        h->dbgbp = va;
    /* the break-in stop, when no KDBG says */
    if (!kdh_target_kdbg(h->t) &&
        kdh_target_resolve_sync(h->t, h->c.kd, "nt!DbgBreakPointWithStatus", &va, NULL, 0, &ignore) == KDH_OK)
        h->bpws = va;
    uint64_t kbase = kdh_target_version(h->t)->kern_base;
    hv_journal_state_t js;
    hv_journal_bps_t jb;
    hv_journal_read(h->dir, &js, &jb);
    if (js.armed && js.kernel_base == kbase && (!hittag || js.addr == h->pht_addr)) {
        /* left armed by a run that did not detach: its "old" is the real original (the journal
         * has the address, so no symbols are needed to put it back) */
        uint32_t old = js.old_value;
        if (!hittag && (rc = read_u32(h, js.addr, &cur, err)) != KDH_OK)
            return rc;
        if ((rc = write_u32(h, js.addr, old, err)) != KDH_OK)
            return rc;
        if ((rc = hv_journal_append(h->dir, "disarm", js.addr, old, old, kbase, err)) != KDH_OK)
            return rc;
        if (hittag)
            h->pht_old = old;
        h->repaired = 1;
        hv_notice(h, "repaired: the target was left armed by an earlier run (PoolHitTag 0x%08x restored to 0x%08x)",
                  cur, old);
    } else if (hittag && cur == h->tag_dword) {
        h->pht_old = 0xffffff0fu; /* armed by someone we have no record of: the kernel's own default */
        hv_notice(h, "PoolHitTag already held the tag; it will be set to 0xffffff0f at detach");
    }
    int nbp = hv_bp_repair(h, &jb, err);
    if (nbp < 0)
        return nbp;
    if (nbp > 0) {
        h->repaired = 1;
        hv_notice(h, "repaired: %d breakpoint%s left in the target by an earlier run taken out", nbp, nbp > 1 ? "s" : "");
    }
    if ((rc = record_modules(h, err)) != KDH_OK)
        return rc;
    if ((rc = kdh_target_run_sync(h->t, h->c.kd, pdata_step, NULL, err)) != KDH_OK)
        return rc;
    if (!hittag) {
        if ((rc = hv_mode_resolve(h, err)) != KDH_OK)
            return rc;
        return hv_mode_arm(h, err);
    }
    return arm_pht(h, err);
}

/* Journal first: if we die between the two, the repair writes back the same original. */
static int arm_pht(hv_t *h, kdh_err_t *err)
{
    uint64_t kbase = kdh_target_version(h->t)->kern_base;
    int rc = hv_journal_append(h->dir, "arm", h->pht_addr, h->pht_old, h->tag_dword, kbase, err);
    if (rc != KDH_OK)
        return rc;
    if ((rc = write_u32(h, h->pht_addr, h->tag_dword, err)) != KDH_OK)
        return rc;
    h->armed = 1;
    return KDH_OK;
}

static int disarm(hv_t *h, kdh_err_t *err)
{
    if (!h->armed)
        return KDH_OK;
    if (h->o->mode != KDH_HARVEST_HITTAG)
        return hv_mode_disarm(h, err);
    int rc = write_u32(h, h->pht_addr, h->pht_old, err);
    if (rc != KDH_OK)
        return rc;
    h->armed = 0;
    return hv_journal_append(h->dir, "disarm", h->pht_addr, h->pht_old, h->pht_old,
                             kdh_target_version(h->t)->kern_base, err);
}

/* Leave a stopped target running: int 3 stepped over, Continue2 with Dr7 0, bytes written out. */
static int resume(hv_t *h, kdh_err_t *err)
{
    const kdh_wire_state_change_t *sc0 = kdh_kd_state(h->c.kd);
    int rc = KDH_OK;
    if (sc0 && sc0->new_state == KDH_WIRE_STATE_EXCEPTION && sc0->u.exception.code == KDH_WIRE_STATUS_BREAKPOINT)
        rc = hv_touch_context(h, NULL, err);
    if (rc == KDH_OK)
        rc = kdh_target_skip_int3(h->t, h->c.kd, err);
    if (rc != KDH_OK)
        return rc;
    const kdh_wire_state_change_t *sc = kdh_kd_state(h->c.kd);
    uint32_t st = KDH_WIRE_DBG_CONTINUE;
    if (sc && sc->new_state == KDH_WIRE_STATE_EXCEPTION && sc->u.exception.code != KDH_WIRE_STATUS_BREAKPOINT &&
        sc->u.exception.code != KDH_WIRE_STATUS_SINGLE_STEP)
        st = 0x80010001u; /* DBG_EXCEPTION_NOT_HANDLED: a real fault is the kernel's to handle */
    return hv_continue(h, st, err);
}

static int is_pool_hit(hv_t *h, const kdh_wire_state_change_t *sc)
{
    if (!sc || !h->pht_addr || sc->new_state != KDH_WIRE_STATE_EXCEPTION ||
        sc->u.exception.code != KDH_WIRE_STATUS_BREAKPOINT || sc->report.instruction_count < 1 ||
        sc->report.instruction_stream[0] != 0xCC)
        return 0;
    const kdh_target_kdbg_t *kd = kdh_target_kdbg(h->t);
    uint64_t bpws = kd ? kd->breakpoint_with_status : h->bpws;
    return !(bpws && sc->program_counter == bpws);
}

/* Whose stop it is follows from its PC, which is checked against the context at a place not seen
 * before (kdh_target_verify_pc) before anything is classified or stepped from it; not at a
 * breakpoint of ours: those addresses are known, and return breakpoints are many. The thread of a
 * stop from a thread not seen before is checked too (x64, kdh_target_verify_thread). */
static int verify_stop(hv_t *h, kdh_err_t *err)
{
    int rc = kdh_target_verify_thread(h->t, h->c.kd, err); /* every stop: events name its thread */
    const kdh_wire_state_change_t *sc = kdh_kd_state(h->c.kd);
    if (rc != KDH_OK || !sc || hv_bp_find(h, sc->program_counter) >= 0)
        return rc;
    return kdh_target_verify_pc(h->t, h->c.kd, err);
}

/* The detach's last Continue may be acknowledged and never acted on (a damaged type field, which the
 * checksum does not cover): the target would stay stopped with nobody attached. A target still
 * stopped reports its stop again to a probe (hv_conn_confirm_running) and is continued again; so is
 * any other stop that comes meanwhile (a hit already under way on another processor when the tag
 * was restored is logged first). A target that runs stays quiet, and that is all. */
static int confirm_running(hv_t *h, kdh_err_t *err)
{
    for (unsigned i = 0; i < 4; i++) {
        uint64_t serial = kdh_kd_stop_serial(h->c.kd);
        h->c.probed = 0;
        if (!hv_conn_confirm_running(&h->c, serial))
            return KDH_OK;
        h->restop_check = h->c.probed; /* our last stop again, or a new one */
        h->c.probed = 0;
        int rc = verify_stop(h, err);
        if (rc == KDH_OK) {
            const kdh_wire_state_change_t *sc = kdh_kd_state(h->c.kd);
            rc = is_pool_hit(h, sc) ? hv_handle_hit(h, err) : resume(h, err);
        }
        if (rc == KDH_ECANCELED && kdh_kd_stopped(h->c.kd)) {
            kdh_err_clear(err); /* re-reported meanwhile: the next turn takes it */
            continue;
        }
        if (rc != KDH_OK)
            return rc;
    }
    return KDH_OK;
}

/* Break in (if running), disarm, continue. */
static int detach(hv_t *h, kdh_err_t *err)
{
    if (!h->c.kd)
        return KDH_OK;
    status(h, "detaching", 1);
    int rc;
    if (!kdh_kd_stopped(h->c.kd) || h->c.reset_seen) {
        kdh_wire_get_version_t v;
        for (unsigned i = 0;; i++) { /* a link reset meanwhile (a reboot) re-reports the stop: ask again */
            if ((rc = hv_conn_probe_stop(&h->c, h->o->port, err)) != KDH_OK)
                return rc;
            rc = get_version(h, &v, err);
            if (rc != KDH_ECANCELED || i >= 3)
                break;
            kdh_err_clear(err);
        }
        if (rc != KDH_OK)
            return rc;
        if (h->armed && v.kern_base != kdh_target_version(h->t)->kern_base) {
            /* rebooted since the last look: the new kernel was never armed */
            if (h->o->mode == KDH_HARVEST_HITTAG &&
                (rc = hv_journal_append(h->dir, "disarm", h->pht_addr, h->pht_old, h->pht_old,
                                        kdh_target_version(h->t)->kern_base, err)) != KDH_OK)
                return rc;
            hv_bp_forget_all(h);
            h->armed = 0;
        } else {
            /* the stop the break-in found may be the last hit again, its Continue lost */
            h->restop_check = 1;
        }
    }
    /* Each step below is done once (disarm, flush and clear leave nothing to do a second time); a
     * link reset on a noisy line re-reports the stop and cancels the request in flight, as in the
     * run's loop: then the steps go on at the re-reported stop, which may be the hit already
     * handled, its Continue cancelled (restop_check). */
    for (unsigned i = 0;; i++) {
        rc = verify_stop(h, err);
        int hit = rc == KDH_OK && is_pool_hit(h, kdh_kd_state(h->c.kd));
        int entry = rc == KDH_OK && hv_mode_owns_stop(h, kdh_kd_state(h->c.kd));
        if (rc == KDH_OK)
            rc = disarm(h, err);
        /* allocations still waiting for their return are logged without an address; no
         * breakpoint of ours stays in the target */
        h->detaching = 1;
        if (rc == KDH_OK)
            rc = hv_pair_flush(h, err);
        if (rc == KDH_OK)
            rc = hv_bp_clear_all(h, err);
        /* a hit that came before the break-in is logged like any other, so the log stays complete */
        if (rc == KDH_OK)
            rc = hit ? hv_handle_hit(h, err) : entry ? hv_mode_on_entry(h, err) : resume(h, err);
        if (rc != KDH_ECANCELED || i >= 3 || !kdh_kd_stopped(h->c.kd))
            break;
        hv_notice(h, "%s; detaching at the stop reported again", err->msg);
        kdh_err_clear(err);
        h->restop_check = 1;
    }
    if (rc != KDH_OK)
        return rc;
    if ((rc = confirm_running(h, err)) != KDH_OK)
        return rc;
    hv_conn_drain(&h->c);
    return KDH_OK;
}

/* Reads meta.json of a continued run for the boot number and kernel base it ended with. */
static void resume_boot(hv_t *h, uint64_t *base)
{
    char path[640];
    snprintf(path, sizeof path, "%s/meta.json", h->dir);
    json_t *m = json_load_file(path, 0, NULL);
    json_t *k = json_object_get(m, "kernel");
    json_int_t b = json_integer_value(json_object_get(k, "boot"));
    const char *s = json_string_value(json_object_get(k, "base"));
    h->boot = b > 0 && b < 1000000 ? (uint32_t)b : 1;
    *base = s ? strtoull(s, NULL, 16) : 0;
    /* the run before ended (or was killed) after its last meta and its last event, whichever
     * came later; meta is rewritten every 10 s and at the end */
    const char *u = json_string_value(json_object_get(m, "updated"));
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = u ? strptime(u, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (rest && !*rest)
        h->prev_end = (double)timegm(&tm);
    json_decref(m);
}

static int on_old_stack(void *ud, uint64_t sid, const kdh_store_frame_t *frames, size_t n)
{
    (void)frames;
    (void)n;
    return hv_sid_known(ud, sid);
}

/* Every event was counted against a stack logged before: stop at the first event line. */
static int on_old_event(void *ud, const kdh_store_event_t *ev)
{
    (void)ud;
    (void)ev;
    return 1;
}

/* A continued run: from the run before's end to this one's arming nobody watched the tag. A run
 * that detached had restored nt!PoolHitTag, so hits then went unseen; one that was killed left the
 * target armed, and its hits waited stopped (the first of them is logged at this attach). */
static int gap_since_last_run(hv_t *h, kdh_err_t *err)
{
    if (h->prev_end <= 0)
        return KDH_OK;
    kdh_store_gap_t g = {.t0 = h->prev_end, .t1 = hv_now_wall(), .reason = "not-attached",
                         .detail = "no kdharvest attached: the run was continued after this"};
    h->prev_end = 0;
    if (g.t1 < g.t0)
        g.t1 = g.t0; /* a clock set back meanwhile */
    return kdh_store_append_gap(h->st, &g, err);
}

static int open_run(hv_t *h, uint64_t *prev_base, kdh_err_t *err)
{
    int rc = kdh_store_open(&h->st, h->dir, NULL, err);
    if (rc != KDH_OK)
        return rc;
    const kdh_store_info_t *inf = kdh_store_info(h->st);
    h->boot = 1;
    *prev_base = 0;
    if (inf->resumed) {
        resume_boot(h, prev_base);
        if (inf->last_event_t > h->prev_end)
            h->prev_end = inf->last_event_t;
        kdh_store_reader_t rd = {.ud = h, .on_stack = on_old_stack, .on_event = on_old_event};
        kdh_err_t ignore;
        kdh_store_read(h->dir, &rd, NULL, &ignore);
        if (inf->repaired)
            hv_notice(h, "%s", inf->repair_note);
    }
    open_dbgprint(h);
    return KDH_OK;
}

/* After the target reset the link: a new kernel base, or PoolHitTag no longer holding the tag,
 * means a new boot. Then the model is rebuilt from scratch (modules may have moved), the boot
 * number goes up, the time since the last hit is logged as a gap, and the tag is armed again. */
static int check_boot(hv_t *h, kdh_err_t *err)
{
    kdh_wire_get_version_t v;
    int rc = get_version(h, &v, err);
    if (rc != KDH_OK)
        return rc;
    int rebooted = v.kern_base != kdh_target_version(h->t)->kern_base;
    if (!rebooted && h->armed && h->o->mode == KDH_HARVEST_HITTAG) {
        uint32_t cur;
        if ((rc = read_u32(h, h->pht_addr, &cur, err)) != KDH_OK)
            return rc;
        rebooted = cur != h->tag_dword;
    }
    if (!rebooted)
        return KDH_OK;
    /* the old boot's arming died with it */
    if (h->armed && h->o->mode == KDH_HARVEST_HITTAG && (rc = hv_journal_append(h->dir, "disarm", h->pht_addr, h->pht_old, h->pht_old,
                                            kdh_target_version(h->t)->kern_base, err)) != KDH_OK)
        return rc;
    h->armed = 0;
    kdh_store_gap_t g = {.t0 = h->last_hit_wall > 0 ? h->last_hit_wall : h->started, .t1 = hv_now_wall(),
                         .reason = "reboot", .detail = "the target rebooted; harvest continued on the new boot"};
    if ((rc = kdh_store_append_gap(h->st, &g, err)) != KDH_OK)
        return rc;
    if ((rc = fresh_model(h, err)) != KDH_OK)
        return rc;
    /* the old boot's blocks died with it */
    if ((rc = hv_pair_flush(h, err)) != KDH_OK)
        return rc;
    hv_pair_free_all(&h->pair);
    memset(h->pair.site, 0, sizeof h->pair.site);
    memset(&h->pred, 0, sizeof h->pred);
    memset(&h->kinds, 0, sizeof h->kinds);
    h->boot++;
    h->reboots++;
    hv_notice(h, "the target rebooted (kernel at 0x%llx): boot %u, re-arming",
              (unsigned long long)v.kern_base, h->boot);
    if ((rc = attach_arm(h, 0, err)) != KDH_OK)
        return rc;
    return hv_write_meta(h, err);
}

/* ---- the run ---- */

/* A request refused by a target that reset the link or reported a new stop while it was on the
 * wire (or cancelled by that new stop): a reboot, whose new kernel answered what the old one was
 * asked (a breakpoint or a read at the old kernel's address). The loop then looks at the boot
 * (check_boot) instead of ending the run. serial: the stop the request was made at. */
static int rebooted_meanwhile(hv_t *h, int rc, uint64_t serial, kdh_err_t *err)
{
    if (rc != KDH_ETARGET && rc != KDH_ECANCELED)
        return 0;
    int new_stop = rc == KDH_ECANCELED || kdh_kd_stop_serial(h->c.kd) != serial ||
                   hv_conn_wait_new_stop(&h->c, serial, 1000);
    if (!new_stop && !h->c.reset_seen)
        return 0;
    hv_notice(h, "%s; the target %s meanwhile: looking at its boot", err->msg,
              new_stop ? "reported a new stop" : "reset the link");
    kdh_err_clear(err);
    h->boot_suspect = new_stop; /* without one, reset_seen has the loop stop the target first */
    return 1;
}

static int serve(hv_t *h, kdh_err_t *err)
{
    const kdh_harvest_opts_t *o = h->o;
    double gap_t0 = 0;
    hv_runfiles_begin(h, hv_now_mono());
    for (;;) {
        double now = hv_now_mono();
        /* the last allocations' returns come first, for a while */
        if ((o->stop && *o->stop) ||
            (o->max_hits && h->hits >= o->max_hits && (!hv_pair_pending(h) || now - h->last_hit_mono > 2)) ||
            (o->duration_s > 0 && now - h->armed_at >= o->duration_s)) {
            if (gap_t0 <= 0)
                return KDH_OK;
            /* ending while disarmed for load: the pause is a gap all the same */
            kdh_store_gap_t g = {.t0 = gap_t0, .t1 = hv_now_wall(), .reason = "disarmed",
                                 .detail = "target stopped too long by hits; the run ended before re-arming"};
            return kdh_store_append_gap(h->st, &g, err);
        }
        if (o->reopen && *o->reopen) {
            *o->reopen = 0;
            open_dbgprint(h);
        }
        /* meta.json and summary.txt are written in the thread pool: the loop goes on meanwhile */
        int rc = hv_runfiles_tick(h, now, err);
        if (rc != KDH_OK)
            return rc;
        if (!h->armed && gap_t0 > 0 && hv_now_wall() - gap_t0 >= 10) {
            /* re-arm after a load pause: break in, write the tag, go on */
            if ((rc = kdh_kd_break(h->c.kd, err)) != KDH_OK)
                return rc;
            if ((rc = hv_conn_wait_stop(&h->c, 5000, NULL, err)) != KDH_OK)
                return rc;
            rc = h->o->mode == KDH_HARVEST_HITTAG ? arm_pht(h, err) : hv_mode_arm(h, err);
            if (rc != KDH_OK)
                return rc;
            kdh_store_gap_t g = {.t0 = gap_t0, .t1 = hv_now_wall(), .reason = "disarmed",
                                 .detail = "target stopped too long by hits; re-armed after 10 s"};
            if ((rc = kdh_store_append_gap(h->st, &g, err)) != KDH_OK)
                return rc;
            gap_t0 = 0;
            if ((rc = resume(h, err)) != KDH_OK)
                return rc;
            continue;
        }
        /* A quiet target is looked at every 10 s: a reboot need not say anything on the line
         * (the new kernel comes up with PoolHitTag unarmed and just runs). */
        double last = h->last_hit_wall > h->last_probe_wall ? h->last_hit_wall : h->last_probe_wall;
        if (h->armed && last > 0 && hv_now_wall() - last >= 10)
            h->c.reset_seen = 1;
        if (h->c.reset_seen) {
            /* A rebooted target runs on without reporting a stop (the stop the session still
             * holds is from the old boot); a target that only reset the link reports its stop
             * again. Stop it and look either way. */
            h->last_probe_wall = hv_now_wall();
            if ((rc = hv_conn_probe_stop(&h->c, h->o->port, err)) != KDH_OK)
                return rc;
        }
        int timed_out = 0;
        rc = hv_conn_wait_stop(&h->c, 200, &timed_out, err);
        if (rc != KDH_OK) {
            if (timed_out) {
                status(h, h->armed ? "armed" : "paused", 0);
                continue;
            }
            return rc;
        }
        if (h->c.probed) {
            /* a quiet line was probed: this stop may be the last one reported again, its
             * Continue acknowledged and ignored */
            h->c.probed = 0;
            h->restop_check = 1;
        }
        const kdh_wire_state_change_t *sc = kdh_kd_state(h->c.kd);
        uint64_t serial = kdh_kd_stop_serial(h->c.kd);
        /* A new boot's first stops are LoadSymbols (the old system unloaded, then the new
         * kernel). Its link reset is seen only when the new boot's first packet id differs from
         * the one expected next (half the time), and breakpoints written at the old kernel's
         * addresses would be refused: every LoadSymbols stop has the boot checked (one
         * GetVersion; drivers load rarely). */
        int load = sc && sc->new_state == KDH_WIRE_STATE_LOAD_SYMBOLS;
        if (h->c.reset_seen || load || h->boot_suspect) {
            int reset = h->c.reset_seen;
            h->c.reset_seen = 0;
            h->boot_suspect = 0;
            uint32_t boot = h->boot;
            rc = check_boot(h, err);
            if (rc == KDH_ECANCELED)
                continue; /* reset again: the stop is re-reported */
            if (rc != KDH_OK)
                return rc;
            if (reset)
                h->restop_check = h->boot == boot;
        }
        if ((rc = verify_stop(h, err)) != KDH_OK) {
            if (rc == KDH_ECANCELED || rebooted_meanwhile(h, rc, serial, err))
                continue;
            return rc;
        }
        sc = kdh_kd_state(h->c.kd);
        int entry = hv_mode_owns_stop(h, sc);
        if (h->o->pair && hv_pair_owns_stop(h, sc)) {
            rc = hv_pair_on_return(h, err);
        } else if (entry || is_pool_hit(h, sc)) {
            if (o->max_stall_pct > 0 && now - h->armed_at > 5 && hv_stall_pct(h, now) > o->max_stall_pct) {
                if ((rc = disarm(h, err)) != KDH_OK)
                    return rc;
                gap_t0 = hv_now_wall();
                hv_notice(h, "target stopped %.0f%% of the last minute (limit %.0f%%): disarmed for 10 s",
                          hv_stall_pct(h, now), o->max_stall_pct);
            }
            rc = entry ? hv_mode_on_entry(h, err) : hv_handle_hit(h, err);
        } else {
            rc = resume(h, err);
        }
        if (rc == KDH_ECANCELED)
            continue; /* the target reset the link mid-stop: it reports the stop again */
        if (rebooted_meanwhile(h, rc, serial, err))
            continue;
        if (rc != KDH_OK)
            return rc;
        status(h, h->armed ? "armed" : "paused", 0);
    }
}

/* The port hung up or the connection dropped, and came back (or the run ended first). The target's
 * stops waited for us meanwhile (they are retried forever), but what it printed was not heard, and
 * a reader of the run should know the line was out. */
static void on_line_gap(void *ctx, double t0, double t1, const char *why)
{
    hv_t *h = ctx;
    if (!h->st)
        return;
    char detail[256];
    snprintf(detail, sizeof detail, "line down (%s): stops waited, prints sent meanwhile were not heard", why);
    kdh_store_gap_t g = {.t0 = t0, .t1 = t1, .reason = "line-down", .detail = detail};
    kdh_err_t e;
    memset(&e, 0, sizeof e);
    if (kdh_store_append_gap(h->st, &g, &e) != KDH_OK)
        hv_notice(h, "%s", e.msg); /* the store keeps the failure: the next event write ends the run */
}

static void on_port_notice(void *ctx, const char *line)
{
    hv_notice(ctx, "%s", line);
}

int kdh_harvest_run(const kdh_harvest_opts_t *o, kdh_harvest_result_t *res, kdh_err_t *err)
{
    hv_t *h = calloc(1, sizeof *h);
    if (!h)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory");
    h->o = o;
    h->c.on_print = on_print;
    h->c.on_notice = on_port_notice;
    h->c.on_line_gap = on_line_gap;
    h->c.print_ctx = h;
    h->started = hv_now_wall();
    h->last_status_t = hv_now_mono();
    int rc = kdh_tag_normalize(o->tag ? o->tag : "", h->tag, err);
    if (rc == KDH_OK) {
        h->tag_dword = kdh_tag_dword(h->tag);
        snprintf(h->dir, sizeof h->dir, "%s", o->out_dir ? o->out_dir : ".");
        rc = kdh_target_new(&h->t, err);
    }
    uint64_t prev_base = 0;
    if (rc == KDH_OK)
        rc = open_run(h, &prev_base, err);
    if (rc == KDH_OK)
        rc = attach(h, err);
    if (rc == KDH_OK)
        rc = attach_arm(h, prev_base, err);
    if (rc == KDH_OK)
        rc = gap_since_last_run(h, err);
    if (rc == KDH_OK)
        rc = hv_write_meta(h, err);
    if (rc == KDH_OK) {
        h->armed_at = hv_now_mono();
        h->last_probe_wall = hv_now_wall();
        h->stall_sec = (int64_t)h->armed_at;
        h->mark_in = hv_conn_bytes(&h->c, 0);
        h->mark_out = hv_conn_bytes(&h->c, 1);
        h->mark_req = kdh_kd_stats(h->c.kd)->requests;
        /* a target left armed by a crashed run may be stopped at a hit: log it, it is real */
        uint64_t serial = kdh_kd_stop_serial(h->c.kd);
        rc = verify_stop(h, err);
        if (rc == KDH_OK)
            rc = is_pool_hit(h, kdh_kd_state(h->c.kd)) ? hv_handle_hit(h, err) : resume(h, err);
        if (rebooted_meanwhile(h, rc, serial, err))
            rc = KDH_OK;
        h->mark_in = hv_conn_bytes(&h->c, 0);
        h->mark_out = hv_conn_bytes(&h->c, 1);
        h->mark_req = kdh_kd_stats(h->c.kd)->requests;
        status(h, "armed", 1);
    }
    if (rc == KDH_OK)
        rc = serve(h, err);
    /* whatever happened, try to leave the target running and unarmed */
    kdh_err_t derr;
    memset(&derr, 0, sizeof derr);
    int drc = KDH_OK;
    if (h->c.kd && kdh_link_state(kdh_kd_link(h->c.kd)) == KDH_LINK_CONNECTED && !h->c.tp_dead &&
        (h->armed || kdh_kd_stopped(h->c.kd)))
        drc = detach(h, &derr);
    if (rc == KDH_OK && drc != KDH_OK) {
        rc = drc;
        *err = derr;
    }
    hv_conn_end_line_gap(&h->c); /* a line still down at the end is a gap up to now */
    if (h->st) {
        kdh_err_t e2;
        hv_write_meta(h, &e2);
        hv_write_summary(h);
    }
    hv_runfiles_wait(h); /* their jobs live in h, on h's loop */
    if (h->armed_at > 0)
        status(h, "done", 1);
    if (res) {
        memset(res, 0, sizeof *res);
        res->final.hits = h->hits;
        res->final.captured = h->captured;
        res->final.allocs = h->allocs;
        res->final.frees = h->frees;
        res->final.unique_stacks = h->sids.n;
        res->bytes_in = hv_conn_bytes(&h->c, 0);
        res->bytes_out = hv_conn_bytes(&h->c, 1);
        res->requests = h->c.kd ? kdh_kd_stats(h->c.kd)->requests : 0;
        res->repaired = h->repaired;
        snprintf(res->run_dir, sizeof res->run_dir, "%s", h->dir);
    }
    kdh_err_t e3;
    if (h->st && kdh_store_close(h->st, &e3) != KDH_OK && rc == KDH_OK) {
        rc = e3.code ? e3.code : KDH_EIO;
        *err = e3;
    }
    if (h->dbgprint)
        fclose(h->dbgprint);
    hv_conn_close(&h->c);
    kdh_target_free(h->t);
    free(h->sids.sid);
    free(h->sids.count);
    hv_pair_free_all(&h->pair);
    free(h);
    return rc;
}
