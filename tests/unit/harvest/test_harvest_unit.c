/* test_harvest_unit.c: the harvest engine's pure helpers against hand-worked values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harvest_int.h"

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(hv_classify_name("nt!ExpInsertPoolTracker+0x2c"), KDH_STORE_ALLOC);
    assert_int_equal(hv_classify_name("nt!ExpRemovePoolTracker+0x1d"), KDH_STORE_FREE);
    assert_int_equal(hv_classify_name("nt!ExAllocateHeapPool+0x5"), KDH_STORE_ALLOC);
    assert_int_equal(hv_classify_name("nt!ExFreeHeapPool+0x10"), KDH_STORE_FREE);
    assert_int_equal(hv_classify_name("nt!MmFreeSpecialPool"), KDH_STORE_FREE);
    assert_int_equal(hv_classify_name("nt!ExAllocatePoolWithTag+0x1c0"), KDH_STORE_ALLOC);
    assert_int_equal(hv_classify_name("nt!DbgBreakPoint"), -1);
    assert_int_equal(hv_classify_name("leakdrv+0x1234"), -1);
    assert_int_equal(hv_classify_name("0xfffff80000001000"), -1);
}

static void test_predictor(void **state)
{
    (void)state;
    hv_pred_t *p = calloc(1, sizeof *p);
    const uint64_t pc = 0xfffff8000f801000ull, sp = 0xffffa00000010e00ull, th = 0xffffa00088e02800ull;
    assert_int_equal(hv_pred_get(p, pc, sp, th), 0); /* nothing known */
    hv_pred_put(p, pc, sp, th, 0x1b8);
    assert_int_equal(hv_pred_get(p, pc, sp, th), 0x1b8);
    /* same thread deeper by 0x40: the thread's walk ended at sp + 0x1b8 */
    assert_int_equal(hv_pred_get(p, pc, sp - 0x40, th), 0x1b8 + 0x40);
    /* another thread, same pc: the last span */
    assert_int_equal(hv_pred_get(p, pc, sp + 0x5000, th + 0x400), 0x1b8);
    /* another pc and thread: nothing */
    assert_int_equal(hv_pred_get(p, pc + 1, sp + 0x5000, th + 0x400), 0);
    /* an absurd span is not remembered */
    hv_pred_put(p, pc + 2, sp, th, 0x20000);
    assert_int_equal(hv_pred_get(p, pc + 2, sp, th + 8), 0);
    free(p);
}

static void test_journal(void **state)
{
    (void)state;
    char dir[] = "/tmp/kdh-journal-XXXXXX";
    assert_non_null(mkdtemp(dir));
    hv_journal_state_t js;
    hv_journal_read(dir, &js, NULL);
    assert_int_equal(js.armed, 0); /* no journal */
    assert_int_equal(hv_journal_append(dir, "arm", 0xfffff8000f803000ull, 0xffffff0f, 0x6b61654c,
                                       0xfffff8000f800000ull, NULL), KDH_OK);
    hv_journal_read(dir, &js, NULL);
    assert_int_equal(js.armed, 1);
    assert_true(js.addr == 0xfffff8000f803000ull);
    assert_int_equal(js.old_value, 0xffffff0f);
    assert_true(js.kernel_base == 0xfffff8000f800000ull);
    /* a torn line after the record changes nothing */
    char path[128];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    FILE *f = fopen(path, "a");
    fputs("{\"t\":1,\"op\":\"disar", f);
    fclose(f);
    hv_journal_read(dir, &js, NULL);
    assert_int_equal(js.armed, 1);
    f = fopen(path, "a");
    fputs("\n", f);
    fclose(f);
    assert_int_equal(hv_journal_append(dir, "disarm", 0xfffff8000f803000ull, 0xffffff0f, 0xffffff0f,
                                       0xfffff8000f800000ull, NULL), KDH_OK);
    hv_journal_read(dir, &js, NULL);
    assert_int_equal(js.armed, 0);
    /* unwritable directory: an error with the path, no crash */
    kdh_err_t err;
    memset(&err, 0, sizeof err);
    assert_int_equal(hv_journal_append("/nonexistent-kdh-dir", "arm", 1, 2, 3, 4, &err), KDH_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-kdh-dir/journal.jsonl"));
    unlink(path);
    rmdir(dir);
}

static void test_stall(void **state)
{
    (void)state;
    hv_t *h = calloc(1, sizeof *h);
    h->armed_at = 1000.0;
    h->stall_sec = 1000;
    hv_stall_add(h, 1000.5, 1001.5);           /* 1 s stopped, across two buckets */
    assert_true(hv_stall_pct(h, 1010.0) > 9.999 && hv_stall_pct(h, 1010.0) < 10.001); /* 1 of 10 s */
    hv_stall_add(h, 1020.0, 1023.0);           /* 3 s more */
    /* at 1060 the window is the last 60 s (1001..1060): 0.5 + 3 s of it */
    double p = hv_stall_pct(h, 1060.0);
    assert_true(p > 100.0 * 3.5 / 60 - 0.01 && p < 100.0 * 3.5 / 60 + 0.01);
    /* two minutes later everything has aged out */
    assert_true(hv_stall_pct(h, 1200.0) < 0.001);
    free(h);
}

/* The three names the command line and the INI file take, and nothing else. */
static void test_mode_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        kdh_harvest_mode_t mode;
    } k[] = {{"hittag", KDH_HARVEST_HITTAG}, {"specialpool", KDH_HARVEST_SPECIALPOOL}, {"entry", KDH_HARVEST_ENTRY}};
    for (size_t i = 0; i < 3; i++) {
        kdh_harvest_mode_t m = (kdh_harvest_mode_t)99;
        assert_int_equal(kdh_harvest_mode_parse(k[i].name, &m), KDH_OK);
        assert_int_equal(m, k[i].mode);
        assert_string_equal(kdh_harvest_mode_name(k[i].mode), k[i].name);
    }
    const char *bad[] = {"Entry", "hittag ", "", "special", NULL};
    for (size_t i = 0; i < 5; i++) {
        kdh_harvest_mode_t m = KDH_HARVEST_ENTRY;
        assert_int_equal(kdh_harvest_mode_parse(bad[i], &m), KDH_EINVAL);
        assert_int_equal(m, KDH_HARVEST_ENTRY); /* unchanged */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_predictor),
        cmocka_unit_test(test_journal),
        cmocka_unit_test(test_stall),
        cmocka_unit_test(test_mode_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
