/* fastev.c: a fast path for events.jsonl lines. A run can hold ten million events, and building a
 * jansson object per line costs most of the report's time, so the common shape (one flat object of
 * known keys, plain ASCII strings, numbers) is scanned directly, in one pass per value: string
 * bodies are checked and hex-decoded through one table lookup per byte, numbers are accumulated as
 * they are read. Anything else (escapes, non-ASCII, unknown or repeated keys, nesting, a missing
 * field, a number jansson would treat differently) returns 0 and the caller parses the line with
 * jansson, which stays the reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

enum { K_SEQ, K_T, K_BOOT, K_CPU, K_THREAD, K_KIND, K_TAG, K_SIZE, K_ADDR, K_SID, K_SRC, K_COUNT };

/* Byte classes inside a JSON string: 0..15 a hex digit's value (|UP for 'A'..'F'), OTHER any other
 * printable ASCII, QUOTE the closing quote, BAD what the fast path leaves to jansson (control bytes,
 * backslash escapes, non-ASCII). */
enum { UP = 0x10, OTHER = 0x20, QUOTE = 0x40, BAD = 0x80 };

static const unsigned char cls[256] = {
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    OTHER, OTHER, QUOTE, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER,
    OTHER, UP | 10, UP | 11, UP | 12, UP | 13, UP | 14, UP | 15, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER,
    OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, BAD, OTHER, OTHER, OTHER,
    OTHER, 10, 11, 12, 13, 14, 15, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER,
    OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, OTHER, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
};

typedef struct val {
    int is_str, is_int;
    const char *s; /* string body (not terminated) */
    size_t n;
    uint64_t hex;  /* string: its hex digits taken in order (valid when "other" says so) */
    unsigned other, upper; /* string: non-hex bytes, upper-case hex digits seen */
    int64_t i;
    double d;
} val_t;

static inline const char *ws(const char *p, const char *end)
{
    if (p < end && (unsigned char)*p > ' ') /* compact JSON: the usual case, one compare */
        return p;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string of printable ASCII without escapes, p at its opening quote; returns the position after
 * the closing quote. */
static inline const char *str(const char *p, const char *end, val_t *v)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *b = ++p;
    uint64_t acc = 0;
    unsigned other = 0, upper = 0;
    for (;; p++) {
        if (p >= end)
            return NULL;
        unsigned c = cls[(unsigned char)*p];
        if (c < OTHER) {
            acc = (acc << 4) | (c & 15);
            upper |= c;
            continue;
        }
        if (c != OTHER)
            break; /* QUOTE or BAD, told apart below */
        other++;
    }
    if (*p != '"')
        return NULL;
    v->is_str = 1;
    v->s = b;
    v->n = (size_t)(p - b);
    v->hex = acc;
    v->other = other;
    v->upper = upper & UP;
    return p + 1;
}

/* A JSON number. Integers of up to 18 digits exactly. Reals without exponent whose digits fit in 53
 * bits take Clinger's fast path: the digits and the power of ten are both exact doubles, so one
 * correctly rounded division gives strtod's result bit for bit (the store writes times such as
 * 1795478400.125: 13 digits). Other reals go through strtod. */
static const char *num(const char *p, const char *end, val_t *v)
{
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *b = p;
    int neg = 0, real = 0;
    uint64_t m = 0;
    unsigned nd = 0, nf = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || (unsigned)(*p - '0') > 9)
        return NULL;
    if (*p == '0' && p + 1 < end && (unsigned)(p[1] - '0') <= 9)
        return NULL; /* leading zero */
    for (; p < end && (unsigned)(*p - '0') <= 9; p++, nd++)
        m = m * 10 + (uint64_t)(*p - '0'); /* wraps past 19 digits; nd then sends it elsewhere */
    if (p < end && *p == '.') {
        real = 1;
        p++;
        if (p >= end || (unsigned)(*p - '0') > 9)
            return NULL;
        for (; p < end && (unsigned)(*p - '0') <= 9; p++, nd++, nf++)
            m = m * 10 + (uint64_t)(*p - '0');
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 2;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || (unsigned)(*p - '0') > 9)
            return NULL;
        while (p < end && (unsigned)(*p - '0') <= 9)
            p++;
    }
    if (!real) {
        if (nd > 18)
            return NULL;
        v->is_int = 1;
        v->i = neg ? -(int64_t)m : (int64_t)m;
        v->d = (double)v->i;
        return p;
    }
    if (real == 1 && nd <= 15 && nf < KDH_ARRAY_LEN(p10)) {
        double d = (double)m / p10[nf];
        v->d = neg ? -d : d;
        return p;
    }
    char tmp[64];
    if ((size_t)(p - b) >= sizeof tmp)
        return NULL;
    memcpy(tmp, b, (size_t)(p - b));
    tmp[p - b] = '\0';
    v->d = strtod(tmp, NULL);
    if (!isfinite(v->d))
        return NULL;
    return p;
}

/* The writer's "0x" + 1..16 hex digits come decoded from str(); any other text (decimal, WinDbg's `
 * separator) goes through the store's general parser. */
static int hexval(const val_t *v, uint64_t *out)
{
    char tmp[40];
    if (v->is_int) {
        if (v->i < 0)
            return 0;
        *out = (uint64_t)v->i;
        return 1;
    }
    if (!v->is_str)
        return 0;
    if (v->n >= 3 && v->n <= 18 && v->other == 1 && v->s[0] == '0' && (v->s[1] == 'x' || v->s[1] == 'X')) {
        *out = v->hex; /* the leading '0' shifted in as a zero nibble: the value is exact */
        return 1;
    }
    if (v->n >= sizeof tmp)
        return 0;
    memcpy(tmp, v->s, v->n);
    tmp[v->n] = '\0';
    return kdh_store_parse_hex(tmp, out) == KDH_OK;
}

/* Key name to K_*, or -1. */
static inline int key_index(const char *k, size_t n)
{
    switch (n) {
    case 1:
        return k[0] == 't' ? K_T : -1;
    case 3:
        if (memcmp(k, "seq", 3) == 0)
            return K_SEQ;
        if (memcmp(k, "cpu", 3) == 0)
            return K_CPU;
        if (memcmp(k, "tag", 3) == 0)
            return K_TAG;
        if (memcmp(k, "sid", 3) == 0)
            return K_SID;
        if (memcmp(k, "src", 3) == 0)
            return K_SRC;
        return -1;
    case 4:
        if (memcmp(k, "boot", 4) == 0)
            return K_BOOT;
        if (memcmp(k, "kind", 4) == 0)
            return K_KIND;
        if (memcmp(k, "size", 4) == 0)
            return K_SIZE;
        if (memcmp(k, "addr", 4) == 0)
            return K_ADDR;
        return -1;
    case 6:
        return memcmp(k, "thread", 6) == 0 ? K_THREAD : -1;
    default:
        return -1;
    }
}

int kdh_store_fast_event(const char *line, size_t len, kdh_store_event_t *ev, const char **src, size_t *src_len)
{
    const char *p = line, *end = line + len;
    val_t v[K_COUNT];
    unsigned seen = 0;
    p = ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    p = ws(p, end);
    if (p < end && *p == '}')
        return 0; /* no seq: let the reference parser word the error */
    for (;;) {
        val_t key;
        if (!(p = str(p, end, &key)))
            return 0;
        int ki = key_index(key.s, key.n);
        if (ki < 0 || (seen & (1u << ki)))
            return 0;
        seen |= 1u << ki;
        p = ws(p, end);
        if (p >= end || *p++ != ':')
            return 0;
        p = ws(p, end);
        val_t *x = &v[ki];
        x->is_str = x->is_int = 0;
        if (p < end && *p == '"') {
            if (!(p = str(p, end, x)))
                return 0;
        } else if (!(p = num(p, end, x))) {
            return 0;
        }
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            p = ws(p + 1, end);
            break;
        }
        return 0;
    }
    if (p != end)
        return 0;
    /* Same rules as kdh_store_event_from; any doubt goes back to it. */
    memset(ev, 0, sizeof *ev);
    ev->cpu = -1;
    if (!(seen & (1u << K_SEQ)) || !v[K_SEQ].is_int || v[K_SEQ].i < 0)
        return 0;
    ev->seq = (uint64_t)v[K_SEQ].i;
    if (!(seen & (1u << K_T)) || v[K_T].is_str)
        return 0;
    ev->t = v[K_T].d;
    if (!(seen & (1u << K_KIND)) || !v[K_KIND].is_str)
        return 0;
    const char *kd = v[K_KIND].s;
    size_t kdn = v[K_KIND].n;
    if (kdn == 5 && memcmp(kd, "alloc", 5) == 0)
        ev->kind = KDH_STORE_ALLOC;
    else if (kdn == 4 && memcmp(kd, "free", 4) == 0)
        ev->kind = KDH_STORE_FREE;
    else if (kdn == 3 && memcmp(kd, "hit", 3) == 0)
        ev->kind = KDH_STORE_HIT;
    else
        return 0;
    if (!(seen & (1u << K_TAG)) || !v[K_TAG].is_str || v[K_TAG].n == 0 || v[K_TAG].n > 4)
        return 0;
    memcpy(ev->tag, v[K_TAG].s, v[K_TAG].n);
    for (size_t i = v[K_TAG].n; i < 4; i++)
        ev->tag[i] = ' ';
    if (seen & (1u << K_BOOT)) {
        if (v[K_BOOT].is_int && v[K_BOOT].i >= 0)
            ev->boot = (uint32_t)v[K_BOOT].i;
        else if (!v[K_BOOT].is_str && !v[K_BOOT].is_int)
            return 0; /* a real: the reference parser ignores it; keep one behaviour */
    }
    if (seen & (1u << K_CPU)) {
        if (v[K_CPU].is_int && v[K_CPU].i >= 0 && v[K_CPU].i < 4096)
            ev->cpu = (int)v[K_CPU].i;
        else if (!v[K_CPU].is_str && !v[K_CPU].is_int)
            return 0;
    }
    if (seen & (1u << K_THREAD)) {
        uint64_t x;
        if (!v[K_THREAD].is_int && !v[K_THREAD].is_str)
            return 0;
        if (hexval(&v[K_THREAD], &x))
            ev->thread = x;
    }
    if (seen & (1u << K_SIZE)) {
        if (!v[K_SIZE].is_int || v[K_SIZE].i < 0)
            return 0;
        ev->size = (uint64_t)v[K_SIZE].i;
        ev->has_size = 1;
    }
    if (seen & (1u << K_ADDR)) {
        if (!hexval(&v[K_ADDR], &ev->addr))
            return 0;
        ev->has_addr = 1;
    }
    if (seen & (1u << K_SID)) {
        /* kdh_store_sid_parse's form: 16 lower-case hex digits */
        if (!v[K_SID].is_str || v[K_SID].n != 16 || v[K_SID].other || v[K_SID].upper)
            return 0;
        ev->sid = v[K_SID].hex;
        ev->has_sid = 1;
    }
    *src = NULL;
    *src_len = 0;
    if (seen & (1u << K_SRC)) {
        if (!v[K_SRC].is_str)
            return 0;
        *src = v[K_SRC].s;
        *src_len = v[K_SRC].n;
    }
    return 1;
}

/* ---- stacks.jsonl ---- */

/* Reads a frame object at p ('{'). Strings are left unterminated; their lengths go to *modn, *symn. */
static const char *fast_frame(const char *p, const char *end, kdh_store_frame_t *f, size_t *modn, size_t *symn)
{
    enum { F_MOD = 1, F_RVA = 2, F_SYM = 4, F_ADDR = 8, F_INLINE = 16 };
    unsigned seen = 0;
    memset(f, 0, sizeof *f);
    if (p >= end || *p++ != '{')
        return NULL;
    p = ws(p, end);
    if (p < end && *p == '}')
        return NULL; /* an empty frame: the reference parser words the error */
    for (;;) {
        val_t key, x;
        unsigned bit;
        if (!(p = str(p, end, &key)))
            return NULL;
        if (key.n == 3 && memcmp(key.s, "mod", 3) == 0)
            bit = F_MOD;
        else if (key.n == 3 && memcmp(key.s, "rva", 3) == 0)
            bit = F_RVA;
        else if (key.n == 3 && memcmp(key.s, "sym", 3) == 0)
            bit = F_SYM;
        else if (key.n == 4 && memcmp(key.s, "addr", 4) == 0)
            bit = F_ADDR;
        else if (key.n == 6 && memcmp(key.s, "inline", 6) == 0)
            bit = F_INLINE;
        else
            return NULL;
        if (seen & bit)
            return NULL;
        seen |= bit;
        p = ws(p, end);
        if (p >= end || *p++ != ':')
            return NULL;
        p = ws(p, end);
        if (bit == F_INLINE) {
            if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
                f->is_inline = 1;
                p += 4;
            } else if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
                p += 5;
            } else {
                return NULL;
            }
        } else {
            x.is_str = x.is_int = 0;
            if (p < end && *p == '"') {
                if (!(p = str(p, end, &x)))
                    return NULL;
            } else if (!(p = num(p, end, &x))) {
                return NULL;
            }
            switch (bit) {
            case F_MOD:
                if (!x.is_str)
                    return NULL;
                f->mod = x.s;
                *modn = x.n;
                break;
            case F_SYM:
                if (!x.is_str)
                    return NULL;
                f->sym = x.s;
                *symn = x.n;
                break;
            case F_RVA:
                if (!x.is_int || x.i < 0)
                    return NULL;
                f->rva = (uint64_t)x.i;
                f->has_rva = 1;
                break;
            default:
                if (!hexval(&x, &f->addr))
                    return NULL;
                f->has_addr = 1;
                break;
            }
        }
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            break;
        return NULL;
    }
    if (!(f->mod && f->has_rva) && !f->sym && !f->has_addr)
        return NULL;
    return p + 1;
}

int kdh_store_fast_stack(char *line, size_t len, uint64_t *sid, kdh_store_frame_t *frames, size_t *n)
{
    static const size_t none = (size_t)-1;
    const char *p = line, *end = line + len;
    int have_sid = 0, have_frames = 0;
    size_t nf = 0;
    /* String ends, terminated only once the whole line is accepted: a line handed back to jansson must
     * be intact. Two per frame (mod, sym). */
    size_t ends[2 * KDH_STORE_FRAMES_MAX];
    p = ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    p = ws(p, end);
    for (;;) {
        val_t key;
        if (!(p = str(p, end, &key)))
            return 0;
        p = ws(p, end);
        if (p >= end || *p++ != ':')
            return 0;
        p = ws(p, end);
        if (key.n == 3 && memcmp(key.s, "sid", 3) == 0 && !have_sid) {
            val_t x;
            if (!(p = str(p, end, &x)) || x.n != 16 || x.other || x.upper)
                return 0;
            *sid = x.hex;
            have_sid = 1;
        } else if (key.n == 6 && memcmp(key.s, "frames", 6) == 0 && !have_frames) {
            have_frames = 1;
            if (p >= end || *p++ != '[')
                return 0;
            p = ws(p, end);
            if (p < end && *p == ']') {
                p++;
            } else {
                for (;;) {
                    size_t modn = none, symn = none;
                    if (nf >= KDH_STORE_FRAMES_MAX)
                        return 0; /* the reference parser names the limit */
                    if (!(p = fast_frame(p, end, &frames[nf], &modn, &symn)))
                        return 0;
                    ends[2 * nf] = modn;
                    ends[2 * nf + 1] = symn;
                    nf++;
                    p = ws(p, end);
                    if (p < end && *p == ',') {
                        p = ws(p + 1, end);
                        continue;
                    }
                    if (p < end && *p == ']') {
                        p++;
                        break;
                    }
                    return 0;
                }
            }
        } else {
            return 0; /* unknown or repeated key */
        }
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            p = ws(p + 1, end);
            break;
        }
        return 0;
    }
    if (p != end || !have_sid || !have_frames)
        return 0;
    for (size_t i = 0; i < nf; i++) { /* each closing quote becomes the terminator */
        if (ends[2 * i] != none)
            line[frames[i].mod - line + (ptrdiff_t)ends[2 * i]] = '\0';
        if (ends[2 * i + 1] != none)
            line[frames[i].sym - line + (ptrdiff_t)ends[2 * i + 1]] = '\0';
    }
    *n = nf;
    return 1;
}
