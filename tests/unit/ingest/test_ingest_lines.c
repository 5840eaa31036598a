/* test_ingest_lines.c: the line splitting of kdh_ingest_parser_feed, which finds newlines a block
 * of 64 bytes at a time, against text whose lines are known by construction: x64 stacks whose
 * symbol names have every length from 1 to 200 bytes (so line ends fall at every offset of a
 * block, and lines cross one or more block and chunk edges), some lines ending in CRLF, fed in
 * chunks of many sizes. Every frame's symbol must come back exactly as generated, in order, with
 * the line counts of the text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest_collect.h"

#define NSTACKS 40
#define FRAMES 5

/* The symbol name of frame f of stack s: lengths run through 1..200, the bytes vary with both. */
static size_t name_of(int s, int f, char *out)
{
    size_t len = (size_t)((s * FRAMES + f) * 37 % 200) + 1;
    for (size_t i = 0; i < len; i++)
        out[i] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789"[(i * 7 + (size_t)s + (size_t)f) % 63];
    out[len] = 0;
    return len;
}

/* The text, its length in *len and its line count in *lines. */
static char *build(size_t *len, unsigned *lines)
{
    size_t cap = (size_t)NSTACKS * (FRAMES + 3) * 320, n = 0;
    char *t = malloc(cap);
    unsigned nl = 0;
    for (int s = 0; s < NSTACKS; s++) {
        n += (size_t)sprintf(t + n, "%*sChild-SP          RetAddr               Call Site\n", s % 3, "");
        nl++;
        for (int f = 0; f < FRAMES; f++) {
            char name[256];
            name_of(s, f, name);
            n += (size_t)sprintf(t + n, "%02x ffffd000`1234%04x fffff800`0000%04x Drv!%s+0x%x%s\n", f, s, f, name,
                                 s + f + 1, (s + f) % 4 == 0 ? "\r" : "");
            nl++;
        }
        n += (size_t)sprintf(t + n, "%s\n", s % 2 ? "" : "\r");
        nl++;
    }
    *len = n;
    *lines = nl;
    return t;
}

static void check(const coll_t *c, unsigned lines)
{
    assert_non_null(c);
    assert_int_equal(c->stats.lines, lines);
    assert_int_equal(c->stats.skipped, 0);
    assert_int_equal(c->nstacks, NSTACKS);
    for (int s = 0; s < NSTACKS; s++) {
        assert_int_equal(c->stacks[s].st.nframes, FRAMES);
        for (int f = 0; f < FRAMES; f++) {
            char name[256], want[300];
            name_of(s, f, name);
            snprintf(want, sizeof want, "Drv!%s+0x%x", name, s + f + 1);
            assert_string_equal(c->stacks[s].frames[f].sym, want);
        }
    }
}

static void test_chunk_sizes(void **state)
{
    (void)state;
    size_t len;
    unsigned lines;
    char *t = build(&len, &lines);
    static const size_t chunks[] = {1, 2, 3, 7, 31, 63, 64, 65, 127, 128, 129, 1000, 4096, 65536};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, t, len, chunks[i]);
        check(c, lines);
        coll_free(c);
    }
    free(t);
}

/* The same text at every start offset within a block: the 64-byte blocks are counted from the
 * chunk's first byte, which the caller's buffer places anywhere. */
static void test_offsets(void **state)
{
    (void)state;
    size_t len;
    unsigned lines;
    char *t = build(&len, &lines);
    char *buf = malloc(len + 64);
    for (size_t off = 0; off < 64; off += 5) {
        memcpy(buf + off, t, len);
        coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, buf + off, len, len);
        check(c, lines);
        coll_free(c);
    }
    free(buf);
    free(t);
}

/* A last frame line without its newline (the blank line after it left out too), in chunks that
 * end one byte past a block edge. */
static void test_last_line(void **state)
{
    (void)state;
    size_t len;
    unsigned lines;
    char *t = build(&len, &lines);
    assert_true(t[len - 1] == '\n' && t[len - 2] == '\n' && t[len - 3] != '\r');
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, t, len - 2, 65);
    check(c, lines - 1);
    coll_free(c);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_sizes),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_last_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
