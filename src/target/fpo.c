/* fpo.c: x86 frame data (New FPO, FRAMEDATA) of a module's PDB for the unwinder's find_fpo
 * callback. The records live in the stream the DBI optional debug header names in slot 9
 * (32-byte FRAMEDATA entries, optionally after a 4-byte relocation word); each names its RPN
 * program by an offset into the PDB's "/names" string table, found through the named-stream
 * map of the PDB info stream. Everything read from the file is bounds-checked. */
#include <stdlib.h>
#include <string.h>

#include "target_int.h"

#define FD_SIZE 32u
#define NAMES_MAGIC 0xEFFEEFFEu
#define MAX_FPO_RECORDS (1u << 22)

/* Stream index of "/names" from the PDB info stream's named-stream map, or -1. */
static int names_stream(const kdh_pdb_t *pdb)
{
    uint8_t *d = NULL;
    uint32_t n = 0;
    if (kdh_pdb_read_stream(pdb, 1, &d, &n, NULL) != KDH_OK)
        return -1;
    int found = -1;
    uint32_t off = 28; /* Version, Signature, Age, GUID */
    if (!kdh_in_bounds(off, 4, n))
        goto out;
    uint32_t strlen_ = kdh_get_u32(d + off);
    off += 4;
    if (!kdh_in_bounds(off, strlen_, n))
        goto out;
    const uint8_t *strs = d + off;
    off += strlen_;
    if (!kdh_in_bounds(off, 8, n))
        goto out;
    uint32_t size = kdh_get_u32(d + off);
    off += 8; /* Size, Capacity */
    for (int k = 0; k < 2; k++) { /* present and deleted bit vectors: word count + words */
        if (!kdh_in_bounds(off, 4, n))
            goto out;
        uint32_t words = kdh_get_u32(d + off);
        off += 4;
        if (words > n / 4 || !kdh_in_bounds(off, (uint64_t)words * 4, n))
            goto out;
        off += words * 4;
    }
    for (uint32_t i = 0; i < size; i++, off += 8) {
        if (!kdh_in_bounds(off, 8, n))
            goto out;
        uint32_t key = kdh_get_u32(d + off), val = kdh_get_u32(d + off + 4);
        if (key < strlen_ && memchr(strs + key, 0, strlen_ - key) && strcmp((const char *)strs + key, "/names") == 0) {
            found = val < 0xFFFFu * 16 ? (int)val : -1;
            break;
        }
    }
out:
    free(d);
    return found;
}

static int cmp_fd(const void *a, const void *b)
{
    uint32_t x = kdh_get_u32(a), y = kdh_get_u32(b);
    return x < y ? -1 : x > y;
}

/* Loads module i's FRAMEDATA (once). No PDB or no records is not an error: none are used. */
static void load_fpo(kdh_target_t *t, size_t i)
{
    tmodsym_t *s = &t->syms[i];
    if (s->fpo_state)
        return;
    s->fpo_state = -1;
    if (kdh_target_load_symbols(t, i, NULL) != KDH_OK)
        return;
    const kdh_pdb_info_t *pi = kdh_pdb_info(s->pdb);
    uint16_t fs = pi->dbg_streams[KDH_PDB_DBG_FRAMEDATA];
    if (fs == 0xFFFF)
        return;
    uint8_t *d = NULL;
    uint32_t n = 0;
    if (kdh_pdb_read_stream(s->pdb, fs, &d, &n, NULL) != KDH_OK)
        return;
    uint32_t skip = n % FD_SIZE == 4 ? 4 : 0; /* the relocation word some linkers write */
    if ((n - skip) % FD_SIZE != 0 || (n - skip) / FD_SIZE > MAX_FPO_RECORDS) {
        free(d);
        return;
    }
    int ns = names_stream(s->pdb);
    uint8_t *names = NULL;
    uint32_t nn = 0;
    if (ns < 0 || kdh_pdb_read_stream(s->pdb, (uint32_t)ns, &names, &nn, NULL) != KDH_OK || nn < 12 ||
        kdh_get_u32(names) != NAMES_MAGIC || !kdh_in_bounds(12, kdh_get_u32(names + 8), nn)) {
        free(d);
        free(names);
        return;
    }
    memmove(d, d + skip, n - skip);
    s->fpo = d;
    s->nfpo = (n - skip) / FD_SIZE;
    qsort(s->fpo, s->nfpo, FD_SIZE, cmp_fd);
    s->names = names;
    s->names_len = kdh_get_u32(names + 8);
    s->fpo_state = 1;
}

int target_find_fpo(void *ctx, const kdh_unwind_module_t *um, uint32_t rva, kdh_unwind_fpo_t *out)
{
    kdh_target_t *t = ctx;
    if (um->id >= t->nmods)
        return KDH_ENOTFOUND;
    size_t i = (size_t)um->id;
    load_fpo(t, i);
    tmodsym_t *s = &t->syms[i];
    if (s->fpo_state != 1)
        return KDH_ENOTFOUND;
    /* the record with the greatest RvaStart <= rva whose block holds rva */
    size_t lo = 0, hi = s->nfpo;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kdh_get_u32(s->fpo + mid * FD_SIZE) <= rva)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = lo, steps = 0; k-- > 0 && steps < 64; steps++) {
        const uint8_t *r = s->fpo + k * FD_SIZE;
        uint32_t start = kdh_get_u32(r), size = kdh_get_u32(r + 4);
        if (rva - start >= size)
            continue; /* an earlier, longer block may still cover rva */
        memset(out, 0, sizeof *out);
        out->rva_start = start;
        out->block_size = size;
        out->locals = kdh_get_u32(r + 8);
        out->params = kdh_get_u32(r + 12);
        out->max_stack = kdh_get_u32(r + 16);
        uint32_t prog = kdh_get_u32(r + 20);
        out->prolog_size = kdh_get_u16(r + 24);
        out->saved_regs = kdh_get_u16(r + 26);
        const char *base = (const char *)s->names + 12;
        if (prog < s->names_len && memchr(base + prog, 0, s->names_len - prog))
            out->program = base + prog;
        return KDH_OK;
    }
    return KDH_ENOTFOUND;
}
