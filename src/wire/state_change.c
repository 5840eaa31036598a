/* DBGKD_ANY_WAIT_STATE_CHANGE: the 0xF0-byte report a target sends when it stops (exception,
 * module load/unload, command string), with the AMD64 and x86 control-report layouts at 0xC0
 * (kd-protocol.md 2). Offsets are explicit: the x86 C struct differs under SysV alignment. */
#include <string.h>

#include "kdh/wire.h"

static void report_put(const kdh_wire_control_report_t *r, kdh_wire_arch_t arch, uint8_t *p)
{
    if (arch == KDH_WIRE_ARCH_X86) {
        kdh_put_u32(p + 0xC0, (uint32_t)r->dr6);
        kdh_put_u32(p + 0xC4, (uint32_t)r->dr7);
        kdh_put_u16(p + 0xC8, r->instruction_count);
        kdh_put_u16(p + 0xCA, r->report_flags);
        memcpy(p + 0xCC, r->instruction_stream, KDH_WIRE_MAXSTREAM);
        kdh_put_u16(p + 0xDC, r->seg_cs);
        kdh_put_u16(p + 0xDE, r->seg_ds);
        kdh_put_u16(p + 0xE0, r->seg_es);
        kdh_put_u16(p + 0xE2, r->seg_fs);
        kdh_put_u32(p + 0xE4, r->eflags);
    } else {
        kdh_put_u64(p + 0xC0, r->dr6);
        kdh_put_u64(p + 0xC8, r->dr7);
        kdh_put_u32(p + 0xD0, r->eflags);
        kdh_put_u16(p + 0xD4, r->instruction_count);
        kdh_put_u16(p + 0xD6, r->report_flags);
        memcpy(p + 0xD8, r->instruction_stream, KDH_WIRE_MAXSTREAM);
        kdh_put_u16(p + 0xE8, r->seg_cs);
        kdh_put_u16(p + 0xEA, r->seg_ds);
        kdh_put_u16(p + 0xEC, r->seg_es);
        kdh_put_u16(p + 0xEE, r->seg_fs);
    }
}

static void report_get(kdh_wire_control_report_t *r, kdh_wire_arch_t arch, const uint8_t *p)
{
    if (arch == KDH_WIRE_ARCH_X86) {
        r->dr6 = kdh_get_u32(p + 0xC0);
        r->dr7 = kdh_get_u32(p + 0xC4);
        r->instruction_count = kdh_get_u16(p + 0xC8);
        r->report_flags = kdh_get_u16(p + 0xCA);
        memcpy(r->instruction_stream, p + 0xCC, KDH_WIRE_MAXSTREAM);
        r->seg_cs = kdh_get_u16(p + 0xDC);
        r->seg_ds = kdh_get_u16(p + 0xDE);
        r->seg_es = kdh_get_u16(p + 0xE0);
        r->seg_fs = kdh_get_u16(p + 0xE2);
        r->eflags = kdh_get_u32(p + 0xE4);
    } else {
        r->dr6 = kdh_get_u64(p + 0xC0);
        r->dr7 = kdh_get_u64(p + 0xC8);
        r->eflags = kdh_get_u32(p + 0xD0);
        r->instruction_count = kdh_get_u16(p + 0xD4);
        r->report_flags = kdh_get_u16(p + 0xD6);
        memcpy(r->instruction_stream, p + 0xD8, KDH_WIRE_MAXSTREAM);
        r->seg_cs = kdh_get_u16(p + 0xE8);
        r->seg_ds = kdh_get_u16(p + 0xEA);
        r->seg_es = kdh_get_u16(p + 0xEC);
        r->seg_fs = kdh_get_u16(p + 0xEE);
    }
    /* The stream holds at most 16 bytes whatever the target claims. */
    if (r->instruction_count > KDH_WIRE_MAXSTREAM)
        r->instruction_count = KDH_WIRE_MAXSTREAM;
}

void kdh_wire_state_change_encode(const kdh_wire_state_change_t *sc, kdh_wire_arch_t arch,
                                  uint8_t out[KDH_WIRE_STATE_CHANGE_SIZE])
{
    memset(out, 0, KDH_WIRE_STATE_CHANGE_SIZE);
    kdh_put_u32(out + 0x00, sc->new_state);
    kdh_put_u16(out + 0x04, sc->processor_level);
    kdh_put_u16(out + 0x06, sc->processor);
    kdh_put_u32(out + 0x08, sc->number_processors);
    kdh_put_u64(out + 0x10, sc->thread);
    kdh_put_u64(out + 0x18, sc->program_counter);
    switch (sc->new_state & ~KDH_WIRE_STATE_ALTERNATE) {
    case KDH_WIRE_STATE_EXCEPTION:
        kdh_put_u32(out + 0x20, sc->u.exception.code);
        kdh_put_u32(out + 0x24, sc->u.exception.flags);
        kdh_put_u64(out + 0x28, sc->u.exception.record);
        kdh_put_u64(out + 0x30, sc->u.exception.address);
        kdh_put_u32(out + 0x38, sc->u.exception.number_parameters);
        for (int i = 0; i < 15; i++)
            kdh_put_u64(out + 0x40 + 8 * i, sc->u.exception.information[i]);
        kdh_put_u32(out + 0xB8, sc->u.exception.first_chance);
        break;
    case KDH_WIRE_STATE_LOAD_SYMBOLS:
        kdh_put_u32(out + 0x20, sc->u.load_symbols.path_name_length);
        kdh_put_u64(out + 0x28, sc->u.load_symbols.base_of_dll);
        kdh_put_u64(out + 0x30, sc->u.load_symbols.process_id);
        kdh_put_u32(out + 0x38, sc->u.load_symbols.checksum);
        kdh_put_u32(out + 0x3C, sc->u.load_symbols.size_of_image);
        out[0x40] = sc->u.load_symbols.unload_symbols;
        break;
    case KDH_WIRE_STATE_COMMAND_STRING:
        kdh_put_u32(out + 0x20, sc->u.command_string.flags);
        break;
    default:
        break;
    }
    report_put(&sc->report, arch, out);
}

int kdh_wire_state_change_decode(const uint8_t *buf, size_t len, kdh_wire_arch_t arch,
                                 kdh_wire_state_change_t *sc, kdh_err_t *err)
{
    if (!buf || len < KDH_WIRE_STATE_CHANGE_SIZE)
        return kdh_err_set(err, KDH_ECORRUPT,
                           "state change of %zu bytes is shorter than its 0xF0-byte header",
                           buf ? len : 0);
    memset(sc, 0, sizeof(*sc));
    sc->new_state = kdh_get_u32(buf + 0x00);
    sc->processor_level = kdh_get_u16(buf + 0x04);
    sc->processor = kdh_get_u16(buf + 0x06);
    sc->number_processors = kdh_get_u32(buf + 0x08);
    sc->thread = kdh_get_u64(buf + 0x10);
    sc->program_counter = kdh_get_u64(buf + 0x18);
    sc->extra_len = len - KDH_WIRE_STATE_CHANGE_SIZE;
    sc->extra = sc->extra_len ? buf + KDH_WIRE_STATE_CHANGE_SIZE : NULL;
    switch (sc->new_state & ~KDH_WIRE_STATE_ALTERNATE) {
    case KDH_WIRE_STATE_EXCEPTION:
        sc->u.exception.code = kdh_get_u32(buf + 0x20);
        sc->u.exception.flags = kdh_get_u32(buf + 0x24);
        sc->u.exception.record = kdh_get_u64(buf + 0x28);
        sc->u.exception.address = kdh_get_u64(buf + 0x30);
        sc->u.exception.number_parameters = kdh_get_u32(buf + 0x38);
        for (int i = 0; i < 15; i++)
            sc->u.exception.information[i] = kdh_get_u64(buf + 0x40 + 8 * i);
        sc->u.exception.first_chance = kdh_get_u32(buf + 0xB8);
        break;
    case KDH_WIRE_STATE_LOAD_SYMBOLS: {
        uint32_t plen = kdh_get_u32(buf + 0x20);
        sc->u.load_symbols.path_name_length = plen;
        sc->u.load_symbols.base_of_dll = kdh_get_u64(buf + 0x28);
        sc->u.load_symbols.process_id = kdh_get_u64(buf + 0x30);
        sc->u.load_symbols.checksum = kdh_get_u32(buf + 0x38);
        sc->u.load_symbols.size_of_image = kdh_get_u32(buf + 0x3C);
        sc->u.load_symbols.unload_symbols = buf[0x40];
        /* The path is the last PathNameLength bytes: older layouts put more before it. */
        if (plen > sc->extra_len)
            return kdh_err_set(err, KDH_ECORRUPT,
                               "load-symbols path of %u bytes exceeds the %zu bytes sent", plen,
                               sc->extra_len);
        if (plen) {
            sc->path = buf + len - plen;
            sc->path_len = plen;
        }
        break;
    }
    case KDH_WIRE_STATE_COMMAND_STRING:
        sc->u.command_string.flags = kdh_get_u32(buf + 0x20);
        break;
    default:
        break;
    }
    report_get(&sc->report, arch, buf);
    return KDH_OK;
}
