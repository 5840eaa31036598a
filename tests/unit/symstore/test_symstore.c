/* test_symstore.c: symbol-path parsing and lookups in local stores (single and two-tier,
 * case-blind key folders, file.ptr) and plain directories (only files whose identity matches),
 * built in a temporary folder from the kdh_pdb test fixtures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kdh/pdb.h"
#include "kdh/pe.h"
#include "kdh/symstore.h"
#include "test_symstore.h"

int fixture_load(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->pdb, sizeof f->pdb, "%s/fxsyms_x64.pdb", KDH_SS_FIXTURE_DIR);
    snprintf(f->pdb86, sizeof f->pdb86, "%s/fxsyms_x86.pdb", KDH_SS_FIXTURE_DIR);
    snprintf(f->sys, sizeof f->sys, "%s/fxsyms_x64.sys", KDH_SS_FIXTURE_DIR);
    kdh_pdb_t *p;
    if (kdh_pdb_open_file(&p, f->pdb, NULL) != KDH_OK)
        return 0;
    memcpy(f->guid, kdh_pdb_info(p)->guid, 16);
    f->age = kdh_pdb_info(p)->age;
    kdh_pdb_close(p);
    FILE *fp = fopen(f->sys, "rb");
    if (!fp)
        return 0;
    static uint8_t buf[65536];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    kdh_pe_t pe;
    if (kdh_pe_open_buffer(&pe, buf, n, NULL) != KDH_OK)
        return 0;
    f->ts = pe.timestamp;
    f->size = pe.size_of_image;
    return 1;
}

void make_tmpdir(char *out, size_t cap)
{
    snprintf(out, cap, "/tmp/kdh_symstore_XXXXXX");
    assert_non_null(mkdtemp(out));
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void mkdirs_for(const char *path)
{
    char p[2048];
    snprintf(p, sizeof p, "%s", path);
    for (char *q = p + 1; *q; q++)
        if (*q == '/') {
            *q = '\0';
            mkdir(p, 0755);
            *q = '/';
        }
}

void copy_file(const char *src, const char *dst)
{
    mkdirs_for(dst);
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

void write_text(const char *path, const char *text)
{
    mkdirs_for(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int g_count; /* nftw has no context argument */
static int count_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)p;
    (void)st;
    (void)ftw;
    if (flag == FTW_F)
        g_count++;
    return 0;
}

int count_files(const char *dir)
{
    g_count = 0;
    nftw(dir, count_one, 16, FTW_PHYS);
    return g_count;
}

int files_equal(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    int eq = x && y;
    while (eq) {
        int c = fgetc(x), d = fgetc(y);
        if (c != d)
            eq = 0;
        if (c == EOF || d == EOF)
            break;
    }
    if (x)
        fclose(x);
    if (y)
        fclose(y);
    return eq;
}

static void test_parse(void **state)
{
    (void)state;
    kdh_symstore_t *s;
    kdh_err_t err;
    const char *path = " srv*/c1*https://msdl.example/symbols ; /plain/dir;;srv*http://a.example;"
                       "cache*/c2;srv*http://b.example;srv**http://c.example;srv*;"
                       "SymSrv*symsrv.dll*/c3*/c4*http://d.example";
    assert_int_equal(kdh_symstore_new(&s, path, "/def", &err), KDH_OK);
    assert_int_equal(kdh_symstore_count(s), 7);
    const kdh_symstore_elem_t *e = kdh_symstore_elem(s, 0);
    assert_int_equal(e->kind, KDH_SYMSTORE_SRV);
    assert_int_equal(e->ntiers, 2);
    assert_string_equal(e->tiers[0], "/c1");
    assert_string_equal(e->tiers[1], "https://msdl.example/symbols");
    assert_string_equal(e->cache, "/c1");
    e = kdh_symstore_elem(s, 1);
    assert_int_equal(e->kind, KDH_SYMSTORE_PLAIN);
    assert_string_equal(e->tiers[0], "/plain/dir");
    e = kdh_symstore_elem(s, 2); /* srv*URL: no cache of its own, the default one */
    assert_int_equal(e->ntiers, 1);
    assert_string_equal(e->cache, "/def");
    e = kdh_symstore_elem(s, 3); /* to the right of cache*DIR */
    assert_int_equal(e->ntiers, 2);
    assert_string_equal(e->tiers[0], "/c2");
    assert_string_equal(e->tiers[1], "http://b.example");
    assert_string_equal(e->cache, "/c2");
    e = kdh_symstore_elem(s, 4); /* srv**URL with cache* in effect */
    assert_int_equal(e->ntiers, 3);
    assert_string_equal(e->tiers[1], "/def");
    assert_string_equal(e->tiers[2], "http://c.example");
    e = kdh_symstore_elem(s, 5); /* srv*: Microsoft's server */
    assert_string_equal(e->tiers[e->ntiers - 1], KDH_SYMSTORE_MSDL);
    e = kdh_symstore_elem(s, 6);
    assert_int_equal(e->ntiers, 4);
    assert_string_equal(e->tiers[1], "/c3");
    assert_string_equal(e->tiers[2], "/c4");
    assert_string_equal(e->tiers[3], "http://d.example");
    assert_null(kdh_symstore_elem(s, 7));
    kdh_symstore_free(s);

    assert_int_equal(kdh_symstore_new(&s, "", NULL, &err), KDH_OK);
    assert_int_equal(kdh_symstore_count(s), 0);
    kdh_symstore_free(s);
    assert_int_equal(kdh_symstore_new(&s, "srv**http://x", NULL, &err), KDH_EINVAL);
    assert_int_equal(kdh_symstore_new(&s, "http://x/sym", NULL, &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "srv*CACHE*"));
    assert_int_equal(kdh_symstore_new(&s, "srv*a*b*c*d*e*f*g*h*i", NULL, &err), KDH_EINVAL);
    assert_int_equal(kdh_symstore_new(&s, "symsrv*symsrv.dll", NULL, &err), KDH_EINVAL);
}

static void test_local_store(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], p[1024], got[1024], id[41], iid[17];
    make_tmpdir(dir, sizeof dir);
    kdh_pe_pdb_id(f.guid, f.age, id);
    kdh_pe_image_id(f.ts, f.size, iid);
    snprintf(p, sizeof p, "%s/store/fxsyms_x64.pdb/%s/fxsyms_x64.pdb", dir, id);
    copy_file(f.pdb, p);
    snprintf(p, sizeof p, "%s/store/fxsyms_x64.sys/%s/fxsyms_x64.sys", dir, iid);
    copy_file(f.sys, p);
    char sp[512];
    snprintf(sp, sizeof sp, "srv*%s/store", dir);
    kdh_symstore_t *s;
    kdh_err_t err;
    assert_int_equal(kdh_symstore_new(&s, sp, NULL, &err), KDH_OK);
    assert_int_equal(kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age, got, sizeof got, &err),
                     KDH_OK);
    snprintf(p, sizeof p, "%s/store/fxsyms_x64.pdb/%s/fxsyms_x64.pdb", dir, id);
    assert_string_equal(got, p);
    assert_int_equal(kdh_symstore_find_image(s, "fxsyms_x64.sys", f.ts, f.size, got, sizeof got, &err),
                     KDH_OK);
    /* Misses: another age, another size, another name. */
    assert_int_equal(kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age + 1, got, sizeof got,
                                           &err), KDH_ENOTFOUND);
    assert_non_null(strstr(err.msg, "fxsyms_x64.pdb/"));
    assert_int_equal(kdh_symstore_find_image(s, "fxsyms_x64.sys", f.ts, f.size + 0x1000, got,
                                             sizeof got, &err), KDH_ENOTFOUND);
    assert_int_equal(kdh_symstore_find_pdb(s, "other.pdb", f.guid, f.age, got, sizeof got, &err),
                     KDH_ENOTFOUND);
    /* Names from the target never become paths outside the store. */
    assert_int_equal(kdh_symstore_find_pdb(s, "../x.pdb", f.guid, f.age, got, sizeof got, &err),
                     KDH_EINVAL);
    assert_int_equal(kdh_symstore_find_pdb(s, "..", f.guid, f.age, got, sizeof got, &err), KDH_EINVAL);
    assert_int_equal(kdh_symstore_find_pdb(s, "", f.guid, f.age, got, sizeof got, &err), KDH_EINVAL);
    kdh_symstore_free(s);
    rm_rf(dir);
}

/* A store written on Windows: lower-case key folder, upper-case file name. */
static void test_local_case_blind(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], p[1024], got[1024], id[41], sp[512];
    make_tmpdir(dir, sizeof dir);
    kdh_pe_pdb_id(f.guid, f.age, id);
    for (char *c = id; *c; c++)
        if (*c >= 'A' && *c <= 'F')
            *c = (char)(*c - 'A' + 'a');
    snprintf(p, sizeof p, "%s/FXSYMS_X64.PDB/%s/FXSYMS_X64.PDB", dir, id);
    copy_file(f.pdb, p);
    snprintf(sp, sizeof sp, "srv*%s", dir);
    kdh_symstore_t *s;
    kdh_err_t err;
    assert_int_equal(kdh_symstore_new(&s, sp, NULL, &err), KDH_OK);
    assert_int_equal(kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age, got, sizeof got, &err),
                     KDH_OK);
    assert_string_equal(got, p);
    kdh_symstore_free(s);
    rm_rf(dir);
}

/* index2.txt: <store>/<2 letters>/<name>/<KEY>/<name>; file.ptr redirects. */
static void test_local_two_tier_and_ptr(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], p[1024], got[1024], id[41], iid[17], sp[512];
    make_tmpdir(dir, sizeof dir);
    kdh_pe_pdb_id(f.guid, f.age, id);
    kdh_pe_image_id(f.ts, f.size, iid);
    snprintf(p, sizeof p, "%s/index2.txt", dir);
    write_text(p, "");
    snprintf(p, sizeof p, "%s/fx/fxsyms_x64.pdb/%s/fxsyms_x64.pdb", dir, id);
    copy_file(f.pdb, p);
    snprintf(sp, sizeof sp, "srv*%s", dir);
    kdh_symstore_t *s;
    kdh_err_t err;
    assert_int_equal(kdh_symstore_new(&s, sp, NULL, &err), KDH_OK);
    assert_int_equal(kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age, got, sizeof got, &err),
                     KDH_OK);
    assert_string_equal(got, p);
    /* The single-tier spelling is not looked at in a two-tier store. */
    snprintf(p, sizeof p, "%s/fxsyms_x64.sys/%s/fxsyms_x64.sys", dir, iid);
    copy_file(f.sys, p);
    assert_int_equal(kdh_symstore_find_image(s, "fxsyms_x64.sys", f.ts, f.size, got, sizeof got, &err),
                     KDH_ENOTFOUND);
    char ptr[1024];
    snprintf(ptr, sizeof ptr, "%s/fx/fxsyms_x64.sys/%s/file.ptr", dir, iid);
    char text[1100];
    snprintf(text, sizeof text, "PATH:%s\n", f.sys);
    write_text(ptr, text);
    assert_int_equal(kdh_symstore_find_image(s, "fxsyms_x64.sys", f.ts, f.size, got, sizeof got, &err),
                     KDH_OK);
    assert_string_equal(got, f.sys);
    kdh_symstore_free(s);
    rm_rf(dir);
}

/* Plain directories: <dir>/symbols/<ext>, <dir>/<ext>, <dir>; only a matching file counts. */
static void test_plain_dir(void **state)
{
    (void)state;
    fixture_t f;
    if (!fixture_load(&f))
        skip();
    char dir[256], p[1024], got[1024], sp[600];
    make_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/a/fxsyms_x64.pdb", dir);
    copy_file(f.pdb86, p); /* same name, different GUID: must be passed over */
    snprintf(p, sizeof p, "%s/b/symbols/pdb/fxsyms_x64.pdb", dir);
    copy_file(f.pdb, p);
    snprintf(p, sizeof p, "%s/b/sys/fxsyms_x64.sys", dir);
    copy_file(f.sys, p);
    snprintf(sp, sizeof sp, "%s/a;%s/b", dir, dir);
    kdh_symstore_t *s;
    kdh_err_t err;
    assert_int_equal(kdh_symstore_new(&s, sp, NULL, &err), KDH_OK);
    assert_int_equal(kdh_symstore_find_pdb(s, "fxsyms_x64.pdb", f.guid, f.age, got, sizeof got, &err),
                     KDH_OK);
    snprintf(p, sizeof p, "%s/b/symbols/pdb/fxsyms_x64.pdb", dir);
    assert_string_equal(got, p);
    assert_int_equal(kdh_symstore_find_image(s, "fxsyms_x64.sys", f.ts, f.size, got, sizeof got, &err),
                     KDH_OK);
    assert_int_equal(kdh_symstore_find_image(s, "fxsyms_x64.sys", f.ts + 1, f.size, got, sizeof got,
                                             &err), KDH_ENOTFOUND);
    kdh_symstore_free(s);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_local_store),
        cmocka_unit_test(test_local_case_blind),
        cmocka_unit_test(test_local_two_tier_and_ptr),
        cmocka_unit_test(test_plain_dir),
        cmocka_unit_test(test_http_hit_and_404),
        cmocka_unit_test(test_http_refused),
        cmocka_unit_test(test_http_dropped),
        cmocka_unit_test(test_http_html),
        cmocka_unit_test(test_http_redirect_and_magic),
        cmocka_unit_test(test_http_download_in_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
