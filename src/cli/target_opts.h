/* target_opts.h (internal to kdh_cli): the options and session helpers that `kdharvest probe`
 * and `kdharvest stack` share (defined in cmd_probe.c): one port, its speed, the symbol path and
 * --symbol overrides, and the open / finish steps around a one-target session. */
#ifndef KDH_CLI_TARGET_OPTS_H
#define KDH_CLI_TARGET_OPTS_H

#include "kdh/common.h"
#include "kdh/target.h"

typedef struct probe_opts {
    const char *port;
    unsigned baud;
    const char *symbols;
    const char *overrides[16];
    int noverrides;
} probe_opts_t;

/* Parses PORT and the shared options; returns 0 to go on, <0 after --help, else an exit code. */
int kdh_cli_target_opts(const char *cmd, const char *usage, int argc, char **argv, probe_opts_t *po);
int kdh_cli_target_open(const probe_opts_t *po, kdh_target_session_t **s, kdh_err_t *err);
int kdh_cli_target_finish(kdh_target_session_t *s, int code, const kdh_err_t *err);

#endif
