/* reader.c: bytes to lines for the parser: chunks of any size, CRLF or LF, lines over
 * KDH_INGEST_LINE_MAX skipped and counted without being buffered, a last line without newline;
 * and files read in fixed-size chunks, UTF-8 BOMs skipped, UTF-16LE (.logopen /u) decoded; and
 * a file's first clock line found ahead of the parser, for the stacks printed before it. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- line assembly ---- */

static int grow(kdh_ingest_parser_t *p, size_t need, kdh_err_t *err)
{
    if (need <= p->lcap)
        return KDH_OK;
    size_t cap = p->lcap;
    while (cap < need)
        cap *= 2;
    char *b = realloc(p->lbuf, cap);
    if (!b)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for a %zu-byte log line", need);
    p->lbuf = b;
    p->lcap = cap;
    return KDH_OK;
}

/* The newlines of a chunk, found 64 bytes at a time as a bit mask and handed out in order (the
 * caller consumes each line up to its newline): a memchr call per line of about 50 bytes cost more
 * in its setup than in its scan. Without SSE2 each lookup is a memchr. */
typedef struct nl_scan {
    const char *end;  /* the chunk's end */
    const char *base; /* the 64-byte block mask describes */
    const char *next; /* memchr variant: where the next search starts */
    uint64_t mask;    /* the newlines of that block not handed out yet */
} nl_scan_t;

#ifdef __SSE2__
#include <emmintrin.h>

static inline uint64_t nl_bits(const char *b)
{
    const __m128i nl = _mm_set1_epi8('\n');
    uint64_t m0 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)b), nl));
    uint64_t m1 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 16)), nl));
    uint64_t m2 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 32)), nl));
    uint64_t m3 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 48)), nl));
    return m0 | m1 << 16 | m2 << 32 | m3 << 48;
}

/* the block at b, of which only [b, end) is read: the last one of a chunk may be shorter */
static inline uint64_t nl_block(const char *b, const char *end)
{
    if (end - b >= 64)
        return nl_bits(b);
    uint64_t m = 0;
    for (size_t i = 0; b + i < end; i++)
        m |= (uint64_t)(b[i] == '\n') << i;
    return m;
}

static void nl_start(nl_scan_t *z, const char *s, size_t n)
{
    z->end = s + n;
    z->base = s;
    z->next = s;
    z->mask = n ? nl_block(s, z->end) : 0;
}

/* The chunk's next newline, or NULL when there is none. */
static inline const char *nl_next(nl_scan_t *z)
{
    while (!z->mask) {
        if (z->end - z->base <= 64)
            return NULL;
        z->base += 64;
        z->mask = nl_block(z->base, z->end);
    }
    const char *nl = z->base + __builtin_ctzll(z->mask);
    z->mask &= z->mask - 1;
    return nl;
}
#else
static void nl_start(nl_scan_t *z, const char *s, size_t n)
{
    z->end = s + n;
    z->base = z->next = s;
    z->mask = 0;
}

static inline const char *nl_next(nl_scan_t *z)
{
    const char *nl = memchr(z->next, '\n', (size_t)(z->end - z->next));
    if (nl)
        z->next = nl + 1;
    return nl;
}
#endif

int kdh_ingest_parser_feed(kdh_ingest_parser_t *p, const char *data, size_t n, kdh_err_t *err)
{
    int rc;
    /* One scan of the whole chunk for NUL bytes (a serial-line glitch) spares every line its own. */
    int chunk_nul_free = memchr(data, 0, n) == NULL;
    nl_scan_t z;
    nl_start(&z, data, n);
    while (n) {
        const char *nl = nl_next(&z); /* consumed below up to and with it: data == previous + 1 */
        size_t take = nl ? (size_t)(nl - data) : n;
        if (p->ldiscard) {
            /* the rest of an over-long line: drop it without buffering */
        } else if (p->llen + take > KDH_INGEST_LINE_MAX) {
            p->ldiscard = 1;
            p->llen = 0;
        } else if (nl && p->llen == 0) {
            /* the whole line is inside the chunk: parse it in place, no copy */
            p->nul_free = chunk_nul_free;
            rc = kdh_ingest_parser_line(p, data, take, err);
            p->nul_free = 0;
            if (rc)
                return rc;
            data += take + 1;
            n -= take + 1;
            continue;
        } else {
            if ((rc = grow(p, p->llen + take, err)))
                return rc;
            memcpy(p->lbuf + p->llen, data, take);
            p->llen += take;
        }
        if (!nl)
            return KDH_OK;
        if (p->ldiscard) {
            p->lineno++;
            p->st.lines++;
            kdh_ingest_note_skip(p);
            p->ldiscard = 0;
            if ((rc = kdh_ingest_end_stack(p, err)))
                return rc;
        } else if ((rc = kdh_ingest_parser_line(p, p->lbuf, p->llen, err))) {
            return rc;
        }
        p->llen = 0;
        data += take + 1;
        n -= take + 1;
    }
    return KDH_OK;
}

/* `.logopen /u` writes UTF-16LE. The grammar is ASCII, so code units below 0x80 are kept and
 * the rest become '?'; an odd trailing byte waits in *carry for the next chunk. */
static size_t from_utf16(const unsigned char *in, size_t n, char *out, int *carry)
{
    size_t k = 0, i = 0;
    if (*carry >= 0 && n) {
        unsigned u = (unsigned)*carry | (unsigned)in[0] << 8;
        out[k++] = u < 0x80 ? (char)u : '?';
        *carry = -1;
        i = 1;
    }
    for (; i + 1 < n; i += 2) {
        unsigned u = (unsigned)in[i] | (unsigned)in[i + 1] << 8;
        out[k++] = u < 0x80 ? (char)u : '?';
    }
    if (i < n)
        *carry = in[i];
    return k;
}

/* The encoding of a file from its first bytes: the length of a BOM to skip, and *utf16 set for
 * UTF-16LE (a BOM, or ASCII text with a NUL after every byte). */
static size_t encoding(const unsigned char *buf, size_t n, int *utf16)
{
    if (n >= 3 && buf[0] == 0xef && buf[1] == 0xbb && buf[2] == 0xbf)
        return 3;
    if (n >= 2 && buf[0] == 0xff && buf[1] == 0xfe) {
        *utf16 = 1;
        return 2;
    }
    if (n >= 4 && buf[0] && !buf[1] && buf[2] && !buf[3])
        *utf16 = 1;
    return 0;
}

/* ---- the first clock, looked up ahead ---- */

#define CLOCK_KEEP 512 /* bytes of a line kept to test it: a clock line says what it is well before */
static const char clock_word[] = "Debug session time:";

typedef struct clock_scan {
    const pcre2_code *re;
    pcre2_match_data *md;
    char line[CLOCK_KEEP]; /* UTF-16: the start of a line that continues in the next chunk */
    size_t kept, len;      /* bytes kept, bytes of that line so far */
    int nul;               /* a NUL byte in that line */
    int found;
    double t;
} clock_scan_t;

/* One whole line (s, n bytes of its len): a clock as kd_line takes it (no NUL byte, not over-long,
 * leading blanks allowed). */
static void clock_line(clock_scan_t *c, const char *s, size_t n, size_t len, int nul)
{
    size_t lead = 0;
    while (lead < n && (s[lead] == ' ' || s[lead] == '\t'))
        lead++;
    if (n - lead < sizeof clock_word - 1 || memcmp(s + lead, clock_word, sizeof clock_word - 1) != 0 ||
        len > KDH_INGEST_LINE_MAX || nul || memchr(s, 0, n))
        return;
    if (pcre2_match(c->re, (PCRE2_SPTR)s, n, 0, 0, c->md, NULL) > 0 &&
        kdh_ingest_session_clock(s, pcre2_get_ovector_pointer(c->md), &c->t))
        c->found = 1;
}

/* Text in memory: only the places that hold the clock's first words are looked at (memmem runs at
 * several GB/s; a line by line scan cost a tenth of a parse). */
static void clock_text(clock_scan_t *c, const char *s, size_t n)
{
    const char *end = s + n, *at = s;
    while (!c->found && (at = memmem(at, (size_t)(end - at), clock_word, sizeof clock_word - 1))) {
        const char *ls = at;
        while (ls > s && (ls[-1] == ' ' || ls[-1] == '\t'))
            ls--;
        if (ls == s || ls[-1] == '\n') {
            const char *nl = memchr(at, '\n', (size_t)(end - at));
            size_t len = (size_t)((nl ? nl : end) - ls);
            clock_line(c, ls, len, len, 0);
        }
        at += sizeof clock_word - 1;
    }
}

/* Decoded UTF-16 text in chunks: lines may continue from one chunk to the next. */
static void clock_chunk(clock_scan_t *c, const char *s, size_t n)
{
    while (n && !c->found) {
        const char *nl = memchr(s, '\n', n);
        size_t take = nl ? (size_t)(nl - s) : n;
        if (nl && !c->len) {
            clock_line(c, s, take, take, 0); /* the whole line is in the chunk: tested in place */
        } else {
            size_t keep = take < CLOCK_KEEP - c->kept ? take : CLOCK_KEEP - c->kept;
            memcpy(c->line + c->kept, s, keep);
            c->kept += keep;
            c->len += take;
            c->nul |= memchr(s, 0, take) != NULL;
            if (!nl)
                return;
            clock_line(c, c->line, c->kept, c->len, c->nul);
            c->kept = c->len = 0;
            c->nul = 0;
        }
        s += take + 1;
        n -= take + 1;
    }
}

/* Plain text read in chunks: the whole lines of a chunk are searched in place (clock_text); a
 * line that continues into the next chunk goes through clock_chunk's kept start. */
static void clock_plain(clock_scan_t *c, const char *s, size_t n)
{
    size_t i = 0;
    if (c->len) { /* the rest of a line begun in an earlier chunk */
        const char *nl = memchr(s, '\n', n);
        i = nl ? (size_t)(nl - s) + 1 : n;
        clock_chunk(c, s, i);
    }
    const char *last = i < n ? memrchr(s + i, '\n', n - i) : NULL;
    if (last && !c->found) {
        clock_text(c, s + i, (size_t)(last - (s + i)) + 1);
        i = (size_t)(last - s) + 1;
    }
    if (i < n && !c->found)
        clock_chunk(c, s + i, n - i);
}

#define CLOCK_CHUNK (1 << 16) /* bytes read at a time: memory stays the same for any file size */

int kdh_ingest_first_clock(const kdh_ingest_parser_t *p, int fd, double *t)
{
    if (!(p->kinds & KDH_INGEST_KD))
        return 0; /* the parser reads no clock then */
    /* A regular file only: from a pipe or a device the bytes would be taken from the parser.
     * pread: the parse's own reading position is left where it is. Read, not mapped: a mapped
     * file's pages count in the process's memory, which would then grow with the file (a whole
     * file is searched when it has no clock line). */
    struct stat sb;
    clock_scan_t *c = NULL;
    unsigned char *buf = NULL;
    char *wide = NULL;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        c = calloc(1, sizeof *c);
        buf = malloc(CLOCK_CHUNK);
        wide = malloc(CLOCK_CHUNK / 2 + 1);
    }
    if (c) {
        c->re = p->pat->re[PAT_SESSTIME];
        c->md = pcre2_match_data_create_from_pattern(c->re, NULL);
    }
    /* How far to look: KDH_INGEST_CLOCK_REACH bytes past the parse's reading position (the stack
     * asking was in the chunk read last). The search begins at the file's start all the same,
     * where a line and the encoding are known to begin. */
    off_t pos = lseek(fd, 0, SEEK_CUR);
    off_t stop = pos < 0 ? sb.st_size : pos + (off_t)KDH_INGEST_CLOCK_REACH, at = 0;
    if (c && c->md && buf && wide) {
        int first = 1, utf16 = 0, carry = -1;
        while (at < stop) {
            size_t want = stop - at < CLOCK_CHUNK ? (size_t)(stop - at) : CLOCK_CHUNK;
            ssize_t r = pread(fd, buf, want, at);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0 || c->found)
                break;
            at += r;
            size_t off = 0, n = (size_t)r;
            if (first) {
                off = encoding(buf, n, &utf16);
                first = 0;
            }
            if (utf16)
                clock_chunk(c, wide, from_utf16(buf + off, n - off, wide, &carry));
            else
                clock_plain(c, (const char *)buf + off, n - off);
            if (c->found)
                break;
        }
        if (!c->found && c->len && at >= sb.st_size) /* not a line cut by the reach */
            clock_line(c, c->line, c->kept, c->len, c->nul); /* a last line without newline */
    }
    int found = c && c->found;
    if (found)
        *t = c->t;
    if (c)
        pcre2_match_data_free(c->md);
    free(c);
    free(buf);
    free(wide);
    return found;
}

int kdh_ingest_parse_file(kdh_ingest_parser_t *p, const char *path, kdh_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kdh_err_set(err, KDH_EIO, "cannot open %s: %s", path, strerror(errno));
    static __thread unsigned char buf[1 << 16];
    static __thread char wide[1 << 15];
    int rc = KDH_OK, first = 1, utf16 = 0, carry = -1;
    p->file_fd = fd;
    for (;;) {
        ssize_t r = read(fd, buf, first ? 4096 : sizeof buf);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = kdh_err_set(err, KDH_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        size_t off = 0, n = (size_t)r;
        if (first) {
            off = encoding(buf, n, &utf16);
            first = 0;
        }
        if (utf16) {
            for (size_t at = off; at < n && !rc; at += sizeof wide) {
                size_t take = n - at < sizeof wide ? n - at : sizeof wide;
                size_t k = from_utf16(buf + at, take, wide, &carry);
                rc = kdh_ingest_parser_feed(p, wide, k, err);
            }
        } else {
            rc = kdh_ingest_parser_feed(p, (const char *)buf + off, n - off, err);
        }
        if (rc)
            break;
    }
    int rc2 = kdh_ingest_parser_finish(p, err); /* may emit stacks: the look-ahead needs fd */
    p->file_fd = -1;
    close(fd);
    return rc ? rc : rc2;
}
