/* test_fastpath.c: the store reader's hand-written fast paths for events.jsonl and stacks.jsonl lines
 * must read exactly what jansson (the reference) reads, bit for bit, and hand every unusual line back
 * untouched. Lines come from the store's own JSON writer over pseudo-random records, plus hand-made
 * variants that must fall back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../../src/store/store_int.h"

static uint64_t rng = 0x243f6a8885a308d3ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void check_event_line(const char *l)
{
    kdh_store_event_t fast, ref;
    const char *src;
    size_t srcn;
    assert_int_equal(kdh_store_parse_event(l, strlen(l), &ref, NULL), KDH_OK);
    assert_int_equal(kdh_store_fast_event(l, strlen(l), &fast, &src, &srcn), 1);
    assert_true(fast.seq == ref.seq && fast.boot == ref.boot && fast.cpu == ref.cpu);
    assert_memory_equal(&fast.t, &ref.t, sizeof fast.t); /* bit for bit */
    assert_true(fast.thread == ref.thread && fast.kind == ref.kind && fast.size == ref.size);
    assert_true(fast.has_size == ref.has_size && fast.addr == ref.addr && fast.has_addr == ref.has_addr);
    assert_true(fast.sid == ref.sid && fast.has_sid == ref.has_sid);
    assert_string_equal(fast.tag, ref.tag);
}

/* Events as the writer prints them, with times of every precision the writer produces. */
static void test_events_agree(void **state)
{
    (void)state;
    for (int i = 0; i < 20000; i++) {
        kdh_store_event_t ev = {0};
        ev.seq = rnd() % 100000000;
        switch (i % 4) {
        case 0: ev.t = 1795478400.0 + (double)(rnd() % 100000000) / 1000.0; break;
        case 1: ev.t = (double)(rnd() >> 11) / (double)(1ull << 53) * 4e9; break; /* 16 digits */
        case 2: ev.t = (double)(rnd() % 5000); break;
        default: ev.t = 1e-7 * (double)(rnd() % 1000); break; /* exponent form */
        }
        ev.boot = (uint32_t)(rnd() % 4);
        ev.cpu = (int)(rnd() % 70) - 1;
        ev.thread = rnd() % 3 ? rnd() : 0;
        ev.kind = (kdh_store_kind_t)(rnd() % 3);
        memcpy(ev.tag, i % 5 ? "Leak" : "Cc  ", 5);
        if (i % 7 == 0)
            memcpy(ev.tag, "Ab", 3);
        ev.has_size = (int)(rnd() % 2);
        ev.size = rnd() % 100000;
        ev.has_addr = (int)(rnd() % 3 != 0);
        ev.addr = rnd() >> (rnd() % 64);
        ev.has_sid = (int)(rnd() % 4 != 0);
        ev.sid = rnd() >> (rnd() % 64);
        ev.src = i % 9 == 0 ? "kd.log:123" : NULL;
        json_t *o = kdh_store_event_json(&ev);
        char *l = json_dumps(o, KDH_STORE_DUMP);
        check_event_line(l);
        free(l);
        json_decref(o);
    }
}

typedef struct ref_stack {
    uint64_t sid;
    size_t n;
    kdh_store_frame_t f[KDH_STORE_FRAMES_MAX];
} ref_stack_t;

static void frames_equal(const kdh_store_frame_t *a, const kdh_store_frame_t *b)
{
    assert_true(a->has_rva == b->has_rva && (!a->has_rva || a->rva == b->rva));
    assert_true(a->has_addr == b->has_addr && (!a->has_addr || a->addr == b->addr));
    assert_int_equal(a->is_inline, b->is_inline);
    assert_true((a->mod == NULL) == (b->mod == NULL));
    assert_true((a->sym == NULL) == (b->sym == NULL));
    if (a->mod)
        assert_string_equal(a->mod, b->mod);
    if (a->sym)
        assert_string_equal(a->sym, b->sym);
}

/* The fast stack parser against jansson + kdh_store_stack_from over written stacks. */
static void test_stacks_agree(void **state)
{
    (void)state;
    static ref_stack_t fast;
    static const char *mods[] = {"ntoskrnl.exe/A30A731A4000", "LeakDrv.sys/5E2A11004000/0123456789ABCDEF0123456789ABCDEF1",
                                 "nt"};
    static const char *syms[] = {"nt!ExAllocatePoolWithTag+0x34", "LeakDrv+0x1069", "0xfffff80512341234"};
    for (int i = 0; i < 3000; i++) {
        kdh_store_frame_t f[40];
        size_t n = rnd() % 40;
        for (size_t k = 0; k < n; k++) {
            memset(&f[k], 0, sizeof f[k]);
            unsigned shape = (unsigned)(rnd() % 8);
            if (shape & 1) {
                f[k].mod = mods[rnd() % 3];
                f[k].rva = rnd() % 0x1000000;
                f[k].has_rva = 1;
            }
            if (shape & 2 || shape == 0)
                f[k].sym = syms[rnd() % 3];
            if (shape & 4) {
                f[k].addr = rnd();
                f[k].has_addr = 1;
            }
            f[k].is_inline = rnd() % 5 == 0;
        }
        uint64_t sid = kdh_store_stack_id(f, n);
        json_t *o = kdh_store_stack_json(sid, f, n);
        char *l = json_dumps(o, KDH_STORE_DUMP);
        json_decref(o);
        /* Reference first: the fast path terminates strings inside the line. */
        json_t *ro = json_loadb(l, strlen(l), JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(ro);
        static ref_stack_t ref;
        assert_int_equal(kdh_store_stack_from(ro, &ref.sid, ref.f, &ref.n, NULL), KDH_OK);
        assert_int_equal(kdh_store_fast_stack(l, strlen(l), &fast.sid, fast.f, &fast.n), 1);
        assert_true(fast.sid == ref.sid && fast.sid == sid);
        assert_int_equal(fast.n, ref.n);
        assert_int_equal(fast.n, n);
        for (size_t k = 0; k < n; k++)
            frames_equal(&fast.f[k], &ref.f[k]);
        json_decref(ro);
        free(l);
    }
}

/* Lines the fast path must hand back to jansson, unchanged. */
static void test_stack_fallbacks(void **state)
{
    (void)state;
    static ref_stack_t fast;
    static const char *const lines[] = {
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"mod\":\"a\",\"rva\":1,\"x\":2}]}",       /* unknown frame key */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[],\"more\":1}",                             /* unknown key */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"sym\":\"a\\u0021b\"}]}",                 /* escape */
        "{\"sid\":\"9C3E5A7710B2D4F1\",\"frames\":[]}",                                       /* upper-case sid */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"mod\":\"a\",\"rva\":-1}]}",              /* negative rva */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"mod\":\"a\",\"rva\":1.5}]}",             /* real rva */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"mod\":\"a\"}]}",                         /* no rva, sym, addr */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"sym\":\"a\",\"inline\":1}]}",            /* non-boolean */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[]}",          /* duplicate */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"sym\":\"a\"}]",                         /* torn */
        "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[{\"sym\":\"a\"},]}",                       /* trailing comma */
        "{\"frames\":[{\"sym\":\"a\"}]}",                                                       /* no sid */
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", lines[i]);
        assert_int_equal(kdh_store_fast_stack(buf, strlen(buf), &fast.sid, fast.f, &fast.n), 0);
        assert_string_equal(buf, lines[i]);
    }
    /* 1025 frames: handed back so the reference names the limit. */
    size_t cap = 64 + 1025 * 12;
    char *big = malloc(cap), *p = big;
    p += sprintf(p, "{\"sid\":\"9c3e5a7710b2d4f1\",\"frames\":[");
    for (int k = 0; k < 1025; k++)
        p += sprintf(p, "%s{\"sym\":\"a\"}", k ? "," : "");
    sprintf(p, "]}");
    assert_int_equal(kdh_store_fast_stack(big, strlen(big), &fast.sid, fast.f, &fast.n), 0);
    free(big);
    /* Whitespace and any key order are still the fast shape. */
    char ok[] = " { \"frames\" : [ { \"rva\" : 7 , \"inline\" : true , \"mod\" : \"m\" } ] , \"sid\" : \"00000000000000ff\" } ";
    assert_int_equal(kdh_store_fast_stack(ok, strlen(ok), &fast.sid, fast.f, &fast.n), 1);
    assert_true(fast.sid == 0xff && fast.n == 1 && fast.f[0].rva == 7 && fast.f[0].is_inline);
    assert_string_equal(fast.f[0].mod, "m");
}

typedef struct pipe_seen {
    uint64_t events, next_seq, bad_order, src_ok;
    uint64_t skip_lines[8];
    unsigned nskips;
} pipe_seen_t;

static int pipe_on_event(void *ud, const kdh_store_event_t *ev)
{
    pipe_seen_t *p = ud;
    if (ev->seq != p->next_seq)
        p->bad_order++;
    p->next_seq = ev->seq + 1;
    if (ev->seq % 1000 == 7) { /* those carry src "kd.log:<seq>" */
        char want[32];
        snprintf(want, sizeof want, "kd.log:%llu", (unsigned long long)ev->seq);
        if (ev->src && strcmp(ev->src, want) == 0)
            p->src_ok++;
    } else if (ev->src) {
        p->bad_order++;
    }
    p->events++;
    return 0;
}

static void pipe_on_skip(void *ud, const char *file, uint64_t line, const char *why)
{
    pipe_seen_t *p = ud;
    (void)why;
    if (strcmp(file, "events.jsonl") == 0 && p->nskips < 8)
        p->skip_lines[p->nskips++] = line;
}

/* An events.jsonl large enough for the helper thread (over 1 MiB), with damage placed by hand: every
 * event arrives once and in order, src texts survive the hand-over, and skipped lines keep their numbers. */
static void test_pipe_reader(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/kdh_pipe_XXXXXX", path[128];
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    uint64_t seq = 1, expect_src = 0;
    for (uint64_t line = 1; line <= 30000; line++) {
        if (line == 100) {
            fputs("{\"seq\": garbage\n", f); /* not JSON: skipped as line 100 */
            continue;
        }
        if (line == 20000) { /* longer than 1 MiB: skipped as line 20000 */
            for (int k = 0; k < (1 << 20) + 10; k++)
                fputc('x', f);
            fputc('\n', f);
            continue;
        }
        fprintf(f, "{\"seq\":%llu,\"t\":%llu.125,\"boot\":1,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":64,"
                   "\"addr\":\"0x%llx\",\"sid\":\"00000000000000a1\"",
                (unsigned long long)seq, 1795478400ull + seq, 0xffffc00100000000ull + 16 * seq);
        if (seq % 1000 == 7) {
            fprintf(f, ",\"src\":\"kd.log:%llu\"", (unsigned long long)seq);
            expect_src++;
        }
        if (line == 25000) /* an escape: the jansson path, still in order */
            fputs(",\"src\":\"k\\u0064.log\"", f);
        fputs("}\n", f);
        seq++;
    }
    fputs("{\"seq\":99999,\"t\":1", f); /* torn last line: skipped as line 30001 */
    fclose(f);
    pipe_seen_t seen = {.next_seq = 1};
    kdh_store_reader_t rd = {.ud = &seen, .on_event = pipe_on_event, .on_skip = pipe_on_skip};
    kdh_store_read_stats_t st;
    kdh_err_t err = {0};
    assert_int_equal(kdh_store_read(dir, &rd, &st, &err), KDH_OK);
    assert_int_equal(seen.events, 29998);
    assert_int_equal(st.events, 29998);
    assert_int_equal(seen.bad_order, 1); /* only the escaped src of line 25000 is not "kd.log:<seq>" */
    assert_int_equal(seen.src_ok, expect_src);
    assert_int_equal(seen.nskips, 3);
    assert_int_equal(seen.skip_lines[0], 100);
    assert_int_equal(seen.skip_lines[1], 20000);
    assert_int_equal(seen.skip_lines[2], 30001);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_agree),
        cmocka_unit_test(test_stacks_agree),
        cmocka_unit_test(test_stack_fallbacks),
        cmocka_unit_test(test_pipe_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
