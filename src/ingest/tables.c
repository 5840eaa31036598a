/* tables.c: pool usage tables as snapshots (poolmon screens and -n files, !poolused old and new
 * layouts, !vm pool usage) and the !verifier 3 allocation table, whose rows are one-frame
 * allocation stacks. A snapshot is the run of rows after a prompt, header or "Memory:" line. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

int kdh_ingest_emit_sample(kdh_ingest_parser_t *p, kdh_ingest_sample_t *s, kdh_err_t *err)
{
    if (p->snap_pending || !p->snap_origin || strcmp(p->snap_origin, s->origin) != 0) {
        p->snapshot++;
        p->st.snapshots++;
        p->snap_pending = 0;
        p->snap_origin = s->origin;
        p->vm_seen = 0;
    }
    s->snapshot = p->snapshot;
    s->line = p->lineno;
    p->st.samples++;
    if (p->sink.on_sample)
        return p->sink.on_sample(p->sink.ud, s, err);
    return KDH_OK;
}

static void tag4(char out[5], const char *t, size_t n)
{
    memset(out, ' ', 4);
    memcpy(out, t, n > 4 ? 4 : n);
    out[4] = 0;
}

/* ---- poolmon ---- */

static int poolmon_row(kdh_ingest_parser_t *p, const char *s, size_t n, kdh_err_t *err)
{
    size_t fov[2 * KDH_INGEST_PMROW_GROUPS], *ov = fov;
    const char *g;
    size_t gl;
    int fast = kdh_ingest_pmrow_fast(s, n, fov); /* PCRE2 only for rows that are not plain text */
    if (fast == 0 || (fast < 0 && !kdh_ingest_match(p->pat, PAT_PMROW, s, n, &ov)))
        return 0;
    kdh_ingest_sample_t sm;
    memset(&sm, 0, sizeof sm);
    sm.origin = "poolmon";
    kdh_ingest_group(ov, 1, s, &g, &gl);
    tag4(sm.tag, g, gl);
    kdh_ingest_group(ov, 2, s, &g, &gl);
    sm.pool = g[0] == 'P' ? "paged" : g[0] == 'S' ? "session" : "nonpaged";
    kdh_ingest_group(ov, 3, s, &g, &gl);
    sm.has_allocs = kdh_ingest_dec(g, gl, &sm.allocs);
    kdh_ingest_group(ov, 4, s, &g, &gl);
    sm.has_frees = kdh_ingest_dec(g, gl, &sm.frees);
    if (kdh_ingest_group(ov, 6, s, &g, &gl) && g[0] != '-')
        kdh_ingest_dec(g, gl, &sm.bytes);
    p->st.kinds_seen |= KDH_INGEST_POOLMON;
    int rc = kdh_ingest_emit_sample(p, &sm, err);
    return rc ? rc : 1;
}

/* ---- !poolused ---- */

/* The header names the columns: "Allocs Used" per pool type, or with flag 1 (verbose)
 * "Allocs Frees Diff Used"; the first half is nonpaged, the second paged. */
static int pu_header(kdh_ingest_parser_t *p, const char *s, size_t n, size_t tagcol)
{
    p->pu_tagcol = tagcol;
    size_t i = tagcol + 3;
    unsigned k = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == n)
            break;
        if (k == 8)
            return 0;
        p->pu_kind[k] = s[i];
        while (i < n && s[i] != ' ' && s[i] != '\t')
            i++;
        p->pu_end[k++] = i;
    }
    p->pu_nf = k;
    if (k != 4 && k != 8)
        return 0;
    for (unsigned h = 0; h < k / 2; h++)
        if (p->pu_kind[h] != p->pu_kind[h + k / 2])
            return 0;
    return 1;
}

/* A field of digits (a leading '-' only for Diff, which can be negative). */
static int pu_number(char kind, const char *s, size_t n, uint64_t *v)
{
    if (kind == 'D' && n > 1 && s[0] == '-')
        s++, n--;
    return kdh_ingest_dec(s, n, v); /* digits only, not empty */
}

/* Old kdexts glue the description to the last number ("0UNKNOWN pooltag", "01394 OHCI"), so
 * fields are cut at the header words' last columns; when a cut splits a digit run (rows one
 * column short exist) fall back to blanks, taking the leading digits of the last token. */
static int pu_fields(const kdh_ingest_parser_t *p, const char *s, size_t n, uint64_t v[8])
{
    size_t from = p->pu_tagcol + 4;
    unsigned nf = p->pu_nf;
    const char *tab = memchr(s, '\t', n);
    int cut_ok = !tab;
    for (unsigned k = 0; k < nf && cut_ok; k++) {
        size_t e = p->pu_end[k];
        if (e > n || from >= e) {
            cut_ok = 0;
            break;
        }
        /* the last field is always glued to the description: only inner cuts can split a number */
        if (k + 1 < nf && e < n && s[e - 1] >= '0' && s[e - 1] <= '9' && s[e] >= '0' && s[e] <= '9') {
            cut_ok = 0;
            break;
        }
        size_t a = from, b = e;
        while (a < b && s[a] == ' ')
            a++;
        if (!pu_number(p->pu_kind[k], s + a, b - a, &v[k]))
            cut_ok = 0;
        from = e;
    }
    if (cut_ok)
        return 1;
    size_t end = tab ? (size_t)(tab - s) : n, i = p->pu_tagcol + 4;
    for (unsigned k = 0; k < nf; k++) {
        while (i < end && (s[i] == ' ' || s[i] == '\t'))
            i++;
        size_t a = i;
        if (i < end && s[i] == '-' && p->pu_kind[k] == 'D')
            i++;
        while (i < end && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == a || !pu_number(p->pu_kind[k], s + a, i - a, &v[k]))
            return 0;
        if (k + 1 < nf && i < end && s[i] != ' ')
            return 0;
    }
    return 1;
}

static int is_blank4(const char *t)
{
    return t[0] == ' ' && t[1] == ' ' && t[2] == ' ' && t[3] == ' ';
}

static int poolused_row(kdh_ingest_parser_t *p, const char *s, size_t n, kdh_err_t *err)
{
    size_t tc = p->pu_tagcol;
    /* the tag is the 4 columns under "Tag" and may hold blanks anywhere, but not only blanks */
    if (n < tc + 6 || s[tc + 4] != ' ' || is_blank4(s + tc))
        return 0;
    if (n >= tc + 5 && memcmp(s + tc, "TOTAL", 5) == 0)
        return 1;
    uint64_t v[8];
    if (!pu_fields(p, s, n, v))
        return 0;
    p->st.kinds_seen |= KDH_INGEST_POOLUSED;
    unsigned half = p->pu_nf / 2;
    for (unsigned h = 0; h < 2; h++) {
        kdh_ingest_sample_t sm;
        memset(&sm, 0, sizeof sm);
        sm.origin = "poolused";
        tag4(sm.tag, s + tc, 4);
        sm.pool = h ? "paged" : "nonpaged";
        for (unsigned k = 0; k < half; k++) {
            uint64_t x = v[h * half + k];
            switch (p->pu_kind[k]) {
            case 'A':
                sm.allocs = x, sm.has_allocs = 1;
                break;
            case 'F':
                sm.frees = x, sm.has_frees = 1;
                break;
            case 'U':
                sm.bytes = x;
                break;
            default:
                break;
            }
        }
        int rc = kdh_ingest_emit_sample(p, &sm, err);
        if (rc)
            return rc;
    }
    return 1;
}

/* ---- !vm ---- */

static int vm_line(kdh_ingest_parser_t *p, const char *s, size_t n, size_t *ov, kdh_err_t *err)
{
    const char *g;
    size_t gl;
    uint64_t kb;
    kdh_ingest_sample_t sm;
    memset(&sm, 0, sizeof sm);
    sm.origin = "vm";
    strcpy(sm.tag, "*");
    kdh_ingest_group(ov, 1, s, &g, &gl);
    unsigned bit = gl == 12 ? 1 : gl == 14 ? 2 : 4; /* NonPagedPool, NonPagedPoolNx, PagedPool */
    sm.pool = bit == 1 ? "nonpaged" : bit == 2 ? "nonpagednx" : "paged";
    kdh_ingest_group(ov, 3, s, &g, &gl);
    if (!kdh_ingest_dec(g, gl, &kb) || kb > UINT64_MAX / 1024) {
        kdh_ingest_note_skip(p);
        return 1;
    }
    sm.bytes = kb * 1024;
    if (p->snap_origin && strcmp(p->snap_origin, "vm") == 0 && (p->vm_seen & bit))
        p->snap_pending = 1; /* the same pool again: a second !vm output without a prompt between */
    p->st.kinds_seen |= KDH_INGEST_POOLUSED;
    int rc = kdh_ingest_emit_sample(p, &sm, err);
    p->vm_seen |= bit;
    return rc ? rc : 1;
}

/* ---- !verifier 3 ---- */

static int v3_row(kdh_ingest_parser_t *p, const char *s, size_t n, kdh_err_t *err)
{
    size_t *ov;
    const char *g;
    size_t gl;
    if (!kdh_ingest_match(p->pat, PAT_V3ROW, s, n, &ov) && !kdh_ingest_match(p->pat, PAT_V3ROW_HEX, s, n, &ov))
        return 0;
    kdh_ingest_stack_t st;
    memset(&st, 0, sizeof st);
    st.t = p->clock;
    st.has_t = p->has_clock;
    uint64_t caller = 0;
    kdh_ingest_group(ov, 1, s, &g, &gl);
    st.has_addr = kdh_ingest_hex(g, gl, &st.addr);
    kdh_ingest_group(ov, 2, s, &g, &gl);
    st.has_size = kdh_ingest_hex(g, gl, &st.size);
    kdh_ingest_group(ov, 3, s, &g, &gl);
    tag4(st.tag, g, gl);
    st.tag_dword = (uint32_t)(unsigned char)st.tag[0] | (uint32_t)(unsigned char)st.tag[1] << 8 |
                   (uint32_t)(unsigned char)st.tag[2] << 16 | (uint32_t)(unsigned char)st.tag[3] << 24;
    kdh_ingest_group(ov, 4, s, &g, &gl);
    int has_caller = kdh_ingest_hex(g, gl, &caller);
    const char *cs = NULL;
    size_t csl = 0;
    kdh_ingest_group(ov, 5, s, &cs, &csl);
    kdh_ingest_frame_t *f = &p->fr[0];
    memset(f, 0, sizeof *f);
    int ok = cs && kdh_ingest_parse_callsite(p->pat, cs, csl, f) == KDH_OK;
    if (!ok) {
        /* no symbol column: the caller address is the frame */
        if (!has_caller)
            return 0;
        char buf[24];
        int m = snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)caller);
        if (kdh_ingest_parse_callsite(p->pat, buf, (size_t)m, f) != KDH_OK)
            return 0;
    }
    if (has_caller) {
        f->addr = caller;
        f->has_addr = 1;
    }
    st.frames = f;
    st.nframes = 1;
    st.kind = KDH_INGEST_EV_ALLOC; /* outstanding allocations of the verified driver */
    st.cpu = -1;
    st.line = p->lineno;
    st.origin = "verifier3";
    p->st.kinds_seen |= KDH_INGEST_VERIFIER;
    int rc = kdh_ingest_v3_hold(p, &st, err);
    return rc ? rc : 1;
}

static int is_dashes(const char *s, size_t n)
{
    int dash = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-')
            dash = 1;
        else if (s[i] != ' ')
            return 0;
    }
    return dash;
}

int kdh_ingest_table_line(kdh_ingest_parser_t *p, const char *s, size_t n, size_t lead, kdh_err_t *err)
{
    size_t *ov;
    const char *g;
    size_t gl;
    int rc;
    size_t i = lead;
    /* outside its block, only a "Searching" / "Scanning" line can start !poolfind output */
    if (p->blk == BLK_POOLFIND || ((p->kinds & KDH_INGEST_POOLUSED) && i < n && s[i] == 'S')) {
        if ((rc = kdh_ingest_poolfind_line(p, s, n, i, err)))
            return rc; /* consumed, or a sink error; else any !poolfind block has ended */
    }
    if (p->blk != BLK_NONE) {
        if (i == n || is_dashes(s, n) || (n - i == 3 && memcmp(s + i, "...", 3) == 0))
            return 1; /* blank, ruler, or an elision inside the table */
        if (p->blk == BLK_POOLMON) {
            if ((rc = poolmon_row(p, s, n, err)))
                return rc;
        } else if (p->blk == BLK_POOLUSED) {
            if ((rc = poolused_row(p, s, n, err)))
                return rc;
        } else if (p->blk == BLK_V3) {
            if ((rc = v3_row(p, s, n, err)))
                return rc;
        }
        p->blk = BLK_NONE;
        /* a damaged row still inside the table is counted; other text simply ends the table */
        if (memmem(s, n, " Nonp ", 6) || memmem(s, n, " Paged ", 7)) {
            kdh_ingest_note_skip(p);
            p->blk = BLK_POOLMON;
            return 1;
        }
    }
    if (i == n)
        return 0;
    /* cheap first-letter filter before any pattern runs (kdh_ingest_table_start in internal.h lists
     * the letters, for the parser to skip the call on other lines) */
    char c = s[i];
    /* each pattern below starts with \s* and then the literal checked first: a line without it
     * cannot match, and most lines fail there without a PCRE2 call */
    if (c == 'M' && (p->kinds & KDH_INGEST_POOLMON) && n - i >= 7 && memcmp(s + i, "Memory:", 7) == 0 &&
        kdh_ingest_match(p->pat, PAT_PMMEM, s, n, &ov)) {
        p->snap_pending = 1;
        return 1;
    }
    if (c == 'T' && n - i >= 3 && memcmp(s + i, "Tag", 3) == 0) {
        if ((p->kinds & KDH_INGEST_POOLMON) && kdh_ingest_match(p->pat, PAT_PMHDR, s, n, &ov)) {
            p->blk = BLK_POOLMON;
            p->snap_pending = 1;
            return 1;
        }
        if ((p->kinds & KDH_INGEST_POOLUSED) && kdh_ingest_match(p->pat, PAT_PUHDR, s, n, &ov)) {
            kdh_ingest_group(ov, 1, s, &g, &gl);
            if (pu_header(p, s, n, gl)) {
                p->blk = BLK_POOLUSED;
                p->snap_pending = 1;
            }
            return 1;
        }
    }
    if (c == 'S' && (p->kinds & KDH_INGEST_POOLUSED) && n - i >= 10 && memcmp(s + i, "Sorting by", 10) == 0 &&
        kdh_ingest_match(p->pat, PAT_PUSORT, s, n, &ov)) {
        p->snap_pending = 1;
        return 1;
    }
    if ((c == 'N' || c == 'P') && (p->kinds & KDH_INGEST_POOLUSED) && ((n - i >= 12 && memcmp(s + i, "NonPagedPool", 12) == 0) || (n - i >= 9 && memcmp(s + i, "PagedPool", 9) == 0)) &&
        kdh_ingest_match(p->pat, PAT_VMUSAGE, s, n, &ov))
        return vm_line(p, s, n, ov, err);
    if (c == '*' && (p->kinds & KDH_INGEST_POOLUSED) && memmem(s, n, "Virtual Memory Usage", 20)) {
        p->snap_pending = 1;
        return 1;
    }
    if ((p->kinds & KDH_INGEST_VERIFIER) &&
        ((c == 'A' && n - i >= 7 && memcmp(s + i, "Address", 7) == 0) ||
         (c == 'P' && n - i >= 11 && memcmp(s + i, "PoolAddress", 11) == 0)) &&
        kdh_ingest_match(p->pat, PAT_V3HDR, s, n, &ov)) {
        p->blk = BLK_V3;
        return 1;
    }
    return 0;
}
