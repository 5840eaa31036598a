/* Message layouts: each field is placed by hand at the offset kd-protocol.md gives, then decoded
 * and re-encoded; short inputs must give KDH_ECORRUPT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kdh/wire.h"

static void roundtrip_manip(const uint8_t *hand, kdh_wire_arch_t arch, kdh_wire_manip_t *m)
{
    const uint8_t *data = (const uint8_t *)1;
    size_t dlen = 99;
    assert_int_equal(kdh_wire_manip_decode(hand, KDH_WIRE_MANIP_SIZE, arch, m, &data, &dlen, NULL),
                     KDH_OK);
    assert_null(data);
    assert_int_equal(dlen, 0);
    uint8_t out[KDH_WIRE_MANIP_SIZE];
    kdh_wire_manip_encode(m, arch, out);
    assert_memory_equal(out, hand, KDH_WIRE_MANIP_SIZE);
}

static void hdr(uint8_t *b, uint32_t api, uint32_t status)
{
    memset(b, 0, KDH_WIRE_MANIP_SIZE);
    kdh_put_u32(b, api);
    kdh_put_u16(b + 4, 6);      /* ProcessorLevel */
    kdh_put_u16(b + 6, 1);      /* Processor */
    kdh_put_u32(b + 8, status); /* ReturnStatus */
}

static void test_manip_memory_apis(void **state)
{
    (void)state;
    const uint32_t apis[] = {KDH_WIRE_API_READ_VIRTUAL_MEMORY, KDH_WIRE_API_WRITE_VIRTUAL_MEMORY,
                             KDH_WIRE_API_READ_CONTROL_SPACE, KDH_WIRE_API_WRITE_CONTROL_SPACE,
                             KDH_WIRE_API_READ_PHYSICAL_MEMORY, KDH_WIRE_API_WRITE_PHYSICAL_MEMORY};
    for (size_t i = 0; i < KDH_ARRAY_LEN(apis); i++) {
        uint8_t b[KDH_WIRE_MANIP_SIZE];
        hdr(b, apis[i], KDH_WIRE_STATUS_PENDING);
        kdh_put_u64(b + 0x10, 0xFFFFF80012345678ull);
        kdh_put_u32(b + 0x18, 0xF68);
        kdh_put_u32(b + 0x1C, 0x20);
        kdh_wire_manip_t m;
        roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
        assert_int_equal(m.api, apis[i]);
        assert_int_equal(m.processor_level, 6);
        assert_int_equal(m.processor, 1);
        assert_int_equal(m.return_status, 0x103);
        assert_true(m.u.mem.address == 0xFFFFF80012345678ull);
        assert_int_equal(m.u.mem.transfer_count, 0xF68);
        assert_int_equal(m.u.mem.actual_count, 0x20);
    }
    /* Reply data follows the 0x38-byte header. */
    uint8_t pkt[KDH_WIRE_MANIP_SIZE + 4];
    hdr(pkt, KDH_WIRE_API_READ_VIRTUAL_MEMORY, 0);
    memcpy(pkt + KDH_WIRE_MANIP_SIZE, "\x11\x22\x33\x44", 4);
    kdh_wire_manip_t m;
    const uint8_t *data;
    size_t dlen;
    assert_int_equal(kdh_wire_manip_decode(pkt, sizeof pkt, KDH_WIRE_ARCH_X86, &m, &data, &dlen, NULL),
                     KDH_OK);
    assert_ptr_equal(data, pkt + 0x38);
    assert_int_equal(dlen, 4);
}

static void test_manip_small_apis(void **state)
{
    (void)state;
    uint8_t b[KDH_WIRE_MANIP_SIZE];
    kdh_wire_manip_t m;

    hdr(b, KDH_WIRE_API_GET_CONTEXT, 0);
    kdh_put_u32(b + 0x10, 7);
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    assert_int_equal(m.u.get_context.unused, 7);

    hdr(b, KDH_WIRE_API_SET_CONTEXT, 0);
    kdh_put_u32(b + 0x10, 0x10001F);
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    assert_int_equal(m.u.set_context.context_flags, 0x10001F);

    hdr(b, KDH_WIRE_API_WRITE_BREAKPOINT, 0);
    kdh_put_u64(b + 0x10, 0xFFFFF80000001234ull);
    kdh_put_u32(b + 0x18, 3);
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    assert_true(m.u.write_bp.address == 0xFFFFF80000001234ull);
    assert_int_equal(m.u.write_bp.handle, 3);

    hdr(b, KDH_WIRE_API_RESTORE_BREAKPOINT, 0);
    kdh_put_u32(b + 0x10, 3);
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    assert_int_equal(m.u.restore_bp.handle, 3);

    hdr(b, KDH_WIRE_API_CONTINUE, 0);
    kdh_put_u32(b + 0x10, KDH_WIRE_DBG_CONTINUE);
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    assert_int_equal(m.u.cont.status, 0x10002);

    hdr(b, KDH_WIRE_API_QUERY_MEMORY, 0);
    kdh_put_u64(b + 0x10, 0xFFFFF80000400000ull);
    kdh_put_u64(b + 0x18, 0x55);
    kdh_put_u32(b + 0x20, 2);
    kdh_put_u32(b + 0x24, 5);
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    assert_true(m.u.query_memory.address == 0xFFFFF80000400000ull);
    assert_true(m.u.query_memory.reserved == 0x55);
    assert_int_equal(m.u.query_memory.address_space, 2);
    assert_int_equal(m.u.query_memory.flags, 5);

    const uint32_t cx[] = {KDH_WIRE_API_GET_CONTEXT_EX, KDH_WIRE_API_SET_CONTEXT_EX};
    for (int i = 0; i < 2; i++) {
        hdr(b, cx[i], 0);
        kdh_put_u32(b + 0x10, 0x78);
        kdh_put_u32(b + 0x14, 0x88);
        kdh_put_u32(b + 0x18, 0x80);
        roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
        assert_int_equal(m.u.context_ex.offset, 0x78);
        assert_int_equal(m.u.context_ex.byte_count, 0x88);
        assert_int_equal(m.u.context_ex.bytes_copied, 0x80);
    }

    const uint32_t bare[] = {KDH_WIRE_API_SWITCH_PROCESSOR, KDH_WIRE_API_CLEAR_ALL_INTERNAL_BREAKPOINTS,
                             KDH_WIRE_API_REBOOT};
    for (int i = 0; i < 3; i++) {
        hdr(b, bare[i], 0);
        roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
        assert_int_equal(m.api, bare[i]);
    }

    /* Unknown API: the union travels unchanged through raw_u (ReadMsr 0x3152 here). */
    hdr(b, 0x3152, 0);
    for (int i = 0x10; i < 0x38; i++)
        b[i] = (uint8_t)i;
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    assert_int_equal(m.raw_u[0], 0x10);
    assert_int_equal(m.raw_u[0x27], 0x37);
}

static void test_manip_continue2_layouts(void **state)
{
    (void)state;
    uint8_t b[KDH_WIRE_MANIP_SIZE];
    kdh_wire_manip_t m;
    /* AMD64: status @0x10, TraceFlag @0x14, Dr7 u64 @0x18, Start @0x20, End @0x28 */
    hdr(b, KDH_WIRE_API_CONTINUE2, 0);
    kdh_put_u32(b + 0x10, KDH_WIRE_DBG_CONTINUE);
    kdh_put_u32(b + 0x14, 1);
    kdh_put_u64(b + 0x18, 0x0000000100000401ull);
    kdh_put_u64(b + 0x20, 1);
    kdh_put_u64(b + 0x28, 0xFFFFF80000002000ull);
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    assert_int_equal(m.u.cont2.status, 0x10002);
    assert_int_equal(m.u.cont2.trace_flag, 1);
    assert_true(m.u.cont2.dr7 == 0x0000000100000401ull);
    assert_true(m.u.cont2.symbol_start == 1);
    assert_true(m.u.cont2.symbol_end == 0xFFFFF80000002000ull);
    /* x86: Dr7 u32 @0x18, Start u32 @0x1C, End u32 @0x20 */
    hdr(b, KDH_WIRE_API_CONTINUE2, 0);
    kdh_put_u32(b + 0x10, KDH_WIRE_DBG_CONTINUE);
    kdh_put_u32(b + 0x14, 0);
    kdh_put_u32(b + 0x18, 0x401);
    kdh_put_u32(b + 0x1C, 1);
    kdh_put_u32(b + 0x20, 0x80402000u);
    roundtrip_manip(b, KDH_WIRE_ARCH_X86, &m);
    assert_true(m.u.cont2.dr7 == 0x401);
    assert_true(m.u.cont2.symbol_start == 1);
    assert_true(m.u.cont2.symbol_end == 0x80402000u);
}

static void test_manip_get_version(void **state)
{
    (void)state;
    uint8_t b[KDH_WIRE_MANIP_SIZE];
    hdr(b, KDH_WIRE_API_GET_VERSION, 0);
    /* DBGKD_GET_VERSION64 at packet offset 0x10 */
    kdh_put_u16(b + 0x10, 0x000F);
    kdh_put_u16(b + 0x12, 19041);
    b[0x14] = 6;
    b[0x15] = 2;
    kdh_put_u16(b + 0x16, 0x07); /* MP | DATA | PTR64 */
    kdh_put_u16(b + 0x18, 0x8664);
    b[0x1A] = 12;
    b[0x1B] = 3;
    b[0x1C] = 0x31;
    b[0x1D] = 0;
    kdh_put_u64(b + 0x20, 0xFFFFF80000000000ull);
    kdh_put_u64(b + 0x28, 0xFFFFF80000123450ull);
    kdh_put_u64(b + 0x30, 0xFFFFF80000200000ull);
    kdh_wire_manip_t m;
    roundtrip_manip(b, KDH_WIRE_ARCH_AMD64, &m);
    const kdh_wire_get_version_t *v = &m.u.version;
    assert_int_equal(v->major_version, 0xF);
    assert_int_equal(v->minor_version, 19041);
    assert_int_equal(v->protocol_version, 6);
    assert_int_equal(v->kd_secondary_version, 2);
    assert_int_equal(v->flags, 7);
    assert_int_equal(v->machine_type, KDH_WIRE_MACHINE_AMD64);
    assert_int_equal(v->max_packet_type, 12);
    assert_int_equal(v->max_state_change, 3);
    assert_int_equal(v->max_manipulate, 0x31);
    assert_true(v->kern_base == 0xFFFFF80000000000ull);
    assert_true(v->ps_loaded_module_list == 0xFFFFF80000123450ull);
    assert_true(v->debugger_data_list == 0xFFFFF80000200000ull);
}

static void test_manip_short(void **state)
{
    (void)state;
    uint8_t b[KDH_WIRE_MANIP_SIZE] = {0};
    kdh_wire_manip_t m;
    kdh_err_t err;
    assert_int_equal(kdh_wire_manip_decode(b, 0x37, KDH_WIRE_ARCH_AMD64, &m, NULL, NULL, &err),
                     KDH_ECORRUPT);
    assert_int_equal(err.code, KDH_ECORRUPT);
    assert_true(strlen(err.msg) > 0);
    assert_int_equal(kdh_wire_manip_decode(NULL, 0, KDH_WIRE_ARCH_AMD64, &m, NULL, NULL, NULL),
                     KDH_ECORRUPT);
}

/* An AMD64 PoolHitTag-style breakpoint report (kd-protocol.md 2, 6), laid out by hand. */
static void test_state_change_exception_amd64(void **state)
{
    (void)state;
    uint8_t b[0xF4] = {0};
    kdh_put_u32(b + 0x00, 0x3030);
    kdh_put_u16(b + 0x04, 6);
    kdh_put_u16(b + 0x06, 1);
    kdh_put_u32(b + 0x08, 2);
    kdh_put_u64(b + 0x10, 0xFFFFE00012340080ull);
    kdh_put_u64(b + 0x18, 0xFFFFF80000011230ull);
    kdh_put_u32(b + 0x20, 0x80000003u);
    kdh_put_u32(b + 0x24, 0);
    kdh_put_u64(b + 0x28, 0);
    kdh_put_u64(b + 0x30, 0xFFFFF80000011230ull);
    kdh_put_u32(b + 0x38, 1);
    kdh_put_u64(b + 0x40, 0);
    kdh_put_u64(b + 0x40 + 8 * 14, 0x1414);
    kdh_put_u32(b + 0xB8, 1);
    kdh_put_u64(b + 0xC0, 0xFFFF0FF0);
    kdh_put_u64(b + 0xC8, 0x400);
    kdh_put_u32(b + 0xD0, 0x246);
    kdh_put_u16(b + 0xD4, 16);
    kdh_put_u16(b + 0xD6, 3);
    b[0xD8] = 0xCC;
    b[0xD9] = 0xC3;
    b[0xE7] = 0x90;
    kdh_put_u16(b + 0xE8, 0x10);
    kdh_put_u16(b + 0xEA, 0x2B);
    kdh_put_u16(b + 0xEC, 0x2B);
    kdh_put_u16(b + 0xEE, 0x53);
    b[0xF0] = 1; /* 4 bytes of trace data */

    kdh_wire_state_change_t sc;
    assert_int_equal(kdh_wire_state_change_decode(b, sizeof b, KDH_WIRE_ARCH_AMD64, &sc, NULL), KDH_OK);
    assert_int_equal(sc.new_state, KDH_WIRE_STATE_EXCEPTION);
    assert_int_equal(sc.processor_level, 6);
    assert_int_equal(sc.processor, 1);
    assert_int_equal(sc.number_processors, 2);
    assert_true(sc.thread == 0xFFFFE00012340080ull);
    assert_true(sc.program_counter == 0xFFFFF80000011230ull);
    assert_int_equal(sc.u.exception.code, 0x80000003u);
    assert_true(sc.u.exception.address == 0xFFFFF80000011230ull);
    assert_int_equal(sc.u.exception.number_parameters, 1);
    assert_true(sc.u.exception.information[14] == 0x1414);
    assert_int_equal(sc.u.exception.first_chance, 1);
    assert_true(sc.report.dr6 == 0xFFFF0FF0);
    assert_true(sc.report.dr7 == 0x400);
    assert_int_equal(sc.report.eflags, 0x246);
    assert_int_equal(sc.report.instruction_count, 16);
    assert_int_equal(sc.report.report_flags, 3);
    assert_int_equal(sc.report.instruction_stream[0], 0xCC);
    assert_int_equal(sc.report.instruction_stream[1], 0xC3);
    assert_int_equal(sc.report.instruction_stream[15], 0x90);
    assert_int_equal(sc.report.seg_cs, 0x10);
    assert_int_equal(sc.report.seg_fs, 0x53);
    assert_int_equal(sc.extra_len, 4);
    assert_ptr_equal(sc.extra, b + 0xF0);
    assert_null(sc.path);

    uint8_t out[0xF0];
    kdh_wire_state_change_encode(&sc, KDH_WIRE_ARCH_AMD64, out);
    assert_memory_equal(out, b, 0xF0);
}

static void test_state_change_x86_report(void **state)
{
    (void)state;
    uint8_t b[0xF0] = {0};
    kdh_put_u32(b + 0x00, 0x3030);
    kdh_put_u64(b + 0x18, 0xFFFFFFFF80401234ull); /* sign-extended */
    kdh_put_u32(b + 0x20, 0x80000003u);
    kdh_put_u64(b + 0x30, 0xFFFFFFFF80401234ull);
    kdh_put_u32(b + 0xC0, 0xFFFF0FF0);
    kdh_put_u32(b + 0xC4, 0x1);
    kdh_put_u16(b + 0xC8, 40); /* bogus: clamps to 16 */
    kdh_put_u16(b + 0xCA, 3);
    b[0xCC] = 0xCC;
    b[0xDB] = 0x5D;
    kdh_put_u16(b + 0xDC, 0x08);
    kdh_put_u16(b + 0xDE, 0x23);
    kdh_put_u16(b + 0xE0, 0x23);
    kdh_put_u16(b + 0xE2, 0x30);
    kdh_put_u32(b + 0xE4, 0x202);
    kdh_wire_state_change_t sc;
    assert_int_equal(kdh_wire_state_change_decode(b, sizeof b, KDH_WIRE_ARCH_X86, &sc, NULL), KDH_OK);
    assert_true(sc.program_counter == 0xFFFFFFFF80401234ull);
    assert_true(sc.report.dr6 == 0xFFFF0FF0);
    assert_true(sc.report.dr7 == 1);
    assert_int_equal(sc.report.instruction_count, 16);
    assert_int_equal(sc.report.report_flags, 3);
    assert_int_equal(sc.report.instruction_stream[0], 0xCC);
    assert_int_equal(sc.report.instruction_stream[15], 0x5D);
    assert_int_equal(sc.report.seg_cs, 0x08);
    assert_int_equal(sc.report.seg_ds, 0x23);
    assert_int_equal(sc.report.seg_es, 0x23);
    assert_int_equal(sc.report.seg_fs, 0x30);
    assert_int_equal(sc.report.eflags, 0x202);
    assert_int_equal(sc.extra_len, 0);
    assert_null(sc.extra);

    uint8_t out[0xF0];
    kdh_wire_state_change_encode(&sc, KDH_WIRE_ARCH_X86, out);
    kdh_put_u16(b + 0xC8, 16); /* the clamped value is what re-encodes */
    assert_memory_equal(out, b, 0xF0);
}

static void test_state_change_load_symbols(void **state)
{
    (void)state;
    const char path[] = "\\SystemRoot\\system32\\ntoskrnl.exe";
    uint8_t b[0xF0 + 8 + sizeof path] = {0};
    kdh_put_u32(b + 0x00, 0x3031);
    kdh_put_u32(b + 0x20, sizeof path);
    kdh_put_u64(b + 0x28, 0xFFFFF80000000000ull);
    kdh_put_u64(b + 0x30, 4);
    kdh_put_u32(b + 0x38, 0xABCDEF);
    kdh_put_u32(b + 0x3C, 0x1000000);
    b[0x40] = 0;
    /* 8 bytes of something older layouts put first, then the path at the end */
    memset(b + 0xF0, 0xEE, 8);
    memcpy(b + 0xF0 + 8, path, sizeof path);
    kdh_wire_state_change_t sc;
    assert_int_equal(kdh_wire_state_change_decode(b, sizeof b, KDH_WIRE_ARCH_AMD64, &sc, NULL), KDH_OK);
    assert_int_equal(sc.u.load_symbols.path_name_length, sizeof path);
    assert_true(sc.u.load_symbols.base_of_dll == 0xFFFFF80000000000ull);
    assert_true(sc.u.load_symbols.process_id == 4);
    assert_int_equal(sc.u.load_symbols.checksum, 0xABCDEF);
    assert_int_equal(sc.u.load_symbols.size_of_image, 0x1000000);
    assert_int_equal(sc.path_len, sizeof path);
    assert_memory_equal(sc.path, path, sizeof path);
    uint8_t out[0xF0];
    kdh_wire_state_change_encode(&sc, KDH_WIRE_ARCH_AMD64, out);
    assert_memory_equal(out, b, 0xF0);

    /* Path longer than what follows the header: corrupt, not an over-read. */
    kdh_put_u32(b + 0x20, 8 + sizeof path + 1);
    kdh_err_t err;
    assert_int_equal(kdh_wire_state_change_decode(b, sizeof b, KDH_WIRE_ARCH_AMD64, &sc, &err),
                     KDH_ECORRUPT);
    kdh_put_u32(b + 0x20, 0xFFFFFFFFu);
    assert_int_equal(kdh_wire_state_change_decode(b, sizeof b, KDH_WIRE_ARCH_AMD64, &sc, NULL),
                     KDH_ECORRUPT);
    /* Unload-all form: BaseOfDll -1, PathNameLength 0, UnloadSymbols 1 */
    uint8_t u[0xF0] = {0};
    kdh_put_u32(u, 0x3031);
    kdh_put_u64(u + 0x28, UINT64_MAX);
    u[0x40] = 1;
    assert_int_equal(kdh_wire_state_change_decode(u, sizeof u, KDH_WIRE_ARCH_X86, &sc, NULL), KDH_OK);
    assert_null(sc.path);
    assert_int_equal(sc.u.load_symbols.unload_symbols, 1);
    assert_true(sc.u.load_symbols.base_of_dll == UINT64_MAX);
    /* Short */
    assert_int_equal(kdh_wire_state_change_decode(u, 0xEF, KDH_WIRE_ARCH_X86, &sc, NULL), KDH_ECORRUPT);
}

static void test_state_change_command_string(void **state)
{
    (void)state;
    uint8_t b[0xF0 + 6] = {0};
    kdh_put_u32(b, 0x3032 | KDH_WIRE_STATE_ALTERNATE);
    kdh_put_u32(b + 0x20, 9);
    memcpy(b + 0xF0, "a\0cmd\0", 6);
    kdh_wire_state_change_t sc;
    assert_int_equal(kdh_wire_state_change_decode(b, sizeof b, KDH_WIRE_ARCH_AMD64, &sc, NULL), KDH_OK);
    assert_int_equal(sc.u.command_string.flags, 9);
    assert_int_equal(sc.extra_len, 6);
    uint8_t out[0xF0];
    kdh_wire_state_change_encode(&sc, KDH_WIRE_ARCH_AMD64, out);
    assert_memory_equal(out, b, 0xF0);
}

static void test_debug_io(void **state)
{
    (void)state;
    const char msg[] = "hello from DbgPrint\n";
    uint8_t b[0x10 + sizeof msg - 1];
    kdh_put_u32(b, 0x3230);
    kdh_put_u16(b + 4, 6);
    kdh_put_u16(b + 6, 0);
    kdh_put_u32(b + 8, sizeof msg - 1);
    kdh_put_u32(b + 0xC, 0);
    memcpy(b + 0x10, msg, sizeof msg - 1);
    kdh_wire_debug_io_t io;
    const uint8_t *data;
    size_t dlen;
    assert_int_equal(kdh_wire_debug_io_decode(b, sizeof b, &io, &data, &dlen, NULL), KDH_OK);
    assert_int_equal(io.api, 0x3230);
    assert_int_equal(io.processor_level, 6);
    assert_int_equal(io.length, sizeof msg - 1);
    assert_int_equal(dlen, sizeof msg - 1);
    assert_memory_equal(data, msg, dlen);
    uint8_t out[0x10];
    kdh_wire_debug_io_encode(&io, out);
    assert_memory_equal(out, b, 0x10);
    /* GetString answer: LengthOfStringRead @0xC */
    io.api = 0x3231;
    io.length = 5;
    io.length_read = 3;
    kdh_wire_debug_io_encode(&io, out);
    assert_int_equal(kdh_get_u32(out), 0x3231);
    assert_int_equal(kdh_get_u32(out + 8), 5);
    assert_int_equal(kdh_get_u32(out + 0xC), 3);
    assert_int_equal(kdh_wire_debug_io_decode(b, 0xF, &io, NULL, NULL, NULL), KDH_ECORRUPT);
}

static void test_file_io(void **state)
{
    (void)state;
    uint8_t b[0x40 + 4] = {0};
    kdh_put_u32(b, 0x3430);
    kdh_put_u32(b + 4, 0x103);
    kdh_put_u32(b + 0x08, 0x80000000u);
    kdh_put_u32(b + 0x0C, 0x80);
    kdh_put_u32(b + 0x10, 1);
    kdh_put_u32(b + 0x14, 1);
    kdh_put_u32(b + 0x18, 0x20);
    kdh_put_u64(b + 0x20, 0x1234);
    kdh_put_u64(b + 0x28, 0x5678);
    memcpy(b + 0x40, "a\0b\0", 4); /* UTF-16 name */
    kdh_wire_file_io_t io;
    const uint8_t *data;
    size_t dlen;
    assert_int_equal(kdh_wire_file_io_decode(b, sizeof b, &io, &data, &dlen, NULL), KDH_OK);
    assert_int_equal(io.api, 0x3430);
    assert_int_equal(io.status, 0x103);
    assert_int_equal(io.desired_access, 0x80000000u);
    assert_int_equal(io.file_attributes, 0x80);
    assert_int_equal(io.share_access, 1);
    assert_int_equal(io.create_disposition, 1);
    assert_int_equal(io.create_options, 0x20);
    assert_true(io.handle == 0x1234);
    assert_true(io.length == 0x5678);
    assert_int_equal(dlen, 4);
    assert_ptr_equal(data, b + 0x40);
    uint8_t out[0x40];
    kdh_wire_file_io_encode(&io, out);
    assert_memory_equal(out, b, 0x40);
    /* Host declines: STATUS_NO_SUCH_FILE in the echoed header. */
    io.status = KDH_WIRE_STATUS_NO_SUCH_FILE;
    kdh_wire_file_io_encode(&io, out);
    assert_int_equal(kdh_get_u32(out + 4), 0xC000000Fu);
    /* Close (raw union) round trip */
    kdh_put_u32(b, 0x3433);
    assert_int_equal(kdh_wire_file_io_decode(b, 0x40, &io, NULL, NULL, NULL), KDH_OK);
    kdh_wire_file_io_encode(&io, out);
    assert_memory_equal(out, b, 0x40);
    assert_int_equal(kdh_wire_file_io_decode(b, 0x3F, &io, NULL, NULL, NULL), KDH_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manip_memory_apis),
        cmocka_unit_test(test_manip_small_apis),
        cmocka_unit_test(test_manip_continue2_layouts),
        cmocka_unit_test(test_manip_get_version),
        cmocka_unit_test(test_manip_short),
        cmocka_unit_test(test_state_change_exception_amd64),
        cmocka_unit_test(test_state_change_x86_report),
        cmocka_unit_test(test_state_change_load_symbols),
        cmocka_unit_test(test_state_change_command_string),
        cmocka_unit_test(test_debug_io),
        cmocka_unit_test(test_file_io),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
