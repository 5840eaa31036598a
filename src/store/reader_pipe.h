/* reader_pipe.h: reading events.jsonl on a helper thread. Splitting lines and the fast parse run
 * there; the caller's thread receives every line in file order, as the plain loop would see it, so
 * callbacks and skip notes keep their order and threads never meet in user code. Internal to kdh_store. */
#ifndef KDH_STORE_READER_PIPE_H
#define KDH_STORE_READER_PIPE_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/store.h"

/* One line: fast != NULL when the fast path accepted it (its src, if any, already set); otherwise
 * line holds the raw text (NUL-terminated, modifiable) for the caller to parse. Return non-zero to stop. */
typedef int (*kdh_pipe_line_fn)(void *ud, char *line, size_t len, int state, uint64_t lineno,
                                const kdh_store_event_t *fast);

/* Reads fd to its end, or limit bytes of it (UINT64_MAX: no limit). Returns the first non-zero
 * result of fn, KDH_EIO on a read error, KDH_ENOMEM, or 0. Falls back to reading on the caller's
 * thread when no thread can be started. */
/* ahead (may be NULL) is called with parsed events KDH_PIPE_AHEAD lines before fn gets them. */
#define KDH_PIPE_AHEAD 16
int kdh_store_pipe_events(int fd, uint64_t limit, kdh_pipe_line_fn fn,
                          void (*ahead)(void *, const kdh_store_event_t *), void *ahead_ud, void *ud);

#endif
