/* error.c: one-line error messages carried with their code up to the CLI, which prints them.
 * Library code never prints and never exits. */
#include "kdh/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int(kdh_err_set)(kdh_err_t *err, int code, const char *fmt, ...) /* parentheses: see common.h */
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void kdh_err_clear(kdh_err_t *err)
{
    if (err) {
        err->code = KDH_OK;
        err->msg[0] = '\0';
    }
}

const char *kdh_strerror(int code)
{
    switch (code) {
    case KDH_OK: return "success";
    case KDH_EINVAL: return "invalid argument";
    case KDH_ENOMEM: return "out of memory";
    case KDH_EIO: return "I/O error";
    case KDH_ETIMEDOUT: return "timed out";
    case KDH_EPROTO: return "protocol error";
    case KDH_ECORRUPT: return "corrupt or malformed data";
    case KDH_ENOTFOUND: return "not found";
    case KDH_ENOTCACHED: return "bytes not cached";
    case KDH_ERANGE: return "value out of range";
    case KDH_EUNSUPPORTED: return "not supported";
    case KDH_EHANGUP: return "port or connection closed";
    case KDH_ECANCELED: return "canceled";
    case KDH_EBUSY: return "busy";
    case KDH_ETARGET: return "target reported failure";
    default: return "unknown error";
    }
}
