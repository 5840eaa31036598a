/* test_pe.h: shared pieces of the kdh_pe tests (fixture loading, memory read callback). */
#ifndef TEST_PE_H
#define TEST_PE_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/pe.h"

/* Reads a fixture image of the build; returns NULL (and the test skips) when absent. */
uint8_t *fx_load(const char *name, size_t *len);

/* Target memory simulated from a mapped image; counts and checks every read. */
typedef struct fake_mem {
    const uint8_t *img;
    size_t len;
    uint64_t base;
    unsigned reads;
    uint64_t bytes;
    unsigned outside; /* reads that asked for bytes outside [base, base+len) */
    int fail_with;    /* when nonzero, every read returns this code */
} fake_mem_t;

int fake_read(void *ctx, uint64_t va, void *buf, uint32_t len, uint32_t *got);

void test_corrupt_tiny(void **state);
void test_corrupt_headers(void **state);
void test_corrupt_exports(void **state);
void test_corrupt_imports(void **state);
void test_corrupt_relocs(void **state);
void test_corrupt_debug(void **state);
void test_corrupt_truncations(void **state);
void test_corrupt_memory(void **state);

#endif
