/* store_int.h: conversions between the store's records and JSON objects, shared by the writer and
 * the reader so both sides agree on every field name (docs/run-format.md). Internal to kdh_store. */
#ifndef KDH_STORE_INT_H
#define KDH_STORE_INT_H

#include <jansson.h>

#include "kdh/store.h"

/* Longest line the reader accepts; longer ones are skipped as garbage. */
#define KDH_STORE_LINE_MAX (1u << 20)
/* Deepest stack the reader accepts. */
#define KDH_STORE_FRAMES_MAX 1024

json_t *kdh_store_module_json(const kdh_store_module_t *m);
json_t *kdh_store_stack_json(uint64_t sid, const kdh_store_frame_t *f, size_t n);
json_t *kdh_store_event_json(const kdh_store_event_t *ev);
json_t *kdh_store_pool_json(const kdh_store_pool_t *p);
json_t *kdh_store_gap_json(const kdh_store_gap_t *g);

/* Fill records from parsed objects; strings point into obj. */
int kdh_store_module_from(json_t *obj, kdh_store_module_t *m, kdh_err_t *err);
int kdh_store_event_from(json_t *obj, kdh_store_event_t *ev, kdh_err_t *err);
int kdh_store_pool_from(json_t *obj, kdh_store_pool_t *p, kdh_err_t *err);
int kdh_store_gap_from(json_t *obj, kdh_store_gap_t *g, kdh_err_t *err);
/* frames must have room for KDH_STORE_FRAMES_MAX. */
int kdh_store_stack_from(json_t *obj, uint64_t *sid, kdh_store_frame_t *frames, size_t *n, kdh_err_t *err);

/* Fast path for the common shape of an events.jsonl line: 1 with *ev filled (and the src text,
 * not terminated, in *src and *src_len), or 0 when the line must go through jansson instead. Never
 * accepts a line the jansson path would reject or read differently. */
int kdh_store_fast_event(const char *line, size_t len, kdh_store_event_t *ev, const char **src, size_t *src_len);

/* Fast path for the common shape of a stacks.jsonl line ({"sid","frames":[{mod,rva,sym,addr,inline}]}):
 * 1 with the frames filled, their strings terminated inside line (which is modified only then), or 0
 * when the line must go through jansson. frames must have room for KDH_STORE_FRAMES_MAX. */
int kdh_store_fast_stack(char *line, size_t len, uint64_t *sid, kdh_store_frame_t *frames, size_t *n);

/* linefmt.c: events.jsonl and pool.jsonl lines without a jansson object per line, byte for byte
 * what the *_json builders and json_dumpb(KDH_STORE_DUMP) give. Strings are escaped by jansson once
 * and kept here. */
#define KDH_STORE_FMT_CACHE 512 /* a power of two */
typedef struct kdh_store_fmt_entry {
    char *raw; /* raw text, then the escaped text, in one allocation */
    size_t raw_len;
    const char *esc; /* JSON string with its quotes */
    size_t esc_len;
} kdh_store_fmt_entry_t;

typedef struct kdh_store_fmt_real {
    double value;
    char text[48];
    size_t len;
    int valid;
} kdh_store_fmt_real_t;

/* The start of a pool line for one t and boot (up to the tag's value). */
typedef struct kdh_store_fmt_head {
    double t;
    uint64_t boot;
    char text[96];
    size_t len;
    int valid;
} kdh_store_fmt_head_t;

/* The start of an event's "src" for one file, up to and with the ':' before the line number. */
typedef struct kdh_store_fmt_src {
    char raw[256]; /* "file:" as given */
    size_t raw_len;
    char text[600];
    size_t len;
    int valid;
} kdh_store_fmt_src_t;

typedef struct kdh_store_fmt {
    kdh_store_fmt_entry_t ent[KDH_STORE_FMT_CACHE];
    unsigned used;
    kdh_store_fmt_real_t ev_t, pool_t;
    kdh_store_fmt_head_t pool_head;
    kdh_store_fmt_src_t src;
} kdh_store_fmt_t;

/* The line (no '\n') into buf; its length, or 0 when it must be built through jansson instead
 * (a string jansson refuses, a non-finite t, or no room in cap). */
size_t kdh_store_fmt_event(kdh_store_fmt_t *f, const kdh_store_event_t *ev, char *buf, size_t cap);
size_t kdh_store_fmt_pool(kdh_store_fmt_t *f, const kdh_store_pool_t *p, char *buf, size_t cap);
void kdh_store_fmt_free(kdh_store_fmt_t *f);

/* v as lower-case hex digits into out (room for 16), without leading zeros, or with zeros up to
 * width digits (at most 16); no NUL. Returns the number of digits. Every hex text the store writes
 * (fields, stack ids, the canonical text) comes from here: once per frame and per event, no printf. */
static inline size_t kdh_store_hex(char *out, uint64_t v, unsigned width)
{
    char d[16];
    size_t k = 0;
    do {
        d[k++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (k < 16 && (v || k < width));
    for (size_t i = 0; i < k; i++)
        out[i] = d[k - 1 - i];
    return k;
}

/* "0x..." (or decimal) text to a number. */
int kdh_store_parse_hex(const char *s, uint64_t *v);

/* Dump flags used for every line: compact, keys in insertion order, 16 significant digits. */
#define KDH_STORE_DUMP (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(16))

#endif
