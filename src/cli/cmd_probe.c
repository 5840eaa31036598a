/* cmd_probe.c: `kdharvest probe PORT`: breaks into the target, prints what the target model
 * knows (kernel, processors, modules with identities and symbols, the pool-tracking addresses
 * and the special-pool tag in force), then continues the target and detaches cleanly. Nothing is
 * written to the target except the PC step over the break-in's int 3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdh/cli.h"
#include "kdh/target.h"
#include "target_opts.h"

static const char probe_usage[] =
    "PORT [--baud N] [--symbols PATH] [--symbol NAME=nt+0xRVA]...\n"
    "  PORT                 /dev/ttyS0, tcp://host:port or unix:/path\n"
    "  --baud N             line speed of a serial port (default 115200)\n"
    "  --symbols PATH       symbol path (default: _NT_SYMBOL_PATH); a plain folder works\n"
    "  --symbol NAME=VALUE  address of a symbol: nt+0x1234 (module+RVA) or 0xADDRESS\n";

static const char *const k_symbols[] = {
    "PoolHitTag", "MmSpecialPoolTag", "MmAllocateSpecialPool", "MmFreeSpecialPool",
    "ExAllocatePoolWithTag", "ExAllocatePool2", "ExFreePoolWithTag", "ExFreePool", "DbgBreakPoint",
};

int kdh_cli_target_opts(const char *cmd, const char *usage, int argc, char **argv, probe_opts_t *po)
{
    enum { O_BAUD = 256, O_SYMBOLS, O_SYMBOL };
    static const struct option longopts[] = {
        {"baud", required_argument, NULL, O_BAUD},
        {"symbols", required_argument, NULL, O_SYMBOLS},
        {"symbol", required_argument, NULL, O_SYMBOL},
        {0, 0, 0, 0}};
    kdh_cli_opt_t o = {.cmd = cmd, .usage = usage, .longopts = longopts};
    memset(po, 0, sizeof *po);
    po->baud = 115200;
    int c;
    while ((c = kdh_cli_opt_next(&o, argc, argv)) > 0) {
        unsigned long long v;
        switch (c) {
        case O_BAUD:
            if (kdh_cli_parse_u64(cmd, "--baud", o.arg, 1, 4000000, &v))
                return KDH_CLI_EXIT_USAGE;
            po->baud = (unsigned)v;
            break;
        case O_SYMBOLS:
            po->symbols = o.arg;
            break;
        case O_SYMBOL:
            if (po->noverrides >= (int)KDH_ARRAY_LEN(po->overrides))
                return kdh_cli_usage_errorf(cmd, "at most %zu --symbol options", KDH_ARRAY_LEN(po->overrides));
            po->overrides[po->noverrides++] = o.arg;
            break;
        default:
            return KDH_CLI_EXIT_USAGE;
        }
    }
    if (c == KDH_CLI_OPT_EXIT)
        return o.exit_code == KDH_CLI_EXIT_OK ? -1 : o.exit_code;
    if (o.optind >= argc)
        return kdh_cli_usage_errorf(cmd, "missing PORT");
    if (o.optind + 1 < argc)
        return kdh_cli_usage_errorf(cmd, "unexpected argument '%s'", argv[o.optind + 1]);
    po->port = argv[o.optind];
    return 0;
}

int kdh_cli_target_open(const probe_opts_t *po, kdh_target_session_t **s, kdh_err_t *err)
{
    int rc = kdh_target_session_open(s, po->port, po->baud, err);
    if (rc != KDH_OK)
        return rc;
    kdh_target_t *t = kdh_target_session_target(*s);
    rc = kdh_target_set_symbol_path(t, po->symbols, NULL, err);
    for (int i = 0; rc == KDH_OK && i < po->noverrides; i++)
        rc = kdh_target_add_override(t, po->overrides[i], err);
    return rc;
}

/* Leaves the target running whatever happened, then closes; returns the exit code. */
int kdh_cli_target_finish(kdh_target_session_t *s, int code, const kdh_err_t *err)
{
    kdh_err_t derr;
    kdh_err_clear(&derr);
    int detach = s ? kdh_target_session_detach(s, &derr) : KDH_OK;
    if (code != KDH_CLI_EXIT_OK && err)
        kdh_cli_fail(err);
    if (detach != KDH_OK) {
        kdh_cli_errorf("the target may still be stopped: %s", derr.msg);
        code = KDH_CLI_EXIT_FAIL;
    }
    kdh_target_session_close(s);
    return code;
}

typedef struct u32_arg {
    uint64_t va;
    uint32_t value;
} u32_arg_t;

static int read_u32_step(kdh_target_t *t, void *arg, kdh_err_t *err)
{
    u32_arg_t *a = arg;
    uint8_t b[4];
    int rc = kdh_target_read_full(t, KDH_TARGET_STOP, a->va, b, 4, "value", err);
    if (rc == KDH_OK)
        a->value = kdh_get_u32(b);
    return rc;
}

static void tag_text(uint32_t v, char out[5])
{
    for (int i = 0; i < 4; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        out[i] = (c >= 0x20 && c < 0x7F) ? (char)c : '.';
    }
    out[4] = 0;
}

static void print_target(kdh_target_session_t *s)
{
    kdh_target_t *t = kdh_target_session_target(s);
    const kdh_wire_get_version_t *v = kdh_target_version(t);
    const kdh_wire_state_change_t *sc = kdh_kd_state(kdh_target_session_kd(s));
    const kdh_target_kdbg_t *k = kdh_target_kdbg(t);
    printf("kernel: %s build %u (%s), %u processor%s, kernel base 0x%llx\n",
           kdh_target_arch(t) == KDH_WIRE_ARCH_AMD64 ? "x64" : "x86", v->minor_version,
           (v->major_version & 0xF) == 0xC ? "checked" : "free", sc ? sc->number_processors : 0,
           sc && sc->number_processors == 1 ? "" : "s", (unsigned long long)v->kern_base);
    printf("debugger data: PsLoadedModuleList 0x%llx, KDDEBUGGER_DATA64 0x%llx (size 0x%x), "
           "BreakpointWithStatus 0x%llx, PoolTrackTable 0x%llx\n",
           (unsigned long long)v->ps_loaded_module_list, (unsigned long long)k->address, k->size,
           (unsigned long long)k->breakpoint_with_status, (unsigned long long)k->pool_track_table);
    size_t n = kdh_target_module_count(t);
    const char *why = NULL;
    printf("modules: %zu%s%s\n", n, kdh_target_modules_truncated(t, &why) ? " (list cut short: " : "",
           why ? why : "");
    if (why)
        printf(")\n");
    for (size_t i = 0; i < n; i++) {
        const kdh_target_module_t *m = kdh_target_module_at(t, i);
        kdh_err_t e;
        kdh_err_clear(&e);
        int found = m->ok && kdh_target_load_symbols(t, i, &e) == KDH_OK;
        printf("  %-12s 0x%016llx 0x%08x %s %s\n", m->name, (unsigned long long)m->base, m->size,
               m->ok ? m->key : m->file, m->ok ? (found ? "symbols" : "no-symbols") : "bad");
        if (!m->ok)
            printf("      %s\n", m->error);
        else if (found)
            printf("      %s\n", m->sym_path);
        else
            printf("      %s\n", e.msg);
    }
}

static int cmd_probe_run(kdh_target_session_t *s, kdh_err_t *err)
{
    kdh_target_t *t = kdh_target_session_target(s);
    kdh_kd_t *kd = kdh_target_session_kd(s);
    print_target(s);
    printf("symbols:\n");
    int missing_hit_tag = 0;
    uint64_t hit_tag_va = 0, special_va = kdh_target_kdbg(t)->mm_special_pool_tag;
    kdh_err_t hit_err;
    kdh_err_clear(&hit_err);
    for (size_t i = 0; i < KDH_ARRAY_LEN(k_symbols); i++) {
        uint64_t addr = 0;
        char source[64];
        kdh_err_t e;
        kdh_err_clear(&e);
        int rc = kdh_target_resolve_sync(t, kd, k_symbols[i], &addr, source, sizeof source, &e);
        if (rc == KDH_OK) {
            printf("  nt!%-22s 0x%016llx (%s)\n", k_symbols[i], (unsigned long long)addr, source);
            if (i == 0)
                hit_tag_va = addr;
        } else {
            printf("  nt!%-22s not found\n", k_symbols[i]);
            if (i == 0) {
                missing_hit_tag = 1;
                hit_err = e;
            }
        }
    }
    if (hit_tag_va) {
        u32_arg_t a = {hit_tag_va, 0};
        if (kdh_target_run_sync(t, kd, read_u32_step, &a, err) == KDH_OK)
            printf("PoolHitTag value: 0x%08x\n", a.value);
    }
    if (special_va) {
        u32_arg_t a = {special_va, 0};
        int rc = kdh_target_run_sync(t, kd, read_u32_step, &a, err);
        if (rc != KDH_OK)
            return rc;
        char tag[5];
        tag_text(a.value, tag);
        if (a.value == 0)
            printf("special pool tag: 0x00000000 (special pool by tag is off)\n");
        else if (a.value < 0x1000)
            printf("special pool tag: 0x%08x (allocations of %u bytes)\n", a.value, a.value);
        else
            printf("special pool tag: 0x%08x '%s'\n", a.value, tag);
    }
    const kdh_kd_stats_t *ks = kdh_kd_stats(kd);
    const kdh_link_stats_t *ls = kdh_link_stats(kdh_kd_link(kd));
    printf("link: %llu KD requests, %llu bytes out, %llu bytes in\n", (unsigned long long)ks->requests,
           (unsigned long long)ls->bytes_out, (unsigned long long)ls->bytes_in);
    if (missing_hit_tag) {
        *err = hit_err;
        return KDH_ENOTFOUND;
    }
    return KDH_OK;
}

int kdh_cli_cmd_probe(int argc, char **argv)
{
    probe_opts_t po;
    int rc = kdh_cli_target_opts("probe", probe_usage, argc, argv, &po);
    if (rc)
        return rc < 0 ? KDH_CLI_EXIT_OK : rc;
    kdh_target_session_t *s = NULL;
    kdh_err_t err;
    kdh_err_clear(&err);
    rc = kdh_cli_target_open(&po, &s, &err);
    if (rc == KDH_OK)
        rc = cmd_probe_run(s, &err);
    fflush(stdout);
    int code = kdh_cli_target_finish(s, rc == KDH_OK ? KDH_CLI_EXIT_OK : KDH_CLI_EXIT_FAIL, &err);
    if (code == KDH_CLI_EXIT_OK)
        printf("target continued; detached\n");
    return code;
}
