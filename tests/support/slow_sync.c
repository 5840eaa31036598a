/* slow_sync.c: a slow disk for chosen files, preloaded into a process under test
 * (LD_PRELOAD=libkdh_slow_sync.so). fsync and fdatasync of a descriptor whose path (read from
 * /proc/self/fd/N) matches one of the patterns sleep first, as a sync on a busy disk does; every
 * other file syncs at full speed, so a test can slow the run's periodic files and leave alone
 * those whose sync is on the hit path on purpose (the journal). Environment:
 *   KDH_SLOW_SYNC_PATHS  fnmatch patterns separated by ':' ("*" matches '/' too); unset: none
 *   KDH_SLOW_SYNC_MS     the delay (default 2500)
 *   KDH_SLOW_SYNC_WHEN   a path: slow only while that file exists (unset: always), so a test can
 *                        turn the slow disk on once the process is where it wants it
 *   KDH_SLOW_SYNC_LOG    a file that gets one line "PATH\n" per slowed call */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*sync_fn)(int);

static sync_fn real_fsync, real_fdatasync;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void find_real(void)
{
    real_fsync = (sync_fn)dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (sync_fn)dlsym(RTLD_NEXT, "fdatasync");
}

static int matches(const char *path)
{
    const char *list = getenv("KDH_SLOW_SYNC_PATHS");
    while (list && *list) {
        const char *end = strchr(list, ':');
        size_t n = end ? (size_t)(end - list) : strlen(list);
        char pat[512];
        if (n < sizeof pat) {
            memcpy(pat, list, n);
            pat[n] = '\0';
            if (fnmatch(pat, path, 0) == 0)
                return 1;
        }
        list = end ? end + 1 : NULL;
    }
    return 0;
}

static int slow_now(void)
{
    const char *when = getenv("KDH_SLOW_SYNC_WHEN");
    return !when || access(when, F_OK) == 0;
}

static void note(const char *path)
{
    const char *log = getenv("KDH_SLOW_SYNC_LOG");
    if (!log)
        return;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char line[4200];
    int n = snprintf(line, sizeof line, "%s\n", path);
    if (n > 0 && (size_t)n < sizeof line)
        (void)!write(fd, line, (size_t)n); /* one write per line: O_APPEND keeps lines whole */
    close(fd);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The delay before a sync of fd, when its file is one of the slow ones. */
static void maybe_slow(int fd)
{
    int saved = errno;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n > 0) {
        path[n] = '\0';
        if (matches(path) && slow_now()) {
            note(path);
            const char *ms = getenv("KDH_SLOW_SYNC_MS");
            sleep_ms(ms ? strtol(ms, NULL, 10) : 2500);
        }
    }
    errno = saved;
}

int fsync(int fd)
{
    pthread_once(&once, find_real);
    maybe_slow(fd);
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    pthread_once(&once, find_real);
    maybe_slow(fd);
    return real_fdatasync(fd);
}
