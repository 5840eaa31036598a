/* cache.c: the target model's memory caches (per stop and per boot). Each is a sorted set of
 * non-overlapping ranges, readable (with bytes) or known unreadable; adjacent readable ranges are
 * merged so a read that spans two fetches is served in one copy. A miss records the first
 * missing range, which is exactly what the driver fetches next. */
#include <stdlib.h>
#include <string.h>

#include "target_int.h"

#define PAGE 0x1000ull
#define CACHE_MAX_BYTES (256ull << 20) /* a per-boot cache beyond this is a runaway step */

void tcache_clear(tcache_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i].data);
    free(c->v);
    memset(c, 0, sizeof *c);
}

/* Index of the first entry whose end is above va (the one holding va, or the next one). */
static size_t lower(const tcache_t *c, uint64_t va)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->v[mid].va + c->v[mid].len <= va)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int grow(tcache_t *c)
{
    if (c->n < c->cap)
        return KDH_OK;
    size_t cap = c->cap ? c->cap * 2 : 32;
    tcache_ent_t *v = realloc(c->v, cap * sizeof *v);
    if (!v)
        return KDH_ENOMEM;
    c->v = v;
    c->cap = cap;
    return KDH_OK;
}

/* Inserts [va, va+len) where no entry overlaps it (the caller trimmed it). */
static int insert_raw(tcache_t *c, uint64_t va, const uint8_t *data, uint32_t len, int unreadable)
{
    if (!unreadable && !data)
        return KDH_EINVAL; /* readable bytes come with their data (kdh_target_fill checks) */
    size_t i = lower(c, va);
    /* merge with a readable left neighbour that ends exactly at va */
    if (!unreadable && i > 0 && !c->v[i - 1].unreadable && c->v[i - 1].va + c->v[i - 1].len == va &&
        (uint64_t)c->v[i - 1].len + len < UINT32_MAX / 2) {
        tcache_ent_t *e = &c->v[i - 1];
        uint8_t *d = realloc(e->data, (size_t)e->len + len);
        if (!d)
            return KDH_ENOMEM;
        memcpy(d + e->len, data, len);
        e->data = d;
        e->len += len;
        c->bytes += len;
        return KDH_OK;
    }
    if (grow(c) != KDH_OK)
        return KDH_ENOMEM;
    tcache_ent_t e = {va, len, unreadable, NULL};
    if (!unreadable) {
        e.data = malloc(len ? len : 1);
        if (!e.data)
            return KDH_ENOMEM;
        memcpy(e.data, data, len);
        c->bytes += len;
    }
    memmove(&c->v[i + 1], &c->v[i], (c->n - i) * sizeof c->v[0]);
    c->v[i] = e;
    c->n++;
    return KDH_OK;
}

/* Adds [va, va+len) minus whatever is already there (existing bytes win: they are as fresh). */
static int add(tcache_t *c, uint64_t va, const uint8_t *data, uint32_t len, int unreadable)
{
    uint64_t end = va + len;
    if (end < va)
        end = UINT64_MAX;
    uint64_t pos = va;
    while (pos < end) {
        size_t i = lower(c, pos);
        if (i < c->n && c->v[i].va <= pos) { /* covered: skip it */
            pos = c->v[i].va + c->v[i].len;
            continue;
        }
        uint64_t stop = end;
        if (i < c->n && c->v[i].va < stop)
            stop = c->v[i].va;
        int rc = insert_raw(c, pos, data ? data + (pos - va) : NULL, (uint32_t)(stop - pos), unreadable);
        if (rc != KDH_OK)
            return rc;
        pos = stop;
    }
    return KDH_OK;
}

/* The entry of either cache holding va, or NULL; *next_start gets the nearest entry start above va. */
static const tcache_ent_t *find(const kdh_target_t *t, uint64_t va, uint64_t *next_start)
{
    const tcache_t *cs[2] = {&t->boot, &t->stop};
    *next_start = UINT64_MAX;
    for (int k = 0; k < 2; k++) {
        const tcache_t *c = cs[k];
        size_t i = lower(c, va);
        if (i < c->n) {
            if (c->v[i].va <= va)
                return &c->v[i];
            if (c->v[i].va < *next_start)
                *next_start = c->v[i].va;
        }
    }
    return NULL;
}

int kdh_target_read(kdh_target_t *t, kdh_target_class_t cls, uint64_t va, void *buf, uint32_t len,
                    uint32_t *got)
{
    uint8_t *out = buf;
    uint64_t end = va + len;
    *got = 0;
    if (end < va) /* wraps the address space: the top bytes do not exist */
        end = UINT64_MAX;
    uint64_t pos = va;
    while (pos < end) {
        uint64_t next;
        const tcache_ent_t *e = find(t, pos, &next);
        if (!e) {
            uint64_t stop = next < end ? next : end;
            t->need_va = pos;
            t->need_len = (uint32_t)(stop - pos);
            t->need_cls = cls;
            t->cstats.misses++;
            return KDH_ENOTCACHED;
        }
        if (e->unreadable)
            break;
        uint64_t stop = e->va + e->len < end ? e->va + e->len : end;
        memcpy(out + (pos - va), e->data + (pos - e->va), (size_t)(stop - pos));
        pos = stop;
    }
    *got = (uint32_t)(pos - va);
    t->cstats.hits++;
    return KDH_OK;
}

int kdh_target_read_full(kdh_target_t *t, kdh_target_class_t cls, uint64_t va, void *buf,
                         uint32_t len, const char *what, kdh_err_t *err)
{
    uint32_t got = 0;
    int rc = kdh_target_read(t, cls, va, buf, len, &got);
    if (rc != KDH_OK)
        return rc;
    if (got != len)
        return kdh_err_set(err, KDH_ERANGE, "%s at 0x%llx is unreadable (%u of %u bytes)", what,
                           (unsigned long long)va, got, len);
    return KDH_OK;
}

int kdh_target_read_ptr(kdh_target_t *t, kdh_target_class_t cls, uint64_t va, uint64_t *out,
                        const char *what, kdh_err_t *err)
{
    uint8_t b[8];
    uint32_t n = t->psize == 4 ? 4 : 8;
    int rc = kdh_target_read_full(t, cls, va, b, n, what, err);
    if (rc != KDH_OK)
        return rc;
    *out = n == 8 ? kdh_get_u64(b) : kdh_sign_extend32(kdh_get_u32(b));
    return KDH_OK;
}

void kdh_target_need(const kdh_target_t *t, uint64_t *va, uint32_t *len, kdh_target_class_t *cls)
{
    if (va)
        *va = t->need_va;
    if (len)
        *len = t->need_len;
    if (cls)
        *cls = t->need_cls;
}

int kdh_target_fill(kdh_target_t *t, kdh_target_class_t cls, uint64_t va, const void *buf,
                    uint32_t got, uint32_t asked, kdh_err_t *err)
{
    tcache_t *c = cls == KDH_TARGET_BOOT ? &t->boot : &t->stop;
    if (got > asked)
        got = asked;
    if (got && !buf)
        return kdh_err_set(err, KDH_EINVAL, "target memory fill of %u bytes at 0x%llx without the bytes", got,
                           (unsigned long long)va);
    if (c->bytes + got > CACHE_MAX_BYTES)
        return kdh_err_set(err, KDH_ERANGE, "target memory cache is over %llu MiB: a step is reading without bound",
                           (unsigned long long)(CACHE_MAX_BYTES >> 20));
    int rc = got ? add(c, va, buf, got, 0) : KDH_OK;
    if (rc == KDH_OK && got < asked) {
        /* The target stops a read at the first unreadable page: mark the rest of that page. */
        uint64_t bad = va + got;
        uint64_t page_last = bad | (PAGE - 1);
        uint64_t end = va + asked;
        /* the last page of the address space has no end to round up to */
        uint64_t page_end = page_last == UINT64_MAX || page_last + 1 > end ? end : page_last + 1;
        rc = add(c, bad, NULL, (uint32_t)(page_end - bad), 1);
    }
    if (rc != KDH_OK)
        return kdh_err_set(err, rc, "out of memory caching target memory");
    t->cstats.fetches++;
    t->cstats.fetched_bytes += got;
    return KDH_OK;
}

void kdh_target_sync_stop(kdh_target_t *t, uint64_t serial)
{
    if (serial != t->stop_serial) {
        tcache_clear(&t->stop);
        t->stop_serial = serial;
    }
}

void kdh_target_drop_boot(kdh_target_t *t)
{
    tcache_clear(&t->boot);
}

void kdh_target_cache_stats(const kdh_target_t *t, kdh_target_cache_stats_t *out)
{
    *out = t->cstats;
    out->stop_bytes = t->stop.bytes;
    out->boot_bytes = t->boot.bytes;
}
