/* serial_open.c: opening a serial device. libserialport first (real COM ports, USB adapters);
 * when it cannot handle the device (pseudo-terminals: no sysfs entry and no modem-control
 * ioctls, see platform notes) the same path is driven with plain termios instead. Both end
 * with a non-blocking raw 8N1 fd, no flow control, both buffers flushed. */
#include "transport_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libserialport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

/* One actionable line for an errno met while opening `path`. */
static int open_error(const char *path, int e, kdh_err_t *err)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
    case ENODEV:
    case ENXIO:
        return kdh_err_set(err, KDH_ENOTFOUND, "%s: no such device; list ports with ls /dev/serial/by-id",
                           path);
    case EACCES:
    case EPERM:
        return kdh_err_set(err, KDH_EIO,
                           "%s: permission denied; add your user to the dialout group "
                           "(sudo usermod -aG dialout $USER, then log in again)", path);
    case EBUSY:
    case EWOULDBLOCK:
        return kdh_err_set(err, KDH_EBUSY, "%s: busy, another program holds it; find it with fuser -v %s",
                           path, path);
    case EIO:
        return kdh_err_set(err, KDH_ENOTFOUND,
                           "%s: no hardware answers behind this device node; list ports with ls /dev/serial/by-id",
                           path);
    default:
        return kdh_err_set(err, KDH_EIO, "%s: cannot open: %s", path, strerror(e));
    }
}

static speed_t baud_constant(unsigned baud)
{
    switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    default: return B115200;
    }
}

/* Settings both backends need beyond 8N1: non-blocking, and VMIN=1/VTIME=0 so that a read
 * with nothing pending fails with EAGAIN and a read of 0 bytes means the line hung up
 * (with VMIN=0 the tty returns 0 for "no data", which would hide an unplug). The advisory
 * lock keeps two kdharvest processes off one port. */
static int finish_fd(struct kdh_transport *t, int fd, kdh_err_t *err)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return kdh_err_set(err, KDH_EIO, "%s: cannot make the port non-blocking: %s", t->name, strerror(errno));
    struct termios tio;
    if (tcgetattr(fd, &tio) < 0)
        return kdh_err_set(err, KDH_EIO, "%s: not a serial device (%s)", t->name, strerror(errno));
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &tio) < 0)
        return kdh_err_set(err, KDH_EIO, "%s: cannot set the read mode: %s", t->name, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0)
        return open_error(t->name, errno, err);
    return KDH_OK;
}

static int open_termios(struct kdh_transport *t, unsigned baud, kdh_err_t *err)
{
    int fd = open(t->name, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return open_error(t->name, errno, err);
    int rc;
    struct termios tio;
    if (!isatty(fd) || tcgetattr(fd, &tio) < 0) {
        rc = kdh_err_set(err, KDH_EINVAL, "%s: not a serial device (a tty was expected)", t->name);
        goto fail;
    }
    cfmakeraw(&tio);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB | CRTSCTS);
    tio.c_cflag |= CS8 | CLOCAL | CREAD;
    tio.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    cfsetispeed(&tio, baud_constant(baud));
    cfsetospeed(&tio, baud_constant(baud));
    if (tcsetattr(fd, TCSANOW, &tio) < 0) {
        rc = kdh_err_set(err, KDH_EIO, "%s: cannot configure the port: %s", t->name, strerror(errno));
        goto fail;
    }
    /* Stale bytes in a pty (or a UART FIFO) from an earlier session would corrupt framing. */
    tcflush(fd, TCIOFLUSH);
    if ((rc = finish_fd(t, fd, err)) != KDH_OK)
        goto fail;
    t->kind = KDH_TRANSPORT_TERMIOS;
    t->u.serial.port = NULL;
    t->u.serial.fd = fd;
    return KDH_OK;
fail:
    close(fd);
    return rc;
}

static int sp_config_error(struct kdh_transport *t, const char *what, kdh_err_t *err)
{
    char *m = sp_last_error_message();
    int rc = kdh_err_set(err, KDH_EIO, "%s: cannot set %s: %s", t->name, what, m ? m : "unknown error");
    sp_free_error_message(m);
    return rc;
}

/* Returns KDH_OK with the port open, KDH_EUNSUPPORTED when libserialport cannot drive this
 * device (the caller falls back to termios), or another error. */
static int open_libserialport(struct kdh_transport *t, unsigned baud, kdh_err_t *err)
{
    struct sp_port *port = NULL;
    enum sp_return r = sp_get_port_by_name(t->name, &port);
    if (r == SP_ERR_ARG)
        return KDH_EUNSUPPORTED; /* not a device it knows in sysfs: pseudo-terminal and the like */
    if (r != SP_OK)
        return kdh_err_set(err, KDH_ENOMEM, "%s: libserialport failed (%d)", t->name, (int)r);
    r = sp_open(port, SP_MODE_READ_WRITE);
    if (r != SP_OK) {
        int e = sp_last_error_code();
        sp_free_port(port);
        if (e == ENOTTY)
            return KDH_EUNSUPPORTED; /* the TIOCMGET modem-control ioctl is missing (ptys) */
        return open_error(t->name, e, err);
    }
    int rc = KDH_OK;
    if (sp_set_baudrate(port, (int)baud) != SP_OK)
        rc = sp_config_error(t, "the baud rate", err);
    else if (sp_set_bits(port, 8) != SP_OK)
        rc = sp_config_error(t, "8 data bits", err);
    else if (sp_set_parity(port, SP_PARITY_NONE) != SP_OK)
        rc = sp_config_error(t, "no parity", err);
    else if (sp_set_stopbits(port, 1) != SP_OK)
        rc = sp_config_error(t, "1 stop bit", err);
    else if (sp_set_flowcontrol(port, SP_FLOWCONTROL_NONE) != SP_OK)
        rc = sp_config_error(t, "no flow control", err);
    else if (sp_flush(port, SP_BUF_BOTH) != SP_OK)
        rc = sp_config_error(t, "(flush) the buffers", err);
    int fd = -1;
    if (rc == KDH_OK && sp_get_port_handle(port, &fd) != SP_OK)
        rc = sp_config_error(t, "(get) the port handle", err);
    if (rc == KDH_OK)
        rc = finish_fd(t, fd, err);
    if (rc != KDH_OK) {
        sp_close(port);
        sp_free_port(port);
        return rc;
    }
    t->kind = KDH_TRANSPORT_SERIAL;
    t->u.serial.port = port;
    t->u.serial.fd = fd;
    return KDH_OK;
}

static int is_pty(const struct stat *st)
{
    /* UNIX98 pty slaves use majors 136..143 (Documentation/admin-guide/devices.txt). */
    return S_ISCHR(st->st_mode) && major(st->st_rdev) >= 136 && major(st->st_rdev) <= 143;
}

int kdh__transport_serial_open_fd(struct kdh_transport *t, const char *path, unsigned baud, int quiet,
                                  kdh_err_t *err)
{
    int rc;
    /* Debian's libserialport 0.1.1 accepts only /dev/<name> paths, not symlinks such as
     * /dev/serial/by-id/..., so the link is resolved here. */
    char real[PATH_MAX];
    if (!realpath(path, real))
        return open_error(path, errno, err);
    snprintf(t->name, sizeof t->name, "%s", real);
    struct stat st;
    if (stat(real, &st) < 0)
        return open_error(path, errno, err);
    if (!S_ISCHR(st.st_mode))
        return kdh_err_set(err, KDH_EINVAL, "%s: not a serial device (a character device was expected)", path);

    rc = open_libserialport(t, baud, err);
    if (rc == KDH_EUNSUPPORTED) {
        rc = open_termios(t, baud, err);
        if (rc == KDH_OK && !quiet)
            kdh__transport_notice(t, "%s: %s; libserialport cannot drive it, using plain termios",
                                  t->name, is_pty(&st) ? "pseudo-terminal" : "device unknown to sysfs");
    }
    return rc;
}

int kdh__transport_open_serial(struct kdh_transport *t, const char *path, unsigned baud, kdh_err_t *err)
{
    int rc = kdh_transport_check_baud(baud, err);
    if (rc != KDH_OK)
        return rc;
    snprintf(t->u.serial.path, sizeof t->u.serial.path, "%s", path);
    t->u.serial.baud = baud;
    if ((rc = kdh__transport_serial_open_fd(t, path, baud, 0, err)) != KDH_OK)
        return rc;
    return kdh__transport_serial_start(t, err);
}
