/* diff.c: comparing two sets of runs the way UMDH compares two snapshots: per stack and per driver
 * `+ DELTA (NEW - OLD)`, sorted by the delta, so what grew comes first. Stacks are matched by sid,
 * which is module identity + RVA, so runs from different boots compare correctly. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "report_int.h"

typedef struct drow {
    const rstack_t *old, *cur; /* either may be NULL */
    const kdh_report_t *from;  /* report whose strings describe the stack */
    int64_t ov, nv;
    uint32_t name_old, name_cur; /* driver rows: name indexes in each report */
    const char *name;
} drow_t;

static int cmp_drow(const void *a, const void *b)
{
    const drow_t *x = a, *y = b;
    int64_t dx = x->nv - x->ov, dy = y->nv - y->ov;
    if (dx != dy)
        return dx > dy ? -1 : 1;
    if (x->nv != y->nv)
        return x->nv > y->nv ? -1 : 1;
    if (x->name && y->name)
        return strcmp(x->name, y->name);
    uint64_t sx = x->cur ? x->cur->sid : x->old->sid, sy = y->cur ? y->cur->sid : y->old->sid;
    return sx < sy ? -1 : sx > sy;
}

static int active(const rstack_t *s)
{
    /* s is an entry of a report's stacks array, called only for indexes below its nstacks */
    return s->allocs + s->hits + s->frees_paired > 0; /* NOLINT(clang-analyzer-core.NullDereference) */
}

static drow_t *stack_rows(const kdh_report_t *base, const kdh_report_t *cur, kdh_report_value_t v, size_t *n)
{
    drow_t *rows = malloc(((size_t)base->nstacks + cur->nstacks + 1) * sizeof *rows);
    size_t k = 0;
    if (!rows)
        return NULL;
    for (uint32_t i = 0; i < cur->nstacks; i++) {
        const rstack_t *s = &cur->stacks[i];
        uint32_t o = rep_stack_find(base, s->sid);
        const rstack_t *os = o != NONE_IDX ? &base->stacks[o] : NULL;
        if (!active(s) && !(os && active(os)))
            continue;
        rows[k] = (drow_t){os, s, s->known || !os ? cur : base, os ? rep_stack_value(os, v) : 0,
                           rep_stack_value(s, v), 0, 0, NULL};
        k++;
    }
    for (uint32_t i = 0; i < base->nstacks; i++) {
        const rstack_t *s = &base->stacks[i];
        if (!active(s) || rep_stack_find(cur, s->sid) != NONE_IDX)
            continue;
        rows[k++] = (drow_t){s, NULL, base, rep_stack_value(s, v), 0, 0, 0, NULL};
    }
    qsort(rows, k, sizeof *rows, cmp_drow);
    *n = k;
    return rows;
}

static int64_t drv_val(const rdriver_t *d, kdh_report_value_t v)
{
    return rep_driver_value(d, v);
}

static drow_t *driver_rows(const kdh_report_t *base, const kdh_report_t *cur, kdh_report_value_t v, size_t *n)
{
    uint32_t nb = 0, nc = 0;
    rdriver_t *db = rep_drivers(base, v, &nb), *dc = rep_drivers(cur, v, &nc);
    drow_t *rows = malloc(((size_t)nb + nc + 1) * sizeof *rows);
    size_t k = 0;
    if (rows) {
        for (uint32_t i = 0; i < nc; i++) {
            rows[k] = (drow_t){0};
            rows[k].name = rep_str(cur, dc[i].name);
            rows[k].nv = drv_val(&dc[i], v);
            for (uint32_t j = 0; j < nb; j++)
                if (strcmp(rep_str(base, db[j].name), rows[k].name) == 0)
                    rows[k].ov = drv_val(&db[j], v);
            k++;
        }
        for (uint32_t j = 0; j < nb; j++) {
            int seen = 0;
            for (uint32_t i = 0; i < nc && !seen; i++)
                seen = strcmp(rep_str(base, db[j].name), rep_str(cur, dc[i].name)) == 0;
            if (seen)
                continue;
            rows[k] = (drow_t){0};
            rows[k].name = rep_str(base, db[j].name);
            rows[k].ov = drv_val(&db[j], v);
            k++;
        }
        qsort(rows, k, sizeof *rows, cmp_drow);
    }
    /* names point into the reports' string tables, which outlive the rows */
    free(db);
    free(dc);
    *n = k;
    return rows;
}

int kdh_report_render_diff(const kdh_report_t *base, const kdh_report_t *cur, FILE *out, kdh_err_t *err)
{
    /* Bytes compare only when both sides know sizes (kdh_report_sizes_known); else both compare
     * outstanding counts. */
    kdh_report_value_t v = cur->opts.value;
    if (v == KDH_REPORT_VALUE_OUTSTANDING && (!kdh_report_sizes_known(base) || !kdh_report_sizes_known(cur)))
        v = KDH_REPORT_VALUE_OUT_COUNT;
    unsigned top = cur->opts.top;
    size_t ns = 0, nd = 0;
    drow_t *rows = stack_rows(base, cur, v, &ns);
    drow_t *drows = driver_rows(base, cur, v, &nd);
    int rc = KDH_OK;
    if (!rows || !drows) {
        free(rows);
        free(drows);
        return kdh_err_set(err, KDH_ENOMEM, "out of memory comparing runs");
    }
    char sid[17];
    switch (cur->opts.format) {
    case KDH_REPORT_FOLDED:
        /* difffolded.pl's format: "stack old new". */
        for (size_t i = 0; i < ns; i++) {
            const rstack_t *s = rows[i].cur && rows[i].from == cur ? rows[i].cur : rows[i].old;
            char *t = rep_folded_text(rows[i].from, s);
            if (t)
                fprintf(out, "%s %" PRId64 " %" PRId64 "\n", t, rows[i].ov, rows[i].nv);
            free(t);
        }
        break;
    case KDH_REPORT_JSON: {
        json_t *root = json_object(), *sa = json_array(), *da = json_array();
        json_object_set_new(root, "ranked_by", json_string(kdh_report_value_name(v)));
        for (size_t i = 0; i < ns && (!top || i < top); i++) {
            const rstack_t *s = rows[i].cur && rows[i].from == cur ? rows[i].cur : rows[i].old;
            json_t *fr = json_array();
            for (uint32_t f = 0; f < s->nframes; f++)
                json_array_append_new(fr, json_string(rep_str(rows[i].from, s->frames[f])));
            kdh_store_sid_format(s->sid, sid);
            json_array_append_new(sa, json_pack("{s:s,s:s,s:I,s:I,s:I,s:o}", "sid", sid, "driver",
                                                rep_str(rows[i].from, s->driver), "old", (json_int_t)rows[i].ov, "new",
                                                (json_int_t)rows[i].nv, "delta", (json_int_t)(rows[i].nv - rows[i].ov),
                                                "frames", fr));
        }
        for (size_t i = 0; i < nd && (!top || i < top); i++)
            json_array_append_new(da, json_pack("{s:s,s:I,s:I,s:I}", "driver", drows[i].name, "old",
                                                (json_int_t)drows[i].ov, "new", (json_int_t)drows[i].nv, "delta",
                                                (json_int_t)(drows[i].nv - drows[i].ov)));
        json_object_set_new(root, "stacks", sa);
        json_object_set_new(root, "drivers", da);
        if (json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
            rc = kdh_err_set(err, KDH_EIO, "cannot write the JSON diff");
        fputc('\n', out);
        json_decref(root);
        break;
    }
    default:
        fprintf(out, "kdharvest report --diff: %u base run%s -> %u new run%s, compared by %s\n", base->nruns,
                base->nruns == 1 ? "" : "s", cur->nruns, cur->nruns == 1 ? "" : "s", kdh_report_value_name(v));
        fprintf(out, "\nStacks (DELTA (NEW - OLD)), largest growth first\n");
        size_t shown = 0;
        for (size_t i = 0; i < ns; i++) {
            int64_t d = rows[i].nv - rows[i].ov;
            if (d == 0)
                continue;
            if (top && shown >= top)
                break;
            shown++;
            const rstack_t *s = rows[i].cur && rows[i].from == cur ? rows[i].cur : rows[i].old;
            uint64_t oc = rows[i].cur ? (uint64_t)(rows[i].cur->out_count > 0 ? rows[i].cur->out_count : 0) : 0;
            kdh_store_sid_format(s->sid, sid);
            fprintf(out, "%c %" PRId64 " (%" PRId64 " - %" PRId64 ")  %" PRIu64 " outstanding  %s  sid %s\n",
                    d > 0 ? '+' : '-', d > 0 ? d : -d, rows[i].nv, rows[i].ov, oc, rep_str(rows[i].from, s->driver), sid);
            for (uint32_t f = 0; f < s->nframes; f++)
                fprintf(out, "       %s\n", rep_str(rows[i].from, s->frames[f]));
        }
        if (!shown)
            fprintf(out, "  (no change)\n");
        fprintf(out, "\nDrivers\n");
        shown = 0;
        for (size_t i = 0; i < nd; i++) {
            int64_t d = drows[i].nv - drows[i].ov;
            if (d == 0)
                continue;
            if (top && shown >= top)
                break;
            shown++;
            fprintf(out, "%c %" PRId64 " (%" PRId64 " - %" PRId64 ")  %s\n", d > 0 ? '+' : '-', d > 0 ? d : -d,
                    drows[i].nv, drows[i].ov, drows[i].name);
        }
        if (!shown)
            fprintf(out, "  (no change)\n");
        break;
    }
    free(rows);
    free(drows);
    if (rc == KDH_OK && ferror(out))
        rc = kdh_err_set(err, KDH_EIO, "cannot write the diff");
    return rc;
}

int kdh_report_render(const kdh_report_t *r, FILE *out, kdh_err_t *err)
{
    int rc;
    switch (r->opts.format) {
    case KDH_REPORT_JSON:
        return rep_render_json(r, out, err);
    case KDH_REPORT_HTML:
        return rep_render_html(r, out, err);
    case KDH_REPORT_CSV:
        rc = rep_render_csv(r, out);
        break;
    case KDH_REPORT_FOLDED:
        rc = rep_render_folded(r, out);
        break;
    default:
        rc = rep_render_text(r, out);
        break;
    }
    if (rc != KDH_OK)
        return kdh_err_set(err, rc, "cannot write the report: %s", kdh_strerror(rc));
    return KDH_OK;
}
