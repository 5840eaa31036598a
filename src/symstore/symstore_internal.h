/* symstore_internal.h: the kdh_symstore object and the helpers shared by its files: path
 * parsing (path.c), local lookups (local.c), downloads (http.c) and the search order (find.c). */
#ifndef KDH_SYMSTORE_INTERNAL_H
#define KDH_SYMSTORE_INTERNAL_H

#include "kdh/symstore.h"

struct kdh_symstore {
    kdh_symstore_elem_t *elems;
    uint32_t nelems;
    long connect_ms, total_ms, stall_s;
    int curl_ready;
};

int ss_is_url(const char *s);
/* Joins a and b with '/' into out; KDH_ERANGE when it does not fit. */
int ss_join(char *out, size_t cap, const char *a, const char *b);
/* mkdir -p of the folder that will hold file path. */
int ss_mkdirs_for(const char *path, kdh_err_t *err);
/* Looks up <name>/<id>/<name> in a local store (two-tier when index2.txt exists; key folder
 * and names matched case-blind when the exact spelling is absent; file.ptr followed). */
int ss_store_lookup(const char *store, const char *name, const char *id, char *out, size_t cap);
/* Where a download into store goes: <store>[/<2 letters>]/<name>/<ID>/<name>. */
int ss_store_dest(const char *store, const char *name, const char *id, char *out, size_t cap);
/* Candidates dir/symbols/<ext>/name, dir/<ext>/name, dir/name; calls accept() on each
 * existing one and stops at the first it accepts. */
int ss_plain_lookup(const char *dir, const char *name, int (*accept)(void *ctx, const char *path),
                    void *ctx, char *out, size_t cap);

#endif
