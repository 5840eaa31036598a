/* verifier80.c: the records of one `!verifier 0x80` output are held and emitted together, oldest
 * first. The pool log is a ring the extension may print newest first; pairing a free with its
 * allocation by address (the report does it in event order) needs the allocation first. The
 * direction is read from the records themselves: for the first address that has both an
 * allocation and a free, whichever comes first in the text is the older one.
 * `!verifier 3` rows are held to the end of the file so that a block listed there and shown by
 * the 0x80 log is one allocation event (the log's whole stack, the table's tag), not two. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define V80_MAX 4096   /* records held per output; beyond that they go out in text order */
#define V3_MAX 65536   /* table rows held per file; beyond that they go out at once */

/* Called for each 0x80 record as it goes out: an allocation takes the tag of the table row of
 * its block, and the block is remembered so that a later table row of it is left out. */
static void merge_v3(kdh_ingest_parser_t *p, kdh_ingest_v80_t *r)
{
    if (r->st.kind != KDH_INGEST_EV_ALLOC || !r->st.has_addr)
        return;
    for (size_t i = 0; i < p->nv3; i++) {
        kdh_ingest_v80_t *t = &p->v3[i];
        if (!t->superseded && t->st.addr == r->st.addr) {
            t->superseded = 1;
            if (!r->st.tag[0]) {
                memcpy(r->st.tag, t->st.tag, sizeof r->st.tag);
                r->st.tag_dword = t->st.tag_dword;
            }
            break;
        }
    }
    if (p->nv80_addrs == p->capv80_addrs) {
        size_t cap = p->capv80_addrs ? p->capv80_addrs * 2 : 64;
        uint64_t *a = cap <= V3_MAX ? realloc(p->v80_addrs, cap * sizeof *a) : NULL;
        if (!a)
            return; /* only a lost merge: both events stay */
        p->v80_addrs = a;
        p->capv80_addrs = cap;
    }
    p->v80_addrs[p->nv80_addrs++] = r->st.addr;
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
    free(p->v80_addrs);
    p->v80_addrs = NULL;
    p->nv80_addrs = p->capv80_addrs = 0;
}

int kdh_ingest_v3_hold(kdh_ingest_parser_t *p, const kdh_ingest_stack_t *st, kdh_err_t *err)
{
    for (size_t i = 0; st->has_addr && i < p->nv80_addrs; i++)
        if (p->v80_addrs[i] == st->addr)
            return KDH_OK; /* the 0x80 log already gave this block with its stack */
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
    p->nv80_addrs = 0;
    return rc;
}
