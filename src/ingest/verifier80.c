/* verifier80.c: the records of one `!verifier 0x80` output are held and emitted together, oldest
 * first. The pool log is a ring the extension may print newest first; pairing a free with its
 * allocation by address (the report does it in event order) needs the allocation first. The
 * direction is read from the records themselves: for the first address that has both an
 * allocation and a free, whichever comes first in the text is the older one.
 * `!verifier 3` rows are held to the end of the file so that a block listed there and shown by
 * the 0x80 log is one allocation event (the log's whole stack, the table's tag), not two. */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define V80_MAX 4096   /* records held per output; beyond that they go out in text order */
#define V3_MAX 65536   /* table rows held per file; beyond that they go out at once */

#define NONE UINT32_MAX

/* The slot of key in a map with a free slot (never full: at most half): where it is, or the free
 * slot where it would go. */
static size_t am_slot(const kdh_ingest_addrmap_t *m, uint64_t key)
{
    size_t i = (size_t)(key ^ (key >> 31)) * 0x9e3779b97f4a7c15ull >> 7 & (m->cap - 1);
    while (m->key[i] && m->key[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static uint32_t am_get(const kdh_ingest_addrmap_t *m, uint64_t key)
{
    if (!m->cap || !key)
        return NONE;
    size_t i = am_slot(m, key);
    return m->key[i] ? m->val[i] : NONE;
}

/* Stores key -> val in a map with room for it (at least one free slot). */
static void am_set(kdh_ingest_addrmap_t *m, uint64_t key, uint32_t val)
{
    size_t i = am_slot(m, key);
    if (!m->key[i])
        m->n++;
    m->key[i] = key;
    m->val[i] = val;
}

/* Returns 0, or -1 when out of memory or the map is full (the caller only loses a merge). */
static int am_put(kdh_ingest_addrmap_t *m, uint64_t key, uint32_t val)
{
    if (!key)
        return 0;
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        if (cap > 4 * (size_t)V3_MAX)
            return -1;
        kdh_ingest_addrmap_t g = {calloc(cap, sizeof *g.key), calloc(cap, sizeof *g.val), cap, 0};
        if (!g.key || !g.val) {
            free(g.key);
            free(g.val);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->key[i])
                am_set(&g, m->key[i], m->val[i]);
        free(m->key);
        free(m->val);
        *m = g;
    }
    am_set(m, key, val);
    return 0;
}

static void am_free(kdh_ingest_addrmap_t *m)
{
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* Called for each 0x80 record as it goes out: an allocation takes the tag of the table row of
 * its block, and the block is remembered so that a later table row of it is left out. */
static void merge_v3(kdh_ingest_parser_t *p, kdh_ingest_v80_t *r)
{
    if (r->st.kind != KDH_INGEST_EV_ALLOC || !r->st.has_addr)
        return;
    uint32_t i = am_get(&p->v3_index, r->st.addr);
    if (i != NONE && i < p->nv3 && !p->v3[i].superseded) {
        kdh_ingest_v80_t *t = &p->v3[i];
        t->superseded = 1;
        free(t->frames);
        t->frames = NULL;
        if (!r->st.tag[0]) {
            memcpy(r->st.tag, t->st.tag, sizeof r->st.tag);
            r->st.tag_dword = t->st.tag_dword;
        }
    }
    (void)am_put(&p->v80_seen, r->st.addr, 1);
}

static int emit_one(kdh_ingest_parser_t *p, kdh_ingest_v80_t *r, kdh_err_t *err)
{
    merge_v3(p, r);
    r->st.frames = r->frames;
    int rc = kdh_ingest_emit_stack(p, &r->st, err);
    free(r->frames);
    r->frames = NULL;
    return rc;
}

int kdh_ingest_v80_flush(kdh_ingest_parser_t *p, kdh_err_t *err)
{
    size_t n = p->nv80;
    int reverse = 0, decided = 0;
    for (size_t i = 0; i < n && !decided; i++) {
        if (!p->v80[i].st.has_addr)
            continue;
        for (size_t j = i + 1; j < n; j++)
            if (p->v80[j].st.has_addr && p->v80[j].st.addr == p->v80[i].st.addr &&
                p->v80[j].st.kind != p->v80[i].st.kind) {
                reverse = p->v80[i].st.kind == KDH_INGEST_EV_FREE;
                decided = 1;
                break;
            }
    }
    int rc = KDH_OK;
    for (size_t k = 0; k < n; k++) {
        kdh_ingest_v80_t *r = &p->v80[reverse ? n - 1 - k : k];
        if (!rc)
            rc = emit_one(p, r, err);
        else
            free(r->frames);
        r->frames = NULL;
    }
    p->nv80 = 0;
    return rc;
}

int kdh_ingest_v80_hold(kdh_ingest_parser_t *p, const kdh_ingest_stack_t *st, kdh_err_t *err)
{
    if (!p->v80) {
        p->v80 = calloc(V80_MAX, sizeof *p->v80);
        if (!p->v80)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory for !verifier 0x80 records");
    }
    if (p->nv80 == V80_MAX) {
        int rc = kdh_ingest_v80_flush(p, err);
        if (rc)
            return rc;
    }
    kdh_ingest_v80_t *r = &p->v80[p->nv80];
    r->frames = malloc(st->nframes * sizeof *r->frames);
    if (!r->frames)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for !verifier 0x80 records");
    memcpy(r->frames, st->frames, st->nframes * sizeof *r->frames);
    r->st = *st;
    r->st.frames = r->frames;
    p->nv80++;
    return KDH_OK;
}

void kdh_ingest_v80_free(kdh_ingest_parser_t *p)
{
    for (size_t i = 0; p->v80 && i < p->nv80; i++)
        free(p->v80[i].frames);
    free(p->v80);
    p->v80 = NULL;
    p->nv80 = 0;
    for (size_t i = 0; p->v3 && i < p->nv3; i++)
        free(p->v3[i].frames);
    free(p->v3);
    p->v3 = NULL;
    p->nv3 = p->capv3 = 0;
    am_free(&p->v3_index);
    am_free(&p->v80_seen);
}

int kdh_ingest_v3_hold(kdh_ingest_parser_t *p, const kdh_ingest_stack_t *st, kdh_err_t *err)
{
    if (st->has_addr && am_get(&p->v80_seen, st->addr) != NONE)
        return KDH_OK; /* the 0x80 log already gave this block with its stack */
    if (st->has_addr) {
        /* the same table printed again (a second !verifier 3) lists the same allocation */
        uint32_t i = am_get(&p->v3_index, st->addr);
        if (i != NONE && i < p->nv3 && !p->v3[i].superseded && p->v3[i].st.size == st->size &&
            memcmp(p->v3[i].st.tag, st->tag, sizeof st->tag) == 0)
            return KDH_OK;
    }
    if (p->nv3 == p->capv3) {
        size_t cap = p->capv3 ? p->capv3 * 2 : 64;
        kdh_ingest_v80_t *a = cap <= V3_MAX ? realloc(p->v3, cap * sizeof *a) : NULL;
        if (!a) {
            kdh_ingest_stack_t copy = *st;
            return kdh_ingest_emit_stack(p, &copy, err); /* too many to hold: out at once */
        }
        p->v3 = a;
        p->capv3 = cap;
    }
    kdh_ingest_v80_t *r = &p->v3[p->nv3];
    r->frames = malloc(st->nframes * sizeof *r->frames);
    if (!r->frames)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for !verifier 3 rows");
    memcpy(r->frames, st->frames, st->nframes * sizeof *r->frames);
    r->st = *st;
    r->st.frames = r->frames;
    r->superseded = 0;
    if (st->has_addr)
        (void)am_put(&p->v3_index, st->addr, (uint32_t)p->nv3);
    p->nv3++;
    return KDH_OK;
}

int kdh_ingest_v3_flush(kdh_ingest_parser_t *p, kdh_err_t *err)
{
    int rc = KDH_OK;
    for (size_t i = 0; i < p->nv3; i++) {
        kdh_ingest_v80_t *r = &p->v3[i];
        if (!rc && !r->superseded) {
            r->st.frames = r->frames;
            rc = kdh_ingest_emit_stack(p, &r->st, err);
        }
        free(r->frames);
        r->frames = NULL;
    }
    p->nv3 = 0;
    am_free(&p->v3_index);
    am_free(&p->v80_seen);
    return rc;
}
