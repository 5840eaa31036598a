/* decode.c: is a tag's imm32 the last operand of an x86/x64 instruction? Only the forms a
 * compiler emits to pass or compare a tag are recognised (mov reg/mem, push, cmp/test/and...,
 * imul); the check looks backwards from the hit at most 8 bytes and never runs a disassembler
 * over the section, so a hit inside a longer instruction that merely fits a form is possible:
 * the result says "fits the form", not "is proven to be executed". */
#include <stdio.h>
#include <string.h>

#include "kdh/owner.h"

static const char *const k_reg32[8] = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"};
static const char *const k_reg64[8] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"};

static int is_rex(uint8_t b)
{
    return (b & 0xF0) == 0x40;
}

/* Bytes of ModRM + SIB + displacement, given the ModRM byte and the byte after it (the SIB when
 * there is one). */
static size_t modrm_len(uint8_t modrm, uint8_t sib)
{
    unsigned mod = modrm >> 6, rm = modrm & 7;
    if (mod == 3)
        return 1;
    size_t n = 1;
    if (rm == 4) {
        n++;
        if (mod == 0 && (sib & 7) == 5)
            n += 4;
    } else if (mod == 0 && rm == 5) {
        n += 4; /* disp32 (RIP-relative on x64) */
    }
    if (mod == 1)
        n += 1;
    else if (mod == 2)
        n += 4;
    return n;
}

/* Opcode byte + ModRM form ending in imm32: mnemonic for (opcode, reg field), or NULL. */
static const char *modrm_mnemonic(uint8_t op, unsigned reg)
{
    static const char *const grp1[8] = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"};
    switch (op) {
    case 0x81:
        return grp1[reg];
    case 0xC7:
        return reg == 0 ? "mov" : NULL;
    case 0xF7:
        return reg == 0 ? "test" : NULL;
    case 0x69:
        return "imul";
    default:
        return NULL;
    }
}

static const char *acc_mnemonic(uint8_t op)
{
    switch (op) {
    case 0x05: return "add";
    case 0x0D: return "or";
    case 0x25: return "and";
    case 0x2D: return "sub";
    case 0x35: return "xor";
    case 0x3D: return "cmp";
    case 0xA9: return "test";
    default: return NULL;
    }
}

int kdh_owner_imm_form(const uint8_t *code, size_t len, size_t pos, int x64, size_t *insn_off, char *form,
                       size_t form_len)
{
    if (!code || pos < 1 || pos > len || len - pos < 4)
        return 0;
    uint8_t op = code[pos - 1];
    uint8_t rex = (x64 && pos >= 2 && is_rex(code[pos - 2])) ? code[pos - 2] : 0;
    size_t start = rex ? pos - 2 : pos - 1;
    /* one-byte opcode forms: the imm32 directly follows the opcode */
    if (op >= 0xB8 && op <= 0xBF) {
        unsigned r = (op - 0xB8u) + ((rex & 1) ? 8u : 0u);
        if ((rex & 8) && r < 8)
            snprintf(form, form_len, "mov %s, imm64 (low half)", k_reg64[r]);
        else if (rex & 8)
            snprintf(form, form_len, "mov r%u, imm64 (low half)", r);
        else if (r < 8)
            snprintf(form, form_len, "mov %s, imm32", k_reg32[r]);
        else
            snprintf(form, form_len, "mov r%ud, imm32", r);
        *insn_off = start;
        return 1;
    }
    if (op == 0x68) {
        snprintf(form, form_len, "push imm32");
        *insn_off = pos - 1;
        return 1;
    }
    const char *acc = acc_mnemonic(op);
    if (acc) {
        snprintf(form, form_len, "%s %s, imm32", acc, (rex & 8) ? "rax" : "eax");
        *insn_off = start;
        return 1;
    }
    /* opcode, ModRM [, SIB] [, disp8/disp32], imm32: try each place the opcode could start, the
     * nearest first (ModRM + SIB + disp32 is at most 6 bytes). */
    for (size_t back = 2; back <= 7 && back <= pos; back++) {
        size_t s = pos - back;
        const char *mn = modrm_mnemonic(code[s], (code[s + 1] >> 3) & 7);
        if (!mn)
            continue;
        uint8_t sib = s + 2 < pos ? code[s + 2] : 0;
        if (s + 1 + modrm_len(code[s + 1], sib) != pos)
            continue;
        int wide = x64 && s >= 1 && is_rex(code[s - 1]) && (code[s - 1] & 8);
        int reg = (code[s + 1] >> 6) == 3;
        const char *dst = reg ? (wide ? "r64" : "r32") : (wide ? "qword [mem]" : "dword [mem]");
        if (code[s] == 0x69)
            snprintf(form, form_len, "imul %s, %s, imm32", wide ? "r64" : "r32", reg ? dst : "[mem]");
        else
            snprintf(form, form_len, "%s %s, imm32", mn, dst);
        *insn_off = (x64 && s >= 1 && is_rex(code[s - 1])) ? s - 1 : s;
        return 1;
    }
    return 0;
}
