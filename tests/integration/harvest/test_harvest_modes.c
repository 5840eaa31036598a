/* test_harvest_modes.c: `kdharvest run --mode specialpool|entry --pair` against kdsim's ground
 * truth, x64 and x86. kdsim records every allocation and free of the tag as it happens
 * (--truth-ops), so: our events are the truth's operations in order (kind, block address, size),
 * each captured stack is the truth stack's outer part frame for frame (ours starts at the
 * routine's entry, the truth inside the pool tracker), the outstanding bytes per stack of
 * `kdharvest report` equal those the truth's own blocks leave, with the leaking driver first,
 * the target's breaks (told from the truth and llvm-pdbutil's publics of the kernel PDB) are our
 * entry and return stops and the break-ins of the attach and the detach, none comes after it,
 * and the journal ends with every breakpoint cleared.
 * Entry mode runs without any PDB, and --max-stall disarms it. specialpool on a target whose
 * special pool is not set up for the tag warns with the registry value to set.
 * usage: test_harvest_modes KDSIM KDHARVEST FIXTURES [x64|x86]   (77 when the fixtures or
 * llvm-pdbutil-14 are absent) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_sim.h"

/* The target's breaks told from the truth alone: at the entry of one of the mode's routines (the
 * kernel PDB's publics through llvm-pdbutil), at the return address that an earlier entry stop of
 * the same thread had as its frame 1 (the one-shot return breakpoint of --pair), or at
 * nt!DbgBreakPointWithStatus: the break-in at the attach (the first break) and, when the run ended
 * with the target running (its last event written after the Continue), one at the detach (the
 * last break). Any other break fails the test. */
typedef struct truth_breaks {
    size_t entries, returns, breakins;
} truth_breaks_t;

static json_int_t frame_rva(json_t *fr, const char *module)
{
    const char *m = hs_str(fr, "module");
    return m && strcmp(m, module) == 0 ? json_integer_value(json_object_get(fr, "rva")) : -1;
}

static truth_breaks_t count_breaks(json_t *truth, int sp)
{
    static const char *const sp_routines[] = {"MmAllocateSpecialPool", "MmFreeSpecialPool", NULL};
    static const char *const entry_routines[] = {"ExAllocatePoolWithTag", "ExAllocatePool2", "ExAllocatePool",
                                                 "ExFreePoolWithTag", "ExFreePool", NULL};
    json_t *pubs = hs_pdb_publics();
    if (!pubs)
        fail_msg("llvm-pdbutil-14 could not dump %s/%s/ntkrnlmp.pdb", g_fixtures, g_arch);
    json_int_t entry[8], breakin = json_integer_value(json_object_get(pubs, "DbgBreakPointWithStatus"));
    size_t nentry = 0;
    for (const char *const *r = sp ? sp_routines : entry_routines; *r; r++) {
        entry[nentry] = json_integer_value(json_object_get(pubs, *r));
        if (!entry[nentry])
            fail_msg("no public %s in the kernel PDB", *r);
        nentry++;
    }
    assert_true(breakin > 0);
    json_decref(pubs);

    truth_breaks_t b = {0, 0, 0};
    json_t *pending = json_object(), *t; /* thread -> [return text of each entry stop not yet returned] */
    size_t i, nbreaks = 0, seen = 0;
    json_array_foreach(truth, i, t) nbreaks += strcmp(hs_str(t, "kind"), "break") == 0;
    json_array_foreach(truth, i, t) {
        if (strcmp(hs_str(t, "kind"), "break") != 0)
            continue;
        seen++;
        json_t *st = json_object_get(t, "stack"), *f0 = json_array_get(st, 0), *f1 = json_array_get(st, 1);
        json_int_t rva = frame_rva(f0, "ntoskrnl.exe");
        int is_entry = 0;
        for (size_t k = 0; k < nentry; k++)
            is_entry |= rva == entry[k];
        json_t *mine = json_object_get(pending, hs_str(t, "thread"));
        if (!mine) {
            mine = json_array();
            json_object_set_new(pending, hs_str(t, "thread"), mine);
        }
        char at[300];
        snprintf(at, sizeof at, "%s+%llx", hs_str(f0, "module") ? hs_str(f0, "module") : "?",
                 (unsigned long long)json_integer_value(json_object_get(f0, "rva")));
        if (is_entry) {
            char ret[300];
            snprintf(ret, sizeof ret, "%s+%llx", hs_str(f1, "module") ? hs_str(f1, "module") : "?",
                     (unsigned long long)json_integer_value(json_object_get(f1, "rva")));
            json_array_append_new(mine, json_string(ret));
            b.entries++;
            continue;
        }
        if (rva == breakin) {
            if (seen > 1 && seen != nbreaks)
                fail_msg("truth seq %lld: a break-in neither at the attach nor at the detach",
                         (long long)json_integer_value(json_object_get(t, "seq")));
            b.breakins++;
            continue;
        }
        size_t k = json_array_size(mine);
        while (k-- > 0 && strcmp(json_string_value(json_array_get(mine, k)), at) != 0)
            ;
        if (k == (size_t)-1)
            fail_msg("truth seq %lld: a break at %s, neither an entry stop, a return of one nor the break-in",
                     (long long)json_integer_value(json_object_get(t, "seq")), at);
        json_array_remove(mine, k);
        b.returns++;
    }
    json_decref(pending);
    return b;
}

/* faults: kdsim --faults for the run, or NULL */
static void check_mode(const char *mode, const char *faults)
{
    sim_t s;
    char name[64], dir[512], fx[512];
    snprintf(name, sizeof name, "%s-%s%s%s", mode, g_arch, faults ? "-" : "", faults ? faults : "");
    snprintf(dir, sizeof dir, "%s/run-%s", g_tmp, name);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    int sp = strcmp(mode, "specialpool") == 0;
    if (sp) {
        hs_sim_start(&s, name, "--truth-ops", "Leak", "--special-pool", "Leak", NULL);
        assert_int_equal(hs_harvest(&s, dir, 1, "--mode", mode, "--pair", "--symbols", fx, "--max-hits", "80", NULL), 0);
    } else if (faults) {
        hs_sim_start(&s, name, "--truth-ops", "Leak", "--faults", faults, NULL);
        assert_int_equal(hs_harvest(&s, dir, 1, "--mode", mode, "--pair", "--max-hits", "80", NULL), 0);
    } else { /* no symbols at all: the exports are enough */
        hs_sim_start(&s, name, "--truth-ops", "Leak", NULL);
        assert_int_equal(hs_harvest(&s, dir, 1, "--mode", mode, "--pair", "--max-hits", "80", NULL), 0);
    }
    if (faults && strstr(faults, "mangle-continue")) {
        /* the ignored Continue was found within about a second of quiet (the line is probed);
         * the wait for the step's stop took 5 s and a RESET before */
        hs_sim_status_t st;
        hs_sim_status(&s, &st);
        printf("%s: longest idle stop %.0f ms\n", name, st.host_wait_max_ms);
        fflush(stdout);
        assert_true(st.host_wait_max_ms < 3000.0);
    }
    size_t breaks = hs_count_kind(s.truth, "break");
    usleep(2000000);
    assert_int_equal(hs_count_kind(s.truth, "break"), breaks); /* nothing of ours left in the target */

    json_t *truth = hs_load_truth(s.truth), *t, *e;
    char path[600];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    json_t *events = hs_load_lines(path), *stacks = hs_load_stacks(dir), *ops = json_array();
    size_t i;
    json_array_foreach(truth, i, t) {
        const char *k = hs_str(t, "kind");
        if (strcmp(k, "pool_alloc") == 0 || strcmp(k, "pool_free") == 0)
            json_array_append(ops, t);
    }
    size_t n = json_array_size(events), with_addr = 0, allocs_with_addr = 0;
    assert_true(n >= 80 && n <= json_array_size(ops));
    /* the truth's outstanding bytes per stack from its own blocks and sizes */
    hs_outstanding_t real;
    hs_out_init(&real);
    json_array_foreach(events, i, e) {
        t = json_array_get(ops, i);
        int is_alloc = strcmp(hs_str(e, "kind"), "alloc") == 0;
        assert_string_equal(hs_str(t, "kind"), is_alloc ? "pool_alloc" : "pool_free");
        const char *mine = json_string_value(json_object_get(stacks, hs_str(e, "sid")));
        assert_non_null(mine);
        char ts[4096];
        hs_truth_stack(t, ts, sizeof ts);
        if (!hs_stack_suffix(mine, ts))
            fail_msg("event %zu: stack %s is not the outer part of the truth's %s", i, mine, ts);
        if (!hs_str(e, "addr")) { /* only the last allocation, logged at the detach */
            assert_true(is_alloc && i + 1 == n);
            /* a size it carries (the routine's argument, the requested bytes: the block's header
             * is not read before the return) counts in the report, so the truth counts its block
             * with the requested bytes too */
            if (json_object_get(e, "size")) {
                assert_int_equal(json_integer_value(json_object_get(e, "size")),
                                 json_integer_value(json_object_get(t, "requested")));
                hs_out_alloc(&real, hs_str(t, "block"), mine, json_integer_value(json_object_get(t, "requested")));
            }
            continue;
        }
        with_addr++;
        allocs_with_addr += is_alloc;
        assert_string_equal(hs_str(e, "addr"), hs_str(t, "block"));
        assert_int_equal(json_integer_value(json_object_get(e, "size")), json_integer_value(json_object_get(t, "size")));
        /* keyed by our stack text, which is the truth stack's outer frames (checked above) */
        if (is_alloc)
            hs_out_alloc(&real, hs_str(t, "block"), mine, json_integer_value(json_object_get(t, "size")));
        else
            hs_out_free(&real, hs_str(t, "block"));
    }
    assert_true(with_addr + 1 >= n);
    /* the report's pairing leaves the truth's bytes per stack, and puts the truth's top first */
    hs_check_report_bytes(dir, &real);
    /* every break of the target was one of our stops (an entry, a return) or a break-in at the
     * attach or the detach;
     * every event was an entry stop (special pool: only the tag's calls get there, so nothing
     * else), and every allocation with an address a return stop */
    truth_breaks_t b = count_breaks(truth, sp);
    printf("%s: %zu breaks in the truth: %zu entry stops, %zu return stops, %zu break-ins; %zu events\n", name,
           breaks, b.entries, b.returns, b.breakins, n);
    assert_int_equal(b.entries + b.returns + b.breakins, breaks);
    /* (the attach's break-in is lost with boot 1 when the target reboots while it is armed) */
    assert_true(b.breakins <= 2 && (b.breakins >= 1 || (faults && strstr(faults, "reboot"))));
    assert_true(b.returns >= allocs_with_addr);
    if (sp)
        assert_int_equal(b.entries, n);
    else
        assert_true(b.entries > n); /* other tags stopped too */
    assert_int_equal(hs_journal_open_bps(dir), 0);
    hs_out_done(&real);
    json_decref(ops);
    json_decref(stacks);
    json_decref(events);
    json_decref(truth);
    hs_sim_stop(&s);
}

static void test_specialpool(void **state)
{
    (void)state;
    check_mode("specialpool", NULL);
}

static void test_entry(void **state)
{
    (void)state;
    check_mode("entry", NULL);
}

/* The 40th Continue2 damaged (kdsim mangle-continue): the target acknowledges it and never acts on
 * it. After the attach's resume every stop takes two (the step over our breakpoint, then the run
 * on), so the 40th is a step's: the harvest finds the target still in the stop (a RESET has it
 * report it again), steps again, and the run is the truth's all the same, no event lost or twice. */
static void test_entry_lost_step(void **state)
{
    (void)state;
    char dir[512];
    check_mode("entry", "mangle-continue=40");
    snprintf(dir, sizeof dir, "%s/run-entry-%s-mangle-continue=40", g_tmp, g_arch);
    assert_int_equal(hs_meta_counter(dir, "breakpoints", "steps_lost"), 1);
}

/* The target reboots while the harvest arms (kdsim loses the host's 20th request: the new boot
 * answers the rest of the arming at the old kernel's addresses) or while the first resume writes
 * the breakpoints (the 60th: the write is cancelled by the new boot's stop). The harvest attaches
 * and arms again on the new boot, and the run is the truth's, no event lost or twice; each ended
 * with exit 1 before. */
static void test_entry_reboot_arming(void **state)
{
    (void)state;
    check_mode("entry", "reboot-in-request=20");
    check_mode("entry", "reboot-in-request=60");
}

/* Special pool not set up for the tag: one warning naming the registry value and the reboot; the
 * run goes on (and sees nothing). */
static void test_specialpool_off(void **state)
{
    (void)state;
    sim_t s;
    char dir[512], fx[512], path[600], line[1024];
    snprintf(dir, sizeof dir, "%s/run-spoff-%s", g_tmp, g_arch);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    hs_sim_start(&s, "spoff", NULL);
    assert_int_equal(hs_harvest(&s, dir, 1, "--mode", "specialpool", "--symbols", fx, "--duration", "2", NULL), 0);
    snprintf(path, sizeof path, "%s.stderr", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int warned = 0;
    while (fgets(line, sizeof line, f))
        warned += strstr(line, "Memory Management\\PoolTag (REG_DWORD) = 0x6b61654c") != NULL &&
                  strstr(line, "reboot") != NULL;
    fclose(f);
    assert_int_equal(warned, 1);
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    assert_int_equal(hs_count_lines(path), 0);
    hs_sim_stop(&s);
}

/* Entry mode stops the target at every pool call: --max-stall disarms it (a "disarmed" gap), and
 * the detach then leaves no breakpoint behind. */
static void test_entry_stall(void **state)
{
    (void)state;
    sim_t s;
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/run-stall-%s", g_tmp, g_arch);
    hs_sim_start(&s, "stall", "--truth-ops", "Leak", NULL);
    assert_int_equal(hs_harvest(&s, dir, 1, "--mode", "entry", "--max-stall", "20", "--duration", "8", NULL), 0);
    size_t breaks = hs_count_kind(s.truth, "break");
    usleep(1500000);
    assert_int_equal(hs_count_kind(s.truth, "break"), breaks);
    snprintf(path, sizeof path, "%s/gaps.jsonl", dir);
    json_t *gaps = hs_load_lines(path);
    assert_true(json_array_size(gaps) >= 1);
    assert_string_equal(hs_str(json_array_get(gaps, 0), "reason"), "disarmed");
    json_decref(gaps);
    assert_int_equal(hs_journal_open_bps(dir), 0);
    hs_sim_stop(&s);
}

/* The target reboots at the host's 400th request (in the run, whatever the machine's speed: a
 * timer could land in the attach): every entry stop of both boots is stepped over
 * once, so counters.breakpoints.steps is the truth's breaks of boots 1 and 2 less those that are
 * not entry stops: the break-in at the attach, the stop being handled when the request is lost in
 * the reboot, the break-in that finds the new boot, and the stop at the detach (at most 4); the
 * counters run on across the reboot. */
static void test_entry_reboot(void **state)
{
    (void)state;
    sim_t s;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-reboot-%s", g_tmp, g_arch);
    hs_sim_start(&s, "reboot", "--faults", "reboot-in-request=400", NULL);
    assert_int_equal(hs_harvest(&s, dir, 1, "--mode", "entry", "--duration", "8", NULL), 0);
    json_t *truth = hs_load_truth(s.truth), *t;
    json_int_t breaks[3] = {0, 0, 0};
    size_t i;
    json_array_foreach(truth, i, t) {
        json_int_t b = json_integer_value(json_object_get(t, "boot"));
        if (strcmp(hs_str(t, "kind"), "break") == 0 && b >= 1 && b <= 2)
            breaks[b]++;
    }
    json_decref(truth);
    assert_true(breaks[1] > 10 && breaks[2] > 10);
    json_int_t steps = hs_meta_counter(dir, "breakpoints", "steps");
    json_int_t total = breaks[1] + breaks[2];
    if (steps > total || steps + 4 < total)
        fail_msg("%lld steps; the truth has %lld + %lld breaks", (long long)steps, (long long)breaks[1],
                 (long long)breaks[2]);
    assert_int_equal(hs_journal_open_bps(dir), 0);
    hs_sim_stop(&s);
}

int main(int argc, char **argv)
{
    if (system("llvm-pdbutil-14 --version >/dev/null 2>&1") != 0) { /* the breaks' ground truth */
        fprintf(stderr, "llvm-pdbutil-14 missing: skipped\n");
        return 77;
    }
    int rc = hs_init(argc, argv, "kdh-modes-test");
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specialpool),
        cmocka_unit_test(test_entry),
        cmocka_unit_test(test_specialpool_off),
        cmocka_unit_test(test_entry_stall),
        cmocka_unit_test(test_entry_reboot),
        cmocka_unit_test(test_entry_lost_step),
        cmocka_unit_test(test_entry_reboot_arming),
    };
    return hs_finish(cmocka_run_group_tests_name(g_arch, tests, NULL, NULL));
}
