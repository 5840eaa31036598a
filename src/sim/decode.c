/* decode.c: x86/x64 instruction lengths, enough to walk a translated block of fixture code
 * instruction by instruction. The machine counts instructions (its clock) and finds the call or
 * ret that ends a block from these lengths, instead of hooking every instruction.
 * Covers the general-purpose, x87 and SSE encodings (legacy prefixes, REX, 0F / 0F38 / 0F3A);
 * anything else (VEX, EVEX, 16-bit addressing, 3DNow!) is reported as unknown (0). */
#include "machine_int.h"

/* One bit per opcode of the one-byte map that takes a ModRM byte. */
static int modrm1(uint8_t op, int x64)
{
    if (op < 0x40)
        return (op & 7) < 4;
    switch (op) {
    case 0x62: case 0x63: case 0x69: case 0x6B:
    case 0x80: case 0x81: case 0x82: case 0x83: case 0x84: case 0x85: case 0x86: case 0x87:
    case 0x88: case 0x89: case 0x8A: case 0x8B: case 0x8C: case 0x8D: case 0x8E: case 0x8F:
    case 0xC0: case 0xC1: case 0xC6: case 0xC7:
    case 0xD0: case 0xD1: case 0xD2: case 0xD3:
    case 0xD8: case 0xD9: case 0xDA: case 0xDB: case 0xDC: case 0xDD: case 0xDE: case 0xDF:
    case 0xF6: case 0xF7: case 0xFE: case 0xFF:
        return 1;
    case 0xC4: case 0xC5:  /* LES/LDS in 32-bit mode; VEX in 64-bit mode (refused earlier) */
        return !x64;
    default:
        return 0;
    }
}

/* Length of the ModRM (+SIB +displacement) at p, 32/64-bit addressing; 0 past the end. */
static uint32_t modrm_len(const uint8_t *p, uint32_t avail)
{
    if (avail < 1)
        return 0;
    uint8_t mod = p[0] >> 6, rm = p[0] & 7;
    uint32_t n = 1;
    if (mod == 3)
        return n;
    if (rm == 4) {
        if (avail < 2)
            return 0;
        n++;
        if (mod == 0 && (p[1] & 7) == 5)
            n += 4;
    } else if (mod == 0 && rm == 5) {
        n += 4;  /* disp32, RIP-relative in 64-bit mode */
    }
    if (mod == 1)
        n += 1;
    else if (mod == 2)
        n += 4;
    return n;
}

uint32_t sim_insn_decode(const uint8_t *p, uint32_t avail, int x64, sim_insn_kind_t *kind)
{
    uint32_t i = 0;
    int opsize16 = 0, rexw = 0;
    *kind = SIM_INSN_OTHER;
    for (;;) {
        if (i >= avail || i >= 15)
            return 0;
        uint8_t b = p[i];
        if (b == 0x67)
            return 0;  /* address-size override: not emitted by the fixtures' compiler */
        if (b == 0x66 || b == 0xF2 || b == 0xF3 || b == 0x2E || b == 0x3E || b == 0x26 || b == 0x36 ||
            b == 0x64 || b == 0x65 || b == 0xF0) {
            opsize16 |= b == 0x66;
            rexw = 0;  /* a REX prefix counts only directly before the opcode */
        } else if (x64 && (b & 0xF0) == 0x40) {
            rexw = (b & 8) != 0;
        } else {
            break;
        }
        i++;
    }
    uint8_t op = p[i++];
    uint32_t immz = opsize16 && !rexw ? 2 : 4, imm = 0;
    int has_modrm = 0;
    if (op == 0x0F) {
        if (i >= avail)
            return 0;
        uint8_t op2 = p[i++];
        if (op2 == 0x38) {
            if (i >= avail)
                return 0;
            i++;
            has_modrm = 1;
        } else if (op2 == 0x3A) {
            if (i >= avail)
                return 0;
            i++;
            has_modrm = 1;
            imm = 1;
        } else if (op2 >= 0x80 && op2 <= 0x8F) {
            imm = 4;  /* jcc rel32 */
        } else if (op2 == 0x0F) {
            return 0;  /* 3DNow! */
        } else {
            switch (op2) {
            case 0x05: case 0x06: case 0x07: case 0x08: case 0x09: case 0x0B: case 0x0E:
            case 0x30: case 0x31: case 0x32: case 0x33: case 0x34: case 0x35: case 0x37:
            case 0x77: case 0xA0: case 0xA1: case 0xA2: case 0xA8: case 0xA9: case 0xAA:
            case 0xC8: case 0xC9: case 0xCA: case 0xCB: case 0xCC: case 0xCD: case 0xCE: case 0xCF:
                break;
            case 0x70: case 0x71: case 0x72: case 0x73: case 0xA4: case 0xAC: case 0xBA:
            case 0xC2: case 0xC4: case 0xC5: case 0xC6:
                has_modrm = 1;
                imm = 1;
                break;
            default:
                has_modrm = 1;
                break;
            }
        }
    } else {
        if (x64 && (op == 0xC4 || op == 0xC5 || op == 0x62 || op == 0x06 || op == 0x07 || op == 0x0E ||
                    op == 0x16 || op == 0x17 || op == 0x1E || op == 0x1F || op == 0x27 || op == 0x2F ||
                    op == 0x37 || op == 0x3F || op == 0x60 || op == 0x61 || op == 0x9A || op == 0xCE ||
                    op == 0xD4 || op == 0xD5 || op == 0xEA))
            return 0;  /* invalid in 64-bit mode, or VEX/EVEX */
        has_modrm = modrm1(op, x64);
        /* ALU op AL/eAX, imm (00-3F, low 3 bits 4 or 5), then the other immediate forms */
        if ((op < 0x40 && (op & 7) == 4) || (op >= 0x70 && op <= 0x7F) || (op >= 0xE0 && op <= 0xE7) ||
            op == 0xEB || op == 0x6A || op == 0x6B || op == 0x80 || op == 0x82 || op == 0x83 || op == 0xA8 ||
            (op >= 0xB0 && op <= 0xB7) || op == 0xC0 || op == 0xC1 || op == 0xC6 || op == 0xCD || op == 0xD4 ||
            op == 0xD5)
            imm = 1;
        else if ((op < 0x40 && (op & 7) == 5) || op == 0x68 || op == 0x69 || op == 0x81 || op == 0xA9 || op == 0xC7)
            imm = immz;
        else if (op == 0xE8 || op == 0xE9)
            imm = x64 ? 4 : immz;
        else if (op >= 0xB8 && op <= 0xBF)
            imm = rexw ? 8 : immz;
        else if (op >= 0xA0 && op <= 0xA3)
            imm = x64 ? 8 : 4;  /* moffs */
        else if (op == 0xC2 || op == 0xCA)
            imm = 2;
        else if (op == 0xC8)
            imm = 3;
        else if (op == 0x9A || op == 0xEA)
            imm = immz + 2;
        if (op == 0xE8)
            *kind = SIM_INSN_CALL;
        else if (op == 0xC3 || op == 0xC2)
            *kind = SIM_INSN_RET;
    }
    if (has_modrm) {
        uint32_t n = modrm_len(p + i, avail - i);
        if (n == 0)
            return 0;
        uint8_t reg = (p[i] >> 3) & 7;
        if (op == 0xF6 && reg <= 1)
            imm = 1;
        else if (op == 0xF7 && reg <= 1)
            imm = immz;
        else if (op == 0xFF && reg == 2)
            *kind = SIM_INSN_CALL;
        i += n;
    }
    i += imm;
    if (i > avail || i > 15)
        return 0;
    return i;
}

/* 1 when the instruction at p always continues with the next one (no jump, call, return,
 * interrupt, string repeat or halt): a single step of it ends at p + its length. */
int sim_insn_falls_through(const uint8_t *p, uint32_t avail, int x64)
{
    uint32_t i = 0;
    while (i < avail && i < 15) {
        uint8_t b = p[i];
        if (b == 0xF2 || b == 0xF3)
            return 0; /* rep: the trace flag stops after each iteration */
        if (b == 0x66 || b == 0x67 || b == 0x2E || b == 0x3E || b == 0x26 || b == 0x36 || b == 0x64 ||
            b == 0x65 || b == 0xF0 || (x64 && (b & 0xF0) == 0x40))
            i++;
        else
            break;
    }
    if (i + 1 >= avail)
        return 0;
    uint8_t op = p[i], op2 = p[i + 1];
    if ((op >= 0x70 && op <= 0x7F) || (op >= 0xE0 && op <= 0xE3) || op == 0xE8 || op == 0xE9 || op == 0xEA ||
        op == 0xEB || op == 0xC2 || op == 0xC3 || op == 0xCA || op == 0xCB || op == 0xCC || op == 0xCD ||
        op == 0xCE || op == 0xCF || op == 0xF4 || op == 0x9A || op == 0x9C || op == 0x9D)
        return 0; /* (pushf/popf: the trace flag itself is visible in EFLAGS) */
    if (op == 0x0F && ((op2 >= 0x80 && op2 <= 0x8F) || op2 == 0x05 || op2 == 0x07 || op2 == 0x34 ||
                       op2 == 0x35 || op2 == 0x0B || op2 == 0x01))
        return 0;
    if (op == 0xFF) {
        uint8_t reg = (op2 >> 3) & 7;
        if (reg >= 2 && reg <= 5)
            return 0; /* indirect call / jmp */
    }
    return 1;
}
