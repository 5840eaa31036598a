/* trend.c: the one growth rule of the report, for the outstanding bytes (or allocations) of a tag's
 * events and for pool usage samples alike. A steady leak and a load that rises and falls can end
 * at the same total; they differ in shape. The series keeps 64 time buckets (doubling their width
 * as the run grows, so memory is fixed) plus a least-squares fit over every point. */
#include <math.h>

#include "report_int.h"

#define NB 64

/* Places x in the buckets of s, merging neighbours while it lies beyond the last; returns the
 * bucket index. Series fed the same times (rep_series_add2) merge identically. */
static unsigned place(kdh_report_series_t *s, double x, kdh_report_series_t *twin)
{
    double fi = floor(x / s->width);
    while (fi >= NB) {
        /* Merge neighbours: a bucket's value is the value at its end. */
        unsigned nu = (s->used + 1) / 2;
        for (unsigned i = 0; i < nu; i++) {
            unsigned j = 2 * i + 1 < s->used ? 2 * i + 1 : s->used - 1;
            s->y[i] = s->y[j];
            if (twin)
                twin->y[i] = twin->y[j];
        }
        s->used = nu;
        s->width *= 2;
        fi = floor(x / s->width);
    }
    return (unsigned)fi;
}

static void start(kdh_report_series_t *s, double t, int64_t y)
{
    if (!s->started) {
        s->started = 1;
        s->t0 = t;
        s->width = 1.0;
        s->first_y = s->peak_y = s->min_y = y;
    }
}

static double rel_x(const kdh_report_series_t *s, double t)
{
    double x = t - s->t0;
    return x >= 0 ? x : 0; /* earlier than the first point (another run, a clock step) or NaN */
}

static void put(kdh_report_series_t *s, unsigned idx, double x, int64_t y)
{
    for (unsigned j = s->used; j < idx; j++) /* quiet buckets keep the last value */
        s->y[j] = s->used ? s->last_y : s->first_y;
    s->y[idx] = y;
    if (idx + 1 > s->used)
        s->used = idx + 1;
    s->n += 1;
    s->sx += x;
    s->sy += (double)y;
    s->sxx += x * x;
    s->sxy += x * (double)y;
    s->last_y = y;
    if (y > s->peak_y)
        s->peak_y = y;
    if (y < s->min_y)
        s->min_y = y;
}

void kdh_report_series_add(kdh_report_series_t *s, double t, int64_t y)
{
    start(s, t, y);
    double x = rel_x(s, t);
    put(s, place(s, x, NULL), x, y);
}

/* Two series always fed at the same times (a tag's bytes and counts): the bucket arithmetic once. */
void rep_series_add2(kdh_report_series_t *a, kdh_report_series_t *b, double t, int64_t ya, int64_t yb)
{
    start(a, t, ya);
    start(b, t, yb);
    double x = rel_x(a, t);
    unsigned idx = place(a, x, b);
    b->used = a->used;
    b->width = a->width;
    put(a, idx, x, ya);
    put(b, idx, x, yb);
}

double kdh_report_series_slope(const kdh_report_series_t *s)
{
    double d = s->n * s->sxx - s->sx * s->sx;
    if (s->n < 2 || !(d > 0))
        return 0;
    return (s->n * s->sxy - s->sx * s->sy) / d;
}

/* Share of the bucketed curve's changes that are rises. Equal neighbours are left out: a quiet
 * bucket carries the last value and says nothing about direction. 1 for a curve that never changes. */
double kdh_report_series_monotonic(const kdh_report_series_t *s)
{
    unsigned up = 0, changes = 0;
    for (unsigned i = 1; i < s->used; i++) {
        changes += s->y[i] != s->y[i - 1];
        up += s->y[i] > s->y[i - 1];
    }
    return changes ? (double)up / (double)changes : 1.0;
}

/* The rule (also in docs/run-format.md). A leak is memory that is never given back, so the level
 * the curve returns to -- its floor -- rises through the run; under high load the curve climbs and
 * falls back to the same floor however high it peaks. So the curve is cut into four quarters of
 * time and the lowest value of each quarter (its floor) is compared, with R = peak - lowest:
 *   too short        fewer than 3 points, all at one instant, or fewer than 4 buckets (a shape
 *                    needs a start, a middle and an end)
 *   flat             R <= 5% of the peak
 *   steady growth    slope > 0, no quarter's floor falls more than R/10 below the one before, at
 *                    least two of the three quarter-to-quarter steps raise the floor by more than
 *                    R/10 (a single step up -- a cache filled once -- raises it only once), and
 *                    the last floor is at least R/2 above the first (growth, not swings, makes up
 *                    most of the range)
 *   shrinking        slope < 0 and last < first
 *   rises and falls  anything else (load: swings that return to their floor; a step; noise) */
const char *kdh_report_series_trend(const kdh_report_series_t *s)
{
    if (s->n < 3 || s->sxx <= 0 || s->used < 4)
        return "too short";
    double peak = s->peak_y > 0 ? (double)s->peak_y : 0;
    double range = (double)(s->peak_y - s->min_y);
    if (peak <= 0 || range <= 0.05 * peak)
        return "flat";
    double slope = kdh_report_series_slope(s);
    int64_t floor_q[4];
    for (unsigned q = 0; q < 4; q++) {
        unsigned a = q * s->used / 4, b = (q + 1) * s->used / 4;
        floor_q[q] = s->y[a];
        for (unsigned i = a + 1; i < b; i++)
            if (s->y[i] < floor_q[q])
                floor_q[q] = s->y[i];
    }
    unsigned rises = 0, falls = 0;
    for (unsigned q = 1; q < 4; q++) {
        double d = (double)(floor_q[q] - floor_q[q - 1]);
        rises += d > 0.1 * range;
        falls += d < -0.1 * range;
    }
    if (slope > 0 && falls == 0 && rises >= 2 && (double)(floor_q[3] - floor_q[0]) >= 0.5 * range)
        return "steady growth";
    if (slope < 0 && s->last_y < s->first_y)
        return "shrinking";
    return "rises and falls";
}
