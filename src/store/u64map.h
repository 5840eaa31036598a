/* u64map.h: a small open-addressing hash map from uint64_t to uint64_t (linear probing, power-of-two
 * capacity, no deletion). The store keeps stack ids in it and the report keeps stack and address
 * indexes in it, so memory grows with unique keys, never with the number of lines read. */
#ifndef KDH_U64MAP_H
#define KDH_U64MAP_H

#include <stdint.h>
#include <stdlib.h>

typedef struct kdh_u64map {
    uint64_t *keys;
    uint64_t *vals;
    uint8_t *used; /* 0 empty, 1 live, 2 removed (tombstone) */
    size_t cap;    /* power of two, or 0 before the first insert */
    size_t count;  /* live entries */
    size_t filled; /* live + tombstones, drives growth */
} kdh_u64map_t;

/* Keys are mixed first: stack ids are already hashes, but addresses are 16-byte aligned. */
static inline uint64_t kdh_u64map_mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static inline void kdh_u64map_free(kdh_u64map_t *m)
{
    free(m->keys);
    free(m->vals);
    free(m->used);
    m->keys = m->vals = NULL;
    m->used = NULL;
    m->cap = m->count = m->filled = 0;
}

/* Returns a pointer to the value of key, or NULL. */
static inline uint64_t *kdh_u64map_get(const kdh_u64map_t *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = kdh_u64map_mix(key) & mask;; i = (i + 1) & mask) {
        if (m->used[i] == 0)
            return NULL;
        if (m->used[i] == 1 && m->keys[i] == key)
            return &m->vals[i];
    }
}

static inline int kdh_u64map_grow(kdh_u64map_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    if (m->count * 4 < m->cap) /* mostly tombstones: rehash at the same size */
        ncap = m->cap;
    uint64_t *nk = malloc(ncap * sizeof *nk), *nv = malloc(ncap * sizeof *nv);
    uint8_t *nu = calloc(ncap, 1);
    if (!nk || !nv || !nu) {
        free(nk);
        free(nv);
        free(nu);
        return -1;
    }
    for (size_t j = 0; j < m->cap; j++) {
        if (m->used[j] != 1)
            continue;
        size_t i = kdh_u64map_mix(m->keys[j]) & (ncap - 1);
        while (nu[i])
            i = (i + 1) & (ncap - 1);
        nu[i] = 1;
        nk[i] = m->keys[j];
        nv[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    free(m->used);
    m->keys = nk;
    m->vals = nv;
    m->used = nu;
    m->cap = ncap;
    m->filled = m->count;
    return 0;
}

/* Inserts or overwrites. Returns 0, or -1 when out of memory. *inserted (may be NULL) tells
 * whether the key was new. */
static inline int kdh_u64map_put(kdh_u64map_t *m, uint64_t key, uint64_t val, int *inserted)
{
    uint64_t *v = kdh_u64map_get(m, key);
    if (inserted)
        *inserted = v == NULL;
    if (v) {
        *v = val;
        return 0;
    }
    if ((m->filled + 1) * 10 > m->cap * 7 && kdh_u64map_grow(m) != 0)
        return -1;
    size_t mask = m->cap - 1, i = kdh_u64map_mix(key) & mask;
    while (m->used[i] == 1)
        i = (i + 1) & mask;
    if (m->used[i] == 0)
        m->filled++;
    m->used[i] = 1;
    m->keys[i] = key;
    /* cap is non-zero here (grown above when it was 0), so vals is allocated; the analyzer loses
     * that across kdh_u64map_get's returned pointer */
    m->vals[i] = val; /* NOLINT(clang-analyzer-core.NullDereference) */
    m->count++;
    return 0;
}

/* Removes key; returns 1 when it was present. */
static inline int kdh_u64map_del(kdh_u64map_t *m, uint64_t key)
{
    uint64_t *v = kdh_u64map_get(m, key);
    if (!v)
        return 0;
    m->used[v - m->vals] = 2;
    m->count--;
    return 1;
}

#endif
