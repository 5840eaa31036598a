/* trend.c: the growth rule for outstanding bytes over a run. A steady leak and a load that rises
 * and falls can end at the same total; they differ in shape. The series keeps 64 time buckets
 * (doubling their width as the run grows, so memory is fixed) plus a least-squares fit over every
 * point; the label combines the slope with how monotonic the bucketed curve is. */
#include <math.h>

#include "kdh/report.h"

#define NB 64

void kdh_report_series_add(kdh_report_series_t *s, double t, int64_t y)
{
    if (!s->started) {
        s->started = 1;
        s->t0 = t;
        s->width = 1.0;
        s->first_y = s->peak_y = s->min_y = y;
    }
    double x = t - s->t0;
    if (!(x >= 0)) /* earlier than the first point (another run, a clock step) or NaN */
        x = 0;
    double fi = floor(x / s->width);
    while (fi >= NB) {
        /* Merge neighbours: a bucket's value is the value at its end. */
        unsigned nu = (s->used + 1) / 2;
        for (unsigned i = 0; i < nu; i++) {
            unsigned j = 2 * i + 1 < s->used ? 2 * i + 1 : s->used - 1;
            s->y[i] = s->y[j];
        }
        s->used = nu;
        s->width *= 2;
        fi = floor(x / s->width);
    }
    unsigned idx = (unsigned)fi;
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

double kdh_report_series_slope(const kdh_report_series_t *s)
{
    double d = s->n * s->sxx - s->sx * s->sx;
    if (s->n < 2 || !(d > 0))
        return 0;
    return (s->n * s->sxy - s->sx * s->sy) / d;
}

double kdh_report_series_monotonic(const kdh_report_series_t *s)
{
    unsigned up = 0;
    if (s->used < 2)
        return 1.0;
    for (unsigned i = 1; i < s->used; i++)
        up += s->y[i] >= s->y[i - 1];
    return (double)up / (double)(s->used - 1);
}

/* The rule (also in docs/run-format.md):
 *   too short        fewer than 3 points, or all at one time
 *   flat             the whole range (peak - lowest) is within 5% of the peak
 *   steady growth    slope > 0, >= 80% of bucket steps non-decreasing, last >= 90% of the peak,
 *                    last > first
 *   shrinking        slope < 0 and last < first
 *   rises and falls  anything else */
const char *kdh_report_series_trend(const kdh_report_series_t *s)
{
    if (s->n < 3 || s->sxx <= 0)
        return "too short";
    double peak = s->peak_y > 0 ? (double)s->peak_y : 0;
    if (peak <= 0 || (double)(s->peak_y - s->min_y) <= 0.05 * peak)
        return "flat";
    double slope = kdh_report_series_slope(s);
    if (slope > 0 && kdh_report_series_monotonic(s) >= 0.8 && (double)s->last_y >= 0.9 * peak &&
        s->last_y > s->first_y)
        return "steady growth";
    if (slope < 0 && s->last_y < s->first_y)
        return "shrinking";
    return "rises and falls";
}
