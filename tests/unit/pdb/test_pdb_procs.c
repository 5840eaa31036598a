/* Procedure records against llvm-pdbutil-14: for every S_GPROC32 / S_LPROC32 that the tool
 * lists in the fixture drivers' PDBs, the reader must name the procedure's first and last
 * code bytes with that procedure (static functions included), at the right offset. Section
 * addresses come from the tool's own section-header dump (its seg:off offsets are decimal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/pdb.h"

#ifndef KDH_FIXTURE_DIR
#define KDH_FIXTURE_DIR KDH_BINARY_DIR "/fixtures"
#endif

static int section_vas(const char *pdb, uint32_t *vas, int max)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "llvm-pdbutil-14 dump -section-headers '%s'", pdb);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned va;
        if (strstr(line, "virtual address") && sscanf(line, " %x virtual address", &va) == 1 && n < max)
            vas[n++] = va;
    }
    pclose(f);
    return n;
}

static int check_pdb(const char *pdbpath)
{
    uint32_t vas[64];
    int nsec = section_vas(pdbpath, vas, 64);
    assert_true(nsec > 0);
    kdh_pdb_t *p;
    kdh_err_t err;
    assert_int_equal(kdh_pdb_open_file(&p, pdbpath, &err), KDH_OK);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "llvm-pdbutil-14 dump -symbols '%s'", pdbpath);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[1024], name[256] = "";
    int procs = 0, statics = 0;
    while (fgets(line, sizeof line, f)) {
        char *q = strstr(line, "PROC32 [size");
        if (q) {
            char *a = strchr(q, '`'), *b = a ? strchr(a + 1, '`') : NULL;
            assert_non_null(b);
            snprintf(name, sizeof name, "%.*s", (int)(b - a - 1), a + 1);
            if (strstr(line, "S_LPROC32"))
                statics++;
            continue;
        }
        unsigned seg, off, size;
        char *addr = strstr(line, "addr = ");
        if (!name[0] || !addr || sscanf(addr, "addr = %u:%u, code size = %u", &seg, &off, &size) != 3)
            continue;
        assert_true(seg >= 1 && (int)seg <= nsec);
        uint32_t rva = vas[seg - 1] + off, o = 0;
        const kdh_pdb_public_t *s = kdh_pdb_symbolize(p, rva, &o);
        assert_non_null(s);
        assert_string_equal(s->name, name);
        assert_int_equal(o, 0);
        s = kdh_pdb_symbolize(p, rva + size - 1, &o);
        assert_non_null(s);
        assert_string_equal(s->name, name);
        assert_int_equal(o, size - 1);
        procs++;
        name[0] = '\0';
    }
    pclose(f);
    kdh_pdb_close(p);
    assert_true(statics > 0); /* the point: static functions are named too */
    return procs;
}

static void test_fixture_drivers(void **state)
{
    (void)state;
    static const char *const files[] = {"x64/leakdrv.pdb", "x86/leakdrv.pdb", "x64/framedrv.pdb",
                                        "x86/busydrv.pdb", "x64/ntkrnlmp.pdb"};
    if (system("command -v llvm-pdbutil-14 >/dev/null") != 0)
        skip();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", KDH_FIXTURE_DIR, files[i]);
        int n = check_pdb(path);
        assert_true(n >= 3);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fixture_drivers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
