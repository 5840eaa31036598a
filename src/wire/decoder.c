/* Incremental KD frame decoder: hunts leaders, collects one frame at a time, and reports every
 * line problem as a typed event, resynchronising after each. Every decision depends only on the
 * byte sequence, never on where the caller's chunks begin or end (tests check this). */
#include <string.h>

#include "kdh/wire.h"

enum { ST_HUNT = 0, ST_HEADER, ST_BODY };

static int is_leader_byte(uint8_t b)
{
    return b == KDH_WIRE_PACKET_LEADER_BYTE || b == KDH_WIRE_CONTROL_LEADER_BYTE;
}

void kdh_wire_decoder_init(kdh_wire_decoder_t *d)
{
    memset(d, 0, sizeof(*d));
    d->state = ST_HUNT;
}

int kdh_wire_decoder_busy(const kdh_wire_decoder_t *d)
{
    return d->state != ST_HUNT;
}

static void start_hunt(kdh_wire_decoder_t *d)
{
    d->state = ST_HUNT;
    d->lead_byte = 0;
    d->lead_run = 0;
    d->have = 0;
    d->need = 0;
}

static void start_header(kdh_wire_decoder_t *d, uint8_t lead)
{
    memset(d->buf, lead, 4);
    d->have = 4;
    d->need = KDH_WIRE_HEADER_SIZE;
    d->state = ST_HEADER;
    d->lead_byte = 0;
    d->lead_run = 0;
}

/* Fills the header fields known so far (a truncated frame may lack some of them). */
static void fill_header(const kdh_wire_decoder_t *d, kdh_wire_packet_t *p)
{
    memset(p, 0, sizeof(*p));
    p->is_control = d->have >= 1 && d->buf[0] == KDH_WIRE_CONTROL_LEADER_BYTE;
    if (d->have >= KDH_WIRE_HEADER_SIZE) {
        p->type = kdh_get_u16(d->buf + 4);
        p->byte_count = kdh_get_u16(d->buf + 6);
        p->id = kdh_get_u32(d->buf + 8);
        p->checksum = kdh_get_u32(d->buf + 12);
    }
}

static void emit(kdh_wire_event_t *ev, kdh_wire_event_kind_t kind, size_t count)
{
    ev->kind = kind;
    ev->count = count;
}

/* Leader-hunting state: returns 1 when an event was produced. *used is set to the bytes
 * consumed from b (0 or 1). */
static int hunt_byte(kdh_wire_decoder_t *d, uint8_t b, kdh_wire_event_t *ev, size_t *used)
{
    *used = 1;
    if (is_leader_byte(b)) {
        if (b == d->lead_byte) {
            d->lead_run++;
        } else {
            /* A run of the other leader byte (or a short run) was not a leader after all. */
            d->garbage += d->lead_run;
            d->lead_byte = b;
            d->lead_run = 1;
        }
        if (d->lead_run < 4)
            return 0;
        start_header(d, b);
        if (d->garbage) {
            emit(ev, KDH_WIRE_EV_GARBAGE, d->garbage);
            d->garbage = 0;
            return 1;
        }
        return 0;
    }
    if (b == KDH_WIRE_BREAKIN_BYTE) {
        size_t pending = d->garbage + d->lead_run;
        d->lead_byte = 0;
        d->lead_run = 0;
        d->garbage = 0;
        if (pending) {
            /* Report what came before first; the 'b' is looked at again on the next call. */
            *used = 0;
            emit(ev, KDH_WIRE_EV_GARBAGE, pending);
            return 1;
        }
        emit(ev, KDH_WIRE_EV_BREAKIN, 1);
        return 1;
    }
    d->garbage += d->lead_run + 1u;
    d->lead_byte = 0;
    d->lead_run = 0;
    if (d->garbage >= KDH_WIRE_GARBAGE_REPORT) {
        emit(ev, KDH_WIRE_EV_GARBAGE, d->garbage);
        d->garbage = 0;
        return 1;
    }
    return 0;
}

/* The header is complete: decide what follows. */
static int header_done(kdh_wire_decoder_t *d, kdh_wire_event_t *ev)
{
    fill_header(d, &ev->packet);
    if (ev->packet.is_control) {
        /* Control packets end at the header; their ByteCount and Checksum are not used. */
        emit(ev, KDH_WIRE_EV_PACKET, KDH_WIRE_HEADER_SIZE);
        start_hunt(d);
        return 1;
    }
    if (ev->packet.byte_count > KDH_WIRE_PACKET_MAX) {
        emit(ev, KDH_WIRE_EV_OVERSIZE, KDH_WIRE_HEADER_SIZE);
        start_hunt(d);
        return 1;
    }
    d->need = KDH_WIRE_HEADER_SIZE + ev->packet.byte_count + 1u;
    d->state = ST_BODY;
    return 0;
}

size_t kdh_wire_decoder_feed(kdh_wire_decoder_t *d, const uint8_t *buf, size_t len,
                             kdh_wire_event_t *ev)
{
    size_t i = 0;
    ev->kind = KDH_WIRE_EV_NONE;
    ev->count = 0;
    memset(&ev->packet, 0, sizeof(ev->packet));
    while (i < len) {
        uint8_t b = buf[i];
        if (d->state == ST_HUNT) {
            size_t used;
            int got = hunt_byte(d, b, ev, &used);
            i += used;
            if (got)
                return i;
            continue;
        }
        if (d->state == ST_HEADER) {
            /* More leader bytes right after a leader: type 0x30/0x69 is never valid, so the
             * leader slides forward and the oldest byte counts as garbage ("00000" + header). */
            if (d->have == 4 && b == d->buf[0]) {
                d->garbage++;
                i++;
                continue;
            }
            d->buf[d->have++] = b;
            i++;
            /* Four leader bytes inside a header cannot occur in a valid header (type, count,
             * id and checksum ranges exclude it): the frame was cut and a new one starts. */
            if (d->have >= 8 && is_leader_byte(b) && d->buf[d->have - 2] == b &&
                d->buf[d->have - 3] == b && d->buf[d->have - 4] == b) {
                d->have -= 4;
                fill_header(d, &ev->packet);
                emit(ev, KDH_WIRE_EV_TRUNCATED, d->have);
                start_header(d, b);
                return i;
            }
            if (d->have == KDH_WIRE_HEADER_SIZE && header_done(d, ev))
                return i;
            continue;
        }
        /* ST_BODY: payload bytes are data, whatever they look like (memory holds "0000"). */
        if (d->have < d->need - 1) {
            size_t n = d->need - 1 - d->have;
            if (n > len - i)
                n = len - i;
            memcpy(d->buf + d->have, buf + i, n);
            d->have += n;
            i += n;
            continue;
        }
        fill_header(d, &ev->packet);
        if (b != KDH_WIRE_TRAILER) {
            /* Not consumed: a sender that omits the trailer may already be sending the next
             * leader, which the hunt should see. */
            emit(ev, KDH_WIRE_EV_MISSING_TRAILER, d->have);
            start_hunt(d);
            return i;
        }
        i++;
        const uint8_t *payload = d->buf + KDH_WIRE_HEADER_SIZE;
        size_t plen = d->have - KDH_WIRE_HEADER_SIZE;
        if (kdh_wire_checksum(payload, plen) != ev->packet.checksum) {
            emit(ev, KDH_WIRE_EV_BAD_CHECKSUM, d->have + 1);
            start_hunt(d);
            return i;
        }
        ev->packet.payload = payload;
        ev->packet.payload_len = plen;
        emit(ev, KDH_WIRE_EV_PACKET, d->have + 1);
        /* buf keeps the payload until the next call writes a new leader over bytes 0..3. */
        start_hunt(d);
        return i;
    }
    return i;
}

int kdh_wire_decoder_flush(kdh_wire_decoder_t *d, kdh_wire_event_t *ev)
{
    ev->kind = KDH_WIRE_EV_NONE;
    ev->count = 0;
    memset(&ev->packet, 0, sizeof(ev->packet));
    if (d->state != ST_HUNT) {
        fill_header(d, &ev->packet);
        emit(ev, KDH_WIRE_EV_TRUNCATED, d->have);
        start_hunt(d);
        return 1;
    }
    size_t pending = d->garbage + d->lead_run;
    d->garbage = 0;
    d->lead_byte = 0;
    d->lead_run = 0;
    if (!pending)
        return 0;
    emit(ev, KDH_WIRE_EV_GARBAGE, pending);
    return 1;
}
