/* journal.c: journal.jsonl, the record of what the harvester changed on the target (PoolHitTag
 * armed with its old value, disarmed; software breakpoints set and cleared, with their handles).
 * Written before each change takes effect, so a daemon that
 * died while the target was armed leaves enough behind for the next start to put it back. */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "harvest_int.h"

static uint64_t hex_field(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s ? strtoull(s, NULL, 16) : 0;
}

/* Breakpoint records: {"op":"bp_set"|"bp_clear","what":"breakpoint","addr","handle","kernel_base"}.
 * A set without a later clear of the same handle on the same kernel is still in the target. */
static void note_bp(hv_journal_bps_t *bps, const char *op, json_t *o)
{
    uint64_t addr = hex_field(o, "addr"), kb = hex_field(o, "kernel_base");
    uint32_t handle = (uint32_t)json_integer_value(json_object_get(o, "handle"));
    size_t k = 0;
    while (k < bps->n && !(bps->handle[k] == handle && bps->kernel_base[k] == kb))
        k++;
    if (strcmp(op, "bp_set") == 0) {
        if (k == bps->n && bps->n < HV_JOURNAL_BPS)
            bps->n++;
        if (k < bps->n) {
            bps->addr[k] = addr;
            bps->handle[k] = handle;
            bps->kernel_base[k] = kb;
        }
    } else if (k < bps->n) {
        bps->n--;
        bps->addr[k] = bps->addr[bps->n];
        bps->handle[k] = bps->handle[bps->n];
        bps->kernel_base[k] = bps->kernel_base[bps->n];
    }
}

void hv_journal_read(const char *dir, hv_journal_state_t *st, hv_journal_bps_t *bps)
{
    if (st)
        memset(st, 0, sizeof *st);
    if (bps)
        memset(bps, 0, sizeof *bps);
    char path[1024];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        /* a torn or damaged line says nothing reliable */
        const char *op = json_is_object(o) ? json_string_value(json_object_get(o, "op")) : NULL;
        if (op && st && strcmp(op, "arm") == 0) {
            st->armed = 1;
            st->addr = hex_field(o, "addr");
            st->old_value = (uint32_t)hex_field(o, "old");
            st->kernel_base = hex_field(o, "kernel_base");
        } else if (op && st && strcmp(op, "disarm") == 0) {
            st->armed = 0;
        } else if (op && bps && (strcmp(op, "bp_set") == 0 || strcmp(op, "bp_clear") == 0)) {
            note_bp(bps, op, o);
        }
        json_decref(o);
    }
    fclose(f);
}

/* One write per line, so a crash leaves whole lines (or a torn last one the reader skips);
 * durable: on disk (fsync) before returning. */
static int append_line(const char *dir, const char *line, size_t n, int durable, kdh_err_t *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return kdh_err_set(err, KDH_EIO, "cannot open %s: %s", path, strerror(errno));
    ssize_t w = write(fd, line, n);
    int bad = w < 0 || (size_t)w != n || (durable && fsync(fd) != 0);
    int e = errno;
    close(fd);
    if (bad)
        return kdh_err_set(err, KDH_EIO, "cannot write %s: %s", path, strerror(e));
    return KDH_OK;
}

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int hv_journal_append(const char *dir, const char *op, uint64_t addr, uint32_t old_value,
                      uint32_t new_value, uint64_t kernel_base, kdh_err_t *err)
{
    char line[512];
    int n = snprintf(line, sizeof line,
                     "{\"t\":%.3f,\"op\":\"%s\",\"what\":\"PoolHitTag\",\"addr\":\"0x%llx\",\"old\":\"0x%08x\","
                     "\"new\":\"0x%08x\",\"kernel_base\":\"0x%llx\"}\n",
                     now_wall(), op, (unsigned long long)addr, old_value, new_value, (unsigned long long)kernel_base);
    /* on disk before the target is changed */
    return append_line(dir, line, (size_t)n, 1, err);
}

int hv_journal_bp(const char *dir, const char *op, uint64_t addr, uint32_t handle, uint64_t kernel_base,
                  int durable, kdh_err_t *err)
{
    char line[256];
    int n = snprintf(line, sizeof line,
                     "{\"t\":%.3f,\"op\":\"%s\",\"what\":\"breakpoint\",\"addr\":\"0x%llx\",\"handle\":%u,"
                     "\"kernel_base\":\"0x%llx\"}\n",
                     now_wall(), op, (unsigned long long)addr, handle, (unsigned long long)kernel_base);
    return append_line(dir, line, (size_t)n, durable, err);
}
