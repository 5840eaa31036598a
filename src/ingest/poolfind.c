/* poolfind.c: `!poolfind TAG [type]` output (reference/log-formats.md section 6) as a snapshot of
 * the tag's live blocks: per tag and pool type, allocs = the blocks listed "(Allocated)" (newer
 * kdexts list only allocated blocks) and bytes = the sum of their sizes, frees = 0. Repeated
 * !poolfind commands over a session then read as a growth series, like !poolused snapshots. The
 * output is one block from its "Scanning" / "Searching" line to the next prompt or other output;
 * "......" elisions and "...terminating" notes inside it are passed over. */
#include "internal.h"

#include <string.h>

static const char *pool_name(const char *g, size_t gl)
{
    if (!gl)
        return NULL;
    switch (g[0]) {
    case 'N':
    case 'n':
        return "nonpaged";
    case 'P':
    case 'p':
        return "paged";
    case 'S':
    case 's':
        return "session";
    default:
        return NULL; /* "Special pool" and the like: no pool type the store knows */
    }
}

static void add(kdh_ingest_parser_t *p, const char *tag, size_t tl, const char *pool, uint64_t size)
{
    char t[5];
    memset(t, ' ', 4);
    memcpy(t, tag, tl > 4 ? 4 : tl);
    t[4] = 0;
    for (size_t i = 0; i < p->npf; i++)
        if (p->pf[i].pool == pool && memcmp(p->pf[i].tag, t, 5) == 0) {
            p->pf[i].blocks++;
            p->pf[i].bytes += size;
            return;
        }
    if (p->npf == KDH_INGEST_PF_MAX) {
        kdh_ingest_note_skip(p); /* more tags than one wildcard search is expected to show */
        return;
    }
    kdh_ingest_pf_acc_t *a = &p->pf[p->npf++];
    memcpy(a->tag, t, 5);
    a->pool = pool;
    a->blocks = 1;
    a->bytes = size;
}

int kdh_ingest_poolfind_end(kdh_ingest_parser_t *p, kdh_err_t *err)
{
    int rc = KDH_OK;
    if (p->blk == BLK_POOLFIND)
        p->blk = BLK_NONE;
    for (size_t i = 0; i < p->npf && !rc; i++) {
        kdh_ingest_sample_t sm;
        memset(&sm, 0, sizeof sm);
        sm.origin = "poolfind";
        memcpy(sm.tag, p->pf[i].tag, 5);
        sm.pool = p->pf[i].pool;
        sm.allocs = p->pf[i].blocks;
        sm.has_allocs = 1;
        sm.frees = 0;
        sm.has_frees = 1;
        sm.bytes = p->pf[i].bytes;
        rc = kdh_ingest_emit_sample(p, &sm, err);
    }
    p->npf = 0;
    p->pf_pool = NULL;
    return rc;
}

/* A row inside the block: 1 when it is one (counted or, for a free block, passed over). */
static int row(kdh_ingest_parser_t *p, const char *s, size_t n)
{
    size_t fov[2 * KDH_INGEST_PFROW_GROUPS], *ov = fov;
    const char *g, *tag;
    size_t gl, tl;
    uint64_t size;
    /* pfrow.c decides rows of plain text; PCRE2 the others */
    int fast = kdh_ingest_pfrow_fast(PAT_PFROW, s, n, fov);
    if (fast > 0 || (fast < 0 && kdh_ingest_match(p->pat, PAT_PFROW, s, n, &ov))) {
        kdh_ingest_group(ov, 2, s, &tag, &tl);
        kdh_ingest_group(ov, 3, s, &g, &gl);
        if (!kdh_ingest_hex(g, gl, &size))
            return 0;
        kdh_ingest_group(ov, 4, s, &g, &gl);
        add(p, tag, tl, pool_name(g, gl), size);
        return 1;
    }
    ov = fov;
    fast = kdh_ingest_pfrow_fast(PAT_PFROW_OLD, s, n, fov);
    if (fast > 0 || (fast < 0 && kdh_ingest_match(p->pat, PAT_PFROW_OLD, s, n, &ov))) {
        if (!kdh_ingest_group(ov, 3, s, &g, &gl) || g[0] == 'F')
            return 1; /* a free block that still carries the tag */
        kdh_ingest_group(ov, 4, s, &tag, &tl);
        kdh_ingest_group(ov, 2, s, &g, &gl);
        if (!kdh_ingest_hex(g, gl, &size))
            return 0;
        add(p, tag, tl, p->pf_pool, size);
        return 1;
    }
    return 0;
}

/* "Scanning large pool ..." or "Searching X pool (...)": 1 when the line is one. */
static int header(kdh_ingest_parser_t *p, const char *t, size_t tn, const char *s, size_t n)
{
    size_t *ov;
    const char *g;
    size_t gl;
    if (!((tn >= 9 && memcmp(t, "Searching", 9) == 0) || (tn >= 14 && memcmp(t, "Scanning large", 14) == 0)) ||
        !kdh_ingest_match(p->pat, PAT_PFHDR, s, n, &ov))
        return 0;
    /* rows under "Scanning large pool" (old layout) carry no pool type */
    p->pf_pool = kdh_ingest_group(ov, 1, s, &g, &gl) ? pool_name(g, gl) : NULL;
    return 1;
}

int kdh_ingest_poolfind_line(kdh_ingest_parser_t *p, const char *s, size_t n, size_t i, kdh_err_t *err)
{
    const char *t = s + i;
    size_t tn = n - i;
    if (p->blk != BLK_POOLFIND) {
        if (tn && t[0] == 'S' && header(p, t, tn, s, n)) {
            p->blk = BLK_POOLFIND;
            p->npf = 0;
            p->st.kinds_seen |= KDH_INGEST_POOLUSED;
            return 1;
        }
        return 0;
    }
    if (tn == 0 || (tn >= 3 && memcmp(t, "...", 3) == 0))
        return 1; /* blank, an elision, "...terminating - searched pool to ..." */
    if ((t[0] == '*' || kdh_ingest_hexval1[(unsigned char)t[0]]) && row(p, s, n))
        return 1;
    if (t[0] == 'S' && header(p, t, tn, s, n))
        return 1;
    int rc = kdh_ingest_poolfind_end(p, err);
    return rc ? rc : 0;
}
