/* test_task.c: kdh_task's scheduler against orders and counts worked out by hand: tasks resume
 * round robin in spawn order and drop out when they end; 300 tasks each waiting on its own
 * timer all finish, concurrently (far below the sum of their waits); a task's error comes back
 * with its message while the others finish; kdh_task_wait outside a task, or on a loop other
 * than the scheduler's, runs that loop itself; the stack high-water mark sees a 64 KiB frame;
 * a long kdh_task_sleep in one task lets another take many short ones meanwhile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include <cmocka.h>

#include "kdh/task.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A repeating 1 ms timer keeps the loop waking, so every round ends. */
static void tick(uv_timer_t *t)
{
    (*(unsigned *)t->data)++;
}

typedef struct order {
    uv_loop_t *loop;
    char log[256];
    size_t n;
} order_t;

typedef struct stepper {
    order_t *o;
    char id;
    int steps;
} stepper_t;

static int stepper(void *arg, kdh_err_t *err)
{
    stepper_t *s = arg;
    (void)err;
    for (int i = 0; i < s->steps; i++) {
        s->o->log[s->o->n++] = s->id;
        kdh_task_wait(s->o->loop);
    }
    s->o->log[s->o->n++] = (char)(s->id - 'A' + 'a'); /* lower case: ended */
    return KDH_OK;
}

static void test_round_robin(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_t t;
    unsigned ticks = 0;
    uv_timer_init(&loop, &t);
    t.data = &ticks;
    uv_timer_start(&t, tick, 1, 1);
    order_t o = {.loop = &loop};
    stepper_t a = {&o, 'A', 3}, b = {&o, 'B', 1}, c = {&o, 'C', 2};
    kdh_sched_t *s;
    kdh_err_t err = {0};
    assert_int_equal(kdh_sched_new(&s, &loop, &err), KDH_OK);
    kdh_task_t *ta, *tb, *tc;
    assert_int_equal(kdh_sched_spawn(s, "a", stepper, &a, 64 * 1024, &ta, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "b", stepper, &b, 64 * 1024, &tb, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "c", stepper, &c, 64 * 1024, &tc, &err), KDH_OK);
    assert_false(kdh_task_done(ta));
    assert_int_equal(kdh_sched_run(s), 0);
    o.log[o.n] = 0;
    /* round 1: A B C; round 2: A b(ends) C; round 3: A c; round 4: a */
    assert_string_equal(o.log, "ABCAbCAca");
    assert_true(kdh_task_done(ta) && kdh_task_done(tb) && kdh_task_done(tc));
    assert_int_equal(kdh_task_resumes(ta), 4);
    assert_int_equal(kdh_task_resumes(tb), 2);
    assert_int_equal(kdh_task_resumes(tc), 3);
    assert_string_equal(kdh_task_name(tb), "b");
    assert_null(kdh_task_self());
    kdh_sched_free(s);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- many tasks, each waiting on its own timer ---- */
typedef struct sleeper {
    uv_loop_t *loop;
    uv_timer_t timer;
    int fired, closed;
    unsigned ms;
    kdh_task_t *self_seen;
} sleeper_t;

static void sleeper_fire(uv_timer_t *t)
{
    ((sleeper_t *)t->data)->fired = 1;
}

static void sleeper_closed(uv_handle_t *h)
{
    ((sleeper_t *)h->data)->closed = 1;
}

static int sleeper(void *arg, kdh_err_t *err)
{
    sleeper_t *s = arg;
    (void)err;
    s->self_seen = kdh_task_self();
    uv_timer_init(s->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, sleeper_fire, s->ms, 0);
    while (!s->fired)
        kdh_task_wait(s->loop);
    uv_close((uv_handle_t *)&s->timer, sleeper_closed);
    while (!s->closed)
        kdh_task_wait(s->loop);
    return KDH_OK;
}

#define MANY 300

static void test_many_tasks(void **state)
{
    (void)state;
    static sleeper_t sl[MANY];
    static kdh_task_t *tk[MANY];
    memset(sl, 0, sizeof sl);
    uv_loop_t loop;
    uv_loop_init(&loop);
    kdh_sched_t *s;
    kdh_err_t err = {0};
    assert_int_equal(kdh_sched_new(&s, &loop, &err), KDH_OK);
    for (int i = 0; i < MANY; i++) {
        sl[i].loop = &loop;
        sl[i].ms = 100 + (unsigned)(i % 5) * 20; /* 100..180 ms; in sequence that is 42 s */
        assert_int_equal(kdh_sched_spawn(s, "sleeper", sleeper, &sl[i], 32 * 1024, &tk[i], &err), KDH_OK);
    }
    uv_update_time(&loop); /* the timers start in the first round, from now */
    double t0 = now_s();
    assert_int_equal(kdh_sched_run(s), 0);
    double dt = now_s() - t0;
    for (int i = 0; i < MANY; i++) {
        assert_true(sl[i].fired && sl[i].closed);
        assert_ptr_equal(sl[i].self_seen, tk[i]);
        assert_true(kdh_task_done(tk[i]));
        assert_int_equal(kdh_task_result(tk[i], NULL), KDH_OK);
    }
    print_message("%d tasks of 100-180 ms waits: %.3f s on one loop\n", MANY, dt);
    assert_true(dt >= 0.175); /* the longest wait was waited */
    assert_true(dt < 5.0);
    kdh_sched_free(s);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- errors ---- */
static int failing(void *arg, kdh_err_t *err)
{
    uv_loop_t *loop = arg;
    kdh_task_wait(loop);
    return kdh_err_set(err, KDH_ETIMEDOUT, "the target on /dev/ttyX is silent");
}

static int failing_bare(void *arg, kdh_err_t *err)
{
    (void)arg;
    (void)err;
    return KDH_EIO; /* no message: the scheduler names the task */
}

static void test_task_error(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_t t;
    unsigned ticks = 0;
    uv_timer_init(&loop, &t);
    t.data = &ticks;
    uv_timer_start(&t, tick, 1, 1);
    order_t o = {.loop = &loop};
    stepper_t a = {&o, 'A', 4};
    kdh_sched_t *s;
    kdh_err_t err = {0};
    assert_int_equal(kdh_sched_new(&s, &loop, &err), KDH_OK);
    kdh_task_t *ta, *tf, *tb;
    assert_int_equal(kdh_sched_spawn(s, "ok", stepper, &a, 0, &ta, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "bad", failing, &loop, 0, &tf, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "bare", failing_bare, NULL, 0, &tb, &err), KDH_OK);
    assert_int_equal(kdh_task_stack_size(ta), KDH_TASK_STACK_DEFAULT);
    assert_int_equal(kdh_sched_run(s), 2);
    o.log[o.n] = 0;
    assert_string_equal(o.log, "AAAAa"); /* the healthy task went on to its end */
    const kdh_err_t *e;
    assert_int_equal(kdh_task_result(tf, &e), KDH_ETIMEDOUT);
    assert_string_equal(e->msg, "the target on /dev/ttyX is silent");
    assert_int_equal(kdh_task_result(tb, &e), KDH_EIO);
    assert_non_null(strstr(e->msg, "task bare"));
    assert_int_equal(kdh_task_result(ta, NULL), KDH_OK);
    kdh_sched_free(s);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- waits that do not yield ---- */
static void test_wait_outside_task(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sleeper_t sl;
    memset(&sl, 0, sizeof sl);
    uv_timer_init(&loop, &sl.timer);
    sl.timer.data = &sl;
    uv_timer_start(&sl.timer, sleeper_fire, 10, 0);
    int rounds = 0;
    while (!sl.fired && rounds < 1000) {
        kdh_task_wait(&loop); /* no scheduler: runs the loop once, blocking for the timer */
        rounds++;
    }
    assert_true(sl.fired);
    assert_true(rounds <= 2);
    uv_close((uv_handle_t *)&sl.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

typedef struct private_wait {
    order_t *o;
} private_wait_t;

/* Waits 30 ms on a loop of its own: that loop is run right here, the other task does not run
 * meanwhile (the scheduler's loop is not the one waited on). */
static int private_waiter(void *arg, kdh_err_t *err)
{
    private_wait_t *p = arg;
    (void)err;
    p->o->log[p->o->n++] = 'P';
    uv_loop_t mine;
    uv_loop_init(&mine);
    sleeper_t sl;
    memset(&sl, 0, sizeof sl);
    uv_timer_init(&mine, &sl.timer);
    sl.timer.data = &sl;
    uv_timer_start(&sl.timer, sleeper_fire, 30, 0);
    while (!sl.fired)
        kdh_task_wait(&mine);
    uv_close((uv_handle_t *)&sl.timer, NULL);
    uv_run(&mine, UV_RUN_DEFAULT);
    uv_loop_close(&mine);
    p->o->log[p->o->n++] = 'p';
    return KDH_OK;
}

static void test_wait_other_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_t t;
    unsigned ticks = 0;
    uv_timer_init(&loop, &t);
    t.data = &ticks;
    uv_timer_start(&t, tick, 1, 1);
    order_t o = {.loop = &loop};
    stepper_t a = {&o, 'A', 2};
    private_wait_t p = {&o};
    kdh_sched_t *s;
    kdh_err_t err = {0};
    assert_int_equal(kdh_sched_new(&s, &loop, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "a", stepper, &a, 0, NULL, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "p", private_waiter, &p, 0, NULL, &err), KDH_OK);
    assert_int_equal(kdh_sched_run(s), 0);
    o.log[o.n] = 0;
    assert_string_equal(o.log, "APpAa");
    kdh_sched_free(s);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- stack use ---- */
static int deep(void *arg, kdh_err_t *err)
{
    (void)err;
    volatile uint8_t big[64 * 1024];
    for (size_t i = 0; i < sizeof big; i += 512)
        big[i] = (uint8_t)i;
    kdh_task_wait(arg);
    return big[512] == 0 ? KDH_OK : KDH_OK;
}

static int shallow(void *arg, kdh_err_t *err)
{
    (void)err;
    kdh_task_wait(arg);
    return KDH_OK;
}

static void test_stack_used(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_t t;
    unsigned ticks = 0;
    uv_timer_init(&loop, &t);
    t.data = &ticks;
    uv_timer_start(&t, tick, 1, 1);
    kdh_sched_t *s;
    kdh_err_t err = {0};
    assert_int_equal(kdh_sched_new(&s, &loop, &err), KDH_OK);
    kdh_task_t *td, *ts;
    assert_int_equal(kdh_sched_spawn(s, "deep", deep, &loop, 0, &td, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "shallow", shallow, &loop, 100, &ts, &err), KDH_OK);
    assert_true(kdh_task_stack_used(td) < 256); /* not started: only makecontext's entry frame */
    assert_int_equal(kdh_sched_run(s), 0);
    size_t used_deep = kdh_task_stack_used(td), used_shallow = kdh_task_stack_used(ts);
    print_message("stack used: deep %zu, shallow %zu bytes\n", used_deep, used_shallow);
    assert_true(used_deep >= 64 * 1024 && used_deep < kdh_task_stack_size(td));
    assert_true(used_shallow > 0 && used_shallow < 64 * 1024);
    assert_true(kdh_task_stack_size(ts) >= 100 && kdh_task_stack_size(ts) % 4096 == 0); /* whole pages */
    kdh_sched_free(s);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- sleeping ---- */
typedef struct napper {
    order_t *o;
    char id;
    unsigned ms;
    int times;
} napper_t;

static int napper(void *arg, kdh_err_t *err)
{
    napper_t *n = arg;
    (void)err;
    for (int i = 0; i < n->times; i++) {
        kdh_task_sleep(n->ms);
        n->o->log[n->o->n++] = n->id;
    }
    return KDH_OK;
}

/* A 200 ms nap in one task lets the other take its ten 5 ms naps meanwhile. */
static void test_sleep(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    order_t o = {.loop = &loop};
    napper_t longer = {&o, 'L', 200, 1}, shorter = {&o, 's', 5, 10};
    kdh_sched_t *s;
    kdh_err_t err = {0};
    assert_int_equal(kdh_sched_new(&s, &loop, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "long", napper, &longer, 0, NULL, &err), KDH_OK);
    assert_int_equal(kdh_sched_spawn(s, "short", napper, &shorter, 0, NULL, &err), KDH_OK);
    uv_update_time(&loop);
    double t0 = now_s();
    assert_int_equal(kdh_sched_run(s), 0);
    double dt = now_s() - t0;
    o.log[o.n] = 0;
    assert_string_equal(o.log, "ssssssssssL");
    assert_true(dt >= 0.195 && dt < 2.0);
    kdh_sched_free(s);
    assert_int_equal(uv_loop_close(&loop), 0); /* the naps' timers are all closed */
    t0 = now_s();
    kdh_task_sleep(30); /* outside a task: the thread sleeps */
    assert_true(now_s() - t0 >= 0.029);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),     cmocka_unit_test(test_many_tasks),
        cmocka_unit_test(test_task_error),      cmocka_unit_test(test_wait_outside_task),
        cmocka_unit_test(test_wait_other_loop), cmocka_unit_test(test_stack_used),
        cmocka_unit_test(test_sleep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
