/* loader.c: places the fixture kernel, HAL and drivers at kernel-style addresses chosen from the
 * seed (x64 0xfffff80..., x86 0x8xxxxxxx), lays them out with kdh_pe, applies base relocations
 * and resolves each import by name against the exporting image, as the boot loader does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "machine_int.h"

#define SIM_MAX_FILE (64u << 20)

/* Load order = PsLoadedModuleList order: kernel first, HAL second (kd-protocol.md section 5). */
static const char *const k_images[] = {"ntoskrnl.exe", "hal.dll", "leakdrv.sys", "busydrv.sys",
                                       "framedrv.sys", "olddrv.sys"};

static int read_file(const char *path, uint8_t **out, size_t *len, kdh_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kdh_err_set(err, KDH_EIO, "kdsim: cannot open %s: %s (build the 'fixtures' target)",
                           path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    int rc = buf ? KDH_OK : kdh_err_set(err, KDH_ENOMEM, "kdsim: out of memory reading %s", path);
    while (rc == KDH_OK) {
        if (n == cap) {
            if (cap >= SIM_MAX_FILE) {
                rc = kdh_err_set(err, KDH_ERANGE, "kdsim: %s is larger than %u bytes", path, SIM_MAX_FILE);
                break;
            }
            /* a failed growth fails the load: an image cut short must not be mapped */
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = kdh_err_set(err, KDH_ENOMEM, "kdsim: out of memory reading %s", path);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (rc == KDH_OK && ferror(f))
        rc = kdh_err_set(err, KDH_EIO, "kdsim: read error on %s", path);
    fclose(f);
    if (rc != KDH_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return KDH_OK;
}

const sim_image_t *sim_image_by_name(const sim_machine_t *m, const char *name)
{
    for (int i = 0; i < m->nimages; i++)
        if (strcasecmp(m->images[i].name, name) == 0)
            return &m->images[i];
    return NULL;
}

const sim_image_t *sim_image_by_addr(const sim_machine_t *m, uint64_t va)
{
    for (int i = 0; i < m->nimages; i++)
        if (va >= m->images[i].base && va - m->images[i].base < m->images[i].size)
            return &m->images[i];
    return NULL;
}

int sim_image_export(const sim_machine_t *m, const char *module, const char *name, uint64_t *va)
{
    const sim_image_t *im = sim_image_by_name(m, module);
    if (!im || !im->have_exports)
        return KDH_ENOTFOUND;
    const kdh_pe_export_t *e = kdh_pe_export_find(&im->exports, name);
    if (!e || e->rva == 0 || e->forwarder)
        return KDH_ENOTFOUND;
    *va = im->base + e->rva;
    return KDH_OK;
}

static int load_one(sim_machine_t *m, const char *name, uint64_t base, kdh_err_t *err)
{
    sim_image_t *im = &m->images[m->nimages];
    memset(im, 0, sizeof *im);
    snprintf(im->name, sizeof im->name, "%s", name);
    const char *dir = strstr(name, ".sys") ? "\\SystemRoot\\system32\\drivers\\" : "\\SystemRoot\\system32\\";
    snprintf(im->path, sizeof im->path, "%s%s", dir, name);

    char path[4096];
    snprintf(path, sizeof path, "%s/%s", m->fixture_dir, name);
    int rc = read_file(path, &im->file, &im->file_len, err);
    if (rc != KDH_OK)
        return rc;
    m->nimages++;  /* from here on sim_free_images releases it */
    rc = kdh_pe_open_buffer(&im->pe, im->file, im->file_len, err);
    if (rc != KDH_OK)
        return rc;
    uint16_t want = m->arch == SIM_ARCH_X64 ? KDH_PE_MACHINE_AMD64 : KDH_PE_MACHINE_I386;
    if (im->pe.machine != want)
        return kdh_err_set(err, KDH_EINVAL, "kdsim: %s is for machine 0x%04x, not 0x%04x: wrong fixture folder?",
                           path, im->pe.machine, want);
    im->base = base;
    im->size = im->pe.size_of_image;
    im->checksum = im->pe.checksum;
    im->timestamp = im->pe.timestamp;
    im->entry_rva = im->pe.entry_rva;
    rc = sim_mem_map(m, base, im->size, err);
    if (rc != KDH_OK)
        return rc;
    uint8_t *host = sim_mem_host(m, base, im->size);
    rc = kdh_pe_map(&im->pe, host, im->size, err);
    if (rc == KDH_OK)
        rc = kdh_pe_relocate(&im->pe, host, im->size, base, err);
    if (rc != KDH_OK)
        return rc;
    if (im->pe.dirs[KDH_PE_DIR_EXPORT].size) {
        rc = kdh_pe_exports(&im->pe, &im->exports, err);
        if (rc != KDH_OK)
            return rc;
        im->have_exports = 1;
    }
    return KDH_OK;
}

static int resolve_imports(sim_machine_t *m, sim_image_t *im, kdh_err_t *err)
{
    kdh_pe_imports_t imp;
    if (im->pe.dirs[KDH_PE_DIR_IMPORT].size == 0)
        return KDH_OK;
    int rc = kdh_pe_imports(&im->pe, &imp, err);
    if (rc != KDH_OK)
        return rc;
    for (uint32_t d = 0; d < imp.count && rc == KDH_OK; d++) {
        const kdh_pe_import_dll_t *dll = &imp.dlls[d];
        for (uint32_t f = 0; f < dll->count; f++) {
            const kdh_pe_import_fn_t *fn = &dll->fns[f];
            uint64_t va;
            if (!fn->name || sim_image_export(m, dll->dll, fn->name, &va) != KDH_OK) {
                rc = kdh_err_set(err, KDH_ENOTFOUND, "kdsim: %s imports %s!%s, which is not exported",
                                 im->name, dll->dll, fn->name ? fn->name : "(ordinal)");
                break;
            }
            if (sim_mem_put_ptr(m, im->base + fn->iat_rva, va) != KDH_OK) {
                rc = kdh_err_set(err, KDH_ECORRUPT, "kdsim: %s: IAT slot 0x%x outside the image",
                                 im->name, fn->iat_rva);
                break;
            }
        }
    }
    kdh_pe_imports_free(&imp);
    return rc;
}

int sim_load_images(sim_machine_t *m, kdh_err_t *err)
{
    uint64_t r = sim_rand(m);
    uint64_t next;
    if (m->arch == SIM_ARCH_X64)
        next = 0xfffff80000000000ull + (r % 0x400) * 0x200000;  /* nt: 2 MB aligned, as Windows */
    else
        next = 0x81000000ull + (r % 0x80) * 0x10000;
    /* The standard set, then any other driver the workload names (after them, so that the
     * standard set's addresses and the seed's later draws stay as they were). */
    const char *names[SIM_MAX_IMAGES];
    size_t n = 0;
    for (size_t i = 0; i < KDH_ARRAY_LEN(k_images); i++)
        names[n++] = k_images[i];
    for (int w = 0; w < m->nwork; w++) {
        size_t k = 0;
        while (k < n && strcasecmp(names[k], m->work[w].module) != 0)
            k++;
        if (k < n)
            continue;
        if (n == SIM_MAX_IMAGES)
            return kdh_err_set(err, KDH_ERANGE, "kdsim: the workload names more than %d images in all",
                               SIM_MAX_IMAGES);
        if (strchr(m->work[w].module, '/') || strchr(m->work[w].module, '\\'))
            return kdh_err_set(err, KDH_EINVAL, "kdsim: workload module '%s' is a path, not a file name in the fixture folder",
                               m->work[w].module);
        names[n++] = m->work[w].module;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = load_one(m, names[i], next, err);
        if (rc != KDH_OK)
            return rc;
        const sim_image_t *im = &m->images[m->nimages - 1];
        /* Next image: 64 KB aligned after this one, with a seeded gap of 0..15 x 64 KB. */
        next = (im->base + im->size + 0xffff) & ~0xffffull;
        next += (sim_rand(m) % 16) * 0x10000;
    }
    for (int i = 0; i < m->nimages; i++) {
        int rc = resolve_imports(m, &m->images[i], err);
        if (rc != KDH_OK)
            return rc;
    }
    return KDH_OK;
}

void sim_free_images(sim_machine_t *m)
{
    for (int i = 0; i < m->nimages; i++) {
        if (m->images[i].have_exports)
            kdh_pe_exports_free(&m->images[i].exports);
        free(m->images[i].file);
    }
    m->nimages = 0;
}
