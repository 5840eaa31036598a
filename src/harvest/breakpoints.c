/* breakpoints.c: the harvester's own software breakpoints (kd-protocol.md 3.2). The target keeps
 * a table of int 3s written by WriteBreakPoint and, at every stop, takes out those in the
 * reported instruction range; so before each continue every wanted breakpoint is put back, and
 * one at the stop's own PC is stepped over first (Continue2 with the trace flag, then written
 * again). Every breakpoint is journalled with the handle the target gave it, so a run that died
 * leaves the next start enough to take it out of the target (RestoreBreakPoint needs the handle,
 * which exists only once WriteBreakPoint has answered: the record follows the write, and a run
 * that dies between the two leaves an int 3 the journal does not name). */
#include <string.h>

#include "harvest_int.h"

static uint64_t kbase(const hv_t *h)
{
    const kdh_wire_get_version_t *v = kdh_target_version(h->t);
    return v ? v->kern_base : 0;
}

int hv_bp_find(const hv_t *h, uint64_t pc)
{
    for (int i = 0; i < HV_BP_MAX; i++)
        if (h->bps.bp[i].wanted && h->bps.bp[i].addr == pc)
            return i;
    return -1;
}

void hv_bp_note_stop(hv_t *h, const kdh_wire_state_change_t *sc)
{
    uint64_t serial = kdh_kd_stop_serial(h->c.kd);
    if (!sc || serial == h->bps.noted_serial)
        return;
    h->bps.noted_serial = serial;
    uint64_t lo = sc->program_counter;
    uint64_t n = sc->report.instruction_count;
    if (n == 0)
        return;
    for (int i = 0; i < HV_BP_MAX; i++) {
        hv_bp_t *b = &h->bps.bp[i];
        if (b->handle && b->addr >= lo && b->addr <= lo + n - 1) {
            /* its journal record stays open: at worst a refused RestoreBreakPoint at a restart */
            b->handle = 0;
            h->bps.deleted_by_target++;
        }
    }
}

static int write_bp(hv_t *h, hv_bp_t *b, kdh_err_t *err)
{
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_write_breakpoint(h->c.kd, &req, b->addr, NULL, NULL);
    int rc = hv_conn_call(&h->c, &req, "WriteBreakPoint", err);
    if (rc != KDH_OK)
        return rc;
    uint32_t handle = req.m.u.write_bp.handle;
    if (handle == 0)
        return kdh_err_set(err, KDH_ETARGET, "the target refused a breakpoint at 0x%llx",
                           (unsigned long long)b->addr);
    b->handle = handle;
    h->bps.writes++;
    if (handle < HV_BP_HANDLES && h->bps.jopen[handle] && h->bps.jaddr[handle] == b->addr)
        return KDH_OK; /* the journal already says so */
    if (handle < HV_BP_HANDLES) {
        h->bps.jopen[handle] = 1;
        h->bps.jaddr[handle] = b->addr;
    }
    /* the handle is what a later start needs to take it out again */
    return hv_journal_bp(h->dir, "bp_set", b->addr, handle, kbase(h), 1, err);
}

static int journal_clear(hv_t *h, uint64_t addr, uint32_t handle, kdh_err_t *err)
{
    if (handle < HV_BP_HANDLES) {
        if (!h->bps.jopen[handle])
            return KDH_OK;
        h->bps.jopen[handle] = 0;
    }
    /* not synced: a lost record only costs a refused RestoreBreakPoint at the next start */
    return hv_journal_bp(h->dir, "bp_clear", addr, handle, kbase(h), 0, err);
}

/* KDH_OK, or 1 when the target said the handle was not in its table (it took the int 3 out at
 * a stop already). */
static int restore_bp(hv_t *h, hv_bp_t *b, kdh_err_t *err)
{
    if (!b->handle)
        return KDH_OK;
    kdh_kd_req_t req;
    memset(&req, 0, sizeof req);
    kdh_kd_restore_breakpoint(h->c.kd, &req, b->handle, NULL, NULL);
    int rc = kdh_kd_wait(h->c.kd, &req);
    if (rc != KDH_OK && rc != KDH_ETARGET) /* refused: the target already took it out */
        return kdh_err_set(err, rc, "RestoreBreakPoint: %s", req.err.msg);
    uint32_t handle = b->handle;
    b->handle = 0;
    h->bps.restores += rc == KDH_OK;
    int jrc = journal_clear(h, b->addr, handle, err);
    return jrc != KDH_OK ? jrc : rc == KDH_OK ? KDH_OK : 1;
}

int hv_bp_want(hv_t *h, uint64_t addr, kdh_err_t *err)
{
    if (hv_bp_find(h, addr) >= 0)
        return KDH_OK;
    for (int i = 0; i < HV_BP_MAX; i++) {
        hv_bp_t *b = &h->bps.bp[i];
        if (!b->wanted && !b->handle) {
            b->addr = addr;
            b->wanted = 1;
            return KDH_OK;
        }
    }
    return kdh_err_set(err, KDH_ERANGE, "more than %d breakpoints wanted at once", HV_BP_MAX);
}

int hv_bp_unwant(hv_t *h, uint64_t addr, kdh_err_t *err)
{
    int i = hv_bp_find(h, addr);
    if (i < 0)
        return KDH_OK;
    h->bps.bp[i].wanted = 0;
    int rc = restore_bp(h, &h->bps.bp[i], err);
    return rc > 0 ? KDH_OK : rc;
}

/* Puts every wanted breakpoint except the one at pc in place. */
static int insert_all(hv_t *h, uint64_t pc, kdh_err_t *err)
{
    for (int i = 0; i < HV_BP_MAX; i++) {
        hv_bp_t *b = &h->bps.bp[i];
        if (b->wanted && !b->handle && b->addr != pc) {
            int rc = write_bp(h, b, err);
            if (rc != KDH_OK)
                return rc;
        }
    }
    return KDH_OK;
}

int hv_continue(hv_t *h, uint32_t status, kdh_err_t *err)
{
    for (;;) {
        const kdh_wire_state_change_t *sc = kdh_kd_state(h->c.kd);
        if (!sc)
            return kdh_err_set(err, KDH_EINVAL, "continue while the target runs");
        hv_bp_note_stop(h, sc);
        uint64_t pc = sc->program_counter;
        int rc = insert_all(h, pc, err);
        if (rc != KDH_OK)
            return rc;
        int at_pc = hv_bp_find(h, pc);
        if (at_pc < 0 || h->bps.bp[at_pc].handle)
            return hv_conn_continue(&h->c, status, err);
        /* a wanted breakpoint at the PC: run its one instruction with the trace flag, then the
         * single-step stop puts it back */
        uint64_t serial = kdh_kd_stop_serial(h->c.kd);
        unsigned cpu = sc->processor;
        kdh_kd_req_t req;
        memset(&req, 0, sizeof req);
        kdh_kd_continue(h->c.kd, &req, status, 1, 0, NULL, NULL);
        if ((rc = hv_conn_call(&h->c, &req, "Continue (trace)", err)) != KDH_OK)
            return rc;
        h->bps.steps++;
        int timed_out = 0;
        rc = hv_conn_wait_stop(&h->c, 5000, &timed_out, err);
        if (rc != KDH_OK && timed_out)
            rc = hv_conn_restop(&h->c, serial, err);
        if (rc != KDH_OK)
            return rc;
        sc = kdh_kd_state(h->c.kd);
        if (kdh_kd_stop_serial(h->c.kd) == serial || !sc)
            return kdh_err_set(err, KDH_EPROTO, "no stop after a single step");
        if (sc->new_state == KDH_WIRE_STATE_EXCEPTION && sc->u.exception.code == KDH_WIRE_STATUS_BREAKPOINT &&
            sc->processor == cpu && sc->program_counter == pc) {
            /* the same stop again: the target acknowledged the trace Continue and never acted on
             * it (a damaged packet type, which the checksum does not cover), so it never ran;
             * step again */
            h->bps.lost_steps++;
            continue;
        }
        if (sc->new_state != KDH_WIRE_STATE_EXCEPTION || sc->u.exception.code != KDH_WIRE_STATUS_SINGLE_STEP ||
            sc->processor != cpu) {
            /* something else stopped the target first: its stop is the run loop's, whose
             * handler ends in hv_continue, which puts every breakpoint back */
            hv_bp_note_stop(h, sc);
            return KDH_OK;
        }
        status = KDH_WIRE_DBG_CONTINUE;
    }
}

void hv_bp_forget_all(hv_t *h)
{
    memset(h->bps.bp, 0, sizeof h->bps.bp);
    memset(h->bps.jopen, 0, sizeof h->bps.jopen);
}

int hv_bp_clear_all(hv_t *h, kdh_err_t *err)
{
    hv_bp_note_stop(h, kdh_kd_state(h->c.kd));
    int rc = KDH_OK;
    for (int i = 0; i < HV_BP_MAX; i++) {
        hv_bp_t *b = &h->bps.bp[i];
        b->wanted = 0;
        int r = restore_bp(h, b, err);
        if (r < 0 && rc == KDH_OK)
            rc = r;
    }
    /* handles the target dropped at stops: nothing left in it, and the journal says so */
    for (uint32_t k = 0; k < HV_BP_HANDLES; k++) {
        int r = journal_clear(h, h->bps.jaddr[k], k, err);
        if (r != KDH_OK && rc == KDH_OK)
            rc = r;
    }
    return rc;
}

int hv_bp_repair(hv_t *h, const hv_journal_bps_t *jb, kdh_err_t *err)
{
    uint64_t kb = kbase(h);
    int n = 0;
    for (size_t i = 0; i < jb->n; i++) {
        if (jb->kernel_base[i] != kb)
            continue; /* a reboot took it out */
        hv_bp_t b = {.addr = jb->addr[i], .handle = jb->handle[i]};
        if (b.handle < HV_BP_HANDLES) { /* open in the journal: its clear is written below */
            h->bps.jopen[b.handle] = 1;
            h->bps.jaddr[b.handle] = b.addr;
        }
        int rc = restore_bp(h, &b, err);
        if (rc < 0)
            return rc;
        n += rc == KDH_OK; /* a refused handle was already out */
    }
    /* the ones of an earlier boot are gone with it: close their records */
    for (size_t i = 0; i < jb->n; i++)
        if (jb->kernel_base[i] != kb) {
            int rc = hv_journal_bp(h->dir, "bp_clear", jb->addr[i], jb->handle[i], jb->kernel_base[i], 0, err);
            if (rc != KDH_OK)
                return rc;
        }
    return n;
}
