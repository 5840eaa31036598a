/* test_symstore.h: helpers shared by the kdh_symstore tests (temporary folders, fixture files). */
#ifndef TEST_SYMSTORE_H
#define TEST_SYMSTORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fixture {
    char pdb[1024], pdb86[1024], sys[1024]; /* fixture paths */
    uint8_t guid[16];
    uint32_t age;
    uint32_t ts, size;
} fixture_t;

/* Fills f from the kdh_pdb test fixtures; 0 when they are absent (the test then skips). */
int fixture_load(fixture_t *f);
void make_tmpdir(char *out, size_t cap);
void rm_rf(const char *dir);
void copy_file(const char *src, const char *dst);
void write_text(const char *path, const char *text);
/* Regular files under dir, temporary ones included. */
int count_files(const char *dir);
int files_equal(const char *a, const char *b);

void test_http_hit_and_404(void **state);
void test_http_refused(void **state);
void test_http_dropped(void **state);
void test_http_html(void **state);
void test_http_redirect_and_magic(void **state);
void test_http_download_in_task(void **state);

#endif
