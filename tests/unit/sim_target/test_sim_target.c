/* test_sim_target.c: the manipulate APIs and stop reports of kdsim's KD target side
 * (src/sim/target_api.c, target_report.c) against hand-built host packets, over the fake machine. Expected values come from kd-protocol.md and
 * from the fake machine's own memory and registers, never from the target code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "fake_machine.h"
#include "host.h"

#define MS 1000000ull

static host_t H;

static int setup_x64(void **state)
{
    host_setup(&H, SIM_ARCH_X64, 1, NULL);
    return 0;
}

static int teardown(void **state)
{
    host_teardown(&H);
    return 0;
}

static uint64_t base(void)
{
    return fake_base(H.m);
}

/* The GetVersion request of the reference walkthrough (§7), byte for byte, checksum 0x77. */
static void test_get_version_walkthrough_bytes(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    uint8_t pkt[16 + 0x38 + 1] = {0x30, 0x30, 0x30, 0x30, 0x02, 0x00, 0x38, 0x00,
                                  0x00, 0x00, 0x80, 0x80, 0x77, 0x00, 0x00, 0x00, 0x46, 0x31};
    pkt[16 + 0x38] = 0xAA;
    host_clear(&H);
    host_raw(&H, pkt, sizeof pkt);
    assert_int_equal(H.n, 2);
    assert_int_equal(H.pkts[0].type, KDH_WIRE_TYPE_ACKNOWLEDGE);
    assert_int_equal(H.pkts[0].id, 0x80800000u);
    const uint8_t *p = H.pkts[1].payload;
    assert_int_equal(H.pkts[1].len, 0x38);
    assert_int_equal(kdh_get_u32(p + 0x00), 0x3146);
    assert_int_equal(kdh_get_u32(p + 0x08), 0);
    assert_int_equal(kdh_get_u16(p + 0x10), 0x000F);
    assert_int_equal(kdh_get_u16(p + 0x12), 19041);
    assert_int_equal(p[0x14], 6);
    assert_int_equal(p[0x15], 2);
    assert_int_equal(kdh_get_u16(p + 0x16), 0x2 | 0x4); /* DATA | PTR64, one CPU */
    assert_int_equal(kdh_get_u16(p + 0x18), 0x8664);
    assert_int_equal(p[0x1A], 12);
    assert_int_equal(p[0x1B], 3);
    assert_int_equal(p[0x1C], 0x31);
    assert_true(kdh_get_u64(p + 0x20) == base());
    assert_true(kdh_get_u64(p + 0x28) == base() + FAKE_PSLML);
    assert_true(kdh_get_u64(p + 0x30) == base() + FAKE_DDLIST);
}

static void test_read_write_memory(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_READ_VIRTUAL_MEMORY), r;
    const uint8_t *d;
    size_t dl;
    m.u.mem.address = base();
    m.u.mem.transfer_count = 0x100;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(r.u.mem.actual_count, 0x100);
    assert_int_equal(dl, 0x100);
    assert_int_equal(d[0], 'M');
    assert_int_equal(d[1], 'Z');

    /* Clamped to 4000 - 0x38 = 3944 bytes. */
    m.u.mem.transfer_count = 5000;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.u.mem.actual_count, 3944);
    assert_int_equal(dl, 3944);

    /* Partial at the first unmapped page: 0x100 of 0x200 bytes. */
    m.u.mem.address = base() + FAKE_SIZE - 0x100;
    m.u.mem.transfer_count = 0x200;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(r.u.mem.actual_count, 0x100);
    assert_int_equal(dl, 0x100);

    m.u.mem.address = base() + FAKE_SIZE;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0xC0000001u);
    assert_int_equal(dl, 0);

    kdh_wire_manip_t w = host_req(KDH_WIRE_API_WRITE_VIRTUAL_MEMORY);
    w.u.mem.address = base() + 0x6000;
    w.u.mem.transfer_count = 4;
    const uint8_t tag[4] = {'T', 'a', 'g', '1'};
    host_request(&H, &w, tag, 4, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(r.u.mem.actual_count, 4);
    uint8_t back[4];
    uint32_t done;
    sim_machine_read(H.m, base() + 0x6000, back, 4, &done);
    assert_memory_equal(back, tag, 4);
}

/* Break-in stops at BreakpointWithStatus with the interrupted PC as return address; SetContext
 * needs a GetContext first; moving PC past the int3 returns to the interrupted code. */
static void test_breakin_context_and_int3(void **state)
{
    host_boot(&H);
    host_tick(&H, MS, 50000); /* somewhere inside the loop */
    uint64_t pc_before = fake_pc(H.m, 0), sp_before = fake_sp(H.m, 0);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    assert_int_equal(sc.new_state, KDH_WIRE_STATE_EXCEPTION);
    assert_int_equal(sc.u.exception.code, 0x80000003u);
    assert_true(sc.program_counter == base() + FAKE_BWS);
    assert_true(sc.u.exception.address == base() + FAKE_BWS);
    assert_int_equal(sc.u.exception.first_chance, 1);
    assert_int_equal(sc.report.instruction_count, 16);
    assert_int_equal(sc.report.instruction_stream[0], 0xCC);
    assert_int_equal(sc.report.instruction_stream[1], 0xC3);
    assert_int_equal(sc.report.seg_cs, 0x10);
    assert_int_equal(sc.report.report_flags, 3);
    assert_int_equal(sc.report.eflags, 0x202);
    assert_true(sc.thread == base() + FAKE_KTHREAD + 0x30);
    uint8_t ret[8];
    uint32_t done;
    sim_machine_read(H.m, sp_before - 8, ret, 8, &done);
    assert_true(kdh_get_u64(ret) == pc_before);

    kdh_wire_manip_t m = host_req(KDH_WIRE_API_SET_CONTEXT), r;
    const uint8_t *d;
    size_t dl;
    uint8_t ctx[0x4D0] = {0};
    host_request(&H, &m, ctx, sizeof ctx, &r, &d, &dl);
    assert_int_equal(r.return_status, 0xC0000001u); /* no GetContext in this stop yet */

    m = host_req(KDH_WIRE_API_GET_CONTEXT);
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(dl, 0x4D0);
    assert_true(kdh_get_u64(d + 0xF8) == base() + FAKE_BWS);
    assert_true(kdh_get_u64(d + 0x78) == 0x1111);
    memcpy(ctx, d, 0x4D0);

    /* Continue without moving PC: the int3 executes again. */
    host_cont2(&H, 0);
    host_clear(&H);
    host_wait_state_change(&H, 2, &sc);
    assert_true(sc.program_counter == base() + FAKE_BWS);

    m = host_req(KDH_WIRE_API_GET_CONTEXT);
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    kdh_put_u64(ctx + 0xF8, base() + FAKE_BWS + 1);
    m = host_req(KDH_WIRE_API_SET_CONTEXT);
    m.u.set_context.context_flags = 0x10001F;
    host_request(&H, &m, ctx, sizeof ctx, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_true(fake_pc(H.m, 0) == base() + FAKE_BWS + 1);
    /* Single-step the `ret`: back at the interrupted PC with the stack as it was. */
    host_cont2(&H, 1);
    host_clear(&H);
    host_wait_state_change(&H, 2, &sc);
    assert_int_equal(sc.u.exception.code, 0x80000004u);
    assert_true(sc.program_counter == pc_before);
    assert_true(fake_sp(H.m, 0) == sp_before);
}

static void test_context_ex(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_SET_CONTEXT_EX), r;
    const uint8_t *d;
    size_t dl;
    uint8_t rip[8];
    kdh_put_u64(rip, base() + FAKE_CODE + 0x10);
    m.u.context_ex.offset = 0xF8;
    m.u.context_ex.byte_count = 8;
    host_request(&H, &m, rip, 8, &r, &d, &dl);
    assert_int_equal(r.return_status, 0xC0000001u);

    m = host_req(KDH_WIRE_API_GET_CONTEXT_EX);
    m.u.context_ex.offset = 0x98;
    m.u.context_ex.byte_count = 0x68; /* Rsp .. Rip inclusive */
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(r.u.context_ex.bytes_copied, 0x68);
    assert_int_equal(dl, 0x68);
    assert_true(kdh_get_u64(d + 0x60) == base() + FAKE_BWS);
    assert_true(kdh_get_u64(d) == fake_sp(H.m, 0));

    /* A slice past the end is cut at the CONTEXT size. */
    m.u.context_ex.offset = 0x4C0;
    m.u.context_ex.byte_count = 0x100;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.u.context_ex.bytes_copied, 0x10);

    m = host_req(KDH_WIRE_API_SET_CONTEXT_EX);
    m.u.context_ex.offset = 0xF8;
    m.u.context_ex.byte_count = 8;
    host_request(&H, &m, rip, 8, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(r.u.context_ex.bytes_copied, 8);
    assert_true(fake_pc(H.m, 0) == base() + FAKE_CODE + 0x10);
}

static void test_no_context_ex_profile(void **state)
{
    host_teardown(&H);
    sim_target_opts_t o;
    sim_target_opts_default(&o);
    o.no_context_ex = 1;
    host_setup(&H, SIM_ARCH_X64, 1, &o);
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_GET_CONTEXT_EX), r;
    const uint8_t *d;
    size_t dl;
    m.u.context_ex.offset = 0;
    m.u.context_ex.byte_count = 0x100;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0xC0000001u);
    assert_int_equal(dl, 0);
    m = host_req(KDH_WIRE_API_GET_CONTEXT); /* the fallback still works */
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(dl, 0x4D0);
}

static void test_read_control_query_unknown(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_READ_CONTROL_SPACE), r;
    const uint8_t *d;
    size_t dl;
    m.u.mem.address = 3;
    m.u.mem.transfer_count = 8;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(dl, 8);
    assert_true(kdh_get_u64(d) == base() + FAKE_KTHREAD + 0x30);

    m = host_req(KDH_WIRE_API_QUERY_MEMORY);
    m.u.query_memory.address = base() + 0x100;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    assert_int_equal(r.u.query_memory.address_space, 2);
    assert_int_equal(r.u.query_memory.flags, 7);
    m.u.query_memory.address = 0x1000;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0xC0000001u);

    m = host_req(0x3152); /* ReadMSR: not served */
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0xC0000001u);

    /* ClearAllInternalBreakpoints: ACK only, still stopped. */
    m = host_req(KDH_WIRE_API_CLEAR_ALL_INTERNAL_BREAKPOINTS);
    host_no_reply(&H, &m);
    assert_int_equal(H.n, 1);
    assert_int_equal(sim_target_state(H.t), SIM_TARGET_STOPPED);
}

static uint32_t write_bp(uint64_t addr, uint32_t *status)
{
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_WRITE_BREAKPOINT), r;
    const uint8_t *d;
    size_t dl;
    m.u.write_bp.address = addr;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    *status = r.return_status;
    return r.u.write_bp.handle;
}

static uint32_t restore_bp(uint32_t handle)
{
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_RESTORE_BREAKPOINT), r;
    const uint8_t *d;
    size_t dl;
    m.u.restore_bp.handle = handle;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    return r.return_status;
}

static uint8_t mem_byte(uint64_t va)
{
    uint8_t b = 0;
    uint32_t done;
    sim_machine_read(H.m, va, &b, 1, &done);
    return b;
}

static void test_breakpoints(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    uint64_t code = base() + FAKE_CODE;
    uint32_t st;
    assert_int_equal(write_bp(code + 0x10, &st), 1);
    assert_int_equal(st, 0);
    assert_int_equal(mem_byte(code + 0x10), 0xCC);
    assert_int_equal(write_bp(code + 0x10, &st), 0); /* same address twice */
    assert_int_equal(st, 0xC0000001u);
    assert_int_equal(restore_bp(1), 0);
    assert_int_equal(mem_byte(code + 0x10), 0x90);
    assert_int_equal(restore_bp(1), 0xC0000001u);
    assert_int_equal(restore_bp(0), 0xC0000001u);
    assert_int_equal(restore_bp(33), 0xC0000001u);

    /* 32 entries; handle = index + 1; the 33rd fails. */
    for (uint32_t i = 0; i < 32; i++)
        assert_int_equal(write_bp(code + 0x20 + i, &st), i + 1);
    assert_int_equal(write_bp(code + 0x60, &st), 0);
    assert_int_equal(st, 0xC0000001u);
    for (uint32_t i = 1; i <= 32; i++)
        assert_int_equal(restore_bp(i), 0);

    /* Hit: PC at the breakpoint; breakpoints in [PC, PC+15] are deleted before the report
     * (stream shows the original bytes), the one at PC+16 stays. */
    assert_int_equal(write_bp(code + 0x30, &st), 1);
    assert_int_equal(write_bp(code + 0x38, &st), 2);
    assert_int_equal(write_bp(code + 0x40, &st), 3);
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_GET_CONTEXT), r;
    const uint8_t *d;
    size_t dl;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    uint8_t ctx[0x4D0];
    memcpy(ctx, d, sizeof ctx);
    kdh_put_u64(ctx + 0xF8, code);
    m = host_req(KDH_WIRE_API_SET_CONTEXT);
    host_request(&H, &m, ctx, sizeof ctx, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    host_cont2(&H, 0);
    host_clear(&H);
    host_wait_state_change(&H, 2, &sc);
    assert_true(sc.program_counter == code + 0x30);
    assert_int_equal(sc.u.exception.code, 0x80000003u);
    assert_int_equal(sc.report.instruction_count, 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(sc.report.instruction_stream[i], 0x90);
    assert_int_equal(mem_byte(code + 0x30), 0x90);
    assert_int_equal(mem_byte(code + 0x38), 0x90);
    assert_int_equal(mem_byte(code + 0x40), 0xCC);
    assert_int_equal(restore_bp(1), 0xC0000001u); /* already deleted by the stop */
    assert_int_equal(restore_bp(3), 0);
    assert_int_equal(write_bp(code + 0x30, &st), 1); /* its slot is free again */
}

static void test_switch_processor(void **state)
{
    host_teardown(&H);
    host_setup(&H, SIM_ARCH_X64, 2, NULL);
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    assert_int_equal(sc.number_processors, 2);
    assert_int_equal(sc.processor, 0);
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_SWITCH_PROCESSOR);
    m.processor = 1;
    host_no_reply(&H, &m);
    assert_int_equal(H.n, 2);
    kdh_err_t err;
    assert_int_equal(kdh_wire_state_change_decode(H.pkts[1].payload, H.pkts[1].len, H.arch, &sc, &err),
                     KDH_OK);
    assert_int_equal(sc.processor, 1);
    assert_true(sc.program_counter == fake_pc(H.m, 1));
    assert_true(sc.thread == base() + FAKE_KTHREAD + 0x100 + 0x30);
    host_control(&H, KDH_WIRE_TYPE_ACKNOWLEDGE, H.pkts[1].id);
    /* GetContext on the header's processor: CPU 1's Rax is 0x2222. */
    m = host_req(KDH_WIRE_API_GET_CONTEXT);
    m.processor = 1;
    kdh_wire_manip_t r;
    const uint8_t *d;
    size_t dl;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_true(kdh_get_u64(d + 0x78) == 0x2222);
    m.processor = 2; /* no such CPU */
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.return_status, 0xC0000001u);
    /* Version says MP with two CPUs. */
    m = host_req(KDH_WIRE_API_GET_VERSION);
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(r.u.version.flags, 0x7);
}

static void test_reboot(void **state)
{
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    uint64_t old = base();
    kdh_wire_manip_t m = host_req(KDH_WIRE_API_REBOOT);
    host_no_reply(&H, &m);
    assert_int_equal(H.n, 1);
    assert_true(base() == old + 0x100000);
    host_clear(&H);
    host_tick(&H, MS, MS);
    assert_int_equal(H.pkts[0].id, 0x80800800u);
    assert_int_equal(kdh_get_u32(H.pkts[0].payload), 0x3031);
    assert_true(kdh_get_u64(H.pkts[0].payload + 0x28) == old + 0x100000);
}

/* x86: sign-extended PC, x86 control report layout, DbgBreakPointWithStatus's `ret 4`. */
static void test_x86_breakin(void **state)
{
    host_teardown(&H);
    host_setup(&H, SIM_ARCH_X86, 1, NULL);
    host_boot(&H);
    host_tick(&H, MS, 30000);
    uint64_t pc_before = fake_pc(H.m, 0), sp_before = fake_sp(H.m, 0);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    assert_true(sc.program_counter == 0xFFFFFFFF80000000ull + FAKE_BWS);
    const uint8_t *p = H.pkts[host_find(&H, 0, 0, KDH_WIRE_TYPE_STATE_CHANGE64)].payload;
    assert_int_equal(kdh_get_u16(p + 0xC8), 16);       /* InstructionCount */
    assert_int_equal(kdh_get_u16(p + 0xCA), 3);        /* segs | standard CS */
    assert_int_equal(p[0xCC], 0xCC);
    assert_int_equal(p[0xCD], 0xC2);
    assert_int_equal(kdh_get_u16(p + 0xDC), 0x08);     /* SegCs */
    assert_int_equal(kdh_get_u16(p + 0xE2), 0x30);     /* SegFs */
    assert_int_equal(kdh_get_u32(p + 0xE4), 0x202);    /* EFlags */
    uint8_t st[8];
    uint32_t done;
    sim_machine_read(H.m, sp_before - 8, st, 8, &done);
    assert_int_equal(kdh_get_u32(st), (uint32_t)pc_before); /* return address */
    assert_int_equal(kdh_get_u32(st + 4), 1);                /* DBG_STATUS_CONTROL_C */

    kdh_wire_manip_t m = host_req(KDH_WIRE_API_GET_CONTEXT), r;
    const uint8_t *d;
    size_t dl;
    host_request(&H, &m, NULL, 0, &r, &d, &dl);
    assert_int_equal(dl, 0x2CC);
    uint8_t ctx[0x2CC];
    memcpy(ctx, d, sizeof ctx);
    kdh_put_u32(ctx + 0xB8, kdh_get_u32(ctx + 0xB8) + 1);
    m = host_req(KDH_WIRE_API_SET_CONTEXT);
    host_request(&H, &m, ctx, sizeof ctx, &r, &d, &dl);
    assert_int_equal(r.return_status, 0);
    host_cont2(&H, 1);
    host_clear(&H);
    host_wait_state_change(&H, 2, &sc);
    assert_int_equal(sc.u.exception.code, 0x80000004u);
    assert_true(sc.program_counter == pc_before);
    assert_true(fake_sp(H.m, 0) == sp_before);
}

/* Continue2's Dr7 reaches every CPU's context and shows in the next control report. */
static void test_continue2_dr7(void **state)
{
    host_teardown(&H);
    host_setup(&H, SIM_ARCH_X64, 2, NULL);
    host_boot(&H);
    kdh_wire_state_change_t sc;
    host_break(&H, &sc);
    kdh_wire_manip_t c = host_req(KDH_WIRE_API_CONTINUE2);
    c.u.cont2.status = KDH_WIRE_DBG_CONTINUE;
    c.u.cont2.dr7 = 0x401;
    host_no_reply(&H, &c);
    uint8_t ctx[0x4D0];
    for (int cpu = 0; cpu < 2; cpu++) {
        assert_int_equal(sim_machine_get_context(H.m, cpu, ctx, sizeof ctx), KDH_OK);
        assert_true(kdh_get_u64(ctx + 0x70) == 0x401);
    }
    host_clear(&H);
    host_wait_state_change(&H, 2, &sc); /* the int3 again (PC was not moved) */
    assert_true(sc.report.dr7 == 0x401);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_version_walkthrough_bytes, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_read_write_memory, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_breakin_context_and_int3, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_context_ex, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_no_context_ex_profile, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_read_control_query_unknown, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_breakpoints, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_switch_processor, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_reboot, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_x86_breakin, setup_x64, teardown),
        cmocka_unit_test_setup_teardown(test_continue2_dr7, setup_x64, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
