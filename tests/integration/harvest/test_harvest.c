/* test_harvest.c: runs `kdharvest run` against kdsim (unpaced line) and checks the run directory
 * against kdsim's ground truth (--truth): every captured stack equals the true stack frame for
 * frame (module file + RVA), the alloc and free events equal the true breaks in number and order,
 * --sample N captures exactly every Nth hit, SIGTERM mid-run leaves the target running and
 * unarmed (no break after the detach for seconds while the leaking workload goes on), and a
 * restart with the same directory continues seq without duplicates, and a target that reboots
 * mid-run is followed onto its new boot. x64 and x86.
 * usage: test_harvest KDSIM KDHARVEST FIXTURES [x64|x86]   (77 when the fixtures are absent) */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static const char *g_kdsim, *g_kdh, *g_fixtures;
static char g_tmp[256];
static pid_t g_children[16]; /* kdsim processes, killed at exit even after a failed assertion */
static int g_nchildren;

static void kill_children(void)
{
    for (int i = 0; i < g_nchildren && i < 16; i++)
        if (g_children[i] > 0)
            kill(g_children[i], SIGKILL);
}

typedef struct sim {
    pid_t pid;
    char pty[128];
    char truth[512];
} sim_t;

static void sim_start_faults(sim_t *s, const char *arch, const char *name, const char *faults);

static void sim_start(sim_t *s, const char *arch, const char *name)
{
    sim_start_faults(s, arch, name, NULL);
}

static void sim_start_faults(sim_t *s, const char *arch, const char *name, const char *faults)
{
    char fx[512], out[512];
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, arch);
    snprintf(s->truth, sizeof s->truth, "%s/%s.truth.jsonl", g_tmp, name);
    snprintf(out, sizeof out, "%s/%s.kdsim.out", g_tmp, name);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid > 0)
        g_children[g_nchildren++ % 16] = s->pid;
    if (s->pid == 0) {
        if (!freopen(out, "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        if (faults)
            execl(g_kdsim, g_kdsim, "--pty", "--fixtures", fx, "--arch", arch, "--baud", "0", "--truth", s->truth,
                  "--workload", "leak", "--faults", faults, (char *)NULL);
        else
            execl(g_kdsim, g_kdsim, "--pty", "--fixtures", fx, "--arch", arch, "--baud", "0", "--truth", s->truth,
                  "--workload", "leak", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        FILE *f = fopen(out, "r");
        char line[256];
        if (f) {
            while (fgets(line, sizeof line, f))
                if (sscanf(line, "kdsim: serving on %127s", s->pty) == 1) {
                    fclose(f);
                    return;
                }
            fclose(f);
        }
        usleep(50000);
    }
    fail_msg("kdsim did not print its pty");
}

static void sim_stop(sim_t *s)
{
    kill(s->pid, SIGTERM);
    int st;
    waitpid(s->pid, &st, 0);
}

/* Runs kdharvest run with extra args; returns its pid (wait == 0) or its exit code. */
static int harvest(const sim_t *s, const char *dir, int wait, ...)
{
    const char *argv[32];
    int n = 0;
    char fx[512];
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, strstr(dir, "x86") ? "x86" : "x64");
    argv[n++] = g_kdh;
    argv[n++] = "run";
    argv[n++] = "--port";
    argv[n++] = s->pty;
    argv[n++] = "--tag";
    argv[n++] = "Leak";
    argv[n++] = "--out";
    argv[n++] = dir;
    argv[n++] = "--symbols";
    argv[n++] = fx;
    argv[n++] = "--quiet";
    va_list ap;
    va_start(ap, wait);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 30)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        execv(g_kdh, (char *const *)argv);
        _exit(127);
    }
    if (!wait)
        return pid;
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- reading both sides ---- */
typedef struct truth_ev {
    int kind; /* 0 alloc, 1 free */
    char frames[64][48];
    int n;
} truth_ev_t;

static size_t load_truth(const char *path, truth_ev_t **out)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t cap = 1024, n = 0;
    truth_ev_t *v = calloc(cap, sizeof *v);
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        const char *kind = json_string_value(json_object_get(o, "kind"));
        if (kind && (strcmp(kind, "alloc") == 0 || strcmp(kind, "free") == 0)) {
            if (n == cap) {
                cap *= 2;
                v = realloc(v, cap * sizeof *v);
            }
            truth_ev_t *e = &v[n++];
            memset(e, 0, sizeof *e);
            e->kind = strcmp(kind, "free") == 0;
            json_t *st = json_object_get(o, "stack");
            for (size_t i = 0; i < json_array_size(st) && i < 64; i++) {
                json_t *fr = json_array_get(st, i);
                snprintf(e->frames[i], sizeof e->frames[i], "%s+%llx",
                         json_string_value(json_object_get(fr, "module")),
                         (unsigned long long)json_integer_value(json_object_get(fr, "rva")));
                e->n++;
            }
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    *out = v;
    return n;
}

static size_t count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Our stack sid -> "file+rva" frames, file = module key before the first '/', lower case. */
static json_t *load_stacks(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stacks.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    json_t *map = json_object();
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        const char *sid = json_string_value(json_object_get(o, "sid"));
        assert_null(json_object_get(map, sid)); /* written once */
        json_t *arr = json_array();
        json_t *fr;
        size_t i;
        json_array_foreach(json_object_get(o, "frames"), i, fr) {
            char file[128], text[160];
            snprintf(file, sizeof file, "%s", json_string_value(json_object_get(fr, "mod")));
            char *sl = strchr(file, '/');
            if (sl)
                *sl = 0;
            for (char *p = file; *p; p++)
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            snprintf(text, sizeof text, "%s+%llx", file,
                     (unsigned long long)json_integer_value(json_object_get(fr, "rva")));
            json_array_append_new(arr, json_string(text));
        }
        json_object_set_new(map, sid, arr);
        json_decref(o);
    }
    free(line);
    fclose(f);
    return map;
}

typedef struct check {
    size_t events, captured, allocs, frees;
    uint64_t first_seq, last_seq;
} check_t;

/* Event i of the run is truth break first+i: kinds equal; a captured stack equals the truth. */
static void check_run(const char *dir, const truth_ev_t *tv, size_t tn, size_t first, unsigned sample,
                      check_t *c)
{
    memset(c, 0, sizeof *c);
    json_t *stacks = load_stacks(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t lcap = 0;
    uint64_t prev = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(o, "seq"));
        assert_true(seq == prev + 1 || (prev == 0 && seq >= 1)); /* strictly consecutive */
        if (!c->first_seq)
            c->first_seq = seq;
        prev = c->last_seq = seq;
        if (seq < first + 1) { /* events of an earlier start: checked by that call */
            json_decref(o);
            continue;
        }
        size_t i = (size_t)(seq - 1);
        assert_true(i < tn);
        const char *kind = json_string_value(json_object_get(o, "kind"));
        assert_string_equal(kind, tv[i].kind ? "free" : "alloc");
        c->allocs += !tv[i].kind;
        c->frees += tv[i].kind;
        const char *sid = json_string_value(json_object_get(o, "sid"));
        size_t local = (size_t)(seq - 1 - first);
        if (sample > 1)
            assert_int_equal(sid != NULL, local % sample == 0);
        if (sid) {
            json_t *arr = json_object_get(stacks, sid);
            assert_non_null(arr);
            if (json_array_size(arr) != (size_t)tv[i].n)
                fail_msg("seq %llu: %zu frames, truth %d", (unsigned long long)seq, json_array_size(arr), tv[i].n);
            for (int k = 0; k < tv[i].n; k++)
                if (strcmp(json_string_value(json_array_get(arr, (size_t)k)), tv[i].frames[k]) != 0)
                    fail_msg("seq %llu frame %d: %s, truth %s", (unsigned long long)seq, k,
                             json_string_value(json_array_get(arr, (size_t)k)), tv[i].frames[k]);
            c->captured++;
        }
        c->events++;
        json_decref(o);
    }
    free(line);
    fclose(f);
    json_decref(stacks);
}

static const char *journal_last_op(const char *dir, char *buf, size_t len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    buf[0] = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        snprintf(buf, len, "%s", json_string_value(json_object_get(o, "op")));
        json_decref(o);
    }
    fclose(f);
    return buf;
}

/* Full capture for max-hits, then the same directory again: seq continues, stacks not repeated. */
static void run_full(const char *arch)
{
    sim_t s;
    char name[32], dir[512];
    snprintf(name, sizeof name, "full-%s", arch);
    sim_start(&s, arch, name);
    snprintf(dir, sizeof dir, "%s/run-%s", g_tmp, arch);
    assert_int_equal(harvest(&s, dir, 1, "--max-hits", "300", NULL), 0);
    usleep(1500000);
    truth_ev_t *tv;
    size_t tn = load_truth(s.truth, &tv);
    check_t c;
    check_run(dir, tv, tn, 0, 1, &c);
    /* every true break was logged, and none came after the detach (PoolHitTag restored) */
    assert_true(c.events >= 300);
    assert_int_equal(c.events, tn);
    assert_int_equal(c.captured, c.events);
    assert_true(c.allocs > 0 && c.frees > 0);
    char op[32];
    assert_string_equal(journal_last_op(dir, op, sizeof op), "disarm");
    /* restart: continues after the last seq */
    size_t before = c.events;
    free(tv);
    assert_int_equal(harvest(&s, dir, 1, "--max-hits", "100", NULL), 0);
    usleep(1500000);
    tn = load_truth(s.truth, &tv);
    check_run(dir, tv, tn, before, 1, &c);
    assert_int_equal(c.first_seq, 1);
    assert_int_equal(c.last_seq, tn);
    assert_true(c.events >= 100);
    sim_stop(&s);
    free(tv);
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
    sim_start(&s, "x64", "sample");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-sample", g_tmp);
    assert_int_equal(harvest(&s, dir, 1, "--max-hits", "200", "--sample", "4", NULL), 0);
    usleep(1000000);
    truth_ev_t *tv;
    size_t tn = load_truth(s.truth, &tv);
    check_t c;
    check_run(dir, tv, tn, 0, 4, &c);
    assert_int_equal(c.events, tn);
    assert_int_equal(c.captured, (c.events + 3) / 4);
    sim_stop(&s);
    free(tv);
}

/* SIGTERM while armed: exit 0, journal ends disarmed, and the target keeps running without a
 * single break for 3 s although the workload allocates with the tag all the time. */
static void test_sigterm(void **state)
{
    (void)state;
    sim_t s;
    sim_start(&s, "x64", "sigterm");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-sigterm", g_tmp);
    pid_t pid = harvest(&s, dir, 0, NULL);
    size_t n = 0;
    for (int i = 0; i < 200 && n < 50; i++) {
        usleep(50000);
        n = count_lines(s.truth);
    }
    assert_true(n >= 50);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    size_t after = count_lines(s.truth);
    usleep(3000000);
    assert_int_equal(count_lines(s.truth), after);
    truth_ev_t *tv;
    size_t tn = load_truth(s.truth, &tv);
    check_t c;
    check_run(dir, tv, tn, 0, 1, &c);
    assert_int_equal(c.events, tn); /* every true alloc/free logged, none after the detach */
    free(tv);
    char op[32];
    assert_string_equal(journal_last_op(dir, op, sizeof op), "disarm");
    /* the target still answers a fresh host: attach, arm and harvest again */
    char dir2[512];
    snprintf(dir2, sizeof dir2, "%s/run-sigterm2", g_tmp);
    assert_int_equal(harvest(&s, dir2, 1, "--max-hits", "20", NULL), 0);
    sim_stop(&s);
}

/* The target reboots 3 s in: the harvest notices (at the latest 10 s of silence later), logs a
 * reboot gap, re-arms on the new boot and logs every break of boot 2; boot 1 may lose the one
 * hit that was being handled when it rebooted. */
static void test_reboot(void **state)
{
    (void)state;
    sim_t s;
    sim_start_faults(&s, "x64", "reboot", "reboot=3s");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-reboot", g_tmp);
    assert_int_equal(harvest(&s, dir, 1, "--duration", "22", NULL), 0);
    usleep(1000000);
    size_t truth[3] = {0, 0, 0}, ours[3] = {0, 0, 0};
    char path[600], *line = NULL;
    size_t lcap = 0;
    FILE *f = fopen(s.truth, "r");
    assert_non_null(f);
    while (getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        const char *k = json_string_value(json_object_get(o, "kind"));
        json_int_t b = json_integer_value(json_object_get(o, "boot"));
        if (k && strcmp(k, "break") != 0 && b >= 1 && b <= 2)
            truth[b]++;
        json_decref(o);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    while (getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        json_int_t b = json_integer_value(json_object_get(o, "boot"));
        assert_true(b >= 1 && b <= 2);
        ours[b]++;
        json_decref(o);
    }
    fclose(f);
    free(line);
    assert_true(truth[2] > 0);
    assert_int_equal(ours[2], truth[2]);
    assert_true(ours[1] + 1 >= truth[1] && ours[1] <= truth[1]);
    snprintf(path, sizeof path, "%s/gaps.jsonl", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    char gl[1024];
    assert_non_null(fgets(gl, sizeof gl, f));
    fclose(f);
    assert_non_null(strstr(gl, "\"reason\":\"reboot\""));
    char op[32];
    assert_string_equal(journal_last_op(dir, op, sizeof op), "disarm");
    sim_stop(&s);
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
    assert_int_equal(harvest(&s, dir, 1, NULL), 1);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    g_kdsim = argv[1];
    g_kdh = argv[2];
    g_fixtures = argv[3];
    char probe[600];
    snprintf(probe, sizeof probe, "%s/x64/ntoskrnl.exe", g_fixtures);
    if (access(probe, R_OK) != 0 || access(g_kdsim, X_OK) != 0)
        return 77;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/kdh-harvest-test-XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    atexit(kill_children);
    const struct CMUnitTest x64[] = {
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_full_x64),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_sigterm),
        cmocka_unit_test(test_reboot),
    };
    const struct CMUnitTest x86[] = {
        cmocka_unit_test(test_full_x86),
    };
    int rc = argc > 4 && strcmp(argv[4], "x86") == 0 ? cmocka_run_group_tests_name("x86", x86, NULL, NULL)
                                                     : cmocka_run_group_tests_name("x64", x64, NULL, NULL);
    if (rc == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
