/* pty_shim.h: test-only interposer that lets libserialport open pseudo-terminals (it looks for a
 * sysfs entry and modem-control ioctls that ptys lack). Link pty_shim.c into a test executable,
 * never into a library or the daemon. */
#ifndef KDH_PTY_SHIM_H
#define KDH_PTY_SHIM_H

/* Number of calls the shim answered itself (sysfs look-ups faked, ioctls forgiven), so a test
 * can prove the libserialport path really went through it. */
unsigned kdh_pty_shim_hits(void);

#endif
