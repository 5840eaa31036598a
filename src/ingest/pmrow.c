/* pmrow.c: the poolmon row pattern (patterns.c, PAT_PMROW) decided without PCRE2 for rows of
 * printable ASCII, where \s is only ' ' and '.' any byte. Every poolmon row of a log goes through
 * it; other bytes go to PCRE2 (return -1).
 *
 * The reasoning: after the tag, every element is deterministic. A digit run cannot give digits
 * back (what follows it is a blank, '(' or the end, never a digit); an optional "( n )" count
 * cannot be skipped when present (the next element would start at its '('); the type words share
 * no prefix that a blank may follow. Only the lazy tag \S.{0,3}? chooses: its lengths 1 to 4 are
 * tried in PCRE2's order, the first for which the rest of the row matches wins. */
#include "internal.h"

static size_t digits(const char *s, size_t i, size_t n)
{
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

/* (-?)\d+ at i: the index after it, or 0 when there is none (i is never 0 here). */
static size_t number(const char *s, size_t i, size_t n, int sign)
{
    size_t a = sign && i < n && s[i] == '-' ? i + 1 : i;
    size_t e = digits(s, a, n);
    return e > a ? e : 0;
}

/* \s*(?:\(\s*-?\d+\s*\))?\s+ at i: the index after it, or 0. */
static size_t gap(const char *s, size_t i, size_t n)
{
    size_t j = kdh_ingest_blanks(s, i, n);
    if (j < n && s[j] == '(') {
        size_t k = number(s, kdh_ingest_blanks(s, j + 1, n), n, 1);
        if (!k)
            return 0;
        k = kdh_ingest_blanks(s, k, n);
        if (k >= n || s[k] != ')')
            return 0;
        i = k + 1;
        j = kdh_ingest_blanks(s, i, n);
    }
    return j > i ? j : 0;
}

/* Everything after the tag: \s+(type)\s+(\d+) gap (\d+) gap (-?\d+)\s+(-?\d+) gap (-?\d+)(?:\s.*)?$ */
static int rest(const char *s, size_t i, size_t n, size_t *ov)
{
    static const char *const types[] = {"Nonp", "Paged", "NonP", "Pagd", "Sess"};
    size_t j = kdh_ingest_blanks(s, i, n), t = 0;
    if (j == i)
        return 0;
    for (size_t k = 0; k < KDH_ARRAY_LEN(types) && !t; k++) {
        size_t l = strlen(types[k]);
        if (n - j > l && memcmp(s + j, types[k], l) == 0 && s[j + l] == ' ')
            t = l;
    }
    if (!t)
        return 0;
    kdh_ingest_set_group(ov, 2, j, j + t);
    size_t a = kdh_ingest_blanks(s, j + t, n), e;
    if (!(e = number(s, a, n, 0)))
        return 0;
    kdh_ingest_set_group(ov, 3, a, e);
    if (!(a = gap(s, e, n)) || !(e = number(s, a, n, 0)))
        return 0;
    kdh_ingest_set_group(ov, 4, a, e);
    if (!(a = gap(s, e, n)) || !(e = number(s, a, n, 1)))
        return 0;
    kdh_ingest_set_group(ov, 5, a, e);
    a = kdh_ingest_blanks(s, e, n);
    if (a == e || !(e = number(s, a, n, 1)))
        return 0;
    kdh_ingest_set_group(ov, 6, a, e);
    if (!(a = gap(s, e, n)) || !(e = number(s, a, n, 1)))
        return 0;
    kdh_ingest_set_group(ov, 7, a, e);
    return e == n || s[e] == ' '; /* (?:\s.*)?$ */
}

int kdh_ingest_pmrow_fast(const char *s, size_t n, size_t ov[2 * KDH_INGEST_PMROW_GROUPS])
{
    if (!n || !kdh_ingest_plain(s, n))
        return -1;
    size_t t0 = s[0] == ' ' ? 1 : 0; /* ^ ?\S: the optional blank is taken when there is one */
    if (t0 >= n || s[t0] == ' ')
        return 0;
    for (size_t len = 1; len <= 4 && t0 + len <= n; len++)
        if (rest(s, t0 + len, n, ov)) {
            kdh_ingest_set_group(ov, 0, 0, n);
            kdh_ingest_set_group(ov, 1, t0, t0 + len);
            return 1;
        }
    return 0;
}
