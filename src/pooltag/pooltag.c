/* pooltag.c: parsing pooltag.txt and looking owners up. The file is hand-maintained, so the
 * parser splits only on the first two separators (descriptions contain " - " too), accepts a
 * second separator without its trailing space (`nt!cm        -internal ...`), and counts lines it
 * cannot read instead of failing the whole file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/pooltag.h"

struct kdh_pooltag {
    char *text; /* private copy; entries point into it */
    kdh_pooltag_entry_t *entries;
    size_t count, cap;
    size_t malformed;
    unsigned first_malformed;
};

static char *rtrim(char *s, char *end)
{
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *end = '\0';
    return s;
}

static char *ltrim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Finds " -" at or after s; the separator is the run of blanks, '-', and blanks. */
static char *find_sep(char *s)
{
    return strstr(s, " -");
}

static int is_comment(const char *s)
{
    return (s[0] == 'r' || s[0] == 'R') && (s[1] == 'e' || s[1] == 'E') && (s[2] == 'm' || s[2] == 'M') &&
           (s[3] == '\0' || s[3] == ' ' || s[3] == '\t');
}

static void bad_line(kdh_pooltag_t *pt, unsigned lineno)
{
    pt->malformed++;
    if (!pt->first_malformed)
        pt->first_malformed = lineno;
}

/* Parses one line in place (already without "\r\n"). */
static int parse_line(kdh_pooltag_t *pt, char *s, unsigned lineno)
{
    char *p = ltrim(s);
    if (*p == '\0' || is_comment(p))
        return KDH_OK;
    if (p != s) { /* tags start in column 1; an indented line is a stray continuation */
        bad_line(pt, lineno);
        return KDH_OK;
    }
    char *sep1 = find_sep(s);
    if (!sep1 || sep1 == s) {
        bad_line(pt, lineno);
        return KDH_OK;
    }
    char *tag = rtrim(s, sep1);
    size_t tl = strlen(tag);
    char *rest = sep1 + 2; /* past " -" */
    if (tl == 0 || tl > 4) {
        bad_line(pt, lineno);
        return KDH_OK;
    }
    char *binary = ltrim(rest), *desc = "";
    char *sep2 = find_sep(binary);
    if (sep2) {
        desc = ltrim(sep2 + 2);
        rtrim(desc, desc + strlen(desc));
        rtrim(binary, sep2);
    } else {
        rtrim(binary, binary + strlen(binary));
    }
    if (pt->count == pt->cap) {
        size_t ncap = pt->cap ? pt->cap * 2 : 256;
        kdh_pooltag_entry_t *n = realloc(pt->entries, ncap * sizeof *n);
        if (!n)
            return KDH_ENOMEM;
        pt->entries = n;
        pt->cap = ncap;
    }
    kdh_pooltag_entry_t *e = &pt->entries[pt->count++];
    memset(e->tag, ' ', 4);
    memcpy(e->tag, tag, tl);
    e->tag[4] = '\0';
    e->binary = binary;
    e->desc = desc;
    e->line = lineno;
    return KDH_OK;
}

int kdh_pooltag_parse(kdh_pooltag_t **out, const char *text, size_t len, kdh_err_t *err)
{
    *out = NULL;
    kdh_pooltag_t *pt = calloc(1, sizeof *pt);
    if (!pt || !(pt->text = malloc(len + 1))) {
        free(pt);
        return kdh_err_set(err, KDH_ENOMEM, "out of memory reading pooltag.txt");
    }
    memcpy(pt->text, text, len);
    pt->text[len] = '\0';
    char *s = pt->text, *end = pt->text + len;
    unsigned lineno = 0;
    while (s < end) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *le = nl ? nl : end;
        lineno++;
        size_t ll = (size_t)(le - s);
        *le = '\0';
        if (ll && s[ll - 1] == '\r')
            s[--ll] = '\0';
        if (strlen(s) != ll) {
            bad_line(pt, lineno); /* an embedded NUL: binary junk */
        } else if (parse_line(pt, s, lineno) != KDH_OK) {
            kdh_pooltag_free(pt);
            return kdh_err_set(err, KDH_ENOMEM, "out of memory reading pooltag.txt");
        }
        s = le + 1;
    }
    *out = pt;
    return KDH_OK;
}

int kdh_pooltag_load(kdh_pooltag_t **out, const char *path, kdh_err_t *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kdh_err_set(err, KDH_EIO, "cannot open pooltag file %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int rc = buf ? KDH_OK : kdh_err_set(err, KDH_ENOMEM, "out of memory reading %s", path);
    while (rc == KDH_OK) {
        if (len == cap) {
            if (cap >= (64u << 20)) {
                rc = kdh_err_set(err, KDH_ERANGE, "pooltag file %s is larger than 64 MiB", path);
                break;
            }
            /* a failed growth must fail the load: parsing the part read so far would lose tags */
            char *n = realloc(buf, cap * 2);
            if (!n) {
                rc = kdh_err_set(err, KDH_ENOMEM, "out of memory reading %s", path);
                break;
            }
            buf = n;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    if (rc == KDH_OK && ferror(f))
        rc = kdh_err_set(err, KDH_EIO, "read error in %s", path);
    fclose(f);
    if (rc == KDH_OK)
        rc = kdh_pooltag_parse(out, buf, len, err);
    free(buf);
    return rc;
}

void kdh_pooltag_free(kdh_pooltag_t *pt)
{
    if (!pt)
        return;
    free(pt->entries);
    free(pt->text);
    free(pt);
}

size_t kdh_pooltag_count(const kdh_pooltag_t *pt)
{
    return pt->count;
}

const kdh_pooltag_entry_t *kdh_pooltag_entry(const kdh_pooltag_t *pt, size_t i)
{
    return i < pt->count ? &pt->entries[i] : NULL;
}

size_t kdh_pooltag_malformed(const kdh_pooltag_t *pt)
{
    return pt->malformed;
}

unsigned kdh_pooltag_first_malformed(const kdh_pooltag_t *pt)
{
    return pt->first_malformed;
}

/* Number of literal characters before the first wildcard, or -1 when pat does not match tag. */
static int wild_match(const char pat[4], const char tag[4])
{
    for (int i = 0; i < 4; i++) {
        if (pat[i] == '*')
            return i;
        if (pat[i] != '?' && pat[i] != tag[i])
            return -1;
    }
    return 4;
}

const kdh_pooltag_entry_t *kdh_pooltag_lookup(const kdh_pooltag_t *pt, const char *tag)
{
    char t[4];
    size_t n = tag ? strlen(tag) : 0;
    if (!pt || n == 0 || n > 4)
        return NULL;
    memset(t, ' ', 4);
    memcpy(t, tag, n);
    const kdh_pooltag_entry_t *best = NULL;
    int best_lit = -1;
    for (size_t i = 0; i < pt->count; i++) {
        const kdh_pooltag_entry_t *e = &pt->entries[i];
        if (memcmp(e->tag, t, 4) == 0 && !memchr(e->tag, '?', 4) && !memchr(e->tag, '*', 4))
            return e;
        if (!memchr(e->tag, '?', 4) && !memchr(e->tag, '*', 4))
            continue;
        int lit = wild_match(e->tag, t);
        if (lit < 0)
            continue;
        /* "literal characters before the first wildcard" */
        int first = 4;
        for (int k = 0; k < 4; k++)
            if (e->tag[k] == '?' || e->tag[k] == '*') {
                first = k;
                break;
            }
        if (first > best_lit) {
            best_lit = first;
            best = e;
        }
    }
    return best;
}
