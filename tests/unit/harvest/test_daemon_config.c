/* test_daemon_config.c: the daemon's INI parser on the shipped example and on hand-written files
 * with each kind of mistake (the error must name the file and line). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kdh/daemon.h"

static kdh_daemon_config_t g_cfg;

static int load_text(const char *text, kdh_err_t *err)
{
    char path[] = "/tmp/kdh-ini-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    int rc = kdh_daemon_config_load(path, &g_cfg, err);
    unlink(path);
    return rc;
}

static void test_example(void **state)
{
    (void)state;
    kdh_err_t err = {0};
    assert_int_equal(kdh_daemon_config_load(KDH_SOURCE_DIR "/config/kdharvest.ini", &g_cfg, &err), KDH_OK);
    assert_int_equal(g_cfg.n, 2);
    assert_string_equal(g_cfg.logs, "/var/log/kdharvest");
    assert_string_equal(g_cfg.t[0].name, "web01");
    assert_int_equal(g_cfg.t[0].baud, 115200);
    assert_string_equal(g_cfg.t[0].tag, "Leak");
    assert_int_equal(g_cfg.t[0].sample, 4);
    assert_true(g_cfg.t[0].max_stall_pct == 20);
    assert_int_equal(g_cfg.t[0].stack_cap, 10000);
    assert_int_equal(g_cfg.t[0].summary_interval_s, 60);
    assert_string_equal(g_cfg.t[1].port, "tcp://127.0.0.1:4555");
    kdh_harvest_opts_t o;
    char out[512];
    kdh_daemon_target_opts(&g_cfg, 0, &o, out);
    assert_string_equal(o.tag, "Leak");
    assert_int_equal(o.summary_interval_s, 60);
    assert_non_null(strstr(o.symbol_path, "msdl.microsoft.com")); /* the [daemon] default */
    assert_int_equal(strncmp(out, "/var/log/kdharvest/web01/", 25), 0);
    kdh_daemon_target_opts(&g_cfg, 1, &o, out);
    assert_string_equal(out, "/var/log/kdharvest/vm02/current");
}

static void test_errors(void **state)
{
    (void)state;
    kdh_err_t err = {0};
    assert_int_equal(load_text("[target a]\nport = /dev/ttyS0\ntag = Leak\ncolour = red\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, ":4: unknown key 'colour'"));
    assert_int_equal(load_text("[target a]\nport = /dev/ttyS0\ntag = Leak\nbaud = fast\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, ":4: baud = fast"));
    assert_int_equal(load_text("[target a]\ntag = Leak\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "has no port"));
    assert_int_equal(load_text("[target a]\nunix = /run/kd.sock\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "has no tag"));
    assert_int_equal(load_text("[daemon]\nlogs = x\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "no [target NAME]"));
    assert_int_equal(load_text("[targets]\nport = x\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, ":2: unknown section [targets]"));
    assert_int_equal(load_text("[target a]\nport = p\ntag = Leak\nmode = sometimes\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, ":4: mode = sometimes"));
    assert_int_equal(load_text("[target a]\nport = p\ntag = Leak\npair = maybe\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, ":4: pair = maybe"));
    assert_int_equal(load_text("[target a]\nport = p\ntag = Leak\nsummary_interval = 0\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, ":4: summary_interval = 0"));
    assert_int_equal(load_text("[target a]\nport = p\ntag = Leak\nmode = entry\npair = yes\n", &err), KDH_OK);
    kdh_harvest_opts_t ho;
    char out[512];
    kdh_daemon_target_opts(&g_cfg, 0, &ho, out);
    assert_int_equal(ho.mode, KDH_HARVEST_ENTRY);
    assert_int_equal(ho.pair, 1);
    assert_int_equal(load_text("[target a]\nport = p\ntag = Leak\nmode = specialpool\n", &err), KDH_OK);
    kdh_daemon_target_opts(&g_cfg, 0, &ho, out);
    assert_int_equal(ho.mode, KDH_HARVEST_SPECIALPOOL);
    assert_int_equal(ho.pair, 0);
    assert_int_equal(load_text("[target a]\nport = p\ntag = a\n[target b]\nport = q\ntag = b\n[target a]\n"
                               "port = r\ntag = c\n", &err), KDH_EINVAL);
    assert_non_null(strstr(err.msg, "appears twice"));
    assert_int_equal(load_text("[target a]\nunix = /run/kd.sock\ntag = Leak\n", &err), KDH_OK);
    assert_string_equal(g_cfg.t[0].port, "unix:/run/kd.sock");
    assert_int_equal(kdh_daemon_config_load("/nonexistent/kdharvest.ini", &g_cfg, &err), KDH_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
