/* config.c: config/kdharvest.ini into per-target harvest options. One [daemon] section for
 * defaults, one [target NAME] section per target. Every key is checked: a typo in a config file
 * that runs unattended should stop the start, not be ignored. */
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kdh/daemon.h"

typedef struct parse {
    kdh_daemon_config_t *cfg;
    kdh_err_t *err;
    const char *path;
    int failed;
    char section[128];
    kdh_daemon_target_t *cur;
} parse_t;

static int num(parse_t *p, int line, const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || d < lo || d > hi) {
        kdh_err_set(p->err, KDH_EINVAL, "%s:%d: %s = %s: expected a number from %g to %g", p->path, line, name, v,
                    lo, hi);
        return 0;
    }
    *out = d;
    return 1;
}

static int copy(parse_t *p, int line, const char *name, const char *v, char *dst, size_t cap)
{
    if (strlen(v) >= cap) {
        kdh_err_set(p->err, KDH_ERANGE, "%s:%d: %s is longer than %zu characters", p->path, line, name, cap - 1);
        return 0;
    }
    memcpy(dst, v, strlen(v) + 1);
    return 1;
}

static int on_kv(void *user, const char *section, const char *name, const char *value, int line)
{
    parse_t *p = user;
    kdh_daemon_config_t *c = p->cfg;
    if (strcmp(section, p->section) != 0 || (!p->cur && strncasecmp(section, "target ", 7) == 0)) {
        snprintf(p->section, sizeof p->section, "%s", section);
        p->cur = NULL;
        if (strncasecmp(section, "target ", 7) == 0) {
            if (c->n >= KDH_DAEMON_MAX_TARGETS) {
                kdh_err_set(p->err, KDH_ERANGE, "%s:%d: more than %d targets", p->path, line, KDH_DAEMON_MAX_TARGETS);
                return 0;
            }
            p->cur = &c->t[c->n++];
            memset(p->cur, 0, sizeof *p->cur);
            const char *nm = section + 7;
            while (*nm == ' ')
                nm++;
            if (!*nm || strlen(nm) >= sizeof p->cur->name || strpbrk(nm, "/ ")) {
                kdh_err_set(p->err, KDH_EINVAL, "%s:%d: [target NAME] needs a short name without '/' or spaces",
                            p->path, line);
                return 0;
            }
            snprintf(p->cur->name, sizeof p->cur->name, "%s", nm);
            p->cur->mode = KDH_HARVEST_HITTAG;
        } else if (strcasecmp(section, "daemon") != 0) {
            kdh_err_set(p->err, KDH_EINVAL, "%s:%d: unknown section [%s] (use [daemon] or [target NAME])", p->path,
                        line, section);
            return 0;
        }
    }
    double d;
    if (!p->cur) { /* [daemon] */
        if (strcmp(name, "logs") == 0)
            return copy(p, line, name, value, c->logs, sizeof c->logs);
        if (strcmp(name, "symbols") == 0)
            return copy(p, line, name, value, c->symbols, sizeof c->symbols);
        kdh_err_set(p->err, KDH_EINVAL, "%s:%d: unknown key '%s' in [daemon] (logs, symbols)", p->path, line, name);
        return 0;
    }
    kdh_daemon_target_t *t = p->cur;
    if (strcmp(name, "port") == 0)
        return copy(p, line, name, value, t->port, sizeof t->port);
    if (strcmp(name, "tcp") == 0) {
        if (strlen(value) + 7 >= sizeof t->port)
            return copy(p, line, name, value, t->port, 1);
        snprintf(t->port, sizeof t->port, "tcp://%s", value);
        return 1;
    }
    if (strcmp(name, "unix") == 0) {
        if (strlen(value) + 6 >= sizeof t->port)
            return copy(p, line, name, value, t->port, 1);
        snprintf(t->port, sizeof t->port, "unix:%s", value);
        return 1;
    }
    if (strcmp(name, "tag") == 0)
        return copy(p, line, name, value, t->tag, sizeof t->tag);
    if (strcmp(name, "mode") == 0) {
        if (kdh_harvest_mode_parse(value, &t->mode) != KDH_OK) {
            kdh_err_set(p->err, KDH_EINVAL, "%s:%d: mode = %s: use " KDH_HARVEST_MODE_NAMES, p->path, line, value);
            return 0;
        }
        return 1;
    }
    if (strcmp(name, "pair") == 0) {
        int yes = strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0;
        int no = strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0;
        if (!yes && !no) {
            kdh_err_set(p->err, KDH_EINVAL, "%s:%d: pair = %s: use yes or no", p->path, line, value);
            return 0;
        }
        t->pair = yes;
        return 1;
    }
    if (strcmp(name, "symbols") == 0)
        return copy(p, line, name, value, t->symbols, sizeof t->symbols);
    if (strcmp(name, "out") == 0)
        return copy(p, line, name, value, t->out, sizeof t->out);
    if (strcmp(name, "baud") == 0) {
        if (!num(p, line, name, value, 1, 4000000, &d))
            return 0;
        t->baud = (unsigned)d;
        return 1;
    }
    if (strcmp(name, "sample") == 0) {
        if (!num(p, line, name, value, 1, 1000000, &d))
            return 0;
        t->sample = (unsigned)d;
        return 1;
    }
    if (strcmp(name, "max_hits") == 0) {
        if (!num(p, line, name, value, 0, 1e15, &d))
            return 0;
        t->max_hits = (unsigned long long)d;
        return 1;
    }
    if (strcmp(name, "duration") == 0)
        return num(p, line, name, value, 0, 1e9, &t->duration_s);
    if (strcmp(name, "stack_cap") == 0) {
        if (!num(p, line, name, value, 0, 1e15, &d))
            return 0;
        t->stack_cap = (unsigned long long)d;
        return 1;
    }
    if (strcmp(name, "max_stall") == 0)
        return num(p, line, name, value, 0, 100, &t->max_stall_pct);
    if (strcmp(name, "summary_interval") == 0) {
        if (!num(p, line, name, value, 1, 86400, &d))
            return 0;
        t->summary_interval_s = (unsigned)d;
        return 1;
    }
    kdh_err_set(p->err, KDH_EINVAL,
                "%s:%d: unknown key '%s' in [target %s] (port, tcp, unix, baud, tag, mode, pair, symbols, out, sample, "
                "max_hits, duration, stack_cap, max_stall, summary_interval)",
                p->path, line, name, t->name);
    return 0;
}

typedef struct line_reader {
    FILE *f;
    int line;
    parse_t *p;
} line_reader_t;

/* inih's handler has no line number; count lines ourselves through ini_parse_stream's reader. */
static char *read_line(char *str, int num_chars, void *stream)
{
    line_reader_t *r = stream;
    char *s = fgets(str, num_chars, r->f);
    if (s)
        r->line++;
    return s;
}

static int handler_lines(void *user, const char *section, const char *name, const char *value)
{
    line_reader_t *r = user;
    if (r->p->failed)
        return 0;
    if (!on_kv(r->p, section, name, value, r->line)) {
        r->p->failed = 1;
        return 0;
    }
    return 1;
}

int kdh_daemon_config_load(const char *path, kdh_daemon_config_t *cfg, kdh_err_t *err)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->logs, sizeof cfg->logs, "logs");
    FILE *f = fopen(path, "r");
    if (!f)
        return kdh_err_set(err, KDH_ENOTFOUND, "cannot open config %s", path);
    parse_t p = {.cfg = cfg, .err = err, .path = path};
    line_reader_t r = {.f = f, .p = &p};
    int rc = ini_parse_stream(read_line, &r, handler_lines, &r);
    fclose(f);
    if (p.failed)
        return err && err->code ? err->code : KDH_EINVAL;
    if (rc != 0)
        return kdh_err_set(err, KDH_EINVAL, "%s:%d: not an INI line", path, rc);
    if (cfg->n == 0)
        return kdh_err_set(err, KDH_EINVAL, "%s: no [target NAME] section", path);
    for (size_t i = 0; i < cfg->n; i++) {
        if (!cfg->t[i].port[0])
            return kdh_err_set(err, KDH_EINVAL, "%s: [target %s] has no port, tcp or unix", path, cfg->t[i].name);
        if (!cfg->t[i].tag[0])
            return kdh_err_set(err, KDH_EINVAL, "%s: [target %s] has no tag", path, cfg->t[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->t[i].name, cfg->t[j].name) == 0)
                return kdh_err_set(err, KDH_EINVAL, "%s: [target %s] appears twice", path, cfg->t[i].name);
    }
    return KDH_OK;
}

void kdh_daemon_target_opts(const kdh_daemon_config_t *cfg, size_t i, kdh_harvest_opts_t *o, char *out_dir)
{
    const kdh_daemon_target_t *t = &cfg->t[i];
    memset(o, 0, sizeof *o);
    o->port = t->port;
    o->baud = t->baud;
    o->tag = t->tag;
    o->target_name = t->name;
    o->symbol_path = t->symbols[0] ? t->symbols : cfg->symbols[0] ? cfg->symbols : NULL;
    o->sample = t->sample;
    o->max_hits = t->max_hits;
    o->duration_s = t->duration_s;
    o->stack_cap = t->stack_cap;
    o->max_stall_pct = t->max_stall_pct;
    o->summary_interval_s = t->summary_interval_s;
    o->mode = t->mode;
    o->pair = t->pair;
    if (t->out[0]) {
        snprintf(out_dir, 512, "%s", t->out);
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        snprintf(out_dir, 512, "%.200s/%.63s/%s", cfg->logs, t->name, stamp);
    }
    o->out_dir = out_dir;
}
