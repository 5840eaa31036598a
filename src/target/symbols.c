/* symbols.c: names for target addresses. A module's PDB is found along the symbol path by its
 * GUID/age (kdh_symstore) and read for publics (kdh_pdb); without it, the exports are read from
 * target memory; user overrides (--symbol NAME=nt+0x1234) settle anything else. Resolution of
 * one name is a step (exports may need memory); symbolizing never touches the target. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "target_int.h"

int kdh_target_set_symbol_path(kdh_target_t *t, const char *path, const char *default_cache,
                               kdh_err_t *err)
{
    if (!path)
        path = getenv("_NT_SYMBOL_PATH");
    if (t->store) {
        kdh_symstore_free(t->store);
        t->store = NULL;
    }
    t->sym_path_text[0] = 0;
    if (!path || !*path)
        return KDH_OK;
    int rc = kdh_symstore_new(&t->store, path, default_cache, err);
    if (rc != KDH_OK)
        return rc;
    snprintf(t->sym_path_text, sizeof t->sym_path_text, "%s", path);
    for (size_t i = 0; i < t->nmods; i++) /* a new path may find what the old one did not */
        t->mods[i].sym_tried = 0;
    return KDH_OK;
}

int kdh_target_add_override(kdh_target_t *t, const char *spec, kdh_err_t *err)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return kdh_err_set(err, KDH_EINVAL, "--symbol '%s': expected NAME=module+0xRVA or NAME=0xADDRESS", spec);
    toverride_t o;
    memset(&o, 0, sizeof o);
    size_t nlen = (size_t)(eq - spec);
    if (nlen >= sizeof o.name)
        return kdh_err_set(err, KDH_ERANGE, "--symbol '%s': name too long", spec);
    memcpy(o.name, spec, nlen);
    const char *v = eq + 1, *plus = strchr(v, '+');
    char *end = NULL;
    if (plus) {
        size_t mlen = (size_t)(plus - v);
        if (mlen == 0 || mlen >= sizeof o.module)
            return kdh_err_set(err, KDH_EINVAL, "--symbol '%s': bad module name", spec);
        memcpy(o.module, v, mlen);
        v = plus + 1;
    }
    if (!isxdigit((unsigned char)*v))
        return kdh_err_set(err, KDH_EINVAL, "--symbol '%s': '%s' is not a number", spec, v);
    o.value = strtoull(v, &end, 0);
    if (!end || *end)
        return kdh_err_set(err, KDH_EINVAL, "--symbol '%s': '%s' is not a number", spec, v);
    if (plus && o.value > KDH_PE_MAX_IMAGE)
        return kdh_err_set(err, KDH_ERANGE, "--symbol '%s': offset beyond any image", spec);
    toverride_t *n = realloc(t->ovr, (t->novr + 1) * sizeof *n);
    if (!n)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory");
    t->ovr = n;
    t->ovr[t->novr++] = o;
    return KDH_OK;
}

int kdh_target_load_symbols(kdh_target_t *t, size_t i, kdh_err_t *err)
{
    if (i >= kdh_target_module_count(t))
        return kdh_err_set(err, KDH_EINVAL, "no module %zu", i);
    kdh_target_module_t *m = &t->mods[i];
    tmodsym_t *s = &t->syms[i];
    if (m->sym_tried)
        return m->sym_found ? KDH_OK : kdh_err_set(err, KDH_ENOTFOUND, "%s", m->sym_path);
    m->sym_tried = 1;
    if (!m->has_pdb) {
        snprintf(m->sym_path, sizeof m->sym_path, "%s has no CodeView record", m->file);
        return kdh_err_set(err, KDH_ENOTFOUND, "%s", m->sym_path);
    }
    if (!t->store) {
        snprintf(m->sym_path, sizeof m->sym_path, "%s: no symbol path", m->pdb_name);
        return kdh_err_set(err, KDH_ENOTFOUND, "%s", m->sym_path);
    }
    char path[512];
    kdh_err_t e;
    kdh_err_clear(&e);
    int rc = kdh_symstore_find_pdb(t->store, m->pdb_name, m->guid, m->age, path, sizeof path, &e);
    if (rc == KDH_OK) {
        kdh_pdb_t *pdb = NULL;
        rc = kdh_pdb_open_file(&pdb, path, &e);
        if (rc == KDH_OK) {
            const kdh_pdb_info_t *pi = kdh_pdb_info(pdb);
            if (memcmp(pi->guid, m->guid, 16) != 0 || pi->age != m->age) {
                kdh_pdb_close(pdb);
                rc = kdh_err_set(&e, KDH_ENOTFOUND, "%s does not match the image's GUID/age", path);
            } else {
                s->pdb = pdb;
                m->sym_found = 1;
                snprintf(m->sym_path, sizeof m->sym_path, "%s", path);
                return KDH_OK;
            }
        }
    }
    snprintf(m->sym_path, sizeof m->sym_path, "%.100s not found in %.200s: %.180s", m->pdb_name, t->sym_path_text,
             e.msg[0] ? e.msg : kdh_strerror(rc));
    return kdh_err_set(err, KDH_ENOTFOUND, "%s", m->sym_path);
}

static int override_value(kdh_target_t *t, const char *mod, const char *sym, uint64_t *addr)
{
    for (size_t i = t->novr; i-- > 0;) {
        const toverride_t *o = &t->ovr[i];
        const char *bang = strchr(o->name, '!');
        const char *oname = bang ? bang + 1 : o->name;
        if (strcmp(oname, sym) != 0)
            continue;
        if (bang) {
            char om[64];
            snprintf(om, sizeof om, "%.*s", (int)(bang - o->name), o->name);
            const kdh_target_module_t *a = kdh_target_module_by_name(t, om);
            const kdh_target_module_t *b = kdh_target_module_by_name(t, mod);
            if (!a || a != b)
                continue;
        }
        if (!o->module[0]) {
            *addr = o->value;
            return KDH_OK;
        }
        const kdh_target_module_t *m = kdh_target_module_by_name(t, o->module);
        if (m) {
            *addr = m->base + o->value;
            return KDH_OK;
        }
    }
    return KDH_ENOTFOUND;
}

typedef struct img_view2 {
    kdh_target_t *t;
    uint64_t base;
    uint32_t size;
} img_view2_t;

static int exp_read(void *ctx, uint64_t va, void *buf, uint32_t len, uint32_t *got)
{
    img_view2_t *v = ctx;
    *got = 0;
    if (va < v->base || va - v->base >= v->size)
        return KDH_OK;
    if (!kdh_in_bounds(va - v->base, len, v->size))
        len = (uint32_t)(v->size - (va - v->base));
    return kdh_target_read(v->t, KDH_TARGET_BOOT, va, buf, len, got);
}

/* Reads module i's export directory from target memory (a step). */
static int load_exports(kdh_target_t *t, size_t i)
{
    tmodsym_t *s = &t->syms[i];
    kdh_target_module_t *m = &t->mods[i];
    if (s->exports_read)
        return KDH_OK;
    img_view2_t v = {t, m->base, m->size};
    kdh_pe_t pe;
    kdh_err_t e;
    kdh_err_clear(&e);
    int rc = kdh_pe_open_memory(&pe, m->base, exp_read, &v, &e);
    if (rc == KDH_OK)
        rc = kdh_pe_exports(&pe, &s->exports, &e);
    if (rc == KDH_ENOTCACHED)
        return rc;
    if (rc != KDH_OK) {
        s->exports_read = -1;
        snprintf(s->exports_error, sizeof s->exports_error, "%.150s", e.msg[0] ? e.msg : kdh_strerror(rc));
        return KDH_OK;
    }
    s->exports_read = 1;
    return KDH_OK;
}

int kdh_target_step_resolve(kdh_target_t *t, const char *name, uint64_t *addr, char *source,
                            size_t source_len, kdh_err_t *err)
{
    char mod[64] = "nt";
    const char *sym = name, *bang = strchr(name, '!');
    if (bang) {
        snprintf(mod, sizeof mod, "%.*s", (int)(bang - name), name);
        sym = bang + 1;
    }
    if (source && source_len)
        source[0] = 0;
    if (override_value(t, mod, sym, addr) == KDH_OK) {
        if (source)
            snprintf(source, source_len, "--symbol");
        return KDH_OK;
    }
    const kdh_target_module_t *m = kdh_target_module_by_name(t, mod);
    if (!m)
        return kdh_err_set(err, KDH_ENOTFOUND, "%s!%s not found: no module '%s' is loaded; pass --symbol %s=0xADDRESS",
                           mod, sym, mod, sym);
    size_t i = (size_t)(m - t->mods);
    tmodsym_t *s = &t->syms[i];
    kdh_err_t e;
    kdh_err_clear(&e);
    if (kdh_target_load_symbols(t, i, &e) == KDH_OK) {
        uint32_t rva;
        if (kdh_pdb_lookup(s->pdb, sym, &rva) == KDH_OK) {
            *addr = m->base + rva;
            if (source)
                snprintf(source, source_len, "%s", m->pdb_name);
            return KDH_OK;
        }
    }
    if (m->ok) {
        int rc = load_exports(t, i);
        if (rc != KDH_OK)
            return rc;
        if (s->exports_read == 1) {
            const kdh_pe_export_t *x = kdh_pe_export_find(&s->exports, sym);
            if (x && x->rva && !x->forwarder) {
                *addr = m->base + x->rva;
                if (source)
                    snprintf(source, source_len, "exports");
                return KDH_OK;
            }
        }
    }
    /* short enough that the way out at the end of the line survives kdh_err_t's 256 bytes */
    char pdbpart[160];
    if (m->sym_found)
        snprintf(pdbpart, sizeof pdbpart, "%.64s (no such public)", m->pdb_name);
    else if (!m->has_pdb)
        snprintf(pdbpart, sizeof pdbpart, "the PDB (%.40s has no CodeView record)", m->file);
    else if (!t->store)
        snprintf(pdbpart, sizeof pdbpart, "%.64s (no symbol path)", m->pdb_name);
    else
        snprintf(pdbpart, sizeof pdbpart, "%.40s (not found in %.60s%s)", m->pdb_name, t->sym_path_text,
                 strlen(t->sym_path_text) > 60 ? "..." : "");
    return kdh_err_set(err, KDH_ENOTFOUND,
                       "%s!%s not found: tried %s and exports%s; pass --symbols DIR or --symbol %s=%s+0xRVA",
                       m->name, sym, pdbpart, s->exports_read == -1 ? " (unreadable)" : "", sym, m->name);
}

/* WinDbg shows x86 names undecorated: "_Fn@8" and "@Fn@8" as "Fn". */
static void undecorate(const char *in, char *out, size_t len)
{
    const char *p = in;
    if (*p == '_' || *p == '@')
        p++;
    snprintf(out, len, "%s", *p ? p : in);
    char *at = strrchr(out, '@');
    if (at && at != out && at[1]) {
        char *q = at + 1;
        while (*q >= '0' && *q <= '9')
            q++;
        if (!*q)
            *at = 0;
    }
}

void kdh_target_symbolize(kdh_target_t *t, uint64_t va, char *out, size_t out_len)
{
    const kdh_target_module_t *m = kdh_target_module_by_addr(t, va);
    if (!m) {
        snprintf(out, out_len, "0x%llx", (unsigned long long)va);
        return;
    }
    size_t i = (size_t)(m - t->mods);
    uint32_t rva = (uint32_t)(va - m->base), off = 0;
    if (kdh_target_load_symbols(t, i, NULL) == KDH_OK) {
        const kdh_pdb_public_t *p = kdh_pdb_symbolize(t->syms[i].pdb, rva, &off);
        if (p) {
            char nm[256];
            if (t->psize == 4)
                undecorate(p->name, nm, sizeof nm);
            else
                snprintf(nm, sizeof nm, "%s", p->name);
            if (off)
                snprintf(out, out_len, "%s!%s+0x%x", m->name, nm, off);
            else
                snprintf(out, out_len, "%s!%s", m->name, nm);
            return;
        }
    }
    const tmodsym_t *s = &t->syms[i];
    if (s->exports_read == 1) {
        const kdh_pe_export_t *best = NULL;
        for (uint32_t k = 0; k < s->exports.count; k++) {
            const kdh_pe_export_t *x = &s->exports.v[k];
            if (x->name && !x->forwarder && x->rva <= rva && (!best || x->rva > best->rva))
                best = x;
        }
        if (best) {
            if (rva - best->rva)
                snprintf(out, out_len, "%s!%s+0x%x", m->name, best->name, rva - best->rva);
            else
                snprintf(out, out_len, "%s!%s", m->name, best->name);
            return;
        }
    }
    snprintf(out, out_len, "%s+0x%x", m->name, rva);
}
