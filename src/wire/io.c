/* DBGKD_DEBUG_IO (DbgPrint / DbgPrompt, 0x10 bytes) and DBGKD_FILE_IO (.kdfiles requests,
 * 0x40 bytes): the target-initiated messages besides state changes (kd-protocol.md 3.6). */
#include <string.h>

#include "kdh/wire.h"

void kdh_wire_debug_io_encode(const kdh_wire_debug_io_t *io, uint8_t out[KDH_WIRE_DEBUG_IO_SIZE])
{
    memset(out, 0, KDH_WIRE_DEBUG_IO_SIZE);
    kdh_put_u32(out + 0x00, io->api);
    kdh_put_u16(out + 0x04, io->processor_level);
    kdh_put_u16(out + 0x06, io->processor);
    kdh_put_u32(out + 0x08, io->length);
    kdh_put_u32(out + 0x0C, io->length_read);
}

int kdh_wire_debug_io_decode(const uint8_t *buf, size_t len, kdh_wire_debug_io_t *io,
                             const uint8_t **data, size_t *data_len, kdh_err_t *err)
{
    if (!buf || len < KDH_WIRE_DEBUG_IO_SIZE)
        return kdh_err_set(err, KDH_ECORRUPT,
                           "debug I/O packet of %zu bytes is shorter than its 0x10-byte header",
                           buf ? len : 0);
    io->api = kdh_get_u32(buf + 0x00);
    io->processor_level = kdh_get_u16(buf + 0x04);
    io->processor = kdh_get_u16(buf + 0x06);
    io->length = kdh_get_u32(buf + 0x08);
    io->length_read = kdh_get_u32(buf + 0x0C);
    if (data)
        *data = len > KDH_WIRE_DEBUG_IO_SIZE ? buf + KDH_WIRE_DEBUG_IO_SIZE : NULL;
    if (data_len)
        *data_len = len - KDH_WIRE_DEBUG_IO_SIZE;
    return KDH_OK;
}

void kdh_wire_file_io_encode(const kdh_wire_file_io_t *io, uint8_t out[KDH_WIRE_FILE_IO_SIZE])
{
    memset(out, 0, KDH_WIRE_FILE_IO_SIZE);
    kdh_put_u32(out + 0x00, io->api);
    kdh_put_u32(out + 0x04, io->status);
    if (io->api != KDH_WIRE_API_CREATE_FILE) {
        memcpy(out + 0x08, io->raw_u, sizeof(io->raw_u));
        return;
    }
    kdh_put_u32(out + 0x08, io->desired_access);
    kdh_put_u32(out + 0x0C, io->file_attributes);
    kdh_put_u32(out + 0x10, io->share_access);
    kdh_put_u32(out + 0x14, io->create_disposition);
    kdh_put_u32(out + 0x18, io->create_options);
    kdh_put_u64(out + 0x20, io->handle);
    kdh_put_u64(out + 0x28, io->length);
}

int kdh_wire_file_io_decode(const uint8_t *buf, size_t len, kdh_wire_file_io_t *io,
                            const uint8_t **data, size_t *data_len, kdh_err_t *err)
{
    if (!buf || len < KDH_WIRE_FILE_IO_SIZE)
        return kdh_err_set(err, KDH_ECORRUPT,
                           "file I/O packet of %zu bytes is shorter than its 0x40-byte header",
                           buf ? len : 0);
    memset(io, 0, sizeof(*io));
    io->api = kdh_get_u32(buf + 0x00);
    io->status = kdh_get_u32(buf + 0x04);
    memcpy(io->raw_u, buf + 0x08, sizeof(io->raw_u));
    io->desired_access = kdh_get_u32(buf + 0x08);
    io->file_attributes = kdh_get_u32(buf + 0x0C);
    io->share_access = kdh_get_u32(buf + 0x10);
    io->create_disposition = kdh_get_u32(buf + 0x14);
    io->create_options = kdh_get_u32(buf + 0x18);
    io->handle = kdh_get_u64(buf + 0x20);
    io->length = kdh_get_u64(buf + 0x28);
    if (data)
        *data = len > KDH_WIRE_FILE_IO_SIZE ? buf + KDH_WIRE_FILE_IO_SIZE : NULL;
    if (data_len)
        *data_len = len - KDH_WIRE_FILE_IO_SIZE;
    return KDH_OK;
}
