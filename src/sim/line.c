/* line.c: token bucket and byte FIFO of kdsim's serial-line emulation (see line.h). */
#include "line.h"

#include <stdlib.h>
#include <string.h>

#define NS 1000000000ull

void sim_bucket_init(sim_bucket_t *b, uint64_t bytes_per_s, uint32_t burst, uint64_t now_ns)
{
    b->rate = bytes_per_s;
    b->cap = (uint64_t)(burst ? burst : 1) * NS;
    b->credit = 0;
    b->last_ns = now_ns;
}

static void refill(sim_bucket_t *b, uint64_t now_ns)
{
    if (now_ns <= b->last_ns)
        return;
    uint64_t dt = now_ns - b->last_ns;
    /* keeps dt * rate far from overflow; a minute of backlog is more than any line holds */
    if (dt > 60 * NS)
        dt = 60 * NS;
    b->credit += dt * b->rate;
    if (b->credit > 60 * NS * b->rate)
        b->credit = 60 * NS * b->rate;
    b->last_ns = now_ns;
}

void sim_bucket_idle(sim_bucket_t *b, uint64_t now_ns)
{
    refill(b, now_ns);
    if (b->credit > b->cap)
        b->credit = b->cap;
}

void sim_bucket_idle_since(sim_bucket_t *b, uint64_t now_ns, uint64_t ready_ns)
{
    refill(b, now_ns);
    uint64_t waited = ready_ns < now_ns ? now_ns - ready_ns : 0;
    if (waited > 60 * NS)
        waited = 60 * NS;
    uint64_t cap = b->cap + waited * b->rate;
    if (b->credit > cap)
        b->credit = cap;
}

size_t sim_bucket_avail(sim_bucket_t *b, uint64_t now_ns)
{
    if (b->rate == 0)
        return SIZE_MAX;
    refill(b, now_ns);
    return (size_t)(b->credit / NS);
}

void sim_bucket_consume(sim_bucket_t *b, size_t n)
{
    if (b->rate == 0)
        return;
    uint64_t c = (uint64_t)n * NS;
    b->credit = c > b->credit ? 0 : b->credit - c;
}

uint64_t sim_bucket_ready_ns(const sim_bucket_t *b, size_t n)
{
    if (b->rate == 0)
        return b->last_ns;
    uint64_t need = (uint64_t)n * NS;
    if (need <= b->credit)
        return b->last_ns;
    return b->last_ns + (need - b->credit + b->rate - 1) / b->rate;
}

uint64_t sim_bucket_duration_ns(const sim_bucket_t *b, size_t n)
{
    return b->rate ? (uint64_t)n * NS / b->rate : 0;
}

int sim_fifo_init(sim_fifo_t *f, size_t cap)
{
    memset(f, 0, sizeof *f);
    f->buf = malloc(cap);
    if (!f->buf)
        return -1;
    f->cap = cap;
    return 0;
}

void sim_fifo_free(sim_fifo_t *f)
{
    free(f->buf);
    memset(f, 0, sizeof *f);
}

size_t sim_fifo_push(sim_fifo_t *f, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n && f->len < f->cap) {
        size_t tail = (f->head + f->len) % f->cap;
        size_t room = f->cap - f->len;
        size_t run = f->cap - tail;
        if (run > room)
            run = room;
        if (run > n - done)
            run = n - done;
        memcpy(f->buf + tail, p + done, run);
        f->len += run;
        done += run;
    }
    return done;
}

size_t sim_fifo_peek(const sim_fifo_t *f, const uint8_t **p)
{
    *p = f->buf + f->head;
    size_t run = f->cap - f->head;
    return f->len < run ? f->len : run;
}

void sim_fifo_pop(sim_fifo_t *f, size_t n)
{
    if (n > f->len)
        n = f->len;
    f->head = (f->head + n) % f->cap;
    f->len -= n;
    if (f->len == 0)
        f->head = 0;
}
