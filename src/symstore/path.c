/* path.c: parses a symbol path in _NT_SYMBOL_PATH syntax into elements. `srv*A*B*URL` is a
 * chain of stores searched in order, downloads from the server landing in the first local one;
 * `cache*DIR` puts DIR in front of every server element to its right; anything else is a plain
 * directory. */
#include "symstore_internal.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int ss_is_url(const char *s)
{
    return strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0;
}

static char *dup_trim(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void elem_free(kdh_symstore_elem_t *e)
{
    for (uint32_t i = 0; i < e->ntiers; i++)
        free(e->tiers[i]);
    free(e->cache);
    memset(e, 0, sizeof *e);
}

static int add_tier(kdh_symstore_elem_t *e, const char *t, const char *spec, kdh_err_t *err)
{
    if (e->ntiers >= KDH_SYMSTORE_MAX_TIERS)
        return kdh_err_set(err, KDH_EINVAL, "symbol path: '%s' has more than %d stores", spec,
                           KDH_SYMSTORE_MAX_TIERS);
    e->tiers[e->ntiers] = strdup(t);
    if (!e->tiers[e->ntiers])
        return kdh_err_set(err, KDH_ENOMEM, "symbol path: out of memory");
    e->ntiers++;
    return KDH_OK;
}

/* body: what follows "srv*" (or "symsrv*dll*"): stores separated by '*'. */
static int parse_srv(kdh_symstore_elem_t *e, const char *body, const char *spec,
                     const char *cur_cache, const char *def_cache, kdh_err_t *err)
{
    e->kind = KDH_SYMSTORE_SRV;
    int rc;
    if (cur_cache && (rc = add_tier(e, cur_cache, spec, err)))
        return rc;
    if (*body == '\0') { /* "srv*": the default cache and Microsoft's server */
        if (!cur_cache && def_cache && (rc = add_tier(e, def_cache, spec, err)))
            return rc;
        if ((rc = add_tier(e, KDH_SYMSTORE_MSDL, spec, err)))
            return rc;
    } else {
        const char *p = body;
        for (;;) {
            const char *star = strchr(p, '*');
            size_t n = star ? (size_t)(star - p) : strlen(p);
            char *t = dup_trim(p, n);
            if (!t)
                return kdh_err_set(err, KDH_ENOMEM, "symbol path: out of memory");
            if (*t == '\0') { /* "srv**URL": the default downstream store */
                free(t);
                if (!def_cache)
                    return kdh_err_set(err, KDH_EINVAL, "symbol path: '%s' asks for the default "
                                       "cache, but none is configured", spec);
                t = strdup(def_cache);
                if (!t)
                    return kdh_err_set(err, KDH_ENOMEM, "symbol path: out of memory");
            }
            rc = add_tier(e, t, spec, err);
            free(t);
            if (rc)
                return rc;
            if (!star)
                break;
            p = star + 1;
        }
    }
    /* Downloads go to the first local store of the chain, else to the default cache. */
    const char *cache = NULL;
    for (uint32_t i = 0; i < e->ntiers && !cache; i++)
        if (!ss_is_url(e->tiers[i]))
            cache = e->tiers[i];
    if (!cache)
        cache = def_cache;
    if (cache && !(e->cache = strdup(cache)))
        return kdh_err_set(err, KDH_ENOMEM, "symbol path: out of memory");
    return KDH_OK;
}

int kdh_symstore_new(kdh_symstore_t **out, const char *path, const char *def_cache,
                     kdh_err_t *err)
{
    *out = NULL;
    kdh_symstore_t *s = calloc(1, sizeof *s);
    if (!s)
        return kdh_err_set(err, KDH_ENOMEM, "symbol path: out of memory");
    s->connect_ms = 10000;
    s->total_ms = 300000;
    s->stall_s = 30;
    char *cur_cache = NULL;
    int rc = KDH_OK;
    const char *p = path ? path : "";
    while (rc == KDH_OK && *p) {
        const char *semi = strchr(p, ';');
        size_t n = semi ? (size_t)(semi - p) : strlen(p);
        char *spec = dup_trim(p, n);
        p = semi ? semi + 1 : p + n;
        if (!spec) {
            rc = kdh_err_set(err, KDH_ENOMEM, "symbol path: out of memory");
            break;
        }
        if (*spec == '\0') {
            free(spec);
            continue;
        }
        if (strncasecmp(spec, "cache*", 6) == 0) {
            free(cur_cache);
            cur_cache = NULL;
            const char *dir = spec[6] ? spec + 6 : def_cache;
            if (!dir)
                rc = kdh_err_set(err, KDH_EINVAL, "symbol path: 'cache*' without a folder needs "
                                 "a default cache");
            else if (!(cur_cache = strdup(dir)))
                rc = kdh_err_set(err, KDH_ENOMEM, "symbol path: out of memory");
            free(spec);
            continue;
        }
        kdh_symstore_elem_t *ne = realloc(s->elems, sizeof *ne * (s->nelems + 1));
        if (!ne) {
            free(spec);
            rc = kdh_err_set(err, KDH_ENOMEM, "symbol path: out of memory");
            break;
        }
        s->elems = ne;
        kdh_symstore_elem_t *e = &s->elems[s->nelems++];
        memset(e, 0, sizeof *e);
        if (strncasecmp(spec, "srv*", 4) == 0) {
            rc = parse_srv(e, spec + 4, spec, cur_cache, def_cache, err);
        } else if (strncasecmp(spec, "symsrv*", 7) == 0) {
            const char *dll = strchr(spec + 7, '*'); /* symsrv*symsrv.dll*A*B */
            rc = dll ? parse_srv(e, dll + 1, spec, cur_cache, def_cache, err)
                     : kdh_err_set(err, KDH_EINVAL, "symbol path: '%s' lacks stores after the "
                                   "DLL name", spec);
        } else if (ss_is_url(spec)) {
            rc = kdh_err_set(err, KDH_EINVAL, "symbol path: a server must be written "
                             "srv*CACHE*%s", spec);
        } else {
            e->kind = KDH_SYMSTORE_PLAIN;
            rc = add_tier(e, spec, spec, err);
        }
        free(spec);
    }
    free(cur_cache);
    if (rc) {
        kdh_symstore_free(s);
        return rc;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        kdh_symstore_free(s);
        return kdh_err_set(err, KDH_EIO, "symbol store: libcurl failed to initialise");
    }
    s->curl_ready = 1;
    *out = s;
    return KDH_OK;
}

void kdh_symstore_free(kdh_symstore_t *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->nelems; i++)
        elem_free(&s->elems[i]);
    free(s->elems);
    if (s->curl_ready)
        curl_global_cleanup();
    free(s);
}

uint32_t kdh_symstore_count(const kdh_symstore_t *s)
{
    return s->nelems;
}

const kdh_symstore_elem_t *kdh_symstore_elem(const kdh_symstore_t *s, uint32_t i)
{
    return i < s->nelems ? &s->elems[i] : NULL;
}

void kdh_symstore_set_timeouts(kdh_symstore_t *s, long connect_ms, long total_ms, long stall_s)
{
    s->connect_ms = connect_ms;
    s->total_ms = total_ms;
    s->stall_s = stall_s;
}
