/* callsite.c: the CALLSITE grammar (patterns.c, PAT_CALLSITE) decided without PCRE2 for the lines
 * logs are made of: printable ASCII. Every frame goes through it, and the pattern's lazy name
 * with an optional "+0x" tail cost more than the rest of the frame; other bytes go to PCRE2. */
#include "internal.h"

#include <string.h>

/* [A-Za-z0-9_.$-], the pattern's MOD class */
static const unsigned char mod_class[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1,
    ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1, ['_'] = 1, ['.'] = 1, ['$'] = 1, ['-'] = 1,
};

static int is_mod(unsigned char c)
{
    return mod_class[c];
}

/* The reasoning, alternative by alternative (MOD has neither '!' nor '+', so its greedy run can
 * never give back characters usefully; in printable ASCII \s is only ' ' and '.' is any byte):
 * 1. MOD '!' [" ?? "] \S then the shortest name after which "+0x" and 1-16 hex digits end the
 *    line; the hex run before the end is maximal, so at most one such tail exists.
 * 2. MOD or "<Unloaded_" 1-200 bytes other than "<> " and '>', then "+0x" and 1-16 hex digits.
 * 3. "0x" and 1-16 hex digits, or 1-8 hex digits, '`' and 8 hex digits. */
int kdh_ingest_callsite_fast(const char *s, size_t n, size_t ov[2 * KDH_INGEST_CS_GROUPS])
{
    if (!n || !kdh_ingest_plain(s, n))
        return -1;
    size_t m = 0;
    while (m < n && is_mod((unsigned char)s[m]))
        m++;
    return kdh_ingest_callsite_groups(s, n, m, ov);
}

int kdh_ingest_callsite_groups(const char *s, size_t n, size_t m, size_t ov[2 * KDH_INGEST_CS_GROUPS])
{
    for (int g = 0; g < 2 * KDH_INGEST_CS_GROUPS; g++)
        ov[g] = PCRE2_UNSET;
    kdh_ingest_set_group(ov, 0, 0, n);
    /* trailing hex digits, and whether "+0x" precedes them */
    size_t h = 0;
    while (h < n && kdh_ingest_is_hex((unsigned char)s[n - 1 - h]))
        h++;
    int tail = h >= 1 && h <= 16 && n >= h + 3 && memcmp(s + n - h - 3, "+0x", 3) == 0;
    size_t tail_at = tail ? n - h - 3 : 0;

    /* the name's shortest form: one non-blank, or " ?? " and one non-blank */
    size_t name_min = 0;
    if (m + 5 < n && memcmp(s + m + 1, " ?? ", 4) == 0 && s[m + 5] != ' ')
        name_min = 5;
    else if (m + 1 < n && s[m + 1] != ' ')
        name_min = 1;
    if (m > 0 && name_min && s[m] == '!') {
        kdh_ingest_set_group(ov, 1, 0, m);
        if (tail && tail_at >= m + 1 + name_min) {
            kdh_ingest_set_group(ov, 2, m + 1, tail_at);
            kdh_ingest_set_group(ov, 3, n - h, n);
        } else {
            kdh_ingest_set_group(ov, 2, m + 1, n);
        }
        return 1;
    }
    size_t e = 0;
    if (m > 0) {
        e = m;
    } else if (n > 10 && memcmp(s, "<Unloaded_", 10) == 0) {
        size_t r = 10;
        while (r < n && s[r] != '<' && s[r] != '>' && s[r] != ' ')
            r++;
        if (r > 10 && r - 10 <= 200 && r < n && s[r] == '>')
            e = r + 1;
    }
    if (e && tail && tail_at == e) {
        kdh_ingest_set_group(ov, 4, 0, e);
        kdh_ingest_set_group(ov, 5, e + 3, n);
        return 1;
    }
    if (n >= 3 && s[0] == '0' && s[1] == 'x') {
        size_t a = kdh_ingest_hex_run(s, 2, n);
        int ok = (a >= 1 && a <= 16 && 2 + a == n) ||
                 (a >= 1 && a <= 8 && 2 + a + 9 == n && s[2 + a] == '`' && kdh_ingest_hex_run(s, 3 + a, n) == 8);
        if (ok) {
            kdh_ingest_set_group(ov, 6, 2, n);
            return 1;
        }
    }
    kdh_ingest_set_group(ov, 0, PCRE2_UNSET, PCRE2_UNSET);
    return 0;
}

int kdh_ingest_callsite_scan(const char *s, size_t n, size_t ov[2 * KDH_INGEST_CS_GROUPS], size_t *mod_run)
{
    if (!n)
        return KDH_INGEST_CS_ODD;
    size_t m = 0;
    while (m < n && is_mod((unsigned char)s[m]))
        m++;
    *mod_run = m;
    /* the rest in one pass, a word at a time: is any byte outside printable ASCII, is any '<'
     * (the start of a " <--" note) */
    unsigned odd = 0, lt = 0;
    size_t i = m;
    for (; i + 8 <= n; i += 8) {
        uint64_t x = kdh_ingest_word(s + i);
        odd |= kdh_ingest_word_odd(x);
        lt |= kdh_ingest_word_has(x, '<');
    }
    for (; i < n; i++) {
        unsigned c = (unsigned char)s[i];
        odd |= c - 0x20u > 0x5eu;
        lt |= c == '<';
    }
    if (odd)
        return KDH_INGEST_CS_ODD;
    if (lt || s[n - 1] == ']' || s[n - 1] == ')')
        return KDH_INGEST_CS_NOTE;
    return kdh_ingest_callsite_groups(s, n, m, ov);
}
