/* test_daemon.c: `kdharvest run --config` with three targets in one process: kdsim x64, kdsim
 * x86 (both unpaced, leaking workload, ground truth on) and a port that does not exist.
 * Checked against the truth and /proc, not against kdharvest's own figures:
 *  - the bad port gives one error line naming the target while the others go on;
 *  - it is one process, its targets on one thread (no child per target; /proc/PID/task has at
 *    most one more entry, libuv's thread pool of one (UV_THREADPOOL_SIZE=1) writing meta.json);
 *  - both targets keep capturing at the same time: over the same 3 s window each truth grows,
 *    neither by less than a fifth of the other;
 *  - SIGHUP reopens dbgprint.log of every target (moved away first, it comes back);
 *  - SIGTERM detaches all: exit status 1 (a target failed), journals end "disarm", no break on
 *    either target for 3 s after the exit although the workload allocates with the tag all
 *    the time, and kdsim reports neither target stopped;
 *  - each run directory's events equal its target's true allocs and frees in number, kind and
 *    order, every stack frame for frame;
 *  - one status line per target, prefixed by its name, and each task's deepest stack use is
 *    under half its stack.
 * And on a terminal (a pty 90 columns wide, the output replayed through a small terminal model
 * that knows the escapes kdharvest uses): the screen ends with a block of exactly one status
 * line per target, "done" and "failed", none wider than the terminal, with the bad target's
 * error line above it; no other status line is left on the screen, and the block was redrawn
 * in place (cursor moved up over it) many times. That target rewrites summary.txt every second
 * (summary_interval = 1) in the thread pool of the shared loop: its events equal its truth, and
 * summary.txt at the exit counts them all.
 * usage: test_daemon KDSIM KDHARVEST FIXTURES   (77 when the fixtures are absent) */
#include <dirent.h>
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
#include <pty.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_sim.h"

/* Processes whose parent is pid. */
static int children_of(pid_t pid)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = 0;
        const char *rp = strrchr(buf, ')'); /* the command name may hold spaces */
        int ppid = 0;
        char st;
        if (rp && sscanf(rp + 1, " %c %d", &st, &ppid) == 2 && ppid == pid)
            n++;
    }
    closedir(d);
    return n;
}

static int thread_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void test_three_targets(void **state)
{
    (void)state;
    sim_t s64, s86;
    hs_sim_start_on(&s64, "three-x64", "x64", "leak", "--status", NULL);
    hs_sim_start_on(&s86, "three-x86", "x86", "leak", "--status", NULL);
    char cfg[512], out[512], err[512], d64[512], d86[512];
    snprintf(cfg, sizeof cfg, "%s/kdharvest.ini", g_tmp);
    snprintf(out, sizeof out, "%s/daemon.out", g_tmp);
    snprintf(err, sizeof err, "%s/daemon.err", g_tmp);
    snprintf(d64, sizeof d64, "%s/run-a64", g_tmp);
    snprintf(d86, sizeof d86, "%s/run-b86", g_tmp);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f,
            "[daemon]\nlogs = %s/logs\n\n"
            "[target a64]\nport = %s\ntag = Leak\nsymbols = %s/x64\nout = %s\n\n"
            "[target b86]\nport = %s\ntag = Leak\nsymbols = %s/x86\nout = %s\n\n"
            "[target bad]\nport = /dev/nonexistent-kdh-port\ntag = Leak\n",
            g_tmp, s64.pty, g_fixtures, d64, s86.pty, g_fixtures, d86);
    fclose(f);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(out, "w", stdout) || !freopen(err, "w", stderr))
            _exit(126);
        setenv("KDH_TASK_STATS", "1", 1);
        setenv("UV_THREADPOOL_SIZE", "1", 1);
        execl(g_kdh, g_kdh, "run", "--config", cfg, (char *)NULL);
        _exit(127);
    }
    hs_track_child(pid);

    /* both targets armed and hitting */
    size_t n64 = 0, n86 = 0;
    for (int i = 0; i < 400 && (n64 < 100 || n86 < 100); i++) {
        usleep(50000);
        n64 = hs_count_lines(s64.truth);
        n86 = hs_count_lines(s86.truth);
    }
    assert_true(n64 >= 100 && n86 >= 100);
    assert_true(file_has(err, "[bad] kdharvest: /dev/nonexistent-kdh-port"));

    /* one process; the targets on one thread, besides it at most the pool's one (from the first
     * periodic meta.json on, 10 s into the run) */
    assert_int_equal(children_of(pid), 0);
    assert_true(thread_count(pid) <= 2);

    /* both capture over the same window */
    size_t a0 = hs_count_lines(s64.truth), b0 = hs_count_lines(s86.truth);
    usleep(3000000);
    size_t a1 = hs_count_lines(s64.truth), b1 = hs_count_lines(s86.truth);
    double ra = (double)(a1 - a0) / 3.0, rb = (double)(b1 - b0) / 3.0;
    print_message("together: x64 %.0f breaks/s, x86 %.0f breaks/s\n", ra, rb);
    assert_true(ra > 10 && rb > 10);
    assert_true(ra >= rb / 5 && rb >= ra / 5);

    /* SIGHUP: every target's dbgprint.log is reopened */
    char p64[600], p86[600], m64[600], m86[600];
    snprintf(p64, sizeof p64, "%s/dbgprint.log", d64);
    snprintf(p86, sizeof p86, "%s/dbgprint.log", d86);
    snprintf(m64, sizeof m64, "%s/dbgprint.log.1", d64);
    snprintf(m86, sizeof m86, "%s/dbgprint.log.1", d86);
    assert_int_equal(rename(p64, m64), 0);
    assert_int_equal(rename(p86, m86), 0);
    kill(pid, SIGHUP);
    int back = 0;
    for (int i = 0; i < 60 && !back; i++) {
        usleep(50000);
        back = access(p64, F_OK) == 0 && access(p86, F_OK) == 0;
    }
    assert_true(back);

    /* SIGTERM: all detach; exit 1 because one target failed */
    kill(pid, SIGTERM);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    hs_untrack_child(pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    size_t after64 = hs_count_lines(s64.truth), after86 = hs_count_lines(s86.truth);
    usleep(3000000);
    assert_int_equal(hs_count_lines(s64.truth), after64); /* unarmed: the workload goes on unseen */
    assert_int_equal(hs_count_lines(s86.truth), after86);
    /* not stopped: "running", or "sending" its own DbgPrint, which with nobody listening is
     * retried and then given up, as a kernel without a debugger does (no stop, no break); never
     * a stop report sent to nobody */
    hs_sim_status_t ss;
    hs_sim_status(&s64, &ss);
    if (!hs_sim_left_running(&ss))
        fail_msg("x64 target %s (sending: %s) after the detach", ss.state, ss.pending);
    hs_sim_status(&s86, &ss);
    if (!hs_sim_left_running(&ss))
        fail_msg("x86 target %s (sending: %s) after the detach", ss.state, ss.pending);
    char op[32];
    hs_journal_last_op(d64, op, sizeof op);
    assert_string_equal(op, "disarm");
    hs_journal_last_op(d86, op, sizeof op);
    assert_string_equal(op, "disarm");

    /* each run directory against its own target's truth */
    size_t e64 = hs_check_events(d64, s64.truth), e86 = hs_check_events(d86, s86.truth);
    print_message("events: x64 %zu, x86 %zu, each equal to its truth\n", e64, e86);

    /* output: the bad target's one line, a status line per target, run directories, stacks */
    assert_true(file_has(err, "[a64] armed"));
    assert_true(file_has(err, "[b86] armed"));
    assert_true(file_has(err, "[a64] done"));
    assert_true(file_has(err, "[b86] done"));
    assert_true(file_has(out, "[a64] run directory: "));
    assert_true(file_has(out, "[b86] run directory: "));
    assert_false(file_has(out, "[bad] run directory"));
    f = fopen(err, "r");
    assert_non_null(f);
    char line[2048];
    int bad_lines = 0, stacks = 0;
    while (fgets(line, sizeof line, f)) {
        bad_lines += strncmp(line, "[bad] kdharvest:", 16) == 0;
        char name[16];
        size_t used, size;
        if (sscanf(line, "[%15[^]]] task stack: used %zu of %zu bytes", name, &used, &size) == 3) {
            print_message("%s: task stack %zu of %zu bytes\n", name, used, size);
            assert_true(used > 0 && used < size / 2);
            stacks++;
        }
    }
    fclose(f);
    assert_int_equal(bad_lines, 1);
    assert_int_equal(stacks, 3);
    hs_sim_stop(&s64);
    hs_sim_stop(&s86);
}

/* ---- a terminal model: rows of text; \r, \n, ESC[K, ESC[J, ESC[nA ---- */
#define ROWS 64
#define COLS 90

typedef struct screen {
    char row[ROWS][COLS + 1];
    int y, x, maxy;
    unsigned ups;      /* cursor-up escapes seen */
} screen_t;

static int starts(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strlen(s) >= n && memcmp(s, prefix, n) == 0;
}

static void scr_newline(screen_t *s)
{
    if (s->y == ROWS - 1) { /* scroll */
        memmove(s->row[0], s->row[1], sizeof s->row[0] * (ROWS - 1));
        memset(s->row[ROWS - 1], 0, sizeof s->row[0]);
    } else {
        s->y++;
    }
    if (s->y > s->maxy)
        s->maxy = s->y;
}

static void scr_feed(screen_t *s, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (c == '\033' && i + 1 < n && b[i + 1] == '[') {
            size_t j = i + 2;
            int num = 0;
            while (j < n && b[j] >= '0' && b[j] <= '9')
                num = num * 10 + (b[j++] - '0');
            assert_true(j < n);
            if (b[j] == 'K') {
                memset(s->row[s->y] + s->x, 0, (size_t)(COLS + 1 - s->x));
            } else if (b[j] == 'J') {
                memset(s->row[s->y] + s->x, 0, (size_t)(COLS + 1 - s->x));
                for (int y = s->y + 1; y < ROWS; y++)
                    memset(s->row[y], 0, sizeof s->row[y]);
                s->maxy = s->y;
            } else if (b[j] == 'A') {
                s->y = s->y - (num ? num : 1) < 0 ? 0 : s->y - (num ? num : 1);
                s->ups++;
            } else {
                fail_msg("unexpected escape ESC[%d%c", num, b[j]);
            }
            i = j;
        } else if (c == '\r') {
            s->x = 0;
        } else if (c == '\n') {
            s->x = 0; /* the pty turns \n into \r\n */
            scr_newline(s);
        } else {
            if (s->x >= COLS) { /* wraps, as a terminal does */
                s->x = 0;
                scr_newline(s);
            }
            s->row[s->y][s->x++] = c;
        }
    }
}

static void test_terminal_block(void **state)
{
    (void)state;
    sim_t s64;
    hs_sim_start_on(&s64, "tty-x64", "x64", "leak", "--status", NULL);
    char cfg[512], out[512], d64[512];
    snprintf(cfg, sizeof cfg, "%s/tty.ini", g_tmp);
    snprintf(out, sizeof out, "%s/tty.out", g_tmp);
    snprintf(d64, sizeof d64, "%s/run-tty", g_tmp);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f,
            "[target a64]\nport = %s\ntag = Leak\nsymbols = %s/x64\nout = %s\nduration = 4\nsummary_interval = 1\n\n"
            "[target bad]\nport = /dev/nonexistent-kdh-port\ntag = Leak\n",
            s64.pty, g_fixtures, d64);
    fclose(f);
    int master, slave;
    struct winsize ws = {.ws_row = 40, .ws_col = COLS};
    assert_int_equal(openpty(&master, &slave, NULL, NULL, &ws), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(master);
        if (!freopen(out, "w", stdout) || dup2(slave, 2) < 0)
            _exit(126);
        execl(g_kdh, g_kdh, "run", "--config", cfg, (char *)NULL);
        _exit(127);
    }
    hs_track_child(pid);
    close(slave);
    /* all of it first: a read may end in the middle of an escape sequence */
    static char all[1 << 20];
    size_t len = 0;
    ssize_t got;
    while (len < sizeof all - 1 && (got = read(master, all + len, sizeof all - 1 - len)) > 0)
        len += (size_t)got;
    all[len] = 0;
    close(master);
    /* A sanitizer build's runtime writes its own lines ("==PID==WARNING: ASan doesn't fully
     * support makecontext/swapcontext...") to the same terminal: not kdharvest's output. */
    for (char *w = strstr(all, "=="); w && w < all + len; w = strstr(w, "==")) {
        char *digits = w + 2;
        while (*digits >= '0' && *digits <= '9')
            digits++;
        char *eol = strchr(w, '\n');
        if (digits > w + 2 && strncmp(digits, "==", 2) == 0 && eol) {
            memmove(w, eol + 1, (size_t)(all + len - (eol + 1)) + 1);
            len -= (size_t)(eol + 1 - w);
        } else {
            w += 2;
        }
    }
    static screen_t scr;
    memset(&scr, 0, sizeof scr);
    scr_feed(&scr, all, len);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    hs_untrack_child(pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    /* the screen: the error line, then the block (the cursor rests on the row after it) */
    int last = scr.y - 1;
    assert_true(last >= 2);
    for (int y = 0; y <= last; y++)
        print_message("screen %2d: %s\n", y, scr.row[y]);
    assert_true(starts(scr.row[last - 1], "[a64] done "));
    assert_non_null(strstr(scr.row[last - 1], " hits "));
    assert_true(starts(scr.row[last], "[bad] failed"));
    assert_true(strlen(scr.row[last - 1]) < COLS && strlen(scr.row[last]) < COLS); /* cut, not wrapped */
    /* the error line once (long lines wrap: it may take two rows); no status line left behind
     * anywhere but in the block (the block was redrawn, not scrolled) */
    int errors = 0, status_rows = 0;
    for (int y = 0; y <= last; y++) {
        errors += starts(scr.row[y], "[bad] kdharvest: /dev/nonexistent-kdh-port");
        status_rows += (starts(scr.row[y], "[a64] ") || starts(scr.row[y], "[bad] ")) &&
                       !starts(scr.row[y] + 6, "kdharvest: ");
    }
    assert_int_equal(errors, 1);
    assert_int_equal(status_rows, 2);
    assert_true(scr.ups >= 4); /* redrawn in place, not scrolled */
    assert_true(file_has(out, "[a64] run directory: "));
    size_t n = hs_check_events(d64, s64.truth);
    assert_int_equal(hs_summary_events(d64), n);
    hs_sim_stop(&s64);
}

int main(int argc, char **argv)
{
    char probe[600];
    snprintf(probe, sizeof probe, "%s/x86/ntoskrnl.exe", argc > 3 ? argv[3] : "");
    if (argc > 3 && access(probe, R_OK) != 0) /* x86 runs beside x64 (hs_init probes x64) */
        return 77;
    int rc = hs_init(argc, argv, "kdh-daemon-test");
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_three_targets), cmocka_unit_test(test_terminal_block)};
    return hs_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
