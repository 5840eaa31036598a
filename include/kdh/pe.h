/* kdh/pe.h: PE32/PE32+ images, either as a file on disk (sections at their raw offsets) or as
 * an image mapped in target memory (sections at their RVAs, read through a callback). One parser
 * serves both layouts; every length, offset and count is bounded, so a hostile image gives
 * KDH_ECORRUPT / KDH_ERANGE instead of a crash or an unbounded read. */
#ifndef KDH_PE_H
#define KDH_PE_H

#include <stddef.h>
#include <stdint.h>

#include "kdh/common.h"

/* Limits applied to every image (a real kernel stays far below them). */
#define KDH_PE_MAX_SECTIONS 96
#define KDH_PE_MAX_NAME 512          /* export/import/DLL names, forwarder strings, bytes with NUL */
#define KDH_PE_MAX_EXPORTS 65536     /* NumberOfFunctions and NumberOfNames */
#define KDH_PE_MAX_IMPORT_DLLS 1024
#define KDH_PE_MAX_IMPORTS 65536     /* imported functions, over all DLLs */
#define KDH_PE_MAX_DEBUG_ENTRIES 32
#define KDH_PE_MAX_PDATA (1u << 20)  /* RUNTIME_FUNCTION entries */
#define KDH_PE_MAX_RELOC_BYTES (64u << 20)
#define KDH_PE_MAX_IMAGE (1u << 30)  /* SizeOfImage */

enum {
    KDH_PE_MACHINE_I386 = 0x014C,
    KDH_PE_MACHINE_AMD64 = 0x8664,
};

/* Data directory indices. */
enum {
    KDH_PE_DIR_EXPORT = 0,
    KDH_PE_DIR_IMPORT = 1,
    KDH_PE_DIR_RESOURCE = 2,
    KDH_PE_DIR_EXCEPTION = 3,
    KDH_PE_DIR_SECURITY = 4,
    KDH_PE_DIR_BASERELOC = 5,
    KDH_PE_DIR_DEBUG = 6,
    KDH_PE_DIR_IAT = 12,
    KDH_PE_DIR_COUNT = 16,
};

/* Base relocation types the loader applies. */
enum {
    KDH_PE_REL_ABSOLUTE = 0,
    KDH_PE_REL_HIGHLOW = 3,
    KDH_PE_REL_DIR64 = 10,
};

enum {
    KDH_PE_DEBUG_CODEVIEW = 2,
    KDH_PE_DEBUG_REPRO = 16,
};

typedef enum { KDH_PE_LAYOUT_FILE = 0, KDH_PE_LAYOUT_MEMORY = 1 } kdh_pe_layout_t;

/* Reads len bytes of target memory at va into buf; sets *got to the bytes read (a short read
 * is not an error for the callback: the parser decides). A negative return (for example
 * KDH_ENOTCACHED) is passed through unchanged to the caller of the parser. */
typedef int (*kdh_pe_read_fn)(void *ctx, uint64_t va, void *buf, uint32_t len, uint32_t *got);

typedef struct kdh_pe_section {
    char name[9]; /* NUL-terminated copy of the 8-byte name */
    uint32_t va, vsize, raw_off, raw_size, characteristics;
} kdh_pe_section_t;

typedef struct kdh_pe_dir {
    uint32_t rva, size;
} kdh_pe_dir_t;

typedef struct kdh_pe {
    kdh_pe_layout_t layout;
    uint16_t machine;
    uint16_t characteristics;
    uint16_t subsystem;
    uint16_t dll_characteristics;
    int pe32plus; /* 1 for PE32+ (optional header magic 0x20B) */
    uint32_t timestamp;
    uint32_t size_of_image;
    uint32_t size_of_headers;
    uint32_t entry_rva;
    uint32_t checksum;
    uint64_t image_base; /* as written in the optional header */
    uint32_t nsections;
    kdh_pe_section_t sections[KDH_PE_MAX_SECTIONS];
    uint32_t ndirs;
    kdh_pe_dir_t dirs[KDH_PE_DIR_COUNT];

    uint32_t nt_offset; /* e_lfanew: where the NT headers start */

    /* private: the byte source */
    const uint8_t *buf;
    size_t len;
    kdh_pe_read_fn read;
    void *read_ctx;
    uint64_t base; /* memory layout: where the image is mapped */
} kdh_pe_t;

/* Parses the headers of a file image held in buf (borrowed: it must outlive pe). */
int kdh_pe_open_buffer(kdh_pe_t *pe, const void *buf, size_t len, kdh_err_t *err);

/* Parses the headers of an image mapped at base in target memory. Only the DOS header, the NT
 * headers and the section table are read here; directories are read when asked for. */
int kdh_pe_open_memory(kdh_pe_t *pe, uint64_t base, kdh_pe_read_fn read, void *ctx,
                       kdh_err_t *err);

/* Copies len bytes at rva (headers or sections, bss reads as zero in the file layout). */
int kdh_pe_read_rva(const kdh_pe_t *pe, uint32_t rva, void *buf, uint32_t len, kdh_err_t *err);

/* Reads a NUL-terminated string of at most max bytes (with NUL; max <= KDH_PE_MAX_NAME) at rva. */
int kdh_pe_read_string(const kdh_pe_t *pe, uint32_t rva, char *out, size_t max, kdh_err_t *err);

/* File layout: the file offset of [rva, rva+len). KDH_ENOTFOUND when not backed by file bytes. */
int kdh_pe_rva_to_offset(const kdh_pe_t *pe, uint32_t rva, uint32_t len, uint32_t *off);

/* The section holding rva, or NULL. */
const kdh_pe_section_t *kdh_pe_section_by_rva(const kdh_pe_t *pe, uint32_t rva);
const kdh_pe_section_t *kdh_pe_section_by_name(const kdh_pe_t *pe, const char *name);

/* ---- exports ---- */
typedef struct kdh_pe_export {
    const char *name;      /* NULL when exported by ordinal only */
    uint32_t ordinal;      /* biased: Base + index, as users write it */
    uint32_t rva;          /* 0 for an unused slot */
    const char *forwarder; /* "NTOSKRNL.ExFoo" when the RVA points into the export directory */
} kdh_pe_export_t;

typedef struct kdh_pe_exports {
    char *dll_name;
    uint32_t ordinal_base;
    uint32_t count; /* one per non-empty address-table slot */
    kdh_pe_export_t *v;
    char *strings; /* private: storage for the names */
} kdh_pe_exports_t;

int kdh_pe_exports(const kdh_pe_t *pe, kdh_pe_exports_t *out, kdh_err_t *err);
void kdh_pe_exports_free(kdh_pe_exports_t *ex);
const kdh_pe_export_t *kdh_pe_export_find(const kdh_pe_exports_t *ex, const char *name);

/* ---- imports ---- */
typedef struct kdh_pe_import_fn {
    const char *name; /* NULL when imported by ordinal */
    uint16_t hint;
    uint16_t ordinal; /* valid when name is NULL */
    uint32_t iat_rva; /* where the loader writes the resolved address */
} kdh_pe_import_fn_t;

typedef struct kdh_pe_import_dll {
    const char *dll;
    uint32_t count;
    kdh_pe_import_fn_t *fns;
} kdh_pe_import_dll_t;

typedef struct kdh_pe_imports {
    uint32_t count;
    kdh_pe_import_dll_t *dlls;
    kdh_pe_import_fn_t *fn_store; /* private */
    char *strings;                /* private */
} kdh_pe_imports_t;

/* In memory, the lookup table (OriginalFirstThunk) names the imports, because the IAT then
 * holds resolved addresses; a DLL without one is listed with count 0. */
int kdh_pe_imports(const kdh_pe_t *pe, kdh_pe_imports_t *out, kdh_err_t *err);
void kdh_pe_imports_free(kdh_pe_imports_t *im);
/* 1 when the image imports fn (from any DLL when dll is NULL; DLL names compare case-blind). */
int kdh_pe_imports_has(const kdh_pe_imports_t *im, const char *dll, const char *fn);

/* ---- base relocations ---- */
/* Called for each entry whose type is not ABSOLUTE (padding); a nonzero return stops the walk
 * and is returned. */
typedef int (*kdh_pe_reloc_cb)(void *ctx, uint32_t rva, int type);
int kdh_pe_relocs_foreach(const kdh_pe_t *pe, kdh_pe_reloc_cb cb, void *ctx, kdh_err_t *err);

/* Lays the file image out at RVAs in dst (size_of_image bytes, zero-filled where no file data). */
int kdh_pe_map(const kdh_pe_t *pe, uint8_t *dst, size_t dst_len, kdh_err_t *err);
/* Applies the relocations to a mapped image (from kdh_pe_map) so it runs at new_base; also
 * writes new_base into the mapped optional header. HIGHLOW and DIR64 only. */
int kdh_pe_relocate(const kdh_pe_t *pe, uint8_t *img, size_t img_len, uint64_t new_base,
                    kdh_err_t *err);

/* ---- exception directory (x64 .pdata) ---- */
typedef struct kdh_pe_runtime_function {
    uint32_t begin, end, unwind;
} kdh_pe_runtime_function_t;

/* Reads the RUNTIME_FUNCTION array (AMD64 images only; KDH_EUNSUPPORTED otherwise). *out is
 * malloc'ed (NULL with *count 0 when the directory is empty); free() it. */
int kdh_pe_pdata(const kdh_pe_t *pe, kdh_pe_runtime_function_t **out, uint32_t *count,
                 kdh_err_t *err);
/* Binary search of a sorted array for the entry with begin <= rva < end, or NULL. */
const kdh_pe_runtime_function_t *kdh_pe_pdata_find(const kdh_pe_runtime_function_t *v,
                                                   uint32_t count, uint32_t rva);

/* ---- debug directory ---- */
typedef struct kdh_pe_debug_entry {
    uint32_t characteristics, timestamp;
    uint16_t major, minor;
    uint32_t type, size, rva, file_off;
} kdh_pe_debug_entry_t;

int kdh_pe_debug_entries(const kdh_pe_t *pe, kdh_pe_debug_entry_t *out, uint32_t max,
                         uint32_t *count, kdh_err_t *err);

typedef struct kdh_pe_codeview {
    uint8_t guid[16]; /* as stored: Data1..3 little-endian */
    uint32_t age;
    char path[KDH_PE_MAX_NAME]; /* as stored, often a full build path */
    char pdb_name[KDH_PE_MAX_NAME]; /* basename, split on both '\\' and '/' */
} kdh_pe_codeview_t;

/* The first CodeView RSDS record; KDH_ENOTFOUND when the image has none. */
int kdh_pe_codeview(const kdh_pe_t *pe, kdh_pe_codeview_t *cv, kdh_err_t *err);

/* ---- symbol-store keys ---- */
/* "A30A731A4000": TimeDateStamp %08X then SizeOfImage %x (out >= 17 bytes). */
void kdh_pe_image_id(uint32_t timestamp, uint32_t size_of_image, char out[17]);
/* "6EE7EDC8E891D4C64C4C44205044422E1": GUID upper hex (Data1-3 as numbers) then age %X. */
void kdh_pe_pdb_id(const uint8_t guid[16], uint32_t age, char out[41]);
/* "<file>/<image id>" and "<pdb>/<pdb id>"; KDH_ERANGE when out is too small. */
int kdh_pe_image_key(const char *file, uint32_t timestamp, uint32_t size_of_image, char *out,
                     size_t out_len);
int kdh_pe_pdb_key(const char *pdb, const uint8_t guid[16], uint32_t age, char *out,
                   size_t out_len);

#endif
