/* pfrow.c: the two !poolfind row patterns (patterns.c, PAT_PFROW and PAT_PFROW_OLD) decided
 * without PCRE2 for rows of printable ASCII, where \s is only ' ' and '.' any byte; other bytes go
 * to PCRE2 (return -1).
 *
 * The reasoning: each run of a character class ends where the literal after it must begin with a
 * byte outside the class (' ', ',' or ')'), so no run can give bytes back usefully; an optional
 * "(Protected)" or "Process: ADDR" cannot be skipped when present (what follows would have to
 * match its first byte). What is left to choose are the lazy tags (lengths tried in PCRE2's
 * order, the first for which the rest matches wins) and, in the older layout, whether the '*'
 * before the tag is the pattern's optional star or the tag's first byte (the star first). */
#include "internal.h"

/* the end of the [0-9a-fA-F] run at i, with '`' too when sep */
static size_t hex_end(const char *s, size_t i, size_t n, int sep)
{
    while (i < n && (sep ? kdh_ingest_hexval1[(unsigned char)s[i]] != 0 : kdh_ingest_is_hex((unsigned char)s[i])))
        i++;
    return i;
}

static int lit(const char *s, size_t i, size_t n, const char *w, size_t wl)
{
    return n - i >= wl && memcmp(s + i, w, wl) == 0;
}

#define LIT(s, i, n, w) lit(s, i, n, w, sizeof(w) - 1)

/* PAT_PFROW after the tag: ", size\s+0x(HEX{1,16}), (\S+) pool\s*$" */
static int new_rest(const char *s, size_t i, size_t n, size_t *ov)
{
    if (!LIT(s, i, n, ", size"))
        return 0;
    size_t a = kdh_ingest_blanks(s, i + 6, n);
    if (a == i + 6 || !LIT(s, a, n, "0x"))
        return 0;
    size_t e = hex_end(s, a + 2, n, 0);
    if (e == a + 2 || e - (a + 2) > 16 || !LIT(s, e, n, ", "))
        return 0;
    kdh_ingest_set_group(ov, 3, a + 2, e);
    size_t t = e + 2, u = t;
    while (u < n && s[u] != ' ')
        u++;
    if (u == t || !LIT(s, u, n, " pool") || kdh_ingest_blanks(s, u + 5, n) != n)
        return 0;
    kdh_ingest_set_group(ov, 4, t, u);
    return 1;
}

static int pf_new(const char *s, size_t n, size_t *ov)
{
    size_t a = kdh_ingest_blanks(s, 0, n), e = hex_end(s, a, n, 1);
    if (e - a < 8 || e - a > 17 || !LIT(s, e, n, " : tag "))
        return 0;
    kdh_ingest_set_group(ov, 1, a, e);
    size_t t = e + 7;
    for (size_t len = 1; len <= 4 && t + len <= n; len++)
        if (new_rest(s, t + len, n, ov)) {
            kdh_ingest_set_group(ov, 2, t, t + len);
            return 1;
        }
    return 0;
}

/* PAT_PFROW_OLD after the tag: "(?:\s+\(Protected\))?(?:\s+Process: [0-9a-fA-F`]+)?\s*$" */
static int old_rest(const char *s, size_t i, size_t n)
{
    size_t b = kdh_ingest_blanks(s, i, n);
    if (b > i && LIT(s, b, n, "(Protected)")) {
        i = b + 11;
        b = kdh_ingest_blanks(s, i, n);
    }
    if (b > i && LIT(s, b, n, "Process: ")) {
        size_t e = hex_end(s, b + 9, n, 1);
        if (e == b + 9)
            return 0;
        i = e;
        b = kdh_ingest_blanks(s, i, n);
    }
    return b == n;
}

static int pf_old(const char *s, size_t n, size_t *ov)
{
    size_t a = kdh_ingest_blanks(s, 0, n);
    if (a < n && s[a] == '*')
        a++;
    size_t e = hex_end(s, a, n, 1);
    if (e - a < 8 || e - a > 17 || !LIT(s, e, n, " size:"))
        return 0;
    kdh_ingest_set_group(ov, 1, a, e);
    size_t b = kdh_ingest_blanks(s, e + 6, n), c = hex_end(s, b, n, 0);
    if (c == b || c - b > 16 || !LIT(s, c, n, " previous size:"))
        return 0;
    kdh_ingest_set_group(ov, 2, b, c);
    b = kdh_ingest_blanks(s, c + 15, n);
    c = hex_end(s, b, n, 0);
    if (c == b || c - b > 16)
        return 0;
    b = kdh_ingest_blanks(s, c, n);
    if (b == c)
        return 0;
    size_t w;
    if (LIT(s, b, n, "(Allocated)"))
        w = 9;
    else if (LIT(s, b, n, "(Free)"))
        w = 4;
    else
        return 0;
    kdh_ingest_set_group(ov, 3, b + 1, b + 1 + w);
    c = b + w + 2;
    size_t t = kdh_ingest_blanks(s, c, n);
    if (t == c || t >= n)
        return 0;
    /* \*?(\S.{0,3}?): with the star taken first, then with the star as the tag's first byte */
    for (int star = s[t] == '*'; star >= 0; star--) {
        size_t q = t + (size_t)star;
        if (q >= n || s[q] == ' ')
            continue;
        for (size_t len = 1; len <= 4 && q + len <= n; len++)
            if (old_rest(s, q + len, n)) {
                kdh_ingest_set_group(ov, 4, q, q + len);
                return 1;
            }
    }
    return 0;
}

int kdh_ingest_pfrow_fast(int id, const char *s, size_t n, size_t ov[2 * KDH_INGEST_PFROW_GROUPS])
{
    if (!n || (id != PAT_PFROW && id != PAT_PFROW_OLD) || !kdh_ingest_plain(s, n))
        return -1;
    for (int g = 0; g < 2 * KDH_INGEST_PFROW_GROUPS; g++)
        ov[g] = PCRE2_UNSET;
    if (!(id == PAT_PFROW ? pf_new(s, n, ov) : pf_old(s, n, ov))) {
        for (int g = 0; g < 2 * KDH_INGEST_PFROW_GROUPS; g++)
            ov[g] = PCRE2_UNSET;
        return 0;
    }
    kdh_ingest_set_group(ov, 0, 0, n);
    return 1;
}
