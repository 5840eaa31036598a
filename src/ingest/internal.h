/* internal.h: what the ingest source files share: the compiled pattern table and its match
 * helper (PCRE2, JIT, one reused match block), and small text helpers. Not a public API. */
#ifndef KDH_INGEST_INTERNAL_H
#define KDH_INGEST_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kdh/ingest.h"

/* Every pattern the parsers use; compiled once per kdh_ingest_patterns_t. */
enum {
    PAT_X64,        /* x64 frame line */
    PAT_X86,        /* x86 frame line */
    PAT_X64RA,      /* x64 kb/kv frame line without the Child-SP column */
    PAT_MEX,        /* !mex.t frame line */
    PAT_KC,         /* kc frame line */
    PAT_ADDRFR,     /* ADDR callsite (verifier 0x80 / 4, kmautofail) */
    PAT_CALLSITE,   /* the CALLSITE grammar */
    PAT_HEADER,     /* stack header lines */
    PAT_PROMPT,     /* kd> / N: kd> / 0:000> / C:\> prompts */
    PAT_BPHIT,      /* Breakpoint N hit */
    PAT_BREAKEX,    /* Break instruction exception / Fatal System Error */
    PAT_LOCATION,   /* module!sym+0xoff: after a break */
    PAT_POOLBLOCK,  /* !verifier 0x80 record head */
    PAT_V4ENTRY,    /* !verifier 4 entry head */
    PAT_THREADHDR,  /* "THREAD ffffcb088f0a4480  Cid ..." of !thread / !process */
    PAT_THREAD,     /* "Thread: C2638220" */
    PAT_KMSEQ,      /* kmautofail record head */
    PAT_KMIRQL,     /* kmautofail second line */
    PAT_V3HDR,      /* !verifier 3 table header */
    PAT_V3ROW,      /* !verifier 3 table row */
    PAT_V3ROW_HEX,  /* !verifier 3 table row, Windows 7 layout (hex without "0x" around the size) */
    PAT_PMMEM,      /* poolmon " Memory:" line */
    PAT_PMHDR,      /* poolmon column header */
    PAT_PMROW,      /* poolmon row */
    PAT_PUSORT,     /* !poolused "Sorting by" */
    PAT_PUHDR,      /* !poolused column header */
    PAT_VMUSAGE,    /* !vm "...Pool Usage:" */
    PAT_HITTAG,     /* ed nt!PoolHitTag <value> */
    PAT_BPTAG,      /* a conditional bp comparing a register or argument with a tag */
    PAT_STACKWARN,  /* lines tolerated inside a stack */
    PAT_SESSTIME,   /* "Debug session time: Tue Mar 17 10:21:12.345 2020 (UTC + 1:00)" */
    PAT_PFHDR,      /* !poolfind "Scanning large pool ..." / "Searching X pool (...)" */
    PAT_PFROW,      /* !poolfind row, newer layout: "ADDR : tag T, size 0xN, X pool" */
    PAT_PFROW_OLD,  /* !poolfind row, older layout: "ADDR size: N previous size: N (Allocated) T" */
    PAT_COUNT
};

#define KDH_INGEST_OVEC 24 /* capture groups per match, at most */

struct kdh_ingest_patterns {
    pcre2_code *re[PAT_COUNT];
    int jit[PAT_COUNT]; /* JIT-compiled: matched through pcre2_jit_match */
    pcre2_match_data *md;
};

/* Matches pattern id against [s, s+len). Returns the number of captures + 1 (> 0) on a match,
 * 0 otherwise. Captured group g is then [ov[2g], ov[2g+1]) (PCRE2_UNSET when unset). */
int kdh_ingest_match(kdh_ingest_patterns_t *p, int id, const char *s, size_t len, size_t **ov);

/* The direct recognizers (callsite, layout, prompt, poolmon and !poolfind rows) fill ov as
 * PCRE2 would: group g is [a, b). */
static inline void kdh_ingest_set_group(size_t *ov, int g, size_t a, size_t b)
{
    ov[2 * g] = a;
    ov[2 * g + 1] = b;
}

/* The index of the first byte at or after i that is not a blank (' '), n at most. */
static inline size_t kdh_ingest_blanks(const char *s, size_t i, size_t n)
{
    while (i < n && s[i] == ' ')
        i++;
    return i;
}

/* Group g of the last match as (pointer, length); returns 0 with an empty string (length 0, never
 * NULL, so that reading its first byte finds a NUL) when unset. */
static inline int kdh_ingest_group(const size_t *ov, int g, const char *s, const char **out, size_t *len)
{
    if (ov[2 * g] == PCRE2_UNSET) {
        *out = "";
        *len = 0;
        return 0;
    }
    *out = s + ov[2 * g];
    *len = ov[2 * g + 1] - ov[2 * g];
    return 1;
}

/* callsite.c: the CALLSITE pattern decided directly. Returns 1 on a match with ov filled as
 * PCRE2 would (groups 0..6, unset ones PCRE2_UNSET), 0 when the pattern cannot match, -1 when
 * the text is not plain printable ASCII and PCRE2 must decide. */
#define KDH_INGEST_CS_GROUPS 7
int kdh_ingest_callsite_fast(const char *s, size_t n, size_t ov[2 * KDH_INGEST_CS_GROUPS]);
/* The same decision for text known to be printable ASCII whose leading module-name run ([A-Za-z0-9_.$-])
 * is m bytes long: 1 or 0, never unsure. */
int kdh_ingest_callsite_groups(const char *s, size_t n, size_t m, size_t ov[2 * KDH_INGEST_CS_GROUPS]);
/* The callsite part of a frame line (the layout's last group, up to the end of the trimmed line)
 * in one scan: 1 or 0 as kdh_ingest_callsite_fast for printable ASCII text that cannot hold an
 * annotation; KDH_INGEST_CS_ODD when a byte is not printable ASCII (or the text is empty);
 * KDH_INGEST_CS_NOTE when it is printable and may hold one (a '<', or a last byte ']' or ')'):
 * then kdh_ingest_strip_annotations must run first. *mod_run: the length of the leading
 * module-name run (set unless the text is empty). */
#define KDH_INGEST_CS_ODD (-1)
#define KDH_INGEST_CS_NOTE (-2)
int kdh_ingest_callsite_scan(const char *s, size_t n, size_t ov[2 * KDH_INGEST_CS_GROUPS], size_t *mod_run);

/* layout.c: PAT_X64 / PAT_X86 / PAT_ADDRFR decided directly. Returns 1 on a match with ov filled as PCRE2
 * would (unset groups PCRE2_UNSET), -1 when PCRE2 must decide (never a certain no-match). */
#define KDH_INGEST_LAYOUT_GROUPS 9
int kdh_ingest_layout_fast(int id, const char *s, size_t n, size_t ov[2 * KDH_INGEST_LAYOUT_GROUPS]);
/* The same decision up to the callsite group (the last one, up to n), whose bytes it has not
 * looked at: a match stands only if that group holds neither '\n' nor '\r' (else PCRE2 decides). */
int kdh_ingest_layout_columns(int id, const char *s, size_t n, size_t ov[2 * KDH_INGEST_LAYOUT_GROUPS]);

/* pmrow.c: PAT_PMROW decided directly for printable ASCII rows. Returns 1 on a match with ov filled
 * as PCRE2 would (groups 0..7), 0 when the pattern cannot match, -1 when PCRE2 must decide. */
#define KDH_INGEST_PMROW_GROUPS 8
int kdh_ingest_pmrow_fast(const char *s, size_t n, size_t ov[2 * KDH_INGEST_PMROW_GROUPS]);

/* pfrow.c: PAT_PFROW / PAT_PFROW_OLD (id) decided directly for printable ASCII rows: 1 on a match
 * with ov filled as PCRE2 would (groups 0..4), 0 when the pattern cannot match, -1 when PCRE2
 * must decide. */
#define KDH_INGEST_PFROW_GROUPS 5
int kdh_ingest_pfrow_fast(int id, const char *s, size_t n, size_t ov[2 * KDH_INGEST_PFROW_GROUPS]);

/* prompt.c: PAT_PROMPT decided directly for "kd> ..." and "N: kd> ..." in printable ASCII: 1 with
 * ov filled as PCRE2 would (groups 0..2), -1 for every other line (PCRE2 decides; never 0). */
#define KDH_INGEST_PROMPT_GROUPS 3
int kdh_ingest_prompt_fast(const char *s, size_t n, size_t ov[2 * KDH_INGEST_PROMPT_GROUPS]);

/* kdh_ingest_parse_frame with PCRE2 alone deciding every layout and callsite: the grammar of
 * record, against which the direct paths (layout.c, callsite.c) are tested. */
int kdh_ingest_parse_frame_ref(kdh_ingest_patterns_t *p, const char *line, size_t len, unsigned mask,
                               kdh_ingest_frame_t *out);

/* Hex digit value + 1 (0: not a digit); KDH_INGEST_HEX_SEP for WinDbg's 64-bit separator '`'. */
#define KDH_INGEST_HEX_SEP 17
extern const unsigned char kdh_ingest_hexval1[256];

/* A hex digit (not the separator). */
static inline int kdh_ingest_is_hex(unsigned char c)
{
    return (unsigned)kdh_ingest_hexval1[c] - 1u < 16u; /* a digit's value + 1, 0 or '`''s 17 otherwise */
}

/* The count of hex digits from s[from] on, before n. */
static inline size_t kdh_ingest_hex_run(const char *s, size_t from, size_t n)
{
    size_t i = from;
    while (i < n && kdh_ingest_is_hex((unsigned char)s[i]))
        i++;
    return i - from;
}

/* Hex digits (backticks skipped) to a value; 0 when empty or > 16 digits. Inline: several
 * address columns of every frame go through it. */
static inline int kdh_ingest_hex(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    unsigned nd = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d = kdh_ingest_hexval1[(unsigned char)s[i]];
        if (d == KDH_INGEST_HEX_SEP)
            continue;
        if (!d || ++nd > 16)
            return 0;
        v = (v << 4) | (d - 1);
    }
    if (!nd)
        return 0;
    *out = v;
    return 1;
}
/* Word-at-a-time byte tests (8 bytes per step; the callsite and column checks run over every
 * frame line). Each tells exactly whether any byte of x qualifies. */
#define KDH_INGEST_ONES 0x0101010101010101ull
#define KDH_INGEST_HIGHS 0x8080808080808080ull
static inline uint64_t kdh_ingest_word(const char *s)
{
    uint64_t x;
    memcpy(&x, s, 8);
    return x;
}
/* a byte outside printable ASCII 0x20-0x7e: below 0x20, or 0x7f and above */
static inline int kdh_ingest_word_odd(uint64_t x)
{
    return ((((x - KDH_INGEST_ONES * 0x20) & ~x) | ((x + KDH_INGEST_ONES) | x)) & KDH_INGEST_HIGHS) != 0;
}
/* a byte equal to c */
static inline int kdh_ingest_word_has(uint64_t x, unsigned char c)
{
    uint64_t y = x ^ (KDH_INGEST_ONES * c);
    return ((y - KDH_INGEST_ONES) & ~y & KDH_INGEST_HIGHS) != 0;
}
/* Is every byte of [s, s+n) printable ASCII? */
static inline int kdh_ingest_plain(const char *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        if (kdh_ingest_word_odd(kdh_ingest_word(s + i)))
            return 0;
    for (; i < n; i++)
        if ((unsigned char)s[i] - 0x20u > 0x5eu)
            return 0;
    return 1;
}

/* Decimal digits to a value; 0 when empty, non-digit or overflowing. */
int kdh_ingest_dec(const char *s, size_t len, uint64_t *out);

/* Length of a frame's tail without its annotations ([src @ line], (FPO: ..), <-- notes, ...). */
size_t kdh_ingest_strip_annotations(const char *s, size_t n);

/* Classifies a frame's symbol as a pool allocate (EV_ALLOC), free (EV_FREE) routine, or -1. */
int kdh_ingest_pool_routine(const kdh_ingest_frame_t *f);

/* Tag dword <-> 4 characters (little-endian bytes, as Windows displays them). Returns 0 when the
 * bytes are not printable (not a tag anyone typed). */
int kdh_ingest_tag_from_dword(uint32_t v, char out[5]);

/* A stack or table block the parser is inside of. */
enum { BLK_NONE, BLK_POOLMON, BLK_POOLUSED, BLK_V3, BLK_POOLFIND };

/* Blocks one !poolfind output found allocated, per tag and pool type (poolfind.c). */
#define KDH_INGEST_PF_MAX 64
typedef struct kdh_ingest_pf_acc {
    char tag[5];
    const char *pool;
    uint64_t blocks, bytes;
} kdh_ingest_pf_acc_t;

/* What the next frame lines would belong to: set by a header, STACK_TEXT, a kc command or a
 * verifier record head; cleared by any line that is none of frame, blank or tolerated warning. */
typedef struct kdh_ingest_arm {
    unsigned mask;        /* KDH_INGEST_L_* accepted */
    const char *origin;
    int forced_kind;      /* -1, or the event kind this record has by construction */
    uint64_t thread, addr, size;
    int has_addr, has_size;
} kdh_ingest_arm_t;

/* Block address -> index, open addressing (verifier80.c); keys are never 0 in practice, a 0
 * address is simply not indexed. */
typedef struct kdh_ingest_addrmap {
    uint64_t *key;
    uint32_t *val;
    size_t cap, n;
} kdh_ingest_addrmap_t;

/* One held !verifier 0x80 record (verifier80.c). */
typedef struct kdh_ingest_v80 {
    kdh_ingest_stack_t st;
    kdh_ingest_frame_t *frames;
    int superseded; /* a !verifier 3 row whose block the 0x80 log showed with its whole stack */
} kdh_ingest_v80_t;

/* One per ingest: its fields follow the parse stages, and the padding between them costs nothing */
struct kdh_ingest_parser { // NOLINT(clang-analyzer-optin.performance.Padding)
    kdh_ingest_patterns_t *pat;
    unsigned kinds;
    kdh_ingest_sink_t sink;
    kdh_ingest_stats_t st;
    uint64_t lineno;

    /* line assembly across feed() chunks */
    char *lbuf;
    size_t llen, lcap;
    int ldiscard; /* inside an over-long line: drop bytes up to the next newline */
    int nul_free; /* the line being parsed is known to hold no NUL byte */

    /* the stack being collected */
    kdh_ingest_frame_t *fr;
    size_t nfr;
    int armed, open;
    kdh_ingest_arm_t arm;
    uint64_t stack_line;
    uint64_t last_ret;
    int has_last_ret;
    int kp_open;          /* kP: the last frame's parameter list continues on the next lines */
    unsigned kp_lines;

    /* debugger session state */
    double clock; /* the last "Debug session time:" of this file, Unix seconds */
    int has_clock;
    int file_fd;      /* the file kdh_ingest_parse_file is reading; -1 for fed text */
    double ahead;     /* the file's first clock, for the stacks before it (ahead_done: looked up) */
    int has_ahead, ahead_done;
    int cpu;
    uint64_t thread_hint; /* from the last THREAD line since the prompt */
    int go_pending;      /* a `g` was typed and no break reported since */
    uint64_t break_id;   /* 0 = no current break */
    uint64_t break_seq;
    int break_kind;
    int break_loc_pending;
    int break_is_bp;
    uint64_t break_last_hash;
    int break_has_hash;
    char hit_tag[5];     /* from `ed nt!PoolHitTag` */
    char bp_tag[5];      /* from a conditional bp on a pool routine */

    /* tables and snapshots */
    int blk;
    int snap_pending;    /* the next row starts a new snapshot */
    uint64_t snapshot;
    size_t pu_tagcol;
    size_t pu_end[8];    /* last column (0-based, exclusive) of each numeric !poolused field */
    char pu_kind[8];     /* 'A'llocs, 'F'rees, 'D'iff, 'U'sed: 4 fields, or 8 with flag 1 */
    unsigned pu_nf;
    const char *snap_origin;
    unsigned vm_seen;    /* !vm pools already sampled in the current snapshot */
    const char *pf_pool; /* !poolfind: pool type of the "Searching" section the rows are in */
    kdh_ingest_pf_acc_t pf[KDH_INGEST_PF_MAX];
    size_t npf;

    kdh_ingest_v80_t *v80;
    size_t nv80;
    kdh_ingest_v80_t *v3; /* !verifier 3 rows held until the end of the file */
    size_t nv3, capv3;
    kdh_ingest_addrmap_t v3_index;  /* block -> held row */
    kdh_ingest_addrmap_t v80_seen;  /* blocks the 0x80 log showed allocated, in this file */
};

/* parser.c: the Unix time of a PAT_SESSTIME match of s (1), or 0 for a date that does not exist. */
int kdh_ingest_session_clock(const char *s, const size_t *ov, double *t);
/* reader.c: the first clock of the open file fd as the parser would take it (1 with *t; 0 when
 * there is none, or fd is not a regular file). Reads with pread; uses no parser state but the
 * patterns. */
int kdh_ingest_first_clock(const kdh_ingest_parser_t *p, int fd, double *t);

/* parser.c: closes the stack being collected (emits it, or holds a !verifier 0x80 record). */
int kdh_ingest_end_stack(kdh_ingest_parser_t *p, kdh_err_t *err);

/* tables.c: table lines (poolmon, !poolused, !vm, !verifier 3); lead: the count of the line's
 * leading spaces and tabs. Returns 1 when the line was consumed, 0 when it is not a table line,
 * or a negative sink error. */
int kdh_ingest_table_line(kdh_ingest_parser_t *p, const char *s, size_t n, size_t lead, kdh_err_t *err);
/* Outside a table block, the first byte after the leading blanks of every line that
 * kdh_ingest_table_line can take (a header, "Memory:", "Sorting by", "NonPagedPool"/"PagedPool",
 * "*** Virtual Memory Usage", "Searching"/"Scanning"): the rest of the lines, most of a log, skip
 * the call. Keep in step with the checks there. */
static inline int kdh_ingest_table_start(char c)
{
    return c == 'M' || c == 'T' || c == 'S' || c == 'N' || c == 'P' || c == '*' || c == 'A';
}
/* Emits one stack through the sink (used by the !verifier 3 rows). */
int kdh_ingest_emit_stack(kdh_ingest_parser_t *p, kdh_ingest_stack_t *st, kdh_err_t *err);
void kdh_ingest_note_skip(kdh_ingest_parser_t *p);

/* poolfind.c: !poolfind output as one snapshot of the blocks found allocated, per tag and pool
 * type (allocs = blocks, bytes = their sizes). _line returns 1 when the line was consumed, 0 when
 * it is not !poolfind output (a block in progress has then been emitted), or a sink error (lead:
 * the count of leading blanks, spaces and tabs); _end
 * emits a block in progress (at a prompt, another table, the end of the file). */
int kdh_ingest_poolfind_line(kdh_ingest_parser_t *p, const char *s, size_t n, size_t lead, kdh_err_t *err);
int kdh_ingest_poolfind_end(kdh_ingest_parser_t *p, kdh_err_t *err);
/* tables.c */
int kdh_ingest_emit_sample(kdh_ingest_parser_t *p, kdh_ingest_sample_t *s, kdh_err_t *err);

/* verifier80.c: hold one !verifier 0x80 record; emit the held records oldest first. */
int kdh_ingest_v80_hold(kdh_ingest_parser_t *p, const kdh_ingest_stack_t *st, kdh_err_t *err);
int kdh_ingest_v80_flush(kdh_ingest_parser_t *p, kdh_err_t *err);
void kdh_ingest_v80_free(kdh_ingest_parser_t *p);
/* A !verifier 3 row and the 0x80 log record of the same block are one allocation: rows are held
 * to the end of the file and left out when the log gave the block's stack (which takes the
 * row's tag). */
int kdh_ingest_v3_hold(kdh_ingest_parser_t *p, const kdh_ingest_stack_t *st, kdh_err_t *err);
int kdh_ingest_v3_flush(kdh_ingest_parser_t *p, kdh_err_t *err);

#endif
