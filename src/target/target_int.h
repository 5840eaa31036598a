/* target_int.h: the target model's private state, shared by its files (cache, discovery,
 * symbols, stacks, drivers). */
#ifndef KDH_TARGET_INT_H
#define KDH_TARGET_INT_H

#include "kdh/pdb.h"
#include "kdh/symstore.h"
#include "kdh/target.h"

/* One cached range; unreadable ranges hold no data. */
typedef struct tcache_ent {
    uint64_t va;
    uint32_t len;
    int unreadable;
    uint8_t *data;
} tcache_ent_t;

typedef struct tcache {
    tcache_ent_t *v;   /* sorted by va, non-overlapping */
    size_t n, cap;
    uint64_t bytes;
} tcache_t;

typedef struct toverride {
    char name[128];
    char module[64];   /* empty for an absolute address */
    uint64_t value;    /* rva, or the address */
} toverride_t;

typedef struct tmodsym {
    kdh_pdb_t *pdb;
    kdh_pe_exports_t exports;
    int exports_read;  /* 1 read, -1 failed */
    char exports_error[160];
    int fpo_state;     /* x86 FRAMEDATA: 0 not tried, 1 loaded, -1 none */
    uint8_t *fpo;      /* 32-byte records sorted by RvaStart */
    uint32_t nfpo;
    uint8_t *names;    /* the "/names" stream: programs at 12 + offset */
    uint32_t names_len;
} tmodsym_t;

struct kdh_target {
    int have_version;
    kdh_wire_get_version_t version;
    kdh_wire_arch_t arch;
    unsigned psize;
    uint64_t stop_serial;
    uint32_t stack_hint;      /* largest stack span a walk needed (bytes from SP) */
    uint64_t skipped_serial;  /* stop whose int 3 was stepped over */
    uint64_t skipped_pc, skipped_thread, skipped_resets;
    unsigned skipped_cpu;
    unsigned verified_n, verified_threads; /* entries put in the two below */
    int no_thread_check; /* the target refused to tell a processor's thread: not asked again */
    /* Break PCs whose context agreed with the stop report (kdh_target_verify_pc): a ring, since
     * a PoolHitTag run breaks at one or two places and a breakpoint run at a handful. */
    uint64_t verified_pc[8];
    uint64_t verified_thread[512]; /* threads checked (kdh_target_verify_thread): open addressing, 0 free */

    tcache_t stop, boot;
    kdh_target_cache_stats_t cstats;
    uint64_t need_va;
    uint32_t need_len;
    kdh_target_class_t need_cls;

    int have_kdbg;
    kdh_target_kdbg_t kdbg;
    char kdbg_error[256];     /* the lenient discovery went on without the block: why */

    /* module walk (resumable) */
    int walk_done;
    uint64_t walk_cur;        /* next entry to read (head's Flink once started) */
    int walk_started;
    const char *walk_trunc;   /* why it ended early, or NULL */
    uint64_t *seen;           /* open-addressing set of visited entries */
    size_t seen_cap;
    kdh_target_module_t *mods;      /* list order */
    tmodsym_t *syms;                /* parallel to mods */
    size_t nmods;
    size_t *by_addr;                /* indices sorted by base */

    kdh_symstore_t *store;
    char sym_path_text[1024];
    toverride_t *ovr;
    size_t novr;
};

void tcache_clear(tcache_t *c);
/* kdh_unwind_find_fpo_fn over module PDBs (fpo.c). */
int target_find_fpo(void *ctx, const kdh_unwind_module_t *m, uint32_t rva, kdh_unwind_fpo_t *out);
/* Module i's WinDbg name from its file name (i == 0 is the kernel: "nt"). */
void target_module_name(const char *file, int kernel, char *out, size_t len);

#endif
