/* render_data.c: the report for other programs: JSON (jansson), CSV (RFC 4180 quoting) and
 * folded stacks (`root;...;leaf value`, the format flamegraph.pl and speedscope read). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "report_int.h"

/* What a tag's trend follows: its outstanding bytes, or its outstanding allocations when sizes
 * are not known. */
static const char *trend_of(const kdh_report_tag_summary_t *s)
{
    return kdh_report_value_name(s->by_count ? KDH_REPORT_VALUE_OUT_COUNT : KDH_REPORT_VALUE_OUTSTANDING);
}

static json_t *stack_json(const kdh_report_t *r, const rstack_t *s)
{
    char sid[17], first[40], last[40];
    kdh_store_sid_format(s->sid, sid);
    rep_time(s->first, first, sizeof first);
    rep_time(s->last, last, sizeof last);
    json_t *fr = json_array();
    for (uint32_t i = 0; i < s->nframes; i++)
        json_array_append_new(fr, json_string(rep_str(r, s->frames[i])));
    return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:s,s:o}", "sid", sid, "driver", rep_str(r, s->driver),
                     "allocs", (json_int_t)s->allocs, "alloc_bytes", (json_int_t)s->alloc_bytes, "outstanding",
                     (json_int_t)(s->out_count > 0 ? s->out_count : 0), "outstanding_bytes",
                     (json_int_t)(s->out_bytes > 0 ? s->out_bytes : 0), "frees_paired", (json_int_t)s->frees_paired,
                     "hits", (json_int_t)s->hits, "first", first, "last", last, "frames", fr);
}

int rep_render_json(const kdh_report_t *r, FILE *out, kdh_err_t *err)
{
    json_t *root = json_object(), *runs = json_array(), *tags = json_array(), *stacks = json_array(),
           *drivers = json_array(), *pools = json_array(), *skipped = json_array();
    for (unsigned i = 0; i < r->nruns; i++) {
        json_t *o = json_pack("{s:s,s:I}", "dir", r->runs[i].dir, "events", (json_int_t)r->runs[i].events);
        if (r->runs[i].target)
            json_object_set_new(o, "target", json_string(r->runs[i].target));
        if (r->runs[i].tag)
            json_object_set_new(o, "tag", json_string(r->runs[i].tag));
        if (r->runs[i].source)
            json_object_set_new(o, "source", json_string(r->runs[i].source));
        json_array_append_new(runs, o);
    }
    json_object_set_new(root, "runs", runs);
    /* What the lists are ranked by and what the trends follow: outstanding bytes only when every
     * allocation carried a size. */
    kdh_report_value_t v = kdh_report_value_used(r, r->opts.value);
    json_object_set_new(root, "measure",
                        json_pack("{s:s,s:s,s:b,s:I,s:I}", "ranked_by", kdh_report_value_name(v), "trend_of",
                                  kdh_report_value_name(kdh_report_value_used(r, KDH_REPORT_VALUE_OUTSTANDING)),
                                  "sizes_known", kdh_report_sizes_known(r), "allocs", (json_int_t)r->allocs_used,
                                  "allocs_with_size", (json_int_t)r->allocs_sized));
    json_object_set_new(root, "totals",
                        json_pack("{s:I,s:I,s:I,s:I,s:f}", "events", (json_int_t)r->events, "events_used",
                                  (json_int_t)r->events_used, "skipped_lines", (json_int_t)r->skipped, "gaps",
                                  (json_int_t)r->gaps, "gap_seconds", r->gap_seconds));
    for (uint32_t i = 0; i < r->ntags; i++) {
        kdh_report_tag_summary_t s;
        char first[40], last[40];
        rep_tag_summary(r, &r->tags[i], &s);
        rep_time(s.first, first, sizeof first);
        rep_time(s.last, last, sizeof last);
        json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:s,s:f,s:f,s:s}", "tag", s.tag,
                              "allocs", (json_int_t)s.allocs, "frees", (json_int_t)s.frees, "hits",
                              (json_int_t)s.hits, "alloc_bytes", (json_int_t)s.alloc_bytes, "paired_frees",
                              (json_int_t)s.paired_frees, "unpaired_frees", (json_int_t)s.unpaired_frees,
                              "addrless_frees", (json_int_t)s.addrless_frees, "reused_addrs",
                              (json_int_t)s.reused_addrs, "outstanding", (json_int_t)s.outstanding,
                              "outstanding_bytes", (json_int_t)s.outstanding_bytes, "first", first, "last", last,
                              "slope_per_s", s.slope, "monotonic", s.monotonic, "trend", s.trend);
        json_object_set_new(o, "trend_of", json_string(trend_of(&s)));
        if (s.owner)
            json_object_set_new(o, "owner", json_string(s.owner));
        json_array_append_new(tags, o);
    }
    json_object_set_new(root, "tags", tags);
    /* --by as in text: tags always, stacks and drivers unless another section was asked for. */
    int want_stacks = r->opts.by == KDH_REPORT_BY_ALL || r->opts.by == KDH_REPORT_BY_STACK;
    int want_drivers = r->opts.by == KDH_REPORT_BY_ALL || r->opts.by == KDH_REPORT_BY_DRIVER;
    uint32_t n = 0, *idx = want_stacks ? rep_sorted_stacks(r, v, &n) : NULL;
    for (uint32_t k = 0; k < n && (!r->opts.top || k < r->opts.top); k++)
        json_array_append_new(stacks, stack_json(r, &r->stacks[idx[k]]));
    free(idx);
    n = 0;
    json_object_set_new(root, "stacks", stacks);
    rdriver_t *d = want_drivers ? rep_drivers(r, v, &n) : NULL;
    for (uint32_t i = 0; i < n && (!r->opts.top || i < r->opts.top); i++)
        json_array_append_new(drivers, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "driver", rep_str(r, d[i].name),
                                                  "stacks", (json_int_t)d[i].stacks, "allocs",
                                                  (json_int_t)d[i].allocs, "alloc_bytes", (json_int_t)d[i].alloc_bytes,
                                                  "outstanding", (json_int_t)d[i].out_count, "outstanding_bytes",
                                                  (json_int_t)d[i].out_bytes));
    free(d);
    json_object_set_new(root, "drivers", drivers);
    for (uint32_t i = 0; i < r->npools; i++) {
        kdh_report_pool_summary_t s;
        rep_pool_summary(r, &r->pools[i], &s);
        json_array_append_new(pools, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:s,s:b,s:I}", "tag", s.tag, "pool",
                                               s.pool, "samples", (json_int_t)s.samples, "first_bytes",
                                               (json_int_t)s.first_bytes, "last_bytes", (json_int_t)s.last_bytes,
                                               "peak_bytes", (json_int_t)s.peak_bytes, "slope_bytes_per_s", s.slope,
                                               "monotonic", s.monotonic, "trend", s.trend, "steady_growth",
                                               s.steady_growth, "boots", (json_int_t)s.boots));
    }
    json_object_set_new(root, "pool", pools);
    for (unsigned i = 0; i < r->nnotes; i++)
        json_array_append_new(skipped, json_string(r->notes[i]));
    json_object_set_new(root, "skipped", skipped);
    int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(root);
    fputc('\n', out);
    if (rc != 0 || ferror(out))
        return kdh_err_set(err, KDH_EIO, "cannot write the JSON report");
    return KDH_OK;
}

static void csv_field(FILE *out, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

int rep_render_csv(const kdh_report_t *r, FILE *out)
{
    char first[40], last[40], sid[17];
    /* The last column names the measure: what the rows are ranked by, or what the trend follows. */
    kdh_report_value_t v = kdh_report_value_used(r, r->opts.value);
    const char *ranked = kdh_report_value_name(v);
    if (r->opts.by == KDH_REPORT_BY_TAG) {
        fputs("tag,owner,allocs,frees,hits,alloc_bytes,outstanding,outstanding_bytes,first,last,trend,slope_per_s,"
              "trend_of\n",
              out);
        for (uint32_t i = 0; i < r->ntags; i++) {
            kdh_report_tag_summary_t s;
            rep_tag_summary(r, &r->tags[i], &s);
            rep_time(s.first, first, sizeof first);
            rep_time(s.last, last, sizeof last);
            csv_field(out, s.tag);
            fputc(',', out);
            csv_field(out, s.owner ? s.owner : "");
            fprintf(out, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%s,%s,%s,%.3f,%s\n",
                    s.allocs, s.frees, s.hits, s.alloc_bytes, s.outstanding, s.outstanding_bytes, first, last, s.trend,
                    s.slope, trend_of(&s));
        }
    } else if (r->opts.by == KDH_REPORT_BY_DRIVER) {
        uint32_t n = 0;
        rdriver_t *d = rep_drivers(r, v, &n);
        fputs("driver,stacks,allocs,alloc_bytes,outstanding,outstanding_bytes,ranked_by\n", out);
        for (uint32_t i = 0; i < n && (!r->opts.top || i < r->opts.top); i++) {
            csv_field(out, rep_str(r, d[i].name));
            fprintf(out, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRId64 ",%" PRId64 ",%s\n", d[i].stacks, d[i].allocs,
                    d[i].alloc_bytes, d[i].out_count, d[i].out_bytes, ranked);
        }
        free(d);
    } else {
        uint32_t n = 0, *idx = rep_sorted_stacks(r, v, &n);
        fputs("sid,driver,allocs,alloc_bytes,outstanding,outstanding_bytes,frees_paired,hits,first,last,frames,"
              "ranked_by\n",
              out);
        for (uint32_t k = 0; k < n && (!r->opts.top || k < r->opts.top); k++) {
            const rstack_t *s = &r->stacks[idx[k]];
            kdh_store_sid_format(s->sid, sid);
            rep_time(s->first, first, sizeof first);
            rep_time(s->last, last, sizeof last);
            fprintf(out, "%s,", sid);
            csv_field(out, rep_str(r, s->driver));
            fprintf(out, ",%" PRIu64 ",%" PRIu64 ",%" PRId64 ",%" PRId64 ",%" PRIu64 ",%" PRIu64 ",%s,%s,", s->allocs,
                    s->alloc_bytes, s->out_count > 0 ? s->out_count : 0, s->out_bytes > 0 ? s->out_bytes : 0,
                    s->frees_paired, s->hits, first, last);
            /* Frames innermost first, as `k` lists them, separated by " | ". */
            size_t len = 1;
            for (uint32_t i = 0; i < s->nframes; i++)
                len += strlen(rep_str(r, s->frames[i])) + 3;
            char *joined = malloc(len);
            if (joined) {
                size_t at = 0;
                for (uint32_t i = 0; i < s->nframes; i++) {
                    const char *fr = rep_str(r, s->frames[i]);
                    size_t fl = strlen(fr);
                    if (i) {
                        memcpy(joined + at, " | ", 3);
                        at += 3;
                    }
                    memcpy(joined + at, fr, fl);
                    at += fl;
                }
                joined[at] = '\0';
                csv_field(out, joined);
                free(joined);
            }
            fprintf(out, ",%s\n", ranked);
        }
        free(idx);
    }
    return ferror(out) ? KDH_EIO : KDH_OK;
}

/* One folded line's stack text: root first, ';' between frames; a ';' or control character inside
 * a frame would break the format and becomes '_'. Returns a malloc'd string. */
char *rep_folded_text(const kdh_report_t *r, const rstack_t *s)
{
    size_t len = 1;
    for (uint32_t i = 0; i < s->nframes; i++)
        len += strlen(rep_str(r, s->frames[i])) + 1;
    if (s->nframes == 0)
        len += 40;
    char *t = malloc(len), *p = t;
    if (!t)
        return NULL;
    if (s->nframes == 0) {
        char sid[17];
        kdh_store_sid_format(s->sid, sid);
        p += sprintf(p, "[stack %s]", sid);
    }
    for (uint32_t i = s->nframes; i-- > 0;) {
        const char *f = rep_str(r, s->frames[i]);
        for (; *f; f++)
            *p++ = (*f == ';' || (unsigned char)*f < 0x20) ? '_' : *f;
        if (i)
            *p++ = ';';
    }
    *p = '\0';
    return t;
}

typedef struct fline {
    char *text;
    int64_t v;
} fline_t;

static int cmp_fline(const void *a, const void *b)
{
    return strcmp(((const fline_t *)a)->text, ((const fline_t *)b)->text);
}

int rep_render_folded(const kdh_report_t *r, FILE *out)
{
    kdh_report_value_t v = kdh_report_value_used(r, r->opts.value);
    uint32_t n = 0, *idx = rep_sorted_stacks(r, v, &n), k = 0;
    fline_t *lines = malloc((n ? n : 1) * sizeof *lines);
    if (!lines) {
        free(idx);
        return KDH_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const rstack_t *s = &r->stacks[idx[i]];
        int64_t val = rep_stack_value(s, v);
        if (val <= 0)
            continue;
        if (!(lines[k].text = rep_folded_text(r, s)))
            continue;
        lines[k++].v = val;
    }
    free(idx);
    qsort(lines, k, sizeof *lines, cmp_fline);
    /* Different sids can print the same (symbolic frames of ingested logs): one line each text. */
    for (uint32_t i = 0; i < k;) {
        int64_t sum = lines[i].v;
        uint32_t j = i + 1;
        while (j < k && strcmp(lines[j].text, lines[i].text) == 0)
            sum += lines[j++].v;
        fprintf(out, "%s %" PRId64 "\n", lines[i].text, sum);
        for (; i < j; i++)
            free(lines[i].text);
    }
    free(lines);
    return ferror(out) ? KDH_EIO : KDH_OK;
}
