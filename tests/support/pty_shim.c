/* pty_shim.c: test-only interposer so that libserialport 0.1.1 accepts /dev/pts/N. Functions
 * defined in the executable take precedence over libc for calls made from libserialport.so:
 *  - lstat/__lxstat and readlink: /sys/class/tty/pts/N does not exist, so it is faked as a
 *    symlink to a virtual tty device (libserialport only reads the link text);
 *  - ioctl: the pty driver has no modem-control ioctls (TIOCMGET/TIOCMSET/TIOCMBIS/TIOCMBIC
 *    fail with ENOTTY); they are answered as if DSR, CTS and CD were up.
 * Anything else is passed to the real libc function found with dlsym(RTLD_NEXT). */
#include "pty_shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static unsigned shim_hits;

unsigned kdh_pty_shim_hits(void)
{
    return shim_hits;
}

static const char sys_pts[] = "/sys/class/tty/pts/";

static int is_fake_sysfs(const char *path)
{
    return path && strncmp(path, sys_pts, sizeof sys_pts - 1) == 0 && path[sizeof sys_pts - 1] != '\0';
}

static int fake_lstat(struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFLNK | 0777;
    shim_hits++;
    return 0;
}

int __lxstat(int ver, const char *path, struct stat *st);
int __lxstat(int ver, const char *path, struct stat *st)
{
    if (is_fake_sysfs(path))
        return fake_lstat(st);
    int (*real)(int, const char *, struct stat *) =
        (int (*)(int, const char *, struct stat *))dlsym(RTLD_NEXT, "__lxstat");
    if (real)
        return real(ver, path, st);
    return lstat(path, st);
}

int lstat(const char *path, struct stat *st)
{
    if (is_fake_sysfs(path))
        return fake_lstat(st);
    int (*real)(const char *, struct stat *) = (int (*)(const char *, struct stat *))dlsym(RTLD_NEXT, "lstat");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(path, st);
}

ssize_t readlink(const char *path, char *buf, size_t size)
{
    if (is_fake_sysfs(path)) {
        static const char target[] = "../../devices/virtual/tty/ptmx";
        size_t n = sizeof target - 1 < size ? sizeof target - 1 : size;
        memcpy(buf, target, n);
        shim_hits++;
        return (ssize_t)n;
    }
    ssize_t (*real)(const char *, char *, size_t) =
        (ssize_t (*)(const char *, char *, size_t))dlsym(RTLD_NEXT, "readlink");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(path, buf, size);
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int (*real)(int, unsigned long, ...) = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    int r = real(fd, request, arg);
    if (r < 0 && errno == ENOTTY && isatty(fd)) {
        switch (request) {
        case TIOCMGET:
            if (arg)
                *(int *)arg = TIOCM_DSR | TIOCM_CTS | TIOCM_CAR;
            shim_hits++;
            return 0;
        case TIOCMSET:
        case TIOCMBIS:
        case TIOCMBIC:
            shim_hits++;
            return 0;
        default:
            break;
        }
    }
    return r;
}
