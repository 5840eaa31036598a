/* target_report.c: what kdsim's target sends on its own: exception and load-symbols state changes
 * (with the control report and the instruction stream, after deleting its own breakpoints in the
 * reported range), DbgPrint as DEBUG_IO, and the break-in (a DbgBreakPointWithStatus call). */
#include "target_int.h"

#include <string.h>

#define SC_SIZE 0xF0u
#define SC_EXCEPTION 0x3030u
#define SC_LOAD_SYMBOLS 0x3031u
#define PROCESSOR_LEVEL 6 /* KeProcessorLevel: CPU family */

static int is_x64(const sim_target_t *t)
{
    return t->info.arch == SIM_ARCH_X64;
}

static uint64_t read_ptr(sim_target_t *t, uint64_t va, int *ok)
{
    uint8_t b[8] = {0};
    uint32_t done = 0;
    uint32_t n = (uint32_t)t->info.pointer_size;
    *ok = sim_machine_read(t->m, va, b, n, &done) == KDH_OK && done == n;
    return n == 8 ? kdh_get_u64(b) : kdh_sign_extend32(kdh_get_u32(b));
}

/* BreakpointWithStatus (KDDEBUGGER_DATA64 +0x20) is where a break-in stops, so the host can
 * recognise one; found through DebuggerDataList like a host would. */
void sim_kd_refresh_boot(sim_target_t *t)
{
    sim_machine_info(t->m, &t->info);
    t->ctx_size = sim_machine_context_size(t->m);
    t->bws = 0;
    int ok = 0;
    uint64_t block = read_ptr(t, t->info.debugger_data_list, &ok);
    if (!ok || block == t->info.debugger_data_list)
        return;
    uint8_t b[8];
    uint32_t done = 0;
    if (sim_machine_read(t->m, block + 0x20, b, 8, &done) == KDH_OK && done == 8)
        t->bws = kdh_get_u64(b);
}

void sim_kd_clear_breakpoints(sim_target_t *t)
{
    for (int i = 0; i < KD_BP_MAX; i++) {
        if (t->bp[i].used) {
            uint32_t done;
            sim_machine_write(t->m, t->bp[i].addr, &t->bp[i].orig, 1, &done);
        }
        t->bp[i].used = 0;
    }
}

/* KdpDeleteBreakpointRange: the host must re-insert what it still wants before going on. */
static int delete_bp_range(sim_target_t *t, uint64_t lo, uint64_t hi)
{
    int n = 0;
    for (int i = 0; i < KD_BP_MAX; i++) {
        if (t->bp[i].used && t->bp[i].addr >= lo && t->bp[i].addr <= hi) {
            uint32_t done;
            sim_machine_write(t->m, t->bp[i].addr, &t->bp[i].orig, 1, &done);
            t->bp[i].used = 0;
            n++;
        }
    }
    return n;
}

/* Fills the common part of a state change (0x00-0x1F) and the control report (0xC0-0xEF). */
static void common_state(sim_target_t *t, uint8_t *p, uint32_t new_state, int cpu, uint64_t thread,
                         uint64_t pc)
{
    memset(p, 0, SC_SIZE);
    kdh_put_u32(p + 0x00, new_state);
    kdh_put_u16(p + 0x04, PROCESSOR_LEVEL);
    kdh_put_u16(p + 0x06, (uint16_t)cpu);
    kdh_put_u32(p + 0x08, (uint32_t)t->info.cpus);
    kdh_put_u64(p + 0x10, thread);
    kdh_put_u64(p + 0x18, pc);

    uint8_t ctx[0x4D0];
    memset(ctx, 0, sizeof ctx);
    size_t cs = t->ctx_size <= sizeof ctx ? t->ctx_size : sizeof ctx;
    sim_machine_get_context(t->m, cpu, ctx, cs);

    uint8_t stream[16];
    uint32_t count = 0;
    sim_machine_read(t->m, pc, stream, sizeof stream, &count);
    if (count > 0 && delete_bp_range(t, pc, pc + count - 1) > 0)
        sim_machine_read(t->m, pc, stream, count, &count);

    if (is_x64(t)) {
        uint16_t segcs = kdh_get_u16(ctx + 0x38);
        kdh_put_u64(p + 0xC0, kdh_get_u64(ctx + 0x68));
        kdh_put_u64(p + 0xC8, kdh_get_u64(ctx + 0x70));
        kdh_put_u32(p + 0xD0, kdh_get_u32(ctx + 0x44));
        kdh_put_u16(p + 0xD4, (uint16_t)count);
        kdh_put_u16(p + 0xD6, (uint16_t)(0x1 | (segcs == 0x10 ? 0x2 : 0)));
        memcpy(p + 0xD8, stream, count);
        kdh_put_u16(p + 0xE8, segcs);
        kdh_put_u16(p + 0xEA, kdh_get_u16(ctx + 0x3A));
        kdh_put_u16(p + 0xEC, kdh_get_u16(ctx + 0x3C));
        kdh_put_u16(p + 0xEE, kdh_get_u16(ctx + 0x3E));
    } else {
        uint16_t segcs = (uint16_t)kdh_get_u32(ctx + 0xBC);
        kdh_put_u32(p + 0xC0, kdh_get_u32(ctx + 0x14));
        kdh_put_u32(p + 0xC4, kdh_get_u32(ctx + 0x18));
        kdh_put_u16(p + 0xC8, (uint16_t)count);
        kdh_put_u16(p + 0xCA, (uint16_t)(0x1 | (segcs == 0x08 ? 0x2 : 0)));
        memcpy(p + 0xCC, stream, count);
        kdh_put_u16(p + 0xDC, segcs);
        kdh_put_u16(p + 0xDE, (uint16_t)kdh_get_u32(ctx + 0x98));
        kdh_put_u16(p + 0xE0, (uint16_t)kdh_get_u32(ctx + 0x94));
        kdh_put_u16(p + 0xE2, (uint16_t)kdh_get_u32(ctx + 0x90));
        kdh_put_u32(p + 0xE4, kdh_get_u32(ctx + 0xC0));
    }
}

static void begin_stop(sim_target_t *t, int kind, int cpu, size_t len)
{
    t->stop_kind = kind;
    t->stop_cpu = cpu;
    t->stop_len = len;
    t->context_sent = 0;
    t->break_pending = 0; /* already stopped: a break request is satisfied */
    t->st.stops++;
    sim_link_send(t, kind, KD_TYPE_STATE_CHANGE64, t->stop_payload, len);
}

void sim_kd_report_exception(sim_target_t *t, int cpu, uint64_t thread, uint64_t pc, uint32_t code)
{
    uint8_t *p = t->stop_payload;
    common_state(t, p, SC_EXCEPTION, cpu, thread, pc);
    kdh_put_u32(p + 0x20, code);
    kdh_put_u64(p + 0x30, pc);
    if (code == 0x80000003u)
        kdh_put_u32(p + 0x38, 1); /* ExceptionInformation[0] = BREAKPOINT_BREAK (0) */
    kdh_put_u32(p + 0xB8, 1);     /* FirstChance */
    kdh_put_u32(p + SC_SIZE, 1);  /* trace data, as ReactOS and QEMU append */
    begin_stop(t, PEND_EXCEPTION, cpu, SC_SIZE + 4);
}

static int report_load_symbols(sim_target_t *t, const sim_stop_t *s)
{
    if (t->not_present)
        return 0;
    uint8_t *p = t->stop_payload;
    common_state(t, p, SC_LOAD_SYMBOLS, s->cpu, s->thread, s->pc);
    size_t plen = strnlen(s->path, sizeof s->path - 1);
    int system_gone = s->unload && s->base == UINT64_MAX;
    if (system_gone)
        plen = 0;
    kdh_put_u32(p + 0x20, system_gone ? 0 : (uint32_t)(plen + 1));
    kdh_put_u64(p + 0x28, s->base);
    kdh_put_u32(p + 0x38, s->checksum);
    kdh_put_u32(p + 0x3C, s->size);
    p[0x40] = s->unload ? 1 : 0;
    size_t len = SC_SIZE;
    if (!system_gone) {
        memcpy(p + SC_SIZE, s->path, plen);
        p[SC_SIZE + plen] = 0;
        len += plen + 1;
    }
    begin_stop(t, PEND_LOADSYM, s->cpu, len);
    return 1;
}

static int report_print(sim_target_t *t, const sim_stop_t *s)
{
    t->st.prints++;
    if (t->not_present)
        return 0;
    uint8_t p[0x10 + 512];
    size_t n = s->text_len < 512 ? s->text_len : 512;
    memset(p, 0, 0x10);
    kdh_put_u32(p + 0, 0x3230);
    kdh_put_u16(p + 4, PROCESSOR_LEVEL);
    kdh_put_u16(p + 6, (uint16_t)s->cpu);
    kdh_put_u32(p + 8, (uint32_t)n);
    memcpy(p + 0x10, s->text, n);
    sim_link_send(t, PEND_PRINT, KD_TYPE_DEBUG_IO, p, 0x10 + n);
    return 1;
}

int sim_kd_report_stop(sim_target_t *t, const sim_stop_t *s)
{
    switch (s->kind) {
    case SIM_STOP_BREAKPOINT:
    case SIM_STOP_SINGLE_STEP: {
        uint32_t code = s->exception_code;
        if (!code)
            code = s->kind == SIM_STOP_BREAKPOINT ? 0x80000003u : 0x80000004u;
        sim_kd_report_exception(t, s->cpu, s->thread, s->pc, code);
        return 1;
    }
    case SIM_STOP_PRINT:
        return report_print(t, s);
    case SIM_STOP_LOAD_SYMBOLS:
        return report_load_symbols(t, s);
    default:
        return 0;
    }
}

/* A real break-in is a timer interrupt calling DbgBreakPointWithStatus(DBG_STATUS_CONTROL_C);
 * the machine has no interrupts, so emulate that call on CPU 0: push the interrupted PC as the
 * return address (and, for x86 `ret 4`, the status argument) and jump to the int3. When the
 * host steps PC past the int3, the `ret` returns to the interrupted code with all registers as
 * they were. Without a usable BreakpointWithStatus the stop is reported where CPU 0 is. */
void sim_kd_inject_breakin(sim_target_t *t)
{
    uint8_t ctx[0x4D0];
    size_t cs = t->ctx_size <= sizeof ctx ? t->ctx_size : sizeof ctx;
    if (sim_machine_get_context(t->m, 0, ctx, cs) != KDH_OK)
        return;
    int x64 = is_x64(t);
    uint64_t pc = x64 ? kdh_get_u64(ctx + 0xF8) : kdh_sign_extend32(kdh_get_u32(ctx + 0xB8));
    uint8_t code[4] = {0};
    uint32_t done = 0;
    if (!t->bws || sim_machine_read(t->m, t->bws, code, 4, &done) != KDH_OK || done < 2 ||
        code[0] != 0xCC) {
        uint64_t thread = 0;
        uint8_t b[8] = {0};
        if (x64 && sim_machine_read_control(t->m, 0, 3, b, 8, &done) == KDH_OK && done == 8)
            thread = kdh_get_u64(b);
        sim_kd_report_exception(t, 0, thread, pc, 0x80000003u);
        return;
    }
    uint8_t frame[8 + 64];
    size_t n = 0;
    if (!x64 && code[1] == 0xC2 && done >= 4) {
        uint16_t args = kdh_get_u16(code + 2);
        if (args > 64)
            args = 64;
        memset(frame, 0, sizeof frame);
        /* stack grows down: [ret][status][...] */
        kdh_put_u32(frame + 4, 1);
        n = 4 + args;
    } else {
        n = x64 ? 8 : 4;
    }
    if (x64)
        kdh_put_u64(frame, pc);
    else
        kdh_put_u32(frame, (uint32_t)pc);
    uint64_t sp = x64 ? kdh_get_u64(ctx + 0x98) : kdh_get_u32(ctx + 0xC4);
    sp -= n;
    if (!x64)
        sp = kdh_sign_extend32((uint32_t)sp);
    if (sim_machine_write(t->m, sp, frame, (uint32_t)n, &done) != KDH_OK || done != n)
        return;
    if (x64) {
        kdh_put_u64(ctx + 0x98, sp);
        kdh_put_u64(ctx + 0xF8, t->bws);
    } else {
        kdh_put_u32(ctx + 0xC4, (uint32_t)sp);
        kdh_put_u32(ctx + 0xB8, (uint32_t)t->bws);
    }
    sim_machine_set_context(t->m, 0, ctx, cs);
}
