/* live.c: reading nt's pool tracking table at a stop of a real (or simulated) target through the
 * target model: debugger data -> &nt!PoolTrackTable -> array; the entry count from
 * nt!PoolTrackTableSize. A resumable step: misses answer KDH_ENOTCACHED for the driver to fetch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/pool.h"
#include "kdh/target.h"

#define CHUNK ((uint64_t)64 * 1024) /* bytes per cache read: well under KDH_TARGET_FETCH_MAX */

void kdh_pool_read_restart(kdh_pool_read_t *r)
{
    r->used_stable_ = 0;
}

void kdh_pool_read_free(kdh_pool_read_t *r)
{
    if (!r)
        return;
    kdh_pool_table_free(&r->tab);
    free(r->buf_);
    free(r->used_);
    r->buf_ = NULL;
    r->used_ = NULL;
    r->buf_len_ = 0;
}

/* Entries this close together are fetched in one read rather than two: a request costs about as
 * many wire bytes as a few entries. */
#define GAP_BRIDGE 4

/* Reads [first, last) entries into buf at their place. */
static int read_entries(kdh_target_t *t, kdh_pool_read_t *r, size_t esz, uint64_t first, uint64_t last,
                        kdh_err_t *err)
{
    char what[120];
    snprintf(what, sizeof what, "the pool tracker table (%llu entries from %.40s)", (unsigned long long)r->entries,
             r->size_source);
    for (uint64_t off = first * esz; off < last * esz; off += CHUNK) {
        uint64_t left = last * esz - off;
        uint32_t n = (uint32_t)(left < CHUNK ? left : CHUNK);
        int rc = kdh_target_read_full(t, KDH_TARGET_STOP, r->table_va + off, r->buf_ + off, n, what, err);
        if (rc != KDH_OK)
            return rc;
    }
    r->bytes_asked += (last - first) * esz;
    return KDH_OK;
}

static int read_sparse(kdh_target_t *t, kdh_pool_read_t *r, size_t esz, kdh_err_t *err)
{
    memset(r->buf_, 0, (size_t)r->entries * esz);
    uint64_t i = 0;
    while (i < r->entries) {
        while (i < r->entries && !r->used_[i])
            i++;
        if (i >= r->entries)
            break;
        uint64_t j = i + 1, gap = 0;
        for (uint64_t k = i + 1; k < r->entries && gap <= GAP_BRIDGE; k++) {
            if (r->used_[k]) {
                j = k + 1;
                gap = 0;
            } else {
                gap++;
            }
        }
        int rc = read_entries(t, r, esz, i, j, err);
        if (rc != KDH_OK)
            return rc;
        i = j;
    }
    return KDH_OK;
}

static int table_size(kdh_target_t *t, kdh_pool_read_t *r, kdh_err_t *err)
{
    if (r->table_size) {
        r->entries = r->table_size;
        snprintf(r->size_source, sizeof r->size_source, "--table-size");
        return KDH_OK;
    }
    uint64_t va = 0;
    char src[48];
    int rc = kdh_target_step_resolve(t, "nt!PoolTrackTableSize", &va, src, sizeof src, err);
    if (rc != KDH_OK)
        return rc == KDH_ENOTFOUND
                   ? kdh_err_set(err, KDH_ENOTFOUND,
                                 "nt!PoolTrackTableSize not found (needs nt's PDB): pass --symbols DIR, "
                                 "--symbol PoolTrackTableSize=nt+0xRVA or --table-size N")
                   : rc;
    /* SIZE_T: pointer-sized; read_ptr sign-extends on x86, so keep the low 32 bits there. */
    uint64_t v = 0;
    rc = kdh_target_read_ptr(t, KDH_TARGET_STOP, va, &v, "nt!PoolTrackTableSize", err);
    if (rc != KDH_OK)
        return rc;
    if (kdh_target_pointer_size(t) == 4)
        v &= 0xFFFFFFFFu;
    r->entries = v;
    snprintf(r->size_source, sizeof r->size_source, "%s", src);
    return KDH_OK;
}

int kdh_pool_step_read(kdh_target_t *t, kdh_pool_read_t *r, kdh_err_t *err)
{
    kdh_pool_table_free(&r->tab);
    const kdh_target_kdbg_t *k = kdh_target_kdbg(t);
    if (!k)
        return kdh_err_set(err, KDH_EINVAL, "pool tracker table: the debugger data was not read yet");
    if (!k->pool_track_table)
        return kdh_err_set(err, KDH_ENOTFOUND,
                           "KDDEBUGGER_DATA64.PoolTrackTable is 0: this kernel keeps no pool tag tracking");
    int rc = table_size(t, r, err);
    if (rc != KDH_OK)
        return rc;
    unsigned ps = kdh_target_pointer_size(t);
    size_t esz = kdh_pool_entry_size(ps);
    if (!esz)
        return kdh_err_set(err, KDH_EUNSUPPORTED, "pool tracker table: pointer size %u", ps);
    if (r->entries == 0) /* KDH_EBUSY: a kernel that has just booted has no table yet */
        return kdh_err_set(err, KDH_EBUSY,
                           "PoolTrackTableSize is 0 (from %s): the pool tracker is not set up yet, or a wrong "
                           "symbol (try --table-size N)",
                           r->size_source);
    if (r->entries > KDH_POOL_MAX_ENTRIES)
        return kdh_err_set(err, KDH_ERANGE,
                           "PoolTrackTableSize %llu (from %s) is not in 1..%u: wrong symbol? try --table-size N",
                           (unsigned long long)r->entries, r->size_source, KDH_POOL_MAX_ENTRIES);
    rc = kdh_target_read_ptr(t, KDH_TARGET_STOP, k->pool_track_table, &r->table_va, "nt!PoolTrackTable", err);
    if (rc != KDH_OK)
        return rc;
    if (!r->table_va)
        return kdh_err_set(err, KDH_EBUSY, "nt!PoolTrackTable is NULL: pool tag tracking is not set up yet");
    size_t need = (size_t)r->entries * esz;
    if (r->buf_len_ < need) {
        uint8_t *b = realloc(r->buf_, need);
        if (!b)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for a pool tracker table of %zu bytes", need);
        r->buf_ = b;
        r->buf_len_ = need;
    }
    /* Ranges earlier runs of this step fetched are in the per-stop cache: each re-run only misses
     * the next one, so the table costs one ReadVirtualMemory per range. The choice of a full read
     * depends only on state changed after success, so it is the same on every re-run. */
    unsigned every = r->full_every ? r->full_every : 10;
    r->full = !r->used_ || !r->used_stable_ || r->used_va_ != r->table_va || r->used_entries_ != r->entries ||
              r->samples % every == 0;
    r->bytes_asked = 0;
    rc = r->full ? read_entries(t, r, esz, 0, r->entries, err) : read_sparse(t, r, esz, err);
    if (rc != KDH_OK)
        return rc;
    rc = kdh_pool_parse(&r->tab, r->buf_, need, ps, r->entries, err);
    if (rc != KDH_OK)
        return rc;
    if (r->full) {
        /* Sparse reads start once two full reads in a row found the same slots in use (a booting
         * or busy system keeps reading everything until its set of tags settles). */
        int same = r->used_ && r->used_va_ == r->table_va && r->used_entries_ == r->entries;
        uint8_t *used = realloc(r->used_, (size_t)r->entries);
        if (!used)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for %llu tracker slots",
                               (unsigned long long)r->entries);
        for (uint64_t i = 0; i < r->entries; i++) {
            uint8_t u = kdh_get_u32(r->buf_ + i * esz) != 0;
            same = same && used[i] == u;
            used[i] = u;
        }
        r->used_stable_ = same;
        r->used_ = used;
        r->used_va_ = r->table_va;
        r->used_entries_ = r->entries;
    }
    r->samples++;
    return KDH_OK;
}
