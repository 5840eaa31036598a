/* layout.c: the x64, x86 and ADDR frame-line patterns (patterns.c, PAT_X64 / PAT_X86 / PAT_ADDRFR) decided without
 * PCRE2 for the shape nearly every frame line has: printable ASCII, single tokens separated by
 * spaces. Anything this code is not certain about is left to PCRE2 (return -1). */
#include "internal.h"

#include <string.h>

/* width-w hex, or w dashes, at i (w = 8), or for x64 8`8 of either; then at least one space. */
/* Are the 8 bytes at s all hex digits? Tested together: no byte has the high bit, each is in
 * '0'-'9', or in 'a'-'f' once 0x20 is set ('A'-'F' are the only other bytes that then are). A
 * byte b < 0x80 is at most hi when b + (0x7f - hi) keeps bit 7 clear, and at least lo when
 * b + (0x80 - lo) sets it; neither sum carries into the next byte. */
static int all_hex8(const char *s)
{
    uint64_t x = kdh_ingest_word(s);
    if (x & KDH_INGEST_HIGHS)
        return 0;
    uint64_t l = x | KDH_INGEST_ONES * 0x20;
    uint64_t digit = ~(x + KDH_INGEST_ONES * (0x7f - '9')) & (x + KDH_INGEST_ONES * (0x80 - '0'));
    uint64_t letter = ~(l + KDH_INGEST_ONES * (0x7f - 'f')) & (l + KDH_INGEST_ONES * (0x80 - 'a'));
    return ((digit | letter) & KDH_INGEST_HIGHS) == KDH_INGEST_HIGHS;
}

/* exactly 8 hex digits at i: no ninth follows */
static int hex8_at(const char *s, size_t i, size_t n)
{
    return all_hex8(s + i) && (i + 8 == n || !kdh_ingest_is_hex((unsigned char)s[i + 8]));
}

static int word8(const char *s, size_t i, size_t n, int dash_ok)
{
    if (i + 8 > n)
        return 0;
    if (all_hex8(s + i))
        return hex8_at(s, i, n);
    return dash_ok && memcmp(s + i, "--------", 8) == 0 && (i + 8 == n || s[i + 8] != '-');
}

static int word64(const char *s, size_t i, size_t n, int dash_ok)
{
    if (i + 17 > n || s[i + 8] != '`')
        return 0;
    if (all_hex8(s + i) && hex8_at(s, i + 9, n))
        return 1;
    return dash_ok && memcmp(s + i, "--------`--------", 17) == 0;
}

/* The leading [frame number] [hex] columns: groups ([hex]{1,4}\s+)? ([hex]{1,7}\s+)? with
 * PCRE2's order of preference. Returns the index after them, or (size_t)-1 when unsure. */
static size_t prefix(const char *s, size_t i, size_t n, size_t *ov)
{
    size_t a = kdh_ingest_hex_run(s, i, n);
    if (a == 0 || a > 7 || i + a >= n || s[i + a] != ' ')
        return i; /* no prefix column: the address column starts here */
    size_t j = kdh_ingest_blanks(s, i + a, n);
    size_t b = kdh_ingest_hex_run(s, j, n);
    int second = b >= 1 && b <= 7 && j + b < n && s[j + b] == ' ';
    if (a <= 4) {
        kdh_ingest_set_group(ov, 1, i, i + a);
        return second ? kdh_ingest_blanks(s, j + b, n) : j;
    }
    return second ? (size_t)-1 : j; /* 5-7 digits: the unnamed column; then a second is an error */
}

/* PAT_ADDRFR: [0x]ADDR callsite, ADDR 8 or 16 hex digits or 8`8. The pattern's "(?:0x)?" can
 * only be given back at a cost of a '0' then an 'x' in the address, which cannot match. */
static int addr_columns(const char *s, size_t n, size_t *ov)
{
    size_t i = kdh_ingest_blanks(s, 0, n);
    size_t j = (n - i >= 2 && s[i] == '0' && s[i + 1] == 'x') ? i + 2 : i;
    size_t h = kdh_ingest_hex_run(s, j, n), w;
    if (h == 8 && j + 8 < n && s[j + 8] == ' ')
        w = 8;
    else if (h == 8 && j + 17 < n && s[j + 8] == '`' && kdh_ingest_hex_run(s, j + 9, n) == 8 && s[j + 17] == ' ')
        w = 17;
    else if (h == 16 && j + 16 < n && s[j + 16] == ' ')
        w = 16;
    else
        return -1;
    size_t k = kdh_ingest_blanks(s, j + w, n);
    /* every byte up to the callsite's first is printable: \s was only ' ' there */
    if (k >= n || !kdh_ingest_plain(s, k + 1))
        return -1;
    kdh_ingest_set_group(ov, 1, j, j + w);
    kdh_ingest_set_group(ov, 2, k, n);
    kdh_ingest_set_group(ov, 0, 0, n);
    return 1;
}

int kdh_ingest_layout_columns(int id, const char *s, size_t n, size_t ov[2 * KDH_INGEST_LAYOUT_GROUPS])
{
    int x64 = id == PAT_X64;
    if (!n || (id != PAT_X64 && id != PAT_X86 && id != PAT_ADDRFR))
        return -1;
    if (id == PAT_ADDRFR) {
        for (int g = 0; g < 2 * KDH_INGEST_LAYOUT_GROUPS; g++)
            ov[g] = PCRE2_UNSET;
        return addr_columns(s, n, ov);
    }
    for (int g = 0; g < 2 * KDH_INGEST_LAYOUT_GROUPS; g++)
        ov[g] = PCRE2_UNSET;
    size_t i = prefix(s, kdh_ingest_blanks(s, 0, n), n, ov);
    if (i == (size_t)-1)
        return -1;
    const char *inl = x64 ? "(Inline Function)" : "(Inline)";
    size_t il = strlen(inl), w = x64 ? 17 : 8;
    if (x64 ? word64(s, i, n, 0) : word8(s, i, n, 0)) {
        kdh_ingest_set_group(ov, 2, i, i + w);
        i += w;
    } else if (n - i >= il && memcmp(s + i, inl, il) == 0) {
        kdh_ingest_set_group(ov, 3, i, i + il);
        i += il;
    } else {
        return -1;
    }
    if (i >= n || s[i] != ' ')
        return -1;
    i = kdh_ingest_blanks(s, i, n);
    if (!(x64 ? word64(s, i, n, 1) : word8(s, i, n, 1)) || i + w >= n || s[i + w] != ' ')
        return -1;
    kdh_ingest_set_group(ov, 4, i, i + w);
    i = kdh_ingest_blanks(s, i + w, n);
    if (i >= n || (!x64 && n - i >= 4 && memcmp(s + i, "(T) ", 4) == 0))
        return -1; /* x86 "(T)", the trap frame mark: PCRE2 decides those rare lines */
    /* the optional argument columns: taken only when all of them and a callsite follow */
    size_t j = i, hi = i + 1; /* hi: past the last byte the decision looked at */
    int args = 1;
    if (x64) {
        if (s[j] != ':' || j + 1 >= n || s[j + 1] != ' ')
            args = 0;
        else
            j = kdh_ingest_blanks(s, j + 1, n);
        hi = j + 2;
        for (int k = 0; args && k < 4; k++) {
            hi = j + 18;
            if (!word64(s, j, n, 1) || j + 17 >= n || s[j + 17] != ' ')
                args = 0;
            else
                j = kdh_ingest_blanks(s, j + 17, n);
        }
        // cppcheck-suppress redundantAssignment ; the loop's hi is kept when args fell to 0 (no assignment here)
        if (args && (hi = j + 2, j >= n || s[j] != ':' || j + 1 >= n || s[j + 1] != ' '))
            args = 0;
        if (args)
            j = kdh_ingest_blanks(s, j + 1, n);
    } else {
        size_t at[3];
        for (int k = 0; args && k < 3; k++) {
            hi = j + 9;
            if (!word8(s, j, n, 1) || j + 8 >= n || s[j + 8] != ' ') {
                args = 0;
            } else {
                at[k] = j;
                j = kdh_ingest_blanks(s, j + 8, n);
            }
        }
        if (args && j < n)
            for (int k = 0; k < 3; k++)
                kdh_ingest_set_group(ov, 5 + k, at[k], at[k] + 8);
    }
    if (!args || j >= n)
        j = i;
    /* The decision above treats every byte but ' ' as a non-blank: that holds only where the
     * bytes it looked at are printable (\s also covers \t \v \f \r \n). After that the
     * callsite is ".*$", any byte but a line end. Checking afterwards keeps the scan short. */
    if (hi > n)
        hi = n;
    if (j + 1 > hi)
        hi = j + 1;
    if (!kdh_ingest_plain(s, hi))
        return -1;
    kdh_ingest_set_group(ov, x64 ? 5 : 8, j, n);
    kdh_ingest_set_group(ov, 0, 0, n);
    return 1;
}

int kdh_ingest_layout_fast(int id, const char *s, size_t n, size_t ov[2 * KDH_INGEST_LAYOUT_GROUPS])
{
    if (kdh_ingest_layout_columns(id, s, n, ov) < 0)
        return -1;
    size_t j = ov[2 * (id == PAT_X64 ? 5 : id == PAT_X86 ? 8 : 2)];
    if (memchr(s + j, '\n', n - j) || memchr(s + j, '\r', n - j))
        return -1;
    return 1;
}
