/* libFuzzer harness for kdsim's instruction length decoder (src/sim/decode.c): on any bytes, in
 * either mode, it reads only the bytes it is given (the input is copied to an exact-size heap
 * block, so ASan sees a read past the end), returns 0 or a length within them and at most 15,
 * and a shorter buffer never yields a longer instruction. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "machine_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = size - 1 > 15 ? 15 : size - 1;
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return 0;
    memcpy(p, data + 1, n);
    int x64 = data[0] & 1;
    sim_insn_kind_t kind;
    uint32_t len = sim_insn_decode(p, (uint32_t)n, x64, &kind);
    if (len > n || len > 15 || (kind != SIM_INSN_OTHER && kind != SIM_INSN_CALL && kind != SIM_INSN_RET))
        abort();
    if (len) {
        /* the same instruction decodes to the same length with nothing after it */
        sim_insn_kind_t k2;
        if (sim_insn_decode(p, len, x64, &k2) != len || k2 != kind)
            abort();
    }
    free(p);
    return 0;
}
