/* linefmt.c: events.jsonl and pool.jsonl lines formatted without a jansson object per line.
 * Building and dumping an object per event was most of an ingest's time. The lines are byte for
 * byte what kdh_store_event_json / kdh_store_pool_json + json_dumpb(KDH_STORE_DUMP) give (the
 * store's unit test compares the two): every string and real number still goes through jansson,
 * but each distinct string (tag, pool name, the file part of "src") and the last `t` are escaped
 * once and kept; integers, hex fields and the stack id need no escaping and are formatted here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "store_int.h"

/* Appends into a bounded line buffer; a line that does not fit sets `full` and is then written
 * through the jansson path instead. */
typedef struct out {
    char *buf;
    size_t cap, len;
    int full;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->full || o->cap - o->len < n) {
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

/* "00" to "99": two digits per division (the numbers of pool rows and events were a tenth of
 * their formatting) */
static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                     "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                     "8081828384858687888990919293949596979899";

static void put_u64(out_t *o, uint64_t v)
{
    char d[24];
    size_t k = sizeof d;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        k -= 2;
        memcpy(d + k, digit_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        k -= 2;
        memcpy(d + k, digit_pairs + 2 * v, 2);
    } else {
        d[--k] = (char)('0' + v);
    }
    put(o, d + k, sizeof d - k);
}

/* As json_integer() prints a json_int_t (a signed 64-bit value). */
static void put_int(out_t *o, json_int_t v)
{
    if (v < 0) {
        put(o, "-", 1);
        put_u64(o, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(o, (uint64_t)v);
    }
}

/* A hex field's JSON string, as set_hex() in records.c makes it. */
static void put_hexstr(out_t *o, uint64_t v)
{
    char d[20] = "\"0x";
    size_t n = 3 + kdh_store_hex(d + 3, v, 0);
    d[n++] = '"';
    put(o, d, n);
}

/* ---- escaped strings, cached ---- */

static void cache_drop(kdh_store_fmt_t *f, unsigned i)
{
    free(f->ent[i].raw);
    f->ent[i].raw = NULL;
    f->ent[i].esc = NULL;
    f->ent[i].raw_len = f->ent[i].esc_len = 0;
}

/* The JSON text of the string raw[0..n) (quotes included) as jansson writes it; NULL when jansson
 * refuses the string (invalid UTF-8) or memory is short. The cache is an open-addressing table
 * (poolmon and !poolused show hundreds of tags, a log's events a handful), emptied when 3/4 full. */
static const kdh_store_fmt_entry_t *escaped(kdh_store_fmt_t *f, const char *raw, size_t n)
{
    uint64_t h = XXH3_64bits(raw, n);
    unsigned slot = (unsigned)h & (KDH_STORE_FMT_CACHE - 1);
    kdh_store_fmt_entry_t *e;
    for (;; slot = (slot + 1) & (KDH_STORE_FMT_CACHE - 1)) {
        e = &f->ent[slot];
        if (!e->raw)
            break;
        if (e->raw_len == n && memcmp(e->raw, raw, n) == 0)
            return e;
    }
    if (f->used >= KDH_STORE_FMT_CACHE / 4 * 3) {
        for (unsigned i = 0; i < KDH_STORE_FMT_CACHE; i++)
            cache_drop(f, i);
        f->used = 0;
        slot = (unsigned)h & (KDH_STORE_FMT_CACHE - 1);
        e = &f->ent[slot];
    }
    json_t *s = json_stringn(raw, n);
    if (!s)
        return NULL;
    size_t need = json_dumpb(s, NULL, 0, KDH_STORE_DUMP | JSON_ENCODE_ANY);
    char *mem = need ? malloc(n + need) : NULL;
    if (!mem || json_dumpb(s, mem + n, need, KDH_STORE_DUMP | JSON_ENCODE_ANY) != need) {
        free(mem);
        json_decref(s);
        return NULL;
    }
    json_decref(s);
    memcpy(mem, raw, n);
    e->raw = mem;
    e->raw_len = n;
    e->esc = mem + n;
    e->esc_len = need;
    f->used++;
    return e;
}

/* Is raw[0..n) text jansson writes as it is between quotes? Printable ASCII but '"' and '\\'
 * (jansson escapes those two and bytes below 0x20; without JSON_ENSURE_ASCII or
 * JSON_ESCAPE_SLASH nothing else). Tags, pool names and file names nearly always are, and then
 * need neither the escape cache's hash nor its lookup. */
static int plain_json(const char *raw, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

/* Puts the JSON string of raw[0..n) without its closing quote; returns 0 when jansson refused
 * it. */
static int put_json_open(kdh_store_fmt_t *f, out_t *o, const char *raw, size_t n)
{
    if (plain_json(raw, n)) {
        put(o, "\"", 1);
        put(o, raw, n);
        return 1;
    }
    const kdh_store_fmt_entry_t *e = escaped(f, raw, n);
    if (!e)
        return 0;
    put(o, e->esc, e->esc_len - 1);
    return 1;
}

/* Puts "key":"value" (key_text: the literal up to the value); returns 0 when jansson refused the
 * value. */
#define put_str(f, o, key_text, v) put_str_n(f, o, key_text, sizeof(key_text) - 1, v)
static int put_str_n(kdh_store_fmt_t *f, out_t *o, const char *key_text, size_t key_len, const char *v)
{
    put(o, key_text, key_len);
    if (!put_json_open(f, o, v, strlen(v)))
        return 0;
    put(o, "\"", 1);
    return 1;
}

/* "src" is "file:line": a new line number each event, the same file. The escaped form of
 * "file:digits" is the escaped "file" without its closing quote, ':', the digits and '"', since
 * jansson escapes character by character and neither ':' nor digits are escaped. */
static int put_src(kdh_store_fmt_t *f, out_t *o, const char *src)
{
    size_t n = strlen(src), d = n;
    while (d > 0 && src[d - 1] >= '0' && src[d - 1] <= '9')
        d--;
    if (d == n || d == 0 || src[d - 1] != ':')
        return put_str(f, o, ",\"src\":", src);
    kdh_store_fmt_src_t *c = &f->src; /* ,"src":"file: for the file of the last event */
    if (!c->valid || c->raw_len != d || memcmp(c->raw, src, d) != 0) {
        out_t co = {c->text, sizeof c->text, 0, 0};
        c->valid = 0;
        put(&co, ",\"src\":", 7);
        int kept = d <= sizeof c->raw && put_json_open(f, &co, src, d - 1);
        put(&co, ":", 1);
        if (!kept || co.full)
            return put_str(f, o, ",\"src\":", src); /* a name too long to keep: the whole text */
        memcpy(c->raw, src, d);
        c->raw_len = d;
        c->len = co.len;
        c->valid = 1;
    }
    put(o, c->text, c->len);
    put(o, src + d, n - d);
    put(o, "\"", 1);
    return 1;
}

/* A real as jansson writes it. Other than whole numbers, the last value per line kind is kept:
 * the events of a harvest second and the lines of one pool snapshot share their t. */
static int put_real(kdh_store_fmt_real_t *r, out_t *o, double t)
{
    /* A whole number of seconds below 10^15 (pool snapshot times, ingested times): jansson
     * prints it as "%.16g" gives it, the digits, then ".0" so it reads back as a real. */
    if (t > -1e15 && t < 1e15 && t == (double)(long long)t && !(t == 0 && signbit(t))) {
        put_int(o, (json_int_t)t);
        put(o, ".0", 2);
        return 1;
    }
    if (!r->valid || r->value != t || !signbit(r->value) != !signbit(t)) { /* NaN is never kept */
        json_t *j = json_real(t);
        size_t need = j ? json_dumpb(j, r->text, sizeof r->text, KDH_STORE_DUMP | JSON_ENCODE_ANY) : 0;
        json_decref(j);
        if (need == 0 || need > sizeof r->text) {
            r->valid = 0;
            return 0;
        }
        r->len = need;
        r->value = t;
        r->valid = 1;
    }
    put(o, r->text, r->len);
    return 1;
}

void kdh_store_fmt_free(kdh_store_fmt_t *f)
{
    for (unsigned i = 0; i < KDH_STORE_FMT_CACHE; i++)
        cache_drop(f, i);
    f->used = 0;
    f->ev_t.valid = f->pool_t.valid = 0;
    f->pool_head.valid = 0;
    f->src.valid = 0;
}

static const char *kind_text(kdh_store_kind_t k)
{
    return k == KDH_STORE_ALLOC ? ",\"kind\":\"alloc\"" : k == KDH_STORE_FREE ? ",\"kind\":\"free\"" : ",\"kind\":\"hit\"";
}

/* buf is written through the out_t it initializes, which the check does not follow */
// NOLINTNEXTLINE(readability-non-const-parameter)
size_t kdh_store_fmt_event(kdh_store_fmt_t *f, const kdh_store_event_t *ev, char *buf, size_t cap)
{
    out_t o = {buf, cap, 0, 0};
    put(&o, "{\"seq\":", 7);
    put_int(&o, (json_int_t)ev->seq);
    put(&o, ",\"t\":", 5);
    if (!put_real(&f->ev_t, &o, ev->t))
        return 0;
    put(&o, ",\"boot\":", 8);
    put_u64(&o, ev->boot);
    if (ev->cpu >= 0) {
        put(&o, ",\"cpu\":", 7);
        put_u64(&o, (uint64_t)ev->cpu);
    }
    if (ev->thread) {
        put(&o, ",\"thread\":", 10);
        put_hexstr(&o, ev->thread);
    }
    const char *kt = kind_text(ev->kind);
    put(&o, kt, strlen(kt));
    if (!put_str(f, &o, ",\"tag\":", ev->tag))
        return 0;
    if (ev->has_size) {
        put(&o, ",\"size\":", 8);
        put_int(&o, (json_int_t)ev->size);
    }
    if (ev->has_addr) {
        put(&o, ",\"addr\":", 8);
        put_hexstr(&o, ev->addr);
    }
    if (ev->has_sid) {
        char id[17];
        kdh_store_sid_format(ev->sid, id);
        put(&o, ",\"sid\":\"", 8);
        put(&o, id, 16);
        put(&o, "\"", 1);
    }
    if (ev->src && !put_src(f, &o, ev->src))
        return 0;
    put(&o, "}", 1);
    return o.full ? 0 : o.len;
}

/* {"t":T,"boot":B,"tag": for t and boot, kept: every row of a pool snapshot shares it. */
static int put_pool_head(kdh_store_fmt_t *f, out_t *o, double t, uint64_t boot)
{
    kdh_store_fmt_head_t *h = &f->pool_head;
    if (!h->valid || !(h->t == t) || !signbit(h->t) != !signbit(t) || h->boot != boot) { /* NaN: never kept */
        out_t ho = {h->text, sizeof h->text, 0, 0};
        h->valid = 0;
        put(&ho, "{\"t\":", 5);
        if (!put_real(&f->pool_t, &ho, t))
            return 0;
        put(&ho, ",\"boot\":", 8);
        put_u64(&ho, boot);
        put(&ho, ",\"tag\":", 7);
        if (ho.full)
            return 0;
        h->len = ho.len;
        h->t = t;
        h->boot = boot;
        h->valid = 1;
    }
    put(o, h->text, h->len);
    return 1;
}

/* buf is written through the out_t it initializes, which the check does not follow */
// NOLINTNEXTLINE(readability-non-const-parameter)
size_t kdh_store_fmt_pool(kdh_store_fmt_t *f, const kdh_store_pool_t *p, char *buf, size_t cap)
{
    out_t o = {buf, cap, 0, 0};
    if (!put_pool_head(f, &o, p->t, p->boot) || !put_json_open(f, &o, p->tag, strlen(p->tag)))
        return 0;
    put(&o, "\"", 1);
    if (p->pool && !put_str(f, &o, ",\"pool\":", p->pool))
        return 0;
    put(&o, ",\"allocs\":", 10);
    put_int(&o, (json_int_t)p->allocs);
    put(&o, ",\"frees\":", 9);
    put_int(&o, (json_int_t)p->frees);
    put(&o, ",\"bytes\":", 9);
    put_int(&o, (json_int_t)p->bytes);
    put(&o, "}", 1);
    return o.full ? 0 : o.len;
}
