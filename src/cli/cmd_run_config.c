/* cmd_run_config.c: `kdharvest run --config FILE`: every [target] of the file harvested in this
 * one process, on one libuv loop and one thread. Each target's harvest (kdh_harvest_run, a
 * straight sequence of blocking wire steps) runs as a cooperative task (kdh/task.h) whose waits
 * yield to the others; the signal handlers and the status display are handles on the same
 * loop. No threads: the serial lines, not the CPU, bound the hit rate, and one thread needs no
 * locks around the loop, the transports or the target caches.
 *
 * A target that fails (wrong port, silent target, unresolvable PoolHitTag...) prints its one
 * error line, prefixed by its name, when it fails; the others go on. The process exits 1 at
 * the end when any target failed, 0 when every target ended cleanly.
 *
 * Status: on a terminal, one live line per target, redrawn in place as a block at the bottom
 * (notices and errors scroll above it); otherwise plain lines, one per target every 10 s and
 * at every state change. SIGINT/SIGTERM detach every target (PoolHitTag restored, target
 * continued, logs flushed); SIGHUP reopens every target's dbgprint.log.
 *
 * KDH_TASK_STATS=1 in the environment adds one line per target at the end with the deepest
 * stack its task used, against the task stack size. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

#include "kdh/cli.h"
#include "kdh/daemon.h"
#include "kdh/harvest.h"
#include "kdh/task.h"
#include "run_status.h"

typedef struct daemon_ui daemon_ui_t;

typedef struct target_slot {
    daemon_ui_t *ui;
    const char *name;
    kdh_task_t *task;
    kdh_harvest_opts_t ho;
    kdh_harvest_result_t res;
    kdh_harvest_status_t st;     /* the last status (state text in state[]) */
    double last_plain;           /* elapsed_s of the last plain status line */
    volatile sig_atomic_t reopen;
    int rc, ended, have_status;
    char state[16];
    char out[512];
} target_slot_t;

struct daemon_ui {
    int tty, quiet;
    int name_width;
    size_t n;
    target_slot_t *slots;
    int drawn;                    /* lines of the status block now on the terminal */
    volatile sig_atomic_t stop;   /* every target's kdh_harvest_opts_t.stop */
    uv_timer_t redraw;
    uv_signal_t sig[3];
};

static void status_text(const target_slot_t *t, char *line, size_t len)
{
    const kdh_harvest_status_t *s = &t->st;
    if (!t->have_status) {
        snprintf(line, len, "[%-*s] %s", t->ui->name_width, t->name, t->ended ? "failed" : "starting");
        return;
    }
    kdh_harvest_status_t shown = *s;
    shown.state = t->ended && t->rc != KDH_OK ? "failed" : t->state; /* the callback's pointer need not last */
    int n = snprintf(line, len, "[%-*s] ", t->ui->name_width, t->name);
    if (n >= 0 && (size_t)n < len)
        kdh_cli_status_text(&shown, line + n, len - (size_t)n);
}

/* The block of status lines at the bottom of the terminal, redrawn in place. Each line is cut
 * to the terminal's width: a wrapped line would take two rows and the cursor-up count that
 * redraws the block would then land one row short. */
static void draw_block(daemon_ui_t *ui)
{
    if (!ui->tty || ui->quiet)
        return;
    struct winsize ws;
    size_t cols = ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 ? ws.ws_col : 80;
    if (ui->drawn)
        fprintf(stderr, "\033[%dA", ui->drawn);
    for (size_t i = 0; i < ui->n; i++) {
        char line[320];
        status_text(&ui->slots[i], line, sizeof line);
        if (cols - 1 < sizeof line)
            line[cols - 1] = 0;
        fprintf(stderr, "\r\033[K%s\n", line);
    }
    ui->drawn = (int)ui->n;
    fflush(stderr);
}

/* A line that stays (notice, error): above the status block on a terminal. */
static void ui_line(daemon_ui_t *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ui_line(daemon_ui_t *ui, const char *fmt, ...)
{
    if (ui->tty && ui->drawn) {
        fprintf(stderr, "\033[%dA\r\033[J", ui->drawn);
        ui->drawn = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    draw_block(ui);
    fflush(stderr);
}

static void on_status(void *ctx, const kdh_harvest_status_t *s)
{
    target_slot_t *t = ctx;
    daemon_ui_t *ui = t->ui;
    int changed = !t->have_status || strcmp(t->state, s->state) != 0;
    t->st = *s;
    t->st.state = NULL; /* the engine's pointer is only good during the call */
    snprintf(t->state, sizeof t->state, "%s", s->state);
    t->have_status = 1;
    if (ui->quiet)
        return;
    if (ui->tty) {
        if (changed)
            draw_block(ui);
        return;
    }
    if (changed || s->elapsed_s - t->last_plain >= 10) {
        t->last_plain = s->elapsed_s;
        char line[320];
        status_text(t, line, sizeof line);
        fprintf(stderr, "%s\n", line);
        fflush(stderr);
    }
}

static void on_notice(void *ctx, const char *line)
{
    target_slot_t *t = ctx;
    ui_line(t->ui, "[%s] kdharvest: %s", t->name, line);
}

static void on_redraw(uv_timer_t *h)
{
    draw_block(h->data);
}

static void on_signal(uv_signal_t *h, int sig)
{
    daemon_ui_t *ui = h->data;
    if (sig == SIGHUP) {
        for (size_t i = 0; i < ui->n; i++)
            ui->slots[i].reopen = 1;
        return;
    }
    ui->stop = 1;
}

static int target_task(void *arg, kdh_err_t *err)
{
    target_slot_t *t = arg;
    t->rc = kdh_harvest_run(&t->ho, &t->res, err);
    t->ended = 1;
    if (t->rc != KDH_OK)
        ui_line(t->ui, "[%s] kdharvest: %s", t->name, err->msg[0] ? err->msg : kdh_strerror(t->rc));
    else
        draw_block(t->ui);
    return t->rc;
}

int kdh_cli_run_config(const char *path, int quiet)
{
    static kdh_daemon_config_t cfg;
    kdh_err_t err = {0};
    if (kdh_daemon_config_load(path, &cfg, &err) != KDH_OK)
        return kdh_cli_fail(&err);
    static target_slot_t slots[KDH_DAEMON_MAX_TARGETS];
    static daemon_ui_t ui;
    memset(slots, 0, sizeof slots);
    memset(&ui, 0, sizeof ui);
    ui.tty = isatty(2);
    ui.quiet = quiet;
    ui.n = cfg.n;
    ui.slots = slots;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        kdh_cli_errorf("cannot create an event loop");
        return KDH_CLI_EXIT_FAIL;
    }
    kdh_sched_t *sched = NULL;
    if (kdh_sched_new(&sched, &loop, &err) != KDH_OK) {
        uv_loop_close(&loop);
        return kdh_cli_fail(&err);
    }
    signal(SIGPIPE, SIG_IGN);
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&loop, &ui.sig[i]);
        ui.sig[i].data = &ui;
        uv_signal_start(&ui.sig[i], on_signal, sigs[i]);
    }
    uv_timer_init(&loop, &ui.redraw);
    ui.redraw.data = &ui;
    int failed_spawn = 0;
    for (size_t i = 0; i < cfg.n; i++) {
        target_slot_t *t = &slots[i];
        t->ui = &ui;
        t->name = cfg.t[i].name;
        int w = (int)strlen(t->name);
        if (w > ui.name_width)
            ui.name_width = w;
        kdh_daemon_target_opts(&cfg, i, &t->ho, t->out);
        t->ho.loop = &loop;
        t->ho.stop = &ui.stop;
        t->ho.reopen = &t->reopen;
        t->ho.on_status = on_status;
        t->ho.on_notice = on_notice;
        t->ho.ctx = t;
        if (kdh_sched_spawn(sched, t->name, target_task, t, 0, &t->task, &err) != KDH_OK) {
            t->ended = 1;
            t->rc = err.code ? err.code : KDH_ENOMEM;
            ui_line(&ui, "[%s] kdharvest: %s", t->name, err.msg);
            failed_spawn++;
        }
    }
    if (ui.tty && !quiet)
        uv_timer_start(&ui.redraw, on_redraw, 500, 500);
    draw_block(&ui);
    size_t failed = kdh_sched_run(sched);
    uv_timer_stop(&ui.redraw);
    uv_close((uv_handle_t *)&ui.redraw, NULL);
    for (int i = 0; i < 3; i++)
        uv_close((uv_handle_t *)&ui.sig[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* the targets' ports and sessions finish closing */
    draw_block(&ui);
    if (getenv("KDH_TASK_STATS"))
        for (size_t i = 0; i < cfg.n; i++)
            if (slots[i].task)
                fprintf(stderr, "[%s] task stack: used %zu of %zu bytes\n", slots[i].name,
                        kdh_task_stack_used(slots[i].task), kdh_task_stack_size(slots[i].task));
    for (size_t i = 0; i < cfg.n; i++)
        if (slots[i].ended && slots[i].rc == KDH_OK)
            printf("[%s] run directory: %s (%llu hits, %llu stacks)\n", slots[i].name, slots[i].res.run_dir,
                   (unsigned long long)slots[i].res.final.hits,
                   (unsigned long long)slots[i].res.final.unique_stacks);
    fflush(stdout);
    kdh_sched_free(sched);
    if (uv_loop_close(&loop) != 0)
        kdh_cli_errorf("internal: the event loop still had open handles at exit");
    return failed || failed_spawn ? KDH_CLI_EXIT_FAIL : KDH_CLI_EXIT_OK;
}
