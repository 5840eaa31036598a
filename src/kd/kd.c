/* KD session: the request queue (one manipulate request on the wire at a time, its reply
 * matched by ApiNumber and checked against the request), split transfers, the
 * GetContextEx/SetContextEx fallback, reads and context sets verified on a noisy line, the stop
 * state, and answers to the target's own prompts. The typed calls that fill requests are in
 * calls.c, the checks for damage the checksum misses in damage.c; the contract is in
 * include/kdh/kd.h. */
#include <stdlib.h>
#include <string.h>

#include "kd_int.h"

static uint64_t now_ms(kdh_kd_t *kd)
{
    if (kd->cfg.link.now)
        return kd->cfg.link.now(kd->cfg.link_ctx);
    return uv_now(kd->cfg.link.loop);
}

static void pump(kdh_kd_t *kd);

/* ---- completion ------------------------------------------------------------------------------ */

static void finish(kdh_kd_t *kd, kdh_kd_req_t *req, int status)
{
    if (kd->head == req) {
        kd->head = req->next;
        if (!kd->head)
            kd->tail = NULL;
        kd->on_wire = 0;
        kd->awaiting_reply = 0;
        kd->v_active = kd->v_have = 0;
    }
    req->next = NULL;
    req->status = status;
    if (status == KDH_OK)
        kdh_err_clear(&req->err);
    else if (req->err.code == KDH_OK)
        kdh_err_set(&req->err, status, "KD request 0x%04x: %s", req->m.api, kdh_strerror(status));
    if (req->done)
        req->done(kd, req);
}

static void fail(kdh_kd_t *kd, kdh_kd_req_t *req, int status, const char *msg)
{
    kdh_err_set(&req->err, status, "%s", msg);
    finish(kd, req, status);
}

static void fail_all(kdh_kd_t *kd, int status, const char *msg)
{
    while (kd->head)
        fail(kd, kd->head, status, msg);
}

/* ---- timer --------------------------------------------------------------------------------- */

static void start_head(kdh_kd_t *kd);

static void reply_timeout(kdh_kd_t *kd)
{
    kdh_kd_req_t *req = kd->head;
    if (!req || !kd->awaiting_reply || now_ms(kd) < kd->reply_due)
        return;
    kd->awaiting_reply = 0;
    if (req->retries < kd->cfg.reply_retries) {
        /* On a noisy line the reply can be lost for good: when our request is retransmitted
         * because its ACK was damaged, a target waiting for the ACK of its reply takes the copy
         * as "my ACK was lost" and drops the reply. Asking again, as a new packet, recovers;
         * every request the session sends is idempotent (a read, a write of the same bytes,
         * a context slice). A late reply to the first copy matches as well, and carries the
         * same answer. */
        req->retries++;
        kd->st.reply_retries++;
        start_head(kd);
        return;
    }
    kdh_err_set(&req->err, KDH_ETIMEDOUT,
                "no reply to KD request 0x%04x within %u ms, %u times (the target ACKed it)",
                req->m.api, kd->cfg.reply_timeout_ms, req->retries + 1);
    finish(kd, req, KDH_ETIMEDOUT);
    pump(kd);
}

static void timer_cb(uv_timer_t *t)
{
    kdh_kd_t *kd = t->data;
    reply_timeout(kd);
}

static void arm_timer(kdh_kd_t *kd)
{
    if (!kd->has_timer)
        return;
    uv_timer_stop(&kd->timer);
    if (kd->awaiting_reply) {
        uint64_t now = now_ms(kd);
        uv_timer_start(&kd->timer, timer_cb, kd->reply_due > now ? kd->reply_due - now : 0, 0);
    }
}

void kdh_kd_poll(kdh_kd_t *kd)
{
    kdh_link_poll(kd->link);
    reply_timeout(kd);
}

/* ---- sending --------------------------------------------------------------------------------- */

size_t kd_ctx_size(const kdh_kd_t *kd)
{
    return kd->cfg.arch == KDH_WIRE_ARCH_X86 ? KDH_WIRE_CONTEXT_X86_SIZE
                                             : KDH_WIRE_CONTEXT_AMD64_SIZE;
}

static int ctx_cache_ok(const kdh_kd_t *kd, unsigned cpu)
{
    return kd->ctx_cache_valid && kd->ctx_cache_cpu == cpu && kd->ctx_cache_serial == kd->stop_serial;
}

static void on_sent(void *ctx, int status);

static void send_manip(kdh_kd_t *kd, const kdh_wire_manip_t *m, const uint8_t *data, size_t len)
{
    uint8_t hdr[KDH_WIRE_MANIP_SIZE];
    kdh_err_t err;
    kdh_wire_manip_encode(m, kd->cfg.arch, hdr);
    kd->on_wire = 1;
    kd->st.requests++;
    int rc = kdh_link_send(kd->link, KDH_WIRE_TYPE_STATE_MANIPULATE, hdr, sizeof hdr, data, len,
                           on_sent, kd, &err);
    if (rc != KDH_OK) {
        kd->on_wire = 0;
        fail(kd, kd->head, rc, err.msg);
    }
}

/* Serves a context slice from the per-stop copy, if the copy is current. */
static int serve_slice_from_cache(kdh_kd_t *kd, kdh_kd_req_t *req)
{
    if (!ctx_cache_ok(kd, req->m.processor))
        return 0;
    memcpy(req->out, kd->ctx_cache + req->address, req->out_cap);
    req->out_len = req->out_cap;
    finish(kd, req, KDH_OK);
    return 1;
}

static void start_full_get(kdh_kd_t *kd, kdh_kd_req_t *req)
{
    kdh_wire_manip_t m;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_GET_CONTEXT;
    m.processor = req->m.processor;
    m.return_status = KDH_WIRE_STATUS_PENDING;
    send_manip(kd, &m, NULL, 0);
}

static void start_full_set(kdh_kd_t *kd, kdh_kd_req_t *req)
{
    kdh_wire_manip_t m;
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_SET_CONTEXT;
    m.processor = req->m.processor;
    m.return_status = KDH_WIRE_STATUS_PENDING;
    /* Patch a copy: the session's CONTEXT changes only once the target has taken it. */
    memcpy(kd->ex_scratch, kd->ctx_cache, kd_ctx_size(kd));
    memcpy(kd->ex_scratch + req->address, req->data, req->data_len);
    uint32_t off = kd->cfg.arch == KDH_WIRE_ARCH_X86 ? CTX_FLAGS_OFF_X86 : CTX_FLAGS_OFF_AMD64;
    m.u.set_context.context_flags = kdh_get_u32(kd->ex_scratch + off);
    send_manip(kd, &m, kd->ex_scratch, kd_ctx_size(kd));
}

/* Puts the next packet of the head request on the wire. */
static void start_head(kdh_kd_t *kd)
{
    kdh_kd_req_t *req = kd->head;
    kdh_wire_manip_t m = req->m;
    m.return_status = KDH_WIRE_STATUS_PENDING;

    switch (req->op) {
    case KDH_KD_OP_READ_VIRTUAL: {
        if (!kd->v_have) { /* a new chunk, not the same one asked again */
            kd->v_active = kd_line_noisy(kd);
            kd->v_tries = 0;
        }
        size_t left = req->out_cap - req->cursor;
        req->chunk = left < KDH_WIRE_READ_MAX ? left : KDH_WIRE_READ_MAX;
        m.u.mem.address = req->address + req->cursor;
        m.u.mem.transfer_count = (uint32_t)req->chunk;
        m.u.mem.actual_count = 0;
        send_manip(kd, &m, NULL, 0);
        return;
    }
    case KDH_KD_OP_WRITE_VIRTUAL: {
        size_t left = req->data_len - req->cursor;
        req->chunk = left < WRITE_MAX ? left : WRITE_MAX;
        m.u.mem.address = req->address + req->cursor;
        m.u.mem.transfer_count = (uint32_t)req->chunk;
        m.u.mem.actual_count = 0;
        send_manip(kd, &m, req->data + req->cursor, req->chunk);
        return;
    }
    case KDH_KD_OP_GET_CONTEXT_EX:
        if (serve_slice_from_cache(kd, req))
            return;
        if (!kd->v_have) { /* registers are data as well: verified like memory */
            kd->v_active = kd_line_noisy(kd);
            kd->v_tries = 0;
        }
        if (kd->ctx_ex_unsupported || req->stage == 1) {
            req->stage = 1;
            start_full_get(kd, req);
            return;
        }
        m.u.context_ex.offset = (uint32_t)req->address;
        m.u.context_ex.byte_count = (uint32_t)req->out_cap;
        m.u.context_ex.bytes_copied = 0;
        send_manip(kd, &m, NULL, 0);
        return;
    case KDH_KD_OP_SET_CONTEXT_EX:
        if ((kd->ctx_ex_unsupported || kd->set_ex_unsupported) && req->stage == 0)
            req->stage = 1;
        if (req->stage == 4 && kd->ctx_ex_unsupported) {
            start_full_get(kd, req); /* read back what was set, sliced from a full CONTEXT */
            return;
        }
        if (req->stage == 3 || req->stage == 4) {
            /* 3: a target refuses to set a context it has not been asked for in this stop (as
             * SetContext needs a GetContext): read the same slice, then set again. 4: read
             * back what was set. */
            m.api = KDH_WIRE_API_GET_CONTEXT_EX;
            m.u.context_ex.offset = (uint32_t)req->address;
            m.u.context_ex.byte_count = (uint32_t)req->data_len;
            m.u.context_ex.bytes_copied = 0;
            send_manip(kd, &m, NULL, 0);
            return;
        }
        if (req->stage >= 1) {
            /* SetContext needs a GetContext in the same stop, and a whole CONTEXT. */
            if (ctx_cache_ok(kd, req->m.processor)) {
                req->stage = 2;
                start_full_set(kd, req);
            } else {
                req->stage = 1;
                start_full_get(kd, req);
            }
            return;
        }
        m.u.context_ex.offset = (uint32_t)req->address;
        m.u.context_ex.byte_count = (uint32_t)req->data_len;
        m.u.context_ex.bytes_copied = 0;
        send_manip(kd, &m, req->data, req->data_len);
        return;
    default:
        send_manip(kd, &m, req->data, req->data_len);
        return;
    }
}

static void pump(kdh_kd_t *kd)
{
    if (kd->on_wire || kd->owed_on_wire || kd->awaiting_reply || kdh_link_send_pending(kd->link))
        return;
    if (kd->owed) {
        kdh_err_t err;
        kd->owed_on_wire = 1;
        if (kdh_link_send(kd->link, kd->owed_type, kd->owed_buf, kd->owed_len, NULL, 0, on_sent,
                          kd, &err) != KDH_OK) {
            kd->owed_on_wire = 0; /* not connected: the target asks again after a RESET */
            kd->owed = 0;
        }
        return;
    }
    while (kd->head && !kd->on_wire) {
        kdh_kd_req_t *req = kd->head;
        if (!kd->stopped) {
            fail(kd, req, KDH_EINVAL, "the target is running: break in before sending requests");
            continue;
        }
        start_head(kd);
    }
}

static void on_sent(void *ctx, int status)
{
    kdh_kd_t *kd = ctx;
    if (kd->owed_on_wire) {
        kd->owed_on_wire = 0;
        kd->owed = 0;
        pump(kd);
        return;
    }
    kd->on_wire = 0;
    kdh_kd_req_t *req = kd->head;
    if (!req)
        return;
    if (status != KDH_OK) {
        fail(kd, req, status,
             status == KDH_ECANCELED
                 ? "the target reset the link during the request; its stop is re-reported"
                 : "the target did not acknowledge the request (no ACK after retries and a RESET)");
        pump(kd);
        return;
    }
    if (req->op == KDH_KD_OP_NO_REPLY) {
        uint32_t api = req->m.api;
        if (api == KDH_WIRE_API_CONTINUE || api == KDH_WIRE_API_CONTINUE2 ||
            api == KDH_WIRE_API_SWITCH_PROCESSOR || api == KDH_WIRE_API_REBOOT) {
            kd->stopped = 0;
            kd->sc_len = 0;
        }
        finish(kd, req, KDH_OK);
        pump(kd);
        return;
    }
    kd->awaiting_reply = 1;
    kd->reply_due = now_ms(kd) + kd->cfg.reply_timeout_ms;
    arm_timer(kd);
}

/* ---- receiving ------------------------------------------------------------------------------- */

static void reply_failed(kdh_kd_t *kd, kdh_kd_req_t *req, const char *what)
{
    kdh_err_set(&req->err, KDH_ETARGET, "%s: the target answered status 0x%08x", what,
                req->nt_status);
    finish(kd, req, KDH_ETARGET);
}

static void copy_out(kdh_kd_req_t *req, size_t at, const uint8_t *data, size_t len)
{
    if (at > req->out_cap)
        return;
    size_t n = len < req->out_cap - at ? len : req->out_cap - at;
    if (n) /* requests without reply data have no out buffer at all */
        memcpy(req->out + at, data, n);
    req->out_len = at + n;
}

/* The reply was damaged: the target believes it delivered it, so the request goes again. */
static void reply_damaged(kdh_kd_t *kd, kdh_kd_req_t *req, const char *what)
{
    kd->awaiting_reply = 0;
    arm_timer(kd);
    kd->st.damaged_replies++;
    if (req->retries < kd->cfg.reply_retries) {
        req->retries++;
        kd->st.reply_retries++;
        start_head(kd);
        return;
    }
    kdh_err_set(&req->err, KDH_ECORRUPT, "reply to KD request 0x%04x damaged on the line (%s differs from "
                "the request), %u times", req->m.api, what, req->retries + 1);
    finish(kd, req, KDH_ECORRUPT);
    pump(kd);
}

/* A verified read's chunk or context slice: 1 when this copy equals the one held (take it);
 * otherwise it is held and asked again (0), until VERIFY_TRIES copies disagreed (then the read
 * fails). */
static int read_confirmed(kdh_kd_t *kd, kdh_kd_req_t *req, uint32_t status, const uint8_t *data, size_t got)
{
    if (kd->v_have && kd->v_len == got && kd->v_status == status && memcmp(kd->v_buf, data, got) == 0) {
        kd->v_have = 0;
        return 1;
    }
    if (kd->v_have) {
        kd->st.read_mismatches++;
        if (++kd->v_tries >= VERIFY_TRIES) {
            kdh_err_set(&req->err, KDH_ECORRUPT, "%s at 0x%llx: %u copies of %zu bytes disagreed (line noise)",
                        req->op == KDH_KD_OP_READ_VIRTUAL ? "memory read" : "context read",
                        (unsigned long long)(req->address + req->cursor), kd->v_tries + 1, got);
            finish(kd, req, KDH_ECORRUPT);
            pump(kd);
            return 0;
        }
    } else {
        kd->st.verified_reads++;
    }
    if (got)
        memcpy(kd->v_buf, data, got);
    kd->v_len = got;
    kd->v_status = status;
    kd->v_have = 1;
    start_head(kd);
    return 0;
}

/* A context set on a noisy line is read back: the target checks a request only by its byte-sum
 * checksum, so two errors that cancel in it would set other bytes (a PC that sends the thread
 * astray when it resumes) without a word. While the target is stopped that is still harmless:
 * bytes that differ are set again. A read-back the target refuses leaves the set as it was. */
static void set_read_back(kdh_kd_t *kd, kdh_kd_req_t *req, int ok, const uint8_t *data, size_t len)
{
    const uint8_t *got = NULL;
    if (ok && kd->ctx_ex_unsupported && len >= kd_ctx_size(kd))
        got = data + req->address;
    else if (ok && !kd->ctx_ex_unsupported && len >= req->data_len)
        got = data;
    if (req->verify_tries == 0)
        kd->st.verified_sets++;
    if (!got || memcmp(got, req->data, req->data_len) == 0) {
        finish(kd, req, KDH_OK);
        return;
    }
    kd->st.set_mismatches++;
    if (++req->verify_tries >= VERIFY_TRIES) {
        kdh_err_set(&req->err, KDH_ECORRUPT, "context set at offset 0x%x read back other bytes %u times (line noise)",
                    (unsigned)req->address, req->verify_tries);
        finish(kd, req, KDH_ECORRUPT);
        return;
    }
    req->stage = kd->ctx_ex_unsupported || kd->set_ex_unsupported ? 1 : 0; /* set again */
}

static void on_reply(kdh_kd_t *kd, kdh_kd_req_t *req, const kdh_wire_manip_t *m,
                     const uint8_t *data, size_t len)
{
    int ok = m->return_status == KDH_WIRE_STATUS_SUCCESS;
    kd->awaiting_reply = 0;
    arm_timer(kd);
    req->nt_status = m->return_status;

    switch (req->op) {
    case KDH_KD_OP_READ_VIRTUAL: {
        /* A read that stops at an unmapped page fails as a whole but still says how many bytes
         * it copied: keep them. */
        size_t got = m->u.mem.actual_count;
        if (got > req->chunk)
            got = req->chunk;
        if (got > len)
            got = len;
        if (kd->v_active && !read_confirmed(kd, req, m->return_status, data, got))
            return; /* asked again */
        copy_out(req, req->cursor, data, got);
        req->cursor += got;
        req->out_len = req->cursor;
        req->m = *m;
        if (req->cursor == 0 && !ok) {
            reply_failed(kd, req, "memory read");
        } else if (got < req->chunk || req->cursor >= req->out_cap) {
            finish(kd, req, KDH_OK); /* partial reads end at the first short chunk */
        }
        break;
    }
    case KDH_KD_OP_WRITE_VIRTUAL: {
        size_t put = m->u.mem.actual_count;
        if (put > req->chunk)
            put = req->chunk;
        req->cursor += put;
        req->out_len = req->cursor;
        req->m = *m;
        if (req->cursor == 0 && !ok)
            reply_failed(kd, req, "memory write");
        else if (put < req->chunk || req->cursor >= req->data_len)
            finish(kd, req, KDH_OK);
        break;
    }
    case KDH_KD_OP_GET_CONTEXT_EX:
    case KDH_KD_OP_SET_CONTEXT_EX:
        if (req->stage == 4) {
            set_read_back(kd, req, ok, data, len);
        } else if (req->stage == 3) {
            if (ok) {
                kd->ctx_got_serial = kd->stop_serial + 1;
                req->stage = 0; /* set again, now that the slice was read in this stop */
            } else {
                kd->ctx_ex_unsupported = 1;
                kd->st.context_ex_fallbacks++;
                req->stage = 1;
            }
        } else if (req->stage == 0) {
            if (ok) {
                if (req->op == KDH_KD_OP_GET_CONTEXT_EX) {
                    size_t n = m->u.context_ex.bytes_copied;
                    if (kd->v_active && !read_confirmed(kd, req, m->return_status, data, n < len ? n : len))
                        return; /* asked again */
                    copy_out(req, 0, data, n < len ? n : len);
                    if (req->out_len < req->out_cap) {
                        kdh_err_set(&req->err, KDH_ECORRUPT,
                                    "GetContextEx returned %zu of %zu bytes", req->out_len,
                                    req->out_cap);
                        finish(kd, req, KDH_ECORRUPT);
                        break;
                    }
                    kd->ctx_got_serial = kd->stop_serial + 1;
                }
                if (req->op == KDH_KD_OP_SET_CONTEXT_EX && req->verify)
                    req->stage = 4;
                else
                    finish(kd, req, KDH_OK);
            } else if (req->op == KDH_KD_OP_SET_CONTEXT_EX &&
                       kd->ctx_got_serial != kd->stop_serial + 1) {
                req->stage = 3; /* maybe only refused for want of a read in this stop */
            } else {
                /* The target lacks this Ex call: slice full contexts from now on. */
                if (req->op == KDH_KD_OP_GET_CONTEXT_EX)
                    kd->ctx_ex_unsupported = 1;
                else
                    kd->set_ex_unsupported = 1;
                kd->st.context_ex_fallbacks++;
                req->stage = 1;
            }
        } else if (req->stage == 1) {
            if (!ok || len < kd_ctx_size(kd)) {
                reply_failed(kd, req, "GetContext");
                break;
            }
            if (req->op == KDH_KD_OP_GET_CONTEXT_EX && kd->v_active &&
                !read_confirmed(kd, req, m->return_status, data, kd_ctx_size(kd)))
                return; /* asked again */
            memcpy(kd->ctx_cache, data, kd_ctx_size(kd));
            kd->ctx_got_serial = kd->stop_serial + 1;
            kd->ctx_cache_valid = 1;
            kd->ctx_cache_cpu = req->m.processor;
            kd->ctx_cache_serial = kd->stop_serial;
            if (req->op == KDH_KD_OP_GET_CONTEXT_EX)
                serve_slice_from_cache(kd, req);
            else
                req->stage = 2;
        } else {
            if (ok) {
                memcpy(kd->ctx_cache, kd->ex_scratch, kd_ctx_size(kd));
                if (req->verify)
                    req->stage = 4;
                else
                    finish(kd, req, KDH_OK);
            } else {
                reply_failed(kd, req, "SetContext");
            }
        }
        break;
    default:
        req->m = *m;
        copy_out(req, 0, data, len);
        if (ok && (m->api == KDH_WIRE_API_GET_CONTEXT || m->api == KDH_WIRE_API_GET_CONTEXT_EX))
            kd->ctx_got_serial = kd->stop_serial + 1;
        if (ok)
            finish(kd, req, KDH_OK);
        else
            reply_failed(kd, req, "KD request");
        break;
    }
    pump(kd);
}

static void owe(kdh_kd_t *kd, uint16_t type, const uint8_t *buf, size_t len)
{
    memcpy(kd->owed_buf, buf, len);
    kd->owed_len = len;
    kd->owed_type = type;
    kd->owed = 1;
    pump(kd);
}

static void on_debug_io(kdh_kd_t *kd, const uint8_t *p, size_t len)
{
    kdh_wire_debug_io_t io;
    const uint8_t *data;
    size_t dlen;
    if (kdh_wire_debug_io_decode(p, len, &io, &data, &dlen, NULL) != KDH_OK)
        return;
    if (io.api == KDH_WIRE_API_PRINT_STRING) {
        kd->st.prints++;
        size_t n = io.length < dlen ? io.length : dlen;
        if (kd->cfg.on_print)
            kd->cfg.on_print(kd->cfg.ctx, io.processor, (const char *)data, n);
    } else if (io.api == KDH_WIRE_API_GET_STRING) {
        /* An unattended daemon answers every DbgPrompt with an empty line, so the target
         * does not wait for a person. */
        uint8_t out[KDH_WIRE_DEBUG_IO_SIZE];
        io.length_read = 0;
        kdh_wire_debug_io_encode(&io, out);
        owe(kd, KDH_WIRE_TYPE_DEBUG_IO, out, sizeof out);
    }
}

static void on_file_io(kdh_kd_t *kd, const uint8_t *p, size_t len)
{
    kdh_wire_file_io_t io;
    if (kdh_wire_file_io_decode(p, len, &io, NULL, NULL, NULL) != KDH_OK)
        return;
    /* We serve no .kdfiles: decline, or the target retries. */
    io.status = KDH_WIRE_STATUS_NO_SUCH_FILE;
    uint8_t out[KDH_WIRE_FILE_IO_SIZE];
    kdh_wire_file_io_encode(&io, out);
    owe(kd, KDH_WIRE_TYPE_FILE_IO, out, sizeof out);
}

static void on_state_change(kdh_kd_t *kd, const uint8_t *p, size_t len)
{
    kdh_wire_state_change_t sc;
    if (len > sizeof kd->sc_raw ||
        kdh_wire_state_change_decode(p, len, kd->cfg.arch, &sc, NULL) != KDH_OK)
        return;
    if (kd_stop_damage(&sc)) {
        kd->st.damaged_stops++;
        kdh_link_connect(kd->link, 0, NULL);
        return;
    }
    /* A request still waiting belonged to a stop the target has now re-reported. One still
     * waiting for its ACK is taken back from the link: after a RESET the link would send it
     * again, and the target, stopped at the re-reported stop, would act on a request its
     * caller was told had failed. */
    if (kd->head && (kd->awaiting_reply || kd->on_wire)) {
        if (kd->on_wire)
            kdh_link_withdraw(kd->link);
        kd->awaiting_reply = 0;
        arm_timer(kd);
        fail(kd, kd->head, KDH_ECANCELED, "the target reported a new stop during the request");
    }
    kd->resync_armed = 0;
    memcpy(kd->sc_raw, p, len);
    kd->sc_len = len;
    kdh_wire_state_change_decode(kd->sc_raw, kd->sc_len, kd->cfg.arch, &kd->sc, NULL);
    kd->stopped = 1;
    kd->stop_serial++;
    kd->st.state_changes++;
    if (kd->cfg.on_state_change)
        kd->cfg.on_state_change(kd->cfg.ctx, &kd->sc);
    pump(kd);
}

static void on_packet(void *ctx, uint16_t type, uint32_t id, const uint8_t *p, size_t len)
{
    kdh_kd_t *kd = ctx;
    (void)id;
    switch (type) {
    case KDH_WIRE_TYPE_STATE_MANIPULATE: {
        kdh_wire_manip_t m;
        const uint8_t *data;
        size_t dlen;
        if (kdh_wire_manip_decode(p, len, kd->cfg.arch, &m, &data, &dlen, NULL) != KDH_OK)
            return;
        kdh_kd_req_t *req = kd->head;
        uint32_t want = 0;
        if (req && kd->awaiting_reply) {
            want = req->m.api;
            if (req->op == KDH_KD_OP_GET_CONTEXT_EX || req->op == KDH_KD_OP_SET_CONTEXT_EX) {
                if (req->stage == 1)
                    want = KDH_WIRE_API_GET_CONTEXT;
                else if (req->stage == 2)
                    want = KDH_WIRE_API_SET_CONTEXT;
                else if (req->stage == 3)
                    want = KDH_WIRE_API_GET_CONTEXT_EX;
                else if (req->stage == 4)
                    want = kd->ctx_ex_unsupported ? KDH_WIRE_API_GET_CONTEXT : KDH_WIRE_API_GET_CONTEXT_EX;
            }
        }
        if (!req || !kd->awaiting_reply || m.api != want) {
            kd->st.stray_replies++;
            if (!kd->stopped && kd->resync_armed) {
                /* After our RESET a target that was waiting for the ACK of a reply (its last
                 * host went away mid-request) sends that reply again and then sits in its
                 * debugger loop. A second RESET there makes it report its stop again. */
                kd->resync_armed = 0;
                kd->st.stale_reply_resyncs++;
                kdh_link_connect(kd->link, 0, NULL);
            }
            return;
        }
        kd->st.replies++;
        const char *damage = kd_reply_damage(kd, req, &m, dlen);
        if (damage)
            reply_damaged(kd, req, damage);
        else
            on_reply(kd, req, &m, data, dlen);
        return;
    }
    case KDH_WIRE_TYPE_STATE_CHANGE64:
        on_state_change(kd, p, len);
        return;
    case KDH_WIRE_TYPE_DEBUG_IO:
        on_debug_io(kd, p, len);
        return;
    case KDH_WIRE_TYPE_FILE_IO:
        on_file_io(kd, p, len);
        return;
    default:
        return;
    }
}

static void on_link_event(void *ctx, const kdh_link_event_t *ev)
{
    kdh_kd_t *kd = ctx;
    if (kd->cfg.on_link_event)
        kd->cfg.on_link_event(kd->cfg.ctx, ev);
}

static int link_write(void *ctx, const uint8_t *buf, size_t len)
{
    kdh_kd_t *kd = ctx;
    return kd->cfg.link.write(kd->cfg.link_ctx, buf, len);
}

static uint64_t link_now(void *ctx)
{
    kdh_kd_t *kd = ctx;
    return kd->cfg.link.now(kd->cfg.link_ctx);
}

/* ---- lifetime and state ---------------------------------------------------------------------- */

int kdh_kd_new(kdh_kd_t **out, const kdh_kd_cfg_t *cfg, kdh_err_t *err)
{
    *out = NULL;
    if (!cfg->link.write || (!cfg->link.loop && !cfg->link.now))
        return kdh_err_set(err, KDH_EINVAL, "KD session needs a write function and a loop or clock");
    kdh_kd_t *kd = calloc(1, sizeof *kd);
    if (!kd)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for the KD session");
    kd->cfg = *cfg;
    if (!kd->cfg.reply_timeout_ms) {
        /* A second for the target to answer, plus the time the largest reply (4000 bytes,
         * 10 bits a byte) takes on the line; 1.35 s at 115200 baud. */
        unsigned baud = cfg->link.baud ? cfg->link.baud : 115200;
        kd->cfg.reply_timeout_ms = 1000 + (unsigned)(KDH_WIRE_FRAME_MAX * 10ull * 1000 / baud);
    }
    if (!kd->cfg.reply_retries)
        kd->cfg.reply_retries = 3;
    kdh_link_cfg_t lc = cfg->link;
    lc.write = link_write;
    lc.now = cfg->link.now ? link_now : NULL;
    lc.on_packet = on_packet;
    lc.on_event = on_link_event;
    lc.ctx = kd;
    int rc = kdh_link_new(&kd->link, &lc, err);
    if (rc != KDH_OK) {
        free(kd);
        return rc;
    }
    if (cfg->link.loop) {
        uv_timer_init(cfg->link.loop, &kd->timer);
        kd->timer.data = kd;
        kd->has_timer = 1;
    }
    *out = kd;
    return KDH_OK;
}

static void free_timer_cb(uv_handle_t *h)
{
    free(h->data);
}

void kdh_kd_free(kdh_kd_t *kd)
{
    if (!kd)
        return;
    fail_all(kd, KDH_ECANCELED, "the KD session was closed");
    kdh_link_free(kd->link);
    if (kd->has_timer) {
        uv_timer_stop(&kd->timer);
        uv_close((uv_handle_t *)&kd->timer, free_timer_cb);
    } else {
        free(kd);
    }
}

kdh_link_t *kdh_kd_link(kdh_kd_t *kd) { return kd->link; }

int kdh_kd_connect(kdh_kd_t *kd, int breakin, kdh_err_t *err)
{
    kd->stopped = 0;
    kd->resync_armed = 1;
    return kdh_link_connect(kd->link, breakin, err);
}

int kdh_kd_break(kdh_kd_t *kd, kdh_err_t *err) { return kdh_link_break(kd->link, err); }

void kdh_kd_feed(kdh_kd_t *kd, const uint8_t *buf, size_t len) { kdh_link_feed(kd->link, buf, len); }

void kdh_kd_set_arch(kdh_kd_t *kd, kdh_wire_arch_t arch)
{
    kd->cfg.arch = arch;
    if (kd->sc_len)
        kdh_wire_state_change_decode(kd->sc_raw, kd->sc_len, arch, &kd->sc, NULL);
}

kdh_wire_arch_t kdh_kd_arch(const kdh_kd_t *kd) { return kd->cfg.arch; }
int kdh_kd_stopped(const kdh_kd_t *kd) { return kd->stopped; }
uint64_t kdh_kd_stop_serial(const kdh_kd_t *kd) { return kd->stop_serial; }
const kdh_wire_state_change_t *kdh_kd_state(const kdh_kd_t *kd) { return kd->stopped ? &kd->sc : NULL; }
const kdh_kd_stats_t *kdh_kd_stats(const kdh_kd_t *kd) { return &kd->st; }

void kdh_kd_correct_pc(kdh_kd_t *kd, uint64_t pc)
{
    if (!kd->stopped || kd->sc.program_counter == pc)
        return;
    kd->sc.program_counter = pc;
    kd->st.corrected_pcs++;
}

void kdh_kd_correct_thread(kdh_kd_t *kd, uint64_t thread)
{
    if (!kd->stopped || kd->sc.thread == thread)
        return;
    kd->sc.thread = thread;
    kd->st.corrected_threads++;
}
int kdh_kd_context_ex_unsupported(const kdh_kd_t *kd) { return kd->ctx_ex_unsupported; }
size_t kdh_kd_context_size(const kdh_kd_t *kd) { return kd_ctx_size(kd); }

/* ---- request helpers ------------------------------------------------------------------------- */

void kd_enqueue(kdh_kd_t *kd, kdh_kd_req_t *req)
{
    req->status = KDH_KD_PENDING;
    req->next = NULL;
    req->cursor = 0;
    req->out_len = 0;
    req->stage = 0;
    req->retries = 0;
    req->verify_tries = 0;
    req->verify = req->op == KDH_KD_OP_SET_CONTEXT_EX && kd_line_noisy(kd);
    req->nt_status = 0;
    kdh_err_clear(&req->err);
    if (kd->tail)
        kd->tail->next = req;
    else
        kd->head = req;
    kd->tail = req;
    pump(kd);
}
