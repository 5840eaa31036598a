/* harvest_sim.c: see harvest_sim.h. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_sim.h"

const char *g_kdsim, *g_kdh, *g_fixtures, *g_arch;
char g_tmp[256];
static pid_t g_children[16]; /* killed at exit, even after a failed assertion */

static void kill_children(void)
{
    for (int i = 0; i < 16; i++)
        if (g_children[i] > 0)
            kill(g_children[i], SIGKILL);
}

void hs_track_child(pid_t pid)
{
    for (int i = 0; i < 16; i++)
        if (g_children[i] <= 0) {
            g_children[i] = pid;
            return;
        }
    fail_msg("more than 16 children to track");
}

void hs_untrack_child(pid_t pid)
{
    for (int i = 0; i < 16; i++)
        if (g_children[i] == pid)
            g_children[i] = 0;
}

int hs_init(int argc, char **argv, const char *tmp_prefix)
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
    snprintf(g_tmp, sizeof g_tmp, "/tmp/%s-XXXXXX", tmp_prefix);
    if (!mkdtemp(g_tmp))
        return 1;
    atexit(kill_children);
    return 0;
}

int hs_finish(int rc)
{
    if (rc == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}

static void sim_start_v(sim_t *s, const char *name, const char *arch, const char *workload, va_list ap)
{
    char fx[512], out[512];
    const char *argv[32];
    int n = 0;
    snprintf(fx, sizeof fx, "%s/%s", g_fixtures, arch);
    snprintf(s->truth, sizeof s->truth, "%s/%s.truth.jsonl", g_tmp, name);
    snprintf(s->status, sizeof s->status, "%s/%s.kdsim.err", g_tmp, name);
    snprintf(out, sizeof out, "%s/%s.kdsim.out", g_tmp, name);
    const char *fixed[] = {g_kdsim, "--pty", "--fixtures", fx, "--arch", arch, "--baud", "0", "--truth", s->truth,
                           "--workload", workload};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = fixed[i];
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 30)
        argv[n++] = a;
    argv[n] = NULL;
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        if (!freopen(out, "w", stdout) || !freopen(s->status, "w", stderr))
            _exit(126);
        setvbuf(stderr, NULL, _IOLBF, 0);
        execv(g_kdsim, (char *const *)argv);
        _exit(127);
    }
    hs_track_child(s->pid);
    s->pty[0] = 0;
    for (int i = 0; i < 100 && !s->pty[0]; i++) {
        usleep(50000);
        FILE *f = fopen(out, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "kdsim: serving on %127s", s->pty) == 1)
                break;
        if (f)
            fclose(f);
    }
    if (!s->pty[0])
        fail_msg("kdsim did not print its pty");
}

void hs_sim_start(sim_t *s, const char *name, ...)
{
    va_list ap;
    va_start(ap, name);
    sim_start_v(s, name, g_arch, "leak", ap);
    va_end(ap);
}

void hs_sim_start_on(sim_t *s, const char *name, const char *arch, const char *workload, ...)
{
    va_list ap;
    va_start(ap, workload);
    sim_start_v(s, name, arch, workload, ap);
    va_end(ap);
}

void hs_sim_stop(sim_t *s)
{
    kill(s->pid, SIGTERM);
    int st;
    waitpid(s->pid, &st, 0);
    hs_untrack_child(s->pid);
}

/* The last status line in kdsim's stderr and how many there are; *failed when kdsim said its
 * machine failed. */
static size_t last_status(const sim_t *s, char *line, size_t len, int *failed)
{
    FILE *f = fopen(s->status, "r");
    char buf[2048];
    size_t n = 0;
    *failed = 0;
    while (f && fgets(buf, sizeof buf, f))
        if (strncmp(buf, "kdsim: the simulated machine failed", 35) == 0)
            *failed = 1;
        else if (strncmp(buf, "kdsim: ", 7) == 0 && strstr(buf, " boot=")) {
            n++;
            snprintf(line, len, "%s", buf);
        }
    if (f)
        fclose(f);
    return n;
}

void hs_sim_status(const sim_t *s, hs_sim_status_t *st)
{
    char line[2048] = "";
    size_t before = last_status(s, line, sizeof line, &st->machine_failed);
    kill(s->pid, SIGUSR1);
    int fresh = 0;
    for (int i = 0; i < 100 && !fresh; i++) {
        usleep(50000);
        fresh = last_status(s, line, sizeof line, &st->machine_failed) > before;
    }
    if (!fresh)
        fail_msg("kdsim wrote no status line within 5 s of SIGUSR1");
    const char *p = strstr(line, "pool-hit-tag="), *q = strstr(line, "lost-req="), *w = strstr(line, "host-wait-max=");
    const char *c = strstr(line, "ctl-reads=");
    const char *pd = strstr(line, " pending=");
    if (sscanf(line, "kdsim: %31s", st->state) != 1 || !p || sscanf(p, "pool-hit-tag=%x", &st->pool_hit_tag) != 1 ||
        !q || sscanf(q, "lost-req=%llu", &st->lost_requests) != 1 || !w ||
        sscanf(w, "host-wait-max=%lfms", &st->host_wait_max_ms) != 1 || !c ||
        sscanf(c, "ctl-reads=%llu", &st->control_reads) != 1 || !pd || sscanf(pd, " pending=%31s", st->pending) != 1)
        fail_msg("kdsim status line not understood: %s", line);
}

int hs_sim_left_running(const hs_sim_status_t *st)
{
    if (strcmp(st->state, "running") == 0)
        return 1;
    return strcmp(st->state, "sending") == 0 &&
           (strcmp(st->pending, "print") == 0 || strcmp(st->pending, "load-symbols") == 0);
}

int hs_harvest(const sim_t *s, const char *dir, int wait, ...)
{
    const char *argv[32];
    int n = 0;
    const char *fixed[] = {g_kdh, "run", "--port", s->pty, "--tag", "Leak", "--out", dir, "--quiet"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = fixed[i];
    va_list ap;
    va_start(ap, wait);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 30)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char err[600];
    snprintf(err, sizeof err, "%s.stderr", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen(err, "a", stderr))
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

static json_t *load_lines(const char *path, int growing)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (growing && line[n - 1] != '\n')
            break; /* the writer is still in the middle of this line */
        json_t *o = json_loads(line, 0, NULL);
        if (!o)
            fail_msg("%s: a line that is not JSON: %.200s", path, line);
        json_array_append_new(arr, o);
    }
    free(line);
    fclose(f);
    return arr;
}

json_t *hs_load_lines(const char *path)
{
    return load_lines(path, 0);
}

json_t *hs_load_truth(const char *path)
{
    return load_lines(path, 1);
}

size_t hs_count_lines(const char *path)
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

size_t hs_count_kind(const char *path, const char *kind)
{
    json_t *lines = hs_load_truth(path), *o; /* a truth file kdsim may still be writing */
    size_t i, n = 0;
    json_array_foreach(lines, i, o) n += strcmp(hs_str(o, "kind"), kind) == 0;
    json_decref(lines);
    return n;
}

const char *hs_str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void lower(char *p)
{
    for (; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
}

void hs_truth_stack(json_t *t, char *out, size_t len)
{
    size_t used = 0, i;
    json_t *fr;
    out[0] = 0;
    json_array_foreach(json_object_get(t, "stack"), i, fr) {
        used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s+%llx", i ? "|" : "",
                                 hs_str(fr, "module"), (unsigned long long)json_integer_value(json_object_get(fr, "rva")));
    }
    lower(out);
}

json_t *hs_load_stacks(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stacks.jsonl", dir);
    json_t *lines = hs_load_lines(path), *map = json_object(), *o;
    size_t k;
    json_array_foreach(lines, k, o) {
        char text[4096];
        size_t used = 0, i;
        json_t *fr;
        text[0] = 0;
        json_array_foreach(json_object_get(o, "frames"), i, fr) {
            char file[128];
            snprintf(file, sizeof file, "%s", hs_str(fr, "mod"));
            char *sl = strchr(file, '/');
            if (sl)
                *sl = 0;
            used += (size_t)snprintf(text + used, used < sizeof text ? sizeof text - used : 0, "%s%s+%llx",
                                     i ? "|" : "", file,
                                     (unsigned long long)json_integer_value(json_object_get(fr, "rva")));
        }
        lower(text);
        assert_null(json_object_get(map, hs_str(o, "sid"))); /* written once */
        json_object_set_new(map, hs_str(o, "sid"), json_string(text));
    }
    json_decref(lines);
    return map;
}

int hs_stack_suffix(const char *ours, const char *truth)
{
    const char *o1 = strchr(ours, '|');
    if (!o1)
        return 0;
    o1++;
    size_t lo = strlen(o1), lt = strlen(truth);
    return lo < lt && truth[lt - lo - 1] == '|' && strcmp(truth + lt - lo, o1) == 0;
}

void hs_out_init(hs_outstanding_t *o)
{
    o->live = json_object();
    o->bytes = json_object();
}

void hs_out_alloc(hs_outstanding_t *o, const char *addr, const char *stack, json_int_t size)
{
    json_object_set_new(o->live, addr, json_pack("[s,I]", stack, size));
    json_int_t cur = json_integer_value(json_object_get(o->bytes, stack));
    json_object_set_new(o->bytes, stack, json_integer(cur + size));
}

void hs_out_free(hs_outstanding_t *o, const char *addr)
{
    json_t *b = json_object_get(o->live, addr);
    if (!b)
        return;
    const char *stack = json_string_value(json_array_get(b, 0));
    json_int_t cur = json_integer_value(json_object_get(o->bytes, stack));
    json_object_set_new(o->bytes, stack, json_integer(cur - json_integer_value(json_array_get(b, 1))));
    json_object_del(o->live, addr);
}

const char *hs_out_top(const hs_outstanding_t *o, json_int_t *best)
{
    const char *k, *top = NULL;
    json_t *v;
    *best = 0;
    json_object_foreach(o->bytes, k, v) {
        if (json_integer_value(v) > *best) {
            *best = json_integer_value(v);
            top = k;
        }
    }
    return top;
}

void hs_out_done(hs_outstanding_t *o)
{
    json_decref(o->live);
    json_decref(o->bytes);
}

int hs_run(const char *out_path, const char *const *argv)
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

/* `kdharvest report --format json --top 100000 DIR`, the report's own pairing of frees with
 * allocations: its outstanding_bytes per stack, keyed by the stack's text (sid through
 * stacks.jsonl, as hs_load_stacks; several sids of one text add up). *first gets the first
 * stack's text (malloc'ed, NULL when the report lists none), *ranked_by its measure. */
static json_t *report_bytes(const char *dir, char **first, char **ranked_by)
{
    char out[600];
    snprintf(out, sizeof out, "%s.report.json", dir);
    const char *argv[] = {g_kdh, "report", "--format", "json", "--top", "100000", dir, NULL};
    assert_int_equal(hs_run(out, argv), 0);
    json_error_t je;
    json_t *rep = json_load_file(out, 0, &je);
    if (!rep)
        fail_msg("%s: %s", out, je.text);
    json_t *stacks = hs_load_stacks(dir), *bytes = json_object(), *s;
    size_t i;
    *first = NULL;
    json_array_foreach(json_object_get(rep, "stacks"), i, s) {
        const char *text = json_string_value(json_object_get(stacks, hs_str(s, "sid")));
        if (!text)
            fail_msg("report stack %s is not in stacks.jsonl", hs_str(s, "sid"));
        json_int_t cur = json_integer_value(json_object_get(bytes, text));
        json_object_set_new(bytes, text, json_integer(cur + json_integer_value(json_object_get(s, "outstanding_bytes"))));
        if (i == 0)
            *first = strdup(text);
    }
    const char *r = hs_str(json_object_get(rep, "measure"), "ranked_by");
    *ranked_by = strdup(r ? r : "");
    json_decref(stacks);
    json_decref(rep);
    return bytes;
}

/* Fails on the first stack whose bytes differ between want and got (an absent stack counts 0). */
static void bytes_equal(json_t *want, json_t *got)
{
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v) {
        json_int_t g = json_integer_value(json_object_get(got, k));
        if (g != json_integer_value(v))
            fail_msg("stack %s: %lld outstanding bytes in the report, %lld in the truth", k, (long long)g,
                     (long long)json_integer_value(v));
    }
    json_object_foreach(got, k, v) {
        if (json_integer_value(v) != json_integer_value(json_object_get(want, k)))
            fail_msg("stack %s: %lld outstanding bytes in the report, %lld in the truth", k,
                     (long long)json_integer_value(v), (long long)json_integer_value(json_object_get(want, k)));
    }
}

const char *hs_out_clear_top(const hs_outstanding_t *o, json_int_t *best)
{
    const char *top = hs_out_top(o, best), *k;
    json_t *v;
    assert_non_null(top);
    json_object_foreach(o->bytes, k, v) {
        if (strcmp(k, top) != 0 && json_integer_value(v) >= *best)
            fail_msg("no clear top in the truth: %s and %s both have %lld bytes", top, k, (long long)*best);
    }
    return top;
}

void hs_check_report_bytes(const char *dir, const hs_outstanding_t *truth)
{
    char *first = NULL, *ranked = NULL;
    json_t *rep = report_bytes(dir, &first, &ranked);
    bytes_equal(truth->bytes, rep);
    assert_string_equal(ranked, "outstanding_bytes");
    json_int_t best;
    const char *top = hs_out_clear_top(truth, &best);
    assert_true(best > 0);
    assert_non_null(strstr(top, "leakdrv.sys+"));
    assert_non_null(first);
    assert_string_equal(first, top);
    free(first);
    free(ranked);
    json_decref(rep);
}

json_t *hs_pdb_publics(void)
{
    char cmd[1400], path[600];
    snprintf(path, sizeof path, "%s/publics-%s.txt", g_tmp, g_arch);
    snprintf(cmd, sizeof cmd, "llvm-pdbutil-14 dump -publics -section-headers '%s/%s/ntkrnlmp.pdb' > '%s' 2>/dev/null",
             g_fixtures, g_arch, path);
    if (system(cmd) != 0)
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    /* "SECTION HEADER #n" ... "<hex> virtual address"; "`name`" then "addr = <sec>:<off>" (decimal) */
    unsigned long sec_va[64] = {0};
    json_t *pubs = json_object(), *pending = json_object();
    char line[1024], name[256] = "";
    int sec = 0;
    while (fgets(line, sizeof line, f)) {
        const char *tick = strchr(line, '`'), *addr = strstr(line, "addr = ");
        unsigned long va;
        if (sscanf(line, " SECTION HEADER #%d", &sec) == 1)
            continue;
        if (sec > 0 && sec < 64 && strstr(line, " virtual address") && sscanf(line, " %lx", &va) == 1) {
            sec_va[sec] = va;
            continue;
        }
        if (tick && strchr(tick + 1, '`')) {
            size_t len = (size_t)(strchr(tick + 1, '`') - tick - 1);
            snprintf(name, sizeof name, "%.*s", (int)len, tick + 1);
            if (strcmp(g_arch, "x86") == 0 && name[0] == '_') { /* cdecl _Name, stdcall _Name@N */
                char *at = strchr(name, '@');
                if (at)
                    *at = 0;
                memmove(name, name + 1, strlen(name));
            }
        } else if (addr && name[0]) {
            unsigned s_, off;
            if (sscanf(addr, "addr = %u:%u", &s_, &off) == 2)
                json_object_set_new(pending, name, json_pack("[I,I]", (json_int_t)s_, (json_int_t)off));
            name[0] = 0;
        }
    }
    fclose(f);
    const char *k;
    json_t *v;
    json_object_foreach(pending, k, v) {
        json_int_t s_ = json_integer_value(json_array_get(v, 0));
        if (s_ > 0 && s_ < 64 && sec_va[s_])
            json_object_set_new(pubs, k, json_integer((json_int_t)sec_va[s_] + json_integer_value(json_array_get(v, 1))));
    }
    json_decref(pending);
    return pubs;
}

void hs_journal_last_op(const char *dir, char *buf, size_t len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    json_t *lines = hs_load_lines(path);
    const char *op = hs_str(json_array_get(lines, json_array_size(lines) - 1), "op");
    snprintf(buf, len, "%s", op ? op : "");
    json_decref(lines);
}

size_t hs_check_events(const char *dir, const char *truth_path)
{
    return hs_check_events_capped(dir, truth_path, 0, NULL);
}

size_t hs_check_events_capped(const char *dir, const char *truth_path, unsigned cap, size_t *capped)
{
    char path[600];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    json_t *events = hs_load_lines(path), *truth = hs_load_truth(truth_path), *stacks = hs_load_stacks(dir);
    json_t *hits = json_array(), *seen = json_object(), *t, *e;
    size_t i, over = 0;
    json_array_foreach(truth, i, t) {
        const char *k = hs_str(t, "kind");
        if (!k || (strcmp(k, "alloc") != 0 && strcmp(k, "free") != 0))
            continue;
        if (cap) { /* the first cap hits of each true stack are logged, the others only counted */
            char ts[4096];
            hs_truth_stack(t, ts, sizeof ts);
            json_int_t c = json_integer_value(json_object_get(seen, ts)) + 1;
            json_object_set_new(seen, ts, json_integer(c));
            if (c > (json_int_t)cap) {
                over++;
                continue;
            }
        }
        json_array_append(hits, t);
    }
    if (capped)
        *capped = over;
    json_array_foreach(events, i, e) {
        json_int_t seq = json_integer_value(json_object_get(e, "seq"));
        if (seq != (json_int_t)i + 1)
            fail_msg("%s: event %zu has seq %lld", dir, i + 1, (long long)seq);
        t = json_array_get(hits, i);
        if (!t)
            fail_msg("%s: %zu events, the truth has %zu hits", dir, json_array_size(events), json_array_size(hits));
        if (!hs_str(e, "kind") || strcmp(hs_str(e, "kind"), hs_str(t, "kind")) != 0)
            fail_msg("%s seq %lld: %s, truth %s", dir, (long long)seq, hs_str(e, "kind"), hs_str(t, "kind"));
        /* the thread as kdsim ran it (both "0x..." strings; compared as numbers) */
        const char *et = hs_str(e, "thread"), *tt = hs_str(t, "thread");
        if (!et || !tt || strtoull(et, NULL, 16) != strtoull(tt, NULL, 16))
            fail_msg("%s seq %lld: thread %s, truth %s", dir, (long long)seq, et ? et : "(none)", tt ? tt : "(none)");
        const char *mine = json_string_value(json_object_get(stacks, hs_str(e, "sid")));
        char ts[4096];
        hs_truth_stack(t, ts, sizeof ts);
        if (!mine || strcmp(mine, ts) != 0)
            fail_msg("%s seq %lld: stack %s\n  truth %s", dir, (long long)seq, mine ? mine : "(none)", ts);
    }
    size_t n = json_array_size(events);
    if (n != json_array_size(hits)) /* every true alloc and free logged, none missing */
        fail_msg("%s: %zu events, the truth has %zu hits", dir, n, json_array_size(hits));
    json_decref(seen);
    json_decref(hits);
    json_decref(stacks);
    json_decref(truth);
    json_decref(events);
    return n;
}

int hs_journal_open_bps(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    json_t *lines = hs_load_lines(path), *o;
    json_t *open = json_object(); /* "kernel_base/handle" -> addr of its latest bp_set */
    size_t i;
    json_array_foreach(lines, i, o) {
        const char *op = hs_str(o, "op");
        assert_non_null(op);
        int set = strcmp(op, "bp_set") == 0;
        if (!set && strcmp(op, "bp_clear") != 0)
            continue; /* arm, disarm */
        json_t *h = json_object_get(o, "handle");
        const char *kb = hs_str(o, "kernel_base"), *addr = hs_str(o, "addr");
        if (!json_is_integer(h) || json_integer_value(h) <= 0 || json_integer_value(h) > UINT32_MAX || !kb || !addr)
            fail_msg("journal line %zu: %s without a handle (1..0xffffffff), kernel_base and addr", i + 1, op);
        char key[128];
        snprintf(key, sizeof key, "%s/%lld", kb, (long long)json_integer_value(h));
        if (set) { /* a later bp_set of a handle replaces its earlier one */
            json_object_set_new(open, key, json_string(addr));
            continue;
        }
        const char *was = json_string_value(json_object_get(open, key));
        if (!was)
            fail_msg("journal line %zu: bp_clear of %s (kernel_base/handle) at %s, which no open bp_set has", i + 1,
                     key, addr);
        if (strcmp(was, addr) != 0)
            fail_msg("journal line %zu: bp_clear of %s (kernel_base/handle) at %s, set at %s", i + 1, key, addr, was);
        json_object_del(open, key);
    }
    int n = (int)json_object_size(open);
    json_decref(open);
    json_decref(lines);
    return n;
}

json_int_t hs_meta_counter(const char *dir, const char *group, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    json_t *m = json_load_file(path, 0, NULL);
    assert_non_null(m);
    json_t *c = json_object_get(m, "counters");
    if (group)
        c = json_object_get(c, group);
    json_t *v = json_object_get(c, name);
    if (!v)
        fail_msg("meta.json has no counters.%s%s%s", group ? group : "", group ? "." : "", name);
    json_int_t r = json_integer_value(v);
    json_decref(m);
    return r;
}

unsigned long long hs_summary_events(const char *dir)
{
    char path[600], line[512] = "";
    snprintf(path, sizeof path, "%s/summary.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    unsigned long long n = 0;
    int ok = fgets(line, sizeof line, f) && sscanf(line, "kdharvest report: 1 run, %llu events read", &n) == 1;
    fclose(f);
    if (!ok)
        fail_msg("%s: first line not understood: %s", path, line);
    return n;
}
