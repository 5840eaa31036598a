/* kdh/daemon.h: the daemon's configuration: several targets from one INI file (see
 * config/kdharvest.ini), each turned into the options of one harvest. Parsing is pure (no I/O
 * beyond reading the file); running the targets is the caller's (kdharvest run --config). */
#ifndef KDH_DAEMON_H
#define KDH_DAEMON_H

#include <stddef.h>

#include "kdh/common.h"
#include "kdh/harvest.h"

#define KDH_DAEMON_MAX_TARGETS 32

typedef struct kdh_daemon_target {
    char name[64];          /* [target NAME] */
    char port[256];         /* port = /dev/ttyS0 | tcp = host:port | unix = /path */
    unsigned baud;
    char tag[16];
    kdh_harvest_mode_t mode; /* mode = hittag (default) | specialpool | entry */
    int pair;               /* pair = yes: leak accounting (kdh_harvest_opts_t.pair) */
    char symbols[1024];
    char out[512];          /* run directory; default <logs>/<name>/<UTC time> */
    unsigned sample;
    unsigned long long max_hits;
    double duration_s;
    unsigned long long stack_cap;
    double max_stall_pct;
    unsigned summary_interval_s; /* summary_interval = seconds between summary.txt rewrites (0: 30) */
} kdh_daemon_target_t;

typedef struct kdh_daemon_config {
    char logs[512];         /* [daemon] logs = directory for <target>/<run-id> (default "logs") */
    char symbols[1024];     /* [daemon] symbols = default symbol path */
    size_t n;
    kdh_daemon_target_t t[KDH_DAEMON_MAX_TARGETS];
} kdh_daemon_config_t;

/* Reads path. Unknown keys, a target without a port or a tag, bad numbers and more than
 * KDH_DAEMON_MAX_TARGETS targets are errors naming the file and line. */
int kdh_daemon_config_load(const char *path, kdh_daemon_config_t *cfg, kdh_err_t *err);

/* Fills harvest options for target i (strings point into cfg; out_dir must hold 512 bytes and
 * receives the run directory chosen). */
void kdh_daemon_target_opts(const kdh_daemon_config_t *cfg, size_t i, kdh_harvest_opts_t *o, char *out_dir);

#endif
