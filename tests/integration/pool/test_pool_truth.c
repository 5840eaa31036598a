/* test_pool_truth.c: kdh_pool's reading of the fixture kernel's pool tracking table against the
 * simulated machine's ground truth. The machine runs the "leak" workload with nt!PoolHitTag armed
 * for 'Leak' from boot (address from llvm-pdbutil-14, not from our PDB reader), so every 'Leak'
 * allocation and free is a break with a truth line; at the Nth break the table is read from guest
 * memory and parsed by kdh_pool_parse. The row for 'Leak' must equal the truth lines counted by hand
 * (minus the operation in hand: Windows checks PoolHitTag before updating the table), bytes
 * included; x64 and x86. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "fixture_oracle.h"
#include "kdh/pool.h"
#include "machine.h"

#define TAG_LEAK 0x6B61654Cu
#define BREAKS 80

static char g_dir[2][512];

static uint64_t rd_ptr(sim_machine_t *m, uint64_t va, int psize)
{
    uint8_t b[8] = {0};
    uint32_t done = 0;
    assert_int_equal(sim_machine_read(m, va, b, (uint32_t)psize, &done), KDH_OK);
    assert_int_equal(done, (uint32_t)psize);
    return psize == 8 ? fo_le64(b) : (uint64_t)(int64_t)(int32_t)fo_le32(b);
}

static uint32_t public_rva(sim_arch_t a, const char *x64, const char *x86)
{
    uint32_t rva = 0;
    if (fo_symbol_rva(g_dir[a], "ntoskrnl.exe", "ntkrnlmp.pdb", "-publics", a == SIM_ARCH_X64 ? x64 : x86, &rva,
                      NULL) != 0)
        fail_msg("symbol %s not found", x64);
    return rva;
}

static void skip_int3(sim_machine_t *m, const sim_stop_t *s, int psize)
{
    uint8_t ctx[0x4D0];
    size_t n = sim_machine_context_size(m);
    assert_int_equal(sim_machine_get_context(m, s->cpu, ctx, n), KDH_OK);
    size_t ip = psize == 8 ? 0xF8 : 0xB8;
    uint64_t pc = s->pc + 1;
    for (int i = 0; i < psize; i++)
        ctx[ip + (size_t)i] = (uint8_t)(pc >> (8 * i));
    assert_int_equal(sim_machine_set_context(m, s->cpu, ctx, n), KDH_OK);
}

static void check(sim_arch_t a)
{
    char truth[300];
    snprintf(truth, sizeof truth, "%s/pool_truth_%d_%d.jsonl", KDH_BINARY_DIR, (int)a, (int)getpid());
    unlink(truth);
    sim_config_t c = {.arch = a, .seed = 11, .cpus = 2, .fixture_dir = g_dir[a], .workload = "leak",
                      .truth_path = truth};
    kdh_err_t err = {0};
    sim_machine_t *m = sim_machine_create(&c, &err);
    if (!m)
        fail_msg("create: %s", err.msg);
    assert_int_equal(sim_machine_reboot(m, &err), KDH_OK);
    int psize = a == SIM_ARCH_X64 ? 8 : 4;
    sim_info_t info;
    sim_machine_info(m, &info);
    uint64_t hit = info.kern_base + public_rva(a, "PoolHitTag", "_PoolHitTag");
    uint8_t tb[4] = {'L', 'e', 'a', 'k'};
    uint32_t done = 0;
    assert_int_equal(sim_machine_write(m, hit, tb, 4, &done), KDH_OK);
    sim_stop_t s;
    memset(&s, 0, sizeof s);
    for (int breaks = 0; breaks < BREAKS; breaks++) {
        if (breaks)
            skip_int3(m, &s, psize);
        int i = 0;
        do {
            assert_int_equal(sim_machine_run(m, 10 * 1000 * 1000, &s, &err), KDH_OK);
        } while (s.kind != SIM_STOP_BREAKPOINT && ++i < 5000);
        assert_int_equal(s.kind, SIM_STOP_BREAKPOINT);
    }
    /* The table as a debugger finds it: KDDEBUGGER_DATA64 + 0x1B8 -> &PoolTrackTable -> array;
     * the entry count from nt!PoolTrackTableSize (llvm-pdbutil). */
    uint64_t kdbg = rd_ptr(m, info.debugger_data_list, psize);
    uint64_t table = rd_ptr(m, rd_ptr(m, kdbg + 0x1B8, 8), psize);
    uint64_t entries = rd_ptr(m, info.kern_base + public_rva(a, "PoolTrackTableSize", "_PoolTrackTableSize"), psize);
    size_t esz = kdh_pool_entry_size((unsigned)psize);
    assert_int_equal(esz, psize == 8 ? 0x28 : 0x1C);
    size_t len = (size_t)entries * esz;
    uint8_t *buf = malloc(len);
    assert_int_equal(sim_machine_read(m, table, buf, (uint32_t)len, &done), KDH_OK);
    assert_int_equal(done, len);
    sim_machine_destroy(m);

    kdh_pool_table_t tab;
    kdh_pool_table_init(&tab);
    assert_int_equal(kdh_pool_parse(&tab, buf, len, (unsigned)psize, entries, &err), KDH_OK);
    free(buf);
    const kdh_pool_row_t *r = kdh_pool_find(&tab, TAG_LEAK);
    assert_non_null(r);

    /* Truth: count the lines by hand; the last one is the operation in hand (not in the table). */
    FILE *f = fopen(truth, "r");
    assert_non_null(f);
    char line[16384];
    uint64_t t_alloc = 0, t_free = 0, n = 0;
    int64_t t_bytes = 0;
    int last_alloc = 0;
    int64_t last_size = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        assert_non_null(j);
        const char *kind = json_string_value(json_object_get(j, "kind"));
        assert_string_equal(json_string_value(json_object_get(j, "tag")), "Leak");
        json_t *sz = json_object_get(j, "size");
        int64_t size = json_is_integer(sz) ? json_integer_value(sz) : (int64_t)strtoll(json_string_value(sz), NULL, 0);
        last_alloc = strcmp(kind, "alloc") == 0;
        last_size = size;
        if (last_alloc) {
            t_alloc++;
            t_bytes += size;
        } else {
            t_free++;
            t_bytes -= size;
        }
        n++;
        json_decref(j);
    }
    fclose(f);
    unlink(truth);
    assert_int_equal(n, BREAKS);
    if (last_alloc) {
        t_alloc--;
        t_bytes -= last_size;
    } else {
        t_free--;
        t_bytes += last_size;
    }
    assert_int_equal(r->np_allocs + r->p_allocs, t_alloc);
    assert_int_equal(r->np_frees + r->p_frees, t_free);
    assert_int_equal((int64_t)(r->np_bytes + r->p_bytes), t_bytes);
    assert_true(r->p_allocs > 0 && r->np_allocs > 0); /* path B is paged, path A nonpaged */
    /* the other workload tags are in the table too (busydrv, framedrv, olddrv's 'None') */
    assert_non_null(kdh_pool_find(&tab, 0x30797342)); /* 'Bsy0' */
    assert_non_null(kdh_pool_find(&tab, 0x656E6F4E)); /* 'None' */
    kdh_pool_table_free(&tab);
}

static void test_truth_x64(void **state)
{
    (void)state;
    check(SIM_ARCH_X64);
}

static void test_truth_x86(void **state)
{
    (void)state;
    check(SIM_ARCH_X86);
}

int main(void)
{
    snprintf(g_dir[SIM_ARCH_X64], sizeof g_dir[0], "%s/fixtures/x64", KDH_BINARY_DIR);
    snprintf(g_dir[SIM_ARCH_X86], sizeof g_dir[0], "%s/fixtures/x86", KDH_BINARY_DIR);
    char probe[600];
    snprintf(probe, sizeof probe, "%s/ntoskrnl.exe", g_dir[SIM_ARCH_X86]);
    if (access(probe, R_OK) != 0 || system("llvm-pdbutil-14 --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "fixtures or llvm-pdbutil-14 missing: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truth_x64),
        cmocka_unit_test(test_truth_x86),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
