/* test_harvest_slow_disk.c: a disk whose syncs take seconds must not hold the target. kdharvest
 * run rewrites meta.json every 10 s and summary.txt every --summary-interval (2 s here), each with
 * an fsync; the preloaded slow-sync shim (tests/support/slow_sync.c) makes the syncs of
 * meta.json.tmp and events.jsonl sleep 2.5 s from the moment the run is serving (the journal's
 * sync, on the hit path on purpose, stays fast). After 12 s of that, SIGTERM. Checked against
 * kdsim and the truth:
 *  - over those 12 s, the longest the target sat stopped with the line idle, waiting for the
 *    host, stays under 1 s (with those writes on the run loop it was the shim's delay or more);
 *  - the shim did slow the periodic writes (meta.json.tmp and events.jsonl syncs while serving);
 *  - the events equal the truth's hits; meta.json and summary.txt at the exit describe the whole
 *    run (counters.captured and the summary's event count equal the events), no .tmp left over.
 * kdsim's figure is read before the SIGTERM: it also counts the target's waits for a host that
 * no longer reads the line (a DbgPrint after the detach, while the last files are written, and
 * after the exit). x64 and x86.
 * usage: test_harvest_slow_disk KDSIM KDHARVEST FIXTURES SLOW_SYNC_SO [x64|x86]
 *        (77 without fixtures) */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_sim.h"

static const char *g_shim;

#define SLOW_MS "2500"
/* A normal run's longest idle stop is tens of milliseconds (symbols at the attach); a sync or a
 * report on the run loop holds the target for the shim's whole delay. */
#define HOLD_MAX_MS 1000.0

/* Lines of the shim's log naming a file whose name ends in suffix. */
static size_t slowed(const char *log, const char *suffix)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return 0;
    char line[4200];
    size_t n = 0, sl = strlen(suffix);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        size_t len = strlen(line);
        n += len >= sl && strcmp(line + len - sl, suffix) == 0;
    }
    fclose(f);
    return n;
}

/* kdharvest run with the shim preloaded: the environment is set for the child only. */
static pid_t harvest_slowed(const sim_t *s, const char *dir, const char *marker, const char *log)
{
    char fx[512], asan[1024];
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    const char *prev = getenv("ASAN_OPTIONS");
    /* a preloaded library comes before the sanitizer runtime in a sanitizer build */
    snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", prev ? prev : "", prev && *prev ? ":" : "");
    setenv("LD_PRELOAD", g_shim, 1);
    setenv("KDH_SLOW_SYNC_PATHS", "*/meta.json.tmp:*/events.jsonl", 1);
    setenv("KDH_SLOW_SYNC_MS", SLOW_MS, 1);
    setenv("KDH_SLOW_SYNC_WHEN", marker, 1);
    setenv("KDH_SLOW_SYNC_LOG", log, 1);
    setenv("ASAN_OPTIONS", asan, 1);
    /* the duration only bounds a run whose SIGTERM never comes */
    pid_t pid = hs_harvest(s, dir, 0, "--symbols", fx, "--duration", "60", "--summary-interval", "2", NULL);
    unsetenv("LD_PRELOAD");
    unsetenv("KDH_SLOW_SYNC_PATHS");
    unsetenv("KDH_SLOW_SYNC_MS");
    unsetenv("KDH_SLOW_SYNC_WHEN");
    unsetenv("KDH_SLOW_SYNC_LOG");
    if (prev)
        setenv("ASAN_OPTIONS", prev, 1);
    else
        unsetenv("ASAN_OPTIONS");
    hs_track_child(pid);
    return pid;
}

static void test_slow_disk(void **state)
{
    (void)state;
    sim_t s;
    hs_sim_start(&s, "slowdisk", NULL);
    char dir[512], marker[512], log[512], events[600], tmp[600];
    snprintf(dir, sizeof dir, "%s/run-slowdisk-%s", g_tmp, g_arch);
    snprintf(marker, sizeof marker, "%s/slow-disk-on", g_tmp);
    snprintf(log, sizeof log, "%s/slowed.log", g_tmp);
    snprintf(events, sizeof events, "%s/events.jsonl", dir);
    pid_t pid = harvest_slowed(&s, dir, marker, log);

    /* the disk turns slow once the run is serving hits (the attach's own writes stay fast) */
    for (int i = 0; i < 600 && hs_count_lines(events) < 20; i++)
        usleep(50000);
    assert_true(hs_count_lines(events) >= 20);
    FILE *m = fopen(marker, "w");
    assert_non_null(m);
    fclose(m);
    /* past the first periodic meta.json (10 s after the run loop began) and several summaries */
    usleep(12000000);
    hs_sim_status_t ss;
    hs_sim_status(&s, &ss);

    kill(pid, SIGTERM);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    hs_untrack_child(pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    size_t slow_meta = slowed(log, "/meta.json.tmp"), slow_events = slowed(log, "/events.jsonl");
    print_message("%s: longest idle stop %.0f ms; slowed syncs: meta.json.tmp %zu, events.jsonl %zu\n", g_arch,
                  ss.host_wait_max_ms, slow_meta, slow_events);
    /* the periodic writes were slowed: the 10 s meta.json and several summaries, beyond the one
     * meta.json write and the two syncs of events.jsonl (summary, close) at the exit */
    assert_true(slow_meta >= 2);
    assert_true(slow_events >= 4);
    assert_true(ss.host_wait_max_ms < HOLD_MAX_MS);

    size_t n = hs_check_events(dir, s.truth);
    assert_true(n >= 20);
    assert_int_equal(hs_meta_counter(dir, NULL, "captured"), (json_int_t)n);
    assert_int_equal(hs_summary_events(dir), n);
    snprintf(tmp, sizeof tmp, "%s/meta.json.tmp", dir);
    assert_int_not_equal(access(tmp, F_OK), 0);
    snprintf(tmp, sizeof tmp, "%s/summary.txt.tmp", dir);
    assert_int_not_equal(access(tmp, F_OK), 0);
    hs_sim_stop(&s);
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    g_shim = argv[4];
    /* hs_init takes KDSIM KDHARVEST FIXTURES [ARCH]: the shim's argument is left out */
    char *args[] = {argv[0], argv[1], argv[2], argv[3], argc > 5 ? argv[5] : NULL, NULL};
    int rc = hs_init(argc > 5 ? 5 : 4, args, "kdh-slowdisk-test");
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_disk),
    };
    return hs_finish(cmocka_run_group_tests_name(g_arch, tests, NULL, NULL));
}
