/* patterns.c: the regular expressions of the log grammars (reference/log-formats.md), compiled
 * once with PCRE2 and JIT-compiled, plus one match block reused for every line. Patterns are
 * byte-oriented (no PCRE2_UTF): logs carry invalid UTF-8 and binary junk, and every construct
 * of the grammar is ASCII. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define H8 "[0-9a-fA-F]{8}"
#define H64 "[0-9a-fA-F]{8}`[0-9a-fA-F]{8}"
#define D64 "--------`--------"
#define MOD "[A-Za-z0-9_.$-]+"

static const char *const sources[PAT_COUNT] = {
    /* [NN] Child-SP|(Inline Function) RetAddr|dashes [: 4 args :] rest */
    [PAT_X64] = "^\\s*(?:([0-9a-fA-F]{1,4})\\s+)?(?:[0-9a-fA-F]{1,7}\\s+)?(?:(" H64 ")|(\\(Inline Function\\)))\\s+(" H64 "|" D64
                ")\\s+(?::\\s+(?:(?:" H64 "|" D64 ")\\s+){4}:\\s+)?(\\S.*)$",
    /* [NN] ChildEBP|(Inline) RetAddr|dashes [(T)] [3 args] rest; newer WinDbg marks a frame reached
     * through a trap frame with "(T)" after its return address */
    [PAT_X86] = "^\\s*(?:([0-9a-fA-F]{1,4})\\s+)?(?:[0-9a-fA-F]{1,7}\\s+)?(?:(" H8 ")|(\\(Inline\\)))\\s+(" H8
                "|--------)\\s+(?:\\(T\\)\\s+)?(?:(" H8 "|--------)\\s+(" H8 "|--------)\\s+(" H8 "|--------)\\s+)?(\\S.*)$",
    /* [NN] RetAddr|(Inline Function) : 4 args : rest. Where the debugger has no stack pointer for
     * the frames (cdb on some dumps) kb/kv leave the Child-SP column out. 1 NN, 2 RetAddr, 3 inline,
     * 4 rest. */
    [PAT_X64RA] = "^\\s*(?:([0-9a-fA-F]{1,4})\\s+)?(?:(" H64 ")|(\\(Inline Function\\)))\\s+:\\s+(?:(?:" H64 "|" D64
                  ")\\s+){4}:\\s+(\\S.*)$",
    [PAT_MEX] = "^\\s*([0-9a-fA-F]{1,4})\\s+([0-9a-fA-F]{16})\\s+([0-9a-fA-F]{16})\\s+(\\S.*)$",
    [PAT_KC] = "^\\s*(?:([0-9a-fA-F]{2,4})\\s+)?(\\S.*)$",
    [PAT_ADDRFR] = "^\\s*(?:0x)?([0-9a-fA-F]{8}(?:`?[0-9a-fA-F]{8})?)\\s+(\\S.*)$",
    /* "<Unloaded_drv.sys>+0x1047": a frame in a driver that has since been unloaded; "nt! ?? ::FNODOBFM::`string'"
     * names a block the linker moved out of its function, and is the one name that starts with a blank */
    [PAT_CALLSITE] = "^(?:(" MOD ")!((?: \\?\\? )?\\S.*?)(?:\\+0x([0-9a-fA-F]{1,16}))?|(" MOD "|<Unloaded_[^<>\\s]{1,200}>)\\+0x([0-9a-fA-F]{1,16})"
                     "|0x([0-9a-fA-F]{1,8}(?:`[0-9a-fA-F]{8})?|[0-9a-fA-F]{9,16}))$",
    /* 1: x86, 2: x64 (kb/kv without the Child-SP column too), 3: mex, 4: kc (newer WinDbg prints
     * "Call Site"); kf adds "Memory" */
    [PAT_HEADER] = "^\\s*(?:#\\s*)?(?:Memory\\s+)?(?:(ChildEBP\\s+RetAddr(?:\\s+Args to Child)?)"
                   "|(Child-SP\\s+RetAddr\\s+(?::\\s+Args to Child.*:\\s+)?Call Site|RetAddr\\s+:\\s+Args to Child.*:\\s+Call Site)"
                   "|(Child-SP\\s+Return\\s+Call Site)|(Call Site))\\s*$",
    /* 1: cpu, 2: command. A kernel debugger in a WOW64 thread's context prompts "0: kd:x86>", and
     * some sessions "32.2: kd:x86>" (no single CPU number there: group 1 stays unset) */
    [PAT_PROMPT] = "^\\s*(?:(?:(\\d{1,3}):\\s?|\\d{1,3}\\.\\d{1,3}:\\s?)?l?kd(?::[A-Za-z0-9]+)?|\\d{1,3}:\\d{3,}(?::[A-Za-z0-9]+)?"
                   "|[A-Za-z]:\\\\[^>]{0,200})>\\s?(.*)$",
    [PAT_BPHIT] = "^\\s*Breakpoint (\\d+) hit\\s*$",
    /* 1: bugcheck code when it is a fatal system error */
    [PAT_BREAKEX] = "^\\s*(?:Break instruction exception - code 80000003|\\*\\*\\* Fatal System Error: 0x([0-9a-fA-F]+))",
    [PAT_LOCATION] = "^(" MOD "!(?: \\?\\? )?\\S.*?|" MOD "\\+0x[0-9a-fA-F]+)(?: \\[inlined in [^\\]]*\\])?:\\s*$",
    [PAT_POOLBLOCK] = "^\\s*Pool block ([0-9a-fA-F`]+), Size ([0-9a-fA-F]+), Thread ([0-9a-fA-F`]+)\\s*$",
    [PAT_V4ENTRY] = "^\\s*Entry @ ([0-9a-fA-F`]+) \\(index \\d+\\)\\s*$",
    [PAT_THREADHDR] = "^\\s*THREAD ([0-9a-fA-F`]+)\\s+Cid ",
    [PAT_THREAD] = "^\\s*Thread: ([0-9a-fA-F`]+)\\s*$",
    [PAT_KMSEQ] = "^\\s*Sequence: \\d+, Test Number: \\d+",
    [PAT_KMIRQL] = "^\\s*IRQ Level: \\d+, HASH: 0x[0-9a-fA-F]+\\s*$",
    /* Windows 7 printed "PoolAddress  SizeInBytes    Tag       CallersAddress" */
    [PAT_V3HDR] = "^\\s*(?:Address\\s+Length\\s+Tag\\s+Caller(?:\\s+Address)?|PoolAddress\\s+SizeInBytes\\s+Tag\\s+CallersAddress)"
                  "\\s*$",
    /* 1 addr, 2 length, 3 tag (4 chars after two spaces), 4 caller, 5 callsite */
    [PAT_V3ROW] = "^\\s*0x([0-9a-fA-F`]{1,17})\\s+0x([0-9a-fA-F`]{1,17})\\s\\s?(\\S.{0,3}?)\\s+0x([0-9a-fA-F`]{1,17})"
                  "(?:\\s+(\\S.*?))?\\s*$",
    /* the same groups: "fffff9800157efc0     0x0000003c     Vprt      fffff88002c62963", addresses of 8
     * or 16 digits without "0x", the tag between runs of blanks; no symbol column, so group 5 is
     * empty (set, so that no earlier match's group 5 is read) */
    [PAT_V3ROW_HEX] = "^\\s*([0-9a-fA-F]{16}|[0-9a-fA-F]{8})\\s+0x([0-9a-fA-F]{1,16})\\s+(\\S.{0,3}?)\\s+"
                      "([0-9a-fA-F]{16}|[0-9a-fA-F]{8})()\\s*$",
    [PAT_PMMEM] = "^\\s*Memory:\\s*\\d+K",
    [PAT_PMHDR] = "^\\s*Tag\\s+Type\\s+Allocs\\s+Frees\\s+Diff\\s+Bytes\\b",
    /* 1 tag 2 type 3 allocs 4 frees 5 diff 6 bytes 7 per-alloc */
    [PAT_PMROW] = "^ ?(\\S.{0,3}?)\\s+(Nonp|Paged|NonP|Pagd|Sess)\\s+(\\d+)\\s*(?:\\(\\s*-?\\d+\\s*\\))?\\s+(\\d+)\\s*"
                  "(?:\\(\\s*-?\\d+\\s*\\))?\\s+(-?\\d+)\\s+(-?\\d+)\\s*(?:\\(\\s*-?\\d+\\s*\\))?\\s+(-?\\d+)(?:\\s.*)?$",
    [PAT_PUSORT] = "^\\s*Sorting by\\s",
    /* 1: the indentation before Tag */
    [PAT_PUHDR] = "^(\\s*)Tag(?:\\s+(?:Allocs|Frees|Diff|Used)){4,8}\\s*$",
    /* 1 pool name, 2 pages, 3 KB */
    [PAT_VMUSAGE] = "^\\s*(NonPagedPool|NonPagedPoolNx|PagedPool) Usage:\\s*(\\d+)\\s*\\(\\s*(\\d+)\\s*Kb\\)\\s*$",
    /* 1 hex value, 2 quoted characters (ed), 3 string (ea) */
    [PAT_HITTAG] = "^\\s*(?:ed\\s+(?:nt!)?PoolHitTag\\s+(?:(?:0x)?([0-9a-fA-F]{1,8})\\b|'([^']{1,4})')"
                   "|ea\\s+(?:nt!)?PoolHitTag\\s+\"([^\"]{1,4})\")",
    /* 1 hex tag, 2 quoted tag; r8 / poi(esp+c) = Tag of the allocate routines, rdx / poi(esp+8) of
     * ExFreePoolWithTag (a size compared there is never 4 printable bytes, so it is not taken) */
    [PAT_BPTAG] = "^\\s*(?:bp|bu|bm)\\b.*(?:@r8d?|@rdx|@edx|poi\\(@?esp\\+0?x?[8c]\\))\\s*==\\s*"
                  "(?:(?:0x)?([0-9a-fA-F]{8})\\b|'([^']{4})')",
    /* the debugger loads a module's symbols when a stack first reaches it and reports on that
     * between two frames: "Unable to load image", "*** WARNING: Unable to verify timestamp", ... */
    [PAT_STACKWARN] = "^\\s*(?:WARNING: (?:Stack unwind information not available|Frame IP not in any known module)"
                      "|\\*\\*\\* Stack trace for last set context|<Intermediate frames may have been skipped"
                      "|Unable to load image \\S|\\*\\*\\* WARNING: (?:Unable to verify (?:timestamp|checksum) for \\S"
                      "|symbols (?:timestamp|checksum) is wrong 0x)"
                      "|\\*\\*\\* ERROR: (?:Module load completed but symbols could not be loaded for \\S"
                      "|Symbol file could not be found\\.))",
    /* 1 month 2 day 3 h 4 min 5 s 6 ms 7 year 8 sign 9 offset hours 10 offset minutes; "(UTC - 8:00)", or
     * "(GMT-8)" in older debuggers, is the local zone the time is given in */
    [PAT_SESSTIME] = "^\\s*Debug session time: [A-Za-z]{3} ([A-Za-z]{3}) +(\\d{1,2}) (\\d{1,2}):(\\d{2}):(\\d{2})"
                     "(?:\\.(\\d{1,3}))? (\\d{4})(?: \\((?:UTC|GMT) ?([+-]) ?(\\d{1,2})(?::(\\d{2}))?\\))?",
    /* 1: pool type of a "Searching" line ("NonPaged", "nonpaged", "Paged", "session") */
    [PAT_PFHDR] = "^\\s*(?:Scanning large pool allocation table for |Searching (\\S+) pool \\()",
    /* 1 block, 2 tag, 3 size, 4 pool type */
    [PAT_PFROW] = "^\\s*([0-9a-fA-F`]{8,17}) : tag (.{1,4}?), size\\s+0x([0-9a-fA-F]{1,16}), (\\S+) pool\\s*$",
    /* 1 block, 2 size, 3 Allocated|Free, 4 tag (later kdexts add " (Protected)", " Process: ADDR") */
    [PAT_PFROW_OLD] = "^\\s*\\*?([0-9a-fA-F`]{8,17}) size:\\s*([0-9a-fA-F]{1,16}) previous size:\\s*[0-9a-fA-F]{1,16}\\s+"
                      "\\((Allocated|Free)\\)\\s+\\*?(\\S.{0,3}?)(?:\\s+\\(Protected\\))?(?:\\s+Process: [0-9a-fA-F`]+)?\\s*$",
};

int kdh_ingest_patterns_new(kdh_ingest_patterns_t **out, kdh_err_t *err)
{
    kdh_ingest_patterns_t *p = calloc(1, sizeof *p);
    if (!p)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for the ingest patterns");
    for (int i = 0; i < PAT_COUNT; i++) {
        int ec;
        PCRE2_SIZE eo;
        p->re[i] = pcre2_compile((PCRE2_SPTR)sources[i], PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(ec, msg, sizeof msg);
            kdh_ingest_patterns_free(p);
            return kdh_err_set(err, KDH_EINVAL, "ingest pattern %d does not compile at %zu: %s", i,
                               (size_t)eo, (const char *)msg);
        }
        /* JIT is an optimisation: where it is unavailable pcre2_match interprets instead. */
        p->jit[i] = pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE) == 0;
    }
    p->md = pcre2_match_data_create(KDH_INGEST_OVEC, NULL);
    if (!p->md) {
        kdh_ingest_patterns_free(p);
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for the ingest match block");
    }
    *out = p;
    return KDH_OK;
}

void kdh_ingest_patterns_free(kdh_ingest_patterns_t *p)
{
    if (!p)
        return;
    for (int i = 0; i < PAT_COUNT; i++)
        pcre2_code_free(p->re[i]);
    pcre2_match_data_free(p->md);
    free(p);
}

int kdh_ingest_match(kdh_ingest_patterns_t *p, int id, const char *s, size_t len, size_t **ov)
{
    /* pcre2_jit_match: the JIT code without pcre2_match's checks of arguments that are always
     * valid here; its per-call cost was a tenth of all matching */
    int rc = p->jit[id] ? pcre2_jit_match(p->re[id], (PCRE2_SPTR)s, len, 0, 0, p->md, NULL)
                        : pcre2_match(p->re[id], (PCRE2_SPTR)s, len, 0, 0, p->md, NULL);
    if (rc <= 0)
        return 0; /* no match, or a resource limit on a pathological line: not a match either */
    *ov = pcre2_get_ovector_pointer(p->md);
    return rc;
}

const unsigned char kdh_ingest_hexval1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16, ['`'] = KDH_INGEST_HEX_SEP,
};

int kdh_ingest_dec(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (!len)
        return 0;
    if (len <= 19) { /* cannot overflow (10^19 - 1 < 2^64): no check per digit; every table row's numbers */
        for (size_t i = 0; i < len; i++) {
            unsigned d = (unsigned)(unsigned char)s[i] - '0';
            if (d > 9)
                return 0;
            v = v * 10 + d;
        }
        *out = v;
        return 1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

int kdh_ingest_tag_from_dword(uint32_t v, char out[5])
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(v >> (8 * i));
        if (c < 0x20 || c > 0x7e)
            return 0; /* out is untouched */
    }
    for (int i = 0; i < 4; i++)
        out[i] = (char)(v >> (8 * i));
    out[4] = 0;
    return 1;
}
