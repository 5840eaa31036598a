/* test_sim_decode.c: the machine's instruction length decoder (decode.c) against
 * llvm-objdump-14's disassembly of every fixture image, instruction by instruction (length, and
 * call / ret), and a "leak" run on both architectures in which every block the emulator
 * executed was walked to its exact end (so the instruction clock is exact). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "machine_int.h"

static const char *const k_images[] = {"ntoskrnl.exe", "hal.dll", "leakdrv.sys", "busydrv.sys", "framedrv.sys", "olddrv.sys"};

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parses "  401389: e8 72 fc ff ff \tcalll\t0x401000 <...>" into bytes and the mnemonic. */
static int parse_line(const char *line, uint8_t *bytes, size_t *n, char *mnem, size_t mcap)
{
    const char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return 0;
    for (const char *q = line; q < colon; q++)
        if (*q != ' ' && hexval(*q) < 0)
            return 0;
    const char *p = colon + 1;
    *n = 0;
    while (*p == ' ' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0 && (p[3] == ' ' || p[3] == '\t')) {
        if (*n < 15)
            bytes[*n] = (uint8_t)(hexval(p[1]) * 16 + hexval(p[2]));
        (*n)++;
        p += 3;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    size_t k = 0;
    while (p[k] && p[k] != ' ' && p[k] != '\t' && p[k] != '\n' && k + 1 < mcap) {
        mnem[k] = p[k];
        k++;
    }
    mnem[k] = 0;
    return *n > 0 && *n <= 15 && k > 0;
}

static void check_image(const char *dir, const char *image, int x64, unsigned *total)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "llvm-objdump-14 -d %s/%s", dir, image);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[512];
    unsigned checked = 0;
    while (fgets(line, sizeof line, f)) {
        uint8_t b[15];
        size_t n;
        char mnem[64];
        if (!parse_line(line, b, &n, mnem, sizeof mnem) || strcmp(mnem, "<unknown>") == 0)
            continue;
        sim_insn_kind_t kind;
        uint32_t len = sim_insn_decode(b, (uint32_t)n, x64, &kind);
        /* Far calls and jumps through a pointer operand are data misread as code here; the
         * decoder refuses them (they are invalid in 64-bit mode). */
        if (len == 0 && (strncmp(mnem, "lcall", 5) == 0 || strncmp(mnem, "ljmp", 4) == 0))
            continue;
        if (len != n)
            fail_msg("%s (%s): decoder length %u, objdump %zu: %s", image, x64 ? "x64" : "x86", len, n, line);
        int is_call = strncmp(mnem, "call", 4) == 0, is_ret = strncmp(mnem, "ret", 3) == 0;
        if ((kind == SIM_INSN_CALL) != is_call || (kind == SIM_INSN_RET) != is_ret)
            fail_msg("%s: decoder kind %d for %s", image, (int)kind, line);
        checked++;
    }
    pclose(f);
    assert_true(checked > 0);
    *total += checked;
}

static void check_objdump(int x64)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fixtures/%s", KDH_BINARY_DIR, x64 ? "x64" : "x86");
    unsigned total = 0;
    for (size_t i = 0; i < sizeof k_images / sizeof k_images[0]; i++)
        check_image(dir, k_images[i], x64, &total);
    assert_true(total > 500);
}

static void test_objdump_x64(void **state) { (void)state; check_objdump(1); }
static void test_objdump_x86(void **state) { (void)state; check_objdump(0); }

/* Hand-assembled encodings (Intel SDM): lengths and kinds independent of any disassembler. */
static void test_hand_encodings(void **state)
{
    (void)state;
    static const struct {
        int x64;
        uint8_t b[15];
        uint32_t n, len;
        sim_insn_kind_t kind;
    } k[] = {
        {1, {0xE8, 1, 2, 3, 4}, 5, 5, SIM_INSN_CALL},                       /* call rel32 */
        {1, {0xFF, 0x15, 0, 0, 0, 0}, 6, 6, SIM_INSN_CALL},                 /* call [rip+disp32] */
        {1, {0x41, 0xFF, 0xD3}, 3, 3, SIM_INSN_CALL},                       /* call r11 */
        {1, {0xC3}, 1, 1, SIM_INSN_RET},
        {0, {0xC2, 4, 0}, 3, 3, SIM_INSN_RET},                              /* ret 4 */
        {1, {0xF3, 0xC3}, 2, 2, SIM_INSN_RET},                              /* rep ret */
        {1, {0x48, 0xB8, 1, 2, 3, 4, 5, 6, 7, 8}, 10, 10, SIM_INSN_OTHER}, /* movabs rax, imm64 */
        {1, {0x66, 0xB8, 1, 2}, 4, 4, SIM_INSN_OTHER},                      /* mov ax, imm16 */
        {1, {0x66, 0x48, 0xB8, 1, 2, 3, 4, 5, 6, 7, 8}, 11, 11, SIM_INSN_OTHER}, /* REX.W wins */
        {1, {0x48, 0x8B, 0x44, 0x24, 0x28}, 5, 5, SIM_INSN_OTHER},          /* mov rax, [rsp+28h] */
        {1, {0x48, 0x81, 0x84, 0x24, 1, 2, 3, 4, 5, 6, 7, 8}, 12, 12, SIM_INSN_OTHER}, /* SIB disp32 imm32 */
        {1, {0xF6, 0x05, 0, 0, 0, 0, 1}, 7, 7, SIM_INSN_OTHER},             /* test byte [rip], 1 */
        {1, {0xF7, 0xD8}, 2, 2, SIM_INSN_OTHER},                            /* neg eax */
        {1, {0x0F, 0x84, 1, 2, 3, 4}, 6, 6, SIM_INSN_OTHER},                /* je rel32 */
        {1, {0x66, 0x0F, 0x3A, 0x0F, 0xC1, 8}, 6, 6, SIM_INSN_OTHER},       /* palignr xmm0, xmm1, 8 */
        {1, {0xCC}, 1, 1, SIM_INSN_OTHER},
        {1, {0xCD, 0x2D}, 2, 2, SIM_INSN_OTHER},                            /* int 2dh */
        {0, {0x04, 0x05}, 2, 2, SIM_INSN_OTHER},                            /* add al, 5 */
        {0, {0x9A, 1, 2, 3, 4, 5, 6}, 7, 7, SIM_INSN_OTHER},                /* call far ptr16:32 (no shadow push) */
        {1, {0xE8, 1, 2}, 3, 0, SIM_INSN_CALL},                             /* cut short */
        {1, {0xC4, 0xE2, 0x79, 0x18, 0x00}, 5, 0, SIM_INSN_OTHER},          /* VEX: refused */
        {1, {0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x90}, 15, 15,
         SIM_INSN_OTHER},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        sim_insn_kind_t kind;
        uint32_t len = sim_insn_decode(k[i].b, k[i].n, k[i].x64, &kind);
        if (len != k[i].len || (len && kind != k[i].kind))
            fail_msg("case %zu: length %u kind %d, expected %u %d", i, len, (int)kind, k[i].len, (int)k[i].kind);
    }
}

/* Every block the emulator ran during a stretch of "leak" decoded to its exact end. */
static void check_no_misses(sim_arch_t a)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fixtures/%s", KDH_BINARY_DIR, a == SIM_ARCH_X64 ? "x64" : "x86");
    sim_config_t c = {.arch = a, .seed = 3, .cpus = 2, .fixture_dir = dir, .workload = "leak"};
    kdh_err_t err = {0};
    sim_machine_t *m = sim_machine_create(&c, &err);
    assert_non_null(m);
    assert_int_equal(sim_machine_reboot(m, &err), KDH_OK);
    sim_stop_t s;
    while (sim_machine_now_ns(m) < 50000000ull)
        assert_int_equal(sim_machine_run(m, 50000000ull - sim_machine_now_ns(m), &s, &err), KDH_OK);
    assert_true(m->stat_insns > 100000);
    assert_int_equal(m->decode_misses, 0);
    /* A reboot moves the code: every block remembered afterwards must describe the bytes now at
     * its address (the boot routines have run, so some are remembered already). */
    assert_int_equal(sim_machine_reboot(m, &err), KDH_OK);
    int x64 = a == SIM_ARCH_X64;
    for (int i = 0; i < SIM_BLOCK_CACHE; i++) {
        const sim_block_t *b = &m->blocks[i];
        if (!b->size)
            continue;
        const uint8_t *p = sim_mem_host(m, b->addr, b->size);
        assert_non_null(p);
        uint32_t off = 0, n = 0;
        sim_insn_kind_t kind = SIM_INSN_OTHER;
        while (off < b->size) {
            uint32_t len = sim_insn_decode(p + off, b->size - off, x64, &kind);
            assert_true(len > 0);
            off += len;
            n++;
        }
        assert_int_equal(n, b->ninsns);
        assert_int_equal(kind, b->kind);
    }
    while (sim_machine_now_ns(m) < 20000000ull)
        assert_int_equal(sim_machine_run(m, 20000000ull - sim_machine_now_ns(m), &s, &err), KDH_OK);
    assert_int_equal(m->decode_misses, 0);
    sim_machine_destroy(m);
}

static void test_no_misses_x64(void **state) { (void)state; check_no_misses(SIM_ARCH_X64); }
static void test_no_misses_x86(void **state) { (void)state; check_no_misses(SIM_ARCH_X86); }

int main(void)
{
    char probe[600];
    snprintf(probe, sizeof probe, "%s/fixtures/x64/ntoskrnl.exe", KDH_BINARY_DIR);
    if (access(probe, R_OK) != 0 || system("llvm-objdump-14 --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "fixtures or llvm-objdump-14 missing: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_encodings), cmocka_unit_test(test_objdump_x64),
        cmocka_unit_test(test_objdump_x86),    cmocka_unit_test(test_no_misses_x64),
        cmocka_unit_test(test_no_misses_x86),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
