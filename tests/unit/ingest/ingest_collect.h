/* ingest_collect.h: test helper that runs the ingest parser over a file or a string and keeps
 * every stack (frames copied) and pool sample in memory for assertions. */
#ifndef INGEST_COLLECT_H
#define INGEST_COLLECT_H

#include <stdlib.h>
#include <string.h>

#include "kdh/ingest.h"

typedef struct coll_stack {
    kdh_ingest_stack_t st; /* frames points into frames below */
    kdh_ingest_frame_t *frames;
} coll_stack_t;

typedef struct coll {
    coll_stack_t stacks[64];
    size_t nstacks;
    kdh_ingest_sample_t samples[256];
    size_t nsamples;
    kdh_ingest_stats_t stats;
} coll_t;

static int coll_on_stack(void *ud, const kdh_ingest_stack_t *st, kdh_err_t *err)
{
    coll_t *c = ud;
    for (size_t i = 0; i < st->nframes; i++) /* every frame's kept length is its text's */
        if (st->frames[i].sym_len != strlen(st->frames[i].sym))
            return kdh_err_set(err, KDH_EINVAL, "frame %zu: sym_len %zu for \"%s\"", i, st->frames[i].sym_len,
                               st->frames[i].sym);
    if (c->nstacks >= 64)
        return 0;
    coll_stack_t *s = &c->stacks[c->nstacks++];
    s->st = *st;
    s->frames = malloc(st->nframes * sizeof *s->frames);
    memcpy(s->frames, st->frames, st->nframes * sizeof *s->frames);
    s->st.frames = s->frames;
    return 0;
}

static int coll_on_sample(void *ud, const kdh_ingest_sample_t *sm, kdh_err_t *err)
{
    (void)err;
    coll_t *c = ud;
    if (c->nsamples < 256)
        c->samples[c->nsamples++] = *sm;
    return 0;
}

static inline void coll_free(coll_t *c)
{
    for (size_t i = 0; i < c->nstacks; i++)
        free(c->stacks[i].frames);
    free(c);
}

/* Parses path (or, when text != NULL, the bytes text[0..len) fed in chunks of chunk bytes). */
static inline coll_t *coll_run(unsigned kinds, const char *path, const char *text, size_t len, size_t chunk)
{
    coll_t *c = calloc(1, sizeof *c);
    kdh_ingest_sink_t sink = {c, coll_on_stack, coll_on_sample};
    kdh_ingest_parser_t *p = NULL;
    kdh_err_t err = {0, ""};
    if (kdh_ingest_parser_new(&p, kinds, &sink, &err) != 0) {
        free(c);
        return NULL;
    }
    int rc;
    if (text) {
        rc = 0;
        for (size_t off = 0; off < len && !rc; off += chunk)
            rc = kdh_ingest_parser_feed(p, text + off, len - off < chunk ? len - off : chunk, &err);
        if (!rc)
            rc = kdh_ingest_parser_finish(p, &err);
    } else {
        rc = kdh_ingest_parse_file(p, path, &err);
    }
    c->stats = *kdh_ingest_parser_stats(p);
    kdh_ingest_parser_free(p);
    if (rc) {
        coll_free(c);
        return NULL;
    }
    return c;
}

/* The module and symbol of a frame as separate strings, for comparisons. */
static inline void frame_parts(const kdh_ingest_frame_t *f, char mod[128], char name[512])
{
    size_t m = f->mod_len < 127 ? f->mod_len : 127;
    memcpy(mod, f->sym, m);
    mod[m] = 0;
    size_t n = f->name_len < 511 ? f->name_len : 511;
    memcpy(name, f->sym + f->name_off, n);
    name[n] = 0;
}

#endif
