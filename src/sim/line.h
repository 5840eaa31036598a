/* line.h: serial-line emulation for kdsim: a token bucket per direction that paces bytes at a
 * baud rate (8N1: 10 bits per byte, so 115200 baud = 11,520 bytes/s), and a byte FIFO. Pure:
 * the caller passes a monotonic "now" in nanoseconds (uv_hrtime in kdsim, a fake clock in tests). */
#ifndef KDSIM_LINE_H
#define KDSIM_LINE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sim_bucket {
    uint64_t rate;     /* bytes per second; 0 = unlimited */
    uint64_t credit;   /* byte-nanoseconds-per-second units: one byte costs 1e9 */
    uint64_t cap;      /* burst limit in the same units */
    uint64_t last_ns;
} sim_bucket_t;

/* Bytes per second carried by an 8N1 line at baud. */
static inline uint64_t sim_line_bytes_per_s(uint32_t baud)
{
    return baud / 10u;
}

/* burst: bytes the line may send back to back after being idle (a UART FIFO is 16). */
void sim_bucket_init(sim_bucket_t *b, uint64_t bytes_per_s, uint32_t burst, uint64_t now_ns);
/* The line has had nothing to send up to now_ns (call it before queueing into an empty FIFO):
 * credit saved up while idle is limited to the burst. */
void sim_bucket_idle(sim_bucket_t *b, uint64_t now_ns);
/* The same when the data was ready at ready_ns (<= now_ns) and the line may have had nothing
 * to send only since then: credit from the time the data waited is kept (a UART sends the next
 * byte of data already in its FIFO at once), credit from before it was ready is not. */
void sim_bucket_idle_since(sim_bucket_t *b, uint64_t now_ns, uint64_t ready_ns);
/* Whole bytes that may go out at now_ns while the line is busy. Credit is computed from elapsed
 * time, never from a fixed amount per tick, and is not capped while busy: a late timer tick
 * sends what the line would have carried meanwhile, so scheduling delays do not lower the rate. */
size_t sim_bucket_avail(sim_bucket_t *b, uint64_t now_ns);
void sim_bucket_consume(sim_bucket_t *b, size_t n);
/* When n whole bytes may go out (the bucket's clock), n > 0; the line's time, not the tick's. */
uint64_t sim_bucket_ready_ns(const sim_bucket_t *b, size_t n);
/* Nanoseconds n bytes take on the line. */
uint64_t sim_bucket_duration_ns(const sim_bucket_t *b, size_t n);

/* A byte FIFO of fixed capacity. */
typedef struct sim_fifo {
    uint8_t *buf;
    size_t cap, head, len;
} sim_fifo_t;

int sim_fifo_init(sim_fifo_t *f, size_t cap);
void sim_fifo_free(sim_fifo_t *f);
/* Appends up to n bytes; returns how many fitted. */
size_t sim_fifo_push(sim_fifo_t *f, const uint8_t *p, size_t n);
/* Contiguous bytes at the head (may be fewer than len when the data wraps). */
size_t sim_fifo_peek(const sim_fifo_t *f, const uint8_t **p);
void sim_fifo_pop(sim_fifo_t *f, size_t n);

#endif
