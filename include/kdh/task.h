/* kdh/task.h: cooperative tasks on one libuv loop. Each task is a coroutine with its own stack
 * (ucontext), so code written as a straight sequence of blocking wire steps (the harvest
 * engine, the target model's drivers) runs unchanged for many targets on one loop and one
 * thread: every wait in that code goes through kdh_task_wait(), which inside a task hands
 * control back to the scheduler instead of running the loop itself.
 *
 * Scheduling is round robin: the scheduler resumes every live task once (in spawn order), each
 * runs until its next kdh_task_wait() or its end, then the scheduler runs the loop once
 * (UV_RUN_ONCE) and starts the next round. A waiting task re-checks its own condition when
 * resumed, so a wait condition must be one that loop events (I/O, timers, signals, close
 * callbacks) make true, exactly as with a loop spun by hand. */
#ifndef KDH_TASK_H
#define KDH_TASK_H

#include <stddef.h>
#include <uv.h>

#include "kdh/common.h"

typedef struct kdh_sched kdh_sched_t;
typedef struct kdh_task kdh_task_t;

/* A task's body; its return value (KDH_OK or KDH_E*) and err become the task's result. */
typedef int (*kdh_task_fn)(void *arg, kdh_err_t *err);

/* Default usable stack per task (a PROT_NONE guard page lies below it). The deepest path a
 * harvest task takes is attach: symbol path, PE headers, PDB stream directory and symbol
 * records, then the unwinder per hit; the stack-use report of the daemon test measures it
 * (see kdh_task_stack_used). Sanitizer builds give frames redzones, hence the larger size. */
#if defined(__SANITIZE_ADDRESS__)
#define KDH_TASK_ASAN 1 /* built with AddressSanitizer (gcc's macro, clang's feature test) */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KDH_TASK_ASAN 1
#endif
#endif
#ifdef KDH_TASK_ASAN
#define KDH_TASK_STACK_DEFAULT (1024u * 1024u)
#else
#define KDH_TASK_STACK_DEFAULT (256u * 1024u)
#endif

int kdh_sched_new(kdh_sched_t **out, uv_loop_t *loop, kdh_err_t *err);

/* Adds a task that first runs at the next round of kdh_sched_run. stack_size 0 means
 * KDH_TASK_STACK_DEFAULT; it is rounded up to whole pages. name is copied (for messages). */
int kdh_sched_spawn(kdh_sched_t *s, const char *name, kdh_task_fn fn, void *arg, size_t stack_size,
                    kdh_task_t **out, kdh_err_t *err);

/* Runs rounds until every task has ended. Returns how many ended with a result other than
 * KDH_OK. The loop is left as it is (handles the tasks closed may still need one more run). */
size_t kdh_sched_run(kdh_sched_t *s);

/* Frees the scheduler and its tasks (every task must have ended, or never started). */
void kdh_sched_free(kdh_sched_t *s);

/* The one wait primitive: inside a task of a scheduler running on loop, yields until the next
 * round; anywhere else (one-target tools, another loop) runs loop once (UV_RUN_ONCE). */
void kdh_task_wait(uv_loop_t *loop);

/* Sleeps at least ms: inside a task, on a timer of the scheduler's loop while the other tasks
 * run; anywhere else the thread sleeps. For work that polls something the loop does not watch
 * (a libcurl transfer), so that it never holds the loop for its whole duration. */
void kdh_task_sleep(unsigned ms);

/* The task running now, NULL on the scheduler's (or any plain) stack. */
kdh_task_t *kdh_task_self(void);

const char *kdh_task_name(const kdh_task_t *t);
int kdh_task_done(const kdh_task_t *t);
/* The task's result once done (KDH_OK or its error; *err, when asked, points at its message). */
int kdh_task_result(const kdh_task_t *t, const kdh_err_t **err);
/* Times the task was resumed (rounds it took part in). */
unsigned long long kdh_task_resumes(const kdh_task_t *t);
/* Deepest stack use so far, in bytes (stack painted at spawn, scanned for the lowest touched
 * byte), and the usable stack size. */
size_t kdh_task_stack_used(const kdh_task_t *t);
size_t kdh_task_stack_size(const kdh_task_t *t);

#endif
