/* lines.c: bounded line reading for the run store (see lines.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdh/common.h"
#include "lines.h"
#include "store_int.h"

#define CHUNK (256u * 1024u)

int kdh_lines_init(kdh_lines_t *lr, int fd)
{
    memset(lr, 0, sizeof *lr);
    lr->fd = fd;
    lr->cap = KDH_STORE_LINE_MAX + CHUNK + 1;
    lr->buf = malloc(lr->cap);
    lr->left = UINT64_MAX;
    return lr->buf ? KDH_OK : KDH_ENOMEM;
}

void kdh_lines_limit(kdh_lines_t *lr, uint64_t bytes)
{
    lr->left = bytes;
}

void kdh_lines_free(kdh_lines_t *lr)
{
    free(lr->buf);
    lr->buf = NULL;
}

/* Reads more bytes after end; compacts first. Returns bytes read, 0 at EOF, <0 on error. */
static ssize_t fill(kdh_lines_t *lr)
{
    if (lr->start > 0) {
        memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
        lr->end -= lr->start;
        lr->start = 0;
    }
    size_t room = lr->cap - 1 - lr->end;
    if (room > CHUNK)
        room = CHUNK;
    if (room > lr->left)
        room = (size_t)lr->left;
    for (;;) {
        ssize_t n = room ? read(lr->fd, lr->buf + lr->end, room) : 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            lr->end += (size_t)n;
            lr->left -= (uint64_t)n;
        }
        if (n == 0)
            lr->eof = 1;
        return n;
    }
}

int kdh_lines_next(kdh_lines_t *lr, char **line, size_t *len, int *state)
{
    size_t scanned = 0;
    int toolong = 0;
    for (;;) {
        char *base = lr->buf + lr->start;
        size_t have = lr->end - lr->start;
        char *nl = memchr(base + scanned, '\n', have - scanned);
        if (nl) {
            size_t n = (size_t)(nl - base);
            *nl = '\0';
            lr->start += n + 1;
            lr->lineno++;
            *line = base;
            *len = toolong ? 0 : n;
            *state = toolong ? KDH_LINE_TOOLONG : KDH_LINE_WHOLE;
            return 1;
        }
        scanned = have;
        if (have >= KDH_STORE_LINE_MAX) {
            /* Drop what we have of an overlong line and keep looking for its end. */
            toolong = 1;
            lr->start = lr->end;
            scanned = 0;
        }
        if (lr->eof) {
            if (have == 0 && !toolong)
                return 0;
            base = lr->buf + lr->start;
            have = lr->end - lr->start;
            base[have] = '\0';
            lr->start = lr->end;
            lr->lineno++;
            *line = base;
            *len = toolong ? 0 : have;
            *state = toolong ? KDH_LINE_TOOLONG : KDH_LINE_TORN;
            return 1;
        }
        ssize_t r = fill(lr);
        if (r < 0)
            return KDH_EIO;
    }
}
