/* pdb_index.c: lookup tables over the publics of a PDB: sorted by RVA for symbolizing, by name
 * for resolving, and by undecorated name on x86 ("_StdFn@8" is also found as "StdFn"). */
#include "pdb_internal.h"

#include <stdlib.h>
#include <string.h>

int pdb_undecorate(const char *name, char *out)
{
    if (name[0] != '_' && name[0] != '@')
        return 0; /* plain or C++ ('?') name */
    const char *s = name + 1;
    size_t n = strlen(s);
    /* A trailing @N (stdcall/fastcall argument bytes) goes too. */
    size_t at = n;
    while (at > 0 && s[at - 1] >= '0' && s[at - 1] <= '9')
        at--;
    if (at > 1 && at < n && s[at - 1] == '@')
        n = at - 1;
    if (n == 0)
        return 0;
    memcpy(out, s, n);
    out[n] = '\0';
    return 1;
}

static int cmp_rva(const void *a, const void *b)
{
    const kdh_pdb_public_t *x = a, *y = b;
    if (x->rva != y->rva)
        return x->rva < y->rva ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_name_idx(const void *a, const void *b, void *ctx)
{
    const kdh_pdb_public_t *pubs = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int c = strcmp(pubs[x].name, pubs[y].name);
    if (c)
        return c;
    return x < y ? -1 : x > y; /* lowest RVA first among equal names */
}

static int cmp_alias(const void *a, const void *b)
{
    const pdb_alias_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->pub < y->pub ? -1 : x->pub > y->pub;
}

int pdb_build_index(kdh_pdb_t *p, kdh_err_t *err)
{
    if (p->npubs == 0)
        return KDH_OK;
    qsort(p->pubs, p->npubs, sizeof *p->pubs, cmp_rva);
    p->by_name = malloc(sizeof *p->by_name * p->npubs);
    if (!p->by_name)
        return kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for the name index");
    for (uint32_t i = 0; i < p->npubs; i++)
        p->by_name[i] = i;
    qsort_r(p->by_name, p->npubs, sizeof *p->by_name, cmp_name_idx, p->pubs);
    if (p->info.machine != 0x014C)
        return KDH_OK; /* only x86 decorates C names */
    /* Undecorated names are never longer than the names, which all fit in the stream. */
    p->undec_pool = malloc(p->symrec_len ? p->symrec_len : 1);
    p->undec = malloc(sizeof *p->undec * p->npubs);
    if (!p->undec_pool || !p->undec)
        return kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for undecorated names");
    size_t used = 0;
    for (uint32_t i = 0; i < p->npubs; i++) {
        char *o = p->undec_pool + used;
        if (strlen(p->pubs[i].name) + 1 > p->symrec_len - used)
            break;
        if (!pdb_undecorate(p->pubs[i].name, o))
            continue;
        p->undec[p->nundec].name = o;
        p->undec[p->nundec].pub = i;
        p->nundec++;
        used += strlen(o) + 1;
    }
    qsort(p->undec, p->nundec, sizeof *p->undec, cmp_alias);
    return KDH_OK;
}

const kdh_pdb_public_t *kdh_pdb_find(const kdh_pdb_t *p, const char *name)
{
    /* Lower bound, so equal names resolve to the lowest RVA deterministically. */
    uint32_t lo = 0, hi = p->npubs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (strcmp(p->pubs[p->by_name[mid]].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < p->npubs && strcmp(p->pubs[p->by_name[lo]].name, name) == 0)
        return &p->pubs[p->by_name[lo]];
    lo = 0;
    hi = p->nundec;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (strcmp(p->undec[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < p->nundec && strcmp(p->undec[lo].name, name) == 0)
        return &p->pubs[p->undec[lo].pub];
    return NULL;
}

int kdh_pdb_lookup(const kdh_pdb_t *p, const char *name, uint32_t *rva)
{
    const kdh_pdb_public_t *pub = kdh_pdb_find(p, name);
    if (!pub)
        return KDH_ENOTFOUND;
    *rva = pub->rva;
    return KDH_OK;
}

const kdh_pdb_public_t *kdh_pdb_symbolize(const kdh_pdb_t *p, uint32_t rva, uint32_t *offset)
{
    /* A procedure that covers rva names it better than the nearest public below it (which,
     * for a static function, is some unrelated global before it), unless a public starts
     * inside the procedure after its beginning. */
    const kdh_pdb_public_t *pub = pdb_public_below(p, rva);
    const kdh_pdb_public_t *proc = pdb_proc_at(p, rva);
    if (proc && (!pub || pub->rva <= proc->rva))
        pub = proc;
    if (pub && offset)
        *offset = rva - pub->rva;
    return pub;
}

const kdh_pdb_public_t *pdb_public_below(const kdh_pdb_t *p, uint32_t rva)
{
    /* The last public with pub.rva <= rva (the first of equal RVAs, by name). */
    uint32_t lo = 0, hi = p->npubs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->pubs[mid].rva <= rva)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    uint32_t i = lo - 1;
    while (i > 0 && p->pubs[i - 1].rva == p->pubs[i].rva)
        i--;
    return &p->pubs[i];
}

uint32_t kdh_pdb_count(const kdh_pdb_t *p)
{
    return p->npubs;
}

const kdh_pdb_public_t *kdh_pdb_public_at(const kdh_pdb_t *p, uint32_t i)
{
    return i < p->npubs ? &p->pubs[i] : NULL;
}
