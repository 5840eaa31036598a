/* peload.h: just enough PE reading for the Unicorn unwind tests: image base and size, the
 * exception directory, section RVAs (for llvm-pdbutil's seg:off), and the image laid out at
 * its RVAs. Test code only: the fixtures are built by the test itself. */
#ifndef KDH_TEST_PELOAD_H
#define KDH_TEST_PELOAD_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/common.h"

typedef struct pe_img {
    uint64_t base;
    uint32_t size;
    uint32_t pdata_rva, pdata_size;
    int is64;
    uint8_t *mem; /* size bytes, sections at their RVAs */
    uint32_t sec_va[32];
    int nsec;
} pe_img_t;

static inline int pe_load(const char *path, pe_img_t *pe)
{
    memset(pe, 0, sizeof *pe);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    static uint8_t file[1 << 20];
    size_t n = fread(file, 1, sizeof file, f);
    fclose(f);
    if (n < 0x200 || file[0] != 'M' || file[1] != 'Z')
        return -1;
    uint32_t pe_off = kdh_get_u32(file + 0x3c);
    if (pe_off + 24 > n || memcmp(file + pe_off, "PE\0\0", 4) != 0)
        return -1;
    const uint8_t *coff = file + pe_off + 4, *opt = coff + 20;
    uint16_t nsec = kdh_get_u16(coff + 2), optsz = kdh_get_u16(coff + 16);
    uint16_t magic = kdh_get_u16(opt);
    pe->is64 = magic == 0x20b;
    pe->base = pe->is64 ? kdh_get_u64(opt + 24) : kdh_get_u32(opt + 28);
    pe->size = kdh_get_u32(opt + 56);
    uint32_t hdrs = kdh_get_u32(opt + 60);
    const uint8_t *dd = opt + (pe->is64 ? 112 : 96);
    pe->pdata_rva = kdh_get_u32(dd + 3 * 8);
    pe->pdata_size = kdh_get_u32(dd + 3 * 8 + 4);
    pe->mem = calloc(1, pe->size);
    memcpy(pe->mem, file, hdrs < n ? hdrs : n);
    const uint8_t *sh = opt + optsz;
    for (int i = 0; i < nsec && i < 32; i++, sh += 40) {
        uint32_t vsz = kdh_get_u32(sh + 8), va = kdh_get_u32(sh + 12);
        uint32_t rsz = kdh_get_u32(sh + 16), raw = kdh_get_u32(sh + 20);
        uint32_t len = rsz < vsz ? rsz : vsz;
        if (va + len > pe->size || raw + len > n)
            return -1;
        memcpy(pe->mem + va, file + raw, len);
        pe->sec_va[pe->nsec++] = va;
    }
    return 0;
}

typedef struct pub {
    char name[64];
    uint32_t rva;
} pub_t;

/* Reads `llvm-pdbutil dump -publics` output: a "`name`" line, then "addr = SSSS:OOOO"
 * (decimal section index and offset). Returns the count. */
static inline int pubs_load(const char *path, const pe_img_t *pe, pub_t *out, int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512], name[64] = "";
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        char *a = strchr(line, '`'), *b = a ? strchr(a + 1, '`') : NULL;
        if (a && b && (size_t)(b - a - 1) < sizeof name) {
            memcpy(name, a + 1, (size_t)(b - a - 1));
            name[b - a - 1] = 0;
            continue;
        }
        char *ad = strstr(line, "addr = ");
        unsigned seg, off;
        if (ad && name[0] && sscanf(ad, "addr = %u:%u", &seg, &off) == 2 && seg >= 1 &&
            (int)seg <= pe->nsec) {
            snprintf(out[n].name, sizeof out[n].name, "%s", name);
            out[n].rva = pe->sec_va[seg - 1] + off;
            n++;
            name[0] = 0;
        }
    }
    fclose(f);
    return n;
}

/* Name of the public with the greatest RVA <= rva, or "?" */
static inline const char *pubs_at(const pub_t *p, int n, uint32_t rva)
{
    const pub_t *best = NULL;
    for (int i = 0; i < n; i++)
        if (p[i].rva <= rva && (!best || p[i].rva > best->rva))
            best = &p[i];
    return best ? best->name : "?";
}

static inline uint32_t pubs_rva(const pub_t *p, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0)
            return p[i].rva;
    return 0;
}

#endif
