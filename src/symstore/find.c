/* find.c: the search order along the symbol path. Names come from the target (RSDS records,
 * module lists), so they are checked before they become part of a path or a URL. */
#include "symstore_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/pdb.h"
#include "kdh/pe.h"

typedef struct want {
    int pdb;
    const uint8_t *guid;
    uint32_t age;
    uint32_t timestamp, size;
} want_t;

/* A plain directory holds files by name only: accept one whose identity matches. */
static int accept_match(void *ctx, const char *path)
{
    const want_t *w = ctx;
    if (w->pdb) {
        kdh_pdb_t *p;
        if (kdh_pdb_open_file(&p, path, NULL) != KDH_OK)
            return 0;
        const kdh_pdb_info_t *in = kdh_pdb_info(p);
        int ok = memcmp(in->guid, w->guid, 16) == 0 && in->age == w->age;
        kdh_pdb_close(p);
        return ok;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    /* The headers are enough to compare TimeDateStamp and SizeOfImage. */
    uint8_t *buf = malloc(0x1000);
    size_t n = buf ? fread(buf, 1, 0x1000, f) : 0;
    fclose(f);
    kdh_pe_t pe;
    int ok = buf && kdh_pe_open_buffer(&pe, buf, n, NULL) == KDH_OK && pe.timestamp == w->timestamp &&
             pe.size_of_image == w->size;
    free(buf);
    return ok;
}

static int valid_name(const char *name)
{
    if (!name || !*name || strlen(name) > 255 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (const char *p = name; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20 || *p == '*' || *p == '?')
            return 0;
    return 1;
}

static int find(kdh_symstore_t *s, const char *name, const char *id, const want_t *w, char *path,
                size_t cap, kdh_err_t *err)
{
    if (!valid_name(name))
        return kdh_err_set(err, KDH_EINVAL, "symbol store: refusing file name \"%.64s\" (empty, "
                           "a path, or control characters)", name ? name : "");
    char upper[48];
    size_t k = 0;
    for (; k < sizeof upper - 1 && id[k]; k++)
        upper[k] = (char)toupper((unsigned char)id[k]);
    upper[k] = '\0';
    kdh_err_t last = {0};
    for (uint32_t i = 0; i < s->nelems; i++) {
        const kdh_symstore_elem_t *e = &s->elems[i];
        if (e->kind == KDH_SYMSTORE_PLAIN) {
            if (ss_plain_lookup(e->tiers[0], name, accept_match, (void *)w, path, cap) == KDH_OK)
                return KDH_OK;
            continue;
        }
        for (uint32_t t = 0; t < e->ntiers; t++) {
            if (!ss_is_url(e->tiers[t])) {
                if (ss_store_lookup(e->tiers[t], name, id, path, cap) == KDH_OK)
                    return KDH_OK;
                continue;
            }
            if (!e->cache) {
                kdh_err_set(&last, KDH_EINVAL, "no cache folder to download %s into (write "
                            "srv*CACHE*%s)", name, e->tiers[t]);
                continue;
            }
            char url[4096], dest[4096];
            size_t ul = strlen(e->tiers[t]);
            int n = snprintf(url, sizeof url, "%.*s/%s/%s/%s",
                             (int)(ul && e->tiers[t][ul - 1] == '/' ? ul - 1 : ul), e->tiers[t],
                             name, id, name);
            if (n < 0 || (size_t)n >= sizeof url ||
                ss_store_dest(e->cache, name, upper, dest, sizeof dest) != KDH_OK)
                continue;
            kdh_err_t derr;
            int rc = kdh_symstore_download(s, url, dest, w->pdb, &derr);
            if (rc == KDH_OK) {
                n = snprintf(path, cap, "%s", dest);
                if (n < 0 || (size_t)n >= cap)
                    return kdh_err_set(err, KDH_ERANGE, "symbol store: path buffer too small");
                return KDH_OK;
            }
            if (rc != KDH_ENOTFOUND || last.code == KDH_OK)
                last = derr;
        }
    }
    if (last.code != KDH_OK && last.code != KDH_ENOTFOUND)
        return kdh_err_set(err, KDH_ENOTFOUND, "%s/%s not found on the symbol path; last failure: "
                           "%s", name, id, last.msg);
    return kdh_err_set(err, KDH_ENOTFOUND, "%s/%s not found in the %u element(s) of the symbol "
                       "path", name, id, s->nelems);
}

int kdh_symstore_find_pdb(kdh_symstore_t *s, const char *name, const uint8_t guid[16],
                          uint32_t age, char *path, size_t path_len, kdh_err_t *err)
{
    char id[41];
    kdh_pe_pdb_id(guid, age, id);
    want_t w = {1, guid, age, 0, 0};
    return find(s, name, id, &w, path, path_len, err);
}

int kdh_symstore_find_image(kdh_symstore_t *s, const char *name, uint32_t timestamp,
                            uint32_t size_of_image, char *path, size_t path_len, kdh_err_t *err)
{
    char id[17];
    kdh_pe_image_id(timestamp, size_of_image, id);
    want_t w = {0, NULL, 0, timestamp, size_of_image};
    return find(s, name, id, &w, path, path_len, err);
}
