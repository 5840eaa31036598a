/* test_ingest_samples.c: every real debugger sample in shared/samples, against counts and frames
 * read off the files by hand (not produced by the parser): number of stacks and frames, pool
 * snapshots and rows, a few exact frames, and the events the stacks are attributed to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ingest_collect.h"

static char path_buf[1024];
static const char *sample(const char *name)
{
    snprintf(path_buf, sizeof path_buf, "%s/%s", KDH_SAMPLES_DIR, name);
    return path_buf;
}

/* Counted by reading each file: frame lines of every stack (numbered NN or listed), pool rows. */
static const struct {
    const char *file;
    unsigned stacks, frames, snapshots, samples;
} counts[] = {
    {"k_x64_alloc_inline_source_01.txt", 1, 17, 0, 0},   /* 00..10 */
    {"k_x64_lastsetcontext_01.txt", 1, 4, 0, 0},         /* 00..03 */
    {"k_x64_source_dth_01.txt", 1, 9, 0, 0},             /* 00..08 */
    {"kb_x86_unwind_warning_01.txt", 1, 11, 0, 0},       /* unnumbered, 11 lines */
    {"kc_x86_bp_01.txt", 1, 7, 0, 0},                    /* 00..06; bl lines are not frames */
    {"kd_session_x64_bp_ba_k_01.txt", 3, 23, 0, 0},      /* 8 + 10 + 5 */
    {"kd_verifier_bugcheck_x86_kb_01.txt", 3, 57, 0, 0}, /* kvn 10, kb 0x2e=46, !verifier 3 row 1 */
    {"kmautofail_x64_01.txt", 1, 14, 0, 0},
    {"knL_x64_inline_unsym_01.txt", 1, 7, 0, 0},
    {"knL_x64_inline_usermode_01.txt", 1, 4, 0, 0},
    {"kn_x64_inline_source_spaces_01.txt", 1, 6, 0, 0}, /* ends at the "..." elision */
    {"kn_x86_01.txt", 1, 7, 0, 0},
    {"kn_x86_bp_source_01.txt", 1, 16, 0, 0},
    {"kn_x86_bp_trap_01.txt", 1, 11, 0, 0}, /* the .frame echo is not a stack */
    {"kvn_x86_sxe_ld_01.txt", 1, 10, 0, 0},
    {"kvn_x86_token_negative_01.txt", 1, 15, 0, 0}, /* !token lines are not frames */
    {"kvn_x86_win32k_01.txt", 1, 6, 0, 0},
    {"mex_t_x64_unsym_01.txt", 1, 13, 0, 0}, /* 0..c */
    {"pool_x64_paged_alloc_01.txt", 0, 0, 0, 0},
    {"pool_x64_paged_free_corrupt_01.txt", 0, 0, 0, 0},
    {"pool_x64_unknown_region_01.txt", 0, 0, 0, 0},
    {"pool_x86_01.txt", 0, 0, 0, 0},
    {"pool_x86_flag1_01.txt", 0, 0, 0, 0},
    {"poolfind_x64_modern_01.txt", 0, 0, 1, 1}, /* one !poolfind, one tag, nonpaged */
    {"poolfind_x86_01.txt", 0, 0, 2, 2},        /* "!poolfind SeSd 0" nonpaged, "... 1" paged */
    {"poolmon_dashed_01.txt", 0, 0, 1, 4},
    {"poolmon_mapped_driver_01.txt", 0, 0, 1, 13},
    {"poolmon_screen_01.txt", 0, 0, 1, 8},
    {"poolmon_snapshot_n_01.txt", 0, 0, 1, 13},
    {"poolmon_unknown_driver_01.txt", 0, 0, 1, 3},
    {"poolmon_win10_wide_01.txt", 0, 0, 1, 3},
    {"pooltag_txt_ws2003_rktools_01.txt", 0, 0, 0, 0},
    {"poolused_flag4_01.txt", 0, 0, 1, 10},      /* 5 tags x (nonpaged, paged) */
    {"poolused_x86_flag0_01.txt", 0, 0, 1, 70},  /* 13 + 22 tags x 2; TOTAL is not a tag */
    {"poolval_x64_01.txt", 0, 0, 0, 0},
    {"stacktext_x86_verifier_alloc_01.txt", 1, 13, 0, 0},
    {"thread_x64_rawaddr_frames_01.txt", 1, 3, 0, 0},
    {"thread_x86_inline_01.txt", 1, 19, 0, 0},
    {"verifier3_x86_poolalloc_01.txt", 3, 3, 0, 0},
    {"verifier4_x86_faultinject_01.txt", 2, 11, 0, 0}, /* 8 + 3 */
    {"verifier80_x86_poolstacks_01.txt", 3, 39, 0, 0}, /* 13 + 13 + 13 */
    {"vm1_x64_win10_01.txt", 0, 0, 1, 3},              /* NonPagedPool, NonPagedPoolNx, PagedPool */
    {"vm1_x86_01.txt", 0, 0, 1, 2},                    /* NonPagedPool, PagedPool */
};

/* Exact frames: file, stack index, frame index, module, symbol ("" for module+off / raw),
 * offset (-1 = none printed), inline, raw address (0 = none). */
static const struct {
    const char *file;
    unsigned stack, frame;
    const char *mod, *name;
    long long off;
    int is_inline;
    uint64_t addr;
} frames[] = {
    {"k_x64_alloc_inline_source_01.txt", 0, 0, "nt", "ExAllocatePool2", -1, 0, 0},
    {"k_x64_alloc_inline_source_01.txt", 0, 1, "Wdf01000", "MxMemory::MxAllocatePool2", 0x10, 1, 0},
    {"k_x64_alloc_inline_source_01.txt", 0, 6, "Wdf01000", "FxObject::operator new", 0x2a, 1, 0},
    {"k_x64_alloc_inline_source_01.txt", 0, 16, "nt", "KiIdleLoop", 0x9e, 0, 0},
    {"k_x64_lastsetcontext_01.txt", 0, 3, "nt", "KeWaitForSingleObject", 0x2c0, 0, 0},
    {"k_x64_source_dth_01.txt", 0, 2, "dxgkrnl", "ADAPTER_RENDER::Reset", 0x15e, 0, 0},
    {"kb_x86_unwind_warning_01.txt", 0, 0, "ntdll", "DbgBreakPoint", -1, 0, 0},
    {"kb_x86_unwind_warning_01.txt", 0, 7, "pheap-buggy", "TestCorruptAfterEnd", 0x2b, 0, 0},
    {"kb_x86_unwind_warning_01.txt", 0, 10, "kernel32", "DosPathToSessionPathA", 0x204, 0, 0},
    {"kc_x86_bp_01.txt", 0, 0, "booster", "DriverEntry", -1, 0, 0},
    {"kc_x86_bp_01.txt", 0, 6, "nt", "KiThreadStartup", -1, 0, 0},
    {"kd_session_x64_bp_ba_k_01.txt", 1, 0, "dxgkrnl", "InsertTailList", 0x1c, 1, 0},
    {"kd_session_x64_bp_ba_k_01.txt", 2, 4, "nt", "KiStartSystemThread", 0x34, 0, 0},
    {"kd_verifier_bugcheck_x86_kb_01.txt", 0, 0, "nt", "ExAllocatePoolWithTag", 0x881, 0, 0},
    {"kd_verifier_bugcheck_x86_kb_01.txt", 0, 4, "Sample", "DriverEntry", 0x27, 0, 0},
    {"kd_verifier_bugcheck_x86_kb_01.txt", 1, 45, "ntdll", "_RtlUserThreadStart", 0x1b, 0, 0},
    {"kd_verifier_bugcheck_x86_kb_01.txt", 1, 31, "RPCRT4", "RPC_INTERFACE::DispatchToStubWorker", 0x16c, 0, 0},
    {"kd_verifier_bugcheck_x86_kb_01.txt", 2, 0, "Sample", "DriverEntry", 0x27, 0, 0},
    {"kmautofail_x64_01.txt", 0, 0, "kmautofail", "ShimHookExAllocatePoolWithTag", 0x37, 0, 0},
    {"kmautofail_x64_01.txt", 0, 13, "nt", "KiIdleLoop", 0x5a, 0, 0},
    {"knL_x64_inline_unsym_01.txt", 0, 2, "nt", "ExpReleaseResourceForThreadLite", 0xbb, 1, 0},
    {"knL_x64_inline_unsym_01.txt", 0, 4, "TestDriver", "", 0x128a, 0, 0},
    {"knL_x64_inline_usermode_01.txt", 0, 0, "MyApp", "func1", 0x7, 1, 0},
    {"knL_x64_inline_usermode_01.txt", 0, 3, "KERNEL32", "BaseThreadInitThunk", 0xd, 0, 0},
    {"kn_x64_inline_source_spaces_01.txt", 0, 0, "ECHO", "EchoEvtDeviceAdd", 0x66, 0, 0},
    {"kn_x64_inline_source_spaces_01.txt", 0, 1, "Wdf01000", "FxDriverDeviceAdd::Invoke", 0x30, 1, 0},
    {"kn_x86_01.txt", 0, 0, "CVE_2014_4113", "SubClassNewWndProc", 0x55, 0, 0},
    {"kn_x86_bp_source_01.txt", 0, 15, "ntdll", "_RtlUserThreadStart", 0x1b, 0, 0},
    {"kn_x86_bp_trap_01.txt", 0, 2, "nt", "KiTrap0E", 0xdc, 0, 0},
    {"kvn_x86_sxe_ld_01.txt", 0, 3, "nt", "MmLoadSystemImageEx", 0x544, 0, 0},
    {"kvn_x86_token_negative_01.txt", 0, 7, "nt", "KiFastCallEntry", 0x12a, 0, 0},
    {"kvn_x86_token_negative_01.txt", 0, 11, "CVE_2014_4113", "ExploitThread", 0x20d, 0, 0},
    {"kvn_x86_win32k_01.txt", 0, 5, "nt", "KiCallUserMode", 0x4, 0, 0},
    {"mex_t_x64_unsym_01.txt", 0, 1, "nt", "ExpRemoveTagForBigPages", 0x1b8878, 0, 0},
    {"mex_t_x64_unsym_01.txt", 0, 3, "Driver", "", 0x1170, 0, 0},
    {"stacktext_x86_verifier_alloc_01.txt", 0, 6, "VerifierExt",
     "SLIC_ExAllocatePoolWithTagPriority_internal_entry_IrqlExAllocatePool", 0x6f, 0, 0},
    {"stacktext_x86_verifier_alloc_01.txt", 0, 9, "MyDriver", "HandleISR", 0x146, 0, 0},
    {"thread_x64_rawaddr_frames_01.txt", 0, 0, "nt", "DbgBreakPointWithStatus", -1, 0, 0},
    {"thread_x64_rawaddr_frames_01.txt", 0, 1, "", "", -1, 0, 0xfffff801b56d24aaull},
    {"thread_x64_rawaddr_frames_01.txt", 0, 2, "", "", -1, 0, 0xffffcb088fd68010ull},
    {"thread_x86_inline_01.txt", 0, 14, "Boost", "invoke_main", 0x1c, 1, 0},
    {"thread_x86_inline_01.txt", 0, 8, "nt", "KiSystemServicePostCall", -1, 0, 0},
    {"verifier3_x86_poolalloc_01.txt", 2, 0, "MyDriver", "GetNecessaryObjects", -1, 0, 0},
    {"verifier4_x86_faultinject_01.txt", 0, 0, "nt", "VerifierExAllocatePoolWithTag", 0x49, 0, 0},
    {"verifier4_x86_faultinject_01.txt", 1, 2, "win32k", "StubGdiAlloc", 0x10, 0, 0},
    {"verifier80_x86_poolstacks_01.txt", 0, 4, "MyDriver", "NonPNPIRPDispatch0x51", -1, 0, 0},
    {"verifier80_x86_poolstacks_01.txt", 1, 0, "VerifierExt", "ExAllocatePoolWithTagPriority_internal_wrapper", 0x5b,
     0, 0},
};

static int have_samples(void)
{
    struct stat sb;
    return stat(KDH_SAMPLES_DIR, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void test_counts(void **state)
{
    (void)state;
    for (size_t i = 0; i < KDH_ARRAY_LEN(counts); i++) {
        coll_t *c = coll_run(KDH_INGEST_AUTO, sample(counts[i].file), NULL, 0, 0);
        assert_non_null(c);
        unsigned nframes = 0;
        for (size_t s = 0; s < c->nstacks; s++)
            nframes += (unsigned)c->stacks[s].st.nframes;
        if (c->nstacks != counts[i].stacks || nframes != counts[i].frames ||
            c->stats.snapshots != counts[i].snapshots || c->nsamples != counts[i].samples)
            fail_msg("%s: stacks %zu frames %u snapshots %llu samples %zu; expected %u %u %u %u", counts[i].file,
                     c->nstacks, nframes, (unsigned long long)c->stats.snapshots, c->nsamples, counts[i].stacks,
                     counts[i].frames, counts[i].snapshots, counts[i].samples);
        assert_int_equal(c->stats.frames, nframes);
        coll_free(c);
    }
}

/* What auto-detection recognizes per file (KDH_INGEST_* bits), for one file of each family. */
static void test_recognized(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        unsigned kinds;
    } want[] = {
        {"kd_verifier_bugcheck_x86_kb_01.txt", KDH_INGEST_KD | KDH_INGEST_VERIFIER},
        {"kn_x86_01.txt", KDH_INGEST_KD},
        {"verifier80_x86_poolstacks_01.txt", KDH_INGEST_VERIFIER},
        {"kmautofail_x64_01.txt", KDH_INGEST_VERIFIER},
        {"poolmon_snapshot_n_01.txt", KDH_INGEST_POOLMON},
        {"poolused_flag4_01.txt", KDH_INGEST_POOLUSED},
        {"vm1_x86_01.txt", KDH_INGEST_POOLUSED},
        {"poolfind_x86_01.txt", KDH_INGEST_POOLUSED},
        {"pool_x86_01.txt", 0},
        {"pooltag_txt_ws2003_rktools_01.txt", 0},
    };
    for (size_t i = 0; i < KDH_ARRAY_LEN(want); i++) {
        coll_t *c = coll_run(KDH_INGEST_AUTO, sample(want[i].file), NULL, 0, 0);
        assert_non_null(c);
        if (c->stats.kinds_seen != want[i].kinds)
            fail_msg("%s: recognized %#x, expected %#x", want[i].file, c->stats.kinds_seen, want[i].kinds);
        coll_free(c);
    }
}

static void test_frames(void **state)
{
    (void)state;
    for (size_t i = 0; i < KDH_ARRAY_LEN(frames); i++) {
        coll_t *c = coll_run(KDH_INGEST_AUTO, sample(frames[i].file), NULL, 0, 0);
        assert_non_null(c);
        if (frames[i].stack >= c->nstacks || frames[i].frame >= c->stacks[frames[i].stack].st.nframes)
            fail_msg("%s: no frame %u of stack %u", frames[i].file, frames[i].frame, frames[i].stack);
        const kdh_ingest_frame_t *f = &c->stacks[frames[i].stack].frames[frames[i].frame];
        char mod[128], name[512];
        frame_parts(f, mod, name);
        if (strcmp(mod, frames[i].mod) || strcmp(name, frames[i].name) ||
            (frames[i].off < 0 ? f->has_off : (!f->has_off || f->off != (uint64_t)frames[i].off)) ||
            f->is_inline != frames[i].is_inline ||
            (frames[i].addr && (f->form != KDH_INGEST_CS_ADDR || f->addr != frames[i].addr)))
            fail_msg("%s stack %u frame %u: got '%s' mod '%s' name '%s' off %s%llx inline %d", frames[i].file,
                     frames[i].stack, frames[i].frame, f->sym, mod, name, f->has_off ? "" : "(none)",
                     (unsigned long long)f->off, f->is_inline);
        coll_free(c);
    }
}

/* The PoolHitTag break: "Break instruction exception" at nt!ExAllocatePoolWithTag+0x881, kvn with
 * args (000000c1 00000070 64636261): an allocation of 0x70 bytes with tag 'abcd' on CPU 0. */
static void test_poolhittag_alloc(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, sample("kd_verifier_bugcheck_x86_kb_01.txt"), NULL, 0, 0);
    assert_non_null(c);
    const kdh_ingest_stack_t *st = &c->stacks[0].st;
    assert_int_equal(st->kind, KDH_INGEST_EV_ALLOC);
    assert_string_equal(st->tag, "abcd");
    assert_int_equal(st->tag_dword, 0x64636261);
    assert_int_equal(st->has_size, 1);
    assert_int_equal(st->size, 0x70);
    assert_int_equal(st->cpu, 0);
    assert_int_equal(st->line, 16);
    assert_string_equal(c->stacks[0].frames[0].sym, "nt!ExAllocatePoolWithTag+0x881");
    /* the bugcheck stack is a hit on CPU 1, not an allocation */
    assert_int_equal(c->stacks[1].st.kind, KDH_INGEST_EV_HIT);
    assert_int_equal(c->stacks[1].st.cpu, 1);
    assert_int_equal(c->stacks[1].st.line, 158);
    /* !verifier 3 row: 0x86491d10 0x70 abcd caller 0xa05c1047 */
    const kdh_ingest_stack_t *v3 = &c->stacks[2].st;
    assert_int_equal(v3->kind, KDH_INGEST_EV_ALLOC);
    assert_string_equal(v3->tag, "abcd");
    assert_int_equal(v3->addr, 0x86491d10);
    assert_int_equal(v3->size, 0x70);
    assert_int_equal(c->stacks[2].frames[0].addr, 0xa05c1047);
    coll_free(c);
    /* with --kind kd the verifier table is not read */
    c = coll_run(KDH_INGEST_KD, sample("kd_verifier_bugcheck_x86_kb_01.txt"), NULL, 0, 0);
    assert_int_equal(c->nstacks, 2);
    coll_free(c);
}

/* !poolfind: the allocated blocks listed, counted and their sizes summed off the files (grep for
 * ": tag amda, size" and "(Allocated) SeSd", sizes added by hand): 31 blocks, 0x98a0 = 39072
 * bytes; SeSd 17 nonpaged blocks, 2784 bytes (two free blocks left out) and 4 paged, 736 bytes. */
static void test_poolfind(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, sample("poolfind_x64_modern_01.txt"), NULL, 0, 0);
    assert_int_equal(c->nsamples, 1);
    assert_string_equal(c->samples[0].tag, "amda");
    assert_string_equal(c->samples[0].pool, "nonpaged");
    assert_int_equal(c->samples[0].allocs, 31);
    assert_int_equal(c->samples[0].frees, 0);
    assert_int_equal(c->samples[0].bytes, 39072);
    assert_string_equal(c->samples[0].origin, "poolfind");
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, sample("poolfind_x86_01.txt"), NULL, 0, 0);
    assert_int_equal(c->nsamples, 2);
    assert_string_equal(c->samples[0].tag, "SeSd");
    assert_string_equal(c->samples[0].pool, "nonpaged");
    assert_int_equal(c->samples[0].allocs, 17);
    assert_int_equal(c->samples[0].bytes, 2784);
    assert_int_equal(c->samples[0].snapshot, 1);
    assert_string_equal(c->samples[1].pool, "paged");
    assert_int_equal(c->samples[1].allocs, 4);
    assert_int_equal(c->samples[1].bytes, 736);
    assert_int_equal(c->samples[1].snapshot, 2);
    coll_free(c);
    /* with --kind kd it is not read */
    c = coll_run(KDH_INGEST_KD, sample("poolfind_x86_01.txt"), NULL, 0, 0);
    assert_int_equal(c->nsamples, 0);
    coll_free(c);
}

static void test_events(void **state)
{
    (void)state;
    /* prompts "0: kd> k", "0: kd> k", "4: kd> k" after Breakpoint 0/1/1 hit */
    coll_t *c = coll_run(KDH_INGEST_AUTO, sample("kd_session_x64_bp_ba_k_01.txt"), NULL, 0, 0);
    assert_int_equal(c->nstacks, 3);
    assert_int_equal(c->stacks[0].st.cpu, 0);
    assert_int_equal(c->stacks[1].st.cpu, 0);
    assert_int_equal(c->stacks[2].st.cpu, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c->stacks[i].st.kind, KDH_INGEST_EV_HIT);
        assert_int_equal(c->stacks[i].st.repeat, 0);
    }
    assert_int_equal(c->stacks[0].st.line, 9);
    assert_int_equal(c->stacks[2].st.line, 50);
    coll_free(c);
    /* ExFreePoolWithTag in the first frames of the !mex.t stack: a free */
    c = coll_run(KDH_INGEST_AUTO, sample("mex_t_x64_unsym_01.txt"), NULL, 0, 0);
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_FREE);
    coll_free(c);
    /* ExAllocatePool2 on top (the bp on nt!ExAllocatePool2 of that blog post), CPU 8 */
    c = coll_run(KDH_INGEST_AUTO, sample("k_x64_alloc_inline_source_01.txt"), NULL, 0, 0);
    assert_int_equal(c->stacks[0].st.kind, KDH_INGEST_EV_ALLOC);
    assert_int_equal(c->stacks[0].st.cpu, 8);
    coll_free(c);
    /* !verifier 0x80: Pool block 8645a000, Size 00001000, Thread 9c158bc0 */
    c = coll_run(KDH_INGEST_AUTO, sample("verifier80_x86_poolstacks_01.txt"), NULL, 0, 0);
    assert_int_equal(c->stacks[1].st.kind, KDH_INGEST_EV_ALLOC);
    assert_int_equal(c->stacks[1].st.addr, 0x8645a000);
    assert_int_equal(c->stacks[1].st.size, 0x1000);
    assert_int_equal(c->stacks[1].st.thread, 0x9c158bc0);
    assert_int_equal(c->stacks[1].frames[2].addr, 0x9a3bf687);
    coll_free(c);
    /* !verifier 4: Thread: 8436D770; fault injections are not allocations */
    c = coll_run(KDH_INGEST_AUTO, sample("verifier4_x86_faultinject_01.txt"), NULL, 0, 0);
    assert_int_equal(c->stacks[1].st.thread, 0x8436d770);
    assert_int_equal(c->stacks[1].st.kind, KDH_INGEST_EV_HIT);
    assert_int_equal(c->stacks[0].frames[0].addr, 0x816760cb);
    coll_free(c);
    /* Breakpoint 2 hit, then "1: kd> !thread -p" */
    c = coll_run(KDH_INGEST_AUTO, sample("thread_x86_inline_01.txt"), NULL, 0, 0);
    assert_int_equal(c->stacks[0].st.cpu, 1);
    coll_free(c);
}

static const kdh_ingest_sample_t *find_sample(coll_t *c, const char *tag, const char *pool)
{
    for (size_t i = 0; i < c->nsamples; i++)
        if (strcmp(c->samples[i].tag, tag) == 0 && strcmp(c->samples[i].pool, pool) == 0)
            return &c->samples[i];
    return NULL;
}

static void test_pool_rows(void **state)
{
    (void)state;
    coll_t *c = coll_run(KDH_INGEST_AUTO, sample("poolmon_screen_01.txt"), NULL, 0, 0);
    const kdh_ingest_sample_t *s = find_sample(c, "Io  ", "nonpaged"); /* Io   Nonp 1021112 ... 91912 */
    assert_non_null(s);
    assert_int_equal(s->allocs, 1021112);
    assert_int_equal(s->frees, 1020985);
    assert_int_equal(s->bytes, 91912);
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, sample("poolmon_dashed_01.txt"), NULL, 0, 0);
    assert_non_null(s = find_sample(c, "CM  ", "paged"));
    assert_int_equal(s->bytes, 1377312);
    assert_non_null(s = find_sample(c, "Strg", "paged"));
    assert_int_equal(s->allocs, 10385);
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, sample("poolmon_win10_wide_01.txt"), NULL, 0, 0);
    assert_non_null(s = find_sample(c, "HidC", "nonpaged"));
    assert_int_equal(s->bytes, 19808);
    assert_non_null(s = find_sample(c, "HidC", "paged"));
    assert_int_equal(s->frees, 1659);
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, sample("poolmon_snapshot_n_01.txt"), NULL, 0, 0);
    assert_non_null(s = find_sample(c, "CM25", "paged"));
    assert_int_equal(s->allocs, 4849);
    assert_int_equal(s->frees, 0);
    assert_int_equal(s->bytes, 21708800);
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, sample("poolused_x86_flag0_01.txt"), NULL, 0, 0);
    assert_non_null(s = find_sample(c, "ohci", "nonpaged")); /* 1 136 0 0 + "1394 OHCI ..." */
    assert_int_equal(s->allocs, 1);
    assert_int_equal(s->bytes, 136);
    assert_non_null(s = find_sample(c, "ohci", "paged"));
    assert_int_equal(s->bytes, 0);
    assert_non_null(s = find_sample(c, "AGP ", "paged"));
    assert_int_equal(s->allocs, 2);
    assert_int_equal(s->bytes, 384);
    assert_non_null(s = find_sample(c, "rx..", "nonpaged")); /* the row one column short */
    assert_int_equal(s->bytes, 1248);
    assert_non_null(s = find_sample(c, "Wmit", "paged"));
    assert_int_equal(s->bytes, 49480);
    assert_null(find_sample(c, "TOTA", "paged"));
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, sample("poolused_flag4_01.txt"), NULL, 0, 0);
    assert_non_null(s = find_sample(c, "Abc ", "paged"));
    assert_int_equal(s->allocs, 36405);
    assert_int_equal(s->bytes, 33930272);
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, sample("vm1_x64_win10_01.txt"), NULL, 0, 0);
    assert_non_null(s = find_sample(c, "*", "nonpagednx"));
    assert_int_equal(s->bytes, 134448ull * 1024);
    coll_free(c);
    c = coll_run(KDH_INGEST_AUTO, sample("vm1_x86_01.txt"), NULL, 0, 0);
    assert_non_null(s = find_sample(c, "*", "paged"));
    assert_int_equal(s->bytes, 6388ull * 1024);
    coll_free(c);
}

/* The docs workflow in one log: the !verifier 3 table lists 0x982a8fe0 (VMdl), 0x8645a000 (mdrv)
 * and 0x9a836fd0 (Vfwi); !verifier 0x80 then shows those three blocks with whole stacks. Each
 * block is one allocation: the log's stack with the table's tag. */
static void test_verifier3_and_80(void **state)
{
    (void)state;
    FILE *a = fopen(sample("verifier3_x86_poolalloc_01.txt"), "rb");
    assert_non_null(a);
    static char buf[24576];
    size_t n = fread(buf, 1, sizeof buf, a);
    fclose(a);
    FILE *b = fopen(sample("verifier80_x86_poolstacks_01.txt"), "rb");
    assert_non_null(b);
    n += fread(buf + n, 1, sizeof buf - n, b);
    fclose(b);
    /* the table printed once more after the log (a second !verifier 3): still the same 3 blocks */
    FILE *a2 = fopen(sample("verifier3_x86_poolalloc_01.txt"), "rb");
    assert_non_null(a2);
    n += fread(buf + n, 1, sizeof buf - n, a2);
    fclose(a2);
    coll_t *c = coll_run(KDH_INGEST_AUTO, NULL, buf, n, 4096);
    assert_non_null(c);
    assert_int_equal(c->nstacks, 3);
    static const struct {
        uint64_t addr;
        const char *tag;
        unsigned frames;
    } want[] = {{0x982a8fe0, "VMdl", 13}, {0x8645a000, "mdrv", 13}, {0x9a836fd0, "Vfwi", 13}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c->stacks[i].st.addr, want[i].addr);
        assert_string_equal(c->stacks[i].st.tag, want[i].tag);
        assert_int_equal(c->stacks[i].st.nframes, want[i].frames);
        assert_string_equal(c->stacks[i].st.origin, "verifier80");
    }
    coll_free(c);
}

int main(void)
{
    if (!have_samples()) {
        fprintf(stderr, "samples folder %s absent: skipped\n", KDH_SAMPLES_DIR);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),          cmocka_unit_test(test_frames),
        cmocka_unit_test(test_recognized),
        cmocka_unit_test(test_poolhittag_alloc), cmocka_unit_test(test_poolfind), cmocka_unit_test(test_events),
        cmocka_unit_test(test_pool_rows),       cmocka_unit_test(test_verifier3_and_80),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
