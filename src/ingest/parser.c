/* parser.c: the state machine over the lines of a kd/WinDbg transcript: prompts and breaks,
 * stacks (k family, !thread, STACK_TEXT, !mex.t, verifier logs, kmautofail) and the event each
 * stack is attributed to. Line assembly and file reading are in reader.c. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

int kdh_ingest_parser_new(kdh_ingest_parser_t **out, unsigned kinds, const kdh_ingest_sink_t *sink,
                          kdh_err_t *err)
{
    kdh_ingest_parser_t *p = calloc(1, sizeof *p);
    if (!p)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for the ingest parser");
    int rc = kdh_ingest_patterns_new(&p->pat, err);
    if (rc) {
        free(p);
        return rc;
    }
    p->fr = malloc(KDH_INGEST_MAX_FRAMES * sizeof *p->fr);
    p->lcap = 4096;
    p->lbuf = malloc(p->lcap);
    if (!p->fr || !p->lbuf) {
        kdh_ingest_parser_free(p);
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for the ingest parser");
    }
    p->kinds = (kinds & KDH_INGEST_AUTO) ? (kinds & KDH_INGEST_AUTO) : KDH_INGEST_AUTO;
    if (sink)
        p->sink = *sink;
    p->cpu = -1;
    p->file_fd = -1;
    p->snap_pending = 1;
    *out = p;
    return KDH_OK;
}

void kdh_ingest_parser_free(kdh_ingest_parser_t *p)
{
    if (!p)
        return;
    kdh_ingest_patterns_free(p->pat);
    kdh_ingest_v80_free(p);
    free(p->fr);
    free(p->lbuf);
    free(p);
}

const kdh_ingest_stats_t *kdh_ingest_parser_stats(const kdh_ingest_parser_t *p)
{
    return &p->st;
}

void kdh_ingest_note_skip(kdh_ingest_parser_t *p)
{
    if (p->st.nskipped_first < KDH_INGEST_SKIP_FIRST)
        p->st.skipped_first[p->st.nskipped_first++] = p->lineno;
    p->st.skipped++;
}

/* Does the line's text after its leading spaces and tabs (s, n: the callers skip them once)
 * begin with w? Inlined with a literal w, the length is a constant and the first byte is compared
 * before any memcmp: most lines fail right there. */
static inline int starts_with(const char *s, size_t n, const char *w)
{
    size_t m = strlen(w);
    return n >= m && *s == *w && memcmp(s, w, m) == 0;
}

/* The first byte that PCRE2's \s does not match (0 when there is none). The header pattern can
 * only match a line whose first such byte is '#', 'M' or 'C', which keeps memmem off the rest. */
static char first_nonspace(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || s[i] == '\v' || s[i] == '\f'))
            return s[i];
    return 0;
}

static int is_pcre_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* What the header pattern needs after its leading blanks: an optional '#', an optional "Memory"
 * column, then "Child", "RetAddr" or "Call Site". A line without it cannot match, and checking
 * costs a few compares where searching the line for the words cost a scan of it. */
static int header_start(const char *s, size_t n, size_t i)
{
    if (i < n && s[i] == '#')
        for (i++; i < n && is_pcre_space(s[i]);)
            i++;
    if (n - i >= 6 && memcmp(s + i, "Memory", 6) == 0) {
        size_t j = i + 6;
        for (i = j; i < n && is_pcre_space(s[i]);)
            i++;
        if (i == j)
            return 0;
    }
    return (n - i >= 5 && memcmp(s + i, "Child", 5) == 0) || (n - i >= 9 && memcmp(s + i, "Call Site", 9) == 0) ||
           (n - i >= 7 && memcmp(s + i, "RetAddr", 7) == 0);
}

/* What the prompt pattern needs at its first non-blank byte: a digit ("0: kd>", "1:000>"), 'k' or
 * 'l' ("kd>", "lkd>") or a drive letter and ':' ("C:\>"). i: the first byte \s does not match. */
static int prompt_start(const char *s, size_t n, size_t i)
{
    if (i == n)
        return 0;
    char c = s[i];
    if ((c >= '0' && c <= '9') || c == 'k' || c == 'l')
        return 1;
    return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) && i + 1 < n && s[i + 1] == ':';
}

/* ---- stacks and events ---- */

static uint64_t stack_hash(const kdh_ingest_frame_t *f, size_t n)
{
    /* only compares a stack with the previous one of the same break: each frame's text hashed
     * with the running value as seed, so frame boundaries count */
    uint64_t h = n;
    for (size_t i = 0; i < n; i++)
        h = XXH3_64bits_withSeed(f[i].sym, f[i].sym_len, h);
    return h;
}

static int name_is(const kdh_ingest_frame_t *f, const char *name)
{
    size_t m = strlen(name);
    return f->form == KDH_INGEST_CS_SYMBOL && f->name_len == m && memcmp(f->sym + f->name_off, name, m) == 0;
}

/* A tag argument; the kernel ignores the protected-pool bit (0x80000000) when it compares. */
static int tag_arg(uint32_t v, kdh_ingest_stack_t *st)
{
    if (kdh_ingest_tag_from_dword(v, st->tag) || kdh_ingest_tag_from_dword(v & 0x7fffffffu, st->tag)) {
        st->tag_dword = v & 0x7fffffffu;
        return 1;
    }
    return 0;
}

/* x86 "Args to Child" of the pool routine on top give the tag, size or block: the routines are
 * stdcall with (PoolType, NumberOfBytes, Tag) or (P, Tag), so the first three dwords above the
 * return address are exactly those parameters. */
static void args_facts(const kdh_ingest_frame_t *f, size_t n, kdh_ingest_stack_t *st)
{
    static const char *const allocs[] = {"ExAllocatePoolWithTag", "ExAllocatePoolWithTagPriority",
                                         "ExAllocatePoolWithQuotaTag", "VerifierExAllocatePoolWithTag",
                                         "VerifierExAllocatePoolWithTagPriority",
                                         "VeAllocatePoolWithTagPriority"};
    static const char *const frees[] = {"ExFreePoolWithTag", "VerifierExFreePoolWithTag", "ExFreePool",
                                        "ExFreeHeapPool"};
    for (size_t i = 0; i < n && i < 6; i++) {
        if (f[i].nargs != 3)
            continue;
        for (size_t k = 0; k < KDH_ARRAY_LEN(allocs); k++)
            if (name_is(&f[i], allocs[k])) {
                tag_arg(f[i].args[2], st);
                st->size = f[i].args[1];
                st->has_size = 1;
                return;
            }
        for (size_t k = 0; k < KDH_ARRAY_LEN(frees); k++)
            if (name_is(&f[i], frees[k])) {
                st->addr = f[i].args[0];
                st->has_addr = 1;
                if (k < 2)
                    tag_arg(f[i].args[1], st);
                return;
            }
    }
}

static void set_tag_text(kdh_ingest_stack_t *st, const char *t)
{
    memcpy(st->tag, t, 5);
    st->tag_dword = (uint32_t)(unsigned char)t[0] | (uint32_t)(unsigned char)t[1] << 8 |
                    (uint32_t)(unsigned char)t[2] << 16 | (uint32_t)(unsigned char)t[3] << 24;
}

int kdh_ingest_emit_stack(kdh_ingest_parser_t *p, kdh_ingest_stack_t *st, kdh_err_t *err)
{
    if (!st->has_t && p->file_fd >= 0) {
        /* before the file's first clock line: that line's time, looked up once per file */
        if (!p->ahead_done) {
            p->ahead_done = 1;
            p->has_ahead = kdh_ingest_first_clock(p, p->file_fd, &p->ahead);
        }
        if (p->has_ahead)
            st->t = p->ahead, st->has_t = 1;
    }
    p->st.stacks++;
    p->st.frames += st->nframes;
    if (!st->repeat)
        p->st.events++;
    if (p->sink.on_stack)
        return p->sink.on_stack(p->sink.ud, st, err);
    return KDH_OK;
}

int kdh_ingest_end_stack(kdh_ingest_parser_t *p, kdh_err_t *err)
{
    int was_open = p->open;
    p->open = 0;
    p->armed = 0;
    if (!was_open || p->nfr == 0)
        return KDH_OK;
    kdh_ingest_stack_t st;
    memset(&st, 0, sizeof st);
    st.frames = p->fr;
    st.nframes = p->nfr;
    st.cpu = p->cpu;
    st.line = p->stack_line;
    st.origin = p->arm.origin;
    st.thread = p->arm.thread;
    st.t = p->clock;
    st.has_t = p->has_clock;
    st.kind = KDH_INGEST_EV_HIT;
    if (p->arm.has_addr)
        st.addr = p->arm.addr, st.has_addr = 1;
    if (p->arm.has_size)
        st.size = p->arm.size, st.has_size = 1;

    int top = -1;
    for (size_t i = 0; i < p->nfr && i < 5 && top < 0; i++)
        top = kdh_ingest_pool_routine(&p->fr[i]);
    if (p->arm.forced_kind >= 0) {
        st.kind = p->arm.forced_kind;
    } else if (strcmp(p->arm.origin, "verifier80") == 0) {
        /* the pool log holds allocations and frees; only the first frame tells them apart */
        st.kind = kdh_ingest_pool_routine(&p->fr[0]) == KDH_INGEST_EV_FREE ? KDH_INGEST_EV_FREE
                                                                            : KDH_INGEST_EV_ALLOC;
    } else if (top >= 0) {
        st.kind = top;
    } else if (p->break_id) {
        st.kind = p->break_kind;
    }
    if (p->arm.forced_kind < 0 && strcmp(p->arm.origin, "verifier80") != 0) {
        args_facts(p->fr, p->nfr, &st);
        if (!st.tag[0] && st.kind != KDH_INGEST_EV_HIT) {
            /* a breakpoint's own tag first, then PoolHitTag's, then a pool breakpoint's */
            if (p->break_is_bp && p->bp_tag[0])
                set_tag_text(&st, p->bp_tag); // NOLINT(bugprone-branch-clone): the same tag at another rank
            else if (p->hit_tag[0])
                set_tag_text(&st, p->hit_tag);
            else if (p->bp_tag[0])
                set_tag_text(&st, p->bp_tag);
        }
    }
    if (p->break_id && p->arm.forced_kind < 0 && strcmp(p->arm.origin, "verifier80") != 0) {
        uint64_t h = stack_hash(p->fr, p->nfr);
        if (p->break_has_hash && p->break_last_hash == h)
            st.repeat = 1;
        p->break_last_hash = h;
        p->break_has_hash = 1;
    }
    p->st.kinds_seen |= (strcmp(st.origin, "k") == 0 || strcmp(st.origin, "kc") == 0 ||
                         strcmp(st.origin, "stack_text") == 0)
                            ? KDH_INGEST_KD
                            : KDH_INGEST_VERIFIER;
    p->nfr = 0;
    if (strcmp(st.origin, "verifier80") == 0)
        return kdh_ingest_v80_hold(p, &st, err);
    int rc = kdh_ingest_v80_flush(p, err); /* other output: the pool log listing has ended */
    return rc ? rc : kdh_ingest_emit_stack(p, &st, err);
}

static void arm(kdh_ingest_parser_t *p, unsigned mask, const char *origin, int forced_kind)
{
    memset(&p->arm, 0, sizeof p->arm);
    p->arm.mask = mask;
    p->arm.origin = origin;
    p->arm.forced_kind = forced_kind;
    p->armed = 1;
    p->open = 0;
    p->nfr = 0;
    p->has_last_ret = 0;
    p->kp_open = 0;
}

/* Appends the frame just parsed into p->fr[p->nfr] (already filled). */
static void add_frame(kdh_ingest_parser_t *p, int layout)
{
    kdh_ingest_frame_t *f = &p->fr[p->nfr];
    if (!p->open) {
        p->open = 1;
        p->stack_line = p->lineno;
    }
    /* A frame's own instruction is the return address printed on the frame above it (inline
     * frames share their physical frame's). Raw-address and ADDR layouts carry it directly. */
    if (!f->has_addr && layout != KDH_INGEST_L_ADDR && p->has_last_ret) {
        f->addr = p->last_ret;
        f->has_addr = 1;
    }
    if (f->has_ret && !f->is_inline) {
        p->last_ret = f->ret;
        p->has_last_ret = 1;
    }
    /* kP prints "Drv!Fn(" and then one parameter per line up to ")+0xoff" */
    p->kp_open = f->form == KDH_INGEST_CS_SYMBOL && f->name_len > 1 && !f->truncated &&
                 f->sym[f->name_off + f->name_len - 1] == '(';
    p->kp_lines = 0;
    if (p->nfr + 1 < KDH_INGEST_MAX_FRAMES)
        p->nfr++;
    else
        kdh_ingest_note_skip(p); /* deeper than we keep: the frame is dropped, the line counted */
}

/* A line of a kP parameter list. The last one ends in ")" or ")+0xoff": the frame then becomes
 * "Drv!Fn+0xoff", as k prints it, so that it deduplicates with k. Returns 1 when consumed. */
static int kp_line(kdh_ingest_parser_t *p, const char *s, size_t n)
{
    if (++p->kp_lines > 64 || p->nfr == 0) {
        p->kp_open = 0;
        return 0;
    }
    n = kdh_ingest_strip_annotations(s, n);
    size_t e = n;
    while (e && ((s[e - 1] >= '0' && s[e - 1] <= '9') || (s[e - 1] >= 'a' && s[e - 1] <= 'f') ||
                 (s[e - 1] >= 'A' && s[e - 1] <= 'F')))
        e--;
    uint64_t off = 0;
    int has_off = 0;
    if (e >= 4 && e < n && memcmp(s + e - 3, "+0x", 3) == 0 && s[e - 4] == ')') {
        has_off = kdh_ingest_hex(s + e, n - e, &off);
        e -= 3;
    } else {
        e = n;
    }
    if (!e || s[e - 1] != ')')
        return 1; /* a parameter line */
    kdh_ingest_frame_t *f = &p->fr[p->nfr - 1];
    size_t q = f->name_off + f->name_len - 1; /* the '(' */
    char tail[24] = "";
    if (has_off)
        snprintf(tail, sizeof tail, "+0x%llx", (unsigned long long)off);
    size_t tl = strlen(tail);
    if (q + tl < KDH_INGEST_SYM_MAX) {
        memcpy(f->sym + q, tail, tl + 1);
        f->sym_len = q + tl;
        f->name_len--;
        f->off = off;
        f->has_off = has_off;
    }
    p->kp_open = 0;
    return 1;
}

/* Inside an open stack, a line that starts like a frame but fails the grammar is a damaged
 * frame (counted); anything else ends the stack. */
static int looks_like_frame(const char *s, size_t n)
{
    size_t i = 0, h = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    while (i + h < n && ((s[i + h] >= '0' && s[i + h] <= '9') || (s[i + h] >= 'a' && s[i + h] <= 'f')))
        h++;
    return h >= 1 && h <= 16 && i + h < n && s[i + h] == ' ' && i + h + 9 <= n;
}

/* ---- breaks and prompts ---- */

static void new_break(kdh_ingest_parser_t *p, int is_bp)
{
    p->break_id = ++p->break_seq;
    p->break_kind = KDH_INGEST_EV_HIT;
    p->break_loc_pending = 1;
    p->break_is_bp = is_bp;
    p->break_has_hash = 0;
    p->go_pending = 0;
}

static void location(kdh_ingest_parser_t *p, const char *s, size_t n)
{
    kdh_ingest_frame_t f;
    memset(&f, 0, sizeof f);
    if (kdh_ingest_parse_callsite(p->pat, s, n, &f) != KDH_OK)
        return;
    int k = kdh_ingest_pool_routine(&f);
    p->break_kind = k >= 0 ? k : KDH_INGEST_EV_HIT;
    p->break_loc_pending = 0;
}

static void tag_from_text(const char *g, size_t gl, int quoted, char out[5])
{
    if (quoted) {
        memset(out, ' ', 4);
        memcpy(out, g, gl > 4 ? 4 : gl);
        out[4] = 0;
        return;
    }
    uint64_t v;
    if (!kdh_ingest_hex(g, gl, &v) || !kdh_ingest_tag_from_dword((uint32_t)v, out))
        out[0] = 0;
}

/* One command of a prompt line ("kvn", ".thread ; .cxr ; kb" is split by the caller). */
static void command(kdh_ingest_parser_t *p, const char *c, size_t n)
{
    size_t *ov;
    const char *g;
    size_t gl;
    while (n && (*c == ' ' || *c == '\t'))
        c++, n--;
    while (n && (c[n - 1] == ' ' || c[n - 1] == '\t'))
        n--;
    if (!n)
        return;
    /* the patterns need their command word first: "ed" / "ea", or "bp" / "bu" / "bm" */
    char b0 = first_nonspace(c, n);
    const char *b = b0 ? memchr(c, b0, n) : NULL;
    if (b0 == 'e' && b + 1 < c + n && (b[1] == 'd' || b[1] == 'a') &&
        kdh_ingest_match(p->pat, PAT_HITTAG, c, n, &ov)) {
        if (kdh_ingest_group(ov, 1, c, &g, &gl))
            tag_from_text(g, gl, 0, p->hit_tag);
        else if (kdh_ingest_group(ov, 2, c, &g, &gl) || kdh_ingest_group(ov, 3, c, &g, &gl))
            tag_from_text(g, gl, 1, p->hit_tag);
        return;
    }
    if (b0 == 'b' && b + 1 < c + n && (b[1] == 'p' || b[1] == 'u' || b[1] == 'm') &&
        kdh_ingest_match(p->pat, PAT_BPTAG, c, n, &ov)) {
        if (kdh_ingest_group(ov, 1, c, &g, &gl))
            tag_from_text(g, gl, 0, p->bp_tag);
        else if (kdh_ingest_group(ov, 2, c, &g, &gl))
            tag_from_text(g, gl, 1, p->bp_tag);
        return;
    }
    size_t w = 0;
    while (w < n && c[w] != ' ' && c[w] != '\t')
        w++;
    if (c[0] == 'g' && (w == 1 || (w == 2 && (c[1] == 'c' || c[1] == 'h' || c[1] == 'n')))) {
        p->break_id = 0; /* the target runs: the next stack belongs to the next break */
        p->go_pending = 1;
        return;
    }
    /* k, kb, kv, kn, kp, kP, kc, knL, kvn, kM ... (but not kd, which dumps raw stack words) */
    if (c[0] == 'k' && !(w == 2 && c[1] == 'd')) {
        int ok = 1, has_c = 0;
        for (size_t i = 1; i < w; i++) {
            if (!strchr("bcfiLmMnpPv", c[i]))
                ok = 0;
            if (c[i] == 'c')
                has_c = 1;
        }
        if (ok && has_c && (p->kinds & KDH_INGEST_KD))
            arm(p, KDH_INGEST_L_KC, "kc", -1); /* kc prints no header */
    }
}

static void prompt(kdh_ingest_parser_t *p, const char *s, size_t *ov)
{
    const char *g;
    size_t gl;
    uint64_t cpu;
    if (kdh_ingest_group(ov, 1, s, &g, &gl) && kdh_ingest_dec(g, gl, &cpu))
        p->cpu = (int)cpu;
    p->armed = 0;
    p->blk = BLK_NONE;
    p->snap_pending = 1;
    p->thread_hint = 0;
    if (!kdh_ingest_group(ov, 2, s, &g, &gl) || !g)
        return;
    for (const char *c = g, *end = g + gl;;) {
        const char *semi = memchr(c, ';', (size_t)(end - c));
        command(p, c, (size_t)((semi ? semi : end) - c));
        if (!semi)
            break;
        c = semi + 1;
    }
}

/* "Debug session time: Tue Mar 17 10:21:12.345 2020 (UTC + 1:00)", printed when the debugger
 * connects and by .time / vertarget: the clock for what follows. The time is local to the zone in
 * parentheses; no zone is taken as UTC. */
int kdh_ingest_session_clock(const char *s, const size_t *ov, double *t)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const char *g;
    size_t gl;
    uint64_t v[10] = {0};
    if (!kdh_ingest_group(ov, 1, s, &g, &gl) || gl != 3)
        return 0;
    const char *m = memmem(months, 36, g, 3);
    if (!m || (m - months) % 3)
        return 0;
    for (int k = 2; k <= 10; k++) {
        if (k == 8)
            continue; /* the sign */
        if (kdh_ingest_group(ov, k, s, &g, &gl) && !kdh_ingest_dec(g, gl, &v[k - 1]))
            return 0;
    }
    if (kdh_ingest_group(ov, 6, s, &g, &gl))
        for (size_t i = gl; i < 3; i++)
            v[5] *= 10; /* ".5" is 500 ms */
    if (v[1] < 1 || v[1] > 31 || v[2] > 23 || v[3] > 59 || v[4] > 60 || v[8] > 14 || v[9] > 59)
        return 0;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = (int)v[6] - 1900;
    tm.tm_mon = (int)((m - months) / 3);
    tm.tm_mday = (int)v[1];
    tm.tm_hour = (int)v[2];
    tm.tm_min = (int)v[3];
    tm.tm_sec = (int)v[4];
    time_t local = timegm(&tm);
    if (local == (time_t)-1)
        return 0;
    double off = (double)(v[8] * 3600 + v[9] * 60);
    if (kdh_ingest_group(ov, 8, s, &g, &gl) && g[0] == '-')
        off = -off;
    *t = (double)local - off + (double)v[5] / 1000.0;
    return 1;
}

/* ---- one line ---- */

/* lead: the count of leading spaces and tabs; lead_s: of leading bytes PCRE2's \s matches */
static int kd_line(kdh_ingest_parser_t *p, const char *s, size_t n, size_t lead, size_t lead_s)
{
    size_t *ov;
    const char *g;
    size_t gl;
    size_t tn = n - lead;
    const char *t = s + lead;
    /* cheap substring and first-word checks keep the patterns off ordinary lines */
    int h = header_start(s, n, lead_s) && kdh_ingest_match(p->pat, PAT_HEADER, s, n, &ov);
    if (h) {
        if (kdh_ingest_group(ov, 4, s, &g, &gl)) {
            arm(p, KDH_INGEST_L_KC, "kc", -1);
            return 1;
        }
        unsigned mask = kdh_ingest_group(ov, 1, s, &g, &gl)   ? KDH_INGEST_L_X86
                        : kdh_ingest_group(ov, 2, s, &g, &gl) ? KDH_INGEST_L_X64
                                                              : KDH_INGEST_L_MEX;
        arm(p, mask, "k", -1);
        p->arm.thread = p->thread_hint;
        return 1;
    }
    if (starts_with(t, tn, "Debug session time:") && kdh_ingest_match(p->pat, PAT_SESSTIME, s, n, &ov)) {
        double c;
        if (kdh_ingest_session_clock(s, ov, &c))
            p->clock = c, p->has_clock = 1;
        return 1;
    }
    if (starts_with(t, tn, "THREAD ") && kdh_ingest_match(p->pat, PAT_THREADHDR, s, n, &ov)) {
        uint64_t v;
        kdh_ingest_group(ov, 1, s, &g, &gl);
        if (kdh_ingest_hex(g, gl, &v))
            p->thread_hint = v;
        return 1;
    }
    if (starts_with(t, tn, "STACK_TEXT:")) {
        arm(p, KDH_INGEST_L_X86 | KDH_INGEST_L_X64, "stack_text", -1);
        return 1;
    }
    if (starts_with(t, tn, "Breakpoint ") && kdh_ingest_match(p->pat, PAT_BPHIT, s, n, &ov)) {
        new_break(p, 1);
        return 1;
    }
    if ((starts_with(t, tn, "Break instruction") || starts_with(t, tn, "*** Fatal")) &&
        kdh_ingest_match(p->pat, PAT_BREAKEX, s, n, &ov)) {
        /* "Fatal System Error" is followed by its own "Break instruction exception": one break */
        if (!(p->break_id && p->break_loc_pending))
            new_break(p, 0);
        return 1;
    }
    if ((p->break_id && p->break_loc_pending) || p->go_pending) {
        /* the location pattern ends in ":\s*$" and the line's trailing blanks are already gone */
        if (n && (s[n - 1] == ':' || s[n - 1] == '\v' || s[n - 1] == '\f') &&
            kdh_ingest_match(p->pat, PAT_LOCATION, s, n, &ov)) {
            if (!p->break_id || !p->break_loc_pending)
                new_break(p, 0); /* e.g. `sxe ld`: the location line is the only sign of the break */
            kdh_ingest_group(ov, 1, s, &g, &gl);
            location(p, g, gl);
            return 1;
        }
    }
    return 0;
}

static int verifier_line(kdh_ingest_parser_t *p, const char *s, size_t n, size_t lead)
{
    size_t *ov;
    const char *g;
    size_t gl;
    size_t tn = n - lead;
    const char *t = s + lead;
    uint64_t v;
    if (starts_with(t, tn, "Pool block ") && kdh_ingest_match(p->pat, PAT_POOLBLOCK, s, n, &ov)) {
        arm(p, KDH_INGEST_L_ADDR, "verifier80", -1);
        kdh_ingest_group(ov, 1, s, &g, &gl);
        p->arm.has_addr = kdh_ingest_hex(g, gl, &p->arm.addr);
        kdh_ingest_group(ov, 2, s, &g, &gl);
        p->arm.has_size = kdh_ingest_hex(g, gl, &p->arm.size);
        kdh_ingest_group(ov, 3, s, &g, &gl);
        if (kdh_ingest_hex(g, gl, &v))
            p->arm.thread = v;
        return 1;
    }
    if (starts_with(t, tn, "Entry @") && kdh_ingest_match(p->pat, PAT_V4ENTRY, s, n, &ov)) {
        /* fault injection: a failed allocation, so not an allocation that could leak */
        arm(p, KDH_INGEST_L_ADDR, "verifier4", KDH_INGEST_EV_HIT);
        return 1;
    }
    if (p->armed && strcmp(p->arm.origin, "verifier4") == 0 && kdh_ingest_match(p->pat, PAT_THREAD, s, n, &ov)) {
        kdh_ingest_group(ov, 1, s, &g, &gl);
        if (kdh_ingest_hex(g, gl, &v))
            p->arm.thread = v;
        return 1;
    }
    if (starts_with(t, tn, "Sequence:") && kdh_ingest_match(p->pat, PAT_KMSEQ, s, n, &ov)) {
        arm(p, KDH_INGEST_L_ADDR, "kmautofail", KDH_INGEST_EV_HIT);
        return 1;
    }
    if (p->armed && strcmp(p->arm.origin, "kmautofail") == 0 && kdh_ingest_match(p->pat, PAT_KMIRQL, s, n, &ov))
        return 1;
    return 0;
}

int kdh_ingest_parser_line(kdh_ingest_parser_t *p, const char *s, size_t n, kdh_err_t *err)
{
    int rc;
    p->lineno++;
    p->st.lines++;
    while (n && (s[n - 1] == '\r' || s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    /* the leading blanks, counted once for every check below */
    size_t lead = 0, lead_s;
    while (lead < n && (s[lead] == ' ' || s[lead] == '\t'))
        lead++;
    for (lead_s = lead; lead_s < n && is_pcre_space(s[lead_s]);)
        lead_s++;
    if (!p->nul_free && memchr(s, 0, n)) {
        /* binary junk (a glitch on the serial line): never a frame or a row; skipped like a
         * damaged frame, so a stack around it continues */
        kdh_ingest_note_skip(p);
        return KDH_OK;
    }

    if (p->armed || p->open) {
        if (lead == n) {
            if (p->open)
                return kdh_ingest_end_stack(p, err);
            return KDH_OK; /* verifier 4 puts a blank line between "Thread:" and the frames */
        }
        if (p->kp_open && kp_line(p, s, n))
            return KDH_OK;
        int lay = kdh_ingest_parse_frame(p->pat, s, n, p->arm.mask, &p->fr[p->nfr]);
        if (lay) {
            add_frame(p, lay);
            return KDH_OK;
        }
        size_t *ov;
        char w0 = lead_s < n ? s[lead_s] : 0; /* "WARNING: ...", "*** ...", "Unable to load image", "<Intermediate" */
        if ((w0 == 'W' || w0 == '*' || w0 == 'U' || w0 == '<') && kdh_ingest_match(p->pat, PAT_STACKWARN, s, n, &ov))
            return KDH_OK;
        if (p->open && looks_like_frame(s, n) && !kdh_ingest_match(p->pat, PAT_PROMPT, s, n, &ov)) {
            kdh_ingest_note_skip(p);
            return KDH_OK;
        }
        if (p->armed && !p->open && (p->kinds & KDH_INGEST_VERIFIER) && verifier_line(p, s, n, lead))
            return KDH_OK; /* "Thread:" / "IRQ Level" lines between a record head and its frames */
        if ((rc = kdh_ingest_end_stack(p, err)))
            return rc;
    }

    if (p->blk != BLK_NONE ||
        ((p->kinds & (KDH_INGEST_POOLMON | KDH_INGEST_POOLUSED | KDH_INGEST_VERIFIER)) && lead < n &&
         kdh_ingest_table_start(s[lead]))) {
        rc = kdh_ingest_table_line(p, s, n, lead, err);
        if (rc < 0)
            return rc;
        if (rc > 0)
            return KDH_OK;
    }
    if (lead == n)
        return KDH_OK;

    size_t pov[2 * KDH_INGEST_PROMPT_GROUPS], *ov = pov; /* prompt.c decides "kd>" and "N: kd>" */
    if (prompt_start(s, n, lead_s) && memchr(s, '>', n < 260 ? n : 260) &&
        (kdh_ingest_prompt_fast(s, n, pov) > 0 || kdh_ingest_match(p->pat, PAT_PROMPT, s, n, &ov))) {
        if ((rc = kdh_ingest_v80_flush(p, err)))
            return rc;
        prompt(p, s, ov);
        return KDH_OK;
    }
    if ((p->kinds & KDH_INGEST_KD) && kd_line(p, s, n, lead, lead_s))
        return KDH_OK;
    if ((p->kinds & KDH_INGEST_VERIFIER) && verifier_line(p, s, n, lead))
        return KDH_OK;
    /* A line that is none of the above is text between outputs (DbgPrint, other commands). */
    return KDH_OK;
}

int kdh_ingest_parser_finish(kdh_ingest_parser_t *p, kdh_err_t *err)
{
    int rc = KDH_OK;
    if (p->ldiscard) {
        p->lineno++;
        p->st.lines++;
        kdh_ingest_note_skip(p);
    } else if (p->llen) {
        rc = kdh_ingest_parser_line(p, p->lbuf, p->llen, err); /* a last line without newline */
    }
    p->ldiscard = 0;
    p->llen = 0;
    if (!rc)
        rc = kdh_ingest_end_stack(p, err);
    if (!rc)
        rc = kdh_ingest_poolfind_end(p, err);
    if (!rc)
        rc = kdh_ingest_v80_flush(p, err);
    if (!rc)
        rc = kdh_ingest_v3_flush(p, err);
    p->lineno = 0;
    p->blk = BLK_NONE;
    p->armed = p->open = 0;
    p->nfr = 0;
    p->cpu = -1;
    p->has_clock = 0;
    p->clock = 0;
    p->ahead_done = p->has_ahead = 0;
    p->thread_hint = 0;
    p->break_id = 0;
    p->go_pending = 0;
    p->snap_pending = 1;
    p->hit_tag[0] = p->bp_tag[0] = 0;
    return rc;
}

void kdh_ingest_parser_reset_stats(kdh_ingest_parser_t *p)
{
    memset(&p->st, 0, sizeof p->st);
}
