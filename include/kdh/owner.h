/* kdh/owner.h: which driver uses a pool tag: the Linux `findstr /s` over driver images. Searches a
 * PE image (a file, or an image mapped in target memory through kdh_pe's read callback) for the
 * tag's four bytes, section by section, and says whether a hit lies in code and fits the imm32 of
 * an instruction form that carries a tag (mov r32/r/m32, push, cmp, test...), in code but fits no
 * form we know, or in data. For 'None' (what nt gives untagged allocations) it also names the
 * images importing the untagged ExAllocatePool / ExAllocatePoolWithQuota. Pure over kdh_pe. */
#ifndef KDH_OWNER_H
#define KDH_OWNER_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"
#include "kdh/pe.h"

#define KDH_OWNER_MAX_SECTION (64u << 20) /* bytes of one section searched */
#define KDH_OWNER_MAX_HITS 4096           /* hits kept per result; more are counted in dropped */

typedef enum kdh_owner_kind {
    KDH_OWNER_IMM = 0,  /* executable section, the bytes are the imm32 of a recognised form */
    KDH_OWNER_CODE = 1, /* executable section, no recognised form ends there */
    KDH_OWNER_DATA = 2, /* a section that is not executable */
    KDH_OWNER_IMPORT = 3 /* 'None' only: the image imports an untagged allocator (rva = IAT slot) */
} kdh_owner_kind_t;

typedef struct kdh_owner_hit {
    char module[128];  /* file or module name as the caller gave it */
    char section[9];
    uint32_t rva;
    kdh_owner_kind_t kind;
    uint32_t insn_rva; /* KDH_OWNER_IMM: where the instruction starts */
    char form[48];     /* "mov r8d, imm32", "push imm32", "ExAllocatePool" (IMPORT), "" */
} kdh_owner_hit_t;

typedef struct kdh_owner_result {
    size_t count, cap;
    kdh_owner_hit_t *hits;
    size_t dropped; /* hits beyond KDH_OWNER_MAX_HITS */
    size_t unreadable; /* sections skipped because their bytes could not be read */
} kdh_owner_result_t;

void kdh_owner_result_init(kdh_owner_result_t *res);
void kdh_owner_result_free(kdh_owner_result_t *res);

/* Does the imm32 at offset pos of code (len bytes, first byte at rva base_rva) end a recognised
 * instruction form? x64 selects the 64-bit decoding (REX prefixes, RIP-relative). Fills form and
 * *insn_off (the instruction's first byte) and returns 1, else 0. Pure and bounded: looks at most
 * 8 bytes before pos. */
int kdh_owner_imm_form(const uint8_t *code, size_t len, size_t pos, int x64, size_t *insn_off, char *form,
                       size_t form_len);

/* Searches every section of pe for the tag DWORD (little-endian) and appends the hits to res.
 * Sections are read through kdh_pe_read_rva, so a memory image's read callback may answer
 * KDH_ENOTCACHED (passed through; hits of this call are then removed so a re-run does not
 * duplicate them). Sections larger than KDH_OWNER_MAX_SECTION are searched in their first part
 * only. For tag 'None' the untagged-allocator imports are appended too. */
int kdh_owner_scan_image(const kdh_pe_t *pe, const char *module, uint32_t tag, kdh_owner_result_t *res,
                         kdh_err_t *err);

/* Appends one KDH_OWNER_IMPORT hit per untagged allocator the image imports. */
int kdh_owner_untagged_imports(const kdh_pe_t *pe, const char *module, kdh_owner_result_t *res, kdh_err_t *err);

/* Ranks hits: untagged-allocator imports first (for 'None' they name the drivers; nt's own
 * immediate is the allocator), then immediate operands, other code, data; within a kind by module
 * then rva (stable over runs). */
void kdh_owner_sort(kdh_owner_result_t *res);

/* Modules in rank order, each once: fills up to max names (pointers into res), returns the count. */
size_t kdh_owner_modules(const kdh_owner_result_t *res, const char **names, size_t max);

const char *kdh_owner_kind_name(kdh_owner_kind_t kind); /* "immediate", "code", "data", "import" */

#endif
