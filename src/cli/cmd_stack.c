/* cmd_stack.c: `kdharvest stack PORT`: breaks in, prints the current stack of every processor
 * (SwitchProcessor for the others) symbolized like WinDbg's `k`, with the KD round trips and
 * wire bytes each capture took, then continues the target and detaches. */
#include <stdio.h>
#include <string.h>

#include "kdh/cli.h"
#include "kdh/target.h"
#include "target_opts.h"

static const char stack_usage[] =
    "PORT [--baud N] [--symbols PATH] [--symbol NAME=nt+0xRVA]...\n"
    "  PORT                 /dev/ttyS0, tcp://host:port or unix:/path\n"
    "  --baud N             line speed of a serial port (default 115200)\n"
    "  --symbols PATH       symbol path (default: _NT_SYMBOL_PATH); a plain folder works\n"
    "  --symbol NAME=VALUE  address of a symbol: nt+0x1234 (module+RVA) or 0xADDRESS\n";

static void addr_text(int x64, uint64_t v, char *out, size_t len)
{
    if (x64)
        snprintf(out, len, "%08llx`%08llx", (unsigned long long)(v >> 32), (unsigned long long)(v & 0xFFFFFFFFu));
    else
        snprintf(out, len, "%08llx", (unsigned long long)(v & 0xFFFFFFFFu));
}

/* Bytes the link has sent and received so far (the capture between two reads adds to them). */
static uint64_t link_bytes(kdh_kd_t *kd)
{
    const kdh_link_stats_t *ls = kdh_link_stats(kdh_kd_link(kd));
    return ls->bytes_in + ls->bytes_out;
}

static int print_cpu_stack(kdh_target_session_t *s, kdh_err_t *err)
{
    kdh_target_t *t = kdh_target_session_target(s);
    kdh_kd_t *kd = kdh_target_session_kd(s);
    const kdh_wire_state_change_t *sc = kdh_kd_state(kd);
    unsigned cpu = sc->processor;
    uint64_t thread = sc->thread;
    uint64_t req0 = kdh_kd_stats(kd)->requests;
    uint64_t bytes0 = link_bytes(kd);
    static kdh_target_stack_t st; /* large: keep it off the stack */
    int rc = kdh_target_capture_sync(t, kd, &st, err);
    if (rc != KDH_OK)
        return rc;
    uint64_t reqs = kdh_kd_stats(kd)->requests - req0;
    uint64_t bytes = link_bytes(kd) - bytes0;
    int x64 = kdh_target_arch(t) == KDH_WIRE_ARCH_AMD64;
    printf("Processor %u, thread 0x%llx:\n", cpu, (unsigned long long)thread);
    if (x64)
        printf(" # Child-SP          RetAddr               Call Site\n");
    else
        printf(" # Child-SP RetAddr  Call Site\n");
    for (uint32_t i = 0; i < st.n_frames; i++) {
        char sp[24], ret[24], sym[512];
        addr_text(x64, st.frames[i].sp, sp, sizeof sp);
        addr_text(x64, i + 1 < st.n_frames ? st.frames[i + 1].pc : 0, ret, sizeof ret);
        kdh_target_symbolize(t, st.frames[i].pc, sym, sizeof sym);
        printf("%02x %s %s %s%s\n", i, sp, ret, x64 ? "    " : "", sym);
    }
    printf("(%u frames, walk ended: %s; %llu KD round trips, %llu wire bytes)\n", st.n_frames,
           kdh_unwind_stop_name(st.u.stop), (unsigned long long)reqs, (unsigned long long)bytes);
    return KDH_OK;
}

static int cmd_stack_run(kdh_target_session_t *s, kdh_err_t *err)
{
    kdh_kd_t *kd = kdh_target_session_kd(s);
    const kdh_wire_state_change_t *sc = kdh_kd_state(kd);
    unsigned first = sc->processor, n = sc->number_processors;
    if (n == 0 || n > 4096)
        n = 1;
    int rc = print_cpu_stack(s, err);
    /* step over the break-in's int 3 now, while this processor is the current one */
    if (rc == KDH_OK)
        rc = kdh_target_skip_int3(kdh_target_session_target(s), kd, err);
    for (unsigned cpu = 0; rc == KDH_OK && cpu < n; cpu++) {
        if (cpu == first)
            continue;
        printf("\n");
        rc = kdh_target_session_switch(s, cpu, err);
        if (rc == KDH_OK)
            rc = print_cpu_stack(s, err);
    }
    return rc;
}

int kdh_cli_cmd_stack(int argc, char **argv)
{
    probe_opts_t po;
    int rc = kdh_cli_target_opts("stack", stack_usage, argc, argv, &po);
    if (rc)
        return rc < 0 ? KDH_CLI_EXIT_OK : rc;
    kdh_target_session_t *s = NULL;
    kdh_err_t err;
    kdh_err_clear(&err);
    rc = kdh_cli_target_open(&po, &s, &err);
    if (rc == KDH_OK)
        rc = cmd_stack_run(s, &err);
    fflush(stdout);
    return kdh_cli_target_finish(s, rc == KDH_OK ? KDH_CLI_EXIT_OK : KDH_CLI_EXIT_FAIL, &err);
}
