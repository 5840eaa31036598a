/* truth.c: the machine's own record of the call stack and the ground-truth file built from it.
 * A block hook sees every translated block start; the block before it ran to its end, so its
 * instructions are counted (the machine's clock) and, when its last instruction was a call,
 * the return address is pushed onto a shadow stack; after a ret the stack pops back to the entry
 * matching the address execution arrived at (so tail jumps, __chkstk's push/ret and unbalanced
 * paths stay right). No unwinding is involved, which makes the record an independent oracle
 * for the host's unwinder.
 *
 * Ground truth: one JSON line per breakpoint stop (PoolHitTag, special pool, patched 0xCC):
 *   {"seq","boot","time_ns","cpu","thread","pc","kind":"alloc"|"free"|"break","tag","tag_u32",
 *    "size","requested","block","stack":[{"module","rva"}...],"regs":{...}}
 * stack is innermost first: frame 0 is the int 3 itself, then return addresses (as `k` shows
 * them), ending at the return into nt!PspSystemThreadStartup's frame. size = bytes the pool
 * tracker counts; requested = bytes asked for (alloc) or usable (free); addresses are hex
 * strings (sign-extended on x86); regs = the callee-saved values the item started with (what an
 * unwinder must recover in the outermost frame).
 * With cfg.truth_ops_tag, every allocation and free of that tag is also recorded as it happens
 * (a debugger's breakpoints elsewhere see them; PoolHitTag need not be armed):
 *   {"seq","boot","time_ns","cpu","thread","pc","kind":"pool_alloc"|"pool_free","tag","tag_u32",
 *    "size","requested","block","stack"} with stack[0] = the tracker routine's entry. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "machine_int.h"

/* A ret pops back to the entry matching the address it returned to; an unmatched target (a
 * return into code whose call was not seen) leaves the stack alone. */
static void shadow_ret(sim_machine_t *m, int c, uint64_t target)
{
    sim_cpu_t *cpu = &m->cpus[c];
    int top = cpu->shadow_depth < SIM_SHADOW_MAX ? cpu->shadow_depth : SIM_SHADOW_MAX;
    for (int k = top - 1; k >= 0; k--) {
        if (cpu->shadow[k].ret == target) {
            cpu->shadow_depth = k;
            return;
        }
    }
}

void sim_block_cache_clear(sim_machine_t *m)
{
    memset(m->blocks, 0, sizeof m->blocks);
}

/* Walks the block's instructions once. Call and ret always end a translated block, so only the
 * last instruction can change the shadow stack. */
static const sim_block_t *block_info(sim_machine_t *m, uint64_t addr, uint32_t size)
{
    sim_block_t *b = &m->blocks[(addr ^ (addr >> 12)) & (SIM_BLOCK_CACHE - 1)];
    if (b->size == size && b->addr == addr)
        return b;
    b->addr = addr;
    b->size = size;
    b->ninsns = 0;
    b->kind = SIM_INSN_OTHER;
    b->last_end = addr;
    const uint8_t *p = size ? sim_mem_host(m, addr, size) : NULL;
    uint32_t off = 0;
    int x64 = m->arch == SIM_ARCH_X64;
    while (p && off < size) {
        sim_insn_kind_t kind;
        uint32_t len = sim_insn_decode(p + off, size - off, x64, &kind);
        if (len == 0)
            break;
        b->ninsns++;
        b->kind = (uint8_t)kind;
        off += len;
        b->last_end = addr + off;
    }
    if (!p || off != size) {
        /* Not fixture code (bytes a debugger wrote, or an unknown encoding): keep running with
         * an approximate count rather than fail the machine, and say so in decode_misses. */
        m->decode_misses++;
        b->ninsns++;
        b->kind = SIM_INSN_OTHER;
        b->last_end = addr + size;
    }
    return b;
}

void sim_block_flush(sim_machine_t *m, uint64_t next_pc)
{
    if (!m->have_pending)
        return;
    m->have_pending = 0;
    m->insns += m->pending.ninsns;
    if (m->pending.kind == SIM_INSN_CALL)
        sim_shadow_push(m, m->running_cpu, m->pending.last_end);
    else if (m->pending.kind == SIM_INSN_RET)
        shadow_ret(m, m->running_cpu, next_pc);
}

void sim_block_hook(uc_engine *uc, uint64_t address, uint32_t size, void *user)
{
    sim_machine_t *m = user;
    if (m->arch == SIM_ARCH_X86)
        address &= 0xffffffffu;
    sim_block_flush(m, address);  /* the previous block ran to its end and led here */
    if (m->stepping)
        return;
    if (m->watch_idle && sim_in_idle_loop(m, address)) {
        uc_emu_stop(uc);  /* a diverted idle CPU is back where it was interrupted */
        return;
    }
    /* The instruction limit lives here rather than in uc_emu_start's count, which installs a
     * code hook and so throws away all translated code every time. */
    if (m->insns >= m->insn_limit) {
        uc_emu_stop(uc);
        return;
    }
    m->pending = *block_info(m, address, size);
    m->have_pending = 1;
    if (m->cfg.truth_ops_tag && (address == m->insert_tracker || address == m->remove_tracker))
        sim_truth_pool_op(m, address);
}

/* One instruction run under Unicorn's count (a single step): count it and apply its call or
 * ret, as a block of one. */
void sim_step_account(sim_machine_t *m, uint64_t pc, uint64_t next_pc)
{
    m->have_pending = 0;
    m->insns = 1;
    uint8_t buf[15];
    uint32_t avail = 0;
    sim_machine_read(m, pc, buf, sizeof buf, &avail);
    sim_insn_kind_t kind;
    uint32_t len = sim_insn_decode(buf, avail, m->arch == SIM_ARCH_X64, &kind);
    if (len == 0)
        return;
    if (kind == SIM_INSN_CALL)
        sim_shadow_push(m, m->running_cpu, pc + len);
    else if (kind == SIM_INSN_RET)
        shadow_ret(m, m->running_cpu, next_pc);
}

void sim_shadow_push(sim_machine_t *m, int c, uint64_t ret)
{
    sim_cpu_t *cpu = &m->cpus[c];
    if (cpu->shadow_depth < SIM_SHADOW_MAX)
        cpu->shadow[cpu->shadow_depth].ret = ret;
    cpu->shadow_depth++;  /* counted past the cap so the pops stay balanced */
}

/* nt!KiIdleLoop is `pause; jmp` (4 bytes); 16 bytes covers it whatever the compiler pads. */
int sim_in_idle_loop(const sim_machine_t *m, uint64_t pc)
{
    return pc - m->idle_loop < 16;
}

static json_t *hex(const sim_machine_t *m, uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "0x%llx", (unsigned long long)sim_report_addr(m, v));
    return json_string(b);
}

static json_t *frame(const sim_machine_t *m, uint64_t va)
{
    const sim_image_t *im = sim_image_by_addr(m, va);
    if (!im)
        return json_pack("{s:n,s:o}", "module", "addr", hex(m, va));
    return json_pack("{s:s,s:I}", "module", im->name, "rva", (json_int_t)(va - im->base));
}

static void tag_text(uint32_t tag, char out[5])
{
    for (int i = 0; i < 4; i++) {
        uint8_t c = (uint8_t)(tag >> (8 * i));
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[4] = 0;
}

/* {"Leak":[NonPagedAllocs, NonPagedFrees, NonPagedBytes, PagedAllocs, PagedFrees, PagedBytes],...}
 * from nt's table (the fixture's own pointer and size variables; layout in ntoskrnl.c). */
static json_t *tracker_json(sim_machine_t *m)
{
    uint64_t table = 0, entries = 0;
    if (sim_mem_get_ptr(m, m->pool_track_table, &table) != KDH_OK ||
        sim_mem_get_ptr(m, m->pool_track_table_size, &entries) != KDH_OK)
        return NULL;
    int x64 = m->psize == 8;
    if (!x64)
        entries &= 0xFFFFFFFFu;
    uint32_t esz = x64 ? 0x28 : 0x1C;
    json_t *o = json_object();
    for (uint64_t i = 0; o && i < entries && i < (1u << 20); i++) {
        const uint8_t *e = sim_mem_host(m, table + i * esz, esz);
        if (!e)
            break;
        uint32_t key = kdh_get_u32(e);
        if (!key)
            continue;
        uint64_t v[6];
        v[0] = kdh_get_u32(e + 4);
        v[1] = kdh_get_u32(e + 8);
        v[2] = x64 ? kdh_get_u64(e + 0x10) : kdh_get_u32(e + 0xC);
        v[3] = kdh_get_u32(e + (x64 ? 0x18 : 0x10));
        v[4] = kdh_get_u32(e + (x64 ? 0x1C : 0x14));
        v[5] = x64 ? kdh_get_u64(e + 0x20) : kdh_get_u32(e + 0x18);
        json_t *a = json_array();
        for (int k = 0; a && k < 6; k++)
            json_array_append_new(a, json_integer((json_int_t)v[k]));
        char tag[5];
        tag_text(key, tag);
        json_object_set_new(o, tag, a);
    }
    return o;
}

int sim_truth_write(sim_machine_t *m, const sim_stop_t *stop, kdh_err_t *err)
{
    if (!m->truth)
        return KDH_OK;
    uint64_t op[5] = {0};
    for (int i = 0; i < 5; i++)
        sim_mem_get_ptr(m, m->current_pool_op + (uint64_t)i * m->psize, &op[i]);
    const char *kind = op[0] == 1 ? "alloc" : op[0] == 2 ? "free" : "break";
    uint64_t pc = m->cpus[stop->cpu].regs.rip;

    json_t *stack = json_array();
    json_array_append_new(stack, frame(m, pc));
    const sim_cpu_t *cpu = &m->cpus[stop->cpu];
    int depth = cpu->shadow_depth < SIM_SHADOW_MAX ? cpu->shadow_depth : SIM_SHADOW_MAX;
    for (int k = depth - 1; k >= 0; k--)
        json_array_append_new(stack, frame(m, cpu->shadow[k].ret));

    json_t *regs = json_object();
    if (m->arch == SIM_ARCH_X64) {
        static const char *const names[8] = {"rbx", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15"};
        for (int i = 0; i < 8; i++) {
            char b[24];
            snprintf(b, sizeof b, "0x%llx", (unsigned long long)m->seeds.v[i]);
            json_object_set_new(regs, names[i], json_string(b));
        }
        for (int i = 0; i < 10; i++) {
            char n[8], b[40];
            snprintf(n, sizeof n, "xmm%d", 6 + i);
            snprintf(b, sizeof b, "0x%016llx%016llx", (unsigned long long)m->seeds.xmm_hi[i],
                     (unsigned long long)m->seeds.xmm_lo[i]);
            json_object_set_new(regs, n, json_string(b));
        }
    } else {
        static const char *const names[4] = {"ebx", "ebp", "esi", "edi"};
        for (int i = 0; i < 4; i++) {
            char b[16];
            snprintf(b, sizeof b, "0x%x", (unsigned)m->seeds.v[i]);
            json_object_set_new(regs, names[i], json_string(b));
        }
    }

    char tag[5];
    tag_text((uint32_t)op[1], tag);
    json_t *line = json_pack("{s:I,s:I,s:I,s:i,s:o,s:o,s:s}", "seq", (json_int_t)++m->truth_seq,
                             "boot", (json_int_t)m->boot, "time_ns", (json_int_t)m->now_ns, "cpu", stop->cpu,
                             "thread", hex(m, m->cpus[stop->cpu].current_thread), "pc", hex(m, pc), "kind", kind);
    if (!line) {
        json_decref(stack);
        json_decref(regs);
        return kdh_err_set(err, KDH_ENOMEM, "kdsim: out of memory writing ground truth");
    }
    if (op[0] == 1 || op[0] == 2) {
        json_object_set_new(line, "tag", json_string(tag));
        json_object_set_new(line, "tag_u32", json_integer((json_int_t)(uint32_t)op[1]));
        json_object_set_new(line, "size", json_integer((json_int_t)op[2]));
        json_object_set_new(line, "requested", json_integer((json_int_t)op[3]));
        json_object_set_new(line, "block", hex(m, op[4]));
    }
    /* The memory manager's pool counters at this stop, read from nt's variables directly (not
     * through KDDEBUGGER_DATA64), in their own units (see tests/fixtures/ntoskrnl.c). */
    json_t *mm = json_object();
    for (size_t i = 0; mm && i < SIM_MM_VARS; i++) {
        uint64_t v = 0;
        if (sim_mm_vars[i].counter && sim_mem_get_ptr(m, m->mm_vars[i], &v) == KDH_OK)
            json_object_set_new(mm, sim_mm_vars[i].name, json_integer((json_int_t)(m->psize == 4 ? (uint32_t)v : v)));
    }
    if (mm)
        json_object_set_new(line, "mm", mm);
    if (op[0] != 1 && op[0] != 2) {
        /* A stop outside any pool operation (a break-in): every tag's tracker counters, so a host
         * reading the table at this stop can be checked tag by tag. */
        json_t *tracker = tracker_json(m);
        if (tracker)
            json_object_set_new(line, "tracker", tracker);
    }
    json_object_set_new(line, "stack", stack);
    json_object_set_new(line, "regs", regs);
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (!text)
        return kdh_err_set(err, KDH_ENOMEM, "kdsim: out of memory writing ground truth");
    int bad = fprintf(m->truth, "%s\n", text) < 0 || fflush(m->truth) != 0;
    free(text);
    if (bad)
        return kdh_err_set(err, KDH_EIO, "kdsim: cannot write ground truth to %s", m->truth_path);
    return KDH_OK;
}

void sim_truth_pool_op(sim_machine_t *m, uint64_t pc)
{
    if (!m->truth)
        return;
    uint64_t op[5] = {0};
    for (int i = 0; i < 5; i++)
        sim_mem_get_ptr(m, m->current_pool_op + (uint64_t)i * m->psize, &op[i]);
    if ((op[0] != 1 && op[0] != 2) || (((uint32_t)op[1] ^ m->cfg.truth_ops_tag) & 0x7fffffffu) != 0)
        return;
    int c = m->running_cpu;
    const sim_cpu_t *cpu = &m->cpus[c];
    json_t *stack = json_array();
    json_array_append_new(stack, frame(m, pc));
    int depth = cpu->shadow_depth < SIM_SHADOW_MAX ? cpu->shadow_depth : SIM_SHADOW_MAX;
    for (int k = depth - 1; k >= 0; k--)
        json_array_append_new(stack, frame(m, cpu->shadow[k].ret));
    char tag[5];
    tag_text((uint32_t)op[1], tag);
    json_t *line = json_pack("{s:I,s:I,s:I,s:i,s:o,s:o,s:s,s:s,s:I,s:I,s:I,s:o,s:o}", "seq",
                             (json_int_t)++m->truth_seq, "boot", (json_int_t)m->boot, "time_ns",
                             (json_int_t)m->now_ns, "cpu", c, "thread", hex(m, cpu->current_thread), "pc",
                             hex(m, pc), "kind", op[0] == 1 ? "pool_alloc" : "pool_free", "tag", tag,
                             "tag_u32", (json_int_t)(uint32_t)op[1], "size", (json_int_t)op[2], "requested",
                             (json_int_t)op[3], "block", hex(m, op[4]), "stack", stack);
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(line);
    if (text) {
        fprintf(m->truth, "%s\n", text);
        fflush(m->truth);
    }
    free(text);
}
