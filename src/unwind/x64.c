/* x64.c: one x64 frame from .pdata/.xdata, following the Windows unwinder's algorithm
 * (cpp-docs "x64 exception handling"; RtlVirtualUnwind as mirrored in dotnet unwinder.cpp):
 * function lookup, leaf rule, FrameBase, epilog detection (v1 bytes, v2 EPILOG codes),
 * partial prologs, every unwind op, chained info and machine frames. */
#include "internal.h"

#include <string.h>

#define VOLATILE_GPRS ((1u << KDH_REG_RAX) | (1u << KDH_REG_RCX) | (1u << KDH_REG_RDX) | \
                       (1u << KDH_REG_R8) | (1u << KDH_REG_R9) | (1u << KDH_REG_R10) | \
                       (1u << KDH_REG_R11))
#define PDATA_WINDOW 4096u  /* a search range this small is fetched in one read */
#define INFO_AHEAD 64u      /* header read asks this far ahead: most infos fit */
#define CODE_BYTES 32u      /* longest epilog v1 decodes: add/lea + pops + jmp */
#define EPI_MATCH 2         /* epilog_v*: pc was in an epilog, emulated (UW_STOPPED is 1) */

typedef struct rf {
    uint32_t begin, end, info;
} rf_t;

typedef struct x64 {
    uw_ctx_t *c;
    const kdh_unwind_module_t *m;
    kdh_unwind_regs_t *r;
} x64_t;

static int image_range(x64_t *x, uint32_t rva, uint32_t len, const char *what)
{
    if (!kdh_in_bounds(rva, len, x->m->size))
        return kdh_err_set(x->c->err, KDH_ECORRUPT,
                           "%s at RVA 0x%x (+%u) lies outside the module (size 0x%x)", what, rva,
                           len, x->m->size);
    return KDH_OK;
}

static void rf_get(const uint8_t *p, rf_t *e)
{
    e->begin = kdh_get_u32(p);
    e->end = kdh_get_u32(p + 4);
    e->info = kdh_get_u32(p + 8);
}

/* Binary search of .pdata through the view. *found = 0 when no entry covers rva. */
static int lookup(x64_t *x, uint32_t rva, rf_t *out, int *found)
{
    const kdh_unwind_module_t *m = x->m;
    *found = 0;
    if (m->pdata_size == 0)
        return KDH_OK;
    int rc = image_range(x, m->pdata_rva, m->pdata_size, "exception directory (.pdata)");
    if (rc)
        return rc;
    uint32_t lo = 0, hi = m->pdata_size / 12;
    uint8_t buf[PDATA_WINDOW];
    while (lo < hi) {
        uint64_t va = m->base + m->pdata_rva + 12ull * lo;
        if ((hi - lo) * 12u <= PDATA_WINDOW) {
            if ((rc = uw_read_now(x->c, va, buf, (hi - lo) * 12u, 0)) != KDH_OK)
                return rc;
            uint32_t a = 0, b = hi - lo;
            while (a < b) {
                uint32_t mid = a + (b - a) / 2;
                rf_t e;
                rf_get(buf + 12 * mid, &e);
                if (rva < e.begin)
                    b = mid;
                else if (rva >= e.end)
                    a = mid + 1;
                else {
                    *out = e;
                    *found = 1;
                    return KDH_OK;
                }
            }
            return KDH_OK;
        }
        uint32_t mid = lo + (hi - lo) / 2;
        if ((rc = uw_read_now(x->c, m->base + m->pdata_rva + 12ull * mid, buf, 12, 0)) != KDH_OK)
            return rc;
        rf_t e;
        rf_get(buf, &e);
        if (rva < e.begin)
            hi = mid;
        else if (rva >= e.end)
            lo = mid + 1;
        else {
            *out = e;
            *found = 1;
            return KDH_OK;
        }
    }
    return KDH_OK;
}

/* Reads and decodes the UNWIND_INFO at rva (header first, asking a little ahead). */
static int read_info(x64_t *x, uint32_t rva, kdh_unwind_x64_info_t *info)
{
    uint8_t buf[4 + 2 * 256 + 12];
    int rc = image_range(x, rva, 4, "UNWIND_INFO");
    if (rc)
        return rc;
    uint32_t ahead = x->m->size - rva < INFO_AHEAD ? x->m->size - rva : INFO_AHEAD;
    if ((rc = uw_read_now(x->c, x->m->base + rva, buf, 4, ahead)) != KDH_OK)
        return rc;
    uint32_t need = 0;
    rc = kdh_unwind_x64_decode(buf, 4, info, &need, x->c->err);
    if (rc != KDH_ENOTCACHED)
        return rc;
    if ((rc = image_range(x, rva, need, "UNWIND_INFO codes")) != KDH_OK)
        return rc;
    if ((rc = uw_read_now(x->c, x->m->base + rva, buf, need, 0)) != KDH_OK)
        return rc;
    return kdh_unwind_x64_decode(buf, need, info, &need, x->c->err);
}

/* Follows rva's RUNTIME_FUNCTION (indirect and chained links) to the primary entry and
 * returns its Begin; *found = 0 when rva has no entry. */
static int primary_begin(x64_t *x, uint32_t rva, uint32_t *root, int *found)
{
    rf_t e;
    int rc = lookup(x, rva, &e, found);
    if (rc || !*found)
        return rc;
    kdh_unwind_x64_info_t info;
    for (int hops = 0;; hops++) {
        if (hops > KDH_UNWIND_CHAIN_LIMIT)
            return kdh_err_set(x->c->err, KDH_ECORRUPT,
                               "more than %d chained unwind links from RVA 0x%x",
                               KDH_UNWIND_CHAIN_LIMIT, rva);
        if (e.info & 1) {
            uint8_t b[12];
            if ((rc = image_range(x, e.info & ~1u, 12, "indirect RUNTIME_FUNCTION")) != KDH_OK ||
                (rc = uw_read_now(x->c, x->m->base + (e.info & ~1u), b, 12, 0)) != KDH_OK)
                return rc;
            rf_get(b, &e);
            continue;
        }
        if ((rc = read_info(x, e.info, &info)) != KDH_OK)
            return rc;
        if (!(info.flags & 4))
            break;
        e.begin = info.chain_begin;
        e.end = info.chain_end;
        e.info = info.chain_info;
    }
    *root = e.begin;
    return KDH_OK;
}

static int rd64(x64_t *x, uint64_t va, uint64_t *v)
{
    uint8_t b[8];
    int rc = uw_read_stack_deferred(x->c, va, b, 8);
    *v = kdh_get_u64(b);
    return rc;
}

static int pop(x64_t *x, int reg)
{
    uint64_t v;
    int rc = rd64(x, x->r->sp, &v);
    if (rc)
        return rc;
    x->r->gpr[reg] = v;
    x->r->gpr_known |= 1u << reg;
    x->r->sp += 8;
    return KDH_OK;
}

static int need_reg(x64_t *x, int reg)
{
    if (x->r->gpr_known & (1u << reg))
        return KDH_OK;
    x->c->stop = KDH_UNWIND_STOP_REG_UNKNOWN;
    kdh_err_set(x->c->err, KDH_ERANGE, "frame register %d unknown at pc 0x%llx", reg,
                (unsigned long long)x->r->pc);
    return UW_STOPPED;
}

/* FrameBase: RSP after the fixed allocation (3.2). The frame register counts only once its
 * SET_FPREG has executed: past the prolog, in a chained fragment, or by code offset. */
static int frame_base(x64_t *x, const kdh_unwind_x64_info_t *info, uint64_t off, uint64_t *fb)
{
    *fb = x->r->sp;
    if (info->frame_reg == 0)
        return KDH_OK;
    int use_fp = off >= info->prolog_size || (info->flags & 4);
    for (uint32_t i = 0; !use_fp && i < info->n_ops; i++)
        if (info->ops[i].op == KDH_UWOP_SET_FPREG && info->ops[i].code_offset <= off)
            use_fp = 1;
    if (!use_fp)
        return KDH_OK;
    int rc = need_reg(x, info->frame_reg);
    if (rc)
        return rc;
    *fb = x->r->gpr[info->frame_reg] - 16ull * info->frame_offset;
    return KDH_OK;
}

/* Applies the ops of one UNWIND_INFO whose CodeOffset <= off (executed prolog steps). */
static int apply(x64_t *x, const kdh_unwind_x64_info_t *info, uint64_t off, uint64_t fb,
                 int *machframe)
{
    kdh_unwind_regs_t *r = x->r;
    int rc = KDH_OK;
    for (uint32_t i = 0; i < info->n_ops && rc == KDH_OK; i++) {
        const kdh_unwind_op_t *o = &info->ops[i];
        if (o->op == KDH_UWOP_EPILOG || o->code_offset > off)
            continue;
        switch (o->op) {
        case KDH_UWOP_PUSH_NONVOL:
            rc = pop(x, o->info);
            break;
        case KDH_UWOP_ALLOC_LARGE:
        case KDH_UWOP_ALLOC_SMALL:
            r->sp += o->value;
            break;
        case KDH_UWOP_SET_FPREG:
            if (info->frame_reg == 0)
                return kdh_err_set(x->c->err, KDH_ECORRUPT,
                                   "SET_FPREG without a frame register at pc 0x%llx",
                                   (unsigned long long)r->pc);
            if ((rc = need_reg(x, info->frame_reg)) != KDH_OK)
                return rc;
            r->sp = r->gpr[info->frame_reg] - 16ull * info->frame_offset;
            break;
        case KDH_UWOP_SAVE_NONVOL:
        case KDH_UWOP_SAVE_NONVOL_FAR: {
            uint64_t v;
            if ((rc = rd64(x, fb + o->value, &v)) != KDH_OK)
                return rc;
            r->gpr[o->info] = v;
            r->gpr_known |= 1u << o->info;
            break;
        }
        case KDH_UWOP_SAVE_XMM128:
        case KDH_UWOP_SAVE_XMM128_FAR:
            if ((rc = uw_read_stack_deferred(x->c, fb + o->value, r->xmm[o->info], 16)) != KDH_OK)
                return rc;
            r->xmm_known |= 1u << o->info;
            break;
        case KDH_UWOP_PUSH_MACHFRAME: {
            uint64_t e = o->value ? 8 : 0, pc, sp;
            if ((rc = rd64(x, r->sp + e, &pc)) != KDH_OK ||
                (rc = rd64(x, r->sp + e + 24, &sp)) != KDH_OK)
                return rc;
            r->pc = pc;
            r->sp = sp;
            *machframe = 1;
            break;
        }
        default:
            break;
        }
    }
    return rc;
}

static int do_return(x64_t *x)
{
    uint64_t ra;
    int rc = rd64(x, x->r->sp, &ra);
    if (rc)
        return rc;
    x->r->pc = ra;
    x->r->sp += 8;
    return KDH_OK;
}

/* Epilog v1: decode the bytes at pc. Returns EPI_MATCH and emulates the rest of the epilog when pc is
 * in one, 0 when not, <0 on error. */
static int epilog_v1(x64_t *x, const kdh_unwind_x64_info_t *info, const rf_t *e)
{
    uint64_t pc = x->r->pc, fbegin = x->m->base + e->begin, fend = x->m->base + e->end;
    if (e->end > x->m->size || pc >= fend)
        return 0;
    uint32_t n = fend - pc < CODE_BYTES ? (uint32_t)(fend - pc) : CODE_BYTES;
    uint8_t b[CODE_BYTES + 8];
    memset(b, 0, sizeof b); /* decoding may peek up to 7 bytes past n: they stay 0 */
    int rc = uw_read_now(x->c, pc, b, n, 0);
    if (rc == KDH_ENOTCACHED)
        return rc;
    if (rc != KDH_OK) { /* code paged out: unwind as from the body, like a caller frame */
        x->c->stop = KDH_UNWIND_RUNNING;
        return 0;
    }
    uint32_t p = 0;
    int sp_kind = 0; /* 1: add rsp, 2: lea rsp */
    int64_t disp = 0;
    if (n >= 4 && (b[0] & 0xf8) == 0x48) {
        if (b[1] == 0x83 && b[2] == 0xc4) {
            /* NOLINTNEXTLINE(bugprone-signed-char-misuse,cert-str34-c): disp8 is sign-extended */
            disp = (int8_t)b[3], p = 4, sp_kind = 1;
        } else if (n >= 7 && b[1] == 0x81 && b[2] == 0xc4) {
            disp = (int32_t)kdh_get_u32(b + 3), p = 7, sp_kind = 1;
        } else if (b[1] == 0x8d && info->frame_reg != 0 && ((b[2] >> 3) & 7) == 4 &&
                   !(b[0] & 4) && (b[2] & 7) == (info->frame_reg & 7) && (b[2] & 7) != 4 &&
                   (b[0] & 1) == (info->frame_reg >> 3)) {
            if ((b[2] >> 6) == 1)
                /* NOLINTNEXTLINE(bugprone-signed-char-misuse,cert-str34-c): disp8, sign-extended */
                disp = (int8_t)b[3], p = 4, sp_kind = 2;
            else if ((b[2] >> 6) == 2 && n >= 7)
                disp = (int32_t)kdh_get_u32(b + 3), p = 7, sp_kind = 2;
        }
    }
    int pops[CODE_BYTES];
    int npops = 0;
    for (;;) {
        if (p < n && (b[p] & 0xf8) == 0x58) {
            pops[npops++] = b[p] & 7;
            p += 1;
        } else if (p + 1 < n && (b[p] & 0xf0) == 0x40 && (b[p + 1] & 0xf8) == 0x58) {
            pops[npops++] = (b[p + 1] & 7) + ((b[p] & 1) ? 8 : 0);
            p += 2;
        } else {
            break;
        }
    }
    if (p < n && b[p] == 0xf2)
        p++;
    if (p >= n)
        return 0;
    int match = 0;
    /* NOLINTNEXTLINE(bugprone-branch-clone): each epilogue form is its own branch for clarity */
    if (b[p] == 0xc3 || (b[p] == 0xc2 && p + 3 <= n) || (b[p] == 0xf3 && p + 1 < n && b[p + 1] == 0xc3)) {
        match = 1;
    } else if ((b[p] == 0xe9 && p + 5 <= n) || (b[p] == 0xeb && p + 2 <= n)) {
        uint64_t len = b[p] == 0xe9 ? 5 : 2;
        int64_t rel = b[p] == 0xe9 ? (int32_t)kdh_get_u32(b + p + 1) : (int8_t)b[p + 1];
        uint64_t target = pc + p + len + (uint64_t)rel;
        if (target == fbegin && !(info->flags & 4)) {
            match = 1; /* recursive tail call */
        } else if (target < fbegin || target >= fend) {
            /* Outside this entry: a tail call, unless the target is a fragment (or the body)
             * of the same function, e.g. a jump to its cold part. */
            uint32_t mine = e->begin, theirs = 0;
            int found = 0;
            if ((rc = primary_begin(x, e->begin, &mine, &found)) != KDH_OK)
                return rc;
            found = 0;
            if (target - x->m->base < x->m->size &&
                (rc = primary_begin(x, (uint32_t)(target - x->m->base), &theirs, &found)) != KDH_OK)
                return rc;
            match = !found || theirs != mine || target - x->m->base == mine;
        }
    } else if (b[p] == 0xff && p + 1 < n && b[p + 1] == 0x25) {
        match = 1;
    } else if ((b[p] & 0xf8) == 0x48 && p + 2 < n && b[p + 1] == 0xff && (b[p + 2] & 0x38) == 0x20) {
        match = 1;
    }
    if (!match)
        return 0;
    if (sp_kind == 1) {
        x->r->sp += (uint64_t)disp;
    } else if (sp_kind == 2) {
        if ((rc = need_reg(x, info->frame_reg)) != KDH_OK)
            return rc;
        x->r->sp = x->r->gpr[info->frame_reg] + (uint64_t)disp;
    }
    for (int i = 0; i < npops; i++)
        if ((rc = pop(x, pops[i])) != KDH_OK)
            return rc;
    if ((rc = do_return(x)) != KDH_OK)
        return rc;
    return EPI_MATCH;
}

/* Epilog v2: the EPILOG codes at the head of the codes give the epilog size and where the
 * epilogs start (counted back from the function end). Inside one, undo only the pushes not
 * yet popped; before the pops (stack not yet released) the ordinary unwind is still right. */
static int epilog_v2(x64_t *x, const kdh_unwind_x64_info_t *info, const rf_t *e, uint64_t off)
{
    if (info->n_ops == 0 || info->ops[0].op != KDH_UWOP_EPILOG || (info->flags & 4))
        return 0;
    uint32_t size = info->ops[0].code_offset, flen = e->end - e->begin;
    int64_t at = -1;
    if ((info->ops[0].info & 1) && size <= flen && off >= flen - size && off < flen)
        at = (int64_t)(off - (flen - size));
    for (uint32_t i = 1; at < 0 && i < info->n_ops && info->ops[i].op == KDH_UWOP_EPILOG; i++) {
        uint32_t back = info->ops[i].value;
        if (back == 0)
            break; /* padding */
        if (back > flen)
            return kdh_err_set(x->c->err, KDH_ECORRUPT,
                               "EPILOG offset %u before the function start (length %u)", back,
                               flen);
        if (off >= flen - back && off < (uint64_t)flen - back + size)
            at = (int64_t)(off - (flen - back));
    }
    if (at < 0)
        return 0;
    uint32_t popbytes = 0;
    for (uint32_t i = 0; i < info->n_ops; i++)
        if (info->ops[i].op == KDH_UWOP_PUSH_NONVOL)
            popbytes += info->ops[i].info >= 8 ? 2 : 1;
    if (popbytes + 1 > size)
        return kdh_err_set(x->c->err, KDH_ECORRUPT,
                           "epilog size %u too small for its %u bytes of pops", size, popbytes);
    uint32_t first_pop = size - 1 - popbytes, pos = first_pop;
    if ((uint64_t)at < first_pop)
        return 0;
    int rc;
    for (uint32_t i = 0; i < info->n_ops; i++) {
        const kdh_unwind_op_t *o = &info->ops[i];
        if (o->op != KDH_UWOP_PUSH_NONVOL)
            continue;
        if (pos >= (uint64_t)at && (rc = pop(x, o->info)) != KDH_OK)
            return rc;
        pos += o->info >= 8 ? 2 : 1;
    }
    if ((rc = do_return(x)) != KDH_OK)
        return rc;
    return EPI_MATCH;
}

int uw_x64_step(uw_ctx_t *c, const kdh_unwind_module_t *m, kdh_unwind_regs_t *r,
                uint32_t flags, uint32_t *caller_flags, uint32_t *how)
{
    x64_t x = {.c = c, .m = m, .r = r};
    int exact = (flags & (KDH_UNWIND_F_FRAME0 | KDH_UNWIND_F_MACHFRAME)) != 0;
    uint64_t pc = r->pc;
    /* A return address may sit just past a noreturn call at the very end of a function, so
     * look up pc - 1 for callers; the prolog offset still uses the real pc. */
    uint32_t rva = (uint32_t)(pc - m->base - (exact ? 0 : 1));
    rf_t e;
    int found, rc, machframe = 0;
    *caller_flags = 0;
    *how = 0;
    if ((rc = lookup(&x, rva, &e, &found)) != KDH_OK)
        return rc;
    if (!found) {
        *how = KDH_UNWIND_F_LEAF;
        if ((rc = do_return(&x)) != KDH_OK)
            return rc;
        goto done;
    }
    kdh_unwind_x64_info_t info;
    /* An UnwindData with bit 0 set names another RUNTIME_FUNCTION that holds the real one. */
    for (int hops = 0; e.info & 1; hops++) {
        uint8_t b[12];
        if (hops >= KDH_UNWIND_CHAIN_LIMIT)
            return kdh_err_set(c->err, KDH_ECORRUPT, "indirect RUNTIME_FUNCTION loop at RVA 0x%x",
                               e.info & ~1u);
        if ((rc = image_range(&x, e.info & ~1u, 12, "indirect RUNTIME_FUNCTION")) != KDH_OK ||
            (rc = uw_read_now(c, m->base + (e.info & ~1u), b, 12, 0)) != KDH_OK)
            return rc;
        rf_get(b, &e);
    }
    if ((rc = read_info(&x, e.info, &info)) != KDH_OK)
        return rc;
    if (e.end <= e.begin || pc < m->base + e.begin)
        return kdh_err_set(c->err, KDH_ECORRUPT, "RUNTIME_FUNCTION [0x%x, 0x%x) is malformed",
                           e.begin, e.end);
    uint64_t off = pc - (m->base + e.begin), fb;
    if ((rc = frame_base(&x, &info, off, &fb)) != KDH_OK)
        return rc;
    if (exact && off >= info.prolog_size) {
        rc = info.version >= 2 ? epilog_v2(&x, &info, &e, off) : epilog_v1(&x, &info, &e);
        if (rc != 0 && rc != EPI_MATCH)
            return rc;
        if (rc == EPI_MATCH) {
            *how = KDH_UNWIND_F_EPILOG;
            goto done;
        }
    }
    for (uint32_t links = 0;; links++) {
        if ((rc = apply(&x, &info, off, fb, &machframe)) != KDH_OK)
            return rc;
        if (!(info.flags & 4))
            break;
        if (links + 1 >= KDH_UNWIND_CHAIN_LIMIT)
            return kdh_err_set(c->err, KDH_ECORRUPT,
                               "more than %d chained UNWIND_INFO links from RVA 0x%x",
                               KDH_UNWIND_CHAIN_LIMIT, e.begin);
        uint32_t parent_begin = info.chain_begin, parent_info = info.chain_info;
        if ((rc = read_info(&x, parent_info, &info)) != KDH_OK)
            return rc;
        /* Wraps to a huge value when pc lies before the parent: all its codes apply. */
        off = pc - (m->base + parent_begin);
    }
    if (machframe)
        *caller_flags = KDH_UNWIND_F_MACHFRAME;
    else if ((rc = do_return(&x)) != KDH_OK)
        return rc;
done:
    r->gpr_known &= ~VOLATILE_GPRS;
    r->xmm_known &= ~0x3Fu;
    return KDH_OK;
}
