/* test_ingest_framescan.c: kdh_ingest_parse_frame (the direct single-scan recognizer of layout.c
 * and callsite.c, PCRE2 only where it is unsure) against kdh_ingest_parse_frame_ref (PCRE2 alone,
 * the grammar of record): the same layout or none and the same frame, field for field, for every
 * layout mask, over every line of every sample log, every line of the frame fuzzer's seed corpus,
 * and generated lines built from frame-line pieces, annotations and odd bytes. */
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
static unsigned long lines_seen, frames_found[32];

static const unsigned masks[] = {KDH_INGEST_L_X64, KDH_INGEST_L_X86, KDH_INGEST_L_X64 | KDH_INGEST_L_X86,
                                 KDH_INGEST_L_MEX, KDH_INGEST_L_KC, KDH_INGEST_L_ADDR, KDH_INGEST_L_ALL};

static void same_frame(const char *s, size_t n)
{
    static kdh_ingest_frame_t a, b;
    lines_seen++;
    for (size_t k = 0; k < sizeof masks / sizeof masks[0]; k++) {
        memset(&a, 0x5a, sizeof a);
        memset(&b, 0xa5, sizeof b);
        int ra = kdh_ingest_parse_frame(pat, s, n, masks[k], &a);
        int rb = kdh_ingest_parse_frame_ref(pat, s, n, masks[k], &b);
        if (ra != rb)
            fail_msg("mask %u: layout %d, pcre2 alone %d on \"%.*s\"", masks[k], ra, rb, (int)n, s);
        if (!ra)
            continue;
        frames_found[ra]++;
        if (strcmp(a.sym, b.sym) != 0)
            fail_msg("mask %u: sym \"%s\", pcre2 alone \"%s\" on \"%.*s\"", masks[k], a.sym, b.sym, (int)n, s);
        if (a.sym_len != strlen(a.sym) || b.sym_len != strlen(b.sym))
            fail_msg("mask %u: sym_len %zu / %zu for \"%s\" on \"%.*s\"", masks[k], a.sym_len, b.sym_len, a.sym,
                     (int)n, s);
        int same = a.form == b.form && a.mod_len == b.mod_len && a.has_off == b.has_off && a.off == b.off &&
                   a.has_addr == b.has_addr && a.addr == b.addr && a.has_ret == b.has_ret && a.ret == b.ret &&
                   a.nargs == b.nargs && a.is_inline == b.is_inline && a.truncated == b.truncated;
        if (a.form == KDH_INGEST_CS_SYMBOL)
            same = same && a.name_off == b.name_off && a.name_len == b.name_len;
        for (int i = 0; same && i < a.nargs; i++)
            same = a.args[i] == b.args[i];
        if (!same)
            fail_msg("mask %u: fields differ (form %d/%d mod %zu/%zu off %llx/%llx addr %llx/%llx ret %llx/%llx "
                     "nargs %d/%d inline %d/%d) on \"%.*s\"",
                     masks[k], a.form, b.form, a.mod_len, b.mod_len, (unsigned long long)a.off,
                     (unsigned long long)b.off, (unsigned long long)a.addr, (unsigned long long)b.addr,
                     (unsigned long long)a.ret, (unsigned long long)b.ret, a.nargs, b.nargs, a.is_inline,
                     b.is_inline, (int)n, s);
    }
}

/* Every line of every regular file in dir (the whole file too when whole is set: the corpus
 * entries are single lines with odd bytes, line ends included). Returns the files read. */
static unsigned each_line(const char *dir, const char *suffix, int whole)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    unsigned files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (e->d_name[0] == '.' || l < sl || strcmp(e->d_name + l - sl, suffix))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        static char buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        files++;
        if (whole)
            same_frame(buf, n);
        for (size_t at = 0; at < n;) {
            const char *nl = memchr(buf + at, '\n', n - at);
            size_t end = nl ? (size_t)(nl - buf) : n;
            /* as the parser hands lines over: line end and trailing blanks removed */
            size_t t = end;
            while (t > at && (buf[t - 1] == '\r' || buf[t - 1] == ' ' || buf[t - 1] == '\t'))
                t--;
            same_frame(buf + at, t - at);
            same_frame(buf + at, end - at); /* and untrimmed, as a caller of the API may */
            at = end + 1;
        }
    }
    closedir(d);
    return files;
}

static void sample_lines(void **state)
{
    (void)state;
    DIR *d = opendir(KDH_SAMPLES_DIR);
    if (!d)
        skip();
    closedir(d);
    memset(frames_found, 0, sizeof frames_found);
    assert_true(each_line(KDH_SAMPLES_DIR, ".txt", 0) > 30);
    /* counted from the samples: hundreds of x64 and x86 frame lines at least */
    assert_true(frames_found[KDH_INGEST_L_X64] > 300);
    assert_true(frames_found[KDH_INGEST_L_X86] > 300);
}

static void corpus_lines(void **state)
{
    (void)state;
    assert_true(each_line(KDH_FRAME_CORPUS, "", 1) >= 10);
}

/* Lines assembled from frame-line pieces: columns of both widths, dashes, inline markers, args,
 * callsites of every form, and what the general path exists for: annotations, tabs, line ends,
 * bytes outside ASCII, NULs. */
static void generated_lines(void **state)
{
    (void)state;
    memset(frames_found, 0, sizeof frames_found);
    static const char *const col[] = {"00", "0a", "1f3", "ffffd001`5551d7a0", "fffff801`b56d24aa", "--------`--------",
                                      "(Inline Function)", "(Inline)", "0006fc5c", "8a3b2c10", "--------", ":",
                                      "12345", "ffffd001`5551d7a0f", "123456789", "x", "\t", "`",
                                      "0x8a3b2c10", "0xfffff801`b56d24aa", "fffff8015551d7a0", "0x", "0x123"};
    static const char *const site[] = {"nt!ExAllocatePoolWithTag+0x10", "Drv!Fn(int a = 0n5)+0x27", "drv+0x11b1",
                                       "0xfffff801`b56d24aa", "0x8a3b2c10", "<Unloaded_x.sys>+0x1047",
                                       "nt!KiSystemServiceCopyEnd+0x28", "Drv!operator()+0x5", "mod!a b c",
                                       "nt!Foo+0x", "nt!", "!x", "mod.sys", "a$b-c.d!sym::f<int>+0x1f",
                                       "0x123456789", "Drv!Fn(", "nt!KiTrap0E+0x2c4",
                                       "nt! ?? ::QWERTYUI::`string'+0x1c2f", "nt! ?? x", "nt! ??  y+0x1", "nt! ?? +0x2",
                                       "nt! ??"};
    static const char *const tail[] = {"", "", "", " [c:\\src dir\\a.c @ 12]", " (FPO: [0,0,0])",
                                       " (Inline Function @ fffff801`b56d24aa)", " <-- the leak", " (TrapFrame @ 8a3b2c10)", "\x7f", "x\xffy",
                                       " (CONV: stdcall)", " (no FPO)", "\r", "\t", " \xc3\xa9", "\x01", "]", ")", "<"};
    /* kb/kv without the Child-SP column, which only the pattern decides */
    static const char *const fixed[] = {
        "00 00007ff6`11112222     : 00000000`00000001 00000000`00000000 00000000`00000000 00000000`00000000 : a!b+0x1",
        "01 (Inline Function)     : --------`-------- --------`-------- --------`-------- --------`-------- : a!c",
        "00007ff6`11112222 : 00000000`00000001 00000000`00000000 00000000`00000000 00000000`00000000 : 0x2c",
        "00 00007ff6`11112222     : 00000000`00000001 00000000`00000000 00000000`00000000 : a!b+0x1",
        "00 00007ff6`11112222 00000000`00000001 : 00000000`00000001 00000000`00000000 00000000`00000000 "
        "00000000`00000000 : a!b+0x1 [x.c @ 1]",
        /* x86 frames reached through a trap frame, which only the pattern decides */
        "02 9a3b2c70 81a2c000 (T) 00000002 00000000 9a3b2ca0 nt!KiSystemServicePostCall (FPO: [0,3] TrapFrame @ 9a3b2c80)",
        "03 0012f000 77001234 (T) ntdll!KiFastSystemCallRet", "0012f000 77001234 (T)", "0012f000 77001234 (T)  (T) a!b"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        same_frame(fixed[i], strlen(fixed[i]));
    char buf[600];
    /* the x86 trap frame mark in every position the columns allow */
    static const char *const pre[] = {"", "00 ", " 1f3 ", "0a 8a3b2c10 "}, *const ret[] = {"0006fc5c ", "-------- "},
                             *const mark[] = {"(T) ", "(T)  ", "(T)\t", "(T)", "(t) "},
                             *const args[] = {"", "00000001 00000002 00000003 ", "00000001 ", "-------- -------- -------- "};
    for (size_t a = 0; a < sizeof pre / sizeof pre[0]; a++)
        for (size_t b = 0; b < sizeof ret / sizeof ret[0]; b++)
            for (size_t m = 0; m < sizeof mark / sizeof mark[0]; m++)
                for (size_t g = 0; g < sizeof args / sizeof args[0]; g++)
                    for (size_t t = 0; t < sizeof site / sizeof site[0]; t++) {
                        int l = snprintf(buf, sizeof buf, "%s8a3b2c10 %s%s%s%s", pre[a], ret[b], mark[m], args[g], site[t]);
                        same_frame(buf, (size_t)l);
                    }
    unsigned long long r = 0x9e3779b97f4a7c15ull;
#define NEXT() (r ^= r << 13, r ^= r >> 7, r ^= r << 17, r)
    for (int it = 0; it < 200000; it++) {
        size_t n = 0;
        int ncol = (int)(NEXT() % 9);
        if (NEXT() % 4 == 0)
            buf[n++] = ' ';
        for (int j = 0; j < ncol; j++) {
            const char *t = col[NEXT() % (sizeof col / sizeof col[0])];
            size_t l = strlen(t);
            memcpy(buf + n, t, l);
            n += l;
            size_t sp = 1 + NEXT() % 2;
            memset(buf + n, NEXT() % 32 ? ' ' : '\t', sp);
            n += sp;
        }
        const char *s = site[NEXT() % (sizeof site / sizeof site[0])];
        memcpy(buf + n, s, strlen(s));
        n += strlen(s);
        const char *t = tail[NEXT() % (sizeof tail / sizeof tail[0])];
        memcpy(buf + n, t, strlen(t));
        n += strlen(t);
        if (NEXT() % 64 == 0) {
            size_t at = NEXT() % n;
            buf[at] = NEXT() % 2 ? '\0' : '\n';
        }
        same_frame(buf, n);
    }
#undef NEXT
    assert_true(frames_found[KDH_INGEST_L_X64] > 1000 && frames_found[KDH_INGEST_L_X86] > 1000 &&
                frames_found[KDH_INGEST_L_ADDR] > 1000);
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(generated_lines), cmocka_unit_test(corpus_lines),
                                       cmocka_unit_test(sample_lines)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
