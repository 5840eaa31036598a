/* test_store.c: the run store against hand-written files: seq continuity across a reopen, repair of
 * a torn last line, stack ids recomputed here with XXH3 over the canonical text written out by hand,
 * and damaged or foreign directories reported line by line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <xxhash.h>

#include "kdh/store.h"

/* Internal fast path of the reader (src/store/fastev.c). */
int kdh_store_fast_event(const char *line, size_t len, kdh_store_event_t *ev, const char **src, size_t *src_len);

static char *mktemp_dir(void)
{
    char *d = strdup("/tmp/kdh_store_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

/* dir/name opened with mode ("w" or "a"), text written. */
static void put_file(const char *dir, const char *name, const char *mode, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, mode);
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    put_file(dir, name, "w", text);
}

static char *slurp(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static void mk_event(kdh_store_event_t *ev, kdh_store_kind_t kind, double t, uint64_t sid, uint64_t addr)
{
    memset(ev, 0, sizeof *ev);
    ev->t = t;
    ev->boot = 1;
    ev->cpu = 0;
    ev->kind = kind;
    memcpy(ev->tag, "Leak", 5);
    ev->size = 96;
    ev->has_size = 1;
    ev->addr = addr;
    ev->has_addr = 1;
    ev->sid = sid;
    ev->has_sid = sid != 0;
}

static const kdh_store_frame_t leak_frames[] = {
    {.mod = "ntoskrnl.exe/A30A731A4000", .rva = 0x1234, .has_rva = 1, .sym = "nt!ExAllocatePoolWithTag+0x34",
     .addr = 0xfffff80512341234ULL, .has_addr = 1},
    {.mod = "LeakDrv.sys/5E2A11004000", .rva = 0x1069, .has_rva = 1, .sym = "LeakDrv!LeakPathA+0x19"},
};

/* The canonical text as docs/run-format.md defines it, typed out by hand. */
static const char leak_canon[] = "ntoskrnl.exe/A30A731A4000:1234;LeakDrv.sys/5E2A11004000:1069";

static void test_sid_canonical(void **state)
{
    char buf[256];
    int n = kdh_store_canonical(leak_frames, 2, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(leak_canon));
    assert_string_equal(buf, leak_canon);
    assert_true(kdh_store_stack_id(leak_frames, 2) == XXH3_64bits(leak_canon, strlen(leak_canon)));

    /* Frames without RVA: sym text, then ?:addr. */
    kdh_store_frame_t f[2] = {{.mod = "nt", .sym = "nt!ExAllocatePoolWithTag+0x34"},
                              {.addr = 0xfffff80000001000ULL, .has_addr = 1}};
    const char *canon2 = "nt!ExAllocatePoolWithTag+0x34;?:fffff80000001000";
    n = kdh_store_canonical(f, 2, buf, sizeof buf);
    assert_string_equal(buf, canon2);
    assert_true(kdh_store_stack_id(f, 2) == XXH3_64bits(canon2, strlen(canon2)));

    /* Truncation still reports the full length, like snprintf. */
    assert_int_equal(kdh_store_canonical(leak_frames, 2, buf, 8), (int)strlen(leak_canon));
    assert_int_equal(strlen(buf), 7);

    char hex[17];
    uint64_t back = 0;
    kdh_store_sid_format(0x9c3e5a7710b2d4f1ULL, hex);
    assert_string_equal(hex, "9c3e5a7710b2d4f1");
    assert_int_equal(kdh_store_sid_parse(hex, &back), KDH_OK);
    assert_true(back == 0x9c3e5a7710b2d4f1ULL);
    assert_int_not_equal(kdh_store_sid_parse("9C3E5A7710B2D4F1", &back), KDH_OK);
    assert_int_not_equal(kdh_store_sid_parse("9c3e", &back), KDH_OK);

    /* A frame whose text alone is over 1 KiB is hashed in pieces: the same id as the whole text. */
    char longmod[1200], whole[1300];
    memset(longmod, 'm', sizeof longmod - 1);
    longmod[sizeof longmod - 1] = 0;
    kdh_store_frame_t lf[2] = {{.mod = "nt", .rva = 0x1234, .has_rva = 1},
                               {.mod = longmod, .rva = 0xabcdef0123ULL, .has_rva = 1}};
    int wl = snprintf(whole, sizeof whole, "nt:1234;%s:abcdef0123", longmod);
    assert_true(kdh_store_stack_id(lf, 2) == XXH3_64bits(whole, (size_t)wl));
}

static void test_write_reopen_continue(void **state)
{
    char *root = mktemp_dir(), dir[256];
    snprintf(dir, sizeof dir, "%s/logs/srv1/run1", root);
    kdh_store_t *st;
    kdh_err_t err = {0};
    uint64_t sid, sid2, seq;
    kdh_store_event_t ev;
    kdh_store_opts_t opts = {.fsync_every = 1};

    assert_int_equal(kdh_store_open(&st, dir, &opts, &err), KDH_OK);
    assert_int_equal(kdh_store_info(st)->resumed, 0);
    kdh_store_module_t m = {.key = "LeakDrv.sys/5E2A11004000", .name = "LeakDrv", .file = "LeakDrv.sys",
                            .timestamp = 0x5E2A1100, .size = 0x4000, .boot = 1, .base = 0xfffff80600000000ULL};
    assert_int_equal(kdh_store_add_module(st, &m, &err), KDH_OK);
    assert_int_equal(kdh_store_add_module(st, &m, &err), KDH_OK); /* same key, same boot: once */
    assert_int_equal(kdh_store_intern_stack(st, leak_frames, 2, &sid, &err), KDH_OK);
    assert_int_equal(kdh_store_intern_stack(st, leak_frames, 2, &sid2, &err), KDH_OK);
    assert_true(sid == sid2);
    for (int i = 0; i < 3; i++) {
        mk_event(&ev, KDH_STORE_ALLOC, 1795478400.125 + i, sid, 0xffffc00123450000ULL + 0x100u * (unsigned)i);
        assert_int_equal(kdh_store_append_event(st, &ev, &seq, &err), KDH_OK);
        assert_int_equal(seq, (uint64_t)i + 1);
    }
    json_t *meta = json_pack("{s:s,s:s}", "target", "srv1", "tag", "Leak");
    assert_int_equal(kdh_store_write_meta(st, meta, &err), KDH_OK);
    json_decref(meta);
    assert_int_equal(kdh_store_close(st, &err), KDH_OK);

    assert_int_equal(count_lines(slurp(dir, "modules.jsonl")), 1);
    assert_int_equal(count_lines(slurp(dir, "stacks.jsonl")), 1);
    assert_int_equal(count_lines(slurp(dir, "events.jsonl")), 3);
    /* The first event line exactly as the format document shows the fields. */
    char *events = slurp(dir, "events.jsonl");
    char expect[256];
    char hex[17];
    kdh_store_sid_format(sid, hex);
    snprintf(expect, sizeof expect,
             "{\"seq\":1,\"t\":1795478400.125,\"boot\":1,\"cpu\":0,\"kind\":\"alloc\",\"tag\":\"Leak\","
             "\"size\":96,\"addr\":\"0xffffc00123450000\",\"sid\":\"%s\"}\n",
             hex);
    assert_memory_equal(events, expect, strlen(expect));
    json_error_t je;
    char mp[300];
    snprintf(mp, sizeof mp, "%s/meta.json", dir);
    json_t *mj = json_load_file(mp, 0, &je);
    assert_non_null(mj);
    assert_string_equal(json_string_value(json_object_get(mj, "schema")), "kdharvest-run/1");
    assert_string_equal(json_string_value(json_object_get(mj, "target")), "srv1");
    json_decref(mj);

    /* Reopen: seq continues at 4, the stack and module are not written again. */
    assert_int_equal(kdh_store_open(&st, dir, NULL, &err), KDH_OK);
    assert_int_equal(kdh_store_info(st)->resumed, 1);
    assert_int_equal(kdh_store_info(st)->next_seq, 4);
    assert_int_equal(kdh_store_info(st)->stacks, 1);
    assert_int_equal(kdh_store_info(st)->modules, 1);
    assert_int_equal(kdh_store_info(st)->repaired, 0);
    assert_int_equal(kdh_store_add_module(st, &m, &err), KDH_OK);
    m.boot = 2; /* same module seen again after a reboot: a new line */
    assert_int_equal(kdh_store_add_module(st, &m, &err), KDH_OK);
    assert_int_equal(kdh_store_intern_stack(st, leak_frames, 2, &sid2, &err), KDH_OK);
    mk_event(&ev, KDH_STORE_FREE, 1795478410.5, 0, 0xffffc00123450000ULL);
    assert_int_equal(kdh_store_append_event(st, &ev, &seq, &err), KDH_OK);
    assert_int_equal(seq, 4);
    assert_int_equal(kdh_store_close(st, &err), KDH_OK);
    assert_int_equal(count_lines(slurp(dir, "modules.jsonl")), 2);
    assert_int_equal(count_lines(slurp(dir, "stacks.jsonl")), 1);
    assert_int_equal(count_lines(slurp(dir, "events.jsonl")), 4);
    rm_rf(root);
    free(root);
}

static void test_torn_line_repaired(void **state)
{
    char *dir = mktemp_dir();
    kdh_store_t *st;
    kdh_err_t err = {0};
    uint64_t seq;
    kdh_store_event_t ev;
    write_file(dir, "meta.json", "{\"schema\":\"kdharvest-run/1\"}\n");
    /* Two whole lines and half of a third, as a kill -9 in the middle of a write would leave. */
    write_file(dir, "events.jsonl",
               "{\"seq\":1,\"t\":10.0,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":16}\n"
               "{\"seq\":2,\"t\":11.0,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":16}\n"
               "{\"seq\":3,\"t\":12.0,\"kind\":\"al");
    write_file(dir, "stacks.jsonl", "{\"sid\":\"00000000000000aa\",\"frames\":[{\"sym\":\"x!y\"}]}\n{\"sid\":\"00");
    assert_int_equal(kdh_store_open(&st, dir, NULL, &err), KDH_OK);
    const kdh_store_info_t *info = kdh_store_info(st);
    assert_int_equal(info->repaired, 2);
    assert_non_null(strstr(info->repair_note, "torn last line"));
    assert_int_equal(info->next_seq, 3);
    assert_int_equal(info->stacks, 1);
    mk_event(&ev, KDH_STORE_ALLOC, 13.0, 0, 0x1000);
    assert_int_equal(kdh_store_append_event(st, &ev, &seq, &err), KDH_OK);
    assert_int_equal(seq, 3);
    kdh_store_close(st, NULL);
    char *text = slurp(dir, "events.jsonl");
    assert_int_equal(count_lines(text), 3);
    assert_null(strstr(text, "\"al\n"));
    assert_non_null(strstr(text, "\n{\"seq\":3,\"t\":13"));
    assert_string_equal(slurp(dir, "stacks.jsonl"), "{\"sid\":\"00000000000000aa\",\"frames\":[{\"sym\":\"x!y\"}]}\n");
    rm_rf(dir);
    free(dir);
}

/* ---- reader ---- */

typedef struct got {
    int stacks, events, allocs, frees, pools, gaps, modules, skips, metas;
    uint64_t last_seq, sids[8];
    char skipped[8][128];
} got_t;

static int on_meta(void *ud, const json_t *m)
{
    ((got_t *)ud)->metas++;
    return 0;
}
static int on_module(void *ud, const kdh_store_module_t *m)
{
    ((got_t *)ud)->modules++;
    return 0;
}
static int on_stack(void *ud, uint64_t sid, const kdh_store_frame_t *f, size_t n)
{
    got_t *g = ud;
    if (g->stacks < 8)
        g->sids[g->stacks] = sid;
    g->stacks++;
    return 0;
}
static int on_event(void *ud, const kdh_store_event_t *ev)
{
    got_t *g = ud;
    g->events++;
    g->allocs += ev->kind == KDH_STORE_ALLOC;
    g->frees += ev->kind == KDH_STORE_FREE;
    g->last_seq = ev->seq;
    return 0;
}
static int on_pool(void *ud, const kdh_store_pool_t *p)
{
    ((got_t *)ud)->pools++;
    return 0;
}
static int on_gap(void *ud, const kdh_store_gap_t *gp)
{
    ((got_t *)ud)->gaps++;
    return 0;
}
static void on_skip(void *ud, const char *file, uint64_t line, const char *why)
{
    got_t *g = ud;
    if (g->skips < 8)
        snprintf(g->skipped[g->skips], sizeof g->skipped[0], "%s:%llu", file, (unsigned long long)line);
    g->skips++;
}

static kdh_store_reader_t reader_for(got_t *g)
{
    kdh_store_reader_t rd = {g, on_meta, on_module, on_stack, on_event, on_pool, on_gap, on_skip};
    memset(g, 0, sizeof *g);
    return rd;
}

static void test_reader_skips_garbage(void **state)
{
    char *dir = mktemp_dir();
    got_t g;
    kdh_store_reader_t rd = reader_for(&g);
    kdh_store_read_stats_t stats;
    kdh_err_t err = {0};
    write_file(dir, "meta.json", "{\"schema\":\"kdharvest-run/1\",\"target\":\"t\"}");
    write_file(dir, "stacks.jsonl",
               "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"mod\":\"LeakDrv\",\"rva\":4201,\"sym\":\"LeakDrv!A+0x19\"}]}\n"
               "{\"sid\":\"NOT-HEX\",\"frames\":[]}\n");
    write_file(dir, "events.jsonl",
               "{\"seq\":1,\"t\":1.5,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":8,\"addr\":\"0x10\",\"sid\":\"9c3e5a7710b2d4f1\"}\n"
               "garbage that is not json\n"
               "{\"seq\":3,\"t\":2.5,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x10\"}\n"
               "{\"seq\":4,\"t\":2.6,\"kind\":\"explode\",\"tag\":\"Leak\"}\n"
               "{\"seq\":5,\"t\":2.7,\"kind\":\"alloc\",\"tag\":\"TooLong\"}\n"
               "\n"
               "{\"seq\":7,\"t\":3.5,\"kind\":\"alloc\",\"tag\":\"Le\",\"size\":8}\n"
               "{\"seq\":8,\"t\":3.6,\"ki");
    write_file(dir, "pool.jsonl", "{\"t\":1,\"tag\":\"Leak\",\"pool\":\"nonpaged\",\"allocs\":3,\"frees\":1,\"bytes\":96}\n");
    write_file(dir, "gaps.jsonl", "{\"t0\":1,\"t1\":2,\"reason\":\"line-down\"}\n{\"t0\":\"x\"}\n");
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_OK);
    assert_int_equal(g.metas, 1);
    assert_int_equal(g.stacks, 1);
    assert_true(g.sids[0] == 0x9c3e5a7710b2d4f1ULL);
    assert_int_equal(g.events, 3);
    assert_int_equal(g.allocs, 2);
    assert_int_equal(g.frees, 1);
    assert_int_equal(g.last_seq, 7);
    assert_int_equal(g.pools, 1);
    assert_int_equal(g.gaps, 1);
    assert_int_equal(stats.skipped, 6);
    assert_int_equal(g.skips, 6);
    assert_string_equal(g.skipped[0], "stacks.jsonl:2");
    assert_string_equal(g.skipped[1], "events.jsonl:2");
    assert_string_equal(g.skipped[2], "events.jsonl:4");
    assert_string_equal(g.skipped[3], "events.jsonl:5");
    assert_string_equal(g.skipped[4], "events.jsonl:8");
    assert_string_equal(g.skipped[5], "gaps.jsonl:2");
    rm_rf(dir);
    free(dir);
}

static void test_reader_bad_dirs(void **state)
{
    char *dir = mktemp_dir();
    got_t g;
    kdh_store_reader_t rd = reader_for(&g);
    kdh_store_read_stats_t stats;
    kdh_err_t err = {0};
    /* An empty directory is not a run. */
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_ENOTFOUND);
    assert_non_null(strstr(err.msg, "not a run directory"));
    assert_int_equal(kdh_store_read("/nonexistent/kdh", &rd, &stats, &err), KDH_ENOTFOUND);
    /* A newer schema is refused with a message naming it. */
    write_file(dir, "meta.json", "{\"schema\":\"kdharvest-run/2\"}");
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "kdharvest-run/2"));
    /* Events without a stacks table: read, and the missing file is reported. */
    write_file(dir, "meta.json", "{\"schema\":\"kdharvest-run/1\"}");
    write_file(dir, "events.jsonl", "{\"seq\":1,\"t\":1,\"kind\":\"hit\",\"tag\":\"Leak\",\"sid\":\"0000000000000001\"}\n");
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_OK);
    assert_int_equal(stats.missing_stacks, 1);
    assert_int_equal(g.events, 1);
    assert_string_equal(g.skipped[0], "stacks.jsonl:0");
    /* A damaged meta.json is reported, the rest still read. */
    rd = reader_for(&g);
    write_file(dir, "meta.json", "{\"schema\":");
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_OK);
    assert_int_equal(g.events, 1);
    assert_int_equal(g.metas, 0);
    rm_rf(dir);
    free(dir);
}

/* The same stack written by two independent runs gets the same sid, and it is the one computed here. */
static void test_same_sid_across_runs(void **state)
{
    char *a = mktemp_dir(), *b = mktemp_dir();
    kdh_store_t *st;
    kdh_err_t err = {0};
    uint64_t sa, sb;
    assert_int_equal(kdh_store_open(&st, a, NULL, &err), KDH_OK);
    assert_int_equal(kdh_store_intern_stack(st, leak_frames, 2, &sa, &err), KDH_OK);
    kdh_store_close(st, NULL);
    /* Same (module key, RVA) frames, but another boot's absolute addresses and no symbols. */
    kdh_store_frame_t other[2] = {leak_frames[0], leak_frames[1]};
    other[0].addr = 0xfffff80799991234ULL;
    other[0].sym = NULL;
    other[1].sym = NULL;
    assert_int_equal(kdh_store_open(&st, b, NULL, &err), KDH_OK);
    assert_int_equal(kdh_store_intern_stack(st, other, 2, &sb, &err), KDH_OK);
    kdh_store_close(st, NULL);
    assert_true(sa == sb);
    assert_true(sa == XXH3_64bits(leak_canon, strlen(leak_canon)));
    got_t g;
    kdh_store_reader_t rd = reader_for(&g);
    assert_int_equal(kdh_store_read(b, &rd, NULL, &err), KDH_OK);
    assert_int_equal(g.stacks, 1);
    assert_true(g.sids[0] == sa);
    rm_rf(a);
    rm_rf(b);
    free(a);
    free(b);
}

static void test_parse_event_fields(void **state)
{
    kdh_store_event_t ev;
    kdh_err_t err = {0};
    const char *line = "{\"seq\":17,\"t\":1795478400.125,\"boot\":1,\"cpu\":0,\"thread\":\"0xffffc0012345f080\","
                       "\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":96,\"addr\":\"0xffffc00123450000\","
                       "\"sid\":\"9c3e5a7710b2d4f1\"}";
    assert_int_equal(kdh_store_parse_event(line, strlen(line), &ev, &err), KDH_OK);
    assert_int_equal(ev.seq, 17);
    assert_true(ev.t == 1795478400.125);
    assert_int_equal(ev.cpu, 0);
    assert_true(ev.thread == 0xffffc0012345f080ULL);
    assert_int_equal(ev.kind, KDH_STORE_ALLOC);
    assert_string_equal(ev.tag, "Leak");
    assert_int_equal(ev.size, 96);
    assert_true(ev.addr == 0xffffc00123450000ULL);
    assert_true(ev.sid == 0x9c3e5a7710b2d4f1ULL);
    const char *bad[] = {"", "{}", "[1]", "{\"seq\":-1,\"t\":1,\"kind\":\"alloc\",\"tag\":\"A\"}",
                         "{\"seq\":1,\"t\":1,\"kind\":\"alloc\",\"tag\":\"A\",\"addr\":\"0xZZ\"}",
                         "{\"seq\":1,\"t\":1,\"kind\":\"alloc\",\"tag\":\"A\",\"addr\":\"0x11112222333344445\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kdh_store_parse_event(bad[i], strlen(bad[i]), &ev, &err), KDH_ECORRUPT);
}


/* The reader's fast path must read exactly what jansson reads, and hand anything unusual back. */
static void test_fast_path_matches_reference(void **state)
{
    static const struct {
        const char *line;
        int fast; /* expected: taken by the fast path */
    } cases[] = {
        {"{\"seq\":17,\"t\":1795478400.125,\"boot\":1,\"cpu\":0,\"thread\":\"0xffffc0012345f080\",\"kind\":\"alloc\","
         "\"tag\":\"Leak\",\"size\":96,\"addr\":\"0xffffc00123450000\",\"sid\":\"9c3e5a7710b2d4f1\"}", 1},
        {" { \"seq\" : 3 , \"t\" : 2 , \"kind\" : \"free\" , \"tag\" : \"Le\" , \"src\" : \"kd.log:12\" } ", 1},
        {"{\"seq\":4,\"t\":2.5e3,\"kind\":\"hit\",\"tag\":\"A b\",\"boot\":\"x\"}", 1},
        {"{\"seq\":4,\"t\":1,\"kind\":\"hit\",\"tag\":\"L\\u0065ak\"}", 0},       /* escape */
        {"{\"seq\":4,\"t\":1,\"kind\":\"hit\",\"tag\":\"Leak\",\"extra\":1}", 0},    /* unknown key */
        {"{\"seq\":4,\"seq\":5,\"t\":1,\"kind\":\"hit\",\"tag\":\"Leak\"}", 0},      /* duplicate */
        {"{\"seq\":01,\"t\":1,\"kind\":\"hit\",\"tag\":\"Leak\"}", 0},                /* not JSON */
        {"{\"seq\":1,\"t\":1,\"kind\":\"hit\",\"tag\":\"Leak\",\"size\":-5}", 0},    /* rejected */
        {"{\"seq\":1,\"t\":1,\"kind\":\"hit\",\"tag\":\"Leak\"} x", 0},               /* trailing */
        {"{\"seq\":99999999999999999999,\"t\":1,\"kind\":\"hit\",\"tag\":\"Leak\"}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kdh_store_event_t fast, ref;
        const char *src;
        size_t src_len;
        const char *l = cases[i].line;
        int f = kdh_store_fast_event(l, strlen(l), &fast, &src, &src_len);
        assert_int_equal(f, cases[i].fast);
        if (!f)
            continue;
        assert_int_equal(kdh_store_parse_event(l, strlen(l), &ref, NULL), KDH_OK);
        assert_true(fast.seq == ref.seq && fast.t == ref.t && fast.boot == ref.boot && fast.cpu == ref.cpu);
        assert_true(fast.thread == ref.thread && fast.kind == ref.kind && fast.size == ref.size);
        assert_true(fast.has_size == ref.has_size && fast.addr == ref.addr && fast.has_addr == ref.has_addr);
        assert_true(fast.sid == ref.sid && fast.has_sid == ref.has_sid);
        assert_string_equal(fast.tag, ref.tag);
    }
    kdh_store_event_t ev;
    const char *src;
    size_t n;
    const char *l = cases[1].line;
    assert_int_equal(kdh_store_fast_event(l, strlen(l), &ev, &src, &n), 1);
    assert_int_equal(n, 9);
    assert_memory_equal(src, "kd.log:12", 9);
    assert_string_equal(ev.tag, "Le  ");
}

/* A line longer than 1 MiB is skipped by name, and the lines around it are read; a second writer on
 * an open run is refused. */
static void test_long_line_and_second_writer(void **state)
{
    char *dir = mktemp_dir(), p[512];
    write_file(dir, "meta.json", "{\"schema\":\"kdharvest-run/1\"}");
    write_file(dir, "stacks.jsonl", "");
    snprintf(p, sizeof p, "%s/events.jsonl", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"seq\":1,\"t\":1,\"kind\":\"alloc\",\"tag\":\"Leak\"}\n{\"src\":\"", f);
    for (int i = 0; i < (2 << 20); i++)
        fputc('x', f);
    fputs("\"}\n{\"seq\":3,\"t\":3,\"kind\":\"alloc\",\"tag\":\"Leak\"}\n", f);
    fclose(f);
    got_t g;
    kdh_store_reader_t rd = reader_for(&g);
    kdh_store_read_stats_t stats;
    kdh_err_t err = {0};
    assert_int_equal(kdh_store_read(dir, &rd, &stats, &err), KDH_OK);
    assert_int_equal(g.events, 2);
    assert_int_equal(g.last_seq, 3);
    assert_int_equal(stats.skipped, 1);
    assert_string_equal(g.skipped[0], "events.jsonl:2");

    kdh_store_t *a, *b;
    assert_int_equal(kdh_store_open(&a, dir, NULL, &err), KDH_OK);
    assert_int_equal(kdh_store_info(a)->next_seq, 4);
    assert_int_equal(kdh_store_open(&b, dir, NULL, &err), KDH_EBUSY);
    assert_non_null(strstr(err.msg, "another process"));
    kdh_store_close(a, NULL);
    assert_int_equal(kdh_store_open(&b, dir, NULL, &err), KDH_OK);
    kdh_store_close(b, NULL);
    rm_rf(dir);
    free(dir);
}

/* ---- the run read and synced by another thread while a handle writes it ---- */

static void append_events(kdh_store_t *st, int n, uint64_t sid)
{
    kdh_err_t err = {0};
    for (int i = 0; i < n; i++) {
        kdh_store_event_t ev;
        mk_event(&ev, KDH_STORE_ALLOC, 100.0 + i, sid, 0x1000 + 0x10 * (uint64_t)i);
        assert_int_equal(kdh_store_append_event(st, &ev, NULL, &err), KDH_OK);
    }
}

/* Reads dir up to upto (NULL: to the end) into g; returns the lines skipped. */
static uint64_t read_upto(const char *dir, const kdh_store_extent_t *upto, got_t *g)
{
    kdh_store_reader_t rd = reader_for(g);
    kdh_store_read_stats_t stats;
    kdh_err_t err = {0};
    assert_int_equal(kdh_store_read_extent(dir, &rd, NULL, upto, &stats, &err), KDH_OK);
    return stats.skipped;
}

/* What was appended after the extent was taken (a stack, an event naming it, and a line still
 * being written) is not read up to the extent, on the plain path and on the helper thread's
 * (events.jsonl over 1 MiB). */
static void test_read_to_extent(void **state)
{
    char *dir = mktemp_dir();
    kdh_store_t *st;
    kdh_err_t err = {0};
    uint64_t sid, sid2;
    got_t g;
    assert_int_equal(kdh_store_open(&st, dir, NULL, &err), KDH_OK);
    assert_int_equal(kdh_store_intern_stack(st, leak_frames, 2, &sid, &err), KDH_OK);
    for (int big = 0; big < 2; big++) {
        append_events(st, big ? 12000 : 2, sid); /* 12000 lines: well over 1 MiB */
        kdh_store_extent_t upto;
        assert_int_equal(kdh_store_extent(st, &upto, &err), KDH_OK);
        int before = big ? 2 + 1 + 12000 : 2; /* round 0 left 3 */
        kdh_store_frame_t later = {.mod = "LateDrv.sys/5E2A11004000", .rva = 0x10 + (uint64_t)big, .has_rva = 1};
        assert_int_equal(kdh_store_intern_stack(st, &later, 1, &sid2, &err), KDH_OK);
        append_events(st, 1, sid2);
        put_file(dir, "events.jsonl", "a", "{\"seq\":99999,\"t\":1,\"ki");
        assert_int_equal(read_upto(dir, &upto, &g), 0);
        assert_int_equal(g.stacks, 1 + big);
        assert_true(g.sids[0] == sid);
        assert_int_equal(g.events, before);
        assert_int_equal(read_upto(dir, NULL, &g), 1); /* the torn line */
        assert_int_equal(g.stacks, 2 + big);
        assert_int_equal(g.events, before + 1);
        kdh_store_close(st, NULL);
        assert_int_equal(kdh_store_open(&st, dir, NULL, &err), KDH_OK); /* repairs the torn line */
    }
    kdh_store_close(st, NULL);
    rm_rf(dir);
    free(dir);
}

/* kdh_store_meta_text then kdh_store_put_meta: meta.json is the text and a newline, with the caller's
 * fields, its "updated" kept, and the schema added; no .tmp is left. */
static void test_meta_in_two_steps(void **state)
{
    char *dir = mktemp_dir(), tmp[600];
    kdh_store_t *st;
    kdh_err_t err = {0};
    assert_int_equal(kdh_store_open(&st, dir, NULL, &err), KDH_OK);
    json_t *m = json_pack("{s:s, s:s}", "target", "srv1", "updated", "2024-01-02T03:04:05Z");
    char *text;
    assert_int_equal(kdh_store_meta_text(st, m, &text, &err), KDH_OK);
    assert_int_equal(kdh_store_put_meta(dir, text, &err), KDH_OK);
    char *want = malloc(strlen(text) + 2);
    assert_non_null(want);
    snprintf(want, strlen(text) + 2, "%s\n", text);
    assert_string_equal(slurp(dir, "meta.json"), want);
    assert_non_null(strstr(want, "\"schema\": \"kdharvest-run/1\""));
    assert_non_null(strstr(want, "\"target\": \"srv1\""));
    assert_non_null(strstr(want, "\"updated\": \"2024-01-02T03:04:05Z\""));
    snprintf(tmp, sizeof tmp, "%s/meta.json.tmp", dir);
    assert_int_not_equal(access(tmp, F_OK), 0);
    free(want);
    free(text);
    json_decref(m);
    kdh_store_close(st, NULL);
    rm_rf(dir);
    free(dir);
}

/* Files synced by path; a failure found that way fails the handle like its own, once. */
static void test_sync_files_and_set_failed(void **state)
{
    char *dir = mktemp_dir();
    kdh_store_t *st;
    kdh_err_t err = {0};
    assert_int_equal(kdh_store_open(&st, dir, NULL, &err), KDH_OK);
    append_events(st, 3, 0);
    assert_int_equal(kdh_store_sync_files(dir, &err), KDH_OK);
    kdh_err_t boom = {0}, later = {0};
    kdh_err_set(&boom, KDH_EIO, "fsync %s/events.jsonl: Input/output error", dir);
    kdh_err_set(&later, KDH_EIO, "a later failure");
    kdh_store_set_failed(st, &boom);
    kdh_store_set_failed(st, &later);
    kdh_store_event_t ev;
    mk_event(&ev, KDH_STORE_ALLOC, 1.0, 0, 0x10);
    assert_int_equal(kdh_store_append_event(st, &ev, NULL, &err), KDH_EIO);
    assert_non_null(strstr(err.msg, "events.jsonl: Input/output error"));
    kdh_store_extent_t upto;
    assert_int_equal(kdh_store_extent(st, &upto, &err), KDH_EIO);
    kdh_store_close(st, NULL);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sid_canonical),       cmocka_unit_test(test_write_reopen_continue),
        cmocka_unit_test(test_torn_line_repaired),  cmocka_unit_test(test_reader_skips_garbage),
        cmocka_unit_test(test_reader_bad_dirs),     cmocka_unit_test(test_same_sid_across_runs),
        cmocka_unit_test(test_parse_event_fields), cmocka_unit_test(test_fast_path_matches_reference),
        cmocka_unit_test(test_long_line_and_second_writer), cmocka_unit_test(test_read_to_extent),
        cmocka_unit_test(test_meta_in_two_steps),   cmocka_unit_test(test_sync_files_and_set_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
