/* test_ingest_synth.c: hand-written inputs for what the samples do not cover: allocation and free
 * breaks in one session, repeated stacks, CRLF, byte-at-a-time feeding, over-long lines, binary
 * junk, truncated files, lines that only look like frames, several snapshots, the !poolused tab
 * layout, and single frame lines of every layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "ingest_collect.h"

/* An x64 PoolHitTag session: alloc on CPU 2 (shown twice), free on CPU 1, the same alloc on CPU 0. */
static const char session_x64[] =
    "0: kd> ed nt!PoolHitTag 'Leak'\n"
    "0: kd> g\n"
    "Break instruction exception - code 80000003 (first chance)\n"
    "nt!ExAllocateHeapPool+0x1a4:\n"
    "fffff805`12340000 cc              int     3\n"
    "2: kd> k\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocateHeapPool+0x1a4\n"
    "01 ffffc001`00001100 fffff805`00002222     nt!ExAllocatePool2+0x9e\n"
    "02 ffffc001`00001200 fffff805`00003333     LeakDrv!LeakPathA+0x19 [c:\\src\\leak drv\\leak.c @ 42] \n"
    "03 ffffc001`00001300 00000000`00000000     nt!PspSystemThreadStartup+0x57\n"
    "2: kd> k\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocateHeapPool+0x1a4\n"
    "01 ffffc001`00001100 fffff805`00002222     nt!ExAllocatePool2+0x9e\n"
    "02 ffffc001`00001200 fffff805`00003333     LeakDrv!LeakPathA+0x19 [c:\\src\\leak drv\\leak.c @ 42] \n"
    "03 ffffc001`00001300 00000000`00000000     nt!PspSystemThreadStartup+0x57\n"
    "2: kd> g\n"
    "Break instruction exception - code 80000003 (first chance)\n"
    "nt!ExFreeHeapPool+0x2c0:\n"
    "fffff805`12350000 cc              int     3\n"
    "1: kd> kn\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00002000 fffff805`12346666     nt!ExFreeHeapPool+0x2c0\n"
    "01 ffffc001`00002100 fffff805`00004444     nt!ExFreePoolWithTag+0x3d\n"
    "02 ffffc001`00002200 00000000`00000000     LeakDrv+0x1170\n"
    "1: kd> g\n"
    "Break instruction exception - code 80000003 (first chance)\n"
    "nt!ExAllocateHeapPool+0x1a4:\n"
    "fffff805`12340000 cc              int     3\n"
    "0: kd> k\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocateHeapPool+0x1a4\n"
    "01 ffffc001`00001100 fffff805`00002222     nt!ExAllocatePool2+0x9e\n"
    "02 ffffc001`00001200 fffff805`00003333     LeakDrv!LeakPathA+0x19 [c:\\src\\leak drv\\leak.c @ 42] \n"
    "03 ffffc001`00001300 00000000`00000000     nt!PspSystemThreadStartup+0x57\n";

static void check_session(coll_t *c)
{
    assert_non_null(c);
    assert_int_equal(c->nstacks, 4);
    assert_int_equal(c->stats.events, 3);
    int kinds[4] = {KDH_INGEST_EV_ALLOC, KDH_INGEST_EV_ALLOC, KDH_INGEST_EV_FREE, KDH_INGEST_EV_ALLOC};
    int cpus[4] = {2, 2, 1, 0};
    int repeat[4] = {0, 1, 0, 0};
    uint64_t lines[4] = {8, 14, 24, 33};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c->stacks[i].st.kind, kinds[i]);
        assert_int_equal(c->stacks[i].st.cpu, cpus[i]);
        assert_int_equal(c->stacks[i].st.repeat, repeat[i]);
        assert_int_equal(c->stacks[i].st.line, lines[i]);
        assert_string_equal(c->stacks[i].st.tag, "Leak");
    }
    assert_string_equal(c->stacks[0].frames[2].sym, "LeakDrv!LeakPathA+0x19");
    assert_int_equal(c->stacks[0].frames[2].addr, 0xfffff80500002222ull);
    assert_int_equal(c->stacks[2].frames[2].form, KDH_INGEST_CS_MODOFF);
    assert_int_equal(c->stacks[2].frames[2].off, 0x1170);
}

static void test_alloc_free_session(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, session_x64, sizeof session_x64 - 1, 1 << 16);
    check_session(c);
    coll_free(c);
    /* the same bytes one at a time: the line assembly must not depend on chunking */
    c = coll_run(KDH_INGEST_AUTO, NULL, session_x64, sizeof session_x64 - 1, 1);
    check_session(c);
    coll_free(c);
}

static void test_crlf(void **state)
{
    (void)state;
    size_t n = sizeof session_x64 - 1;
    char *crlf = malloc(2 * n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (session_x64[i] == '\n')
            crlf[k++] = '\r';
        crlf[k++] = session_x64[i];
    }
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, crlf, k, 7);
    check_session(c);
    coll_free(c);
    free(crlf);
}

/* x86 kb: ExFreePoolWithTag(P, Tag) args give the block and the tag, ExAllocatePoolWithTag
 * (PoolType, NumberOfBytes, Tag) the size and the tag; a conditional bp gives none of them. */
static const char session_x86[] =
    "kd> bp nt!ExFreePoolWithTag \".if (poi(@esp+8) == 0x6b61654c) {} .else {gc}\"\n"
    "kd> g\n"
    "Breakpoint 0 hit\n"
    "nt!ExFreePoolWithTag:\n"
    "82b2f000 mov     edi,edi\n"
    "kd> kb\n"
    "ChildEBP RetAddr  Args to Child\n"
    "87745834 a05c1100 86491d10 6b61654c 00000000 nt!ExFreePoolWithTag\n"
    "8774585c 82bd22e6 86a55b90 84f27000 00000000 LeakDrv!Unload+0x20 (FPO: [Non-Fpo]) (CONV: stdcall) [c:\\a b\\x.c @ 7]\n"
    "\n"
    "kd> g\n"
    "Breakpoint 1 hit\n"
    "nt!ExAllocatePoolWithTag:\n"
    "82b2e000 mov     edi,edi\n"
    "kd> kvn\n"
    " # ChildEBP RetAddr  Args to Child\n"
    "00 87745834 a05c1047 00000001 00000040 6b61654c nt!ExAllocatePoolWithTag\n"
    "01 877459d8 82bd22e6 86a55b90 84f27000 00000000 LeakDrv!DriverEntry+0x27\n";

static void test_x86_args(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, session_x86, sizeof session_x86 - 1, 100);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 2);
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_FREE);
    assert_int_equal(c->stacks[0].st.addr, 0x86491d10);
    assert_string_equal(c->stacks[0].st.tag, "Leak");
    assert_string_equal(c->stacks[0].frames[1].sym, "LeakDrv!Unload+0x20");
    assert_int_equal(c->stacks[1].st.kind, KDH_INGEST_EV_ALLOC);
    assert_int_equal(c->stacks[1].st.size, 0x40);
    assert_string_equal(c->stacks[1].st.tag, "Leak");
    assert_int_equal(c->stacks[1].st.cpu, -1);
    coll_free(c);
    /* the protected-pool bit on the tag argument; the tag written with ea */
    const char prot[] = "kd> ea nt!PoolHitTag \"Leak\"\n"
                        "kd> kb\n"
                        "ChildEBP RetAddr  Args to Child\n"
                        "87745834 a05c1047 00000001 00000040 eb61654c nt!ExAllocatePoolWithTag+0x5\n"
                        "kd> kb\n"
                        "ChildEBP RetAddr  Args to Child\n"
                        "87745834 a05c1047 00000001 00000040 01616161 nt!ExAllocatePoolWithTag+0x5\n";
    /* a j-style conditional bp with a quoted tag */
    const char jbp[] = "kd> bp nt!ExAllocatePoolWithTag \"j (poi(esp+0xc)=='Leak') 'kb;g';'gc'\"\n"
                       "Breakpoint 0 hit\n"
                       "ChildEBP RetAddr  Args to Child\n"
                       "87745834 a05c1047 00000001 00000040 00000000 nt!ExAllocatePoolWithTag\n";
    c = coll_run(KDH_INGEST_AUTO, NULL, jbp, sizeof jbp - 1, 100);
    assert_int_equal(c->nstacks, 1);
    assert_string_equal(c->stacks[0].st.tag, "Leak");
    assert_int_equal(c->stacks[0].st.size, 0x40);
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, NULL, prot, sizeof prot - 1, 100);
    assert_int_equal(c->nstacks, 2);
    assert_string_equal(c->stacks[0].st.tag, "Leak");
    assert_int_equal(c->stacks[0].st.tag_dword, 0x6b61654c);
    assert_string_equal(c->stacks[1].st.tag, "Leak"); /* no tag argument: the armed PoolHitTag */
    coll_free(c);
}

/* Lines that only look like frames, outside any stack. */
static const char lookalikes[] =
    "# 00 ffffd001`51978110 fffff801`0942f55b nt!Foo+0x1 author comment\n"
    "1: kd> .frame 0n3;dv /t /v\n"
    "03 0017fd70 01145243 pagefault!main+0xc7 [J:\\dev\\temp\\cpp\\pagefault.cpp @ 111]\n"
    "0017fd48          char * lpPtr = 0x001f0000\n"
    "0: kd> !token\n"
    " 00 S-1-5-32-544\n"
    " 02 0x000000002 SeCreateTokenPrivilege            Attributes -\n"
    "1: kd> bl\n"
    "     1 e Disable Clear u             0001 (0001) (@@masm(`booster!J:\\a.cpp:64+`))\n"
    "0: kd> dt nt!_LIST_ENTRY\n"
    "   +0x000 Flink            : Ptr64 _LIST_ENTRY\n"
    "... Not important stuff ...\n"
    "<snipped>\n";

static void test_lookalikes(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, lookalikes, sizeof lookalikes - 1, 4096);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 0);
    assert_int_equal(c->nsamples, 0);
    coll_free(c);
}

/* An over-long line inside a stack, NUL bytes, invalid UTF-8 and a truncated last frame. */
static void test_bad_input(void **state)
{
    (void)state;
    const char *head = "0: kd> k\n"
                       " # Child-SP          RetAddr               Call Site\n"
                       "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocatePool2+0x9e\n";
    const char *tail = "\n01 ffffc001`00001100 fffff805`00002222     LeakDrv!A\xff\xfe+0x19\n"
                       "0: kd> k\n"
                       " # Child-SP          RetAddr               Call Site\n"
                       "00 ffffc001`00001000 fffff805`12345678     nt!Ex\0AllocatePool2+0x9e\n"
                       "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocatePool2+0x9e\n"
                       "01 ffffc001`00001100 fffff805`000";
    size_t big = (size_t)KDH_INGEST_LINE_MAX + 4096;
    size_t hn = strlen(head), tn = strlen(tail) + 1 /* the NUL inside */ + strlen(strchr(tail, 0) + 1);
    char *buf = malloc(hn + big + tn);
    memcpy(buf, head, hn);
    memset(buf + hn, 'A', big);
    memcpy(buf + hn + big, tail, tn);
    for (size_t chunk = 1000; chunk <= 70000; chunk += 69000) {
        coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, buf, hn + big + tn, chunk);
        assert_non_null(c);
        /* the long line (line 4) is skipped and ends the first stack; the \xff frame starts no
         * stack on its own; the NUL line (line 8) is skipped inside the second stack, whose
         * truncated last frame (line 10) is counted, not guessed */
        assert_int_equal(c->nstacks, 2);
        assert_int_equal(c->stacks[0].st.nframes, 1);
        assert_int_equal(c->stacks[1].st.nframes, 1);
        assert_int_equal(c->stacks[1].st.line, 9);
        assert_int_equal(c->stats.skipped, 3); /* long line, NUL line, truncated frame */
        assert_int_equal(c->stats.skipped_first[0], 4);
        assert_int_equal(c->stats.skipped_first[1], 8);
        assert_int_equal(c->stats.skipped_first[2], 10);
        assert_int_equal(c->stats.lines, 10);
        coll_free(c);
    }
    free(buf);
}

static const char poolmon_two[] =
    " Memory:  260620K Avail:   96364K  PageFlts:     0   InRam Krnl: 1916K P:17856K\n"
    " Commit: 203500K Limit: 640916K Peak: 260632K            Pool N: 8332K P:27220K\n"
    " System pool information\n"
    " Tag  Type     Allocs            Frees            Diff   Bytes       Per Alloc\n"
    "\n"
    " Leak Nonp       1000 (  10)       100 (   0)      900   86400 (   960)     96\n"
    " Dh 0 Paged        20 (   0)        10 (   0)       10    1280 (     0)    128\n"
    " Memory:  260620K Avail:   96364K  PageFlts:     0   InRam Krnl: 1916K P:17856K\n"
    " Commit: 203500K Limit: 640916K Peak: 260632K            Pool N: 8332K P:27220K\n"
    " System pool information\n"
    " Tag  Type     Allocs            Frees            Diff   Bytes       Per Alloc\n"
    "\n"
    " Leak Nonp       1200 ( 200)       300 ( 200)      900   86400 (  -184)     96\n"
    " Leak Nonp       12x0 ( 200)       300 ( 200)      900   86400 (     0)     96\n";

static void test_poolmon_series(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, poolmon_two, sizeof poolmon_two - 1, 33);
    assert_non_null(c);
    assert_int_equal(c->stats.snapshots, 2);
    assert_int_equal(c->nsamples, 3);
    assert_int_equal(c->samples[0].snapshot, 1);
    assert_string_equal(c->samples[1].tag, "Dh 0");
    assert_string_equal(c->samples[1].pool, "paged");
    assert_int_equal(c->samples[2].snapshot, 2);
    assert_int_equal(c->samples[2].allocs, 1200);
    assert_int_equal(c->samples[2].frees, 300);
    assert_int_equal(c->stats.skipped, 1); /* the damaged last row */
    coll_free(c);
}

static const char poolused_new[] =
    "0: kd> !poolused 2\n"
    "....\n"
    " Sorting by NonPaged Pool Consumed\n"
    "\n"
    "               NonPaged                  Paged\n"
    " Tag     Allocs         Used     Allocs         Used\n"
    "\n"
    " Leak      1000     12345678901         0            0\tUNKNOWN pooltag 'Leak', please update pooltag.txt\n"
    " File      2000      4096000        10          640\tFile objects \n"
    "0: kd> !poolused 2\n"
    " Sorting by NonPaged Pool Consumed\n"
    "\n"
    "               NonPaged                  Paged\n"
    " Tag     Allocs         Used     Allocs         Used\n"
    "\n"
    " Leak      1100     12345778901         0            0\tUNKNOWN pooltag 'Leak', please update pooltag.txt\n";

/* flag 1 (verbose): Allocs Frees Diff Used per pool type */
static const char poolused_verbose[] =
    "0: kd> !poolused 1\n"
    "   Sorting by  Tag\n"
    "\n"
    "  Pool Used:\n"
    "                        NonPaged                               Paged\n"
    " Tag    Allocs    Frees     Diff     Used   Allocs    Frees     Diff     Used\n"
    " Leak     1000      100      900    86400        5        5        0        0UNKNOWN pooltag 'Leak'\n"
    " Io        300      200      100     9600       40       10       30     2880Io manager\n"
    "  rx         3        3        0        0        0        0        0        0\n";

static void test_poolused_verbose(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, poolused_verbose, sizeof poolused_verbose - 1, 4096);
    assert_non_null(c);
    assert_int_equal(c->stats.snapshots, 1);
    assert_int_equal(c->nsamples, 6);
    assert_string_equal(c->samples[5].tag, " rx "); /* a tag that starts with a blank */
    assert_string_equal(c->samples[0].tag, "Leak");
    assert_int_equal(c->samples[0].allocs, 1000);
    assert_int_equal(c->samples[0].frees, 100);
    assert_int_equal(c->samples[0].has_frees, 1);
    assert_int_equal(c->samples[0].bytes, 86400);
    assert_string_equal(c->samples[3].tag, "Io  ");
    assert_string_equal(c->samples[3].pool, "paged");
    assert_int_equal(c->samples[3].frees, 10);
    assert_int_equal(c->samples[3].bytes, 2880);
    coll_free(c);
}

static void test_poolused_tabs(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_POOLUSED, NULL, poolused_new, sizeof poolused_new - 1, 4096);
    assert_non_null(c);
    assert_int_equal(c->stats.snapshots, 2);
    assert_int_equal(c->nsamples, 6);
    assert_string_equal(c->samples[0].tag, "Leak");
    assert_int_equal(c->samples[0].bytes, 12345678901ull);
    assert_int_equal(c->samples[3].bytes, 640);
    assert_int_equal(c->samples[4].snapshot, 2);
    assert_int_equal(c->samples[4].allocs, 1100);
    coll_free(c);
    /* --kind poolmon does not read !poolused */
    c = coll_run(KDH_INGEST_POOLMON, NULL, poolused_new, sizeof poolused_new - 1, 4096);
    assert_int_equal(c->nsamples, 0);
    coll_free(c);
}

static void frame_ok(kdh_ingest_patterns_t *p, const char *line, int layout, const char *sym, int is_inline)
{
    kdh_ingest_frame_t f;
    int r = kdh_ingest_parse_frame(p, line, strlen(line), KDH_INGEST_L_ALL, &f);
    if (r != layout || strcmp(f.sym, sym) != 0 || f.is_inline != is_inline)
        fail_msg("line '%s': layout %d sym '%s' inline %d", line, r, f.sym, f.is_inline);
}

static void test_frame_lines(void **state)
{
    (void)state;
    kdh_ingest_patterns_t *p;
    kdh_err_t err;
    assert_int_equal(kdh_ingest_patterns_new(&p, &err), 0);
    frame_ok(p,
             "01 (Inline Function) --------`--------     : --------`-------- --------`-------- --------`-------- "
             "--------`-------- : Wdf01000!FxDriverDeviceAdd::Invoke+0x30 (Inline Function @ fffff801`0942f55b) "
             "[d:\\w\\fx.hpp @ 61]",
             KDH_INGEST_L_X64, "Wdf01000!FxDriverDeviceAdd::Invoke+0x30", 1);
    frame_ok(p,
             "00 fffff802`59858c68 fffff801`b56d24aa     : ffffcb08`8fd68010 00000000`00000000 fffff802`58259600 "
             "00000000`00000008 : nt!DbgBreakPointWithStatus",
             KDH_INGEST_L_X64, "nt!DbgBreakPointWithStatus", 0);
    frame_ok(p, "0a 0076f9ec 0102eedd 01c10273 00000000 ffffd8f0 USER32!TrackPopupMenu+0x1b (FPO: [Non-Fpo])",
             KDH_INGEST_L_X86, "USER32!TrackPopupMenu+0x1b", 0);
    frame_ok(p, "07 93603c14 77d570b4 01c10273 00000000 ffffd8f0 nt!KiFastCallEntry+0x12a (FPO: [0,3] TrapFrame @ 93603c34)",
             KDH_INGEST_L_X86, "nt!KiFastCallEntry+0x12a", 0);
    frame_ok(p, "(Inline) -------- -------- -------- -------- Boost!invoke_main+0x1c", KDH_INGEST_L_X86,
             "Boost!invoke_main+0x1c", 1);
    frame_ok(p, "f8af3c5c 804f9c2a PROCMON13+0x3284", KDH_INGEST_L_X86, "PROCMON13+0x3284", 0);
    frame_ok(p, "c fffffa86b7eaf5c0 0000000000000000 nt!KiStartSystemThread+0x34", KDH_INGEST_L_MEX,
             "nt!KiStartSystemThread+0x34", 0);
    frame_ok(p, "9a3bf611 MyDriver!NonPNPIRPDispatch0x51", KDH_INGEST_L_ADDR, "MyDriver!NonPNPIRPDispatch0x51", 0);
    frame_ok(p, " 0xfffff88003c77566 mydriver!AddDestination+0x66", KDH_INGEST_L_ADDR, "mydriver!AddDestination+0x66",
             0);
    frame_ok(p, "02 ffffd68d`7952edc0 fffff804`0591e433     xrt_core_7ffc5a340000!`anonymous namespace'::run<int>+0x81 <--- here",
             KDH_INGEST_L_X64, "xrt_core_7ffc5a340000!`anonymous namespace'::run<int>+0x81", 0);
    frame_ok(p, "05 ffff8c85`cbd4fa00 00007ffa`1234abcd     nt!KiSystemServiceCopyEnd+0x25 (TrapFrame @ ffff8c85`cbd4fa80)",
             KDH_INGEST_L_X64, "nt!KiSystemServiceCopyEnd+0x25", 0);
    frame_ok(p, "03 8774585c 82d40cba 00000001 00000040 6b61654c <Unloaded_LeakDrv.sys>+0x1047", KDH_INGEST_L_X86,
             "<Unloaded_LeakDrv.sys>+0x1047", 0);
    kdh_ingest_frame_t f;
    /* not frames: !token output and numbered text */
    assert_int_equal(kdh_ingest_parse_frame(p, " 00 S-1-5-32-544", 16, KDH_INGEST_L_ALL, &f), 0);
    const char *tok = " 02 0x000000002 SeCreateTokenPrivilege            Attributes -";
    assert_int_equal(kdh_ingest_parse_frame(p, tok, strlen(tok), KDH_INGEST_L_ALL, &f), 0);
    const char *dv = "0076f904          struct tagCWPSTRUCT * pCwpStruct = 0x0076f964";
    assert_int_equal(kdh_ingest_parse_frame(p, dv, strlen(dv), KDH_INGEST_L_ALL, &f), 0);
    /* callsite forms */
    assert_int_equal(kdh_ingest_parse_callsite(p, "0x2c", 4, &f), 0);
    assert_int_equal(f.form, KDH_INGEST_CS_ADDR);
    assert_int_equal(f.addr, 0x2c);
    assert_int_equal(kdh_ingest_parse_callsite(p, "nt!RtlRbRemoveNode+0x249f73", 27, &f), 0);
    assert_int_equal(f.off, 0x249f73);
    assert_int_equal(kdh_ingest_parse_callsite(p, "S-1-5-18", 8, &f), KDH_ECORRUPT);
    kdh_ingest_patterns_free(p);
}

/* Variants of newer and older WinDbg: kc with a "Call Site" header and no numbers, kf's Memory
 * column, kp and kP parameter lists, the THREAD line of !thread, a bp comparing @r8d with the
 * tag. */
static const char variants[] =
    "0: kd> bp nt!ExAllocatePool2 \".if (@r8d == 0x6b61654c) {} .else {gc}\"\n"
    "0: kd> g\n"
    "Breakpoint 0 hit\n"
    "nt!ExAllocatePool2:\n"
    "fffff805`12340000 4883ec28        sub     rsp,28h\n"
    "0: kd> kc\n"
    " # Call Site\n"
    "00 nt!ExAllocatePool2\n"
    "01 LeakDrv!Grow\n"
    "0: kd> kc\n"
    "Call Site\n"
    "nt!ExAllocatePool2\n"
    "LeakDrv!Grow\n"
    "\n"
    "0: kd> kf\n"
    " #   Memory  Child-SP          RetAddr               Call Site\n"
    "00           ffffc001`00001000 fffff805`12345678     nt!ExAllocatePool2\n"
    "01        20 ffffc001`00001020 fffff805`00002222     LeakDrv!Grow+0x19\n"
    "0: kd> kp\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocatePool2(unsigned int64 Flags = 0x40, unsigned int64 "
    "NumberOfBytes = 0x60, unsigned long Tag = 0x6b61654c)\n"
    "01 ffffc001`00001020 fffff805`00002222     LeakDrv!Grow(struct _CTX * Ctx = 0xffffc001`00002000)+0x19 "
    "[c:\\leak\\grow.c @ 9]\n"
    "0: kd> kP\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocatePool2(\n"
    "\t\t\tunsigned int64 Flags = 0x40, \n"
    "\t\t\tunsigned int64 NumberOfBytes = 0x60, \n"
    "\t\t\tunsigned long Tag = 0x6b61654c)\n"
    "01 ffffc001`00001020 fffff805`00002222     LeakDrv!Grow(\n"
    "\t\t\tstruct _CTX * Ctx = 0xffffc001`00002000)+0x19 [c:\\leak\\grow.c @ 9]\n"
    "0: kd> !thread\n"
    "THREAD ffffcb088f0a4480  Cid 0e34.3814  Teb: 0000001a27ca6000 Win32Thread: 0000000000000000 RUNNING\n"
    "Child-SP          RetAddr           Call Site\n"
    "ffffc001`00001000 fffff805`12345678 nt!ExAllocatePool2\n"
    "ffffc001`00001020 fffff805`00002222 LeakDrv!Grow+0x19\n";

static void test_variants(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, variants, sizeof variants - 1, 4096);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(c->stacks[i].st.nframes, 2);
        assert_int_equal(c->stacks[i].st.kind, KDH_INGEST_EV_ALLOC);
        assert_string_equal(c->stacks[i].st.tag, "Leak");
        assert_string_equal(c->stacks[i].frames[0].sym, "nt!ExAllocatePool2");
    }
    assert_string_equal(c->stacks[0].st.origin, "kc");
    assert_string_equal(c->stacks[1].frames[1].sym, "LeakDrv!Grow");
    assert_int_equal(c->stacks[1].st.repeat, 1); /* kc twice at one break: one hit */
    assert_string_equal(c->stacks[2].frames[1].sym, "LeakDrv!Grow+0x19");
    assert_string_equal(c->stacks[3].frames[1].sym, "LeakDrv!Grow+0x19");
    assert_int_equal(c->stacks[3].st.repeat, 1); /* kp shows the kf stack again */
    assert_string_equal(c->stacks[4].frames[1].sym, "LeakDrv!Grow+0x19"); /* kP */
    assert_int_equal(c->stacks[4].st.repeat, 1);
    assert_int_equal(c->stacks[5].st.thread, 0xffffcb088f0a4480ull);
    assert_int_equal(c->stacks[2].st.thread, 0);
    assert_int_equal(c->stats.events, 2); /* kc stack and kf stack; the rest are repeats */
    coll_free(c);
}

/* Blocks the linker moved out of their function are named "mod! ?? ::HASH::`string'" (Windows 7
 * and 8 symbols): the one symbol that starts with a blank, in k, kb and at a break location. */
static const char moved_blocks[] =
    "Break instruction exception - code 80000003 (first chance)\n"
    "nt! ?? ::QWERTYUI::`string'+0x1c2f:\n"
    "fffff800`01234567 cc              int     3\n"
    "0: kd> kn\n"
    " # Child-SP          RetAddr           Call Site\n"
    "00 fffff880`01a2b3c0 fffff800`0111aaaa nt! ?? ::QWERTYUI::`string'+0x1c2f\n"
    "01 fffff880`01a2b400 fffff880`0222bbbb nt!ExAllocatePoolWithTag+0x4d\n"
    "02 fffff880`01a2b450 00000000`00000000 LeakDrv! ?? ::ZXCVBNMA::`string'+0x10\n"
    "0: kd> kb\n"
    "ChildEBP RetAddr  Args to Child\n"
    "8a3b2c10 81a2b3c4 00000001 00000040 6b61654c nt! ?? ::ASDFGHJK::`string'+0x4e0a\n"
    "8a3b2c40 00000000 00000001 00000000 00000000 LeakDrv!Grow+0x22\n"
    "\n"
    "0: kd> k\n"
    " # Child-SP          RetAddr           Call Site\n"
    "00 fffff880`01a2b3c0 fffff800`0111aaaa LeakDrv!Grow+0x22\n"
    "01 fffff880`01a2b400 00000000`00000000 nt! ??  two blanks is no symbol\n";

static void test_moved_blocks(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, moved_blocks, sizeof moved_blocks - 1, 7);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 3);
    assert_int_equal(c->stacks[0].st.nframes, 3);
    assert_int_equal(c->stacks[1].st.nframes, 2);
    assert_int_equal(c->stacks[2].st.nframes, 1);
    const kdh_ingest_frame_t *f = &c->stacks[0].frames[0];
    assert_string_equal(f->sym, "nt! ?? ::QWERTYUI::`string'+0x1c2f");
    assert_int_equal(f->form, KDH_INGEST_CS_SYMBOL);
    assert_int_equal(f->mod_len, 2);
    assert_int_equal(f->has_off, 1);
    assert_int_equal(f->off, 0x1c2f);
    assert_int_equal(f->name_len, strlen(" ?? ::QWERTYUI::`string'"));
    assert_string_equal(c->stacks[0].frames[2].sym, "LeakDrv! ?? ::ZXCVBNMA::`string'+0x10");
    assert_int_equal(c->stacks[0].frames[2].off, 0x10);
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_ALLOC); /* ExAllocatePoolWithTag below the top */
    assert_string_equal(c->stacks[1].frames[0].sym, "nt! ?? ::ASDFGHJK::`string'+0x4e0a");
    assert_int_equal(c->stacks[1].frames[0].nargs, 3);
    assert_int_equal(c->stats.skipped, 1); /* the last frame line: two blanks after the '!' */
    coll_free(c);

    kdh_ingest_patterns_t *p;
    kdh_err_t err;
    kdh_ingest_frame_t fr;
    assert_int_equal(kdh_ingest_patterns_new(&p, &err), 0);
    assert_int_equal(kdh_ingest_parse_callsite(p, "nt! ?? ::QWERTYUI::`string'", 27, &fr), 0);
    assert_int_equal(fr.has_off, 0);
    assert_int_equal(kdh_ingest_parse_callsite(p, "nt! ??", 6, &fr), KDH_ECORRUPT);
    assert_int_equal(kdh_ingest_parse_callsite(p, "nt! x", 5, &fr), KDH_ECORRUPT);
    kdh_ingest_patterns_free(p);
}

/* The debugger loads a module's symbols when the stack first reaches it and prints what went
 * wrong right there, between two frames; the stack goes on after those lines. */
static const char symbol_load_notes[] =
    "0: kd> kv\n"
    "ChildEBP RetAddr  Args to Child\n"
    "8a3b2c10 81a2b3c4 00000001 00000040 6b61654c nt!ExAllocatePoolWithTag+0x4d (FPO: [Non-Fpo])\n"
    "Unable to load image \\SystemRoot\\system32\\DRIVERS\\LeakDrv.sys, Win32 error 0n2\n"
    "*** WARNING: Unable to verify timestamp for LeakDrv.sys\n"
    "*** ERROR: Module load completed but symbols could not be loaded for LeakDrv.sys\n"
    "8a3b2c40 81a2b3d8 00000001 00000000 00000000 LeakDrv+0x1a2b\n"
    "*** WARNING: Unable to verify checksum for OtherDrv.sys\n"
    "*** WARNING: symbols timestamp is wrong 0x5a5b5c5d 0x5a5b5c00 for OtherDrv.sys\n"
    "*** ERROR: Symbol file could not be found.  Defaulted to export symbols for OtherDrv.sys - \n"
    "8a3b2c70 00000000 00000000 00000000 00000000 OtherDrv!Dispatch+0x10\n"
    "0: kd> k\n"
    " # Child-SP          RetAddr               Call Site\n"
    "00 ffffc001`00001000 fffff805`12345678     nt!ExAllocatePool2+0x9e\n"
    "*** WARNING: Unable to verify timestamp for LeakDrv.sys\n"
    "01 ffffc001`00001100 00000000`00000000     LeakDrv+0x1170\n"
    "Unable to verify timestamp for LeakDrv.sys\n"
    "02 ffffc001`00001200 00000000`00000000     nt!KiStartSystemThread+0x34\n"
    "\n"
    "STACK_TEXT:  \n"
    "Unable to load image C:\\Windows\\System32\\ntdll.dll, Win32 error 0n2\n"
    "ffffc001`00003000 fffff805`12345678     : 00000000`00000001 00000000`00000002 00000000`00000003 "
    "00000000`00000004 : nt!KeBugCheckEx\n"
    "ffffc001`00003100 00000000`00000000     : 00000000`00000001 00000000`00000002 00000000`00000003 "
    "00000000`00000004 : LeakDrv+0x1200\n";

static void test_symbol_load_notes(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, symbol_load_notes, sizeof symbol_load_notes - 1, 4096);
    assert_non_null(c);
    /* the last note lacks the debugger's "*** WARNING: " and ends the second stack (the frame after
     * it is outside any stack); in STACK_TEXT a note may come before the first frame */
    assert_int_equal(c->nstacks, 3);
    assert_int_equal(c->stacks[2].st.nframes, 2);
    assert_string_equal(c->stacks[2].st.origin, "stack_text");
    assert_int_equal(c->stacks[0].st.nframes, 3);
    assert_string_equal(c->stacks[0].frames[1].sym, "LeakDrv+0x1a2b");
    assert_string_equal(c->stacks[0].frames[2].sym, "OtherDrv!Dispatch+0x10");
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_ALLOC);
    assert_string_equal(c->stacks[0].st.tag, "Leak");
    assert_int_equal(c->stacks[1].st.nframes, 2);
    assert_string_equal(c->stacks[1].frames[1].sym, "LeakDrv+0x1170");
    assert_int_equal(c->stats.skipped, 0);
    coll_free(c);
}

/* kb and kv of cdb on dumps without stack pointers leave out the Child-SP column: RetAddr, the four
 * arguments, the callsite; inline frames show "(Inline Function)" and dashes for the arguments. */
static const char retaddr_only[] =
    "0:000> kb\n"
    " # RetAddr               : Args to Child                                                           : Call Site\n"
    "00 00007ff6`11112222     : 00000000`00000001 00000000`00000000 00000000`00000000 00000000`00000000 : "
    "LeakApp!Grow+0x1d [/src/leak/grow.c @ 71] \n"
    "01 (Inline Function)     : --------`-------- --------`-------- --------`-------- --------`-------- : "
    "LeakApp!Fill+0x8 [/src/leak/fill.h @ 12] \n"
    "02 00000000`00000000     : 00000000`00000000 00000000`00000000 00000000`00000000 00000000`00000000 : "
    "0x00007ff6`11112222\n"
    "0:000> kv\n"
    "RetAddr               : Args to Child                                                           : Call Site\n"
    "00000000`00000000     : 00000000`00000000 00000000`00000000 00000000`00000000 00000000`00000000 : LeakApp+0xb796\n"
    "0:000> kb\n"
    " # RetAddr               : Args to Child                                                           : Call Site\n"
    "00 00007ff6`11112222     : 00000000`00000001 00000000`00000000 00000000`00000000 : LeakApp!Short+0x1\n";

static void test_retaddr_only(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, retaddr_only, sizeof retaddr_only - 1, 13);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 2); /* the last one has three arguments: not a frame */
    assert_int_equal(c->stacks[0].st.nframes, 3);
    const kdh_ingest_frame_t *f = c->stacks[0].frames;
    assert_string_equal(f[0].sym, "LeakApp!Grow+0x1d");
    assert_int_equal(f[0].has_ret, 1);
    assert_int_equal(f[0].ret, 0x00007ff611112222ull);
    assert_int_equal(f[0].is_inline, 0);
    assert_string_equal(f[1].sym, "LeakApp!Fill+0x8");
    assert_int_equal(f[1].is_inline, 1);
    assert_int_equal(f[1].has_ret, 0);
    assert_int_equal(f[2].form, KDH_INGEST_CS_ADDR);
    assert_int_equal(f[2].addr, 0x00007ff611112222ull);
    assert_int_equal(c->stacks[1].st.nframes, 1);
    assert_string_equal(c->stacks[1].frames[0].sym, "LeakApp+0xb796");
    assert_int_equal(c->stats.skipped, 0);
    coll_free(c);
}

/* The allocation table of !verifier 3 (and 0xf) as Windows 7 printed it: "PoolAddress SizeInBytes
 * Tag CallersAddress", addresses without "0x", no symbol column, one table per verified driver. */
static const char v3_windows7[] =
    "2: kd> !verifier 3\n"
    "Driver Verification List\n"
    "\n"
    "Entry     State           NonPagedPool   PagedPool   Module\n"
    "\n"
    "fffffa8001234560 Loaded           000000a0       00000854    leakdrv.sys\n"
    "\n"
    "Current Pool Allocations  00000002    00000013\n"
    "\n"
    "PoolAddress  SizeInBytes    Tag       CallersAddress\n"
    "fffff98001111fc0     0x0000003c     Leak      fffff88002c62963\n"
    "fffff98002222fc0     0x00000034     Io        fffff88002c62963\n"
    "...\n"
    "\n"
    "fffffa8001234620 Loaded           00046070       000000fc    otherdrv.sys\n"
    "\n"
    "PoolAddress  SizeInBytes    Tag       CallersAddress\n"
    "9a3b4fe0     0x00000018     Othr      9a3bf6ac\n"
    "9a3b5fe0     0x00000018     Othr\n"
    "\n";

static void test_verifier3_windows7(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, v3_windows7, sizeof v3_windows7 - 1, 4096);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 3); /* the last row has no caller: not a row */
    assert_string_equal(c->stacks[0].st.origin, "verifier3");
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_ALLOC);
    assert_string_equal(c->stacks[0].st.tag, "Leak");
    assert_int_equal(c->stacks[0].st.size, 0x3c);
    assert_int_equal(c->stacks[0].st.addr, 0xfffff98001111fc0ull);
    assert_int_equal(c->stacks[0].st.nframes, 1);
    assert_int_equal(c->stacks[0].frames[0].addr, 0xfffff88002c62963ull);
    assert_string_equal(c->stacks[0].frames[0].sym, "0xfffff88002c62963");
    assert_string_equal(c->stacks[1].st.tag, "Io  ");
    assert_int_equal(c->stacks[1].st.size, 0x34);
    assert_string_equal(c->stacks[2].st.tag, "Othr");
    assert_int_equal(c->stacks[2].st.addr, 0x9a3b4fe0);
    assert_int_equal(c->stacks[2].frames[0].addr, 0x9a3bf6ac);
    coll_free(c);
}

/* Newer WinDbg on x86 marks frames reached through a trap frame with "(T)" after the return address
 * and notes between frames that the unwind may have skipped some. */
static const char x86_trap_marks[] =
    "Break instruction exception - code 80000003 (first chance)\n"
    "nt!ExAllocatePoolWithTag+0x881:\n"
    "82b2f88c int     3\n"
    "1: kd> kvn\n"
    " # ChildEBP RetAddr      Args to Child              \n"
    "00 9a3b2c10 81a2b3c4     00000001 00000040 6b61654c nt!ExAllocatePoolWithTag+0x881\n"
    "01 9a3b2c40 81a2b3d8     00000001 00000000 00000000 LeakDrv!Grow+0x22 (FPO: [Non-Fpo])\n"
    "    <Intermediate frames may have been skipped due to lack of complete unwind>\n"
    "02 9a3b2c70 81a2c000 (T) 00000002 00000000 9a3b2ca0 nt!KiSystemServicePostCall (FPO: [0,3] TrapFrame @ 9a3b2c80)\n"
    "    <Intermediate frames may have been skipped due to lack of complete unwind>\n"
    "03 0012f000 77001234 (T) ntdll!KiFastSystemCallRet\n"
    "04 0012f040 00000000     00000000 00000000 00000000 LeakApp!main+0x10\n";

static void test_x86_trap_marks(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, x86_trap_marks, sizeof x86_trap_marks - 1, 4096);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 1);
    const kdh_ingest_frame_t *f = c->stacks[0].frames;
    assert_int_equal(c->stacks[0].st.nframes, 5);
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_ALLOC);
    assert_string_equal(c->stacks[0].st.tag, "Leak");
    assert_string_equal(f[2].sym, "nt!KiSystemServicePostCall");
    assert_int_equal(f[2].ret, 0x81a2c000);
    assert_int_equal(f[2].nargs, 3);
    assert_int_equal(f[2].args[2], 0x9a3b2ca0);
    assert_string_equal(f[3].sym, "ntdll!KiFastSystemCallRet");
    assert_int_equal(f[3].nargs, 0);
    assert_string_equal(f[4].sym, "LeakApp!main+0x10");
    assert_int_equal(c->stats.skipped, 0);
    coll_free(c);
}

/* The kernel debugger's prompt in a WOW64 thread's context: "1: kd:x86>", also seen as
 * "32.2: kd:x86>"; its commands count like any other prompt's (kc arms a stack, g ends a break). */
static const char wow64_prompts[] =
    "1: kd:x86> kc\n"
    "00 nt!ExAllocatePoolWithTag\n"
    "01 LeakDrv!Grow+0x22\n"
    "32.2: kd:x86> kc\n"
    "00 nt!ExFreePoolWithTag\n"
    "01 LeakDrv!Shrink+0x10\n"
    "32.2: kd:x86> x nt!ExAllocatePoolWithTag\n"
    "fffff800`2ae6e400          nt!ExAllocatePoolWithTag (void)\n";

static void test_wow64_prompts(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, wow64_prompts, sizeof wow64_prompts - 1, 4096);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 2);
    assert_int_equal(c->stacks[0].st.nframes, 2);
    assert_int_equal(c->stacks[0].st.cpu, 1);
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_ALLOC);
    assert_int_equal(c->stacks[1].st.nframes, 2); /* the kc list ends at the next prompt */
    assert_int_equal(c->stacks[1].st.kind, KDH_INGEST_EV_FREE);
    assert_string_equal(c->stacks[1].frames[1].sym, "LeakDrv!Shrink+0x10");
    coll_free(c);
}

/* !verifier 0x80 printed newest first: the free of 82000000 comes before its allocation in the
 * text, so the records must come out reversed (allocation first) for pairing by address. */
static const char v80_newest_first[] =
    "kd> !verifier 0x80\n"
    "Log of recent kernel pool Allocate and Free operations:\n"
    "\n"
    "Pool block 82000000, Size 00000040, Thread 85000000\n"
    "81000010 nt!VerifierExFreePoolWithTag+0x20\n"
    "90000020 LeakDrv!Release+0x8\n"
    "\n"
    "Pool block 83000000, Size 00000020, Thread 85000000\n"
    "81000030 nt!VerifierExAllocatePoolWithTag+0x24\n"
    "90000040 LeakDrv!Grow+0x10\n"
    "\n"
    "Pool block 82000000, Size 00000040, Thread 85000000\n"
    "81000030 nt!VerifierExAllocatePoolWithTag+0x24\n"
    "90000050 LeakDrv!Open+0x30\n"
    "kd> !verifier 0x80\n"
    "Pool block 84000000, Size 00000010, Thread 85000000\n"
    "81000030 nt!VerifierExAllocatePoolWithTag+0x24\n"
    "90000050 LeakDrv!Open+0x30\n"
    "\n"
    "Pool block 84000000, Size 00000010, Thread 85000000\n"
    "81000010 nt!VerifierExFreePoolWithTag+0x20\n"
    "90000020 LeakDrv!Release+0x8\n";

/* !verifier 3 run twice in one log lists the same outstanding blocks twice: one allocation each */
static const char v3_twice[] = "kd> !verifier 3 LeakDrv.sys\n"
                               "      Address     Length      Tag   Caller\n"
                               "      ----------  ----------  ----  ----------\n"
                               "      0x86000010  0x00000070  Leak  0xa05c1047  LeakDrv!Grow+0x27\n"
                               "      0x86000090  0x00000020  Leak  0xa05c1047  LeakDrv!Grow+0x27\n"
                               "kd> !verifier 3 LeakDrv.sys\n"
                               "      Address     Length      Tag   Caller\n"
                               "      ----------  ----------  ----  ----------\n"
                               "      0x86000010  0x00000070  Leak  0xa05c1047  LeakDrv!Grow+0x27\n"
                               "      0x86000090  0x00000020  Leak  0xa05c1047  LeakDrv!Grow+0x27\n"
                               "      0x86000100  0x00000070  Leak  0xa05c1047  LeakDrv!Grow+0x27\n";

static void test_verifier3_twice(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, v3_twice, sizeof v3_twice - 1, 64);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 3);
    assert_int_equal(c->stacks[2].st.addr, 0x86000100);
    assert_int_equal(c->stacks[2].st.line, 11);
    coll_free(c);
}

/* The same with 300 blocks: the address index grows (past 128 entries) and rehashes, and every
 * block of the second listing is still found there: 300 allocations, not 600. */
static void test_verifier3_twice_many(void **state)
{
    (void)state;
    enum { ROWS = 300 };
    static const char head[] = "kd> !verifier 3 LeakDrv.sys\n"
                               "      Address     Length      Tag   Caller\n"
                               "      ----------  ----------  ----  ----------\n";
    size_t cap = 2 * (sizeof head + ROWS * 80), n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int pass = 0; pass < 2; pass++) {
        n += (size_t)snprintf(text + n, cap - n, "%s", head);
        for (unsigned i = 0; i < ROWS; i++)
            n += (size_t)snprintf(text + n, cap - n, "      0x%08x  0x00000070  Leak  0xa05c1047  LeakDrv!Grow+0x27\n",
                                  0x86000000u + 0x100u * i);
    }
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, text, n, 4096);
    free(text);
    assert_non_null(c);
    assert_int_equal(c->stats.events, ROWS);
    assert_int_equal(c->stacks[63].st.addr, 0x86000000u + 0x100u * 63);
    coll_free(c);
}

static void test_verifier80_order(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_VERIFIER, NULL, v80_newest_first, sizeof v80_newest_first - 1, 64);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 5);
    /* first output reversed */
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_ALLOC);
    assert_int_equal(c->stacks[0].st.addr, 0x82000000);
    assert_int_equal(c->stacks[0].st.line, 13);
    assert_int_equal(c->stacks[1].st.addr, 0x83000000);
    assert_int_equal(c->stacks[2].st.kind, KDH_INGEST_EV_FREE);
    assert_int_equal(c->stacks[2].st.addr, 0x82000000);
    assert_int_equal(c->stacks[2].st.line, 5);
    /* second output already oldest first: kept */
    assert_int_equal(c->stacks[3].st.kind, KDH_INGEST_EV_ALLOC);
    assert_int_equal(c->stacks[4].st.kind, KDH_INGEST_EV_FREE);
    assert_int_equal(c->stacks[4].st.size, 0x10);
    assert_int_equal(c->stacks[4].st.thread, 0x85000000);
    coll_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_free_session), cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_x86_args),           cmocka_unit_test(test_lookalikes),
        cmocka_unit_test(test_bad_input),          cmocka_unit_test(test_poolmon_series),
        cmocka_unit_test(test_poolused_tabs),      cmocka_unit_test(test_frame_lines),
        cmocka_unit_test(test_variants),           cmocka_unit_test(test_verifier80_order),
        cmocka_unit_test(test_poolused_verbose),   cmocka_unit_test(test_verifier3_twice),
        cmocka_unit_test(test_verifier3_twice_many), cmocka_unit_test(test_moved_blocks),
        cmocka_unit_test(test_symbol_load_notes),  cmocka_unit_test(test_retaddr_only),
        cmocka_unit_test(test_verifier3_windows7), cmocka_unit_test(test_x86_trap_marks),
        cmocka_unit_test(test_wow64_prompts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
