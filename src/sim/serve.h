/* serve.h: puts kdsim's KD target on a line a host can open: a pseudo-terminal (the slave path is
 * what the host opens as its COM port), a TCP port on 127.0.0.1, or a Unix socket. Emulates the
 * baud rate in both directions, injects the configured faults, and runs the simulated machine
 * from a 1 ms libuv timer.
 *
 * Time mapping: while the target runs, each tick gives the machine (wall time since the last tick)
 * x speed of simulated time, at most 20 ms x speed per tick so a stalled loop does not make the
 * machine leap; while it is stopped the simulated clock stands still, as a real target's does for
 * the debugger. Protocol timeouts (ACK waits, inter-byte gaps) are wall time, like a real line. */
#ifndef KDSIM_SERVE_H
#define KDSIM_SERVE_H

#include <stdint.h>
#include <uv.h>

#include "fault.h"
#include "kdh/common.h"
#include "target.h"

typedef enum { SIM_SERVE_PTY = 0, SIM_SERVE_TCP, SIM_SERVE_UNIX } sim_serve_kind_t;

typedef struct sim_serve_opts {
    sim_serve_kind_t kind;
    int port;            /* TCP: 0 picks a free port (see sim_serve_address) */
    const char *path;    /* Unix socket path; pty: a symlink kept pointing at the current pty, or NULL */
    uint32_t baud;       /* 8N1 baud rate; 0 = no pacing */
    double speed;        /* simulated ns per wall ns while running; <= 0 means 1 */
    const char *faults;  /* fault spec (fault.h) or NULL */
    uint64_t seed;       /* fault seed */
} sim_serve_opts_t;

typedef struct sim_serve_stats {
    uint64_t rx_bytes, tx_bytes; /* bytes that crossed the line in each direction */
    uint64_t rx_overruns;        /* host bytes lost because the receive FIFO was full */
    uint64_t tx_unheard;         /* bytes sent while no host was connected (TCP / Unix) */
    /* Where wall time goes (for benchmarks): emulation inside the machine's run loop; from the
     * host's continue to the next stop being queued (tick wait + emulation); and the line idle
     * in both directions with the target stopped, waiting for the host's next byte. */
    uint64_t run_wall_ns;
    uint64_t resumes, resume_to_stop_ns;
    uint64_t host_waits, host_wait_ns;
    uint64_t host_wait_max_ns;   /* the longest of those waits, the one going on included */
    int connected;               /* a host is connected (always 1 for a pty) */
    sim_fault_stats_t faults;
} sim_serve_stats_t;

typedef struct sim_serve sim_serve_t;

int sim_serve_start(uv_loop_t *loop, sim_target_t *t, const sim_serve_opts_t *o, sim_serve_t **out,
                    kdh_err_t *err);
/* "/dev/pts/N" (or the pty's link path), "tcp:127.0.0.1:PORT" or "unix:PATH". */
const char *sim_serve_address(const sim_serve_t *s);
void sim_serve_stats(const sim_serve_t *s, sim_serve_stats_t *st);
/* The first error of the simulated machine (it then stops running), or NULL. */
const char *sim_serve_error(const sim_serve_t *s);
/* Closes every handle; the object is freed once libuv has closed them (run the loop). */
void sim_serve_close(sim_serve_t *s);

#endif
