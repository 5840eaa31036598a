/* vm.c: the memory manager's pool totals and limits as !vm shows them, from the variables whose
 * addresses KDDEBUGGER_DATA64 holds (see kdh/pool.h for which ones and their units). */
#include <inttypes.h>
#include <string.h>

#include "kdh/pool.h"
#include "kdh/target.h"

static const kdh_pool_vm_info_t k_fields[KDH_POOL_VM_COUNT] = {
    [KDH_POOL_VM_NONPAGED_USAGE] = {"NonPagedPool Usage", "nonpaged_usage_kb", "MmAllocatedNonPagedPool", 0x250, 0},
    [KDH_POOL_VM_NONPAGED_MAX] = {"NonPagedPool Max", "nonpaged_max_kb", "MmMaximumNonPagedPoolInBytes", 0x100, 1},
    [KDH_POOL_VM_PAGED_COMMIT] = {"PagedPool Commit", "paged_commit_kb", "MmPagedPoolCommit", 0x170, 0},
    [KDH_POOL_VM_PAGED_MAX] = {"PagedPool Maximum", "paged_max_kb", "MmSizeOfPagedPoolInBytes", 0x140, 1},
    [KDH_POOL_VM_COMMITTED] = {"Committed pages", "committed_kb", "MmTotalCommittedPages", 0x150, 0},
    [KDH_POOL_VM_COMMIT_LIMIT] = {"Commit limit", "commit_limit_kb", "MmTotalCommitLimit", 0x148, 0},
};

/* The block bytes read: from the lowest field to the end of the highest. */
#define VM_FIRST 0x100u
#define VM_END 0x258u

const kdh_pool_vm_info_t *kdh_pool_vm_info(kdh_pool_vm_field_t f)
{
    return (unsigned)f < KDH_POOL_VM_COUNT ? &k_fields[f] : NULL;
}

uint64_t kdh_pool_vm_kb(const kdh_pool_vm_t *vm, kdh_pool_vm_field_t f)
{
    uint64_t v = vm->value[f];
    return k_fields[f].in_bytes ? v / 1024 : v * (KDH_POOL_PAGE_SIZE / 1024);
}

uint64_t kdh_pool_vm_pages(const kdh_pool_vm_t *vm, kdh_pool_vm_field_t f)
{
    uint64_t v = vm->value[f];
    return k_fields[f].in_bytes ? v / KDH_POOL_PAGE_SIZE : v;
}

void kdh_pool_vm_addresses(const uint8_t *block, size_t len, uint32_t size, uint64_t addr[KDH_POOL_VM_COUNT])
{
    for (unsigned f = 0; f < KDH_POOL_VM_COUNT; f++) {
        uint32_t off = k_fields[f].kdbg_offset;
        addr[f] = (off + 8u <= size && off + 8u <= len) ? kdh_get_u64(block + off) : 0;
    }
}

int kdh_pool_step_vm(kdh_target_t *t, kdh_pool_vm_t *vm, kdh_err_t *err)
{
    memset(vm, 0, sizeof *vm);
    const kdh_target_kdbg_t *k = kdh_target_kdbg(t);
    if (!k)
        return kdh_err_set(err, KDH_EINVAL, "pool totals: the debugger data was not read yet");
    if (k->size <= VM_FIRST)
        return KDH_OK;
    uint8_t block[VM_END];
    memset(block, 0, sizeof block);
    uint32_t want = (k->size < VM_END ? k->size : VM_END) - VM_FIRST, got = 0;
    /* the block's contents stay the same for the whole boot */
    int rc = kdh_target_read(t, KDH_TARGET_BOOT, k->address + VM_FIRST, block + VM_FIRST, want, &got);
    if (rc != KDH_OK)
        return rc;
    uint64_t addr[KDH_POOL_VM_COUNT];
    kdh_pool_vm_addresses(block, VM_FIRST + got, k->size, addr);
    unsigned ps = kdh_target_pointer_size(t);
    for (unsigned f = 0; f < KDH_POOL_VM_COUNT; f++) {
        if (!addr[f])
            continue;
        uint8_t b[8] = {0};
        rc = kdh_target_read(t, KDH_TARGET_STOP, addr[f], b, ps, &got);
        if (rc != KDH_OK)
            return rc;
        if (got != ps)
            continue; /* an unreadable variable: not shown */
        vm->value[f] = ps == 8 ? kdh_get_u64(b) : kdh_get_u32(b);
        vm->have[f] = 1;
    }
    return KDH_OK;
}

int kdh_pool_print_vm(FILE *out, const kdh_pool_vm_t *vm)
{
    unsigned shown = 0;
    for (unsigned f = 0; f < KDH_POOL_VM_COUNT; f++) {
        if (!vm->have[f])
            continue;
        char label[40];
        snprintf(label, sizeof label, "%s:", k_fields[f].label);
        fprintf(out, "\t%-20s %10" PRIu64 " (%12" PRIu64 " Kb)\n", label, kdh_pool_vm_pages(vm, f),
                kdh_pool_vm_kb(vm, f));
        shown++;
    }
    if (!shown)
        fprintf(out, "\t(the debugger data gives no pool totals)\n");
    return ferror(out) ? KDH_EIO : KDH_OK;
}
