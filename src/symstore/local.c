/* local.c: files on this machine: symbol-store folders (<name>/<KEY>/<name>, two-tier when
 * index2.txt exists, file.ptr redirections) and plain directories. Linux names are
 * case-sensitive while stores made on Windows are not, so a component not found under its exact
 * spelling is looked for case-blind. */
#include "symstore_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

int ss_join(char *out, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a);
    int n = snprintf(out, cap, "%s%s%s", a, (la && a[la - 1] == '/') ? "" : "/", b);
    return n < 0 || (size_t)n >= cap ? KDH_ERANGE : KDH_OK;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/comp under its exact spelling, else the first entry of dir equal to comp case-blind. */
static int ci_resolve(const char *dir, const char *comp, char *out, size_t cap)
{
    struct stat st;
    if (ss_join(out, cap, dir, comp) != KDH_OK)
        return KDH_ERANGE;
    if (stat(out, &st) == 0)
        return KDH_OK;
    DIR *d = opendir(dir);
    if (!d)
        return KDH_ENOTFOUND;
    int rc = KDH_ENOTFOUND;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (strcasecmp(de->d_name, comp) == 0) {
            rc = ss_join(out, cap, dir, de->d_name);
            break;
        }
    }
    closedir(d);
    return rc;
}

static void two_letters(const char *name, char pre[3])
{
    pre[0] = name[0];
    pre[1] = name[0] ? name[1] : '\0';
    pre[2] = '\0';
}

/* file.ptr holds "PATH:<path>" (or a bare path) naming the real file. */
static int follow_ptr(const char *keydir, char *out, size_t cap)
{
    char ptr[4096];
    if (ci_resolve(keydir, "file.ptr", ptr, sizeof ptr) != KDH_OK)
        return KDH_ENOTFOUND;
    FILE *f = fopen(ptr, "r");
    if (!f)
        return KDH_ENOTFOUND;
    char line[4096];
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    if (!got)
        return KDH_ENOTFOUND;
    line[strcspn(line, "\r\n")] = '\0';
    const char *p = strncasecmp(line, "PATH:", 5) == 0 ? line + 5 : line;
    if (strncasecmp(line, "MSG:", 4) == 0 || !is_file(p))
        return KDH_ENOTFOUND;
    int n = snprintf(out, cap, "%s", p);
    return n < 0 || (size_t)n >= cap ? KDH_ERANGE : KDH_OK;
}

int ss_store_lookup(const char *store, const char *name, const char *id, char *out, size_t cap)
{
    char base[4096], d1[4096], d2[4096], marker[4096];
    if (!is_dir(store))
        return KDH_ENOTFOUND;
    snprintf(base, sizeof base, "%s", store);
    if (ss_join(marker, sizeof marker, store, "index2.txt") == KDH_OK && is_file(marker)) {
        char pre[3];
        two_letters(name, pre);
        if (ci_resolve(store, pre, base, sizeof base) != KDH_OK)
            return KDH_ENOTFOUND;
    }
    if (ci_resolve(base, name, d1, sizeof d1) != KDH_OK || ci_resolve(d1, id, d2, sizeof d2) != KDH_OK)
        return KDH_ENOTFOUND;
    if (ci_resolve(d2, name, out, cap) == KDH_OK && is_file(out))
        return KDH_OK;
    return follow_ptr(d2, out, cap);
}

int ss_store_dest(const char *store, const char *name, const char *id, char *out, size_t cap)
{
    char marker[4096];
    int n;
    if (ss_join(marker, sizeof marker, store, "index2.txt") == KDH_OK && is_file(marker)) {
        char pre[3];
        two_letters(name, pre);
        n = snprintf(out, cap, "%s/%s/%s/%s/%s", store, pre, name, id, name);
    } else {
        n = snprintf(out, cap, "%s/%s/%s/%s", store, name, id, name);
    }
    return n < 0 || (size_t)n >= cap ? KDH_ERANGE : KDH_OK;
}

int ss_mkdirs_for(const char *path, kdh_err_t *err)
{
    char p[4096];
    int n = snprintf(p, sizeof p, "%s", path);
    if (n < 0 || (size_t)n >= sizeof p)
        return kdh_err_set(err, KDH_ERANGE, "symbol store: path too long: %s", path);
    char *slash = strrchr(p, '/');
    if (!slash || slash == p)
        return KDH_OK;
    *slash = '\0';
    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return kdh_err_set(err, KDH_EIO, "symbol store: cannot create %s: %s", p,
                               strerror(errno));
        *q = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return kdh_err_set(err, KDH_EIO, "symbol store: cannot create %s: %s", p, strerror(errno));
    return KDH_OK;
}

int ss_plain_lookup(const char *dir, const char *name, int (*accept)(void *ctx, const char *path),
                    void *ctx, char *out, size_t cap)
{
    const char *dot = strrchr(name, '.');
    const char *ext = dot && dot[1] ? dot + 1 : NULL;
    char sub[4][4096];
    int nsub = 0;
    if (ext) {
        snprintf(sub[nsub++], sizeof sub[0], "%s/symbols/%s", dir, ext);
        snprintf(sub[nsub++], sizeof sub[0], "%s/%s", dir, ext);
    }
    snprintf(sub[nsub++], sizeof sub[0], "%s", dir);
    for (int i = 0; i < nsub; i++) {
        if (!is_dir(sub[i]))
            continue;
        if (ci_resolve(sub[i], name, out, cap) == KDH_OK && is_file(out) && accept(ctx, out))
            return KDH_OK;
    }
    return KDH_ENOTFOUND;
}
