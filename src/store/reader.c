/* reader.c: streaming a run directory back. Each file is read line by line with a bounded buffer
 * and each record handed to a callback, so memory does not grow with the number of events; damaged
 * lines are skipped and named (file:line, reason) instead of ending the read. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lines.h"
#include "reader_pipe.h"
#include "store_int.h"

int kdh_store_parse_event(const char *line, size_t len, kdh_store_event_t *ev, kdh_err_t *err)
{
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return kdh_err_set(err, KDH_ECORRUPT, "not JSON: %s", je.text);
    int rc = kdh_store_event_from(o, ev, err);
    ev->src = NULL;
    json_decref(o);
    return rc;
}

enum { R_MODULES, R_STACKS, R_EVENTS, R_POOL, R_GAPS };

typedef struct read_ctx {
    const kdh_store_reader_t *rd;
    kdh_store_read_stats_t *stats;
    void (*ahead)(void *ud, const kdh_store_event_t *ev);
    kdh_store_frame_t frames[KDH_STORE_FRAMES_MAX];
} read_ctx_t;

static void skip(read_ctx_t *c, const char *file, uint64_t line, const char *why)
{
    c->stats->skipped++;
    if (c->rd->on_skip)
        c->rd->on_skip(c->rd->ud, file, line, why);
}

/* Hands one parsed line to its callback. Returns a callback's non-zero result, else 0. */
static int dispatch(read_ctx_t *c, int kind, json_t *o, const char *file, uint64_t lineno)
{
    const kdh_store_reader_t *rd = c->rd;
    kdh_err_t e = {0};
    int rc;
    switch (kind) {
    case R_MODULES: {
        kdh_store_module_t m;
        if (kdh_store_module_from(o, &m, &e) != KDH_OK)
            break;
        c->stats->lines++;
        return rd->on_module ? rd->on_module(rd->ud, &m) : 0;
    }
    case R_STACKS: {
        uint64_t sid;
        size_t n = 0;
        if (kdh_store_stack_from(o, &sid, c->frames, &n, &e) != KDH_OK)
            break;
        c->stats->lines++;
        c->stats->stacks++;
        return rd->on_stack ? rd->on_stack(rd->ud, sid, c->frames, n) : 0;
    }
    case R_EVENTS: {
        kdh_store_event_t ev;
        if (kdh_store_event_from(o, &ev, &e) != KDH_OK)
            break;
        json_t *src = json_object_get(o, "src");
        ev.src = json_is_string(src) ? json_string_value(src) : NULL;
        c->stats->lines++;
        c->stats->events++;
        return rd->on_event ? rd->on_event(rd->ud, &ev) : 0;
    }
    case R_POOL: {
        kdh_store_pool_t p;
        if (kdh_store_pool_from(o, &p, &e) != KDH_OK)
            break;
        c->stats->lines++;
        return rd->on_pool ? rd->on_pool(rd->ud, &p) : 0;
    }
    default: {
        kdh_store_gap_t g;
        if (kdh_store_gap_from(o, &g, &e) != KDH_OK)
            break;
        c->stats->lines++;
        return rd->on_gap ? rd->on_gap(rd->ud, &g) : 0;
    }
    }
    rc = 0;
    skip(c, file, lineno, e.msg);
    return rc;
}

typedef struct file_ctx {
    read_ctx_t *c;
    const char *name;
    int kind;
} file_ctx_t;

/* One line of a run file, in file order; fast is an event line the fast path already read. */
static int handle_line(void *ud, char *line, size_t len, int state, uint64_t lineno, const kdh_store_event_t *fast)
{
    file_ctx_t *f = ud;
    read_ctx_t *c = f->c;
    if (fast) {
        c->stats->lines++;
        c->stats->events++;
        return c->rd->on_event ? c->rd->on_event(c->rd->ud, fast) : 0;
    }
    if (state == KDH_LINE_TOOLONG) {
        skip(c, f->name, lineno, "line longer than 1 MiB");
        return 0;
    }
    if (len == 0 && state == KDH_LINE_WHOLE)
        return 0; /* blank line: nothing to report */
    if (f->kind == R_STACKS) {
        uint64_t sid;
        size_t n;
        if (kdh_store_fast_stack(line, len, &sid, c->frames, &n)) {
            c->stats->lines++;
            c->stats->stacks++;
            return c->rd->on_stack ? c->rd->on_stack(c->rd->ud, sid, c->frames, n) : 0;
        }
    }
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        char why[300];
        snprintf(why, sizeof why, "%s: %s", state == KDH_LINE_TORN ? "torn last line" : "not JSON", je.text);
        skip(c, f->name, lineno, why);
        return 0;
    }
    int rc = dispatch(c, f->kind, o, f->name, lineno);
    json_decref(o);
    return rc;
}

/* Files this large read their events on a helper thread (kdh_store_pipe_events). */
#define PIPE_MIN_BYTES (1u << 20)

/* limit: bytes of the file to read (UINT64_MAX: all of it). */
static int read_file(read_ctx_t *c, const char *dir, const char *name, int kind, uint64_t limit, int *present,
                     kdh_err_t *err)
{
    char path[4200];
    kdh_lines_t lr;
    char *line;
    size_t len;
    int state, r = 0, rc = 0;
    struct stat sb;
    file_ctx_t fc = {c, name, kind};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *present = fd >= 0;
    if (fd < 0) {
        if (errno == ENOENT)
            return KDH_OK;
        return kdh_err_set(err, KDH_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    if (kind == R_EVENTS && fstat(fd, &sb) == 0 && sb.st_size >= (off_t)PIPE_MIN_BYTES && limit >= PIPE_MIN_BYTES) {
        rc = kdh_store_pipe_events(fd, limit, handle_line, c->ahead, c->rd->ud, &fc);
        close(fd);
        if (rc == KDH_EIO)
            return kdh_err_set(err, KDH_EIO, "read error in %s", path);
        if (rc == KDH_ENOMEM)
            return kdh_err_set(err, KDH_ENOMEM, "out of memory reading %s", path);
        return rc;
    }
    if (kdh_lines_init(&lr, fd) != KDH_OK) {
        close(fd);
        return kdh_err_set(err, KDH_ENOMEM, "out of memory reading %s", path);
    }
    kdh_lines_limit(&lr, limit);
    while ((r = kdh_lines_next(&lr, &line, &len, &state)) == 1) {
        kdh_store_event_t ev;
        const char *src = NULL;
        size_t src_len = 0;
        if (kind == R_EVENTS && state != KDH_LINE_TOOLONG && len > 0 &&
            kdh_store_fast_event(line, len, &ev, &src, &src_len)) {
            if (src) {
                line[src - line + (ptrdiff_t)src_len] = '\0'; /* inside line, which is ours to change */
                ev.src = src;
            }
            rc = handle_line(&fc, line, len, state, lr.lineno, &ev);
        } else {
            rc = handle_line(&fc, line, len, state, lr.lineno, NULL);
        }
        if (rc != 0)
            break;
    }
    kdh_lines_free(&lr);
    close(fd);
    if (r < 0)
        return kdh_err_set(err, KDH_EIO, "read error in %s", path);
    return rc;
}

int kdh_store_read(const char *dir, const kdh_store_reader_t *rd, kdh_store_read_stats_t *stats,
                   kdh_err_t *err)
{
    return kdh_store_read_hinted(dir, rd, NULL, stats, err);
}

int kdh_store_read_hinted(const char *dir, const kdh_store_reader_t *rd,
                          void (*on_event_ahead)(void *ud, const kdh_store_event_t *ev),
                          kdh_store_read_stats_t *stats, kdh_err_t *err)
{
    return kdh_store_read_extent(dir, rd, on_event_ahead, NULL, stats, err);
}

int kdh_store_read_extent(const char *dir, const kdh_store_reader_t *rd,
                          void (*on_event_ahead)(void *ud, const kdh_store_event_t *ev),
                          const kdh_store_extent_t *upto, kdh_store_read_stats_t *stats, kdh_err_t *err)
{
    static const kdh_store_reader_t none;
    kdh_store_read_stats_t local;
    char path[4200];
    struct stat sb;
    int rc, present;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!rd)
        rd = &none;
    if (!dir || stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kdh_err_set(err, KDH_ENOTFOUND, "%s: no such directory", dir ? dir : "(null)");
    snprintf(path, sizeof path, "%s/meta.json", dir);
    int has_meta = stat(path, &sb) == 0;
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    int has_events = stat(path, &sb) == 0;
    if (!has_meta && !has_events)
        return kdh_err_set(err, KDH_ENOTFOUND, "%s is not a run directory (no meta.json or events.jsonl)", dir);

    read_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory reading %s", dir);
    c->rd = rd;
    c->stats = stats;
    c->ahead = on_event_ahead;
    if (has_meta) {
        json_error_t je;
        snprintf(path, sizeof path, "%s/meta.json", dir);
        json_t *meta = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        if (!meta || !json_is_object(meta)) {
            char why[300];
            snprintf(why, sizeof why, "meta.json unreadable (%s); continuing without it", meta ? "not an object" : je.text);
            skip(c, "meta.json", meta ? 0 : (uint64_t)je.line, why);
        } else {
            const char *schema = json_string_value(json_object_get(meta, "schema"));
            if (!schema || strcmp(schema, KDH_STORE_SCHEMA) != 0) {
                rc = kdh_err_set(err, KDH_EUNSUPPORTED,
                                 "%s/meta.json: schema \"%s\" is not %s; a newer kdharvest may read it", dir,
                                 schema ? schema : "(none)", KDH_STORE_SCHEMA);
                json_decref(meta);
                free(c);
                return rc;
            }
            stats->lines++;
            rc = rd->on_meta ? rd->on_meta(rd->ud, meta) : 0;
            json_decref(meta);
            if (rc != 0) {
                free(c);
                return rc;
            }
        }
    }
    static const struct {
        const char *name;
        int kind;
    } files[] = {{"modules.jsonl", R_MODULES}, {"stacks.jsonl", R_STACKS}, {"events.jsonl", R_EVENTS},
                 {"pool.jsonl", R_POOL},       {"gaps.jsonl", R_GAPS}};
    _Static_assert(KDH_ARRAY_LEN(files) == KDH_STORE_JSONL_FILES, "kdh_store_extent_t has a size per file");
    for (size_t i = 0; i < KDH_ARRAY_LEN(files); i++) {
        rc = read_file(c, dir, files[i].name, files[i].kind, upto ? upto->bytes[i] : UINT64_MAX, &present, err);
        if (rc != 0)
            break;
        if (files[i].kind == R_STACKS && !present && has_events) {
            stats->missing_stacks = 1;
            skip(c, "stacks.jsonl", 0, "missing: stacks are shown by id only");
        }
    }
    free(c);
    return rc;
}
