/* frame.c: one stack frame line -> module, symbol, offset, addresses. The column layouts and the
 * CALLSITE grammar are in reference/log-formats.md section 3. The callsite is found by removing
 * trailing annotations ([src @ line], (FPO: ..), (CONV: ..), (Inline Function @ ..), (TrapFrame
 * @ ..), <-- notes) from the right: symbols may contain spaces, so no cut at the first blank. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static size_t rtrim(const char *s, size_t n)
{
    while (n && is_space(s[n - 1]))
        n--;
    return n;
}

/* Finds the last occurrence of needle (length m) in s[0..n); -1 when absent. */
static long last_of(const char *s, size_t n, const char *needle, size_t m)
{
    if (m > n)
        return -1;
    for (size_t i = n - m + 1; i-- > 0;)
        if (s[i] == needle[0] && memcmp(s + i, needle, m) == 0)
            return (long)i;
    return -1;
}

/* " [path @ 123]" at the end. Paths may hold spaces and drive letters, so the group starts at
 * the nearest " [" to the left of " @ N]" with no ']' in between. */
static size_t strip_source(const char *s, size_t n)
{
    if (n < 6 || s[n - 1] != ']')
        return n;
    size_t j = n - 1; /* index of ']' */
    size_t d = j;
    while (d > 0 && s[d - 1] >= '0' && s[d - 1] <= '9')
        d--;
    if (d == j || d < 3 || memcmp(s + d - 3, " @ ", 3) != 0)
        return n;
    /* the source group is the last bracket group: its " [" is the last one before " @ N]" with
     * no ']' in between. memrchr: the path between is most of a source frame's bytes, and a
     * loop over them byte by byte was most of this function's time. */
    const char *close = memrchr(s, ']', d - 3);
    size_t lo = close ? (size_t)(close - s) + 1 : 0;
    for (size_t hi = d - 3; hi > lo;) {
        const char *open = memrchr(s + lo, '[', hi - lo);
        if (!open)
            return n;
        size_t i = (size_t)(open - s);
        if (i > 0 && s[i - 1] == ' ')
            return rtrim(s, i - 1);
        hi = i;
    }
    return n;
}

/* The rightmost " (FPO: ", " (CONV: ", " (Inline Function @ ", " (TrapFrame @ " or " (no FPO"
 * in s[0..n): every one starts with " (", so one scan from the right finds it. -1 when none. */
static long last_group(const char *s, size_t n)
{
    static const struct {
        const char *text;
        size_t len;
    } groups[] = {{" (FPO: ", 7}, {" (CONV: ", 8}, {" (Inline Function @ ", 20}, {" (TrapFrame @ ", 14}, {" (no FPO", 8}};
    if (n < 7)
        return -1;
    for (size_t i = n - 7 + 1; i-- > 0;) {
        if (s[i] != ' ' || s[i + 1] != '(')
            continue;
        for (size_t g = 0; g < KDH_ARRAY_LEN(groups); g++)
            if (i + groups[g].len <= n && memcmp(s + i, groups[g].text, groups[g].len) == 0)
                return (long)i;
    }
    return -1;
}

size_t kdh_ingest_strip_annotations(const char *s, size_t n)
{
    n = rtrim(s, n);
    /* author notes appended to pasted logs: "... <--- note", "<-- note" */
    long a = memchr(s, '<', n) ? last_of(s, n, " <--", 4) : -1; /* memchr: most frames have no note */
    if (a > 0)
        n = rtrim(s, (size_t)a);
    n = strip_source(s, n);
    for (int guard = 0; guard < 4 && n && s[n - 1] == ')'; guard++) {
        long best = last_group(s, n);
        if (best <= 0)
            break;
        n = rtrim(s, (size_t)best);
    }
    return n;
}

/* kp/kP print the parameters between the name and the offset ("Drv!Fn(int a = 0n5)+0x27"); the
 * values differ per call, so the list is dropped and the callsite rebuilt as "Drv!Fn+0x27" to
 * deduplicate like k. "operator()" and names without a trailing list are left alone. */
static void drop_params(kdh_ingest_frame_t *f)
{
    size_t b = f->name_off, e = f->name_off + f->name_len;
    if (f->truncated || e <= b + 2 || f->sym[e - 1] != ')')
        return;
    int depth = 0;
    size_t q = e;
    while (q-- > b) {
        if (f->sym[q] == ')')
            depth++;
        else if (f->sym[q] == '(' && --depth == 0)
            break;
    }
    if (q <= b || q >= e || depth != 0)
        return;
    if (q - b >= 8 && memcmp(f->sym + q - 8, "operator", 8) == 0)
        return;
    char tail[24] = "";
    if (f->has_off)
        snprintf(tail, sizeof tail, "+0x%llx", (unsigned long long)f->off);
    size_t tl = strlen(tail);
    if (q + tl >= KDH_INGEST_SYM_MAX)
        return;
    memcpy(f->sym + q, tail, tl + 1);
    f->sym_len = q + tl;
    f->name_len = q - b;
}

/* Fills out from the CALLSITE groups ov of [s, s+len). */
static int fill_callsite(const char *s, size_t len, const size_t *ov, kdh_ingest_frame_t *out)
{
    const char *g;
    size_t gl;
    size_t keep = len < KDH_INGEST_SYM_MAX - 1 ? len : KDH_INGEST_SYM_MAX - 1;
    /* 16 bytes at a time with fixed-size copies: a callsite is a few dozen bytes, for which the
     * variable-length memcpy's setup cost more than the copy (perf: half of this function) */
    size_t i = 0;
    // cppcheck-suppress knownConditionTrueFalse ; callsites of 16 bytes and more are the common case
    while (keep - i >= 16) {
        memcpy(out->sym + i, s + i, 16);
        i += 16;
    }
    for (size_t w = 8; w; w /= 2)
        if (keep - i >= w) {
            memcpy(out->sym + i, s + i, w);
            i += w;
        }
    out->sym[keep] = 0;
    out->sym_len = keep;
    out->truncated = keep < len;
    out->has_off = 0;
    out->off = 0;
    out->mod_len = out->name_off = out->name_len = 0;
    if (kdh_ingest_group(ov, 1, s, &g, &gl)) {
        out->form = KDH_INGEST_CS_SYMBOL;
        out->mod_len = gl;
        kdh_ingest_group(ov, 2, s, &g, &gl);
        out->name_off = (size_t)(g - s);
        out->name_len = gl;
        if (out->name_off + out->name_len > keep) /* truncated: keep what fits */
            // cppcheck-suppress knownConditionTrueFalse ; true when the name starts before the cut and ends after it
            out->name_len = out->name_off < keep ? keep - out->name_off : 0;
        if (kdh_ingest_group(ov, 3, s, &g, &gl))
            out->has_off = kdh_ingest_hex(g, gl, &out->off);
    } else if (kdh_ingest_group(ov, 4, s, &g, &gl)) {
        out->form = KDH_INGEST_CS_MODOFF;
        out->mod_len = gl;
        kdh_ingest_group(ov, 5, s, &g, &gl);
        out->has_off = kdh_ingest_hex(g, gl, &out->off);
    } else {
        kdh_ingest_group(ov, 6, s, &g, &gl);
        out->form = KDH_INGEST_CS_ADDR;
        if (!kdh_ingest_hex(g, gl, &out->addr))
            return KDH_ECORRUPT;
        out->has_addr = 1;
    }
    if (out->mod_len > keep)
        out->mod_len = keep;
    if (out->form == KDH_INGEST_CS_SYMBOL)
        drop_params(out);
    return KDH_OK;
}

/* direct: decide by callsite.c where it can (0: PCRE2 alone, the reference) */
static int callsite(kdh_ingest_patterns_t *p, const char *s, size_t len, kdh_ingest_frame_t *out, int direct)
{
    size_t *ov;
    len = rtrim(s, len);
    if (!len)
        return KDH_ECORRUPT;
    size_t fov[2 * KDH_INGEST_CS_GROUPS];
    int fast = direct ? kdh_ingest_callsite_fast(s, len, fov) : -1;
    if (fast == 0)
        return KDH_ECORRUPT;
    /* NUL bytes are line noise, never part of a symbol (and would cut the kept text short); the
     * fast path has seen only printable bytes */
    if (fast < 0 && memchr(s, 0, len))
        return KDH_ECORRUPT;
    if (fast > 0)
        ov = fov;
    else if (!kdh_ingest_match(p, PAT_CALLSITE, s, len, &ov))
        return KDH_ECORRUPT;
    return fill_callsite(s, len, ov, out);
}

int kdh_ingest_parse_callsite(kdh_ingest_patterns_t *p, const char *s, size_t len,
                              kdh_ingest_frame_t *out)
{
    return callsite(p, s, len, out, 1);
}

static void clear_frame(kdh_ingest_frame_t *f)
{
    f->sym[0] = 0;
    f->sym_len = 0;
    f->form = 0;
    f->has_addr = f->has_ret = f->has_off = 0;
    f->addr = f->ret = f->off = 0;
    f->nargs = 0;
    f->is_inline = 0;
    f->truncated = 0;
}

/* Parses the callsite part (group rest_g) of a layout match. */
static int finish(kdh_ingest_patterns_t *p, const char *line, const size_t *ov, int rest_g,
                  kdh_ingest_frame_t *out, int direct)
{
    const char *r;
    size_t rl;
    if (!kdh_ingest_group(ov, rest_g, line, &r, &rl))
        return 0; /* (the layouts' last group is never unset on a match) */
    rl = kdh_ingest_strip_annotations(r, rl);
    /* The callsite match reuses the match block: copy what we still need first (done by callers). */
    return callsite(p, r, rl, out, direct) == KDH_OK;
}

/* The callsite of a layout the direct column decision took (kdh_ingest_layout_columns): a frame
 * line is nearly always printable ASCII without annotations, and then one scan of the callsite
 * decides it (kdh_ingest_callsite_scan) instead of the separate passes of the general path for
 * line ends, notes, the printable check and the module name. Returns 1 or 0 as finish, or -1
 * when the callsite holds a line end and the layout is PCRE2's to decide (out untouched). */
static int finish_direct(kdh_ingest_patterns_t *p, const char *line, const size_t *ov, int rest_g,
                         kdh_ingest_frame_t *out)
{
    const char *r;
    size_t rl;
    if (!kdh_ingest_group(ov, rest_g, line, &r, &rl))
        return 0; /* (never unset on a match) */
    size_t cov[2 * KDH_INGEST_CS_GROUPS], m = 0;
    int c = kdh_ingest_callsite_scan(r, rl, cov, &m);
    if (c >= 0)
        return c > 0 && fill_callsite(r, rl, cov, out) == KDH_OK;
    if (c == KDH_INGEST_CS_NOTE) {
        /* printable: the annotations come off the end (trimmed), the module run at the start stays
         * (cut to what is left), so the callsite is decided without scanning it again */
        size_t sl = kdh_ingest_strip_annotations(r, rl);
        return sl && kdh_ingest_callsite_groups(r, sl, m < sl ? m : sl, cov) > 0 &&
               fill_callsite(r, sl, cov, out) == KDH_OK;
    }
    if (memchr(r, '\n', rl) || memchr(r, '\r', rl))
        return -1;
    return finish(p, line, ov, rest_g, out, 1);
}

/* The value of 8 hex digits (known to be hex digits), 8 at a time: each byte's low nibble, plus 9
 * for a letter (bit 6 set), then the nibbles joined pairwise (the first digit is the highest). */
static uint32_t hex8(const char *s)
{
    uint64_t x = kdh_ingest_word(s);
    x = (x & 0x0f0f0f0f0f0f0f0full) + ((x & 0x4040404040404040ull) >> 6) * 9;
    x = ((x & 0x000f000f000f000full) << 4) | ((x & 0x0f000f000f000f00ull) >> 8);
    x = ((x & 0x000000ff000000ffull) << 8) | ((x & 0x00ff000000ff0000ull) >> 16);
    return (uint32_t)(((x & 0xffffu) << 16) | ((x >> 32) & 0xffffu));
}

/* x64 (Child-SP RetAddr [: args :] callsite) or x86 (ChildEBP RetAddr [3 args] callsite).
 * direct: the column decision of layout.c first, PCRE2 where it is unsure (0: PCRE2 alone);
 * fast_only: decide by the direct path alone (0 when it is unsure). */
static int try_layout(kdh_ingest_patterns_t *p, int id, const char *line, size_t len, kdh_ingest_frame_t *out,
                      int direct, int fast_only)
{
    int x64 = id == PAT_X64, rest_g = x64 ? 5 : 8, columns = direct;
    for (;;) {
        size_t fov[2 * KDH_INGEST_LAYOUT_GROUPS], *ov = fov;
        const char *g;
        size_t gl;
        int cols = columns && kdh_ingest_layout_columns(id, line, len, fov) > 0;
        if (!cols && (fast_only || !kdh_ingest_match(p, id, line, len, &ov)))
            return 0;
        /* the groups first: a PCRE2 callsite match reuses the match block ov may point into */
        int is_inline = kdh_ingest_group(ov, 3, line, &g, &gl);
        uint64_t ret = 0, a;
        int has_ret = kdh_ingest_group(ov, 4, line, &g, &gl) && g[0] != '-';
        /* the direct decision has seen 8 hex digits (x64: 8`8) in the columns that are not dashes */
        if (has_ret && cols)
            ret = x64 ? (uint64_t)hex8(g) << 32 | hex8(g + 9) : hex8(g);
        else if (has_ret)
            has_ret = kdh_ingest_hex(g, gl, &ret);
        uint32_t args[3] = {0, 0, 0};
        int nargs = 0;
        for (int i = 0; !x64 && i < 3; i++) {
            if (!kdh_ingest_group(ov, 5 + i, line, &g, &gl))
                break;
            args[i] = g[0] == '-' ? 0 : cols ? hex8(g) : kdh_ingest_hex(g, gl, &a) ? (uint32_t)a : 0;
            nargs = i + 1;
        }
        int fin = cols ? finish_direct(p, line, ov, rest_g, out) : finish(p, line, ov, rest_g, out, direct);
        if (fin < 0) {
            if (fast_only)
                return 0;
            columns = 0; /* a line end inside the callsite: the pattern decides the columns too */
            continue;
        }
        if (!fin)
            return 0;
        out->is_inline = is_inline;
        out->ret = ret;
        out->has_ret = has_ret;
        if (!x64) {
            out->nargs = nargs;
            memcpy(out->args, args, sizeof args);
        }
        return x64 ? KDH_INGEST_L_X64 : KDH_INGEST_L_X86;
    }
}

/* kb/kv without the Child-SP column: "[NN] RetAddr : args : callsite" (PCRE2 alone: it is rare,
 * and tried only after the x64 and x86 layouts failed). An x64 frame for the caller. */
static int try_x64ra(kdh_ingest_patterns_t *p, const char *line, size_t len, kdh_ingest_frame_t *out, int direct)
{
    size_t *ov;
    const char *g;
    size_t gl;
    if (!memchr(line, ':', len) || !kdh_ingest_match(p, PAT_X64RA, line, len, &ov))
        return 0;
    /* the groups first: the callsite match reuses the match block */
    uint64_t ret = 0;
    int has_ret = kdh_ingest_group(ov, 2, line, &g, &gl) && kdh_ingest_hex(g, gl, &ret);
    int is_inline = kdh_ingest_group(ov, 3, line, &g, &gl);
    if (!finish(p, line, ov, 4, out, direct))
        return 0;
    out->is_inline = is_inline;
    out->ret = ret;
    out->has_ret = has_ret;
    return KDH_INGEST_L_X64;
}

static int try_mex(kdh_ingest_patterns_t *p, const char *line, size_t len, kdh_ingest_frame_t *out, int direct)
{
    size_t *ov;
    const char *g;
    size_t gl;
    if (!kdh_ingest_match(p, PAT_MEX, line, len, &ov))
        return 0;
    uint64_t ret = 0;
    kdh_ingest_group(ov, 3, line, &g, &gl);
    int has_ret = kdh_ingest_hex(g, gl, &ret);
    if (!finish(p, line, ov, 4, out, direct))
        return 0;
    out->ret = ret;
    out->has_ret = has_ret;
    return KDH_INGEST_L_MEX;
}

static int try_kc(kdh_ingest_patterns_t *p, const char *line, size_t len, kdh_ingest_frame_t *out, int direct)
{
    size_t *ov;
    if (!kdh_ingest_match(p, PAT_KC, line, len, &ov))
        return 0;
    return finish(p, line, ov, 2, out, direct) ? KDH_INGEST_L_KC : 0;
}

/* ADDR callsite (verifier logs); direct as try_layout */
static int try_addr(kdh_ingest_patterns_t *p, const char *line, size_t len, kdh_ingest_frame_t *out, int direct)
{
    for (int columns = direct;;) {
        size_t fov[2 * KDH_INGEST_LAYOUT_GROUPS], *ov = fov;
        const char *g;
        size_t gl;
        int cols = columns && kdh_ingest_layout_columns(PAT_ADDRFR, line, len, fov) > 0;
        if (!cols && !kdh_ingest_match(p, PAT_ADDRFR, line, len, &ov))
            return 0;
        uint64_t addr = 0;
        if (!kdh_ingest_group(ov, 1, line, &g, &gl) || !kdh_ingest_hex(g, gl, &addr))
            return 0;
        int fin = cols ? finish_direct(p, line, ov, 2, out) : finish(p, line, ov, 2, out, direct);
        if (fin < 0) {
            columns = 0; /* a line end inside the callsite: the pattern decides */
            continue;
        }
        if (!fin)
            return 0;
        out->addr = addr;
        out->has_addr = 1;
        return KDH_INGEST_L_ADDR;
    }
}

static int parse_frame(kdh_ingest_patterns_t *p, const char *line, size_t len, unsigned mask,
                       kdh_ingest_frame_t *out, int direct)
{
    len = rtrim(line, len);
    size_t i = 0;
    while (i < len && is_space(line[i]))
        i++;
    /* Cheap filter first: every layout starts with a hex digit, "(" or "0x". */
    if (i == len)
        return 0;
    char c = line[i];
    if (!(mask & KDH_INGEST_L_KC) &&
        !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '('))
        return 0;
    int r = 0;
    clear_frame(out);
    /* STACK_TEXT takes both layouts. A line the direct x86 path accepts (8-digit columns) cannot
     * match the x64 pattern (its columns need a '`' after 8 digits), so trying it first changes no
     * result and spares x86 lines a failing x64 PCRE2 match. */
    if (direct && (mask & KDH_INGEST_L_X64) && (mask & KDH_INGEST_L_X86))
        r = try_layout(p, PAT_X86, line, len, out, 1, 1);
    if (!r && (mask & KDH_INGEST_L_X64))
        r = try_layout(p, PAT_X64, line, len, out, direct, 0);
    if (!r && (mask & KDH_INGEST_L_X86))
        r = try_layout(p, PAT_X86, line, len, out, direct, 0);
    if (!r && (mask & KDH_INGEST_L_X64))
        r = try_x64ra(p, line, len, out, direct);
    if (!r && (mask & KDH_INGEST_L_MEX))
        r = try_mex(p, line, len, out, direct);
    if (!r && (mask & KDH_INGEST_L_ADDR))
        r = try_addr(p, line, len, out, direct);
    if (!r && (mask & KDH_INGEST_L_KC))
        r = try_kc(p, line, len, out, direct);
    if (!r)
        clear_frame(out);
    return r;
}

int kdh_ingest_parse_frame(kdh_ingest_patterns_t *p, const char *line, size_t len, unsigned mask,
                           kdh_ingest_frame_t *out)
{
    return parse_frame(p, line, len, mask, out, 1);
}

int kdh_ingest_parse_frame_ref(kdh_ingest_patterns_t *p, const char *line, size_t len, unsigned mask,
                               kdh_ingest_frame_t *out)
{
    return parse_frame(p, line, len, mask, out, 0);
}

/* Substrings of routine names that allocate or free pool (kernel, verifier, verifier extension,
 * kmautofail shims, the PoolHitTag trackers that break on older kernels, NDIS lookaside frees).
 * Every one contains "Pool": each is kept as the text before and after it, so that a name is
 * tested only around its own "Pool"s instead of searched for fourteen words. */
typedef struct pool_word {
    const char *pre, *post;
    size_t pre_len, post_len;
} pool_word_t;
#define POOL_WORD(pre, post) {pre, post, sizeof(pre) - 1, sizeof(post) - 1}
static const pool_word_t alloc_words[] = {POOL_WORD("Allocate", ""),      POOL_WORD("AllocateHeap", ""),
                                          POOL_WORD("AllocateSpecial", ""), POOL_WORD("AllocateBig", ""),
                                          POOL_WORD("AllocateLarge", ""), POOL_WORD("ExpInsert", "Tracker")};
static const pool_word_t free_words[] = {POOL_WORD("Free", ""),       POOL_WORD("FreeHeap", ""),
                                         POOL_WORD("FreeSpecial", ""), POOL_WORD("FreeBig", ""),
                                         POOL_WORD("FreeLarge", ""),  POOL_WORD("ExpRemove", "Tracker"),
                                         POOL_WORD("FreeToNPaged", ""), POOL_WORD("FreeTracked", "")};

/* The next "Pool" in s[from..n) (its index), or n when there is none. memchr for its 'P':
 * memmem prepares a shift table on every call, which cost more than the search on names of a
 * few dozen bytes (this runs for the top frames of every stack). */
static size_t next_pool(const char *s, size_t from, size_t n)
{
    for (const char *q = s + from, *e = s + n; e - q >= 4; q++) {
        q = memchr(q, 'P', (size_t)(e - q) - 3);
        if (!q)
            break;
        if (q[1] == 'o' && q[2] == 'o' && q[3] == 'l')
            return (size_t)(q - s);
    }
    return n;
}

/* Is one of the words (k of them) in s[0..n), with its "Pool" at one of the name's (the first at
 * first)? */
static int has_pool_word(const char *s, size_t n, size_t first, const pool_word_t *w, size_t k)
{
    for (size_t at = first; at < n; at = next_pool(s, at + 1, n))
        for (size_t i = 0; i < k; i++)
            if (at >= w[i].pre_len && n - at - 4 >= w[i].post_len &&
                memcmp(s + at - w[i].pre_len, w[i].pre, w[i].pre_len) == 0 &&
                memcmp(s + at + 4, w[i].post, w[i].post_len) == 0)
                return 1;
    return 0;
}

int kdh_ingest_pool_routine(const kdh_ingest_frame_t *f)
{
    if (f->form != KDH_INGEST_CS_SYMBOL)
        return -1;
    const char *s = f->sym + f->name_off;
    size_t n = f->name_len;
    size_t first = next_pool(s, 0, n);
    if (first == n)
        return -1;
    if (has_pool_word(s, n, first, free_words, KDH_ARRAY_LEN(free_words)))
        return KDH_INGEST_EV_FREE;
    if (has_pool_word(s, n, first, alloc_words, KDH_ARRAY_LEN(alloc_words)))
        return KDH_INGEST_EV_ALLOC;
    return -1;
}
