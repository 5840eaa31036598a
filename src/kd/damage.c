/* damage.c: what the byte-sum checksum cannot catch. Two byte errors that cancel pass it, so
 * a reply or a state change can arrive intact by the checksum and still be damaged: these checks
 * find the ones whose fields contradict the request or cannot be, and measure how noisy the
 * line is (on a noisy line the session verifies reads and context sets, see kd.c). */
#include "kd_int.h"

/* The KD checksum is a byte sum: two errors that cancel pass it, and in a read's data nothing
 * else can tell (a damaged return address cuts a stack short). On a line that damages one frame
 * in ten or more (byte errors around 1e-3) that happens about once in several hundred hits, so
 * there every memory read chunk and context read is asked twice and taken only when both
 * copies agree (a register such as RSP damaged so sends the stack walk astray); below
 * that, one in tens of thousands of hits or fewer, reads go once. */
int kd_line_noisy(kdh_kd_t *kd)
{
    const kdh_link_stats_t *ls = kdh_link_stats(kd->link);
    uint64_t damaged = ls->checksum_errors + ls->trailer_errors + ls->oversize_errors + ls->truncated;
    uint64_t bad = damaged + ls->bad_ids + ls->bad_types;
    uint64_t frames = ls->data_in + damaged;
    if (frames - kd->noise_frames >= NOISE_WINDOW) {
        kd->noise_pct = (unsigned)(100 * (bad - kd->noise_bad) / (frames - kd->noise_frames));
        kd->noise_bad = bad;
        kd->noise_frames = frames;
    }
    return kd->noise_pct >= NOISY_PCT;
}

/* A reply echoes its request's header with ReturnStatus and the out fields updated, and a read's
 * data is the bytes it says it read (kd-protocol.md 3, 3.1). One that contradicts the request
 * was damaged on the line in a way the byte-sum checksum cannot see (two errors that cancel):
 * its other fields and data cannot be trusted either. Returns what is wrong, or NULL. */
const char *kd_reply_damage(const kdh_kd_t *kd, const kdh_kd_req_t *req, const kdh_wire_manip_t *m,
                            size_t dlen)
{
    int ok = m->return_status == KDH_WIRE_STATUS_SUCCESS;
    if (m->processor != req->m.processor)
        return "processor";
    uint64_t addr = 0;
    size_t count = 0;
    switch (req->op) {
    case KDH_KD_OP_READ_VIRTUAL:
    case KDH_KD_OP_WRITE_VIRTUAL:
        addr = req->address + req->cursor;
        count = req->chunk;
        break;
    case KDH_KD_OP_GET_CONTEXT_EX:
    case KDH_KD_OP_SET_CONTEXT_EX:
        if (req->stage == 1 || (req->stage == 4 && kd->ctx_ex_unsupported))
            return ok && dlen < kd_ctx_size(kd) ? "context length" : NULL;
        if (req->stage == 2)
            return NULL;
        if (m->u.context_ex.offset != (uint32_t)req->address)
            return "context offset";
        count = req->op == KDH_KD_OP_GET_CONTEXT_EX ? req->out_cap : req->data_len;
        if (m->u.context_ex.byte_count != count)
            return "context byte count";
        if (m->u.context_ex.bytes_copied > count)
            return "bytes copied";
        if (req->op == KDH_KD_OP_GET_CONTEXT_EX || req->stage >= 3)
            return ok && dlen != m->u.context_ex.bytes_copied ? "context data length" : NULL;
        return NULL;
    default:
        switch (req->m.api) {
        case KDH_WIRE_API_READ_CONTROL_SPACE:
            addr = req->m.u.mem.address;
            count = req->m.u.mem.transfer_count;
            break;
        case KDH_WIRE_API_WRITE_BREAKPOINT:
            return m->u.write_bp.address != req->m.u.write_bp.address ? "breakpoint address" : NULL;
        case KDH_WIRE_API_GET_VERSION:
            return ok && m->u.version.machine_type != KDH_WIRE_MACHINE_I386 &&
                           m->u.version.machine_type != KDH_WIRE_MACHINE_AMD64
                       ? "machine type"
                       : NULL;
        case KDH_WIRE_API_GET_CONTEXT:
            return ok && dlen < kd_ctx_size(kd) ? "context length" : NULL;
        default:
            return NULL;
        }
        break;
    }
    /* a memory transfer */
    if (m->u.mem.address != addr)
        return "address";
    if (m->u.mem.transfer_count != count)
        return "transfer count";
    if (m->u.mem.actual_count > count)
        return "actual count";
    int reads = req->op == KDH_KD_OP_READ_VIRTUAL || req->m.api == KDH_WIRE_API_READ_CONTROL_SPACE;
    if (reads && ok && dlen != m->u.mem.actual_count)
        return "data length";
    return NULL;
}

/* A state change whose fields cannot be (a NewState outside Exception..CommandString, a current
 * processor outside NumberProcessors, kd-protocol.md 2) passed the byte-sum checksum with two
 * errors that cancel. It was acknowledged already, so the target will not send it again by
 * itself: a RESET makes it report its stop once more. Returns what is wrong, or NULL. */
const char *kd_stop_damage(const kdh_wire_state_change_t *sc)
{
    uint32_t st = sc->new_state & ~KDH_WIRE_STATE_ALTERNATE;
    if (st < KDH_WIRE_STATE_EXCEPTION || st > KDH_WIRE_STATE_COMMAND_STRING)
        return "state";
    if (sc->number_processors == 0 || sc->processor >= sc->number_processors)
        return "processor";
    return NULL;
}

