/* stack.c: the stack of the current stop as a step: registers from a small CONTEXT slice, then
 * the restartable unwinder over the caches. Bytes inside a loaded image (.pdata, .xdata, code)
 * go to the per-boot cache, everything else (the stack) to the per-stop cache. */
#include <string.h>

#include "target_int.h"

#define STACK_HINT_MAX 0x1000u

void kdh_target_stack_slice(const kdh_target_t *t, uint32_t *offset, uint32_t *len)
{
    if (t->psize == 8) { /* Rsp 0x98, Rbp 0xA0 */
        *offset = 0x98;
        *len = 0x10;
    } else { /* Ebp 0xB4, Eip 0xB8, SegCs, EFlags, Esp 0xC4 */
        *offset = 0xB4;
        *len = 0x14;
    }
}

int kdh_target_stack_init(kdh_target_t *t, kdh_target_stack_t *s, uint64_t pc,
                          const uint8_t *slice, size_t slice_len, kdh_err_t *err)
{
    uint32_t off, len;
    kdh_target_stack_slice(t, &off, &len);
    if (slice_len < len)
        return kdh_err_set(err, KDH_EINVAL, "register slice of %zu bytes, %u needed", slice_len, len);
    if (!t->walk_done)
        return kdh_err_set(err, KDH_EINVAL, "the module list has not been read");
    memset(s, 0, sizeof *s);
    kdh_unwind_regs_t r;
    memset(&r, 0, sizeof r);
    kdh_unwind_config_t cfg;
    if (t->psize == 8) {
        kdh_unwind_config_default(&cfg, KDH_UNWIND_X64);
        r.pc = pc;
        r.sp = kdh_get_u64(slice);
        r.gpr[KDH_REG_RBP] = kdh_get_u64(slice + 8);
    } else {
        kdh_unwind_config_default(&cfg, KDH_UNWIND_X86);
        r.gpr[KDH_REG_RBP] = kdh_sign_extend32(kdh_get_u32(slice));
        r.pc = kdh_sign_extend32((uint32_t)pc);
        r.sp = kdh_sign_extend32(kdh_get_u32(slice + 0x10));
    }
    r.gpr[KDH_REG_RSP] = r.sp;
    r.gpr_known = 1u << KDH_REG_RBP;
    cfg.max_frames = 128;
    int rc = kdh_unwind_init(&s->u, &cfg, &r, err);
    if (rc != KDH_OK)
        return rc;
    s->started = 1;
    s->sp0 = r.sp;
    return KDH_OK;
}

static int uw_read(void *ctx, uint64_t va, void *buf, uint32_t len)
{
    kdh_target_t *t = ctx;
    kdh_target_class_t cls = kdh_target_module_by_addr(t, va) ? KDH_TARGET_BOOT : KDH_TARGET_STOP;
    uint32_t got = 0;
    int rc = kdh_target_read(t, cls, va, buf, len, &got);
    if (rc != KDH_OK)
        return rc;
    return got == len ? KDH_OK : KDH_ERANGE;
}

static int uw_find(void *ctx, uint64_t pc, kdh_unwind_module_t *out)
{
    kdh_target_t *t = ctx;
    const kdh_target_module_t *m = kdh_target_module_by_addr(t, pc);
    if (!m)
        return KDH_ENOTFOUND;
    out->base = m->base;
    out->size = m->size;
    /* .pdata only from an image whose header was read and checked */
    out->pdata_rva = m->ok ? m->pdata_rva : 0;
    out->pdata_size = m->ok ? m->pdata_size : 0;
    out->id = (uint64_t)(m - t->mods);
    return KDH_OK;
}

int kdh_target_step_stack(kdh_target_t *t, kdh_target_stack_t *s, kdh_err_t *err)
{
    if (!s->started)
        return kdh_err_set(err, KDH_EINVAL, "stack walk not started");
    if (!s->prefetched) {
        s->prefetched = 1;
        uint32_t got;
        uint8_t tmp[STACK_HINT_MAX];
        if (t->stack_hint && kdh_target_read(t, KDH_TARGET_STOP, s->sp0, tmp, t->stack_hint, &got) ==
                                 KDH_ENOTCACHED) {
            s->rounds++;
            return KDH_ENOTCACHED;
        }
    }
    kdh_unwind_env_t env = {.ctx = t, .read = uw_read, .find_module = uw_find};
    if (t->psize == 4) /* x86: FRAMEDATA programs from the modules' PDBs, when found */
        env.find_fpo = target_find_fpo;
    int rc = kdh_unwind_run(&s->u, &env, err);
    if (rc == KDH_ENOTCACHED) {
        s->rounds++;
        return rc;
    }
    s->n_frames = s->u.n_frames;
    for (uint32_t i = 0; i < s->n_frames; i++) {
        const kdh_unwind_frame_t *f = &s->u.frames[i];
        kdh_target_frame_t *o = &s->frames[i];
        o->pc = f->pc;
        o->sp = f->sp;
        o->flags = f->flags;
        o->module = kdh_target_module_by_addr(t, f->pc);
        o->rva = o->module ? (uint32_t)(f->pc - o->module->base) : 0;
    }
    uint64_t end = kdh_unwind_stack_end(&s->u);
    if (end > s->sp0 && end - s->sp0 <= STACK_HINT_MAX && end - s->sp0 > t->stack_hint)
        t->stack_hint = (uint32_t)(end - s->sp0);
    /* a walk ended by bad unwind data still yields the frames before it: that is the result */
    return KDH_OK;
}
