/* test_pdb.h: shared pieces of the kdh_pdb tests. */
#ifndef TEST_PDB_H
#define TEST_PDB_H

#include <stddef.h>
#include <stdint.h>

/* Reads a fixture of the build (NUL-terminated copy); NULL when absent. */
uint8_t *fx_read(const char *name, size_t *len);

void test_corrupt_superblock(void **state);
void test_corrupt_directory(void **state);
void test_corrupt_streams(void **state);
void test_corrupt_truncated(void **state);
void test_corrupt_no_dbi(void **state);

#endif
