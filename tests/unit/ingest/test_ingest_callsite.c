/* test_ingest_callsite.c: the direct CALLSITE and x64/x86 frame-layout decisions (callsite.c,
 * layout.c) against PCRE2 running the grammar's patterns, the reference: same match or no match,
 * same groups, over token soups built to hit every alternative's edges and over the sample logs
 * (every word-suffix of every line for the callsite, every line for the layouts). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static kdh_ingest_patterns_t *pat;
static unsigned long compared, matched, pcre_only;

/* Fails the test at the first group bound (of groups) where the direct decision fov and PCRE2's ov
 * differ; what names the decision. */
static void same_groups(const char *what, const size_t *fov, const size_t *ov, int groups, const char *s, size_t n)
{
    for (int g = 0; g < 2 * groups; g++)
        if (fov[g] != ov[g])
            fail_msg("%s group %d bound %d differs (fast %zu, pcre2 %zu) on \"%.*s\"", what, g / 2, g % 2, fov[g],
                     ov[g], (int)n, s);
}

/* Fails the test on the first disagreement, naming the text. */
static void same(const char *s, size_t n)
{
    size_t fov[2 * KDH_INGEST_CS_GROUPS];
    int fast = kdh_ingest_callsite_fast(s, n, fov);
    size_t *ov;
    int ref = kdh_ingest_match(pat, PAT_CALLSITE, s, n, &ov) > 0;
    if (fast < 0) {
        pcre_only++;
        return;
    }
    compared++;
    if (fast != ref)
        fail_msg("match differs (fast %d, pcre2 %d) on \"%.*s\"", fast, ref, (int)n, s);
    if (!ref)
        return;
    matched++;
    same_groups("callsite", fov, ov, KDH_INGEST_CS_GROUPS, s, n);
}

static unsigned long lay_matched;

static void same_layout(int id, const char *s, size_t n)
{
    size_t fov[2 * KDH_INGEST_LAYOUT_GROUPS];
    int fast = kdh_ingest_layout_fast(id, s, n, fov);
    if (fast < 0)
        return;
    size_t *ov;
    if (kdh_ingest_match(pat, id, s, n, &ov) <= 0)
        fail_msg("pattern %d: fast path matched what pcre2 does not: \"%.*s\"", id, (int)n, s);
    lay_matched++;
    /* PCRE2 leaves ovector pairs past the pattern's own groups (5 for x64) untouched */
    int groups = id == PAT_X64 ? 6 : 9;
    same_groups(id == PAT_X64 ? "x64 frame" : "x86 frame", fov, ov, groups, s, n);
}

static void layout_soup(void **state)
{
    (void)state;
    static const char *const tok[] = {"00", " ", "  ", "ffffd001`5551d7a0", "--------`--------", "(Inline Function)",
                                      "(Inline)", ":", "0006fc5c", "--------", "nt!Foo+0x10", "abcde", "1234567",
                                      "12345678", "x", "`", "-", "123456789", "ffffd001`5551d7a0f", "a", "0a1f", "12345", "\t", "\r", "\n"};
    const size_t nt = sizeof tok / sizeof tok[0];
    char buf[512];
    unsigned long long r = 0x2545f4914f6cdd1dull;
    for (int it = 0; it < 300000; it++) {
        size_t n = 0;
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int k = (int)(r % 14);
        for (int j = 0; j < k; j++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            /* mostly well-formed columns, so that deep paths are reached */
            const char *t = (j & 1) ? ((r >> 40) % 16 ? " " : "\t") : tok[r % nt];
            size_t l = strlen(t);
            memcpy(buf + n, t, l);
            n += l;
        }
        same_layout(PAT_X64, buf, n);
        same_layout(PAT_X86, buf, n);
    }
    assert_true(lay_matched > 1000);
}

static void token_soup(void **state)
{
    (void)state;
    static const char *const tok[] = {"nt", "!", "+0x", "0x", "1", "f", "A", "g", "`", " ", "<Unloaded_", ">",
                                      "<", "Ex", "$", "-", ".", "_", "(", ")", "12345678", "0", "+", "x",
                                      "ffffffff", "deadbeef", "drv.sys", "::", "*", "\t"};
    const size_t nt = sizeof tok / sizeof tok[0];
    char buf[512];
    unsigned long long r = 0x9e3779b97f4a7c15ull;
    for (int it = 0; it < 300000; it++) {
        size_t n = 0;
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int k = (int)(r % 9);
        for (int j = 0; j < k; j++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            const char *t = tok[r % nt];
            size_t l = strlen(t);
            memcpy(buf + n, t, l);
            n += l;
        }
        same(buf, n);
    }
    /* lengths at the limits: 16 / 17 hex digits, 200 / 201 bytes of an unloaded name */
    const char *edge[] = {"nt!f+0x0123456789abcdef", "nt!f+0x0123456789abcdef0", "nt+0x0123456789abcdef",
                          "nt+0x0123456789abcdef0", "0x0123456789abcdef", "0x0123456789abcdef0",
                          "0x12345678`12345678", "0x123456789`12345678", "0x1`12345678", "0x1`1234567",
                          "nt!+0x10", "nt!a+0x10", "nt! a", "nt!", "!a", "+0x1", "nt+0x", "0x", "a!b+0x1+0x2"};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        same(edge[i], strlen(edge[i]));
    for (size_t len = 199; len <= 202; len++) {
        char u[300] = "<Unloaded_";
        memset(u + 10, 'd', len);
        strcpy(u + 10 + len, ">+0x1047");
        same(u, strlen(u));
    }
    assert_true(matched > 1000 && compared > 100000);
}

static unsigned long pm_matched, pm_compared;

/* The direct poolmon row decision against PCRE2: same match or no match, same groups 0-7. */
static void same_pmrow(const char *s, size_t n)
{
    size_t fov[2 * KDH_INGEST_PMROW_GROUPS];
    int fast = kdh_ingest_pmrow_fast(s, n, fov);
    if (fast < 0)
        return;
    pm_compared++;
    size_t *ov;
    int ref = kdh_ingest_match(pat, PAT_PMROW, s, n, &ov) > 0;
    if (fast != ref)
        fail_msg("poolmon row: fast %d, pcre2 %d on \"%.*s\"", fast, ref, (int)n, s);
    if (!ref)
        return;
    pm_matched++;
    same_groups("poolmon row", fov, ov, KDH_INGEST_PMROW_GROUPS, s, n);
}

static unsigned long pf_matched, pf_compared;

/* The direct !poolfind row decisions against PCRE2: same match or no match, same groups 0-4. */
static void same_pfrow(const char *s, size_t n)
{
    for (int id = PAT_PFROW; id <= PAT_PFROW_OLD; id += PAT_PFROW_OLD - PAT_PFROW) {
        size_t fov[2 * KDH_INGEST_PFROW_GROUPS];
        int fast = kdh_ingest_pfrow_fast(id, s, n, fov);
        if (fast < 0)
            continue;
        pf_compared++;
        size_t *ov;
        int ref = kdh_ingest_match(pat, id, s, n, &ov) > 0;
        if (fast != ref)
            fail_msg("poolfind row %d: fast %d, pcre2 %d on \"%.*s\"", id, fast, ref, (int)n, s);
        if (!ref)
            continue;
        pf_matched++;
        same_groups(id == PAT_PFROW ? "poolfind row" : "old poolfind row", fov, ov, KDH_INGEST_PFROW_GROUPS, s, n);
    }
}

static unsigned long pr_matched;

/* The direct prompt decision against PCRE2: it decides only matches, with the same groups 0-2. */
static void same_prompt(const char *s, size_t n)
{
    size_t fov[2 * KDH_INGEST_PROMPT_GROUPS];
    int fast = kdh_ingest_prompt_fast(s, n, fov);
    if (fast < 0)
        return;
    size_t *ov;
    if (fast != 1 || kdh_ingest_match(pat, PAT_PROMPT, s, n, &ov) <= 0)
        fail_msg("prompt: fast %d where pcre2 does not match \"%.*s\"", fast, (int)n, s);
    pr_matched++;
    same_groups("prompt", fov, ov, KDH_INGEST_PROMPT_GROUPS, s, n);
}

static void sample_lines(void **state)
{
    (void)state;
    DIR *d = opendir(KDH_SAMPLES_DIR);
    if (!d)
        skip();
    struct dirent *e;
    unsigned files = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt"))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", KDH_SAMPLES_DIR, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        files++;
        char line[4096];
        while (fgets(line, sizeof line, f)) {
            size_t n = strcspn(line, "\r\n");
            size_t t = n;
            while (t && line[t - 1] == ' ')
                t--;
            same_layout(PAT_X64, line, t);
            same_layout(PAT_X86, line, t);
            same_pmrow(line, t);
            same_pfrow(line, t);
            same_prompt(line, t);
            /* every suffix that starts a word, with annotations removed as the frame parser does */
            for (size_t i = 0; i < n; i++)
                if (i == 0 || line[i - 1] == ' ')
                    same(line + i, kdh_ingest_strip_annotations(line + i, n - i));
        }
        fclose(f);
    }
    closedir(d);
    assert_true(files > 0);
    assert_true(matched > 1000);
}

static int setup(void **state)
{
    (void)state;
    kdh_err_t err = {0, ""};
    return kdh_ingest_patterns_new(&pat, &err);
}

static int teardown(void **state)
{
    (void)state;
    kdh_ingest_patterns_free(pat);
    return 0;
}

/* The source annotation rule of log-formats.md, a byte at a time from the right: the group is the
 * nearest " [" left of the final " @ N]" with no ']' between them; the text before it, trimmed. */
static size_t ref_source(const char *s, size_t n)
{
    while (n && s[n - 1] == ' ')
        n--;
    if (n < 6 || s[n - 1] != ']')
        return n;
    size_t d = n - 1;
    while (d > 0 && s[d - 1] >= '0' && s[d - 1] <= '9')
        d--;
    if (d == n - 1 || d < 3 || memcmp(s + d - 3, " @ ", 3) != 0)
        return n;
    for (size_t i = d - 3; i-- > 0;) {
        if (s[i] == ']')
            return n;
        if (s[i] == '[' && i > 0 && s[i - 1] == ' ') {
            size_t e = i - 1;
            while (e && s[e - 1] == ' ')
                e--;
            return e;
        }
    }
    return n;
}

/* kdh_ingest_strip_annotations on texts ending in " @ N]" built from the bytes that rule looks at
 * (no '(', ')' or '<', so that only the source group can come off), against ref_source. */
static void source_soup(void **state)
{
    (void)state;
    static const char alphabet[] = "a[] [@ 1";
    unsigned seed = 7;
    char s[64];
    for (int k = 0; k < 200000; k++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = (seed >> 16) % 40, n = 0;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            s[n++] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        seed = seed * 1103515245u + 12345u;
        n += (size_t)sprintf(s + n, "%s", (seed >> 16) % 4 ? " @ 12]" : " @ 3] ");
        size_t got = kdh_ingest_strip_annotations(s, n), want = ref_source(s, n);
        if (got != want)
            fail_msg("\"%.*s\": stripped to %zu bytes, the rule gives %zu", (int)n, s, got, want);
    }
}

/* Decimal fields: values and refusals worked out by hand, around the 19 digits below which no
 * value can overflow and at 2^64. */
static void decimals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int ok;
        uint64_t v;
    } cases[] = {
        {"0", 1, 0}, {"7", 1, 7}, {"1234567890", 1, 1234567890u}, {"", 0, 0}, {"12a", 0, 0}, {"-1", 0, 0},
        {" 1", 0, 0}, {"9999999999999999999", 1, 9999999999999999999ull}, {"18446744073709551615", 1, UINT64_MAX},
        {"18446744073709551616", 0, 0}, {"99999999999999999999", 0, 0}, {"00000000000000000000042", 1, 42},
        {"1844674407370955161/", 0, 0}, {"1:", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t v = 12345;
        int ok = kdh_ingest_dec(cases[i].text, strlen(cases[i].text), &v);
        if (ok != cases[i].ok || (ok && v != cases[i].v))
            fail_msg("\"%s\": %d %llu, want %d %llu", cases[i].text, ok, (unsigned long long)v, cases[i].ok,
                     (unsigned long long)cases[i].v);
    }
}

/* Poolmon rows built from tokens around every element's edges: tags of 1-5 bytes with blanks
 * inside, each type word and near misses, counts with and without "( n )" and their blanks,
 * signs, a tail after the last number, and a missing or extra element. */
static void pmrow_soup(void **state)
{
    (void)state;
    static const char *const lead[] = {"", " ", "  "};
    static const char *const tag[] = {"Io", "Wait", "a b", "Le a", "Nonp", "x", "ab cd", "(1)", "-"};
    static const char *const type[] = {" Nonp ", "  Paged   ", " NonP ", " Pagd ", " Sess ", " Nonpaged ", " Page ",
                                       "Nonp ", " Pagd"};
    static const char *const cnt[] = {"3971107 (   0)   ", "1 ", "12(0) ", "5 (-1)  ", "7 (  ) ", "8 ( 1 )", "9  ( 2 ) ",
                                      "-4 ", "6 (1)(2) "};
    static const char *const tail[] = {"30    8456 (     0)    281", "-2 100 5", "0 0 (0) 0 [ntfs.sys  -  AttrSup.c]",
                                       "1 2 (3) 4   Unknown Driver", "1 2 3", "1 2 (3)4", "1 -2 (-3) -4 x", "1 2 (3) 4x",
                                       "10 20 30 40", ""};
    unsigned long before = pm_compared;
    for (size_t a = 0; a < sizeof lead / sizeof lead[0]; a++)
        for (size_t b = 0; b < sizeof tag / sizeof tag[0]; b++)
            for (size_t c = 0; c < sizeof type / sizeof type[0]; c++)
                for (size_t d = 0; d < sizeof cnt / sizeof cnt[0]; d++)
                    for (size_t e = 0; e < sizeof cnt / sizeof cnt[0]; e++)
                        for (size_t f = 0; f < sizeof tail / sizeof tail[0]; f++) {
                            char line[256];
                            int n = snprintf(line, sizeof line, "%s%s%s%s%s%s", lead[a], tag[b], type[c], cnt[d],
                                             cnt[e], tail[f]);
                            same_pmrow(line, (size_t)n);
                        }
    assert_true(pm_compared - before > 100000);
    assert_true(pm_matched > 10000); /* the soup holds rows, not only near misses */
}

/* !poolfind rows of both layouts built from tokens around every element's edges: leading blanks
 * and stars, address runs of 7-18 bytes with and without '`', tags of 1-5 bytes with blanks and
 * commas inside, sizes of 0-17 digits, pool names, "(Allocated)" / "(Free)", the optional
 * "(Protected)" and "Process:" tails, and near misses of each literal. */
static void pfrow_soup(void **state)
{
    (void)state;
    static const char *const lead[] = {"", "  ", "*", " **"};
    static const char *const addr[] = {"826fa13", "826fa130", "ffffda001accb5f0", "ffffda00`1accb5f0",
                                       "ffffda001accb5f00x"};
    static const char *const newer[] = {" : tag Leak, size     0x140, Nonpaged pool",
                                        " : tag Le  , size 0x20, Paged pool  ",
                                        " : tag a,b, size 0x1, Nonpaged pool",
                                        " : tag a, size 0x1, size 0x2, Paged pool",
                                        " : tag Leak, size 0x12345678123456789, Nonpaged pool",
                                        " : tag Leak, size 0x, Nonpaged pool",
                                        " : tag Leak, size0x1, Nonpaged pool",
                                        " : tag Leak, size 0x1,  pool",
                                        " : tag Leak, size 0x1, Nonpaged pool pool",
                                        " : tag Leaky, size 0x1, Nonpaged pool",
                                        " : tag , size 0x1, Paged pool",
                                        " : tag Leak, sizf 0x1, Paged pool",
                                        " : tag Leak, size 0x1, Paged poolx", " : tag Leak, size 0x1, Paged pooL"};
    static const char *const older[] = {" size:   c0 previous size:   40  (Allocated) Leak",
                                        " size:   10 previous size:   30  (Free)      *Leak (Protected)",
                                        " size: c0 previous size: 40 (Allocated) *Io",
                                        " size: c0 previous size: 40 (Allocated) **Io  ",
                                        " size: c0 previous size: 40 (Allocated) Io Process: ffff`0001",
                                        " size: c0 previous size: 40 (Allocated) Le a (Protected) Process: 1",
                                        " size: c0 previous size: 40 (Allocated) Leaky",
                                        " size: c0 previous size: 40 (Allocated) L (Protected)x",
                                        " size: c0 previous size: 40 (Allocated) L Process: ",
                                        " size: c0 previous size: 40 (Allocated)Leak",
                                        " size: c0 previous size: 40(Free) Leak",
                                        " size:c0 previous size:40 (Free) Leak",
                                        " size: 12345678123456789 previous size: 40 (Free) Leak",
                                        " size: c0 previous size: (Free) Leak",
                                        " size: c0 previous size: 40 (Allocate) Leak",
                                        " size: c0 previous size: 40 (Allocated) *",
                                        " size: c0 previous size: 40 (Allocated) * Leak",
                                        " size: c0 previous size: 40 (Allocated) Leak(Protected)",
                                        " size: c0 previous size: 40 (Allocated) Io(Protected)",
                                        " size: c0 previous size: 40 (Allocated) Io Process:1"};
    unsigned long before = pf_compared;
    char line[256];
    for (size_t a = 0; a < sizeof lead / sizeof lead[0]; a++)
        for (size_t b = 0; b < sizeof addr / sizeof addr[0]; b++) {
            for (size_t c = 0; c < sizeof newer / sizeof newer[0]; c++) {
                int n = snprintf(line, sizeof line, "%s%s%s", lead[a], addr[b], newer[c]);
                same_pfrow(line, (size_t)n);
                for (int k = 0; k < n; k += 3)
                    same_pfrow(line, (size_t)k);
            }
            for (size_t c = 0; c < sizeof older / sizeof older[0]; c++) {
                int n = snprintf(line, sizeof line, "%s%s%s", lead[a], addr[b], older[c]);
                same_pfrow(line, (size_t)n);
                /* every prefix too: each element cut short */
                for (int k = 0; k < n; k += 3)
                    same_pfrow(line, (size_t)k);
            }
        }
    assert_true(pf_compared - before > 2000);
    assert_true(pf_matched > 50); /* rows of both layouts matched */
}

/* Prompt lines around the two forms decided directly: leading blanks, 0-4 digits, ':' with 0-2
 * blanks, "kd>" and its near misses (lkd, kd:x86, 0:000>, C:\\>), with and without a command. */
static void prompt_soup(void **state)
{
    (void)state;
    static const char *const lead[] = {"", " ", "   "};
    static const char *const cpu[] = {"", "0", "12", "123", "1234", "1.2", "x"};
    static const char *const colon[] = {"", ":", ": ", ":  "};
    static const char *const word[] = {"kd>", "lkd>", "kd:x86>", "kd", "k>", "kd >", "000>", "\\>", "KD>"};
    static const char *const cmd[] = {"", " ", " kvn", "  g", ">", "kb ; .thread", " !poolfind Leak 0"};
    unsigned long before = pr_matched;
    char line[128];
    for (size_t a = 0; a < sizeof lead / sizeof lead[0]; a++)
        for (size_t b = 0; b < sizeof cpu / sizeof cpu[0]; b++)
            for (size_t c = 0; c < sizeof colon / sizeof colon[0]; c++)
                for (size_t d = 0; d < sizeof word / sizeof word[0]; d++)
                    for (size_t e = 0; e < sizeof cmd / sizeof cmd[0]; e++) {
                        int n = snprintf(line, sizeof line, "%s%s%s%s%s", lead[a], cpu[b], colon[c], word[d], cmd[e]);
                        same_prompt(line, (size_t)n);
                    }
    /* decided, counted by hand: per lead (3), the 7 starts "", "N:" and "N: " for N of 1-3 digits,
     * each with "kd>" and one of the 7 commands, or with "kd" and the command ">" (8 lines) */
    assert_int_equal(pr_matched - before, 3 * 7 * 8);
}

/* Pool routines by name, classified by hand: the word may end the name, follow another 'P', or be
 * cut short by the name's end. */
static void pool_routines(void **state)
{
    (void)state;
    static const struct {
        const char *callsite;
        int kind;
    } cases[] = {
        {"nt!ExAllocatePoolWithTag+0x10", KDH_INGEST_EV_ALLOC}, {"nt!ExFreePool", KDH_INGEST_EV_FREE},
        {"nt!ExFreePoo", -1}, {"nt!PPPFreePool+0x1", KDH_INGEST_EV_FREE}, {"nt!Pool", -1},
        {"nt!ExpInsertPoolTracker+0x7", KDH_INGEST_EV_ALLOC}, {"nt!P", -1}, {"nt!PoolFree", -1},
        {"nt!ExFreeToNPagedPoolLookaside", KDH_INGEST_EV_FREE}, {"LeakDrv+0x1169", -1},
        {"nt!MiAllocatePool", KDH_INGEST_EV_ALLOC}, {"nt!IopfCallDriver+0x45", -1},
        {"nt!ExpRemovePoolTracker", KDH_INGEST_EV_FREE}, {"nt!ExpRemovePoolTrack", -1},
        {"nt!RemovePoolTracker", -1}, {"nt!PoolAllocatePool+0x3", KDH_INGEST_EV_ALLOC},
        {"nt!AllocatePoolThenFreePool", KDH_INGEST_EV_FREE}, {"VerifierExt!ExFreeHeapPool+0x1", KDH_INGEST_EV_FREE},
        {"nt!ExAllocateHeapPool", KDH_INGEST_EV_ALLOC}, {"NDIS!NdisFreeToNPagedPoolLookaside", KDH_INGEST_EV_FREE},
        {"nt!FreePoo", -1}, {"nt!xFreePool", KDH_INGEST_EV_FREE}, {"nt!ExpInsertPoolTrackerX", KDH_INGEST_EV_ALLOC},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kdh_ingest_frame_t f;
        memset(&f, 0, sizeof f);
        assert_int_equal(kdh_ingest_parse_callsite(pat, cases[i].callsite, strlen(cases[i].callsite), &f), 0);
        if (kdh_ingest_pool_routine(&f) != cases[i].kind)
            fail_msg("%s: kind %d, want %d", cases[i].callsite, kdh_ingest_pool_routine(&f), cases[i].kind);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(token_soup), cmocka_unit_test(sample_lines),
                                       cmocka_unit_test(layout_soup), cmocka_unit_test(source_soup),
                                       cmocka_unit_test(pool_routines), cmocka_unit_test(decimals),
                                       cmocka_unit_test(pmrow_soup), cmocka_unit_test(pfrow_soup),
                                       cmocka_unit_test(prompt_soup)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
