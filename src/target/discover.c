/* discover.c: what a stopped target is: GetVersion facts, KDDEBUGGER_DATA64 and the loaded
 * module list with each module's identity (PE TimeDateStamp/SizeOfImage, CodeView GUID/age).
 * Steps over the cache (target_int.h); the module walk keeps its cursor so each round trip only
 * resumes it. Offsets: kd-protocol.md 3.3, 3.4 and 5. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "target_int.h"

#define KDBG_TAG 0x4742444Bu /* "KDBG" */
#define KDBG_MIN_SIZE 0x50u  /* must reach PsLoadedModuleList at 0x48 */

int kdh_target_new(kdh_target_t **out, kdh_err_t *err)
{
    kdh_target_t *t = calloc(1, sizeof *t);
    if (!t)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory creating the target model");
    t->psize = 8;
    t->stop_serial = UINT64_MAX;
    t->skipped_serial = UINT64_MAX;
    *out = t;
    return KDH_OK;
}

static void drop_modules(kdh_target_t *t)
{
    for (size_t i = 0; i < t->nmods; i++) {
        if (t->syms[i].pdb)
            kdh_pdb_close(t->syms[i].pdb);
        if (t->syms[i].exports_read == 1)
            kdh_pe_exports_free(&t->syms[i].exports);
        free(t->syms[i].fpo);
        free(t->syms[i].names);
    }
    free(t->mods);
    free(t->syms);
    free(t->by_addr);
    free(t->seen);
    t->mods = NULL;
    t->syms = NULL;
    t->by_addr = NULL;
    t->seen = NULL;
    t->seen_cap = 0;
    t->nmods = 0;
    t->walk_done = t->walk_started = 0;
    t->walk_trunc = NULL;
    t->have_kdbg = 0;
    t->kdbg_error[0] = 0; /* a new boot's block is read again */
}

void kdh_target_free(kdh_target_t *t)
{
    if (!t)
        return;
    drop_modules(t);
    tcache_clear(&t->stop);
    tcache_clear(&t->boot);
    if (t->store)
        kdh_symstore_free(t->store);
    free(t->ovr);
    free(t);
}

int kdh_target_set_version(kdh_target_t *t, const kdh_wire_get_version_t *v, kdh_err_t *err)
{
    kdh_wire_arch_t arch;
    if (v->machine_type == KDH_PE_MACHINE_AMD64)
        arch = KDH_WIRE_ARCH_AMD64;
    else if (v->machine_type == KDH_PE_MACHINE_I386)
        arch = KDH_WIRE_ARCH_X86;
    else
        return kdh_err_set(err, KDH_EUNSUPPORTED,
                           "target machine type 0x%04x is neither x64 (0x8664) nor x86 (0x014c)",
                           v->machine_type);
    if (t->have_version && (t->version.kern_base != v->kern_base || t->arch != arch)) {
        drop_modules(t);
        kdh_target_drop_boot(t);
        tcache_clear(&t->stop);
    }
    t->version = *v;
    t->arch = arch;
    t->psize = arch == KDH_WIRE_ARCH_AMD64 ? 8 : 4;
    t->have_version = 1;
    return KDH_OK;
}

const kdh_wire_get_version_t *kdh_target_version(const kdh_target_t *t)
{
    return t->have_version ? &t->version : NULL;
}
kdh_wire_arch_t kdh_target_arch(const kdh_target_t *t) { return t->arch; }
unsigned kdh_target_pointer_size(const kdh_target_t *t) { return t->psize; }

/* A pointer the kernel could hold for its own structures: system space (x64 canonical upper
 * half, x86 above 2 GiB, sign-extended), aligned as asked. */
static int kernel_ptr(const kdh_target_t *t, uint64_t p, uint64_t align)
{
    if (p & (align - 1))
        return 0;
    if (t->psize == 8)
        return p >= 0xFFFF800000000000ull;
    return p >= 0xFFFFFFFF80000000ull;
}

/* ---- KDDEBUGGER_DATA64 ------------------------------------------------------------------------ */

/* A ULONG64 field of the block read into b (KDH_TARGET_KDBG_READ bytes, zero past what was
 * read): 0 unless the whole field lies within Header.Size. */
static uint64_t kdbg_u64(const uint8_t *b, uint32_t size, uint32_t off)
{
    return off + 8u <= size && off + 8u <= KDH_TARGET_KDBG_READ ? kdh_get_u64(b + off) : 0;
}

int kdh_target_step_kdbg(kdh_target_t *t, kdh_err_t *err)
{
    if (t->have_kdbg)
        return KDH_OK;
    if (!t->have_version)
        return kdh_err_set(err, KDH_EINVAL, "GetVersion has not been asked yet");
    uint64_t list = t->version.debugger_data_list;
    if (!list || !kernel_ptr(t, list, t->psize))
        return kdh_err_set(err, KDH_ECORRUPT, "GetVersion gave DebuggerDataList 0x%llx, not a kernel address",
                           (unsigned long long)list);
    uint64_t blk;
    int rc = kdh_target_read_ptr(t, KDH_TARGET_BOOT, list, &blk, "DebuggerDataList", err);
    if (rc != KDH_OK)
        return rc;
    if (!kernel_ptr(t, blk, 8))
        return kdh_err_set(err, KDH_ECORRUPT, "DebuggerDataList's Flink 0x%llx is not a kernel address",
                           (unsigned long long)blk);
    uint8_t h[0x18];
    rc = kdh_target_read_full(t, KDH_TARGET_BOOT, blk, h, sizeof h, "KDDEBUGGER_DATA64 header", err);
    if (rc != KDH_OK)
        return rc;
    uint32_t tag = kdh_get_u32(h + 0x10), size = kdh_get_u32(h + 0x14);
    if (tag != KDBG_TAG)
        return kdh_err_set(err, KDH_ECORRUPT, "KDDEBUGGER_DATA64 at 0x%llx has OwnerTag 0x%08x, not 'KDBG'",
                           (unsigned long long)blk, tag);
    if (size < KDBG_MIN_SIZE || size > KDH_TARGET_KDBG_MAX_SIZE)
        return kdh_err_set(err, KDH_ECORRUPT, "KDDEBUGGER_DATA64 at 0x%llx has Size 0x%x (expected 0x%x..0x%x)",
                           (unsigned long long)blk, size, KDBG_MIN_SIZE, KDH_TARGET_KDBG_MAX_SIZE);
    uint8_t b[KDH_TARGET_KDBG_READ];
    memset(b, 0, sizeof b);
    uint32_t n = size < sizeof b ? size : (uint32_t)sizeof b;
    rc = kdh_target_read_full(t, KDH_TARGET_BOOT, blk, b, n, "KDDEBUGGER_DATA64", err);
    if (rc != KDH_OK)
        return rc;
    kdh_target_kdbg_t *k = &t->kdbg;
    memset(k, 0, sizeof *k);
    k->address = blk;
    k->size = size;
    /* fields past Size stay 0: an older block simply lacks them */
    k->kern_base = kdbg_u64(b, size, 0x18);
    k->breakpoint_with_status = kdbg_u64(b, size, 0x20);
    k->ps_loaded_module_list = kdbg_u64(b, size, 0x48);
    k->ps_active_process_head = kdbg_u64(b, size, 0x50);
    k->mm_maximum_non_paged_pool_in_bytes = kdbg_u64(b, size, 0x100);
    k->mm_size_of_paged_pool_in_bytes = kdbg_u64(b, size, 0x140);
    k->mm_total_commit_limit = kdbg_u64(b, size, 0x148);
    k->mm_total_committed_pages = kdbg_u64(b, size, 0x150);
    k->mm_paged_pool_commit = kdbg_u64(b, size, 0x170);
    k->pool_track_table = kdbg_u64(b, size, 0x1B8);
    k->ki_processor_block = kdbg_u64(b, size, 0x218);
    k->mm_special_pool_tag = kdbg_u64(b, size, 0x238);
    k->kernel_verifier = kdbg_u64(b, size, 0x240);
    k->mm_allocated_non_paged_pool = kdbg_u64(b, size, 0x250);
    k->offset_prcb_current_thread = 0x2B4u + 2u <= size ? kdh_get_u16(b + 0x2B4) : 0;
    t->have_kdbg = 1;
    return KDH_OK;
}

const kdh_target_kdbg_t *kdh_target_kdbg(const kdh_target_t *t)
{
    return t->have_kdbg ? &t->kdbg : NULL;
}

/* ---- module identity -------------------------------------------------------------------------- */

/* A module name character as kept: printable ASCII except the path separators ('/' would split
 * identity keys and paths: never let a target put one there); anything else becomes '?'. */
static char safe_name_char(unsigned c)
{
    return (c >= 0x20 && c < 0x7F && c != '/' && c != '\\') ? (char)c : '?';
}

void target_module_name(const char *file, int kernel, char *out, size_t len)
{
    if (kernel) {
        snprintf(out, len, "nt");
        return;
    }
    snprintf(out, len, "%s", file);
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = 0;
}

int kdh_target_module_key(const char *file, uint32_t timestamp, uint32_t size_of_image,
                          const uint8_t *guid, uint32_t age, char *out, size_t out_len)
{
    int rc = kdh_pe_image_key(file, timestamp, size_of_image, out, out_len);
    if (rc != KDH_OK || !guid)
        return rc;
    char id[41];
    kdh_pe_pdb_id(guid, age, id);
    size_t n = strlen(out);
    if (n + 1 + strlen(id) + 1 > out_len)
        return KDH_ERANGE;
    snprintf(out + n, out_len - n, "/%s", id);
    return KDH_OK;
}

typedef struct img_view {
    kdh_target_t *t;
    uint64_t base;
    uint32_t size;
} img_view_t;

/* PE reads stay inside the image the list entry describes; the bytes are per boot. */
static int img_read(void *ctx, uint64_t va, void *buf, uint32_t len, uint32_t *got)
{
    img_view_t *v = ctx;
    *got = 0;
    if (va < v->base || !kdh_in_bounds(va - v->base, len, v->size)) {
        if (va < v->base || va - v->base >= v->size)
            return KDH_OK;
        len = (uint32_t)(v->size - (va - v->base));
    }
    return kdh_target_read(v->t, KDH_TARGET_BOOT, va, buf, len, got);
}

/* The DLL name an image's export directory gives itself ("ntoskrnl.exe"), into out. */
static int export_dll_name(const kdh_pe_t *pe, char *out, size_t len)
{
    if (pe->ndirs == 0 || !pe->dirs[KDH_PE_DIR_EXPORT].rva) /* the export directory is entry 0 */
        return KDH_ENOTFOUND;
    uint8_t dir[0x28];
    kdh_err_t e;
    int rc = kdh_pe_read_rva(pe, pe->dirs[KDH_PE_DIR_EXPORT].rva, dir, sizeof dir, &e);
    if (rc != KDH_OK)
        return rc;
    char name[KDH_PE_MAX_NAME];
    rc = kdh_pe_read_string(pe, kdh_get_u32(dir + 0x0C), name, sizeof name, &e);
    if (rc != KDH_OK)
        return rc;
    size_t n = 0;
    for (const char *c = name; *c && n + 1 < len; c++) /* the same characters a list name may hold */
        out[n++] = safe_name_char((unsigned char)*c);
    out[n] = 0;
    return n ? KDH_OK : KDH_ENOTFOUND;
}

/* Reads the PE identity of m (base/size already checked). KDH_ENOTCACHED passes through; any
 * other failure is recorded in m->error and returns KDH_OK (the walk goes on). A kernel whose
 * list name was damaged (m->error already set) takes its file name from its export directory
 * and is usable; the name problem stays in m->error for the log. */
static int read_identity(kdh_target_t *t, kdh_target_module_t *m)
{
    img_view_t v = {t, m->base, m->size};
    kdh_pe_t pe;
    kdh_err_t e;
    kdh_err_clear(&e);
    int rc = kdh_pe_open_memory(&pe, m->base, img_read, &v, &e);
    if (rc == KDH_ENOTCACHED)
        return rc;
    if (rc != KDH_OK) {
        snprintf(m->error, sizeof m->error, "PE header: %.170s", e.msg[0] ? e.msg : kdh_strerror(rc));
        return KDH_OK;
    }
    if (m->error[0]) {
        char name[sizeof m->file];
        rc = export_dll_name(&pe, name, sizeof name);
        if (rc == KDH_ENOTCACHED)
            return rc;
        if (rc != KDH_OK)
            return KDH_OK; /* no name from anywhere: the module stays unusable */
        snprintf(m->file, sizeof m->file, "%s", name);
        size_t el = strlen(m->error);
        snprintf(m->error + el, sizeof m->error - el, "; named %.40s from its export directory", m->file);
    }
    m->timestamp = pe.timestamp;
    m->size_of_image = pe.size_of_image;
    m->machine = pe.machine;
    if (pe.ndirs > KDH_PE_DIR_EXCEPTION && pe.machine == KDH_PE_MACHINE_AMD64) {
        m->pdata_rva = pe.dirs[KDH_PE_DIR_EXCEPTION].rva;
        m->pdata_size = pe.dirs[KDH_PE_DIR_EXCEPTION].size;
    }
    kdh_pe_codeview_t cv;
    kdh_err_clear(&e);
    rc = kdh_pe_codeview(&pe, &cv, &e);
    if (rc == KDH_ENOTCACHED)
        return rc;
    if (rc == KDH_OK) {
        m->has_pdb = 1;
        memcpy(m->guid, cv.guid, 16);
        m->age = cv.age;
        snprintf(m->pdb_name, sizeof m->pdb_name, "%.127s", cv.pdb_name);
    } else if (rc != KDH_ENOTFOUND) {
        /* identity without the PDB part is still an identity */
        snprintf(m->error, sizeof m->error, "debug directory: %.170s", e.msg[0] ? e.msg : kdh_strerror(rc));
    }
    if (kdh_target_module_key(m->file, m->timestamp, m->size_of_image, m->has_pdb ? m->guid : NULL, m->age,
                              m->key, sizeof m->key) != KDH_OK) {
        snprintf(m->error, sizeof m->error, "identity key too long");
        return KDH_OK;
    }
    m->ok = 1;
    return KDH_OK;
}

/* ---- module list walk ------------------------------------------------------------------------- */

static size_t seen_slot(const kdh_target_t *t, uint64_t p)
{
    uint64_t h = p * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (t->seen_cap - 1);
}

static int seen_has(const kdh_target_t *t, uint64_t p)
{
    for (size_t i = seen_slot(t, p);; i = (i + 1) & (t->seen_cap - 1)) {
        if (t->seen[i] == 0)
            return 0;
        if (t->seen[i] == p)
            return 1;
    }
}

static void seen_add(kdh_target_t *t, uint64_t p)
{
    size_t i = seen_slot(t, p);
    while (t->seen[i] != 0 && t->seen[i] != p)
        i = (i + 1) & (t->seen_cap - 1);
    t->seen[i] = p;
}

static int cmp_base(const void *a, const void *b, void *ctx)
{
    const kdh_target_module_t *m = ctx;
    uint64_t x = m[*(const size_t *)a].base, y = m[*(const size_t *)b].base;
    return x < y ? -1 : x > y;
}

static int finish_walk(kdh_target_t *t, const char *trunc)
{
    t->walk_done = 1;
    t->walk_trunc = trunc;
    free(t->by_addr);
    t->by_addr = malloc((t->nmods ? t->nmods : 1) * sizeof *t->by_addr);
    if (!t->by_addr)
        return KDH_ENOMEM;
    for (size_t i = 0; i < t->nmods; i++)
        t->by_addr[i] = i;
    qsort_r(t->by_addr, t->nmods, sizeof *t->by_addr, cmp_base, t->mods);
    return KDH_OK;
}

/* Parses one list entry into m (name, base, size; identity next). Problems with this module
 * go to m->error; KDH_ENOTCACHED passes through. */
static int read_entry(kdh_target_t *t, uint64_t entry, const uint8_t *e, kdh_target_module_t *m)
{
    int x64 = t->psize == 8;
    m->entry = entry;
    m->base = x64 ? kdh_get_u64(e + 0x30) : kdh_sign_extend32(kdh_get_u32(e + 0x18));
    m->size = kdh_get_u32(e + (x64 ? 0x40 : 0x20));
    const uint8_t *us = e + (x64 ? 0x58 : 0x2C);
    uint16_t nlen = kdh_get_u16(us), nmax = kdh_get_u16(us + 2);
    uint64_t nbuf = x64 ? kdh_get_u64(us + 8) : kdh_sign_extend32(kdh_get_u32(us + 4));
    snprintf(m->file, sizeof m->file, "?");
    if (nlen == 0 || (nlen & 1) || nlen > KDH_TARGET_MAX_NAME_BYTES || nlen > nmax) {
        snprintf(m->error, sizeof m->error, "BaseDllName length %u (maximum %u) is not an even 2..%u",
                 (unsigned)nlen, (unsigned)nmax, (unsigned)KDH_TARGET_MAX_NAME_BYTES);
    } else if (!kernel_ptr(t, nbuf, 2)) {
        snprintf(m->error, sizeof m->error, "BaseDllName buffer 0x%llx is not a kernel address",
                 (unsigned long long)nbuf);
    } else {
        uint8_t w[KDH_TARGET_MAX_NAME_BYTES];
        uint32_t got = 0;
        int rc = kdh_target_read(t, KDH_TARGET_STOP, nbuf, w, nlen, &got);
        if (rc != KDH_OK)
            return rc;
        if (got != nlen) {
            snprintf(m->error, sizeof m->error, "BaseDllName at 0x%llx is unreadable", (unsigned long long)nbuf);
        } else {
            size_t n = 0, chars = nlen / 2u;
            for (size_t i = 0; i < chars && n + 1 < sizeof m->file; i++) {
                m->file[n++] = safe_name_char(kdh_get_u16(w + 2 * i));
            }
            m->file[n] = 0;
        }
    }
    int kernel = m->base == t->version.kern_base;
    target_module_name(m->file, kernel, m->name, sizeof m->name);
    if (m->error[0] && !kernel)
        return KDH_OK; /* a driver without a readable name is skipped: its frames stay addresses */
    /* The kernel is known by its base (GetVersion's KernBase), not by its name: a damaged name
     * costs only the file name, which its export directory gives back (read_identity). */
    if (!kernel_ptr(t, m->base, 0x1000) || m->size == 0 || m->size > KDH_PE_MAX_IMAGE ||
        m->base + m->size < m->base) {
        snprintf(m->error, sizeof m->error, "DllBase 0x%llx / SizeOfImage 0x%x is not a kernel image range",
                 (unsigned long long)m->base, m->size);
        return KDH_OK;
    }
    return read_identity(t, m);
}

int kdh_target_step_modules(kdh_target_t *t, kdh_err_t *err)
{
    if (t->walk_done)
        return KDH_OK;
    if (!t->have_version)
        return kdh_err_set(err, KDH_EINVAL, "GetVersion has not been asked yet");
    uint64_t head = t->version.ps_loaded_module_list;
    if (!kernel_ptr(t, head, t->psize))
        return kdh_err_set(err, KDH_ECORRUPT, "PsLoadedModuleList 0x%llx is not a kernel address",
                           (unsigned long long)head);
    if (!t->walk_started) {
        uint64_t first;
        int rc = kdh_target_read_ptr(t, KDH_TARGET_STOP, head, &first, "PsLoadedModuleList", err);
        if (rc != KDH_OK)
            return rc;
        if (!t->mods) {
            t->mods = calloc(KDH_TARGET_MAX_MODULES, sizeof *t->mods);
            t->syms = calloc(KDH_TARGET_MAX_MODULES, sizeof *t->syms);
            t->seen_cap = 2 * KDH_TARGET_MAX_MODULES;
            t->seen = calloc(t->seen_cap, sizeof *t->seen);
            if (!t->mods || !t->syms || !t->seen)
                return kdh_err_set(err, KDH_ENOMEM, "out of memory for the module list");
        }
        t->walk_cur = first;
        t->walk_started = 1;
    }
    uint32_t esize = t->psize == 8 ? 0x68 : 0x34;
    for (;;) {
        uint64_t cur = t->walk_cur;
        const char *trunc = NULL;
        if (cur == head)
            break;
        if (t->nmods >= KDH_TARGET_MAX_MODULES)
            trunc = "more than 4096 entries";
        else if (cur == 0 || !kernel_ptr(t, cur, t->psize))
            trunc = "a link points outside kernel space";
        else if (seen_has(t, cur))
            trunc = "the list loops without returning to its head";
        if (trunc) {
            if (finish_walk(t, trunc) != KDH_OK)
                return kdh_err_set(err, KDH_ENOMEM, "out of memory for the module list");
            return KDH_OK;
        }
        uint8_t e[0x68];
        uint32_t got = 0;
        int rc = kdh_target_read(t, KDH_TARGET_STOP, cur, e, esize, &got);
        if (rc != KDH_OK)
            return rc;
        if (got != esize) {
            if (finish_walk(t, "a list entry is unreadable") != KDH_OK)
                return kdh_err_set(err, KDH_ENOMEM, "out of memory for the module list");
            return KDH_OK;
        }
        kdh_target_module_t *m = &t->mods[t->nmods];
        memset(m, 0, sizeof *m);
        rc = read_entry(t, cur, e, m);
        if (rc != KDH_OK)
            return rc; /* KDH_ENOTCACHED: this entry is read again after the fetch */
        seen_add(t, cur);
        t->nmods++;
        t->walk_cur = t->psize == 8 ? kdh_get_u64(e) : kdh_sign_extend32(kdh_get_u32(e));
    }
    if (finish_walk(t, NULL) != KDH_OK)
        return kdh_err_set(err, KDH_ENOMEM, "out of memory for the module list");
    return KDH_OK;
}

int kdh_target_step_discover(kdh_target_t *t, kdh_err_t *err)
{
    int rc = kdh_target_step_kdbg(t, err);
    if (rc != KDH_OK)
        return rc;
    return kdh_target_step_modules(t, err);
}

int kdh_target_step_discover_lenient(kdh_target_t *t, kdh_err_t *err)
{
    if (!t->have_kdbg && !t->kdbg_error[0]) {
        kdh_err_t e;
        kdh_err_clear(&e);
        int rc = kdh_target_step_kdbg(t, &e);
        if (rc == KDH_ENOTCACHED || rc == KDH_EINVAL) {
            if (err)
                *err = e;
            return rc; /* fetch and come back, or GetVersion has not been asked yet */
        }
        if (rc != KDH_OK) /* a damaged block or one the target cannot read: go on without it */
            snprintf(t->kdbg_error, sizeof t->kdbg_error, "%s", e.msg);
    }
    return kdh_target_step_modules(t, err);
}

const char *kdh_target_kdbg_error(const kdh_target_t *t)
{
    return t->kdbg_error[0] ? t->kdbg_error : NULL;
}

int kdh_target_modules_truncated(const kdh_target_t *t, const char **why)
{
    if (why)
        *why = t->walk_trunc;
    return t->walk_trunc != NULL;
}

size_t kdh_target_module_count(const kdh_target_t *t) { return t->walk_done ? t->nmods : 0; }

const kdh_target_module_t *kdh_target_module_at(const kdh_target_t *t, size_t i)
{
    return i < kdh_target_module_count(t) ? &t->mods[i] : NULL;
}

const kdh_target_module_t *kdh_target_module_by_addr(const kdh_target_t *t, uint64_t va)
{
    size_t n = kdh_target_module_count(t), lo = 0, hi = n;
    while (lo < hi) { /* first module with base > va */
        size_t mid = lo + (hi - lo) / 2;
        if (t->mods[t->by_addr[mid]].base <= va)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const kdh_target_module_t *m = &t->mods[t->by_addr[lo - 1]];
    return va - m->base < m->size ? m : NULL;
}

const kdh_target_module_t *kdh_target_module_by_name(const kdh_target_t *t, const char *name)
{
    size_t n = kdh_target_module_count(t);
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(t->mods[i].name, name) == 0 || strcasecmp(t->mods[i].file, name) == 0)
            return &t->mods[i];
    return NULL;
}
