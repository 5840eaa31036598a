/* writer.c: creating, continuing and appending to a run directory. Every record is one JSON line
 * written with a single write() on an O_APPEND descriptor, so a kill -9 can only tear a line whose
 * call had not returned; kdh_store_open truncates such a tail when it continues the run. With
 * opts.buffer_bytes, whole lines are collected per file and written together (a write() holds only
 * whole lines, so the same repair applies), always modules, stacks, events, pool, gaps in that
 * order, so an event on disk never names a stack that is not. A failed write or fsync is final for
 * the handle: the lines still collected are dropped and every later call that would write returns
 * the same error, since a stack id is remembered as written when its line is collected, and an
 * event written after a lost stack line would name a stack that is not. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "lines.h"
#include "store_int.h"
#include "u64map.h"

enum { F_MODULES, F_STACKS, F_EVENTS, F_POOL, F_GAPS, F_COUNT };
static const char *const file_names[F_COUNT] = {"modules.jsonl", "stacks.jsonl", "events.jsonl",
                                                "pool.jsonl", "gaps.jsonl"};
_Static_assert(F_COUNT == KDH_STORE_JSONL_FILES, "kdh_store_extent_t has a size per file, in this order");

struct kdh_store {
    char *dir;
    int fd[F_COUNT];
    unsigned unsynced[F_COUNT];
    kdh_store_opts_t opts;
    kdh_u64map_t sids;    /* stack ids already in stacks.jsonl */
    kdh_u64map_t modkeys; /* XXH3 of "key\nboot" already in modules.jsonl */
    uint64_t next_seq;
    kdh_store_info_t info;
    char *pend[F_COUNT]; /* opts.buffer_bytes: whole lines not yet written, per file */
    size_t npend[F_COUNT];
    kdh_store_fmt_t fmt;
    int failed;            /* the first write or fsync error; 0 while none */
    char failed_msg[256];  /* its message, repeated by every later call */
};

static int mkdirs(const char *dir, kdh_err_t *err)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return kdh_err_set(err, KDH_EINVAL, "run directory path is empty or too long");
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return kdh_err_set(err, KDH_EIO, "cannot create %s: %s", path, strerror(errno));
        path[i] = c;
    }
    return KDH_OK;
}

static int path_of(const kdh_store_t *st, const char *name, char *out, size_t cap, kdh_err_t *err)
{
    if ((size_t)snprintf(out, cap, "%s/%s", st->dir, name) >= cap)
        return kdh_err_set(err, KDH_EINVAL, "run directory path too long");
    return KDH_OK;
}

static void note(kdh_store_t *st, const char *fmt, const char *name, uint64_t bytes, uint64_t off)
{
    st->info.repaired++;
    if (st->info.repair_note[0] == '\0')
        snprintf(st->info.repair_note, sizeof st->info.repair_note, fmt, name, bytes, off);
}

/* Truncates a last line that lacks its '\n' (a write the daemon never completed). */
static int repair_tail(kdh_store_t *st, int f, kdh_err_t *err)
{
    int fd = st->fd[f];
    struct stat sb;
    char buf[4096];
    if (fstat(fd, &sb) != 0)
        return kdh_err_set(err, KDH_EIO, "%s: fstat: %s", file_names[f], strerror(errno));
    off_t end = sb.st_size, pos = end;
    if (end == 0)
        return KDH_OK;
    while (pos > 0) {
        size_t n = pos > (off_t)sizeof buf ? sizeof buf : (size_t)pos;
        pos -= (off_t)n;
        if (pread(fd, buf, n, pos) != (ssize_t)n)
            return kdh_err_set(err, KDH_EIO, "%s: read failed: %s", file_names[f], strerror(errno));
        for (size_t i = n; i > 0; i--) {
            if (buf[i - 1] == '\n') {
                off_t keep = pos + (off_t)i;
                if (keep == end)
                    return KDH_OK;
                if (ftruncate(fd, keep) != 0)
                    return kdh_err_set(err, KDH_EIO, "%s: cannot truncate torn line: %s", file_names[f],
                                       strerror(errno));
                note(st, "%s: truncated a torn last line of %" PRIu64 " bytes at offset %" PRIu64,
                     file_names[f], (uint64_t)(end - keep), (uint64_t)keep);
                return KDH_OK;
            }
        }
    }
    if (ftruncate(fd, 0) != 0)
        return kdh_err_set(err, KDH_EIO, "%s: cannot truncate torn line: %s", file_names[f], strerror(errno));
    note(st, "%s: truncated a torn last line of %" PRIu64 " bytes at offset %" PRIu64, file_names[f],
         (uint64_t)end, 0);
    return KDH_OK;
}

static uint64_t modkey_hash(const char *key, uint32_t boot)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s\n%u", key, boot);
    if (n < 0)
        return 0;
    if ((size_t)n >= sizeof buf) { /* very long key: hash key and boot separately */
        return XXH3_64bits(key, strlen(key)) ^ (XXH3_64bits(&boot, sizeof boot) * 31);
    }
    return XXH3_64bits(buf, (size_t)n);
}

/* Loads stack ids, module keys and the last seq of an existing run. */
static int load_existing(kdh_store_t *st, kdh_err_t *err)
{
    static const int order[] = {F_MODULES, F_STACKS, F_EVENTS};
    for (size_t k = 0; k < KDH_ARRAY_LEN(order); k++) {
        int f = order[k];
        kdh_lines_t lr;
        char *line;
        size_t len;
        int state, r;
        uint64_t lines = 0;
        char *last = NULL;
        size_t last_len = 0;
        if (lseek(st->fd[f], 0, SEEK_SET) < 0 || kdh_lines_init(&lr, st->fd[f]) != KDH_OK)
            return kdh_err_set(err, KDH_ENOMEM, "%s: cannot read to continue the run", file_names[f]);
        while ((r = kdh_lines_next(&lr, &line, &len, &state)) == 1) {
            lines++;
            if (state != KDH_LINE_WHOLE)
                continue;
            if (f == F_EVENTS) {
                /* Only the last whole line's seq is needed: keep a copy, parse it once at the end. */
                char *c = realloc(last, len + 1);
                if (!c) {
                    r = KDH_ENOMEM;
                    break;
                }
                last = c;
                memcpy(last, line, len + 1);
                last_len = len;
                continue;
            }
            json_t *o = json_loadb(line, len, 0, NULL);
            if (!o)
                continue;
            if (f == F_STACKS) {
                uint64_t sid;
                if (kdh_store_sid_parse(json_string_value(json_object_get(o, "sid")), &sid) == KDH_OK &&
                    kdh_u64map_put(&st->sids, sid, 1, NULL) != 0)
                    r = KDH_ENOMEM;
            } else {
                kdh_store_module_t m;
                if (kdh_store_module_from(o, &m, NULL) == KDH_OK &&
                    kdh_u64map_put(&st->modkeys, modkey_hash(m.key, m.boot), 1, NULL) != 0)
                    r = KDH_ENOMEM;
            }
            json_decref(o);
            if (r == KDH_ENOMEM)
                break;
        }
        kdh_lines_free(&lr);
        if (last) {
            kdh_store_event_t ev;
            if (kdh_store_parse_event(last, last_len, &ev, NULL) == KDH_OK) {
                if (ev.seq >= st->next_seq)
                    st->next_seq = ev.seq + 1;
                st->info.last_event_t = ev.t;
            }
            free(last);
        }
        if (r < 0)
            return kdh_err_set(err, r, "%s: cannot read to continue the run: %s", file_names[f], kdh_strerror(r));
        if (f == F_EVENTS && lines >= st->next_seq)
            st->next_seq = lines + 1; /* damaged lines still used up their seq */
    }
    return KDH_OK;
}

static void iso_now(char *buf, size_t cap)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int kdh_store_open(kdh_store_t **out, const char *dir, const kdh_store_opts_t *opts, kdh_err_t *err)
{
    char path[4200];
    struct stat sb;
    int rc;
    *out = NULL;
    if (!dir)
        return kdh_err_set(err, KDH_EINVAL, "no run directory given");
    if ((rc = mkdirs(dir, err)) != KDH_OK)
        return rc;
    kdh_store_t *st = calloc(1, sizeof *st);
    if (!st || !(st->dir = strdup(dir))) {
        free(st);
        return kdh_err_set(err, KDH_ENOMEM, "out of memory opening %s", dir);
    }
    for (int f = 0; f < F_COUNT; f++)
        st->fd[f] = -1;
    if (opts)
        st->opts = *opts;
    st->next_seq = 1;
    path_of(st, "meta.json", path, sizeof path, NULL);
    int had_meta = stat(path, &sb) == 0;
    st->info.resumed = had_meta;
    for (int f = 0; f < F_COUNT; f++) {
        if ((rc = path_of(st, file_names[f], path, sizeof path, err)) != KDH_OK)
            goto fail;
        if (stat(path, &sb) == 0)
            st->info.resumed = 1;
        st->fd[f] = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (st->fd[f] < 0) {
            rc = kdh_err_set(err, KDH_EIO, "cannot open %s: %s", path, strerror(errno));
            goto fail;
        }
        /* Two writers on one run would interleave seq numbers: the second one is refused. The lock
         * goes away with the descriptor, so a killed daemon never leaves it behind. */
        if (f == F_EVENTS && flock(st->fd[f], LOCK_EX | LOCK_NB) != 0) {
            rc = kdh_err_set(err, KDH_EBUSY, "run %s is being written by another process", dir);
            goto fail;
        }
        if ((rc = repair_tail(st, f, err)) != KDH_OK)
            goto fail;
    }
    if (st->info.resumed && (rc = load_existing(st, err)) != KDH_OK)
        goto fail;
    if (!had_meta) {
        /* A fresh directory is recognisable as a run at once, before the caller's first meta. */
        char now[32];
        json_t *m = json_object();
        iso_now(now, sizeof now);
        json_object_set_new(m, "started", json_string(now));
        rc = kdh_store_write_meta(st, m, err);
        json_decref(m);
        if (rc != KDH_OK)
            goto fail;
    }
    st->info.next_seq = st->next_seq;
    st->info.stacks = st->sids.count;
    st->info.modules = st->modkeys.count;
    *out = st;
    return KDH_OK;
fail:
    kdh_store_close(st, NULL);
    return rc;
}

const kdh_store_info_t *kdh_store_info(const kdh_store_t *st)
{
    return &st->info;
}

const char *kdh_store_dir(const kdh_store_t *st)
{
    return st->dir;
}

/* Latches a write or fsync failure (see the head of this file): every file's collected lines are
 * dropped, and the error is returned by every later call that would write. */
static void latch(kdh_store_t *st, const char *msg)
{
    st->failed = KDH_EIO;
    snprintf(st->failed_msg, sizeof st->failed_msg, "%s", msg);
    for (int i = 0; i < F_COUNT; i++)
        st->npend[i] = 0;
}

static int fail(kdh_store_t *st, kdh_err_t *err, const char *op, int f, const char *why)
{
    char msg[sizeof st->failed_msg];
    snprintf(msg, sizeof msg, "%s %s/%s: %s", op, st->dir, file_names[f], why);
    latch(st, msg);
    return kdh_err_set(err, st->failed, "%s", st->failed_msg);
}

/* The latched error again, for a call made after a failure. */
static int failed_before(kdh_store_t *st, kdh_err_t *err)
{
    return kdh_err_set(err, st->failed, "run not written after an earlier failure: %s", st->failed_msg);
}

static int write_all(kdh_store_t *st, int f, const char *buf, size_t n, kdh_err_t *err)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(st->fd[f], buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return fail(st, err, "write", f, w < 0 ? strerror(errno) : "no progress");
        done += (size_t)w; /* short write: only on a full disk; the rest follows at once */
    }
    return KDH_OK;
}

static int sync_file(kdh_store_t *st, int f, kdh_err_t *err)
{
    if (fdatasync(st->fd[f]) != 0)
        return fail(st, err, "fsync", f, strerror(errno));
    return KDH_OK;
}

/* Writes every file's pending lines, in file order (modules and stacks before the events that
 * name them). */
static int flush_pending(kdh_store_t *st, kdh_err_t *err)
{
    if (st->failed)
        return failed_before(st, err);
    for (int f = 0; f < F_COUNT; f++) {
        if (!st->npend[f])
            continue;
        size_t n = st->npend[f];
        st->npend[f] = 0;
        int rc = write_all(st, f, st->pend[f], n, err);
        if (rc != KDH_OK)
            return rc;
    }
    return KDH_OK;
}

int kdh_store_flush(kdh_store_t *st, kdh_err_t *err)
{
    return flush_pending(st, err);
}

/* Appends line (without its '\n', which is added here; line must have room for it at line[n]). */
static int append_line(kdh_store_t *st, int f, char *line, size_t n, kdh_err_t *err)
{
    int rc = KDH_OK;
    size_t cap = st->opts.buffer_bytes;
    if (st->failed)
        return failed_before(st, err);
    if (cap) {
        if (!st->pend[f] && !(st->pend[f] = malloc(cap)))
            return kdh_err_set(err, KDH_ENOMEM, "out of memory buffering %s", file_names[f]);
        if (st->npend[f] + n + 1 > cap)
            rc = flush_pending(st, err);
        if (rc == KDH_OK && n + 1 <= cap) {
            memcpy(st->pend[f] + st->npend[f], line, n);
            st->npend[f] += n;
            st->pend[f][st->npend[f]++] = '\n';
        } else if (rc == KDH_OK) { /* longer than the whole buffer: on its own, after the rest */
            line[n] = '\n';
            rc = write_all(st, f, line, n + 1, err);
        }
    } else {
        line[n] = '\n';
        rc = write_all(st, f, line, n + 1, err);
    }
    if (rc == KDH_OK && st->opts.fsync_every && ++st->unsynced[f] >= st->opts.fsync_every) {
        st->unsynced[f] = 0;
        if (cap)
            rc = flush_pending(st, err);
        if (rc == KDH_OK)
            rc = sync_file(st, f, err);
    }
    return rc;
}

/* Serializes obj and appends it as one line. Consumes obj. */
static int append(kdh_store_t *st, int f, json_t *obj, kdh_err_t *err)
{
    char small[2048], *buf = small;
    if (!obj)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory building a %s line", file_names[f]);
    size_t need = json_dumpb(obj, small, sizeof small - 1, KDH_STORE_DUMP);
    if (need == 0) {
        json_decref(obj);
        return kdh_err_set(err, KDH_EINVAL, "cannot serialize a %s line", file_names[f]);
    }
    if (need > sizeof small - 1) {
        buf = malloc(need + 1);
        if (!buf) {
            json_decref(obj);
            return kdh_err_set(err, KDH_ENOMEM, "out of memory writing %s", file_names[f]);
        }
        json_dumpb(obj, buf, need, KDH_STORE_DUMP);
    }
    json_decref(obj);
    int rc = append_line(st, f, buf, need, err);
    if (buf != small)
        free(buf);
    return rc;
}

int kdh_store_add_module(kdh_store_t *st, const kdh_store_module_t *m, kdh_err_t *err)
{
    int inserted;
    if (st->failed)
        return failed_before(st, err);
    if (!m || !m->key || !m->key[0])
        return kdh_err_set(err, KDH_EINVAL, "module has no key");
    uint64_t h = modkey_hash(m->key, m->boot);
    if (kdh_u64map_get(&st->modkeys, h))
        return KDH_OK;
    int rc = append(st, F_MODULES, kdh_store_module_json(m), err);
    if (rc == KDH_OK && kdh_u64map_put(&st->modkeys, h, 1, &inserted) != 0)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory recording module %s", m->key);
    return rc;
}

int kdh_store_intern_stack(kdh_store_t *st, const kdh_store_frame_t *frames, size_t n, uint64_t *sid,
                           kdh_err_t *err)
{
    if (st->failed) /* a stack known from a dropped line would be taken for one on disk */
        return failed_before(st, err);
    if (n > KDH_STORE_FRAMES_MAX)
        return kdh_err_set(err, KDH_ERANGE, "stack of %zu frames exceeds the limit of %d", n, KDH_STORE_FRAMES_MAX);
    for (size_t i = 0; i < n; i++)
        if (!(frames[i].mod && frames[i].has_rva) && !(frames[i].sym && frames[i].sym[0]) && !frames[i].has_addr)
            return kdh_err_set(err, KDH_EINVAL, "frame %zu has neither module+RVA, symbol text nor address", i);
    uint64_t id = kdh_store_stack_id(frames, n);
    *sid = id;
    if (kdh_u64map_get(&st->sids, id))
        return KDH_OK;
    int rc = append(st, F_STACKS, kdh_store_stack_json(id, frames, n), err);
    if (rc == KDH_OK && kdh_u64map_put(&st->sids, id, 1, NULL) != 0)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory interning a stack");
    if (rc == KDH_OK)
        st->info.stacks = st->sids.count;
    return rc;
}

int kdh_store_append_event(kdh_store_t *st, kdh_store_event_t *ev, uint64_t *seq, kdh_err_t *err)
{
    size_t tl = strnlen(ev->tag, KDH_STORE_TAG_MAX);
    if (tl == 0 || tl > 4)
        return kdh_err_set(err, KDH_EINVAL, "event tag must be 1 to 4 characters");
    ev->seq = st->next_seq;
    char line[2048];
    size_t n = kdh_store_fmt_event(&st->fmt, ev, line, sizeof line - 1);
    int rc = n ? append_line(st, F_EVENTS, line, n, err) : append(st, F_EVENTS, kdh_store_event_json(ev), err);
    if (rc != KDH_OK)
        return rc;
    st->next_seq++;
    st->info.next_seq = st->next_seq;
    if (seq)
        *seq = ev->seq;
    return KDH_OK;
}

int kdh_store_append_pool(kdh_store_t *st, const kdh_store_pool_t *p, kdh_err_t *err)
{
    size_t tl = strnlen(p->tag, KDH_STORE_TAG_MAX);
    if (tl == 0 || tl > 4)
        return kdh_err_set(err, KDH_EINVAL, "pool sample tag must be 1 to 4 characters");
    char line[1024];
    size_t n = kdh_store_fmt_pool(&st->fmt, p, line, sizeof line - 1);
    return n ? append_line(st, F_POOL, line, n, err) : append(st, F_POOL, kdh_store_pool_json(p), err);
}

int kdh_store_append_gap(kdh_store_t *st, const kdh_store_gap_t *g, kdh_err_t *err)
{
    return append(st, F_GAPS, kdh_store_gap_json(g), err);
}

int kdh_store_meta_text(kdh_store_t *st, const json_t *meta, char **text, kdh_err_t *err)
{
    int rc;
    *text = NULL;
    if ((rc = flush_pending(st, err)) != KDH_OK) /* meta describes lines that are on disk */
        return rc;
    json_t *m = json_object();
    if (!m)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory writing meta.json");
    json_object_set_new(m, "schema", json_string(KDH_STORE_SCHEMA));
    if (json_is_object(meta))
        json_object_update(m, (json_t *)meta);
    json_object_set_new(m, "schema", json_string(KDH_STORE_SCHEMA));
    if (!json_object_get(m, "updated")) {
        char now[32];
        iso_now(now, sizeof now);
        json_object_set_new(m, "updated", json_string(now));
    }
    *text = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(16));
    json_decref(m);
    if (!*text)
        return kdh_err_set(err, KDH_ENOMEM, "cannot serialize meta.json");
    return KDH_OK;
}

int kdh_store_put_meta(const char *dir, const char *text, kdh_err_t *err)
{
    char tmp[4200], dst[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/meta.json.tmp", dir) >= sizeof tmp ||
        (size_t)snprintf(dst, sizeof dst, "%s/meta.json", dir) >= sizeof dst)
        return kdh_err_set(err, KDH_EINVAL, "run directory path too long");
    size_t len = strlen(text);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return kdh_err_set(err, KDH_EIO, "cannot create %s: %s", tmp, strerror(errno));
    ssize_t w = write(fd, text, len);
    int ok = w == (ssize_t)len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok || rename(tmp, dst) != 0) {
        unlink(tmp);
        return kdh_err_set(err, KDH_EIO, "cannot replace %s: %s", dst, strerror(ok ? errno : saved));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* make the rename itself durable */
        (void)fsync(dfd); /* best effort: the file's own data was synced before the rename */
        close(dfd);
    }
    return KDH_OK;
}

int kdh_store_write_meta(kdh_store_t *st, const json_t *meta, kdh_err_t *err)
{
    char *text;
    int rc = kdh_store_meta_text(st, meta, &text, err);
    if (rc == KDH_OK)
        rc = kdh_store_put_meta(st->dir, text, err);
    free(text);
    return rc;
}

int kdh_store_sync(kdh_store_t *st, kdh_err_t *err)
{
    int rc = flush_pending(st, err);
    for (int f = 0; f < F_COUNT && rc == KDH_OK; f++) {
        if (st->fd[f] >= 0)
            rc = sync_file(st, f, err);
        st->unsynced[f] = 0;
    }
    return rc;
}

int kdh_store_extent(kdh_store_t *st, kdh_store_extent_t *ext, kdh_err_t *err)
{
    int rc = flush_pending(st, err);
    for (int f = 0; f < F_COUNT && rc == KDH_OK; f++) {
        struct stat sb;
        if (fstat(st->fd[f], &sb) != 0)
            return kdh_err_set(err, KDH_EIO, "%s/%s: fstat: %s", st->dir, file_names[f], strerror(errno));
        ext->bytes[f] = (uint64_t)sb.st_size;
    }
    return rc;
}

int kdh_store_sync_files(const char *dir, kdh_err_t *err)
{
    for (int f = 0; f < F_COUNT; f++) {
        char path[4200];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file_names[f]) >= sizeof path)
            return kdh_err_set(err, KDH_EINVAL, "run directory path too long");
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue; /* nothing written there to sync */
        if (fd < 0)
            return kdh_err_set(err, KDH_EIO, "cannot open %s to sync it: %s", path, strerror(errno));
        int ok = fdatasync(fd) == 0;
        int saved = errno;
        close(fd);
        if (!ok)
            return kdh_err_set(err, KDH_EIO, "fsync %s: %s", path, strerror(saved));
    }
    return KDH_OK;
}

void kdh_store_set_failed(kdh_store_t *st, const kdh_err_t *e)
{
    if (!st->failed) /* the first failure is the one every later call names */
        latch(st, e->msg);
}

int kdh_store_close(kdh_store_t *st, kdh_err_t *err)
{
    int rc = KDH_OK;
    if (!st)
        return KDH_OK;
    rc = flush_pending(st, err);
    for (int f = 0; f < F_COUNT; f++) {
        free(st->pend[f]);
        if (st->fd[f] < 0)
            continue;
        /* after a failure too: what was written before it is kept */
        if (fdatasync(st->fd[f]) != 0 && rc == KDH_OK)
            rc = kdh_err_set(err, KDH_EIO, "fsync %s/%s: %s", st->dir, file_names[f], strerror(errno));
        close(st->fd[f]);
    }
    kdh_u64map_free(&st->sids);
    kdh_u64map_free(&st->modkeys);
    kdh_store_fmt_free(&st->fmt);
    free(st->dir);
    free(st);
    return rc;
}
