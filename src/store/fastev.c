/* fastev.c: a fast path for events.jsonl lines. A run can hold ten million events, and building a
 * jansson object per line costs most of the report's time, so the common shape (one flat object of
 * known keys, plain ASCII strings, numbers) is scanned directly. Anything else (escapes, non-ASCII,
 * unknown or repeated keys, nesting, a missing field, a number jansson would treat differently)
 * returns 0 and the caller parses the line with jansson, which stays the reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

enum { K_SEQ, K_T, K_BOOT, K_CPU, K_THREAD, K_KIND, K_TAG, K_SIZE, K_ADDR, K_SID, K_SRC, K_COUNT };
static const char *const keys[K_COUNT] = {"seq", "t", "boot", "cpu", "thread", "kind", "tag", "size", "addr", "sid", "src"};

typedef struct val {
    int is_str, is_int;
    const char *s; /* string body (not terminated) */
    size_t n;
    int64_t i;
    double d;
} val_t;

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string of printable ASCII without escapes; returns the position after the closing quote. */
static const char *str(const char *p, const char *end, const char **s, size_t *n)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *b = ++p;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x7f || c == '\\')
            return NULL;
        p++;
    }
    if (p >= end)
        return NULL;
    *s = b;
    *n = (size_t)(p - b);
    return p + 1;
}

/* A JSON number; integers of up to 18 digits exactly, reals through strtod. */
static const char *num(const char *p, const char *end, val_t *v)
{
    const char *b = p;
    int frac = 0;
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
        return NULL; /* leading zero */
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    size_t digits = (size_t)(p - b) - (*b == '-');
    if (p < end && *p == '.') {
        frac = 1;
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        frac = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (!frac) {
        if (digits > 18)
            return NULL;
        int64_t x = 0;
        for (const char *q = b + (*b == '-'); q < p; q++)
            x = x * 10 + (*q - '0');
        v->is_int = 1;
        v->i = *b == '-' ? -x : x;
        v->d = (double)v->i;
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

static int hexval(const val_t *v, uint64_t *out)
{
    char tmp[40];
    if (v->is_int) {
        if (v->i < 0)
            return 0;
        *out = (uint64_t)v->i;
        return 1;
    }
    if (!v->is_str || v->n >= sizeof tmp)
        return 0;
    memcpy(tmp, v->s, v->n);
    tmp[v->n] = '\0';
    return kdh_store_parse_hex(tmp, out) == KDH_OK;
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
        const char *k;
        size_t kn;
        int ki = -1;
        if (!(p = str(p, end, &k, &kn)))
            return 0;
        for (int i = 0; i < K_COUNT; i++)
            if (strlen(keys[i]) == kn && memcmp(keys[i], k, kn) == 0)
                ki = i;
        if (ki < 0 || (seen & (1u << ki)))
            return 0;
        seen |= 1u << ki;
        p = ws(p, end);
        if (p >= end || *p++ != ':')
            return 0;
        p = ws(p, end);
        memset(&v[ki], 0, sizeof v[ki]);
        if (p < end && *p == '"') {
            v[ki].is_str = 1;
            if (!(p = str(p, end, &v[ki].s, &v[ki].n)))
                return 0;
        } else if (!(p = num(p, end, &v[ki]))) {
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
        char tmp[17];
        if (!v[K_SID].is_str || v[K_SID].n != 16)
            return 0;
        memcpy(tmp, v[K_SID].s, 16);
        tmp[16] = '\0';
        if (kdh_store_sid_parse(tmp, &ev->sid) != KDH_OK)
            return 0;
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
