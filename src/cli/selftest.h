/* selftest.h (internal to kdh_cli): the pieces of `kdharvest selftest-link`: a minimal KD
 * target that answers on the master side of a pty using only the wire codec, and the byte
 * pattern its "memory" holds so the host side can check every byte it reads. */
#ifndef KDH_CLI_SELFTEST_H
#define KDH_CLI_SELFTEST_H

#include <stdint.h>
#include <uv.h>

#include "kdh/common.h"

/* Identity the responder reports in GetVersion (an x64 Windows 10 19041 free build). */
#define KDH_SELFTEST_MAJOR 0x000Fu
#define KDH_SELFTEST_MINOR 19041u
#define KDH_SELFTEST_KERNBASE 0xFFFFF80512340000ull
#define KDH_SELFTEST_MODULE_LIST 0xFFFFF80512A2A270ull
#define KDH_SELFTEST_DEBUGGER_DATA 0xFFFFF80512A00B10ull

/* The byte the responder returns for virtual address a. */
static inline uint8_t kdh_selftest_pattern(uint64_t a)
{
    return (uint8_t)(a * 7u + (a >> 8) * 3u + (a >> 40) + 0x11u);
}

typedef struct kdh_selftest_target kdh_selftest_target_t;

typedef struct kdh_selftest_target_stats {
    uint64_t bytes_in, bytes_out;
    unsigned requests;     /* manipulate requests accepted */
    unsigned duplicates;   /* data packets seen again (ACKed, dropped) */
    unsigned bad_packets;  /* checksum/trailer/size errors answered with RESEND */
    unsigned resets;
} kdh_selftest_target_stats_t;

/* Starts answering on master_fd (non-blocking; stays owned by the caller). */
int kdh_selftest_target_start(kdh_selftest_target_t **out, uv_loop_t *loop, int master_fd, kdh_err_t *err);
/* Stops at once; memory is released when the loop has run the close. */
void kdh_selftest_target_stop(kdh_selftest_target_t *t);
kdh_selftest_target_stats_t kdh_selftest_target_stats(const kdh_selftest_target_t *t);
/* Non-zero once the responder met an I/O error on the master (message in err). */
int kdh_selftest_target_failed(const kdh_selftest_target_t *t, kdh_err_t *err);

#endif
