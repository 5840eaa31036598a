/* fuzz_ingest_frame.c: libFuzzer harness for the stack-line parser: every layout of one frame
 * line, the bare callsite grammar, and the streaming parser over the same bytes (so line
 * assembly, table rows and the state machine see arbitrary input too). The direct CALLSITE
 * and x64/x86 layout decisions must agree with PCRE2 running the patterns, group for group, and
 * the whole frame parse with PCRE2 alone deciding it (kdh_ingest_parse_frame_ref), field for field. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kdh/ingest.h"
#include "../../../src/ingest/internal.h"

static kdh_ingest_patterns_t *pat;
static kdh_ingest_parser_t *parser;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kdh_err_t err;
    if (!pat && kdh_ingest_patterns_new(&pat, &err) != 0)
        return 0;
    if (!parser && kdh_ingest_parser_new(&parser, KDH_INGEST_AUTO, NULL, &err) != 0)
        return 0;
    static kdh_ingest_frame_t f;
    const char *s = (const char *)data;
    int lay = kdh_ingest_parse_frame(pat, s, size, KDH_INGEST_L_ALL, &f);
    if (lay) {
        /* whatever was accepted must be self-consistent */
        size_t n = strlen(f.sym);
        if (n >= KDH_INGEST_SYM_MAX || f.sym_len != n || f.mod_len > n || f.name_off + f.name_len > n)
            __builtin_trap();
        if (f.form < KDH_INGEST_CS_SYMBOL || f.form > KDH_INGEST_CS_ADDR)
            __builtin_trap();
    }
    /* the whole frame parse, direct recognizer against PCRE2 alone, for every layout mask */
    static const unsigned masks[] = {KDH_INGEST_L_X64, KDH_INGEST_L_X86, KDH_INGEST_L_X64 | KDH_INGEST_L_X86,
                                     KDH_INGEST_L_ADDR, KDH_INGEST_L_ALL};
    for (size_t k = 0; k < sizeof masks / sizeof masks[0]; k++) {
        static kdh_ingest_frame_t a, b;
        int ra = kdh_ingest_parse_frame(pat, s, size, masks[k], &a);
        int rb = kdh_ingest_parse_frame_ref(pat, s, size, masks[k], &b);
        if (ra != rb)
            __builtin_trap();
        if (ra && (strcmp(a.sym, b.sym) != 0 || a.sym_len != b.sym_len || a.form != b.form || a.mod_len != b.mod_len ||
                   a.name_off != b.name_off || a.name_len != b.name_len || a.has_off != b.has_off ||
                   a.off != b.off || a.has_addr != b.has_addr || a.addr != b.addr || a.has_ret != b.has_ret ||
                   a.ret != b.ret || a.nargs != b.nargs || a.is_inline != b.is_inline ||
                   a.truncated != b.truncated || memcmp(a.args, b.args, (size_t)a.nargs * sizeof a.args[0]) != 0))
            __builtin_trap();
    }
    if (kdh_ingest_parse_callsite(pat, s, size, &f) == 0 && f.sym_len != strlen(f.sym))
        __builtin_trap();
    size_t fov[2 * KDH_INGEST_CS_GROUPS], *ov;
    int fast = kdh_ingest_callsite_fast(s, size, fov);
    if (fast >= 0) {
        int ref = kdh_ingest_match(pat, PAT_CALLSITE, s, size, &ov) > 0;
        if (fast != ref)
            __builtin_trap();
        for (int g = 0; ref && g < 2 * KDH_INGEST_CS_GROUPS; g++)
            if (fov[g] != ov[g])
                __builtin_trap();
    }
    /* so must the direct x64 / x86 layout decisions, over the pattern's own groups */
    static const int ids[2] = {PAT_X64, PAT_X86}, groups[2] = {6, 9};
    for (int k = 0; k < 2; k++) {
        size_t lov[2 * KDH_INGEST_LAYOUT_GROUPS];
        if (kdh_ingest_layout_fast(ids[k], s, size, lov) <= 0)
            continue;
        if (kdh_ingest_match(pat, ids[k], s, size, &ov) <= 0)
            __builtin_trap();
        for (int g = 0; g < 2 * groups[k]; g++)
            if (lov[g] != ov[g])
                __builtin_trap();
    }
    (void)kdh_ingest_parser_feed(parser, s, size, &err);
    (void)kdh_ingest_parser_finish(parser, &err);
    return 0;
}
