/* kdh/target.h: the target model: what the host knows about the machine at the other end of the
 * cable (version, KDDEBUGGER_DATA64, loaded modules and their identities, symbols, stacks).
 *
 * Everything that needs target memory is a RESUMABLE PURE STEP over a memory cache: a step reads
 * through the cache; on a miss it returns KDH_ENOTCACHED and kdh_target_need() names the exact
 * range it wants. A driver (kdh_target_run_sync for one-target tools, kdh_target_run_async for
 * the daemon's loop) fetches that range with one ReadVirtualMemory, adds it to the cache and
 * runs the step again. There are two caches: per stop (stacks, list entries, data; dropped when
 * the target runs again) and per boot (PE headers, directories, .pdata/.xdata and code of the
 * loaded modules; dropped on reboot). The target is untrusted: every pointer, length and count
 * read from it is bounded, and a bad module gives an error for that module only. */
#ifndef KDH_TARGET_H
#define KDH_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "kdh/common.h"
#include "kdh/kd.h"
#include "kdh/pe.h"
#include "kdh/unwind.h"
#include "kdh/wire.h"

#define KDH_TARGET_MAX_MODULES 4096
#define KDH_TARGET_MAX_NAME_BYTES 512   /* UNICODE_STRING Length accepted for a module name */
#define KDH_TARGET_KDBG_READ 0x370      /* bytes of KDDEBUGGER_DATA64 read (up to PteBase) */
#define KDH_TARGET_KDBG_MAX_SIZE 0x2000 /* Header.Size above this is not a real block */
#define KDH_TARGET_FETCH_MAX (1u << 20) /* largest single range a step may ask for */

typedef enum kdh_target_class {
    KDH_TARGET_STOP = 0, /* volatile: valid during one stop */
    KDH_TARGET_BOOT = 1  /* immutable while this kernel runs */
} kdh_target_class_t;

typedef struct kdh_target kdh_target_t;

/* KDDEBUGGER_DATA64 fields (kd-protocol.md 3.4); pointers sign-extended on x86. */
typedef struct kdh_target_kdbg {
    uint64_t address;              /* where the block is */
    uint32_t size;                 /* Header.Size */
    uint64_t kern_base;
    uint64_t breakpoint_with_status;
    uint64_t ps_loaded_module_list;
    uint64_t ps_active_process_head;
    uint64_t pool_track_table;
    uint64_t mm_special_pool_tag;  /* address of nt!MmSpecialPoolTag */
    uint64_t ki_processor_block;
    uint64_t kernel_verifier;
    uint16_t offset_prcb_current_thread;
    /* addresses of the memory manager's pool totals and limits (0 when the block is too short) */
    uint64_t mm_maximum_non_paged_pool_in_bytes, mm_size_of_paged_pool_in_bytes, mm_total_commit_limit,
        mm_total_committed_pages, mm_paged_pool_commit, mm_allocated_non_paged_pool;
} kdh_target_kdbg_t;

typedef struct kdh_target_module {
    uint64_t entry;                /* LDR_DATA_TABLE_ENTRY address */
    uint64_t base;                 /* DllBase */
    uint32_t size;                 /* SizeOfImage from the list entry */
    char file[128];                /* BaseDllName, ASCII ('?' for anything else) */
    char name[64];                 /* WinDbg module name: "nt" for the kernel, else file without extension */
    int ok;                        /* identity read; error[] says why not */
    char error[192];
    uint32_t timestamp;            /* from the in-memory PE header */
    uint32_t size_of_image;
    uint16_t machine;
    uint32_t pdata_rva, pdata_size;
    int has_pdb;                   /* CodeView RSDS found */
    uint8_t guid[16];
    uint32_t age;
    char pdb_name[128];
    char key[200];                 /* docs/run-format.md module identity key */
    /* symbols (kdh_target_load_symbols) */
    int sym_tried;
    int sym_found;
    char sym_path[512];            /* the PDB file used, or why none */
} kdh_target_module_t;

/* ---- life ---- */
int kdh_target_new(kdh_target_t **out, kdh_err_t *err);
void kdh_target_free(kdh_target_t *t);

/* From GetVersion: architecture, pointer size, kernel base, list heads. KDH_EUNSUPPORTED for a
 * machine type other than AMD64/i386. A different kernel base than before drops the per-boot
 * cache and the module list (the target rebooted). */
int kdh_target_set_version(kdh_target_t *t, const kdh_wire_get_version_t *v, kdh_err_t *err);
const kdh_wire_get_version_t *kdh_target_version(const kdh_target_t *t);
kdh_wire_arch_t kdh_target_arch(const kdh_target_t *t);
unsigned kdh_target_pointer_size(const kdh_target_t *t);

/* ---- memory cache ---- */
/* Reads len bytes at va from either cache. KDH_OK with *got == len; KDH_OK with *got < len when
 * the bytes from va + *got are known to be unreadable; KDH_ENOTCACHED when some are missing
 * (then kdh_target_need() gives the first missing range, tagged with cls). */
int kdh_target_read(kdh_target_t *t, kdh_target_class_t cls, uint64_t va, void *buf, uint32_t len,
                    uint32_t *got);
/* The same, but a short read is KDH_ERANGE with a message naming what was being read. */
int kdh_target_read_full(kdh_target_t *t, kdh_target_class_t cls, uint64_t va, void *buf,
                         uint32_t len, const char *what, kdh_err_t *err);
/* Pointer of the target's size (sign-extended on x86). */
int kdh_target_read_ptr(kdh_target_t *t, kdh_target_class_t cls, uint64_t va, uint64_t *out,
                        const char *what, kdh_err_t *err);
void kdh_target_need(const kdh_target_t *t, uint64_t *va, uint32_t *len, kdh_target_class_t *cls);
/* Adds a fetch result: got bytes of the asked ones arrived; the rest of that page (clipped to
 * the asked range) is recorded as unreadable, so the step does not ask again. */
int kdh_target_fill(kdh_target_t *t, kdh_target_class_t cls, uint64_t va, const void *buf,
                    uint32_t got, uint32_t asked, kdh_err_t *err);
/* Drops the per-stop cache when serial differs from the last one seen (kdh_kd_stop_serial). */
void kdh_target_sync_stop(kdh_target_t *t, uint64_t serial);
void kdh_target_drop_boot(kdh_target_t *t);
typedef struct kdh_target_cache_stats {
    uint64_t stop_bytes, boot_bytes;   /* bytes held */
    uint64_t hits, misses;             /* read calls served / answered KDH_ENOTCACHED */
    uint64_t fetches, fetched_bytes;   /* ranges added by kdh_target_fill */
} kdh_target_cache_stats_t;
void kdh_target_cache_stats(const kdh_target_t *t, kdh_target_cache_stats_t *out);

/* ---- discovery steps (resumable) ---- */
/* KDDEBUGGER_DATA64 through DebuggerDataList's Flink; checks 'KDBG' and Size. */
int kdh_target_step_kdbg(kdh_target_t *t, kdh_err_t *err);
const kdh_target_kdbg_t *kdh_target_kdbg(const kdh_target_t *t);   /* NULL until read */
/* Walks PsLoadedModuleList (at most KDH_TARGET_MAX_MODULES entries, cycles detected) and reads
 * each module's identity. A module whose entry or image is bad keeps ok = 0 and error[]; the
 * walk goes on. Fails only when the list itself cannot be followed from the head. */
int kdh_target_step_modules(kdh_target_t *t, kdh_err_t *err);
/* Both of the above. */
int kdh_target_step_discover(kdh_target_t *t, kdh_err_t *err);
/* The same, except that a KDDEBUGGER_DATA64 that is damaged or out of reach (bad OwnerTag or
 * Size, a wild or unreadable DebuggerDataList, an unreadable block) does not stop it: the module
 * list comes from GetVersion, kdh_target_kdbg() stays NULL and kdh_target_kdbg_error() says
 * why. For users that can do without the block (the harvest: it only uses
 * BreakpointWithStatus to tell a manual break-in from a hit). */
int kdh_target_step_discover_lenient(kdh_target_t *t, kdh_err_t *err);
/* Why the block was not read by the lenient step, or NULL. */
const char *kdh_target_kdbg_error(const kdh_target_t *t);
/* 1 when the walk ended early (cycle, limit, unreadable link); *why says how. */
int kdh_target_modules_truncated(const kdh_target_t *t, const char **why);

size_t kdh_target_module_count(const kdh_target_t *t);
const kdh_target_module_t *kdh_target_module_at(const kdh_target_t *t, size_t i);
/* Module whose [base, base+size) holds va (binary search), or NULL. */
const kdh_target_module_t *kdh_target_module_by_addr(const kdh_target_t *t, uint64_t va);
/* By WinDbg name ("nt", "leakdrv") or file name ("leakdrv.sys"), case-blind. */
const kdh_target_module_t *kdh_target_module_by_name(const kdh_target_t *t, const char *name);

/* The identity key of docs/run-format.md: "<file>/<TS %08X><SizeOfImage %x>[/<GUID><AGE>]". */
int kdh_target_module_key(const char *file, uint32_t timestamp, uint32_t size_of_image,
                          const uint8_t *guid, uint32_t age, char *out, size_t out_len);

/* ---- symbols ---- */
/* Symbol path (NULL: _NT_SYMBOL_PATH, else none); default_cache serves "srv*". */
int kdh_target_set_symbol_path(kdh_target_t *t, const char *path, const char *default_cache,
                               kdh_err_t *err);
/* "NAME=nt+0x1234", "NAME=module+0xRVA" or "NAME=0xADDRESS". Overrides win over the PDB and
 * the exports: they are the user's explicit word. */
int kdh_target_add_override(kdh_target_t *t, const char *spec, kdh_err_t *err);
/* Finds and opens module i's PDB (GUID/age checked). KDH_ENOTFOUND with the places tried. */
int kdh_target_load_symbols(kdh_target_t *t, size_t i, kdh_err_t *err);
/* Resolves "nt!PoolHitTag" (or "PoolHitTag" = nt): override, then PDB publics, then the
 * exports read from target memory (a step: may answer KDH_ENOTCACHED). source names where it
 * came from ("ntkrnlmp.pdb", "exports", "--symbol"). KDH_ENOTFOUND with every source tried. */
int kdh_target_step_resolve(kdh_target_t *t, const char *name, uint64_t *addr, char *source,
                            size_t source_len, kdh_err_t *err);
/* "module!symbol+0xoff" (publics), "module+0xrva" without symbols, or "0x..." outside every
 * module. Never reads target memory. */
void kdh_target_symbolize(kdh_target_t *t, uint64_t va, char *out, size_t out_len);

/* ---- stacks ---- */
typedef struct kdh_target_frame {
    const kdh_target_module_t *module; /* NULL outside every module */
    uint32_t rva;
    uint64_t pc;
    uint64_t sp;                       /* Child-SP */
    uint32_t flags;                    /* KDH_UNWIND_F_* */
} kdh_target_frame_t;

typedef struct kdh_target_stack {
    kdh_unwind_t u;
    int started;
    uint32_t rounds;                   /* steps that answered KDH_ENOTCACHED */
    uint64_t sp0;                      /* SP of the stop */
    int prefetched;                    /* the learned stack span was asked for */
    uint32_t n_frames;
    kdh_target_frame_t frames[KDH_UNWIND_FRAMES_MAX];
} kdh_target_stack_t;

/* CONTEXT slice a stack needs: x64 RSP+RBP (0x98, 16 bytes), x86 EBP..ESP (0xB4, 20 bytes). */
void kdh_target_stack_slice(const kdh_target_t *t, uint32_t *offset, uint32_t *len);
/* Starts a walk from pc (the state change's ProgramCounter) and that slice. */
int kdh_target_stack_init(kdh_target_t *t, kdh_target_stack_t *s, uint64_t pc,
                          const uint8_t *slice, size_t slice_len, kdh_err_t *err);
/* The walk as a step (stack bytes per stop, unwind data and code per boot). Its first miss
 * asks for the stack span earlier walks needed (the largest seen, up to 4 KiB) in one read, so
 * a typical capture costs one stack fetch instead of one per frame. */
int kdh_target_step_stack(kdh_target_t *t, kdh_target_stack_t *s, kdh_err_t *err);

/* ---- drivers ---- */
typedef int (*kdh_target_step_fn)(kdh_target_t *t, void *arg, kdh_err_t *err);
/* Runs step, fetching each missing range with one kdh_kd_read_virtual + kdh_kd_wait, until it
 * returns something other than KDH_ENOTCACHED. Needs a stopped target and a kd with a loop. */
int kdh_target_run_sync(kdh_target_t *t, kdh_kd_t *kd, kdh_target_step_fn step, void *arg,
                        kdh_err_t *err);

typedef struct kdh_target_job kdh_target_job_t;
typedef void (*kdh_target_job_cb)(kdh_target_job_t *job, int status);
struct kdh_target_job {
    kdh_target_t *t;
    kdh_kd_t *kd;
    kdh_target_step_fn step;
    void *arg;
    kdh_target_job_cb done;
    void *user;
    kdh_err_t err;                  /* why status != KDH_OK */
    uint32_t fetches;               /* ReadVirtualMemory calls made */
    /* private */
    kdh_kd_req_t req;
    uint8_t *buf;
    uint64_t va;
    uint32_t len;
    kdh_target_class_t cls;
    uint64_t last_va;
    uint32_t last_len, repeats;
};
/* Starts step on the loop; done runs exactly once (possibly from inside this call when the
 * step needs nothing). The job struct is caller-owned and must live until done. */
void kdh_target_run_async(kdh_target_job_t *job, kdh_target_t *t, kdh_kd_t *kd,
                          kdh_target_step_fn step, void *arg, kdh_target_job_cb done, void *user);

/* One-target helpers for command-line tools (all blocking through kdh_kd_wait): GetVersion +
 * discovery; and the stack of the current stop's processor. */
int kdh_target_attach_sync(kdh_target_t *t, kdh_kd_t *kd, kdh_err_t *err);
/* kdh_target_step_resolve of name with the reads it needs (blocking); *addr and source (may be
 * NULL; up to 63 characters) are written only on success. */
int kdh_target_resolve_sync(kdh_target_t *t, kdh_kd_t *kd, const char *name, uint64_t *addr, char *source,
                            size_t source_len, kdh_err_t *err);
int kdh_target_capture_sync(kdh_target_t *t, kdh_kd_t *kd, kdh_target_stack_t *s, kdh_err_t *err);

/* Steps over a hard-coded int 3 (break-in, DbgBreakPoint, PoolHitTag) before continuing: when
 * the stop is a breakpoint exception whose instruction stream starts with 0xCC, PC += 1 through
 * SetContext (otherwise the target would execute the int 3 again forever). */
int kdh_target_skip_int3(kdh_target_t *t, kdh_kd_t *kd, kdh_err_t *err);
/* The PC of a breakpoint stop comes from a report whose checksum is a byte sum: two damaged bits
 * that cancel pass it, and PC += 1 from a damaged PC sends the kernel into the middle of nowhere.
 * The first stop at each PC has it checked against the context's (one small read); a PC seen
 * right before is trusted. A disagreeing report is corrected from the context
 * (kdh_kd_correct_pc). A context PC one past the report's is our own step, reported again. */
int kdh_target_verify_pc(kdh_target_t *t, kdh_kd_t *kd, kdh_err_t *err);
/* x64: the thread of an exception stop from a thread not seen before is checked against the
 * processor's current thread (control space selector 3, the KTHREAD pointer) and the stop corrected
 * when they differ (kdh_kd_correct_thread): two damaged bits in the report's thread field can cancel
 * in the byte-sum checksum, and the event would name a thread that does not exist. One small read per
 * new thread; a target that refuses it is not asked again. x86's control space holds no thread
 * pointer: nothing is checked there. */
int kdh_target_verify_thread(kdh_target_t *t, kdh_kd_t *kd, kdh_err_t *err);
/* The program counter in the current stop's context on its processor (one slice of 4 or 8 bytes;
 * also the read a SetContextEx needs first). pc may be NULL. */
int kdh_target_read_pc(kdh_target_t *t, kdh_kd_t *kd, uint64_t *pc, kdh_err_t *err);

/* ---- one-target session (command-line tools) ---- */
typedef struct kdh_target_session kdh_target_session_t;
/* Opens port (any kdh_transport spec), breaks in, waits for the stop (a silent line gives the
 * link's "no valid packet in 5 s at N baud" message), asks GetVersion and discovers the
 * target. *out is set even on failure (close it; detach first when it is stopped). */
int kdh_target_session_open(kdh_target_session_t **out, const char *port, unsigned baud,
                            kdh_err_t *err);
kdh_kd_t *kdh_target_session_kd(kdh_target_session_t *s);
kdh_target_t *kdh_target_session_target(kdh_target_session_t *s);
uv_loop_t *kdh_target_session_loop(kdh_target_session_t *s);
/* After a Continue: runs the loop until the next stop (or the port dies, or timeout_ms). */
int kdh_target_session_wait_stop(kdh_target_session_t *s, unsigned timeout_ms, kdh_err_t *err);
int kdh_target_session_stopped(const kdh_target_session_t *s);
/* SwitchProcessor and wait for that processor's stop. */
int kdh_target_session_switch(kdh_target_session_t *s, unsigned cpu, kdh_err_t *err);
/* Clean detach (kd-protocol.md 7): int 3 stepped over, Continue2 DBG_CONTINUE with Dr7 0,
 * its ACK awaited and the write buffer drained. Nothing else was armed by a session. */
int kdh_target_session_detach(kdh_target_session_t *s, kdh_err_t *err);
void kdh_target_session_close(kdh_target_session_t *s);

#endif
