/* fpo.c: evaluates x86 FRAMEDATA ("New FPO") programs, the RPN strings PDBs carry for each
 * function and prolog step, e.g. "$T0 .raSearch = $eip $T0 ^ = $esp $T0 4 + =". They are
 * what makes frame-pointer-omitted code unwindable; the EBP chain cannot see such frames. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PROGRAM 1024u
#define MAX_DEPTH 32
#define MAX_TOKEN 16
#define RA_SEARCH_WORDS 16u /* .raSearch: words examined past its expected slot */

static const char *const REG_NAMES[8] = {"$eax", "$ecx", "$edx", "$ebx",
                                         "$esp", "$ebp", "$esi", "$edi"};

typedef struct vars {
    uint32_t reg[8];
    uint32_t reg_known, reg_set;  /* bit i: reg[i] has a value / was assigned by the program */
    uint32_t eip;
    int eip_set;
    uint32_t t[10];
    uint32_t t_set;
} vars_t;

typedef struct item {
    int is_name;
    char name[MAX_TOKEN];
    uint32_t val;
} item_t;

typedef struct fpo_eval {
    uw_ctx_t *c;
    const kdh_unwind_fpo_t *f;
    uint32_t esp0;               /* ESP of the frame when the program started */
    int ra_done;
    uint32_t ra;
    vars_t v;
} fpo_eval_t;

/* .raSearch: the return-address slot. Expected right above the arguments the callee still
 * has on the stack, the locals and the saved registers; pushes the frame data cannot see
 * (arguments being built for a call) move it up, so look a few words further for a word
 * that points into a module just after a CALL. */
static int ra_search(fpo_eval_t *e, uint32_t *out, int *ok)
{
    uw_ctx_t *c = e->c;
    if (e->ra_done) {
        *out = e->ra;
        *ok = 1;
        return KDH_OK;
    }
    uint32_t start = e->esp0 + c->u->callee_params + e->f->locals + e->f->saved_regs;
    uint64_t va = kdh_sign_extend32(start);
    uint32_t words = RA_SEARCH_WORDS;
    if (c->cfg->stack_hi) {
        if (va < c->cfg->stack_lo || va >= c->cfg->stack_hi)
            return KDH_OK;
        if ((c->cfg->stack_hi - va) / 4 < words)
            words = (uint32_t)((c->cfg->stack_hi - va) / 4);
    }
    uint8_t buf[RA_SEARCH_WORDS * 4];
    int rc;
    for (;;) { /* without bounds, shrink the window until it is readable */
        if (words == 0)
            return KDH_OK;
        rc = uw_read_now(c, va, buf, words * 4, 0);
        if (rc == KDH_OK || rc == KDH_ENOTCACHED)
            break;
        c->stop = KDH_UNWIND_RUNNING;
        words /= 2;
    }
    if (rc != KDH_OK)
        return rc;
    for (uint32_t i = 0; i < words; i++) {
        uint64_t cand = kdh_sign_extend32(kdh_get_u32(buf + 4 * i));
        kdh_unwind_module_t m;
        if (!uw_pc_in_module(c, cand, &m))
            continue;
        if (i > 0) { /* the expected slot itself needs no CALL: thread starts have none */
            int crc;
            int call = uw_x86_call_before(c, &m, cand, &crc);
            if (crc != KDH_OK)
                return crc;
            if (!call)
                continue;
        }
        e->ra = start + 4 * i;
        e->ra_done = 1;
        *out = e->ra;
        *ok = 1;
        if (va + 4ull * i + 4 > c->stack_hi)
            c->stack_hi = va + 4ull * i + 4;
        return KDH_OK;
    }
    return KDH_OK;
}

/* Value of a name; *ok = 0 when it is unknown. */
static int lookup(fpo_eval_t *e, const char *n, uint32_t *val, int *ok)
{
    *ok = 1;
    for (int i = 0; i < 8; i++)
        if (strcmp(n, REG_NAMES[i]) == 0) {
            *ok = (e->v.reg_known >> i) & 1;
            *val = e->v.reg[i];
            return KDH_OK;
        }
    if (strcmp(n, "$eip") == 0) {
        *val = e->v.eip;
        return KDH_OK;
    }
    if (n[0] == '$' && n[1] == 'T' && n[2] >= '0' && n[2] <= '9' && n[3] == 0) {
        *ok = (e->v.t_set >> (n[2] - '0')) & 1;
        *val = e->v.t[n[2] - '0'];
        return KDH_OK;
    }
    if (strcmp(n, ".raSearch") == 0) {
        *ok = 0;
        return ra_search(e, val, ok);
    }
    if (strcmp(n, ".raSearchStart") == 0) {
        *val = e->esp0 + e->c->u->callee_params + e->f->locals + e->f->saved_regs;
        return KDH_OK;
    }
    if (strcmp(n, ".cbLocals") == 0)
        *val = e->f->locals;
    else if (strcmp(n, ".cbSavedRegs") == 0)
        *val = e->f->saved_regs;
    else if (strcmp(n, ".cbParams") == 0)
        *val = e->f->params;
    else if (strcmp(n, ".cbCalleeParams") == 0)
        *val = e->c->u->callee_params;
    else
        *ok = 0;
    return KDH_OK;
}

static int assign(fpo_eval_t *e, const char *n, uint32_t val)
{
    for (int i = 0; i < 8; i++)
        if (strcmp(n, REG_NAMES[i]) == 0) {
            e->v.reg[i] = val;
            e->v.reg_known |= 1u << i;
            e->v.reg_set |= 1u << i;
            return 1;
        }
    if (strcmp(n, "$eip") == 0) {
        e->v.eip = val;
        e->v.eip_set = 1;
        return 1;
    }
    if (n[0] == '$' && n[1] == 'T' && n[2] >= '0' && n[2] <= '9' && n[3] == 0) {
        e->v.t[n[2] - '0'] = val;
        e->v.t_set |= 1u << (n[2] - '0');
        return 1;
    }
    return 0;
}

/* Resolves an operand to a value; *ok = 0 when it cannot be. */
static int value_of(fpo_eval_t *e, const item_t *it, uint32_t *val, int *ok)
{
    if (!it->is_name) {
        *val = it->val;
        *ok = 1;
        return KDH_OK;
    }
    return lookup(e, it->name, val, ok);
}

int uw_x86_fpo(uw_ctx_t *c, const kdh_unwind_fpo_t *f, kdh_unwind_regs_t *r, int *ok)
{
    fpo_eval_t e;
    memset(&e, 0, sizeof e);
    e.c = c;
    e.f = f;
    *ok = 0;
    for (int i = 0; i < 8; i++)
        e.v.reg[i] = (uint32_t)r->gpr[i];
    e.v.reg_known = r->gpr_known & 0xFF;
    e.v.reg[KDH_REG_RSP] = (uint32_t)r->sp;
    e.v.reg_known |= 1u << KDH_REG_RSP;
    e.v.eip = (uint32_t)r->pc;
    e.esp0 = (uint32_t)r->sp;

    item_t st[MAX_DEPTH];
    int depth = 0;
    const char *p = f->program;
    size_t plen = strnlen(p, MAX_PROGRAM + 1);
    if (plen > MAX_PROGRAM)
        return KDH_OK;
    const char *end = p + plen;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            p++;
        if (p >= end)
            break;
        const char *q = p;
        while (q < end && *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
            q++;
        size_t n = (size_t)(q - p);
        char tok[MAX_TOKEN];
        if (n >= sizeof tok)
            return KDH_OK; /* no valid token is this long */
        memcpy(tok, p, n);
        tok[n] = 0;
        p = q;
        int rc, okv, okw;
        uint32_t a, b;
        if (n == 1 && strchr("+-*/%@", tok[0])) {
            if (depth < 2)
                return KDH_OK;
            if ((rc = value_of(&e, &st[depth - 2], &a, &okv)) != KDH_OK ||
                (rc = value_of(&e, &st[depth - 1], &b, &okw)) != KDH_OK)
                return rc;
            if (!okv || !okw || ((tok[0] == '/' || tok[0] == '%' || tok[0] == '@') && b == 0))
                return KDH_OK;
            uint32_t x = tok[0] == '+' ? a + b : tok[0] == '-' ? a - b : tok[0] == '*' ? a * b
                       : tok[0] == '/' ? a / b : tok[0] == '%' ? a % b : a & ~(b - 1);
            depth -= 2;
            st[depth].is_name = 0;
            st[depth++].val = x;
        } else if (n == 1 && tok[0] == '^') {
            if (depth < 1)
                return KDH_OK;
            if ((rc = value_of(&e, &st[depth - 1], &a, &okv)) != KDH_OK)
                return rc;
            if (!okv)
                return KDH_OK;
            uint8_t w[4];
            rc = uw_read_stack_deferred(c, kdh_sign_extend32(a), w, 4);
            if (rc != KDH_OK) { /* unreadable: the program is of no use here */
                c->stop = KDH_UNWIND_RUNNING;
                return KDH_OK;
            }
            st[depth - 1].is_name = 0;
            st[depth - 1].val = kdh_get_u32(w);
        } else if (n == 1 && tok[0] == '=') {
            if (depth < 2 || !st[depth - 2].is_name)
                return KDH_OK;
            if ((rc = value_of(&e, &st[depth - 1], &a, &okv)) != KDH_OK)
                return rc;
            if (!okv || !assign(&e, st[depth - 2].name, a))
                return KDH_OK;
            depth -= 2;
        } else {
            if (depth >= MAX_DEPTH)
                return KDH_OK;
            item_t *it = &st[depth++];
            if ((tok[0] >= '0' && tok[0] <= '9') || (tok[0] == '-' && n > 1)) {
                char *stop;
                long long v = strtoll(tok, &stop, 0);
                if (*stop)
                    return KDH_OK;
                it->is_name = 0;
                it->val = (uint32_t)v;
            } else {
                it->is_name = 1;
                memcpy(it->name, tok, n + 1);
            }
        }
    }
    if (!e.v.eip_set || !(e.v.reg_set & (1u << KDH_REG_RSP)))
        return KDH_OK;
    r->pc = kdh_sign_extend32(e.v.eip);
    r->sp = kdh_sign_extend32(e.v.reg[KDH_REG_RSP]);
    for (int i = 0; i < 8; i++)
        if (i != KDH_REG_RSP && (e.v.reg_set & (1u << i))) {
            r->gpr[i] = kdh_sign_extend32(e.v.reg[i]);
            r->gpr_known |= 1u << i;
        }
    *ok = 1;
    return KDH_OK;
}
