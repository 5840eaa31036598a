/* table.c: the pure part of pool usage: POOL_TRACKER_TABLE bytes (x64/x86) to per-tag rows,
 * merging of several tables (per-processor copies), lookup, !poolused orders and totals.
 * Nothing here reads the target or the clock; every count comes bounded from the caller. */
#include <stdlib.h>
#include <string.h>

#include "kdh/pool.h"

size_t kdh_pool_entry_size(unsigned pointer_size)
{
    return pointer_size == 8 ? KDH_POOL_ENTRY_X64 : pointer_size == 4 ? KDH_POOL_ENTRY_X86 : 0;
}

void kdh_pool_table_init(kdh_pool_table_t *tab)
{
    memset(tab, 0, sizeof *tab);
}

void kdh_pool_table_free(kdh_pool_table_t *tab)
{
    if (!tab)
        return;
    free(tab->rows);
    memset(tab, 0, sizeof *tab);
}

static void tag_text(uint32_t key, char out[5])
{
    for (int i = 0; i < 4; i++) {
        uint8_t c = (uint8_t)(key >> (8 * i));
        out[i] = (char)((c >= 0x20 && c < 0x7F) ? c : '.');
    }
    out[4] = 0;
}

const kdh_pool_row_t *kdh_pool_find(const kdh_pool_table_t *tab, uint32_t key)
{
    key &= ~KDH_POOL_PROTECTED;
    for (size_t i = 0; i < tab->count; i++)
        if (tab->rows[i].key == key)
            return &tab->rows[i];
    return NULL;
}

static kdh_pool_row_t *row_new(kdh_pool_table_t *tab, uint32_t key, kdh_err_t *err)
{
    if (tab->count == tab->cap) {
        size_t cap = tab->cap ? tab->cap * 2 : 64;
        kdh_pool_row_t *v = realloc(tab->rows, cap * sizeof *v);
        if (!v) {
            kdh_err_set(err, KDH_ENOMEM, "out of memory for %zu pool tracker rows", cap);
            return NULL;
        }
        tab->rows = v;
        tab->cap = cap;
    }
    kdh_pool_row_t *r = &tab->rows[tab->count++];
    memset(r, 0, sizeof *r);
    r->key = key;
    tag_text(key, r->tag);
    return r;
}

static int cmp_key(const void *a, const void *b)
{
    const kdh_pool_row_t *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

/* Sorts by key and sums rows of the same key into one: a second (per-processor) table adds to
 * the first, and a hostile table repeating a key still gives one row per tag. O(n log n), so a
 * table of KDH_POOL_MAX_ENTRIES stays cheap. */
static void merge_keys(kdh_pool_table_t *tab)
{
    if (tab->count < 2)
        return;
    qsort(tab->rows, tab->count, sizeof *tab->rows, cmp_key);
    size_t w = 0;
    for (size_t i = 1; i < tab->count; i++) {
        kdh_pool_row_t *d = &tab->rows[w], *s = &tab->rows[i];
        if (s->key == d->key) {
            d->np_allocs += s->np_allocs;
            d->np_frees += s->np_frees;
            d->np_bytes += s->np_bytes;
            d->p_allocs += s->p_allocs;
            d->p_frees += s->p_frees;
            d->p_bytes += s->p_bytes;
        } else {
            tab->rows[++w] = *s;
        }
    }
    tab->count = w + 1;
}

int kdh_pool_parse(kdh_pool_table_t *tab, const uint8_t *buf, size_t len, unsigned pointer_size,
                   uint64_t entries, kdh_err_t *err)
{
    size_t esz = kdh_pool_entry_size(pointer_size);
    if (!esz)
        return kdh_err_set(err, KDH_EINVAL, "pool tracker table: pointer size %u is neither 4 nor 8",
                           pointer_size);
    if (entries > KDH_POOL_MAX_ENTRIES)
        return kdh_err_set(err, KDH_ERANGE,
                           "pool tracker table of %llu entries is larger than %u: wrong PoolTrackTableSize?",
                           (unsigned long long)entries, KDH_POOL_MAX_ENTRIES);
    if (!buf || len / esz < entries)
        return kdh_err_set(err, KDH_ERANGE, "pool tracker table: %zu bytes hold fewer than %llu entries of %zu",
                           len, (unsigned long long)entries, esz);
    for (uint64_t i = 0; i < entries; i++) {
        const uint8_t *e = buf + i * esz;
        uint32_t key = kdh_get_u32(e) & ~KDH_POOL_PROTECTED;
        tab->entries_read++;
        if (key == 0)
            continue;
        kdh_pool_row_t *r = row_new(tab, key, err);
        if (!r) {
            merge_keys(tab);
            return KDH_ENOMEM;
        }
        if (pointer_size == 8) {
            r->np_allocs += kdh_get_u32(e + 4);
            r->np_frees += kdh_get_u32(e + 8);
            r->np_bytes += kdh_get_u64(e + 0x10);
            r->p_allocs += kdh_get_u32(e + 0x18);
            r->p_frees += kdh_get_u32(e + 0x1C);
            r->p_bytes += kdh_get_u64(e + 0x20);
        } else {
            r->np_allocs += kdh_get_u32(e + 4);
            r->np_frees += kdh_get_u32(e + 8);
            r->np_bytes += kdh_get_u32(e + 0xC);
            r->p_allocs += kdh_get_u32(e + 0x10);
            r->p_frees += kdh_get_u32(e + 0x14);
            r->p_bytes += kdh_get_u32(e + 0x18);
        }
    }
    merge_keys(tab);
    return KDH_OK;
}

static int cmp_tag(const void *a, const void *b)
{
    const kdh_pool_row_t *x = a, *y = b;
    return memcmp(x->tag, y->tag, 4) != 0 ? memcmp(x->tag, y->tag, 4)
                                          : (x->key > y->key) - (x->key < y->key);
}

static int cmp_u64_desc(uint64_t x, uint64_t y)
{
    return (x < y) - (x > y);
}

static int cmp_np(const void *a, const void *b)
{
    const kdh_pool_row_t *x = a, *y = b;
    int c = cmp_u64_desc(x->np_bytes, y->np_bytes);
    return c ? c : cmp_tag(a, b);
}

static int cmp_p(const void *a, const void *b)
{
    const kdh_pool_row_t *x = a, *y = b;
    int c = cmp_u64_desc(x->p_bytes, y->p_bytes);
    return c ? c : cmp_tag(a, b);
}

void kdh_pool_sort(kdh_pool_table_t *tab, kdh_pool_sort_t by)
{
    if (tab->count < 2)
        return;
    qsort(tab->rows, tab->count, sizeof *tab->rows,
          by == KDH_POOL_SORT_NONPAGED ? cmp_np : by == KDH_POOL_SORT_PAGED ? cmp_p : cmp_tag);
}

void kdh_pool_totals(const kdh_pool_table_t *tab, kdh_pool_row_t *sum)
{
    memset(sum, 0, sizeof *sum);
    memcpy(sum->tag, "TOTL", 5);
    for (size_t i = 0; i < tab->count; i++) {
        const kdh_pool_row_t *r = &tab->rows[i];
        sum->np_allocs += r->np_allocs;
        sum->np_frees += r->np_frees;
        sum->np_bytes += r->np_bytes;
        sum->p_allocs += r->p_allocs;
        sum->p_frees += r->p_frees;
        sum->p_bytes += r->p_bytes;
    }
}

int kdh_pool_restarted(const kdh_pool_table_t *prev, const kdh_pool_table_t *now)
{
    size_t common = 0, down = 0;
    for (size_t i = 0; i < now->count; i++) {
        const kdh_pool_row_t *r = &now->rows[i], *p = kdh_pool_find(prev, r->key);
        if (!p)
            continue;
        common++;
        down += r->np_allocs + r->np_frees + r->p_allocs + r->p_frees <
                p->np_allocs + p->np_frees + p->p_allocs + p->p_frees;
    }
    return common >= 2 && down * 2 > common;
}
