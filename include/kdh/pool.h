/* kdh/pool.h: live pool usage by tag, read from the kernel's pool tracking table (nt!PoolTrackTable)
 * as !poolused and poolmon show it. The parser is pure (bytes -> per-tag rows, x64 and x86 layouts,
 * every count bounded); a resumable step reads the table through the target model; printers write
 * the !poolused-like table and the poolmon-like sample blocks.
 *
 * What is relied on (see kd-protocol.md 3.4 and tests/fixtures/ntoskrnl.c):
 * - KDDEBUGGER_DATA64.PoolTrackTable (offset 0x1B8) is the ADDRESS of the pointer variable
 *   nt!PoolTrackTable, which holds the array address;
 * - the entry count is the value of nt!PoolTrackTableSize (a SIZE_T), found through symbols (PDB
 *   publics or a --symbol override) or given by the user; it is not in the debugger data;
 * - POOL_TRACKER_TABLE: x64 0x28 bytes {Key u32 @0, NonPagedAllocs u32 @4, NonPagedFrees u32 @8,
 *   NonPagedBytes u64 @0x10, PagedAllocs u32 @0x18, PagedFrees u32 @0x1C, PagedBytes u64 @0x20};
 *   x86 0x1C bytes {Key, NonPagedAllocs, NonPagedFrees, NonPagedBytes, PagedAllocs, PagedFrees,
 *   PagedBytes}, all u32; Key 0 is an empty entry; the PROTECTED_POOL bit (0x80000000) is cleared.
 * - Windows versions that also keep per-processor tables are summed by merging several tables
 *   into one (kdh_pool_parse adds into existing rows); kdsim models one global table only. */
#ifndef KDH_POOL_H
#define KDH_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kdh/common.h"

#define KDH_POOL_MAX_ENTRIES (1u << 20) /* PoolTrackTableSize accepted (Windows: thousands) */
#define KDH_POOL_ENTRY_X64 0x28
#define KDH_POOL_ENTRY_X86 0x1C
#define KDH_POOL_PROTECTED 0x80000000u

typedef struct kdh_pool_row {
    uint32_t key;      /* tag DWORD, PROTECTED_POOL cleared */
    char tag[5];       /* 4 display characters (non-printables '.') + NUL */
    uint64_t np_allocs, np_frees, np_bytes;
    uint64_t p_allocs, p_frees, p_bytes;
} kdh_pool_row_t;

typedef struct kdh_pool_table {
    size_t count, cap;
    kdh_pool_row_t *rows;
    size_t entries_read; /* tracker entries parsed, empty ones included */
} kdh_pool_table_t;

typedef enum kdh_pool_sort {
    KDH_POOL_SORT_TAG = 0,      /* !poolused 0 */
    KDH_POOL_SORT_NONPAGED = 1, /* !poolused 4: NonPaged Pool Consumed */
    KDH_POOL_SORT_PAGED = 2     /* !poolused 8: Paged Pool Consumed */
} kdh_pool_sort_t;

/* Bytes per tracker entry for a pointer size of 8 or 4; 0 otherwise. */
size_t kdh_pool_entry_size(unsigned pointer_size);

void kdh_pool_table_init(kdh_pool_table_t *tab);
void kdh_pool_table_free(kdh_pool_table_t *tab);

/* Parses `entries` tracker entries from buf (len must hold them all) and adds them into tab:
 * a key already present has its counters summed (per-processor tables). Empty entries are
 * skipped. KDH_ERANGE when entries exceeds KDH_POOL_MAX_ENTRIES or len is short, KDH_EINVAL for a
 * pointer size other than 4 or 8. */
int kdh_pool_parse(kdh_pool_table_t *tab, const uint8_t *buf, size_t len, unsigned pointer_size,
                   uint64_t entries, kdh_err_t *err);

/* Row of a tag DWORD, or NULL. */
const kdh_pool_row_t *kdh_pool_find(const kdh_pool_table_t *tab, uint32_t key);

/* Sorts like !poolused: by tag text, or by used bytes of one pool (largest first, tag breaks ties). */
void kdh_pool_sort(kdh_pool_table_t *tab, kdh_pool_sort_t by);

/* 1 when now looks like a kernel that started over since prev: the tracker's counters only grow
 * while a kernel runs, so most tags seen in both counting fewer operations (allocations plus
 * frees) means a reboot, even one that kept the kernel base (no KASLR). One tag going down is a
 * 32-bit counter wrapping, not a reboot: it takes at least 2 tags in common, more than half down. */
int kdh_pool_restarted(const kdh_pool_table_t *prev, const kdh_pool_table_t *now);

/* Sum of every row (key 0, tag "TOTL"). */
void kdh_pool_totals(const kdh_pool_table_t *tab, kdh_pool_row_t *sum);

/* The !poolused-like table: "Sorting by ...", NonPaged/Paged column groups, one row per tag with
 * outstanding allocations (Allocs - Frees) and used bytes, the pooltag owner (owner_fn may be
 * NULL), then a TOTAL row. top = 0 prints every row. Rows are printed in the table's order. */
typedef const char *(*kdh_pool_owner_fn)(void *ctx, const char *tag);
int kdh_pool_print_poolused(FILE *out, const kdh_pool_table_t *tab, kdh_pool_sort_t by, unsigned top,
                            kdh_pool_owner_fn owner_fn, void *owner_ctx);

/* One poolmon-like sample block (log-formats.md 9 layout): a title line, the column header, then
 * one row per tag and pool type in use: " TAG  Nonp|Paged  Allocs (dA) Frees (dF) Diff Bytes (dB)
 * PerAlloc". Deltas are against prev (the previous sample; NULL: deltas 0). */
int kdh_pool_print_poolmon(FILE *out, const char *title, const kdh_pool_table_t *tab,
                           const kdh_pool_table_t *prev);

/* ---- reading the table from a stopped target (resumable step over the target model) ---- */
struct kdh_target;

typedef struct kdh_pool_read {
    /* in */
    uint64_t table_size;        /* entries; 0 = the value of nt!PoolTrackTableSize */
    unsigned full_every;        /* read the whole table every Nth sample (0 = 10; 1 = always) */
    /* out (valid after KDH_OK) */
    uint64_t table_va;          /* the array (value of nt!PoolTrackTable) */
    uint64_t entries;
    char size_source[64];       /* "ntkrnlmp.pdb", "--symbol", "--table-size" */
    kdh_pool_table_t tab;       /* rows sorted by key */
    int full;                   /* this sample read the whole table */
    uint64_t bytes_asked;       /* table bytes this sample needed */
    unsigned samples;           /* successful reads so far */
    /* private */
    uint8_t *buf_;
    size_t buf_len_;
    uint8_t *used_;             /* one byte per entry: occupied at the last full read */
    uint64_t used_va_, used_entries_;
    int used_stable_;           /* the last two full reads found the same slots in use */
} kdh_pool_read_t;

/* Reads the table at the current stop: KDDEBUGGER_DATA64.PoolTrackTable -> pointer -> array of
 * PoolTrackTableSize entries (per-stop cache). Needs the debugger data (kdh_target_step_kdbg).
 * Wire bytes: entries are never freed and a tag keeps its slot (open addressing), so between full
 * reads only the slots occupied at the last full read are fetched (runs of them, small gaps
 * bridged), once two full reads in a row agree on them; a tag first seen since then appears at
 * the next full read (every full_every samples).
 * Answers KDH_ENOTCACHED like every target step; the rows are rebuilt on each call, so re-running
 * after a fetch is correct. */
int kdh_pool_step_read(struct kdh_target *t, kdh_pool_read_t *r, kdh_err_t *err);
/* The target rebooted: the slots in use are the new kernel's, so the next read reads the whole
 * table. */
void kdh_pool_read_restart(kdh_pool_read_t *r);
void kdh_pool_read_free(kdh_pool_read_t *r);

/* ---- !vm-style pool totals and limits (KDDEBUGGER_DATA64) ----
 * KDDEBUGGER_DATA64 (wdbgexts.h field list, offsets as in kd-protocol.md 3.4) holds the ADDRESSES
 * of the memory manager's variables below (the target model reads them into kdh_target_kdbg_t's
 * mm_* fields); each is a SIZE_T in the kernel. Units: the two
 * ...InBytes maxima count bytes; the others count pages, as !vm prints them (pages, then Kb).
 * Only these are read: the paged pool's own usage lives in MmPagedPoolInformation, a structure
 * whose layout no public header gives, so "PagedPool Commit" is shown instead of "PagedPool Usage".
 * A field is shown only when the block is large enough to hold it, its pointer is not 0 and the
 * variable is readable. Page size: 4 KiB on both x86 and x64. */
typedef enum kdh_pool_vm_field {
    KDH_POOL_VM_NONPAGED_USAGE = 0, /* +0x250 MmAllocatedNonPagedPool, pages */
    KDH_POOL_VM_NONPAGED_MAX,       /* +0x100 MmMaximumNonPagedPoolInBytes, bytes */
    KDH_POOL_VM_PAGED_COMMIT,       /* +0x170 MmPagedPoolCommit, pages */
    KDH_POOL_VM_PAGED_MAX,          /* +0x140 MmSizeOfPagedPoolInBytes, bytes */
    KDH_POOL_VM_COMMITTED,          /* +0x150 MmTotalCommittedPages, pages */
    KDH_POOL_VM_COMMIT_LIMIT,       /* +0x148 MmTotalCommitLimit, pages */
    KDH_POOL_VM_COUNT
} kdh_pool_vm_field_t;

#define KDH_POOL_PAGE_SIZE 4096u

typedef struct kdh_pool_vm_info {
    const char *label;    /* as !vm prints it: "NonPagedPool Usage" */
    const char *key;      /* JSON key of the run directory's pool_totals.jsonl: "nonpaged_usage_kb" */
    const char *variable; /* nt's variable: "MmAllocatedNonPagedPool" */
    int in_bytes;         /* 1: the variable counts bytes; 0: pages */
} kdh_pool_vm_info_t;

typedef struct kdh_pool_vm {
    int have[KDH_POOL_VM_COUNT];
    uint64_t value[KDH_POOL_VM_COUNT]; /* the variable as read, in its own unit */
} kdh_pool_vm_t;

const kdh_pool_vm_info_t *kdh_pool_vm_info(kdh_pool_vm_field_t f);
/* The value in Kb (bytes / 1024, or pages * 4) and in pages (bytes / 4096, rounded down). */
uint64_t kdh_pool_vm_kb(const kdh_pool_vm_t *vm, kdh_pool_vm_field_t f);
uint64_t kdh_pool_vm_pages(const kdh_pool_vm_t *vm, kdh_pool_vm_field_t f);

/* Reads the variables at the current stop (resumable step; needs kdh_target_step_kdbg done).
 * A field the target does not give stays have = 0; KDH_OK even when none is given. */
int kdh_pool_step_vm(struct kdh_target *t, kdh_pool_vm_t *vm, kdh_err_t *err);

/* The !vm-like lines ("\tNonPagedPool Usage:     N (     M Kb)"), one per field given; a line
 * saying so when none is. */
int kdh_pool_print_vm(FILE *out, const kdh_pool_vm_t *vm);

#endif
