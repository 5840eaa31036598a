/* test_harvest.c: runs `kdharvest run` against kdsim (unpaced line) and checks the run directory
 * against kdsim's ground truth (--truth): every captured stack equals the true stack frame for
 * frame (module file + RVA), the alloc and free events equal the true breaks in number and order,
 * --sample N captures exactly every Nth hit, SIGTERM mid-run leaves the target running and
 * unarmed (no break after the detach for seconds while the leaking workload goes on), and a
 * restart with the same directory continues seq without duplicates, and a target that reboots
 * mid-run is followed onto its new boot. x64 and x86.
 * usage: test_harvest KDSIM KDHARVEST FIXTURES [x64|x86]   (77 when the fixtures are absent) */
#include <jansson.h>
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

/* The truth's hits (its alloc and free lines), in order. */
static json_t *truth_hits(const char *path)
{
    json_t *lines = hs_load_truth(path), *hits = json_array(), *t;
    size_t i;
    json_array_foreach(lines, i, t) {
        const char *k = hs_str(t, "kind");
        if (k && (strcmp(k, "alloc") == 0 || strcmp(k, "free") == 0))
            json_array_append(hits, t);
    }
    json_decref(lines);
    return hits;
}

typedef struct check {
    size_t events, captured, allocs, frees;
    uint64_t first_seq, last_seq;
} check_t;

/* Event seq n of the run is the truth's hit n: kinds equal; a captured stack equals the truth's
 * frame for frame. Events up to seq first came from an earlier start (checked by that call);
 * with sample > 1 exactly every sample-th event from there on carries a stack. */
static void check_run(const char *dir, json_t *hits, size_t first, unsigned sample, check_t *c)
{
    memset(c, 0, sizeof *c);
    char path[600];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    json_t *stacks = hs_load_stacks(dir), *events = hs_load_lines(path), *o;
    uint64_t prev = 0;
    size_t j;
    json_array_foreach(events, j, o) {
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(o, "seq"));
        assert_true(seq == prev + 1 || (prev == 0 && seq >= 1)); /* strictly consecutive */
        if (!c->first_seq)
            c->first_seq = seq;
        prev = c->last_seq = seq;
        if (seq < first + 1)
            continue;
        json_t *t = json_array_get(hits, (size_t)(seq - 1));
        if (!t)
            fail_msg("%s: seq %llu, the truth has %zu hits", dir, (unsigned long long)seq, json_array_size(hits));
        int is_free = strcmp(hs_str(t, "kind"), "free") == 0;
        assert_string_equal(hs_str(o, "kind"), hs_str(t, "kind"));
        c->allocs += !is_free;
        c->frees += is_free;
        const char *sid = hs_str(o, "sid");
        size_t local = (size_t)(seq - 1 - first);
        if (sample > 1)
            assert_int_equal(sid != NULL, local % sample == 0);
        if (sid) {
            const char *mine = json_string_value(json_object_get(stacks, sid));
            char ts[4096];
            hs_truth_stack(t, ts, sizeof ts);
            if (!mine || strcmp(mine, ts) != 0)
                fail_msg("seq %llu: stack %s\n  truth %s", (unsigned long long)seq, mine ? mine : "(none)", ts);
            c->captured++;
        }
        c->events++;
    }
    json_decref(events);
    json_decref(stacks);
}

static double event_t(const char *dir, size_t index)
{
    char path[600];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    json_t *ev = hs_load_lines(path);
    json_t *e = json_array_get(ev, index == SIZE_MAX ? json_array_size(ev) - 1 : index);
    assert_non_null(e);
    double t = json_real_value(json_object_get(e, "t"));
    json_decref(ev);
    return t;
}

static double last_event_t(const char *dir)
{
    return event_t(dir, SIZE_MAX);
}

/* gaps.jsonl holds one gap, "not-attached", from about end1 (the wall time the first run ended:
 * its meta.json's second may add up to 2 s, the detach and the final writes) to before event
 * number first2 (0-based: the second run's first), at least the 1.5 s the test waited long. */
static void check_gap_between(const char *dir, double end1, size_t first2)
{
    char path[600];
    snprintf(path, sizeof path, "%s/gaps.jsonl", dir);
    json_t *gaps = hs_load_lines(path);
    assert_int_equal(json_array_size(gaps), 1);
    json_t *g = json_array_get(gaps, 0);
    assert_string_equal(hs_str(g, "reason"), "not-attached");
    double t0 = json_real_value(json_object_get(g, "t0")), t1 = json_real_value(json_object_get(g, "t1"));
    print_message("gap %.3f..%.3f, first run's last event %.3f\n", t0, t1, end1);
    assert_true(t0 >= end1 && t0 <= end1 + 2.0);
    assert_true(t1 - t0 >= 1.4);
    assert_true(t1 <= event_t(dir, first2));
    json_decref(gaps);
}

static const char *journal_last_op(const char *dir, char *buf, size_t len)
{
    hs_journal_last_op(dir, buf, len);
    return buf;
}

static const char *fixtures_dir(char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", g_fixtures, g_arch);
    return buf;
}

/* Full capture for max-hits, then the same directory again: seq continues, stacks not repeated. */
static void run_full(const char *arch)
{
    sim_t s;
    char name[32], dir[512], fx[512];
    fixtures_dir(fx, sizeof fx);
    snprintf(name, sizeof name, "full-%s", arch);
    hs_sim_start(&s, name, NULL);
    snprintf(dir, sizeof dir, "%s/run-%s", g_tmp, arch);
    assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--max-hits", "300", NULL), 0);
    usleep(1500000);
    json_t *tv = truth_hits(s.truth);
    size_t tn = json_array_size(tv);
    check_t c;
    check_run(dir, tv, 0, 1, &c);
    /* every true break was logged, and none came after the detach (PoolHitTag restored) */
    assert_true(c.events >= 300);
    assert_int_equal(c.events, tn);
    assert_int_equal(c.captured, c.events);
    assert_true(c.allocs > 0 && c.frees > 0);
    char op[32];
    assert_string_equal(journal_last_op(dir, op, sizeof op), "disarm");
    /* restart: continues after the last seq */
    size_t before = c.events;
    json_decref(tv);
    double end1 = last_event_t(dir);
    assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--max-hits", "100", NULL), 0);
    usleep(1500000);
    tv = truth_hits(s.truth);
    tn = json_array_size(tv);
    check_run(dir, tv, before, 1, &c);
    assert_int_equal(c.first_seq, 1);
    assert_int_equal(c.last_seq, tn);
    assert_true(c.events >= 100);
    /* the time between the runs is one gap: from the first run's end (its last event, or its last
     * meta.json a moment later) to the second's arming, before the second's first event */
    check_gap_between(dir, end1, before);
    hs_sim_stop(&s);
    json_decref(tv);
}

static void test_full_x64(void **state)
{
    (void)state;
    run_full("x64");
}

static void test_full_x86(void **state)
{
    (void)state;
    run_full("x86");
}

/* --sample 4: every hit logged with its kind, exactly hits 1, 5, 9... carry a stack. */
static void test_sample(void **state)
{
    (void)state;
    sim_t s;
    hs_sim_start(&s, "sample", NULL);
    char dir[512], fx[512];
    fixtures_dir(fx, sizeof fx);
    snprintf(dir, sizeof dir, "%s/run-sample", g_tmp);
    assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--max-hits", "200", "--sample", "4", NULL), 0);
    usleep(1000000);
    json_t *tv = truth_hits(s.truth);
    check_t c;
    check_run(dir, tv, 0, 4, &c);
    assert_int_equal(c.events, json_array_size(tv));
    assert_int_equal(c.captured, (c.events + 3) / 4);
    hs_sim_stop(&s);
    json_decref(tv);
}

/* SIGTERM while armed: exit 0, journal ends disarmed, and the target keeps running without a
 * single break for 3 s although the workload allocates with the tag all the time. */
static void test_sigterm(void **state)
{
    (void)state;
    sim_t s;
    hs_sim_start(&s, "sigterm", NULL);
    char dir[512], fx[512];
    fixtures_dir(fx, sizeof fx);
    snprintf(dir, sizeof dir, "%s/run-sigterm", g_tmp);
    pid_t pid = hs_harvest(&s, dir, 0, "--symbols", fx, NULL);
    size_t n = 0;
    for (int i = 0; i < 200 && n < 50; i++) {
        usleep(50000);
        n = hs_count_lines(s.truth);
    }
    assert_true(n >= 50);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    size_t after = hs_count_lines(s.truth);
    usleep(3000000);
    assert_int_equal(hs_count_lines(s.truth), after);
    json_t *tv = truth_hits(s.truth);
    check_t c;
    check_run(dir, tv, 0, 1, &c);
    assert_int_equal(c.events, json_array_size(tv)); /* every true alloc/free logged, none after the detach */
    json_decref(tv);
    char op[32];
    assert_string_equal(journal_last_op(dir, op, sizeof op), "disarm");
    /* the target still answers a fresh host: attach, arm and harvest again */
    char dir2[512];
    snprintf(dir2, sizeof dir2, "%s/run-sigterm2", g_tmp);
    assert_int_equal(hs_harvest(&s, dir2, 1, "--symbols", fx, "--max-hits", "20", NULL), 0);
    hs_sim_stop(&s);
}

/* The target reboots 3 s in: the harvest notices (at the latest 10 s of silence later), logs a
 * reboot gap, re-arms on the new boot and logs every break of boot 2; boot 1 may lose the one
 * hit that was being handled when it rebooted. */
static void test_reboot(void **state)
{
    (void)state;
    sim_t s;
    hs_sim_start(&s, "reboot", "--faults", "reboot=3s", NULL);
    char dir[512], fx[512], path[600];
    fixtures_dir(fx, sizeof fx);
    snprintf(dir, sizeof dir, "%s/run-reboot", g_tmp);
    assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--duration", "22", NULL), 0);
    usleep(1000000);
    size_t truth[3] = {0, 0, 0}, ours[3] = {0, 0, 0}, i;
    json_t *tv = truth_hits(s.truth), *o;
    json_array_foreach(tv, i, o) {
        json_int_t b = json_integer_value(json_object_get(o, "boot"));
        if (b >= 1 && b <= 2)
            truth[b]++;
    }
    json_decref(tv);
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    json_t *events = hs_load_lines(path);
    json_array_foreach(events, i, o) {
        json_int_t b = json_integer_value(json_object_get(o, "boot"));
        assert_true(b >= 1 && b <= 2);
        ours[b]++;
    }
    json_decref(events);
    assert_true(truth[2] > 0);
    assert_int_equal(ours[2], truth[2]);
    assert_true(ours[1] + 1 >= truth[1] && ours[1] <= truth[1]);
    snprintf(path, sizeof path, "%s/gaps.jsonl", dir);
    json_t *gaps = hs_load_lines(path);
    assert_true(json_array_size(gaps) >= 1);
    assert_string_equal(hs_str(json_array_get(gaps, 0), "reason"), "reboot");
    json_decref(gaps);
    char op[32];
    assert_string_equal(journal_last_op(dir, op, sizeof op), "disarm");
    hs_sim_stop(&s);
}

/* The target reboots while the harvest attaches and arms: kdsim loses the host's first request
 * (GetVersion), its third (a discovery read), its tenth (the new boot then answers the module list
 * walk at the old kernel's addresses: no module 'nt') or its twentieth (the PoolHitTag read, which
 * the new boot refuses) in a reboot. The harvest attaches again at the new boot's stop and logs
 * every hit (each ended with exit 1 before, the last two until arming was retried too). */
static void test_reboot_attach(void **state)
{
    (void)state;
    static const char *const nth[] = {"reboot-in-request=1", "reboot-in-request=3", "reboot-in-request=10",
                                      "reboot-in-request=20"};
    char fx[512];
    fixtures_dir(fx, sizeof fx);
    for (size_t k = 0; k < sizeof nth / sizeof *nth; k++) {
        sim_t s;
        char name[64], dir[512];
        snprintf(name, sizeof name, "reboot-attach-%zu", k);
        hs_sim_start(&s, name, "--faults", nth[k], NULL);
        snprintf(dir, sizeof dir, "%s/run-%s", g_tmp, name);
        assert_int_equal(hs_harvest(&s, dir, 1, "--symbols", fx, "--duration", "6", NULL), 0);
        usleep(500000);
        assert_true(hs_check_events(dir, s.truth) > 0);
        /* the fault fired: the target's last truth line is from its second boot */
        json_t *truth = hs_load_truth(s.truth), *t;
        json_int_t boot = 0;
        size_t i;
        json_array_foreach(truth, i, t) boot = json_integer_value(json_object_get(t, "boot"));
        json_decref(truth);
        assert_int_equal(boot, 2);
        hs_sim_stop(&s);
    }
}

/* A port that does not exist: one line, exit 1. */
static void test_bad_port(void **state)
{
    (void)state;
    sim_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.pty, sizeof s.pty, "/dev/nonexistent-kdh-port");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-badport", g_tmp);
    assert_int_equal(hs_harvest(&s, dir, 1, NULL), 1);
}

int main(int argc, char **argv)
{
    int rc = hs_init(argc, argv, "kdh-harvest-test");
    if (rc != 0)
        return rc;
    const struct CMUnitTest x64[] = {
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_full_x64),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_sigterm),
        cmocka_unit_test(test_reboot),
        cmocka_unit_test(test_reboot_attach),
    };
    const struct CMUnitTest x86[] = {
        cmocka_unit_test(test_full_x86),
    };
    rc = strcmp(g_arch, "x86") == 0 ? cmocka_run_group_tests_name("x86", x86, NULL, NULL)
                                    : cmocka_run_group_tests_name("x64", x64, NULL, NULL);
    return hs_finish(rc);
}
