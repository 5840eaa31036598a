/* unwind.c: the walk driver shared by x64 and x86: frame bookkeeping, the stop conditions,
 * and the memory-view plumbing that turns a "not cached" answer into an exact need while
 * keeping the state at the last completed frame, so a retry repeats no finished work. */
#include "internal.h"

#include <string.h>

#define USER_LIMIT_X64 0x8000000000000000ull
#define USER_LIMIT_X86 0xFFFFFFFF80000000ull

void kdh_unwind_config_default(kdh_unwind_config_t *cfg, kdh_unwind_arch_t arch)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = arch;
    cfg->user_limit = arch == KDH_UNWIND_X86 ? USER_LIMIT_X86 : USER_LIMIT_X64;
    cfg->max_frames = 64;
    cfg->prefetch_bytes = 0x600;
    cfg->scan_words = 40;
}

int kdh_unwind_init(kdh_unwind_t *u, const kdh_unwind_config_t *cfg,
                    const kdh_unwind_regs_t *regs, kdh_err_t *err)
{
    if (!u || !cfg || !regs)
        return kdh_err_set(err, KDH_EINVAL, "kdh_unwind_init: NULL argument");
    if (cfg->arch != KDH_UNWIND_X64 && cfg->arch != KDH_UNWIND_X86)
        return kdh_err_set(err, KDH_EINVAL, "unwind: unknown architecture %d", (int)cfg->arch);
    if (cfg->stack_hi && cfg->stack_lo >= cfg->stack_hi)
        return kdh_err_set(err, KDH_EINVAL, "unwind: stack bounds [0x%llx, 0x%llx) are empty",
                           (unsigned long long)cfg->stack_lo, (unsigned long long)cfg->stack_hi);
    memset(u, 0, offsetof(kdh_unwind_t, frames));
    u->cfg = *cfg;
    if (u->cfg.max_frames == 0 || u->cfg.max_frames > KDH_UNWIND_FRAMES_MAX)
        u->cfg.max_frames = u->cfg.max_frames ? KDH_UNWIND_FRAMES_MAX : 64;
    if (u->cfg.scan_words == 0)
        u->cfg.scan_words = 40;
    if (u->cfg.scan_words > 1024)
        u->cfg.scan_words = 1024;
    u->regs = *regs;
    u->regs.gpr_known &= cfg->arch == KDH_UNWIND_X86 ? 0xFFu : 0xFFFFu;
    u->next_flags = KDH_UNWIND_F_FRAME0;
    u->stop = KDH_UNWIND_RUNNING;
    return KDH_OK;
}

void kdh_unwind_prefetch(const kdh_unwind_t *u, uint64_t *va, uint32_t *len)
{
    uint64_t lo = u->regs.sp, n = u->cfg.prefetch_bytes ? u->cfg.prefetch_bytes : 0x600;
    if (u->cfg.stack_hi && lo < u->cfg.stack_hi && u->cfg.stack_hi - lo < n)
        n = u->cfg.stack_hi - lo;
    if (lo + n < lo)
        n = 0 - lo;
    *va = lo;
    *len = (uint32_t)n;
}

uint64_t kdh_unwind_stack_end(const kdh_unwind_t *u)
{
    uint64_t hi = 0;
    for (uint32_t i = 0; i < u->n_frames; i++)
        if (u->frames[i].stack_hi > hi)
            hi = u->frames[i].stack_hi;
    return hi;
}

const char *kdh_unwind_stop_name(kdh_unwind_stop_t stop)
{
    switch (stop) {
    case KDH_UNWIND_RUNNING: return "running";
    case KDH_UNWIND_STOP_NO_MODULE: return "pc outside known modules";
    case KDH_UNWIND_STOP_BAD_PC: return "pc below 4096";
    case KDH_UNWIND_STOP_USER: return "pc in user space";
    case KDH_UNWIND_STOP_SP: return "stack pointer did not increase";
    case KDH_UNWIND_STOP_LIMIT: return "frame limit reached";
    case KDH_UNWIND_STOP_UNREADABLE: return "stack or unwind data unreadable";
    case KDH_UNWIND_STOP_REG_UNKNOWN: return "a register needed for unwinding is unknown";
    case KDH_UNWIND_STOP_NO_CALLER: return "no caller found (frame chain broken, scan empty)";
    case KDH_UNWIND_STOP_ERROR: return "corrupt unwind data";
    }
    return "unknown";
}

static int view_read(uw_ctx_t *c, uint64_t va, void *buf, uint32_t len)
{
    c->u->reads++;
    if (va + len < va)
        return KDH_ERANGE;
    return c->env->read(c->env->ctx, va, buf, len);
}

int uw_read_stack_deferred(uw_ctx_t *c, uint64_t va, void *buf, uint32_t len)
{
    int rc = view_read(c, va, buf, len);
    if (rc == KDH_ENOTCACHED) {
        memset(buf, 0, len);
        if (!c->stack_miss || va < c->miss_lo)
            c->miss_lo = va;
        if (!c->stack_miss || va + len > c->miss_hi)
            c->miss_hi = va + len;
        c->stack_miss = 1;
    } else if (rc != KDH_OK && c->stack_miss) {
        /* The address may derive from a value not fetched yet (a machine frame's RSP): let
         * the retry with real values decide whether this memory is really unreadable. */
        memset(buf, 0, len);
        return KDH_OK;
    } else if (rc != KDH_OK) {
        c->stop = KDH_UNWIND_STOP_UNREADABLE;
        kdh_err_set(c->err, rc, "stack at 0x%llx (%u bytes) unreadable", (unsigned long long)va,
                    len);
        return rc;
    }
    if (va + len > c->stack_hi)
        c->stack_hi = va + len;
    return KDH_OK;
}

int uw_read_now(uw_ctx_t *c, uint64_t va, void *buf, uint32_t len, uint32_t want)
{
    int rc = view_read(c, va, buf, len);
    if (rc == KDH_ENOTCACHED) {
        c->u->need_va = va;
        c->u->need_len = want > len ? want : len;
        return KDH_ENOTCACHED;
    }
    if (rc != KDH_OK) {
        c->stop = KDH_UNWIND_STOP_UNREADABLE;
        kdh_err_set(c->err, rc, "memory at 0x%llx (%u bytes) unreadable", (unsigned long long)va,
                    len);
    }
    return rc;
}

int uw_pc_in_module(uw_ctx_t *c, uint64_t pc, kdh_unwind_module_t *m)
{
    if (pc < 4096 || (c->cfg->user_limit && pc < c->cfg->user_limit))
        return 0;
    if (c->env->find_module(c->env->ctx, pc, m) != KDH_OK)
        return 0;
    return pc >= m->base && pc - m->base < m->size;
}

static int finish(kdh_unwind_t *u, kdh_unwind_stop_t stop, int code)
{
    u->stop = stop;
    u->stop_code = code;
    return code;
}

int kdh_unwind_run(kdh_unwind_t *u, const kdh_unwind_env_t *env, kdh_err_t *err)
{
    if (!u || !env || !env->read || !env->find_module)
        return kdh_err_set(err, KDH_EINVAL, "kdh_unwind_run: NULL argument");
    if (u->stop != KDH_UNWIND_RUNNING) {
        if (u->stop_code != KDH_OK)
            kdh_err_set(err, u->stop_code, "unwind already ended: %s",
                        kdh_unwind_stop_name(u->stop));
        return u->stop_code;
    }
    u->need_va = 0;
    u->need_len = 0;
    for (;;) {
        kdh_unwind_regs_t *r = &u->regs;
        if (u->n_frames >= u->cfg.max_frames)
            return finish(u, KDH_UNWIND_STOP_LIMIT, KDH_OK);
        if (r->pc < 4096)
            return finish(u, KDH_UNWIND_STOP_BAD_PC, KDH_OK);
        if (u->cfg.user_limit && r->pc < u->cfg.user_limit)
            return finish(u, KDH_UNWIND_STOP_USER, KDH_OK);
        kdh_unwind_module_t m;
        if (env->find_module(env->ctx, r->pc, &m) != KDH_OK || r->pc < m.base ||
            r->pc - m.base >= m.size)
            return finish(u, KDH_UNWIND_STOP_NO_MODULE, KDH_OK);

        uw_ctx_t c = {.env = env, .cfg = &u->cfg, .u = u, .err = err, .stack_hi = 0};
        kdh_unwind_regs_t next = *r;
        uint32_t caller_flags = 0, how = 0;
        int rc = u->cfg.arch == KDH_UNWIND_X64
                     ? uw_x64_step(&c, &m, &next, u->next_flags, &caller_flags, &how)
                     : uw_x86_step(&c, &m, &next, u->next_flags, &caller_flags, &how);
        if (rc == KDH_OK && c.stack_miss) {
            u->need_va = c.miss_lo;
            u->need_len = (uint32_t)(c.miss_hi - c.miss_lo);
            rc = KDH_ENOTCACHED;
        }
        if (rc == KDH_ENOTCACHED) {
            kdh_err_set(err, rc, "unwind needs %u bytes at 0x%llx", u->need_len,
                        (unsigned long long)u->need_va);
            return rc;
        }

        kdh_unwind_frame_t *f = &u->frames[u->n_frames++];
        f->pc = r->pc;
        f->sp = r->sp;
        f->module_id = m.id;
        f->rva = (uint32_t)(r->pc - m.base);
        f->flags = u->next_flags | how;
        f->stack_hi = (rc == KDH_OK || rc == UW_STOPPED) ? c.stack_hi : 0;
        if (rc == UW_STOPPED)
            return finish(u, (kdh_unwind_stop_t)c.stop, KDH_OK);
        if (rc != KDH_OK) {
            f->stack_hi = 0;
            if (c.stop == KDH_UNWIND_STOP_UNREADABLE)
                return finish(u, KDH_UNWIND_STOP_UNREADABLE, KDH_OK);
            return finish(u, KDH_UNWIND_STOP_ERROR, rc);
        }
        /* A machine frame may switch stacks (interrupt stack to thread stack), so only an
         * ordinary return must move SP up; everything else is bounded by max_frames. */
        if (!(caller_flags & KDH_UNWIND_F_MACHFRAME) && next.sp <= r->sp)
            return finish(u, KDH_UNWIND_STOP_SP, KDH_OK);
        *r = next;
        u->next_flags = caller_flags;
        u->callee_params = c.callee_params;
    }
}
