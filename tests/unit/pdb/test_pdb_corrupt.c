/* test_pdb_corrupt.c: malformed PDBs, made by patching chosen fields of a real lld-made PDB
 * (found with a few lines of MSF walking written here), must be refused with an error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/common.h"
#include "kdh/pdb.h"
#include "test_pdb.h"

typedef struct fx {
    uint8_t *b, *orig;
    size_t len;
    uint32_t bs, map_block, dir_off; /* lld's directory fits in one block */
} fx_t;

static int load(fx_t *f)
{
    memset(f, 0, sizeof *f);
    f->b = fx_read("fxsyms_x86.pdb", &f->len);
    if (!f->b)
        return 0;
    f->orig = malloc(f->len);
    memcpy(f->orig, f->b, f->len);
    f->bs = kdh_get_u32(f->b + 32);
    f->map_block = kdh_get_u32(f->b + 52);
    assert_true(kdh_get_u32(f->b + 44) <= f->bs);
    f->dir_off = kdh_get_u32(f->b + (size_t)f->map_block * f->bs) * f->bs;
    return 1;
}

static void restore(fx_t *f)
{
    memcpy(f->b, f->orig, f->len);
}

static void done(fx_t *f)
{
    free(f->b);
    free(f->orig);
}

static uint32_t nstreams(fx_t *f)
{
    return kdh_get_u32(f->b + f->dir_off);
}

static uint32_t stream_size(fx_t *f, uint32_t idx)
{
    uint32_t s = kdh_get_u32(f->b + f->dir_off + 4 + 4 * idx);
    return s == 0xFFFFFFFF ? 0 : s;
}

/* File offset of the directory entry holding stream idx's k-th block number. */
static uint32_t block_entry(fx_t *f, uint32_t idx, uint32_t k)
{
    uint32_t at = f->dir_off + 4 + 4 * nstreams(f);
    for (uint32_t i = 0; i < idx; i++)
        at += 4 * ((stream_size(f, i) + f->bs - 1) / f->bs);
    return at + 4 * k;
}

/* File offset of byte pos of stream idx. */
static size_t stream_byte(fx_t *f, uint32_t idx, uint32_t pos)
{
    uint32_t blk = kdh_get_u32(f->b + block_entry(f, idx, pos / f->bs));
    return (size_t)blk * f->bs + pos % f->bs;
}

static int open_rc(fx_t *f)
{
    kdh_pdb_t *p = NULL;
    kdh_err_t err;
    int rc = kdh_pdb_open_buffer(&p, f->b, f->len, &err);
    if (rc) {
        assert_null(p);
        assert_true(err.msg[0] != '\0');
    }
    kdh_pdb_close(p);
    return rc;
}

void test_corrupt_superblock(void **state)
{
    (void)state;
    fx_t f;
    if (!load(&f))
        skip();
    assert_int_equal(open_rc(&f), KDH_OK);
    const struct {
        uint32_t at, value;
        int want;
    } cases[] = {
        {32, 1000, KDH_ECORRUPT},       /* block size not a power of two */
        {32, 65536, KDH_ECORRUPT},      /* too large */
        {32, 256, KDH_ECORRUPT},        /* too small */
        {40, 0xFFFFFFFF, KDH_ECORRUPT}, /* NumBlocks beyond the file */
        {40, 2, KDH_ECORRUPT},          /* too few blocks for a superblock and two FPMs */
        {44, 0xFFFFFFFF, KDH_ECORRUPT}, /* NumDirectoryBytes */
        {44, 0, KDH_ECORRUPT},
        {52, 0x00FFFFFF, KDH_ECORRUPT}, /* BlockMapAddr out of range */
        {52, 0, KDH_ECORRUPT},          /* ... or the superblock itself */
    };
    for (size_t i = 0; i < KDH_ARRAY_LEN(cases); i++) {
        restore(&f);
        kdh_put_u32(f.b + cases[i].at, cases[i].value);
        assert_int_equal(open_rc(&f), cases[i].want);
    }
    restore(&f);
    memcpy(f.b, "Microsoft C/C++ program database 2.00\r\n\x1a" "JG\0\0", 44);
    assert_int_equal(open_rc(&f), KDH_EUNSUPPORTED);
    restore(&f);
    f.b[10] ^= 0x20;
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    kdh_pdb_t *p;
    kdh_err_t err;
    assert_int_equal(kdh_pdb_open_buffer(&p, f.b, 40, &err), KDH_ECORRUPT);
    assert_int_equal(kdh_pdb_open_buffer(&p, NULL, 0, &err), KDH_ECORRUPT);
    done(&f);
}

void test_corrupt_directory(void **state)
{
    (void)state;
    fx_t f;
    if (!load(&f))
        skip();
    size_t map = (size_t)f.map_block * f.bs;
    kdh_put_u32(f.b + map, 0x7FFFFFFF); /* directory block out of range */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u32(f.b + map, f.map_block); /* directory = the block map itself: a cycle */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u32(f.b + f.dir_off, 0x7FFFFFFF); /* NumStreams */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u32(f.b + f.dir_off, 0);
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u32(f.b + f.dir_off + 4 + 4 * 1, 0xFFFFFFF0); /* info stream size */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    /* A size the file could hold, but whose blocks the directory does not list. */
    kdh_put_u32(f.b + f.dir_off + 4 + 4 * 1, (uint32_t)f.len - f.bs);
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u32(f.b + block_entry(&f, 3, 0), 0x00FFFFFF); /* a DBI block out of range */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u32(f.b + block_entry(&f, 1, 0), 0); /* the superblock as stream data */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    done(&f);
}

static uint32_t count_of(fx_t *f)
{
    kdh_pdb_t *p;
    kdh_err_t err;
    assert_int_equal(kdh_pdb_open_buffer(&p, f->b, f->len, &err), KDH_OK);
    uint32_t n = kdh_pdb_count(p);
    kdh_pdb_close(p);
    return n;
}

void test_corrupt_streams(void **state)
{
    (void)state;
    fx_t f;
    if (!load(&f))
        skip();
    uint32_t before = count_of(&f);
    /* DBI header fields. */
    kdh_put_u32(f.b + stream_byte(&f, 3, 0), 0); /* VersionSignature */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u16(f.b + stream_byte(&f, 3, 20), 0xFFF0); /* symbol-record stream index */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u32(f.b + stream_byte(&f, 3, 24), 0x80000000); /* ModInfo size negative */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u32(f.b + stream_byte(&f, 3, 48), 0x10000000); /* debug header past the end */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    /* Symbol records. */
    uint32_t sym = kdh_get_u16(f.b + stream_byte(&f, 3, 20));
    kdh_put_u16(f.b + stream_byte(&f, sym, 0), 0xFFFF); /* first record's length */
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u16(f.b + stream_byte(&f, sym, 0), 1);
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    /* Find an S_PUB32 and damage it. */
    uint32_t pos = 0, slen = stream_size(&f, sym), pub = UINT32_MAX;
    while (pos + 4 <= slen) {
        uint32_t rl = kdh_get_u16(f.b + stream_byte(&f, sym, pos));
        if (kdh_get_u16(f.b + stream_byte(&f, sym, pos + 2)) == 0x110E) {
            pub = pos;
            break;
        }
        pos += 2 + rl;
    }
    assert_true(pub != UINT32_MAX);
    uint32_t rl = kdh_get_u16(f.b + stream_byte(&f, sym, pub));
    for (uint32_t i = 14; i < rl + 2; i++) /* name and padding, no NUL left */
        f.b[stream_byte(&f, sym, pub + i)] = 'A';
    assert_int_equal(open_rc(&f), KDH_ECORRUPT);
    restore(&f);
    kdh_put_u16(f.b + stream_byte(&f, sym, pub + 12), 0x7FFF); /* seg: no such section */
    assert_int_equal(count_of(&f), before - 1);
    restore(&f);
    /* No section-header stream in the debug header: publics cannot be placed. */
    uint32_t at = 64;
    for (int i = 0; i < 6; i++)
        at += kdh_get_u32(f.b + stream_byte(&f, 3, (uint32_t)(i < 5 ? 24 + 4 * i : 52)));
    kdh_put_u16(f.b + stream_byte(&f, 3, at + 2 * 5), 0xFFFF);
    assert_int_equal(open_rc(&f), KDH_EUNSUPPORTED);
    done(&f);
}

void test_corrupt_truncated(void **state)
{
    (void)state;
    fx_t f;
    if (!load(&f))
        skip();
    assert_int_equal(kdh_get_u32(f.b + 40) * (size_t)f.bs, f.len);
    for (size_t n = 0; n < f.len; n += (n < 128 ? 1 : 61)) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, f.b, n);
        kdh_pdb_t *p = NULL;
        kdh_err_t err;
        int rc = kdh_pdb_open_buffer(&p, copy, n, &err);
        assert_int_not_equal(rc, KDH_OK);
        free(copy);
    }
    done(&f);
}

void test_corrupt_no_dbi(void **state)
{
    (void)state;
    fx_t f;
    if (!load(&f))
        skip();
    kdh_put_u32(f.b + f.dir_off + 4 + 4 * 3, 0xFFFFFFFF); /* DBI becomes a nil stream */
    /* A nil stream has no blocks: drop the DBI's from the directory's block lists. */
    uint32_t old = kdh_get_u32(f.orig + f.dir_off + 4 + 4 * 3);
    uint32_t nb = (old + f.bs - 1) / f.bs;
    uint32_t from = block_entry(&f, 4, 0) + 4 * nb, to = block_entry(&f, 4, 0);
    uint32_t dir_end = f.dir_off + kdh_get_u32(f.b + 44);
    memmove(f.b + to, f.b + from, dir_end - from);
    kdh_put_u32(f.b + 44, kdh_get_u32(f.b + 44) - 4 * nb);
    kdh_pdb_t *p;
    kdh_err_t err;
    assert_int_equal(kdh_pdb_open_buffer(&p, f.b, f.len, &err), KDH_OK);
    assert_int_equal(kdh_pdb_count(p), 0);
    assert_int_equal(kdh_pdb_info(p)->machine, 0);
    assert_int_equal(kdh_pdb_info(p)->age, kdh_pdb_info(p)->info_age);
    uint32_t rva;
    assert_int_equal(kdh_pdb_lookup(p, "PoolHitTag", &rva), KDH_ENOTFOUND);
    assert_null(kdh_pdb_symbolize(p, 0x1000, &rva));
    kdh_pdb_close(p);
    done(&f);
}
