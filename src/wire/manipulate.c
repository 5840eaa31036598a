/* DBGKD_MANIPULATE_STATE64: the 0x38-byte header of every host request and target reply, with
 * the per-API union at 0x10 written and read at explicit offsets (kd-protocol.md 3, 3.1, 3.3). */
#include <string.h>

#include "kdh/wire.h"

/* Offsets inside the packet payload (the union starts at 0x10). */
#define U 0x10

static void version_put(const kdh_wire_get_version_t *v, uint8_t *p)
{
    kdh_put_u16(p + 0x00, v->major_version);
    kdh_put_u16(p + 0x02, v->minor_version);
    p[0x04] = v->protocol_version;
    p[0x05] = v->kd_secondary_version;
    kdh_put_u16(p + 0x06, v->flags);
    kdh_put_u16(p + 0x08, v->machine_type);
    p[0x0A] = v->max_packet_type;
    p[0x0B] = v->max_state_change;
    p[0x0C] = v->max_manipulate;
    p[0x0D] = v->simulation;
    kdh_put_u64(p + 0x10, v->kern_base);
    kdh_put_u64(p + 0x18, v->ps_loaded_module_list);
    kdh_put_u64(p + 0x20, v->debugger_data_list);
}

static void version_get(kdh_wire_get_version_t *v, const uint8_t *p)
{
    v->major_version = kdh_get_u16(p + 0x00);
    v->minor_version = kdh_get_u16(p + 0x02);
    v->protocol_version = p[0x04];
    v->kd_secondary_version = p[0x05];
    v->flags = kdh_get_u16(p + 0x06);
    v->machine_type = kdh_get_u16(p + 0x08);
    v->max_packet_type = p[0x0A];
    v->max_state_change = p[0x0B];
    v->max_manipulate = p[0x0C];
    v->simulation = p[0x0D];
    v->kern_base = kdh_get_u64(p + 0x10);
    v->ps_loaded_module_list = kdh_get_u64(p + 0x18);
    v->debugger_data_list = kdh_get_u64(p + 0x20);
}

/* Returns 1 when the API has a typed layout here (else raw_u carries the union). */
static int is_mem_api(uint32_t api)
{
    return api == KDH_WIRE_API_READ_VIRTUAL_MEMORY || api == KDH_WIRE_API_WRITE_VIRTUAL_MEMORY ||
           api == KDH_WIRE_API_READ_CONTROL_SPACE || api == KDH_WIRE_API_WRITE_CONTROL_SPACE ||
           api == KDH_WIRE_API_READ_PHYSICAL_MEMORY || api == KDH_WIRE_API_WRITE_PHYSICAL_MEMORY;
}

void kdh_wire_manip_encode(const kdh_wire_manip_t *m, kdh_wire_arch_t arch,
                           uint8_t out[KDH_WIRE_MANIP_SIZE])
{
    memset(out, 0, KDH_WIRE_MANIP_SIZE);
    kdh_put_u32(out + 0x00, m->api);
    kdh_put_u16(out + 0x04, m->processor_level);
    kdh_put_u16(out + 0x06, m->processor);
    kdh_put_u32(out + 0x08, m->return_status);
    uint8_t *u = out + U;
    if (is_mem_api(m->api)) {
        kdh_put_u64(u + 0x00, m->u.mem.address);
        kdh_put_u32(u + 0x08, m->u.mem.transfer_count);
        kdh_put_u32(u + 0x0C, m->u.mem.actual_count);
        return;
    }
    switch (m->api) {
    case KDH_WIRE_API_GET_CONTEXT:
        kdh_put_u32(u, m->u.get_context.unused);
        break;
    case KDH_WIRE_API_SET_CONTEXT:
        kdh_put_u32(u, m->u.set_context.context_flags);
        break;
    case KDH_WIRE_API_WRITE_BREAKPOINT:
        kdh_put_u64(u + 0x00, m->u.write_bp.address);
        kdh_put_u32(u + 0x08, m->u.write_bp.handle);
        break;
    case KDH_WIRE_API_RESTORE_BREAKPOINT:
        kdh_put_u32(u, m->u.restore_bp.handle);
        break;
    case KDH_WIRE_API_CONTINUE:
        kdh_put_u32(u, m->u.cont.status);
        break;
    case KDH_WIRE_API_CONTINUE2:
        kdh_put_u32(u + 0x00, m->u.cont2.status);
        kdh_put_u32(u + 0x04, m->u.cont2.trace_flag);
        if (arch == KDH_WIRE_ARCH_X86) {
            /* x86 DBGKD_CONTROL_SET: TraceFlag, Dr7, CurrentSymbolStart, End, all u32 */
            kdh_put_u32(u + 0x08, (uint32_t)m->u.cont2.dr7);
            kdh_put_u32(u + 0x0C, (uint32_t)m->u.cont2.symbol_start);
            kdh_put_u32(u + 0x10, (uint32_t)m->u.cont2.symbol_end);
        } else {
            /* AMD64 control set (pack 4): TraceFlag u32, then u64 Dr7, Start, End */
            kdh_put_u64(u + 0x08, m->u.cont2.dr7);
            kdh_put_u64(u + 0x10, m->u.cont2.symbol_start);
            kdh_put_u64(u + 0x18, m->u.cont2.symbol_end);
        }
        break;
    case KDH_WIRE_API_GET_VERSION:
        version_put(&m->u.version, u);
        break;
    case KDH_WIRE_API_QUERY_MEMORY:
        kdh_put_u64(u + 0x00, m->u.query_memory.address);
        kdh_put_u64(u + 0x08, m->u.query_memory.reserved);
        kdh_put_u32(u + 0x10, m->u.query_memory.address_space);
        kdh_put_u32(u + 0x14, m->u.query_memory.flags);
        break;
    case KDH_WIRE_API_GET_CONTEXT_EX:
    case KDH_WIRE_API_SET_CONTEXT_EX:
        kdh_put_u32(u + 0x00, m->u.context_ex.offset);
        kdh_put_u32(u + 0x04, m->u.context_ex.byte_count);
        kdh_put_u32(u + 0x08, m->u.context_ex.bytes_copied);
        break;
    case KDH_WIRE_API_SWITCH_PROCESSOR:
    case KDH_WIRE_API_CLEAR_ALL_INTERNAL_BREAKPOINTS:
    case KDH_WIRE_API_REBOOT:
    case KDH_WIRE_API_CAUSE_BUGCHECK:
        break; /* no union fields */
    default:
        memcpy(u, m->raw_u, sizeof(m->raw_u));
        break;
    }
}

int kdh_wire_manip_decode(const uint8_t *buf, size_t len, kdh_wire_arch_t arch,
                          kdh_wire_manip_t *m, const uint8_t **data, size_t *data_len,
                          kdh_err_t *err)
{
    if (!buf || len < KDH_WIRE_MANIP_SIZE)
        return kdh_err_set(err, KDH_ECORRUPT,
                           "manipulate packet of %zu bytes is shorter than its 0x38-byte header",
                           buf ? len : 0);
    memset(m, 0, sizeof(*m));
    m->api = kdh_get_u32(buf + 0x00);
    m->processor_level = kdh_get_u16(buf + 0x04);
    m->processor = kdh_get_u16(buf + 0x06);
    m->return_status = kdh_get_u32(buf + 0x08);
    const uint8_t *u = buf + U;
    memcpy(m->raw_u, u, sizeof(m->raw_u));
    if (is_mem_api(m->api)) {
        m->u.mem.address = kdh_get_u64(u + 0x00);
        m->u.mem.transfer_count = kdh_get_u32(u + 0x08);
        m->u.mem.actual_count = kdh_get_u32(u + 0x0C);
    } else {
        switch (m->api) {
        case KDH_WIRE_API_GET_CONTEXT:
            m->u.get_context.unused = kdh_get_u32(u);
            break;
        case KDH_WIRE_API_SET_CONTEXT:
            m->u.set_context.context_flags = kdh_get_u32(u);
            break;
        case KDH_WIRE_API_WRITE_BREAKPOINT:
            m->u.write_bp.address = kdh_get_u64(u + 0x00);
            m->u.write_bp.handle = kdh_get_u32(u + 0x08);
            break;
        case KDH_WIRE_API_RESTORE_BREAKPOINT:
            m->u.restore_bp.handle = kdh_get_u32(u);
            break;
        case KDH_WIRE_API_CONTINUE:
            m->u.cont.status = kdh_get_u32(u);
            break;
        case KDH_WIRE_API_CONTINUE2:
            m->u.cont2.status = kdh_get_u32(u + 0x00);
            m->u.cont2.trace_flag = kdh_get_u32(u + 0x04);
            if (arch == KDH_WIRE_ARCH_X86) {
                m->u.cont2.dr7 = kdh_get_u32(u + 0x08);
                m->u.cont2.symbol_start = kdh_get_u32(u + 0x0C);
                m->u.cont2.symbol_end = kdh_get_u32(u + 0x10);
            } else {
                m->u.cont2.dr7 = kdh_get_u64(u + 0x08);
                m->u.cont2.symbol_start = kdh_get_u64(u + 0x10);
                m->u.cont2.symbol_end = kdh_get_u64(u + 0x18);
            }
            break;
        case KDH_WIRE_API_GET_VERSION:
            version_get(&m->u.version, u);
            break;
        case KDH_WIRE_API_QUERY_MEMORY:
            m->u.query_memory.address = kdh_get_u64(u + 0x00);
            m->u.query_memory.reserved = kdh_get_u64(u + 0x08);
            m->u.query_memory.address_space = kdh_get_u32(u + 0x10);
            m->u.query_memory.flags = kdh_get_u32(u + 0x14);
            break;
        case KDH_WIRE_API_GET_CONTEXT_EX:
        case KDH_WIRE_API_SET_CONTEXT_EX:
            m->u.context_ex.offset = kdh_get_u32(u + 0x00);
            m->u.context_ex.byte_count = kdh_get_u32(u + 0x04);
            m->u.context_ex.bytes_copied = kdh_get_u32(u + 0x08);
            break;
        default:
            break;
        }
    }
    if (data)
        *data = len > KDH_WIRE_MANIP_SIZE ? buf + KDH_WIRE_MANIP_SIZE : NULL;
    if (data_len)
        *data_len = len - KDH_WIRE_MANIP_SIZE;
    return KDH_OK;
}
