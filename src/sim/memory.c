/* memory.c: guest memory of the simulated machine. Every region is host memory (mmap) handed to
 * Unicorn with uc_mem_map_ptr, so the debugger-side reads and the shadow-stack hook look at the
 * bytes directly; writes also drop Unicorn's translated code for the range (breakpoints). */
#include <string.h>
#include <sys/mman.h>

#include "machine_int.h"

uint64_t sim_mem_canon(const sim_machine_t *m, uint64_t va)
{
    /* x86 addresses arrive sign-extended as KD reports them; the emulator sees 32 bits. */
    if (m->arch == SIM_ARCH_X86 && (va >> 32) == 0xffffffffu)
        return va & 0xffffffffu;
    return va;
}

uint64_t sim_report_addr(const sim_machine_t *m, uint64_t va)
{
    return m->arch == SIM_ARCH_X86 ? kdh_sign_extend32((uint32_t)va) : va;
}

int sim_mem_map(sim_machine_t *m, uint64_t va, size_t size, kdh_err_t *err)
{
    size = (size + 0xfff) & ~(size_t)0xfff;
    if (m->nregions >= SIM_MAX_REGIONS)
        return kdh_err_set(err, KDH_ERANGE, "kdsim: too many memory regions");
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return kdh_err_set(err, KDH_ENOMEM, "kdsim: cannot reserve %zu bytes of guest memory", size);
    uc_err e = uc_mem_map_ptr(m->uc, va, size, UC_PROT_ALL, p);
    if (e != UC_ERR_OK) {
        munmap(p, size);
        return kdh_err_set(err, KDH_EIO, "kdsim: cannot map guest memory at 0x%llx (+0x%zx): %s",
                           (unsigned long long)va, size, uc_strerror(e));
    }
    m->regions[m->nregions++] = (sim_region_t){.va = va, .size = size, .host = p};
    return KDH_OK;
}

void sim_mem_unmap_all(sim_machine_t *m)
{
    for (int i = 0; i < m->nregions; i++) {
        if (m->uc)
            uc_mem_unmap(m->uc, m->regions[i].va, m->regions[i].size);
        munmap(m->regions[i].host, m->regions[i].size);
    }
    m->nregions = 0;
    m->last_region = 0;
}

/* Host pointer for [va, va+len) when it lies inside one region, else NULL. */
uint8_t *sim_mem_host(sim_machine_t *m, uint64_t va, size_t len)
{
    va = sim_mem_canon(m, va);
    if (m->last_region < m->nregions) {
        const sim_region_t *r = &m->regions[m->last_region];
        if (va >= r->va && kdh_in_bounds(va - r->va, len, r->size))
            return r->host + (va - r->va);
    }
    for (int i = 0; i < m->nregions; i++) {
        const sim_region_t *r = &m->regions[i];
        if (va >= r->va && kdh_in_bounds(va - r->va, len, r->size)) {
            m->last_region = i;
            return r->host + (va - r->va);
        }
    }
    return NULL;
}

int sim_mem_get_ptr(sim_machine_t *m, uint64_t va, uint64_t *out)
{
    const uint8_t *p = sim_mem_host(m, va, (size_t)m->psize);
    if (!p)
        return KDH_ENOTFOUND;
    *out = m->psize == 8 ? kdh_get_u64(p) : kdh_get_u32(p);
    return KDH_OK;
}

int sim_mem_put_ptr(sim_machine_t *m, uint64_t va, uint64_t v)
{
    uint8_t *p = sim_mem_host(m, va, (size_t)m->psize);
    if (!p)
        return KDH_ENOTFOUND;
    if (m->psize == 8)
        kdh_put_u64(p, v);
    else
        kdh_put_u32(p, (uint32_t)v);
    return KDH_OK;
}

int sim_mem_put_u32(sim_machine_t *m, uint64_t va, uint32_t v)
{
    uint8_t *p = sim_mem_host(m, va, 4);
    if (!p)
        return KDH_ENOTFOUND;
    kdh_put_u32(p, v);
    return KDH_OK;
}

int sim_mem_put_u16(sim_machine_t *m, uint64_t va, uint16_t v)
{
    uint8_t *p = sim_mem_host(m, va, 2);
    if (!p)
        return KDH_ENOTFOUND;
    kdh_put_u16(p, v);
    return KDH_OK;
}

/* Kernel structures the machine builds (LDR entries, KTHREADs, KPCRs, names) come from one
 * mapped arena; nothing there is ever freed before the next boot. Returns 0 when full. */
uint64_t sim_arena_alloc(sim_machine_t *m, size_t size, size_t align)
{
    uint64_t a = (m->arena_next + align - 1) & ~(uint64_t)(align - 1);
    if (a + size > m->arena_end)
        return 0;
    m->arena_next = a + size;
    return a;
}

/* Byte-wise access page by page, so a read that runs off the mapped memory stops at the
 * first unmapped page and reports how much it did. */
static int mem_access(sim_machine_t *m, uint64_t va, void *buf, const void *src, uint32_t len, uint32_t *done)
{
    uint32_t n = 0;
    while (n < len) {
        uint64_t a = va + n;
        uint32_t chunk = 0x1000 - (uint32_t)(a & 0xfff);
        if (chunk > len - n)
            chunk = len - n;
        uint8_t *p = sim_mem_host(m, a, chunk);
        if (!p)
            break;
        if (buf)
            memcpy((uint8_t *)buf + n, p, chunk);
        else {
            memcpy(p, (const uint8_t *)src + n, chunk);
            uint64_t c = sim_mem_canon(m, a);
            uc_ctl_remove_cache(m->uc, c, c + chunk);  /* the bytes may be code */
            if (sim_image_by_addr(m, c))
                sim_block_cache_clear(m);  /* and so may the decoded blocks (code is in images) */
        }
        n += chunk;
    }
    if (done)
        *done = n;
    return KDH_OK;
}

int sim_machine_read(sim_machine_t *m, uint64_t va, void *buf, uint32_t len, uint32_t *done)
{
    if (!m || (!buf && len))
        return KDH_EINVAL;
    return mem_access(m, va, buf, NULL, len, done);
}

int sim_machine_write(sim_machine_t *m, uint64_t va, const void *buf, uint32_t len, uint32_t *done)
{
    if (!m || (!buf && len))
        return KDH_EINVAL;
    return mem_access(m, va, NULL, buf, len, done);
}
