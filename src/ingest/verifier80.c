/* verifier80.c: the records of one `!verifier 0x80` output are held and emitted together, oldest
 * first. The pool log is a ring the extension may print newest first; pairing a free with its
 * allocation by address (the report does it in event order) needs the allocation first. The
 * direction is read from the records themselves: for the first address that has both an
 * allocation and a free, whichever comes first in the text is the older one. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define V80_MAX 4096 /* records held per output; beyond that they go out in text order */

static int emit_one(kdh_ingest_parser_t *p, kdh_ingest_v80_t *r, kdh_err_t *err)
{
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
}
