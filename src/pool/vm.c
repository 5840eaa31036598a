/* vm.c: the memory manager's pool totals and limits as !vm shows them, from the variables whose
 * addresses KDDEBUGGER_DATA64 holds (see kdh/pool.h for which ones and their units). */
#include <inttypes.h>
#include <string.h>

#include "kdh/pool.h"
#include "kdh/target.h"

static const kdh_pool_vm_info_t k_fields[KDH_POOL_VM_COUNT] = {
    [KDH_POOL_VM_NONPAGED_USAGE] = {"NonPagedPool Usage", "nonpaged_usage_kb", "MmAllocatedNonPagedPool", 0},
    [KDH_POOL_VM_NONPAGED_MAX] = {"NonPagedPool Max", "nonpaged_max_kb", "MmMaximumNonPagedPoolInBytes", 1},
    [KDH_POOL_VM_PAGED_COMMIT] = {"PagedPool Commit", "paged_commit_kb", "MmPagedPoolCommit", 0},
    [KDH_POOL_VM_PAGED_MAX] = {"PagedPool Maximum", "paged_max_kb", "MmSizeOfPagedPoolInBytes", 1},
    [KDH_POOL_VM_COMMITTED] = {"Committed pages", "committed_kb", "MmTotalCommittedPages", 0},
    [KDH_POOL_VM_COMMIT_LIMIT] = {"Commit limit", "commit_limit_kb", "MmTotalCommitLimit", 0},
};

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

/* The variable's address, as the target model read it from KDDEBUGGER_DATA64. */
static uint64_t var_address(const kdh_target_kdbg_t *k, kdh_pool_vm_field_t f)
{
    switch (f) {
    case KDH_POOL_VM_NONPAGED_USAGE: return k->mm_allocated_non_paged_pool;
    case KDH_POOL_VM_NONPAGED_MAX: return k->mm_maximum_non_paged_pool_in_bytes;
    case KDH_POOL_VM_PAGED_COMMIT: return k->mm_paged_pool_commit;
    case KDH_POOL_VM_PAGED_MAX: return k->mm_size_of_paged_pool_in_bytes;
    case KDH_POOL_VM_COMMITTED: return k->mm_total_committed_pages;
    case KDH_POOL_VM_COMMIT_LIMIT: return k->mm_total_commit_limit;
    default: return 0;
    }
}

int kdh_pool_step_vm(kdh_target_t *t, kdh_pool_vm_t *vm, kdh_err_t *err)
{
    memset(vm, 0, sizeof *vm);
    const kdh_target_kdbg_t *k = kdh_target_kdbg(t);
    if (!k)
        return kdh_err_set(err, KDH_EINVAL, "pool totals: the debugger data was not read yet");
    unsigned ps = kdh_target_pointer_size(t);
    for (unsigned f = 0; f < KDH_POOL_VM_COUNT; f++) {
        uint64_t addr = var_address(k, (kdh_pool_vm_field_t)f);
        if (!addr)
            continue;
        uint8_t b[8] = {0};
        uint32_t got = 0;
        int rc = kdh_target_read(t, KDH_TARGET_STOP, addr, b, ps, &got);
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
