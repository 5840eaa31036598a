/* tag.c: pool tag text <-> DWORD, and the instructions for arming a tag on the target.
 * The byte order matters: the kernel compares the DWORD the allocator was called with, and a
 * C character literal 'Leak' in a driver is stored with 'L' in the low byte. */
#include <stdio.h>
#include <string.h>

#include "kdh/tag.h"

int kdh_tag_normalize(const char *text, char out[5], kdh_err_t *err)
{
    size_t n = text ? strlen(text) : 0;
    int blank = 1;
    if (n == 0)
        return kdh_err_set(err, KDH_EINVAL, "pool tag is empty: give 1 to 4 characters, e.g. Leak");
    if (n > 4)
        return kdh_err_set(err, KDH_EINVAL, "pool tag '%.16s%s' is %zu characters long: a tag has at most 4",
                           text, n > 16 ? "..." : "", n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c > 0x7e)
            return kdh_err_set(err, KDH_EINVAL,
                               "pool tag has a non-printable character (byte 0x%02x at position %zu): use ASCII 0x20-0x7e",
                               c, i + 1);
        if (c != ' ')
            blank = 0;
    }
    if (blank)
        return kdh_err_set(err, KDH_EINVAL, "pool tag is only spaces: give at least one visible character");
    memset(out, ' ', 4);
    memcpy(out, text, n);
    out[4] = '\0';
    return KDH_OK;
}

uint32_t kdh_tag_dword(const char tag[4])
{
    return (uint32_t)(unsigned char)tag[0] | (uint32_t)(unsigned char)tag[1] << 8 |
           (uint32_t)(unsigned char)tag[2] << 16 | (uint32_t)(unsigned char)tag[3] << 24;
}

int kdh_tag_match(uint32_t seen, uint32_t tag)
{
    return ((seen ^ tag) & 0x7fffffffu) == 0;
}

int kdh_tag_to_dword(const char *text, uint32_t *dword, kdh_err_t *err)
{
    char t[5];
    int rc = kdh_tag_normalize(text, t, err);
    if (rc == KDH_OK)
        *dword = kdh_tag_dword(t);
    return rc;
}

void kdh_tag_from_dword(uint32_t dword, char out[5])
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(dword >> (8 * i));
        out[i] = (c >= 0x20 && c <= 0x7e) ? (char)c : '.';
    }
    out[4] = '\0';
}

int kdh_tag_describe(const char tag[4], const char *owner, char *buf, size_t cap)
{
    uint32_t dw = kdh_tag_dword(tag);
    int n = snprintf(
        buf, cap,
        "tag          '%.4s'\n"
        "dword        0x%08x (little-endian: '%c' is the low byte)\n"
        "%s%s%s"
        "\n"
        "Break on every allocation and free of this tag (live kernel debugger):\n"
        "  ed nt!PoolHitTag 0x%08x\n"
        "  (restore with: ed nt!PoolHitTag 0xffffff0f)\n"
        "\n"
        "Special pool for this tag (takes effect after a reboot of the target):\n"
        "  reg add \"HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Memory Management\" /v PoolTag "
        "/t REG_DWORD /d 0x%08x /f\n"
        "  then reboot, and break on special-pool allocations with:\n"
        "  bp nt!MmAllocateSpecialPool\n",
        tag, dw, tag[0], owner ? "owner        " : "", owner ? owner : "", owner ? "\n" : "", dw, dw);
    return n;
}
