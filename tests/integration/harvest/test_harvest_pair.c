/* test_harvest_pair.c: `kdharvest run --pair` against kdsim's ground truth (--truth), x64 and x86.
 * Every event's kind, stack (frame for frame), block address and size equal the truth's; the
 * outstanding bytes per stack computed from our events equal those computed from the truth (which
 * knows every block), and the stack with the most outstanding bytes is the truth's, a leakdrv
 * allocation path. The one-shot return breakpoints are exactly the truth's extra breaks (one per
 * allocation with an address), every breakpoint set is cleared in the journal, and after the
 * detach the target runs for seconds without a single break. kill -9 while a return breakpoint
 * is in the target, then a restart: the breakpoint is taken out and the target runs free.
 * usage: test_harvest_pair KDSIM KDHARVEST FIXTURES [x64|x86]   (77 when the fixtures are absent) */
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

static const char *g_kdsim, *g_kdh, *g_fixtures, *g_arch;
static char g_tmp[256];
static pid_t g_children[8];
static int g_nchildren;

static void kill_children(void)
{
    for (int i = 0; i < g_nchildren && i < 8; i++)
        if (g_children[i] > 0)
            kill(g_children[i], SIGKILL);
}

typedef struct sim {
    pid_t pid;
    char pty[128];
    char truth[512];
} sim_t;

static void sim_start(sim_t *s, const char *name)
{
    char fx[512], out[512];
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    snprintf(s->truth, sizeof s->truth, "%s/%s.truth.jsonl", g_tmp, name);
    snprintf(out, sizeof out, "%s/%s.kdsim.out", g_tmp, name);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid > 0)
        g_children[g_nchildren++ % 8] = s->pid;
    if (s->pid == 0) {
        if (!freopen(out, "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execl(g_kdsim, g_kdsim, "--pty", "--fixtures", fx, "--arch", g_arch, "--baud", "0", "--truth", s->truth,
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

/* kdharvest run --pair with extra args (NULL-terminated): its pid (wait 0) or exit code. */
static int harvest(const sim_t *s, const char *dir, int wait, ...)
{
    const char *argv[32];
    int n = 0;
    char fx[512];
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    const char *fixed[] = {g_kdh, "run", "--port", s->pty, "--tag", "Leak", "--out", dir, "--symbols", fx,
                           "--quiet", "--pair"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = fixed[i];
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
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
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

static json_t *load_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        json_array_append_new(arr, o);
    }
    free(line);
    fclose(f);
    return arr;
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

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* Truth stack as "file+rva|file+rva|..." (file lower case, as both sides name modules). */
static void truth_stack_text(json_t *t, char *out, size_t len)
{
    size_t used = 0;
    json_t *fr;
    size_t i;
    out[0] = 0;
    json_array_foreach(json_object_get(t, "stack"), i, fr) {
        used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s+%llx", i ? "|" : "",
                                 str(fr, "module"), (unsigned long long)json_integer_value(json_object_get(fr, "rva")));
    }
    for (char *p = out; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
}

/* Our stacks.jsonl: sid -> the same text. */
static json_t *load_stacks(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stacks.jsonl", dir);
    json_t *lines = load_lines(path), *map = json_object(), *o;
    size_t k;
    json_array_foreach(lines, k, o) {
        char text[4096];
        size_t used = 0;
        json_t *fr;
        size_t i;
        text[0] = 0;
        json_array_foreach(json_object_get(o, "frames"), i, fr) {
            char file[128];
            snprintf(file, sizeof file, "%s", str(fr, "mod"));
            char *sl = strchr(file, '/');
            if (sl)
                *sl = 0;
            used += (size_t)snprintf(text + used, used < sizeof text ? sizeof text - used : 0, "%s%s+%llx",
                                     i ? "|" : "", file,
                                     (unsigned long long)json_integer_value(json_object_get(fr, "rva")));
        }
        for (char *p = text; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        json_object_set_new(map, str(o, "sid"), json_string(text));
    }
    json_decref(lines);
    return map;
}

/* Outstanding bytes per stack text: an allocation adds its block (address -> stack, size), a
 * free of a live address takes it back. */
typedef struct outstanding {
    json_t *live;  /* addr -> [stack, size] */
    json_t *bytes; /* stack -> bytes */
} outstanding_t;

static void out_alloc(outstanding_t *o, const char *addr, const char *stack, json_int_t size)
{
    json_object_set_new(o->live, addr, json_pack("[s,I]", stack, size));
    json_int_t cur = json_integer_value(json_object_get(o->bytes, stack));
    json_object_set_new(o->bytes, stack, json_integer(cur + size));
}

static void out_free(outstanding_t *o, const char *addr)
{
    json_t *b = json_object_get(o->live, addr);
    if (!b)
        return;
    const char *stack = json_string_value(json_array_get(b, 0));
    json_int_t cur = json_integer_value(json_object_get(o->bytes, stack));
    json_object_set_new(o->bytes, stack, json_integer(cur - json_integer_value(json_array_get(b, 1))));
    json_object_del(o->live, addr);
}

static const char *top_stack(json_t *bytes, json_int_t *best)
{
    const char *k, *top = NULL;
    json_t *v;
    *best = 0;
    json_object_foreach(bytes, k, v) {
        if (json_integer_value(v) > *best) {
            *best = json_integer_value(v);
            top = k;
        }
    }
    return top;
}

/* Journal: every bp_set handle has a later bp_clear. */
static int journal_open_bps(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    json_t *lines = load_lines(path), *o;
    size_t i;
    int open[64] = {0};
    json_array_foreach(lines, i, o) {
        const char *op = str(o, "op");
        json_int_t h = json_integer_value(json_object_get(o, "handle"));
        if (h < 0 || h >= 64)
            continue;
        if (strcmp(op, "bp_set") == 0)
            open[h] = 1;
        else if (strcmp(op, "bp_clear") == 0)
            open[h] = 0;
    }
    json_decref(lines);
    int n = 0;
    for (int h = 0; h < 64; h++)
        n += open[h];
    return n;
}

static json_int_t meta_pair(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    json_t *m = json_load_file(path, 0, NULL);
    assert_non_null(m);
    json_t *v = json_object_get(json_object_get(json_object_get(m, "counters"), "pair"), name);
    assert_non_null(v);
    json_int_t r = json_integer_value(v);
    json_decref(m);
    return r;
}

static void test_pair(void **state)
{
    (void)state;
    sim_t s;
    sim_start(&s, "pair");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-pair-%s", g_tmp, g_arch);
    assert_int_equal(harvest(&s, dir, 1, "--max-hits", "400", NULL), 0);
    /* detached: nothing of ours is left in the target, so no break for 2 s of leaking workload */
    size_t after = count_lines(s.truth);
    usleep(2000000);
    assert_int_equal(count_lines(s.truth), after);

    json_t *truth = load_lines(s.truth), *t;
    char path[600];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    json_t *events = load_lines(path);
    json_t *stacks = load_stacks(dir);
    json_t *tv = json_array();
    size_t i, return_breaks = 0;
    json_array_foreach(truth, i, t) {
        const char *k = str(t, "kind");
        if (strcmp(k, "alloc") == 0 || strcmp(k, "free") == 0) {
            json_array_append(tv, t);
        } else {
            /* a break at a return address into the leaking driver is one of our return stops */
            json_t *f0 = json_array_get(json_object_get(t, "stack"), 0);
            return_breaks += str(f0, "module") && strcmp(str(f0, "module"), "leakdrv.sys") == 0;
        }
    }
    assert_true(json_array_size(events) >= 400);
    assert_int_equal(json_array_size(events), json_array_size(tv));

    outstanding_t ours = {json_object(), json_object()}, real = {json_object(), json_object()};
    size_t with_addr = 0, allocs = 0, frees = 0;
    json_t *e;
    json_array_foreach(events, i, e) {
        t = json_array_get(tv, i);
        assert_string_equal(str(e, "kind"), str(t, "kind"));
        char ts[4096];
        truth_stack_text(t, ts, sizeof ts);
        const char *sid = str(e, "sid");
        assert_non_null(sid);
        const char *mine = json_string_value(json_object_get(stacks, sid));
        assert_non_null(mine);
        if (strcmp(mine, ts) != 0)
            fail_msg("event %zu: stack %s, truth %s", i, mine, ts);
        int is_alloc = strcmp(str(t, "kind"), "alloc") == 0;
        allocs += is_alloc;
        frees += !is_alloc;
        /* the last allocation may have been logged at the detach, before its return */
        if (!str(e, "addr")) {
            assert_true(is_alloc && i + 1 == json_array_size(events));
            continue;
        }
        with_addr++;
        assert_string_equal(str(e, "addr"), str(t, "block"));
        assert_int_equal(json_integer_value(json_object_get(e, "size")), json_integer_value(json_object_get(t, "size")));
        if (is_alloc) {
            out_alloc(&ours, str(e, "addr"), mine, json_integer_value(json_object_get(e, "size")));
            out_alloc(&real, str(t, "block"), ts, json_integer_value(json_object_get(t, "size")));
        } else {
            out_free(&ours, str(e, "addr"));
            out_free(&real, str(t, "block"));
        }
    }
    assert_true(allocs > 0 && frees > 0);
    assert_true(with_addr + 1 >= json_array_size(events));
    /* one return stop per allocation with an address, and no other break of ours */
    assert_int_equal(return_breaks, (size_t)meta_pair(dir, "allocs_with_addr"));
    assert_int_equal((size_t)meta_pair(dir, "frees_paired"), frees);
    /* outstanding bytes per stack equal the truth's, and the top one is a leakdrv allocation path */
    assert_true(json_equal(ours.bytes, real.bytes));
    json_int_t best_ours, best_real;
    const char *top = top_stack(ours.bytes, &best_ours), *rtop = top_stack(real.bytes, &best_real);
    assert_non_null(top);
    assert_string_equal(top, rtop);
    assert_int_equal(best_ours, best_real);
    assert_non_null(strstr(top, "leakdrv.sys+"));
    assert_int_equal(journal_open_bps(dir), 0);

    json_decref(ours.live);
    json_decref(ours.bytes);
    json_decref(real.live);
    json_decref(real.bytes);
    json_decref(tv);
    json_decref(stacks);
    json_decref(events);
    json_decref(truth);
    sim_stop(&s);
}

/* kdsim's breakpoint table size, from the last of its --status lines (one a second). */
static int sim_bps(const char *status_path)
{
    FILE *f = fopen(status_path, "r");
    assert_non_null(f);
    char line[1024];
    int bps = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, " bps=");
        if (p)
            bps = atoi(p + 5);
    }
    fclose(f);
    return bps;
}

/* kill -9 until it lands while a return breakpoint is in kdsim's table and the target is stopped
 * elsewhere (at the allocation hit, before the Continue): a restart must take it out (else its
 * own breakpoint at that address is refused as a duplicate), harvest and detach with the table
 * empty and the journal closed. Each miss (the target was stopped at the return, which took the
 * int 3 out itself) is cleaned up by a short run. */
static void test_kill9(void **state)
{
    (void)state;
    sim_t s;
    char fx[512], out[512], status[512];
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    snprintf(s.truth, sizeof s.truth, "%s/kill9.truth.jsonl", g_tmp);
    snprintf(out, sizeof out, "%s/kill9.kdsim.out", g_tmp);
    snprintf(status, sizeof status, "%s/kill9.kdsim.status", g_tmp);
    s.pid = fork();
    assert_true(s.pid >= 0);
    if (s.pid == 0) {
        if (!freopen(out, "w", stdout) || !freopen(status, "w", stderr))
            _exit(126);
        setvbuf(stderr, NULL, _IOLBF, 0);
        execl(g_kdsim, g_kdsim, "--pty", "--fixtures", fx, "--arch", g_arch, "--baud", "0", "--truth", s.truth,
              "--workload", "leak", "--status", (char *)NULL);
        _exit(127);
    }
    g_children[g_nchildren++ % 8] = s.pid;
    s.pty[0] = 0;
    for (int i = 0; i < 100 && !s.pty[0]; i++) {
        usleep(50000);
        FILE *f = fopen(out, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "kdsim: serving on %127s", s.pty) == 1)
                break;
        if (f)
            fclose(f);
    }
    assert_true(s.pty[0] != 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-kill9-%s", g_tmp, g_arch);
    int found = 0;
    for (int attempt = 0; attempt < 40 && !found; attempt++) {
        pid_t pid = harvest(&s, dir, 0, NULL);
        usleep(400000 + 23000 * (useconds_t)attempt);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        usleep(1300000); /* a status line of the stopped target */
        found = journal_open_bps(dir) > 0 && sim_bps(status) > 0;
        if (!found)
            assert_int_equal(harvest(&s, dir, 1, "--max-hits", "5", NULL), 0);
    }
    assert_true(found);
    assert_int_equal(harvest(&s, dir, 1, "--max-hits", "50", NULL), 0);
    assert_int_equal(journal_open_bps(dir), 0);
    size_t after = count_lines(s.truth);
    usleep(2000000);
    assert_int_equal(count_lines(s.truth), after);
    assert_int_equal(sim_bps(status), 0);
    sim_stop(&s);
}

/* Bad values are refused with exit 2 before anything is opened. */
static void test_bad_mode(void **state)
{
    (void)state;
    sim_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.pty, sizeof s.pty, "/dev/nonexistent-kdh-port");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run-badmode", g_tmp);
    assert_int_equal(harvest(&s, dir, 1, "--mode", "sometimes", NULL), 2);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    g_kdsim = argv[1];
    g_kdh = argv[2];
    g_fixtures = argv[3];
    g_arch = argc > 4 ? argv[4] : "x64";
    char probe[600];
    snprintf(probe, sizeof probe, "%s/%s/ntoskrnl.exe", g_fixtures, g_arch);
    if (access(probe, R_OK) != 0 || access(g_kdsim, X_OK) != 0)
        return 77;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/kdh-pair-test-XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    atexit(kill_children);
    const struct CMUnitTest x64[] = {
        cmocka_unit_test(test_bad_mode),
        cmocka_unit_test(test_pair),
        cmocka_unit_test(test_kill9),
    };
    const struct CMUnitTest x86[] = {
        cmocka_unit_test(test_pair),
    };
    int rc = strcmp(g_arch, "x86") == 0 ? cmocka_run_group_tests_name("pair-x86", x86, NULL, NULL)
                                        : cmocka_run_group_tests_name("pair-x64", x64, NULL, NULL);
    if (rc == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
