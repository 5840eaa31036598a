/* prompt.c: the prompt pattern (patterns.c, PAT_PROMPT) decided without PCRE2 for the two forms
 * nearly every prompt line of a kernel debugger log has, "kd> ..." and "N: kd> ..." (N of 1 to 3
 * digits), in printable ASCII. Every other form (lkd, kd:x86, 0:000>, C:\>) and every line that is
 * not one of the two is left to PCRE2 (-1): this never decides a no-match.
 *
 * For these forms PCRE2's first path through the pattern is the match: the optional "N:" prefix
 * (its first alternative, \d{1,3} then ':' and an optional blank) is tried first, "kd" and '>'
 * follow, the optional ":name" cannot start at '>', and \s?(.*)$ matches any printable rest. */
#include "internal.h"

int kdh_ingest_prompt_fast(const char *s, size_t n, size_t ov[2 * KDH_INGEST_PROMPT_GROUPS])
{
    if (!n || !kdh_ingest_plain(s, n))
        return -1;
    size_t i = kdh_ingest_blanks(s, 0, n);
    size_t d = i;
    while (d < n && d - i < 4 && s[d] >= '0' && s[d] <= '9')
        d++;
    size_t k = i; /* where "kd>" must be */
    int cpu = 0;
    if (d > i) {
        if (d - i > 3 || d >= n || s[d] != ':')
            return -1;
        cpu = 1;
        k = d + 1 < n && s[d + 1] == ' ' ? d + 2 : d + 1;
    }
    if (n - k < 3 || s[k] != 'k' || s[k + 1] != 'd' || s[k + 2] != '>')
        return -1;
    for (int g = 0; g < 2 * KDH_INGEST_PROMPT_GROUPS; g++)
        ov[g] = PCRE2_UNSET;
    kdh_ingest_set_group(ov, 0, 0, n);
    if (cpu)
        kdh_ingest_set_group(ov, 1, i, d);
    size_t r = k + 3 < n && s[k + 3] == ' ' ? k + 4 : k + 3; /* \s?(.*)$ */
    kdh_ingest_set_group(ov, 2, r, n);
    return 1;
}
