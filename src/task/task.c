/* task.c: cooperative tasks on one libuv loop (see kdh/task.h for the model).
 *
 * Why coroutines and not threads or callbacks: the harvest engine and the target model's
 * drivers are written as straight sequences of blocking wire steps; turning them into callback
 * state machines would rewrite all of them, and threads would need locks around the loop, the
 * transports and every shared cache while buying nothing: the serial lines, not the CPU, are
 * the bottleneck. A coroutine per target keeps the code as it is; only the few places that
 * spun the loop call kdh_task_wait() instead.
 *
 * Stacks are mmap'd with a PROT_NONE guard page below them, so an overflow faults at once
 * instead of writing over another task's memory. Under AddressSanitizer every switch is
 * announced (__sanitizer_start/finish_switch_fiber) so ASan knows which stack is live. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "kdh/task.h"

#ifdef KDH_TASK_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define NO_ASAN __attribute__((no_sanitize_address))
#else
#define NO_ASAN
#endif

#define PAINT 0xA5 /* stack bytes never touched still hold this */

struct kdh_task {
    kdh_task_t *next;
    ucontext_t ctx;
    uint8_t *map;        /* guard page + stack */
    size_t map_len;
    uint8_t *stack;      /* lowest usable byte */
    size_t stack_size;
    kdh_task_fn fn;
    void *arg;
    int started, done;
    int rc;
    kdh_err_t err;
    unsigned long long resumes;
    char name[64];
};

struct kdh_sched {
    uv_loop_t *loop;
    ucontext_t main_ctx;
    kdh_task_t *head, *tail;
    kdh_task_t *current;
#ifdef KDH_TASK_ASAN
    const void *main_bottom; /* the scheduler's stack, learnt at the first switch into a task */
    size_t main_size;
#endif
};

/* The scheduler running on this thread (kdh_task_wait has only the loop to go by). */
static _Thread_local kdh_sched_t *g_active;

int kdh_sched_new(kdh_sched_t **out, uv_loop_t *loop, kdh_err_t *err)
{
    *out = NULL;
    kdh_sched_t *s = calloc(1, sizeof *s);
    if (!s)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory");
    s->loop = loop;
    *out = s;
    return KDH_OK;
}

/* First code on a task's stack. makecontext passes only ints, so the task comes from the
 * scheduler (s->current is set before every switch in). */
static void trampoline(void)
{
    kdh_sched_t *s = g_active;
    kdh_task_t *t = s->current;
#ifdef KDH_TASK_ASAN
    __sanitizer_finish_switch_fiber(NULL, &s->main_bottom, &s->main_size);
#endif
    t->rc = t->fn(t->arg, &t->err);
    if (t->rc != KDH_OK && t->err.code == KDH_OK)
        kdh_err_set(&t->err, t->rc, "task %s: %s", t->name, kdh_strerror(t->rc));
    t->done = 1;
#ifdef KDH_TASK_ASAN
    /* NULL: this stack is finished, ASan may drop its fake frames */
    __sanitizer_start_switch_fiber(NULL, s->main_bottom, s->main_size);
#endif
    /* returning resumes uc_link, the scheduler */
}

int kdh_sched_spawn(kdh_sched_t *s, const char *name, kdh_task_fn fn, void *arg, size_t stack_size,
                    kdh_task_t **out, kdh_err_t *err)
{
    if (out)
        *out = NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (!stack_size)
        stack_size = KDH_TASK_STACK_DEFAULT;
    stack_size = (stack_size + page - 1) / page * page;
    kdh_task_t *t = calloc(1, sizeof *t);
    if (!t)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory");
    t->map_len = stack_size + page;
    void *m = mmap(NULL, t->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) {
        free(t);
        return kdh_err_set(err, KDH_ENOMEM, "cannot map a %zu-byte task stack", stack_size);
    }
    t->map = m;
    if (mprotect(t->map, page, PROT_NONE) != 0) {
        munmap(t->map, t->map_len);
        free(t);
        return kdh_err_set(err, KDH_EIO, "cannot protect a task stack's guard page");
    }
    t->stack = t->map + page;
    t->stack_size = stack_size;
    memset(t->stack, PAINT, t->stack_size);
    if (getcontext(&t->ctx) != 0) {
        munmap(t->map, t->map_len);
        free(t);
        return kdh_err_set(err, KDH_EIO, "getcontext failed");
    }
    t->ctx.uc_stack.ss_sp = t->stack;
    t->ctx.uc_stack.ss_size = t->stack_size;
    t->ctx.uc_link = &s->main_ctx;
    makecontext(&t->ctx, trampoline, 0);
    t->fn = fn;
    t->arg = arg;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "task");
    if (s->tail)
        s->tail->next = t;
    else
        s->head = t;
    s->tail = t;
    if (out)
        *out = t;
    return KDH_OK;
}

/* Scheduler -> task t, back when t waits or ends. */
static void resume(kdh_sched_t *s, kdh_task_t *t)
{
    s->current = t;
    t->started = 1;
    t->resumes++;
#ifdef KDH_TASK_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, t->stack, t->stack_size);
#endif
    swapcontext(&s->main_ctx, &t->ctx);
#ifdef KDH_TASK_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    s->current = NULL;
}

/* Task -> scheduler, back at the next round. */
static void yield(kdh_sched_t *s, kdh_task_t *t)
{
#ifdef KDH_TASK_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, s->main_bottom, s->main_size);
#endif
    swapcontext(&t->ctx, &s->main_ctx);
#ifdef KDH_TASK_ASAN
    __sanitizer_finish_switch_fiber(fake, &s->main_bottom, &s->main_size);
#endif
}

size_t kdh_sched_run(kdh_sched_t *s)
{
    kdh_sched_t *prev = g_active;
    g_active = s;
    for (;;) {
        size_t live = 0;
        /* tasks spawned during the round are appended and join it */
        for (kdh_task_t *t = s->head; t; t = t->next) {
            if (t->done)
                continue;
            resume(s, t);
            live += !t->done;
        }
        if (!live)
            break;
        uv_run(s->loop, UV_RUN_ONCE);
    }
    g_active = prev;
    size_t failed = 0;
    for (kdh_task_t *t = s->head; t; t = t->next)
        failed += t->rc != KDH_OK;
    return failed;
}

void kdh_sched_free(kdh_sched_t *s)
{
    if (!s)
        return;
    kdh_task_t *t = s->head;
    while (t) {
        kdh_task_t *next = t->next;
        if (t->started && !t->done) {
            /* its stack still holds live frames (and pointers to them may be in the loop):
             * keep the memory rather than let a later callback write into freed pages */
            t = next;
            continue;
        }
#ifdef KDH_TASK_ASAN
        /* frames left poisoned on this stack must not leak into a later mapping */
        ASAN_UNPOISON_MEMORY_REGION(t->stack, t->stack_size);
#endif
        munmap(t->map, t->map_len);
        free(t);
        t = next;
    }
    free(s);
}

void kdh_task_wait(uv_loop_t *loop)
{
    kdh_sched_t *s = g_active;
    if (s && s->current && s->loop == loop) {
        yield(s, s->current);
        return;
    }
    uv_run(loop, UV_RUN_ONCE);
}

typedef struct sleep_wait {
    int fired, closed;
} sleep_wait_t;

static void sleep_fired(uv_timer_t *t)
{
    ((sleep_wait_t *)t->data)->fired = 1;
}

static void sleep_closed(uv_handle_t *h)
{
    ((sleep_wait_t *)h->data)->closed = 1;
}

void kdh_task_sleep(unsigned ms)
{
    kdh_sched_t *s = g_active;
    if (!s || !s->current) {
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return;
    }
    sleep_wait_t w = {0, 0};
    uv_timer_t t;
    uv_timer_init(s->loop, &t);
    t.data = &w;
    uv_timer_start(&t, sleep_fired, ms, 0);
    while (!w.fired)
        yield(s, s->current);
    /* t lives on this task's stack: the loop must be done with it before the frame goes */
    uv_close((uv_handle_t *)&t, sleep_closed);
    while (!w.closed)
        yield(s, s->current);
}

kdh_task_t *kdh_task_self(void)
{
    return g_active ? g_active->current : NULL;
}

const char *kdh_task_name(const kdh_task_t *t) { return t->name; }
int kdh_task_done(const kdh_task_t *t) { return t->done; }
unsigned long long kdh_task_resumes(const kdh_task_t *t) { return t->resumes; }
size_t kdh_task_stack_size(const kdh_task_t *t) { return t->stack_size; }

int kdh_task_result(const kdh_task_t *t, const kdh_err_t **err)
{
    if (err)
        *err = &t->err;
    return t->rc;
}

/* Reads bytes ASan may hold as redzones of frames still live on a waiting task's stack. */
NO_ASAN size_t kdh_task_stack_used(const kdh_task_t *t)
{
    const volatile uint8_t *p = t->stack;
    size_t i = 0;
    while (i < t->stack_size && p[i] == PAINT)
        i++;
    return t->stack_size - i;
}
