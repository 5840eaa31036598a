/* records.c: the store's records to and from JSON objects (jansson does all quoting and escaping).
 * Readers are strict about types and lenient about unknown fields, so newer writers stay readable. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"

/* "0x" and lower-case hex without leading zeros. */
static void set_hex(json_t *o, const char *k, uint64_t v)
{
    char buf[24] = "0x";
    buf[2 + kdh_store_hex(buf + 2, v, 0)] = '\0';
    json_object_set_new(o, k, json_string(buf));
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

int kdh_store_parse_hex(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    int digits = 0;
    if (!s)
        return KDH_EINVAL;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        for (; *s; s++, digits++) {
            unsigned d;
            if (*s >= '0' && *s <= '9')
                d = (unsigned)(*s - '0');
            else if (*s >= 'a' && *s <= 'f')
                d = (unsigned)(*s - 'a' + 10);
            else if (*s >= 'A' && *s <= 'F')
                d = (unsigned)(*s - 'A' + 10);
            else if (*s == '`') /* WinDbg's 64-bit separator */
                continue;
            else
                return KDH_ECORRUPT;
            if (digits >= 16)
                return KDH_ERANGE;
            x = (x << 4) | d;
        }
    } else {
        for (; *s; s++, digits++) {
            if (*s < '0' || *s > '9')
                return KDH_ECORRUPT;
            uint64_t d = (uint64_t)(*s - '0');
            if (x > (UINT64_MAX - d) / 10)
                return KDH_ERANGE;
            x = x * 10 + d;
        }
    }
    if (digits == 0)
        return KDH_ECORRUPT;
    *v = x;
    return KDH_OK;
}

json_t *kdh_store_module_json(const kdh_store_module_t *m)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    set_str(o, "key", m->key);
    set_str(o, "name", m->name);
    set_str(o, "file", m->file);
    if (m->timestamp || m->size) {
        json_object_set_new(o, "timestamp", json_integer(m->timestamp));
        json_object_set_new(o, "size", json_integer(m->size));
    }
    set_str(o, "pdb", m->pdb);
    if (m->guid) {
        set_str(o, "guid", m->guid);
        json_object_set_new(o, "age", json_integer(m->age));
    }
    json_object_set_new(o, "boot", json_integer(m->boot));
    if (m->base)
        set_hex(o, "base", m->base);
    return o;
}

json_t *kdh_store_stack_json(uint64_t sid, const kdh_store_frame_t *f, size_t n)
{
    char id[17];
    json_t *o = json_object(), *arr = json_array();
    if (!o || !arr) {
        json_decref(o);
        json_decref(arr);
        return NULL;
    }
    kdh_store_sid_format(sid, id);
    json_object_set_new(o, "sid", json_string(id));
    for (size_t i = 0; i < n; i++) {
        json_t *fr = json_object();
        set_str(fr, "mod", f[i].mod);
        if (f[i].has_rva)
            json_object_set_new(fr, "rva", json_integer((json_int_t)f[i].rva));
        set_str(fr, "sym", f[i].sym);
        if (f[i].has_addr)
            set_hex(fr, "addr", f[i].addr);
        if (f[i].is_inline)
            json_object_set_new(fr, "inline", json_true());
        json_array_append_new(arr, fr);
    }
    json_object_set_new(o, "frames", arr);
    return o;
}

static const char *kind_name(kdh_store_kind_t k)
{
    return k == KDH_STORE_ALLOC ? "alloc" : k == KDH_STORE_FREE ? "free" : "hit";
}

json_t *kdh_store_event_json(const kdh_store_event_t *ev)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "seq", json_integer((json_int_t)ev->seq));
    json_object_set_new(o, "t", json_real(ev->t));
    json_object_set_new(o, "boot", json_integer(ev->boot));
    if (ev->cpu >= 0)
        json_object_set_new(o, "cpu", json_integer(ev->cpu));
    if (ev->thread)
        set_hex(o, "thread", ev->thread);
    json_object_set_new(o, "kind", json_string(kind_name(ev->kind)));
    json_object_set_new(o, "tag", json_string(ev->tag));
    if (ev->has_size)
        json_object_set_new(o, "size", json_integer((json_int_t)ev->size));
    if (ev->has_addr)
        set_hex(o, "addr", ev->addr);
    if (ev->has_sid) {
        char id[17];
        kdh_store_sid_format(ev->sid, id);
        json_object_set_new(o, "sid", json_string(id));
    }
    set_str(o, "src", ev->src);
    return o;
}

json_t *kdh_store_pool_json(const kdh_store_pool_t *p)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "t", json_real(p->t));
    json_object_set_new(o, "boot", json_integer(p->boot));
    json_object_set_new(o, "tag", json_string(p->tag));
    set_str(o, "pool", p->pool);
    json_object_set_new(o, "allocs", json_integer((json_int_t)p->allocs));
    json_object_set_new(o, "frees", json_integer((json_int_t)p->frees));
    json_object_set_new(o, "bytes", json_integer((json_int_t)p->bytes));
    return o;
}

json_t *kdh_store_gap_json(const kdh_store_gap_t *g)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "t0", json_real(g->t0));
    json_object_set_new(o, "t1", json_real(g->t1));
    set_str(o, "reason", g->reason);
    set_str(o, "detail", g->detail);
    return o;
}

/* ---- readers ---- */

static const char *get_str(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A non-negative integer field; 1 when present and valid, 0 when absent, <0 when malformed. */
static int get_uint(json_t *o, const char *k, uint64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return KDH_ECORRUPT;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static int get_num(json_t *o, const char *k, double *out)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return KDH_ECORRUPT;
    *out = json_number_value(v);
    return 1;
}

static int get_hexfield(json_t *o, const char *k, uint64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 1;
    }
    if (!json_is_string(v) || kdh_store_parse_hex(json_string_value(v), out) != KDH_OK)
        return KDH_ECORRUPT;
    return 1;
}

static int get_tag(json_t *o, char tag[KDH_STORE_TAG_MAX])
{
    const char *s = get_str(o, "tag");
    size_t n = s ? strlen(s) : 0;
    if (!s || n == 0 || n > 4)
        return KDH_ECORRUPT;
    memset(tag, 0, KDH_STORE_TAG_MAX);
    for (size_t i = 0; i < 4; i++) /* shorter tags are displayed space padded */
        tag[i] = i < n ? s[i] : ' ';
    return KDH_OK;
}

int kdh_store_module_from(json_t *o, kdh_store_module_t *m, kdh_err_t *err)
{
    uint64_t v = 0;
    memset(m, 0, sizeof *m);
    if (!json_is_object(o) || !(m->key = get_str(o, "key")))
        return kdh_err_set(err, KDH_ECORRUPT, "module line has no \"key\"");
    m->name = get_str(o, "name");
    m->file = get_str(o, "file");
    m->pdb = get_str(o, "pdb");
    m->guid = get_str(o, "guid");
    if (get_uint(o, "timestamp", &v) > 0)
        m->timestamp = (uint32_t)v;
    if (get_uint(o, "size", &v) > 0)
        m->size = (uint32_t)v;
    if (get_uint(o, "age", &v) > 0)
        m->age = (uint32_t)v;
    if (get_uint(o, "boot", &v) > 0)
        m->boot = (uint32_t)v;
    if (get_hexfield(o, "base", &v) > 0)
        m->base = v;
    return KDH_OK;
}

int kdh_store_stack_from(json_t *o, uint64_t *sid, kdh_store_frame_t *frames, size_t *n, kdh_err_t *err)
{
    json_t *arr, *fr;
    size_t i;
    if (!json_is_object(o) || kdh_store_sid_parse(get_str(o, "sid"), sid) != KDH_OK)
        return kdh_err_set(err, KDH_ECORRUPT, "stack line has no valid \"sid\" (16 hex digits)");
    arr = json_object_get(o, "frames");
    if (!json_is_array(arr))
        return kdh_err_set(err, KDH_ECORRUPT, "stack line has no \"frames\" array");
    if (json_array_size(arr) > KDH_STORE_FRAMES_MAX)
        return kdh_err_set(err, KDH_ERANGE, "stack has %zu frames (limit %d)", json_array_size(arr),
                           KDH_STORE_FRAMES_MAX);
    json_array_foreach(arr, i, fr)
    {
        kdh_store_frame_t *f = &frames[i];
        memset(f, 0, sizeof *f);
        if (!json_is_object(fr))
            return kdh_err_set(err, KDH_ECORRUPT, "frame %zu is not an object", i);
        f->mod = get_str(fr, "mod");
        f->sym = get_str(fr, "sym");
        int r = get_uint(fr, "rva", &f->rva);
        if (r < 0)
            return kdh_err_set(err, KDH_ECORRUPT, "frame %zu: \"rva\" is not a number", i);
        f->has_rva = r;
        r = get_hexfield(fr, "addr", &f->addr);
        if (r < 0)
            return kdh_err_set(err, KDH_ECORRUPT, "frame %zu: bad \"addr\"", i);
        f->has_addr = r;
        f->is_inline = json_is_true(json_object_get(fr, "inline"));
        if (!(f->mod && f->has_rva) && !f->sym && !f->has_addr)
            return kdh_err_set(err, KDH_ECORRUPT, "frame %zu has neither mod+rva, sym nor addr", i);
    }
    *n = json_array_size(arr);
    return KDH_OK;
}

int kdh_store_event_from(json_t *o, kdh_store_event_t *ev, kdh_err_t *err)
{
    uint64_t v = 0;
    const char *kind;
    int r;
    memset(ev, 0, sizeof *ev);
    ev->cpu = -1;
    if (!json_is_object(o))
        return kdh_err_set(err, KDH_ECORRUPT, "event line is not a JSON object");
    if (get_uint(o, "seq", &ev->seq) <= 0)
        return kdh_err_set(err, KDH_ECORRUPT, "event has no integer \"seq\"");
    if (get_num(o, "t", &ev->t) <= 0)
        return kdh_err_set(err, KDH_ECORRUPT, "event %" PRIu64 " has no numeric \"t\"", ev->seq);
    kind = get_str(o, "kind");
    if (kind && strcmp(kind, "alloc") == 0)
        ev->kind = KDH_STORE_ALLOC;
    else if (kind && strcmp(kind, "free") == 0)
        ev->kind = KDH_STORE_FREE;
    else if (kind && strcmp(kind, "hit") == 0)
        ev->kind = KDH_STORE_HIT;
    else
        return kdh_err_set(err, KDH_ECORRUPT, "event %" PRIu64 ": \"kind\" is not alloc, free or hit", ev->seq);
    if (get_tag(o, ev->tag) != KDH_OK)
        return kdh_err_set(err, KDH_ECORRUPT, "event %" PRIu64 ": \"tag\" is missing or longer than 4", ev->seq);
    if (get_uint(o, "boot", &v) > 0)
        ev->boot = (uint32_t)v;
    if (get_uint(o, "cpu", &v) > 0 && v < 4096)
        ev->cpu = (int)v;
    if (get_hexfield(o, "thread", &v) > 0)
        ev->thread = v;
    if ((r = get_uint(o, "size", &ev->size)) < 0)
        return kdh_err_set(err, KDH_ECORRUPT, "event %" PRIu64 ": bad \"size\"", ev->seq);
    ev->has_size = r;
    if ((r = get_hexfield(o, "addr", &ev->addr)) < 0)
        return kdh_err_set(err, KDH_ECORRUPT, "event %" PRIu64 ": bad \"addr\"", ev->seq);
    ev->has_addr = r;
    if (json_object_get(o, "sid")) {
        if (kdh_store_sid_parse(get_str(o, "sid"), &ev->sid) != KDH_OK)
            return kdh_err_set(err, KDH_ECORRUPT, "event %" PRIu64 ": bad \"sid\"", ev->seq);
        ev->has_sid = 1;
    }
    return KDH_OK;
}

int kdh_store_pool_from(json_t *o, kdh_store_pool_t *p, kdh_err_t *err)
{
    uint64_t v = 0;
    memset(p, 0, sizeof *p);
    if (!json_is_object(o) || get_num(o, "t", &p->t) <= 0)
        return kdh_err_set(err, KDH_ECORRUPT, "pool sample has no numeric \"t\"");
    if (get_tag(o, p->tag) != KDH_OK)
        return kdh_err_set(err, KDH_ECORRUPT, "pool sample: \"tag\" is missing or longer than 4");
    p->pool = get_str(o, "pool");
    if (get_uint(o, "boot", &v) > 0)
        p->boot = (uint32_t)v;
    if (get_uint(o, "allocs", &p->allocs) < 0 || get_uint(o, "frees", &p->frees) < 0 ||
        get_uint(o, "bytes", &p->bytes) <= 0)
        return kdh_err_set(err, KDH_ECORRUPT, "pool sample: \"bytes\" missing or counts not integers");
    return KDH_OK;
}

int kdh_store_gap_from(json_t *o, kdh_store_gap_t *g, kdh_err_t *err)
{
    memset(g, 0, sizeof *g);
    if (!json_is_object(o) || get_num(o, "t0", &g->t0) <= 0 || get_num(o, "t1", &g->t1) <= 0)
        return kdh_err_set(err, KDH_ECORRUPT, "gap has no numeric \"t0\"/\"t1\"");
    g->reason = get_str(o, "reason");
    g->detail = get_str(o, "detail");
    return KDH_OK;
}
