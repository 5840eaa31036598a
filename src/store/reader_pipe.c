/* reader_pipe.c: events.jsonl on a helper thread (see reader_pipe.h). Ten million events take
 * seconds to split and scan; on a machine with a second core that work overlaps with the report's
 * aggregation instead of adding to it. Batches of parsed events pass through a small ring, so memory
 * stays bounded whatever the file size. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/common.h"
#include "lines.h"
#include "reader_pipe.h"
#include "store_int.h"

#define BATCH 32768
#define RING 4

typedef struct item {
    kdh_store_event_t ev;
    uint64_t lineno;
    size_t off, len; /* raw line (slow) or src text (fast), in the arena */
    int state, fast, has_src;
} item_t;

typedef struct batch {
    item_t items[BATCH]; /* about 4 MiB: a batch outlasts a scheduler time slice under load */
    size_t n;
    char *arena;
    size_t used, cap;
} batch_t;

typedef struct pipe {
    int fd;
    uint64_t limit; /* bytes of fd to read (kdh_lines_limit) */
    pthread_mutex_t mu;
    pthread_cond_t can_fill, can_drain;
    batch_t *ring[RING];
    int full[RING];
    uint64_t filled, drained; /* batches handed over and consumed */
    int eof, err, stop;
} pipe_t;

/* Copies len bytes plus a NUL into the batch's arena; returns the offset or (size_t)-1. */
static size_t stash(batch_t *b, const char *s, size_t len)
{
    if (b->used + len + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1u << 16;
        while (ncap < b->used + len + 1)
            ncap *= 2;
        char *n = realloc(b->arena, ncap);
        if (!n)
            return (size_t)-1;
        b->arena = n;
        b->cap = ncap;
    }
    size_t off = b->used;
    memcpy(b->arena + off, s, len);
    b->arena[off + len] = '\0';
    b->used += len + 1;
    return off;
}

static void *producer(void *arg)
{
    pipe_t *p = arg;
    kdh_lines_t lr;
    char *line;
    size_t len;
    int state, r = 1, err = 0;
    memset(&lr, 0, sizeof lr);
    if (kdh_lines_init(&lr, p->fd) != KDH_OK) {
        err = KDH_ENOMEM;
        r = 0;
    }
    kdh_lines_limit(&lr, p->limit);
    while (r == 1) {
        pthread_mutex_lock(&p->mu);
        unsigned slot = (unsigned)(p->filled % RING);
        while (p->full[slot] && !p->stop)
            pthread_cond_wait(&p->can_fill, &p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        batch_t *b = p->ring[slot];
        b->n = 0;
        b->used = 0;
        while (b->n < BATCH && (r = kdh_lines_next(&lr, &line, &len, &state)) == 1) {
            item_t *it = &b->items[b->n];
            const char *src = NULL;
            size_t src_len = 0;
            it->lineno = lr.lineno;
            it->state = state;
            it->has_src = 0;
            it->fast = state != KDH_LINE_TOOLONG && len > 0 && kdh_store_fast_event(line, len, &it->ev, &src, &src_len);
            if (it->fast && src) {
                it->off = stash(b, src, src_len);
                it->len = src_len;
                it->has_src = 1;
            } else if (!it->fast) {
                it->off = stash(b, line, len);
                it->len = len;
            }
            if ((it->fast && src) || !it->fast) {
                if (it->off == (size_t)-1) {
                    err = KDH_ENOMEM;
                    r = 0;
                    break;
                }
            }
            b->n++;
        }
        if (r < 0)
            err = KDH_EIO;
        pthread_mutex_lock(&p->mu);
        p->full[slot] = 1;
        p->filled++;
        pthread_cond_signal(&p->can_drain);
        pthread_mutex_unlock(&p->mu);
    }
    /* End of file, an error, or stopped by the consumer: it must not wait for more. */
    pthread_mutex_lock(&p->mu);
    p->eof = 1;
    if (!p->err)
        p->err = err;
    pthread_cond_signal(&p->can_drain);
    pthread_mutex_unlock(&p->mu);
    if (lr.buf)
        kdh_lines_free(&lr);
    return NULL;
}

/* The same lines on the caller's thread: no thread could be started. */
static int direct(int fd, uint64_t limit, kdh_pipe_line_fn fn, void *ud)
{
    kdh_lines_t lr;
    char *line;
    size_t len;
    int state, r, rc = 0;
    if (kdh_lines_init(&lr, fd) != KDH_OK)
        return KDH_ENOMEM;
    kdh_lines_limit(&lr, limit);
    while ((r = kdh_lines_next(&lr, &line, &len, &state)) == 1) {
        kdh_store_event_t ev;
        const char *src = NULL;
        size_t src_len = 0;
        if (state != KDH_LINE_TOOLONG && len > 0 && kdh_store_fast_event(line, len, &ev, &src, &src_len)) {
            if (src) {
                ((char *)src)[src_len] = '\0'; /* inside line, which is ours to change */
                ev.src = src;
            }
            rc = fn(ud, line, len, state, lr.lineno, &ev);
        } else {
            rc = fn(ud, line, len, state, lr.lineno, NULL);
        }
        if (rc != 0)
            break;
    }
    kdh_lines_free(&lr);
    if (rc == 0 && r < 0)
        rc = KDH_EIO;
    return rc;
}

int kdh_store_pipe_events(int fd, uint64_t limit, kdh_pipe_line_fn fn,
                          void (*ahead)(void *, const kdh_store_event_t *), void *ahead_ud, void *ud)
{
    pipe_t *p = calloc(1, sizeof *p);
    if (!p)
        return direct(fd, limit, fn, ud);
    p->fd = fd;
    p->limit = limit;
    for (int i = 0; i < RING; i++) {
        p->ring[i] = calloc(1, sizeof *p->ring[i]);
        if (!p->ring[i]) {
            for (int j = 0; j < i; j++)
                free(p->ring[j]);
            free(p);
            return direct(fd, limit, fn, ud);
        }
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->can_fill, NULL);
    pthread_cond_init(&p->can_drain, NULL);
    pthread_t th;
    int rc = 0, started = pthread_create(&th, NULL, producer, p) == 0;
    if (!started)
        rc = direct(fd, limit, fn, ud);
    while (started) {
        pthread_mutex_lock(&p->mu);
        unsigned slot = (unsigned)(p->drained % RING);
        while (!p->full[slot] && !p->eof)
            pthread_cond_wait(&p->can_drain, &p->mu);
        int have = p->full[slot];
        pthread_mutex_unlock(&p->mu);
        if (!have)
            break; /* end of file, every batch drained */
        batch_t *b = p->ring[slot];
        if (ahead) /* the first lines of the batch: their hint time passed while it was being filled */
            for (size_t i = 0; i < b->n && i < KDH_PIPE_AHEAD; i++)
                if (b->items[i].fast)
                    ahead(ahead_ud, &b->items[i].ev);
        for (size_t i = 0; i < b->n && rc == 0; i++) {
            item_t *it = &b->items[i];
            if (ahead && i + KDH_PIPE_AHEAD < b->n && b->items[i + KDH_PIPE_AHEAD].fast)
                ahead(ahead_ud, &b->items[i + KDH_PIPE_AHEAD].ev);
            if (it->fast) {
                it->ev.src = it->has_src ? b->arena + it->off : NULL;
                rc = fn(ud, NULL, 0, it->state, it->lineno, &it->ev);
            } else {
                rc = fn(ud, b->arena + it->off, it->len, it->state, it->lineno, NULL);
            }
        }
        pthread_mutex_lock(&p->mu);
        p->full[slot] = 0;
        p->drained++;
        if (rc != 0)
            p->stop = 1;
        pthread_cond_signal(&p->can_fill);
        pthread_mutex_unlock(&p->mu);
        if (rc != 0)
            break;
    }
    if (started) {
        pthread_join(th, NULL);
        if (rc == 0 && p->err)
            rc = p->err;
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->can_fill);
    pthread_cond_destroy(&p->can_drain);
    for (int i = 0; i < RING; i++) {
        free(p->ring[i]->arena);
        free(p->ring[i]);
    }
    free(p);
    return rc;
}
