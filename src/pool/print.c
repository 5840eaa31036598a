/* print.c: text forms of a pool tracking table: the !poolused-like table (log-formats.md 5, the
 * Win10 "new" column layout so that tools reading !poolused read ours) and poolmon-like sample
 * blocks (log-formats.md 9) for the per-run text file. */
#include <inttypes.h>
#include <string.h>

#include "kdh/pool.h"

/* Outstanding allocations as !poolused shows them; a wrapped counter (frees > allocs, seen when a
 * tracker entry was reset) shows 0 rather than a huge number. */
static uint64_t diff0(uint64_t a, uint64_t f)
{
    return a > f ? a - f : 0;
}

int kdh_pool_print_poolused(FILE *out, const kdh_pool_table_t *tab, kdh_pool_sort_t by, unsigned top,
                            kdh_pool_owner_fn owner_fn, void *owner_ctx)
{
    static const char *const k_sorting[] = {" Tag", "NonPaged Pool Consumed", "Paged Pool Consumed"};
    unsigned b = (unsigned)by <= KDH_POOL_SORT_PAGED ? (unsigned)by : 0;
    fprintf(out, "   Sorting by %s\n\n", k_sorting[b]);
    /* Field ends at columns 15/28/39/52, description after a TAB (the Win10 layout). */
    fprintf(out, "               NonPaged                  Paged\n");
    fprintf(out, " Tag     Allocs         Used     Allocs         Used\n\n");
    size_t n = tab->count;
    if (top && top < n)
        n = top;
    for (size_t i = 0; i < n; i++) {
        const kdh_pool_row_t *r = &tab->rows[i];
        const char *owner = owner_fn ? owner_fn(owner_ctx, r->tag) : NULL;
        fprintf(out, " %-4s%10" PRIu64 "%13" PRIu64 "%11" PRIu64 "%13" PRIu64 "\t", r->tag,
                diff0(r->np_allocs, r->np_frees), r->np_bytes, diff0(r->p_allocs, r->p_frees), r->p_bytes);
        if (owner && owner[0])
            fprintf(out, "%s\n", owner);
        else
            fprintf(out, "UNKNOWN pooltag '%s', please update pooltag.txt\n", r->tag);
    }
    kdh_pool_row_t t;
    kdh_pool_totals(tab, &t);
    fprintf(out, "\n TOTAL%9" PRIu64 "%13" PRIu64 "%11" PRIu64 "%13" PRIu64 "\n", diff0(t.np_allocs, t.np_frees),
            t.np_bytes, diff0(t.p_allocs, t.p_frees), t.p_bytes);
    if (ferror(out))
        return KDH_EIO;
    return KDH_OK;
}

static int64_t delta(uint64_t now, uint64_t before)
{
    return (int64_t)(now - before);
}

static void poolmon_row(FILE *out, const char *tag, const char *type, uint64_t a, uint64_t f, uint64_t bytes,
                        uint64_t pa, uint64_t pf, uint64_t pbytes)
{
    uint64_t d = diff0(a, f);
    fprintf(out, " %-4s %-5s %10" PRIu64 " (%5" PRId64 ") %10" PRIu64 " (%5" PRId64 ") %10" PRIu64 " %12" PRIu64
                 " (%7" PRId64 ") %9" PRIu64 "\n",
            tag, type, a, delta(a, pa), f, delta(f, pf), d, bytes, delta(bytes, pbytes), d ? bytes / d : 0);
}

int kdh_pool_print_poolmon(FILE *out, const char *title, const kdh_pool_table_t *tab,
                           const kdh_pool_table_t *prev)
{
    fprintf(out, " %s\n", title ? title : "System pool information");
    fprintf(out, " Tag  Type     Allocs            Frees            Diff        Bytes              Per Alloc\n\n");
    for (size_t i = 0; i < tab->count; i++) {
        const kdh_pool_row_t *r = &tab->rows[i];
        const kdh_pool_row_t *p = prev ? kdh_pool_find(prev, r->key) : NULL;
        kdh_pool_row_t zero;
        memset(&zero, 0, sizeof zero);
        if (!p)
            p = prev ? &zero : r; /* no previous sample: deltas 0; new tag: deltas from 0 */
        if (r->np_allocs || r->np_frees)
            poolmon_row(out, r->tag, "Nonp", r->np_allocs, r->np_frees, r->np_bytes, p->np_allocs, p->np_frees,
                        p->np_bytes);
        if (r->p_allocs || r->p_frees)
            poolmon_row(out, r->tag, "Paged", r->p_allocs, r->p_frees, r->p_bytes, p->p_allocs, p->p_frees,
                        p->p_bytes);
    }
    fputc('\n', out);
    if (ferror(out))
        return KDH_EIO;
    return KDH_OK;
}
