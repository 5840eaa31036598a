/* run_status.h: the status line of `kdharvest run`, shared by the one-target display
 * (cmd_run.c) and the per-target block of `run --config` (cmd_run_config.c), and the one-target
 * harvest with that display that `run` and `demo` (cmd_demo.c) share. */
#ifndef KDH_CLI_RUN_STATUS_H
#define KDH_CLI_RUN_STATUS_H

#include <stddef.h>

#include "kdh/harvest.h"

/* "armed      hits 12 (alloc 7, free 5)  stacks 3  1.2 hits/s  900 B/s  stall 0.5%  10s" */
void kdh_cli_status_text(const kdh_harvest_status_t *s, char *line, size_t len);

/* Runs one harvest with the terminal status line and the signal handlers; returns the exit code. */
int kdh_cli_run_harvest(const kdh_harvest_opts_t *opts, int quiet, kdh_harvest_result_t *res);

#endif
