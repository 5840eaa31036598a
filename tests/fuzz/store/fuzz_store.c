/* fuzz_store.c: untrusted run-directory lines. Each input is parsed as an event line by the fast
 * path and by the jansson reference, which must agree whenever the fast path accepts, as stack,
 * module and pool lines, and as a pooltag.txt (whose owners the report prints); none may crash,
 * read out of bounds, or loop. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../../src/store/store_int.h"
#include "kdh/pooltag.h"

static void same(const kdh_store_event_t *a, const kdh_store_event_t *b)
{
    if (a->seq != b->seq || !(a->t == b->t || (a->t != a->t && b->t != b->t)) || a->boot != b->boot ||
        a->cpu != b->cpu || a->thread != b->thread || a->kind != b->kind || memcmp(a->tag, b->tag, 5) != 0 ||
        a->size != b->size || a->has_size != b->has_size || a->addr != b->addr || a->has_addr != b->has_addr ||
        a->sid != b->sid || a->has_sid != b->has_sid)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    kdh_store_event_t fast, ref;
    const char *src;
    size_t src_len;
    int f = kdh_store_fast_event(line, size, &fast, &src, &src_len);
    int r = kdh_store_parse_event(line, size, &ref, NULL);
    if (f) {
        if (r != KDH_OK)
            abort(); /* the fast path accepted a line the reference rejects */
        same(&fast, &ref);
        if (src && (src < line || src + src_len > line + size))
            abort();
    }
    json_t *o = json_loadb(line, size, JSON_REJECT_DUPLICATES, NULL);
    if (o) {
        static kdh_store_frame_t frames[KDH_STORE_FRAMES_MAX];
        uint64_t sid;
        size_t n;
        if (kdh_store_stack_from(o, &sid, frames, &n, NULL) == KDH_OK && n > KDH_STORE_FRAMES_MAX)
            abort();
        kdh_store_module_t m;
        kdh_store_module_from(o, &m, NULL);
        kdh_store_pool_t p;
        kdh_store_pool_from(o, &p, NULL);
        json_decref(o);
    }
    kdh_pooltag_t *pt;
    if (kdh_pooltag_parse(&pt, (const char *)data, size, NULL) == KDH_OK) {
        for (size_t i = 0; i < kdh_pooltag_count(pt); i++) {
            const kdh_pooltag_entry_t *e = kdh_pooltag_entry(pt, i);
            if (strlen(e->tag) != 4 || kdh_pooltag_lookup(pt, e->tag) == NULL)
                abort(); /* every entry finds at least itself (or a more specific one) */
        }
        kdh_pooltag_lookup(pt, "Leak");
        kdh_pooltag_free(pt);
    }
    free(line);
    return 0;
}
