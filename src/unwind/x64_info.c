/* x64_info.c: decodes one UNWIND_INFO (header, UNWIND_CODE slots, chained parent entry) into
 * a flat list of operations with their operands already scaled, so the unwinder proper never
 * touches raw slots and every malformed encoding is rejected in one place. */
#include "internal.h"

#include <stddef.h>
#include <string.h>

/* Slots an operation occupies, including itself; 0 for an encoding that is invalid. */
static uint32_t op_slots(uint8_t op, uint8_t info, uint8_t version)
{
    switch (op) {
    case KDH_UWOP_PUSH_NONVOL:
    case KDH_UWOP_ALLOC_SMALL:
    case KDH_UWOP_SET_FPREG:
        return 1;
    case KDH_UWOP_ALLOC_LARGE:
        return info == 0 ? 2 : info == 1 ? 3 : 0;
    case KDH_UWOP_SAVE_NONVOL:
    case KDH_UWOP_SAVE_XMM128:
        return 2;
    case KDH_UWOP_SAVE_NONVOL_FAR:
    case KDH_UWOP_SAVE_XMM128_FAR:
        return 3;
    case KDH_UWOP_EPILOG:
        /* Version 2 only. Each EPILOG descriptor is one slot: the first gives the size and
         * flags, the next ones an offset each (an odd count is padded with offset 0). */
        return version >= 2 ? 1 : 0;
    case KDH_UWOP_PUSH_MACHFRAME:
        return info <= 1 ? 1 : 0;
    default: /* SPARE (7), SET_FPREG_LARGE (11, CoreCLR on Unix only) and beyond */
        return 0;
    }
}

int kdh_unwind_x64_decode(const uint8_t *buf, uint32_t len, kdh_unwind_x64_info_t *out,
                          uint32_t *need, kdh_err_t *err)
{
    *need = 4;
    if (len < 4)
        return KDH_ENOTCACHED;
    memset(out, 0, offsetof(kdh_unwind_x64_info_t, ops));
    out->version = buf[0] & 7;
    out->flags = buf[0] >> 3;
    out->prolog_size = buf[1];
    out->count_of_codes = buf[2];
    out->frame_reg = buf[3] & 15;
    out->frame_offset = buf[3] >> 4;
    out->n_ops = 0;
    if (out->version != 1 && out->version != 2)
        return kdh_err_set(err, KDH_ECORRUPT, "UNWIND_INFO version %u is not 1 or 2: bad .xdata",
                           out->version);
    uint32_t slots = out->count_of_codes;
    uint32_t size = 4 + 2 * ((slots + 1) & ~1u);
    if (out->flags & 4)
        size += 12;
    out->size = size;
    *need = size;
    if (len < size)
        return KDH_ENOTCACHED;

    const uint8_t *codes = buf + 4;
    for (uint32_t i = 0; i < slots;) {
        uint8_t off = codes[2 * i], op = codes[2 * i + 1] & 15, info = codes[2 * i + 1] >> 4;
        uint32_t n = op_slots(op, info, out->version);
        if (n == 0)
            return kdh_err_set(err, KDH_ECORRUPT,
                               "invalid unwind code (op %u info %u) at slot %u: bad .xdata",
                               op, info, i);
        if (i + n > slots)
            return kdh_err_set(err, KDH_ECORRUPT,
                               "unwind code op %u at slot %u runs past CountOfCodes %u", op, i,
                               slots);
        const uint8_t *x = codes + 2 * (i + 1);
        kdh_unwind_op_t *o = &out->ops[out->n_ops++];
        o->code_offset = off;
        o->op = op;
        o->info = info;
        switch (op) {
        case KDH_UWOP_ALLOC_LARGE:
            o->value = info == 0 ? (uint32_t)kdh_get_u16(x) * 8 : kdh_get_u32(x);
            break;
        case KDH_UWOP_ALLOC_SMALL:
            o->value = (uint32_t)info * 8 + 8;
            break;
        case KDH_UWOP_SAVE_NONVOL:
            o->value = (uint32_t)kdh_get_u16(x) * 8;
            break;
        case KDH_UWOP_SAVE_XMM128:
            o->value = (uint32_t)kdh_get_u16(x) * 16;
            break;
        case KDH_UWOP_SAVE_NONVOL_FAR:
        case KDH_UWOP_SAVE_XMM128_FAR:
            o->value = kdh_get_u32(x); /* unscaled (cpp-docs; ReactOS scales it wrongly) */
            break;
        case KDH_UWOP_EPILOG:
            o->value = off + 256u * info;
            break;
        case KDH_UWOP_PUSH_MACHFRAME:
            o->value = info;
            break;
        default:
            o->value = 0;
            break;
        }
        i += n;
    }
    if (out->flags & 4) {
        const uint8_t *c = buf + size - 12;
        out->chain_begin = kdh_get_u32(c);
        out->chain_end = kdh_get_u32(c + 4);
        out->chain_info = kdh_get_u32(c + 8);
    }
    return KDH_OK;
}
