/* symbols.c: offline re-symbolization for the report (--symbols). A frame's module key carries the
 * image identity (file, TimeDateStamp, SizeOfImage, PDB GUID and age), so its PDB is found along
 * the symbol path by identity, never by a name that might belong to another build; each module's
 * PDB is looked up once and kept for the whole report. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kdh/pdb.h"
#include "kdh/symstore.h"
#include "report_int.h"

struct rep_symmod {
    kdh_pdb_t *pdb; /* NULL: not found (tried once) */
};

static int hexnib(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses kdh_pe_pdb_id's text ("<GUID as 32 upper hex, Data1-3 as numbers><age hex>") back into
 * the stored GUID bytes (Data1..3 little-endian) and the age. */
int rep_parse_pdb_id(const char *s, size_t n, uint8_t guid[16], uint32_t *age)
{
    uint8_t be[16];
    if (n < 33 || n > 40)
        return -1;
    for (size_t i = 0; i < 16; i++) {
        int hi = hexnib(s[2 * i]), lo = hexnib(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        be[i] = (uint8_t)(hi << 4 | lo);
    }
    uint64_t a = 0;
    for (size_t i = 32; i < n; i++) {
        int d = hexnib(s[i]);
        if (d < 0)
            return -1;
        a = a << 4 | (uint64_t)d;
    }
    if (a > UINT32_MAX)
        return -1;
    /* Data1 (4 bytes), Data2, Data3 (2 each) were printed as numbers: reverse them to storage order. */
    static const uint8_t order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    for (size_t i = 0; i < 16; i++)
        guid[i] = be[order[i]];
    *age = (uint32_t)a;
    return 0;
}

/* Notes are cut at their buffer's size: they name a module and a reason, not a whole path. */
static void sym_note(kdh_report_t *r, const char *fmt, ...)
{
    va_list ap;
    if (r->nsymnotes >= SKIP_NOTES)
        return;
    va_start(ap, fmt);
    vsnprintf(r->symnotes[r->nsymnotes++], sizeof r->symnotes[0], fmt, ap);
    va_end(ap);
}

/* Identity from a module line or, failing that, from the key itself ("file/IMAGEID/PDBID"). */
static kdh_pdb_t *load_pdb(kdh_report_t *r, const char *key)
{
    const rep_modinfo_t *mi = rep_modinfo(r, key);
    uint8_t guid[16];
    uint32_t age;
    char pdbname[256];
    const char *slash1 = strchr(key, '/'), *slash2 = slash1 ? strchr(slash1 + 1, '/') : NULL;
    int have_id = 0;
    if (mi && strlen(mi->guid) == 32) { /* modules.jsonl keeps the GUID and the age apart */
        char id[48];
        snprintf(id, sizeof id, "%s%" PRIX32, mi->guid, mi->age);
        have_id = rep_parse_pdb_id(id, strlen(id), guid, &age) == 0;
    }
    if (!have_id && slash2)
        have_id = rep_parse_pdb_id(slash2 + 1, strlen(slash2 + 1), guid, &age) == 0;
    if (!have_id) {
        sym_note(r, "symbols: %s has no PDB identity (GUID and age)", key);
        return NULL;
    }
    if (mi && mi->pdb[0]) {
        snprintf(pdbname, sizeof pdbname, "%s", mi->pdb);
    } else { /* the image's file name with .pdb: what the linker writes unless told otherwise */
        size_t n = slash1 ? (size_t)(slash1 - key) : strlen(key);
        const char *dot = memchr(key, '.', n);
        if (dot)
            n = (size_t)(dot - key);
        if (n + 5 > sizeof pdbname)
            return NULL;
        snprintf(pdbname, sizeof pdbname, "%.*s.pdb", (int)n, key);
    }
    char path[4096];
    kdh_err_t err = {0};
    if (kdh_symstore_find_pdb(r->opts.symbols, pdbname, guid, age, path, sizeof path, &err) != KDH_OK) {
        sym_note(r, "symbols: no PDB for %s: %s", key, err.msg);
        return NULL;
    }
    kdh_pdb_t *pdb = NULL;
    if (kdh_pdb_open_file(&pdb, path, &err) != KDH_OK) {
        sym_note(r, "symbols: %s: %s", path, err.msg);
        return NULL;
    }
    const kdh_pdb_info_t *info = kdh_pdb_info(pdb);
    if (memcmp(info->guid, guid, 16) != 0 || info->age != age) {
        sym_note(r, "symbols: %s does not match the identity of %s", path, key);
        kdh_pdb_close(pdb);
        return NULL;
    }
    return pdb;
}

/* The module's PDB (looked up on first use), or NULL. */
static kdh_pdb_t *module_pdb(kdh_report_t *r, const char *key)
{
    uint64_t h = XXH3_64bits(key, strlen(key));
    uint64_t *v = kdh_u64map_get(&r->symmap, h);
    if (v)
        return r->symmods[*v].pdb;
    if (r->nsymmods >= r->capsymmods) {
        uint32_t ncap = r->capsymmods ? r->capsymmods * 2 : 16;
        rep_symmod_t *n = realloc(r->symmods, ncap * sizeof *n);
        if (!n)
            return NULL;
        r->symmods = n;
        r->capsymmods = ncap;
    }
    if (kdh_u64map_put(&r->symmap, h, r->nsymmods, NULL) != 0)
        return NULL;
    rep_symmod_t *m = &r->symmods[r->nsymmods++];
    m->pdb = load_pdb(r, key);
    return m->pdb;
}

int rep_symbolize(kdh_report_t *r, const char *key, const char *modname, uint64_t rva, char *out, size_t cap)
{
    if (!r->opts.symbols || !key || rva > UINT32_MAX)
        return 0;
    kdh_pdb_t *pdb = module_pdb(r, key);
    if (!pdb)
        return 0;
    uint32_t off = 0;
    const kdh_pdb_public_t *p = kdh_pdb_symbolize(pdb, (uint32_t)rva, &off);
    if (!p) { /* before every public: WinDbg prints module+offset too */
        snprintf(out, cap, "%s+0x%" PRIx64, modname, rva);
        return 1;
    }
    if (off)
        snprintf(out, cap, "%s!%s+0x%" PRIx32, modname, p->name, off);
    else
        snprintf(out, cap, "%s!%s", modname, p->name);
    return 1;
}

void rep_symbols_free(kdh_report_t *r)
{
    for (uint32_t i = 0; i < r->nsymmods; i++)
        kdh_pdb_close(r->symmods[i].pdb);
    free(r->symmods);
    kdh_u64map_free(&r->symmap);
}

size_t kdh_report_symbol_note_count(const kdh_report_t *r)
{
    return r->nsymnotes;
}

const char *kdh_report_symbol_note(const kdh_report_t *r, size_t i)
{
    return i < r->nsymnotes ? r->symnotes[i] : NULL;
}
