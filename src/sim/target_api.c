/* target_api.c: kdsim's answers to DBGKD_MANIPULATE_STATE64 requests (kd-protocol.md §3): version,
 * memory, contexts, control space, the 32-entry software breakpoint table, continue/step, switch
 * processor, reboot, query memory. Unknown APIs are answered with STATUS_UNSUCCESSFUL. */
#include "target_int.h"

#include <string.h>

enum {
    API_READ_VIRTUAL = 0x3130,
    API_WRITE_VIRTUAL = 0x3131,
    API_GET_CONTEXT = 0x3132,
    API_SET_CONTEXT = 0x3133,
    API_WRITE_BP = 0x3134,
    API_RESTORE_BP = 0x3135,
    API_CONTINUE = 0x3136,
    API_READ_CONTROL = 0x3137,
    API_REBOOT = 0x313B,
    API_CONTINUE2 = 0x313C,
    API_GET_VERSION = 0x3146,
    API_SWITCH_PROCESSOR = 0x3150,
    API_CLEAR_ALL_INTERNAL_BP = 0x315A,
    API_QUERY_MEMORY = 0x315C,
    API_GET_CONTEXT_EX = 0x315F,
    API_SET_CONTEXT_EX = 0x3160,
};

/* The reply: request header echoed, fields updated, optional data after 0x38. */
typedef struct reply {
    uint8_t *b; /* KD_MAX_PAYLOAD bytes */
    size_t len;
} reply_t;

static void reply_status(reply_t *r, uint32_t status)
{
    kdh_put_u32(r->b + 0x08, status);
}

static int cpu_ok(const sim_target_t *t, int cpu)
{
    return cpu >= 0 && cpu < t->info.cpus;
}

static void api_get_version(sim_target_t *t, reply_t *r)
{
    uint8_t *v = r->b + 0x10;
    int x64 = t->info.arch == SIM_ARCH_X64;
    memset(v, 0, 0x28);
    kdh_put_u16(v + 0x00, 0x000F); /* DBGKD_MAJOR_NT << 8 | free build */
    kdh_put_u16(v + 0x02, t->info.build);
    v[0x04] = 6;                   /* DBGKD_64BIT_PROTOCOL_VERSION2 */
    v[0x05] = x64 ? 2 : 0;         /* KD_SECONDARY_VERSION_AMD64_CONTEXT */
    kdh_put_u16(v + 0x06, (uint16_t)((t->info.cpus > 1 ? 0x1 : 0) | 0x2 | (x64 ? 0x4 : 0)));
    kdh_put_u16(v + 0x08, t->info.machine_type);
    v[0x0A] = 12;   /* PACKET_TYPE_MAX */
    v[0x0B] = 3;    /* state changes */
    v[0x0C] = 0x31; /* DbgKdMaximumManipulate - DbgKdMinimumManipulate */
    kdh_put_u64(v + 0x10, t->info.kern_base);
    kdh_put_u64(v + 0x18, t->info.ps_loaded_module_list);
    kdh_put_u64(v + 0x20, t->info.debugger_data_list);
    reply_status(r, KD_STATUS_SUCCESS);
}

/* Read memory (virtual or control space): clamped to what one reply can carry, partial at the
 * first unreadable byte; success when at least one byte was read. */
static void api_read(sim_target_t *t, reply_t *r, int cpu, int control)
{
    uint64_t addr = kdh_get_u64(r->b + 0x10);
    uint32_t count = kdh_get_u32(r->b + 0x18);
    if (count > KD_MAX_TRANSFER)
        count = KD_MAX_TRANSFER;
    uint32_t done = 0;
    int rc;
    if (control) {
        t->st.control_reads++;
        rc = cpu_ok(t, cpu) && !t->o.no_control_space
                 ? sim_machine_read_control(t->m, cpu, addr, r->b + KD_MANIP_HDR, count, &done)
                 : KDH_EINVAL;
    } else {
        rc = sim_machine_read(t->m, addr, r->b + KD_MANIP_HDR, count, &done);
    }
    if (done > count)
        done = count;
    kdh_put_u32(r->b + 0x1C, done);
    r->len = KD_MANIP_HDR + done;
    (void)rc; /* a partial read fails inside the machine yet still delivers bytes */
    reply_status(r, done > 0 ? KD_STATUS_SUCCESS : KD_STATUS_UNSUCCESSFUL);
}

static void api_write(sim_target_t *t, reply_t *r, const uint8_t *data, size_t dlen)
{
    uint64_t addr = kdh_get_u64(r->b + 0x10);
    uint32_t count = kdh_get_u32(r->b + 0x18);
    if (count > dlen)
        count = (uint32_t)dlen;
    uint32_t done = 0;
    sim_machine_write(t->m, addr, data, count, &done);
    if (done > count)
        done = count;
    kdh_put_u32(r->b + 0x1C, done);
    reply_status(r, done == count && count > 0 ? KD_STATUS_SUCCESS : KD_STATUS_UNSUCCESSFUL);
}

static int load_context(sim_target_t *t, int cpu, uint8_t *ctx)
{
    return sim_machine_get_context(t->m, cpu, ctx, t->ctx_size) == KDH_OK;
}

static void api_get_context(sim_target_t *t, reply_t *r, int cpu)
{
    if (!cpu_ok(t, cpu) || t->ctx_size > KD_MAX_TRANSFER ||
        !load_context(t, cpu, r->b + KD_MANIP_HDR)) {
        reply_status(r, KD_STATUS_UNSUCCESSFUL);
        return;
    }
    r->len = KD_MANIP_HDR + t->ctx_size;
    t->context_sent = 1;
    reply_status(r, KD_STATUS_SUCCESS);
}

/* KdpContextSent: a SetContext without a GetContext in this stop would write registers the
 * host never saw. */
static void api_set_context(sim_target_t *t, reply_t *r, int cpu, const uint8_t *data, size_t dlen)
{
    int ok = t->context_sent && cpu_ok(t, cpu) && dlen >= t->ctx_size &&
             sim_machine_set_context(t->m, cpu, data, t->ctx_size) == KDH_OK;
    reply_status(r, ok ? KD_STATUS_SUCCESS : KD_STATUS_UNSUCCESSFUL);
}

static void api_context_ex(sim_target_t *t, reply_t *r, int cpu, int set, const uint8_t *data,
                           size_t dlen)
{
    uint32_t off = kdh_get_u32(r->b + 0x10);
    uint32_t count = kdh_get_u32(r->b + 0x14);
    kdh_put_u32(r->b + 0x18, 0);
    uint8_t ctx[0x4D0];
    if (t->o.no_context_ex || !cpu_ok(t, cpu) || t->ctx_size > sizeof ctx || off >= t->ctx_size ||
        (set && !t->context_sent) || !load_context(t, cpu, ctx)) {
        reply_status(r, KD_STATUS_UNSUCCESSFUL);
        return;
    }
    if (count > t->ctx_size - off)
        count = (uint32_t)(t->ctx_size - off);
    if (count > KD_MAX_TRANSFER)
        count = KD_MAX_TRANSFER;
    if (set) {
        if (count > dlen)
            count = (uint32_t)dlen;
        memcpy(ctx + off, data, count);
        if (sim_machine_set_context(t->m, cpu, ctx, t->ctx_size) != KDH_OK) {
            reply_status(r, KD_STATUS_UNSUCCESSFUL);
            return;
        }
    } else {
        memcpy(r->b + KD_MANIP_HDR, ctx + off, count);
        r->len = KD_MANIP_HDR + count;
        t->context_sent = 1;
    }
    kdh_put_u32(r->b + 0x18, count);
    reply_status(r, KD_STATUS_SUCCESS);
}

static void api_write_bp(sim_target_t *t, reply_t *r)
{
    uint64_t addr = kdh_get_u64(r->b + 0x10);
    kdh_put_u32(r->b + 0x18, 0);
    int free_slot = -1;
    for (int i = 0; i < KD_BP_MAX; i++) {
        if (t->bp[i].used && t->bp[i].addr == addr) {
            reply_status(r, KD_STATUS_UNSUCCESSFUL);
            return;
        }
        if (!t->bp[i].used && free_slot < 0)
            free_slot = i;
    }
    uint8_t orig = 0, cc = 0xCC;
    uint32_t done = 0;
    if (free_slot < 0 || sim_machine_read(t->m, addr, &orig, 1, &done) != KDH_OK || done != 1 ||
        sim_machine_write(t->m, addr, &cc, 1, &done) != KDH_OK || done != 1) {
        reply_status(r, KD_STATUS_UNSUCCESSFUL);
        return;
    }
    t->bp[free_slot] = (sim_bp_t){.used = 1, .addr = addr, .orig = orig};
    kdh_put_u32(r->b + 0x18, (uint32_t)free_slot + 1);
    reply_status(r, KD_STATUS_SUCCESS);
}

static void api_restore_bp(sim_target_t *t, reply_t *r)
{
    uint32_t h = kdh_get_u32(r->b + 0x10);
    if (h == 0 || h > KD_BP_MAX || !t->bp[h - 1].used) {
        reply_status(r, KD_STATUS_UNSUCCESSFUL);
        return;
    }
    sim_bp_t *b = &t->bp[h - 1];
    uint32_t done = 0;
    sim_machine_write(t->m, b->addr, &b->orig, 1, &done);
    b->used = 0;
    reply_status(r, KD_STATUS_SUCCESS);
}

/* QueryMemory: kernel space when the address is in the upper half (sign-extended on x86);
 * read/write/execute when a byte there can be read, else STATUS_UNSUCCESSFUL. */
static void api_query_memory(sim_target_t *t, reply_t *r)
{
    uint64_t addr = kdh_get_u64(r->b + 0x10);
    uint8_t b;
    uint32_t done = 0;
    int mapped = sim_machine_read(t->m, addr, &b, 1, &done) == KDH_OK && done == 1;
    kdh_put_u32(r->b + 0x20, (addr >> 63) ? 2 : 0);
    kdh_put_u32(r->b + 0x24, mapped ? 0x7 : 0);
    reply_status(r, mapped ? KD_STATUS_SUCCESS : KD_STATUS_UNSUCCESSFUL);
}

/* Continue2: TraceFlag arms one single step on the stopped CPU; Dr7 goes to every CPU. */
static void do_continue2(sim_target_t *t, const uint8_t *p)
{
    uint32_t trace = kdh_get_u32(p + 0x14);
    int x64 = t->info.arch == SIM_ARCH_X64;
    uint64_t dr7 = x64 ? kdh_get_u64(p + 0x18) : kdh_get_u32(p + 0x18);
    size_t off = x64 ? 0x70 : 0x18;
    uint8_t ctx[0x4D0];
    for (int c = 0; c < t->info.cpus && t->ctx_size <= sizeof ctx; c++) {
        if (!load_context(t, c, ctx))
            continue;
        uint64_t cur = x64 ? kdh_get_u64(ctx + off) : kdh_get_u32(ctx + off);
        if (cur == dr7)
            continue;
        if (x64)
            kdh_put_u64(ctx + off, dr7);
        else
            kdh_put_u32(ctx + off, (uint32_t)dr7);
        sim_machine_set_context(t->m, c, ctx, t->ctx_size);
    }
    if (trace)
        sim_machine_set_trace(t->m, t->stop_cpu, 1);
}

static void resume(sim_target_t *t)
{
    t->stop_kind = PEND_NONE;
    t->context_sent = 0;
    t->state = SIM_TARGET_RUNNING;
}

/* SwitchProcessor: the new CPU reports its own state change from where it is frozen. */
static void switch_processor(sim_target_t *t, int cpu)
{
    if (!cpu_ok(t, cpu))
        cpu = t->stop_cpu;
    uint8_t ctx[0x4D0];
    uint64_t pc = 0, thread = 0;
    int x64 = t->info.arch == SIM_ARCH_X64;
    if (t->ctx_size <= sizeof ctx && load_context(t, cpu, ctx))
        pc = x64 ? kdh_get_u64(ctx + 0xF8) : kdh_sign_extend32(kdh_get_u32(ctx + 0xB8));
    uint8_t b[8] = {0};
    uint32_t done = 0;
    if (x64 && sim_machine_read_control(t->m, cpu, 3, b, 8, &done) == KDH_OK && done == 8)
        thread = kdh_get_u64(b);
    else if (!x64 && cpu == t->stop_cpu)
        thread = kdh_get_u64(t->stop_payload + 0x10);
    sim_kd_report_exception(t, cpu, thread, pc, 0x80000003u);
}

void sim_kd_manipulate(sim_target_t *t, const uint8_t *p, size_t len)
{
    reply_t r = {.b = t->reply, .len = 0};
    uint32_t api = kdh_get_u32(p);
    int cpu = kdh_get_u16(p + 0x06);
    const uint8_t *data = p + KD_MANIP_HDR;
    size_t dlen = len - KD_MANIP_HDR;

    switch (api) {
    case API_CONTINUE:
        resume(t);
        return;
    case API_CONTINUE2:
        do_continue2(t, p);
        resume(t);
        return;
    case API_SWITCH_PROCESSOR:
        switch_processor(t, cpu);
        return;
    case API_CLEAR_ALL_INTERNAL_BP:
        return;
    case API_REBOOT:
        sim_target_reboot(t, NULL);
        return;
    default:
        break;
    }

    memcpy(r.b, p, KD_MANIP_HDR);
    r.len = KD_MANIP_HDR;
    switch (api) {
    case API_GET_VERSION: api_get_version(t, &r); break;
    case API_READ_VIRTUAL: api_read(t, &r, cpu, 0); break;
    case API_READ_CONTROL: api_read(t, &r, cpu, 1); break;
    case API_WRITE_VIRTUAL: api_write(t, &r, data, dlen); break;
    case API_GET_CONTEXT: api_get_context(t, &r, cpu); break;
    case API_SET_CONTEXT: api_set_context(t, &r, cpu, data, dlen); break;
    case API_GET_CONTEXT_EX: api_context_ex(t, &r, cpu, 0, data, dlen); break;
    case API_SET_CONTEXT_EX: api_context_ex(t, &r, cpu, 1, data, dlen); break;
    case API_WRITE_BP: api_write_bp(t, &r); break;
    case API_RESTORE_BP: api_restore_bp(t, &r); break;
    case API_QUERY_MEMORY: api_query_memory(t, &r); break;
    default: reply_status(&r, KD_STATUS_UNSUCCESSFUL); break;
    }
    sim_link_send(t, PEND_REPLY, KD_TYPE_STATE_MANIPULATE, r.b, r.len);
}
