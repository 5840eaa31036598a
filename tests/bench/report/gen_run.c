/* gen_run.c: writes a synthetic run directory for the report benchmark: EVENTS events over STACKS
 * unique stacks in 50 drivers, plus (optionally) a folded file with one line per allocation, the raw
 * input a `sort | uniq -c` pipeline would need to produce the same per-stack counts.
 * usage: gen_run DIR EVENTS STACKS [FOLDED_FILE] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kdh/store.h"

#define DRIVERS 50
#define RING 4096

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: gen_run DIR EVENTS STACKS [FOLDED_FILE]\n");
        return 2;
    }
    const char *dir = argv[1];
    uint64_t nev = strtoull(argv[2], NULL, 10), nst = strtoull(argv[3], NULL, 10);
    if (nst == 0 || nev == 0)
        return 2;
    kdh_store_t *st;
    kdh_err_t err = {0};
    if (kdh_store_open(&st, dir, NULL, &err) != KDH_OK) {
        fprintf(stderr, "gen_run: %s\n", err.msg);
        return 1;
    }
    char keys[DRIVERS + 1][64], names[DRIVERS + 1][16];
    snprintf(keys[0], sizeof keys[0], "ntoskrnl.exe/A30A731A4000");
    snprintf(names[0], sizeof names[0], "nt");
    for (int d = 1; d <= DRIVERS; d++) {
        snprintf(names[d], sizeof names[d], "Drv%02d", d);
        snprintf(keys[d], sizeof keys[d], "Drv%02d.sys/5E2A11%02X8000", d, d);
    }
    for (int d = 0; d <= DRIVERS; d++) {
        kdh_store_module_t m = {.key = keys[d], .name = names[d], .boot = 1};
        kdh_store_add_module(st, &m, NULL);
    }
    /* Each stack: nt!ExAllocatePoolWithTag, then 2..7 frames in one driver; every other frame has a
     * symbol. The folded text (root first) is built here by the rules of docs/run-format.md. */
    char **folded = calloc(nst, sizeof *folded);
    char (*sids)[17] = calloc(nst, sizeof *sids);
    if (!folded || !sids)
        return 1;
    for (uint64_t i = 0; i < nst; i++) {
        kdh_store_frame_t f[8];
        char syms[8][64], text[8][64];
        int d = 1 + (int)(i % DRIVERS), n = 3 + (int)(i % 6);
        memset(f, 0, sizeof f);
        f[0] = (kdh_store_frame_t){.mod = keys[0], .rva = 0x1234, .has_rva = 1, .sym = "nt!ExAllocatePoolWithTag+0x34"};
        snprintf(text[0], sizeof text[0], "nt!ExAllocatePoolWithTag+0x34");
        for (int k = 1; k < n; k++) {
            uint64_t rva = 0x1000 + ((i * 2654435761u + (uint64_t)k * 40503u) & 0xfffff);
            f[k] = (kdh_store_frame_t){.mod = keys[d], .rva = rva, .has_rva = 1};
            if (k % 2) {
                snprintf(syms[k], sizeof syms[k], "%s!Func%05" PRIx64 "+0x1f", names[d], rva >> 4);
                f[k].sym = syms[k];
                snprintf(text[k], sizeof text[k], "%s", syms[k]);
            } else {
                snprintf(text[k], sizeof text[k], "%s+0x%" PRIx64, names[d], rva);
            }
        }
        uint64_t sid;
        if (kdh_store_intern_stack(st, f, (size_t)n, &sid, &err) != KDH_OK) {
            fprintf(stderr, "gen_run: %s\n", err.msg);
            return 1;
        }
        kdh_store_sid_format(sid, sids[i]);
        size_t len = 0;
        for (int k = 0; k < n; k++)
            len += strlen(text[k]) + 1;
        folded[i] = malloc(len + 1);
        folded[i][0] = '\0';
        for (int k = n - 1; k >= 0; k--) {
            strcat(folded[i], text[k]);
            if (k)
                strcat(folded[i], ";");
        }
    }
    json_t *meta = json_pack("{s:s,s:s,s:s}", "target", "bench", "tag", "Leak", "source", "live");
    kdh_store_write_meta(st, meta, NULL);
    json_decref(meta);
    kdh_store_close(st, NULL);

    char path[4096];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    FILE *ev = fopen(path, "a"), *fo = argc > 4 ? fopen(argv[4], "w") : NULL;
    if (!ev || (argc > 4 && !fo))
        return 1;
    static char buf1[1 << 20], buf2[1 << 20];
    setvbuf(ev, buf1, _IOFBF, sizeof buf1);
    if (fo)
        setvbuf(fo, buf2, _IOFBF, sizeof buf2);
    uint64_t ring[RING] = {0}, nring = 0, next_addr = 0xffffc00100000000ULL;
    for (uint64_t i = 0; i < nev; i++) {
        double t = 1795478400.0 + (double)i * 0.001;
        uint64_t r = next();
        if (nring && r % 10 < 3) { /* 30% frees of a recent allocation */
            uint64_t slot = (r >> 8) % (nring < RING ? nring : RING);
            fprintf(ev, "{\"seq\":%" PRIu64 ",\"t\":%.3f,\"boot\":1,\"kind\":\"free\",\"tag\":\"Leak\",\"addr\":\"0x%" PRIx64 "\"}\n",
                    i + 1, t, ring[slot]);
            continue;
        }
        /* Skewed choice: a few stacks are hot, most are rare. */
        uint64_t s = ((r >> 16) % nst) * ((r >> 40) % 1000 + 1) / 1000;
        uint64_t size = 16 + ((r >> 4) & 0x3f0);
        uint64_t addr = next_addr;
        next_addr += 0x400;
        ring[nring++ % RING] = addr;
        fprintf(ev,
                "{\"seq\":%" PRIu64 ",\"t\":%.3f,\"boot\":1,\"cpu\":%d,\"kind\":\"alloc\",\"tag\":\"Leak\",\"size\":%" PRIu64
                ",\"addr\":\"0x%" PRIx64 "\",\"sid\":\"%s\"}\n",
                i + 1, t, (int)(r & 3), size, addr, sids[s]);
        if (fo)
            fprintf(fo, "%s\n", folded[s]);
    }
    fclose(ev);
    if (fo)
        fclose(fo);
    for (uint64_t i = 0; i < nst; i++)
        free(folded[i]);
    free(folded);
    free(sids);
    return 0;
}
