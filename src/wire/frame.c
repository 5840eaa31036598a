/* Packet encoding for the KD serial protocol: the 16-byte header, the byte-sum checksum and the
 * 0xAA trailer of data packets, and the header-only control packets (kd-protocol.md 1.2-1.5). */
#include <string.h>

#include "kdh/wire.h"

uint32_t kdh_wire_checksum(const uint8_t *p, size_t n)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

static void put_header(uint8_t *out, uint32_t leader, uint16_t type, uint16_t count, uint32_t id,
                       uint32_t sum)
{
    kdh_put_u32(out, leader);
    kdh_put_u16(out + 4, type);
    kdh_put_u16(out + 6, count);
    kdh_put_u32(out + 8, id);
    kdh_put_u32(out + 12, sum);
}

int kdh_wire_encode_data2(uint8_t *out, size_t cap, uint16_t type, uint32_t id,
                          const uint8_t *part1, size_t len1, const uint8_t *part2, size_t len2)
{
    if ((len1 && !part1) || (len2 && !part2))
        return KDH_EINVAL;
    if (len1 > KDH_WIRE_PACKET_MAX || len2 > KDH_WIRE_PACKET_MAX - len1)
        return KDH_ERANGE;
    size_t total = KDH_WIRE_HEADER_SIZE + len1 + len2 + 1;
    if (!out || cap < total)
        return KDH_ERANGE;
    uint32_t sum = (len1 ? kdh_wire_checksum(part1, len1) : 0) +
                   (len2 ? kdh_wire_checksum(part2, len2) : 0);
    put_header(out, KDH_WIRE_PACKET_LEADER, type, (uint16_t)(len1 + len2), id, sum);
    /* memmove: callers may build the payload in place right after the header. */
    if (len1)
        memmove(out + KDH_WIRE_HEADER_SIZE, part1, len1);
    if (len2)
        memmove(out + KDH_WIRE_HEADER_SIZE + len1, part2, len2);
    out[total - 1] = KDH_WIRE_TRAILER;
    return (int)total;
}

int kdh_wire_encode_control(uint8_t *out, size_t cap, uint16_t type, uint32_t id)
{
    if (!out || cap < KDH_WIRE_HEADER_SIZE)
        return KDH_ERANGE;
    put_header(out, KDH_WIRE_CONTROL_LEADER, type, 0, id, 0);
    return (int)KDH_WIRE_HEADER_SIZE;
}

const char *kdh_wire_type_name(uint16_t type)
{
    static const char *const names[] = {
        "UNUSED", "STATE_CHANGE32", "STATE_MANIPULATE", "DEBUG_IO", "ACK", "RESEND", "RESET",
        "STATE_CHANGE64", "POLL_BREAKIN", "TRACE_IO", "CONTROL_REQUEST", "FILE_IO"};
    return type < KDH_ARRAY_LEN(names) ? names[type] : "UNKNOWN";
}

const char *kdh_wire_event_name(kdh_wire_event_kind_t kind)
{
    switch (kind) {
    case KDH_WIRE_EV_NONE: return "none";
    case KDH_WIRE_EV_PACKET: return "packet";
    case KDH_WIRE_EV_GARBAGE: return "garbage";
    case KDH_WIRE_EV_BREAKIN: return "breakin";
    case KDH_WIRE_EV_BAD_CHECKSUM: return "bad checksum";
    case KDH_WIRE_EV_MISSING_TRAILER: return "missing trailer";
    case KDH_WIRE_EV_OVERSIZE: return "oversize";
    case KDH_WIRE_EV_TRUNCATED: return "truncated";
    }
    return "unknown";
}
