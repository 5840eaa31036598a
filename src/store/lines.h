/* lines.h: a bounded line reader over a file descriptor. Lines longer than KDH_STORE_LINE_MAX are
 * reported as too long and skipped to their end, so a damaged file never causes an unbounded
 * allocation; a last line without '\n' is reported as incomplete. Internal to kdh_store. */
#ifndef KDH_STORE_LINES_H
#define KDH_STORE_LINES_H

#include <stddef.h>
#include <stdint.h>

typedef struct kdh_lines {
    int fd;
    char *buf;
    size_t cap, start, end;
    int eof;
    uint64_t lineno; /* 1-based number of the line last returned */
    uint64_t left;   /* bytes still to be read from fd: the file ends there for this reader */
} kdh_lines_t;

enum { KDH_LINE_WHOLE = 0, KDH_LINE_TORN = 1, KDH_LINE_TOOLONG = 2 };

/* Reads fd from its current offset to its end. */
int kdh_lines_init(kdh_lines_t *lr, int fd);
/* Reads no more than bytes from fd (its size at some moment, while another thread appends). */
void kdh_lines_limit(kdh_lines_t *lr, uint64_t bytes);
void kdh_lines_free(kdh_lines_t *lr);
/* 1 with a line in *line and *len (NUL-terminated, no '\n') and its state, 0 at end, <0 on a read error. */
int kdh_lines_next(kdh_lines_t *lr, char **line, size_t *len, int *state);

#endif
