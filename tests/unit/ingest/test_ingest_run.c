/* test_ingest_run.c: `kdharvest ingest` end to end: the command writes a run directory that the
 * store's reader gives back with the expected events, stack ids (XXH3-64 of the canonical text
 * written out by hand here), modules, sources and pool samples; nothing found = exit 1; a run
 * that cannot be written = exit 1 with a one-line error and no event on disk without its stack. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "kdh/ingest.h"
#include "kdh/store.h"

#include "kdh/cli.h"

int kdh_cli_cmd_ingest(int argc, char **argv);
int kdh_cli_cmd_help(int argc, char **argv);
int kdh_cli_cmd_version(int argc, char **argv);

/* The dispatcher's table, reduced to what this test runs. */
const kdh_cli_command_t kdh_cli_commands[] = {
    {"help", "show the usage", kdh_cli_cmd_help},
    {"version", "print the version", kdh_cli_cmd_version},
    {"ingest", "parse kd/WinDbg, Driver Verifier, poolmon and !poolused/!vm output into a run", kdh_cli_cmd_ingest},
};
const size_t kdh_cli_command_count = KDH_ARRAY_LEN(kdh_cli_commands);

static const char session[] =
    "0: kd> ed nt!PoolHitTag 0x6b61654c\n"
    "0: kd> g\n"
    "Break instruction exception - code 80000003 (first chance)\n"
    "nt!ExAllocateHeapPool+0x1a4:\n"
    "fffff805`12340000 cc              int     3\n"
    "2: kd> k\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocateHeapPool+0x1a4\n"
    "01 ffffc001`00001200 fffff805`00003333     LeakDrv+0x1170\n"
    "2: kd> g\n"
    "Break instruction exception - code 80000003 (first chance)\n"
    "nt!ExFreeHeapPool+0x2c0:\n"
    "fffff805`12350000 cc              int     3\n"
    "1: kd> k\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00002000 fffff805`12346666     nt!ExFreeHeapPool+0x2c0\n"
    "01 ffffc001`00002200 00000000`00000000     0xfffff805`00004444\n"
    "1: kd> g\n"
    "Break instruction exception - code 80000003 (first chance)\n"
    "nt!ExAllocateHeapPool+0x1a4:\n"
    "fffff805`12340000 cc              int     3\n"
    "0: kd> k\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocateHeapPool+0x1a4\n"
    "01 ffffc001`00001200 fffff805`00003333     LeakDrv+0x1170\n";

static const char poolmon[] = " Tag  Type     Allocs            Frees            Diff   Bytes       Per Alloc\n"
                              "\n"
                              " Leak Nonp       1000 (  10)       100 (   0)      900   86400 (   960)     96\n";

typedef struct seen {
    kdh_store_event_t ev[8];
    char src[8][64];
    size_t nev;
    uint64_t sids[8];
    size_t nsid;
    char mods[8][32];
    size_t nmod;
    kdh_store_pool_t pool[4];
    size_t npool;
} seen_t;

static int on_event(void *ud, const kdh_store_event_t *ev)
{
    seen_t *s = ud;
    if (s->nev < 8) {
        s->ev[s->nev] = *ev;
        snprintf(s->src[s->nev], sizeof s->src[0], "%s", ev->src ? ev->src : "");
        s->nev++;
    }
    return 0;
}
static int on_stack(void *ud, uint64_t sid, const kdh_store_frame_t *f, size_t n)
{
    (void)f, (void)n;
    seen_t *s = ud;
    if (s->nsid < 8)
        s->sids[s->nsid++] = sid;
    return 0;
}
static int on_module(void *ud, const kdh_store_module_t *m)
{
    seen_t *s = ud;
    if (s->nmod < 8)
        snprintf(s->mods[s->nmod++], sizeof s->mods[0], "%s", m->key);
    return 0;
}
static int on_pool(void *ud, const kdh_store_pool_t *p)
{
    seen_t *s = ud;
    if (s->npool < 4)
        s->pool[s->npool++] = *p;
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_run(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh_ingest_run_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char in[512], in2[512], out[512], cmd[700];
    snprintf(in, sizeof in, "%s/session.log", dir);
    snprintf(in2, sizeof in2, "%s/poolmon.txt", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    write_file(in, session);
    write_file(in2, poolmon);
    char *argv[] = {"kdharvest", "ingest", "--out", out, in, in2, NULL};
    assert_int_equal(kdh_cli_main(6, argv), 0);

    /* the library's totals: 2 hits on the allocating stack (caller LeakDrv+0x1170), 1 on the free */
    kdh_ingest_totals_t t;
    const char *files[] = {in};
    char outt[512];
    snprintf(outt, sizeof outt, "%s/runt", dir);
    kdh_ingest_opts_t io = {.kinds = KDH_INGEST_AUTO, .files = files, .nfiles = 1, .out_dir = outt};
    kdh_err_t terr;
    assert_int_equal(kdh_ingest_run(&io, &t, &terr), 0);
    assert_int_equal(t.ntop, 2);
    assert_int_equal(t.top[0].hits, 2);
    assert_string_equal(t.top[0].label, "LeakDrv+0x1170");
    assert_int_equal(t.top[0].kind, KDH_INGEST_EV_ALLOC);
    assert_int_equal(t.top[1].hits, 1);
    assert_int_equal(t.unique_stacks, 2);
    assert_int_equal(t.events, 3);

    seen_t s;
    memset(&s, 0, sizeof s);
    kdh_store_reader_t rd = {.ud = &s, .on_event = on_event, .on_stack = on_stack, .on_module = on_module,
                             .on_pool = on_pool};
    kdh_err_t err;
    assert_int_equal(kdh_store_read(out, &rd, NULL, &err), 0);
    assert_int_equal(s.nev, 3);
    assert_int_equal(s.nsid, 2);
    assert_int_equal(s.nmod, 2); /* "nt", "LeakDrv": bare names for ingested logs */
    const char *alloc_text = "nt!ExAllocateHeapPool+0x1a4;LeakDrv:1170";
    const char *free_text = "nt!ExFreeHeapPool+0x2c0;?:fffff80500004444";
    uint64_t alloc_sid = XXH3_64bits(alloc_text, strlen(alloc_text));
    uint64_t free_sid = XXH3_64bits(free_text, strlen(free_text));
    assert_int_equal(s.ev[0].kind, KDH_STORE_ALLOC);
    assert_int_equal(s.ev[1].kind, KDH_STORE_FREE);
    assert_int_equal(s.ev[2].kind, KDH_STORE_ALLOC);
    assert_int_equal(s.ev[0].sid, alloc_sid);
    assert_int_equal(s.ev[1].sid, free_sid);
    assert_int_equal(s.ev[2].sid, alloc_sid);
    assert_string_equal(s.ev[0].tag, "Leak");
    assert_int_equal(s.ev[0].cpu, 2);
    assert_int_equal(s.ev[1].cpu, 1);
    assert_string_equal(s.src[0], "session.log:8");
    assert_string_equal(s.src[1], "session.log:16");
    assert_string_equal(s.src[2], "session.log:24");
    assert_int_equal(s.npool, 1);
    assert_string_equal(s.pool[0].tag, "Leak");
    assert_int_equal(s.pool[0].allocs, 1000);
    assert_int_equal(s.pool[0].frees, 100);
    assert_int_equal(s.pool[0].bytes, 86400);

    /* the same session as `.logopen /u` writes it (UTF-16LE with a BOM): the same stacks */
    char wide_in[512], out3[512];
    snprintf(wide_in, sizeof wide_in, "%s/session-u.log", dir);
    snprintf(out3, sizeof out3, "%s/run3", dir);
    FILE *wf = fopen(wide_in, "wb");
    assert_non_null(wf);
    fputc(0xff, wf);
    fputc(0xfe, wf);
    for (const char *c = session; *c; c++) {
        fputc(*c, wf);
        fputc(0, wf);
    }
    fclose(wf);
    char *argv4[] = {"ingest", "--out", out3, wide_in, NULL};
    assert_int_equal(kdh_cli_cmd_ingest(4, argv4), 0);
    seen_t s3;
    memset(&s3, 0, sizeof s3);
    rd.ud = &s3;
    assert_int_equal(kdh_store_read(out3, &rd, NULL, &err), 0);
    assert_int_equal(s3.nev, 3);
    assert_int_equal(s3.ev[1].sid, free_sid);
    assert_string_equal(s3.src[2], "session-u.log:24");

    /* a file with nothing in it: exit status 1 */
    char empty[512], out2[512];
    snprintf(empty, sizeof empty, "%s/empty.log", dir);
    snprintf(out2, sizeof out2, "%s/run2", dir);
    write_file(empty, "just text\nkd> g\n");
    char *argv2[] = {"ingest", "--kind", "kd", "--out", out2, empty, NULL};
    assert_int_equal(kdh_cli_cmd_ingest(6, argv2), 1);
    char *argv3[] = {"ingest", "--kind", "bogus", "--out", out2, empty, NULL};
    assert_int_equal(kdh_cli_cmd_ingest(6, argv3), 2);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- a run that cannot be written ---- */

#define BIG_STACKS 2000 /* unique 8-frame stacks: more than the store's 1 MiB stacks buffer */
#define RUN_LIMIT (64 * 1024) /* bytes any output file may reach (RLIMIT_FSIZE) */

static struct rlimit saved_fsize;

static int restore_fsize(void **state)
{
    (void)state;
    setrlimit(RLIMIT_FSIZE, &saved_fsize);
    signal(SIGXFSZ, SIG_DFL);
    return 0;
}

/* Stack k of a long kd session: a break in the allocator and seven frames of its own. */
static void put_stack(FILE *f, int k)
{
    fprintf(f, "Break instruction exception - code 80000003 (first chance)\n"
               "nt!ExAllocateHeapPool+0x1a4:\n"
               "fffff805`12340000 cc              int     3\n"
               "0: kd> k\n"
               " # Child-SP          RetAddr               Call Site\n"
               "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocateHeapPool+0x1a4\n");
    for (int i = 1; i < 8; i++)
        fprintf(f, "%02x ffffc001`00001%03x fffff805`0000%04x     LeakDrv!Routine%d_OfAFairlyLongName%05d+0x%x\n", i,
                i * 0x100, 0x1000 + k, i, k, 0x10 + i);
    fprintf(f, "0: kd> g\n");
}

typedef struct sids {
    uint64_t sid[BIG_STACKS];
    int n, events, dangling;
} sids_t;

static int big_stack(void *ud, uint64_t sid, const kdh_store_frame_t *f, size_t n)
{
    (void)f, (void)n;
    sids_t *s = ud;
    if (s->n < BIG_STACKS)
        s->sid[s->n++] = sid;
    return 0;
}

static int big_event(void *ud, const kdh_store_event_t *ev)
{
    sids_t *s = ud;
    int found = 0;
    for (int i = 0; i < s->n && !found; i++)
        found = s->sid[i] == ev->sid;
    s->dangling += !found;
    s->events++;
    return 0;
}

static char *slurp_text(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* No output file may grow past RUN_LIMIT, so the first flush of the stacks (at 1 MiB) fails part
 * way. The first log's stacks then cannot all be on disk; a second log repeats ten of them, which
 * needs no new stack line. The ingest must stop at the failure (not take it for an unreadable
 * log and go on with the next one): exit 1, one line on stderr naming stacks.jsonl, and every
 * event on disk names a stack on disk. */
static void test_store_failure(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh_ingest_fail_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[512], b[512], out[512], outf[512], errf[512], cmd[700];
    snprintf(a, sizeof a, "%s/long.log", dir);
    snprintf(b, sizeof b, "%s/again.log", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(outf, sizeof outf, "%s/stdout.txt", dir);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
    FILE *f = fopen(a, "w");
    assert_non_null(f);
    fprintf(f, "0: kd> ed nt!PoolHitTag 0x6b61654c\n0: kd> g\n");
    for (int k = 0; k < BIG_STACKS; k++)
        put_stack(f, k);
    fclose(f);
    f = fopen(b, "w");
    assert_non_null(f);
    for (int k = 1000; k < 1010; k++)
        put_stack(f, k);
    fclose(f);

    /* stdout and stderr into files of their own (below the limit whatever they were) */
    fflush(stdout);
    fflush(stderr);
    int keep_out = dup(1), keep_err = dup(2);
    int fo = open(outf, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(keep_out >= 0 && keep_err >= 0 && fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
    struct rlimit lim = saved_fsize;
    lim.rlim_cur = RUN_LIMIT;
    signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG instead of killing the process */
    int lim_ok = setrlimit(RLIMIT_FSIZE, &lim);
    char *argv[] = {"ingest", "--out", out, a, b, NULL};
    int rc = lim_ok == 0 ? kdh_cli_cmd_ingest(5, argv) : -1;
    restore_fsize(NULL);
    fflush(stdout);
    fflush(stderr);
    dup2(keep_out, 1);
    dup2(keep_err, 2);
    close(keep_out);
    close(keep_err);
    close(fo);
    close(fe);
    assert_int_equal(lim_ok, 0);

    assert_int_equal(rc, 1);
    const char *msg = slurp_text(errf);
    assert_non_null(strstr(msg, "stacks.jsonl"));
    const char *nl = strchr(msg, '\n');
    assert_true(nl && nl[1] == 0); /* one line */
    assert_null(strstr(slurp_text(outf), "again.log")); /* stopped before the second log */

    sids_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    kdh_store_reader_t rd = {.ud = s, .on_stack = big_stack, .on_event = big_event};
    kdh_err_t err;
    assert_int_equal(kdh_store_read(out, &rd, NULL, &err), 0);
    assert_true(s->n > 0 && s->n < BIG_STACKS);
    assert_int_equal(s->dangling, 0);
    free(s);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_run),
                                       cmocka_unit_test_teardown(test_store_failure, restore_fsize)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
