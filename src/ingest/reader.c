/* reader.c: bytes to lines for the parser: chunks of any size, CRLF or LF, lines over
 * KDH_INGEST_LINE_MAX skipped and counted without being buffered, a last line without newline;
 * and files read in fixed-size chunks, UTF-8 BOMs skipped, UTF-16LE (.logopen /u) decoded. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
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

int kdh_ingest_parser_feed(kdh_ingest_parser_t *p, const char *data, size_t n, kdh_err_t *err)
{
    int rc;
    /* One scan of the whole chunk for NUL bytes (a serial-line glitch) spares every line its own. */
    int chunk_nul_free = memchr(data, 0, n) == NULL;
    while (n) {
        const char *nl = memchr(data, '\n', n);
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

int kdh_ingest_parse_file(kdh_ingest_parser_t *p, const char *path, kdh_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kdh_err_set(err, KDH_EIO, "cannot open %s: %s", path, strerror(errno));
    static __thread unsigned char buf[1 << 16];
    static __thread char wide[1 << 15];
    int rc = KDH_OK, first = 1, utf16 = 0, carry = -1;
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
            /* BOMs; or UTF-16LE without one: ASCII text with a NUL after every byte */
            if (n >= 3 && buf[0] == 0xef && buf[1] == 0xbb && buf[2] == 0xbf)
                off = 3;
            else if (n >= 2 && buf[0] == 0xff && buf[1] == 0xfe)
                utf16 = 1, off = 2;
            else if (n >= 4 && buf[0] && !buf[1] && buf[2] && !buf[3])
                utf16 = 1;
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
    close(fd);
    int rc2 = kdh_ingest_parser_finish(p, err);
    return rc ? rc : rc2;
}
