/* calls.c: the typed KD calls (each fills a request and queues it on the session) and the
 * blocking wait for a request. The session itself is in kd.c. */
#include <string.h>

#include "kd_int.h"
#include "kdh/task.h"

static void prep(kdh_kd_req_t *req, int op, uint32_t api, unsigned processor, kdh_kd_done_cb done,
                 void *user)
{
    memset(req, 0, sizeof *req);
    req->op = op;
    req->m.api = api;
    req->m.processor = (uint16_t)processor;
    req->done = done;
    req->user = user;
}

/* A zero-length transfer needs no packet: it is done at once. */
static void enqueue_unless_empty(kdh_kd_t *kd, kdh_kd_req_t *req, size_t len)
{
    if (len) {
        kd_enqueue(kd, req);
        return;
    }
    req->status = KDH_OK;
    if (req->done)
        req->done(kd, req);
}

static void reject(kdh_kd_t *kd, kdh_kd_req_t *req, const char *msg)
{
    (void)kd;
    kdh_err_set(&req->err, KDH_EINVAL, "%s", msg);
    req->status = KDH_EINVAL;
    if (req->done)
        req->done(kd, req);
}

void kdh_kd_get_version(kdh_kd_t *kd, kdh_kd_req_t *req, kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_PLAIN, KDH_WIRE_API_GET_VERSION, 0, done, user);
    kd_enqueue(kd, req);
}

void kdh_kd_read_virtual(kdh_kd_t *kd, kdh_kd_req_t *req, uint64_t va, void *buf, size_t len,
                         kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_READ_VIRTUAL, KDH_WIRE_API_READ_VIRTUAL_MEMORY, 0, done, user);
    req->address = va;
    req->out = buf;
    req->out_cap = len;
    enqueue_unless_empty(kd, req, len);
}

void kdh_kd_write_virtual(kdh_kd_t *kd, kdh_kd_req_t *req, uint64_t va, const void *buf,
                          size_t len, kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_WRITE_VIRTUAL, KDH_WIRE_API_WRITE_VIRTUAL_MEMORY, 0, done, user);
    req->address = va;
    req->data = buf;
    req->data_len = len;
    enqueue_unless_empty(kd, req, len);
}

void kdh_kd_get_context(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor, void *buf,
                        size_t cap, kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_PLAIN, KDH_WIRE_API_GET_CONTEXT, processor, done, user);
    req->out = buf;
    req->out_cap = cap;
    kd_enqueue(kd, req);
}

void kdh_kd_set_context(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor, const void *ctx,
                        size_t len, kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_PLAIN, KDH_WIRE_API_SET_CONTEXT, processor, done, user);
    uint32_t off = kd->cfg.arch == KDH_WIRE_ARCH_X86 ? CTX_FLAGS_OFF_X86 : CTX_FLAGS_OFF_AMD64;
    if (len < kd_ctx_size(kd)) {
        reject(kd, req, "SetContext needs a whole CONTEXT");
        return;
    }
    req->m.u.set_context.context_flags = kdh_get_u32((const uint8_t *)ctx + off);
    req->data = ctx;
    req->data_len = kd_ctx_size(kd);
    kd_enqueue(kd, req);
}

void kdh_kd_get_context_slice(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor,
                              uint32_t offset, void *buf, size_t len, kdh_kd_done_cb done,
                              void *user)
{
    prep(req, KDH_KD_OP_GET_CONTEXT_EX, KDH_WIRE_API_GET_CONTEXT_EX, processor, done, user);
    if (!len || !kdh_in_bounds(offset, len, kd_ctx_size(kd))) {
        reject(kd, req, "CONTEXT slice outside the CONTEXT");
        return;
    }
    req->address = offset;
    req->out = buf;
    req->out_cap = len;
    kd_enqueue(kd, req);
}

void kdh_kd_set_context_slice(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor,
                              uint32_t offset, const void *buf, size_t len, kdh_kd_done_cb done,
                              void *user)
{
    prep(req, KDH_KD_OP_SET_CONTEXT_EX, KDH_WIRE_API_SET_CONTEXT_EX, processor, done, user);
    if (!len || !kdh_in_bounds(offset, len, kd_ctx_size(kd))) {
        reject(kd, req, "CONTEXT slice outside the CONTEXT");
        return;
    }
    req->address = offset;
    req->data = buf;
    req->data_len = len;
    kd_enqueue(kd, req);
}

void kdh_kd_read_control(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor, uint64_t selector,
                         void *buf, size_t len, kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_PLAIN, KDH_WIRE_API_READ_CONTROL_SPACE, processor, done, user);
    if (len > KDH_WIRE_READ_MAX) {
        reject(kd, req, "control space reads are limited to one packet");
        return;
    }
    req->m.u.mem.address = selector;
    req->m.u.mem.transfer_count = (uint32_t)len;
    req->out = buf;
    req->out_cap = len;
    kd_enqueue(kd, req);
}

void kdh_kd_write_breakpoint(kdh_kd_t *kd, kdh_kd_req_t *req, uint64_t va, kdh_kd_done_cb done,
                             void *user)
{
    prep(req, KDH_KD_OP_PLAIN, KDH_WIRE_API_WRITE_BREAKPOINT, 0, done, user);
    req->m.u.write_bp.address = va;
    kd_enqueue(kd, req);
}

void kdh_kd_restore_breakpoint(kdh_kd_t *kd, kdh_kd_req_t *req, uint32_t handle,
                               kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_PLAIN, KDH_WIRE_API_RESTORE_BREAKPOINT, 0, done, user);
    req->m.u.restore_bp.handle = handle;
    kd_enqueue(kd, req);
}

void kdh_kd_continue(kdh_kd_t *kd, kdh_kd_req_t *req, uint32_t status, int trace, uint64_t dr7,
                     kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_NO_REPLY, KDH_WIRE_API_CONTINUE2, 0, done, user);
    req->m.u.cont2.status = status;
    req->m.u.cont2.trace_flag = trace ? 1 : 0;
    req->m.u.cont2.dr7 = dr7;
    req->m.u.cont2.symbol_start = 1; /* "no change" */
    req->m.u.cont2.symbol_end = 0;
    kd_enqueue(kd, req);
}

void kdh_kd_switch_processor(kdh_kd_t *kd, kdh_kd_req_t *req, unsigned processor,
                             kdh_kd_done_cb done, void *user)
{
    prep(req, KDH_KD_OP_NO_REPLY, KDH_WIRE_API_SWITCH_PROCESSOR, processor, done, user);
    kd_enqueue(kd, req);
}

void kdh_kd_clear_internal_breakpoints(kdh_kd_t *kd, kdh_kd_req_t *req, kdh_kd_done_cb done,
                                       void *user)
{
    prep(req, KDH_KD_OP_NO_REPLY, KDH_WIRE_API_CLEAR_ALL_INTERNAL_BREAKPOINTS, 0, done, user);
    kd_enqueue(kd, req);
}

/* ---- blocking helpers (one-target tools run the loop; a task yields to the others) ---------- */

int kdh_kd_wait(kdh_kd_t *kd, kdh_kd_req_t *req)
{
    while (req->status == KDH_KD_PENDING)
        kdh_task_wait(kd->cfg.link.loop);
    return req->status;
}
