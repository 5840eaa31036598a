/* test_report_truth.c: the report of a kdsim harvest against kdsim's ground truth. kdsim runs the
 * "leak" workload (leakdrv.sys leaks tag 'Leak' along two paths of different rates and sizes, and
 * frees part of it) with --truth; `kdharvest run --pair` harvests it (so every allocation carries
 * its size and address and the report ranks by outstanding bytes); then `kdharvest report`
 * (default text, and json) must put first:
 *   - the stack the truth says has most outstanding bytes left (each true free paired with its
 *     allocation by block address), frame for frame (module file + RVA through stacks.jsonl);
 *   - the driver the truth says owns most outstanding bytes over all its stacks (a stack's driver
 *     is its first frame outside the kernel and the HAL).
 * usage: test_report_truth KDSIM KDHARVEST FIXTURES [x64|x86]   (77 when the fixtures are absent) */
#include <ctype.h>
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

static const char *g_kdsim, *g_kdh, *g_fixtures, *g_arch = "x64";
static char g_tmp[256];
static pid_t g_sim = -1;

static void kill_sim(void)
{
    if (g_sim > 0)
        kill(g_sim, SIGKILL);
}

/* ---- the truth: outstanding allocations per true stack ---- */

typedef struct tstack {
    char *key; /* "file+rva;file+rva;..." innermost first */
    char driver[64];
    int64_t count, bytes;
} tstack_t;

typedef struct tblock {
    uint64_t addr;
    int stack;
    int64_t size;
    int live;
} tblock_t;

static int is_system(const char *file)
{
    return strncmp(file, "ntoskrnl", 8) == 0 || strncmp(file, "ntkrnl", 6) == 0 || strncmp(file, "hal", 3) == 0;
}

/* Reads the truth file; returns the stacks with their outstanding count and bytes. */
static size_t truth_stacks(const char *path, tstack_t **out)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t ns = 0, nb = 0, cs = 64, cb = 4096;
    tstack_t *st = calloc(cs, sizeof *st);
    tblock_t *bl = calloc(cb, sizeof *bl);
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *blk = json_string_value(json_object_get(o, "block"));
        uint64_t block = blk ? strtoull(blk, NULL, 16) : 0;
        if (kind && strcmp(kind, "alloc") == 0) {
            char key[4096] = "", drv[64] = "";
            size_t kn = 0, i;
            json_t *fr;
            json_array_foreach(json_object_get(o, "stack"), i, fr) {
                const char *mod = json_string_value(json_object_get(fr, "module"));
                kn += (size_t)snprintf(key + kn, sizeof key - kn, "%s%s+%llx", i ? ";" : "", mod ? mod : "?",
                                       (unsigned long long)json_integer_value(json_object_get(fr, "rva")));
                assert_true(kn < sizeof key);
                if (!drv[0] && mod && !is_system(mod))
                    snprintf(drv, sizeof drv, "%s", mod);
            }
            int k = -1;
            for (size_t j = 0; j < ns && k < 0; j++)
                if (strcmp(st[j].key, key) == 0)
                    k = (int)j;
            if (k < 0) {
                if (ns == cs)
                    st = realloc(st, (cs *= 2) * sizeof *st);
                memset(&st[ns], 0, sizeof st[ns]);
                st[ns].key = strdup(key);
                snprintf(st[ns].driver, sizeof st[ns].driver, "%s", drv);
                k = (int)ns++;
            }
            int64_t size = json_integer_value(json_object_get(o, "size"));
            st[k].count++;
            st[k].bytes += size;
            if (nb == cb)
                bl = realloc(bl, (cb *= 2) * sizeof *bl);
            bl[nb++] = (tblock_t){block, k, size, 1};
        } else if (kind && strcmp(kind, "free") == 0) {
            for (size_t j = nb; j-- > 0;) /* the latest live block at this address */
                if (bl[j].live && bl[j].addr == block) {
                    bl[j].live = 0;
                    st[bl[j].stack].count--;
                    st[bl[j].stack].bytes -= bl[j].size;
                    break;
                }
        }
        json_decref(o);
    }
    free(line);
    free(bl);
    fclose(f);
    *out = st;
    return ns;
}

/* ---- our side ---- */

/* The frames of stack sid in the run's stacks.jsonl as "file+rva;..." (file lower case). */
static char *run_stack_key(const char *dir, const char *sid)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stacks.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL, *key = NULL;
    size_t lcap = 0;
    while (!key && getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        if (strcmp(json_string_value(json_object_get(o, "sid")), sid) == 0) {
            char buf[4096] = "";
            size_t n = 0, i;
            json_t *fr;
            json_array_foreach(json_object_get(o, "frames"), i, fr) {
                char file[128];
                snprintf(file, sizeof file, "%s", json_string_value(json_object_get(fr, "mod")));
                char *sl = strchr(file, '/');
                if (sl)
                    *sl = 0;
                for (char *p = file; *p; p++)
                    *p = (char)tolower((unsigned char)*p);
                n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s+%llx", i ? ";" : "", file,
                                      (unsigned long long)json_integer_value(json_object_get(fr, "rva")));
            }
            key = strdup(buf);
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return key;
}

static int run_cmd(const char *out_path, const char *const *argv)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(out_path, "w", stdout))
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void start_sim(const char *truth, char *pty, size_t cap)
{
    char fx[512], out[512];
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    snprintf(out, sizeof out, "%s/kdsim.out", g_tmp);
    g_sim = fork();
    assert_true(g_sim >= 0);
    if (g_sim == 0) {
        if (!freopen(out, "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execl(g_kdsim, g_kdsim, "--pty", "--fixtures", fx, "--arch", g_arch, "--baud", "0", "--truth", truth,
              "--workload", "leak", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        FILE *f = fopen(out, "r");
        char line[256], fmt[32];
        snprintf(fmt, sizeof fmt, "kdsim: serving on %%%zus", cap - 1);
        if (f) {
            while (fgets(line, sizeof line, f))
                if (sscanf(line, fmt, pty) == 1) {
                    fclose(f);
                    return;
                }
            fclose(f);
        }
        usleep(50000);
    }
    fail_msg("kdsim did not print its pty");
}

static void test_first_stack_and_driver_are_the_truths(void **state)
{
    (void)state;
    char truth[512], dir[512], pty[128], fx[512], json_out[512], text_out[512];
    snprintf(truth, sizeof truth, "%s/truth.jsonl", g_tmp);
    snprintf(dir, sizeof dir, "%s/run", g_tmp);
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, g_arch);
    snprintf(json_out, sizeof json_out, "%s/report.json", g_tmp);
    snprintf(text_out, sizeof text_out, "%s/report.txt", g_tmp);
    start_sim(truth, pty, sizeof pty);
    const char *run_argv[] = {g_kdh, "run", "--port", pty, "--tag", "Leak", "--out", dir, "--symbols", fx,
                              "--quiet", "--pair", "--max-hits", "1500", NULL};
    char log[512];
    snprintf(log, sizeof log, "%s/run.out", g_tmp);
    assert_int_equal(run_cmd(log, run_argv), 0);
    usleep(500000); /* the truth's last lines are flushed at each break; nothing breaks after the detach */
    kill(g_sim, SIGTERM);
    waitpid(g_sim, NULL, 0);
    g_sim = -1;

    const char *json_argv[] = {g_kdh, "report", "--format", "json", "--top", "3", dir, NULL};
    assert_int_equal(run_cmd(json_out, json_argv), 0);
    json_error_t je;
    json_t *rep = json_load_file(json_out, 0, &je);
    if (!rep)
        fail_msg("report json: %s", je.text);
    json_t *measure = json_object_get(rep, "measure");
    const char *ranked = json_string_value(json_object_get(measure, "ranked_by"));
    assert_non_null(ranked);
    assert_string_equal(ranked, "outstanding_bytes"); /* every allocation of a --pair run has a size */

    tstack_t *ts;
    size_t nts = truth_stacks(truth, &ts);
    assert_true(nts >= 2); /* the two allocation paths at least */
    size_t best = 0, second = nts;
    for (size_t i = 1; i < nts; i++)
        if (ts[i].bytes > ts[best].bytes)
            best = i;
    for (size_t i = 0; i < nts; i++)
        if (i != best && (second == nts || ts[i].bytes > ts[second].bytes))
            second = i;
    /* the truth's winner must be clear, or the comparison says nothing */
    assert_true(ts[second].bytes < ts[best].bytes);
    printf("truth: %zu stacks; most outstanding bytes: %lld (%lld allocations), next %lld\n", nts,
           (long long)ts[best].bytes, (long long)ts[best].count, (long long)ts[second].bytes);
    /* the truth's drivers: outstanding bytes summed over their stacks */
    char tdrv[64] = "";
    int64_t tdrv_bytes = 0, next_drv = 0;
    for (size_t i = 0; i < nts; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(ts[j].driver, ts[i].driver) == 0;
        if (seen)
            continue;
        int64_t sum = 0;
        for (size_t j = i; j < nts; j++)
            if (strcmp(ts[j].driver, ts[i].driver) == 0)
                sum += ts[j].bytes;
        if (sum > tdrv_bytes) {
            next_drv = tdrv_bytes;
            tdrv_bytes = sum;
            snprintf(tdrv, sizeof tdrv, "%s", ts[i].driver);
        } else if (sum > next_drv) {
            next_drv = sum;
        }
    }
    assert_true(tdrv[0] && next_drv < tdrv_bytes);
    printf("truth: driver %s has most outstanding bytes: %lld, next %lld\n", tdrv, (long long)tdrv_bytes,
           (long long)next_drv);

    /* json: first stack, frame for frame */
    const char *sid = json_string_value(json_object_get(json_array_get(json_object_get(rep, "stacks"), 0), "sid"));
    assert_non_null(sid);
    char *ours = run_stack_key(dir, sid);
    assert_non_null(ours);
    if (strcmp(ours, ts[best].key) != 0)
        fail_msg("first stack %s:\n  ours  %s\n  truth %s", sid, ours, ts[best].key);
    free(ours);
    /* json: first driver of the roll-up; the truth's driver is the module file */
    const char *drv = json_string_value(json_object_get(json_array_get(json_object_get(rep, "drivers"), 0), "driver"));
    assert_non_null(drv);
    char tname[64];
    snprintf(tname, sizeof tname, "%s", tdrv);
    char *dot = strchr(tname, '.');
    if (dot)
        *dot = 0;
    if (strcasecmp(drv, tname) != 0)
        fail_msg("first driver %s, truth %s", drv, tdrv);

    /* the default (text) report: the first entry of its first stack list is the same sid */
    const char *text_argv[] = {g_kdh, "report", dir, NULL};
    assert_int_equal(run_cmd(text_out, text_argv), 0);
    FILE *f = fopen(text_out, "r");
    assert_non_null(f);
    char line[1024], first_sid[32] = "";
    int state_ = 0;
    while (fgets(line, sizeof line, f) && !first_sid[0]) {
        if (state_ == 0 && strncmp(line, "Top stacks by outstanding", 25) == 0)
            state_ = 1;
        else if (state_ == 1 && sscanf(line, "     sid %31s", first_sid) == 1)
            break;
    }
    fclose(f);
    assert_string_equal(first_sid, sid);
    json_decref(rep);
    for (size_t i = 0; i < nts; i++)
        free(ts[i].key);
    free(ts);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    g_kdsim = argv[1];
    g_kdh = argv[2];
    g_fixtures = argv[3];
    if (argc > 4)
        g_arch = argv[4];
    char probe[600];
    snprintf(probe, sizeof probe, "%s/%s/ntoskrnl.exe", g_fixtures, g_arch);
    if (access(probe, R_OK) != 0 || access(g_kdsim, X_OK) != 0)
        return 77;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/kdh-report-truth-XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    atexit(kill_sim);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_stack_and_driver_are_the_truths),
    };
    int rc = cmocka_run_group_tests_name(g_arch, tests, NULL, NULL);
    if (rc == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
